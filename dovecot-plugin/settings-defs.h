#ifndef BACKFILL_SETTINGS_DEFS_H
#define BACKFILL_SETTINGS_DEFS_H

/* Dovecot 2.4 only: backfill's settings as Dovecot declares them, so that
   doveconf knows their names, types and defaults, checks their values when
   the config is read and expands their %{variables} for each user.  The
   plugin (settings-24.c) and the doveconf module (settings-module.c) both
   use this one declaration: the config process and the mail processes must
   agree on it field by field. */

#include "settings-parser.h"

struct backfill_declared_settings {
	pool_t pool;

	const char *backfill_archive;
	const char *backfill_state;
	unsigned int backfill_login_budget;
	unsigned int backfill_confirm_timeout;
	unsigned int backfill_max_parallel;
	const char *backfill_keyword;
	const char *backfill_dedup;
	const char *backfill_pop3_hide;
	const char *backfill_secret_file;
	const char *backfill_imap_uids;
	unsigned int backfill_imap_uid_margin;
};

extern const struct setting_parser_info backfill_setting_parser_info;

#endif
