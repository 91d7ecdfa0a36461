#ifndef BACKFILL_MERGE_PRIVATE_H
#define BACKFILL_MERGE_PRIVATE_H

/* The merge's own state, shared by the files of the merge (merge.c,
   merge-loop.c, merge-batch.c, merge-walk.c, live-index.c) and nothing
   else.  merge.c's top comment explains the algorithm. */

#include "array.h"
#include "hash.h"
#include "fingerprint.h"
#include "clock.h"
#include "state.h"
#include "folder-map.h"
#include "mail-keys.h"
#include "cursor.h"
#include "merge.h"
#include "seq-range-array.h"

/* Copying by save: Maildir walks its list of saved files for each new
   one, so a transaction of n saves costs n^2; hardlinks do not, and there
   fewer, larger commits (fsyncs) win. */
#define BACKFILL_BATCH_MAX       200
#define BACKFILL_BATCH_MAX_LINK  1000
#define BACKFILL_BATCH_MAX_MSECS 1000
/* What a POP3 login that had to overrun its budget merges before it
   stops (backfill_merge_run_progress). */
#define BACKFILL_PROGRESS_SLICE_MSECS 100
#define BACKFILL_LEASE_TTL_SECS       120
#define BACKFILL_LEASE_RENEW_SECS     30
/* how a record's last_error names an archive folder the merge skipped */
#define BACKFILL_SKIPPED_NOTE "archive folder skipped: "
/* ... and the symlinks it did not follow */
#define BACKFILL_SYMLINK_NOTE "archive symlinks skipped (never followed): "
/* live_uidls owner of a UIDL that a copy backfill added shows */
#define BACKFILL_UIDL_OWNER_MERGED 0xffffffffU

enum merge_phase {
	PHASE_LIVE_INDEX = 0,
	PHASE_MERGE,
	PHASE_FINISHED,
};

struct live_box {
	const char *vname;
	const char *guid;
	struct mailbox *box; /* opened when a fingerprint is needed */
	struct backfill_cache_fields cf;
	/* for reading candidates, until the slice ends */
	struct mailbox_transaction_context *trans;
	struct mail *mail;
};

struct live_msg {
	unsigned char hdr_key[BF_FP_SIZE];
	unsigned char fp[BF_FP_SIZE];
	uint32_t uid;
	unsigned int box_idx;
	bool fp_set;
	bool consumed;
};

/* A live message by folder GUID and UID: what the journal names. */
struct box_uid {
	const char *guid;
	uint32_t uid;
};

struct consumed {
	unsigned int box_idx;
	uint32_t uid;
};

struct landed {
	const char *guid;
	uint32_t uid;
	/* backfill_mail_same_size() */
	uoff_t size;
	bool size_set;
	/* may be a copy whose GUID a cut Maildir commit lost: found by its
	   bytes (merge-batch.c landed_name_of()) */
	bool by_bytes;
	bool used;
};

/* An archive folder as the cursor knows it (cursor.h's f items). */
struct cursor_folder {
	const char *name;
	/* "" when unknown */
	const char *guid;
	/* 0 when unknown (converted from a version 1 cursor) */
	uint32_t uidvalidity;
	/* archive UIDs <= high are merged; CURSOR_HIGH_ALL: every UID the
	   folder has when it is next opened (version 1's finished folders) */
	uint32_t high;
	/* ... as of the last checkpoint */
	uint32_t high_committed;
	/* an archive folder of this session is this one */
	bool matched;
	/* how its copies get their IMAP UIDs (imap-uids.c); way_live_guid
	   and way_reason "" when none */
	enum bf_uid_way way;
	const char *way_live_guid;
	const char *way_reason;
	/* the renumber way (renumber.c): the live folder's UIDNEXT and
	   UIDVALIDITY when it was decided; the renumbering of its live
	   messages once on record (move_uids NULL before) */
	uint32_t renumber_below, renumber_uidvalidity;
	const char *move_uids;
	uint32_t move_base;
	bool move_done;
	/* the margin its live folder's UIDNEXT was raised with once merged
	   (cursor.h's m item; margin_known FALSE: none on record) */
	bool margin_known;
	uint32_t margin;
	/* this process has begun the move (renumber.c) */
	bool move_running;
};
#define CURSOR_HIGH_ALL 0xffffffffU

struct batch_item {
	struct bf_journal_entry entry;
	/* saved in this batch's transaction: UID known after commit */
	bool saved;
};

/* A mailbox walked in UID order across slices. */
struct box_walk {
	struct mailbox *box;
	ARRAY(uint32_t) uids;
	unsigned int pos;
	struct backfill_cache_fields cf;
	uint32_t uidvalidity;
	struct mailbox_transaction_context *trans;
	struct mail *mail;
};

struct backfill_merge {
	pool_t pool;
	struct mail_user *user;
	/* child of the user's event: "backfill: " once on every line */
	struct event *event;
	/* The merge's own instance of the live user: its open mailboxes and
	   transactions can stay open between IMAP slices, which Dovecot does
	   not allow on the session's user (it must hold the last reference
	   when the session ends, before any plugin hook runs). */
	struct mail_user *luser;
	const struct backfill_settings *set;
	struct bf_state *state;
	char owner[128];
	unsigned int slot;
	bool have_lease, have_slot;
	time_t last_renew;
	struct backfill_archive *archive;
	struct bf_fp *fp;
	struct bf_merge_record rec;
	/* rec's counters as of the last checkpoint: the record a batch's
	   intent writes keeps them (merge-batch.c) */
	struct {
		uint64_t archived, added, duplicates, skipped;
	} rec_committed;
	struct timeval started;
	const char *pop3_uidl_format;

	/* The archive folders the cursor knows (also those gone from the
	   archive: they may come back), and the one being merged (UINT_MAX:
	   none). */
	ARRAY(struct cursor_folder) cfolders;
	unsigned int cur_cf;
	unsigned int consumed_committed;
	/* a cursor was on record: the merge resumes */
	bool have_cursor;
	/* the cursor on record when the merge began */
	struct bf_cursor cursor_in;
	/* the archive's tree signature when the merge began */
	const char *archive_sig;
	/* symlinked message files skipped, also by earlier sessions */
	uint32_t symlinks;
	/* symlinked folders skipped (all met again in each session) */
	uint32_t folder_links;
	/* the message files of the archive folder being merged */
	struct backfill_archive_files *afiles;
	/* version 1 cursor: (archive folder, UID) of every journal entry,
	   to check the conversion */
	ARRAY(struct box_uid) journal_archive;
	/* A batch that may have landed before the crash (see merge.c): of
	   cfolders[intent_cf], into the live folder intent_box_guid. */
	bool intent;
	unsigned int intent_cf;
	uint32_t intent_uidnext, intent_last_uid;
	/* the processes that committed the intent's batches (cursor.h's
	   SAVERS; "" from an older build) */
	const char *intent_savers;
	ARRAY(struct landed) landed;
	/* the landed copy backfill_merge_landed_match() found for the
	   archived message at hand */
	struct landed *landed_match;
	/* the user's messages in the intent's UID range are in the live
	   index (backfill_merge_landed_load()) */
	bool landed_live_added;
	/* The live folder the landed copies are in, when it is not lbox: the
	   archive folder was renamed since and maps to another live folder
	   (merge-batch.c); its vname for their journal entries. */
	struct mailbox *landed_box;
	const char *landed_vname;
	/* the batch changed messages already in the live folder (a landed
	   copy repaired, a live UIDL replaced): made durable before the
	   checkpoint (merge-batch.c) */
	bool batch_fixed;
	uint32_t uidl_collisions_flushed;

	ARRAY_TYPE(backfill_folder) folders;
	ARRAY(struct live_box) live_boxes;
	ARRAY(struct live_msg) live;
	ARRAY(struct box_uid) journal;
	const char *intent_box_guid;
	/* live copies that archived messages consumed (dedup) */
	ARRAY(struct consumed) consumed;

	enum merge_phase phase;
	unsigned int idx;
	struct box_walk walk;
	bool walk_open;

	/* imap-uids.c: the archive folder's UIDNEXT (kept below 2^31); the
	   first UID anything new may take in a live folder that shows the
	   archive's UIDVALIDITY (or POP3 UIDLs from UIDs alone): the
	   archive's UIDNEXT plus backfill_imap_uid_margin, at most 2^31; live
	   UIDs the merge gave copies in the live folder in this session; a
	   way given up whose live folder still shows the archive's
	   UIDVALIDITY */
	uint32_t uid_archive_next;
	uint32_t uid_keep_next;
	ARRAY_TYPE(seq_range) uid_ours;
	bool uid_fresh_pending;

	/* live target of the archive folder being merged */
	struct mailbox *lbox;
	const char *lbox_guid;
	unsigned int lbox_live_idx; /* in live_boxes, UINT_MAX: none */
	uint32_t lbox_uidvalidity;
	pool_t uidl_pool;
	HASH_TABLE(char *, void *) live_uidls;

	struct mailbox_transaction_context *ltrans;
	uint64_t batch_started;
	unsigned int batch_max;
	uint32_t batch_uidnext;
	ARRAY(struct batch_item) batch;
	uint32_t batch_last_uid;
	bool cursor_dirty;
	/* the login this merge began in: every state-store wait until then
	   is bounded by what is left of its budget; in a session each later
	   run then gets its own (backfill_merge_login_over()); 0: not a
	   session (doveadm) */
	uint64_t login_deadline;
	/* the end of the current backfill_merge_run() in a session (the
	   login's budget, an IMAP slice), for a step that is long by itself
	   (the renumbering's move); 0: none (doveadm) */
	uint64_t run_deadline;
	/* a step of this run kept something outside a batch (a chunk of
	   the move) */
	bool move_progress;
	unsigned int runs;
	/* stopped on an error: commit nothing more */
	bool failed;
	/* the last error logged, for the record's last_error */
	const char *last_error;
	/* another process took the merge over: its record, not ours */
	bool lease_lost;

	/* BACKFILL_MERGE_FLAG_DRY_RUN (doveadm backfill plan): every
	   decision, no write.  lbox is NULL for a live folder that does not
	   exist yet (it would be created). */
	bool dry_run;
	uint64_t dry_bytes;
	ARRAY_TYPE(const_string) dry_new_folders;
};

/* merge.c */
/* A record's last_error is one line without control characters (doveadm
   prints it escaped, print-value.c; the text report and logs show it). */
const char *backfill_merge_one_line(const char *text);
/* Logs an error and keeps it for the record's last_error. */
void backfill_merge_log_error(struct backfill_merge *m, const char *fmt, ...)
        ATTR_FORMAT(2, 3);
int backfill_merge_leases_renew(struct backfill_merge *m);
/* Bounds the next state-store operation by what is left of the login's
   budget (no-op outside a login). */
void backfill_merge_store_wait(struct backfill_merge *m);
/* The login is over: a session's later runs each get a deadline of their
   own (the login budget); doveadm the store's own wait limit again. */
void backfill_merge_login_over(struct backfill_merge *m);
void backfill_merge_record_failure(struct backfill_merge *m);
void backfill_merge_finish(struct backfill_merge *m);

/* merge-walk.c: archive and live folders read in UID order */
int backfill_merge_walk_open(struct backfill_merge *m, struct mailbox *box,
                             const char **error_r);
/* Transactions never stay open between slices. */
void backfill_merge_walk_slice_end(struct backfill_merge *m);
struct mail *backfill_merge_walk_mail(struct backfill_merge *m);
void backfill_merge_walk_close(struct backfill_merge *m);

/* merge-batch.c: the cursor on record, batches, checkpoints and the
   replay of a batch that may have landed before a crash */
int backfill_merge_cursor_parse(struct backfill_merge *m, const char *cursor,
                                const char **error_r);
/* A version 1 cursor names folders by position in the folder list: taken
   over when the archive's folders still fit it (checked against the
   journal), else -1 with what to do.  No-op for other versions. */
int backfill_merge_cursor_convert_v1(struct backfill_merge *m,
                                     const char **error_r);
/* A batch that may have landed before a crash is settled first: its
   archive folder moves to the front of the walk. */
void backfill_merge_cursor_intent_first(struct backfill_merge *m);
/* At the end of the walk: a batch still unsettled means its archive
   folder is gone; says so in the log and the record's last_error. */
void backfill_merge_cursor_intent_waiting(struct backfill_merge *m);
/* Which of the cursor's folders the archive folder being opened is
   (m->cur_cf), by GUID, else name and UIDVALIDITY, else UIDVALIDITY of a
   folder whose name is gone (renamed).  Returns -1 when the folder has
   the name of one merged before but another UIDVALIDITY: its UIDs mean
   other messages, resuming by UID could merge twice or miss. */
int backfill_merge_cursor_folder(struct backfill_merge *m,
                                 const struct backfill_folder *folder,
                                 const char **error_r);
/* Marks the live copies the cursor says were consumed, once the live index
   is complete. */
void backfill_merge_consumed_apply(struct backfill_merge *m);
bool backfill_merge_merged_already(struct backfill_merge *m, uint32_t uid);
/* The folder being merged is done up to and including uid. */
void backfill_merge_cursor_advance(struct backfill_merge *m, uint32_t uid);
int backfill_merge_batch_begin(struct backfill_merge *m, const char **error_r);
int backfill_merge_batch_commit(struct backfill_merge *m);
/* rec's counters are those of a checkpoint (the record as loaded, or
   just stored). */
void backfill_merge_counts_committed(struct backfill_merge *m);
void backfill_merge_record_set_cursor(struct backfill_merge *m,
                                      bool with_intent);
int backfill_merge_landed_load(struct backfill_merge *m, const char **error_r);
void backfill_merge_landed_close(struct backfill_merge *m);
/* The intent's batch was committed to lbox (not to another live folder
   its archive folder mapped to before a rename). */
bool backfill_merge_landed_in_lbox(const struct backfill_merge *m);
/* The batch taking the copies that landed in another live folder than
   lbox ends with the intent's batch (merge-batch.c). */
bool backfill_merge_landed_batch_end(const struct backfill_merge *m);
/* Whether the archived message amail (archive UID uid) has a copy of the
   intent's batch that landed before the crash (by GUID, else by its
   bytes, never by fingerprint: merge-batch.c).  Asked before dedup: the
   crashed run copied that message, and the resumed one takes the copy. */
bool backfill_merge_landed_match(struct backfill_merge *m, struct mail *amail,
                                 uint32_t uid);
/* Takes the copy backfill_merge_landed_match() found: gives it the UIDL,
   flags and keywords a fresh copy gets, journals it and returns TRUE. */
bool backfill_merge_landed_take(struct backfill_merge *m, struct mail *amail,
                                const char *uidl, enum mail_flags flags,
                                struct mail_keywords *kw,
                                struct batch_item *item);

/* live-index.c: the live messages that count for dedup, and the POP3
   UIDLs of the live folder being merged into */
int backfill_live_journal_load(struct backfill_merge *m, const char **error_r);
bool backfill_live_added_by_backfill(struct backfill_merge *m,
                                     const char *box_guid, uint32_t uid);
/* In the journal (what backfill added and journalled). */
bool backfill_live_journalled(struct backfill_merge *m, const char *box_guid,
                              uint32_t uid);
const char *backfill_mailbox_guid_str(struct mailbox *box);
int backfill_live_boxes_list(struct backfill_merge *m, const char **error_r);
unsigned int backfill_live_box_find(struct backfill_merge *m,
                                    const char *vname);
/* One step of indexing live messages.  Returns 1 when a mailbox is
   finished, 0 after a message, -1 on error. */
int backfill_live_index_step(struct backfill_merge *m);
void backfill_live_index_sort(struct backfill_merge *m);
bool backfill_live_dedup_consume(struct backfill_merge *m,
                                 const struct backfill_mail_keys *keys);
int backfill_live_uidls_load(struct backfill_merge *m, const char **error_r);
/* The archived message's UIDL (NULL: none) against the live folder's:
   sets *uidl to NULL when the archived message must show a new one,
   fixes a live message that shows it.  Returns -1 if the merge must
   stop. */
int backfill_live_uidl_check(struct backfill_merge *m,
                             const struct backfill_folder *folder,
                             uint32_t archive_uid, const char **uidl);
void backfill_live_uidl_merged(struct backfill_merge *m, const char *uidl);

/* merge-loop.c */
int backfill_merge_loop_run(struct backfill_merge *m, unsigned int budget_ms,
                            bool must_progress);
void backfill_merge_folder_close(struct backfill_merge *m);

#endif
