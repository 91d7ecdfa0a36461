/* The merge: every archived message not already in the live account is
   added to the mapped live folder, counted with multiplicity.

   Order and determinism.  Archive folders are walked in a fixed order
   (folder-map.c) and each folder in UID order, so a merge is a function of
   (archive, live messages present when it began).  The live index is built
   first, from the live messages that backfill did not add (the journal and
   a pending batch name those).  Dedup consumes one live copy per archived
   copy: two identical archived copies and one live copy give two.

   Crash safety.  Killing the process anywhere must give the same mailbox
   as an uninterrupted merge.  The state store and the mailbox cannot be
   committed atomically together, so each batch goes:
     1. record an intent in the merge record's cursor: live folder, its
        UIDNEXT before the batch, and the last archive UID of the batch;
     2. commit the batch to the live mailbox (copies keep the archive
        message's GUID: Maildir hardlinks and Dovecot's copy-by-save both
        carry it, and for Maildir it even becomes the new file name);
     3. checkpoint: journal entries with the live UIDs and the cursor past
        the batch, in one state-store transaction.
   A crash before 1 or after 3 is clean.  Between 1 and 3 the next run
   finds the intent, replays the batch's decisions and, for each message it
   would add, first looks for a live message with UID >= the recorded
   UIDNEXT and the same GUID, else (a copy whose GUID a cut Maildir
   commit lost) with the same bytes, never only the same fingerprint (a
   delivery of the same mail meanwhile is the user's, merge-batch.c
   landed_find()): if the copy landed it is journalled (and its
   POP3 UIDL fixed if Maildir died between moving the file and writing
   dovecot-uidlist), else it is copied again.  The batch's possible copies
   in that UID range are kept out of the live index, so a landed copy never
   counts as pre-existing; the user's mail there counts as in a first run
   (merge-batch.c landed_live_add()).

   Resuming.  Which live copies earlier archived messages consumed is part
   of the cursor (live folder GUID and UID ranges), so a resumed merge
   starts right at the cursor instead of re-reading the archive before it:
   a POP3 user whose login budget is smaller than such a replay would
   otherwise never get any further. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hostpid.h"
#include "ioloop.h"
#include "time-util.h"
#include "mail-storage-private.h"
#include "mail-namespace.h"
#include "mail-storage-service.h"
#include "dovecot-compat.h"
#include "backfill-settings.h"
#include "backfill-user.h"
#include "archive.h"
#include "merge-private.h"
#include "imap-uids.h"

#include <time.h>
#include <sys/resource.h>

const char *backfill_merge_lease_name(const char *username)
{
	return t_strconcat("merge/", username, NULL);
}

const char *backfill_merge_one_line(const char *text)
{
	char *line = t_strdup_noconst(text);

	for (char *p = line; *p != '\0'; p++) {
		/* every control character: a record's text goes into
		   doveadm's tab output, logs and the text report, where
		   ESC or a newline would do harm */
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';
	}
	return line;
}

void backfill_merge_log_error(struct backfill_merge *m, const char *fmt, ...)
{
	va_list args;
	const char *msg;

	va_start(args, fmt);
	msg = t_strdup_vprintf(fmt, args);
	va_end(args);
	e_error(m->event, "%s", msg);
	m->last_error = p_strdup(m->pool, backfill_merge_one_line(msg));
}

/* An IMAP or POP3 session's merge (not doveadm's, which may wait as long
   as the store says, nor a dry run). */
static bool merge_in_session(const struct backfill_merge *m)
{
	return !m->dry_run && (strcmp(m->user->service, "imap") == 0 ||
	                       strcmp(m->user->service, "pop3") == 0);
}

/* A login never waits for the state store beyond its budget (issue 15
   item 5): a store locked by another process, or a stalled one, would
   otherwise hold the login for the store's whole busy timeout (10 s for
   SQLite).  The merge is then postponed with the store's error. */
void backfill_merge_store_wait(struct backfill_merge *m)
{
	uint64_t now;

	if (m->login_deadline == 0)
		return;
	now = bf_clock_msecs();
	bf_state_set_wait_limit(
	        m->state, now >= m->login_deadline
	                          ? 1
	                          : (unsigned int)(m->login_deadline - now));
}

/* The login is over.  In a session each later call (an IMAP background
   slice, the merge's end at logout) gets a deadline of its own, the login
   budget again for all its store waits together: a stalled store held the
   session's ioloop, and so every command of its client, for the store's
   own timeout (10 s for SQLite, timeout= for Redis).  The slice that hits
   it stops the merge (nothing uncommitted is kept, see the crash safety
   above) and imap-slices.c begins it again later. */
void backfill_merge_login_over(struct backfill_merge *m)
{
	if (merge_in_session(m)) {
		m->login_deadline = bf_clock_msecs() + m->set->login_budget_ms;
		return;
	}
	if (m->login_deadline == 0)
		return;
	m->login_deadline = 0;
	bf_state_set_wait_limit(m->state, 0);
}

int backfill_merge_leases_renew(struct backfill_merge *m)
{
	const char *error;
	int ret;

	if (m->dry_run ||
	    ioloop_time - m->last_renew < BACKFILL_LEASE_RENEW_SECS)
		return 0;
	backfill_merge_store_wait(m);
	ret = bf_state_lease_renew(
	        m->state, backfill_merge_lease_name(m->user->username),
	        m->owner, ioloop_time, BACKFILL_LEASE_TTL_SECS, &error);
	if (ret == 0) {
		m->lease_lost = TRUE;
		backfill_merge_log_error(
		        m,
		        "merge stopped: lost the merge lease to another process (it continues the merge)");
		return -1;
	}
	if (ret == 1) {
		ret = bf_state_slot_renew(m->state, my_hostname, m->slot,
		                          m->owner, ioloop_time,
		                          BACKFILL_LEASE_TTL_SECS, &error);
	}
	if (ret < 0) {
		backfill_merge_log_error(m, "merge stopped: %s", error);
		return -1;
	}
	if (ret == 0) {
		/* the lease is still ours: the record is too */
		backfill_merge_log_error(
		        m,
		        "merge stopped: lost this host's merge slot (backfill_max_parallel) to another process; the next login continues");
		return -1;
	}
	m->last_renew = ioloop_time;
	return 0;
}

/* ---- mailbox walking ---- */

/* A merge that stopped on an error says so in its record, for doveadm
   backfill status and run: without this an abandoned merge showed as
   "running" with no error.  Only status and last_error change: the cursor
   on record is the one the last checkpoint (or intent) wrote, and this
   process's newer one may not be backed by a journal yet.  The next login
   retries a failed merge like a pending one. */
void backfill_merge_record_failure(struct backfill_merge *m)
{
	struct bf_merge_record rec;
	const char *error;

	if (m->dry_run || m->lease_lost || m->last_error == NULL)
		return;
	backfill_merge_store_wait(m);
	int ret = bf_state_merge_get(m->state, m->user->username, &rec, &error);
	if (ret < 0) {
		/* the store that failed is likely why we are here */
		return;
	}
	if (ret == 0) {
		/* a merge that could not even start (e.g. no private place
		   for the archive's index): status says why all the same */
		i_zero(&rec);
	}
	rec.status = BF_MERGE_FAILED;
	i_free(rec.last_error);
	rec.last_error = i_strdup(m->last_error);
	rec.updated = ioloop_time;
	if (bf_state_merge_put(m->state, m->user->username, &rec, &error) < 0) {
		e_debug(m->event, "recording the failure failed too: %s",
		        error);
	}
	bf_merge_record_clear(&rec);
}

void backfill_merge_finish(struct backfill_merge *m)
{
	struct timeval now;
	const char *error;

	m->rec.status = BF_MERGE_DONE;
	m->rec.finished = ioloop_time;
	if (m->dry_run)
		return;
	/* an earlier session's failure is history now, a skipped folder
	   is not */
	if (m->rec.last_error != NULL &&
	    !backfill_str_begins(m->rec.last_error, BACKFILL_SKIPPED_NOTE) &&
	    !backfill_str_begins(m->rec.last_error, BACKFILL_SYMLINK_NOTE))
		i_free(m->rec.last_error);
	backfill_merge_cursor_intent_waiting(m);
	backfill_merge_record_set_cursor(m, FALSE);
	backfill_merge_store_wait(m);
	if (bf_state_merge_put(m->state, m->user->username, &m->rec, &error) <
	    0) {
		backfill_merge_log_error(
		        m, "merge finished but not recorded: %s", error);
		return;
	}
	i_gettimeofday(&now);
	/* for the benchmarks: the merge's memory must stay flat */
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		i_zero(&ru);
	double secs = timeval_diff_usecs(&now, &m->started) / 1000000.0;
	struct event_passthrough *e =
	        event_create_passthrough(m->event)
	                ->set_name("backfill_merge_finished")
	                ->add_int("added", m->rec.added)
	                ->add_int("duplicates", m->rec.duplicates)
	                ->add_int("skipped", m->rec.skipped)
	                ->add_int("archived", m->rec.archived)
	                ->add_int("uidl_collisions", m->rec.uidl_collisions)
	                ->add_int("peak_rss_kb", ru.ru_maxrss);
	e_info(e->event(),
	       "merge finished: %" PRIu64 " added, %" PRIu64
	       " duplicates, %" PRIu64 " skipped, %" PRIu64
	       " POP3 UIDL collisions, %.3f s in this session",
	       m->rec.added, m->rec.duplicates, m->rec.skipped,
	       m->rec.uidl_collisions, secs);
	e_debug(m->event, "peak RSS of this process: %ld kB",
	        (long)ru.ru_maxrss);
}

int backfill_merge_run(struct backfill_merge *m, unsigned int budget_ms)
{
	return backfill_merge_loop_run(m, budget_ms, FALSE);
}

int backfill_merge_run_progress(struct backfill_merge *m,
                                unsigned int budget_ms)
{
	return backfill_merge_loop_run(m, budget_ms, TRUE);
}
static int live_user_dup(struct mail_user *user, struct mail_user **luser_r,
                         const char **error_r)
{
	struct mail_user *luser;
	const char *error;

	luser = backfill_user_dup(user);
	/* keeps our own hooks away from it */
	luser->creator = user;
	luser->autocreated = TRUE;
	if (mail_user_init(luser, &error) < 0 ||
	    mail_namespaces_init(luser, &error) < 0) {
		*error_r = t_strdup_printf("opening the live mailboxes: %s",
		                           error);
		mail_user_deinit(&luser);
		return -1;
	}
	*luser_r = luser;
	return 0;
}

static int merge_take_leases(struct backfill_merge *m,
                             const struct backfill_merge_claim *claim,
                             const char **reason_r)
{
	const char *error;
	char *holder = NULL;
	int ret;

	/* begun again (claim): the owner of the merge before, whose lease
	   is then ours again (acquire is reentrant) */
	if (m->owner[0] == '\0')
		bf_lease_owner(m->owner, sizeof(m->owner));
	backfill_merge_store_wait(m);
	ret = bf_state_lease_acquire(
	        m->state, backfill_merge_lease_name(m->user->username),
	        m->owner, ioloop_time, BACKFILL_LEASE_TTL_SECS, &holder,
	        &error);
	if (ret < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	if (ret == 0) {
		*reason_r = t_strdup_printf(
		        "merge not started here: another session (%s) is merging this user",
		        holder == NULL ? "?" : holder);
		free(holder);
		return 0;
	}
	m->have_lease = TRUE;
	if (claim != NULL && claim->have_slot) {
		/* the slot the merge before may not have released: keep it
		   instead of taking a second one */
		backfill_merge_store_wait(m);
		ret = bf_state_slot_renew(m->state, my_hostname, claim->slot,
		                          m->owner, ioloop_time,
		                          BACKFILL_LEASE_TTL_SECS, &error);
		if (ret < 0) {
			*reason_r =
			        t_strdup_printf("merge postponed: %s", error);
			return BACKFILL_MERGE_STORE_ERROR;
		}
		if (ret > 0) {
			m->slot = claim->slot;
			m->have_slot = TRUE;
			m->last_renew = ioloop_time;
			return 1;
		}
	}
	unsigned int max = m->set->max_parallel == 0 ? 1 : m->set->max_parallel;
	backfill_merge_store_wait(m);
	ret = bf_state_slot_acquire(m->state, my_hostname, max, m->owner,
	                            ioloop_time, BACKFILL_LEASE_TTL_SECS,
	                            &m->slot, &error);
	if (ret < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	if (ret == 0) {
		*reason_r = t_strdup_printf(
		        "merge postponed: all %u merge slots of this host are busy (backfill_max_parallel); the next login continues",
		        max);
		return 0;
	}
	m->have_slot = TRUE;
	m->last_renew = ioloop_time;
	return 1;
}

/* A merge that cannot start for a reason in the mailbox, the archive or
   the record (not the store): recorded as failed like one that stops, so
   that doveadm backfill status shows why. */
static int merge_begin_failed(struct backfill_merge **merge_r,
                              const char *reason)
{
	struct backfill_merge *m = *merge_r;

	m->last_error = p_strdup(m->pool, backfill_merge_one_line(reason));
	backfill_merge_record_failure(m);
	backfill_merge_end(merge_r);
	return -1;
}
int backfill_merge_begin(struct mail_user *user,
                         const struct backfill_settings *set,
                         struct bf_state *state,
                         struct backfill_merge **merge_r, const char **reason_r)
{
	return backfill_merge_begin_flags(user, set, state, 0, merge_r,
	                                  reason_r);
}

static struct backfill_merge *merge_alloc(struct mail_user *user,
                                          const struct backfill_settings *set,
                                          struct bf_state *state,
                                          enum backfill_merge_flags flags)
{
	pool_t pool = pool_alloconly_create("backfill merge", 4096);
	struct backfill_merge *m = p_new(pool, struct backfill_merge, 1);

	m->pool = pool;
	m->user = user;
	m->event = backfill_event_create(user);
	m->set = set;
	m->state = state;
	m->dry_run = (flags & BACKFILL_MERGE_FLAG_DRY_RUN) != 0;
	p_array_init(&m->dry_new_folders, pool, 4);
	m->lbox_live_idx = UINT_MAX;
	i_gettimeofday(&m->started);
	m->pop3_uidl_format =
	        p_strdup(pool, backfill_user_pop3_uidl_format(user));
	p_array_init(&m->batch, pool, BACKFILL_BATCH_MAX);
	p_array_init(&m->live, pool, 256);
	p_array_init(&m->journal, pool, 64);
	p_array_init(&m->landed, pool, 4);
	p_array_init(&m->consumed, pool, 16);
	p_array_init(&m->journal_archive, pool, 16);
	m->archive_sig = "";
	m->cur_cf = UINT_MAX;
	return m;
}

/* A done merge has nothing to do while the archive's tree is the one it
   finished with.  A folder or message restored since changes the tree's
   signature, and the merge runs again for what is new (each folder
   resumes at its own high-water UID: nothing is merged twice). */
static bool merge_done_unchanged(struct backfill_merge *m, bool log)
{
	struct bf_cursor c;
	const char *error;
	bool ret;

	if (m->rec.status != BF_MERGE_DONE)
		return FALSE;
	if (m->archive_sig[0] == '\0')
		return TRUE;
	if (bf_cursor_parse(m->rec.cursor, &c, &error) < 0) {
		/* status and the next run report it; a done merge stays */
		ret = TRUE;
	} else {
		ret = strcmp(c.signature, m->archive_sig) == 0;
	}
	bf_cursor_free(&c);
	if (!ret && log) {
		e_info(m->event,
		       "the archive changed since the merge finished: merging what was restored since");
	}
	return ret;
}

/* The live folder GUID of a batch that may have landed (the live index
   is filled later, the journal check needs it first). */
static void intent_box_guid_find(struct backfill_merge *m)
{
	unsigned int pos = m->cursor_in.intent_folder;

	/* version 2 names it */
	if (!m->intent || m->cursor_in.version != 1 ||
	    pos >= array_count(&m->folders))
		return;
	const struct backfill_folder *f = array_idx(&m->folders, pos);
	if (backfill_live_box_find(m, f->live_vname) == UINT_MAX)
		return;
	struct mail_namespace *ns =
	        mail_namespace_find(m->luser->namespaces, f->live_vname);
	struct mailbox *box =
	        mailbox_alloc(ns->list, f->live_vname, MAILBOX_FLAG_READONLY);
	const char *guid = backfill_mailbox_guid_str(box);
	m->intent_box_guid = p_strdup(m->pool, guid);
	mailbox_free(&box);
}

/* Under the lease: the record, the cursor, the archive and both sides'
   folders.  Returns 1, 0 (nothing to do) or < 0 like
   backfill_merge_begin(), having ended the merge unless it returns 1. */
static int merge_prepare(struct backfill_merge **merge_r, const char **reason_r)
{
	struct backfill_merge *m = *merge_r;
	const char *error;
	int ret;

	/* Read the record again under the lease: another session may have
	   finished the merge between our first look and the lease. */
	bf_merge_record_clear(&m->rec);
	backfill_merge_store_wait(m);
	if (bf_state_merge_get(m->state, m->user->username, &m->rec, &error) <
	    0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		backfill_merge_end(merge_r);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	if (merge_done_unchanged(m, FALSE)) {
		backfill_merge_end(merge_r);
		return 0;
	}
	if (backfill_merge_cursor_parse(m, m->rec.cursor, &error) < 0) {
		*reason_r = t_strdup_printf(
		        "merge record has an unknown cursor '%s': %s (reset it with doveadm backfill reset)",
		        m->rec.cursor, error);
		return merge_begin_failed(merge_r, *reason_r);
	}

	if (live_user_dup(m->user, &m->luser, &error) < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		return merge_begin_failed(merge_r, *reason_r);
	}
	m->batch_started = bf_clock_msecs();
	ret = backfill_archive_open(m->user, m->set, &m->archive, &error);
	if (ret <= 0) {
		if (ret == 0) {
			*reason_r = NULL;
			backfill_merge_end(merge_r);
			return 0;
		}
		*reason_r = t_strdup_printf("opening archive: %s", error);
		return merge_begin_failed(merge_r, *reason_r);
	}
	if (backfill_folder_map_build(m->luser, m->archive, m->pool,
	                              &m->folders, &error) < 0 ||
	    backfill_live_boxes_list(m, &error) < 0) {
		*reason_r = t_strdup(error);
		return merge_begin_failed(merge_r, *reason_r);
	}
	backfill_merge_store_wait(m);
	if (backfill_live_journal_load(m, &error) < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		backfill_merge_end(merge_r);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	intent_box_guid_find(m);
	if (backfill_merge_cursor_convert_v1(m, &error) < 0) {
		*reason_r = t_strdup(error);
		return merge_begin_failed(merge_r, *reason_r);
	}
	backfill_merge_cursor_intent_first(m);
	return 1;
}

/* The record says running from now on (not in a dry run). */
static int merge_mark_running(struct backfill_merge **merge_r,
                              const char **reason_r)
{
	struct backfill_merge *m = *merge_r;
	const char *error;
	bool resumed = m->have_cursor;

	if (m->rec.status != BF_MERGE_RUNNING || m->rec.started == 0) {
		m->rec.status = BF_MERGE_RUNNING;
		if (m->rec.started == 0)
			m->rec.started = ioloop_time;
	}
	m->rec.updated = ioloop_time;
	if (m->dry_run)
		return 1;
	backfill_merge_store_wait(m);
	if (bf_state_merge_put(m->state, m->user->username, &m->rec, &error) <
	    0) {
		*reason_r = t_strdup_printf(
		        "merge postponed: the state store is not writable: %s (let the mail user write the store and its directory)",
		        error);
		backfill_merge_end(merge_r);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	e_info(m->event, "merge %s: archive %s, %u folders, %u live folders",
	       resumed ? "resumed" : "started", m->archive->path,
	       array_count(&m->folders), array_count(&m->live_boxes));
	return 1;
}

static int merge_begin(struct mail_user *user,
                       const struct backfill_settings *set,
                       struct bf_state *state, enum backfill_merge_flags flags,
                       const struct backfill_merge_claim *claim,
                       struct backfill_merge **merge_r, const char **reason_r)
{
	struct backfill_merge *m;
	const char *error, *path, *sig;
	int ret;

	*reason_r = NULL;
	m = merge_alloc(user, set, state, flags);
	*merge_r = m;
	if (claim != NULL) {
		i_assert(claim->owner[0] != '\0');
		i_strocpy(m->owner, claim->owner, sizeof(m->owner));
	}
	if (merge_in_session(m)) {
		/* a POP3 login may merge for one progress slice more */
		m->login_deadline = bf_clock_msecs() + set->login_budget_ms +
		                    BACKFILL_PROGRESS_SLICE_MSECS;
	}
	if ((ret = backfill_archive_resolve(user, set, &path, &error)) <= 0) {
		if (ret < 0)
			*reason_r = error;
		else {
			e_debug(m->event, "no archive to merge (%s)",
			        set->archive == NULL ? "backfill_archive unset"
			                             : set->archive);
		}
		backfill_merge_end(merge_r);
		return ret;
	}
	if (backfill_archive_signature(path, &sig, &error) < 0)
		e_warning(m->event, "%s", error);
	else
		m->archive_sig = p_strdup(m->pool, sig);
	backfill_merge_store_wait(m);
	ret = bf_state_merge_get(state, user->username, &m->rec, &error);
	if (ret < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		backfill_merge_end(merge_r);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	if (ret > 0 && merge_done_unchanged(m, TRUE)) {
		e_debug(m->event, "merge already done");
		backfill_merge_end(merge_r);
		return 0;
	}
	if (!m->dry_run && (ret = merge_take_leases(m, claim, reason_r)) <= 0) {
		backfill_merge_end(merge_r);
		return ret;
	}
	if ((ret = merge_prepare(merge_r, reason_r)) <= 0)
		return ret;
	m->fp = bf_fp_new();
	if (m->fp == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "backfill: out of memory");
	if (set->dedup == BACKFILL_DEDUP_OFF)
		m->phase = PHASE_MERGE; /* no live index needed */
	return merge_mark_running(merge_r, reason_r);
}

int backfill_merge_begin_flags(struct mail_user *user,
                               const struct backfill_settings *set,
                               struct bf_state *state,
                               enum backfill_merge_flags flags,
                               struct backfill_merge **merge_r,
                               const char **reason_r)
{
	return merge_begin(user, set, state, flags, NULL, merge_r, reason_r);
}

int backfill_merge_begin_again(struct mail_user *user,
                               const struct backfill_settings *set,
                               struct bf_state *state,
                               const struct backfill_merge_claim *claim,
                               struct backfill_merge **merge_r,
                               const char **reason_r)
{
	return merge_begin(user, set, state, 0, claim, merge_r, reason_r);
}

bool backfill_merge_store_stalled(const struct backfill_merge *m,
                                  struct backfill_merge_claim *claim_r,
                                  const char **error_r)
{
	if (!m->failed || !bf_state_stalled(m->state))
		return FALSE;
	i_zero(claim_r);
	i_strocpy(claim_r->owner, m->owner, sizeof(claim_r->owner));
	claim_r->slot = m->slot;
	claim_r->have_slot = m->have_slot;
	*error_r = m->last_error != NULL ? m->last_error : "(no error kept)";
	return TRUE;
}

void backfill_merge_end(struct backfill_merge **_m)
{
	struct backfill_merge *m = *_m;
	struct live_box *lb;
	const char *error;

	if (m == NULL)
		return;
	*_m = NULL;
	/* A session's end after its login (logout): a deadline of its own
	   for the last commit and the releases.  Not after a failure, which
	   commits nothing, nor when the store's last call stalled: the
	   releases get what is left of that call's deadline (a stalled store
	   does not answer them either, and the next merge of the session
	   takes them back, see backfill_merge_begin_again()). */
	if (merge_in_session(m) && !m->failed && !bf_state_stalled(m->state) &&
	    bf_clock_msecs() >= m->login_deadline)
		backfill_merge_login_over(m);
	if (m->phase == PHASE_MERGE && !m->failed &&
	    (m->ltrans != NULL || m->cursor_dirty)) {
		/* session end: keep what the last slices did */
		backfill_merge_walk_slice_end(m);
		if (backfill_merge_batch_commit(m) < 0)
			backfill_merge_record_failure(m);
	}
	if (m->ltrans != NULL)
		mailbox_transaction_rollback(&m->ltrans);
	backfill_merge_walk_close(m);
	backfill_merge_landed_close(m);
	if (m->lbox != NULL)
		mailbox_free(&m->lbox);
	if (hash_table_is_created(m->live_uidls))
		hash_table_destroy(&m->live_uidls);
	pool_unref(&m->uidl_pool);
	if (array_is_created(&m->live_boxes)) {
		array_foreach_modifiable(&m->live_boxes, lb)
		{
			if (lb->box != NULL)
				mailbox_free(&lb->box);
		}
	}
	backfill_archive_close(&m->archive);
	if (m->luser != NULL)
		mail_user_deinit(&m->luser);
	if (m->fp != NULL)
		bf_fp_free(&m->fp);
	backfill_merge_store_wait(m);
	if (m->have_slot) {
		(void)bf_state_slot_release(m->state, my_hostname, m->slot,
		                            m->owner, &error);
	}
	if (m->have_lease) {
		(void)bf_state_lease_release(
		        m->state, backfill_merge_lease_name(m->user->username),
		        m->owner, &error);
	}
	/* the handle's own wait limit again (the session's user may use it
	   for more than this merge) */
	if (m->login_deadline != 0)
		bf_state_set_wait_limit(m->state, 0);
	bf_merge_record_clear(&m->rec);
	bf_cursor_free(&m->cursor_in);
	event_unref(&m->event);
	pool_unref(&m->pool);
}

void backfill_merge_get_counts(const struct backfill_merge *m,
                               struct backfill_merge_counts *counts_r)
{
	i_zero(counts_r);
	counts_r->archived = m->rec.archived;
	counts_r->added = m->rec.added;
	counts_r->duplicates = m->rec.duplicates;
	counts_r->skipped = m->rec.skipped;
	counts_r->uidl_collisions = m->rec.uidl_collisions;
	counts_r->bytes = m->dry_bytes;
	counts_r->new_folders = array_count(&m->dry_new_folders) == 0
	                                ? NULL
	                                : array_front(&m->dry_new_folders);
	counts_r->new_folders_count = array_count(&m->dry_new_folders);
	counts_r->uid_ways = backfill_imap_uids_text(m, FALSE);
	counts_r->uid_way_reasons = backfill_imap_uids_text(m, TRUE);
}
