/* Background merge slices between IMAP commands.

   An IMAP session merges for its login budget, then continues the merge
   in short slices run from the ioloop (timeout_add_short(0)) while the
   client is quiet, so that a big archive never holds up the client for
   long.  The ioloop also runs while a command waits for its output to drain (a
   big FETCH to a slow client): a merge slice on every such pass would
   stretch that command by 20 ms per pass.  So a slice runs only when the
   client has no command queued or running.  The imap binary's own hook
   for new clients is looked up at run time: the same plugin file is
   loaded by pop3 and lmtp, which do not have it. */

#include "lib.h"
#include "ioloop.h"
#include "imap-common.h"
#include "imap-client.h"
#include "backfill-user.h"
#include "merge.h"
#include "imap-slices.h"

#include <dlfcn.h>

/* Work done per slice: the client waits at most about this long for its
   next command to start. */
#define BACKFILL_SLICE_MS             20
#define BACKFILL_BUSY_RETRY_MS        10
#define BACKFILL_FIRST_SLICE_DELAY_MS 100

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
	T_END;
	if (ret != 0)
		backfill_slices_stop(buser);
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
