/* Keeping restored messages away from POP3 clients that forgot their
   UIDLs.

   POP3 clients forget the UIDL of every message that is no longer on the
   server.  One that polled the empty post-incident mailbox has forgotten
   them all, and would download every restored message again even though
   the UIDLs are preserved.  Messages that were seen before the incident
   (POP3 retrieval marks them seen) were already downloaded by such
   clients: they get the keyword that Dovecot's pop3_deleted_flag hides,
   so POP3 does not offer them while IMAP and webmail still show them. */

#include "lib.h"
#include "mail-storage.h"
#include "dovecot-compat.h"
#include "backfill-user.h"
#include "pop3-hide.h"

bool backfill_pop3_hide_wanted(const struct backfill_settings *set,
                               const char *live_vname, enum mail_flags flags)
{
	if (strcasecmp(live_vname, "INBOX") != 0)
		return FALSE;
	switch (set->pop3_hide) {
	case BACKFILL_POP3_HIDE_ALL:
		return TRUE;
	case BACKFILL_POP3_HIDE_SEEN:
		return (flags & MAIL_SEEN) != 0;
	case BACKFILL_POP3_HIDE_NONE:
		break;
	}
	return FALSE;
}

void backfill_pop3_hide_check(struct backfill_user *buser)
{
	struct mail_user *user = buser->user;
	const char *flag;

	if (buser->set.pop3_hide == BACKFILL_POP3_HIDE_NONE ||
	    buser->set.archive == NULL)
		return;
	flag = backfill_user_pop3_deleted_flag(user);
	if (flag != NULL && strcmp(flag, BACKFILL_POP3_HIDE_KEYWORD) == 0)
		return;
	e_warning(
	        buser->event,
	        "backfill_pop3_hide=%s cannot hide restored messages from POP3: add  pop3_deleted_flag = \"%s\"  to dovecot.conf (quoted), then reload Dovecot",
	        buser->set.pop3_hide == BACKFILL_POP3_HIDE_ALL ? "all" : "seen",
	        BACKFILL_POP3_HIDE_KEYWORD);
}
