/* Dovecot 2.4 only: libbackfill_settings.so, installed in Dovecot's
   modules/settings directory.  The config process (doveconf, and the
   master through it) loads every module there and learns the settings it
   lists in <name>_set_infos; without it `backfill_archive = ...` is an
   "Unknown setting" and Dovecot refuses the whole config.  The mail
   plugin itself is loaded only by mail processes, too late for that. */

#include "lib.h"
#include "settings-parser.h"
#include "settings-defs.h"

/* module-dir.c refuses a module built for another Dovecot ABI. */
extern const char *backfill_settings_version;
extern const struct setting_parser_info *backfill_settings_set_infos[];

const char *backfill_settings_version = DOVECOT_ABI_VERSION;

const struct setting_parser_info *backfill_settings_set_infos[] = {
        &backfill_setting_parser_info,
        NULL,
};
