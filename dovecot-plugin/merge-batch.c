/* Batches and checkpoints: how the merge keeps the live mailbox and the
   state store in step (merge.c's top comment, "Crash safety"), and the
   cursor on record that says how far it got. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ioloop.h"
#include "mail-storage-private.h"
#include "mail-search-build.h"
#include "merge-private.h"

/* ---- cursor ---- */

int backfill_merge_cursor_parse(struct backfill_merge *m, const char *text,
                                const char **error_r)
{
	struct bf_cursor *c = &m->cursor_in;

	if (bf_cursor_parse(text, c, error_r) < 0)
		return -1;
	if (text == NULL || text[0] == '\0')
		return 0;
	m->have_cursor = TRUE;
	m->cursor_folder = c->folder;
	m->cursor_uid = c->uid;
	m->intent = c->intent;
	m->intent_folder = c->intent_folder;
	m->intent_uidnext = c->intent_uidnext;
	m->intent_last_uid = c->intent_last_uid;
	return 0;
}

void backfill_merge_consumed_apply(struct backfill_merge *m)
{
	struct live_msg *lm;

	if (m->cursor_in.consumed_count > 0) {
		array_foreach_modifiable(&m->live, lm)
		{
			const struct live_box *lb =
			        array_idx(&m->live_boxes, lm->box_idx);
			if (!bf_cursor_consumed_has(&m->cursor_in, lb->guid,
			                            lm->uid))
				continue;
			struct consumed *c = array_append_space(&m->consumed);
			lm->consumed = TRUE;
			c->box_idx = lm->box_idx;
			c->uid = lm->uid;
		}
	}
	m->consumed_committed = array_count(&m->consumed);
}

/* Is (folder, uid) at or before the cursor: already merged? */
bool backfill_merge_merged_already(struct backfill_merge *m,
                                   unsigned int folder, uint32_t uid)
{
	if (!m->have_cursor)
		return FALSE;
	return folder < m->cursor_folder ||
	       (folder == m->cursor_folder && uid <= m->cursor_uid);
}

/* The current folder is done up to and including uid. */
void backfill_merge_cursor_advance(struct backfill_merge *m, uint32_t uid)
{
	m->cursor_folder = m->idx;
	m->cursor_uid = uid;
	m->have_cursor = TRUE;
	m->cursor_dirty = TRUE;
}

static const char *cursor_format(struct backfill_merge *m, bool with_intent)
{
	struct bf_cursor c;
	const struct consumed *cons;
	unsigned int i, n;

	i_zero(&c);
	if (with_intent) {
		/* The intent is written before the batch's mailbox commit:
		   it keeps the position and dedup state of the last
		   checkpoint, the batch itself is redone from there. */
		c.folder = m->committed_folder;
		c.uid = m->committed_uid;
		c.intent = TRUE;
		c.intent_folder = m->intent_folder;
		c.intent_uidnext = m->intent_uidnext;
		c.intent_last_uid = m->intent_last_uid;
		n = m->consumed_committed;
	} else {
		c.folder = m->cursor_folder;
		c.uid = m->cursor_uid;
		n = array_count(&m->consumed);
	}
	c.consumed = t_new(struct bf_cursor_range, n + 1);
	cons = n == 0 ? NULL : array_front(&m->consumed);
	for (i = 0; i < n; i++) {
		const struct live_box *lb =
		        array_idx(&m->live_boxes, cons[i].box_idx);
		c.consumed[i].guid = lb->guid;
		c.consumed[i].first = c.consumed[i].last = cons[i].uid;
	}
	c.consumed_count = n;
	char *text = bf_cursor_format(&c);
	if (text == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "backfill: out of memory");
	const char *ret = t_strdup(text);
	free(text);
	return ret;
}

void backfill_merge_record_set_cursor(struct backfill_merge *m,
                                      bool with_intent)
{
	i_free(m->rec.cursor);
	m->rec.cursor = i_strdup(cursor_format(m, with_intent));
	m->rec.updated = ioloop_time;
}

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
/* The batch's state after a checkpoint (or, in a dry run, instead of
   one). */
static void batch_checkpointed(struct backfill_merge *m)
{
	array_clear(&m->batch);
	m->cursor_dirty = FALSE;
	m->committed_folder = m->cursor_folder;
	m->committed_uid = m->cursor_uid;
	m->consumed_committed = array_count(&m->consumed);
	m->batch_started = backfill_merge_now_msecs();
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

	m->intent = TRUE;
	m->intent_folder = m->idx;
	m->intent_uidnext = m->batch_uidnext;
	m->intent_last_uid = m->batch_last_uid;
	backfill_merge_record_set_cursor(m, TRUE);
	if (bf_state_merge_put(m->state, m->user->username, &m->rec, &error) <
	    0) {
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
	}
	pool_unref(&changes.pool);
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
	} else if (m->ltrans != NULL) {
		mailbox_transaction_rollback(&m->ltrans);
	}

	/* 3. checkpoint: journal + cursor, one transaction */
	m->intent = FALSE;
	array_clear(&m->landed);
	backfill_merge_record_set_cursor(m, FALSE);
	t_array_init(&entries, array_count(&m->batch) + 1);
	array_foreach(&m->batch, item) array_push_back(&entries, &item->entry);
	if (bf_state_merge_checkpoint(
	            m->state, m->user->username, &m->rec,
	            array_count(&entries) == 0 ? NULL : array_front(&entries),
	            array_count(&entries), &error) < 0) {
		backfill_merge_log_error(
		        m, "merge postponed: %s (the next login retries)",
		        error);
		return -1;
	}
	batch_checkpointed(m);
	return 0;
}

/* ---- a batch that may have landed before a crash ---- */

/* For a batch that may have landed: the live copies with UID >= the
   recorded UIDNEXT, by GUID. */
int backfill_merge_landed_load(struct backfill_merge *m, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_search_args *args;
	struct mail_search_context *ctx;
	struct mail *mail;
	const char *guid;
	int ret = 0;

	p_array_init(&m->landed, m->pool, 16);
	if (mailbox_sync(m->lbox, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	args = mail_search_build_init();
	struct mail_search_arg *arg =
	        mail_search_build_add(args, SEARCH_UIDSET);
	p_array_init(&arg->value.seqset, args->pool, 1);
	seq_range_array_add_range(&arg->value.seqset, m->intent_uidnext,
	                          (uint32_t)-1);
	ctx = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	struct backfill_cache_fields cf;
	backfill_cache_fields_register(m->lbox, &cf);
	while (mailbox_search_next(ctx, &mail)) {
		if (mail->uid < m->intent_uidnext ||
		    mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0)
			continue;
		struct landed *l = array_append_space(&m->landed);
		l->guid = p_strdup(m->pool, guid);
		l->uid = mail->uid;
		/* Maildir renames a copy whose GUID has no size in it and
		   keeps the GUID only in dovecot-uidlist: a crash before that
		   is written leaves a copy that only its content identifies */
		struct backfill_mail_keys keys;
		const char *error;
		if (backfill_mail_keys_get(mail, &cf, m->fp, TRUE, &keys,
		                           &error) > 0) {
			memcpy(l->fp, keys.fp, BF_FP_SIZE);
			l->fp_set = TRUE;
		}
	}
	if (mailbox_search_deinit(&ctx) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	return ret;
}

static struct landed *landed_find(struct backfill_merge *m, const char *guid,
                                  const unsigned char fp[BF_FP_SIZE])
{
	struct landed *l;

	array_foreach_modifiable(&m->landed, l)
	{
		if (!l->used && strcmp(l->guid, guid) == 0)
			return l;
	}
	array_foreach_modifiable(&m->landed, l)
	{
		if (!l->used && l->fp_set && memcmp(l->fp, fp, BF_FP_SIZE) == 0)
			return l;
	}
	return NULL;
}

/* Makes sure a landed copy shows the UIDL it should: Maildir may have
   died after moving the file into cur/ and before writing the UIDL into
   dovecot-uidlist. */
static void landed_fix_uidl(struct backfill_merge *m, uint32_t uid,
                            const char *uidl)
{
	struct mailbox_transaction_context *t;
	struct mail *mail;
	const char *cur;

	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	if (mail_set_uid(mail, uid) &&
	    mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND, &cur) == 0 &&
	    strcmp(cur, uidl) != 0)
		mail_update_pop3_uidl(mail, uidl);
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
}

bool backfill_merge_landed_take(struct backfill_merge *m, struct mail *amail,
                                const struct backfill_mail_keys *keys,
                                const char *uidl, struct batch_item *item)
{
	const char *guid;

	if (!m->intent || m->intent_folder != m->idx ||
	    item->entry.archive_uid > m->intent_last_uid ||
	    mail_get_special(amail, MAIL_FETCH_GUID, &guid) < 0)
		return FALSE;
	struct landed *l = landed_find(m, guid, keys->fp);
	if (l == NULL)
		return FALSE;
	l->used = TRUE;
	item->entry.uid = l->uid;
	if (uidl != NULL)
		landed_fix_uidl(m, l->uid, uidl);
	return TRUE;
}
