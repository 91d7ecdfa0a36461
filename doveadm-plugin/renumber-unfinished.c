/* A renumbering cut before its end, for revert and reset: both forget the
   merge record, and only its cursor says how to finish the move (the old
   live messages and their copies above may both be there); after either,
   the next merge would leave every live message twice, sharing its POP3
   UIDL.  So both refuse until a merge run has finished it. */

#include "lib.h"
#include "str.h"
#include "guid.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage.h"
#include "cursor.h"
#include "renumber-unfinished.h"

/* The archive folders whose live folder's renumbering was begun and not
   finished: its move is on record and not done (the old live messages and
   their copies above may both be there), or the folder took the archive's
   UIDVALIDITY and its move is not on record yet.  Only the merge record's
   cursor says what the move is; a revert deletes the record, and nothing
   would ever finish the move (every live message then twice, or left
   below the archive's UIDs).  The next merge run finishes it.  *names_r ""
   when none; -1 with *error_r when a live folder cannot be read. */
int doveadm_backfill_renumber_unfinished(struct mail_user *user,
                                         const struct bf_cursor *cursor,
                                         const char **names_r,
                                         const char **error_r)
{
	struct mail_namespace *ns = mail_namespace_find_inbox(user->namespaces);
	string_t *str = t_str_new(64);
	enum mail_error error;

	for (size_t i = 0; i < cursor->folders_count; i++) {
		const struct bf_cursor_folder *f = &cursor->folders[i];
		struct mailbox_status status;
		guid_128_t guid;
		bool cut = FALSE;

		if (f->way != BF_UID_WAY_RENUMBER || f->renumber_below == 0 ||
		    f->move_done)
			continue;
		if (f->move_uids != NULL)
			cut = TRUE;
		else if (f->way_live_guid[0] != '\0' &&
		         guid_128_from_string(f->way_live_guid, guid) == 0) {
			/* the UIDVALIDITY it had at the decision: nothing
			   changed yet (a pinned POP3 UIDL is the one it
			   showed) */
			struct mailbox *box = mailbox_alloc_guid(
			        ns->list, guid, MAILBOX_FLAG_READONLY);
			if (mailbox_open(box) == 0 &&
			    mailbox_get_status(box, STATUS_UIDVALIDITY,
			                       &status) == 0)
				cut = status.uidvalidity !=
				      f->renumber_uidvalidity;
			else {
				const char *errstr =
				        mailbox_get_last_internal_error(box,
				                                        &error);
				/* a folder the user deleted: nothing to
				   finish */
				if (error != MAIL_ERROR_NOTFOUND) {
					*error_r = t_strdup_printf(
					        "%s: its live folder cannot be read (%s)",
					        f->name, errstr);
					mailbox_free(&box);
					return -1;
				}
			}
			mailbox_free(&box);
		}
		if (!cut)
			continue;
		if (str_len(str) > 0)
			str_append(str, ", ");
		str_append(str, f->name);
	}
	*names_r = str_c(str);
	return 0;
}
