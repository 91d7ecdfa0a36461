/* doveadm backfill verify, the IMAP UIDs part (issue 19): every archive
   folder whose copies went the archive or renumber way (the cursor's w
   items) must show the archive folder's UIDVALIDITY in its live folder,
   and every copy the journal names must sit at its archive UID with its
   own content.  An IMAP client of the old server trusts exactly that: a
   copy at another UID under the old UIDVALIDITY would show it a message
   it cached in place of the one there.  A copy the user deleted since is
   not checked here (the fingerprint proof counts it).  Once the merge is
   done, the live folder's UIDNEXT must be at least the archive folder's
   plus the backfill_imap_uid_margin the merge gave it (on record, the
   cursor's m item: not the setting as it is now, which may have been
   raised since, or set first after the merge): such a client fetches only
   UIDs from the UIDNEXT it cached on, and would never see a live message
   below it, nor one at a UID the old server gave out after the backup.  A copy
   the journal puts in another live folder than the one the way was decided for
   cannot be checked, and says so.

   POP3 shows the INBOX, whichever way it went: every merged copy still
   there must show the UIDL the old server showed for it (or another
   message must show that UIDL: the second of two archived messages with
   one UIDL gets Dovecot's own).  A UIDVALIDITY changed under copies
   without a stored UIDL would change their UIDLs, and every POP3 client
   of the old server would download them again. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hash.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mail-search-build.h"
#include "fingerprint.h"
#include "state.h"
#include "cursor.h"
#include "backfill-user.h"
#include "archive.h"
#include "mail-keys.h"
#include "dovecot-compat.h"
#include "pop3-uidl.h"
#include "merge.h"
#include "doveadm-backfill.h"
#include "doveadm-verify-uids.h"
#include "imap-uids.h"

struct renumbered_msg;
ARRAY_DEFINE_TYPE(renumbered_msg, struct renumbered_msg);

struct uids_entry {
	const char *archive_mailbox;
	const char *live_guid;
	uint32_t uid, archive_uid;
	unsigned char fp[BF_FP_SIZE];
	/* its live folder is the INBOX: its POP3 UIDL is checked */
	bool inbox;
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
	bool inbox = strcasecmp(entry->mailbox, "INBOX") == 0;

	if (!inbox && !folder_keeps_uids(ctx->cursor, entry->archive_mailbox))
		return 0;
	struct uids_entry *e = array_append_space(&ctx->entries);
	e->inbox = inbox;
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

/* The live folder's UIDNEXT against the archive folder's plus the margin
   on record (none to compare with when the archive folder is gone
   since).  A record without one was written before the merge recorded
   it (every merge before the margin existed, and those under a build
   that applied the margin without recording it): its folder is checked
   against the archive's UIDNEXT alone, margin 0.  That is the smallest
   floor still safe and one every such merge kept (the archive and
   renumber ways raised the live UIDNEXT to the archive's from the
   start): below it, a live message would sit at a UID the old server's
   clients cached.  Assuming the setting as it is now would fail
   folders merged correctly under a smaller margin or none, and checking
   nothing would miss a folder below the archive's own UIDs. */
static void check_uidnext(struct uids_ctx *ctx,
                          const struct bf_cursor_folder *f,
                          struct mailbox *lbox)
{
	struct mailbox_status astatus, lstatus;
	enum mail_error error;
	uint32_t next, margin = f->margin_known ? f->margin : 0;

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
	next = backfill_imap_uids_keep_next(astatus.uidnext, margin);
	if (mailbox_get_status(lbox, STATUS_UIDNEXT, &lstatus) < 0) {
		mismatch(ctx, "%s: live folder %s: %s", f->name,
		         mailbox_get_vname(lbox),
		         mailbox_get_last_internal_error(lbox, NULL));
	} else if (lstatus.uidnext < next) {
		mismatch(
		        ctx,
		        "%s: live folder %s has UIDNEXT %u, below %u (the archive's %u plus backfill_imap_uid_margin): %s",
		        f->name, mailbox_get_vname(lbox), lstatus.uidnext, next,
		        astatus.uidnext,
		        f->margin_known
		                ? t_strdup_printf(
		                          "it was merged with margin %u",
		                          margin)
		                : "no margin on record (an older merge), checked with 0");
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

HASH_TABLE_DEFINE_TYPE(str_uid, char *, void *);

/* A live message of a renumbered folder, not a merged copy, at or above
   the first UID of the move. */
struct renumbered_msg {
	uint32_t uid;
	/* shows a stored POP3 UIDL */
	bool stored;
};

/* A second message with a key (GUID or UIDL) seen before: counted, the
   first such pair kept for the report. */
static void dup_seen(pool_t pool, HASH_TABLE_TYPE(str_uid) seen,
                     const char *key, uint32_t uid, unsigned int *count,
                     uint32_t example_r[2], const char **key_r)
{
	void *value;

	if (key == NULL || key[0] == '\0')
		return;
	value = hash_table_lookup(seen, key);
	if (value == NULL) {
		hash_table_insert(seen, p_strdup(pool, key), POINTER_CAST(uid));
		return;
	}
	if ((*count)++ == 0) {
		example_r[0] = POINTER_CAST_TO(value, uint32_t);
		example_r[1] = uid;
		*key_r = p_strdup(pool, key);
	}
}

/* The UIDs the move's messages are at.  The move asks for the archive's
   UIDNEXT on (plus a margin), but a message delivered between the UIDNEXT
   raise and the move's commit takes a UID first and Dovecot gives the
   moved ones the next: the recorded first UID says where the move began,
   not where its messages are.  Each of them shows the POP3 UIDL it showed
   before, stored (renumber.c); new mail shows none.  So the highest live
   message with a stored UIDL ends the move's UIDs, which are at most
   count (one commit gives ascending UIDs; a resumed move goes on above
   the first): a delivery before the move is below them, one after above.
   None stored (each one deleted, or none kept its UIDL): the recorded
   UIDs. */
static void moved_range(const struct bf_cursor_folder *f, uint32_t count,
                        const ARRAY_TYPE(renumbered_msg) * msgs,
                        uint32_t *first_r, uint32_t *last_r)
{
	const struct renumbered_msg *msg;
	uint32_t last = 0;

	array_foreach(msgs, msg)
	{
		if (msg->stored && msg->uid > last)
			last = msg->uid;
	}
	if (last == 0) {
		*first_r = f->move_base;
		*last_r = f->move_base + count - 1;
		return;
	}
	*first_r = last >= count ? last - count + 1 : 1;
	*last_r = last;
}

/* A renumbered live folder (renumber way, docs/imap-caches.md): once the
   merge is done its renumbering is finished, nothing but the merge's
   copies is below the archive's UIDNEXT (where the renumbered live mail
   was: an old client fetches only above the UIDNEXT it cached), each
   renumbered message still shows the POP3 UIDL it showed before (stored:
   a UIDL computed from its new UID and UIDVALIDITY would be another, and
   POP3 clients of the new server would download it again), and no two
   messages show one POP3 UIDL (a POP3 client keeps one of them).  Two
   live messages with one GUID are no defect: Dovecot gives a user's copy
   within a folder its source's GUID; what a move cut and never finished
   leaves (the old message beside its copy) is the unfinished move or the
   messages below the archive's UIDNEXT, reported above and below. */
static void check_renumbered(struct uids_ctx *ctx,
                             const struct bf_cursor_folder *f,
                             struct mailbox *box, uint32_t uidvalidity)
{
	const char *format = backfill_user_pop3_uidl_format(ctx->user);
	const struct uids_entry *e;
	const char *pos = f->move_uids, *stored, *uidl, *error;
	const char *dup_uidl = NULL;
	uint32_t first, last, count = 0, below = 0, lost = 0;
	uint32_t uidl_example[2] = {0, 0};
	unsigned int uidl_dups = 0;
	ARRAY_TYPE(seq_range) ours;
	ARRAY_TYPE(renumbered_msg) msgs;
	HASH_TABLE_TYPE(str_uid) uidls;
	struct mail_search_context *search;
	struct mail *mail;

	if (!ctx->done || f->renumber_below == 0)
		return;
	if (f->move_uids == NULL || !f->move_done) {
		mismatch(
		        ctx,
		        "%s: the renumbering of live folder %s is not finished (the next merge run finishes it)",
		        f->name, mailbox_get_vname(box));
		return;
	}
	while (bf_uid_ranges_next(&pos, &first, &last))
		count += last - first + 1;
	t_array_init(&ours, 16);
	array_foreach(&ctx->entries, e)
	{
		if (strcmp(e->live_guid, f->way_live_guid) == 0 && e->uid != 0)
			seq_range_array_add(&ours, e->uid);
	}
	t_array_init(&msgs, 16);
	hash_table_create(&uidls, ctx->pool, 0, str_hash, strcmp);
	struct mailbox_transaction_context *t =
	        mailbox_transaction_begin(box, 0, __func__);
	search = backfill_merge_search_uids(t, 1, (uint32_t)-1);
	while (mailbox_search_next(search, &mail)) {
		bool copy = seq_range_exists(&ours, mail->uid);

		if (format != NULL && format[0] != '\0' &&
		    backfill_pop3_uidl_get(mail, uidvalidity, format, &uidl,
		                           &error) == 0) {
			dup_seen(ctx->pool, uidls, uidl, mail->uid, &uidl_dups,
			         uidl_example, &dup_uidl);
		}
		if (copy)
			continue;
		if (mail->uid < f->move_base) {
			if (below++ == 0)
				first = mail->uid;
			continue;
		}
		struct renumbered_msg *msg = array_append_space(&msgs);
		msg->uid = mail->uid;
		msg->stored = mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND,
		                               &stored) == 0 &&
		              stored[0] != '\0';
	}
	(void)mailbox_search_deinit(&search);
	(void)mailbox_transaction_commit(&t);
	hash_table_destroy(&uidls);
	if (below > 0) {
		mismatch(
		        ctx,
		        "%s: %u messages of live folder %s below the archive's UIDNEXT %u are not merged copies (e.g. UID %u): an old client never fetches them",
		        f->name, below, mailbox_get_vname(box), f->move_base,
		        first);
	}
	/* a format of %u or %v only changes with the UID */
	if (count > 0 && backfill_pop3_uidl_changes_with_uid(format)) {
		const struct renumbered_msg *msg;
		uint32_t mfirst, mlast, example = 0;

		moved_range(f, count, &msgs, &mfirst, &mlast);
		array_foreach(&msgs, msg)
		{
			if (msg->stored || msg->uid < mfirst ||
			    msg->uid > mlast)
				continue;
			if (lost++ == 0)
				example = msg->uid;
		}
		if (lost > 0) {
			mismatch(
			        ctx,
			        "%s: %u renumbered live messages of %s no longer show the POP3 UIDL they showed (e.g. UID %u)",
			        f->name, lost, mailbox_get_vname(box), example);
		}
	}
	if (uidl_dups > 0) {
		mismatch(
		        ctx,
		        "%s: %u messages of %s show one POP3 UIDL with another (e.g. UIDs %u and %u, UIDL %s): a POP3 client takes them for one",
		        f->name, uidl_dups, mailbox_get_vname(box),
		        uidl_example[0], uidl_example[1], dup_uidl);
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
	if (f->way == BF_UID_WAY_RENUMBER)
		check_renumbered(ctx, f, box, status.uidvalidity);
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

HASH_TABLE_DEFINE_TYPE(uidl_set, char *, char *);

/* An archive folder read in journal order, one at a time. */
struct uidl_archive {
	const char *name;
	struct mailbox *box;
	struct mailbox_transaction_context *t;
	struct mail *mail;
	uint32_t uidvalidity;
};

static void uidl_archive_close(struct uidl_archive *a)
{
	if (a->mail != NULL)
		mail_free(&a->mail);
	if (a->t != NULL)
		(void)mailbox_transaction_commit(&a->t);
	if (a->box != NULL)
		mailbox_free(&a->box);
}

/* The archived message's UIDL as the old server showed it, or NULL. */
static const char *uidl_archived(struct uids_ctx *ctx, struct uidl_archive *a,
                                 const struct uids_entry *e, const char *format)
{
	struct mailbox_status status;
	const char *uidl, *error;

	if (a->name == NULL || strcmp(a->name, e->archive_mailbox) != 0) {
		uidl_archive_close(a);
		a->name = e->archive_mailbox;
		a->box = mailbox_alloc(ctx->archive->ns->list, a->name,
		                       MAILBOX_FLAG_READONLY);
		if (mailbox_sync(a->box, 0) < 0) {
			mailbox_free(&a->box);
			return NULL; /* gone from the archive since */
		}
		mailbox_get_open_status(a->box, STATUS_UIDVALIDITY, &status);
		a->uidvalidity = status.uidvalidity;
		a->t = mailbox_transaction_begin(a->box, 0, __func__);
		a->mail = mail_alloc(a->t, 0, NULL);
	}
	if (a->box == NULL || !mail_set_uid(a->mail, e->archive_uid) ||
	    backfill_pop3_uidl_get(a->mail, a->uidvalidity, format, &uidl,
	                           &error) < 0)
		return NULL;
	return uidl;
}

/* The UIDLs the live INBOX shows now, into *shown. */
static int uidls_shown(struct uids_ctx *ctx,
                       struct mailbox_transaction_context *t,
                       uint32_t uidvalidity, const char *format,
                       HASH_TABLE_TYPE(uidl_set) * shown)
{
	struct mail_search_args *args = mail_search_build_init();
	struct mail_search_context *search;
	struct mail *mail;
	const char *uidl, *error;

	mail_search_build_add_all(args);
	search = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (mailbox_search_next(search, &mail)) {
		if (backfill_pop3_uidl_get(mail, uidvalidity, format, &uidl,
		                           &error) == 0) {
			char *key = p_strdup(ctx->pool, uidl);
			hash_table_update(*shown, key, key);
		}
	}
	return mailbox_search_deinit(&search);
}

static void check_uidls(struct uids_ctx *ctx)
{
	const char *format = backfill_user_pop3_uidl_format(ctx->user);
	struct mail_namespace *ns =
	        mail_namespace_find_inbox(ctx->user->namespaces);
	struct mailbox_metadata md;
	struct mailbox_status status;
	struct uidl_archive a;
	const struct uids_entry *e;
	const char *guid, *uidl, *example = NULL, *error;
	HASH_TABLE_TYPE(uidl_set) shown;
	unsigned int changed = 0;

	if (format == NULL || format[0] == '\0')
		return;
	struct mailbox *box =
	        mailbox_alloc(ns->list, "INBOX", MAILBOX_FLAG_READONLY);
	if (mailbox_sync(box, 0) < 0 ||
	    mailbox_get_metadata(box, MAILBOX_METADATA_GUID, &md) < 0) {
		mismatch(ctx, "INBOX: its POP3 UIDLs cannot be read: %s",
		         mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return;
	}
	guid = guid_128_to_string(md.guid);
	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	hash_table_create(&shown, ctx->pool, 0, str_hash, strcmp);
	struct mailbox_transaction_context *t =
	        mailbox_transaction_begin(box, 0, __func__);
	if (uidls_shown(ctx, t, status.uidvalidity, format, &shown) < 0) {
		mismatch(ctx, "INBOX: its POP3 UIDLs cannot be read: %s",
		         mailbox_get_last_internal_error(box, NULL));
	} else {
		struct mail *mail = mail_alloc(t, 0, NULL);
		i_zero(&a);
		array_foreach(&ctx->entries, e)
		{
			if (!e->inbox || e->uid == 0 ||
			    strcmp(e->live_guid, guid) != 0 ||
			    !mail_set_uid(mail, e->uid))
				continue; /* deleted since (a POP3 DELE) */
			uidl = uidl_archived(ctx, &a, e, format);
			if (uidl == NULL ||
			    hash_table_lookup(shown, uidl) != NULL)
				continue;
			if (changed++ == 0 &&
			    backfill_pop3_uidl_get(mail, status.uidvalidity,
			                           format, &example,
			                           &error) == 0) {
				example = t_strdup_printf(
				        "archive %s/uid %u showed %s, its copy INBOX/uid %u shows %s",
				        e->archive_mailbox, e->archive_uid,
				        uidl, e->uid, example);
			}
		}
		uidl_archive_close(&a);
		mail_free(&mail);
	}
	if (changed > 0) {
		mismatch(
		        ctx,
		        "INBOX: %u merged messages no longer show the POP3 UIDL the old server showed (its POP3 clients download them again)%s%s",
		        changed, example == NULL ? "" : ", e.g. ",
		        example == NULL ? "" : example);
	}
	(void)mailbox_transaction_commit(&t);
	hash_table_destroy(&shown);
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
		result->record_damaged = TRUE;
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
		check_uidls(&ctx);
		bf_fp_free(&ctx.fp);
		ret = 1;
	}
	pool_unref(&ctx.pool);
	bf_cursor_free(&cursor);
	bf_merge_record_clear(&rec);
	return ret;
}
