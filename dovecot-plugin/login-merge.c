/* The merge a login runs, within the login budget. */

#include "lib.h"
#include "mail-user.h"
#include "clock.h"
#include "state.h"
#include "backfill-user.h"
#include "archive.h"
#include "merge.h"
#include "pop3-hide.h"
#include "imap-slices.h"
#include "login-merge.h"

/* Kept from a POP3 login's budget for the commit that ends its share. */
#define BACKFILL_COMMIT_RESERVE_MS 30

/* The login's outcome as a named event with the reason in a field, for
   Dovecot's statistics (metric { filter = event=backfill_merge_failed }):
   docs/events.md.  The log line is the event's own. */
static struct event *outcome_event(struct backfill_user *buser,
                                   const char *name, const char *reason)
{
	return event_create_passthrough(buser->event)
	        ->set_name(name)
	        ->add_str("reason", reason)
	        ->add_str("service", buser->user->service)
	        ->event();
}

void backfill_login_merge(struct backfill_user *buser)
{
	struct mail_user *user = buser->user;
	const char *error, *reason, *path;
	bool imap = strcmp(user->service, "imap") == 0;
	uint64_t start = bf_clock_msecs();
	int ret;

	/* Users without an archive cost one stat() and log nothing above
	   debug: the state store is not even opened for them. */
	ret = backfill_archive_resolve(user, &buser->set, &path, &error);
	if (ret < 0) {
		e_error(outcome_event(buser, "backfill_merge_failed", error),
		        "%s", error);
		return;
	}
	if (ret == 0) {
		e_debug(buser->event, "no archive to merge (%s)",
		        buser->set.archive == NULL ? "backfill_archive unset"
		                                   : buser->set.archive);
		return;
	}
	if (strcmp(user->service, "pop3") == 0)
		backfill_pop3_hide_check(buser);
	/* Opening waits no longer than the budget either: a store file
	   locked by another process, or a Redis that accepts and never
	   replies, held the login for the store's own timeout (10 s). */
	uint64_t open_spent = bf_clock_msecs() - start;
	unsigned int open_wait =
	        buser->set.login_budget_ms > open_spent
	                ? (unsigned int)(buser->set.login_budget_ms -
	                                 open_spent)
	                : 1;
	if (backfill_user_state_open_within(buser, open_wait, &error) < 0) {
		e_error(outcome_event(buser, "backfill_merge_postponed", error),
		        "merge postponed: %s (the next login retries; the mail user must be able to create and write the state store and its directory)",
		        error);
		return;
	}
	ret = backfill_merge_begin(user, &buser->set, buser->state,
	                           &buser->merge, &reason);
	if (ret < 0) {
		e_error(outcome_event(buser,
		                      ret == BACKFILL_MERGE_STORE_ERROR
		                              ? "backfill_merge_postponed"
		                              : "backfill_merge_failed",
		                      reason),
		        "%s", reason);
		return;
	}
	if (ret == 0) {
		/* NULL: done already, nothing to say */
		if (reason != NULL) {
			e_info(outcome_event(buser, "backfill_merge_skipped",
			                     reason),
			       "%s", reason);
		}
		return;
	}
	/* merge.c has logged "merge started|resumed"; this is for stats */
	e_debug(outcome_event(buser, "backfill_merge_started", ""),
	        "merge begun at %s login", user->service);
	/* The budget covers opening the archive and the live index too, and
	   keeps a reserve for the commit that ends a POP3 login's share. */
	uint64_t spent = bf_clock_msecs() - start;
	uint64_t budget = buser->set.login_budget_ms;
	uint64_t reserve = imap ? 0 : BACKFILL_COMMIT_RESERVE_MS;
	budget = budget > spent + reserve ? budget - spent - reserve : 1;
	ret = imap ? backfill_merge_run(buser->merge, (unsigned int)budget)
	           : backfill_merge_run_progress(buser->merge,
	                                         (unsigned int)budget);
	if (ret != 0) {
		backfill_merge_end(&buser->merge);
	} else if (imap) {
		/* the rest between client commands */
		backfill_imap_slices_start(buser);
	} else {
		e_info(buser->event,
		       "merge paused at the login budget (backfill_login_budget); the next login continues");
		backfill_merge_end(&buser->merge);
	}
}
