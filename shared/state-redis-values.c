/* The values the Redis backend stores, read back into records.  Redis is
   shared between hosts and may hold keys written by something else under
   the same prefix, by an older or newer backfill, or damaged by hand: each
   parser refuses what backfill did not write and never trusts a length or
   number inside a value (they are fuzzed: tests/fuzz/fuzz-redis-values.c).
   The formats are listed at the top of state-redis.c, where they are
   written. */

#include "state-redis.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cursor {
	const char *p, *end;
};

/* A number as backfill writes it: decimal digits only (no sign, blank,
   fraction or exponent), no leading zero unless zero_padded (the journal's
   fixed-width UID), at most max.  strtoull() would take "-7" for
   2^64 - 7, skip blanks and give UINT64_MAX for an overflow: a damaged
   value would come back as a figure. */
static bool parse_num(const char *s, size_t len, bool zero_padded, uint64_t max,
                      uint64_t *value_r)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || (!zero_padded && s[0] == '0' && len > 1))
		return false;
	for (i = 0; i < len; i++) {
		unsigned int d = (unsigned char)s[i] - '0';

		if (d > 9 || d > max || v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*value_r = v;
	return true;
}

/* A number (parse_num()) followed by ':'. */
static bool cur_num_padded(struct cursor *c, bool zero_padded, uint64_t max,
                           uint64_t *value_r)
{
	const char *colon = memchr(c->p, ':', (size_t)(c->end - c->p));

	if (colon == NULL ||
	    !parse_num(c->p, (size_t)(colon - c->p), zero_padded, max, value_r))
		return false;
	c->p = colon + 1;
	return true;
}

static bool cur_num(struct cursor *c, uint64_t max, uint64_t *value_r)
{
	return cur_num_padded(c, false, max, value_r);
}

static bool cur_time(struct cursor *c, time_t *time_r)
{
	uint64_t value;

	if (!cur_num(c, BF_STATE_TIME_MAX, &value))
		return false;
	*time_r = (time_t)value;
	return true;
}

/* len bytes as a new string.  A NUL byte among them is refused: backfill
   never writes one, and strndup() would stop there and hand back a
   shorter string than the caller indexes (found by fuzz-redis-values). */
static bool cur_bytes(struct cursor *c, size_t len, char **str_r)
{
	if ((size_t)(c->end - c->p) < len || memchr(c->p, '\0', len) != NULL)
		return false;
	*str_r = strndup(c->p, len);
	c->p += len;
	return *str_r != NULL;
}

static bool cur_lenstr(struct cursor *c, char **str_r)
{
	uint64_t len;

	if (!cur_num(c, SIZE_MAX, &len) || !cur_bytes(c, (size_t)len, str_r))
		return false;
	if (c->p < c->end && *c->p == ':') {
		c->p++;
		return true;
	}
	free(*str_r);
	*str_r = NULL;
	return false;
}

/* ---- merge records: a hash ---- */

const char *const bf_redis_merge_num_fields[8] = {
        "archived",        "added",   "duplicates", "skipped",
        "uidl_collisions", "started", "finished",   "updated",
};

void bf_redis_merge_num_ptrs(struct bf_merge_record *rec, uint64_t *u[5],
                             time_t *t[3])
{
	u[0] = &rec->archived;
	u[1] = &rec->added;
	u[2] = &rec->duplicates;
	u[3] = &rec->skipped;
	u[4] = &rec->uidl_collisions;
	t[0] = &rec->started;
	t[1] = &rec->finished;
	t[2] = &rec->updated;
}

int bf_redis_merge_field(struct bf_merge_record *rec, const char *field,
                         const char *value, size_t len)
{
	uint64_t *u[5];
	time_t *t[3];
	size_t j;
	int ret = 0;

	if (strcmp(field, "status") == 0) {
		int st = bf_merge_status_parse(value);

		/* An unknown status (a newer writer) reads as failed rather
		   than as something that would start or skip a merge. */
		rec->status =
		        st < 0 ? BF_MERGE_FAILED : (enum bf_merge_status)st;
		return 1;
	}
	if (strcmp(field, "cursor") == 0 || strcmp(field, "last_error") == 0) {
		char **dst = field[0] == 'c' ? &rec->cursor : &rec->last_error;

		free(*dst);
		*dst = strndup(value, len);
		if (*dst == NULL) {
			bf_merge_record_clear(rec);
			return -1;
		}
		return 0;
	}
	bf_redis_merge_num_ptrs(rec, u, t);
	for (j = 0; j < 8; j++) {
		uint64_t num;

		if (strcmp(field, bf_redis_merge_num_fields[j]) != 0)
			continue;
		if (!parse_num(value, len, false,
		               j < 5 ? BF_STATE_COUNT_MAX : BF_STATE_TIME_MAX,
		               &num)) {
			/* never a figure: the caller marks the record
			   damaged */
			num = 0;
			ret = 2;
		}
		if (j < 5)
			*u[j] = num;
		else
			*t[j - 5] = (time_t)num;
	}
	return ret;
}

/* ---- journal entries ---- */

bool bf_redis_journal_parse(const char *str, size_t len,
                            struct bf_journal_row *row)
{
	struct cursor c = {str, str + len};
	uint64_t uid, archive_uid;
	char *hex = NULL;
	int ret;

	/* the live UID has a fixed width (state-redis.c): zero-padded */
	if (!cur_num_padded(&c, true, UINT32_MAX, &uid) ||
	    !cur_num(&c, UINT32_MAX, &archive_uid) ||
	    !cur_bytes(&c, 2 * BF_FP_SIZE + 1, &hex))
		return false;
	ret = hex[2 * BF_FP_SIZE] == ':' ? 0 : -1;
	hex[2 * BF_FP_SIZE] = '\0';
	if (ret == 0)
		ret = bf_fp_from_text(hex, row->fingerprint);
	free(hex);
	if (ret < 0 || !cur_lenstr(&c, &row->mailbox_guid) ||
	    !cur_lenstr(&c, &row->archive_mailbox) ||
	    !cur_bytes(&c, (size_t)(c.end - c.p), &row->mailbox))
		return false;
	row->uid = (uint32_t)uid;
	row->archive_uid = (uint32_t)archive_uid;
	return true;
}

/* ---- windows ---- */

bool bf_redis_window_parse(const char *str, size_t len,
                           struct bf_window *window)
{
	struct cursor c = {str, str + len};

	return cur_time(&c, &window->opened) && cur_time(&c, &window->until) &&
	       cur_time(&c, &window->closed) &&
	       cur_bytes(&c, (size_t)(c.end - c.p), &window->name);
}

/* ---- dedup records ---- */

bool bf_redis_dedup_first_parse(const char *str, size_t len,
                                struct bf_dedup_first *first)
{
	struct cursor c = {str, str + len};
	uint64_t delivered, host_len;
	time_t expires;

	if (!cur_time(&c, &first->first_seen) || !cur_time(&c, &expires) ||
	    !cur_num(&c, 1, &delivered) ||
	    !cur_time(&c, &first->delivered_at) ||
	    !cur_num(&c, SIZE_MAX, &host_len) ||
	    !cur_bytes(&c, (size_t)host_len, &first->host) ||
	    !cur_bytes(&c, (size_t)(c.end - c.p), &first->queue_id)) {
		bf_dedup_first_clear(first);
		return false;
	}
	first->delivered = delivered != 0;
	return true;
}
