/* The merge cursor's text format (cursor.h).  Input is treated as hostile:
   it comes from a state store that other hosts and tools write. */

#include "cursor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CURSOR_V1 "1"

/* A decimal number that fits in 32 bits, nothing else: no sign, no
   spaces, no leading zeros beyond "0" itself. */
static int num_parse(const char *str, size_t len, uint32_t *num_r)
{
	uint64_t num = 0;

	if (len == 0 || len > 10 || (len > 1 && str[0] == '0'))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (str[i] < '0' || str[i] > '9')
			return -1;
		num = num * 10 + (uint64_t)(str[i] - '0');
	}
	if (num > UINT32_MAX)
		return -1;
	*num_r = (uint32_t)num;
	return 0;
}

static int range_cmp(const void *p1, const void *p2)
{
	const struct bf_cursor_range *r1 = p1, *r2 = p2;
	int ret = strcmp(r1->guid, r2->guid);

	if (ret != 0)
		return ret;
	if (r1->first != r2->first)
		return r1->first < r2->first ? -1 : 1;
	return r1->last < r2->last ? -1 : (r1->last > r2->last ? 1 : 0);
}

/* Sorts ranges and joins overlapping and adjacent ones in place; returns
   the new count. */
static size_t ranges_normalize(struct bf_cursor_range *ranges, size_t count)
{
	size_t out = 0;

	if (count == 0)
		return 0;
	qsort(ranges, count, sizeof(*ranges), range_cmp);
	for (size_t i = 1; i < count; i++) {
		struct bf_cursor_range *prev = &ranges[out];
		if (strcmp(prev->guid, ranges[i].guid) == 0 &&
		    (prev->last == UINT32_MAX ||
		     ranges[i].first <= prev->last + 1)) {
			if (ranges[i].last > prev->last)
				prev->last = ranges[i].last;
			continue;
		}
		ranges[++out] = ranges[i];
	}
	return out + 1;
}

/* A GUID as Dovecot prints one: 32 lowercase hex digits. */
static bool guid_valid(const char *guid)
{
	size_t i;

	for (i = 0; guid[i] != '\0'; i++) {
		if (!((guid[i] >= '0' && guid[i] <= '9') ||
		      (guid[i] >= 'a' && guid[i] <= 'f')))
			return false;
	}
	return i == 32;
}

/* Room for every range text can hold: each takes at least one character
   and a separator.  This bounds the allocation by the text, never by a
   range's size. */
static int consumed_alloc(const char *text, struct bf_cursor *c,
                          const char **error_r)
{
	size_t max = 1;

	for (const char *p = text; *p != '\0'; p++) {
		if (*p == ',' || *p == ';' || *p == ' ')
			max++;
	}
	c->consumed = calloc(max, sizeof(*c->consumed));
	if (c->consumed == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	return 0;
}

/* "GUID:RANGES" of one live folder, tokenized in place. */
static int box_ranges_parse(char *box, struct bf_cursor *c,
                            const char **error_r)
{
	char *colon = strchr(box, ':');

	if (colon == NULL) {
		*error_r = "consumed list: GUID:RANGES expected";
		return -1;
	}
	*colon = '\0';
	if (!guid_valid(box)) {
		*error_r =
		        "consumed list: a live folder GUID is not 32 hex digits";
		return -1;
	}
	for (char *range = colon + 1; range != NULL;) {
		char *comma = strchr(range, ',');
		if (comma != NULL)
			*comma++ = '\0';
		struct bf_cursor_range *r = &c->consumed[c->consumed_count];
		char *dash = strchr(range, '-');
		r->guid = box;
		if (dash == NULL) {
			if (num_parse(range, strlen(range), &r->first) < 0)
				goto bad_range;
			r->last = r->first;
		} else if (num_parse(range, (size_t)(dash - range), &r->first) <
		                   0 ||
		           num_parse(dash + 1, strlen(dash + 1), &r->last) <
		                   0) {
			goto bad_range;
		}
		if (r->first == 0 || r->last < r->first) {
			*error_r =
			        "consumed list: a range is empty or starts at UID 0";
			return -1;
		}
		c->consumed_count++;
		range = comma;
	}
	return 0;
bad_range:
	*error_r = "consumed list: a UID range is not N or N-M";
	return -1;
}

/* Version 1: "GUID:RANGES;GUID:RANGES". */
static int consumed_parse(char *text, struct bf_cursor *c, const char **error_r)
{
	if (consumed_alloc(text, c, error_r) < 0)
		return -1;
	for (char *box = text; box != NULL;) {
		char *next = strchr(box, ';');
		if (next != NULL)
			*next++ = '\0';
		if (box_ranges_parse(box, c, error_r) < 0)
			return -1;
		box = next;
	}
	c->consumed_count = ranges_normalize(c->consumed, c->consumed_count);
	return 0;
}

static int position_parse(char *text, struct bf_cursor *c, const char **error_r)
{
	char *fields[7];
	unsigned int count = 0;
	uint32_t num[6];

	for (char *p = text; p != NULL && count < 7;) {
		fields[count++] = p;
		p = strchr(p, ':');
		if (p != NULL)
			*p++ = '\0';
	}
	if (strcmp(fields[0], CURSOR_V1) != 0) {
		*error_r = "unknown cursor version";
		return -1;
	}
	if (count != 3 && count != 6) {
		*error_r = "version 1 cursor: 3 or 6 fields expected";
		return -1;
	}
	for (unsigned int i = 1; i < count; i++) {
		if (num_parse(fields[i], strlen(fields[i]), &num[i]) < 0) {
			*error_r = "version 1 cursor: a field is not a "
			           "32-bit number";
			return -1;
		}
	}
	c->version = 1;
	c->v1_folder = num[1];
	c->v1_uid = num[2];
	if (count == 6) {
		c->intent = true;
		c->intent_folder = num[3];
		c->intent_uidnext = num[4];
		c->intent_last_uid = num[5];
	}
	return 0;
}

/* "%XX" back to the byte, in place; the name must not be empty nor hold
   a NUL. */
static int name_decode(char *name)
{
	char *out = name;

	if (*name == '\0')
		return -1;
	for (const char *p = name; *p != '\0'; p++) {
		if (*p != '%') {
			*out++ = *p;
			continue;
		}
		unsigned int byte = 0;
		for (int i = 1; i <= 2; i++) {
			char h = p[i];
			byte <<= 4;
			if (h >= '0' && h <= '9')
				byte |= (unsigned int)(h - '0');
			else if (h >= 'A' && h <= 'F')
				byte |= (unsigned int)(h - 'A' + 10);
			else
				return -1;
		}
		if (byte == 0)
			return -1;
		*out++ = (char)byte;
		p += 2;
	}
	*out = '\0';
	return 0;
}

/* Splits "a:b:c:rest" into n fields, the last one keeping any ':'. */
static bool fields_split(char *text, char **fields, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		fields[i] = text;
		if (i == n - 1)
			break;
		text = strchr(text, ':');
		if (text == NULL)
			return false;
		*text++ = '\0';
	}
	return true;
}

static int folder_parse(char *item, struct bf_cursor *c, const char **error_r)
{
	struct bf_cursor_folder *f = &c->folders[c->folders_count];
	char *fields[4];

	if (!fields_split(item, fields, 4) ||
	    num_parse(fields[0], strlen(fields[0]), &f->uidvalidity) < 0 ||
	    num_parse(fields[1], strlen(fields[1]), &f->high) < 0) {
		*error_r = "folder item: f:UIDVALIDITY:HIGH:GUID:NAME expected";
		return -1;
	}
	if (strcmp(fields[2], "-") == 0)
		f->guid = "";
	else if (guid_valid(fields[2]))
		f->guid = fields[2];
	else {
		*error_r = "folder item: the GUID is not 32 hex digits or -";
		return -1;
	}
	if (name_decode(fields[3]) < 0) {
		*error_r = "folder item: the name is empty or badly escaped";
		return -1;
	}
	f->name = fields[3];
	f->way_live_guid = "";
	f->way_reason = "";
	c->folders_count++;
	return 0;
}

static bool saver_byte_plain(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	       (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
}

static bool hex_upper(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F');
}

/* SAVERS: non-empty tags of plain bytes and %XX, joined by ',', at most
   BF_CURSOR_SAVERS_MAX. */
static bool savers_valid(const char *savers)
{
	unsigned int count = 1;
	size_t len = 0;

	for (const char *p = savers;; p++) {
		if (*p == '\0' || *p == ',') {
			if (len == 0 || count > BF_CURSOR_SAVERS_MAX)
				return false;
			if (*p == '\0')
				return true;
			count++;
			len = 0;
		} else if (*p == '%') {
			if (!hex_upper(p[1]) || !hex_upper(p[2]))
				return false;
			p += 2;
			len++;
		} else if (saver_byte_plain((unsigned char)*p)) {
			len++;
		} else {
			return false;
		}
	}
}

char *bf_cursor_saver_tag(const char *pid, const char *host)
{
	size_t len = strlen(pid) + strlen(host) + 2;
	char *tag = malloc(len * 3), *out = tag;

	if (tag == NULL)
		return NULL;
	for (int part = 0; part < 2; part++) {
		const char *p = part == 0 ? pid : host;
		if (part == 1)
			*out++ = '.';
		for (; *p != '\0'; p++) {
			unsigned char ch = (unsigned char)*p;
			if (saver_byte_plain(ch) && !(part == 0 && ch == '.')) {
				*out++ = (char)ch;
			} else {
				snprintf(out, 4, "%%%02X", ch);
				out += 3;
			}
		}
	}
	*out = '\0';
	return tag;
}

bool bf_cursor_savers_has(const char *savers, const char *tag)
{
	size_t len = strlen(tag);

	if (len == 0)
		return false;
	for (const char *p = savers; p != NULL && *p != '\0';) {
		const char *end = strchr(p, ',');
		size_t n = end == NULL ? strlen(p) : (size_t)(end - p);
		if (n == len && memcmp(p, tag, len) == 0)
			return true;
		p = end == NULL ? NULL : end + 1;
	}
	return false;
}

unsigned int bf_cursor_savers_count(const char *savers)
{
	unsigned int count = 0;

	if (savers == NULL || savers[0] == '\0')
		return 0;
	for (const char *p = savers; p != NULL; p = strchr(p + 1, ','))
		count++;
	return count;
}

static int intent_parse(char *item, struct bf_cursor *c, const char **error_r)
{
	char *fields[4], *savers;
	uint32_t folder;

	if (c->intent) {
		*error_r = "more than one intent item";
		return -1;
	}
	if (!fields_split(item, fields, 4)) {
		*error_r =
		        "intent item: i:FOLDER:LIVEGUID:UIDNEXT:LASTUID expected";
		return -1;
	}
	/* the last field takes the rest: LASTUID[:SAVERS] */
	savers = strchr(fields[3], ':');
	if (savers != NULL) {
		*savers++ = '\0';
		if (!savers_valid(savers)) {
			*error_r = "intent item: SAVERS is not PID.HOST tags "
			           "joined by ','";
			return -1;
		}
		c->intent_savers = savers;
	}
	if (num_parse(fields[0], strlen(fields[0]), &folder) < 0 ||
	    num_parse(fields[2], strlen(fields[2]), &c->intent_uidnext) < 0 ||
	    num_parse(fields[3], strlen(fields[3]), &c->intent_last_uid) < 0) {
		*error_r =
		        "intent item: i:FOLDER:LIVEGUID:UIDNEXT:LASTUID expected";
		return -1;
	}
	if (strcmp(fields[1], "-") == 0)
		c->intent_live_guid = "";
	else if (guid_valid(fields[1]))
		c->intent_live_guid = fields[1];
	else {
		*error_r =
		        "intent item: the live GUID is not 32 hex digits or -";
		return -1;
	}
	c->intent = true;
	c->intent_folder = folder;
	return 0;
}

static const char *const uid_way_names[] = {
        [BF_UID_WAY_UNDECIDED] = "",
        [BF_UID_WAY_ARCHIVE] = "archive",
        [BF_UID_WAY_RENUMBER] = "renumber",
        [BF_UID_WAY_LIVE] = "live",
};

const char *bf_uid_way_name(enum bf_uid_way way)
{
	if ((size_t)way >= sizeof(uid_way_names) / sizeof(uid_way_names[0]))
		return "";
	return uid_way_names[way];
}

bool bf_uid_way_parse(const char *name, enum bf_uid_way *way_r)
{
	for (size_t i = 1; i < sizeof(uid_way_names) / sizeof(uid_way_names[0]);
	     i++) {
		if (strcmp(name, uid_way_names[i]) == 0) {
			*way_r = (enum bf_uid_way)i;
			return true;
		}
	}
	return false;
}

/* A reason is one short word: it is shown as it is by doveadm. */
static bool reason_valid(const char *reason)
{
	size_t len = strlen(reason);

	return len > 0 && len <= 64 &&
	       strspn(reason, "abcdefghijklmnopqrstuvwxyz0123456789-") == len;
}

/* Comes after the f items it names: checked in v2_parse(). */
static int way_parse(char *item, struct bf_cursor *c, const char **error_r)
{
	char *fields[6];
	uint32_t folder, below = 0, uidvalidity = 0;
	enum bf_uid_way way;
	unsigned int n = 4;

	/* the renumber way may have two more fields (none when it was
	   written before renumbering was done) */
	const char *way_text = strchr(item, ':');
	size_t colons = 0;
	for (const char *p = item; *p != '\0'; p++)
		colons += *p == ':' ? 1 : 0;
	if (way_text != NULL && strncmp(way_text + 1, "renumber:", 9) == 0 &&
	    colons == 5)
		n = 6;
	if (!fields_split(item, fields, n) ||
	    num_parse(fields[0], strlen(fields[0]), &folder) < 0 ||
	    !bf_uid_way_parse(fields[1], &way) ||
	    (strcmp(fields[2], "-") != 0 && !guid_valid(fields[2])) ||
	    (strcmp(fields[3], "-") != 0 && !reason_valid(fields[3]))) {
		*error_r = "way item: w:FOLDER:archive|renumber|live:LIVEGUID:"
		           "REASON expected";
		return -1;
	}
	if (n == 6 &&
	    (num_parse(fields[4], strlen(fields[4]), &below) < 0 ||
	     num_parse(fields[5], strlen(fields[5]), &uidvalidity) < 0 ||
	     below == 0 || uidvalidity == 0)) {
		*error_r = "way item: w:FOLDER:renumber:LIVEGUID:REASON:BELOW:"
		           "LIVEUIDVALIDITY expected";
		return -1;
	}
	if (folder >= c->folders_count ||
	    c->folders[folder].way != BF_UID_WAY_UNDECIDED) {
		*error_r = "way item: no such folder item, or a second way";
		return -1;
	}
	c->folders[folder].way = way;
	c->folders[folder].way_live_guid =
	        strcmp(fields[2], "-") == 0 ? "" : fields[2];
	c->folders[folder].way_reason =
	        strcmp(fields[3], "-") == 0 ? "" : fields[3];
	c->folders[folder].renumber_below = below;
	c->folders[folder].renumber_uidvalidity = uidvalidity;
	return 0;
}

bool bf_uid_ranges_next(const char **pos, uint32_t *first_r, uint32_t *last_r)
{
	const char *p = *pos, *end, *dash;

	if (p == NULL || *p == '\0')
		return false;
	end = strchr(p, ',');
	if (end == NULL)
		end = p + strlen(p);
	dash = memchr(p, '-', (size_t)(end - p));
	if (dash == NULL) {
		if (num_parse(p, (size_t)(end - p), first_r) < 0)
			return false;
		*last_r = *first_r;
	} else if (num_parse(p, (size_t)(dash - p), first_r) < 0 ||
	           num_parse(dash + 1, (size_t)(end - dash - 1), last_r) < 0) {
		return false;
	}
	if (*first_r == 0 || *last_r < *first_r)
		return false;
	*pos = *end == ',' ? end + 1 : end;
	return true;
}

/* Ascending, not overlapping, at least one range, nothing else. */
static bool uid_ranges_valid(const char *text)
{
	const char *pos = text;
	uint32_t first, last, prev = 0;
	bool any = false;

	while (*pos != '\0') {
		if (!bf_uid_ranges_next(&pos, &first, &last) ||
		    (any && first <= prev))
			return false;
		/* "1," would end on an empty range */
		if (pos[0] == '\0' && pos[-1] == ',')
			return false;
		prev = last;
		any = true;
	}
	return any;
}

/* Comes after the f and w items it names: a renumbering of a folder
   that went the renumber way. */
static int move_parse(char *item, struct bf_cursor *c, const char **error_r)
{
	char *fields[4];
	uint32_t folder, base;

	if (!fields_split(item, fields, 4) ||
	    num_parse(fields[0], strlen(fields[0]), &folder) < 0 ||
	    num_parse(fields[1], strlen(fields[1]), &base) < 0 || base == 0 ||
	    (strcmp(fields[2], "p") != 0 && strcmp(fields[2], "d") != 0) ||
	    !uid_ranges_valid(fields[3])) {
		*error_r = "renumber item: r:FOLDER:BASE:p|d:UIDS expected";
		return -1;
	}
	if (folder >= c->folders_count ||
	    c->folders[folder].way != BF_UID_WAY_RENUMBER ||
	    c->folders[folder].move_uids != NULL) {
		*error_r = "renumber item: no such renumber folder, or a "
		           "second one";
		return -1;
	}
	c->folders[folder].move_base = base;
	c->folders[folder].move_done = fields[2][0] == 'd';
	c->folders[folder].move_uids = fields[3];
	return 0;
}

/* Comes after the f item it names. */
static int margin_parse(char *item, struct bf_cursor *c, const char **error_r)
{
	char *fields[2];
	uint32_t folder, margin;

	if (!fields_split(item, fields, 2) ||
	    num_parse(fields[0], strlen(fields[0]), &folder) < 0 ||
	    num_parse(fields[1], strlen(fields[1]), &margin) < 0) {
		*error_r = "margin item: m:FOLDER:MARGIN expected";
		return -1;
	}
	if (folder >= c->folders_count || c->folders[folder].margin_known) {
		*error_r = "margin item: no such folder item, or a second one";
		return -1;
	}
	c->folders[folder].margin_known = true;
	c->folders[folder].margin = margin;
	return 0;
}

static int signature_parse(char *item, struct bf_cursor *c,
                           const char **error_r)
{
	size_t len = strlen(item);

	if (c->signature[0] != '\0' || len == 0 || len > 64 ||
	    strspn(item, "0123456789abcdef") != len) {
		*error_r = "signature item: one s:HEX expected";
		return -1;
	}
	c->signature = item;
	return 0;
}

static int item_parse(char *item, struct bf_cursor *c, const char **error_r)
{
	if (item[0] == '\0' || item[1] != ':') {
		*error_r = "an item is not X:...";
		return -1;
	}
	switch (item[0]) {
	case 's':
		return signature_parse(item + 2, c, error_r);
	case 'f':
		return folder_parse(item + 2, c, error_r);
	case 'i':
		return intent_parse(item + 2, c, error_r);
	case 'w':
		return way_parse(item + 2, c, error_r);
	case 'r':
		return move_parse(item + 2, c, error_r);
	case 'm':
		return margin_parse(item + 2, c, error_r);
	case 'c':
		return box_ranges_parse(item + 2, c, error_r);
	case 'l':
		if (c->symlinks != 0 ||
		    num_parse(item + 2, strlen(item + 2), &c->symlinks) < 0 ||
		    c->symlinks == 0) {
			*error_r = "symlink item: one l:COUNT (> 0) expected";
			return -1;
		}
		return 0;
	}
	*error_r = "unknown item";
	return -1;
}

/* Version 2: items after "2 ", tokenized in place. */
static int v2_parse(char *items, struct bf_cursor *c, const char **error_r)
{
	size_t count = 1;

	c->version = 2;
	for (const char *p = items; *p != '\0'; p++) {
		if (*p == ' ')
			count++;
	}
	c->folders = calloc(count, sizeof(*c->folders));
	if (c->folders == NULL || consumed_alloc(items, c, error_r) < 0) {
		*error_r = "out of memory";
		return -1;
	}
	for (char *item = items; item != NULL;) {
		char *next = strchr(item, ' ');
		if (next != NULL)
			*next++ = '\0';
		if (item_parse(item, c, error_r) < 0)
			return -1;
		item = next;
	}
	if (c->intent && c->intent_folder >= c->folders_count) {
		*error_r = "intent item: no such folder item";
		return -1;
	}
	c->consumed_count = ranges_normalize(c->consumed, c->consumed_count);
	return 0;
}

int bf_cursor_parse(const char *text, struct bf_cursor *cursor_r,
                    const char **error_r)
{
	memset(cursor_r, 0, sizeof(*cursor_r));
	cursor_r->signature = "";
	cursor_r->intent_live_guid = "";
	cursor_r->intent_savers = "";
	if (text == NULL || text[0] == '\0')
		return 0;
	cursor_r->text = strdup(text);
	if (cursor_r->text == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	if (strcmp(cursor_r->text, "2") == 0) {
		cursor_r->version = 2;
		return 0;
	}
	if (strncmp(cursor_r->text, "2 ", 2) == 0)
		return v2_parse(cursor_r->text + 2, cursor_r, error_r);
	char *bar = strchr(cursor_r->text, '|');
	if (bar != NULL)
		*bar++ = '\0';
	if (position_parse(cursor_r->text, cursor_r, error_r) < 0)
		return -1;
	if (bar != NULL && consumed_parse(bar, cursor_r, error_r) < 0)
		return -1;
	return 0;
}

void bf_cursor_free(struct bf_cursor *cursor)
{
	free(cursor->consumed);
	free(cursor->folders);
	free(cursor->text);
	memset(cursor, 0, sizeof(*cursor));
}

struct buf {
	char *data;
	size_t used, size;
	bool failed;
};

static void buf_printf(struct buf *buf, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *buf, const char *fmt, ...)
{
	va_list args;
	int len;

	if (buf->failed)
		return;
	va_start(args, fmt);
	len = vsnprintf(buf->data + buf->used, buf->size - buf->used, fmt,
	                args);
	va_end(args);
	if (len < 0) {
		buf->failed = true;
		return;
	}
	if ((size_t)len >= buf->size - buf->used) {
		size_t size = buf->size * 2 + (size_t)len;
		char *data = realloc(buf->data, size);
		if (data == NULL) {
			buf->failed = true;
			return;
		}
		buf->data = data;
		buf->size = size;
		va_start(args, fmt);
		(void)vsnprintf(buf->data + buf->used, buf->size - buf->used,
		                fmt, args);
		va_end(args);
	}
	buf->used += (size_t)len;
}

static void consumed_format(struct buf *buf, const struct bf_cursor *c)
{
	struct bf_cursor_range *ranges;
	size_t count;
	const char *prev = NULL;

	if (c->consumed_count == 0)
		return;
	ranges = malloc(c->consumed_count * sizeof(*ranges));
	if (ranges == NULL) {
		buf->failed = true;
		return;
	}
	memcpy(ranges, c->consumed, c->consumed_count * sizeof(*ranges));
	count = ranges_normalize(ranges, c->consumed_count);
	for (size_t i = 0; i < count; i++) {
		if (prev == NULL || strcmp(prev, ranges[i].guid) != 0) {
			buf_printf(buf, " c:%s:", ranges[i].guid);
			prev = ranges[i].guid;
		} else {
			buf_printf(buf, ",");
		}
		if (ranges[i].first == ranges[i].last)
			buf_printf(buf, "%u", ranges[i].first);
		else
			buf_printf(buf, "%u-%u", ranges[i].first,
			           ranges[i].last);
	}
	free(ranges);
}

static void name_format(struct buf *buf, const char *name)
{
	for (const unsigned char *p = (const unsigned char *)name; *p != '\0';
	     p++) {
		if (*p <= 0x20 || *p == '%' || *p == 0x7f)
			buf_printf(buf, "%%%02X", *p);
		else
			buf_printf(buf, "%c", *p);
	}
}

static const char *guid_or_dash(const char *guid)
{
	return guid == NULL || guid[0] == '\0' ? "-" : guid;
}

char *bf_cursor_format(const struct bf_cursor *c)
{
	struct buf buf = {.size = 256};

	buf.data = malloc(buf.size);
	if (buf.data == NULL)
		return NULL;
	buf.data[0] = '\0';
	buf_printf(&buf, "%d", BF_CURSOR_VERSION);
	if (c->signature != NULL && c->signature[0] != '\0')
		buf_printf(&buf, " s:%s", c->signature);
	for (size_t i = 0; i < c->folders_count; i++) {
		const struct bf_cursor_folder *f = &c->folders[i];
		buf_printf(&buf, " f:%u:%u:%s:", f->uidvalidity, f->high,
		           guid_or_dash(f->guid));
		name_format(&buf, f->name);
	}
	for (size_t i = 0; i < c->folders_count; i++) {
		const struct bf_cursor_folder *f = &c->folders[i];
		if (f->way == BF_UID_WAY_UNDECIDED)
			continue;
		buf_printf(&buf, " w:%zu:%s:%s:%s", i, bf_uid_way_name(f->way),
		           guid_or_dash(f->way_live_guid),
		           f->way_reason == NULL || f->way_reason[0] == '\0'
		                   ? "-"
		                   : f->way_reason);
		if (f->way == BF_UID_WAY_RENUMBER && f->renumber_below != 0)
			buf_printf(&buf, ":%u:%u", f->renumber_below,
			           f->renumber_uidvalidity);
	}
	for (size_t i = 0; i < c->folders_count; i++) {
		const struct bf_cursor_folder *f = &c->folders[i];
		if (f->way == BF_UID_WAY_RENUMBER && f->move_uids != NULL &&
		    f->move_uids[0] != '\0')
			buf_printf(&buf, " r:%zu:%u:%s:%s", i, f->move_base,
			           f->move_done ? "d" : "p", f->move_uids);
	}
	for (size_t i = 0; i < c->folders_count; i++) {
		if (c->folders[i].margin_known)
			buf_printf(&buf, " m:%zu:%u", i, c->folders[i].margin);
	}
	if (c->symlinks != 0)
		buf_printf(&buf, " l:%u", c->symlinks);
	if (c->intent) {
		buf_printf(&buf, " i:%u:%s:%u:%u", c->intent_folder,
		           guid_or_dash(c->intent_live_guid), c->intent_uidnext,
		           c->intent_last_uid);
		if (c->intent_savers != NULL && c->intent_savers[0] != '\0')
			buf_printf(&buf, ":%s", c->intent_savers);
	}
	consumed_format(&buf, c);
	if (buf.failed) {
		free(buf.data);
		return NULL;
	}
	return buf.data;
}

bool bf_cursor_consumed_has(const struct bf_cursor *c, const char *guid,
                            uint32_t uid)
{
	size_t lo = 0, hi = c->consumed_count;

	/* the last range that starts at or before (guid, uid) */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct bf_cursor_range *r = &c->consumed[mid];
		int ret = strcmp(r->guid, guid);
		if (ret < 0 || (ret == 0 && r->first <= uid))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return false;
	const struct bf_cursor_range *r = &c->consumed[lo - 1];
	return strcmp(r->guid, guid) == 0 && uid >= r->first && uid <= r->last;
}
