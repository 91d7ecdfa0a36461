#ifndef BACKFILL_SETTINGS_COMMON_H
#define BACKFILL_SETTINGS_COMMON_H

/* Shared by the two readers of struct backfill_settings (settings.c on
   Dovecot 2.3, settings-24.c on 2.4): the defaults and what a value
   means. */

#define BACKFILL_DEFAULT_BUDGET_MS 300
/* the milter's StoreTimeout default: the two wait as long for one store */
#define BACKFILL_DEFAULT_CONFIRM_TIMEOUT_MS 2000
#define BACKFILL_DEFAULT_MAX_PARALLEL       4
#define BACKFILL_DEFAULT_KEYWORD            "$Backfilled"
/* backfill_imap_uid_margin (docs/imap-caches.md says why 100000); at most
   2^30, so that a folder's archive UIDs (below 2^31) and the margin
   still leave room for its later mail below the top */
#define BACKFILL_DEFAULT_IMAP_UID_MARGIN 100000
#define BACKFILL_IMAP_UID_MARGIN_LIMIT   1073741824U

/* The fixed part of an unexpanded backfill_archive's path: everything
   before the first %-variable, up to the last '/' ("~" when it starts at
   the home directory).  The expanded path must stay below it. */
const char *backfill_settings_archive_root(const char *raw);
/* The same for the path of its ALT= parameter (mdbox's alternate
   storage), NULL when it has none. */
const char *backfill_settings_archive_alt_root(const char *raw);

/* backfill_dedup and backfill_pop3_hide: FALSE for an unknown value. */
bool backfill_settings_dedup_parse(const char *value,
                                   enum backfill_dedup *dedup_r);
bool backfill_settings_pop3_hide_parse(const char *value,
                                       enum backfill_pop3_hide *hide_r);

/* backfill_imap_uids: FALSE for an unknown value. */
bool backfill_settings_imap_uids_parse(const char *value,
                                       enum backfill_imap_uids *uids_r);

#endif
