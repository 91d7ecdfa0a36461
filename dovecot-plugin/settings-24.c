/* backfill's settings from Dovecot 2.4's declared settings (settings-defs.c):
   values are checked when the config is read, %{variables} expanded by
   settings_get() for this user. */

#include "lib.h"
#include "settings.h"
#include "mail-user.h"
#include "settings-defs.h"
#include "backfill-settings.h"
#include "settings-common.h"

int backfill_settings_get(struct mail_user *user,
                          struct event *event ATTR_UNUSED,
                          struct backfill_settings *set_r, const char **error_r)
{
	const struct backfill_declared_settings *set, *raw;
	const char *error;

	i_zero(set_r);
	if (settings_get(user->event, &backfill_setting_parser_info, 0, &set,
	                 &error) < 0) {
		*error_r = error;
		return -1;
	}
	if (set->backfill_archive[0] != '\0') {
		set_r->archive = p_strdup(user->pool, set->backfill_archive);
		/* the root comes from the value as written, before any
		   variable could move it */
		if (settings_get(user->event, &backfill_setting_parser_info,
		                 SETTINGS_GET_FLAG_NO_EXPAND, &raw,
		                 &error) < 0) {
			settings_free(set);
			*error_r = error;
			return -1;
		}
		set_r->archive_root = p_strdup(
		        user->pool,
		        backfill_settings_archive_root(raw->backfill_archive));
		set_r->archive_alt_root =
		        p_strdup(user->pool, backfill_settings_archive_alt_root(
		                                     raw->backfill_archive));
		settings_free(raw);
	}
	set_r->state_uri = p_strdup(user->pool, set->backfill_state);
	set_r->login_budget_ms = set->backfill_login_budget;
	set_r->confirm_timeout_ms = set->backfill_confirm_timeout;
	set_r->max_parallel = set->backfill_max_parallel;
	set_r->imap_uid_margin = set->backfill_imap_uid_margin;
	if (set->backfill_keyword[0] != '\0')
		set_r->keyword = p_strdup(user->pool, set->backfill_keyword);
	if (set->backfill_secret_file[0] != '\0') {
		set_r->secret_file =
		        p_strdup(user->pool, set->backfill_secret_file);
	}
	/* Dovecot accepted only the values the enums list */
	(void)backfill_settings_dedup_parse(set->backfill_dedup, &set_r->dedup);
	(void)backfill_settings_pop3_hide_parse(set->backfill_pop3_hide,
	                                        &set_r->pop3_hide);
	(void)backfill_settings_imap_uids_parse(set->backfill_imap_uids,
	                                        &set_r->imap_uids);
	settings_free(set);
	return 0;
}
