#ifndef BACKFILL_USER_H
#define BACKFILL_USER_H

#include "module-context.h"
#include "mail-user.h"
#include "backfill-settings.h"

struct bf_state;
struct backfill_merge;
struct backfill_merge_claim;
struct client;

/* backfill's context of a mail user (module context of mail_user). */
struct backfill_user {
	union mail_user_module_context module_ctx;
	struct mail_user *user;
	/* Child of the user's event: every backfill log line of this user
	   goes through it (or a child of it), which adds "backfill: " to
	   Dovecot's own prefix once. */
	struct event *event;
	struct backfill_settings set;
	/* Opened on first need; NULL when closed. */
	struct bf_state *state;
	/* A merge still running in background IMAP slices. */
	struct backfill_merge *merge;
	struct timeout *to_slice;
	/* Set by whoever keeps a merge running past the login (imap
	   slices): ends it, before the user's namespaces go away.  A call,
	   not a dependency: this file knows nothing of the merge. */
	void (*background_stop)(struct backfill_user *buser);
	/* imap: the session's client (struct client), to see whether it
	   is busy; NULL elsewhere */
	struct client *imap_client;
	unsigned int slice_delay_ms;
	/* imap: the background merge stopped on a stalled state store and
	   is begun again after stall_retry_ms with what it held
	   (imap-slices.c); NULL before the first stall */
	struct backfill_merge_claim *stall_claim;
	unsigned int stall_retry_ms;
};

#define BACKFILL_USER_CONTEXT(obj) MODULE_CONTEXT(obj, backfill_user_module)
extern MODULE_CONTEXT_DEFINE(backfill_user_module, &mail_user_module_register);

/* The mail_user_created hook: gives the user its backfill context
   (settings, log event; the state store opens on first need), closed with
   the user.  Not for the archive's own mail user nor other users Dovecot
   creates on the side (shared-namespace owners, raw users). */
void backfill_user_created(struct mail_user *user);

/* A new child of the user's event that adds "backfill: " to Dovecot's own
   log prefix: the one place the prefix is spelt.  buser->event is one; a
   module may make its own (to carry fields of its own), and unrefs it. */
struct event *backfill_event_create(struct mail_user *user);

/* Opens the user's state store if not open yet.  Returns 0, or -1 with a
   message for the log in *error_r. */
int backfill_user_state_open(struct backfill_user *buser, const char **error_r);
/* The same, waiting at most wait_ms for a lock or a reply while opening
   (bf_state_open_within()); the handle keeps that wait limit until its
   user sets another. */
int backfill_user_state_open_within(struct backfill_user *buser,
                                    unsigned int wait_ms, const char **error_r);

#endif
