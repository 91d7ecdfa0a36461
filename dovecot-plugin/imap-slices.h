#ifndef BACKFILL_IMAP_SLICES_H
#define BACKFILL_IMAP_SLICES_H

struct backfill_user;

/* In imap: remembers each user's IMAP client, so that background merge
   slices run only while the client has no command in progress. */
void backfill_imap_slices_init(void);
void backfill_imap_slices_deinit(void);

/* Continues buser->merge in slices of about 20 ms between the client's
   commands, the first one after a short delay (the commands a client
   sends right after LOGIN go first).  The merge is ended when it finishes
   or stops, or with the user (buser->background_stop). */
void backfill_imap_slices_start(struct backfill_user *buser);

#endif
