/* backfill's context of a mail user: settings, log event, state store;
   whatever runs past the login is ended through background_stop. */

#include "lib.h"
#include "state.h"
#include "backfill-user.h"

#include <stdlib.h>

struct backfill_user_module backfill_user_module =
        MODULE_CONTEXT_INIT(&mail_user_module_register);

struct event *backfill_event_create(struct mail_user *user)
{
	struct event *event = event_create(user->event);

	event_set_append_log_prefix(event, "backfill: ");
	return event;
}

static void backfill_mail_user_deinit_pre(struct mail_user *user)
{
	struct backfill_user *buser = BACKFILL_USER_CONTEXT(user);

	/* before the namespaces go away: the merge has mailboxes open */
	if (buser->background_stop != NULL)
		buser->background_stop(buser);
	buser->module_ctx.super.deinit_pre(user);
}

static void backfill_mail_user_deinit(struct mail_user *user)
{
	struct backfill_user *buser = BACKFILL_USER_CONTEXT(user);

	if (buser->state != NULL)
		bf_state_close(&buser->state);
	event_unref(&buser->event);
	buser->module_ctx.super.deinit(user);
}

void backfill_user_created(struct mail_user *user)
{
	struct mail_user_vfuncs *v = user->vlast;
	struct backfill_user *buser;
	struct event *event;
	const char *error;

	/* the archive's own mail user, shared-namespace owners, raw users */
	if (user->creator != NULL || user->autocreated)
		return;

	event = backfill_event_create(user);
	buser = p_new(user->pool, struct backfill_user, 1);
	if (backfill_settings_get(user, event, &buser->set, &error) < 0) {
		e_error(event, "settings: %s (no backfill for this user)",
		        error);
		event_unref(&event);
		return;
	}
	buser->user = user;
	buser->event = event;
	buser->module_ctx.super = *v;
	user->vlast = &buser->module_ctx.super;
	v->deinit_pre = backfill_mail_user_deinit_pre;
	v->deinit = backfill_mail_user_deinit;
	MODULE_CONTEXT_SET(user, backfill_user_module, buser);
}

int backfill_user_state_open(struct backfill_user *buser, const char **error_r)
{
	return backfill_user_state_open_within(buser, 0, error_r);
}

int backfill_user_state_open_within(struct backfill_user *buser,
                                    unsigned int wait_ms, const char **error_r)
{
	char *error;

	if (buser->state != NULL)
		return 0;
	if (bf_state_open_within(buser->set.state_uri, wait_ms, &buser->state,
	                         &error) < 0) {
		*error_r = t_strdup(error);
		free(error);
		return -1;
	}
	return 0;
}
