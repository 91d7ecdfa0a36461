/* The merge loop: archive folders one after the other, each in UID order,
   every archived message either a duplicate of a live one (consumed) or
   copied into the mapped live folder in batches (merge-batch.c). */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hash.h"
#include "ioloop.h"
#include "mail-storage-private.h"
#include "mail-namespace.h"
#include "mail-copy.h"
#include "backfill-settings.h"
#include "archive.h"
#include "pop3-uidl.h"
#include "pop3-hide.h"
#include "imap-uids.h"
#include "renumber.h"
#include "merge-private.h"
#include "merge-dirs.h"

/* The flags and keywords a merged copy shows: the archived message's,
   backfill_keyword, and the POP3 hide keyword where it applies.  The same
   for a fresh copy and for one that landed before a crash, whose keywords
   Dovecot may not have recorded (Maildir keeps their letters in the file
   name and their names in dovecot-keywords, written later). */
static struct mail_keywords *merge_keywords(struct backfill_merge *m,
                                            struct mail *amail)
{
	ARRAY_TYPE(const_string) kw_list;
	const char *const *akw;
	bool have_kw = FALSE;

	t_array_init(&kw_list, 8);
	akw = mail_get_keywords(amail);
	for (; akw != NULL && *akw != NULL; akw++) {
		if (m->set->keyword != NULL &&
		    strcasecmp(*akw, m->set->keyword) == 0)
			have_kw = TRUE;
		array_push_back(&kw_list, akw);
	}
	if (m->set->keyword != NULL && !have_kw)
		array_push_back(&kw_list, &m->set->keyword);
	if (backfill_pop3_hide_wanted(m->set, mailbox_get_vname(m->lbox),
	                              mail_get_flags(amail))) {
		const char *hide = BACKFILL_POP3_HIDE_KEYWORD;
		array_push_back(&kw_list, &hide);
	}
	array_append_zero(&kw_list);
	return mailbox_keywords_create_valid(m->lbox, array_front(&kw_list));
}

static int merge_copy(struct backfill_merge *m, struct mail *amail,
                      uint32_t uid, enum mail_flags flags,
                      struct mail_keywords *kw, const char *uidl,
                      const char **error_r)
{
	struct mail_save_context *save;

	save = mailbox_save_alloc(m->ltrans);
	mailbox_save_set_flags(save, flags, kw);
	backfill_imap_uids_save(m, save, uid);
	/* No received date here: mailbox_copy() takes it from amail
	   (mail_save_copy_default_metadata() when it copies; a hardlink
	   shares the file whose mtime it is).  Looking it up would cost a
	   stat() of every archived file that a hardlink copy never needs. */
	/* a copy at its archive UID in a folder with the archive's
	   UIDVALIDITY shows the old UIDL by itself: nothing to store */
	if (uidl[0] != '\0' && backfill_imap_uids_uidl_needed(m, amail))
		mailbox_save_set_pop3_uidl(save, uidl);
	if (mailbox_copy(&save, amail) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	return 0;
}

/* The live side's problem, not the message's (quota, a full disk, a
   temporary failure): skipping the message would lose it for good. */
static bool copy_error_is_live(struct backfill_merge *m)
{
	enum mail_error mail_error;

	(void)mailbox_get_last_internal_error(m->lbox, &mail_error);
	return mail_error == MAIL_ERROR_NOQUOTA ||
	       mail_error == MAIL_ERROR_TEMP || mail_error == MAIL_ERROR_PERM;
}

/* Copies one archived message into the batch (or takes the copy that
   landed before a crash).  Returns 0, or -1 if the merge must stop. */
static int merge_add(struct backfill_merge *m,
                     const struct backfill_folder *folder, uint32_t uid,
                     struct mail *amail, const struct backfill_mail_keys *keys,
                     const char *uidl)
{
	const char *error;

	if (m->dry_run) {
		uoff_t size;
		if (mail_get_physical_size(amail, &size) == 0)
			m->dry_bytes += size;
		m->rec.added++;
		return 0;
	}
	struct batch_item *item = array_append_space(&m->batch);
	item->entry.mailbox = folder->live_vname;
	item->entry.mailbox_guid = m->lbox_guid;
	item->entry.archive_mailbox = folder->archive_vname;
	item->entry.archive_uid = uid;
	memcpy(item->entry.fingerprint, keys->fp, BF_FP_SIZE);
	enum mail_flags flags = mail_get_flags(amail) & ~MAIL_RECENT;
	struct mail_keywords *kw = merge_keywords(m, amail);
	const char *landed_uidl =
	        uidl != NULL && backfill_imap_uids_uidl_needed(m, amail) ? uidl
	                                                                 : NULL;
	if (backfill_merge_landed_take(m, amail, landed_uidl, flags, kw,
	                               item)) {
		mailbox_keywords_unref(&kw);
		m->rec.added++;
		return 0;
	}

	if (backfill_merge_batch_begin(m, &error) < 0) {
		mailbox_keywords_unref(&kw);
		backfill_merge_log_error(m, "%s: %s", folder->live_vname,
		                         error);
		return -1;
	}
	int ret = merge_copy(m, amail, uid, flags, kw, uidl == NULL ? "" : uidl,
	                     &error);
	mailbox_keywords_unref(&kw);
	if (ret < 0) {
		if (copy_error_is_live(m)) {
			backfill_merge_log_error(
			        m,
			        "merge postponed: saving into %s failed: %s (the next login retries)",
			        folder->live_vname, error);
			return -1;
		}
		/* A message Dovecot cannot copy is a broken one: skip it,
		   the rest of the batch goes on. */
		e_warning(m->event,
		          "%s/uid %u: skipped, copying to %s failed: %s",
		          folder->archive_vname, uid, folder->live_vname,
		          error);
		array_pop_back(&m->batch);
		m->rec.skipped++;
		return 0;
	}
	item = array_back_modifiable(&m->batch);
	item->saved = TRUE;
	if (uidl != NULL)
		backfill_live_uidl_merged(m, uidl);
	m->rec.added++;
	return 0;
}

/* A symlink in the archive is never followed (archive.h): skipped,
   logged with its path, counted (status shows the count in last_error,
   kept when the merge finishes). */
static void symlink_skipped(struct backfill_merge *m, bool folder,
                            const char *what, const char *path)
{
	if (folder)
		m->folder_links++;
	else
		m->symlinks++;
	e_warning(m->event, "%s: skipped, a symlink is never followed: %s",
	          what, path);
	if (m->dry_run)
		return;
	i_free(m->rec.last_error);
	m->rec.last_error = i_strdup(backfill_merge_one_line(
	        t_strdup_printf(BACKFILL_SYMLINK_NOTE "%u, the last %s (%s)",
	                        m->symlinks + m->folder_links, what, path)));
	m->cursor_dirty = TRUE;
}

/* One archived message.  Returns 0, or -1 if the merge must stop. */
static int merge_one(struct backfill_merge *m,
                     const struct backfill_folder *folder, uint32_t uid)
{
	struct backfill_mail_keys keys;
	struct mail *amail = backfill_merge_walk_mail(m);
	const char *error, *uidl;
	int ret;

	if (backfill_merge_merged_already(m, uid))
		return 0;
	/* folder_open() opened m->lbox (NULL only in a dry run, for a live
	   folder that would be created) */
	i_assert(m->lbox != NULL || m->dry_run);
	if (!mail_set_uid(amail, uid))
		return 0;
	if (backfill_archive_mail_linked(m->afiles, amail, &error)) {
		m->rec.archived++;
		m->rec.skipped++;
		backfill_merge_cursor_advance(m, uid);
		symlink_skipped(m, FALSE,
		                t_strdup_printf("%s/uid %u",
		                                folder->archive_vname, uid),
		                error);
		return 0;
	}
	ret = backfill_mail_keys_get(amail, NULL, m->fp, TRUE, &keys, &error);
	if (ret == 0)
		return 0;
	m->rec.archived++;
	backfill_merge_cursor_advance(m, uid);
	if (ret < 0) {
		e_warning(m->event, "%s/uid %u: skipped, cannot be read: %s",
		          folder->archive_vname, uid, error);
		m->rec.skipped++;
		return 0;
	}
	m->batch_last_uid = uid;
	/* a copy that landed before a crash first: the user's mail in its
	   UID range is in the live index (merge-batch.c), and consuming it
	   would leave the landed copy unjournalled */
	if (!backfill_merge_landed_match(m, amail, uid) &&
	    backfill_live_dedup_consume(m, &keys)) {
		m->rec.duplicates++;
		return 0;
	}
	if (keys.no_header) {
		e_info(m->event,
		       "%s/uid %u: no header section, merged as it is",
		       folder->archive_vname, uid);
	}

	if (backfill_pop3_uidl_get(amail, m->walk.uidvalidity,
	                           m->pop3_uidl_format, &uidl, &error) < 0) {
		e_warning(m->event, "%s/uid %u: no POP3 UIDL kept: %s",
		          folder->archive_vname, uid, error);
		uidl = NULL;
	}
	if (backfill_live_uidl_check(m, folder, uid, &uidl) < 0)
		return -1;
	return merge_add(m, folder, uid, amail, &keys, uidl);
}

void backfill_merge_folder_close(struct backfill_merge *m)
{
	if (m->ltrans != NULL)
		mailbox_transaction_rollback(&m->ltrans);
	backfill_merge_walk_close(m);
	m->cur_cf = UINT_MAX;
	backfill_merge_landed_close(m);
	if (m->lbox != NULL)
		mailbox_free(&m->lbox);
	if (hash_table_is_created(m->live_uidls))
		hash_table_destroy(&m->live_uidls);
	pool_unref(&m->uidl_pool);
}

/* A dry run opens the live folder only if it exists and remembers the
   ones that would be created.  Returns 1, 0 when Dovecot refuses the live
   name (folder-map.h), -1 on error. */
static int merge_open_live(struct backfill_merge *m,
                           const struct backfill_folder *folder,
                           const char **error_r)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	enum mailbox_existence existence;
	const char *const *name;

	if (!m->dry_run) {
		struct mailbox_update update;
		return backfill_folder_open_live(
		        m->luser, folder,
		        backfill_imap_uids_create_update(m, &update), m->event,
		        &m->lbox, error_r);
	}
	ns = mail_namespace_find(m->luser->namespaces, folder->live_vname);
	box = mailbox_alloc(ns->list, folder->live_vname,
	                    MAILBOX_FLAG_READONLY);
	if (mailbox_exists(box, TRUE, &existence) < 0) {
		*error_r = t_strdup_printf(
		        "live folder %s: %s", folder->live_vname,
		        mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return -1;
	}
	if (existence != MAILBOX_EXISTENCE_SELECT) {
		bool creatable = backfill_folder_live_creatable(box, error_r);
		mailbox_free(&box);
		if (!creatable)
			return 0;
		array_foreach(&m->dry_new_folders, name)
		{
			if (strcmp(*name, folder->live_vname) == 0)
				return 1;
		}
		const char *copy = p_strdup(m->pool, folder->live_vname);
		array_push_back(&m->dry_new_folders, &copy);
		return 1;
	}
	/* A folder Dovecot autocreates but never made is empty; opening it
	   would make it, and a plan writes nothing (the merge would then
	   find it made, by someone else as far as it can tell). */
	if (mailbox_exists(box, FALSE, &existence) == 0 &&
	    existence != MAILBOX_EXISTENCE_SELECT) {
		mailbox_free(&box);
		return 1;
	}
	if (mailbox_sync(box, 0) < 0) {
		*error_r = t_strdup_printf(
		        "syncing live folder %s: %s", folder->live_vname,
		        mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return -1;
	}
	m->lbox = box;
	return 1;
}

/* A message delivered after the merge gets the next live UID.  When the
   live folder reuses the archive's UIDVALIDITY (or the format has no %v),
   its computed UIDL can be one that a merged copy keeps from the old
   server, if that UID was an archived one: typical after expunges left
   gaps in the old UIDs, which the merge does not use up.  A POP3 client
   of the old server would take the new message for one it has and never
   download it.  Raising the live UIDNEXT to the archive's (which also
   covers UIDs of messages expunged before the backup, whose UIDLs clients
   may remember) plus backfill_imap_uid_margin (the UIDs the old server
   gave mail after the backup, which the crash lost: imap-uids.c) rules
   that out; existing UIDs and the UIDVALIDITY stay. */
static int live_uidnext_raise(struct backfill_merge *m, const char **error_r)
{
	struct mailbox_status lstatus;
	struct mailbox_update update;

	if (!backfill_pop3_uidl_by_uid(m->pop3_uidl_format, m->lbox_uidvalidity,
	                               m->walk.uidvalidity))
		return 0;
	if (mailbox_get_status(m->lbox, STATUS_UIDNEXT, &lstatus) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	/* the archive's UIDNEXT and the margin, kept below the top
	   (imap-uids.c) */
	if (lstatus.uidnext >= m->uid_keep_next)
		return 0;
	i_zero(&update);
	update.min_next_uid = m->uid_keep_next;
	if (mailbox_update(m->lbox, &update) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	e_debug(m->event,
	        "%s: UIDNEXT raised from %u to %u, past the archive's UIDs and backfill_imap_uid_margin (their POP3 UIDLs stay unique)",
	        mailbox_get_vname(m->lbox), lstatus.uidnext, m->uid_keep_next);
	return 0;
}

#define FOLDER_UNREADABLE_HINT                                                 \
	"check the restored files; a backup that dropped empty cur/ new/ tmp/ directories needs them back, then doveadm backfill reset -u USER merges them"

/* An archive folder that cannot be read: the merge goes on with the other
   folders and can finish; the record's last_error keeps saying what is
   missing, for doveadm backfill status (written with the next
   checkpoint). */
static void folder_skip(struct backfill_merge *m,
                        const struct backfill_folder *folder, const char *error,
                        const char *hint)
{
	const char *line = t_strdup_printf(BACKFILL_SKIPPED_NOTE "%s: %s (%s)",
	                                   folder->archive_vname, error, hint);

	e_error(m->event, "%s", backfill_folder_log_name(line));
	if (!m->dry_run) {
		i_free(m->rec.last_error);
		m->rec.last_error = i_strdup(backfill_merge_one_line(line));
		m->cursor_dirty = TRUE;
	}
	backfill_merge_walk_close(m);
}

/* The live folder's side of folder_open(), once it is open. */
static int folder_open_live_state(struct backfill_merge *m,
                                  const struct backfill_folder *folder)
{
	struct mailbox_status status;
	const char *error;

	mailbox_get_open_status(m->lbox, STATUS_UIDVALIDITY, &status);
	m->lbox_uidvalidity = status.uidvalidity;
	const char *guid = backfill_mailbox_guid_str(m->lbox);
	m->lbox_guid = p_strdup(m->pool, guid == NULL ? "" : guid);
	m->lbox_live_idx = backfill_live_box_find(m, folder->live_vname);
	m->batch_max = mail_storage_copy_can_use_hardlink(m->walk.box, m->lbox)
	                       ? BACKFILL_BATCH_MAX_LINK
	                       : BACKFILL_BATCH_MAX;
	if (backfill_imap_uids_live_opened(m, folder) < 0)
		return -1;
	/* a folder that takes the archive's UIDs gets its UIDNEXT when it is
	   done (backfill_imap_uids_folder_done()) */
	if (!m->dry_run && !backfill_imap_uids_taken(m) &&
	    live_uidnext_raise(m, &error) < 0) {
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s: raising UIDNEXT past the archive's UIDs failed: %s (the next login retries)",
		        folder->live_vname, error);
		return -1;
	}
	if (backfill_live_uidls_load(m, &error) < 0) {
		backfill_merge_log_error(m, "%s: reading POP3 UIDLs: %s",
		                         folder->live_vname, error);
		return -1;
	}
	if (m->intent && m->intent_cf == m->cur_cf &&
	    backfill_merge_landed_load(m, &error) < 0) {
		backfill_merge_log_error(m, "%s: %s", folder->live_vname,
		                         error);
		return -1;
	}
	return 0;
}

/* Opens the archive folder and its live target.  Returns 1 to merge it,
   0 when it is skipped, -1 on error. */
static int folder_open(struct backfill_merge *m,
                       const struct backfill_folder *folder)
{
	struct mailbox *abox;
	const char *error;

	abox = mailbox_alloc(m->archive->ns->list, folder->archive_vname,
	                     MAILBOX_FLAG_READONLY);
	if (backfill_archive_folder_linked(m->archive, abox, &error)) {
		mailbox_free(&abox);
		symlink_skipped(m, TRUE,
		                t_strdup_printf("archive folder %s",
		                                folder->archive_vname),
		                error);
		return 0;
	}
	if (backfill_archive_files_load(m->archive, abox, m->pool, &m->afiles,
	                                &error) < 0) {
		mailbox_free(&abox);
		folder_skip(m, folder, error, FOLDER_UNREADABLE_HINT);
		return 0;
	}
	if (backfill_archive_files_storage_linked(m->afiles, &error)) {
		mailbox_free(&abox);
		symlink_skipped(
		        m, TRUE,
		        t_strdup_printf("archive folder %s (mdbox storage)",
		                        folder->archive_vname),
		        error);
		return 0;
	}
	if (backfill_merge_walk_open(m, abox, &error) < 0) {
		folder_skip(m, folder, error, FOLDER_UNREADABLE_HINT);
		return 0;
	}
	if (backfill_merge_cursor_folder(m, folder, &error) < 0) {
		folder_skip(
		        m, folder, error,
		        "restore it under another name to merge it as a folder of its own");
		return 0;
	}
	if (backfill_imap_uids_decide(m, folder) < 0) {
		backfill_merge_walk_close(m);
		return -1;
	}
	int ret = merge_open_live(m, folder, &error);
	if (ret == 0) {
		/* no live folder can ever take it: skipped, not a stop */
		for (unsigned int i = m->walk.pos;
		     i < array_count(&m->walk.uids); i++) {
			m->rec.archived++;
			m->rec.skipped++;
			backfill_merge_cursor_advance(
			        m, *array_idx(&m->walk.uids, i));
		}
		folder_skip(
		        m, folder, error,
		        "rename the folder in the restored archive, then doveadm backfill run -u USER");
		return 0;
	}
	if (ret < 0) {
		backfill_merge_log_error(m, "%s", error);
		backfill_merge_walk_close(m);
		return -1;
	}
	if (m->lbox == NULL) {
		/* dry run: a live folder that would be created, empty */
		m->lbox_guid = "";
		m->lbox_live_idx = UINT_MAX;
		m->uidl_pool = pool_alloconly_create("backfill uidls", 1024);
		hash_table_create(&m->live_uidls, m->uidl_pool, 0, str_hash,
		                  strcmp);
		return 1;
	}
	if (folder_open_live_state(m, folder) < 0) {
		backfill_merge_folder_close(m);
		return -1;
	}
	return 1;
}

/* One step of merging.  Returns 1 when a folder is finished, 0 after a
   message, -1 on error. */
static int merge_step(struct backfill_merge *m)
{
	const struct backfill_folder *folder = array_idx(&m->folders, m->idx);
	int ret;

	if (!m->walk_open) {
		if ((ret = folder_open(m, folder)) <= 0)
			return ret < 0 ? -1 : 1;
	}
	if (m->walk.pos < array_count(&m->walk.uids)) {
		uint32_t uid = *array_idx(&m->walk.uids, m->walk.pos++);
		if (merge_one(m, folder, uid) < 0)
			return -1;
		if (array_count(&m->batch) >= m->batch_max ||
		    backfill_merge_landed_batch_end(m)) {
			backfill_merge_walk_slice_end(m);
			if (backfill_merge_batch_commit(m) < 0)
				return -1;
		}
		return 0;
	}
	/* end of folder: the batch's intent must still name this folder */
	backfill_merge_walk_slice_end(m);
	if (backfill_renumber_move_pending(m)) {
		/* a renumbering this process began and the deadline stopped
		   (renumber.c): it goes on */
		ret = backfill_renumber_move(m);
	} else {
		ret = backfill_merge_batch_commit(m);
		if (ret == 0)
			ret = backfill_imap_uids_folder_done(m);
	}
	if (ret == 0 && backfill_renumber_move_pending(m))
		return 0;
	backfill_merge_folder_close(m);
	return ret < 0 ? -1 : 1;
}

/* Something for backfill_merge_end() to commit. */
static bool merge_has_progress(const struct backfill_merge *m)
{
	return m->phase == PHASE_MERGE &&
	       (m->ltrans != NULL || m->cursor_dirty);
}

/* One step of whichever phase the merge is in.  Returns 1 when a folder
   is finished, 0 to go on, -1 on error; PHASE_FINISHED when done. */
static int merge_phase_step(struct backfill_merge *m)
{
	int ret;

	if (m->phase == PHASE_LIVE_INDEX) {
		if (m->idx >= array_count(&m->live_boxes)) {
			backfill_live_index_sort(m);
			backfill_merge_consumed_apply(m);
			m->phase = PHASE_MERGE;
			m->idx = 0;
			return 0;
		}
		T_BEGIN
			ret = backfill_live_index_step(m);
		T_END;
		return ret;
	}
	if (m->idx >= array_count(&m->folders)) {
		backfill_merge_dirs_unread(m);
		backfill_merge_finish(m);
		m->phase = PHASE_FINISHED;
		return 0;
	}
	T_BEGIN
		ret = merge_step(m);
	T_END;
	return ret;
}

static int merge_failed(struct backfill_merge *m)
{
	m->failed = TRUE;
	backfill_merge_record_failure(m);
	return -1;
}

int backfill_merge_loop_run(struct backfill_merge *m, unsigned int budget_ms,
                            bool must_progress)
{
	uint64_t deadline = bf_clock_msecs() + budget_ms;
	bool extended = FALSE;
	int ret = 0;

	/* the first run is the login's, the next ones are IMAP slices */
	if (m->runs++ > 0)
		backfill_merge_login_over(m);
	if (backfill_merge_leases_renew(m) < 0)
		return merge_failed(m);
	/* the session's (backfill_merge_login_over()); doveadm has none */
	m->run_deadline = m->login_deadline != 0 ? deadline : 0;
	m->move_progress = FALSE;
	while (ret >= 0 && m->phase != PHASE_FINISHED) {
		ret = merge_phase_step(m);
		if (ret > 0) {
			m->idx++;
			ret = 0;
		}
		if (m->phase == PHASE_FINISHED || bf_clock_msecs() < deadline)
			continue;
		if (!must_progress || extended)
			break;
		if (merge_has_progress(m) || m->move_progress) {
			/* overrun anyway: make it worth it */
			deadline = bf_clock_msecs() +
			           BACKFILL_PROGRESS_SLICE_MSECS;
			if (m->run_deadline != 0)
				m->run_deadline = deadline;
			extended = TRUE;
		}
	}
	if (ret < 0)
		return merge_failed(m);
	if (m->phase == PHASE_FINISHED)
		return 1;
	/* The batch stays open between slices (see luser) until it is full
	   or old enough: each commit costs fsyncs of the mailbox and of the
	   state store, which would otherwise dominate short slices. */
	backfill_merge_walk_slice_end(m);
	if (merge_has_progress(m) &&
	    bf_clock_msecs() - m->batch_started >= BACKFILL_BATCH_MAX_MSECS &&
	    backfill_merge_batch_commit(m) < 0)
		return merge_failed(m);
	return 0;
}
