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

/* "GUID:RANGES;GUID:RANGES", tokenized in place. */
static int consumed_parse(char *text, struct bf_cursor *c, const char **error_r)
{
	size_t max = 1;

	/* every range takes at least one character and a separator: this
	   bounds the allocation by the text, never by a range's size */
	for (const char *p = text; *p != '\0'; p++) {
		if (*p == ',' || *p == ';')
			max++;
	}
	c->consumed = calloc(max, sizeof(*c->consumed));
	if (c->consumed == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	for (char *box = text; box != NULL;) {
		char *next = strchr(box, ';');
		if (next != NULL)
			*next++ = '\0';
		char *colon = strchr(box, ':');
		if (colon == NULL || colon == box) {
			*error_r = "consumed list: GUID:RANGES expected";
			return -1;
		}
		*colon = '\0';
		for (char *range = colon + 1; range != NULL;) {
			char *comma = strchr(range, ',');
			if (comma != NULL)
				*comma++ = '\0';
			struct bf_cursor_range *r =
			        &c->consumed[c->consumed_count];
			char *dash = strchr(range, '-');
			r->guid = box;
			if (dash == NULL) {
				if (num_parse(range, strlen(range), &r->first) <
				    0)
					goto bad_range;
				r->last = r->first;
			} else if (num_parse(range, (size_t)(dash - range),
			                     &r->first) < 0 ||
			           num_parse(dash + 1, strlen(dash + 1),
			                     &r->last) < 0) {
				goto bad_range;
			}
			if (r->first == 0 || r->last < r->first) {
				*error_r = "consumed list: a range is empty "
				           "or starts at UID 0";
				return -1;
			}
			c->consumed_count++;
			range = comma;
		}
		box = next;
	}
	c->consumed_count = ranges_normalize(c->consumed, c->consumed_count);
	return 0;
bad_range:
	*error_r = "consumed list: a UID range is not N or N-M";
	return -1;
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
	c->folder = num[1];
	c->uid = num[2];
	if (count == 6) {
		c->intent = true;
		c->intent_folder = num[3];
		c->intent_uidnext = num[4];
		c->intent_last_uid = num[5];
	}
	return 0;
}

int bf_cursor_parse(const char *text, struct bf_cursor *cursor_r,
                    const char **error_r)
{
	memset(cursor_r, 0, sizeof(*cursor_r));
	if (text == NULL || text[0] == '\0')
		return 0;
	cursor_r->text = strdup(text);
	if (cursor_r->text == NULL) {
		*error_r = "out of memory";
		return -1;
	}
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
	buf_printf(buf, "|");
	for (size_t i = 0; i < count; i++) {
		if (prev == NULL || strcmp(prev, ranges[i].guid) != 0) {
			buf_printf(buf, "%s%s:", prev == NULL ? "" : ";",
			           ranges[i].guid);
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

char *bf_cursor_format(const struct bf_cursor *c)
{
	struct buf buf = {.size = 64};

	buf.data = malloc(buf.size);
	if (buf.data == NULL)
		return NULL;
	buf.data[0] = '\0';
	buf_printf(&buf, CURSOR_V1 ":%u:%u", c->folder, c->uid);
	if (c->intent) {
		buf_printf(&buf, ":%u:%u:%u", c->intent_folder,
		           c->intent_uidnext, c->intent_last_uid);
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
