#ifndef BACKFILL_ARCHIVE_H
#define BACKFILL_ARCHIVE_H

#include "array.h"

struct mail;
struct mailbox;
struct mail_user;
struct mail_namespace;
struct backfill_settings;

/* A user's restored archive, opened read-only as a mail user of its own
   whose inbox namespace is the archive. */
struct backfill_archive {
	struct backfill_location_user *luser;
	/* the archive's own mail user (owned by luser) */
	struct mail_user *user;
	struct mail_namespace *ns;
	/* The archive's root directory, after realpath(). */
	char *path;
};

/* Resolves backfill_archive for the user.  Returns 1 with the archive's
   real root directory in *path_r, 0 when the user has no archive (unset or
   missing path: not an error), -1 when the path is not acceptable (it
   leaves backfill_archive's root, or an unsupported format). */
int backfill_archive_resolve(struct mail_user *user,
                             const struct backfill_settings *set,
                             const char **path_r, const char **error_r);

/* Opens the archive read-only.  Dovecot's own control and index files for
   it live in a private directory of the live user (the archive itself is
   never written).  Returns 1 opened, 0 no archive, -1 error. */
int backfill_archive_open(struct mail_user *user,
                          const struct backfill_settings *set,
                          struct backfill_archive **archive_r,
                          const char **error_r);
void backfill_archive_close(struct backfill_archive **archive);

/* Symlinks in an archive are never followed: nothing outside the user's
   archive is read (all virtual users share the mail uid, so the kernel
   would let one user's archive point into another user's mail).

   Returns TRUE, with the path, when the folder's directory or one between
   it and the archive's root is a symlink. */
bool backfill_archive_folder_linked(struct backfill_archive *archive,
                                    struct mailbox *box, const char **path_r);

/* What an archive folder's message files are, read once per folder from
   its directory listing (no stat() per file). */
struct backfill_archive_files;
int backfill_archive_files_load(struct backfill_archive *archive,
                                struct mailbox *box, pool_t pool,
                                struct backfill_archive_files **files_r,
                                const char **error_r);
/* mdbox: a storage file is a symlink (path_r): which messages it holds
   is not known without reading it, so no message of the archive is read.
   Returns FALSE otherwise. */
bool backfill_archive_files_storage_linked(
        const struct backfill_archive_files *files, const char **path_r);
/* Maildir: TRUE, with the path, when mail's file is a symlink or not a
   regular file (also when it cannot be found: not read either).  Only
   lstat()s the message's own file when the folder has a symlink or a
   foreign file at all. */
bool backfill_archive_mail_linked(struct backfill_archive_files *files,
                                  struct mail *mail, const char **path_r);

/* A Maildir++ folder directory of the archive that no readable folder
   covers: Dovecot lists it under a name it then cannot open (a raw
   control character, an mUTF-7 NUL: ".A<TAB>folder", ".a&AAA-b"), or not
   at all (".inbox", the "INBOX.inbox" of an INBOX.-prefix server, is the
   vname "inbox", which Dovecot takes for INBOX). */
struct backfill_archive_dir {
	/* its name under the archive's root, e.g. ".inbox" */
	const char *name;
	/* message files in its cur/ and new/ (symlinks not counted: the
	   folder is never read, see above) */
	unsigned int messages;
	/* cur/ or new/ could not be listed: messages is a lower bound */
	bool unreadable;
};
ARRAY_DEFINE_TYPE(backfill_archive_dir, struct backfill_archive_dir);

/* The archive's folder directories (Maildir++ only; none for another
   layout or format) with message files in them that none of the archive
   folders named in covered (vnames) is: their messages are in no folder
   the merge or verify reads.  A symlinked directory, or one whose cur/
   and new/ are symlinks, is not listed (those are counted as symlinks).
   Returns 0, or -1 when the root cannot be listed. */
int backfill_archive_dirs_uncovered(struct backfill_archive *archive,
                                    const ARRAY_TYPE(const_string) * covered,
                                    pool_t pool,
                                    ARRAY_TYPE(backfill_archive_dir) * dirs_r,
                                    const char **error_r);

/* The same, described: *messages_r message files in such directories,
   *text_r naming each (raw names: escape them for a log line), NULL when
   there is none.  Returns 0, or -1 when the root cannot be listed. */
int backfill_archive_dirs_unread(struct backfill_archive *archive,
                                 const ARRAY_TYPE(const_string) * covered,
                                 unsigned int *messages_r, const char **text_r,
                                 const char **error_r);

/* A digest of the archive's tree as the file system shows it (no message
   is read): a folder or message restored, removed or renamed changes it.
   A done merge compares it to the one it finished with.  Returns 0, or -1
   with the reason. */
int backfill_archive_signature(const char *path, const char **sig_r,
                               const char **error_r);

#endif
