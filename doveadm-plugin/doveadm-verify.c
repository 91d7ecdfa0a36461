/* doveadm backfill verify: the proof.  For every archived message, is an
   identical message (same fingerprint) in the live account?  Counted with
   multiplicity over all live folders: two identical archived copies need
   two live copies.  What is missing is listed by archive folder and UID,
   and the command exits 1. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "doveadm-print.h"
#include "doveadm-mail.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "fingerprint.h"
#include "backfill-user.h"
#include "archive.h"
#include "mail-keys.h"
#include "private-mailboxes.h"
#include "doveadm-backfill.h"
#include "doveadm-verify-uids.h"
#include "print-value.h"

struct verify_msg {
	unsigned char fp[BF_FP_SIZE];
	unsigned int folder;
	uint32_t uid;
	bool unreadable;
};
ARRAY_DEFINE_TYPE(verify_msg, struct verify_msg);

struct verify_walk {
	pool_t pool;
	ARRAY_TYPE(verify_msg) * msgs;
	unsigned int folder;
	struct event *event;
	/* archive folders and messages that are symlinks: never read, as
	   the merge never reads them (issue: a planted link to another
	   user's mail) */
	unsigned int symlinks;
	/* archive folders read (or skipped as symlinks), and what stopped
	   the others: one unreadable folder leaves the rest verified */
	ARRAY_TYPE(const_string) read;
	string_t *unread;
};

static int verify_cb(struct mail *mail, const struct backfill_mail_keys *keys,
                     const char *read_error, void *context)
{
	struct verify_walk *w = context;
	struct verify_msg *vm = array_append_space(w->msgs);

	vm->folder = w->folder;
	vm->uid = mail->uid;
	if (keys == NULL) {
		vm->unreadable = TRUE;
		e_warning(w->event, "%s/uid %u cannot be read: %s",
		          mailbox_get_vname(mail->box), mail->uid, read_error);
	} else {
		memcpy(vm->fp, keys->fp, BF_FP_SIZE);
	}
	return 0;
}

static int verify_msg_cmp(const struct verify_msg *m1,
                          const struct verify_msg *m2)
{
	int ret;

	if (m1->unreadable != m2->unreadable)
		return m1->unreadable ? 1 : -1;
	ret = memcmp(m1->fp, m2->fp, BF_FP_SIZE);
	if (ret != 0)
		return ret;
	if (m1->folder != m2->folder)
		return m1->folder < m2->folder ? -1 : 1;
	return m1->uid < m2->uid ? -1 : (m1->uid > m2->uid ? 1 : 0);
}

/* An archive folder the merge would not read (a symlinked folder, or
   mdbox storage with a symlinked file): logged and counted, not read.
   Else *afiles_r holds its files for the per-message symlink check.
   Returns 1 to walk it, 0 to skip it, -1 on error. */
static int verify_archive_folder(struct backfill_archive *archive,
                                 struct mailbox *box, struct verify_walk *w,
                                 struct backfill_archive_files **afiles_r,
                                 const char **error_r)
{
	const char *path;

	if (backfill_archive_folder_linked(archive, box, &path) ||
	    (backfill_archive_files_load(archive, box, w->pool, afiles_r,
	                                 error_r) == 0 &&
	     backfill_archive_files_storage_linked(*afiles_r, &path))) {
		w->symlinks++;
		e_warning(
		        w->event,
		        "archive folder %s: %s is a symlink: not read, not verified (nothing outside the archive is ever read)",
		        mailbox_get_vname(box), path);
		return 0;
	}
	return *afiles_r == NULL ? -1 : 1;
}

/* An archive folder Dovecot lists but cannot read: what it had walked
   of it goes, its directory's messages are counted from the file system
   (backfill_archive_dirs_unread()) and the error is reported. */
static void verify_folder_unread(struct verify_walk *w, const char *name,
                                 unsigned int before, const char *error)
{
	array_delete(w->msgs, before, array_count(w->msgs) - before);
	e_warning(w->event, "archive folder %s not read: %s",
	          backfill_value_escape(name, BACKFILL_ESCAPE_TEXT),
	          backfill_value_escape(error, BACKFILL_ESCAPE_TEXT));
	if (str_len(w->unread) > 0)
		str_append(w->unread, "; ");
	str_printfa(w->unread, "archive folder %s not read: %s", name, error);
}

/* archive NULL: the live folders. */
static int verify_collect(struct mail_user *user,
                          struct backfill_archive *archive,
                          const ARRAY_TYPE(backfill_mailbox_entry) * boxes,
                          struct bf_fp *fp, struct verify_walk *w,
                          const char **error_r)
{
	const struct backfill_mailbox_entry *entry;
	unsigned int i = 0;
	int ret = 0;

	array_foreach(boxes, entry)
	{
		const char *name = entry->vname;
		struct backfill_archive_files *afiles = NULL;
		struct mail_namespace *ns =
		        archive != NULL
		                ? archive->ns
		                : mail_namespace_find(user->namespaces, name);
		struct mailbox *box =
		        mailbox_alloc(ns->list, name, MAILBOX_FLAG_READONLY);
		w->folder = i++;
		if (archive != NULL) {
			ret = verify_archive_folder(archive, box, w, &afiles,
			                            error_r);
		} else {
			ret = 1;
		}
		unsigned int before = array_count(w->msgs);
		if (ret > 0) {
			ret = doveadm_backfill_walk(box, fp, afiles,
			                            &w->symlinks, w->event,
			                            verify_cb, w, error_r);
		}
		mailbox_free(&box);
		if (ret < 0 && archive != NULL) {
			verify_folder_unread(w, name, before, *error_r);
			ret = 0;
		} else if (archive != NULL) {
			array_push_back(&w->read, &name);
		}
		if (ret < 0)
			break;
	}
	return ret < 0 ? -1 : 0;
}

/* A row without figures: no archive, or the error that stopped us. */
static void verify_print_none(struct doveadm_mail_cmd_context *ctx,
                              const char *username, const char *result,
                              const char *error)
{
	doveadm_backfill_print_user(ctx, username);
	doveadm_print(result);
	doveadm_print("0");
	doveadm_print("0");
	doveadm_print("0");
	doveadm_print("0");
	doveadm_print("");
	doveadm_backfill_print_text(error);
	doveadm_print("0");
	doveadm_print("");
}

static int cmd_verify_run(struct doveadm_mail_cmd_context *ctx,
                          struct mail_user *user)
{
	struct backfill_user *buser;
	struct backfill_archive *archive;
	ARRAY_TYPE(backfill_mailbox_entry) anames, lnames;
	ARRAY_TYPE(verify_msg) amsgs, lmsgs;
	struct verify_walk w;
	struct bf_fp *fp;
	const char *error;
	string_t *missing;
	uint64_t n_missing = 0;
	int ret;

	if ((buser = doveadm_backfill_user(user, &error)) == NULL) {
		verify_print_none(ctx, user->username, "failed", error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		return -1;
	}
	ret = backfill_archive_open(user, &buser->set, &archive, &error);
	if (ret <= 0) {
		if (ret < 0) {
			error = t_strdup_printf("opening archive: %s", error);
			e_error(buser->event, "%s", error);
			doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		}
		verify_print_none(ctx, user->username,
		                  ret < 0 ? "failed" : "no-archive",
		                  ret < 0 ? error : NULL);
		return ret < 0 ? -1 : 0;
	}
	pool_t pool = pool_alloconly_create("backfill verify", 4096);
	fp = bf_fp_new();
	if (fp == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "backfill: out of memory");
	i_zero(&w);
	w.pool = pool;
	w.event = buser->event;
	p_array_init(&w.read, pool, 16);
	w.unread = str_new(pool, 64);
	p_array_init(&amsgs, pool, 256);
	p_array_init(&lmsgs, pool, 256);

	ret = backfill_private_mailboxes(archive->user,
	                                 BACKFILL_MAILBOXES_SELECTABLE, pool,
	                                 &anames, &error);
	if (ret < 0) {
		error = t_strdup_printf("listing archive folders: %s", error);
	} else {
		w.msgs = &amsgs;
		ret = verify_collect(user, archive, &anames, fp, &w, &error);
	}
	if (ret == 0) {
		ret = backfill_private_mailboxes(user,
		                                 BACKFILL_MAILBOXES_SELECTABLE,
		                                 pool, &lnames, &error);
		if (ret < 0) {
			error = t_strdup_printf("listing live folders: %s",
			                        error);
		}
	}
	if (ret == 0) {
		w.msgs = &lmsgs;
		ret = verify_collect(user, NULL, &lnames, fp, &w, &error);
	}
	bf_fp_free(&fp);
	unsigned int n_unread = 0;
	const char *unread_text = NULL, *dirs_error;
	if (ret == 0 &&
	    backfill_archive_dirs_unread(archive, &w.read, &n_unread,
	                                 &unread_text, &dirs_error) < 0) {
		e_warning(buser->event,
		          "archive folder directories not checked: %s",
		          dirs_error);
	}
	if (unread_text != NULL) {
		e_warning(buser->event, "%s",
		          backfill_value_escape(unread_text,
		                                BACKFILL_ESCAPE_TEXT));
		if (str_len(w.unread) > 0)
			str_append(w.unread, "; ");
		str_append(w.unread, unread_text);
	}
	/* The UIDs the merge promised are in its record: without the state
	   store they are not checked.  The proof by content still holds, but
	   the row must not say ok: an unchecked promise is no proof, and a
	   report built from these rows would count the user as verified. */
	struct doveadm_verify_uids uids;
	const char *uids_error, *unchecked = NULL;
	if (ret == 0 &&
	    doveadm_verify_uids(user, buser, archive, &uids, &uids_error) < 0) {
		unchecked =
		        uids.record_damaged
		                ? t_strdup_printf(
		                          "IMAP UIDs not checked: %s (doveadm "
		                          "backfill status shows the record; "
		                          "see docs/state-store.md)",
		                          uids_error)
		                : t_strdup_printf(
		                          "IMAP UIDs not checked: state "
		                          "store: %s (verify again once it "
		                          "answers)",
		                          uids_error);
		e_warning(
		        buser->event, "%s",
		        backfill_value_escape(unchecked, BACKFILL_ESCAPE_TEXT));
	}
	if (ret < 0) {
		e_error(buser->event, "verify failed: %s",
		        backfill_value_escape(error, BACKFILL_ESCAPE_TEXT));
		verify_print_none(ctx, user->username, "failed", error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		backfill_archive_close(&archive);
		pool_unref(&pool);
		return -1;
	}

	/* Both sorted by fingerprint: per fingerprint, the archive's copies
	   beyond the live count are missing (the later ones in merge
	   order). */
	array_sort(&amsgs, verify_msg_cmp);
	array_sort(&lmsgs, verify_msg_cmp);
	const struct verify_msg *a, *l;
	unsigned int acount, lcount, ai = 0, li = 0;
	a = array_get(&amsgs, &acount);
	l = array_get(&lmsgs, &lcount);
	missing = t_str_new(256);
	while (ai < acount) {
		const char *why = NULL;
		if (a[ai].unreadable) {
			why = "unreadable";
		} else {
			while (li < lcount && !l[li].unreadable &&
			       memcmp(l[li].fp, a[ai].fp, BF_FP_SIZE) < 0)
				li++;
			if (li < lcount && !l[li].unreadable &&
			    memcmp(l[li].fp, a[ai].fp, BF_FP_SIZE) == 0)
				li++; /* consumed */
			else
				why = "missing";
		}
		if (why != NULL) {
			const char *folder =
			        (array_idx(&anames, a[ai].folder))->vname;
			n_missing++;
			doveadm_backfill_list_append(missing, "; ", folder);
			str_printfa(missing, "/%u", a[ai].uid);
			e_warning(
			        buser->event,
			        "%s: archive %s/uid %u has no identical message in the live mailbox",
			        why,
			        backfill_value_escape(folder,
			                              BACKFILL_ESCAPE_TEXT),
			        a[ai].uid);
		}
		ai++;
	}
	doveadm_backfill_print_user(ctx, user->username);
	/* unread directories: their messages are archived ones no live
	   copy was proven for (an unread folder whose messages could not
	   be counted, mdbox, still fails the row) */
	acount += n_unread;
	n_missing += n_unread;
	bool unread = str_len(w.unread) > 0;
	/* A symlink in an archive is something to look at (exit 1): it was
	   planted, or restored from a server that used them, and its mail
	   is in neither the merge nor this proof. */
	doveadm_print(n_missing > 0         ? "missing"
	              : unread              ? "failed"
	              : w.symlinks > 0      ? "symlinks"
	              : uids.mismatches > 0 ? "uids"
	              : unchecked == NULL   ? "ok"
	              : uids.record_damaged ? "failed"
	                                    : "postponed");
	doveadm_backfill_print_num(acount);
	doveadm_backfill_print_num(acount - n_missing);
	doveadm_backfill_print_num(n_missing);
	doveadm_backfill_print_num(w.symlinks);
	doveadm_backfill_print_list(str_c(missing));
	if (unchecked != NULL) {
		if (unread)
			str_append(w.unread, "; ");
		str_append(w.unread, unchecked);
	}
	doveadm_backfill_print_text(str_c(w.unread));
	doveadm_backfill_print_num(uids.mismatches);
	doveadm_backfill_print_text(str_c(uids.list));
	if (n_missing > 0 || unread || w.symlinks > 0 || uids.mismatches > 0 ||
	    (unchecked != NULL && uids.record_damaged))
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
	else if (unchecked != NULL)
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
	backfill_archive_close(&archive);
	pool_unref(&pool);
	return 0;
}

static void cmd_verify_init(DOVEADM_BACKFILL_INIT_ARGS)
{
	enum doveadm_print_header_flags num =
	        DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY;

	doveadm_backfill_header_user(_ctx);
	doveadm_print_header("result", "Result", 0);
	doveadm_print_header("archived", "Archived", num);
	doveadm_print_header("present", "Present", num);
	doveadm_print_header("missing", "Missing", num);
	doveadm_print_header("symlinks", "Symlinks", num);
	doveadm_print_header("missing_list", "MissingFolderUID", 0);
	doveadm_print_header("error", "Error", 0);
	/* the IMAP UIDVALIDITY and UIDs the merge promised (issue 19) */
	doveadm_print_header("uid_mismatches", "UIDMismatches", num);
	doveadm_print_header("uid_mismatch_list", "UIDMismatchList", 0);
}

static struct doveadm_mail_cmd_context *cmd_verify_alloc(void)
{
	return doveadm_backfill_cmd_alloc(cmd_verify_init, cmd_verify_run);
}

struct doveadm_cmd_ver2 doveadm_cmd_backfill_verify = {
        .name = "backfill verify",
        .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
        .mail_cmd = cmd_verify_alloc,
        DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON
                DOVEADM_CMD_PARAMS_END};
