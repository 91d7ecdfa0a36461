/* doveadm backfill plan|run|status|verify|revert|reset: the operator's
   side of the merge.  Every command drives the plugin's own code (merge.c
   through backfill_merge_begin/run/end, archive.c, mail-keys.c); nothing
   of the merge is copied here. */

#include "lib.h"
#include "module-dir.h"
#include "doveadm-print.h"
#include "doveadm-mail.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "mail-storage-hooks.h"
#include "mail-search-build.h"
#include "state.h"
#include "backfill-user.h"
#include "archive.h"
#include "mail-keys.h"
#include "private-mailboxes.h"
#include "merge.h"
#include "doveadm-backfill.h"
#include "print-value.h"

#include <time.h>

const char *doveadm_backfill_plugin_version = DOVECOT_ABI_VERSION;

void doveadm_backfill_plugin_init(struct module *module);
void doveadm_backfill_plugin_deinit(void);

struct backfill_user *doveadm_backfill_user(struct mail_user *user,
                                            const char **error_r)
{
	struct backfill_user *buser = BACKFILL_USER_CONTEXT(user);

	struct event *event;

	if (buser == NULL) {
		*error_r = "backfill settings not loaded for this user";
		event = backfill_event_create(user);
		e_error(event, "%s", *error_r);
		event_unref(&event);
		return NULL;
	}
	return buser;
}

int doveadm_backfill_archive(struct backfill_user *buser, const char **error_r)
{
	const char *path;

	return backfill_archive_resolve(buser->user, &buser->set, &path,
	                                error_r);
}

struct doveadm_mail_cmd_context *
doveadm_backfill_cmd_alloc(doveadm_backfill_init_func *init,
                           int (*run)(struct doveadm_mail_cmd_context *ctx,
                                      struct mail_user *user))
{
	struct doveadm_mail_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct doveadm_mail_cmd_context);
	ctx->v.init = init;
	ctx->v.run = run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return ctx;
}

int doveadm_backfill_state(struct backfill_user *buser,
                           struct bf_state **state_r,
                           struct bf_merge_record *rec_r, const char **error_r)
{
	struct bf_merge_record rec;
	const char *error;
	int ret;

	if (backfill_user_state_open(buser, error_r) < 0)
		return -1;
	/* SQLite opens a store it cannot lock or read (and Redis would
	   connect lazily): only a read tells that it answers */
	ret = bf_state_merge_get(buser->state, buser->user->username,
	                         rec_r != NULL ? rec_r : &rec, &error);
	if (ret < 0) {
		*error_r = t_strdup(error);
		return -1;
	}
	if (rec_r == NULL)
		bf_merge_record_clear(&rec);
	*state_r = buser->state;
	return ret;
}

void doveadm_backfill_outcome(struct doveadm_mail_cmd_context *ctx,
                              enum doveadm_backfill_outcome outcome)
{
	int code;

	switch (outcome) {
	case DOVEADM_BACKFILL_OK:
		return;
	case DOVEADM_BACKFILL_TEMPFAIL:
		code = EX_TEMPFAIL;
		break;
	case DOVEADM_BACKFILL_FAILED:
	default:
		code = 1;
		break;
	}
	/* 1 wins over 75 (and over doveadm's own codes) */
	if (ctx->exit_code == 1)
		return;
	if (ctx->exit_code == 0 || code == 1)
		ctx->exit_code = code;
}

const char *doveadm_backfill_lease_name(struct mail_user *user)
{
	return backfill_merge_lease_name(user->username);
}

static bool doveadm_prints_username(struct doveadm_mail_cmd_context *ctx)
{
	return doveadm_backfill_username_column(ctx);
}

void doveadm_backfill_header_user(struct doveadm_mail_cmd_context *ctx)
{
	if (!doveadm_prints_username(ctx))
		doveadm_print_header("username", "Username", 0);
}

/* A user name is whatever the userdb says (a checkpassword script's USER
   may hold a line feed, a passwd-file name a tab): escaped as free text,
   so that it cannot make a row of its own in any -f format. */
void doveadm_backfill_print_user(struct doveadm_mail_cmd_context *ctx,
                                 const char *username)
{
	const char *printed =
	        backfill_value_escape(username, BACKFILL_ESCAPE_TEXT);

	if (doveadm_prints_username(ctx))
		doveadm_print_sticky("username", printed);
	else
		doveadm_print(printed);
}

void doveadm_backfill_print_num(uint64_t value)
{
	doveadm_print(dec2str(value));
}

void doveadm_backfill_print_time(time_t t)
{
	struct tm tm;
	char buf[32];

	if (t == 0 || gmtime_r(&t, &tm) == NULL) {
		doveadm_print("");
		return;
	}
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	doveadm_print(buf);
}

/* Every mail user doveadm creates gets the backfill user context
   (settings, state handle), whether or not its mail_plugins list backfill:
   the commands work for users whose sessions do not merge.  The mail
   plugin's hooks would add it only for users with backfill in
   mail_plugins, and would merge at login, which doveadm never does. */
static struct mail_storage_hooks doveadm_backfill_mail_storage_hooks = {
        .mail_user_created = backfill_user_created,
};

static struct doveadm_cmd_ver2 *const backfill_commands[] = {
        &doveadm_cmd_backfill_plan,   &doveadm_cmd_backfill_run,
        &doveadm_cmd_backfill_status, &doveadm_cmd_backfill_verify,
        &doveadm_cmd_backfill_revert, &doveadm_cmd_backfill_reset,
};

void doveadm_backfill_plugin_init(struct module *module)
{
	unsigned int i;

	mail_storage_hooks_add_forced(module,
	                              &doveadm_backfill_mail_storage_hooks);
	for (i = 0; i < N_ELEMENTS(backfill_commands); i++)
		doveadm_cmd_register_ver2(backfill_commands[i]);
}

void doveadm_backfill_plugin_deinit(void)
{
	/* The hooks went with doveadm's mail storage deinit already. */
}

/* ---- walking mailboxes ---- */

int doveadm_backfill_walk(struct mailbox *box, struct bf_fp *fp,
                          struct backfill_archive_files *afiles,
                          unsigned int *linked_r, struct event *event,
                          doveadm_backfill_walk_cb *cb, void *context,
                          const char **error_r)
{
	struct backfill_cache_fields cf;
	struct backfill_mail_keys keys;
	struct mailbox_transaction_context *t;
	struct mail_search_args *args;
	struct mail_search_context *ctx;
	struct mail *mail;
	const char *error;
	int ret = 0, kret;

	if (mailbox_sync(box, 0) < 0) {
		*error_r = t_strdup_printf(
		        "%s: %s", mailbox_get_vname(box),
		        mailbox_get_last_internal_error(box, NULL));
		return -1;
	}
	backfill_cache_fields_register(box, &cf);
	t = mailbox_transaction_begin(box, 0, __func__);
	args = mail_search_build_init();
	mail_search_build_add_all(args);
	ctx = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (ret == 0 && mailbox_search_next(ctx, &mail)) {
		T_BEGIN
			const char *path;

			if (afiles != NULL &&
			    backfill_archive_mail_linked(afiles, mail, &path)) {
				/* Never read: it may be another user's mail. */
				(*linked_r)++;
				e_warning(
				        event,
				        "%s/uid %u: %s is a symlink: not read, not verified (nothing outside the archive is ever read)",
				        mailbox_get_vname(box), mail->uid,
				        path);
			} else if (fp == NULL) {
				ret = cb(mail, NULL, NULL, context);
			} else {
				kret = backfill_mail_keys_get(
				        mail, &cf, fp, TRUE, &keys, &error);
				if (kret > 0)
					ret = cb(mail, &keys, NULL, context);
				else if (kret < 0)
					ret = cb(mail, NULL, error, context);
			}
		T_END;
	}
	if (mailbox_search_deinit(&ctx) < 0 && ret == 0) {
		*error_r = t_strdup_printf(
		        "%s: %s", mailbox_get_vname(box),
		        mailbox_get_last_internal_error(box, NULL));
		ret = -1;
	} else if (ret < 0) {
		*error_r = t_strdup_printf("%s: walk stopped",
		                           mailbox_get_vname(box));
	}
	/* commit: keys computed now stay in the cache for the next walk */
	(void)mailbox_transaction_commit(&t);
	return ret;
}

int doveadm_backfill_archive_count(struct backfill_user *buser,
                                   uint64_t *count_r, const char **error_r)
{
	struct backfill_archive *archive;
	ARRAY_TYPE(backfill_mailbox_entry) boxes;
	const struct backfill_mailbox_entry *entry;
	struct mailbox_status status;
	const char *error;
	pool_t pool;
	int ret;

	*count_r = 0;
	if ((ret = backfill_archive_open(buser->user, &buser->set, &archive,
	                                 error_r)) <= 0)
		return ret;
	pool = pool_alloconly_create("backfill archive count", 1024);
	ret = backfill_private_mailboxes(archive->user,
	                                 BACKFILL_MAILBOXES_SELECTABLE, pool,
	                                 &boxes, &error);
	if (ret < 0) {
		*error_r =
		        t_strdup_printf("listing archive folders: %s", error);
	} else {
		array_foreach(&boxes, entry)
		{
			struct mailbox *box =
			        mailbox_alloc(archive->ns->list, entry->vname,
			                      MAILBOX_FLAG_READONLY);
			if (mailbox_get_status(box, STATUS_MESSAGES, &status) ==
			    0)
				*count_r += status.messages;
			mailbox_free(&box);
		}
	}
	pool_unref(&pool);
	backfill_archive_close(&archive);
	return ret < 0 ? -1 : 1;
}
