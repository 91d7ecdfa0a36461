/* The Dovecot 2.3 and 2.4 implementations of dovecot-compat.h. */

#include "lib.h"
#include "str.h"
#include "var-expand.h"
#include "mail-cache.h"
#include "mail-storage-private.h"
#include "mail-storage-service.h"
#include "mail-namespace.h"
#if DOVECOT_PREREQ(2, 4, 0)
#include "settings.h"
#include "mail-storage-settings.h"
#endif
#include "pop3-settings.h"
#include "dovecot-compat.h"

#if DOVECOT_PREREQ(2, 4, 0)
/* Only the pop3 binary defines it; the plugin is loaded by imap, lmtp and
   doveadm too, where it stays NULL. */
#pragma weak pop3_setting_parser_info
#endif

void backfill_cache_register_fields(struct mail_cache *cache,
                                    struct mail_cache_field *fields,
                                    unsigned int count)
{
#if DOVECOT_PREREQ(2, 4, 0)
	mail_cache_register_fields(cache, fields, count,
	                           MAIL_CACHE_TRUNCATE_NAME_FAIL);
#else
	mail_cache_register_fields(cache, fields, count);
#endif
}

struct mail_user *backfill_user_dup(struct mail_user *user)
{
	struct mail_user *user2 = mail_user_dup(user);

#if !DOVECOT_PREREQ(2, 4, 0)
	/* 2.3's mail_user_dup() leaves it unset (it tests the new user's
	   field instead of the old one's). */
	if (user->_service_user != NULL && user2->_service_user == NULL) {
		user2->_service_user = user->_service_user;
		mail_storage_service_user_ref(user2->_service_user);
	}
#endif
	return user2;
}

struct backfill_location_user {
	struct mail_user *user;
#if DOVECOT_PREREQ(2, 4, 0)
	/* The live user's settings with the location overridden: freed only
	   after the user that reads it. */
	struct settings_instance *set_instance;
#endif
};

#if DOVECOT_PREREQ(2, 4, 0)
/* 2.3 location parameters and the 2.4 settings that replaced them. */
static const struct {
	const char *param, *setting;
} location_params[] = {
        {"LAYOUT", "mailbox_list_layout"},
        {"DIRNAME", "mailbox_directory_name"},
        {"ALT", "mail_alt_path"},
        {"INBOX", "mail_inbox_path"},
        {"MAILBOXDIR", "mailbox_root_directory_name"},
        {"SUBSCRIPTIONS", "mailbox_subscriptions_filename"},
        {"VOLATILEDIR", "mail_volatile_path"},
};

static int location_params_override(struct settings_instance *set_instance,
                                    const char *params, const char **error_r)
{
	const char *const *args = t_strsplit(params, ":");
	unsigned int i;

	for (; *args != NULL; args++) {
		const char *key, *value, *eq = strchr(*args, '=');

		if (**args == '\0')
			continue;
		if (strcmp(*args, "UTF-8") == 0 || strcmp(*args, "UTF8") == 0) {
			settings_override(set_instance, "*/mailbox_list_utf8",
			                  "yes", SETTINGS_OVERRIDE_TYPE_CODE);
			continue;
		}
		if (strcmp(*args, "ALTNOCHECK") == 0) {
			settings_override(set_instance, "*/mail_alt_check",
			                  "no", SETTINGS_OVERRIDE_TYPE_CODE);
			continue;
		}
		key = eq == NULL ? *args : t_strdup_until(*args, eq);
		value = eq == NULL ? "" : eq + 1;
		for (i = 0; i < N_ELEMENTS(location_params); i++) {
			if (strcmp(location_params[i].param, key) == 0)
				break;
		}
		if (i == N_ELEMENTS(location_params)) {
			*error_r = t_strdup_printf(
			        "location parameter %s has no Dovecot 2.4 "
			        "equivalent that backfill knows",
			        key);
			return -1;
		}
		settings_override(
		        set_instance,
		        t_strconcat("*/", location_params[i].setting, NULL),
		        value, SETTINGS_OVERRIDE_TYPE_CODE);
	}
	return 0;
}

/* 2.4 has no location string: the user gets its own copy of the live
   user's settings with the storage settings replaced, as doveadm import
   does for its source. */
static int location_user_alloc(struct mail_user *user,
                               const struct backfill_location *loc,
                               struct backfill_location_user *luser,
                               const char **error_r)
{
	struct settings_instance *set_instance;

	set_instance = settings_instance_dup(
	        mail_storage_service_user_get_settings_instance(
	                user->service_user));
	luser->set_instance = set_instance;
	/* The live storage's own paths (index, control, alt) are not the
	   archive's. */
	mail_storage_2nd_settings_reset(set_instance, "*/");
	settings_override(set_instance, "*/mail_driver", loc->driver,
	                  SETTINGS_OVERRIDE_TYPE_CODE);
	settings_override(set_instance, "*/mail_path", loc->path,
	                  SETTINGS_OVERRIDE_TYPE_CODE);
	if (loc->control_dir != NULL) {
		settings_override(set_instance, "*/mail_control_path",
		                  loc->control_dir,
		                  SETTINGS_OVERRIDE_TYPE_CODE);
	}
	if (loc->index_dir != NULL) {
		settings_override(set_instance, "*/mail_index_path",
		                  loc->index_dir, SETTINGS_OVERRIDE_TYPE_CODE);
	}
	/* Dovecot would otherwise try to clean old files out of the
	   archive's tmp/ directories: nothing may be written there. */
	settings_override(set_instance, "*/mail_temp_scan_interval", "0",
	                  SETTINGS_OVERRIDE_TYPE_CODE);
	if (location_params_override(set_instance, loc->params, error_r) < 0)
		return -1;

	luser->user = mail_user_dup(user);
	event_set_ptr(luser->user->event, SETTINGS_EVENT_INSTANCE,
	              set_instance);
	return 0;
}
#else
static int location_user_alloc(struct mail_user *user,
                               const struct backfill_location *loc ATTR_UNUSED,
                               struct backfill_location_user *luser,
                               const char **error_r ATTR_UNUSED)
{
	struct mail_user *auser;
	struct mail_storage_settings *mail_set;

	auser = mail_user_alloc(user->event, user->username, user->set_info,
	                        user->unexpanded_set);
	if (user->_service_user != NULL) {
		auser->_service_user = user->_service_user;
		mail_storage_service_user_ref(auser->_service_user);
	}
	auser->uid = user->uid;
	auser->gid = user->gid;
	auser->session_id = p_strdup(auser->pool, user->session_id);
	if (user->_home != NULL)
		mail_user_set_home(auser, user->_home);
	mail_user_set_vars(auser, user->service, &user->conn);

	/* Dovecot would otherwise try to clean old files out of the
	   archive's tmp/ directories: nothing may be written there. */
	mail_set =
	        (struct mail_storage_settings *)mail_user_set_get_storage_set(
	                auser);
	mail_set->mail_temp_scan_interval = 0;
	luser->user = auser;
	return 0;
}
#endif

int backfill_location_user_open(struct mail_user *user,
                                const struct backfill_location *loc,
                                struct backfill_location_user **luser_r,
                                struct mail_user **mail_user_r,
                                const char **error_r)
{
	struct backfill_location_user *luser;
	const char *error;
	int ret;

	luser = i_new(struct backfill_location_user, 1);
	if (location_user_alloc(user, loc, luser, error_r) < 0) {
		backfill_location_user_free(&luser);
		return -1;
	}
	luser->user->creator = user;
	luser->user->autocreated = TRUE;
	if (mail_user_init(luser->user, &error) < 0) {
		*error_r = t_strdup_printf("user init: %s", error);
		backfill_location_user_free(&luser);
		return -1;
	}
#if DOVECOT_PREREQ(2, 4, 0)
	ret = mail_namespaces_init_location(luser->user, luser->user->event,
	                                    &error);
	const char *location = t_strdup_printf("%s:%s", loc->driver, loc->path);
#else
	string_t *str = t_str_new(128);
	str_printfa(str, "%s:%s%s", loc->driver, loc->path, loc->params);
	if (loc->control_dir != NULL)
		str_printfa(str, ":CONTROL=%s", loc->control_dir);
	if (loc->index_dir != NULL)
		str_printfa(str, ":INDEX=%s", loc->index_dir);
	const char *location = str_c(str);
	ret = mail_namespaces_init_location(luser->user, location, &error);
#endif
	if (ret < 0) {
		*error_r = t_strdup_printf("%s: %s", location, error);
		backfill_location_user_free(&luser);
		return -1;
	}
	*luser_r = luser;
	*mail_user_r = luser->user;
	return 0;
}

void backfill_location_user_free(struct backfill_location_user **_luser)
{
	struct backfill_location_user *luser = *_luser;

	if (luser == NULL)
		return;
	*_luser = NULL;
	if (luser->user != NULL)
		mail_user_deinit(&luser->user);
#if DOVECOT_PREREQ(2, 4, 0)
	if (luser->set_instance != NULL)
		settings_instance_free(&luser->set_instance);
#endif
	i_free(luser);
}

const char *backfill_user_pop3_uidl_format(struct mail_user *user)
{
#if DOVECOT_PREREQ(2, 4, 0)
	const struct mail_storage_settings *set;
	const char *error, *format;

	/* a setting without %variables: nothing to expand or fail here */
	if (settings_get(user->event, &mail_storage_setting_parser_info,
	                 SETTINGS_GET_FLAG_NO_EXPAND, &set, &error) < 0) {
		e_error(user->event, "backfill: %s", error);
		return "%{uid | hex(8)}%{uidvalidity | hex(8)}";
	}
	format = t_strdup(set->pop3_uidl_format);
	settings_free(set);
	return format;
#else
	return mail_user_set_get_storage_set(user)->pop3_uidl_format;
#endif
}

const char *backfill_user_pop3_deleted_flag(struct mail_user *user)
{
	const struct pop3_settings *pop3_set;
	const char *flag;

#if DOVECOT_PREREQ(2, 4, 0)
	const char *error;

	if (&pop3_setting_parser_info == NULL)
		return NULL;
	if (settings_get(user->event, &pop3_setting_parser_info, 0, &pop3_set,
	                 &error) < 0) {
		e_error(user->event, "backfill: %s", error);
		return NULL;
	}
	flag = pop3_set->pop3_deleted_flag[0] == '\0'
	               ? NULL
	               : t_strdup(pop3_set->pop3_deleted_flag);
	settings_free(pop3_set);
#else
	void **sets;

	if (user->_service_user == NULL)
		return NULL;
	sets = mail_storage_service_user_get_set(user->_service_user);
	if (sets == NULL || sets[0] == NULL || sets[1] == NULL)
		return NULL;
	pop3_set = sets[1];
	flag = pop3_set->pop3_deleted_flag;
#endif
	return flag;
}

#if DOVECOT_PREREQ(2, 4, 0)
static bool field_listed(const ARRAY_TYPE(const_string) * list,
                         const char *name)
{
	return str_array_icase_find(settings_boollist_get(list), name);
}
#else
static bool field_listed(const char *list, const char *name)
{
	return list != NULL &&
	       str_array_icase_find(t_strsplit_spaces(list, " ,"), name);
}
#endif

bool backfill_cache_field_configured(struct mailbox *box, const char *name)
{
	/* what index-storage.c registers the mailbox's fields from */
	const struct mail_storage_settings *set = box->storage->set;

#if DOVECOT_PREREQ(2, 4, 0)
	return field_listed(&set->mail_cache_fields, name) ||
	       field_listed(&set->mail_always_cache_fields, name);
#else
	return field_listed(set->mail_cache_fields, name) ||
	       field_listed(set->mail_always_cache_fields, name);
#endif
}

#if DOVECOT_PREREQ(2, 4, 0)
bool backfill_var_used(const char *format, char key ATTR_UNUSED,
                       const char *name)
{
	struct var_expand_program *prog;
	const char *error;
	bool used;

	if (var_expand_program_create(format, &prog, &error) < 0)
		return FALSE;
	used = str_array_find(var_expand_program_variables(prog), name);
	var_expand_program_free(&prog);
	return used;
}

int backfill_var_expand(string_t *dest, const char *format,
                        const struct backfill_var *vars, const char **error_r)
{
	ARRAY(struct var_expand_table) tab;

	t_array_init(&tab, 8);
	for (; vars->name != NULL; vars++) {
		struct var_expand_table *t = array_append_space(&tab);
		t->key = vars->name;
		t->value = vars->value;
	}
	array_append_zero(&tab);
	const struct var_expand_params params = {
	        .table = array_front(&tab),
	};
	return var_expand(dest, format, &params, error_r) < 0 ? -1 : 0;
}
#else
bool backfill_var_used(const char *format, char key, const char *name)
{
	return var_has_key(format, key, name);
}

int backfill_var_expand(string_t *dest, const char *format,
                        const struct backfill_var *vars, const char **error_r)
{
	ARRAY(struct var_expand_table) tab;

	t_array_init(&tab, 8);
	for (; vars->name != NULL; vars++) {
		struct var_expand_table *t = array_append_space(&tab);
		t->key = vars->key;
		t->value = vars->value;
		t->long_key = vars->name;
	}
	array_append_zero(&tab);
	return var_expand(dest, format, array_front(&tab), error_r) <= 0 ? -1
	                                                                 : 0;
}
#endif
