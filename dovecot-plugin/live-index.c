/* The live index: every live message that backfill did not add, by
   header key, so that an archived message already in the live account is
   found (dedup, counted with multiplicity: each archived copy consumes one
   live copy).  And the POP3 UIDLs of the live folder being merged into,
   to catch an archived UIDL that a live message already shows (a reused
   UIDVALIDITY). */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hash.h"
#include "guid.h"
#include "mail-storage-private.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "backfill-settings.h"
#include "pop3-uidl.h"
#include "private-mailboxes.h"
#include "merge-private.h"

static int journal_load_cb(const struct bf_journal_entry *entry, void *context)
{
	struct backfill_merge *m = context;
	struct box_uid *key;

	if (m->cursor_in.version == 1 && entry->archive_mailbox != NULL) {
		key = array_append_space(&m->journal_archive);
		key->guid = p_strdup(m->pool, entry->archive_mailbox);
		key->uid = entry->archive_uid;
	}
	if (entry->uid == 0 || entry->mailbox_guid == NULL)
		return 0;
	key = array_append_space(&m->journal);
	key->guid = p_strdup(m->pool, entry->mailbox_guid);
	key->uid = entry->uid;
	return 0;
}

static int box_uid_cmp(const struct box_uid *k1, const struct box_uid *k2)
{
	int ret = strcmp(k1->guid, k2->guid);

	if (ret != 0)
		return ret;
	return k1->uid < k2->uid ? -1 : (k1->uid > k2->uid ? 1 : 0);
}

/* The live messages that backfill added, by folder GUID and UID. */
int backfill_live_journal_load(struct backfill_merge *m, const char **error_r)
{
	if (bf_state_journal_iter(m->state, m->user->username, journal_load_cb,
	                          m, error_r) < 0)
		return -1;
	array_sort(&m->journal, box_uid_cmp);
	return 0;
}

bool backfill_live_journalled(struct backfill_merge *m, const char *box_guid,
                              uint32_t uid)
{
	struct box_uid key = {.guid = box_guid, .uid = uid};

	return array_bsearch(&m->journal, &key, box_uid_cmp) != NULL;
}

bool backfill_live_added_by_backfill(struct backfill_merge *m,
                                     const char *box_guid, uint32_t uid)
{
	if (m->intent && m->intent_box_guid != NULL &&
	    strcmp(box_guid, m->intent_box_guid) == 0 &&
	    uid >= m->intent_uidnext)
		return TRUE;
	return backfill_live_journalled(m, box_guid, uid);
}

const char *backfill_mailbox_guid_str(struct mailbox *box)
{
	struct mailbox_metadata md;

	if (mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &md) < 0)
		return NULL;
	return guid_128_to_string(md.guid);
}

int backfill_live_boxes_list(struct backfill_merge *m, const char **error_r)
{
	ARRAY_TYPE(backfill_mailbox_entry) boxes;
	const struct backfill_mailbox_entry *box;
	const char *error;

	p_array_init(&m->live_boxes, m->pool, 16);
	t_array_init(&boxes, 16);
	if (backfill_private_mailboxes(m->luser, BACKFILL_MAILBOXES_SELECTABLE,
	                               m->pool, &boxes, &error) < 0) {
		*error_r = t_strdup_printf("listing live folders: %s", error);
		return -1;
	}
	array_foreach(&boxes, box)
	{
		struct live_box *lb = array_append_space(&m->live_boxes);
		lb->vname = box->vname;
	}
	return 0;
}

unsigned int backfill_live_box_find(struct backfill_merge *m, const char *vname)
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

void backfill_live_index_sort(struct backfill_merge *m)
{
	array_sort(&m->live, live_msg_cmp);
}

int backfill_live_index_step(struct backfill_merge *m)
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
		if (backfill_merge_walk_open(m, box, &error) < 0) {
			/* a live folder we cannot read just does not count
			   for dedup */
			e_warning(m->event,
			          "live folder %s skipped for dedup: %s",
			          lb->vname, error);
			lb->guid = "";
			backfill_merge_walk_close(m);
			return 1;
		}
		const char *guid = backfill_mailbox_guid_str(box);
		lb->guid = p_strdup(m->pool, guid == NULL ? "" : guid);
	}
	if (m->walk.pos >= array_count(&m->walk.uids)) {
		backfill_merge_walk_close(m);
		return 1;
	}
	uint32_t uid = *array_idx(&m->walk.uids, m->walk.pos++);
	if (backfill_live_added_by_backfill(m, lb->guid, uid))
		return 0;
	struct mail *mail = backfill_merge_walk_mail(m);
	if (!mail_set_uid(mail, uid))
		return 0;
	ret = backfill_mail_keys_get(mail, &m->walk.cf, m->fp, FALSE, &keys,
	                             &error);
	if (ret < 0) {
		e_warning(m->event, "%s/uid %u: not used for dedup: %s",
		          lb->vname, uid, error);
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
			e_warning(m->event, "%s/uid %u: not used for dedup: %s",
			          lb->vname, lm->uid, error);
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
bool backfill_live_dedup_consume(struct backfill_merge *m,
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
int backfill_live_uidls_load(struct backfill_merge *m, const char **error_r)
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
		/* A copy of the batch a crash cut before its checkpoint is
		   not the user's mail: backfill_merge_landed_take() gives it
		   its UIDL again.  Counted here, it would make the archived
		   message it is a copy of collide with itself. */
		if (m->intent && m->intent_cf == m->cur_cf &&
		    backfill_merge_landed_in_lbox(m) &&
		    mail->uid >= m->intent_uidnext)
			continue;
		if (backfill_pop3_uidl_get(mail, m->lbox_uidvalidity,
		                           m->pop3_uidl_format, &uidl,
		                           error_r) < 0) {
			ret = -1;
			break;
		}
		/* a copy backfill added in an earlier session counts as
		   merged, as it does within one session */
		uint32_t owner = backfill_live_added_by_backfill(
		                         m, m->lbox_guid, mail->uid)
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
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s/uid %u: setting a new POP3 UIDL failed: %s (the next login retries)",
		        folder->live_vname, live_uid,
		        mailbox_get_last_internal_error(m->lbox, NULL));
		return -1;
	}
	hash_table_remove(m->live_uidls, uidl);
	hash_table_update(m->live_uidls, p_strdup(m->uidl_pool, fresh),
	                  POINTER_CAST(live_uid));
	m->rec.uidl_collisions++;
	e_info(m->event,
	       "%s/uid %u showed POP3 UIDL %s, which the old server showed for archive %s/uid %u: it now shows %s (POP3 clients download it once more)",
	       folder->live_vname, live_uid, uidl, folder->archive_vname,
	       archive_uid, fresh);
	return 0;
}

/* ---- batches ---- */

int backfill_live_uidl_check(struct backfill_merge *m,
                             const struct backfill_folder *folder,
                             uint32_t archive_uid, const char **uidl)
{
	if (*uidl == NULL)
		return 0;
	void *owner = hash_table_lookup(m->live_uidls, *uidl);
	uint32_t owner_uid = POINTER_CAST_TO(owner, uint32_t);
	if (owner == NULL)
		return 0;
	if (owner_uid == BACKFILL_UIDL_OWNER_MERGED) {
		/* Two archived messages with one UIDL (stored UIDLs repeated,
		   or two archive folders mapped to one live folder): the first
		   keeps it, this one gets Dovecot's own. */
		e_info(m->event,
		       "%s/uid %u: POP3 UIDL %s already shown by another merged message of %s: this one gets a new UIDL",
		       folder->archive_vname, archive_uid, *uidl,
		       folder->live_vname);
		*uidl = NULL;
		return 0;
	}
	return uidl_collision_fix(m, *uidl, owner_uid, folder, archive_uid);
}

void backfill_live_uidl_merged(struct backfill_merge *m, const char *uidl)
{
	hash_table_update(m->live_uidls, p_strdup(m->uidl_pool, uidl),
	                  POINTER_CAST(BACKFILL_UIDL_OWNER_MERGED));
}
