/* doveadm backfill run [-p N] [-r MSGS_PER_S]: merges now, for users who
   have not logged in, with the plugin's own merge (merge.c).

   A user whose merge lease a live session holds is skipped and reported
   ("busy"): that session is merging it.  A run that is stopped (^C,
   SIGTERM, a crash) is resumed by the next run or login from the merge
   record's cursor.

   Parallelism: doveadm walks the users (-A, -F, -u with wildcards) one
   after the other in one process.  With -p N each user's merge runs in a
   forked child of that process, at most N at once: the child inherits the
   mail user doveadm has just set up, opens its own state-store handle,
   merges, reports one line through a pipe and exits.  The parent prints
   every row itself, so -f json stays one document.

   Progress (stderr): the users done of the total doveadm will walk, the
   messages merged, the rate and the ETA, rewritten in place twice a second
   on a terminal, a line every RUN_PROGRESS_LOG_SECS otherwise (cron, a
   log).  The total is known because the user list is read in full before
   the first user (get_next_user below).  With -p the workers report the
   messages they merged so far through their pipe, and the parent waits
   for them with poll() so that it can write the line meanwhile. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ioloop.h"
#include "time-util.h"
#include "doveadm-print.h"
#include "doveadm-mail.h"
#include "mail-user.h"
#include "state.h"
#include "backfill-user.h"
#include "merge.h"
#include "dovecot-compat.h"
#include "doveadm-backfill.h"
#include "print-value.h"

#include "wildcard-match.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>

#define RUN_SLICE_MS           200
#define RUN_RATE_SLICE_MS      20
#define RUN_RATE_CATCHUP_MS    100 /* see run_pace_wait() */
#define RUN_PROGRESS_TTY_MSECS 500
#define RUN_PROGRESS_LOG_SECS  10

struct run_result {
	/* done, busy, postponed, failed, interrupted, no-archive */
	const char *result;
	uint64_t archived, added, duplicates, skipped, uidl_collisions;
	uint64_t processed; /* in this run */
	double secs;
	const char *error;
};

struct run_worker {
	pid_t pid;
	int fd;
	const char *user;
	string_t *buf;      /* what the worker wrote, lines not yet used */
	uint64_t processed; /* messages it merged so far */
	bool eof;
};

struct run_cmd_context {
	struct doveadm_mail_cmd_context ctx;
	unsigned int parallel;
	uint64_t rate;
	bool tty;
	/* a -p worker's pipe to the parent; -1 in the process doveadm
	   started (cmd_run_alloc), which shows progress itself */
	int progress_fd;

	ARRAY(struct run_worker) workers;
	struct timeval started;
	uint64_t users, done, busy, failed, processed;
	uint64_t last_log;

	/* the users doveadm walks, read in full at the first one */
	int (*next_user)(struct doveadm_mail_cmd_context *ctx,
	                 const char **username_r);
	ARRAY_TYPE(const_string) user_list;
	unsigned int user_idx;
	bool user_list_read;
};

static uint64_t msecs_since(const struct timeval *tv)
{
	struct timeval now;

	i_gettimeofday(&now);
	return (uint64_t)(timeval_diff_usecs(&now, tv) / 1000);
}

static void run_result_record(struct run_result *res, struct bf_state *state,
                              const char *username)
{
	struct bf_merge_record rec;
	const char *error;

	if (bf_state_merge_get(state, username, &rec, &error) <= 0)
		return;
	res->archived = rec.archived;
	res->added = rec.added;
	res->duplicates = rec.duplicates;
	res->skipped = rec.skipped;
	res->uidl_collisions = rec.uidl_collisions;
	if (rec.last_error != NULL && res->error == NULL &&
	    strcmp(res->result, "failed") == 0)
		res->error = t_strdup(rec.last_error);
	bf_merge_record_clear(&rec);
}

/* total: messages in the archive (0: unknown); done: decided so far,
   earlier sessions included; processed: in this run. */
static void run_progress_user(struct run_cmd_context *ctx, const char *username,
                              uint64_t total, uint64_t done, uint64_t processed,
                              uint64_t elapsed_ms, bool final)
{
	double rate = elapsed_ms == 0 ? 0 : processed * 1000.0 / elapsed_ms;
	const char *eta = "", *of = "";

	if (total > 0)
		of = t_strdup_printf("/%" PRIu64, total);
	if (!final && total > done && rate > 0) {
		eta = t_strdup_printf(", ETA %.0f s",
		                      (double)(total - done) / rate);
	}
	fprintf(stderr,
	        "%sbackfill run: %s: %" PRIu64 "%s messages, %.0f msg/s%s%s%s",
	        ctx->tty ? "\r" : "",
	        backfill_value_escape(username, BACKFILL_ESCAPE_TEXT), done, of,
	        rate, eta, final ? ", finished" : "",
	        ctx->tty && !final ? "   " : "\n");
	fflush(stderr);
}

/* --rate paces the messages merged since the merge began, not since the
   command started: opening the archive and the mailbox can take seconds on
   a loaded server, and counting them would let the first batch burst at
   full speed, which is what --rate is there to prevent.  For the same
   reason a stall (a slow store, a long commit) is not made up for later:
   a run more than RUN_RATE_CATCHUP_MS behind starts its pace again. */
struct run_pace {
	struct timeval since;
	uint64_t first;
};

static void run_pace_start(struct run_pace *pace, uint64_t archived)
{
	i_gettimeofday(&pace->since);
	pace->first = archived;
}

static void run_pace_wait(struct run_pace *pace, uint64_t archived,
                          unsigned int rate)
{
	uint64_t elapsed = msecs_since(&pace->since);
	uint64_t due_ms = (archived - pace->first) * 1000 / rate;

	if (due_ms > elapsed)
		usleep((due_ms - elapsed) * 1000);
	else if (elapsed - due_ms > RUN_RATE_CATCHUP_MS)
		run_pace_start(pace, archived);
}

/* Merges one user in this process. */
static void run_user_merge(struct run_cmd_context *ctx,
                           struct backfill_user *buser, unsigned int rate,
                           bool progress, struct run_result *res)
{
	struct mail_user *user = buser->user;
	struct backfill_merge *merge;
	struct backfill_merge_counts counts;
	struct bf_state *state;
	struct run_pace pace;
	struct timeval started;
	const char *error, *reason;
	uint64_t first = 0, last_progress = 0, elapsed, total = 0;
	int ret;

	i_gettimeofday(&started);
	if ((ret = doveadm_backfill_archive(buser, &error)) <= 0) {
		res->result = ret < 0 ? "failed" : "no-archive";
		res->error = ret < 0 ? error : NULL;
		return;
	}
	if (doveadm_backfill_state(buser, &state, NULL, &error) < 0) {
		/* the store's error says what to fix; a retry may succeed */
		res->result = "postponed";
		res->error = error;
		return;
	}
	/* the ETA's total costs opening the archive once more: only for a
	   human watching */
	if (progress && ctx->tty &&
	    doveadm_backfill_archive_count(buser, &total, &error) < 0)
		total = 0; /* only the ETA is lost */
	io_loop_time_refresh();
	ret = backfill_merge_begin(user, &buser->set, state, &merge, &reason);
	if (ret == BACKFILL_MERGE_STORE_ERROR) {
		/* the summary line says "merge postponed" itself */
		if (backfill_str_begins(reason, "merge postponed: "))
			reason += strlen("merge postponed: ");
		res->result = "postponed";
		res->error = reason;
		return;
	}
	if (ret < 0) {
		res->error = reason;
		run_result_record(res, state, user->username);
		return;
	}
	if (ret == 0) {
		/* reason NULL: nothing to do (done already) */
		res->result = reason == NULL ? "done" : "busy";
		res->error = reason;
		run_result_record(res, state, user->username);
		return;
	}
	backfill_merge_get_counts(merge, &counts);
	first = counts.archived;
	run_pace_start(&pace, first);
	for (;;) {
		ret = backfill_merge_run(merge, rate > 0 ? RUN_RATE_SLICE_MS
		                                         : RUN_SLICE_MS);
		io_loop_time_refresh();
		if (ret != 0)
			break;
		if (doveadm_is_killed()) {
			res->result = "interrupted";
			res->error =
			        "stopped by a signal; the next run or login resumes it";
			break;
		}
		backfill_merge_get_counts(merge, &counts);
		elapsed = msecs_since(&started);
		if (rate > 0)
			run_pace_wait(&pace, counts.archived, rate);
		if (ctx->progress_fd != -1 &&
		    elapsed - last_progress >= RUN_PROGRESS_TTY_MSECS) {
			/* the parent shows it; a full pipe only delays it */
			const char *line = t_strdup_printf(
			        "p\t%" PRIu64 "\n", counts.archived - first);
			last_progress = elapsed;
			if (write(ctx->progress_fd, line, strlen(line)) < 0)
				i_error("write(progress pipe) failed: %m");
		}
		if (progress &&
		    elapsed - last_progress >=
		            (ctx->tty ? RUN_PROGRESS_TTY_MSECS
		                      : RUN_PROGRESS_LOG_SECS * 1000)) {
			last_progress = elapsed;
			run_progress_user(
			        ctx, user->username, total, counts.archived,
			        counts.archived - first, elapsed, FALSE);
		}
	}
	backfill_merge_get_counts(merge, &counts);
	backfill_merge_end(&merge);
	res->processed = counts.archived - first;
	res->secs = msecs_since(&started) / 1000.0;
	if (ret > 0)
		res->result = "done";
	if (progress && res->processed > 0) {
		run_progress_user(ctx, user->username, total, counts.archived,
		                  res->processed, msecs_since(&started), TRUE);
	}
	/* a merge that stopped on an error recorded the line it logged */
	run_result_record(res, state, user->username);
	if (ret < 0 && res->error == NULL)
		res->error = "merge stopped on an error (see the log)";
}

/* The user's log line for a result that is not plain success, from the
   process that merged (a worker's user is gone when its row is printed). */
static struct event *run_outcome_event(struct event *event, const char *name,
                                       const char *reason)
{
	return event_create_passthrough(event)
	        ->set_name(name)
	        ->add_str("reason", reason == NULL ? "" : reason)
	        ->add_str("service", "doveadm")
	        ->event();
}

static void run_result_log(struct event *event, const struct run_result *res)
{
	if (strcmp(res->result, "failed") == 0 ||
	    strcmp(res->result, "interrupted") == 0) {
		e_error(run_outcome_event(event, "backfill_merge_failed",
		                          res->error),
		        "%s: %s", res->result,
		        res->error == NULL ? "" : res->error);
	} else if (strcmp(res->result, "busy") == 0) {
		e_info(run_outcome_event(event, "backfill_merge_skipped",
		                         res->error),
		       "skipped: %s", res->error);
	} else if (strcmp(res->result, "postponed") == 0) {
		e_error(run_outcome_event(event, "backfill_merge_postponed",
		                          res->error),
		        "merge postponed: %s (run again once the state store answers)",
		        res->error);
	}
}

static void run_user(struct run_cmd_context *ctx, struct mail_user *user,
                     unsigned int rate, bool progress, struct run_result *res)
{
	struct backfill_user *buser;
	const char *error;

	i_zero(res);
	res->result = "failed";
	if ((buser = doveadm_backfill_user(user, &error)) == NULL) {
		res->error = error;
		return;
	}
	run_user_merge(ctx, buser, rate, progress, res);
	run_result_log(buser->event, res);
}

static void run_print(struct run_cmd_context *ctx, const char *username,
                      const struct run_result *res)
{
	/* With -p a row is printed when its worker finishes, while doveadm
	   has moved on: its own username column must name this row's user. */
	doveadm_backfill_print_user(&ctx->ctx, username);
	doveadm_print(res->result);
	doveadm_backfill_print_num(res->archived);
	doveadm_backfill_print_num(res->added);
	doveadm_backfill_print_num(res->duplicates);
	doveadm_backfill_print_num(res->skipped);
	doveadm_backfill_print_num(res->uidl_collisions);
	doveadm_print(t_strdup_printf("%.3f", res->secs));
	doveadm_backfill_print_text(res->error);

	ctx->users++;
	ctx->processed += res->processed;
	if (strcmp(res->result, "failed") == 0 ||
	    strcmp(res->result, "interrupted") == 0) {
		ctx->failed++;
		doveadm_backfill_outcome(&ctx->ctx, DOVEADM_BACKFILL_FAILED);
	} else if (strcmp(res->result, "busy") == 0) {
		ctx->busy++;
		doveadm_backfill_outcome(&ctx->ctx, DOVEADM_BACKFILL_TEMPFAIL);
	} else if (strcmp(res->result, "postponed") == 0) {
		ctx->busy++;
		doveadm_backfill_outcome(&ctx->ctx, DOVEADM_BACKFILL_TEMPFAIL);
	} else {
		ctx->done++;
	}
}

static uint64_t run_in_flight(struct run_cmd_context *ctx)
{
	const struct run_worker *w;
	uint64_t n = 0;

	if (!array_is_created(&ctx->workers))
		return 0;
	array_foreach(&ctx->workers, w) n += w->processed;
	return n;
}

static void run_progress_total(struct run_cmd_context *ctx, bool final)
{
	uint64_t ms = msecs_since(&ctx->started);
	uint64_t msgs = ctx->processed + (final ? 0 : run_in_flight(ctx));
	uint64_t total = array_is_created(&ctx->user_list)
	                         ? array_count(&ctx->user_list)
	                         : 0;
	double rate = ms == 0 ? 0 : msgs * 1000.0 / ms;
	const char *users, *eta = "", *running = "";

	if (!final &&
	    ms - ctx->last_log < (ctx->tty ? RUN_PROGRESS_TTY_MSECS
	                                   : RUN_PROGRESS_LOG_SECS * 1000))
		return;
	ctx->last_log = ms;
	if (final || total == 0)
		users = t_strdup_printf("%" PRIu64 " users", ctx->users);
	else
		users = t_strdup_printf("%" PRIu64 " of %" PRIu64 " users",
		                        ctx->users, total);
	if (!final && array_is_created(&ctx->workers) &&
	    array_count(&ctx->workers) > 0)
		running = t_strdup_printf(", %u running",
		                          array_count(&ctx->workers));
	/* by users: merges differ in size, but over thousands of users the
	   pace of the users done so far is the best guess there is */
	if (!final && total > ctx->users && ctx->users > 0) {
		eta = t_strdup_printf(", ETA %.0f s",
		                      ms / 1000.0 / ctx->users *
		                              (total - ctx->users));
	}
	fprintf(stderr,
	        "%sbackfill run: %s (%" PRIu64 " done, %" PRIu64
	        " busy, %" PRIu64 " failed)%s, %" PRIu64
	        " messages, %.0f msg/s, %.1f s%s%s",
	        ctx->tty ? "\r" : "", users, ctx->done, ctx->busy, ctx->failed,
	        running, msgs, rate, ms / 1000.0, eta,
	        ctx->tty && !final ? "   " : "\n");
	fflush(stderr);
}

/* doveadm's own get_next_user, drained into a list at the first call:
   the progress line can then say how many users there are in all.  A
   wildcard (-u 'pattern*') is counted as doveadm will filter it. */
static int cmd_run_get_next_user(struct doveadm_mail_cmd_context *_ctx,
                                 const char **username_r)
{
	struct run_cmd_context *ctx = (struct run_cmd_context *)_ctx;
	const char *const *users, *user, *mask = NULL;
	unsigned int count;
	int ret;

	if (!ctx->user_list_read) {
		ctx->user_list_read = TRUE;
		if (_ctx->cctx != NULL && _ctx->cctx->username != NULL &&
		    strpbrk(_ctx->cctx->username, "*?") != NULL)
			mask = t_strdup(_ctx->cctx->username);
		p_array_init(&ctx->user_list, _ctx->pool, 128);
		while ((ret = ctx->next_user(_ctx, &user)) > 0) {
			if (mask != NULL && !wildcard_match_icase(user, mask))
				continue;
			user = p_strdup(_ctx->pool, user);
			array_push_back(&ctx->user_list, &user);
		}
		if (ret < 0)
			return ret;
	}
	users = array_get(&ctx->user_list, &count);
	if (ctx->user_idx >= count)
		return 0;
	*username_r = users[ctx->user_idx++];
	return 1;
}

/* ---- parallel workers ---- */

static const char *result_serialize(const struct run_result *res)
{
	string_t *str = t_str_new(256);

	str_printfa(str,
	            "%s\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
	            "\t%" PRIu64 "\t%" PRIu64 "\t%.3f\t",
	            res->result, res->archived, res->added, res->duplicates,
	            res->skipped, res->uidl_collisions, res->processed,
	            res->secs);
	if (res->error != NULL) {
		for (const char *p = res->error; *p != '\0'; p++)
			str_append_c(str, *p == '\n' || *p == '\t' ? ' ' : *p);
	}
	str_append_c(str, '\n');
	return str_c(str);
}

static bool result_parse(const char *line, struct run_result *res)
{
	const char *const *f = t_strsplit(line, "\t");

	i_zero(res);
	if (str_array_length(f) < 9)
		return FALSE;
	res->result = f[0];
	if (str_to_uint64(f[1], &res->archived) < 0 ||
	    str_to_uint64(f[2], &res->added) < 0 ||
	    str_to_uint64(f[3], &res->duplicates) < 0 ||
	    str_to_uint64(f[4], &res->skipped) < 0 ||
	    str_to_uint64(f[5], &res->uidl_collisions) < 0 ||
	    str_to_uint64(f[6], &res->processed) < 0)
		return FALSE;
	res->secs = strtod(f[7], NULL);
	res->error = f[8][0] == '\0' ? NULL : t_strcut(f[8], '\n');
	return TRUE;
}

/* A worker writes "p\tN" lines (N: messages merged so far) while it
   merges, then its result line: use the first kind, keep the rest. */
static void worker_progress_lines(struct run_worker *w)
{
	const char *data, *nl;
	uint64_t n;

	while (str_len(w->buf) >= 2 && str_data(w->buf)[0] == 'p' &&
	       str_data(w->buf)[1] == '\t' &&
	       (nl = memchr(str_data(w->buf), '\n', str_len(w->buf))) != NULL) {
		data = t_strdup_until(str_c(w->buf) + 2, nl);
		if (str_to_uint64(data, &n) == 0)
			w->processed = n;
		str_delete(w->buf, 0, nl - str_c(w->buf) + 1);
	}
}

static void worker_collect(struct run_cmd_context *ctx, unsigned int idx,
                           int status)
{
	struct run_worker *w = array_idx_modifiable(&ctx->workers, idx);
	struct run_result res;
	const char *user;
	char tmp[512];
	ssize_t n;

	while ((n = read(w->fd, tmp, sizeof(tmp))) > 0)
		str_append_data(w->buf, tmp, n);
	i_close_fd(&w->fd);
	worker_progress_lines(w);
	if (!result_parse(t_strdup(str_c(w->buf)), &res)) {
		i_zero(&res);
		res.result = "failed";
		res.error = t_strdup_printf(
		        "merge process died (%s)",
		        WIFSIGNALED(status)
		                ? t_strdup_printf("signal %d", WTERMSIG(status))
		                : t_strdup_printf("exit %d",
		                                  WEXITSTATUS(status)));
	}
	user = w->user;
	str_free(&w->buf);
	array_delete(&ctx->workers, idx, 1);
	run_print(ctx, user, &res);
	run_progress_total(ctx, FALSE);
}

static void worker_reap(struct run_cmd_context *ctx, unsigned int idx)
{
	const struct run_worker *w = array_idx(&ctx->workers, idx);
	pid_t pid = w->pid;
	int status = 0;

	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			i_error("waitpid(%ld) failed: %m", (long)pid);
			break;
		}
	}
	T_BEGIN
		worker_collect(ctx, idx, status);
	T_END;
}

/* Waits for one worker to finish, writing the progress line meanwhile.  A
   worker is done when its pipe reaches EOF (it exits right after). */
static void workers_wait_one(struct run_cmd_context *ctx)
{
	struct pollfd pfd[1024]; /* --parallel is at most 1024 */
	struct run_worker *w;
	unsigned int i, count;
	char tmp[512];
	ssize_t n;

	for (;;) {
		w = array_get_modifiable(&ctx->workers, &count);
		i_assert(count <= N_ELEMENTS(pfd));
		for (i = 0; i < count; i++) {
			pfd[i].fd = w[i].fd;
			pfd[i].events = POLLIN;
		}
		if (poll(pfd, count, ctx->tty ? RUN_PROGRESS_TTY_MSECS : 1000) <
		    0) {
			if (errno == EINTR)
				continue;
			i_error("poll() failed: %m");
			worker_reap(ctx, 0);
			return;
		}
		for (i = 0; i < count; i++) {
			if (pfd[i].revents == 0)
				continue;
			n = read(w[i].fd, tmp, sizeof(tmp));
			if (n > 0) {
				str_append_data(w[i].buf, tmp, n);
				T_BEGIN
					worker_progress_lines(&w[i]);
				T_END;
			} else if (n == 0 || errno != EINTR) {
				worker_reap(ctx, i);
				return;
			}
		}
		T_BEGIN
			run_progress_total(ctx, FALSE);
		T_END;
	}
}

static int run_fork(struct run_cmd_context *ctx, struct mail_user *user)
{
	struct backfill_user *buser = BACKFILL_USER_CONTEXT(user);
	struct run_worker *w;
	struct run_result res;
	int fds[2];
	pid_t pid;

	while (array_count(&ctx->workers) >= ctx->parallel)
		workers_wait_one(ctx);
	if (pipe(fds) < 0)
		i_fatal("pipe() failed: %m");
	/* the child must open its own state-store handle */
	if (buser != NULL && buser->state != NULL)
		bf_state_close(&buser->state);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		i_fatal("fork() failed: %m");
	if (pid == 0) {
		i_close_fd(&fds[0]);
		ctx->progress_fd = fds[1];
		run_user(ctx, user,
		         ctx->rate == 0 ? 0
		                        : (unsigned int)I_MAX(
		                                  1, ctx->rate / ctx->parallel),
		         FALSE, &res);
		const char *line = result_serialize(&res);
		if (write(fds[1], line, strlen(line)) < 0)
			i_error("write(result pipe) failed: %m");
		if (buser != NULL && buser->state != NULL)
			bf_state_close(&buser->state);
		/* no atexit handlers: doveadm's buffered output and the
		   mail user belong to the parent */
		_exit(0);
	}
	i_close_fd(&fds[1]);
	w = array_append_space(&ctx->workers);
	w->pid = pid;
	w->fd = fds[0];
	w->user = p_strdup(ctx->ctx.pool, user->username);
	w->buf = str_new(default_pool, 256);
	return 0;
}

static int cmd_run_run(struct doveadm_mail_cmd_context *_ctx,
                       struct mail_user *user)
{
	struct run_cmd_context *ctx = (struct run_cmd_context *)_ctx;
	struct run_result res;

	if (ctx->parallel > 1)
		return run_fork(ctx, user);
	run_user(ctx, user, (unsigned int)ctx->rate, TRUE, &res);
	run_print(ctx, user->username, &res);
	run_progress_total(ctx, FALSE);
	return 0;
}

static void cmd_run_init(DOVEADM_BACKFILL_INIT_ARGS)
{
	struct run_cmd_context *ctx = (struct run_cmd_context *)_ctx;
	enum doveadm_print_header_flags num =
	        DOVEADM_PRINT_HEADER_FLAG_RIGHT_JUSTIFY;
	int64_t value;

	if (doveadm_cmd_param_int64(_ctx->cctx, "parallel", &value)) {
		if (value <= 0 || value > 1024) {
			i_fatal_status(EX_USAGE,
			               "backfill run: --parallel %" PRId64
			               ": expected 1..1024",
			               value);
		}
		ctx->parallel = (unsigned int)value;
	}
	if (doveadm_cmd_param_int64(_ctx->cctx, "rate", &value)) {
		if (value < 0) {
			i_fatal_status(EX_USAGE,
			               "backfill run: --rate %" PRId64
			               ": expected messages per second "
			               "(0 = no limit)",
			               value);
		}
		ctx->rate = (uint64_t)value;
	}
	ctx->tty = isatty(STDERR_FILENO) != 0;
	i_gettimeofday(&ctx->started);
	if (!_ctx->iterate_single_user && _ctx->v.get_next_user != NULL) {
		ctx->next_user = _ctx->v.get_next_user;
		_ctx->v.get_next_user = cmd_run_get_next_user;
	}
	p_array_init(&ctx->workers, _ctx->pool, 8);
	doveadm_backfill_header_user(_ctx);
	doveadm_print_header("result", "Result", 0);
	doveadm_print_header("archived", "Archived", num);
	doveadm_print_header("added", "Added", num);
	doveadm_print_header("duplicates", "Duplicates", num);
	doveadm_print_header("skipped", "Skipped", num);
	doveadm_print_header("uidl_collisions", "UIDLCollisions", num);
	doveadm_print_header("seconds", "Seconds", num);
	doveadm_print_header("error", "Error", 0);
}

static void cmd_run_deinit(struct doveadm_mail_cmd_context *_ctx)
{
	struct run_cmd_context *ctx = (struct run_cmd_context *)_ctx;

	if (!array_is_created(&ctx->workers))
		return;
	while (array_count(&ctx->workers) > 0)
		workers_wait_one(ctx);
	if (ctx->users > 0)
		run_progress_total(ctx, TRUE);
}

static struct doveadm_mail_cmd_context *cmd_run_alloc(void)
{
	struct run_cmd_context *ctx;

	ctx = doveadm_mail_cmd_alloc(struct run_cmd_context);
	ctx->parallel = 1;
	/* the allocation is zeroed, and 0 is stdin: without -p every merge
	   longer than RUN_PROGRESS_TTY_MSECS wrote the workers' "p\tN"
	   lines there (a terminal showed them, a read-only or closed stdin
	   logged "write(progress pipe) failed: Bad file descriptor") */
	ctx->progress_fd = -1;
	doveadm_backfill_options(&ctx->ctx, "p:r:");
	ctx->ctx.v.init = cmd_run_init;
	ctx->ctx.v.run = cmd_run_run;
	ctx->ctx.v.deinit = cmd_run_deinit;
	doveadm_print_init(DOVEADM_PRINT_TYPE_TABLE);
	return &ctx->ctx;
}

struct doveadm_cmd_ver2 doveadm_cmd_backfill_run = {
        .name = "backfill run",
        .usage = DOVEADM_CMD_MAIL_USAGE_PREFIX
        "[-p|--parallel <n>] [-r|--rate <msgs_per_s>]",
        .mail_cmd = cmd_run_alloc,
        DOVEADM_CMD_PARAMS_START DOVEADM_CMD_MAIL_COMMON DOVEADM_CMD_PARAM(
                'p', "parallel", CMD_PARAM_INT64, 0)
                DOVEADM_CMD_PARAM('r', "rate", CMD_PARAM_INT64, 0)
                        DOVEADM_CMD_PARAMS_END};
