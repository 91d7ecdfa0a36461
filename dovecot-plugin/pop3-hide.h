#ifndef BACKFILL_POP3_HIDE_H
#define BACKFILL_POP3_HIDE_H

#include "mail-types.h"

struct backfill_user;
struct backfill_settings;

/* The keyword that hides a restored message from POP3: Dovecot's pop3
   does not list messages carrying the keyword pop3_deleted_flag names. */
#define BACKFILL_POP3_HIDE_KEYWORD "$POP3Deleted"

/* Whether a restored message with these flags, saved into live_vname, is
   kept from POP3 sessions (backfill_pop3_hide). */
bool backfill_pop3_hide_wanted(const struct backfill_settings *set,
                               const char *live_vname, enum mail_flags flags);

/* In a POP3 session: says once, with the line to add, when Dovecot's
   settings do not do the hiding that backfill_pop3_hide asks for. */
void backfill_pop3_hide_check(struct backfill_user *buser);

#endif
