/* Background merge slices and IMAP commands.

   The ioloop also runs while a command waits for its output to drain (a
   big FETCH to a slow client): a merge slice on every such pass would
   stretch that command by 20 ms per pass.  So a slice runs only when the
   client has no command queued or running.  The imap binary's own hook
   for new clients is looked up at run time: the same plugin file is
   loaded by pop3 and lmtp, which do not have it. */

#include "lib.h"
#include "imap-common.h"
#include "imap-client.h"
#include "backfill-plugin.h"
#include "imap-idle.h"

#include <dlfcn.h>

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

bool backfill_imap_client_busy(struct backfill_user *buser)
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

void backfill_imap_idle_init(void)
{
	backfill_imap_hook_set = (imap_hook_set_func_t *)dlsym(
	        RTLD_DEFAULT, "imap_client_created_hook_set");
	if (backfill_imap_hook_set == NULL)
		return;
	backfill_next_client_created =
	        backfill_imap_hook_set(backfill_imap_client_created);
	backfill_imap_hooked = TRUE;
}

void backfill_imap_idle_deinit(void)
{
	if (!backfill_imap_hooked)
		return;
	(void)backfill_imap_hook_set(backfill_next_client_created);
	backfill_imap_hooked = FALSE;
}
