/* doveadm backfill revert --yes: removes exactly what backfill added and
   marks the user pending again; the user's own messages stay.

   What was added is the journal: live mailbox GUID + UID, which Dovecot
   never gives to another message.  A message the user moved since has a
   new UID in another folder; moves keep keywords, so it is found by the
   backfill keyword (backfill_keyword) and its fingerprint, one per
   journal entry that was not found where it was put.  A message the user
   deleted is simply gone. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "doveadm-print.h"
#include "doveadm-mail.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "fingerprint.h"
#include "state.h"
#include "backfill-plugin.h"
#include "mail-keys.h"
#include "doveadm-backfill.h"

#include <stdlib.h>
#include <time.h>

#define REVERT_LEASE_TTL_SECS 600

struct revert_entry {
	char *guid;
	uint32_t uid;
	unsigned char fp[BF_FP_SIZE];
	bool found;
};

struct revert_box {
	const char *vname;
	const char *guid;
	ARRAY(uint32_t) expunge;
};

struct revert_candidate {
	unsigned char fp[BF_FP_SIZE];
	unsigned int box;
	uint32_t uid;
};

struct revert_ctx {
	pool_t pool;
	const char *keyword;
	ARRAY(struct revert_entry) entries;
	ARRAY(struct revert_box) boxes;
	ARRAY(struct revert_candidate) candidates;
	unsigned int box_idx;
	bool want_candidates;
};

static int revert_entry_cmp(const struct revert_entry *e1,
                            const struct revert_entry *e2)
{
	int ret = strcmp(e1->guid, e2->guid);

	if (ret != 0)
		return ret;
	return e1->uid < e2->uid ? -1 : (e1->uid > e2->uid ? 1 : 0);
}

static int revert_journal_cb(const struct bf_journal_entry *entry,
                             void *context)
{
	struct revert_ctx *rc = context;
	struct revert_entry *e = array_append_space(&rc->entries);

	e->guid = p_strdup(rc->pool, entry->mailbox_guid);
	e->uid = entry->uid;
	memcpy(e->fp, entry->fingerprint, BF_FP_SIZE);
	return 0;
}

static struct revert_entry *revert_entry_find(struct revert_ctx *rc,
                                              const char *guid, uint32_t uid)
{
	struct revert_entry key;

	i_zero(&key);
	key.guid = (char *)guid;
	key.uid = uid;
	return (struct revert_entry *)array_bsearch(&rc->entries, &key,
	                                            revert_entry_cmp);
}

static bool has_keyword(struct mail *mail, const char *keyword)
{
	const char *const *kw = mail_get_keywords(mail);

	for (; kw != NULL && *kw != NULL; kw++) {
		if (strcasecmp(*kw, keyword) == 0)
			return TRUE;
	}
	return FALSE;
}

static int revert_walk_cb(struct mail *mail,
                          const struct backfill_mail_keys *keys ATTR_UNUSED,
                          const char *read_error ATTR_UNUSED, void *context)
{
	struct revert_ctx *rc = context;
	struct revert_box *rb = array_idx_modifiable(&rc->boxes, rc->box_idx);
	struct revert_entry *e;

	if (mail->uid != 0 && rb->guid != NULL &&
	    (e = revert_entry_find(rc, rb->guid, mail->uid)) != NULL &&
	    !e->found) {
		e->found = TRUE;
		array_push_back(&rb->expunge, &mail->uid);
		return 0;
	}
	if (rc->keyword != NULL && has_keyword(mail, rc->keyword)) {
		struct revert_candidate *c =
		        array_append_space(&rc->candidates);
		c->box = rc->box_idx;
		c->uid = mail->uid;
		/* filled below, only for the candidates */
	}
	return 0;
}

static int revert_candidate_fp(struct mail_user *user, struct revert_ctx *rc,
                               struct bf_fp *fp, const char **error_r)
{
	struct revert_candidate *c;
	struct backfill_cache_fields cf;
	struct backfill_mail_keys keys;
	unsigned int cur = UINT_MAX;
	struct mailbox *box = NULL;
	struct mailbox_transaction_context *t = NULL;
	struct mail *mail = NULL;
	int ret = 0;

	array_foreach_modifiable(&rc->candidates, c)
	{
		if (c->box != cur) {
			if (box != NULL) {
				mail_free(&mail);
				(void)mailbox_transaction_commit(&t);
				mailbox_free(&box);
			}
			cur = c->box;
			const struct revert_box *rb =
			        array_idx(&rc->boxes, cur);
			struct mail_namespace *ns = mail_namespace_find(
			        user->namespaces, rb->vname);
			box = mailbox_alloc(ns->list, rb->vname, 0);
			if (mailbox_sync(box, 0) < 0) {
				*error_r = mailbox_get_last_internal_error(
				        box, NULL);
				mailbox_free(&box);
				return -1;
			}
			backfill_cache_fields_register(box, &cf);
			t = mailbox_transaction_begin(box, 0, __func__);
			mail = mail_alloc(t, 0, NULL);
		}
		memset(c->fp, 0, BF_FP_SIZE);
		if (!mail_set_uid(mail, c->uid))
			continue;
		if (backfill_mail_keys_get(mail, &cf, fp, TRUE, &keys,
		                           error_r) > 0)
			memcpy(c->fp, keys.fp, BF_FP_SIZE);
	}
	if (box != NULL) {
		mail_free(&mail);
		(void)mailbox_transaction_commit(&t);
		mailbox_free(&box);
	}
	return ret;
}

static int revert_expunge(struct mail_user *user, struct revert_box *rb,
                          const char **error_r)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	const uint32_t *uid;
	int ret = 0;

	if (array_count(&rb->expunge) == 0)
		return 0;
	ns = mail_namespace_find(user->namespaces, rb->vname);
	box = mailbox_alloc(ns->list, rb->vname, 0);
	if (mailbox_sync(box, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		mailbox_free(&box);
		return -1;
	}
	/* not FLAG_EXTERNAL: that would only drop them from the index, and
	   the next sync would find the files again with new UIDs */
	t = mailbox_transaction_begin(box, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	array_foreach(&rb->expunge, uid)
	{
		if (mail_set_uid(mail, *uid))
			mail_expunge(mail);
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0 ||
	    mailbox_sync(box, MAILBOX_SYNC_FLAG_EXPUNGE) < 0) {
		*error_r = t_strdup_printf(
		        "%s: %s", rb->vname,
		        mailbox_get_last_internal_error(box, NULL));
		ret = -1;
	}
	mailbox_free(&box);
	return ret;
}

static int revert_user(struct mail_user *user, struct backfill_user *buser,
                       struct bf_state *state, uint64_t *removed_r,
                       uint64_t *moved_r, uint64_t *gone_r, bool *postponed_r,
                       const char **error_r)
{
	struct revert_ctx rc;
	ARRAY_TYPE(const_string) names;
	const char *const *name;
	struct revert_entry *e;
	struct revert_box *rb;
	struct bf_fp *fp = NULL;
	int ret = 0;

	i_zero(&rc);
	rc.pool = pool_alloconly_create("backfill revert", 4096);
	rc.keyword = buser->set.keyword;
	p_array_init(&rc.entries, rc.pool, 256);
	p_array_init(&rc.boxes, rc.pool, 16);
	p_array_init(&rc.candidates, rc.pool, 16);
	if (bf_state_journal_iter(state, user->username, revert_journal_cb, &rc,
	                          error_r) < 0) {
		/* nothing removed yet: a retry may succeed */
		*error_r = t_strdup(*error_r);
		*postponed_r = TRUE;
		pool_unref(&rc.pool);
		return -1;
	}
	array_sort(&rc.entries, revert_entry_cmp);

	if (doveadm_backfill_mailboxes(user, rc.pool, &names, error_r) < 0) {
		pool_unref(&rc.pool);
		return -1;
	}
	array_foreach(&names, name)
	{
		struct mail_namespace *ns =
		        mail_namespace_find(user->namespaces, *name);
		struct mailbox *box =
		        mailbox_alloc(ns->list, *name, MAILBOX_FLAG_READONLY);
		struct mailbox_metadata md;

		rc.box_idx = array_count(&rc.boxes);
		rb = array_append_space(&rc.boxes);
		rb->vname = *name;
		p_array_init(&rb->expunge, rc.pool, 16);
		if (mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &md) == 0)
			rb->guid =
			        p_strdup(rc.pool, guid_128_to_string(md.guid));
		if (doveadm_backfill_walk(box, NULL, revert_walk_cb, &rc,
		                          error_r) < 0)
			ret = -1;
		mailbox_free(&box);
		if (ret < 0)
			break;
	}

	/* entries not where they were put: moved (keyword + fingerprint)
	   or deleted by the user */
	unsigned int not_found = 0;
	array_foreach_modifiable(&rc.entries, e)
	{
		if (!e->found)
			not_found++;
	}
	*removed_r = array_count(&rc.entries) - not_found;
	*moved_r = 0;
	if (ret == 0 && not_found > 0 && array_count(&rc.candidates) > 0) {
		fp = bf_fp_new();
		if (fp == NULL)
			i_fatal_status(FATAL_OUTOFMEM, "out of memory");
		ret = revert_candidate_fp(user, &rc, fp, error_r);
		bf_fp_free(&fp);
		struct revert_candidate *c;
		array_foreach_modifiable(&rc.candidates, c)
		{
			if (ret < 0)
				break;
			array_foreach_modifiable(&rc.entries, e)
			{
				if (e->found ||
				    memcmp(e->fp, c->fp, BF_FP_SIZE) != 0)
					continue;
				e->found = TRUE;
				rb = array_idx_modifiable(&rc.boxes, c->box);
				array_push_back(&rb->expunge, &c->uid);
				(*moved_r)++;
				break;
			}
		}
	}
	*gone_r = not_found - *moved_r;
	if (ret == 0) {
		array_foreach_modifiable(&rc.boxes, rb)
		{
			if (revert_expunge(user, rb, error_r) < 0) {
				ret = -1;
				break;
			}
		}
	}
	pool_unref(&rc.pool);
	if (ret < 0)
		return -1;

	/* pending again: no record, no journal, as before the merge */
	struct bf_merge_record rec;
	i_zero(&rec);
	rec.status = BF_MERGE_PENDING;
	rec.updated = time(NULL);
	if (bf_state_merge_delete(state, user->username, error_r) < 0 ||
	    bf_state_merge_put(state, user->username, &rec, error_r) < 0) {
		*error_r = t_strdup(*error_r);
		return -1;
	}
	return 0;
}

static int cmd_revert_run(struct doveadm_mail_cmd_context *ctx,
                          struct mail_user *user)
{
	struct backfill_user *buser;
	struct bf_state *state;
	const char *error, *lease, *result = "reverted";
	char owner[128], *holder = NULL;
	uint64_t removed = 0, moved = 0, gone = 0;
	bool postponed = FALSE;
	int ret;

	if ((buser = doveadm_backfill_user(user, &error)) == NULL) {
		i_error("backfill(%s): %s", user->username, error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		return -1;
	}
	if (doveadm_backfill_state(buser, &state, NULL, &error) < 0) {
		i_error("backfill(%s): not reverted: %s (try again once the "
		        "state store answers)",
		        user->username, error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
		return -1;
	}
	lease = doveadm_backfill_lease_name(user);
	bf_lease_owner(owner, sizeof(owner));
	ret = bf_state_lease_acquire(state, lease, owner, time(NULL),
	                             REVERT_LEASE_TTL_SECS, &holder, &error);
	if (ret < 0) {
		i_error("backfill(%s): not reverted: %s (try again once the "
		        "state store answers)",
		        user->username, error);
		result = "postponed";
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
	} else if (ret == 0) {
		i_error("backfill(%s): not reverted: a merge is running (%s); "
		        "try again when it is finished",
		        user->username, holder == NULL ? "?" : holder);
		free(holder);
		result = "busy";
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
	} else {
		ret = revert_user(user, buser, state, &removed, &moved, &gone,
		                  &postponed, &error);
		if (ret < 0 && postponed) {
			i_error("backfill(%s): not reverted: %s (try again "
			        "once the state store answers)",
			        user->username, error);
			result = "postponed";
			doveadm_backfill_outcome(ctx,
			                         DOVEADM_BACKFILL_TEMPFAIL);
		} else if (ret < 0) {
			i_error("backfill(%s): revert failed: %s (run it "
			        "again: what was removed stays removed)",
			        user->username, error);
			result = "failed";
			doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		}
		(void)bf_state_lease_release(state, lease, owner, &error);
	}
	doveadm_print(user->username);
	doveadm_print(result);
	doveadm_backfill_print_num(removed);
	doveadm_backfill_print_num(moved);
	doveadm_backfill_print_num(gone);
	return 0;
}

struct revert_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	bool yes;
};

static bool cmd_revert_parse_arg(struct doveadm_mail_cmd_context *_ctx, int c)
{
	struct revert_cmd_context *ctx = (struct revert_cmd_context *)_ctx;

	if (c != 'y')
		return FALSE;
	ctx->yes = TRUE;
	return TRUE;
}

static void cmd_revert_init(struct doveadm_mail_cmd_context *_ctx,
                            const char *const args[] ATTR_UNUSED)
{
	struct revert_cmd_context *ctx = (struct revert_cmd_context *)_ctx;
	enum doveadm_print_header_flags num =
	        DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY;

	if (!ctx->yes) {
		i_fatal_status(EX_USAGE,
		               "backfill revert removes every message backfill "
		               "added: run it with --yes (-y)");
	}
	doveadm_print_header("user", "User", 0);
	doveadm_print_header("result", "Result", 0);
	doveadm_print_header("removed", "Removed", num);
	doveadm_print_header("removed_moved", "RemovedMoved", num);
	doveadm_print_header("gone", "GoneAlready", num);
}

static struct doveadm_mail_cmd_context *cmd_revert_alloc(void)
{
	struct revert_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct revert_cmd_context);
	ctx->ctx.getopt_args = "y";
	ctx->ctx.v.parse_arg = cmd_revert_parse_arg;
	ctx->ctx.v.init = cmd_revert_init;
	ctx->ctx.v.run = cmd_revert_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_cmd_backfill_revert = {
        .name = "backfill revert",
        .usage = "-y|--yes",
        .mail_cmd = cmd_revert_alloc,
        DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON DOVEADM_CMD_PARAM(
                'y', "yes", CMD_PARAM_BOOL, 0) DOVEADM_CMD_PARAMS_END};
