#ifndef BACKFILL_PRIVATE_MAILBOXES_H
#define BACKFILL_PRIVATE_MAILBOXES_H

#include "array.h"

struct mail_user;

struct backfill_mailbox_entry {
	const char *vname;
	/* The listing's special-use flags ("\\Sent"), NULL when none or not
	   asked for. */
	const char *special_use;
	bool subscribed;
};
ARRAY_DEFINE_TYPE(backfill_mailbox_entry, struct backfill_mailbox_entry);

enum backfill_mailboxes_flags {
	/* Only mailboxes that exist and can hold mail: no \Noselect
	   parents, no autocreated folders that are not created yet. */
	BACKFILL_MAILBOXES_SELECTABLE = 0x01,
	BACKFILL_MAILBOXES_SPECIAL_USE = 0x02,
	BACKFILL_MAILBOXES_SUBSCRIBED = 0x04,
};

/* The mailboxes of the user's private namespaces (shared and public ones
   are other people's mail), in listing order, strings in pool.  The live
   user and an archive's own mail user alike.  Returns 0, or -1 with
   Dovecot's error in *error_r. */
int backfill_private_mailboxes(struct mail_user *user,
                               enum backfill_mailboxes_flags flags, pool_t pool,
                               ARRAY_TYPE(backfill_mailbox_entry) * boxes_r,
                               const char **error_r);

#endif
