/* doveadm backfill status [--by-domain]: each user's merge record, or its
   sums per domain (the report a domain administrator receives). */

#include "lib.h"
#include "array.h"
#include "hash.h"
#include "doveadm-print.h"
#include "doveadm-mail.h"
#include "mail-user.h"
#include "state.h"
#include "backfill-user.h"
#include "imap-uids.h"
#include "doveadm-backfill.h"
#include "print-value.h"

#include <stdlib.h>

struct status_sums {
	char *domain;
	uint64_t users, no_archive, pending, running, done, failed, postponed;
	uint64_t archived, added, duplicates, skipped, uidl_collisions;
};

struct status_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	bool by_domain;
	HASH_TABLE(char *, struct status_sums *) domains;
};

static struct status_sums *status_domain(struct status_cmd_context *ctx,
                                         const char *username)
{
	const char *at = strrchr(username, '@');
	const char *domain = at == NULL ? "" : at + 1;
	struct status_sums *sums;

	sums = hash_table_lookup(ctx->domains, domain);
	if (sums == NULL) {
		sums = p_new(ctx->ctx.pool, struct status_sums, 1);
		sums->domain = p_strdup(ctx->ctx.pool, domain);
		hash_table_insert(ctx->domains, sums->domain, sums);
	}
	return sums;
}

static void status_sum(struct status_sums *sums, const char *state,
                       const struct bf_merge_record *rec)
{
	sums->users++;
	if (strcmp(state, "no-archive") == 0)
		sums->no_archive++;
	else if (strcmp(state, "postponed") == 0)
		sums->postponed++;
	else if (strcmp(state, "pending") == 0)
		sums->pending++;
	else if (strcmp(state, "running") == 0)
		sums->running++;
	else if (strcmp(state, "done") == 0)
		sums->done++;
	else
		sums->failed++;
	sums->archived += rec->archived;
	sums->added += rec->added;
	sums->duplicates += rec->duplicates;
	sums->skipped += rec->skipped;
	sums->uidl_collisions += rec->uidl_collisions;
}

/* One user's row, or its share of the domain's sums.  state is the
   record's, or "postponed" (the store could not be read) or "failed" (the
   user's settings); error is what went wrong for this command, the
   record's own last_error aside. */
static void status_print(struct status_cmd_context *ctx, const char *username,
                         const char *state, const struct bf_merge_record *rec,
                         const char *error)
{
	if (ctx->by_domain) {
		status_sum(status_domain(ctx, username), state, rec);
		return;
	}
	doveadm_backfill_print_user(&ctx->ctx, username);
	doveadm_print(state);
	doveadm_backfill_print_num(rec->archived);
	doveadm_backfill_print_num(rec->added);
	doveadm_backfill_print_num(rec->duplicates);
	doveadm_backfill_print_num(rec->skipped);
	doveadm_backfill_print_num(rec->uidl_collisions);
	doveadm_backfill_print_time(rec->started);
	doveadm_backfill_print_time(rec->finished);
	doveadm_backfill_print_text(rec->last_error);
	doveadm_backfill_print_text(error);
	doveadm_backfill_print_list(
	        rec->cursor == NULL
	                ? NULL
	                : backfill_imap_uids_cursor_text(rec->cursor, FALSE));
	doveadm_backfill_print_list(
	        rec->cursor == NULL
	                ? NULL
	                : backfill_imap_uids_cursor_text(rec->cursor, TRUE));
}

static int cmd_status_run(struct doveadm_mail_cmd_context *_ctx,
                          struct mail_user *user)
{
	struct status_cmd_context *ctx = (struct status_cmd_context *)_ctx;
	struct backfill_user *buser;
	struct bf_merge_record rec;
	struct bf_state *state;
	const char *error, *name, *archive_error = NULL;
	int ret, have_archive;

	i_zero(&rec);
	if ((buser = doveadm_backfill_user(user, &error)) == NULL) {
		status_print(ctx, user->username, "failed", &rec, error);
		doveadm_backfill_outcome(_ctx, DOVEADM_BACKFILL_FAILED);
		return -1;
	}
	have_archive = doveadm_backfill_archive(buser, &error);
	if (have_archive < 0) {
		e_error(buser->event, "%s", error);
		archive_error = error;
		doveadm_backfill_outcome(_ctx, DOVEADM_BACKFILL_FAILED);
	}
	ret = doveadm_backfill_state(buser, &state, &rec, &error);
	if (ret < 0) {
		e_error(buser->event, "%s", error);
		status_print(ctx, user->username, "postponed", &rec, error);
		doveadm_backfill_outcome(_ctx, DOVEADM_BACKFILL_TEMPFAIL);
		return -1;
	}
	/* A record outlives a removed archive: show what was done. */
	if (ret == 0 && have_archive == 0)
		name = "no-archive";
	else if (ret == 0 && have_archive < 0)
		name = "failed"; /* not pending: it cannot start */
	else
		name = bf_merge_status_name(rec.status);
	status_print(ctx, user->username, name, &rec, archive_error);
	bf_merge_record_clear(&rec);
	return 0;
}

static void cmd_status_init(DOVEADM_BACKFILL_INIT_ARGS)
{
	struct status_cmd_context *ctx = (struct status_cmd_context *)_ctx;
	enum doveadm_print_header_flags num =
	        DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY;

	if (!doveadm_cmd_param_bool(_ctx->cctx, "by-domain", &ctx->by_domain))
		ctx->by_domain = FALSE;
	if (ctx->by_domain) {
		hash_table_create(&ctx->domains, _ctx->pool, 0, str_hash,
		                  strcmp);
		doveadm_print_header("domain", "Domain", 0);
		doveadm_print_header("users", "Users", num);
		doveadm_print_header("no_archive", "NoArchive", num);
		doveadm_print_header("pending", "Pending", num);
		doveadm_print_header("running", "Running", num);
		doveadm_print_header("done", "Done", num);
		doveadm_print_header("failed", "Failed", num);
		doveadm_print_header("postponed", "Postponed", num);
	} else {
		doveadm_backfill_header_user(_ctx);
		doveadm_print_header("state", "State", 0);
	}
	doveadm_print_header("archived", "Archived", num);
	doveadm_print_header("added", "Added", num);
	doveadm_print_header("duplicates", "Duplicates", num);
	doveadm_print_header("skipped", "Skipped", num);
	doveadm_print_header("uidl_collisions", "UIDLCollisions", num);
	if (!ctx->by_domain) {
		doveadm_print_header("started", "Started", 0);
		doveadm_print_header("finished", "Finished", 0);
		doveadm_print_header("last_error", "LastError", 0);
		doveadm_print_header("error", "Error", 0);
		/* how each archive folder's copies got their IMAP UIDs,
		   from the cursor (docs/imap-caches.md) */
		doveadm_print_header("uid_ways", "UIDWays", 0);
		doveadm_print_header("uid_way_reasons", "UIDWayReasons", 0);
	}
}

static int status_sums_cmp(struct status_sums *const *s1,
                           struct status_sums *const *s2)
{
	return strcmp((*s1)->domain, (*s2)->domain);
}

static void cmd_status_deinit(struct doveadm_mail_cmd_context *_ctx)
{
	struct status_cmd_context *ctx = (struct status_cmd_context *)_ctx;
	struct hash_iterate_context *iter;
	ARRAY(struct status_sums *) all;
	struct status_sums *sums, *const *sp;
	char *key;

	if (!hash_table_is_created(ctx->domains))
		return;
	t_array_init(&all, 16);
	iter = hash_table_iterate_init(ctx->domains);
	while (hash_table_iterate(iter, ctx->domains, &key, &sums))
		array_push_back(&all, &sums);
	hash_table_iterate_deinit(&iter);
	array_sort(&all, status_sums_cmp);
	array_foreach(&all, sp)
	{
		sums = *sp;
		doveadm_backfill_print_text(sums->domain);
		doveadm_backfill_print_num(sums->users);
		doveadm_backfill_print_num(sums->no_archive);
		doveadm_backfill_print_num(sums->pending);
		doveadm_backfill_print_num(sums->running);
		doveadm_backfill_print_num(sums->done);
		doveadm_backfill_print_num(sums->failed);
		doveadm_backfill_print_num(sums->postponed);
		doveadm_backfill_print_num(sums->archived);
		doveadm_backfill_print_num(sums->added);
		doveadm_backfill_print_num(sums->duplicates);
		doveadm_backfill_print_num(sums->skipped);
		doveadm_backfill_print_num(sums->uidl_collisions);
	}
	hash_table_destroy(&ctx->domains);
}

static struct doveadm_mail_cmd_context *cmd_status_alloc(void)
{
	struct status_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct status_cmd_context);
	doveadm_backfill_options(&ctx->ctx, "d");
	ctx->ctx.v.init = cmd_status_init;
	ctx->ctx.v.run = cmd_status_run;
	ctx->ctx.v.deinit = cmd_status_deinit;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_cmd_backfill_status = {
        .name = "backfill status",
        .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX "[-d|--by-domain]",
        .mail_cmd = cmd_status_alloc,
        DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON DOVEADM_CMD_PARAM(
                'd', "by-domain", CMD_PARAM_BOOL, 0) DOVEADM_CMD_PARAMS_END};
