/* The values the Redis backend stores, read back into records.  Redis is
   shared between hosts and may hold keys written by something else under
   the same prefix, by an older or newer backfill, or damaged by hand: each
   parser refuses what backfill did not write and never trusts a length or
   number inside a value (they are fuzzed: tests/fuzz/fuzz-redis-values.c).
   The formats are listed at the top of state-redis.c, where they are
   written. */

#include "state-redis.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cursor {
	const char *p, *end;
};

/* A decimal number followed by ':'. */
static bool cur_num(struct cursor *c, long long *value_r)
{
	char buf[24], *end;
	size_t n = 0;

	while (c->p + n < c->end && c->p[n] != ':' && n < sizeof(buf) - 1) {
		buf[n] = c->p[n];
		n++;
	}
	if (n == 0 || c->p + n >= c->end || c->p[n] != ':')
		return false;
	buf[n] = '\0';
	errno = 0;
	*value_r = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	c->p += n + 1;
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
	long long len;

	if (!cur_num(c, &len) || len < 0 || !cur_bytes(c, (size_t)len, str_r))
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
		if (strcmp(field, bf_redis_merge_num_fields[j]) != 0)
			continue;
		if (j < 5)
			*u[j] = strtoull(value, NULL, 10);
		else
			*t[j - 5] = (time_t)strtoll(value, NULL, 10);
	}
	return 0;
}

/* ---- journal entries ---- */

bool bf_redis_journal_parse(const char *str, size_t len,
                            struct bf_journal_row *row)
{
	struct cursor c = {str, str + len};
	long long uid, archive_uid;
	char *hex = NULL;
	int ret;

	if (!cur_num(&c, &uid) || !cur_num(&c, &archive_uid) || uid < 0 ||
	    uid > UINT32_MAX || archive_uid < 0 || archive_uid > UINT32_MAX ||
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
	long long opened, until, closed;

	if (!cur_num(&c, &opened) || !cur_num(&c, &until) ||
	    !cur_num(&c, &closed) ||
	    !cur_bytes(&c, (size_t)(c.end - c.p), &window->name))
		return false;
	window->opened = (time_t)opened;
	window->until = (time_t)until;
	window->closed = (time_t)closed;
	return true;
}

/* ---- dedup records ---- */

bool bf_redis_dedup_first_parse(const char *str, size_t len,
                                struct bf_dedup_first *first)
{
	struct cursor c = {str, str + len};
	long long first_seen, expires, delivered, delivered_at, host_len;

	if (!cur_num(&c, &first_seen) || !cur_num(&c, &expires) ||
	    !cur_num(&c, &delivered) || !cur_num(&c, &delivered_at) ||
	    !cur_num(&c, &host_len) || host_len < 0 ||
	    !cur_bytes(&c, (size_t)host_len, &first->host) ||
	    !cur_bytes(&c, (size_t)(c.end - c.p), &first->queue_id)) {
		bf_dedup_first_clear(first);
		return false;
	}
	first->first_seen = (time_t)first_seen;
	first->delivered = delivered != 0;
	first->delivered_at = (time_t)delivered_at;
	return true;
}
