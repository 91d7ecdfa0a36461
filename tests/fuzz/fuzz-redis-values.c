/* libFuzzer: the values the Redis backend reads back from a store that
   other hosts, older or newer versions, or a hand with redis-cli may have
   written.  The first byte picks the parser (a journal entry, a window, a
   dedup record, the field/value pairs of a merge record's hash, split at
   NUL bytes); the rest is the value as hiredis hands it over: len bytes,
   NUL-terminated.  Properties: no crash, leak or overflow; what is
   accepted is consistent (a window has a name, a dedup record a host and
   a queue id whose lengths add up to the value's tail). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "state-redis.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void merge_fields(const char *text, size_t len)
{
	struct bf_merge_record rec;
	const char *field, *value, *end = text + len;

	memset(&rec, 0, sizeof(rec));
	for (field = text; field < end; field = value + strlen(value) + 1) {
		value = field + strlen(field) + 1;
		if (value >= end)
			break;
		if (bf_redis_merge_field(&rec, field, value, strlen(value)) < 0)
			return; /* out of memory: rec cleared */
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
		if (bf_redis_window_parse(text, len, &window) &&
		    window.name == NULL)
			abort();
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
