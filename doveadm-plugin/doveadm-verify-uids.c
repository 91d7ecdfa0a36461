/* doveadm backfill verify, the IMAP UIDs part (issue 19): every archive
   folder whose copies went the archive or renumber way (the cursor's w
   items) must show the archive folder's UIDVALIDITY in its live folder,
   and every copy the journal names must sit at its archive UID with its
   own content.  An IMAP client of the old server trusts exactly that: a
   copy at another UID under the old UIDVALIDITY would show it a message
   it cached in place of the one there.  A copy the user deleted since is
   not checked here (the fingerprint proof counts it).  Once the merge is
   done, the live folder's UIDNEXT must be at least the archive folder's:
   such a client fetches only UIDs from the UIDNEXT it cached on, and
   would never see a live message below it.  A copy the journal puts in
   another live folder than the one the way was decided for cannot be
   checked, and says so. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "fingerprint.h"
#include "state.h"
#include "cursor.h"
#include "backfill-user.h"
#include "archive.h"
#include "mail-keys.h"
#include "doveadm-backfill.h"
#include "doveadm-verify-uids.h"

struct uids_entry {
	const char *archive_mailbox;
	const char *live_guid;
	uint32_t uid, archive_uid;
	unsigned char fp[BF_FP_SIZE];
};

struct uids_ctx {
	pool_t pool;
	struct mail_user *user;
	struct event *event;
	struct bf_fp *fp;
	const struct bf_cursor *cursor;
	struct backfill_archive *archive;
	/* the merge is done: every folder got its UIDNEXT */
	bool done;
	ARRAY(struct uids_entry) entries;
	struct doveadm_verify_uids *result;
};

static bool folder_keeps_uids(const struct bf_cursor *c, const char *name)
{
	for (size_t i = 0; i < c->folders_count; i++) {
		const struct bf_cursor_folder *f = &c->folders[i];
		if (strcmp(f->name, name) == 0)
			return f->way == BF_UID_WAY_ARCHIVE ||
			       f->way == BF_UID_WAY_RENUMBER;
	}
	return FALSE;
}

static int journal_cb(const struct bf_journal_entry *entry, void *context)
{
	struct uids_ctx *ctx = context;

	if (!folder_keeps_uids(ctx->cursor, entry->archive_mailbox))
		return 0;
	struct uids_entry *e = array_append_space(&ctx->entries);
	e->archive_mailbox = p_strdup(ctx->pool, entry->archive_mailbox);
	e->live_guid = p_strdup(ctx->pool, entry->mailbox_guid);
	e->uid = entry->uid;
	e->archive_uid = entry->archive_uid;
	memcpy(e->fp, entry->fingerprint, BF_FP_SIZE);
	return 0;
}

static void mismatch(struct uids_ctx *ctx, const char *fmt, ...)
        ATTR_FORMAT(2, 3);
static void mismatch(struct uids_ctx *ctx, const char *fmt, ...)
{
	va_list args;
	const char *line;

	va_start(args, fmt);
	line = t_strdup_vprintf(fmt, args);
	va_end(args);
	ctx->result->mismatches++;
	if (str_len(ctx->result->list) > 0)
		str_append(ctx->result->list, "; ");
	str_append(ctx->result->list, line);
	e_warning(ctx->event, "IMAP UIDs: %s", line);
}

static struct mailbox *live_box(struct uids_ctx *ctx, const char *guid_hex)
{
	struct mail_namespace *ns =
	        mail_namespace_find_inbox(ctx->user->namespaces);
	guid_128_t guid;

	if (guid_128_from_string(guid_hex, guid) < 0)
		return NULL;
	return mailbox_alloc_guid(ns->list, guid, MAILBOX_FLAG_READONLY);
}

/* One copy: at its archive UID, with its own content. */
static void check_entry(struct uids_ctx *ctx, struct mail *mail,
                        const struct uids_entry *e)
{
	struct backfill_mail_keys keys;
	const char *error;

	if (e->uid != e->archive_uid) {
		mismatch(ctx, "archive %s/uid %u was merged at live UID %u",
		         e->archive_mailbox, e->archive_uid, e->uid);
		return;
	}
	if (!mail_set_uid(mail, e->uid))
		return; /* deleted by the user since */
	if (backfill_mail_keys_get(mail, NULL, ctx->fp, TRUE, &keys, &error) >
	            0 &&
	    memcmp(keys.fp, e->fp, BF_FP_SIZE) != 0) {
		mismatch(ctx, "%s/uid %u is not the copy of archive %s/uid %u",
		         mailbox_get_vname(mail->box), e->uid,
		         e->archive_mailbox, e->archive_uid);
	}
}

/* The live folder's UIDNEXT against the archive folder's (none to
   compare with when the archive folder is gone since). */
static void check_uidnext(struct uids_ctx *ctx,
                          const struct bf_cursor_folder *f,
                          struct mailbox *lbox)
{
	struct mailbox_status astatus, lstatus;
	enum mail_error error;

	if (!ctx->done)
		return;
	struct mailbox *abox = mailbox_alloc(ctx->archive->ns->list, f->name,
	                                     MAILBOX_FLAG_READONLY);
	if (mailbox_sync(abox, 0) < 0) {
		const char *errstr =
		        mailbox_get_last_internal_error(abox, &error);
		if (error != MAIL_ERROR_NOTFOUND) {
			mismatch(ctx, "%s: its UIDNEXT cannot be read: %s",
			         f->name, errstr);
		}
		mailbox_free(&abox);
		return;
	}
	mailbox_get_open_status(abox, STATUS_UIDNEXT, &astatus);
	mailbox_free(&abox);
	if (mailbox_get_status(lbox, STATUS_UIDNEXT, &lstatus) < 0) {
		mismatch(ctx, "%s: live folder %s: %s", f->name,
		         mailbox_get_vname(lbox),
		         mailbox_get_last_internal_error(lbox, NULL));
	} else if (lstatus.uidnext < astatus.uidnext) {
		mismatch(
		        ctx,
		        "%s: live folder %s has UIDNEXT %u, below the archive's %u",
		        f->name, mailbox_get_vname(lbox), lstatus.uidnext,
		        astatus.uidnext);
	}
}

/* Copies of the folder that the journal puts into another live folder
   than f->way_live_guid: their UIDs cannot be checked. */
static void check_unmatched(struct uids_ctx *ctx,
                            const struct bf_cursor_folder *f)
{
	const struct uids_entry *e;
	const char *other = NULL;
	unsigned int count = 0;

	array_foreach(&ctx->entries, e)
	{
		if (strcmp(e->archive_mailbox, f->name) == 0 &&
		    strcmp(e->live_guid, f->way_live_guid) != 0) {
			other = e->live_guid;
			count++;
		}
	}
	if (count > 0) {
		mismatch(
		        ctx,
		        "%s: %u copies are in live folder %s, not in %s, which took the archive's UIDs: not checked",
		        f->name, count, other,
		        f->way_live_guid[0] == '\0' ? "(none)"
		                                    : f->way_live_guid);
	}
}

/* The folder's copies (entries[first..last)) and its UIDVALIDITY. */
static void check_folder(struct uids_ctx *ctx, const struct bf_cursor_folder *f)
{
	const struct uids_entry *e;
	struct mailbox_status status;

	check_unmatched(ctx, f);
	if (f->way_live_guid[0] == '\0')
		return; /* decided, but its live folder never opened */
	struct mailbox *box = live_box(ctx, f->way_live_guid);
	/* opened first: mailbox_get_status() can answer from the mailbox
	   list index without opening it, and the transaction below needs it
	   open (a Dovecot 2.4 assert) */
	if (box == NULL || mailbox_open(box) < 0 ||
	    mailbox_get_status(box, STATUS_UIDVALIDITY, &status) < 0) {
		mismatch(ctx, "%s: its live folder %s is gone", f->name,
		         f->way_live_guid);
		if (box != NULL)
			mailbox_free(&box);
		return;
	}
	if (status.uidvalidity != f->uidvalidity) {
		mismatch(
		        ctx,
		        "%s: live folder %s has UIDVALIDITY %u, not the archive's %u",
		        f->name, mailbox_get_vname(box), status.uidvalidity,
		        f->uidvalidity);
	}
	check_uidnext(ctx, f, box);
	struct mailbox_transaction_context *t =
	        mailbox_transaction_begin(box, 0, __func__);
	struct mail *mail = mail_alloc(t, 0, NULL);
	array_foreach(&ctx->entries, e)
	{
		if (strcmp(e->archive_mailbox, f->name) == 0 &&
		    strcmp(e->live_guid, f->way_live_guid) == 0)
			check_entry(ctx, mail, e);
	}
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
	mailbox_free(&box);
}

int doveadm_verify_uids(struct mail_user *user, struct backfill_user *buser,
                        struct backfill_archive *archive,
                        struct doveadm_verify_uids *result,
                        const char **error_r)
{
	struct uids_ctx ctx;
	struct bf_merge_record rec;
	struct bf_state *state;
	struct bf_cursor cursor;
	const char *error;
	int ret;

	i_zero(result);
	result->list = t_str_new(128);
	ret = doveadm_backfill_state(buser, &state, &rec, error_r);
	if (ret <= 0)
		return ret;
	if (bf_cursor_parse(rec.cursor, &cursor, &error) < 0) {
		*error_r = t_strdup_printf("merge record's cursor: %s", error);
		bf_cursor_free(&cursor);
		bf_merge_record_clear(&rec);
		return -1;
	}
	i_zero(&ctx);
	ctx.pool = pool_alloconly_create("backfill verify uids", 4096);
	ctx.user = user;
	ctx.event = buser->event;
	ctx.cursor = &cursor;
	ctx.archive = archive;
	ctx.done = rec.status == BF_MERGE_DONE;
	ctx.result = result;
	p_array_init(&ctx.entries, ctx.pool, 64);
	ret = bf_state_journal_iter(state, user->username, journal_cb, &ctx,
	                            error_r);
	if (ret >= 0) {
		ctx.fp = bf_fp_new();
		if (ctx.fp == NULL)
			i_fatal_status(FATAL_OUTOFMEM,
			               "backfill: out of memory");
		for (size_t i = 0; i < cursor.folders_count; i++) {
			const struct bf_cursor_folder *f = &cursor.folders[i];
			if (f->way == BF_UID_WAY_ARCHIVE ||
			    f->way == BF_UID_WAY_RENUMBER)
				check_folder(&ctx, f);
		}
		bf_fp_free(&ctx.fp);
		ret = 1;
	}
	pool_unref(&ctx.pool);
	bf_cursor_free(&cursor);
	bf_merge_record_clear(&rec);
	return ret;
}
