#ifndef BACKFILL_LOGIN_MERGE_H
#define BACKFILL_LOGIN_MERGE_H

struct backfill_user;

/* An imap or pop3 login: merges the user's archive for up to
   backfill_login_budget; imap goes on in background slices, pop3 leaves
   the rest to the next login.  Never fails the login: problems are
   logged and the merge postponed. */
void backfill_login_merge(struct backfill_user *buser);

#endif
