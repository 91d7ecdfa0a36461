#ifndef BACKFILL_RENUMBER_H
#define BACKFILL_RENUMBER_H

/* The renumber way's live side (renumber.c, docs/imap-caches.md): an
   existing live folder no IMAP client cached takes the archive's
   UIDVALIDITY and UIDs, and its live messages move above the archive's
   UIDNEXT.  For the merge's files only. */

struct backfill_merge;

/* Before the live folder takes the archive's UIDVALIDITY: every live
   message below the recorded UIDNEXT keeps the POP3 UIDL it shows now
   (stored where the format computes it from the UID or UIDVALIDITY, on
   formats that can store one in place).  Returns 0, or -1 with
   *error_r. */
int backfill_renumber_pin_uidls(struct backfill_merge *m, const char **error_r);
/* The live folder takes the archive's UIDVALIDITY.  Returns 0, or -1
   with *error_r. */
int backfill_renumber_set_uidvalidity(struct backfill_merge *m,
                                      const char **error_r);
/* Mail that came into the live folder after it took the archive's
   UIDVALIDITY and before the merge's first copy there (a delivery between
   a run cut at that point and its rerun, or during the run): from the
   recorded UIDNEXT up to the first copy and below top.  Such mail is live
   mail like the rest, and no client of the old server fetches it (it
   sits below the archive's UIDNEXT they cached): its POP3 UIDLs are
   pinned as they show now (under the archive's UIDVALIDITY), and
   *below_r is the UIDNEXT the move then takes everything below.
   Returns 1 with *below_r, 0 when there is none, -1 with *error_r.
   Only before the move is on record. */
int backfill_renumber_delivered(struct backfill_merge *m, uint32_t top,
                                uint32_t *below_r, const char **error_r);
/* The folder's last batch is in: moves every live message below the
   recorded UIDNEXT to new UIDs from the archive's UIDNEXT on, once, crash
   safe (the move is on record before anything moves, and a resumed run
   completes it by GUID).  In chunks of old UIDs, in old-UID order (each
   one copied, then its old messages expunged), the lease renewed between
   them; a session's deadline (m->run_deadline) stops it between chunks,
   with the move on record and not done (backfill_renumber_move_pending()):
   calling it again goes on.  Returns 0, or -1 (logged). */
int backfill_renumber_move(struct backfill_merge *m);
/* This process began the current folder's move and it is not done. */
bool backfill_renumber_move_pending(struct backfill_merge *m);

/* For tests only: the process SIGKILLs itself when the environment's
   BACKFILL_TEST_CRASH names this point ("NAME" or "NAME:N", the N-th
   time it is reached).  No-op otherwise. */
void backfill_crash_point(const char *name);

#endif
