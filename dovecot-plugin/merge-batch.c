/* Batches and checkpoints: how the merge keeps the live mailbox and the
   state store in step (merge.c's top comment, "Crash safety"). */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ioloop.h"
#include "hostpid.h"
#include "backfill-settings.h"
#include "mail-storage-private.h"
#include "mail-search-build.h"
#include "mail-namespace.h"
#include "merge-private.h"
#include "imap-uids.h"
#include "renumber.h"

#include <ctype.h>

/* ---- batches ---- */

int backfill_merge_batch_begin(struct backfill_merge *m, const char **error_r)
{
	struct mailbox_status status;

	if (m->ltrans != NULL)
		return 0;
	/* No mailbox_sync() here: on Maildir it re-reads cur/ (changed by
	   our own last commit) and makes a merge quadratic.  The index
	   already knows our own commits; a UIDNEXT made stale by another
	   process's delivery is only lower, and landed copies are matched by
	   GUID anyway. */
	if (mailbox_get_status(m->lbox, STATUS_UIDNEXT, &status) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	m->batch_uidnext = status.uidnext;
	m->ltrans = mailbox_transaction_begin(
	        m->lbox,
	        MAILBOX_TRANSACTION_FLAG_EXTERNAL |
	                MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS,
	        __func__);
	return 0;
}

void backfill_merge_counts_committed(struct backfill_merge *m)
{
	m->rec_committed.archived = m->rec.archived;
	m->rec_committed.added = m->rec.added;
	m->rec_committed.duplicates = m->rec.duplicates;
	m->rec_committed.skipped = m->rec.skipped;
}

/* The batch's state after a checkpoint (or, in a dry run, instead of
   one). */
static void batch_checkpointed(struct backfill_merge *m)
{
	struct cursor_folder *cf;

	array_clear(&m->batch);
	backfill_merge_counts_committed(m);
	m->cursor_dirty = FALSE;
	array_foreach_modifiable(&m->cfolders, cf) cf->high_committed =
	        cf->high;
	m->consumed_committed = array_count(&m->consumed);
	m->batch_started = bf_clock_msecs();
}

/* The record the intent writes: like its cursor (the last checkpoint's
   position, merge-cursor.c), its counters are the last checkpoint's.  The
   run that resumes after a crash walks the batch again from there and
   counts each of its messages once more, the landed copies it takes too:
   with this batch's counts in the intent's record, a batch cut before its
   checkpoint was counted twice (after 10 kills test_doveadm_kill's status
   said 1926 added, 123 duplicates, 2049 archived for an archive of 1500
   messages: 1400, 100, 1500 uninterrupted). */
static struct bf_merge_record batch_intent_record(struct backfill_merge *m)
{
	struct bf_merge_record rec = m->rec;

	rec.archived = m->rec_committed.archived;
	rec.added = m->rec_committed.added;
	rec.duplicates = m->rec_committed.duplicates;
	rec.skipped = m->rec_committed.skipped;
	return rec;
}

/* The UID range a new intent names in the live folder.  A batch of a
   rerun takes the copies that landed before the crash (landed_fix()
   repairs them) and may save more: its intent replaced the one naming the
   landed copies, and a SIGKILL between its mailbox commit and its
   checkpoint left them in no journal and under no intent; the next run
   took them for the user's own mail (revert kept them) or, with
   backfill_dedup=mailbox or off, copied their messages a second time
   (test_merge_cut_twice).  So a pending intent of this folder and live
   folder keeps its range: the new one names both batches' copies.  Copies
   that landed in another live folder (the archive folder renamed since)
   do not fit in one intent: their batch ends at the intent's last UID
   (backfill_merge_landed_batch_end()). */
/* The intent names this process as one that commits its batch: a copy
   whose GUID a cut Maildir commit lost is taken by its bytes only if its
   file name is this process's (landed_name_of()).  A kept range
   keeps the processes that committed its earlier batches; one of an
   older build (none named) stays so.  An intent naming
   BF_CURSOR_SAVERS_MAX processes already (as many runs cut one after
   the other at this very batch) does not name more: a copy of a later
   one that lost its GUID is copied again, a duplicate, never a user's
   message taken (backfill_merge_landed_load() leaves such a file out of
   the live index too). */
static void batch_intent_savers(struct backfill_merge *m, bool keep)
{
	const char *savers = m->intent_savers == NULL ? "" : m->intent_savers;
	char *tag = bf_cursor_saver_tag(my_pid, my_hostname);

	if (tag == NULL)
		i_fatal_status(FATAL_OUTOFMEM,
		               "bf_cursor_saver_tag(): Out of memory");
	if (!keep || strcmp(savers, BF_CURSOR_SAVERS_NONE) == 0) {
		if (strcmp(savers, tag) != 0)
			m->intent_savers = p_strdup(m->pool, tag);
	} else if (savers[0] != '\0' && !bf_cursor_savers_has(savers, tag) &&
	           bf_cursor_savers_count(savers) < BF_CURSOR_SAVERS_MAX) {
		m->intent_savers =
		        p_strdup_printf(m->pool, "%s,%s", savers, tag);
	}
	free(tag);
}

/* After a failed mailbox commit: no file this process named lost its
   GUID (a failed Maildir commit unlinks the files it moved,
   maildir_transaction_save_commit_pre(); one whose commit got past the
   files has their uidlist lines).  But this process lives on, and in an
   IMAP session it saves the user's own mail under names of the same PID:
   an APPEND of an archived message's exact bytes would be taken by the
   next run as the batch's copy.  So the intent stops naming it ("-" when
   it named no other process), on record before the merge stops.  The
   same after a good mailbox commit whose checkpoint (or the flush before
   it) failed: the copies have their GUIDs on record, and the process
   lives on (review s8 M2).  If the store fails too, the intent names it
   still: a byte-identical APPEND in that session can then be taken.  A
   time bound on the process's file names does not close that: Maildir
   names a copy whose GUID carries no size during the commit
   (maildir_filename_check_conflicts()), after the intent is written. */
static void batch_intent_withdraw(struct backfill_merge *m)
{
	const char *error;
	char *tag = bf_cursor_saver_tag(my_pid, my_hostname);
	string_t *left = t_str_new(64);

	if (tag == NULL)
		i_fatal_status(FATAL_OUTOFMEM,
		               "bf_cursor_saver_tag(): Out of memory");
	const char *const *savers = t_strsplit(
	        m->intent_savers == NULL ? "" : m->intent_savers, ",");
	for (; *savers != NULL; savers++) {
		if ((*savers)[0] == '\0' || strcmp(*savers, tag) == 0)
			continue;
		if (str_len(left) > 0)
			str_append_c(left, ',');
		str_append(left, *savers);
	}
	free(tag);
	m->intent_savers =
	        p_strdup(m->pool, str_len(left) == 0 ? BF_CURSOR_SAVERS_NONE
	                                             : str_c(left));
	backfill_merge_record_set_cursor(m, TRUE);
	struct bf_merge_record rec = batch_intent_record(m);
	backfill_merge_store_wait(m);
	if (bf_state_merge_put(m->state, m->user->username, &rec, &error) < 0) {
		e_warning(m->event,
		          "the batch's intent still names this process: %s",
		          error);
	}
}

static void batch_intent_range(struct backfill_merge *m)
{
	if (m->intent && m->intent_cf == m->cur_cf &&
	    backfill_merge_landed_in_lbox(m)) {
		m->intent_uidnext = I_MIN(m->intent_uidnext, m->batch_uidnext);
		m->intent_last_uid =
		        I_MAX(m->intent_last_uid, m->batch_last_uid);
		batch_intent_savers(m, TRUE);
		return;
	}
	m->intent_uidnext = m->batch_uidnext;
	m->intent_last_uid = m->batch_last_uid;
	batch_intent_savers(m, FALSE);
}

bool backfill_merge_landed_batch_end(const struct backfill_merge *m)
{
	if (!m->intent || m->landed_box == NULL || m->intent_cf != m->cur_cf ||
	    array_count(&m->batch) == 0)
		return FALSE;
	const struct cursor_folder *cf = array_idx(&m->cfolders, m->cur_cf);
	return cf->high >= m->intent_last_uid;
}

/* Steps 1 and 2 of a batch: the intent on record, then the mailbox
   commit; the items saved learn their live UIDs. */
static int batch_commit_mailbox(struct backfill_merge *m)
{
	struct mail_transaction_commit_changes changes;
	struct seq_range_iter iter;
	struct batch_item *item;
	const char *error;
	unsigned int n = 0;

	batch_intent_range(m);
	m->intent = TRUE;
	m->intent_cf = m->cur_cf;
	m->intent_box_guid = m->lbox_guid;
	backfill_merge_record_set_cursor(m, TRUE);
	struct bf_merge_record intent_rec = batch_intent_record(m);
	backfill_merge_store_wait(m);
	if (bf_state_merge_put(m->state, m->user->username, &intent_rec,
	                       &error) < 0) {
		mailbox_transaction_rollback(&m->ltrans);
		backfill_merge_log_error(
		        m, "merge postponed: %s (the next login retries)",
		        error);
		return -1;
	}
	if (mailbox_transaction_commit_get_changes(&m->ltrans, &changes) < 0) {
		backfill_merge_log_error(
		        m, "%s: saving merged messages failed: %s",
		        mailbox_get_vname(m->lbox),
		        mailbox_get_last_internal_error(m->lbox, NULL));
		batch_intent_withdraw(m);
		return -1;
	}
	seq_range_array_iter_init(&iter, &changes.saved_uids);
	array_foreach_modifiable(&m->batch, item)
	{
		uint32_t uid = 0;
		if (!item->saved)
			continue;
		if (!seq_range_array_iter_nth(&iter, n++, &uid))
			uid = 0;
		item->entry.uid = uid;
		backfill_imap_uids_saved(m, item);
	}
	pool_unref(&changes.pool);
	return 0;
}

/* Whether the checkpoint ends the intent of a batch that may have
   landed before a crash.  Only a batch of the intent's own folder (whose
   walk took or copied again every message of it) or a new intent does:
   the resumed merge checkpoints the folders it passes on its way there,
   and dropping the intent then left the landed copies of a folder the
   killed run was filling (a new Trash, say) unjournalled, so the merge
   copied them a second time and the first copies, whose keyword names
   Maildir had not written yet, showed unknown-N (test_doveadm_kill with
   BF_KILL_WINDOW=1). */
static void batch_intent_settle(struct backfill_merge *m, bool any_saved)
{
	if (!m->intent || (!any_saved && m->intent_cf != m->cur_cf))
		return;
	/* an empty batch of the intent's folder (a slice that ended before
	   the walk reached the batch) has taken nothing of it yet */
	const struct cursor_folder *cf = array_idx(&m->cfolders, m->cur_cf);
	if (!any_saved && cf->high < m->intent_last_uid)
		return;
	m->intent = FALSE;
	array_clear(&m->landed);
	backfill_merge_landed_close(m);
}

/* Makes what the batch changed in messages already in the live folder
   durable before the checkpoint says it is done.  Maildir keeps such
   changes in memory: mail_update_pop3_uidl() only marks dovecot-uidlist
   for a rewrite, which happens when the mailbox is closed (a save's
   commit appends to the file without rewriting it), and flag and keyword
   changes reach the file names and dovecot-keywords with the next sync.
   A SIGKILL after the checkpoint lost them: a landed copy repaired by the
   rerun kept no UIDL and showed Dovecot's own, and a live message whose
   UIDL a merged one took kept it too (test_doveadm_kill).  Only after a
   crash or a UIDL collision: nothing to do in a plain batch. */
static int box_fixes_flush(struct mailbox *box)
{
	struct mailbox_status status;
	struct mailbox_update update;

	if (mailbox_sync(box, 0) < 0)
		return -1;
	/* rewrites dovecot-uidlist when it has changes pending
	   (maildir_uidlist_update()); UIDNEXT stays what it is */
	mailbox_get_open_status(box, STATUS_UIDNEXT, &status);
	i_zero(&update);
	update.min_next_uid = status.uidnext;
	return mailbox_update(box, &update);
}

static int batch_fixes_flush(struct backfill_merge *m, struct mailbox **box_r)
{
	if (!m->batch_fixed &&
	    m->rec.uidl_collisions == m->uidl_collisions_flushed)
		return 0;
	*box_r = m->lbox;
	if (box_fixes_flush(m->lbox) < 0)
		return -1;
	/* landed copies repaired in the live folder they landed in */
	*box_r = m->landed_box;
	if (m->landed_box != NULL && box_fixes_flush(m->landed_box) < 0)
		return -1;
	m->batch_fixed = FALSE;
	m->uidl_collisions_flushed = m->rec.uidl_collisions;
	return 0;
}

/* Commits the batch as described in merge.c, then checkpoints.  Also
   used with an empty batch to store the cursor. */
int backfill_merge_batch_commit(struct backfill_merge *m)
{
	ARRAY(struct bf_journal_entry) entries;
	const struct batch_item *item;
	const char *error;
	bool any_saved = FALSE;

	if (m->dry_run) {
		batch_checkpointed(m);
		return 0;
	}
	array_foreach(&m->batch, item)
	{
		if (item->saved)
			any_saved = TRUE;
	}
	if (!any_saved && array_count(&m->batch) == 0 && !m->cursor_dirty) {
		if (m->ltrans != NULL)
			mailbox_transaction_rollback(&m->ltrans);
		return 0;
	}
	if (any_saved) {
		if (batch_commit_mailbox(m) < 0)
			return -1;
		backfill_crash_point("batch-committed");
	} else if (m->ltrans != NULL) {
		mailbox_transaction_rollback(&m->ltrans);
	}

	struct mailbox *fixed_box;
	if (m->lbox != NULL && batch_fixes_flush(m, &fixed_box) < 0) {
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s: writing repaired messages failed: %s (the next login retries)",
		        mailbox_get_vname(fixed_box),
		        mailbox_get_last_internal_error(fixed_box, NULL));
		if (any_saved)
			batch_intent_withdraw(m);
		return -1;
	}

	/* 3. checkpoint: journal + cursor, one transaction */
	batch_intent_settle(m, any_saved);
	backfill_merge_record_set_cursor(m, FALSE);
	t_array_init(&entries, array_count(&m->batch) + 1);
	array_foreach(&m->batch, item)
	{
		array_push_back(&entries, &item->entry);
	}
	backfill_merge_store_wait(m);
	if (bf_state_merge_checkpoint(
	            m->state, m->user->username, &m->rec,
	            array_count(&entries) == 0 ? NULL : array_front(&entries),
	            array_count(&entries), &error) < 0) {
		backfill_merge_log_error(
		        m, "merge postponed: %s (the next login retries)",
		        error);
		if (any_saved)
			batch_intent_withdraw(m);
		return -1;
	}
	batch_checkpointed(m);
	if (any_saved)
		backfill_crash_point("batch-checkpointed");
	return backfill_imap_uids_checkpointed(m);
}

/* ---- a batch that may have landed before a crash ---- */

HASH_TABLE_DEFINE_TYPE(landed_guids, char *, void *);

/* The live folder the intent's batch was committed to, by its GUID: the
   archive folder may have been renamed since (the cursor matches it by
   GUID or UIDVALIDITY, issue 15 item 1), and then it maps to another live
   folder than the one its copies landed in.  Looking for them in lbox
   found none: they stayed in the old live folder, in no journal, and the
   batch was copied a second time (a batch of Work cut before its
   checkpoint, Work renamed Zwork: 200 duplicates that revert could not
   remove).  The copies stay where they landed and are journalled there;
   the rest of the folder goes where the folder map says.  Returns 1 with
   the folder (lbox, or landed_box opened here), 0 when it is gone (the
   user deleted it, and the copies with it), -1 on error. */
bool backfill_merge_landed_in_lbox(const struct backfill_merge *m)
{
	return m->intent_box_guid == NULL || m->intent_box_guid[0] == '\0' ||
	       strcmp(m->intent_box_guid, m->lbox_guid) == 0;
}

static int landed_box_get(struct backfill_merge *m, struct mailbox **box_r,
                          const char **error_r)
{
	enum mailbox_flags flags = m->dry_run ? MAILBOX_FLAG_READONLY : 0;
	const struct live_box *lb;
	enum mail_error error;
	guid_128_t guid;

	if (backfill_merge_landed_in_lbox(m)) {
		*box_r = m->lbox;
		return 1;
	}
	/* by the GUIDs the live index read; without one (backfill_dedup=off
	   reads none) Dovecot looks it up in the inbox namespace */
	array_foreach(&m->live_boxes, lb)
	{
		if (lb->guid != NULL &&
		    strcmp(lb->guid, m->intent_box_guid) == 0) {
			struct mail_namespace *ns = mail_namespace_find(
			        m->luser->namespaces, lb->vname);
			m->landed_box =
			        mailbox_alloc(ns->list, lb->vname, flags);
		}
	}
	if (m->landed_box == NULL) {
		if (guid_128_from_string(m->intent_box_guid, guid) < 0)
			return 0;
		struct mail_namespace *ns =
		        mail_namespace_find_inbox(m->luser->namespaces);
		m->landed_box = mailbox_alloc_guid(ns->list, guid, flags);
	}
	if (mailbox_open(m->landed_box) < 0) {
		const char *errstr =
		        mailbox_get_last_internal_error(m->landed_box, &error);
		*error_r = t_strdup_printf("live folder %s: %s",
		                           m->intent_box_guid, errstr);
		backfill_merge_landed_close(m);
		/* deleted by the user since, and the copies with it */
		return error == MAIL_ERROR_NOTFOUND ? 0 : -1;
	}
	m->landed_vname = p_strdup(m->pool, mailbox_get_vname(m->landed_box));
	e_info(m->event,
	       "a batch that a crash cut before its checkpoint landed in live folder %s, which its archive folder (renamed since) no longer maps to: its copies stay there and are journalled there, the rest goes to %s",
	       m->landed_vname, mailbox_get_vname(m->lbox));
	*box_r = m->landed_box;
	return 1;
}

void backfill_merge_landed_close(struct backfill_merge *m)
{
	if (m->landed_box != NULL)
		mailbox_free(&m->landed_box);
	m->landed_vname = NULL;
}

/* Whether live message mail, with GUID guid, may be a copy of the
   intent's batch whose GUID a cut commit lost, to be found by its bytes.
   Only on Maildir: mdbox and sdbox keep the GUID in the message's own
   file and in the index entry the save appends, so a copy they show has
   it.  Maildir keeps it in dovecot-uidlist only (a save names the file
   anew: maildir_filename_check_conflicts()), and a kill after the file
   moved into cur/ and before the uidlist was written leaves a copy whose
   GUID is its file name.  Such a name is maildir_filename_generate()'s,
   SECS.MUSECS"P"PID.HOST, made in the process that committed the batch.
   A message the user APPENDs meanwhile with the archived message's
   exact bytes (a client uploading its local copy) is named by the
   user's IMAP process: taking it by its bytes gave it the archive's flags
   and UIDL, journalled it and revert deleted it, one copy short (review
   s7 F7).  Two processes never share a PID on a host at the same time;
   the same PID on the same host between the cut and the resume would
   take the PIDs wrapping around.  An intent of an older build names no
   process: any name then, as before. */
enum landed_name {
	/* not a Maildir message whose GUID is its file name: by GUID only */
	LANDED_NAME_NONE,
	/* named by a process of the intent: may be a copy that lost its
	   GUID, taken by its bytes */
	LANDED_NAME_SAVER,
	/* named by another process (or not by maildir_filename_generate()) */
	LANDED_NAME_OTHER,
};

static enum landed_name landed_name_of(struct backfill_merge *m,
                                       struct mail *mail, const char *guid)
{
	const char *name, *p, *pid, *host;

	if (strcmp(mail->box->storage->name, "maildir") != 0 ||
	    mail_get_special(mail, MAIL_FETCH_STORAGE_ID, &name) < 0 ||
	    strcmp(name, guid) != 0)
		return LANDED_NAME_NONE;
	if (m->intent_savers == NULL || m->intent_savers[0] == '\0')
		return LANDED_NAME_SAVER;
	/* SECS.MUSECSPPID.HOST[,S=size,W=vsize] */
	for (p = name; i_isdigit(*p); p++)
		;
	if (p == name || p[0] != '.' || p[1] != 'M')
		return LANDED_NAME_OTHER;
	for (p += 2; i_isdigit(*p); p++)
		;
	if (*p++ != 'P')
		return LANDED_NAME_OTHER;
	for (pid = p; i_isdigit(*p); p++)
		;
	if (p == pid || *p != '.')
		return LANDED_NAME_OTHER;
	pid = t_strdup_until(pid, p);
	host = t_strcut(p + 1, ',');
	if (host[0] == '\0')
		return LANDED_NAME_OTHER;
	char *tag = bf_cursor_saver_tag(pid, host);
	if (tag == NULL)
		i_fatal_status(FATAL_OUTOFMEM,
		               "bf_cursor_saver_tag(): Out of memory");
	bool ret = bf_cursor_savers_has(m->intent_savers, tag);
	free(tag);
	return ret ? LANDED_NAME_SAVER : LANDED_NAME_OTHER;
}

/* The GUIDs of the archived messages the intent's batch may have copied:
   the archive folder's from the walk's position (the last checkpoint's)
   up to the intent's last UID.  Only on the resume of a cut batch. */
static void landed_archive_guids(struct backfill_merge *m, pool_t pool,
                                 HASH_TABLE_TYPE(landed_guids) * guids_r)
{
	struct mailbox_transaction_context *t;
	struct mail *mail;
	const char *guid;

	hash_table_create(guids_r, pool, 0, str_hash, strcmp);
	t = mailbox_transaction_begin(m->walk.box, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	for (unsigned int i = m->walk.pos; i < array_count(&m->walk.uids);
	     i++) {
		uint32_t uid = *array_idx(&m->walk.uids, i);
		if (uid > m->intent_last_uid)
			break;
		if (mail_set_uid(mail, uid) &&
		    mail_get_special(mail, MAIL_FETCH_GUID, &guid) == 0 &&
		    guid[0] != '\0')
			hash_table_update(*guids_r, p_strdup(pool, guid),
			                  POINTER_CAST(1));
	}
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
}

static const char *landed_box_guid(const struct backfill_merge *m)
{
	return m->landed_box != NULL ? m->intent_box_guid : m->lbox_guid;
}

/* A live message from the intent's UIDNEXT on that no archived message
   of the batch can have as its copy (neither its GUID nor, by its file
   name, its bytes: landed_name_of()) is the user's own mail,
   delivered or APPENDed since the crash or the failed commit.  A first
   run counts it for dedup like any live message; out of the live index,
   an archived message of the batch that had not landed was copied beside
   it (a secondary MX redelivering mail the archive has: the content
   twice, where an uninterrupted merge after the delivery kept it once).
   Into the live index, once per merge; the landed copies stay out of it
   (backfill_live_added_by_backfill()).  Consumed if the cursor says so:
   the live-index phase left it out, so backfill_merge_consumed_apply()
   did not mark it, and a checkpoint that kept the intent (a session that
   ended inside its range) may have recorded an archived message taking
   it.  Unconsumed, it was consumed a second time by a later archived
   message with the same content, and the next checkpoint dropped the
   record of the first: with two archived copies and one delivered, the
   merge ended one copy short (review s8 M1). */
static void landed_live_consumed(struct backfill_merge *m, struct live_msg *lm)
{
	const struct live_box *lb = array_idx(&m->live_boxes, lm->box_idx);
	struct consumed c;

	if (lb->guid == NULL ||
	    !bf_cursor_consumed_has(&m->cursor_in, lb->guid, lm->uid))
		return;
	lm->consumed = TRUE;
	i_zero(&c);
	c.box_idx = lm->box_idx;
	c.uid = lm->uid;
	/* on record already: among the committed ones, which an intent
	   written before the next checkpoint keeps (cursor_format()) */
	array_insert(&m->consumed, m->consumed_committed, &c, 1);
	m->consumed_committed++;
}

static void landed_live_add(struct backfill_merge *m, struct mail *mail,
                            const struct backfill_cache_fields *cf,
                            unsigned int box_idx)
{
	struct backfill_mail_keys keys;
	const char *error;
	int ret;

	ret = backfill_mail_keys_get(mail, cf, m->fp, FALSE, &keys, &error);
	if (ret < 0) {
		e_warning(m->event, "%s/uid %u: not used for dedup: %s",
		          mailbox_get_vname(mail->box), mail->uid, error);
	}
	if (ret <= 0)
		return;
	struct live_msg *lm = array_append_space(&m->live);
	memcpy(lm->hdr_key, keys.hdr_key, BF_FP_SIZE);
	memcpy(lm->fp, keys.fp, BF_FP_SIZE);
	lm->fp_set = keys.fp_set;
	lm->uid = mail->uid;
	lm->box_idx = box_idx;
	landed_live_consumed(m, lm);
}

/* For a batch that may have landed: the live messages with UID >= the
   recorded UIDNEXT, by GUID, with their sizes. */
int backfill_merge_landed_load(struct backfill_merge *m, const char **error_r)
{
	HASH_TABLE_TYPE(landed_guids) archive_guids;
	struct backfill_cache_fields cf;
	struct mailbox_transaction_context *t;
	struct mail_search_context *ctx;
	struct mailbox *box;
	struct mail *mail;
	const char *guid;
	unsigned int box_idx = UINT_MAX;
	int ret;

	p_array_init(&m->landed, m->pool, 16);
	if ((ret = landed_box_get(m, &box, error_r)) <= 0)
		return ret;
	ret = 0;
	/* A kill after Maildir wrote dovecot-uidlist and before it committed
	   the index leaves the batch's copies in the uidlist only, and a plain
	   sync did not read them back: they were copied again
	   (test_merge_imap_uids, KilledRuns: 2 runs of 5).  Only on a resume
	   with an intent, so the full resync is rare.  Only on Maildir: on
	   mdbox the index is the record of the copies a commit made, and a
	   forced resync there is a rebuild of the user's whole storage. */
	if (mailbox_sync(box, strcmp(box->storage->name, "maildir") == 0
	                              ? MAILBOX_SYNC_FLAG_FORCE_RESYNC
	                              : 0) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	if (!m->landed_live_added && m->set->dedup != BACKFILL_DEDUP_OFF) {
		box_idx = m->landed_box == NULL
		                  ? m->lbox_live_idx
		                  : backfill_live_box_find(m, m->landed_vname);
		backfill_cache_fields_register(box, &cf);
	}
	pool_t guids_pool =
	        pool_alloconly_create("backfill landed guids", 4096);
	bool added = FALSE;
	bool savers_full = bf_cursor_savers_count(m->intent_savers) >=
	                   BF_CURSOR_SAVERS_MAX;

	landed_archive_guids(m, guids_pool, &archive_guids);
	t = mailbox_transaction_begin(box, 0, __func__);
	ctx = backfill_merge_search_uids(t, m->intent_uidnext, (uint32_t)-1);
	while (mailbox_search_next(ctx, &mail)) {
		if (mail->uid < m->intent_uidnext ||
		    mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0)
			continue;
		enum landed_name named = landed_name_of(m, mail, guid);
		bool by_bytes = named == LANDED_NAME_SAVER;
		if (!by_bytes &&
		    hash_table_lookup(archive_guids, guid) == NULL) {
			/* may be a copy of a process the full list left
			   out (batch_intent_savers()): neither taken nor
			   consumed, its message is copied again (review s8
			   L1) */
			if (named == LANDED_NAME_OTHER && savers_full)
				continue;
			if (box_idx != UINT_MAX &&
			    !backfill_live_journalled(m, landed_box_guid(m),
			                              mail->uid)) {
				landed_live_add(m, mail, &cf, box_idx);
				added = TRUE;
			}
			continue;
		}
		struct landed *l = array_append_space(&m->landed);
		l->guid = p_strdup(m->pool, guid);
		l->uid = mail->uid;
		/* a copy without its GUID is found by its bytes
		   (landed_find()); the size rules out the others unread */
		const char *error;
		l->by_bytes = by_bytes;
		l->size_set = by_bytes && backfill_mail_same_size(
		                                  mail, &l->size, &error) > 0;
	}
	if (mailbox_search_deinit(&ctx) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	hash_table_destroy(&archive_guids);
	pool_unref(&guids_pool);
	if (added)
		backfill_live_index_sort(m);
	if (box_idx != UINT_MAX)
		m->landed_live_added = TRUE;
	return ret;
}

/* Whether the live message uid of the landed copies' folder is amail's
   copy, byte for byte (backfill_mail_same_content()). */
static bool landed_same_content(struct backfill_merge *m, struct mail *amail,
                                uint32_t uid)
{
	struct mailbox_transaction_context *t;
	struct mail *mail;
	const char *error;
	int ret = 0;

	t = mailbox_transaction_begin(
	        m->landed_box != NULL ? m->landed_box : m->lbox, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	if (mail_set_uid(mail, uid)) {
		ret = backfill_mail_same_content(amail, mail, &error);
		if (ret < 0) {
			e_warning(
			        m->event,
			        "live UID %u: not taken for a landed copy, it cannot be compared: %s",
			        uid, error);
		}
	}
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
	return ret > 0;
}

/* The copy of amail that landed before the crash: the live message with
   its GUID; else, for a copy Maildir renamed into cur/ and whose GUID (its
   file name had no size in it: the GUID stays only in dovecot-uidlist)
   a crash kept from being written, one with its exact bytes, among the
   files a process of the intent named (landed_name_of()).  Never by
   the dedup fingerprint: the same mail delivered again by LMTP meanwhile
   (the secondary MX flushing its queue) has the archived message's
   fingerprint, and taking it gave the user's delivery the archive's flags
   and UIDL and put it into the journal, so revert deleted it (review s7
   F8).  Only on the resume of a cut batch, for archived messages no GUID
   matches: the compare reads messages of equal size only. */
static struct landed *landed_find(struct backfill_merge *m, struct mail *amail,
                                  const char *guid)
{
	struct landed *l;
	const char *error;
	uoff_t size;

	array_foreach_modifiable(&m->landed, l)
	{
		if (!l->used && strcmp(l->guid, guid) == 0)
			return l;
	}
	bool any = FALSE;
	array_foreach_modifiable(&m->landed, l)
	{
		if (!l->used && l->size_set)
			any = TRUE;
	}
	if (!any || backfill_mail_same_size(amail, &size, &error) <= 0)
		return NULL;
	array_foreach_modifiable(&m->landed, l)
	{
		if (!l->used && l->size_set && l->size == size &&
		    landed_same_content(m, amail, l->uid))
			return l;
	}
	return NULL;
}

/* Makes sure a landed copy shows what a fresh copy shows: Maildir may
   have died after moving the file into cur/ and before writing its UIDL
   into dovecot-uidlist, or the names of its keywords (their letters are
   in the file name) into dovecot-keywords: the copy then shows unknown-N
   keywords, and a client or POP3 would see another message than the
   uninterrupted merge gives (found by SIGKILL between commit and
   checkpoint in test_doveadm_kill). */
/* kw (made for lbox, whose index numbers its keywords) for box. */
static struct mail_keywords *keywords_for(struct mailbox *lbox,
                                          const struct mail_keywords *kw,
                                          struct mailbox *box)
{
	const ARRAY_TYPE(keywords) *names =
	        mail_index_get_keywords(lbox->index);
	ARRAY_TYPE(const_string) list;

	t_array_init(&list, kw->count + 1);
	for (unsigned int i = 0; i < kw->count; i++)
		array_push_back(&list, array_idx(names, kw->idx[i]));
	array_append_zero(&list);
	return mailbox_keywords_create_valid(box, array_front(&list));
}

static void landed_fix(struct backfill_merge *m, uint32_t uid, const char *uidl,
                       enum mail_flags flags, struct mail_keywords *kw)
{
	struct mailbox_transaction_context *t;
	struct mail_keywords *box_kw = NULL;
	struct mail *mail;
	const char *cur;

	if (m->landed_box != NULL) {
		box_kw = keywords_for(m->lbox, kw, m->landed_box);
		kw = box_kw;
	}
	t = mailbox_transaction_begin(
	        m->landed_box != NULL ? m->landed_box : m->lbox, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	if (mail_set_uid(mail, uid)) {
		if (uidl != NULL &&
		    mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND, &cur) ==
		            0 &&
		    strcmp(cur, uidl) != 0)
			mail_update_pop3_uidl(mail, uidl);
		mail_update_flags(mail, MODIFY_REPLACE, flags);
		mail_update_keywords(mail, MODIFY_REPLACE, kw);
		m->batch_fixed = TRUE;
	}
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
	if (box_kw != NULL)
		mailbox_keywords_unref(&box_kw);
}

bool backfill_merge_landed_match(struct backfill_merge *m, struct mail *amail,
                                 uint32_t uid)
{
	const char *guid;

	m->landed_match = NULL;
	if (!m->intent || m->intent_cf != m->cur_cf ||
	    uid > m->intent_last_uid ||
	    mail_get_special(amail, MAIL_FETCH_GUID, &guid) < 0)
		return FALSE;
	m->landed_match = landed_find(m, amail, guid);
	return m->landed_match != NULL;
}

bool backfill_merge_landed_take(struct backfill_merge *m, struct mail *amail,
                                const char *uidl, enum mail_flags flags,
                                struct mail_keywords *kw,
                                struct batch_item *item)
{
	struct landed *l = m->landed_match;

	if (l == NULL)
		return FALSE;
	m->landed_match = NULL;
	l->used = TRUE;
	item->entry.uid = l->uid;
	if (m->landed_box != NULL) {
		/* journalled where it is; its UID is not one of lbox's */
		item->entry.mailbox = m->landed_vname;
		item->entry.mailbox_guid = m->intent_box_guid;
	} else {
		backfill_imap_uids_saved(m, item);
	}
	landed_fix(m, l->uid, uidl, flags, kw);
	return TRUE;
}
