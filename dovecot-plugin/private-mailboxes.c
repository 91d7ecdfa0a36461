/* Listing a user's own mailboxes: the merge, the folder map and doveadm's
   walks all need the same set. */

#include "lib.h"
#include "mail-namespace.h"
#include "mailbox-list-iter.h"
#include "private-mailboxes.h"

int backfill_private_mailboxes(struct mail_user *user,
                               enum backfill_mailboxes_flags flags, pool_t pool,
                               ARRAY_TYPE(backfill_mailbox_entry) * boxes_r,
                               const char **error_r)
{
	static const char *const patterns[] = {"*", NULL};
	enum mailbox_list_iter_flags iter_flags =
	        MAILBOX_LIST_ITER_SKIP_ALIASES;
	struct mailbox_list_iterate_context *iter;
	const struct mailbox_info *info;
	struct backfill_mailbox_entry *entry;

	if ((flags & BACKFILL_MAILBOXES_SELECTABLE) != 0)
		iter_flags |= MAILBOX_LIST_ITER_NO_AUTO_BOXES;
	if ((flags & BACKFILL_MAILBOXES_SPECIAL_USE) != 0)
		iter_flags |= MAILBOX_LIST_ITER_RETURN_SPECIALUSE;
	if ((flags & BACKFILL_MAILBOXES_SUBSCRIBED) != 0)
		iter_flags |= MAILBOX_LIST_ITER_RETURN_SUBSCRIBED;
	if ((flags & (BACKFILL_MAILBOXES_SPECIAL_USE |
	              BACKFILL_MAILBOXES_SUBSCRIBED)) == 0)
		iter_flags |= MAILBOX_LIST_ITER_RETURN_NO_FLAGS;

	p_array_init(boxes_r, pool, 16);
	iter = mailbox_list_iter_init_namespaces(user->namespaces, patterns,
	                                         MAIL_NAMESPACE_TYPE_PRIVATE,
	                                         iter_flags);
	while ((info = mailbox_list_iter_next(iter)) != NULL) {
		if ((flags & BACKFILL_MAILBOXES_SELECTABLE) != 0 &&
		    (info->flags & (MAILBOX_NOSELECT | MAILBOX_NONEXISTENT)) !=
		            0)
			continue;
		entry = array_append_space(boxes_r);
		entry->vname = p_strdup(pool, info->vname);
		entry->special_use = p_strdup_empty(pool, info->special_use);
		entry->subscribed = (info->flags & MAILBOX_SUBSCRIBED) != 0;
	}
	if (mailbox_list_iter_deinit(&iter) < 0) {
		struct mail_namespace *ns =
		        mail_namespace_find_inbox(user->namespaces);
		*error_r = t_strdup(
		        mailbox_list_get_last_internal_error(ns->list, NULL));
		return -1;
	}
	return 0;
}
