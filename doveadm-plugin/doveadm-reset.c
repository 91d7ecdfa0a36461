/* doveadm backfill reset: forgets the user's merge record and journal
   (after an archive was fixed, say), without touching any mail.  The next
   login or run merges from the start; dedup keeps what is already in the
   live mailbox from being added twice. */

#include "lib.h"
#include "doveadm-print.h"
#include "doveadm-mail.h"
#include "mail-user.h"
#include "state.h"
#include "backfill-user.h"
#include "doveadm-backfill.h"
#include "print-value.h"
#include "cursor.h"
#include "renumber-unfinished.h"
#include "doveadm-compat.h"

#include <stdlib.h>
#include <time.h>

#define RESET_LEASE_TTL_SECS 60

struct reset_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	/* --force: forget a record that still names a cut batch or an
	   unfinished renumbering */
	bool force;
};

/* What --force tells the operator when it forgets such a record */
#define RESET_FORCE_INTENT_COST                                                \
	"its cut merge batch's copies are in no journal: revert can never "    \
	"remove them, and dedup keeps them from being added again"
#define RESET_FORCE_RENUMBER_COST                                              \
	"the old live messages and their copies above may both stay, and "     \
	"the next merge does not finish the move"
#define RESET_FORCE_HINT                                                       \
	"; only if that run cannot settle it (e.g. a cut batch's archive "     \
	"folder is gone from the archive), "                                   \
	"reset -f forgets it anyway"

static void reset_print(struct doveadm_mail_cmd_context *ctx,
                        const char *username, const char *result,
                        const char *error)
{
	doveadm_backfill_print_user(ctx, username);
	doveadm_print(result);
	doveadm_backfill_print_text(error);
}

/* Why the record must not be forgotten yet, or NULL.  Only the record
   names a batch whose checkpoint a crash cut (its copies are in no
   journal yet) and says how to finish a renumbering cut before its end
   (renumber-unfinished.c): forgotten, the first would leave copies no
   revert can find, the second every live message twice.  The next merge
   run settles both, so the operator runs it first.  But a run cannot
   settle a cut batch whose archive folder is gone from the archive, and
   reset is the way out the docs give for a renamed folder: with --force
   the record is forgotten anyway, and *cost_r says what that leaves
   behind (NULL when nothing).  A record whose cursor cannot be read is
   what reset is for: it is forgotten. */
static const char *reset_refused(struct mail_user *user,
                                 const struct bf_merge_record *rec, bool force,
                                 const char **cost_r)
{
	const char *unfinished = "", *error;
	struct bf_cursor cursor;
	const char *refused = NULL;

	*cost_r = NULL;
	if (bf_cursor_parse(rec->cursor, &cursor, &error) < 0)
		return NULL;
	if (cursor.intent && force) {
		*cost_r =
		        "forgotten with a merge batch whose checkpoint a "
		        "crash or a store error cut: " RESET_FORCE_INTENT_COST;
	} else if (cursor.intent) {
		refused = t_strdup_printf(
		        "a merge batch was committed to the mailbox but a crash or a store error cut its checkpoint, so its copies are in no journal yet: nothing forgotten; run `doveadm backfill run -u %s` first (it journals them), then reset" RESET_FORCE_HINT
		        " (" RESET_FORCE_INTENT_COST ")",
		        user->username);
	}
	if (refused == NULL &&
	    doveadm_backfill_renumber_unfinished(user, &cursor, &unfinished,
	                                         &error) < 0) {
		if (force) {
			*cost_r = t_strdup_printf(
			        "%s%sforgotten without knowing whether a renumbering was cut (%s); if one was: " RESET_FORCE_RENUMBER_COST,
			        *cost_r == NULL ? "" : *cost_r,
			        *cost_r == NULL ? "" : "; ", error);
		} else {
			refused = t_strdup_printf(
			        "%s: nothing forgotten" RESET_FORCE_HINT,
			        error);
		}
	} else if (refused == NULL && unfinished[0] != '\0' && force) {
		*cost_r = t_strdup_printf(
		        "%s%sforgotten with the renumbering of the live mail of %s cut before its end: " RESET_FORCE_RENUMBER_COST,
		        *cost_r == NULL ? "" : *cost_r,
		        *cost_r == NULL ? "" : "; ", unfinished);
	} else if (refused == NULL && unfinished[0] != '\0') {
		refused = t_strdup_printf(
		        "the renumbering of the live mail of %s was cut before its end, and only the merge record says how to finish it: nothing forgotten; run `doveadm backfill run -u %s` first to finish it, then reset" RESET_FORCE_HINT
		        " (" RESET_FORCE_RENUMBER_COST ")",
		        unfinished, user->username);
	}
	bf_cursor_free(&cursor);
	return refused;
}

static int cmd_reset_run(struct doveadm_mail_cmd_context *ctx,
                         struct mail_user *user)
{
	struct reset_cmd_context *rctx = (struct reset_cmd_context *)ctx;
	const char *cost = NULL;
	struct backfill_user *buser;
	struct bf_merge_record rec;
	struct bf_state *state;
	const char *error, *lease, *result, *row_error = NULL;
	char owner[128], *holder = NULL;
	int ret;

	if ((buser = doveadm_backfill_user(user, &error)) == NULL) {
		reset_print(ctx, user->username, "failed", error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		return -1;
	}
	if (doveadm_backfill_state(buser, &state, NULL, &error) < 0) {
		e_error(buser->event,
		        "not reset: %s (try again once the state store answers)",
		        error);
		reset_print(ctx, user->username, "postponed", error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
		return -1;
	}
	/* never under a running merge: it would write its cursor back */
	lease = doveadm_backfill_lease_name(user);
	bf_lease_owner(owner, sizeof(owner));
	ret = bf_state_lease_acquire(state, lease, owner, time(NULL),
	                             RESET_LEASE_TTL_SECS, &holder, &error);
	if (ret <= 0) {
		if (ret < 0) {
			e_error(buser->event,
			        "not reset: %s (try again once the state store answers)",
			        error);
			row_error = error;
		} else {
			row_error = t_strdup_printf(
			        "a merge is running (%s); try again when it is finished",
			        holder == NULL ? "?" : holder);
			e_error(buser->event, "not reset: %s",
			        backfill_value_escape(row_error,
			                              BACKFILL_ESCAPE_TEXT));
		}
		free(holder);
		reset_print(ctx, user->username, ret < 0 ? "postponed" : "busy",
		            row_error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
		return -1;
	}
	ret = bf_state_merge_get(state, user->username, &rec, &error);
	if (ret > 0) {
		row_error = reset_refused(user, &rec, rctx->force, &cost);
		bf_merge_record_clear(&rec);
	}
	if (row_error != NULL) {
		e_error(buser->event, "not reset: %s",
		        backfill_value_escape(row_error, BACKFILL_ESCAPE_TEXT));
		result = "refused";
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		ret = -1;
	} else if (ret < 0) {
		/* read under the lease: nothing changed yet */
		e_error(buser->event,
		        "not reset: %s (try again once the state store answers)",
		        error);
		result = "postponed";
		row_error = t_strdup(error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
	} else if (bf_state_merge_delete(state, user->username, &error) < 0) {
		e_error(buser->event, "not reset: %s", error);
		result = "failed";
		row_error = t_strdup(error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		ret = -1;
	} else {
		result = ret > 0 ? "forgotten" : "none";
		if (cost != NULL) {
			e_warning(buser->event, "reset -f: %s", cost);
			row_error = cost;
		}
	}
	(void)bf_state_lease_release(state, lease, owner, &error);
	reset_print(ctx, user->username, result, row_error);
	return ret < 0 ? -1 : 0;
}

static void cmd_reset_init(DOVEADM_BACKFILL_INIT_ARGS)
{
	struct reset_cmd_context *ctx = (struct reset_cmd_context *)_ctx;

	if (!doveadm_cmd_param_bool(_ctx->cctx, "force", &ctx->force))
		ctx->force = FALSE;
	doveadm_backfill_header_user(_ctx);
	doveadm_print_header("result", "Result", 0);
	doveadm_print_header("error", "Error", 0);
}

static struct doveadm_mail_cmd_context *cmd_reset_alloc(void)
{
	struct reset_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct reset_cmd_context);
	doveadm_backfill_options(&ctx->ctx, "f");
	ctx->ctx.v.init = cmd_reset_init;
	ctx->ctx.v.run = cmd_reset_run;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_cmd_backfill_reset = {
        .name = "backfill reset",
        .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX "[-f|--force]",
        .mail_cmd = cmd_reset_alloc,
        DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON DOVEADM_CMD_PARAM(
                'f', "force", CMD_PARAM_BOOL, 0) DOVEADM_CMD_PARAMS_END};
