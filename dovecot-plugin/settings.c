/* backfill's settings from Dovecot 2.3's plugin {} environment
   (mail_user_plugin_getenv, %-variables already expanded by Dovecot). */

#include "lib.h"
#include "array.h"
#include "mail-user.h"
#include "parse.h"
#include "state.h"
#include "backfill-settings.h"
#include "settings-common.h"

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

/* A duration of at least 1ms, else the default, logged at each login (2.3
   cannot refuse a plugin {} value at startup, as 2.4's check does).  0 is
   refused, not taken: a login budget of 0 would still merge for a slice, and
   a confirmation timeout of 0 means "the store's own timeout" (10 s for
   SQLite) to the state code, the opposite of what an operator writing 0
   means.  A bare number is milliseconds. */
static uint64_t duration_get(struct mail_user *user, struct event *event,
                             const char *name, uint64_t default_ms)
{
	const char *value = mail_user_plugin_getenv(user, name);
	const char *error;
	uint64_t num;

	if (value == NULL || value[0] == '\0')
		return default_ms;
	if (bf_parse_duration_ms(value, 1, &num, &error) < 0) {
		e_error(event, "%s=%s: %s (using %" PRIu64 "ms)", name, value,
		        error, default_ms);
		return default_ms;
	}
	if (num == 0) {
		e_error(event,
		        "%s=%s: must be at least 1ms (using %" PRIu64 "ms)",
		        name, value, default_ms);
		return default_ms;
	}
	return num;
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
		set->archive_root = p_strdup(
		        user->pool, backfill_settings_archive_root(
		                            raw != NULL ? raw : value));
		set->archive_alt_root = p_strdup(
		        user->pool, backfill_settings_archive_alt_root(
		                            raw != NULL ? raw : value));
	}

	value = mail_user_plugin_getenv(user, "backfill_state");
	set->state_uri = value != NULL && value[0] != '\0'
	                         ? value
	                         : BF_STATE_DEFAULT_URI;

	set->login_budget_ms =
	        duration_get(user, event, "backfill_login_budget",
	                     BACKFILL_DEFAULT_BUDGET_MS);
	set->confirm_timeout_ms =
	        duration_get(user, event, "backfill_confirm_timeout",
	                     BACKFILL_DEFAULT_CONFIRM_TIMEOUT_MS);

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
	if (value != NULL && value[0] != '\0' &&
	    !backfill_settings_dedup_parse(value, &set->dedup)) {
		e_error(event,
		        "backfill_dedup=%s: expected user, mailbox or off (using user)",
		        value);
	}

	value = mail_user_plugin_getenv(user, "backfill_secret_file");
	if (value != NULL && value[0] != '\0')
		set->secret_file = value;

	value = mail_user_plugin_getenv(user, "backfill_pop3_hide");
	if (value != NULL && value[0] != '\0' &&
	    !backfill_settings_pop3_hide_parse(value, &set->pop3_hide)) {
		e_error(event,
		        "backfill_pop3_hide=%s: expected seen, all or none (using seen)",
		        value);
	}
	value = mail_user_plugin_getenv(user, "backfill_imap_uids");
	if (value != NULL && value[0] != '\0' &&
	    !backfill_settings_imap_uids_parse(value, &set->imap_uids)) {
		set->imap_uids_invalid = value;
		e_error(event,
		        "backfill_imap_uids=%s: expected auto, archive or live (merge postponed until it is fixed: IMAP UIDs cannot be changed back once clients saw them)",
		        value);
	}
	set->imap_uid_margin = BACKFILL_DEFAULT_IMAP_UID_MARGIN;
	value = mail_user_plugin_getenv(user, "backfill_imap_uid_margin");
	if (value != NULL && value[0] != '\0') {
		if (bf_parse_uint(value, 0, BACKFILL_IMAP_UID_MARGIN_LIMIT,
		                  &num, &error) < 0) {
			e_error(event,
			        "backfill_imap_uid_margin=%s: %s (using %u)",
			        value, error, BACKFILL_DEFAULT_IMAP_UID_MARGIN);
		} else {
			set->imap_uid_margin = (uint32_t)num;
		}
	}
	return 0;
}
