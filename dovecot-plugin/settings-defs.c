/* Dovecot 2.4: the declaration of backfill's settings (settings-defs.h). */

#include "lib.h"
#include "settings-parser.h"
#include "state.h"
#include "settings-defs.h"
#include "backfill-settings.h"
#include "settings-common.h"

/* The highest backfill_max_parallel: 2.3 accepted the same range. */
#define BACKFILL_MAX_PARALLEL_LIMIT 100000

#undef DEF
#define DEF(type, name)                                                        \
	SETTING_DEFINE_STRUCT_##type(#name, name,                              \
	                             struct backfill_declared_settings)

/* Dovecot's own layout of a settings table */
/* clang-format off */
static const struct setting_define backfill_setting_defines[] = {
	DEF(STR, backfill_archive),
	DEF(STR, backfill_state),
	DEF(TIME_MSECS, backfill_login_budget),
	DEF(TIME_MSECS, backfill_confirm_timeout),
	DEF(UINT, backfill_max_parallel),
	DEF(STR, backfill_keyword),
	DEF(ENUM, backfill_dedup),
	DEF(ENUM, backfill_pop3_hide),
	DEF(STR, backfill_secret_file),
	DEF(ENUM, backfill_imap_uids),
	DEF(UINT, backfill_imap_uid_margin),

	SETTING_DEFINE_LIST_END
};
/* clang-format on */

/* The same defaults as 2.3's reading (settings.c): an enum's first value
   is its default. */
static const struct backfill_declared_settings backfill_default_settings = {
        .backfill_archive = "",
        .backfill_state = BF_STATE_DEFAULT_URI,
        .backfill_login_budget = 300,
        .backfill_confirm_timeout = 2000,
        .backfill_max_parallel = 4,
        .backfill_keyword = "$Backfilled",
        .backfill_dedup = "user:mailbox:off",
        .backfill_pop3_hide = "seen:all:none",
        .backfill_secret_file = "",
        .backfill_imap_uids = "auto:archive:live",
        .backfill_imap_uid_margin = BACKFILL_DEFAULT_IMAP_UID_MARGIN,
};

/* Run by doveconf and by every process that reads the config: a value that
   cannot work stops the config with its name in the error, instead of
   being logged at each login as 2.3 has to. */
static bool backfill_settings_check(void *_set, pool_t pool ATTR_UNUSED,
                                    const char **error_r)
{
	struct backfill_declared_settings *set = _set;

	if (set->backfill_login_budget == 0) {
		*error_r = "backfill_login_budget must be at least 1ms "
		           "(the time a login may wait for merging)";
		return FALSE;
	}
	if (set->backfill_confirm_timeout == 0) {
		*error_r = "backfill_confirm_timeout must be at least 1ms "
		           "(the time an LMTP delivery may wait for the "
		           "state store)";
		return FALSE;
	}
	if (set->backfill_max_parallel == 0 ||
	    set->backfill_max_parallel > BACKFILL_MAX_PARALLEL_LIMIT) {
		*error_r = t_strdup_printf(
		        "backfill_max_parallel must be 1..%u, not %u",
		        BACKFILL_MAX_PARALLEL_LIMIT,
		        set->backfill_max_parallel);
		return FALSE;
	}
	if (set->backfill_imap_uid_margin > BACKFILL_IMAP_UID_MARGIN_LIMIT) {
		*error_r = t_strdup_printf(
		        "backfill_imap_uid_margin must be 0..%u, not %u",
		        BACKFILL_IMAP_UID_MARGIN_LIMIT,
		        set->backfill_imap_uid_margin);
		return FALSE;
	}
	return TRUE;
}

const struct setting_parser_info backfill_setting_parser_info = {
        .name = "backfill",

        .defines = backfill_setting_defines,
        .defaults = &backfill_default_settings,

        .struct_size = sizeof(struct backfill_declared_settings),
        .pool_offset1 = 1 + offsetof(struct backfill_declared_settings, pool),
        .check_func = backfill_settings_check,
};
