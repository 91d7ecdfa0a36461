#ifndef BACKFILL_CURSOR_H
#define BACKFILL_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The merge cursor: where a user's merge stands, as text in the merge
   record.  Plain C on plain data (no Dovecot), so that it is unit-tested
   and fuzzed on its own.

   Version 1 text:
     1:FOLDER:UID[:IFOLDER:UIDNEXT:LASTUID][|CONSUMED]
   FOLDER:UID: done up to and including archive UID UID of the FOLDER-th
   archive folder in merge order.  IFOLDER:UIDNEXT:LASTUID: a batch of the
   IFOLDER-th folder, up to archive UID LASTUID, that may have been
   committed to the live folder from live UID UIDNEXT on before a crash.
   CONSUMED: the live copies that archived messages consumed as
   duplicates, "GUID:RANGES;GUID:RANGES", GUID a live folder's GUID and
   RANGES "UID" or "FIRST-LAST" joined by ','.

   A damaged or hostile string is refused with the reason; nothing is
   allocated by the size of a range, only by the length of the text. */

struct bf_cursor_range {
	/* live folder GUID */
	const char *guid;
	uint32_t first, last;
};

struct bf_cursor {
	unsigned int folder;
	uint32_t uid;
	bool intent;
	unsigned int intent_folder;
	uint32_t intent_uidnext, intent_last_uid;
	/* parsed: sorted by (guid, first), overlaps joined */
	struct bf_cursor_range *consumed;
	size_t consumed_count;
	/* owns the parsed strings */
	char *text;
};

/* Parses text (NULL or "" is an empty cursor: nothing merged yet).
   Returns 0, or -1 with a static reason in *error_r.  Free the result with
   bf_cursor_free(), also after an error. */
int bf_cursor_parse(const char *text, struct bf_cursor *cursor_r,
                    const char **error_r);
void bf_cursor_free(struct bf_cursor *cursor);

/* The text of cursor, malloc()ed (NULL when out of memory).  consumed may
   be in any order, with repeats: they are sorted and joined. */
char *bf_cursor_format(const struct bf_cursor *cursor);

/* Did an archived message consume live message (guid, uid)?  Only for a
   parsed cursor. */
bool bf_cursor_consumed_has(const struct bf_cursor *cursor, const char *guid,
                            uint32_t uid);

#endif
