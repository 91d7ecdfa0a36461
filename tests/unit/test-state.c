/* The contract of the state store, the same on every backend: every
   operation, concurrency between processes and threads (the real
   deployment: one handle per IMAP process, one per milter thread), lease
   takeover after SIGKILL, the slot limit under contention, and the errors
   operators see.  Each test runs twice, on SQLite and on Redis against a
   real redis-server that each test starts itself on a unix socket in its
   temp dir and stops by PID; each in its own temp dir.  The backends' own
   tests are in test-state-sqlite.c and test-state-redis.c. */

#include "test-state.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int setup(void **statep)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	if (bf_fixture_mkdtemp("/tmp", "test-state", f->dir, sizeof(f->dir)) <
	    0) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
	snprintf(f->uri, sizeof(f->uri), "sqlite:%s", f->path);
	*statep = f;
	return 0;
}

int teardown(void **statep)
{
	struct fixture *f = *statep;

#ifdef BF_HAVE_REDIS
	bf_fixture_redis_stop(&f->redis);
#endif
	bf_fixture_rmtree(f->dir);
	free(f);
	return 0;
}

struct bf_state *open_ok(const char *uri)
{
	struct bf_state *state = NULL;
	char *error = NULL;

	if (bf_state_open(uri, &state, &error) < 0) {
		print_error("bf_state_open(%s): %s\n", uri, error);
		free(error);
		fail();
	}
	assert_non_null(state);
	return state;
}

/* Opens uri expecting failure; returns the malloc()ed error. */
char *open_error(const char *uri)
{
	struct bf_state *state = NULL;
	char *error = NULL;

	assert_int_equal(bf_state_open(uri, &state, &error), -1);
	assert_null(state);
	assert_non_null(error);
	return error;
}

void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL) {
		print_error("\"%s\" does not contain \"%s\"\n", haystack,
		            needle);
		fail();
	}
}

void make_key(struct bf_dedup_key *key, const char *window, const char *rcpt,
              unsigned int n)
{
	memset(key, 0, sizeof(*key));
	key->window = window;
	key->recipient = rcpt;
	memcpy(key->fingerprint, &n, sizeof(n));
	key->fingerprint[BF_FP_SIZE - 1] = 0xa5;
}

int check_and_set(struct bf_state *state, const struct bf_dedup_key *key,
                  time_t now, unsigned int ttl, const char **error_r)
{
	return bf_state_dedup_check_and_set(state, key, now, ttl, "mx", "Q",
	                                    NULL, error_r);
}

/* A forked child's own handle on the store at uri: the child exits 1
   (saying why) when it cannot open it. */
static struct bf_state *child_open(const char *uri)
{
	struct bf_state *s = NULL;
	char *error = NULL;

	if (bf_state_open(uri, &s, &error) < 0) {
		fprintf(stderr, "child: %s\n", error);
		_exit(1);
	}
	return s;
}

/* Processes starting at once on a store nobody created yet (the first
   logins after the plugin is enabled): all of them get a working store. */
static void test_open_concurrent_create(void **statep)
{
	struct fixture *f = *statep;
	pid_t pids[8];
	int go[2];
	unsigned int i;

	assert_int_equal(pipe(go), 0);
	for (i = 0; i < 8; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			struct bf_state *s;
			struct bf_dedup_key key;
			const char *cerror;
			char c;

			close(go[1]);
			(void)read(go[0], &c, 1);
			s = child_open(f->uri);
			make_key(&key, "w", "a@example.org", i);
			if (check_and_set(s, &key, NOW, 60, &cerror) != 1) {
				fprintf(stderr, "child: %s\n", cerror);
				_exit(1);
			}
			bf_state_close(&s);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]);
	/* All of them, before any assertion can end the test. */
	assert_int_equal(bf_fixture_wait_children(pids, 8), 0);
}

/* ---- merge records and journal ---- */

static void test_merge_status_names(void **statep)
{
	(void)statep;
	assert_string_equal(bf_merge_status_name(BF_MERGE_PENDING), "pending");
	assert_string_equal(bf_merge_status_name(BF_MERGE_FAILED), "failed");
	assert_int_equal(bf_merge_status_parse("running"), BF_MERGE_RUNNING);
	assert_int_equal(bf_merge_status_parse("done"), BF_MERGE_DONE);
	assert_int_equal(bf_merge_status_parse("bogus"), -1);
	assert_int_equal(bf_merge_status_parse(NULL), -1);
}

struct merge_iter_ctx {
	unsigned int count;
	char last[64];
	unsigned int stop_at;
};

static int merge_iter_cb(const char *user, const struct bf_merge_record *rec,
                         void *context)
{
	struct merge_iter_ctx *ctx = context;

	/* Ordered by name, each once. */
	if (ctx->count > 0 && strcmp(ctx->last, user) >= 0)
		return -100;
	snprintf(ctx->last, sizeof(ctx->last), "%s", user);
	if (rec->archived != (uint64_t)atoi(user + 4))
		return -101;
	ctx->count++;
	return ctx->count == ctx->stop_at ? 42 : 0;
}

static void test_merge_records(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_merge_record rec, got;
	struct merge_iter_ctx ctx;
	const char *error;
	char user[32];
	unsigned int i;

	assert_int_equal(bf_state_merge_get(state, "alice", &got, &error), 0);
	assert_null(got.cursor);

	memset(&rec, 0, sizeof(rec));
	rec.status = BF_MERGE_RUNNING;
	rec.cursor = "INBOX:1234";
	rec.archived = 5000000000ULL;
	rec.added = 2;
	rec.duplicates = 3;
	rec.skipped = 4;
	rec.uidl_collisions = 5;
	rec.started = NOW;
	rec.updated = NOW + 1;
	assert_int_equal(bf_state_merge_put(state, "alice", &rec, &error), 0);
	assert_int_equal(bf_state_merge_get(state, "alice", &got, &error), 1);
	assert_int_equal(got.status, BF_MERGE_RUNNING);
	assert_string_equal(got.cursor, "INBOX:1234");
	assert_true(got.archived == 5000000000ULL);
	assert_int_equal(got.added, 2);
	assert_int_equal(got.duplicates, 3);
	assert_int_equal(got.skipped, 4);
	assert_int_equal(got.uidl_collisions, 5);
	assert_int_equal(got.started, NOW);
	assert_int_equal(got.finished, 0);
	assert_int_equal(got.updated, NOW + 1);
	assert_null(got.last_error);
	bf_merge_record_clear(&got);

	/* Replace. */
	rec.status = BF_MERGE_FAILED;
	rec.cursor = NULL;
	rec.finished = NOW + 2;
	rec.last_error = "archive unreadable: Permission denied";
	assert_int_equal(bf_state_merge_put(state, "alice", &rec, &error), 0);
	assert_int_equal(bf_state_merge_get(state, "alice", &got, &error), 1);
	assert_int_equal(got.status, BF_MERGE_FAILED);
	assert_null(got.cursor);
	assert_int_equal(got.finished, NOW + 2);
	assert_string_equal(got.last_error,
	                    "archive unreadable: Permission denied");
	bf_merge_record_clear(&got);

	/* Bad arguments are errors, not crashes. */
	rec.status = (enum bf_merge_status)17;
	assert_int_equal(bf_state_merge_put(state, "alice", &rec, &error), -1);
	assert_contains(error, "invalid argument");
	assert_int_equal(bf_state_merge_put(state, "", &rec, &error), -1);

	/* Iteration over more users than one page, in name order. */
	assert_int_equal(bf_state_merge_delete(state, "alice", &error), 0);
	memset(&rec, 0, sizeof(rec));
	for (i = 0; i < 700; i++) {
		/* Inserted out of order. */
		unsigned int n = (i * 337) % 700;

		snprintf(user, sizeof(user), "user%04u", n);
		rec.archived = n;
		assert_int_equal(bf_state_merge_put(state, user, &rec, &error),
		                 0);
	}
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(
	        bf_state_merge_iter(state, merge_iter_cb, &ctx, &error), 0);
	assert_int_equal(ctx.count, 700);
	memset(&ctx, 0, sizeof(ctx));
	ctx.stop_at = 300;
	assert_int_equal(
	        bf_state_merge_iter(state, merge_iter_cb, &ctx, &error), 42);
	assert_int_equal(ctx.count, 300);
	assert_string_equal(ctx.last, "user0299");
	bf_state_close(&state);
}

void make_entry(struct bf_journal_entry *e, unsigned int n)
{
	memset(e, 0, sizeof(*e));
	e->mailbox = n % 2 == 0 ? "INBOX" : "Sent";
	e->mailbox_guid = n % 2 == 0 ? "00112233445566778899aabbccddeeff"
	                             : "ffeeddccbbaa99887766554433221100";
	e->uid = n % 3 == 0 ? 0 : n + 1000;
	e->archive_mailbox = e->mailbox;
	e->archive_uid = n + 1;
	memcpy(e->fingerprint, &n, sizeof(n));
}

int damaged_iter_cb(const char *user, const struct bf_merge_record *rec,
                    void *context)
{
	struct damaged_iter_ctx *ctx = context;

	(void)user;
	ctx->count++;
	ctx->archived_sum += rec->archived;
	if (rec->status == BF_MERGE_FAILED)
		ctx->failed++;
	return 0;
}

void damaged_window_replaced(struct bf_state *state)
{
	struct bf_window w;
	const char *error;

	assert_int_equal(bf_state_window_open_full(state, "w2", NOW + 2, 0,
	                                           BF_WINDOW_OPEN_EXCLUSIVE, &w,
	                                           &error),
	                 -1);
	assert_contains(error, "damaged window");
	assert_int_equal(bf_state_window_open_full(state, "w2", NOW + 2, 0,
	                                           BF_WINDOW_OPEN_REPLACE, &w,
	                                           &error),
	                 1);
	assert_null(w.name);
	assert_int_equal(bf_state_window_current(state, NOW + 3, &w, &error),
	                 1);
	assert_string_equal(w.name, "w2");
	bf_window_clear(&w);
}

void checkpoint_not_half_done(struct bf_state *state, const char *where,
                              const char *why)
{
	struct bf_journal_entry entries[3];
	struct journal_iter_ctx ctx;
	struct bf_merge_record rec, got;
	const char *error;
	unsigned int i;

	for (i = 0; i < 3; i++)
		make_entry(&entries[i], i);
	memset(&rec, 0, sizeof(rec));
	rec.status = BF_MERGE_RUNNING;
	assert_int_equal(bf_state_merge_checkpoint(state, "erin", &rec, entries,
	                                           3, &error),
	                 -1);
	assert_contains(error, where);
	assert_contains(error, why);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(bf_state_journal_iter(state, "erin", journal_iter_cb,
	                                       &ctx, &error),
	                 0);
	assert_int_equal(ctx.count, 0);
	/* The handle still works. */
	assert_int_equal(bf_state_merge_checkpoint(state, "frank", &rec,
	                                           entries, 3, &error),
	                 0);
	assert_int_equal(bf_state_journal_iter(state, "frank", journal_iter_cb,
	                                       &ctx, &error),
	                 0);
	assert_int_equal(ctx.count, 3);
	assert_int_equal(bf_state_merge_get(state, "frank", &got, &error), 1);
	bf_merge_record_clear(&got);
}

void damaged_window_name_refused(struct bf_state *state)
{
	struct bf_window w;
	const char *error;

	assert_int_equal(bf_state_window_current(state, NOW + 1, &w, &error),
	                 -1);
	assert_null(w.name);
	assert_contains(error, "damaged window");
	assert_contains(error, "--replace");
	assert_null(strchr(error, '\n'));
	assert_null(strstr(error, "Authentication-Results"));
	damaged_window_replaced(state);
}

int journal_iter_cb(const struct bf_journal_entry *entry, void *context)
{
	struct journal_iter_ctx *ctx = context;
	struct bf_journal_entry want;

	make_entry(&want, ctx->count);
	if (strcmp(entry->mailbox, want.mailbox) != 0 ||
	    strcmp(entry->mailbox_guid, want.mailbox_guid) != 0 ||
	    strcmp(entry->archive_mailbox, want.archive_mailbox) != 0 ||
	    entry->archive_uid != want.archive_uid ||
	    memcmp(entry->fingerprint, want.fingerprint, BF_FP_SIZE) != 0 ||
	    (entry->uid != want.uid && entry->archive_uid != 4))
		ctx->bad = true;
	ctx->count++;
	return 0;
}

static void test_journal(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_journal_entry entries[1100];
	struct journal_iter_ctx ctx;
	struct bf_merge_record rec, got;
	const char *error;
	unsigned int i;

	for (i = 0; i < 1100; i++)
		make_entry(&entries[i], i);
	/* In batches, with a checkpoint in the middle. */
	assert_int_equal(
	        bf_state_journal_append(state, "bob", entries, 400, &error), 0);
	memset(&rec, 0, sizeof(rec));
	rec.status = BF_MERGE_RUNNING;
	rec.cursor = "Sent:401";
	rec.added = 700;
	assert_int_equal(bf_state_merge_checkpoint(state, "bob", &rec,
	                                           entries + 400, 300, &error),
	                 0);
	assert_int_equal(bf_state_journal_append(state, "bob", entries + 700,
	                                         400, &error),
	                 0);
	assert_int_equal(bf_state_journal_append(state, "bob", NULL, 0, &error),
	                 0);
	/* Another user's journal is separate. */
	assert_int_equal(
	        bf_state_journal_append(state, "carol", entries, 5, &error), 0);
	assert_int_equal(bf_state_merge_get(state, "bob", &got, &error), 1);
	assert_string_equal(got.cursor, "Sent:401");
	bf_merge_record_clear(&got);

	/* Entry 3 (Sent, archive_uid 4) was saved with uid 0. */
	assert_int_equal(
	        bf_state_journal_set_uid(state, "bob", "Sent", 4, 777, &error),
	        1);
	/* Only entries still at uid 0 are set. */
	assert_int_equal(
	        bf_state_journal_set_uid(state, "bob", "Sent", 4, 778, &error),
	        0);
	assert_int_equal(
	        bf_state_journal_set_uid(state, "bob", "Sent", 5, 779, &error),
	        0);

	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(bf_state_journal_iter(state, "bob", journal_iter_cb,
	                                       &ctx, &error),
	                 0);
	assert_int_equal(ctx.count, 1100);
	assert_false(ctx.bad);

	/* Invalid entries are refused before anything is written. */
	entries[1].mailbox_guid = NULL;
	assert_int_equal(
	        bf_state_journal_append(state, "dave", entries, 2, &error), -1);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(bf_state_journal_iter(state, "dave", journal_iter_cb,
	                                       &ctx, &error),
	                 0);
	assert_int_equal(ctx.count, 0);
	make_entry(&entries[1], 1);

	assert_int_equal(bf_state_journal_delete(state, "bob", &error), 0);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(bf_state_journal_iter(state, "bob", journal_iter_cb,
	                                       &ctx, &error),
	                 0);
	assert_int_equal(ctx.count, 0);
	assert_int_equal(bf_state_merge_get(state, "bob", &got, &error), 1);
	bf_merge_record_clear(&got);

	/* merge_delete takes record and journal. */
	assert_int_equal(bf_state_merge_put(state, "carol", &rec, &error), 0);
	assert_int_equal(bf_state_merge_delete(state, "carol", &error), 0);
	assert_int_equal(bf_state_merge_get(state, "carol", &got, &error), 0);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(bf_state_journal_iter(state, "carol", journal_iter_cb,
	                                       &ctx, &error),
	                 0);
	assert_int_equal(ctx.count, 0);
	bf_state_close(&state);
}

/* ---- windows ---- */

static void test_windows(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_window w;
	const char *error;

	assert_int_equal(bf_state_window_current(state, NOW, &w, &error), 0);
	assert_null(w.name);
	assert_int_equal(bf_state_window_close(state, NOW, &error), 0);

	assert_int_equal(
	        bf_state_window_open(state, "restore-1", NOW, 0, &error), 0);
	assert_int_equal(
	        bf_state_window_current(state, NOW + 999999, &w, &error), 1);
	assert_string_equal(w.name, "restore-1");
	assert_int_equal(w.opened, NOW);
	assert_int_equal(w.until, 0);
	assert_int_equal(w.closed, 0);
	bf_window_clear(&w);

	/* Opening another closes the first. */
	assert_int_equal(bf_state_window_open(state, "restore-2", NOW + 10,
	                                      NOW + 100, &error),
	                 0);
	assert_int_equal(bf_state_window_current(state, NOW + 50, &w, &error),
	                 1);
	assert_string_equal(w.name, "restore-2");
	assert_int_equal(w.until, NOW + 100);
	bf_window_clear(&w);
	/* until is respected. */
	assert_int_equal(bf_state_window_current(state, NOW + 100, &w, &error),
	                 0);

	assert_int_equal(bf_state_window_close(state, NOW + 60, &error), 1);
	assert_int_equal(bf_state_window_current(state, NOW + 61, &w, &error),
	                 0);
	assert_int_equal(bf_state_window_close(state, NOW + 62, &error), 0);

	assert_int_equal(bf_state_window_open(state, "bad", NOW, NOW, &error),
	                 -1);
	assert_contains(error, "invalid argument");
	assert_int_equal(bf_state_window_open(state, "", NOW, 0, &error), -1);
	bf_state_close(&state);
}

/* Window names are short printable tokens (state.h): a space, CR, LF or
   control character in the X-Backfill-Window header or a dedup key breaks
   delivery confirmation silently.  Refused by the store, which then
   writes nothing. */
static void test_window_names(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_window w, prev;
	const char *error;
	char longest[BF_WINDOW_NAME_MAX + 2];
	static const char *const good[] = {
	        "r",
	        "restore-1",
	        "restore_2026-12-06",
	        "mx1.example:restore",
	        "A.B_C:D-9",
	};
	static const char *const bad[] = {
	        "restore 1",   "restore\r\nX-Evil: 1",
	        "restore\n",   "\trestore",
	        "re\x01store", "r\x7f",
	        "r\xc3\xa9",   "r/1",
	        "r;1",         "r%3A",
	        "r@x",         "r,1",
	        "\"r\"",       "r\\1",
	};
	size_t i;

	memset(longest, 'w', sizeof(longest));
	longest[BF_WINDOW_NAME_MAX] = '\0';
	assert_true(bf_window_name_valid(longest));
	longest[BF_WINDOW_NAME_MAX] = 'w';
	longest[BF_WINDOW_NAME_MAX + 1] = '\0';
	assert_false(bf_window_name_valid(longest));
	assert_false(bf_window_name_valid(""));
	assert_false(bf_window_name_valid(NULL));
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_true(bf_window_name_valid(good[i]));

	assert_int_equal(bf_state_window_open(state, longest, NOW, 0, &error),
	                 -1);
	assert_contains(error, "window name is not 1 to 64 characters");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(bf_window_name_valid(bad[i]));
		assert_int_equal(bf_state_window_open_full(
		                         state, bad[i], NOW, 0,
		                         BF_WINDOW_OPEN_REPLACE, &prev, &error),
		                 -1);
		assert_contains(error, "invalid argument: window name is not");
		assert_null(prev.name);
	}
	assert_int_equal(bf_state_window_current(state, NOW, &w, &error), 0);
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(bf_state_window_open(state, good[i], NOW + i,
		                                      0, &error),
		                 0);
		assert_int_equal(
		        bf_state_window_current(state, NOW + i, &w, &error), 1);
		assert_string_equal(w.name, good[i]);
		bf_window_clear(&w);
	}
	longest[BF_WINDOW_NAME_MAX] = '\0';
	assert_int_equal(
	        bf_state_window_open(state, longest, NOW + 10, 0, &error), 0);
	bf_state_close(&state);
}

/* Opens name at now with flags; returns the result and leaves the
   window in force before in *prev. */
static int window_open_full(struct bf_state *state, const char *name,
                            time_t now, time_t until,
                            enum bf_window_open_flags flags,
                            struct bf_window *prev)
{
	const char *error;
	int ret;

	ret = bf_state_window_open_full(state, name, now, until, flags, prev,
	                                &error);
	if (ret < 0)
		print_error("window open %s: %s\n", name, error);
	return ret;
}

static void assert_window(struct bf_state *state, time_t now, const char *name,
                          time_t opened, time_t until)
{
	struct bf_window w;
	const char *error;

	assert_int_equal(bf_state_window_current(state, now, &w, &error), 1);
	assert_string_equal(w.name, name);
	assert_int_equal(w.opened, opened);
	assert_int_equal(w.until, until);
	assert_int_equal(w.closed, 0);
	bf_window_clear(&w);
}

/* window_open_full() of name returns ret, and the window in force before
   it was prev_name (NULL: none). */
static void assert_window_open(struct bf_state *state, const char *name,
                               time_t now, time_t until,
                               enum bf_window_open_flags flags, int ret,
                               const char *prev_name)
{
	struct bf_window prev;

	assert_int_equal(
	        window_open_full(state, name, now, until, flags, &prev), ret);
	if (prev_name == NULL)
		assert_null(prev.name);
	else
		assert_string_equal(prev.name, prev_name);
	bf_window_clear(&prev);
}

/* backfillctl window open without --replace: the refusal of another
   window is part of the store's write and names the window in force;
   the same name moves its end and keeps its opened time. */
static void test_window_open_exclusive(void **statep)
{
	const enum bf_window_open_flags excl = BF_WINDOW_OPEN_EXCLUSIVE;
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_window prev;
	const char *error;

	/* nothing open: A opens */
	assert_window_open(state, "A", NOW, NOW + 1000, excl, 1, NULL);
	assert_window(state, NOW + 1, "A", NOW, NOW + 1000);

	/* A again: a new end, the same opened time */
	assert_int_equal(
	        window_open_full(state, "A", NOW + 10, NOW + 2000, excl, &prev),
	        1);
	assert_string_equal(prev.name, "A");
	assert_int_equal(prev.opened, NOW);
	assert_int_equal(prev.until, NOW + 1000);
	bf_window_clear(&prev);
	assert_window(state, NOW + 1500, "A", NOW, NOW + 2000);
	/* ... and with the same end, nothing changes */
	assert_int_equal(
	        window_open_full(state, "A", NOW + 20, NOW + 2000, excl, &prev),
	        1);
	assert_int_equal(prev.until, NOW + 2000);
	bf_window_clear(&prev);
	assert_window(state, NOW + 21, "A", NOW, NOW + 2000);

	/* B is refused with A's name; A stays as it was */
	assert_int_equal(window_open_full(state, "B", NOW + 30, 0, excl, &prev),
	                 0);
	assert_string_equal(prev.name, "A");
	assert_int_equal(prev.opened, NOW);
	assert_int_equal(prev.until, NOW + 2000);
	assert_int_equal(prev.closed, 0);
	bf_window_clear(&prev);
	assert_int_equal(bf_state_window_open_full(state, "B", NOW + 30, 0,
	                                           excl, NULL, &error),
	                 0);
	assert_window(state, NOW + 31, "A", NOW, NOW + 2000);

	/* B with replace: A closed and B open in one write */
	assert_window_open(state, "B", NOW + 40, 0, BF_WINDOW_OPEN_REPLACE, 1,
	                   "A");
	assert_window(state, NOW + 41, "B", NOW + 40, 0);
	/* the closed A does not come back when B is closed */
	assert_int_equal(bf_state_window_close(state, NOW + 42, &error), 1);
	assert_int_equal(
	        bf_state_window_current(state, NOW + 43, &prev, &error), 0);

	/* with B open again, A is refused with B's name, then allowed
	   with replace: a new window A, opened now */
	assert_window_open(state, "B", NOW + 50, 0, excl, 1, NULL);
	assert_window_open(state, "A", NOW + 60, 0, excl, 0, "B");
	assert_window_open(state, "A", NOW + 70, 0, BF_WINDOW_OPEN_REPLACE, 1,
	                   "B");
	assert_window(state, NOW + 71, "A", NOW + 70, 0);
	assert_int_equal(bf_state_window_close(state, NOW + 80, &error), 1);
	/* closed: A opens again without replace, as a new window */
	assert_window_open(state, "A", NOW + 90, NOW + 200, excl, 1, NULL);
	assert_window(state, NOW + 91, "A", NOW + 90, NOW + 200);

	/* A window past its end is not in force: another name opens
	   without replace, and the same name opens as a new window */
	assert_window_open(state, "C", NOW + 200, 0, excl, 1, NULL);
	assert_window(state, NOW + 201, "C", NOW + 200, 0);
	assert_int_equal(bf_state_window_close(state, NOW + 210, &error), 1);
	assert_window_open(state, "C", NOW + 220, NOW + 230, excl, 1, NULL);
	assert_window_open(state, "C", NOW + 240, 0, excl, 1, NULL);
	assert_window(state, NOW + 241, "C", NOW + 240, 0);

	/* bf_state_window_open() replaces, and keeps the opened time of the
	   same name too */
	assert_int_equal(bf_state_window_open(state, "D", NOW + 300, 0, &error),
	                 0);
	assert_window(state, NOW + 301, "D", NOW + 300, 0);
	assert_int_equal(
	        bf_state_window_open(state, "D", NOW + 310, NOW + 400, &error),
	        0);
	assert_window(state, NOW + 311, "D", NOW + 300, NOW + 400);

	assert_int_equal(
	        bf_state_window_open_full(state, "E", NOW + 320, 0,
	                                  (enum bf_window_open_flags)0x100,
	                                  &prev, &error),
	        -1);
	assert_contains(error, "invalid argument");
	assert_null(prev.name);
	bf_state_close(&state);
}

/* Two operators (or a script and an operator) opening different names at
   the same moment: exactly one wins, every other is refused with the
   winner's name, and the winner's window is the one in force. */
#define WINDOW_PROCS  6
#define WINDOW_ROUNDS 5

static void test_window_open_concurrent(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	atomic_int *shared;
	pid_t pids[WINDOW_PROCS];
	struct bf_window w;
	const char *error;
	char winner[16];
	unsigned int round, i;
	int go[2];

	/* [0] opened, [1] errors, [2 + i] what child i saw: its own index
	   when it won, the winner's index when refused */
	shared =
	        mmap(NULL, sizeof(*shared) * (2 + WINDOW_PROCS),
	             PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(shared != MAP_FAILED);
	for (round = 0; round < WINDOW_ROUNDS; round++) {
		atomic_store(&shared[0], 0);
		atomic_store(&shared[1], 0);
		assert_int_equal(pipe(go), 0);
		for (i = 0; i < WINDOW_PROCS; i++) {
			pids[i] = fork();
			assert_true(pids[i] >= 0);
			if (pids[i] == 0) {
				struct bf_state *s;
				struct bf_window prev;
				const char *cerror;
				char name[16], c;
				unsigned int seen;
				int ret;

				close(go[1]);
				s = child_open(f->uri);
				snprintf(name, sizeof(name), "w-%u", i);
				(void)read(go[0], &c, 1);
				ret = bf_state_window_open_full(
				        s, name, NOW + round, 0,
				        BF_WINDOW_OPEN_EXCLUSIVE, &prev,
				        &cerror);
				if (ret < 0) {
					fprintf(stderr, "child: %s\n", cerror);
					atomic_fetch_add(&shared[1], 1);
				} else if (ret == 1) {
					atomic_fetch_add(&shared[0], 1);
					atomic_store(&shared[2 + i], (int)i);
				} else if (prev.name != NULL &&
				           sscanf(prev.name, "w-%u", &seen) ==
				                   1) {
					atomic_store(&shared[2 + i], (int)seen);
				} else {
					atomic_store(&shared[2 + i], -1);
				}
				bf_window_clear(&prev);
				bf_state_close(&s);
				_exit(0);
			}
		}
		close(go[0]);
		/* all children start together */
		close(go[1]);
		assert_int_equal(bf_fixture_wait_children(pids, WINDOW_PROCS),
		                 0);
		assert_int_equal(atomic_load(&shared[1]), 0);
		assert_int_equal(atomic_load(&shared[0]), 1);
		assert_int_equal(
		        bf_state_window_current(state, NOW + round, &w, &error),
		        1);
		for (i = 0; i < WINDOW_PROCS; i++) {
			snprintf(winner, sizeof(winner), "w-%d",
			         atomic_load(&shared[2 + i]));
			assert_string_equal(winner, w.name);
		}
		bf_window_clear(&w);
		assert_int_equal(
		        bf_state_window_close(state, NOW + round, &error), 1);
	}
	munmap(shared, sizeof(*shared) * (2 + WINDOW_PROCS));
	bf_state_close(&state);
}

/* ---- dedup ---- */

/* The dedup stats at now: live records, live delivered ones, expired. */
static void assert_dedup_stats(struct bf_state *state, time_t now,
                               uint64_t records, uint64_t delivered,
                               uint64_t expired)
{
	struct bf_dedup_stats stats;
	const char *error;

	assert_int_equal(bf_state_dedup_stats(state, now, &stats, &error), 0);
	assert_int_equal(stats.records, records);
	assert_int_equal(stats.delivered, delivered);
	assert_int_equal(stats.expired, expired);
}

/* A purge at now deletes purged records. */
static void assert_purged(struct bf_state *state, time_t now, uint64_t purged)
{
	const char *error;
	uint64_t n;

	assert_int_equal(bf_state_dedup_purge(state, now, &n, &error), 0);
	assert_int_equal(n, purged);
}

static void test_dedup(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key key, key2, keys[4];
	struct bf_dedup_first first, firsts[4];
	const char *error;
	int results[4];

	make_key(&key, "restore-1", "alice@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 100,
	                                              "mx1", "4AbC1", &first,
	                                              &error),
	                 1);
	assert_null(first.host);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW + 5, 100,
	                                              "mx2", "9XyZ2", &first,
	                                              &error),
	                 0);
	assert_int_equal(first.first_seen, NOW);
	assert_string_equal(first.host, "mx1");
	assert_string_equal(first.queue_id, "4AbC1");
	assert_false(first.delivered);
	bf_dedup_first_clear(&first);

	/* Each part of the key matters. */
	make_key(&key2, "restore-1", "bob@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key2, NOW, 100,
	                                              "mx1", "Q", NULL, &error),
	                 1);
	make_key(&key2, "restore-2", "alice@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key2, NOW, 100,
	                                              "mx1", "Q", NULL, &error),
	                 1);
	make_key(&key2, "restore-1", "alice@example.org", 2);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key2, NOW, 100,
	                                              NULL, NULL, NULL, &error),
	                 1);

	/* Mark delivered: the first delivery time stays. */
	assert_int_equal(
	        bf_state_dedup_mark_delivered(state, &key, NOW + 7, &error), 1);
	assert_int_equal(
	        bf_state_dedup_mark_delivered(state, &key, NOW + 8, &error), 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW + 9, 100,
	                                              "mx2", "Q2", &first,
	                                              &error),
	                 0);
	assert_true(first.delivered);
	assert_int_equal(first.delivered_at, NOW + 7);
	bf_dedup_first_clear(&first);
	make_key(&key2, "restore-1", "nobody@example.org", 1);
	assert_int_equal(
	        bf_state_dedup_mark_delivered(state, &key2, NOW, &error), 0);

	assert_dedup_stats(state, NOW + 10, 4, 1, 0);

	/* Expired records count as absent, and are replaced (with the
	   delivered flag reset). */
	assert_int_equal(
	        bf_state_dedup_mark_delivered(state, &key, NOW + 100, &error),
	        0);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW + 100,
	                                              50, "mx3", "Q3", &first,
	                                              &error),
	                 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW + 101,
	                                              50, "mx4", "Q4", &first,
	                                              &error),
	                 0);
	assert_string_equal(first.host, "mx3");
	assert_false(first.delivered);
	assert_int_equal(first.first_seen, NOW + 100);
	bf_dedup_first_clear(&first);

	assert_dedup_stats(state, NOW + 120, 1, 0, 3);
	assert_purged(state, NOW + 120, 3);
	assert_dedup_stats(state, NOW + 120, 1, 0, 0);
	/* Purge at the expiry time itself. */
	assert_purged(state, NOW + 150, 1);

	/* Several recipients of one message in one call; a recipient given
	   twice is new only the first time. */
	make_key(&keys[0], "restore-1", "a@example.org", 9);
	make_key(&keys[1], "restore-1", "b@example.org", 9);
	make_key(&keys[2], "restore-1", "a@example.org", 9);
	make_key(&keys[3], "restore-1", "c@example.org", 9);
	assert_int_equal(bf_state_dedup_check_and_set(state, &keys[1], NOW, 100,
	                                              "mx0", "Q0", NULL,
	                                              &error),
	                 1);
	assert_int_equal(bf_state_dedup_check_and_set_many(
	                         state, keys, 4, NOW + 1, 100, "mx1", "Q1",
	                         results, firsts, &error),
	                 0);
	assert_int_equal(results[0], 1);
	assert_int_equal(results[1], 0);
	assert_int_equal(results[2], 0);
	assert_int_equal(results[3], 1);
	assert_null(firsts[0].host);
	assert_string_equal(firsts[1].queue_id, "Q0");
	assert_string_equal(firsts[2].queue_id, "Q1");
	assert_null(firsts[3].host);
	for (int i = 0; i < 4; i++)
		bf_dedup_first_clear(&firsts[i]);
	assert_int_equal(bf_state_dedup_check_and_set_many(
	                         state, keys, 4, NOW + 2, 100, "mx1", "Q1",
	                         results, NULL, &error),
	                 0);
	assert_int_equal(results[0] + results[1] + results[2] + results[3], 0);

	/* Bad keys and ttl are refused. */
	make_key(&key2, "", "a@example.org", 1);
	assert_int_equal(check_and_set(state, &key2, NOW, 100, &error), -1);
	assert_contains(error, "invalid argument");
	assert_int_equal(check_and_set(state, &key, NOW, 0, &error), -1);
	bf_state_close(&state);
}

/* A purge walks the table in chunks: more records than one chunk, expired
   and live ones interleaved. */
static void test_dedup_purge_large(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key keys[100];
	char rcpts[100][32];
	const char *error;
	unsigned int i, j, n;
	int results[100];

	for (i = 0; i < 50; i++) {
		for (j = 0; j < 100; j++) {
			n = i * 100 + j;
			snprintf(rcpts[j], sizeof(rcpts[j]),
			         "r%05u@example.org", (n * 7919) % 5000);
			make_key(&keys[j], n % 3 == 0 ? "w1" : "w2", rcpts[j],
			         n);
		}
		/* Odd batches expire at NOW + 50, even ones at NOW + 500. */
		assert_int_equal(bf_state_dedup_check_and_set_many(
		                         state, keys, 100, NOW,
		                         i % 2 == 1 ? 50 : 500, "mx", "Q",
		                         results, NULL, &error),
		                 0);
		for (j = 0; j < 100; j++)
			assert_int_equal(results[j], 1);
	}
	assert_dedup_stats(state, NOW + 100, 2500, 0, 2500);
	assert_purged(state, NOW + 100, 2500);
	assert_dedup_stats(state, NOW + 100, 2500, 0, 0);
	assert_purged(state, NOW + 100, 0);
	assert_int_equal(bf_state_dedup_purge(state, NOW + 500, NULL, &error),
	                 0);
	assert_dedup_stats(state, NOW, 0, 0, 0);
	bf_state_close(&state);
}

/* Many processes checking the same keys at once: each key is new exactly
   once across all of them. */
#define CAS_PROCS 8
#define CAS_OPS   1000
#define CAS_KEYS  100

static void test_dedup_concurrent_processes(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	atomic_uint *news, *errors;
	pid_t pids[CAS_PROCS];
	int go[2];
	unsigned int i, total = 0;

	/* The store exists before the children start, so that they contend
	   on the data and not only on creating it. */
	bf_state_close(&state);
	news = mmap(NULL, sizeof(*news) * (CAS_KEYS + 1),
	            PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(news != MAP_FAILED);
	errors = &news[CAS_KEYS];
	assert_int_equal(pipe(go), 0);
	for (i = 0; i < CAS_PROCS; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			struct bf_state *s;
			struct bf_dedup_key key;
			const char *cerror;
			unsigned int op, k;
			char c;
			int ret;

			close(go[1]);
			s = child_open(f->uri);
			/* Start together. */
			(void)read(go[0], &c, 1);
			for (op = 0; op < CAS_OPS; op++) {
				/* Every process walks the keys in its own
				   order. */
				k = (op * 7 + i * 13) % CAS_KEYS;
				make_key(&key, "w", "rcpt@example.org", k);
				ret = check_and_set(s, &key, NOW, 3600,
				                    &cerror);
				if (ret < 0) {
					fprintf(stderr, "child: %s\n", cerror);
					atomic_fetch_add(errors, 1);
				} else if (ret == 1) {
					atomic_fetch_add(&news[k], 1);
				}
			}
			bf_state_close(&s);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]);
	/* All of them, before any assertion can end the test. */
	assert_int_equal(bf_fixture_wait_children(pids, CAS_PROCS), 0);
	assert_int_equal(atomic_load(errors), 0);
	for (i = 0; i < CAS_KEYS; i++) {
		assert_int_equal(atomic_load(&news[i]), 1);
		total += atomic_load(&news[i]);
	}
	assert_int_equal(total, CAS_KEYS);
	munmap(news, sizeof(*news) * (CAS_KEYS + 1));
}

/* The milter's way: one handle per thread. */
#define THREADS    4
#define THREAD_OPS 300

struct thread_ctx {
	const char *uri;
	unsigned int index;
	atomic_uint *news;
	atomic_uint *errors;
};

static void *thread_main(void *context)
{
	struct thread_ctx *ctx = context;
	struct bf_state *s = NULL;
	struct bf_dedup_key keys[2];
	const char *cerror;
	char *error = NULL;
	int results[2];
	unsigned int op;

	if (bf_state_open(ctx->uri, &s, &error) < 0) {
		fprintf(stderr, "thread: %s\n", error);
		free(error);
		atomic_fetch_add(ctx->errors, 1);
		return NULL;
	}
	for (op = 0; op < THREAD_OPS; op++) {
		unsigned int k = (op + ctx->index * 17) % 50;

		make_key(&keys[0], "w", "x@example.org", k);
		make_key(&keys[1], "w", "y@example.org", k);
		if (bf_state_dedup_check_and_set_many(s, keys, 2, NOW, 3600,
		                                      "mx", "Q", results, NULL,
		                                      &cerror) < 0) {
			fprintf(stderr, "thread: %s\n", cerror);
			atomic_fetch_add(ctx->errors, 1);
			continue;
		}
		atomic_fetch_add(&ctx->news[k], results[0] + results[1]);
	}
	bf_state_close(&s);
	return NULL;
}

static void test_dedup_concurrent_threads(void **statep)
{
	struct fixture *f = *statep;
	struct thread_ctx ctx[THREADS];
	pthread_t threads[THREADS];
	atomic_uint news[50], errors = 0;
	unsigned int i;

	for (i = 0; i < 50; i++)
		atomic_init(&news[i], 0);
	for (i = 0; i < THREADS; i++) {
		ctx[i].uri = f->uri;
		ctx[i].index = i;
		ctx[i].news = news;
		ctx[i].errors = &errors;
		assert_int_equal(
		        pthread_create(&threads[i], NULL, thread_main, &ctx[i]),
		        0);
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);
	assert_int_equal(atomic_load(&errors), 0);
	for (i = 0; i < 50; i++)
		assert_int_equal(atomic_load(&news[i]), 2);
}

/* ---- leases ---- */

/* "host:pid:space.random": host and pid for humans, space (16 hex digits)
   names this pid namespace of this boot, random (8) this very owner. */
static void test_lease_owner_format(void **statep)
{
	char owner[128], owner2[128], host[256], want[300], small[40];
	const char *tail;
	size_t i;

	(void)statep;
	bf_lease_owner(owner, sizeof(owner));
	bf_lease_owner(owner2, sizeof(owner2));
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	snprintf(want, sizeof(want), "%s:%ld:", host, (long)getpid());
	assert_int_equal(strncmp(owner, want, strlen(want)), 0);
	tail = owner + strlen(want);
	assert_int_equal(strlen(tail), 16 + 1 + 8);
	for (i = 0; i < 25; i++) {
		if (i == 16)
			assert_int_equal(tail[i], '.');
		else
			assert_non_null(strchr("0123456789abcdef", tail[i]));
	}
	/* The same space, another random part for every owner. */
	assert_int_equal(strncmp(owner, owner2, strlen(want) + 17), 0);
	assert_string_not_equal(owner, owner2);
	/* A short buffer loses the end of the host, not what makes the
	   owner unique. */
	bf_lease_owner(small, sizeof(small));
	snprintf(want, sizeof(want), ":%ld:", (long)getpid());
	tail = strstr(small, want);
	assert_non_null(tail);
	assert_int_equal(strlen(tail), strlen(want) + 25);
	assert_int_equal(strncmp(small, host, (size_t)(tail - small)), 0);
	/* Truncates safely. */
	bf_lease_owner(owner, 4);
	assert_int_equal(strlen(owner), 3);
}

/* bf_state_lease_acquire() without the holder's name: 1 taken, 0 held by
   another, -1 error. */
static int lease_take(struct bf_state *state, const char *name,
                      const char *owner, time_t now, unsigned int ttl)
{
	const char *error;

	return bf_state_lease_acquire(state, name, owner, now, ttl, NULL,
	                              &error);
}

/* bf_state_slot_acquire() of one of host's max slots for 60 s: 1 taken
   (*slot_r), 0 all taken, -1 error. */
static int slot_take(struct bf_state *state, const char *host, unsigned int max,
                     const char *owner, time_t now, unsigned int *slot_r)
{
	const char *error;

	return bf_state_slot_acquire(state, host, max, owner, now, 60, slot_r,
	                             &error);
}

static void test_lease_basic(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	const char *a = "otherhost.invalid:100:aaaa";
	const char *b = "otherhost.invalid:200:bbbb";
	const char *error;
	char *holder;

	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", a, NOW,
	                                        60, &holder, &error),
	                 1);
	assert_null(holder);
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", b, NOW,
	                                        60, &holder, &error),
	                 0);
	assert_string_equal(holder, a);
	free(holder);
	/* Without holder_r. */
	assert_int_equal(lease_take(state, "merge/alice", b, NOW, 60), 0);
	/* Another name is independent. */
	assert_int_equal(lease_take(state, "merge/bob", b, NOW, 60), 1);
	/* Acquiring our own lease renews it. */
	assert_int_equal(lease_take(state, "merge/alice", a, NOW + 50, 60), 1);
	assert_int_equal(lease_take(state, "merge/alice", b, NOW + 100, 60), 0);
	assert_int_equal(bf_state_lease_renew(state, "merge/alice", a,
	                                      NOW + 100, 60, &error),
	                 1);
	assert_int_equal(bf_state_lease_renew(state, "merge/alice", b,
	                                      NOW + 100, 60, &error),
	                 0);
	/* Expiry-based takeover of a holder on another host: not before
	   the lease expires (now + ttl), then at once. */
	assert_int_equal(lease_take(state, "merge/alice", b, NOW + 159, 60), 0);
	assert_int_equal(lease_take(state, "merge/alice", b, NOW + 160, 60), 1);
	/* The old holder learns it lost the lease. */
	assert_int_equal(bf_state_lease_renew(state, "merge/alice", a,
	                                      NOW + 161, 60, &error),
	                 0);
	assert_int_equal(
	        bf_state_lease_release(state, "merge/alice", a, &error), 0);
	assert_int_equal(
	        bf_state_lease_release(state, "merge/alice", b, &error), 1);
	assert_int_equal(
	        bf_state_lease_release(state, "merge/alice", b, &error), 0);
	assert_int_equal(lease_take(state, "merge/alice", a, NOW + 161, 60), 1);

	/* A holder string we did not make is never treated as dead. */
	assert_int_equal(lease_take(state, "odd", "x", NOW, 60), 1);
	assert_int_equal(lease_take(state, "odd", a, NOW, 60), 0);

	assert_int_equal(lease_take(state, "", a, NOW, 60), -1);
	assert_int_equal(lease_take(state, "x", a, NOW, 0), -1);
	bf_state_close(&state);
}

/* A process that takes what hold() takes in the store at uri (a lease, a
   slot) as an owner of its own and then waits to be killed: its pid,
   once it holds it. */
static pid_t spawn_holder(const char *uri,
                          int (*hold)(struct bf_state *s, const char *owner))
{
	int ready[2];
	pid_t pid;
	char c;

	assert_int_equal(pipe(ready), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct bf_state *s;
		char owner[128];

		close(ready[0]);
		bf_lease_owner(owner, sizeof(owner));
		s = child_open(uri);
		if (hold(s, owner) != 1)
			_exit(1);
		(void)write(ready[1], "x", 1);
		for (;;)
			pause();
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	return pid;
}

static int hold_lease(struct bf_state *s, const char *owner)
{
	const char *error;

	return bf_state_lease_acquire(s, "merge/alice", owner, NOW, 3600, NULL,
	                              &error);
}

/* The holder process of this host is killed with SIGKILL: its lease is
   taken over at once, without waiting for the ttl. */
static void test_lease_takeover_after_kill(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	pid_t pid = spawn_holder(f->uri, hold_lease);
	char owner[128], *holder;
	const char *error;
	int status;

	bf_lease_owner(owner, sizeof(owner));
	/* Alive: not taken. */
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", owner,
	                                        NOW + 1, 60, &holder, &error),
	                 0);
	assert_non_null(holder);
	assert_non_null(strstr(holder, ":"));
	free(holder);

	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	/* Dead: taken at once, long before its expiry. */
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", owner,
	                                        NOW + 2, 60, &holder, &error),
	                 1);
	assert_null(holder);
	assert_int_equal(bf_state_lease_renew(state, "merge/alice", owner,
	                                      NOW + 3, 60, &error),
	                 1);
	bf_state_close(&state);
}

/* A holder with this host's name and a pid that no process here has is
   not dead when it is another host or container of the same name (its
   owner names another pid space), nor when its owner string is not one
   bf_lease_owner() makes: its live lease is never taken before it
   expires.  Only our own space's dead holders are. */
static void test_lease_same_hostname_elsewhere(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	char owner[128], host[256], foreign[400], *holder;
	const char *error;
	const char *const spaces[] = {
	        "0123456789abcdef.00000001", /* another container's space */
	        "0123456789abcdef",          /* no random part */
	        "a5a5a5a5",                  /* an older backfill's owner */
	};
	pid_t dead;
	size_t i;

	/* a pid that is free now: a child that has exited and been
	   reaped */
	dead = fork();
	assert_true(dead >= 0);
	if (dead == 0)
		_exit(0);
	assert_int_equal(bf_fixture_wait_children(&dead, 1), 0);
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	bf_lease_owner(owner, sizeof(owner));
	for (i = 0; i < sizeof(spaces) / sizeof(spaces[0]); i++) {
		snprintf(foreign, sizeof(foreign), "%s:%ld:%s", host,
		         (long)dead, spaces[i]);
		assert_int_equal(
		        lease_take(state, "merge/alice", foreign, NOW, 60), 1);
		assert_int_equal(bf_state_lease_acquire(state, "merge/alice",
		                                        owner, NOW + 1, 60,
		                                        &holder, &error),
		                 0);
		assert_string_equal(holder, foreign);
		free(holder);
		assert_int_equal(slot_take(state, host, 1, foreign, NOW,
		                           &(unsigned int){0}),
		                 1);
		assert_int_equal(slot_take(state, host, 1, owner, NOW + 1,
		                           &(unsigned int){0}),
		                 0);
		assert_int_equal(bf_state_lease_release(state, "merge/alice",
		                                        foreign, &error),
		                 1);
		assert_int_equal(
		        bf_state_slot_release(state, host, 0, foreign, &error),
		        1);
	}
	/* The same dead pid in our own space: taken at once. */
	snprintf(foreign, sizeof(foreign), "%s:%ld:%s", host, (long)dead,
	         strrchr(owner, ':') + 1);
	assert_int_equal(lease_take(state, "merge/alice", foreign, NOW, 60), 1);
	assert_int_equal(lease_take(state, "merge/alice", owner, NOW + 1, 60),
	                 1);
	bf_state_close(&state);
}

/* The same with real namespaces: a process in a new pid and UTS namespace
   with this host's name (a container, or a second host of the same name)
   cannot take the lease of a live process here, whose pid does not exist
   in its namespace.  Needs CAP_SYS_ADMIN (root); skipped otherwise. */
static void test_lease_same_hostname_other_pidns(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	char owner[128], *holder = NULL;
	const char *error;
	int status;
	pid_t pid;

	bf_lease_owner(owner, sizeof(owner));
	assert_int_equal(lease_take(state, "merge/alice", owner, NOW, 600), 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char host[256];
		pid_t inner;

		if (gethostname(host, sizeof(host)) < 0 ||
		    unshare(CLONE_NEWPID | CLONE_NEWUTS) < 0)
			_exit(77);
		if (sethostname(host, strlen(host)) < 0)
			_exit(1);
		inner = fork();
		if (inner == 0) {
			struct bf_state *s = NULL;
			char inner_owner[128], *err = NULL, *who = NULL;
			const char *cerr;
			int ret;

			/* pid 1 of the new namespace: the holder's pid does
			   not exist here */
			if (bf_state_open(f->uri, &s, &err) < 0)
				_exit(2);
			bf_lease_owner(inner_owner, sizeof(inner_owner));
			ret = bf_state_lease_acquire(s, "merge/alice",
			                             inner_owner, NOW + 1, 60,
			                             &who, &cerr);
			_exit(ret == 0 && who != NULL ? 0 : 3);
		}
		if (inner < 0 || waitpid(inner, &status, 0) != inner)
			_exit(1);
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		bf_state_close(&state);
		skip();
	}
	assert_int_equal(WEXITSTATUS(status), 0);
	/* still ours */
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", owner,
	                                        NOW + 2, 600, &holder, &error),
	                 1);
	bf_state_close(&state);
}

/* ---- slots ---- */

static void test_slots_basic(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	const char *a = "otherhost.invalid:100:aaaa";
	const char *b = "otherhost.invalid:200:bbbb";
	unsigned int slot = 99;
	const char *error;

	/* One owner running several merges takes one slot each. */
	assert_int_equal(slot_take(state, "h1", 3, a, NOW, &slot), 1);
	assert_int_equal(slot, 0);
	assert_int_equal(slot_take(state, "h1", 3, a, NOW, &slot), 1);
	assert_int_equal(slot, 1);
	assert_int_equal(slot_take(state, "h1", 3, b, NOW, &slot), 1);
	assert_int_equal(slot, 2);
	slot = 99;
	assert_int_equal(slot_take(state, "h1", 3, b, NOW, &slot), 0);
	assert_int_equal(slot, 99);
	/* Hosts are separate. */
	assert_int_equal(slot_take(state, "h2", 1, b, NOW, &slot), 1);
	assert_int_equal(slot, 0);

	assert_int_equal(bf_state_slot_release(state, "h1", 1, b, &error), 0);
	assert_int_equal(bf_state_slot_release(state, "h1", 1, a, &error), 1);
	assert_int_equal(slot_take(state, "h1", 3, b, NOW, &slot), 1);
	assert_int_equal(slot, 1);
	assert_int_equal(
	        bf_state_slot_renew(state, "h1", 1, b, NOW + 30, 60, &error),
	        1);
	assert_int_equal(
	        bf_state_slot_renew(state, "h1", 0, b, NOW + 30, 60, &error),
	        0);
	/* Expired slots are free again: slot 0 and 2 expired at NOW + 60,
	   slot 1 was renewed until NOW + 90. */
	assert_int_equal(slot_take(state, "h1", 3, b, NOW + 60, &slot), 1);
	assert_int_equal(slot, 0);
	assert_int_equal(slot_take(state, "h1", 3, b, NOW + 60, &slot), 1);
	assert_int_equal(slot, 2);
	assert_int_equal(slot_take(state, "h1", 3, b, NOW + 60, &slot), 0);

	assert_int_equal(slot_take(state, "h1", 0, b, NOW, &slot), -1);
	assert_int_equal(slot_take(state, "", 3, b, NOW, &slot), -1);
	bf_state_close(&state);
}

/* N slots, 3N processes competing for them: never more than N hold one at
   the same time, counted independently of the store in shared memory. */
#define SLOTS       3
#define SLOT_PROCS  (SLOTS * 3)
#define SLOT_ROUNDS 30

static void test_slots_contention(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	atomic_uint *shared;
	pid_t pids[SLOT_PROCS];
	int go[2];
	unsigned int i;

	bf_state_close(&state);
	/* [0] holders now, [1] max holders, [2] acquisitions, [3] errors,
	   [4 + slot] holders of each slot */
	shared =
	        mmap(NULL, sizeof(*shared) * (4 + SLOTS),
	             PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(shared != MAP_FAILED);
	assert_int_equal(pipe(go), 0);
	for (i = 0; i < SLOT_PROCS; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			struct bf_state *s;
			char owner[128], c;
			const char *cerror;
			unsigned int round, slot, now_holders, max;
			int ret;

			close(go[1]);
			bf_lease_owner(owner, sizeof(owner));
			s = child_open(f->uri);
			(void)read(go[0], &c, 1);
			for (round = 0; round < SLOT_ROUNDS; round++) {
				ret = bf_state_slot_acquire(s, "h", SLOTS,
				                            owner, NOW, 3600,
				                            &slot, &cerror);
				if (ret < 0) {
					atomic_fetch_add(&shared[3], 1);
					continue;
				}
				if (ret == 0) {
					usleep(200);
					continue;
				}
				now_holders =
				        atomic_fetch_add(&shared[0], 1) + 1;
				atomic_fetch_add(&shared[4 + slot], 1);
				max = atomic_load(&shared[1]);
				while (now_holders > max &&
				       !atomic_compare_exchange_weak(
				               &shared[1], &max, now_holders))
					;
				if (atomic_load(&shared[4 + slot]) != 1)
					atomic_fetch_add(&shared[3], 1000);
				atomic_fetch_add(&shared[2], 1);
				usleep(1000);
				atomic_fetch_sub(&shared[4 + slot], 1);
				atomic_fetch_sub(&shared[0], 1);
				if (bf_state_slot_release(s, "h", slot, owner,
				                          &cerror) != 1)
					atomic_fetch_add(&shared[3], 1);
			}
			bf_state_close(&s);
			_exit(0);
		}
	}
	close(go[0]);
	close(go[1]);
	/* All of them, before any assertion can end the test. */
	assert_int_equal(bf_fixture_wait_children(pids, SLOT_PROCS), 0);
	assert_int_equal(atomic_load(&shared[3]), 0);
	assert_true(atomic_load(&shared[1]) <= SLOTS);
	assert_true(atomic_load(&shared[1]) >= 1);
	assert_true(atomic_load(&shared[2]) > 0);
	munmap(shared, sizeof(*shared) * (4 + SLOTS));
}

static int hold_slot(struct bf_state *s, const char *owner)
{
	const char *error;
	unsigned int slot;

	return bf_state_slot_acquire(s, "h", 1, owner, NOW, 3600, &slot,
	                             &error);
}

/* A merge process killed while holding a slot frees it at once. */
static void test_slot_takeover_after_kill(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	pid_t pid = spawn_holder(f->uri, hold_slot);
	char owner[128];
	unsigned int slot;
	int status;

	bf_lease_owner(owner, sizeof(owner));
	assert_int_equal(slot_take(state, "h", 1, owner, NOW + 1, &slot), 0);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(slot_take(state, "h", 1, owner, NOW + 2, &slot), 1);
	assert_int_equal(slot, 0);
	bf_state_close(&state);
}

#define T(name)  cmocka_unit_test_setup_teardown(name, setup, teardown)
#define TR(name) cmocka_unit_test_setup_teardown(name, setup_redis, teardown)
#define TS(name) cmocka_unit_test_setup_teardown(name, setup_rediss, teardown)

/* One key for the milter's RCPT TO, the plugin's LMTP recipient and
   backfillctl: a copy confirmed under another spelling would never
   count. */
static void test_dedup_recipient(void **unused)
{
	static const struct {
		const char *raw, *key;
	} cases[] = {
	        {"<Alice@Example.ORG>", "alice@example.org"},
	        {"  <bob@example.org>  ", "bob@example.org"},
	        {"carol@example.org", "carol@example.org"},
	        {"<@relay.example,@b.example:Dave@Example.org>",
	         "dave@example.org"},
	        {"<>", ""},
	        {"<\"Quoted Name\"@Example.org>",
	         "\"quoted name\"@example.org"},
	        {"\xc3\x89ve@example.org", "\xc3\x89ve@example.org"},
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *key = bf_dedup_recipient(cases[i].raw);
		assert_non_null(key);
		assert_string_equal(key, cases[i].key);
		free(key);
	}
}

int main(void)
{
	/* The generic tests run on both backends; the SQLite-only ones are
	   about files, locks and the SQLite schema. */
	const struct CMUnitTest sqlite_tests[] = {
	        T(test_open_creates_group_writable),
	        T(test_open_concurrent_create),
	        T(test_open_bad_uris),
	        T(test_uri_check),
	        T(test_open_missing_dir),
	        T(test_open_corrupt),
	        T(test_open_newer_schema),
	        T(test_open_unwritable),
	        T(test_busy_timeout),
	        T(test_wait_limit),
	        T(test_open_wait_limit),
	        T(test_merge_status_names),
	        T(test_merge_records),
	        T(test_journal),
	        T(test_checkpoint_atomic),
	        T(test_sqlite_damaged_numbers),
	        T(test_sqlite_damaged_window_name),
	        T(test_windows),
	        T(test_window_names),
	        T(test_window_open_exclusive),
	        T(test_window_open_concurrent),
	        T(test_dedup),
	        T(test_dedup_purge_large),
	        T(test_dedup_concurrent_processes),
	        T(test_dedup_concurrent_threads),
	        T(test_lease_owner_format),
	        T(test_lease_basic),
	        T(test_lease_takeover_after_kill),
	        T(test_lease_same_hostname_elsewhere),
	        T(test_lease_same_hostname_other_pidns),
	        T(test_slots_basic),
	        T(test_slots_contention),
	        T(test_slot_takeover_after_kill),
	        T(test_dedup_recipient),
	};
	int failed;

	failed =
	        cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);
#ifdef BF_HAVE_REDIS
	const struct CMUnitTest redis_tests[] = {
	        TR(test_open_concurrent_create),
	        TR(test_merge_records),
	        TR(test_journal),
	        TR(test_windows),
	        TR(test_window_names),
	        TR(test_window_open_exclusive),
	        TR(test_window_open_concurrent),
	        TR(test_dedup),
	        TR(test_dedup_purge_large),
	        TR(test_dedup_concurrent_processes),
	        TR(test_dedup_concurrent_threads),
	        TR(test_lease_basic),
	        TR(test_lease_takeover_after_kill),
	        TR(test_lease_same_hostname_elsewhere),
	        TR(test_lease_same_hostname_other_pidns),
	        TR(test_slots_basic),
	        TR(test_slots_contention),
	        TR(test_slot_takeover_after_kill),
	        TR(test_redis_uris),
	        TR(test_redis_tcp_password),
	        TR(test_redis_restart),
	        TR(test_redis_timeout),
	        TR(test_redis_wait_limit),
	        TR(test_redis_noscript),
	        TR(test_redis_checkpoint_atomic),
	        TR(test_redis_damaged_values),
	        TR(test_redis_damaged_numbers),
	        TR(test_redis_damaged_window_name),
	        TR(test_redis_keys_and_ttl),
	        TR(test_redis_fork),
	        T(test_redis_dns_timeout),
	};

	if (bf_fixture_redis_server() == NULL) {
		/* Built with hiredis but the server is missing here:
		   scripts/install-deps installs it. */
		fprintf(stderr, "redis-server not found (install redis-server "
		                "or set BF_REDIS_SERVER): the Redis backend is "
		                "NOT tested\n");
		return failed != 0 ? 1 : 77;
	}
	failed += cmocka_run_group_tests_name("redis", redis_tests, NULL, NULL);
#ifdef BF_HAVE_REDIS_TLS
	/* The contract again, over rediss:// (Debian 13's hiredis). */
	const struct CMUnitTest rediss_tests[] = {
	        TS(test_merge_records),
	        TS(test_journal),
	        TS(test_windows),
	        TS(test_window_open_exclusive),
	        TS(test_window_open_concurrent),
	        TS(test_dedup),
	        TS(test_dedup_concurrent_processes),
	        TS(test_dedup_concurrent_threads),
	        TS(test_lease_basic),
	        TS(test_lease_takeover_after_kill),
	        TS(test_slots_basic),
	        TS(test_slots_contention),
	        TS(test_rediss_refused),
	};

	failed +=
	        cmocka_run_group_tests_name("rediss", rediss_tests, NULL, NULL);
#endif
#endif
	return failed != 0 ? 1 : 0;
}
