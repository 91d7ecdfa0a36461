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
   UIDNEXT and the same GUID: if the copy landed it is journalled (and its
   POP3 UIDL fixed if Maildir died between moving the file and writing
   dovecot-uidlist), else it is copied again.  Messages in that UID range
   are kept out of the live index, so a landed copy never counts as
   pre-existing.

   Resuming.  Which live copies earlier archived messages consumed is part
   of the cursor (live folder GUID and UID ranges), so a resumed merge
   starts right at the cursor instead of re-reading the archive before it:
   a POP3 user whose login budget is smaller than such a replay would
   otherwise never get any further. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hash.h"
#include "hostpid.h"
#include "ioloop.h"
#include "guid.h"
#include "time-util.h"
#include "mail-storage-private.h"
#include "mail-namespace.h"
#include "mail-storage-service.h"
#include "mail-search-build.h"
#include "mail-copy.h"
#include "mailbox-list-iter.h"
#include "fingerprint.h"
#include "state.h"
#include "settings.h"
#include "archive.h"
#include "folder-map.h"
#include "mail-keys.h"
#include "pop3-uidl.h"
#include "pop3-hide.h"
#include "merge.h"

#include <time.h>
#include <sys/resource.h>

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
#define BACKFILL_SKIPPED_NOTE   "archive folder skipped: "
#define BACKFILL_CURSOR_VERSION "1"
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

/* A live message by folder GUID and UID: what the journal and the
   cursor's consumed ranges name. */
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
	unsigned char fp[BF_FP_SIZE];
	bool fp_set;
	bool used;
};

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
	struct timeval started;
	const char *pop3_uidl_format;

	/* Done up to and including (cursor_folder, cursor_uid). */
	unsigned int cursor_folder;
	uint32_t cursor_uid;
	/* ... and as of the last checkpoint */
	unsigned int committed_folder;
	uint32_t committed_uid;
	unsigned int consumed_committed;
	bool have_cursor;
	/* A batch that may have landed before the crash (see top). */
	bool intent;
	unsigned int intent_folder;
	uint32_t intent_uidnext, intent_last_uid;
	ARRAY(struct landed) landed;

	ARRAY_TYPE(backfill_folder) folders;
	ARRAY(struct live_box) live_boxes;
	ARRAY(struct live_msg) live;
	ARRAY(struct box_uid) journal;
	const char *intent_box_guid;
	/* live copies that archived messages consumed (dedup) */
	ARRAY(struct consumed) consumed;
	const char *consumed_text;

	enum merge_phase phase;
	unsigned int idx;
	struct box_walk walk;
	bool walk_open;

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

const char *backfill_merge_lease_name(const char *username)
{
	return t_strconcat("merge/", username, NULL);
}

/* A record's last_error is one line: doveadm's -f tab does not escape. */
static const char *one_line(const char *text)
{
	char *line = t_strdup_noconst(text);

	for (char *p = line; *p != '\0'; p++) {
		if (*p == '\t' || *p == '\r' || *p == '\n')
			*p = ' ';
	}
	return line;
}

static void merge_log_error(struct backfill_merge *m, const char *fmt, ...)
        ATTR_FORMAT(2, 3);
static void merge_log_error(struct backfill_merge *m, const char *fmt, ...)
{
	va_list args;
	const char *msg;

	va_start(args, fmt);
	msg = t_strdup_vprintf(fmt, args);
	va_end(args);
	e_error(m->user->event, "backfill(%s): %s", m->user->username, msg);
	m->last_error = p_strdup(m->pool, one_line(msg));
}

static uint64_t now_msecs(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- cursor ---- */

static int consumed_cmp(const struct consumed *c1, const struct consumed *c2)
{
	if (c1->box_idx != c2->box_idx)
		return c1->box_idx < c2->box_idx ? -1 : 1;
	return c1->uid < c2->uid ? -1 : (c1->uid > c2->uid ? 1 : 0);
}

/* "|GUID:1-5,9;GUID2:3" */
static void consumed_format(struct backfill_merge *m, unsigned int n,
                            string_t *str)
{
	ARRAY(struct consumed) sorted;
	const struct consumed *c;
	unsigned int i, count, prev_box = UINT_MAX;

	if (n == 0)
		return;
	t_array_init(&sorted, n);
	array_append(&sorted, array_front(&m->consumed), n);
	array_sort(&sorted, consumed_cmp);
	c = array_get(&sorted, &count);
	str_append_c(str, '|');
	for (i = 0; i < count;) {
		const struct live_box *lb =
		        array_idx(&m->live_boxes, c[i].box_idx);
		if (c[i].box_idx != prev_box) {
			if (prev_box != UINT_MAX)
				str_append_c(str, ';');
			str_printfa(str, "%s:", lb->guid);
			prev_box = c[i].box_idx;
		} else {
			str_append_c(str, ',');
		}
		unsigned int j = i;
		while (j + 1 < count && c[j + 1].box_idx == c[i].box_idx &&
		       c[j + 1].uid == c[j].uid + 1)
			j++;
		if (j == i)
			str_printfa(str, "%u", c[i].uid);
		else
			str_printfa(str, "%u-%u", c[i].uid, c[j].uid);
		i = j + 1;
	}
}

static const char *cursor_format(struct backfill_merge *m, bool with_intent)
{
	string_t *str = t_str_new(64);

	if (with_intent) {
		/* The intent is written before the batch's mailbox commit:
		   it keeps the position and dedup state of the last
		   checkpoint, the batch itself is redone from there. */
		str_printfa(str, BACKFILL_CURSOR_VERSION ":%u:%u:%u:%u:%u",
		            m->committed_folder, m->committed_uid,
		            m->intent_folder, m->intent_uidnext,
		            m->intent_last_uid);
		consumed_format(m, m->consumed_committed, str);
	} else {
		str_printfa(str, BACKFILL_CURSOR_VERSION ":%u:%u",
		            m->cursor_folder, m->cursor_uid);
		consumed_format(m, array_count(&m->consumed), str);
	}
	return str_c(str);
}

static int box_uid_cmp(const struct box_uid *k1, const struct box_uid *k2)
{
	int ret = strcmp(k1->guid, k2->guid);

	if (ret != 0)
		return ret;
	return k1->uid < k2->uid ? -1 : (k1->uid > k2->uid ? 1 : 0);
}

/* Marks the live copies the cursor says were consumed.  Called once the
   live index is complete. */
static int consumed_apply(struct backfill_merge *m)
{
	ARRAY(struct box_uid) keys;
	const char *const *boxes, *const *ranges;
	struct live_msg *lm;

	if (m->consumed_text == NULL)
		return 0;
	t_array_init(&keys, 64);
	for (boxes = t_strsplit(m->consumed_text, ";"); *boxes != NULL;
	     boxes++) {
		const char *p = strchr(*boxes, ':');
		if (p == NULL)
			return -1;
		const char *guid = t_strdup_until(*boxes, p);
		for (ranges = t_strsplit(p + 1, ","); *ranges != NULL;
		     ranges++) {
			uint32_t first, last;
			const char *dash = strchr(*ranges, '-');
			if (dash == NULL) {
				if (str_to_uint32(*ranges, &first) < 0)
					return -1;
				last = first;
			} else if (str_to_uint32(t_strdup_until(*ranges, dash),
			                         &first) < 0 ||
			           str_to_uint32(dash + 1, &last) < 0 ||
			           last < first) {
				return -1;
			}
			for (uint32_t uid = first;; uid++) {
				struct box_uid *k = array_append_space(&keys);
				k->guid = guid;
				k->uid = uid;
				if (uid == last)
					break;
			}
		}
	}
	array_sort(&keys, box_uid_cmp);
	array_foreach_modifiable(&m->live, lm)
	{
		const struct live_box *lb =
		        array_idx(&m->live_boxes, lm->box_idx);
		struct box_uid key = {.guid = lb->guid, .uid = lm->uid};
		if (array_bsearch(&keys, &key, box_uid_cmp) != NULL) {
			struct consumed *c = array_append_space(&m->consumed);
			lm->consumed = TRUE;
			c->box_idx = lm->box_idx;
			c->uid = lm->uid;
		}
	}
	return 0;
}

static int cursor_parse(struct backfill_merge *m, const char *cursor)
{
	const char *const *args;
	unsigned int count;

	if (cursor == NULL || cursor[0] == '\0')
		return 0;
	const char *bar = strchr(cursor, '|');
	if (bar != NULL) {
		m->consumed_text = p_strdup(m->pool, bar + 1);
		cursor = t_strdup_until(cursor, bar);
	}
	args = t_strsplit(cursor, ":");
	count = str_array_length(args);
	if (strcmp(args[0], BACKFILL_CURSOR_VERSION) != 0 ||
	    (count != 3 && count != 6) ||
	    str_to_uint(args[1], &m->cursor_folder) < 0 ||
	    str_to_uint32(args[2], &m->cursor_uid) < 0)
		return -1;
	m->have_cursor = TRUE;
	if (count == 6) {
		if (str_to_uint(args[3], &m->intent_folder) < 0 ||
		    str_to_uint32(args[4], &m->intent_uidnext) < 0 ||
		    str_to_uint32(args[5], &m->intent_last_uid) < 0)
			return -1;
		m->intent = TRUE;
	}
	return 0;
}

/* Is (folder, uid) at or before the cursor: already merged? */
static bool merged_already(struct backfill_merge *m, unsigned int folder,
                           uint32_t uid)
{
	if (!m->have_cursor)
		return FALSE;
	return folder < m->cursor_folder ||
	       (folder == m->cursor_folder && uid <= m->cursor_uid);
}

/* ---- state store ---- */

static void record_set_cursor(struct backfill_merge *m, bool with_intent)
{
	i_free(m->rec.cursor);
	m->rec.cursor = i_strdup(cursor_format(m, with_intent));
	m->rec.updated = ioloop_time;
}

static int leases_renew(struct backfill_merge *m)
{
	const char *error;
	int ret;

	if (m->dry_run ||
	    ioloop_time - m->last_renew < BACKFILL_LEASE_RENEW_SECS)
		return 0;
	ret = bf_state_lease_renew(
	        m->state, backfill_merge_lease_name(m->user->username),
	        m->owner, ioloop_time, BACKFILL_LEASE_TTL_SECS, &error);
	if (ret == 0) {
		m->lease_lost = TRUE;
		merge_log_error(m, "merge stopped: lost the merge lease to "
		                   "another process (it continues the merge)");
		return -1;
	}
	if (ret == 1) {
		ret = bf_state_slot_renew(m->state, my_hostname, m->slot,
		                          m->owner, ioloop_time,
		                          BACKFILL_LEASE_TTL_SECS, &error);
	}
	if (ret < 0) {
		merge_log_error(m, "merge stopped: %s", error);
		return -1;
	}
	if (ret == 0) {
		/* the lease is still ours: the record is too */
		merge_log_error(m,
		                "merge stopped: lost this host's merge slot "
		                "(backfill_max_parallel) to another process; "
		                "the next login continues");
		return -1;
	}
	m->last_renew = ioloop_time;
	return 0;
}

/* ---- mailbox walking ---- */

static int walk_open(struct backfill_merge *m, struct mailbox *box,
                     const char **error_r)
{
	struct mail_search_args *args;
	struct mail_search_context *ctx;
	struct mailbox_transaction_context *t;
	struct mailbox_status status;
	struct mail *mail;
	int ret = 0;

	i_zero(&m->walk);
	m->walk.box = box;
	if (mailbox_sync(box, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	m->walk.uidvalidity = status.uidvalidity;
	backfill_cache_fields_register(box, &m->walk.cf);
	p_array_init(&m->walk.uids, m->pool, 64);

	t = mailbox_transaction_begin(box, 0, __func__);
	args = mail_search_build_init();
	mail_search_build_add_all(args);
	ctx = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (mailbox_search_next(ctx, &mail))
		array_push_back(&m->walk.uids, &mail->uid);
	if (mailbox_search_deinit(&ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	if (ret < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	m->walk_open = TRUE;
	return 0;
}

/* Transactions never stay open between slices: the IMAP client may use
   the same mailboxes in between.  Their commits store the keys added to
   the mail cache. */
static void walk_slice_end(struct backfill_merge *m)
{
	struct live_box *lb;

	if (m->walk.mail != NULL)
		mail_free(&m->walk.mail);
	if (m->walk.trans != NULL)
		(void)mailbox_transaction_commit(&m->walk.trans);
	if (!array_is_created(&m->live_boxes))
		return;
	array_foreach_modifiable(&m->live_boxes, lb)
	{
		if (lb->mail != NULL)
			mail_free(&lb->mail);
		if (lb->trans != NULL)
			(void)mailbox_transaction_commit(&lb->trans);
	}
}

static struct mail *walk_mail(struct backfill_merge *m)
{
	if (m->walk.trans == NULL) {
		m->walk.trans =
		        mailbox_transaction_begin(m->walk.box, 0, __func__);
		m->walk.mail = mail_alloc(m->walk.trans, 0, NULL);
	}
	return m->walk.mail;
}

static void walk_close(struct backfill_merge *m)
{
	walk_slice_end(m);
	if (m->walk.box != NULL)
		mailbox_free(&m->walk.box);
	m->walk_open = FALSE;
}

/* ---- live index ---- */

static int journal_load_cb(const struct bf_journal_entry *entry, void *context)
{
	struct backfill_merge *m = context;
	struct box_uid *key;

	if (entry->uid == 0 || entry->mailbox_guid == NULL)
		return 0;
	key = array_append_space(&m->journal);
	key->guid = p_strdup(m->pool, entry->mailbox_guid);
	key->uid = entry->uid;
	return 0;
}

static bool added_by_backfill(struct backfill_merge *m,
                              const struct live_box *lb, uint32_t uid)
{
	struct box_uid key = {.guid = lb->guid, .uid = uid};

	if (m->intent && m->intent_box_guid != NULL &&
	    strcmp(lb->guid, m->intent_box_guid) == 0 &&
	    uid >= m->intent_uidnext)
		return TRUE;
	return array_bsearch(&m->journal, &key, box_uid_cmp) != NULL;
}

static const char *mailbox_guid_str(struct mailbox *box)
{
	struct mailbox_metadata md;

	if (mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &md) < 0)
		return NULL;
	return guid_128_to_string(md.guid);
}

static int live_boxes_list(struct backfill_merge *m, const char **error_r)
{
	static const char *const patterns[] = {"*", NULL};
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;

	p_array_init(&m->live_boxes, m->pool, 16);
	iter = mailbox_list_iter_init_namespaces(
	        m->luser->namespaces, patterns, MAIL_NAMESPACE_TYPE_PRIVATE,
	        MAILBOX_LIST_ITER_RETURN_NO_FLAGS |
	                MAILBOX_LIST_ITER_SKIP_ALIASES |
	                MAILBOX_LIST_ITER_NO_AUTO_BOXES);
	while ((info = mailbox_list_iter_next(iter)) != NULL) {
		if ((info->flags & (MAILBOX_NOSELECT | MAILBOX_NONEXISTENT)) !=
		    0)
			continue;
		struct live_box *lb = array_append_space(&m->live_boxes);
		lb->vname = p_strdup(m->pool, info->vname);
	}
	if (mailbox_list_iter_deinit(&iter) < 0) {
		*error_r = "listing live folders failed";
		return -1;
	}
	return 0;
}

static unsigned int live_box_find(struct backfill_merge *m, const char *vname)
{
	const struct live_box *lb;

	array_foreach(&m->live_boxes, lb)
	{
		if (strcmp(lb->vname, vname) == 0)
			return array_foreach_idx(&m->live_boxes, lb);
	}
	return UINT_MAX;
}

static int live_msg_cmp(const struct live_msg *m1, const struct live_msg *m2)
{
	int ret = memcmp(m1->hdr_key, m2->hdr_key, BF_FP_SIZE);

	if (ret != 0)
		return ret;
	/* a fixed order among equal keys: consumption is deterministic */
	if (m1->box_idx != m2->box_idx)
		return m1->box_idx < m2->box_idx ? -1 : 1;
	return m1->uid < m2->uid ? -1 : (m1->uid > m2->uid ? 1 : 0);
}

/* One step of indexing live messages.  Returns 1 when a mailbox is
   finished, 0 after a message, -1 on error. */
static int live_index_step(struct backfill_merge *m)
{
	struct live_box *lb = array_idx_modifiable(&m->live_boxes, m->idx);
	struct backfill_mail_keys keys;
	const char *error;
	int ret;

	if (!m->walk_open) {
		struct mail_namespace *ns =
		        mail_namespace_find(m->luser->namespaces, lb->vname);
		struct mailbox *box = mailbox_alloc(ns->list, lb->vname,
		                                    MAILBOX_FLAG_READONLY);
		if (walk_open(m, box, &error) < 0) {
			/* a live folder we cannot read just does not count
			   for dedup */
			e_warning(m->user->event,
			          "backfill(%s): live folder %s skipped for "
			          "dedup: %s",
			          m->user->username, lb->vname, error);
			lb->guid = "";
			walk_close(m);
			return 1;
		}
		const char *guid = mailbox_guid_str(box);
		lb->guid = p_strdup(m->pool, guid == NULL ? "" : guid);
	}
	if (m->walk.pos >= array_count(&m->walk.uids)) {
		walk_close(m);
		return 1;
	}
	uint32_t uid = *array_idx(&m->walk.uids, m->walk.pos++);
	if (added_by_backfill(m, lb, uid))
		return 0;
	struct mail *mail = walk_mail(m);
	if (!mail_set_uid(mail, uid))
		return 0;
	ret = backfill_mail_keys_get(mail, &m->walk.cf, m->fp, FALSE, &keys,
	                             &error);
	if (ret < 0) {
		e_warning(m->user->event,
		          "backfill(%s): %s/uid %u: not used for dedup: %s",
		          m->user->username, lb->vname, uid, error);
		return 0;
	}
	if (ret == 0)
		return 0;
	struct live_msg *lm = array_append_space(&m->live);
	memcpy(lm->hdr_key, keys.hdr_key, BF_FP_SIZE);
	memcpy(lm->fp, keys.fp, BF_FP_SIZE);
	lm->fp_set = keys.fp_set;
	lm->uid = uid;
	lm->box_idx = m->idx;
	return 0;
}

/* The fingerprint of a live candidate, read (and cached) on first need. */
static int live_msg_fp(struct backfill_merge *m, struct live_msg *lm)
{
	struct live_box *lb = array_idx_modifiable(&m->live_boxes, lm->box_idx);
	struct backfill_mail_keys keys;
	struct mail *mail;
	const char *error;
	int ret;

	if (lm->fp_set)
		return 1;
	if (lb->box == NULL) {
		struct mail_namespace *ns =
		        mail_namespace_find(m->luser->namespaces, lb->vname);
		lb->box = mailbox_alloc(ns->list, lb->vname,
		                        MAILBOX_FLAG_READONLY);
		if (mailbox_open(lb->box) < 0) {
			mailbox_free(&lb->box);
			return 0;
		}
		backfill_cache_fields_register(lb->box, &lb->cf);
	}
	if (lb->trans == NULL) {
		/* one per slice, not one per candidate: each commit writes
		   the cache file */
		lb->trans = mailbox_transaction_begin(lb->box, 0, __func__);
		lb->mail = mail_alloc(lb->trans, 0, NULL);
	}
	mail = lb->mail;
	if (!mail_set_uid(mail, lm->uid))
		ret = 0;
	else {
		ret = backfill_mail_keys_get(mail, &lb->cf, m->fp, TRUE, &keys,
		                             &error);
		if (ret < 0) {
			e_warning(m->user->event,
			          "backfill(%s): %s/uid %u: not used for "
			          "dedup: %s",
			          m->user->username, lb->vname, lm->uid, error);
			ret = 0;
		}
	}
	if (ret > 0) {
		memcpy(lm->fp, keys.fp, BF_FP_SIZE);
		lm->fp_set = TRUE;
	}
	return ret;
}

/* Multiset dedup: consumes one live copy of the message, if any is left.
   Returns TRUE when the archived message is a duplicate. */
static bool dedup_consume(struct backfill_merge *m,
                          const struct backfill_mail_keys *keys)
{
	struct live_msg key, *lm;
	unsigned int i, count, first;

	if (m->set->dedup == BACKFILL_DEDUP_OFF)
		return FALSE;

	/* lower bound of hdr_key in the sorted index */
	i_zero(&key);
	memcpy(key.hdr_key, keys->hdr_key, BF_FP_SIZE);
	lm = array_get_modifiable(&m->live, &count);
	unsigned int lo = 0, hi = count;
	while (lo < hi) {
		unsigned int mid = (lo + hi) / 2;
		if (memcmp(lm[mid].hdr_key, key.hdr_key, BF_FP_SIZE) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	for (i = first; i < count; i++) {
		if (memcmp(lm[i].hdr_key, key.hdr_key, BF_FP_SIZE) != 0)
			break;
		if (lm[i].consumed)
			continue;
		if (m->set->dedup == BACKFILL_DEDUP_MAILBOX &&
		    lm[i].box_idx != m->lbox_live_idx)
			continue;
		/* equal hdr_keys are only candidates: confirm */
		if (live_msg_fp(m, &lm[i]) <= 0)
			continue;
		if (memcmp(lm[i].fp, keys->fp, BF_FP_SIZE) == 0) {
			struct consumed *c = array_append_space(&m->consumed);
			lm[i].consumed = TRUE;
			c->box_idx = lm[i].box_idx;
			c->uid = lm[i].uid;
			return TRUE;
		}
	}
	return FALSE;
}

/* ---- POP3 UIDL collisions ---- */

/* UIDLs that the live folder's own messages show, to catch an archived
   UIDL that a live message already shows (a reused UIDVALIDITY). */
static int live_uidls_load(struct backfill_merge *m, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_search_args *args;
	struct mail_search_context *ctx;
	struct mail *mail;
	const char *uidl;
	int ret = 0;

	m->uidl_pool = pool_alloconly_create("backfill uidls", 4096);
	hash_table_create(&m->live_uidls, m->uidl_pool, 0, str_hash, strcmp);
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	args = mail_search_build_init();
	mail_search_build_add_all(args);
	ctx = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (ret == 0 && mailbox_search_next(ctx, &mail)) {
		if (backfill_pop3_uidl_get(mail, m->lbox_uidvalidity,
		                           m->pop3_uidl_format, &uidl,
		                           error_r) < 0) {
			ret = -1;
			break;
		}
		/* a copy backfill added in an earlier session counts as
		   merged, as it does within one session */
		struct live_box lb = {.guid = m->lbox_guid};
		uint32_t owner = added_by_backfill(m, &lb, mail->uid)
		                         ? BACKFILL_UIDL_OWNER_MERGED
		                         : mail->uid;
		hash_table_update(m->live_uidls, p_strdup(m->uidl_pool, uidl),
		                  POINTER_CAST(owner));
	}
	if (mailbox_search_deinit(&ctx) < 0 && ret == 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	return ret;
}

/* The live message keeps its UID but gets a new stored UIDL: its POP3
   clients download it once more, which beats a client of the old server
   silently skipping a message it never had. */
static int uidl_collision_fix(struct backfill_merge *m, const char *uidl,
                              uint32_t live_uid,
                              const struct backfill_folder *folder,
                              uint32_t archive_uid)
{
	struct mailbox_transaction_context *t;
	struct mail *mail;
	const char *fresh;

	if (m->dry_run) {
		m->rec.uidl_collisions++;
		return 0;
	}
	fresh = t_strdup_printf("bf%08x%08x", live_uid, m->lbox_uidvalidity);
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	if (mail_set_uid(mail, live_uid))
		mail_update_pop3_uidl(mail, fresh);
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0) {
		/* copying now would show one UIDL twice */
		merge_log_error(
		        m,
		        "merge postponed: %s/uid %u: setting a new POP3 "
		        "UIDL failed: %s (the next login retries)",
		        folder->live_vname, live_uid,
		        mailbox_get_last_internal_error(m->lbox, NULL));
		return -1;
	}
	hash_table_remove(m->live_uidls, uidl);
	hash_table_update(m->live_uidls, p_strdup(m->uidl_pool, fresh),
	                  POINTER_CAST(live_uid));
	m->rec.uidl_collisions++;
	e_info(m->user->event,
	       "backfill(%s): %s/uid %u showed POP3 UIDL %s, which the old "
	       "server showed for archive %s/uid %u: it now shows %s "
	       "(POP3 clients download it once more)",
	       m->user->username, folder->live_vname, live_uid, uidl,
	       folder->archive_vname, archive_uid, fresh);
	return 0;
}

/* ---- batches ---- */

static int batch_begin(struct backfill_merge *m, const char **error_r)
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

/* Commits the batch as described at the top, then checkpoints.  Also
   used with an empty batch to store the cursor. */
static int batch_commit(struct backfill_merge *m)
{
	struct mail_transaction_commit_changes changes;
	struct seq_range_iter iter;
	struct batch_item *item;
	ARRAY(struct bf_journal_entry) entries;
	const char *error;
	unsigned int n = 0;
	bool any_saved = FALSE;

	if (m->dry_run) {
		array_clear(&m->batch);
		m->cursor_dirty = FALSE;
		m->committed_folder = m->cursor_folder;
		m->committed_uid = m->cursor_uid;
		m->consumed_committed = array_count(&m->consumed);
		m->batch_started = now_msecs();
		return 0;
	}
	array_foreach_modifiable(&m->batch, item)
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
		/* 1. intent */
		m->intent = TRUE;
		m->intent_folder = m->idx;
		m->intent_uidnext = m->batch_uidnext;
		m->intent_last_uid = m->batch_last_uid;
		record_set_cursor(m, TRUE);
		if (bf_state_merge_put(m->state, m->user->username, &m->rec,
		                       &error) < 0) {
			mailbox_transaction_rollback(&m->ltrans);
			merge_log_error(m,
			                "merge postponed: %s (the next login "
			                "retries)",
			                error);
			return -1;
		}
		/* 2. mailbox commit */
		if (mailbox_transaction_commit_get_changes(&m->ltrans,
		                                           &changes) < 0) {
			merge_log_error(
			        m,
			        "%s: saving merged messages "
			        "failed: %s",
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
	} else if (m->ltrans != NULL) {
		mailbox_transaction_rollback(&m->ltrans);
	}

	/* 3. checkpoint: journal + cursor, one transaction */
	m->intent = FALSE;
	array_clear(&m->landed);
	record_set_cursor(m, FALSE);
	t_array_init(&entries, array_count(&m->batch) + 1);
	array_foreach_modifiable(&m->batch, item)
	        array_push_back(&entries, &item->entry);
	if (bf_state_merge_checkpoint(
	            m->state, m->user->username, &m->rec,
	            array_count(&entries) == 0 ? NULL : array_front(&entries),
	            array_count(&entries), &error) < 0) {
		merge_log_error(m,
		                "merge postponed: %s (the next login retries)",
		                error);
		return -1;
	}
	array_clear(&m->batch);
	m->cursor_dirty = FALSE;
	m->committed_folder = m->cursor_folder;
	m->committed_uid = m->cursor_uid;
	m->consumed_committed = array_count(&m->consumed);
	m->batch_started = now_msecs();
	return 0;
}

/* ---- merging one archived message ---- */

static int archive_guid(struct mail *amail, const char **guid_r)
{
	if (mail_get_special(amail, MAIL_FETCH_GUID, guid_r) < 0)
		return -1;
	return 0;
}

/* For a batch that may have landed: the live copies with UID >= the
   recorded UIDNEXT, by GUID. */
static int landed_load(struct backfill_merge *m, const char **error_r)
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

static int merge_copy(struct backfill_merge *m, struct mail *amail,
                      const char *uidl, const char **error_r)
{
	struct mail_save_context *save;
	struct mail_keywords *kw;
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
	kw = mailbox_keywords_create_valid(m->lbox, array_front(&kw_list));

	save = mailbox_save_alloc(m->ltrans);
	mailbox_save_set_flags(save, mail_get_flags(amail) & ~MAIL_RECENT, kw);
	mailbox_keywords_unref(&kw);
	/* No received date here: mailbox_copy() takes it from amail
	   (mail_save_copy_default_metadata() when it copies; a hardlink
	   shares the file whose mtime it is).  Looking it up would cost a
	   stat() of every archived file that a hardlink copy never needs. */
	if (uidl[0] != '\0')
		mailbox_save_set_pop3_uidl(save, uidl);
	if (mailbox_copy(&save, amail) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	return 0;
}

/* One archived message.  Returns 0, or -1 if the merge must stop. */
static int merge_one(struct backfill_merge *m,
                     const struct backfill_folder *folder, uint32_t uid)
{
	struct backfill_mail_keys keys;
	struct mail *amail = walk_mail(m);
	const char *error, *uidl, *guid;
	int ret;

	if (merged_already(m, m->idx, uid))
		return 0;
	/* folder_open() opened m->lbox (NULL only in a dry run, for a live
	   folder that would be created) */
	i_assert(m->lbox != NULL || m->dry_run);
	if (!mail_set_uid(amail, uid))
		return 0;
	ret = backfill_mail_keys_get(amail, NULL, m->fp, TRUE, &keys, &error);
	if (ret == 0)
		return 0;
	if (ret < 0) {
		e_warning(
		        m->user->event,
		        "backfill(%s): %s/uid %u: skipped, cannot be read: %s",
		        m->user->username, folder->archive_vname, uid, error);
		m->rec.skipped++;
		m->rec.archived++;
		m->cursor_folder = m->idx;
		m->cursor_uid = uid;
		m->have_cursor = TRUE;
		m->cursor_dirty = TRUE;
		return 0;
	}
	bool dup = dedup_consume(m, &keys);

	m->rec.archived++;
	m->cursor_folder = m->idx;
	m->cursor_uid = uid;
	m->have_cursor = TRUE;
	m->cursor_dirty = TRUE;
	m->batch_last_uid = uid;
	if (dup) {
		m->rec.duplicates++;
		return 0;
	}
	if (keys.no_header) {
		e_info(m->user->event,
		       "backfill(%s): %s/uid %u: no header section, merged as "
		       "it is",
		       m->user->username, folder->archive_vname, uid);
	}

	if (backfill_pop3_uidl_get(amail, m->walk.uidvalidity,
	                           m->pop3_uidl_format, &uidl, &error) < 0) {
		e_warning(m->user->event,
		          "backfill(%s): %s/uid %u: no POP3 UIDL kept: %s",
		          m->user->username, folder->archive_vname, uid, error);
		uidl = NULL;
	}
	if (uidl != NULL) {
		void *owner = hash_table_lookup(m->live_uidls, uidl);
		uint32_t owner_uid = POINTER_CAST_TO(owner, uint32_t);
		if (owner == NULL) {
			/* free */
		} else if (owner_uid == BACKFILL_UIDL_OWNER_MERGED) {
			/* Two archived messages with one UIDL (stored
			   UIDLs repeated, or two archive folders mapped to
			   one live folder): the first keeps it, this one
			   gets Dovecot's own. */
			e_info(m->user->event,
			       "backfill(%s): %s/uid %u: POP3 UIDL %s already "
			       "shown by another merged message of %s: this "
			       "one "
			       "gets a new UIDL",
			       m->user->username, folder->archive_vname, uid,
			       uidl, folder->live_vname);
			uidl = NULL;
		} else if (uidl_collision_fix(m, uidl, owner_uid, folder, uid) <
		           0) {
			return -1;
		}
	}

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
	memcpy(item->entry.fingerprint, keys.fp, BF_FP_SIZE);

	if (m->intent && m->intent_folder == m->idx &&
	    uid <= m->intent_last_uid && archive_guid(amail, &guid) == 0) {
		struct landed *l = landed_find(m, guid, keys.fp);
		if (l != NULL) {
			l->used = TRUE;
			item->entry.uid = l->uid;
			if (uidl != NULL && !m->dry_run)
				landed_fix_uidl(m, l->uid, uidl);
			m->rec.added++;
			return 0;
		}
	}

	if (batch_begin(m, &error) < 0) {
		merge_log_error(m, "%s: %s", folder->live_vname, error);
		return -1;
	}
	if (merge_copy(m, amail, uidl == NULL ? "" : uidl, &error) < 0) {
		enum mail_error mail_error;
		(void)mailbox_get_last_internal_error(m->lbox, &mail_error);
		if (mail_error == MAIL_ERROR_NOQUOTA ||
		    mail_error == MAIL_ERROR_TEMP ||
		    mail_error == MAIL_ERROR_PERM) {
			/* the live side's problem, not the message's:
			   skipping would lose it for good */
			merge_log_error(
			        m,
			        "merge postponed: saving into %s failed: "
			        "%s (the next login retries)",
			        folder->live_vname, error);
			return -1;
		}
		/* A message Dovecot cannot copy is a broken one: skip it,
		   the rest of the batch goes on. */
		e_warning(m->user->event,
		          "backfill(%s): %s/uid %u: skipped, copying to %s "
		          "failed: %s",
		          m->user->username, folder->archive_vname, uid,
		          folder->live_vname, error);
		array_pop_back(&m->batch);
		m->rec.skipped++;
		return 0;
	}
	item = array_back_modifiable(&m->batch);
	item->saved = TRUE;
	if (uidl != NULL) {
		hash_table_update(m->live_uidls, p_strdup(m->uidl_pool, uidl),
		                  POINTER_CAST(BACKFILL_UIDL_OWNER_MERGED));
	}
	m->rec.added++;
	return 0;
}

static void folder_close(struct backfill_merge *m)
{
	if (m->ltrans != NULL)
		mailbox_transaction_rollback(&m->ltrans);
	walk_close(m);
	if (m->lbox != NULL)
		mailbox_free(&m->lbox);
	if (hash_table_is_created(m->live_uidls))
		hash_table_destroy(&m->live_uidls);
	pool_unref(&m->uidl_pool);
}

/* A dry run opens the live folder only if it exists and remembers the
   ones that would be created. */
static int merge_open_live(struct backfill_merge *m,
                           const struct backfill_folder *folder,
                           const char **error_r)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	enum mailbox_existence existence;
	const char *const *name;

	if (!m->dry_run) {
		return backfill_folder_open_live(m->luser, folder, &m->lbox,
		                                 error_r);
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
		mailbox_free(&box);
		array_foreach(&m->dry_new_folders, name)
		{
			if (strcmp(*name, folder->live_vname) == 0)
				return 0;
		}
		const char *copy = p_strdup(m->pool, folder->live_vname);
		array_push_back(&m->dry_new_folders, &copy);
		return 0;
	}
	if (mailbox_sync(box, 0) < 0) {
		*error_r = t_strdup_printf(
		        "syncing live folder %s: %s", folder->live_vname,
		        mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return -1;
	}
	m->lbox = box;
	return 0;
}

/* A message delivered after the merge gets the next live UID.  When the
   live folder reuses the archive's UIDVALIDITY (or the format has no %v),
   its computed UIDL can be one that a merged copy keeps from the old
   server, if that UID was an archived one: typical after expunges left
   gaps in the old UIDs, which the merge does not use up.  A POP3 client
   of the old server would take the new message for one it has and never
   download it.  Raising the live UIDNEXT to the archive's (which also
   covers UIDs of messages expunged before the backup, whose UIDLs clients
   may remember) rules that out; existing UIDs and the UIDVALIDITY stay. */
static int live_uidnext_raise(struct backfill_merge *m, const char **error_r)
{
	struct mailbox_status astatus, lstatus;
	struct mailbox_update update;

	if (!backfill_pop3_uidl_by_uid(m->pop3_uidl_format, m->lbox_uidvalidity,
	                               m->walk.uidvalidity))
		return 0;
	mailbox_get_open_status(m->walk.box, STATUS_UIDNEXT, &astatus);
	if (mailbox_get_status(m->lbox, STATUS_UIDNEXT, &lstatus) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	if (lstatus.uidnext >= astatus.uidnext)
		return 0;
	i_zero(&update);
	update.min_next_uid = astatus.uidnext;
	if (mailbox_update(m->lbox, &update) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	e_debug(m->user->event,
	        "backfill(%s): %s: UIDNEXT raised from %u to %u, past the "
	        "archive's UIDs (their POP3 UIDLs stay unique)",
	        m->user->username, mailbox_get_vname(m->lbox), lstatus.uidnext,
	        astatus.uidnext);
	return 0;
}

static int folder_open(struct backfill_merge *m,
                       const struct backfill_folder *folder)
{
	struct mailbox_status status;
	struct mailbox *abox;
	const char *error;

	abox = mailbox_alloc(m->archive->ns->list, folder->archive_vname,
	                     MAILBOX_FLAG_READONLY);
	if (walk_open(m, abox, &error) < 0) {
		const char *line = t_strdup_printf(
		        BACKFILL_SKIPPED_NOTE
		        "%s: %s (check the restored files; a backup that "
		        "dropped empty cur/ new/ tmp/ directories needs them "
		        "back, then doveadm backfill reset -u USER merges "
		        "them)",
		        folder->archive_vname, error);
		e_error(m->user->event, "backfill(%s): %s", m->user->username,
		        line);
		/* The merge goes on with the other folders and can finish:
		   the record's last_error keeps saying what is missing, for
		   doveadm backfill status (written with the next
		   checkpoint). */
		if (!m->dry_run) {
			i_free(m->rec.last_error);
			m->rec.last_error = i_strdup(one_line(line));
			m->cursor_dirty = TRUE;
		}
		walk_close(m);
		return 0;
	}
	if (merge_open_live(m, folder, &error) < 0) {
		merge_log_error(m, "%s", error);
		walk_close(m);
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
	mailbox_get_open_status(m->lbox, STATUS_UIDVALIDITY, &status);
	m->lbox_uidvalidity = status.uidvalidity;
	const char *guid = mailbox_guid_str(m->lbox);
	m->lbox_guid = p_strdup(m->pool, guid == NULL ? "" : guid);
	m->lbox_live_idx = live_box_find(m, folder->live_vname);
	m->batch_max = mail_storage_copy_can_use_hardlink(m->walk.box, m->lbox)
	                       ? BACKFILL_BATCH_MAX_LINK
	                       : BACKFILL_BATCH_MAX;
	if (!m->dry_run && live_uidnext_raise(m, &error) < 0) {
		merge_log_error(m,
		                "merge postponed: %s: raising UIDNEXT past the "
		                "archive's UIDs failed: %s (the next login "
		                "retries)",
		                folder->live_vname, error);
		folder_close(m);
		return -1;
	}
	if (live_uidls_load(m, &error) < 0) {
		merge_log_error(m, "%s: reading POP3 UIDLs: %s",
		                folder->live_vname, error);
		folder_close(m);
		return -1;
	}
	if (m->intent && m->intent_folder == m->idx &&
	    landed_load(m, &error) < 0) {
		merge_log_error(m, "%s: %s", folder->live_vname, error);
		folder_close(m);
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
		if (m->have_cursor && m->idx < m->cursor_folder)
			return 1; /* merged before */
		if ((ret = folder_open(m, folder)) <= 0)
			return ret < 0 ? -1 : 1;
	}
	if (m->walk.pos < array_count(&m->walk.uids)) {
		uint32_t uid = *array_idx(&m->walk.uids, m->walk.pos++);
		if (merge_one(m, folder, uid) < 0)
			return -1;
		if (array_count(&m->batch) >= m->batch_max) {
			walk_slice_end(m);
			if (batch_commit(m) < 0)
				return -1;
		}
		return 0;
	}
	/* end of folder: the batch's intent must still name this folder */
	walk_slice_end(m);
	ret = batch_commit(m);
	if (!merged_already(m, m->idx, (uint32_t)-1)) {
		m->cursor_folder = m->idx + 1;
		m->cursor_uid = 0;
		m->have_cursor = TRUE;
		m->cursor_dirty = TRUE;
	}
	folder_close(m);
	return ret < 0 ? -1 : 1;
}

/* A merge that stopped on an error says so in its record, for doveadm
   backfill status and run: without this an abandoned merge showed as
   "running" with no error.  Only status and last_error change: the cursor
   on record is the one the last checkpoint (or intent) wrote, and this
   process's newer one may not be backed by a journal yet.  The next login
   retries a failed merge like a pending one. */
static void merge_record_failure(struct backfill_merge *m)
{
	struct bf_merge_record rec;
	const char *error;

	if (m->dry_run || m->lease_lost || m->last_error == NULL)
		return;
	if (bf_state_merge_get(m->state, m->user->username, &rec, &error) <=
	    0) {
		/* the store that failed is likely why we are here */
		return;
	}
	rec.status = BF_MERGE_FAILED;
	i_free(rec.last_error);
	rec.last_error = i_strdup(m->last_error);
	rec.updated = ioloop_time;
	if (bf_state_merge_put(m->state, m->user->username, &rec, &error) < 0) {
		e_debug(m->user->event,
		        "backfill(%s): recording the failure failed too: %s",
		        m->user->username, error);
	}
	bf_merge_record_clear(&rec);
}

static void merge_finish(struct backfill_merge *m)
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
	    !str_begins(m->rec.last_error, BACKFILL_SKIPPED_NOTE))
		i_free(m->rec.last_error);
	record_set_cursor(m, FALSE);
	if (bf_state_merge_put(m->state, m->user->username, &m->rec, &error) <
	    0) {
		merge_log_error(m, "merge finished but not recorded: %s",
		                error);
		return;
	}
	i_gettimeofday(&now);
	/* for the benchmarks: the merge's memory must stay flat */
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		i_zero(&ru);
	double secs = timeval_diff_usecs(&now, &m->started) / 1000000.0;
	struct event_passthrough *e =
	        event_create_passthrough(m->user->event)
	                ->set_name("backfill_merge_finished")
	                ->add_int("added", m->rec.added)
	                ->add_int("duplicates", m->rec.duplicates)
	                ->add_int("skipped", m->rec.skipped)
	                ->add_int("archived", m->rec.archived)
	                ->add_int("uidl_collisions", m->rec.uidl_collisions)
	                ->add_int("peak_rss_kb", ru.ru_maxrss);
	e_info(e->event(),
	       "backfill(%s): merge finished: %" PRIu64 " added, %" PRIu64
	       " duplicates, %" PRIu64 " skipped, %" PRIu64
	       " POP3 UIDL collisions, %.3f s in this session",
	       m->user->username, m->rec.added, m->rec.duplicates,
	       m->rec.skipped, m->rec.uidl_collisions, secs);
	e_debug(m->user->event,
	        "backfill(%s): peak RSS of this process: %ld kB",
	        m->user->username, (long)ru.ru_maxrss);
}

/* Something for backfill_merge_end() to commit. */
static bool merge_has_progress(const struct backfill_merge *m)
{
	return m->phase == PHASE_MERGE &&
	       (m->ltrans != NULL || m->cursor_dirty);
}

static int merge_run(struct backfill_merge *m, unsigned int budget_ms,
                     bool must_progress)
{
	uint64_t deadline = now_msecs() + budget_ms;
	bool extended = FALSE;
	int ret = 0;

	if (leases_renew(m) < 0) {
		m->failed = TRUE;
		merge_record_failure(m);
		return -1;
	}
	while (ret >= 0 && m->phase != PHASE_FINISHED) {
		if (m->phase == PHASE_LIVE_INDEX) {
			if (m->idx >= array_count(&m->live_boxes)) {
				array_sort(&m->live, live_msg_cmp);
				int apply_ret = consumed_apply(m);
				m->consumed_committed =
				        array_count(&m->consumed);
				if (apply_ret < 0) {
					merge_log_error(
					        m, "merge record has a damaged "
					           "cursor (reset it with "
					           "doveadm backfill reset)");
					m->failed = TRUE;
					merge_record_failure(m);
					return -1;
				}
				m->phase = PHASE_MERGE;
				m->idx = 0;
				continue;
			}
			T_BEGIN
			{
				ret = live_index_step(m);
			}
			T_END;
		} else {
			if (m->idx >= array_count(&m->folders)) {
				merge_finish(m);
				m->phase = PHASE_FINISHED;
				break;
			}
			T_BEGIN
			{
				ret = merge_step(m);
			}
			T_END;
		}
		if (ret > 0) {
			m->idx++;
			ret = 0;
		}
		if (now_msecs() >= deadline) {
			if (!must_progress || extended)
				break;
			if (merge_has_progress(m)) {
				/* overrun anyway: make it worth it */
				deadline = now_msecs() +
				           BACKFILL_PROGRESS_SLICE_MSECS;
				extended = TRUE;
			}
		}
	}
	if (ret < 0) {
		m->failed = TRUE;
		merge_record_failure(m);
		return -1;
	}
	if (m->phase == PHASE_FINISHED)
		return 1;
	/* The batch stays open between slices (see luser) until it is full
	   or old enough: each commit costs fsyncs of the mailbox and of the
	   state store, which would otherwise dominate short slices. */
	walk_slice_end(m);
	if (m->phase == PHASE_MERGE && (m->ltrans != NULL || m->cursor_dirty) &&
	    now_msecs() - m->batch_started >= BACKFILL_BATCH_MAX_MSECS &&
	    batch_commit(m) < 0) {
		m->failed = TRUE;
		merge_record_failure(m);
		return -1;
	}
	return 0;
}

int backfill_merge_run(struct backfill_merge *m, unsigned int budget_ms)
{
	return merge_run(m, budget_ms, FALSE);
}

int backfill_merge_run_progress(struct backfill_merge *m,
                                unsigned int budget_ms)
{
	return merge_run(m, budget_ms, TRUE);
}

static int live_user_dup(struct mail_user *user, struct mail_user **luser_r,
                         const char **error_r)
{
	struct mail_user *luser;
	const char *error;

	luser = mail_user_dup(user);
	if (user->_service_user != NULL) {
		luser->_service_user = user->_service_user;
		mail_storage_service_user_ref(luser->_service_user);
	}
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

static int merge_take_leases(struct backfill_merge *m, const char **reason_r)
{
	const char *error;
	char *holder = NULL;
	int ret;

	bf_lease_owner(m->owner, sizeof(m->owner));
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
		        "merge not started here: another session (%s) is "
		        "merging this user",
		        holder == NULL ? "?" : holder);
		free(holder);
		return 0;
	}
	m->have_lease = TRUE;
	unsigned int max = m->set->max_parallel == 0 ? 1 : m->set->max_parallel;
	ret = bf_state_slot_acquire(m->state, my_hostname, max, m->owner,
	                            ioloop_time, BACKFILL_LEASE_TTL_SECS,
	                            &m->slot, &error);
	if (ret < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	if (ret == 0) {
		*reason_r = t_strdup_printf(
		        "merge postponed: all %u merge slots of this host "
		        "are busy (backfill_max_parallel); the next login "
		        "continues",
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

	m->last_error = p_strdup(m->pool, one_line(reason));
	merge_record_failure(m);
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

int backfill_merge_begin_flags(struct mail_user *user,
                               const struct backfill_settings *set,
                               struct bf_state *state,
                               enum backfill_merge_flags flags,
                               struct backfill_merge **merge_r,
                               const char **reason_r)
{
	struct backfill_merge *m;
	const struct mail_storage_settings *mail_set;
	const char *error, *path;
	int ret;

	*reason_r = NULL;
	if ((ret = backfill_archive_resolve(user, set, &path, &error)) <= 0) {
		if (ret < 0)
			*reason_r = error;
		else {
			e_debug(user->event,
			        "backfill(%s): no archive to merge (%s)",
			        user->username,
			        set->archive == NULL ? "backfill_archive unset"
			                             : set->archive);
		}
		return ret;
	}

	pool_t pool = pool_alloconly_create("backfill merge", 4096);
	m = p_new(pool, struct backfill_merge, 1);
	m->pool = pool;
	m->user = user;
	m->set = set;
	m->state = state;
	m->dry_run = (flags & BACKFILL_MERGE_FLAG_DRY_RUN) != 0;
	p_array_init(&m->dry_new_folders, pool, 4);
	m->lbox_live_idx = UINT_MAX;
	i_gettimeofday(&m->started);
	mail_set = mail_user_set_get_storage_set(user);
	m->pop3_uidl_format = p_strdup(pool, mail_set->pop3_uidl_format);
	p_array_init(&m->batch, pool, BACKFILL_BATCH_MAX);
	p_array_init(&m->live, pool, 256);
	p_array_init(&m->journal, pool, 64);
	p_array_init(&m->landed, pool, 4);
	p_array_init(&m->consumed, pool, 16);

	ret = bf_state_merge_get(state, user->username, &m->rec, &error);
	if (ret < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		pool_unref(&pool);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	if (ret > 0 && m->rec.status == BF_MERGE_DONE) {
		e_debug(user->event, "backfill(%s): merge already done",
		        user->username);
		bf_merge_record_clear(&m->rec);
		pool_unref(&pool);
		return 0;
	}
	*merge_r = m;

	if (!m->dry_run && (ret = merge_take_leases(m, reason_r)) <= 0) {
		backfill_merge_end(merge_r);
		return ret;
	}
	/* Read the record again under the lease: another session may have
	   finished the merge between our first look and the lease. */
	bf_merge_record_clear(&m->rec);
	if (bf_state_merge_get(state, user->username, &m->rec, &error) < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		backfill_merge_end(merge_r);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	if (m->rec.status == BF_MERGE_DONE) {
		backfill_merge_end(merge_r);
		return 0;
	}
	int parse_ret = cursor_parse(m, m->rec.cursor);
	m->committed_folder = m->cursor_folder;
	m->committed_uid = m->cursor_uid;
	if (parse_ret < 0) {
		*reason_r = t_strdup_printf(
		        "merge record has an unknown cursor '%s' (reset it "
		        "with doveadm backfill reset)",
		        m->rec.cursor);
		return merge_begin_failed(merge_r, *reason_r);
	}

	if (live_user_dup(user, &m->luser, &error) < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		return merge_begin_failed(merge_r, *reason_r);
	}
	m->batch_started = now_msecs();
	if ((ret = backfill_archive_open(user, set, &m->archive, &error)) <=
	    0) {
		if (ret == 0) {
			*reason_r = NULL;
			backfill_merge_end(merge_r);
			return 0;
		}
		*reason_r = t_strdup_printf("opening archive: %s", error);
		return merge_begin_failed(merge_r, *reason_r);
	}
	if (backfill_folder_map_build(m->luser, m->archive, pool, &m->folders,
	                              &error) < 0 ||
	    live_boxes_list(m, &error) < 0) {
		*reason_r = t_strdup(error);
		return merge_begin_failed(merge_r, *reason_r);
	}
	if (bf_state_journal_iter(state, user->username, journal_load_cb, m,
	                          &error) < 0) {
		*reason_r = t_strdup_printf("merge postponed: %s", error);
		backfill_merge_end(merge_r);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	array_sort(&m->journal, box_uid_cmp);
	if (m->intent && m->intent_folder < array_count(&m->folders)) {
		const struct backfill_folder *f =
		        array_idx(&m->folders, m->intent_folder);
		unsigned int i = live_box_find(m, f->live_vname);
		if (i != UINT_MAX) {
			/* guid is filled while indexing: look it up now */
			struct mail_namespace *ns = mail_namespace_find(
			        m->luser->namespaces, f->live_vname);
			struct mailbox *box = mailbox_alloc(
			        ns->list, f->live_vname, MAILBOX_FLAG_READONLY);
			const char *guid = mailbox_guid_str(box);
			m->intent_box_guid = p_strdup(pool, guid);
			mailbox_free(&box);
		}
	}
	m->fp = bf_fp_new();
	if (m->fp == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "backfill: out of memory");

	if (set->dedup == BACKFILL_DEDUP_OFF)
		m->phase = PHASE_MERGE; /* no live index needed */
	bool resumed = m->have_cursor;
	if (m->rec.status != BF_MERGE_RUNNING || m->rec.started == 0) {
		m->rec.status = BF_MERGE_RUNNING;
		if (m->rec.started == 0)
			m->rec.started = ioloop_time;
	}
	m->rec.updated = ioloop_time;
	if (m->dry_run)
		return 1;
	if (bf_state_merge_put(state, user->username, &m->rec, &error) < 0) {
		*reason_r = t_strdup_printf(
		        "merge postponed: the state store is not writable: %s "
		        "(let the mail user write the store and its "
		        "directory)",
		        error);
		backfill_merge_end(merge_r);
		return BACKFILL_MERGE_STORE_ERROR;
	}
	e_info(user->event,
	       "backfill(%s): merge %s: archive %s, %u folders, %u live "
	       "folders",
	       user->username, resumed ? "resumed" : "started",
	       m->archive->path, array_count(&m->folders),
	       array_count(&m->live_boxes));
	return 1;
}

void backfill_merge_end(struct backfill_merge **_m)
{
	struct backfill_merge *m = *_m;
	struct live_box *lb;
	const char *error;

	if (m == NULL)
		return;
	*_m = NULL;
	if (m->phase == PHASE_MERGE && !m->failed &&
	    (m->ltrans != NULL || m->cursor_dirty)) {
		/* session end: keep what the last slices did */
		walk_slice_end(m);
		if (batch_commit(m) < 0)
			merge_record_failure(m);
	}
	if (m->ltrans != NULL)
		mailbox_transaction_rollback(&m->ltrans);
	walk_close(m);
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
	if (m->have_slot) {
		(void)bf_state_slot_release(m->state, my_hostname, m->slot,
		                            m->owner, &error);
	}
	if (m->have_lease) {
		(void)bf_state_lease_release(
		        m->state, backfill_merge_lease_name(m->user->username),
		        m->owner, &error);
	}
	bf_merge_record_clear(&m->rec);
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
}
