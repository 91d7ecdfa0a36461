#ifndef BACKFILL_CURSOR_H
#define BACKFILL_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The merge cursor: where a user's merge stands, as text in the merge
   record.  Plain C on plain data (no Dovecot), so that it is unit-tested
   and fuzzed on its own.

   Version 2 text (written since staged restores: folders appear, go and
   are renamed in an archive while merges run, issue 15): "2", then items
   separated by one space:
     s:SIG     the archive's tree signature when the cursor was written
               (backfill_archive_signature(); lowercase hex): a done merge
               whose archive still shows it has nothing new to merge
     f:UIDVALIDITY:HIGH:GUID:NAME
               an archive folder, one item each, in the order first met;
               every archive UID <= HIGH of it is merged (or skipped as
               broken); GUID is the archive mailbox GUID (32 hex) or "-";
               NAME its name as the merge last saw it, with '%', bytes
               <= 0x20 and 0x7f written %XX.  A folder is recognised by
               GUID, else by name and UIDVALIDITY, else (renamed) by
               UIDVALIDITY among folders whose name is gone.
     i:FOLDER:LIVEGUID:UIDNEXT:LASTUID[:SAVERS]
               a batch of the FOLDER-th f item (from 0), up to archive UID
               LASTUID, that may have been committed to the live folder
               LIVEGUID from live UID UIDNEXT on before a crash; SAVERS
               the processes that committed it, as Maildir names the files
               a process saves (".M<usecs>P<PID>.<HOST>"): "PID.HOST" tags
               joined by ',', each byte outside [A-Za-z0-9._-] written %XX
               (bf_cursor_saver_tag()), at most BF_CURSOR_SAVERS_MAX;
               "-" for none (the commit failed)
     w:FOLDER:WAY:LIVEGUID:REASON
               how the FOLDER-th f item's messages got their IMAP UIDs
               (issue 19, imap-uids.c): WAY "archive" (live folder made
               with the archive's UIDVALIDITY, copies at their archive
               UIDs), "renumber" (an existing live folder took them) or
               "live" (live UIDVALIDITY and UIDs kept, copies above);
               LIVEGUID the live folder (32 hex) or "-"; REASON a word
               of [a-z0-9-] saying why, or "-".  Written once the way is
               decided, before anything depends on it.
     w:FOLDER:renumber:LIVEGUID:REASON:BELOW:LIVEUIDVALIDITY
               the renumber way also keeps the live folder's UIDNEXT and
               UIDVALIDITY when it was decided: its live messages (UIDs
               below BELOW) are renumbered, and their POP3 UIDLs are
               the ones LIVEUIDVALIDITY gave them.
     r:FOLDER:BASE:STATE:UIDS
               the renumbering of the FOLDER-th f item's live folder:
               the live messages of old UIDs UIDS ("N" or "N-M" joined by
               ',', ascending) move to BASE, BASE+1, ... in that order;
               STATE "p" while it may be under way, "d" once done.
               Written before the first message moves.
     m:FOLDER:MARGIN
               the backfill_imap_uid_margin the merge raised the
               FOLDER-th f item's live folder's UIDNEXT with (the
               archive's UIDNEXT plus MARGIN), written once that raise
               is done (archive and renumber ways): verify checks the
               folder against the margin it got, not the setting as it
               is now.  Older records have none (imap-uids.h says how
               those are checked).
     l:COUNT   symlinks in the archive skipped so far (never followed)
     c:GUID:RANGES
               live copies of live folder GUID that archived messages
               consumed as duplicates; RANGES "UID" or "FIRST-LAST" joined
               by ','
   Nothing else: an unknown item is refused, not skipped (a newer writer's
   meaning cannot be guessed).

   Version 1 text (read only, for merges begun before; the merge converts
   it against the archive's folders and refuses it when they changed):
     1:FOLDER:UID[:IFOLDER:UIDNEXT:LASTUID][|GUID:RANGES;GUID:RANGES]
   FOLDER:UID: done up to archive UID UID of the FOLDER-th archive folder
   in merge order; then the intent and the consumed copies as above.

   A damaged or hostile string is refused with the reason; nothing is
   allocated by the size of a range, only by the length of the text. */

#define BF_CURSOR_VERSION 2

struct bf_cursor_range {
	/* live folder GUID */
	const char *guid;
	uint32_t first, last;
};

/* How an archive folder's messages got their IMAP UIDs (the w item). */
enum bf_uid_way {
	BF_UID_WAY_UNDECIDED = 0,
	BF_UID_WAY_ARCHIVE,
	BF_UID_WAY_RENUMBER,
	BF_UID_WAY_LIVE,
};

struct bf_cursor_folder {
	const char *name;
	/* "" when unknown */
	const char *guid;
	uint32_t uidvalidity;
	uint32_t high;
	enum bf_uid_way way;
	/* "" when unknown or none */
	const char *way_live_guid;
	const char *way_reason;
	/* renumber way: the live folder's UIDNEXT and UIDVALIDITY when it
	   was decided (0: not known, for another way) */
	uint32_t renumber_below, renumber_uidvalidity;
	/* the r item: the old UIDs (NULL: none) and where they go */
	const char *move_uids;
	uint32_t move_base;
	bool move_done;
	/* the m item: the margin the live folder's UIDNEXT was raised with
	   (margin_known FALSE: none on record) */
	bool margin_known;
	uint32_t margin;
};

struct bf_cursor {
	/* as parsed: 1 or 2 (0: empty text); formatting writes 2 */
	unsigned int version;
	/* version 1 only */
	unsigned int v1_folder;
	uint32_t v1_uid;

	/* "" when none */
	const char *signature;
	uint32_t symlinks;
	struct bf_cursor_folder *folders;
	size_t folders_count;
	bool intent;
	/* version 2: index into folders; version 1: position of the folder
	   in merge order */
	unsigned int intent_folder;
	/* version 2: "" when unknown */
	const char *intent_live_guid;
	uint32_t intent_uidnext, intent_last_uid;
	/* the i item's SAVERS as written ("" when none) */
	const char *intent_savers;
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

/* The version 2 text of cursor, malloc()ed (NULL when out of memory).
   consumed may be in any order, with repeats: they are sorted and
   joined. */
char *bf_cursor_format(const struct bf_cursor *cursor);

/* "archive", "renumber", "live", or "" when undecided. */
const char *bf_uid_way_name(enum bf_uid_way way);
/* FALSE for anything else than the three names. */
bool bf_uid_way_parse(const char *name, enum bf_uid_way *way_r);

/* Walks a UIDS text of the r item ("N" or "N-M" joined by ','): the next
   range from *pos, which moves past it.  FALSE at the end or on a bad
   range (bf_cursor_parse() refuses those). */
bool bf_uid_ranges_next(const char **pos, uint32_t *first_r, uint32_t *last_r);

/* How many processes' batches one intent names at most. */
#define BF_CURSOR_SAVERS_MAX 8
/* SAVERS naming no process: none of the batch's files can have lost its
   GUID (no tag is "-": a tag has a '.' between PID and HOST). */
#define BF_CURSOR_SAVERS_NONE "-"

/* The SAVERS tag of a process: "PID.HOST" escaped (malloc()ed, NULL when
   out of memory). */
char *bf_cursor_saver_tag(const char *pid, const char *host);
/* Is tag one of savers (an i item's SAVERS)? */
bool bf_cursor_savers_has(const char *savers, const char *tag);
/* How many tags savers holds. */
unsigned int bf_cursor_savers_count(const char *savers);

/* Did an archived message consume live message (guid, uid)?  Only for a
   parsed cursor. */
bool bf_cursor_consumed_has(const struct bf_cursor *cursor, const char *guid,
                            uint32_t uid);

#endif
