/* backfill: merge a user's restored archive into the live mailbox on
   login (imap, pop3), confirm deliveries for the milter (lmtp).

   The plugin's entry: registers the hooks, each of which hands over to
   the module that does the work. */

#include "lib.h"
#include "master-service.h"
#include "mail-user.h"
#include "mail-namespace.h"
#include "mail-storage-hooks.h"
#include "backfill-user.h"
#include "login-merge.h"
#include "delivery-confirm.h"
#include "imap-slices.h"
#include "backfill-plugin.h"

const char *backfill_plugin_version = DOVECOT_ABI_VERSION;

static void backfill_mail_namespaces_created(struct mail_namespace *namespaces)
{
	struct mail_user *user = namespaces->user;
	struct backfill_user *buser = BACKFILL_USER_CONTEXT(user);

	if (buser == NULL)
		return;
	/* lmtp and doveadm also get here: only interactive logins merge */
	if (strcmp(user->service, "imap") == 0 ||
	    strcmp(user->service, "pop3") == 0) {
		backfill_login_merge(buser);
	}
}

static struct mail_storage_hooks backfill_mail_storage_hooks = {
        .mail_user_created = backfill_user_created,
        .mail_namespaces_created = backfill_mail_namespaces_created,
};

void backfill_plugin_init(struct module *module)
{
	mail_storage_hooks_add(module, &backfill_mail_storage_hooks);
	if (strcmp(master_service_get_name(master_service), "lmtp") == 0)
		backfill_delivery_confirm_init();
	if (strcmp(master_service_get_name(master_service), "imap") == 0)
		backfill_imap_slices_init();
}

void backfill_plugin_deinit(void)
{
	backfill_delivery_confirm_deinit();
	backfill_imap_slices_deinit();
	mail_storage_hooks_remove(&backfill_mail_storage_hooks);
}
