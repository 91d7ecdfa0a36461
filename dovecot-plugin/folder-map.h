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
   create_update when not NULL (the archive's UIDVALIDITY, imap-uids.c). */
int backfill_folder_open_live(struct mail_user *live_user,
                              const struct backfill_folder *folder,
                              const struct mailbox_update *create_update,
                              struct mailbox **box_r, const char **error_r);

#endif
