/* libFuzzer: the values the Redis backend reads back from a store that
   other hosts, older or newer versions, or a hand with redis-cli may have
   written.  The first byte picks the parser (a journal entry, a window, a
   dedup record, the field/value pairs of a merge record's hash, split at
   NUL bytes); the rest is the value as hiredis hands it over: len bytes,
   NUL-terminated.  Properties: no crash, leak or overflow; what is
   accepted is consistent (a window has a name, a dedup record a host and
   a queue id whose lengths add up to the value's tail); a number comes
   back only from a canonical unsigned decimal within range, as backfill
   writes it (a merge record's count or time, a window's times: "-7",
   "+5", " 5", "05" or an overflow never read as a figure). */

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "state-redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The oracle, written apart from the parser: value is how backfill
   writes a number up to max ("%" PRIu64: digits, no sign, no leading
   zero), so that printing the number gives value back. */
static bool canonical(const char *value, uint64_t max)
{
	char max_text[24];
	size_t len = strlen(value), max_len;

	if (len == 0 || strspn(value, "0123456789") != len ||
	    (value[0] == '0' && len > 1))
		return false;
	max_len = (size_t)snprintf(max_text, sizeof(max_text), "%" PRIu64, max);
	return len < max_len ||
	       (len == max_len && strcmp(value, max_text) <= 0);
}

/* A number read back must print as the text it came from. */
static void check_number(uint64_t number, const char *value)
{
	char text[24];

	snprintf(text, sizeof(text), "%" PRIu64, number);
	if (strcmp(text, value) != 0)
		abort();
}

static void merge_fields(const char *text, size_t len)
{
	struct bf_merge_record rec;
	const char *field, *value, *end = text + len;
	uint64_t *u[5];
	time_t *t[3];
	size_t j;
	int ret;

	memset(&rec, 0, sizeof(rec));
	bf_redis_merge_num_ptrs(&rec, u, t);
	for (field = text; field < end; field = value + strlen(value) + 1) {
		value = field + strlen(field) + 1;
		if (value >= end)
			break;
		ret = bf_redis_merge_field(&rec, field, value, strlen(value));
		if (ret < 0)
			return; /* out of memory: rec cleared */
		for (j = 0; j < 8; j++) {
			uint64_t max =
			        j < 5 ? BF_STATE_COUNT_MAX : BF_STATE_TIME_MAX;
			uint64_t got = j < 5 ? *u[j] : (uint64_t)*t[j - 5];

			if (strcmp(field, bf_redis_merge_num_fields[j]) != 0)
				continue;
			if (canonical(value, max) != (ret == 0))
				abort();
			if (ret == 0)
				check_number(got, value);
			else if (got != 0)
				abort(); /* damaged: never a figure */
		}
	}
	if (rec.cursor != NULL && strlen(rec.cursor) > len)
		abort();
	bf_merge_record_clear(&rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;
	size_t len;

	if (size < 1)
		return 0;
	len = size - 1;
	text = malloc(len + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data + 1, len);
	text[len] = '\0';
	switch (data[0] % 4) {
	case 0: {
		struct bf_journal_row row;

		memset(&row, 0, sizeof(row));
		if (bf_redis_journal_parse(text, len, &row) &&
		    (row.mailbox == NULL || row.mailbox_guid == NULL ||
		     row.archive_mailbox == NULL))
			abort();
		free(row.mailbox);
		free(row.mailbox_guid);
		free(row.archive_mailbox);
		break;
	}
	case 1: {
		struct bf_window window;

		memset(&window, 0, sizeof(window));
		if (bf_redis_window_parse(text, len, &window)) {
			char *again;

			/* accepted: exactly what backfill writes for it */
			if (window.name == NULL ||
			    asprintf(&again, "%lld:%lld:%lld:%s",
			             (long long)window.opened,
			             (long long)window.until,
			             (long long)window.closed, window.name) < 0)
				abort();
			if (strlen(again) != len ||
			    memcmp(again, text, len) != 0)
				abort();
			free(again);
		}
		bf_window_clear(&window);
		break;
	}
	case 2: {
		struct bf_dedup_first first;

		memset(&first, 0, sizeof(first));
		if (bf_redis_dedup_first_parse(text, len, &first) &&
		    (first.host == NULL || first.queue_id == NULL ||
		     strlen(first.host) + strlen(first.queue_id) > len))
			abort();
		bf_dedup_first_clear(&first);
		break;
	}
	default:
		merge_fields(text, len);
		break;
	}
	free(text);
	return 0;
}
