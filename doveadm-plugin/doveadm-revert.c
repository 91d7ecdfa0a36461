/* doveadm backfill revert --yes: removes exactly what backfill added and
   marks the user pending again; the user's own messages stay.

   What was added is the journal: live mailbox GUID + UID, which Dovecot
   never gives to another message, and the message's fingerprint.  The
   GUID + UID only say where to look: an index rebuilt under the same
   mailbox GUID or an altered store can make them name a message of the
   user's, so a message is removed only when its fingerprint is the
   journal's too; one that differs is kept and counted (mismatched).  A message
   the user moved since has a new UID in another folder; moves keep keywords, so
   it is found by the backfill keyword (backfill_keyword) and its fingerprint,
   one per journal entry that was not found where it was put.  A message the
   user deleted is simply gone. */

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
#include "backfill-user.h"
#include "archive.h"
#include "mail-keys.h"
#include "private-mailboxes.h"
#include "cursor.h"
#include "doveadm-backfill.h"
#include "print-value.h"
#include "renumber-unfinished.h"

#include <stdlib.h>
#include <time.h>

/* The lease keeps a merge (a login, doveadm backfill run) from starting
   under the revert.  A revert of a big mailbox can outlast the TTL, so it
   renews the lease as the merge does, and once more right before each
   mailbox's expunge: a merge that got the lease meanwhile must not see
   messages vanish under it. */
#define REVERT_LEASE_TTL_SECS   600
#define REVERT_LEASE_RENEW_SECS 60

struct revert_entry {
	char *guid;
	uint32_t uid;
	unsigned char fp[BF_FP_SIZE];
	bool found;
};

struct revert_uid {
	uint32_t uid;
	/* found by keyword and fingerprint, not where the merge put it */
	bool moved;
};

struct revert_box {
	const char *vname;
	const char *guid;
	ARRAY(struct revert_uid) expunge;
};

struct revert_candidate {
	unsigned char fp[BF_FP_SIZE];
	unsigned int box;
	uint32_t uid;
	bool have_fp;
};

/* What was really expunged (counted after the commit). */
struct revert_counts {
	uint64_t removed, moved, gone, not_found;
	/* journal places holding a message with another fingerprint, or
	   one that could not be read: kept */
	uint64_t mismatched;
};

struct revert_ctx {
	pool_t pool;
	struct mail_user *user;
	struct event *event;
	const char *keyword;
	ARRAY(struct revert_entry) entries;
	ARRAY(struct revert_box) boxes;
	ARRAY(struct revert_candidate) candidates;
	unsigned int box_idx;

	/* fingerprints of the messages at the journal's places */
	struct bf_fp *fp;
	struct backfill_cache_fields cf;
	struct mailbox *cf_box;
	uint64_t mismatched;

	struct bf_state *state;
	const char *lease, *owner;
	time_t last_renew;
	/* why a walk callback stopped the walk */
	const char *error;
	/* --keep-renumbered given; a renumbered folder refused the revert */
	bool keep_renumbered, refused;
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

static int revert_lease_renew(struct revert_ctx *rc, bool force,
                              const char **error_r)
{
	time_t now = time(NULL);
	const char *error;
	int ret;

	if (!force && now - rc->last_renew < REVERT_LEASE_RENEW_SECS)
		return 0;
	ret = bf_state_lease_renew(rc->state, rc->lease, rc->owner, now,
	                           REVERT_LEASE_TTL_SECS, &error);
	if (ret < 0) {
		*error_r =
		        t_strdup_printf("renewing the merge lease: %s", error);
		return -1;
	}
	if (ret == 0) {
		*error_r =
		        "lost the merge lease to another process (a merge may be running): stopped";
		return -1;
	}
	rc->last_renew = now;
	return 0;
}

/* 1 if the message at an entry's place has the entry's fingerprint; 0 if
   it has another one (counted, logged); -1 if it vanished meanwhile. */
static int revert_place_matches(struct revert_ctx *rc, struct mail *mail,
                                const struct revert_entry *e)
{
	struct backfill_mail_keys keys;
	const char *error;
	int ret;

	if (rc->cf_box != mail->box) {
		backfill_cache_fields_register(mail->box, &rc->cf);
		rc->cf_box = mail->box;
	}
	ret = backfill_mail_keys_get(mail, &rc->cf, rc->fp, TRUE, &keys,
	                             &error);
	if (ret == 0)
		return -1;
	if (ret > 0 && memcmp(keys.fp, e->fp, BF_FP_SIZE) == 0)
		return 1;
	rc->mismatched++;
	if (ret < 0) {
		e_warning(rc->event,
		          "revert keeps %s/uid %u: it cannot be read "
		          "to prove it is the merge's copy: %s",
		          mailbox_get_vname(mail->box), mail->uid, error);
	} else {
		e_warning(
		        rc->event,
		        "revert keeps %s/uid %u: the journal names "
		        "it but its fingerprint differs (not the merge's copy: "
		        "the index was rebuilt or the state store altered)",
		        mailbox_get_vname(mail->box), mail->uid);
	}
	return 0;
}

static int revert_walk_cb(struct mail *mail,
                          const struct backfill_mail_keys *keys ATTR_UNUSED,
                          const char *read_error ATTR_UNUSED, void *context)
{
	struct revert_ctx *rc = context;
	struct revert_box *rb = array_idx_modifiable(&rc->boxes, rc->box_idx);
	struct revert_entry *e;

	const char *error;

	if (revert_lease_renew(rc, FALSE, &error) < 0) {
		/* this callback runs in a data stack frame of its own */
		rc->error = p_strdup(rc->pool, error);
		return -1;
	}
	if (mail->uid != 0 && rb->guid != NULL &&
	    (e = revert_entry_find(rc, rb->guid, mail->uid)) != NULL &&
	    !e->found) {
		int ret = revert_place_matches(rc, mail, e);

		if (ret > 0) {
			struct revert_uid *ru =
			        array_append_space(&rb->expunge);
			e->found = TRUE;
			ru->uid = mail->uid;
			return 0;
		}
		/* not the merge's message: it stays; the entry may still be
		   found elsewhere by keyword and fingerprint below */
		if (ret < 0)
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

/* Fingerprints of the keyword's messages outside the journal's places.
   One that cannot be read stops the revert before anything is removed:
   it may be the moved copy of an entry, which would then be counted
   gone and stay. */
static int revert_candidate_fp(struct revert_ctx *rc, struct bf_fp *fp,
                               const char **error_r)
{
	struct revert_candidate *c;
	struct backfill_cache_fields cf;
	struct backfill_mail_keys keys;
	unsigned int cur = UINT_MAX;
	struct mailbox *box = NULL;
	struct mailbox_transaction_context *t = NULL;
	struct mail *mail = NULL;
	const char *error;
	int ret = 0;

	array_foreach_modifiable(&rc->candidates, c)
	{
		if (revert_lease_renew(rc, FALSE, error_r) < 0) {
			ret = -1;
			break;
		}
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
			        rc->user->namespaces, rb->vname);
			box = mailbox_alloc(ns->list, rb->vname, 0);
			if (mailbox_sync(box, 0) < 0) {
				*error_r = t_strdup_printf(
				        "%s: %s", rb->vname,
				        mailbox_get_last_internal_error(box,
				                                        NULL));
				mailbox_free(&box);
				return -1;
			}
			backfill_cache_fields_register(box, &cf);
			t = mailbox_transaction_begin(box, 0, __func__);
			mail = mail_alloc(t, 0, NULL);
		}
		if (!mail_set_uid(mail, c->uid))
			continue; /* expunged meanwhile */
		ret = backfill_mail_keys_get(mail, &cf, fp, TRUE, &keys,
		                             &error);
		if (ret < 0) {
			*error_r = t_strdup_printf(
			        "%s/uid %u (has %s) cannot be read: %s",
			        mailbox_get_vname(box), c->uid, rc->keyword,
			        error);
			break;
		}
		if (ret > 0) {
			memcpy(c->fp, keys.fp, BF_FP_SIZE);
			c->have_fp = TRUE;
		}
		ret = 0;
	}
	if (box != NULL) {
		mail_free(&mail);
		(void)mailbox_transaction_commit(&t);
		mailbox_free(&box);
	}
	return ret;
}

/* Expunges rb's messages and adds them to counts once the expunge is
   committed; one that vanished since the walk is gone already. */
static int revert_expunge(struct revert_ctx *rc, struct revert_box *rb,
                          struct revert_counts *counts, const char **error_r)
{
	struct mail_namespace *ns;
	struct mailbox *box;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	const struct revert_uid *ru;
	uint64_t removed = 0, moved = 0, vanished = 0;
	int ret = 0;

	if (array_count(&rb->expunge) == 0)
		return 0;
	if (revert_lease_renew(rc, TRUE, error_r) < 0)
		return -1;
	ns = mail_namespace_find(rc->user->namespaces, rb->vname);
	box = mailbox_alloc(ns->list, rb->vname, 0);
	if (mailbox_sync(box, 0) < 0) {
		*error_r = t_strdup_printf(
		        "%s: %s", rb->vname,
		        mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return -1;
	}
	/* not FLAG_EXTERNAL: that would only drop them from the index, and
	   the next sync would find the files again with new UIDs */
	t = mailbox_transaction_begin(box, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	array_foreach(&rb->expunge, ru)
	{
		if (!mail_set_uid(mail, ru->uid)) {
			vanished++;
			continue;
		}
		mail_expunge(mail);
		if (ru->moved)
			moved++;
		else
			removed++;
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0 ||
	    mailbox_sync(box, MAILBOX_SYNC_FLAG_EXPUNGE) < 0) {
		*error_r = t_strdup_printf(
		        "%s: %s", rb->vname,
		        mailbox_get_last_internal_error(box, NULL));
		ret = -1;
	} else {
		counts->removed += removed;
		counts->moved += moved;
		counts->gone += vanished;
	}
	mailbox_free(&box);
	return ret;
}

/* The archive folders whose live folder was renumbered (issue 19,
   docs/imap-caches.md): their live messages moved above the archive's
   UIDs, and Dovecot never lowers a folder's next UID, so a revert cannot
   give them their old UIDs back.  "" when none. */
static const char *renumbered_folders(const struct bf_cursor *cursor)
{
	string_t *str = t_str_new(64);

	for (size_t i = 0; i < cursor->folders_count; i++) {
		const struct bf_cursor_folder *f = &cursor->folders[i];
		if (f->way != BF_UID_WAY_RENUMBER || f->renumber_below == 0)
			continue;
		if (str_len(str) > 0)
			str_append(str, ", ");
		str_append(str, f->name);
	}
	return str_c(str);
}

/* A merge batch committed to the mailbox whose checkpoint a crash or a
   store error cut is in no journal yet, only in the intent of the merge
   record's cursor (merge.c, "Crash safety"): a revert now would leave its
   copies and say reverted.  The merge's next run journals them, so the
   revert waits for it.  So does a renumbering cut before its
   end (renumber-unfinished.c).  0 no such batch; -1 with *error_r, and
   *postponed_r when the store could not be read. */
static int revert_check_intent(struct revert_ctx *rc, bool *postponed_r,
                               const char **error_r)
{
	const char *unfinished = "";
	struct bf_merge_record rec;
	struct bf_cursor cursor;
	const char *error;
	int ret;

	ret = bf_state_merge_get(rc->state, rc->user->username, &rec, error_r);
	if (ret < 0) {
		*error_r = t_strdup(*error_r);
		*postponed_r = TRUE;
		return -1;
	}
	/* no record: nothing merged (*error_r is not set) */
	if (ret == 0)
		return 0;
	ret = 0;
	if (bf_cursor_parse(rec.cursor, &cursor, &error) < 0) {
		*error_r = t_strdup_printf(
		        "the merge record's cursor cannot be read (%s): nothing removed",
		        error);
		ret = -1;
	} else if (cursor.intent) {
		*error_r =
		        "a merge batch was committed to the mailbox but a "
		        "crash or a store error cut its checkpoint, so its "
		        "copies are in no journal yet: nothing removed; run "
		        "doveadm backfill run for the user first (it journals "
		        "them), then revert";
		ret = -1;
	} else if (doveadm_backfill_renumber_unfinished(
	                   rc->user, &cursor, &unfinished, error_r) < 0) {
		*error_r = t_strdup_printf("%s: nothing removed", *error_r);
		ret = -1;
	} else if (unfinished[0] != '\0') {
		*error_r = t_strdup_printf(
		        "the renumbering of the live mail of %s was cut before its end (the folder took the archive's UIDVALIDITY, and its live messages are not all moved above the archive's UIDs yet, the old ones maybe there besides their copies), and only the merge record says how to finish it: nothing removed; run `doveadm backfill run -u %s` first to finish it, then revert",
		        unfinished, rc->user->username);
		rc->refused = TRUE;
		ret = -1;
	} else if (!rc->keep_renumbered &&
	           renumbered_folders(&cursor)[0] != '\0') {
		*error_r = t_strdup_printf(
		        "the live mail of %s was renumbered above the archive's UIDs, and Dovecot never gives a folder lower UIDs again, so the mailbox before the merge cannot be restored exactly: nothing removed; revert with --keep-renumbered to remove the merged mail and leave that live mail at its new UIDs under the archive's UIDVALIDITY (flags and POP3 UIDLs kept: POP3 clients see no change)",
		        renumbered_folders(&cursor));
		rc->refused = TRUE;
		ret = -1;
	}
	bf_cursor_free(&cursor);
	bf_merge_record_clear(&rec);
	return ret;
}

/* Finds and expunges what the journal names.  Returns 0, or -1 with
   *error_r (*postponed_r: the journal could not be read, nothing was
   removed). */
static int revert_mail(struct revert_ctx *rc, struct revert_counts *counts,
                       bool *postponed_r, const char **error_r)
{
	struct mail_user *user = rc->user;
	ARRAY_TYPE(backfill_mailbox_entry) boxes;
	const struct backfill_mailbox_entry *entry;
	const char *error;
	struct revert_entry *e;
	struct revert_box *rb;
	int ret = 0;

	if (revert_check_intent(rc, postponed_r, error_r) < 0)
		return -1;
	if (bf_state_journal_iter(rc->state, user->username, revert_journal_cb,
	                          rc, error_r) < 0) {
		/* nothing removed yet: a retry may succeed */
		*error_r = t_strdup(*error_r);
		*postponed_r = TRUE;
		return -1;
	}
	array_sort(&rc->entries, revert_entry_cmp);

	if (backfill_private_mailboxes(user, BACKFILL_MAILBOXES_SELECTABLE,
	                               rc->pool, &boxes, &error) < 0) {
		*error_r = t_strdup_printf("listing live folders: %s", error);
		return -1;
	}
	array_foreach(&boxes, entry)
	{
		struct mail_namespace *ns =
		        mail_namespace_find(user->namespaces, entry->vname);
		struct mailbox *box = mailbox_alloc(ns->list, entry->vname,
		                                    MAILBOX_FLAG_READONLY);
		struct mailbox_metadata md;

		rc->box_idx = array_count(&rc->boxes);
		rb = array_append_space(&rc->boxes);
		rb->vname = entry->vname;
		p_array_init(&rb->expunge, rc->pool, 16);
		if (mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &md) == 0)
			rb->guid =
			        p_strdup(rc->pool, guid_128_to_string(md.guid));
		if (doveadm_backfill_walk(box, NULL, NULL, NULL, NULL,
		                          revert_walk_cb, rc, error_r) < 0) {
			if (rc->error != NULL) {
				/* rc->pool goes before the caller prints it */
				*error_r = t_strdup(rc->error);
			}
			ret = -1;
		}
		mailbox_free(&box);
		if (ret < 0)
			return -1;
	}

	/* entries not where they were put: moved (keyword + fingerprint)
	   or deleted by the user */
	counts->mismatched = rc->mismatched;
	unsigned int not_found = 0;
	array_foreach_modifiable(&rc->entries, e)
	{
		if (!e->found)
			not_found++;
	}
	if (not_found > 0 && array_count(&rc->candidates) > 0) {
		ret = revert_candidate_fp(rc, rc->fp, error_r);
		if (ret < 0)
			return -1;
		struct revert_candidate *c;
		array_foreach_modifiable(&rc->candidates, c)
		{
			if (!c->have_fp)
				continue;
			array_foreach_modifiable(&rc->entries, e)
			{
				if (e->found ||
				    memcmp(e->fp, c->fp, BF_FP_SIZE) != 0)
					continue;
				e->found = TRUE;
				rb = array_idx_modifiable(&rc->boxes, c->box);
				struct revert_uid *ru =
				        array_append_space(&rb->expunge);
				ru->uid = c->uid;
				ru->moved = TRUE;
				not_found--;
				break;
			}
		}
	}
	/* Moves keep keywords: with one, an entry found neither in place
	   nor by it was deleted by the user.  Without one, a moved message
	   cannot be told from the user's own copies: it stays. */
	array_foreach_modifiable(&rc->boxes, rb)
	{
		if (revert_expunge(rc, rb, counts, error_r) < 0)
			return -1;
	}
	/* counted, like the rest, once the revert went through */
	if (rc->keyword != NULL)
		counts->gone += not_found;
	else
		counts->not_found += not_found;
	return 0;
}

static int revert_user(struct mail_user *user, struct backfill_user *buser,
                       struct bf_state *state, const char *lease,
                       const char *owner, bool keep_renumbered,
                       struct revert_counts *counts, bool *postponed_r,
                       bool *refused_r, const char **error_r)
{
	struct revert_ctx rc;
	int ret;

	i_zero(&rc);
	rc.pool = pool_alloconly_create("backfill revert", 4096);
	rc.user = user;
	rc.event = buser->event;
	rc.keyword = buser->set.keyword;
	rc.state = state;
	rc.lease = lease;
	rc.owner = owner;
	rc.last_renew = time(NULL);
	rc.keep_renumbered = keep_renumbered;
	p_array_init(&rc.entries, rc.pool, 256);
	p_array_init(&rc.boxes, rc.pool, 16);
	p_array_init(&rc.candidates, rc.pool, 16);
	rc.fp = bf_fp_new();
	if (rc.fp == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "out of memory");
	ret = revert_mail(&rc, counts, postponed_r, error_r);
	*refused_r = rc.refused;
	bf_fp_free(&rc.fp);
	pool_unref(&rc.pool);
	if (ret < 0)
		return -1;

	/* Pending again: no journal, and a merge record only where a
	   merge is due (an archive, or one that cannot be resolved now: the
	   next merge reports that).  A user without an archive has nothing
	   to leave pending: status shows no-archive again. */
	const char *path, *error;
	if (bf_state_merge_delete(state, user->username, error_r) < 0) {
		*error_r = t_strdup(*error_r);
		return -1;
	}
	if (backfill_archive_resolve(user, &buser->set, &path, &error) == 0)
		return 0;
	struct bf_merge_record rec;
	i_zero(&rec);
	rec.status = BF_MERGE_PENDING;
	rec.updated = time(NULL);
	if (bf_state_merge_put(state, user->username, &rec, error_r) < 0) {
		*error_r = t_strdup(*error_r);
		return -1;
	}
	return 0;
}

static void revert_print(struct doveadm_mail_cmd_context *ctx,
                         const char *username, const char *result,
                         const struct revert_counts *counts, const char *error)
{
	doveadm_backfill_print_user(ctx, username);
	doveadm_print(result);
	doveadm_backfill_print_num(counts->removed);
	doveadm_backfill_print_num(counts->moved);
	doveadm_backfill_print_num(counts->gone);
	doveadm_backfill_print_num(counts->not_found);
	doveadm_backfill_print_num(counts->mismatched);
	doveadm_backfill_print_text(error);
}

struct revert_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	bool yes;
	/* --keep-renumbered: a renumbered folder's live mail keeps its new
	   UIDs */
	bool keep;
};

static int cmd_revert_run(struct doveadm_mail_cmd_context *ctx,
                          struct mail_user *user)
{
	struct backfill_user *buser;
	struct bf_state *state;
	const char *error, *lease, *result = "reverted", *row_error = NULL;
	char owner[128], *holder = NULL;
	struct revert_counts counts;
	bool postponed = FALSE, refused = FALSE;
	int ret;

	i_zero(&counts);
	if ((buser = doveadm_backfill_user(user, &error)) == NULL) {
		revert_print(ctx, user->username, "failed", &counts, error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		return -1;
	}
	if (doveadm_backfill_state(buser, &state, NULL, &error) < 0) {
		e_error(buser->event,
		        "not reverted: %s (try again once the state store answers)",
		        error);
		revert_print(ctx, user->username, "postponed", &counts, error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
		return -1;
	}
	lease = doveadm_backfill_lease_name(user);
	bf_lease_owner(owner, sizeof(owner));
	ret = bf_state_lease_acquire(state, lease, owner, time(NULL),
	                             REVERT_LEASE_TTL_SECS, &holder, &error);
	if (ret < 0) {
		e_error(buser->event,
		        "not reverted: %s (try again once the state store answers)",
		        error);
		result = "postponed";
		row_error = error;
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
	} else if (ret == 0) {
		row_error = t_strdup_printf(
		        "a merge is running (%s); try again when it is finished",
		        holder == NULL ? "?" : holder);
		e_error(buser->event, "not reverted: %s",
		        backfill_value_escape(row_error, BACKFILL_ESCAPE_TEXT));
		free(holder);
		result = "busy";
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
	} else {
		ret = revert_user(user, buser, state, lease, owner,
		                  ((struct revert_cmd_context *)ctx)->keep,
		                  &counts, &postponed, &refused, &error);
		if (ret < 0 && refused) {
			e_error(buser->event, "not reverted: %s", error);
			result = "refused";
			row_error = error;
			doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		} else if (ret < 0 && postponed) {
			e_error(buser->event,
			        "not reverted: %s (try again once the state store answers)",
			        error);
			result = "postponed";
			row_error = error;
			doveadm_backfill_outcome(ctx,
			                         DOVEADM_BACKFILL_TEMPFAIL);
		} else if (ret < 0) {
			e_error(buser->event,
			        "revert failed: %s (run it again: what was removed stays removed)",
			        error);
			result = "failed";
			row_error = error;
			doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		} else if (counts.mismatched > 0) {
			row_error = t_strdup_printf(
			        "%" PRIu64
			        " journal entries named a message whose fingerprint differs or that could not be read (the index was rebuilt or the state store altered): those messages are kept",
			        counts.mismatched);
			e_warning(buser->event, "%s", row_error);
			result = "mismatched";
			doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		} else if (counts.not_found > 0) {
			row_error = t_strdup_printf(
			        "%" PRIu64
			        " added messages were not where the merge put them, and without backfill_keyword a moved one cannot be told from the user's own: they stay (moved or deleted by the user)",
			        counts.not_found);
			e_warning(buser->event, "%s", row_error);
			result = "incomplete";
			doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		}
		/* error points into the handle: keep the row's copy */
		row_error = t_strdup(row_error);
		(void)bf_state_lease_release(state, lease, owner, &error);
	}
	revert_print(ctx, user->username, result, &counts, row_error);
	return 0;
}

static void cmd_revert_init(DOVEADM_BACKFILL_INIT_ARGS)
{
	struct revert_cmd_context *ctx = (struct revert_cmd_context *)_ctx;
	enum doveadm_print_header_flags num =
	        DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY;

	if (!doveadm_cmd_param_bool(_ctx->cctx, "yes", &ctx->yes) ||
	    !ctx->yes) {
		i_fatal_status(
		        EX_USAGE,
		        "backfill revert removes every message backfill added: run it with --yes (-y)");
	}
	if (!doveadm_cmd_param_bool(_ctx->cctx, "keep-renumbered", &ctx->keep))
		ctx->keep = FALSE;
	doveadm_backfill_header_user(_ctx);
	doveadm_print_header("result", "Result", 0);
	doveadm_print_header("removed", "Removed", num);
	doveadm_print_header("removed_moved", "RemovedMoved", num);
	doveadm_print_header("gone", "GoneAlready", num);
	doveadm_print_header("not_found", "NotFound", num);
	doveadm_print_header("mismatched", "Mismatched", num);
	doveadm_print_header("error", "Error", 0);
}

static struct doveadm_mail_cmd_context *cmd_revert_alloc(void)
{
	struct revert_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct revert_cmd_context);
	doveadm_backfill_options(&ctx->ctx, "yk");
	ctx->ctx.v.init = cmd_revert_init;
	ctx->ctx.v.run = cmd_revert_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_cmd_backfill_revert = {
        .name = "backfill revert",
        .usage =
                DOVEADM_CMD_MAIL_USAGE_PREFIX "-y|--yes [-k|--keep-renumbered]",
        .mail_cmd = cmd_revert_alloc,
        DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON DOVEADM_CMD_PARAM(
                'y', "yes", CMD_PARAM_BOOL, 0)
                DOVEADM_CMD_PARAM('k', "keep-renumbered", CMD_PARAM_BOOL, 0)
                        DOVEADM_CMD_PARAMS_END};
