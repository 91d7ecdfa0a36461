/* Background merge slices between IMAP commands.

   An IMAP session merges for its login budget, then continues the merge
   in short slices run from the ioloop (timeout_add_short(0)) while the
   client is quiet, so that a big archive never holds up the client for
   long.  The ioloop also runs while a command waits for its output to drain (a
   big FETCH to a slow client): a merge slice on every such pass would
   stretch that command by 20 ms per pass.  So a slice runs only when the
   client has no command queued or running.  The imap binary's own hook
   for new clients is looked up at run time: the same plugin file is
   loaded by pop3 and lmtp, which do not have it.

   A stalled state store (a lock another process holds on the SQLite
   file, a Redis that accepts and never answers) held a slice, and so the
   client's next command, for the store's own timeout (10 s for SQLite).
   Each slice now waits for the store at most backfill_login_budget in all
   (merge.c, backfill_merge_login_over()); the slice that gives up stops
   the merge, which loses nothing (an uncommitted batch is rolled back, a
   batch committed before its checkpoint is settled by the next merge, as
   after a crash), and the session begins it again after
   BACKFILL_STALL_RETRY_FIRST_MS, then twice as long while the store
   stays stalled.  Other errors stop the merge until the next login, as
   before: retrying a full disk every few seconds helps nobody. */

#include "lib.h"
#include "ioloop.h"
#include "imap-common.h"
#include "imap-client.h"
#include "state.h"
#include "backfill-user.h"
#include "merge.h"
#include "imap-slices.h"

#include <dlfcn.h>

/* Work done per slice: the client waits at most about this long for its
   next command to start. */
#define BACKFILL_SLICE_MS             20
#define BACKFILL_BUSY_RETRY_MS        10
#define BACKFILL_FIRST_SLICE_DELAY_MS 100
/* After a slice found the state store stalled: the first retry, and the
   longest wait between retries (each retry that finds it still stalled
   costs the client up to backfill_login_budget once more). */
#define BACKFILL_STALL_RETRY_FIRST_MS 5000
#define BACKFILL_STALL_RETRY_MAX_MS   60000

typedef imap_client_created_func_t *
imap_hook_set_func_t(imap_client_created_func_t *new_hook);

/* process-wide hook chain, like Dovecot's own */
static imap_hook_set_func_t *backfill_imap_hook_set = NULL;
static imap_client_created_func_t *backfill_next_client_created = NULL;
static bool backfill_imap_hooked = FALSE;

static void backfill_imap_client_created(struct client **clientp)
{
	struct backfill_user *buser = BACKFILL_USER_CONTEXT((*clientp)->user);

	if (buser != NULL)
		buser->imap_client = *clientp;
	if (backfill_next_client_created != NULL)
		backfill_next_client_created(clientp);
}

static bool backfill_imap_client_busy(struct backfill_user *buser)
{
	const struct client *client = buser->imap_client;
	const struct client_command_context *cmd;

	if (client == NULL || client->command_queue == NULL)
		return FALSE;
	/* A client in IDLE waits for us, not we for it: mail clients sit in
	   IDLE most of their session. */
	for (cmd = client->command_queue; cmd != NULL; cmd = cmd->next) {
		if (cmd->name == NULL || strcasecmp(cmd->name, "IDLE") != 0)
			return TRUE;
	}
	return FALSE;
}

static void backfill_slice(struct backfill_user *buser);
static void backfill_slice_retry(struct backfill_user *buser);

static void backfill_slices_stop(struct backfill_user *buser)
{
	timeout_remove(&buser->to_slice);
	backfill_merge_end(&buser->merge);
	buser->background_stop = NULL;
}

static void backfill_slice_arm(struct backfill_user *buser, unsigned int msecs)
{
	timeout_remove(&buser->to_slice);
	buser->to_slice = timeout_add_short(msecs, backfill_slice, buser);
	buser->slice_delay_ms = msecs;
}

/* The merge stopped on a stalled store (error: the store's): it is ended
   and begun again later by backfill_slice_retry(). */
static void backfill_slices_stalled(struct backfill_user *buser,
                                    const char *error)
{
	unsigned int delay = buser->stall_retry_ms == 0
	                             ? BACKFILL_STALL_RETRY_FIRST_MS
	                             : I_MIN(buser->stall_retry_ms * 2,
	                                     BACKFILL_STALL_RETRY_MAX_MS);

	buser->stall_retry_ms = delay;
	e_warning(buser->event,
	          "merge paused in the background: %s (the state store did not "
	          "answer within backfill_login_budget=%" PRIu64 "ms; nothing "
	          "is lost: "
	          "this session tries again in %u s, or the next login does)",
	          error, buser->set.login_budget_ms, delay / 1000);
	timeout_remove(&buser->to_slice);
	buser->to_slice = timeout_add(delay, backfill_slice_retry, buser);
	buser->slice_delay_ms = delay;
}

/* After a run of the merge: 0 more to do, 1 done, -1 stopped. */
static void backfill_slice_ran(struct backfill_user *buser, int ret)
{
	struct backfill_merge_claim claim;
	const char *error;

	if (ret == 0) {
		buser->stall_retry_ms = 0;
		return;
	}
	if (ret < 0 &&
	    backfill_merge_store_stalled(buser->merge, &claim, &error)) {
		if (buser->stall_claim == NULL) {
			buser->stall_claim =
			        p_new(buser->user->pool,
			              struct backfill_merge_claim, 1);
		}
		*buser->stall_claim = claim;
		error = t_strdup(error); /* the merge's pool goes */
		backfill_merge_end(&buser->merge);
		backfill_slices_stalled(buser, error);
		return;
	}
	backfill_slices_stop(buser);
}

/* One background slice.  A client command that arrives meanwhile waits
   for it; its commit (about once a second, fsyncs) makes it longer.
   While the client has a command in progress, no slice runs. */
static void backfill_slice(struct backfill_user *buser)
{
	int ret;

	if (backfill_imap_client_busy(buser)) {
		if (buser->slice_delay_ms != BACKFILL_BUSY_RETRY_MS)
			backfill_slice_arm(buser, BACKFILL_BUSY_RETRY_MS);
		return;
	}
	if (buser->slice_delay_ms != 0)
		backfill_slice_arm(buser, 0);
	if (buser->merge == NULL)
		return;
	T_BEGIN
		ret = backfill_merge_run(buser->merge, BACKFILL_SLICE_MS);
		backfill_slice_ran(buser, ret);
	T_END;
}

/* Begins the merge again after a stalled store, and runs its first slice
   right away (as the login does: the begin's store deadline covers it). */
static void backfill_slice_begin_again(struct backfill_user *buser)
{
	const char *reason;
	int ret;

	ret = backfill_merge_begin_again(buser->user, &buser->set, buser->state,
	                                 buser->stall_claim, &buser->merge,
	                                 &reason);
	if (ret > 0) {
		backfill_slice_arm(buser, 0);
		backfill_slice_ran(
		        buser,
		        backfill_merge_run(buser->merge, BACKFILL_SLICE_MS));
		return;
	}
	if (ret == BACKFILL_MERGE_STORE_ERROR &&
	    bf_state_stalled(buser->state)) {
		backfill_slices_stalled(buser, reason);
		return;
	}
	if (ret < 0)
		e_error(buser->event, "%s", reason);
	else if (reason != NULL)
		e_info(buser->event, "%s", reason);
	backfill_slices_stop(buser);
}

static void backfill_slice_retry(struct backfill_user *buser)
{
	/* as a slice: never while the client's command runs */
	if (backfill_imap_client_busy(buser)) {
		timeout_remove(&buser->to_slice);
		buser->to_slice = timeout_add_short(
		        BACKFILL_BUSY_RETRY_MS, backfill_slice_retry, buser);
		return;
	}
	timeout_remove(&buser->to_slice);
	T_BEGIN
		backfill_slice_begin_again(buser);
	T_END;
}

void backfill_imap_slices_start(struct backfill_user *buser)
{
	buser->background_stop = backfill_slices_stop;
	backfill_slice_arm(buser, BACKFILL_FIRST_SLICE_DELAY_MS);
}

void backfill_imap_slices_init(void)
{
	backfill_imap_hook_set = (imap_hook_set_func_t *)dlsym(
	        RTLD_DEFAULT, "imap_client_created_hook_set");
	if (backfill_imap_hook_set == NULL)
		return;
	backfill_next_client_created =
	        backfill_imap_hook_set(backfill_imap_client_created);
	backfill_imap_hooked = TRUE;
}

void backfill_imap_slices_deinit(void)
{
	if (!backfill_imap_hooked)
		return;
	(void)backfill_imap_hook_set(backfill_next_client_created);
	backfill_imap_hooked = FALSE;
}
