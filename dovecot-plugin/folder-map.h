#ifndef BACKFILL_FOLDER_MAP_H
#define BACKFILL_FOLDER_MAP_H

#include "array.h"

struct mail_user;
struct mailbox;
struct mailbox_update;
struct backfill_archive;

struct backfill_folder {
	const char *archive_vname;
	const char *live_vname;
	/* The archive's special-use (e.g. "\\Sent"), or NULL. */
	const char *special_use;
	bool subscribed;
	/* live_vname is not the archive's name made live: Dovecot refuses
	   to create a folder named with a control character (a restored
	   Maildir++ ".A&AAk-folder" is "A<TAB>folder"), so each byte below
	   0x20 is '_' in the live name.  Derived from the archive's name
	   alone: every run maps the folder to the same live folder (the
	   cursor names archive folders, not live ones). */
	bool live_renamed;
};
ARRAY_DEFINE_TYPE(backfill_folder, struct backfill_folder);

/* Lists the archive's folders in the fixed merge order (INBOX first, then
   by name) and maps each to the live folder it merges into: the same name
   with the hierarchy separator translated, else the live folder with the
   same special-use, else the translated name (created when opened). */
int backfill_folder_map_build(struct mail_user *live_user,
                              struct backfill_archive *archive, pool_t pool,
                              ARRAY_TYPE(backfill_folder) * folders_r,
                              const char **error_r);

/* Opens the live mailbox of folder for saving, creating it (and
   subscribing it when it was subscribed in the archive) if missing, with
   create_update when not NULL (the archive's UIDVALIDITY, imap-uids.c).
   Logs a renamed folder (live_renamed) once on event.  Returns 1 opened,
   0 when Dovecot refuses the live name as a new folder's (invalid name:
   the caller skips the folder, its messages counted as skipped), -1 on
   any other error. */
int backfill_folder_open_live(struct mail_user *live_user,
                              const struct backfill_folder *folder,
                              const struct mailbox_update *create_update,
                              struct event *event, struct mailbox **box_r,
                              const char **error_r);

/* For a dry run (plan): FALSE, with the reason, when box (allocated, not
   existing) could not be created under its name, as
   backfill_folder_open_live() would find. */
bool backfill_folder_live_creatable(struct mailbox *box, const char **error_r);

/* name with control characters and backslashes shown as C escapes, for
   log lines (a raw newline or ESC must not reach the operator's terminal
   or split a log line). */
const char *backfill_folder_log_name(const char *name);

#endif
