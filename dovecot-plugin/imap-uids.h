#ifndef BACKFILL_IMAP_UIDS_H
#define BACKFILL_IMAP_UIDS_H

/* Which IMAP UIDVALIDITY and UIDs a merged folder shows (issue 19,
   docs/imap-caches.md): the old server's, so that its IMAP clients keep
   their caches, wherever no client of the new server can have cached the
   folder; else the live ones.  For the merge's files only. */

#include "cursor.h"

struct backfill_merge;
struct backfill_folder;
struct batch_item;
struct cursor_folder;
struct mail;
struct mail_save_context;
struct mailbox_update;

/* How the archive folder being opened (m->cur_cf) gets its UIDs, unless
   the cursor already says: decided before its live folder is opened or
   created, and on record in the state store before anything depends on
   it.  Returns 0, or -1 (logged) when the merge must stop. */
int backfill_imap_uids_decide(struct backfill_merge *m,
                              const struct backfill_folder *folder);
/* What a live folder the merge creates is created with: the archive
   folder's UIDVALIDITY for the archive way, else NULL (Dovecot's own). */
const struct mailbox_update *
backfill_imap_uids_create_update(struct backfill_merge *m,
                                 struct mailbox_update *update);
/* The cursor with the ways decided so far (and a renumbering's record),
   in the state store: the same record a batch's intent writes, keeping a
   pending intent.  Returns 0, or -1 (logged). */
int backfill_imap_uids_record(struct backfill_merge *m);
/* The live folder is open: checks that it still fits its way (a folder
   the way gave up on must not keep the archive's UIDVALIDITY).  Returns
   0, or -1 (logged). */
int backfill_imap_uids_live_opened(struct backfill_merge *m,
                                   const struct backfill_folder *folder);
/* TRUE when the live folder's UIDNEXT must stay below the archive's UIDs
   until the folder is done (it takes them). */
bool backfill_imap_uids_taken(const struct backfill_merge *m);
/* Before a copy is saved: asks Dovecot for the archive UID when the way
   keeps them (or gives the way up if that UID is taken). */
void backfill_imap_uids_save(struct backfill_merge *m,
                             struct mail_save_context *save, uint32_t uid);
/* FALSE when the copy shows the old server's POP3 UIDL without a stored
   one: it has the archive's UID and UIDVALIDITY and no stored UIDL,
   pop3_uidl_format uses nothing else, and its live folder is not the
   INBOX (POP3's, where the way can still be given up). */
bool backfill_imap_uids_uidl_needed(struct backfill_merge *m,
                                    struct mail *amail);
/* A copy of the batch has its live UID (committed, or landed before a
   crash). */
void backfill_imap_uids_saved(struct backfill_merge *m,
                              const struct batch_item *item);
/* After a checkpoint: carries out a way given up in the batch. */
int backfill_imap_uids_checkpointed(struct backfill_merge *m);
/* The archive folder is merged: for the archive way, the live UIDNEXT
   becomes the archive's, then any message in the live folder below it
   that the merge did not put there gives the way up.  Returns 0, or -1
   (logged). */
int backfill_imap_uids_folder_done(struct backfill_merge *m);

/* The first UID anything new may take in a live folder that keeps the
   archive's UIDVALIDITY: the archive folder's UIDNEXT plus
   backfill_imap_uid_margin, at most 2^31 (for the merge and verify). */
uint32_t backfill_imap_uids_keep_next(uint32_t archive_next, uint32_t margin);

/* The cursor's way of a folder, both directions (merge-cursor.c). */
void backfill_imap_uids_cursor_in(struct cursor_folder *cf,
                                  const struct bf_cursor_folder *f);
void backfill_imap_uids_cursor_out(struct bf_cursor_folder *f,
                                   const struct cursor_folder *cf);

/* "FOLDER=WAY,..." (reasons: "FOLDER=REASON,...") for doveadm: of the
   merge (plan) or of a cursor's text (status; "" when it cannot be parsed
   or says nothing). */
const char *backfill_imap_uids_text(const struct backfill_merge *m,
                                    bool reasons);
const char *backfill_imap_uids_cursor_text(const char *cursor, bool reasons);

#endif
