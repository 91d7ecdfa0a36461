/* The merge's cursor (cursor.h has the text format): which archive
   folders it has met and how far each is merged, which live copies dedup
   consumed, and a batch that may have landed before a crash.

   Folders are named, never counted.  A restore is staged in real life:
   folders appear, disappear and are renamed in the archive between two
   logins and after the merge is done.  A position in the sorted folder
   list (version 1) then points at another folder: the one restored in
   front of it was never merged and the one the cursor was in was walked
   again from its start (issue 15: 214 duplicates and a missing Drafts,
   with "done" in the status).  Each folder keeps its own high-water UID
   instead, so a folder restored later starts at 0 and one merged before
   goes on where it stopped, whatever came or went around it. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ioloop.h"
#include "mail-storage-private.h"
#include "archive.h"
#include "merge-private.h"
#include "imap-uids.h"

int backfill_merge_cursor_parse(struct backfill_merge *m, const char *text,
                                const char **error_r)
{
	struct bf_cursor *c = &m->cursor_in;

	p_array_init(&m->cfolders, m->pool, 16);
	m->cur_cf = UINT_MAX;
	if (bf_cursor_parse(text, c, error_r) < 0)
		return -1;
	m->have_cursor = c->version != 0;
	m->symlinks = c->symlinks;
	m->intent = c->intent;
	m->intent_uidnext = c->intent_uidnext;
	m->intent_last_uid = c->intent_last_uid;
	m->intent_savers = p_strdup(m->pool, c->intent_savers);
	backfill_merge_counts_committed(m);
	if (c->version != 2)
		return 0;
	for (size_t i = 0; i < c->folders_count; i++) {
		struct cursor_folder *cf = array_append_space(&m->cfolders);
		cf->name = p_strdup(m->pool, c->folders[i].name);
		cf->guid = p_strdup(m->pool, c->folders[i].guid);
		cf->uidvalidity = c->folders[i].uidvalidity;
		cf->high = cf->high_committed = c->folders[i].high;
		backfill_imap_uids_cursor_in(cf, &c->folders[i]);
	}
	m->intent_cf = c->intent_folder;
	if (c->intent && c->intent_live_guid[0] != '\0')
		m->intent_box_guid = p_strdup(m->pool, c->intent_live_guid);
	return 0;
}

static struct cursor_folder *cursor_folder_add(struct backfill_merge *m,
                                               const char *name, uint32_t high)
{
	struct cursor_folder *cf = array_append_space(&m->cfolders);

	cf->name = p_strdup(m->pool, name);
	cf->guid = "";
	cf->high = cf->high_committed = high;
	return cf;
}

static unsigned int folder_pos(struct backfill_merge *m, const char *name)
{
	const struct backfill_folder *f;

	array_foreach(&m->folders, f)
	{
		if (strcmp(f->archive_vname, name) == 0)
			return array_foreach_idx(&m->folders, f);
	}
	return UINT_MAX;
}

/* Everything the journal says was added must lie at or before the
   version 1 position in today's folder list: otherwise folders came or
   went in front of it and the position means another folder now. */
static bool v1_fits_journal(struct backfill_merge *m)
{
	const struct bf_cursor *c = &m->cursor_in;
	const struct box_uid *j;
	uint32_t last = c->v1_uid;

	if (c->intent && c->intent_last_uid > last)
		last = c->intent_last_uid;
	array_foreach(&m->journal_archive, j)
	{
		unsigned int pos = folder_pos(m, j->guid);
		if (pos == UINT_MAX || pos > c->v1_folder ||
		    (pos == c->v1_folder && j->uid > last))
			return FALSE;
	}
	return TRUE;
}

int backfill_merge_cursor_convert_v1(struct backfill_merge *m,
                                     const char **error_r)
{
	const struct bf_cursor *c = &m->cursor_in;
	unsigned int i, count = array_count(&m->folders);

	if (c->version != 1)
		return 0;
	if (c->v1_folder > count ||
	    (c->intent && c->intent_folder != c->v1_folder) ||
	    !v1_fits_journal(m)) {
		*error_r =
		        "the merge record has a version 1 cursor (written before an upgrade) that no longer fits the archive's folders: folders were restored, removed or renamed since; resuming it could merge messages twice or miss some (doveadm backfill revert -u USER, then the next login merges from the start)";
		return -1;
	}
	for (i = 0; i < c->v1_folder; i++) {
		const struct backfill_folder *f = array_idx(&m->folders, i);
		cursor_folder_add(m, f->archive_vname, CURSOR_HIGH_ALL);
	}
	if (c->v1_folder < count) {
		const struct backfill_folder *f =
		        array_idx(&m->folders, c->v1_folder);
		cursor_folder_add(m, f->archive_vname, c->v1_uid);
	}
	const struct backfill_folder *at =
	        c->v1_folder < count ? array_idx(&m->folders, c->v1_folder)
	                             : NULL;
	m->intent_cf = c->v1_folder;
	m->cursor_dirty = TRUE;
	e_info(m->event,
	       "merge cursor converted from version 1: %u archive folders merged before, the merge goes on at UID %u of %s",
	       c->v1_folder, c->v1_uid,
	       at == NULL ? "(none)" : at->archive_vname);
	return 0;
}

static unsigned int cursor_folder_find(struct backfill_merge *m,
                                       const char *name, const char *guid,
                                       uint32_t uidvalidity,
                                       unsigned int *conflict_r);

/* Whether the archive folder at pos is the cursor's folder cf_idx, as
   backfill_merge_cursor_folder() will match it when the walk opens it
   (GUID, else name and UIDVALIDITY, else UIDVALIDITY of a folder whose
   name is gone).  A symlinked folder is never opened (archive.h). */
static bool folder_is_cursor_folder(struct backfill_merge *m, unsigned int pos,
                                    unsigned int cf_idx)
{
	const struct backfill_folder *f = array_idx(&m->folders, pos);
	struct mailbox *box = mailbox_alloc(
	        m->archive->ns->list, f->archive_vname, MAILBOX_FLAG_READONLY);
	struct mailbox_status status;
	const char *guid, *path;
	unsigned int conflict;
	bool ret = FALSE;

	if (!backfill_archive_folder_linked(m->archive, box, &path) &&
	    mailbox_get_status(box, STATUS_UIDVALIDITY, &status) == 0) {
		guid = backfill_mailbox_guid_str(box);
		ret = cursor_folder_find(
		              m, f->archive_vname, guid == NULL ? "" : guid,
		              status.uidvalidity, &conflict) == cf_idx;
	}
	mailbox_free(&box);
	return ret;
}

/* Where the intent's archive folder is in today's folder list, or
   UINT_MAX.  By its name first (one folder opened); renamed since, it is
   looked for among all folders (each opened once, only after a crash cut
   a batch): found by name only, a renamed folder was not walked first and
   a folder restored since in front of it replaced the intent. */
static unsigned int intent_folder_pos(struct backfill_merge *m)
{
	const struct cursor_folder *cf = array_idx(&m->cfolders, m->intent_cf);
	unsigned int pos = folder_pos(m, cf->name), count;

	if (pos != UINT_MAX && folder_is_cursor_folder(m, pos, m->intent_cf))
		return pos;
	count = array_count(&m->folders);
	for (unsigned int i = 0; i < count; i++) {
		if (i != pos && folder_is_cursor_folder(m, i, m->intent_cf))
			return i;
	}
	return pos;
}

/* Only one intent fits in the cursor: a batch of another folder walked
   first (one restored since, in front of it) would replace it with its
   own, and the copies that landed before the crash would be copied a
   second time.  Walking the intent's folder first changes nothing else:
   the folders before it were merged to their end before the crash, and a
   folder restored since is new to the merge either way. */
void backfill_merge_cursor_intent_first(struct backfill_merge *m)
{
	struct backfill_folder first;
	unsigned int pos;

	if (!m->intent || m->cursor_in.version != 2 ||
	    m->intent_cf >= array_count(&m->cfolders))
		return;
	pos = intent_folder_pos(m);
	if (pos == UINT_MAX || pos == 0)
		return;
	first = *array_idx(&m->folders, pos);
	array_delete(&m->folders, pos, 1);
	array_insert(&m->folders, 0, &first, 1);
}

/* The intent stays in the cursor (the next run with the folder back
   settles it; revert refuses meanwhile, its copies being in no journal):
   the operator must learn which folder to restore.  Those copies cannot
   be journalled without their archived messages: the same UIDs may hold
   mail delivered since. */
void backfill_merge_cursor_intent_waiting(struct backfill_merge *m)
{
	if (!m->intent || m->intent_cf >= array_count(&m->cfolders))
		return;
	const struct cursor_folder *cf = array_idx(&m->cfolders, m->intent_cf);
	const char *line = t_strdup_printf(
	        BACKFILL_SKIPPED_NOTE
	        "%s: a batch of it that a crash cut before its checkpoint waits for this folder, which this run did not merge (no longer in the archive, or skipped): its copies in the live mailbox (folder GUID %s, from UID %u on) are in no journal and revert keeps them (restore the folder again, then doveadm backfill run -u %s)",
	        cf->name, m->intent_box_guid == NULL ? "-" : m->intent_box_guid,
	        m->intent_uidnext, m->user->username);
	e_warning(m->event, "%s", line);
	i_free(m->rec.last_error);
	m->rec.last_error = i_strdup(backfill_merge_one_line(line));
}

static bool name_in_archive(struct backfill_merge *m, const char *name)
{
	return folder_pos(m, name) != UINT_MAX;
}

/* The cursor's folder for (name, guid, uidvalidity), or UINT_MAX. */
static unsigned int cursor_folder_find(struct backfill_merge *m,
                                       const char *name, const char *guid,
                                       uint32_t uidvalidity,
                                       unsigned int *conflict_r)
{
	const struct cursor_folder *cf;

	*conflict_r = UINT_MAX;
	array_foreach(&m->cfolders, cf)
	{
		if (!cf->matched && guid[0] != '\0' &&
		    strcmp(cf->guid, guid) == 0)
			return array_foreach_idx(&m->cfolders, cf);
	}
	array_foreach(&m->cfolders, cf)
	{
		if (cf->matched || strcmp(cf->name, name) != 0)
			continue;
		if (cf->uidvalidity == 0 || cf->uidvalidity == uidvalidity ||
		    cf->high == 0)
			return array_foreach_idx(&m->cfolders, cf);
		*conflict_r = array_foreach_idx(&m->cfolders, cf);
		return UINT_MAX;
	}
	array_foreach(&m->cfolders, cf)
	{
		if (!cf->matched && uidvalidity != 0 &&
		    cf->uidvalidity == uidvalidity &&
		    !name_in_archive(m, cf->name))
			return array_foreach_idx(&m->cfolders, cf);
	}
	return UINT_MAX;
}

/* The first UID of the walk after the folder's high-water UID. */
static void walk_skip_merged(struct backfill_merge *m, uint32_t high)
{
	const uint32_t *uids;
	unsigned int lo = 0, hi;

	uids = array_get(&m->walk.uids, &hi);
	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;
		if (uids[mid] <= high)
			lo = mid + 1;
		else
			hi = mid;
	}
	m->walk.pos = lo;
}

int backfill_merge_cursor_folder(struct backfill_merge *m,
                                 const struct backfill_folder *folder,
                                 const char **error_r)
{
	const char *guid = backfill_mailbox_guid_str(m->walk.box);
	uint32_t uidvalidity = m->walk.uidvalidity;
	struct cursor_folder *cf;
	unsigned int conflict;

	if (guid == NULL)
		guid = "";
	unsigned int i = cursor_folder_find(m, folder->archive_vname, guid,
	                                    uidvalidity, &conflict);
	if (conflict != UINT_MAX) {
		cf = array_idx_modifiable(&m->cfolders, conflict);
		*error_r = t_strdup_printf(
		        "its UIDVALIDITY is %u now, %u when the merge last saw it (merged up to UID %u): another folder of that name was restored over it, whose UIDs cannot be told from those merged before",
		        uidvalidity, cf->uidvalidity, cf->high);
		return -1;
	}
	if (i == UINT_MAX) {
		cursor_folder_add(m, folder->archive_vname, 0);
		i = array_count(&m->cfolders) - 1;
	}
	cf = array_idx_modifiable(&m->cfolders, i);
	if (strcmp(cf->name, folder->archive_vname) != 0) {
		e_info(m->event,
		       "archive folder %s is %s renamed (same %s): merged up to UID %u before, the merge goes on there",
		       folder->archive_vname, cf->name,
		       guid[0] != '\0' && strcmp(cf->guid, guid) == 0
		               ? "GUID"
		               : "UIDVALIDITY",
		       cf->high);
		cf->name = p_strdup(m->pool, folder->archive_vname);
	}
	cf->guid = p_strdup(m->pool, guid);
	cf->uidvalidity = uidvalidity;
	cf->matched = TRUE;
	if (cf->high == CURSOR_HIGH_ALL) {
		unsigned int n = array_count(&m->walk.uids);
		cf->high = n == 0 ? 0 : *array_idx(&m->walk.uids, n - 1);
		cf->high_committed = cf->high;
	}
	m->cur_cf = i;
	m->cursor_dirty = TRUE;
	walk_skip_merged(m, cf->high);
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

bool backfill_merge_merged_already(struct backfill_merge *m, uint32_t uid)
{
	const struct cursor_folder *cf = array_idx(&m->cfolders, m->cur_cf);

	return uid <= cf->high;
}

void backfill_merge_cursor_advance(struct backfill_merge *m, uint32_t uid)
{
	struct cursor_folder *cf =
	        array_idx_modifiable(&m->cfolders, m->cur_cf);

	cf->high = uid;
	m->cursor_dirty = TRUE;
}

static const char *cursor_format(struct backfill_merge *m, bool with_intent)
{
	struct bf_cursor c;
	const struct cursor_folder *cf;
	const struct consumed *cons;
	unsigned int i, n;

	i_zero(&c);
	c.signature = m->archive_sig;
	c.symlinks = m->symlinks;
	c.folders_count = array_count(&m->cfolders);
	c.folders = t_new(struct bf_cursor_folder, c.folders_count + 1);
	array_foreach(&m->cfolders, cf)
	{
		struct bf_cursor_folder *f =
		        &c.folders[array_foreach_idx(&m->cfolders, cf)];
		f->name = cf->name;
		f->guid = cf->guid;
		f->uidvalidity = cf->uidvalidity;
		/* The intent is written before the batch's mailbox commit:
		   it keeps the position and dedup state of the last
		   checkpoint, the batch itself is redone from there. */
		f->high = with_intent ? cf->high_committed : cf->high;
		backfill_imap_uids_cursor_out(f, cf);
	}
	/* A pending intent of a folder not reached yet outlives the
	   checkpoints of the folders before it (merge-batch.c) */
	if (with_intent || m->intent) {
		c.intent = TRUE;
		c.intent_folder = m->intent_cf;
		c.intent_live_guid = m->intent_box_guid;
		c.intent_uidnext = m->intent_uidnext;
		c.intent_last_uid = m->intent_last_uid;
		c.intent_savers = m->intent_savers;
	}
	n = with_intent ? m->consumed_committed : array_count(&m->consumed);
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
