/* Message fingerprint v1, streaming.  See FINGERPRINT.md for the contract;
   this file only explains how the stream is cut.

   The selected headers must be hashed in the spec's name order, not in
   message order, so their canonical "name:value\n" lines are kept in one
   buffer per selected name until the header section ends.  Everything
   else (unselected fields, the whole body) streams through without being
   stored, which keeps memory independent of the message size. */

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "fingerprint.h"
#include "parse.h"

#define N_SELECTED 13
/* Longer than any selected name ("content-transfer-encoding" is 25). */
#define NAME_MAX_LEN 32
#define OUT_BUF_SIZE 8192
/* A reset keeps a buffer for the next message up to this size and frees
   a larger one: a context lives as long as an SMTP session or a merge,
   and one message with huge header fields must not pin their memory
   until then. */
#define KEEP_BUF_SIZE 16384

static const char *const selected_names[N_SELECTED] = {
        "message-id",
        "date",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "subject",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
};

enum fp_phase {
	/* style 1: looking at the first bytes for an mbox "From " line */
	PHASE_FIRST,
	/* style 1: dropping the rest of the mbox "From " line */
	PHASE_MBOX_LINE,
	PHASE_HEADER,
	PHASE_BODY,
};

enum header_state {
	HS_LINE_START,
	HS_NAME,
	HS_VALUE,
	/* an unselected or malformed field, or an orphan continuation */
	HS_SKIP,
};

/* No field yet, or the current one is unselected or malformed: its
   continuation lines are ignored with it. */
#define FIELD_NONE (-1)

struct buf {
	unsigned char *data;
	size_t len, size;
	bool failed;
};

struct bf_fp {
	enum fp_phase phase;
	enum header_state hstate;
	bool pending_cr;

	unsigned char first[5];
	size_t first_len;

	/* field being read */
	int field;
	char name[NAME_MAX_LEN];
	size_t name_len;
	bool name_bad, name_ws, value_started, value_sp;

	struct buf selected[N_SELECTED];

	/* body canonicalization */
	size_t empty_lines;
	bool line_content, line_sp;
	unsigned char out[OUT_BUF_SIZE];
	size_t out_len;

	EVP_MD_CTX *fp_ctx, *hdr_ctx;
	bool crypto_failed, oom;
	struct buf message_id;
};

/* SP, HTAB, CR and LF need the slow path; every other byte is copied. */
static const unsigned char special_byte[256] = {
        [' '] = 1,
        ['\t'] = 1,
        ['\r'] = 1,
        ['\n'] = 1,
};

static bool buf_append(struct buf *buf, const void *data, size_t size)
{
	if (buf->failed)
		return false;
	if (buf->size - buf->len < size) {
		size_t new_size = buf->size == 0 ? 256 : buf->size;
		while (new_size - buf->len < size)
			new_size *= 2;
		unsigned char *p = realloc(buf->data, new_size);
		if (p == NULL) {
			buf->failed = true;
			return false;
		}
		buf->data = p;
		buf->size = new_size;
	}
	memcpy(buf->data + buf->len, data, size);
	buf->len += size;
	return true;
}

static void digest_update(struct bf_fp *fp, EVP_MD_CTX *ctx, const void *data,
                          size_t size)
{
	if (size > 0 && EVP_DigestUpdate(ctx, data, size) != 1)
		fp->crypto_failed = true;
}

static void out_flush(struct bf_fp *fp)
{
	digest_update(fp, fp->fp_ctx, fp->out, fp->out_len);
	fp->out_len = 0;
}

static void out_append(struct bf_fp *fp, const unsigned char *data, size_t size)
{
	if (size > sizeof(fp->out) - fp->out_len) {
		out_flush(fp);
		if (size >= sizeof(fp->out)) {
			digest_update(fp, fp->fp_ctx, data, size);
			return;
		}
	}
	memcpy(fp->out + fp->out_len, data, size);
	fp->out_len += size;
}

static void out_byte(struct bf_fp *fp, unsigned char c)
{
	if (fp->out_len == sizeof(fp->out))
		out_flush(fp);
	fp->out[fp->out_len++] = c;
}

struct bf_fp *bf_fp_new(void)
{
	struct bf_fp *fp = calloc(1, sizeof(*fp));

	if (fp == NULL)
		return NULL;
	fp->fp_ctx = EVP_MD_CTX_new();
	fp->hdr_ctx = EVP_MD_CTX_new();
	if (fp->fp_ctx == NULL || fp->hdr_ctx == NULL) {
		bf_fp_free(&fp);
		return NULL;
	}
	bf_fp_reset(fp);
	return fp;
}

void bf_fp_free(struct bf_fp **_fp)
{
	struct bf_fp *fp = *_fp;

	if (fp == NULL)
		return;
	*_fp = NULL;
	for (int i = 0; i < N_SELECTED; i++)
		free(fp->selected[i].data);
	free(fp->message_id.data);
	EVP_MD_CTX_free(fp->fp_ctx);
	EVP_MD_CTX_free(fp->hdr_ctx);
	free(fp);
}

static void buf_reset(struct buf *buf)
{
	if (buf->size > KEEP_BUF_SIZE) {
		free(buf->data);
		buf->data = NULL;
		buf->size = 0;
	}
	buf->len = 0;
	buf->failed = false;
}

void bf_fp_reset(struct bf_fp *fp)
{
	fp->phase = PHASE_FIRST;
	fp->hstate = HS_LINE_START;
	fp->pending_cr = false;
	fp->first_len = 0;
	fp->field = FIELD_NONE;
	fp->name_len = 0;
	for (int i = 0; i < N_SELECTED; i++)
		buf_reset(&fp->selected[i]);
	fp->empty_lines = 0;
	fp->line_content = false;
	fp->line_sp = false;
	fp->out_len = 0;
	fp->crypto_failed = false;
	fp->oom = false;
	buf_reset(&fp->message_id);
	if (EVP_DigestInit_ex(fp->fp_ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestInit_ex(fp->hdr_ctx, EVP_sha256(), NULL) != 1)
		fp->crypto_failed = true;
}

size_t bf_fp_header_bytes(const struct bf_fp *fp)
{
	size_t total = 0;

	for (int i = 0; i < N_SELECTED; i++)
		total += fp->selected[i].len;
	return total;
}

/* ---- header fields ---- */

static void name_start(struct bf_fp *fp)
{
	fp->name_len = 0;
	fp->name_bad = false;
	fp->name_ws = false;
}

static void name_byte(struct bf_fp *fp, unsigned char c)
{
	if (c == ' ' || c == '\t') {
		/* allowed only as trailing blanks before the colon */
		fp->name_ws = true;
		return;
	}
	if (fp->name_ws || c <= 0x20 || c >= 0x7f) {
		fp->name_bad = true;
		return;
	}
	if (fp->name_len == NAME_MAX_LEN) {
		/* too long to be selected: ignored like a malformed name */
		fp->name_bad = true;
		return;
	}
	fp->name[fp->name_len++] =
	        (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
}

/* The colon ended the name: decide whether the field is kept. */
static void name_end(struct bf_fp *fp)
{
	fp->field = FIELD_NONE;
	fp->value_started = false;
	fp->value_sp = false;
	if (fp->name_bad || fp->name_len == 0)
		return;
	for (int i = 0; i < N_SELECTED; i++) {
		const char *sel = selected_names[i];
		if (strlen(sel) == fp->name_len &&
		    memcmp(sel, fp->name, fp->name_len) == 0) {
			fp->field = i;
			if (!buf_append(&fp->selected[i], sel, fp->name_len) ||
			    !buf_append(&fp->selected[i], ":", 1))
				fp->oom = true;
			return;
		}
	}
}

static void value_byte(struct bf_fp *fp, unsigned char c)
{
	struct buf *buf = &fp->selected[fp->field];

	if (c == ' ' || c == '\t') {
		/* runs become one SP; leading and trailing SP vanish */
		fp->value_sp = fp->value_started;
		return;
	}
	if (fp->value_sp && !buf_append(buf, " ", 1))
		fp->oom = true;
	if (!buf_append(buf, &c, 1))
		fp->oom = true;
	fp->value_sp = false;
	fp->value_started = true;
}

static void field_end(struct bf_fp *fp)
{
	if (fp->field != FIELD_NONE &&
	    !buf_append(&fp->selected[fp->field], "\n", 1))
		fp->oom = true;
	fp->field = FIELD_NONE;
}

static void headers_done(struct bf_fp *fp)
{
	static const char f_prefix[] = "backfill-f1\n";
	static const char h_prefix[] = "backfill-h1\n";

	field_end(fp);
	digest_update(fp, fp->fp_ctx, f_prefix, sizeof(f_prefix) - 1);
	digest_update(fp, fp->hdr_ctx, h_prefix, sizeof(h_prefix) - 1);
	for (int i = 0; i < N_SELECTED; i++) {
		digest_update(fp, fp->fp_ctx, fp->selected[i].data,
		              fp->selected[i].len);
		digest_update(fp, fp->hdr_ctx, fp->selected[i].data,
		              fp->selected[i].len);
	}
	digest_update(fp, fp->fp_ctx, "\n", 1);
	fp->phase = PHASE_BODY;
}

/* A line break in the header section (style 1). */
static void header_line_end(struct bf_fp *fp)
{
	switch (fp->hstate) {
	case HS_LINE_START:
		/* the empty line */
		headers_done(fp);
		return;
	case HS_NAME:
		/* no colon: malformed, it and its continuations ignored */
		fp->field = FIELD_NONE;
		break;
	case HS_VALUE:
	case HS_SKIP:
		break;
	}
	fp->hstate = HS_LINE_START;
}

static void header_byte(struct bf_fp *fp, unsigned char c)
{
	switch (fp->hstate) {
	case HS_LINE_START:
		if (c == ' ' || c == '\t') {
			/* continuation: unfolded into the current field */
			if (fp->field == FIELD_NONE) {
				fp->hstate = HS_SKIP;
			} else {
				fp->hstate = HS_VALUE;
				value_byte(fp, c);
			}
			return;
		}
		field_end(fp);
		name_start(fp);
		fp->hstate = HS_NAME;
		/* fall through */
	case HS_NAME:
		if (c == ':') {
			name_end(fp);
			fp->hstate =
			        fp->field == FIELD_NONE ? HS_SKIP : HS_VALUE;
		} else {
			name_byte(fp, c);
		}
		return;
	case HS_VALUE:
		value_byte(fp, c);
		return;
	case HS_SKIP:
		return;
	}
}

/* ---- body ---- */

static void body_line_end(struct bf_fp *fp)
{
	if (fp->line_content)
		out_byte(fp, '\n');
	else
		fp->empty_lines++;
	fp->line_content = false;
	fp->line_sp = false;
}

/* Called before the first byte of content of a line. */
static void body_content_start(struct bf_fp *fp)
{
	if (!fp->line_content) {
		/* empty lines count only if content follows them */
		for (; fp->empty_lines > 0; fp->empty_lines--)
			out_byte(fp, '\n');
		fp->line_content = true;
	}
	if (fp->line_sp) {
		out_byte(fp, ' ');
		fp->line_sp = false;
	}
}

static void body_run(struct bf_fp *fp, const unsigned char *data, size_t size)
{
	body_content_start(fp);
	out_append(fp, data, size);
}

/* Body bytes; the CR of a CR LF pair seen at a chunk end is kept in
   pending_cr by the caller. */
/* True if any of the 8 bytes is <= 0x20: every special byte is, and
   ordinary text rarely is, so words without one are copied whole. */
static inline bool word_has_low_byte(uint64_t w)
{
	return ((w - 0x2121212121212121ULL) & ~w & 0x8080808080808080ULL) != 0;
}

/* From an ordinary byte of a line with content and no pending blank, the
   canonical output equals the input up to the next blank run or line end:
   copy straight into the output buffer.  Returns the bytes consumed. */
static size_t body_copy_plain(struct bf_fp *fp, const unsigned char *p,
                              size_t size)
{
	size_t room = sizeof(fp->out) - fp->out_len, i = 0;
	unsigned char *q = fp->out + fp->out_len;

	if (room < size)
		size = room;
	for (;;) {
		while (i + 8 <= size) {
			uint64_t w;
			memcpy(&w, p + i, 8);
			if (word_has_low_byte(w))
				break;
			memcpy(q + i, &w, 8);
			i += 8;
		}
		if (i == size)
			break;
		unsigned char c = p[i];
		if (!special_byte[c]) {
			q[i++] = c;
		} else if (c == ' ' && i + 1 < size &&
		           !special_byte[p[i + 1]]) {
			/* a single SP between words is its own canonical form
			 */
			q[i] = ' ';
			q[i + 1] = p[i + 1];
			i += 2;
		} else {
			break;
		}
	}
	fp->out_len += i;
	return i;
}

/* Body bytes; the CR of a CR LF pair seen at a chunk end is kept in
   pending_cr for the next chunk. */
static void body_feed(struct bf_fp *fp, const unsigned char *p, size_t size)
{
	const unsigned char *end = p + size;

	while (p < end) {
		switch (*p) {
		case ' ':
		case '\t':
			fp->line_sp = true;
			p++;
			break;
		case '\n':
			body_line_end(fp);
			p++;
			break;
		case '\r':
			if (p + 1 == end) {
				fp->pending_cr = true;
				return;
			}
			if (p[1] == '\n') {
				body_line_end(fp);
				p += 2;
			} else {
				/* a lone CR is ordinary data */
				body_run(fp, p, 1);
				p++;
			}
			break;
		default:
			body_content_start(fp);
			if (fp->out_len == sizeof(fp->out))
				out_flush(fp);
			p += body_copy_plain(fp, p, (size_t)(end - p));
			break;
		}
	}
}

/* ---- style 1: raw bytes ---- */

static void header_feed(struct bf_fp *fp, const unsigned char **_p,
                        const unsigned char *end)
{
	const unsigned char *p = *_p;

	while (p < end && fp->phase == PHASE_HEADER) {
		unsigned char c = *p;
		if (c == '\n') {
			header_line_end(fp);
			p++;
		} else if (c == '\r') {
			if (p + 1 == end) {
				fp->pending_cr = true;
				p++;
				break;
			}
			if (p[1] == '\n') {
				header_line_end(fp);
				p += 2;
			} else {
				header_byte(fp, c);
				p++;
			}
		} else if (fp->hstate == HS_SKIP) {
			/* skipped fields can be long: jump to the line end */
			const unsigned char *nl = memchr(p, '\n', end - p);
			const unsigned char *stop = nl != NULL ? nl : end;
			const unsigned char *cr = memchr(p, '\r', stop - p);
			p = cr != NULL ? cr : stop;
		} else {
			header_byte(fp, c);
			p++;
		}
	}
	*_p = p;
}

/* Feeds one byte through the phase machine: used to replay the bytes held
   while looking for "From " and the CR held across chunks. */
static void feed_bytes(struct bf_fp *fp, const unsigned char *p, size_t size);

static void first_mismatch(struct bf_fp *fp)
{
	unsigned char held[sizeof(fp->first)];
	size_t len = fp->first_len;

	memcpy(held, fp->first, len);
	fp->first_len = 0;
	fp->phase = PHASE_HEADER;
	feed_bytes(fp, held, len);
}

static void feed_bytes(struct bf_fp *fp, const unsigned char *p, size_t size)
{
	static const char mbox_prefix[] = "From ";
	const unsigned char *end = p + size;

	if (fp->pending_cr && p < end) {
		fp->pending_cr = false;
		if (*p == '\n') {
			/* the pair was split across chunks */
			p++;
			if (fp->phase == PHASE_HEADER)
				header_line_end(fp);
			else if (fp->phase == PHASE_BODY)
				body_line_end(fp);
		} else if (fp->phase == PHASE_HEADER) {
			header_byte(fp, '\r');
		} else if (fp->phase == PHASE_BODY) {
			body_run(fp, (const unsigned char *)"\r", 1);
		}
	}
	while (p < end) {
		switch (fp->phase) {
		case PHASE_FIRST:
			if (*p == (unsigned char)mbox_prefix[fp->first_len]) {
				fp->first[fp->first_len++] = *p++;
				if (fp->first_len == sizeof(fp->first))
					fp->phase = PHASE_MBOX_LINE;
			} else {
				first_mismatch(fp);
			}
			break;
		case PHASE_MBOX_LINE: {
			const unsigned char *nl = memchr(p, '\n', end - p);
			if (nl == NULL)
				return;
			p = nl + 1;
			fp->phase = PHASE_HEADER;
			break;
		}
		case PHASE_HEADER:
			header_feed(fp, &p, end);
			break;
		case PHASE_BODY:
			body_feed(fp, p, (size_t)(end - p));
			return;
		}
	}
}

void bf_fp_feed(struct bf_fp *fp, const void *data, size_t size)
{
	feed_bytes(fp, data, size);
}

/* ---- style 2: what libmilter hands over ---- */

void bf_fp_header(struct bf_fp *fp, const char *name, size_t name_len,
                  const char *value, size_t value_len)
{
	const unsigned char *v = (const unsigned char *)value;

	fp->phase = PHASE_HEADER;
	name_start(fp);
	for (size_t i = 0; i < name_len; i++)
		name_byte(fp, (unsigned char)name[i]);
	name_end(fp);
	if (fp->field == FIELD_NONE)
		return;
	for (size_t i = 0; i < value_len; i++) {
		/* unfold: a line break disappears, the blanks after it stay */
		if (v[i] == '\n')
			continue;
		if (v[i] == '\r' && i + 1 < value_len && v[i + 1] == '\n')
			continue;
		value_byte(fp, v[i]);
	}
	field_end(fp);
}

void bf_fp_end_headers(struct bf_fp *fp)
{
	headers_done(fp);
}

void bf_fp_body(struct bf_fp *fp, const void *data, size_t size)
{
	if (fp->phase != PHASE_BODY)
		headers_done(fp);
	feed_bytes(fp, data, size);
}

/* ---- results ---- */

static void message_id_extract(struct bf_fp *fp)
{
	const struct buf *mid = &fp->selected[0];
	const unsigned char *start, *end, *lt, *gt;
	static const char prefix[] = "message-id:";

	fp->message_id.len = 0;
	if (mid->len > sizeof(prefix) - 1) {
		start = mid->data + sizeof(prefix) - 1;
		end = memchr(start, '\n', mid->len - (sizeof(prefix) - 1));
		if (end == NULL)
			end = mid->data + mid->len;
		lt = memchr(start, '<', (size_t)(end - start));
		gt = lt == NULL ? NULL : memchr(lt, '>', (size_t)(end - lt));
		if (gt != NULL) {
			start = lt;
			end = gt + 1;
		}
		if (!buf_append(&fp->message_id, start, (size_t)(end - start)))
			fp->oom = true;
	}
	if (!buf_append(&fp->message_id, "", 1))
		fp->oom = true;
}

int bf_fp_finish(struct bf_fp *fp, struct bf_fp_result *result_r,
                 const char **error_r)
{
	unsigned int len;

	/* end of input ends the current line */
	if (fp->phase == PHASE_FIRST)
		first_mismatch(fp);
	if (fp->pending_cr) {
		fp->pending_cr = false;
		if (fp->phase == PHASE_HEADER)
			header_byte(fp, '\r');
		else if (fp->phase == PHASE_BODY)
			body_run(fp, (const unsigned char *)"\r", 1);
	}
	if (fp->phase == PHASE_MBOX_LINE)
		fp->phase = PHASE_HEADER;
	if (fp->phase == PHASE_HEADER) {
		/* no empty line: all header, empty body */
		if (fp->hstate == HS_NAME)
			fp->field = FIELD_NONE;
		headers_done(fp);
	}
	if (fp->line_content)
		out_byte(fp, '\n');
	out_flush(fp);
	message_id_extract(fp);

	if (fp->oom) {
		*error_r = "fingerprint: out of memory";
		return -1;
	}
	if (fp->crypto_failed ||
	    EVP_DigestFinal_ex(fp->fp_ctx, result_r->fingerprint, &len) != 1 ||
	    EVP_DigestFinal_ex(fp->hdr_ctx, result_r->hdr_key, &len) != 1) {
		*error_r = "fingerprint: SHA-256 failed in libcrypto";
		return -1;
	}
	result_r->message_id = (const char *)fp->message_id.data;
	return 0;
}

int bf_fp_compute(const void *data, size_t size, struct bf_fp_result *result_r,
                  const char **error_r)
{
	/* result_r->message_id would point into the freed context */
	struct bf_fp *fp = bf_fp_new();
	int ret;

	if (fp == NULL) {
		*error_r = "fingerprint: out of memory";
		return -1;
	}
	bf_fp_feed(fp, data, size);
	ret = bf_fp_finish(fp, result_r, error_r);
	result_r->message_id = NULL;
	bf_fp_free(&fp);
	return ret;
}

void bf_fp_to_hex(const unsigned char bin[BF_FP_SIZE], char out[BF_FP_HEX_SIZE])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < BF_FP_SIZE; i++) {
		out[2 * i] = hex[bin[i] >> 4];
		out[2 * i + 1] = hex[bin[i] & 0x0f];
	}
	out[2 * BF_FP_SIZE] = '\0';
}

void bf_fp_to_text(const unsigned char fp[BF_FP_SIZE],
                   char out[BF_FP_TEXT_SIZE])
{
	memcpy(out, "v1:", 3);
	bf_fp_to_hex(fp, out + 3);
}

int bf_fp_from_text(const char *text, unsigned char fp_r[BF_FP_SIZE])
{
	if (strncmp(text, "v1:", 3) == 0)
		text += 3;
	if (strlen(text) != 2 * BF_FP_SIZE)
		return -1;
	for (int i = 0; i < BF_FP_SIZE; i++) {
		int hi = bf_parse_hex_digit(text[2 * i]),
		    lo = bf_parse_hex_digit(text[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		fp_r[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}
