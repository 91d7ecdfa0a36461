#ifndef BACKFILL_IMAP_IDLE_H
#define BACKFILL_IMAP_IDLE_H

struct backfill_user;

/* In imap: remembers each user's IMAP client, so that background merge
   slices run only while the client has no command in progress. */
void backfill_imap_idle_init(void);
void backfill_imap_idle_deinit(void);

/* TRUE when the user's IMAP client is running or queuing a command (or
   when that cannot be known: FALSE then). */
bool backfill_imap_client_busy(struct backfill_user *buser);

#endif
