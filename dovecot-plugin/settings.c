/* backfill's settings from Dovecot 2.3's plugin {} environment
   (mail_user_plugin_getenv, %-variables already expanded by Dovecot). */

#include "lib.h"
#include "array.h"
#include "mail-user.h"
#include "parse.h"
#include "state.h"
#include "settings.h"

#define BACKFILL_DEFAULT_BUDGET_MS    300
#define BACKFILL_DEFAULT_MAX_PARALLEL 4
#define BACKFILL_DEFAULT_KEYWORD      "$Backfilled"

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

int backfill_settings_get(struct mail_user *user, struct event *event,
                          struct backfill_settings *set_r,
                          const char **error_r ATTR_UNUSED)
{
	struct backfill_settings *set = set_r;
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
			e_error(event,
			        "backfill_login_budget=%s: %s (using %ums)",
			        value, error, BACKFILL_DEFAULT_BUDGET_MS);
		} else {
			set->login_budget_ms = num;
		}
	}

	set->max_parallel = BACKFILL_DEFAULT_MAX_PARALLEL;
	value = mail_user_plugin_getenv(user, "backfill_max_parallel");
	if (value != NULL && value[0] != '\0') {
		if (bf_parse_uint(value, 1, 100000, &num, &error) < 0) {
			e_error(event,
			        "backfill_max_parallel=%s: %s (using %u)",
			        value, error, BACKFILL_DEFAULT_MAX_PARALLEL);
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
		e_error(event,
		        "backfill_dedup=%s: expected user, mailbox or off (using user)",
		        value);
	}

	value = mail_user_plugin_getenv(user, "backfill_pop3_hide");
	if (value == NULL || value[0] == '\0' || strcmp(value, "seen") == 0)
		set->pop3_hide = BACKFILL_POP3_HIDE_SEEN;
	else if (strcmp(value, "all") == 0)
		set->pop3_hide = BACKFILL_POP3_HIDE_ALL;
	else if (strcmp(value, "none") == 0)
		set->pop3_hide = BACKFILL_POP3_HIDE_NONE;
	else {
		e_error(event,
		        "backfill_pop3_hide=%s: expected seen, all or none (using seen)",
		        value);
	}
	return 0;
}
