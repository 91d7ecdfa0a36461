/* backfill: merge a user's restored archive into the live mailbox on
   login (imap, pop3), confirm deliveries for the milter (lmtp). */

#include "lib.h"
#include "ioloop.h"
#include "master-service.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage-hooks.h"
#include "parse.h"
#include "state.h"
#include "backfill-plugin.h"
#include "archive.h"
#include "merge.h"
#include "delivery-confirm.h"
#include "pop3-hide.h"
#include "imap-idle.h"

#include <stdlib.h>
#include <time.h>

#define BACKFILL_DEFAULT_BUDGET_MS    300
#define BACKFILL_DEFAULT_MAX_PARALLEL 4
#define BACKFILL_DEFAULT_KEYWORD      "$Backfilled"
/* Work done per IMAP background slice: the client waits at most about
   this long for its next command to start. */
#define BACKFILL_SLICE_MS 20

const char *backfill_plugin_version = DOVECOT_ABI_VERSION;

struct backfill_user_module backfill_user_module =
        MODULE_CONTEXT_INIT(&mail_user_module_register);

static const char *plugin_unexpanded_get(struct mail_user *user,
                                         const char *name)
{
	const char *const *envs;
	unsigned int i, count;

	if (!array_is_created(&user->unexpanded_set->plugin_envs))
		return NULL;
	envs = array_get(&user->unexpanded_set->plugin_envs, &count);
	for (i = 0; i + 1 < count; i += 2) {
		if (strcmp(envs[i], name) == 0)
			return envs[i + 1];
	}
	return NULL;
}

/* The fixed part of backfill_archive's path: everything before the first
   %-variable, up to the last '/'.  "maildir:/srv/restore/%d/%n/Maildir"
   gives "/srv/restore/". */
static const char *archive_root_get(const char *raw)
{
	const char *path = raw, *p, *pct, *slash;

	p = strchr(raw, ':');
	if (p != NULL && (strchr(raw, '/') == NULL || p < strchr(raw, '/')))
		path = p + 1;
	p = strchr(path, ':');
	if (p != NULL)
		path = t_strdup_until(path, p);
	pct = strchr(path, '%');
	if (pct == NULL)
		return path;
	if (pct == path &&
	    (str_begins(path, "%h") || str_begins(path, "%{home}")))
		return "~";
	slash = NULL;
	for (p = path; p < pct; p++) {
		if (*p == '/')
			slash = p;
	}
	if (slash == NULL)
		return "/";
	return t_strdup_until(path, slash + 1);
}

void backfill_settings_read(struct mail_user *user,
                            struct backfill_settings *set)
{
	const char *value, *error;
	uint64_t num;

	i_zero(set);
	value = mail_user_plugin_getenv(user, "backfill_archive");
	if (value != NULL && value[0] != '\0') {
		set->archive = value;
		const char *raw =
		        plugin_unexpanded_get(user, "backfill_archive");
		set->archive_root =
		        p_strdup(user->pool,
		                 archive_root_get(raw != NULL ? raw : value));
	}

	value = mail_user_plugin_getenv(user, "backfill_state");
	set->state_uri = value != NULL && value[0] != '\0'
	                         ? value
	                         : BF_STATE_DEFAULT_URI;

	set->login_budget_ms = BACKFILL_DEFAULT_BUDGET_MS;
	value = mail_user_plugin_getenv(user, "backfill_login_budget");
	if (value != NULL && value[0] != '\0') {
		if (bf_parse_duration_ms(value, 1, &num, &error) < 0) {
			e_error(user->event,
			        "backfill(%s): backfill_login_budget=%s: %s "
			        "(using %ums)",
			        user->username, value, error,
			        BACKFILL_DEFAULT_BUDGET_MS);
		} else {
			set->login_budget_ms = num;
		}
	}

	set->max_parallel = BACKFILL_DEFAULT_MAX_PARALLEL;
	value = mail_user_plugin_getenv(user, "backfill_max_parallel");
	if (value != NULL && value[0] != '\0') {
		if (bf_parse_uint(value, 1, 100000, &num, &error) < 0) {
			e_error(user->event,
			        "backfill(%s): backfill_max_parallel=%s: %s "
			        "(using %u)",
			        user->username, value, error,
			        BACKFILL_DEFAULT_MAX_PARALLEL);
		} else {
			set->max_parallel = (unsigned int)num;
		}
	}

	value = mail_user_plugin_getenv(user, "backfill_keyword");
	if (value == NULL)
		set->keyword = BACKFILL_DEFAULT_KEYWORD;
	else if (value[0] != '\0')
		set->keyword = value;

	value = mail_user_plugin_getenv(user, "backfill_dedup");
	if (value == NULL || value[0] == '\0' || strcmp(value, "user") == 0)
		set->dedup = BACKFILL_DEDUP_USER;
	else if (strcmp(value, "mailbox") == 0)
		set->dedup = BACKFILL_DEDUP_MAILBOX;
	else if (strcmp(value, "off") == 0)
		set->dedup = BACKFILL_DEDUP_OFF;
	else {
		e_error(user->event,
		        "backfill(%s): backfill_dedup=%s: expected user, "
		        "mailbox or off (using user)",
		        user->username, value);
	}

	value = mail_user_plugin_getenv(user, "backfill_pop3_hide");
	if (value == NULL || value[0] == '\0' || strcmp(value, "seen") == 0)
		set->pop3_hide = BACKFILL_POP3_HIDE_SEEN;
	else if (strcmp(value, "all") == 0)
		set->pop3_hide = BACKFILL_POP3_HIDE_ALL;
	else if (strcmp(value, "none") == 0)
		set->pop3_hide = BACKFILL_POP3_HIDE_NONE;
	else {
		e_error(user->event,
		        "backfill(%s): backfill_pop3_hide=%s: expected seen, "
		        "all or none (using seen)",
		        user->username, value);
	}
}

int backfill_user_state_open(struct backfill_user *buser, const char **error_r)
{
	char *error;

	if (buser->state != NULL)
		return 0;
	if (bf_state_open(buser->set.state_uri, &buser->state, &error) < 0) {
		*error_r = t_strdup(error);
		free(error);
		return -1;
	}
	return 0;
}

static void backfill_user_merge_stop(struct backfill_user *buser)
{
	timeout_remove(&buser->to_slice);
	backfill_merge_end(&buser->merge);
}

#define BACKFILL_BUSY_RETRY_MS        10
#define BACKFILL_FIRST_SLICE_DELAY_MS 100
#define BACKFILL_COMMIT_RESERVE_MS    30

static uint64_t backfill_now_msecs(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void backfill_slice(struct backfill_user *buser);

static void backfill_slice_arm(struct backfill_user *buser, unsigned int msecs)
{
	timeout_remove(&buser->to_slice);
	buser->to_slice = timeout_add_short(msecs, backfill_slice, buser);
	buser->slice_delay_ms = msecs;
}

/* One background slice.  A client command that arrives meanwhile waits
   for it; its commit (about once a second, fsyncs) makes it longer.
   While the client has a command in progress, no slice runs. */
static void backfill_slice(struct backfill_user *buser)
{
	int ret;

	if (backfill_imap_client_busy(buser)) {
		if (buser->slice_delay_ms != BACKFILL_BUSY_RETRY_MS)
			backfill_slice_arm(buser, BACKFILL_BUSY_RETRY_MS);
		return;
	}
	if (buser->slice_delay_ms != 0)
		backfill_slice_arm(buser, 0);
	if (buser->merge == NULL)
		return;
	T_BEGIN
	{
		ret = backfill_merge_run(buser->merge, BACKFILL_SLICE_MS);
	}
	T_END;
	if (ret != 0)
		backfill_user_merge_stop(buser);
}

static void backfill_login_merge(struct backfill_user *buser)
{
	struct mail_user *user = buser->user;
	const char *error, *reason, *path;
	bool imap = strcmp(user->service, "imap") == 0;
	uint64_t start = backfill_now_msecs();
	int ret;

	/* Users without an archive cost one stat() and log nothing above
	   debug: the state store is not even opened for them. */
	ret = backfill_archive_resolve(user, &buser->set, &path, &error);
	if (ret < 0) {
		e_error(user->event, "backfill(%s): %s", user->username, error);
		return;
	}
	if (ret == 0) {
		e_debug(user->event, "backfill(%s): no archive to merge (%s)",
		        user->username,
		        buser->set.archive == NULL ? "backfill_archive unset"
		                                   : buser->set.archive);
		return;
	}
	if (strcmp(user->service, "pop3") == 0)
		backfill_pop3_hide_check(buser);
	if (backfill_user_state_open(buser, &error) < 0) {
		e_error(user->event,
		        "backfill(%s): merge postponed: %s (the mail user "
		        "must be able to create and write the state store "
		        "and its directory)",
		        user->username, error);
		return;
	}
	ret = backfill_merge_begin(user, &buser->set, buser->state,
	                           &buser->merge, &reason);
	if (ret < 0) {
		e_error(user->event, "backfill(%s): %s", user->username,
		        reason);
		return;
	}
	if (ret == 0) {
		if (reason != NULL) {
			e_info(user->event, "backfill(%s): %s", user->username,
			       reason);
		}
		return;
	}
	/* The budget covers opening the archive and the live index too, and
	   keeps a reserve for the commit that ends a POP3 login's share. */
	uint64_t spent = backfill_now_msecs() - start;
	uint64_t budget = buser->set.login_budget_ms;
	uint64_t reserve = imap ? 0 : BACKFILL_COMMIT_RESERVE_MS;
	budget = budget > spent + reserve ? budget - spent - reserve : 1;
	ret = imap ? backfill_merge_run(buser->merge, (unsigned int)budget)
	           : backfill_merge_run_progress(buser->merge,
	                                         (unsigned int)budget);
	if (ret != 0) {
		backfill_merge_end(&buser->merge);
	} else if (imap) {
		/* the rest between client commands; the commands a client
		   sends right after LOGIN (SELECT, LIST) go first */
		backfill_slice_arm(buser, BACKFILL_FIRST_SLICE_DELAY_MS);
	} else {
		e_info(user->event,
		       "backfill(%s): merge paused at the login budget "
		       "(backfill_login_budget); the next login continues",
		       user->username);
		backfill_merge_end(&buser->merge);
	}
}

static void backfill_mail_user_deinit_pre(struct mail_user *user)
{
	struct backfill_user *buser = BACKFILL_USER_CONTEXT(user);

	/* before the namespaces go away: the merge has mailboxes open */
	backfill_user_merge_stop(buser);
	buser->module_ctx.super.deinit_pre(user);
}

static void backfill_mail_user_deinit(struct mail_user *user)
{
	struct backfill_user *buser = BACKFILL_USER_CONTEXT(user);

	if (buser->state != NULL)
		bf_state_close(&buser->state);
	buser->module_ctx.super.deinit(user);
}

static void backfill_mail_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct backfill_user *buser;

	/* the archive's own mail user, shared-namespace owners, raw users */
	if (user->creator != NULL || user->autocreated)
		return;

	buser = p_new(user->pool, struct backfill_user, 1);
	buser->user = user;
	buser->module_ctx.super = *v;
	user->vlast = &buser->module_ctx.super;
	v->deinit_pre = backfill_mail_user_deinit_pre;
	v->deinit = backfill_mail_user_deinit;
	backfill_settings_read(user, &buser->set);
	MODULE_CONTEXT_SET(user, backfill_user_module, buser);
}

static void backfill_mail_namespaces_created(struct mail_namespace *namespaces)
{
	struct mail_user *user = namespaces->user;
	struct backfill_user *buser = BACKFILL_USER_CONTEXT(user);

	if (buser == NULL)
		return;
	/* lmtp and doveadm also get here: only interactive logins merge */
	if (strcmp(user->service, "imap") == 0 ||
	    strcmp(user->service, "pop3") == 0) {
		backfill_login_merge(buser);
	}
}

static struct mail_storage_hooks backfill_mail_storage_hooks = {
        .mail_user_created = backfill_mail_user_created,
        .mail_namespaces_created = backfill_mail_namespaces_created,
};

void backfill_plugin_init(struct module *module)
{
	mail_storage_hooks_add(module, &backfill_mail_storage_hooks);
	if (strcmp(master_service_get_name(master_service), "lmtp") == 0)
		backfill_delivery_confirm_init();
	if (strcmp(master_service_get_name(master_service), "imap") == 0)
		backfill_imap_idle_init();
}

void backfill_plugin_deinit(void)
{
	backfill_delivery_confirm_deinit();
	backfill_imap_idle_deinit();
	mail_storage_hooks_remove(&backfill_mail_storage_hooks);
}
