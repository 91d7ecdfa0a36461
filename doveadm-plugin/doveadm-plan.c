/* doveadm backfill plan: what run would do, writing nothing.  The merge
   itself runs (merge.c, in its dry-run mode): the same folder mapping and
   dedup decisions, without copying a message, creating a folder, taking a
   lease or changing a state-store record.  Only Dovecot's own index and
   cache files change, as with any read by doveadm. */

#include "lib.h"
#include "str.h"
#include "ioloop.h"
#include "doveadm-print.h"
#include "doveadm-mail.h"
#include "mail-user.h"
#include "state.h"
#include "backfill-user.h"
#include "merge.h"
#include "doveadm-backfill.h"
#include "print-value.h"

#define PLAN_SLICE_MS 1000

static void plan_print(struct doveadm_mail_cmd_context *ctx,
                       const char *username, const char *state,
                       const struct backfill_merge_counts *c, const char *error)
{
	string_t *folders = t_str_new(64);

	for (unsigned int i = 0; i < c->new_folders_count; i++)
		doveadm_backfill_list_append(folders, ", ", c->new_folders[i]);
	doveadm_backfill_print_user(ctx, username);
	doveadm_print(state);
	doveadm_backfill_print_num(c->archived);
	doveadm_backfill_print_num(c->added);
	doveadm_backfill_print_num(c->duplicates);
	doveadm_backfill_print_num(c->skipped);
	doveadm_backfill_print_num(c->uidl_collisions);
	doveadm_backfill_print_num(c->bytes);
	doveadm_backfill_print_list(str_c(folders));
	doveadm_backfill_print_text(error);
	doveadm_backfill_print_list(c->uid_ways);
	doveadm_backfill_print_list(c->uid_way_reasons);
}

static int cmd_plan_run(struct doveadm_mail_cmd_context *ctx,
                        struct mail_user *user)
{
	struct backfill_user *buser;
	struct backfill_merge *merge;
	struct backfill_merge_counts counts;
	struct bf_state *state;
	const char *error, *reason;
	int ret;

	i_zero(&counts);
	if ((buser = doveadm_backfill_user(user, &error)) == NULL) {
		plan_print(ctx, user->username, "failed", &counts, error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		return -1;
	}
	if ((ret = doveadm_backfill_archive(buser, &error)) <= 0) {
		if (ret < 0) {
			e_error(buser->event, "%s", error);
			doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
		}
		plan_print(ctx, user->username,
		           ret < 0 ? "failed" : "no-archive", &counts,
		           ret < 0 ? error : NULL);
		return ret < 0 ? -1 : 0;
	}
	if (doveadm_backfill_state(buser, &state, NULL, &error) < 0) {
		e_error(buser->event,
		        "%s (plan again once the state store answers)", error);
		plan_print(ctx, user->username, "postponed", &counts, error);
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_TEMPFAIL);
		return -1;
	}
	io_loop_time_refresh();
	ret = backfill_merge_begin_flags(user, &buser->set, state,
	                                 BACKFILL_MERGE_FLAG_DRY_RUN, &merge,
	                                 &reason);
	if (ret < 0) {
		bool store = ret == BACKFILL_MERGE_STORE_ERROR;
		e_error(buser->event, "%s", reason);
		plan_print(ctx, user->username, store ? "postponed" : "failed",
		           &counts, reason);
		doveadm_backfill_outcome(ctx, store ? DOVEADM_BACKFILL_TEMPFAIL
		                                    : DOVEADM_BACKFILL_FAILED);
		return -1;
	}
	if (ret == 0) {
		plan_print(ctx, user->username, "done", &counts, NULL);
		return 0;
	}
	while ((ret = backfill_merge_run(merge, PLAN_SLICE_MS)) == 0) {
		io_loop_time_refresh();
		if (doveadm_is_killed())
			break;
	}
	backfill_merge_get_counts(merge, &counts);
	if (ret > 0) {
		plan_print(ctx, user->username, "pending", &counts, NULL);
	} else {
		plan_print(
		        ctx, user->username, "failed", &counts,
		        ret < 0 ? "the dry run stopped on an error (see the log)"
		                : "stopped by a signal");
		doveadm_backfill_outcome(ctx, DOVEADM_BACKFILL_FAILED);
	}
	backfill_merge_end(&merge);
	return ret > 0 ? 0 : -1;
}

static void cmd_plan_init(DOVEADM_BACKFILL_INIT_ARGS)
{
	enum doveadm_print_header_flags num =
	        DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY;

	doveadm_backfill_header_user(_ctx);
	doveadm_print_header("state", "State", 0);
	doveadm_print_header("archived", "Archived", num);
	doveadm_print_header("would_add", "WouldAdd", num);
	doveadm_print_header("duplicates", "Duplicates", num);
	doveadm_print_header("skipped", "Skipped", num);
	doveadm_print_header("uidl_collisions", "UIDLCollisions", num);
	doveadm_print_header("bytes", "Bytes", num);
	doveadm_print_header("folders_to_create", "FoldersToCreate", 0);
	doveadm_print_header("error", "Error", 0);
	/* how each archive folder's copies would get their IMAP UIDs
	   (docs/imap-caches.md) */
	doveadm_print_header("uid_ways", "UIDWays", 0);
	doveadm_print_header("uid_way_reasons", "UIDWayReasons", 0);
}

static struct doveadm_mail_cmd_context *cmd_plan_alloc(void)
{
	return doveadm_backfill_cmd_alloc(cmd_plan_init, cmd_plan_run);
}

struct doveadm_cmd_ver2 doveadm_cmd_backfill_plan = {
        .name = "backfill plan",
        .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX,
        .mail_cmd = cmd_plan_alloc,
        DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON
                DOVEADM_CMD_PARAMS_END};
