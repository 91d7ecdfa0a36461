/* Dedup keys (hdr_key, fingerprint) of stored messages, cached in
   Dovecot's mail cache; and the byte comparison of a message with its
   copy, which the fingerprint cannot do. */

#include "lib.h"
#include "buffer.h"
#include "istream.h"
#include "istream-crlf.h"
#include "mail-cache.h"
#include "mail-storage-private.h"
#include "index-mail.h"
#include "fingerprint.h"
#include "dovecot-compat.h"
#include "mail-keys.h"

/* The hdr_key of a message with no selected header: SHA-256 of the
   domain string alone.  Computed once per process. */
static bool empty_hdr_key_set = FALSE;
static unsigned char empty_hdr_key[BF_FP_SIZE];

void backfill_cache_fields_register(struct mailbox *box,
                                    struct backfill_cache_fields *fields_r)
{
	struct mail_cache_field fields[2];

	i_zero(&fields);
	fields[0].name = "backfill.hdrkey";
	fields[0].type = MAIL_CACHE_FIELD_FIXED_SIZE;
	fields[0].field_size = BF_FP_SIZE;
	fields[0].decision = MAIL_CACHE_DECISION_YES;
	fields[1] = fields[0];
	fields[1].name = "backfill.fp";
	backfill_cache_register_fields(box->cache, fields, N_ELEMENTS(fields));
	fields_r->hdr_key_idx = fields[0].idx;
	fields_r->fp_idx = fields[1].idx;
}

static bool cache_lookup(struct mail *mail, unsigned int idx,
                         unsigned char dest[BF_FP_SIZE])
{
	buffer_t *buf = t_buffer_create(BF_FP_SIZE);

	if (index_mail_cache_lookup_field(INDEX_MAIL(mail), buf, idx) > 0 &&
	    buf->used == BF_FP_SIZE) {
		memcpy(dest, buf->data, BF_FP_SIZE);
		return TRUE;
	}
	return FALSE;
}

static int mail_error_ret(struct mail *mail, const char *what,
                          const char **error_r)
{
	enum mail_error error;
	const char *errstr = mailbox_get_last_internal_error(mail->box, &error);

	if (error == MAIL_ERROR_EXPUNGED)
		return 0;
	*error_r = t_strdup_printf("%s: %s", what, errstr);
	return -1;
}

static int feed_stream(struct bf_fp *fp, struct istream *input,
                       const char **error_r)
{
	const unsigned char *data;
	size_t size;

	bf_fp_reset(fp);
	while (i_stream_read_more(input, &data, &size) > 0) {
		bf_fp_feed(fp, data, size);
		i_stream_skip(input, size);
	}
	if (input->stream_errno != 0) {
		*error_r = t_strdup_printf("read(%s) failed: %s",
		                           i_stream_get_name(input),
		                           i_stream_get_error(input));
		return -1;
	}
	return 0;
}

static void check_empty_header(struct backfill_mail_keys *keys)
{
	if (!empty_hdr_key_set) {
		struct bf_fp_result res;
		const char *error;
		if (bf_fp_compute("", 0, &res, &error) == 0) {
			memcpy(empty_hdr_key, res.hdr_key, BF_FP_SIZE);
			empty_hdr_key_set = TRUE;
		}
	}
	keys->no_header = empty_hdr_key_set &&
	                  memcmp(keys->hdr_key, empty_hdr_key, BF_FP_SIZE) == 0;
}

int backfill_mail_keys_get(struct mail *mail,
                           const struct backfill_cache_fields *fields,
                           struct bf_fp *fp, bool want_fp,
                           struct backfill_mail_keys *keys,
                           const char **error_r)
{
	struct bf_fp_result res;
	struct istream *input;
	bool have_hdr;

	i_zero(keys);
	have_hdr = fields != NULL &&
	           cache_lookup(mail, fields->hdr_key_idx, keys->hdr_key);
	keys->fp_set =
	        fields != NULL && cache_lookup(mail, fields->fp_idx, keys->fp);
	if (have_hdr && (keys->fp_set || !want_fp)) {
		check_empty_header(keys);
		return 1;
	}

	if (want_fp) {
		if (mail_get_stream_because(mail, NULL, NULL, "backfill",
		                            &input) < 0)
			return mail_error_ret(mail, "reading message", error_r);
	} else {
		if (mail_get_hdr_stream(mail, NULL, &input) < 0)
			return mail_error_ret(mail, "reading header", error_r);
	}
	if (feed_stream(fp, input, error_r) < 0)
		return -1;
	if (bf_fp_finish(fp, &res, error_r) < 0)
		return -1;

	memcpy(keys->hdr_key, res.hdr_key, BF_FP_SIZE);
	if (fields != NULL) {
		index_mail_cache_add_idx(INDEX_MAIL(mail), fields->hdr_key_idx,
		                         keys->hdr_key, BF_FP_SIZE);
	}
	if (want_fp) {
		memcpy(keys->fp, res.fingerprint, BF_FP_SIZE);
		keys->fp_set = TRUE;
		if (fields != NULL) {
			index_mail_cache_add_idx(INDEX_MAIL(mail),
			                         fields->fp_idx, keys->fp,
			                         BF_FP_SIZE);
		}
	}
	check_empty_header(keys);
	return 1;
}

int backfill_mail_same_size(struct mail *mail, uoff_t *size_r,
                            const char **error_r)
{
	if (mail_get_virtual_size(mail, size_r) < 0)
		return mail_error_ret(mail, "reading its size", error_r);
	return 1;
}

/* Compares two streams block by block.  Returns 1 when equal, 0 when not,
   -1 with *error_r on a read error. */
static int streams_equal(struct istream *a, struct istream *b,
                         const char **error_r)
{
	const unsigned char *da, *db;
	size_t sa, sb;

	for (;;) {
		(void)i_stream_read_more(a, &da, &sa);
		(void)i_stream_read_more(b, &db, &sb);
		if (sa == 0 || sb == 0)
			break;
		size_t n = I_MIN(sa, sb);
		if (memcmp(da, db, n) != 0)
			return 0;
		i_stream_skip(a, n);
		i_stream_skip(b, n);
	}
	struct istream *failed = a->stream_errno != 0   ? a
	                         : b->stream_errno != 0 ? b
	                                                : NULL;
	if (failed != NULL) {
		*error_r = t_strdup_printf("read(%s) failed: %s",
		                           i_stream_get_name(failed),
		                           i_stream_get_error(failed));
		return -1;
	}
	/* one ended: the same only if both did */
	return sa == 0 && sb == 0 ? 1 : 0;
}

int backfill_mail_same_content(struct mail *src, struct mail *copy,
                               const char **error_r)
{
	struct istream *input, *src_lf, *copy_lf;
	uoff_t src_size, copy_size;
	int ret;

	if ((ret = backfill_mail_same_size(src, &src_size, error_r)) <= 0 ||
	    (ret = backfill_mail_same_size(copy, &copy_size, error_r)) <= 0)
		return ret;
	if (src_size != copy_size)
		return 0;
	if (mail_get_stream_because(src, NULL, NULL, "backfill", &input) < 0)
		return mail_error_ret(src, "reading message", error_r);
	src_lf = i_stream_create_lf(input);
	if (mail_get_stream_because(copy, NULL, NULL, "backfill", &input) < 0) {
		i_stream_unref(&src_lf);
		return mail_error_ret(copy, "reading its copy", error_r);
	}
	copy_lf = i_stream_create_lf(input);
	ret = streams_equal(src_lf, copy_lf, error_r);
	i_stream_unref(&src_lf);
	i_stream_unref(&copy_lf);
	return ret;
}
