#ifndef BACKFILL_MERGE_H
#define BACKFILL_MERGE_H

struct mail_user;
struct bf_state;
struct backfill_settings;
struct backfill_merge;
struct mailbox_transaction_context;

/* The merge algorithm, the one copy that the login path, the IMAP
   background slices and doveadm all run.

   backfill_merge_begin() looks up the user's merge record and, if a merge
   is due, takes the user's lease and a host slot and opens the archive.
   Returns 1 with *merge_r to run, 0 when there is nothing to do now (done
   already, no archive, lease or slot taken: *reason_r says which, for an
   info line, or is NULL for a silent no-op), -1 on error (*reason_r says
   why and what to fix; the login goes on, the merge is postponed), or
   BACKFILL_MERGE_STORE_ERROR (< 0 too) when it was the state store that
   failed: nothing to fix in the mailbox, try again once the store answers
   (doveadm reports it "postponed", EX_TEMPFAIL). */
#define BACKFILL_MERGE_STORE_ERROR (-2)
int backfill_merge_begin(struct mail_user *user,
                         const struct backfill_settings *set,
                         struct bf_state *state,
                         struct backfill_merge **merge_r,
                         const char **reason_r);

enum backfill_merge_flags {
	/* doveadm backfill plan: every decision of a real merge, but no
	   message copied, no folder created, no lease taken and no
	   state-store record changed.  Dovecot's own index and cache files
	   may still be updated by the reads. */
	BACKFILL_MERGE_FLAG_DRY_RUN = 0x01,
};

int backfill_merge_begin_flags(struct mail_user *user,
                               const struct backfill_settings *set,
                               struct bf_state *state,
                               enum backfill_merge_flags flags,
                               struct backfill_merge **merge_r,
                               const char **reason_r);

/* What the merge has decided so far (the user's merge record's counters,
   including earlier sessions'). */
struct backfill_merge_counts {
	uint64_t archived, added, duplicates, skipped, uidl_collisions;
	/* dry run: physical size of the messages that would be added */
	uint64_t bytes;
	/* dry run: live folders that would be created; valid until end() */
	const char *const *new_folders;
	unsigned int new_folders_count;
	/* "FOLDER=WAY,..." how each archive folder's copies get their IMAP
	   UIDs (imap-uids.h); data stack */
	const char *uid_ways;
	/* "FOLDER=REASON,..." why each went that way */
	const char *uid_way_reasons;
};
void backfill_merge_get_counts(const struct backfill_merge *merge,
                               struct backfill_merge_counts *counts_r);

/* Works for about budget_ms, leaving nothing uncommitted.  Returns 1 when
   the merge finished, 0 when there is more to do, -1 when it stopped on an
   error (logged; the next login continues). */
int backfill_merge_run(struct backfill_merge *merge, unsigned int budget_ms);

/* The same, but when the budget runs out before the merge has something
   to keep, it goes on and merges for about 100 ms more: a POP3 session's
   merge ends with its login, and a budget used up by indexing the live
   mailbox (which is not kept) would otherwise make every login start over
   and never merge anything. */
int backfill_merge_run_progress(struct backfill_merge *merge,
                                unsigned int budget_ms);

/* What a merge holds in the state store under its own name: its lease
   owner and host slot. */
struct backfill_merge_claim {
	char owner[128];
	unsigned int slot;
	bool have_slot;
};

/* TRUE when the merge stopped (backfill_merge_run() returned -1) because
   the state store did not answer in time (a lock another process held, a
   hung Redis): nothing is wrong with the mailbox or the store's data, and
   a merge begun again later continues where the store's record says.
   claim_r gets what the merge held (the releases at its end stall too),
   *error_r the store's error (valid until backfill_merge_end()). */
bool backfill_merge_store_stalled(const struct backfill_merge *merge,
                                  struct backfill_merge_claim *claim_r,
                                  const char **error_r);

/* backfill_merge_begin() for a session whose merge stopped on a stalled
   store: takes the lease and slot of claim back (the owner's lease is
   ours again, the slot is kept if still ours) instead of waiting for
   them to expire (2 minutes) as another session's. */
int backfill_merge_begin_again(struct mail_user *user,
                               const struct backfill_settings *set,
                               struct bf_state *state,
                               const struct backfill_merge_claim *claim,
                               struct backfill_merge **merge_r,
                               const char **reason_r);

/* Releases the lease and slot and closes everything. */
void backfill_merge_end(struct backfill_merge **merge);

/* The state-store lease a merge of username holds: doveadm's revert and
   reset take the same one so that they never run under a merge. */
const char *backfill_merge_lease_name(const char *username);

/* The messages of UIDs first..last in t's mailbox, in UID order
   (merge-walk.c; doveadm backfill verify reads a folder's UIDs with it
   too). */
struct mail_search_context *
backfill_merge_search_uids(struct mailbox_transaction_context *t,
                           uint32_t first, uint32_t last);

#endif
