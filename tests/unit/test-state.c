/* The state store on both backends: every operation, concurrency
   between processes and threads (the real deployment: one handle per
   IMAP process, one per milter thread), lease takeover after SIGKILL,
   the slot limit under contention, and the errors operators see.

   The generic tests run twice: on SQLite, and on Redis against a real
   redis-server that each test starts itself on a unix socket in its temp
   dir and stops by PID.  SQLite-only tests cover files and locks; the
   Redis-only ones URIs, a password over TCP, a restart and a hung server
   in the middle of a test, the script cache, key layout and expiry.
   Each test runs in its own temp dir. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef BF_HAVE_REDIS
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#endif

#include "state.h"

#define NOW 1700000000

struct fixture {
	char dir[64];
	char path[128];
	char uri[200];
	/* Redis: the server this test started (0 = none), its unix socket
	   and, when started with a TCP port, the port. */
	pid_t redis_pid;
	char sock[128];
	int port;
};

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **statep)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test-state.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
	snprintf(f->uri, sizeof(f->uri), "sqlite:%s", f->path);
	*statep = f;
	return 0;
}

#ifdef BF_HAVE_REDIS
static void redis_stop(struct fixture *f);
#endif

static int teardown(void **statep)
{
	struct fixture *f = *statep;

#ifdef BF_HAVE_REDIS
	redis_stop(f);
#endif
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct bf_state *open_ok(const char *uri)
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
static char *open_error(const char *uri)
{
	struct bf_state *state = NULL;
	char *error = NULL;

	assert_int_equal(bf_state_open(uri, &state, &error), -1);
	assert_null(state);
	assert_non_null(error);
	return error;
}

static void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL) {
		print_error("\"%s\" does not contain \"%s\"\n", haystack,
		            needle);
		fail();
	}
}

static void make_key(struct bf_dedup_key *key, const char *window,
                     const char *rcpt, unsigned int n)
{
	memset(key, 0, sizeof(*key));
	key->window = window;
	key->recipient = rcpt;
	memcpy(key->fingerprint, &n, sizeof(n));
	key->fingerprint[BF_FP_SIZE - 1] = 0xa5;
}

static double now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits for every child; returns how many did not exit 0. */
static unsigned int wait_children(const pid_t *pids, unsigned int count)
{
	unsigned int i, failed = 0;
	int status;

	for (i = 0; i < count; i++) {
		if (waitpid(pids[i], &status, 0) != pids[i] ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	return failed;
}

/* ---- open, files, URIs ---- */

static void test_open_creates_group_writable(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state;
	struct bf_dedup_key key;
	const char *error;
	char wal[160];
	struct stat st;
	mode_t old_umask = umask(077);

	state = open_ok(f->uri);
	umask(old_umask);
	assert_string_equal(bf_state_uri(state), f->uri);
	make_key(&key, "w", "a@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 60,
	                                              "mx1", "Q1", NULL,
	                                              &error),
	                 1);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_int_equal(stat(wal, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	snprintf(wal, sizeof(wal), "%s-shm", f->path);
	assert_int_equal(stat(wal, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0660);
	bf_state_close(&state);
	assert_null(state);
	bf_state_close(&state);

	/* Reopening an existing store keeps its data. */
	state = open_ok(f->uri);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 60,
	                                              "mx1", "Q1", NULL,
	                                              &error),
	                 0);
	bf_state_close(&state);
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
			struct bf_state *s = NULL;
			struct bf_dedup_key key;
			const char *cerror;
			char *error = NULL, c;

			close(go[1]);
			(void)read(go[0], &c, 1);
			if (bf_state_open(f->uri, &s, &error) < 0) {
				fprintf(stderr, "child: %s\n", error);
				_exit(1);
			}
			make_key(&key, "w", "a@example.org", i);
			if (bf_state_dedup_check_and_set(s, &key, NOW, 60, "mx",
			                                 "Q", NULL,
			                                 &cerror) != 1) {
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
	assert_int_equal(wait_children(pids, 8), 0);
}

static void test_open_bad_uris(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state;
	char uri[256], *error;

	error = open_error("nonsense");
	assert_contains(error, "not a state store URI");
	free(error);
	error = open_error("memcached://localhost");
	assert_contains(error, "unsupported backend \"memcached\"");
	free(error);
	error = open_error("sqlite:");
	assert_contains(error, "no database path");
	free(error);
	snprintf(uri, sizeof(uri), "%s?bogus=1", f->uri);
	error = open_error(uri);
	assert_contains(error, "unknown option");
	free(error);
	snprintf(uri, sizeof(uri), "%s?busy_timeout=soon", f->uri);
	error = open_error(uri);
	assert_contains(error, "busy_timeout");
	free(error);

	/* The URI forms that work. */
	snprintf(uri, sizeof(uri), "%s?busy_timeout=500", f->uri);
	state = open_ok(uri);
	bf_state_close(&state);
	snprintf(uri, sizeof(uri), "sqlite://%s", f->path);
	state = open_ok(uri);
	bf_state_close(&state);
}

static void test_open_missing_dir(void **statep)
{
	struct fixture *f = *statep;
	char uri[256], dir[160], *error;

	snprintf(dir, sizeof(dir), "%s/nonexistent", f->dir);
	snprintf(uri, sizeof(uri), "sqlite:%s/state.db", dir);
	error = open_error(uri);
	assert_contains(error, dir);
	assert_contains(error, "does not exist");
	free(error);
}

static void test_open_corrupt(void **statep)
{
	struct fixture *f = *statep;
	char junk[8192], *error;
	int fd;

	memset(junk, 'x', sizeof(junk));
	memcpy(junk, "This is not SQLite, it is a mail spool\n", 39);
	fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0660);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, junk, sizeof(junk)), sizeof(junk));
	close(fd);

	error = open_error(f->uri);
	assert_contains(error, f->path);
	assert_contains(error, "not a usable SQLite database");
	assert_contains(error, "restore it from a backup");
	free(error);
}

static void test_open_newer_schema(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	sqlite3 *db;
	char *error;

	bf_state_close(&state);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
	                              "UPDATE schema_version SET version = 99",
	                              NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	error = open_error(f->uri);
	assert_contains(error, f->path);
	assert_contains(error, "newer backfill");
	free(error);
}

/* Runs fn(arg) in a child running as an unprivileged user (when we are
   root, as in CI, root would ignore every permission) and returns the
   error text the child got, or NULL when the child succeeded. */
static char *open_as_unprivileged(const char *uri)
{
	char buf[1024];
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct bf_state *state = NULL;
		struct bf_dedup_key key;
		char *error = NULL;
		const char *cerror = NULL;
		int ret;

		close(fds[0]);
		if (geteuid() == 0 &&
		    (setgroups(0, NULL) < 0 || setgid(8) < 0 || setuid(8) < 0))
			_exit(3);
		ret = bf_state_open(uri, &state, &error);
		if (ret == 0) {
			/* Opening may succeed read-only; the first write must
			   then fail. */
			make_key(&key, "w", "a@example.org", 7);
			ret = bf_state_dedup_check_and_set(
			        state, &key, NOW, 60, "mx", "Q", NULL, &cerror);
			if (ret < 0)
				error = strdup(cerror);
			bf_state_close(&state);
		}
		if (ret < 0 && error != NULL)
			(void)write(fds[1], error, strlen(error));
		free(error);
		_exit(ret < 0 ? 1 : 0);
	}
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_not_equal(WEXITSTATUS(status), 3);
	if (WEXITSTATUS(status) == 0)
		return NULL;
	assert_true(n > 0);
	buf[n] = '\0';
	return strdup(buf);
}

static void test_open_unwritable(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state;
	char dir[128], path[192], uri[256], *error;

	/* The unprivileged child must be able to reach the directories. */
	assert_int_equal(chmod(f->dir, 0755), 0);
	snprintf(dir, sizeof(dir), "%s/ro", f->dir);
	assert_int_equal(mkdir(dir, 0755), 0);
	assert_int_equal(chmod(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/state.db", dir);
	snprintf(uri, sizeof(uri), "sqlite:%s", path);

	/* A directory it cannot create the store in. */
	error = open_as_unprivileged(uri);
	assert_non_null(error);
	assert_contains(error, path);
	assert_contains(error, "cannot create it in directory");
	assert_contains(error, "fix permissions");
	free(error);

	/* An existing store file it cannot write. */
	state = open_ok(uri);
	bf_state_close(&state);
	assert_int_equal(chmod(path, 0644), 0);
	error = open_as_unprivileged(uri);
	assert_non_null(error);
	assert_contains(error, path);
	assert_contains(error, "not writable");
	assert_contains(error, "fix permissions");
	free(error);

	/* A writable file in a read-only directory: SQLite cannot create
	   the -wal and -shm files next to it. */
	assert_int_equal(chmod(path, 0666), 0);
	error = open_as_unprivileged(uri);
	assert_non_null(error);
	assert_contains(error, path);
	assert_contains(error, "fix permissions");
	free(error);

	/* Control: with the permissions the hint asks for, it works. */
	assert_int_equal(chmod(dir, 0777), 0);
	error = open_as_unprivileged(uri);
	assert_null(error);
}

/* A lock held past the busy timeout is an error naming the store, not a
   hang. */
static void test_busy_timeout(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state;
	struct bf_dedup_key key;
	const char *error;
	char uri[256];
	sqlite3 *db;

	snprintf(uri, sizeof(uri), "%s?busy_timeout=200", f->uri);
	state = open_ok(uri);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
	                 SQLITE_OK);
	make_key(&key, "w", "a@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 -1);
	assert_contains(error, f->path);
	assert_contains(error, "locked");
	assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	/* The handle is usable again once the lock is gone. */
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 1);
	bf_state_close(&state);
}

/* Another process holds the write lock (BEGIN EXCLUSIVE) until told to let
   go through done_fd; returns its pid once it holds it. */
static pid_t lock_in_child(const char *path, int *done_fd_r)
{
	int locked[2], done[2];
	pid_t pid;
	char c;

	assert_int_equal(pipe(locked), 0);
	assert_int_equal(pipe(done), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		sqlite3 *db;

		close(locked[0]);
		close(done[1]);
		if (sqlite3_open(path, &db) != SQLITE_OK ||
		    sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL) !=
		            SQLITE_OK)
			_exit(1);
		if (write(locked[1], "l", 1) != 1 || read(done[0], &c, 1) < 0)
			_exit(1);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(db);
		_exit(0);
	}
	close(locked[1]);
	close(done[0]);
	assert_int_equal(read(locked[0], &c, 1), 1);
	close(locked[0]);
	*done_fd_r = done[1];
	return pid;
}

/* A caller with a deadline (a login with a budget) sets a wait limit:
   with the file locked by another process an operation fails after about
   the limit, not after the store's 10 s busy timeout; 0 restores the
   busy timeout of the URI. */
static void test_wait_limit(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state, *state2;
	struct bf_dedup_key key;
	const char *error;
	char uri[256];
	double start, took;
	int done_fd;
	pid_t pid;

	state = open_ok(f->uri);
	snprintf(uri, sizeof(uri), "%s?busy_timeout=1000", f->uri);
	state2 = open_ok(uri);
	make_key(&key, "w", "a@example.org", 1);
	pid = lock_in_child(f->path, &done_fd);

	bf_state_set_wait_limit(state, 200);
	start = now_mono();
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 -1);
	took = now_mono() - start;
	assert_true(took >= 0.19);
	assert_true(took < 1.5);
	assert_contains(error, "locked");
	assert_contains(error, "after 200 ms");
	assert_contains(error, f->path);

	/* 0: the URI's busy_timeout again */
	bf_state_set_wait_limit(state2, 200);
	bf_state_set_wait_limit(state2, 0);
	start = now_mono();
	assert_int_equal(bf_state_window_close(state2, NOW, &error), -1);
	took = now_mono() - start;
	assert_true(took >= 0.99);
	assert_contains(error, "after 1000 ms");
	assert_contains(error, "busy_timeout=MS");

	assert_int_equal(write(done_fd, "d", 1), 1);
	close(done_fd);
	assert_int_equal(wait_children(&pid, 1), 0);
	/* The limit stays on the handle and does not stop it working. */
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 1);
	bf_state_close(&state);
	bf_state_close(&state2);
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

static void make_entry(struct bf_journal_entry *e, unsigned int n)
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

struct journal_iter_ctx {
	unsigned int count;
	bool bad;
};

static int journal_iter_cb(const struct bf_journal_entry *entry, void *context)
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

/* A checkpoint that fails half-way leaves neither the journal entries nor
   the record: the failure is injected by a trigger on the merges table,
   which fires after the journal rows were inserted. */
static void test_checkpoint_atomic(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_journal_entry entries[3];
	struct journal_iter_ctx ctx;
	struct bf_merge_record rec, got;
	const char *error;
	sqlite3 *db;
	unsigned int i;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(
	        sqlite3_exec(db,
	                     "CREATE TRIGGER boom BEFORE INSERT ON merges"
	                     " WHEN NEW.user = 'erin'"
	                     " BEGIN SELECT RAISE(ABORT, 'injected'); END",
	                     NULL, NULL, NULL),
	        SQLITE_OK);
	sqlite3_close(db);

	for (i = 0; i < 3; i++)
		make_entry(&entries[i], i);
	memset(&rec, 0, sizeof(rec));
	rec.status = BF_MERGE_RUNNING;
	assert_int_equal(bf_state_merge_checkpoint(state, "erin", &rec, entries,
	                                           3, &error),
	                 -1);
	assert_contains(error, f->path);
	assert_contains(error, "injected");
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(bf_state_journal_iter(state, "erin", journal_iter_cb,
	                                       &ctx, &error),
	                 0);
	assert_int_equal(ctx.count, 0);
	assert_int_equal(bf_state_merge_get(state, "erin", &got, &error), 0);
	/* The handle still works after the rollback. */
	assert_int_equal(bf_state_merge_checkpoint(state, "frank", &rec,
	                                           entries, 3, &error),
	                 0);
	assert_int_equal(bf_state_journal_iter(state, "frank", journal_iter_cb,
	                                       &ctx, &error),
	                 0);
	assert_int_equal(ctx.count, 3);
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
	assert_int_equal(
	        window_open_full(state, "A", NOW, NOW + 1000, excl, &prev), 1);
	assert_null(prev.name);
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
	assert_int_equal(window_open_full(state, "B", NOW + 40, 0,
	                                  BF_WINDOW_OPEN_REPLACE, &prev),
	                 1);
	assert_string_equal(prev.name, "A");
	bf_window_clear(&prev);
	assert_window(state, NOW + 41, "B", NOW + 40, 0);
	/* the closed A does not come back when B is closed */
	assert_int_equal(bf_state_window_close(state, NOW + 42, &error), 1);
	assert_int_equal(
	        bf_state_window_current(state, NOW + 43, &prev, &error), 0);

	/* with B open again, A is refused with B's name, then allowed
	   with replace: a new window A, opened now */
	assert_int_equal(window_open_full(state, "B", NOW + 50, 0, excl, &prev),
	                 1);
	assert_null(prev.name);
	assert_int_equal(window_open_full(state, "A", NOW + 60, 0, excl, &prev),
	                 0);
	assert_string_equal(prev.name, "B");
	bf_window_clear(&prev);
	assert_int_equal(window_open_full(state, "A", NOW + 70, 0,
	                                  BF_WINDOW_OPEN_REPLACE, &prev),
	                 1);
	assert_string_equal(prev.name, "B");
	bf_window_clear(&prev);
	assert_window(state, NOW + 71, "A", NOW + 70, 0);
	assert_int_equal(bf_state_window_close(state, NOW + 80, &error), 1);
	/* closed: A opens again without replace, as a new window */
	assert_int_equal(
	        window_open_full(state, "A", NOW + 90, NOW + 200, excl, &prev),
	        1);
	assert_null(prev.name);
	assert_window(state, NOW + 91, "A", NOW + 90, NOW + 200);

	/* A window past its end is not in force: another name opens
	   without replace, and the same name opens as a new window */
	assert_int_equal(
	        window_open_full(state, "C", NOW + 200, 0, excl, &prev), 1);
	assert_null(prev.name);
	assert_window(state, NOW + 201, "C", NOW + 200, 0);
	assert_int_equal(bf_state_window_close(state, NOW + 210, &error), 1);
	assert_int_equal(
	        window_open_full(state, "C", NOW + 220, NOW + 230, excl, &prev),
	        1);
	assert_int_equal(
	        window_open_full(state, "C", NOW + 240, 0, excl, &prev), 1);
	assert_null(prev.name);
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
				struct bf_state *s = NULL;
				struct bf_window prev;
				const char *cerror;
				char *oerror = NULL, name[16], c;
				unsigned int seen;
				int ret;

				close(go[1]);
				if (bf_state_open(f->uri, &s, &oerror) < 0) {
					fprintf(stderr, "child: %s\n", oerror);
					_exit(1);
				}
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
		assert_int_equal(wait_children(pids, WINDOW_PROCS), 0);
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

static void test_dedup(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key key, key2, keys[4];
	struct bf_dedup_first first, firsts[4];
	struct bf_dedup_stats stats;
	const char *error;
	uint64_t purged;
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

	assert_int_equal(bf_state_dedup_stats(state, NOW + 10, &stats, &error),
	                 0);
	assert_int_equal(stats.records, 4);
	assert_int_equal(stats.delivered, 1);
	assert_int_equal(stats.expired, 0);

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

	assert_int_equal(bf_state_dedup_stats(state, NOW + 120, &stats, &error),
	                 0);
	assert_int_equal(stats.records, 1);
	assert_int_equal(stats.delivered, 0);
	assert_int_equal(stats.expired, 3);
	assert_int_equal(
	        bf_state_dedup_purge(state, NOW + 120, &purged, &error), 0);
	assert_int_equal(purged, 3);
	assert_int_equal(bf_state_dedup_stats(state, NOW + 120, &stats, &error),
	                 0);
	assert_int_equal(stats.records, 1);
	assert_int_equal(stats.expired, 0);
	/* Purge at the expiry time itself. */
	assert_int_equal(
	        bf_state_dedup_purge(state, NOW + 150, &purged, &error), 0);
	assert_int_equal(purged, 1);

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
	assert_int_equal(bf_state_dedup_check_and_set(state, &key2, NOW, 100,
	                                              "mx", "Q", NULL, &error),
	                 -1);
	assert_contains(error, "invalid argument");
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 0, "mx",
	                                              "Q", NULL, &error),
	                 -1);
	bf_state_close(&state);
}

/* A purge walks the table in chunks: more records than one chunk, expired
   and live ones interleaved. */
static void test_dedup_purge_large(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key keys[100];
	struct bf_dedup_stats stats;
	char rcpts[100][32];
	const char *error;
	unsigned int i, j, n;
	uint64_t purged;
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
	assert_int_equal(bf_state_dedup_stats(state, NOW + 100, &stats, &error),
	                 0);
	assert_int_equal(stats.records, 2500);
	assert_int_equal(stats.expired, 2500);
	assert_int_equal(
	        bf_state_dedup_purge(state, NOW + 100, &purged, &error), 0);
	assert_int_equal(purged, 2500);
	assert_int_equal(bf_state_dedup_stats(state, NOW + 100, &stats, &error),
	                 0);
	assert_int_equal(stats.records, 2500);
	assert_int_equal(stats.expired, 0);
	assert_int_equal(
	        bf_state_dedup_purge(state, NOW + 100, &purged, &error), 0);
	assert_int_equal(purged, 0);
	assert_int_equal(bf_state_dedup_purge(state, NOW + 500, NULL, &error),
	                 0);
	assert_int_equal(bf_state_dedup_stats(state, NOW, &stats, &error), 0);
	assert_int_equal(stats.records + stats.expired, 0);
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
			struct bf_state *s = NULL;
			struct bf_dedup_key key;
			const char *cerror;
			char *error = NULL, c;
			unsigned int op, k;
			int ret;

			close(go[1]);
			if (bf_state_open(f->uri, &s, &error) < 0) {
				fprintf(stderr, "child: %s\n", error);
				_exit(1);
			}
			/* Start together. */
			(void)read(go[0], &c, 1);
			for (op = 0; op < CAS_OPS; op++) {
				/* Every process walks the keys in its own
				   order. */
				k = (op * 7 + i * 13) % CAS_KEYS;
				make_key(&key, "w", "rcpt@example.org", k);
				ret = bf_state_dedup_check_and_set(
				        s, &key, NOW, 3600, "mx", "Q", NULL,
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
	assert_int_equal(wait_children(pids, CAS_PROCS), 0);
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
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", b, NOW,
	                                        60, NULL, &error),
	                 0);
	/* Another name is independent. */
	assert_int_equal(bf_state_lease_acquire(state, "merge/bob", b, NOW, 60,
	                                        NULL, &error),
	                 1);
	/* Acquiring our own lease renews it. */
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", a,
	                                        NOW + 50, 60, NULL, &error),
	                 1);
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", b,
	                                        NOW + 100, 60, NULL, &error),
	                 0);
	assert_int_equal(bf_state_lease_renew(state, "merge/alice", a,
	                                      NOW + 100, 60, &error),
	                 1);
	assert_int_equal(bf_state_lease_renew(state, "merge/alice", b,
	                                      NOW + 100, 60, &error),
	                 0);
	/* Expiry-based takeover of a holder on another host: not before
	   the lease expires (now + ttl), then at once. */
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", b,
	                                        NOW + 159, 60, NULL, &error),
	                 0);
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", b,
	                                        NOW + 160, 60, NULL, &error),
	                 1);
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
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", a,
	                                        NOW + 161, 60, NULL, &error),
	                 1);

	/* A holder string we did not make is never treated as dead. */
	assert_int_equal(bf_state_lease_acquire(state, "odd", "x", NOW, 60,
	                                        NULL, &error),
	                 1);
	assert_int_equal(
	        bf_state_lease_acquire(state, "odd", a, NOW, 60, NULL, &error),
	        0);

	assert_int_equal(
	        bf_state_lease_acquire(state, "", a, NOW, 60, NULL, &error),
	        -1);
	assert_int_equal(
	        bf_state_lease_acquire(state, "x", a, NOW, 0, NULL, &error),
	        -1);
	bf_state_close(&state);
}

/* The holder process of this host is killed with SIGKILL: its lease is
   taken over at once, without waiting for the ttl. */
static void test_lease_takeover_after_kill(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	char owner[128], *holder;
	const char *error;
	int ready[2], status;
	pid_t pid;
	char c;

	assert_int_equal(pipe(ready), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct bf_state *s = NULL;
		char child_owner[128], *err = NULL;
		const char *cerr;

		close(ready[0]);
		bf_lease_owner(child_owner, sizeof(child_owner));
		if (bf_state_open(f->uri, &s, &err) < 0 ||
		    bf_state_lease_acquire(s, "merge/alice", child_owner, NOW,
		                           3600, NULL, &cerr) != 1)
			_exit(1);
		(void)write(ready[1], "x", 1);
		for (;;)
			pause();
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);

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
	assert_int_equal(wait_children(&dead, 1), 0);
	assert_int_equal(gethostname(host, sizeof(host)), 0);
	bf_lease_owner(owner, sizeof(owner));
	for (i = 0; i < sizeof(spaces) / sizeof(spaces[0]); i++) {
		snprintf(foreign, sizeof(foreign), "%s:%ld:%s", host,
		         (long)dead, spaces[i]);
		assert_int_equal(bf_state_lease_acquire(state, "merge/alice",
		                                        foreign, NOW, 60, NULL,
		                                        &error),
		                 1);
		assert_int_equal(bf_state_lease_acquire(state, "merge/alice",
		                                        owner, NOW + 1, 60,
		                                        &holder, &error),
		                 0);
		assert_string_equal(holder, foreign);
		free(holder);
		assert_int_equal(
		        bf_state_slot_acquire(state, host, 1, foreign, NOW, 60,
		                              &(unsigned int){0}, &error),
		        1);
		assert_int_equal(
		        bf_state_slot_acquire(state, host, 1, owner, NOW + 1,
		                              60, &(unsigned int){0}, &error),
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
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", foreign,
	                                        NOW, 60, NULL, &error),
	                 1);
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", owner,
	                                        NOW + 1, 60, NULL, &error),
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
	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", owner,
	                                        NOW, 600, NULL, &error),
	                 1);
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
	assert_int_equal(bf_state_slot_acquire(state, "h1", 3, a, NOW, 60,
	                                       &slot, &error),
	                 1);
	assert_int_equal(slot, 0);
	assert_int_equal(bf_state_slot_acquire(state, "h1", 3, a, NOW, 60,
	                                       &slot, &error),
	                 1);
	assert_int_equal(slot, 1);
	assert_int_equal(bf_state_slot_acquire(state, "h1", 3, b, NOW, 60,
	                                       &slot, &error),
	                 1);
	assert_int_equal(slot, 2);
	slot = 99;
	assert_int_equal(bf_state_slot_acquire(state, "h1", 3, b, NOW, 60,
	                                       &slot, &error),
	                 0);
	assert_int_equal(slot, 99);
	/* Hosts are separate. */
	assert_int_equal(bf_state_slot_acquire(state, "h2", 1, b, NOW, 60,
	                                       &slot, &error),
	                 1);
	assert_int_equal(slot, 0);

	assert_int_equal(bf_state_slot_release(state, "h1", 1, b, &error), 0);
	assert_int_equal(bf_state_slot_release(state, "h1", 1, a, &error), 1);
	assert_int_equal(bf_state_slot_acquire(state, "h1", 3, b, NOW, 60,
	                                       &slot, &error),
	                 1);
	assert_int_equal(slot, 1);
	assert_int_equal(
	        bf_state_slot_renew(state, "h1", 1, b, NOW + 30, 60, &error),
	        1);
	assert_int_equal(
	        bf_state_slot_renew(state, "h1", 0, b, NOW + 30, 60, &error),
	        0);
	/* Expired slots are free again: slot 0 and 2 expired at NOW + 60,
	   slot 1 was renewed until NOW + 90. */
	assert_int_equal(bf_state_slot_acquire(state, "h1", 3, b, NOW + 60, 60,
	                                       &slot, &error),
	                 1);
	assert_int_equal(slot, 0);
	assert_int_equal(bf_state_slot_acquire(state, "h1", 3, b, NOW + 60, 60,
	                                       &slot, &error),
	                 1);
	assert_int_equal(slot, 2);
	assert_int_equal(bf_state_slot_acquire(state, "h1", 3, b, NOW + 60, 60,
	                                       &slot, &error),
	                 0);

	assert_int_equal(bf_state_slot_acquire(state, "h1", 0, b, NOW, 60,
	                                       &slot, &error),
	                 -1);
	assert_int_equal(
	        bf_state_slot_acquire(state, "", 3, b, NOW, 60, &slot, &error),
	        -1);
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
			struct bf_state *s = NULL;
			char owner[128], *error = NULL, c;
			const char *cerror;
			unsigned int round, slot, now_holders, max;
			int ret;

			close(go[1]);
			bf_lease_owner(owner, sizeof(owner));
			if (bf_state_open(f->uri, &s, &error) < 0)
				_exit(1);
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
	assert_int_equal(wait_children(pids, SLOT_PROCS), 0);
	assert_int_equal(atomic_load(&shared[3]), 0);
	assert_true(atomic_load(&shared[1]) <= SLOTS);
	assert_true(atomic_load(&shared[1]) >= 1);
	assert_true(atomic_load(&shared[2]) > 0);
	munmap(shared, sizeof(*shared) * (4 + SLOTS));
}

/* A merge process killed while holding a slot frees it at once. */
static void test_slot_takeover_after_kill(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	char owner[128];
	const char *error;
	unsigned int slot;
	int ready[2], status;
	pid_t pid;
	char c;

	assert_int_equal(pipe(ready), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct bf_state *s = NULL;
		char child_owner[128], *err = NULL;
		const char *cerr;
		unsigned int child_slot;

		close(ready[0]);
		bf_lease_owner(child_owner, sizeof(child_owner));
		if (bf_state_open(f->uri, &s, &err) < 0 ||
		    bf_state_slot_acquire(s, "h", 1, child_owner, NOW, 3600,
		                          &child_slot, &cerr) != 1)
			_exit(1);
		(void)write(ready[1], "x", 1);
		for (;;)
			pause();
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	bf_lease_owner(owner, sizeof(owner));
	assert_int_equal(bf_state_slot_acquire(state, "h", 1, owner, NOW + 1,
	                                       60, &slot, &error),
	                 0);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(bf_state_slot_acquire(state, "h", 1, owner, NOW + 2,
	                                       60, &slot, &error),
	                 1);
	assert_int_equal(slot, 0);
	bf_state_close(&state);
}

/* ---- Redis ---- */

#ifdef BF_HAVE_REDIS

/* redis-server: $BF_REDIS_SERVER, or the first one in PATH or the usual
   places.  NULL: not installed (the Redis group is then skipped). */
static const char *redis_server_path(void)
{
	static char found[512];
	const char *env = getenv("BF_REDIS_SERVER");
	const char *path = getenv("PATH");
	char dirs[2048], *dir, *save = NULL;

	if (env != NULL && *env != '\0')
		return access(env, X_OK) == 0 ? env : NULL;
	snprintf(dirs, sizeof(dirs), "%s:/usr/bin:/usr/sbin:/usr/local/bin",
	         path != NULL ? path : "");
	for (dir = strtok_r(dirs, ":", &save); dir != NULL;
	     dir = strtok_r(NULL, ":", &save)) {
		snprintf(found, sizeof(found), "%s/redis-server", dir);
		if (access(found, X_OK) == 0)
			return found;
	}
	return NULL;
}

/* A TCP port free right now on 127.0.0.1 (others run tests on this
   machine at the same time: never a fixed one). */
static int free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* A connection of the test itself, to look at or tamper with the data. */
static redisContext *redis_raw(const struct fixture *f, const char *password)
{
	redisContext *c = f->port != 0 ? redisConnect("127.0.0.1", f->port)
	                               : redisConnectUnix(f->sock);
	redisReply *reply;

	if (c == NULL || c->err != 0) {
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	if (password != NULL) {
		reply = redisCommand(c, "AUTH %s", password);
		freeReplyObject(reply);
	}
	return c;
}

static void redis_log_dump(const struct fixture *f)
{
	char path[160], buf[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/redis.log", f->dir);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n > 0) {
		buf[n] = '\0';
		print_error("redis-server log:\n%s\n", buf);
	}
}

/* Starts redis-server in f->dir: always on f->sock, on 127.0.0.1:port
   when port is not 0, with requirepass when password is not NULL.
   Append-only with fsync on every write, so that a restart keeps the
   data.  Returns 0 once it answers PING, -1 when it exited at startup
   (the port was taken meanwhile). */
static int redis_try_start(struct fixture *f, int port, const char *password)
{
	const char *server = redis_server_path();
	char port_str[16], log[160];
	redisContext *c;
	redisReply *reply;
	int i, status;
	bool up = false;

	assert_non_null(server);
	snprintf(port_str, sizeof(port_str), "%d", port);
	snprintf(log, sizeof(log), "%s/redis.log", f->dir);
	f->port = port;
	f->redis_pid = fork();
	assert_true(f->redis_pid >= 0);
	if (f->redis_pid == 0) {
		const char *argv[40];
		int n = 0, fd = open("/dev/null", O_RDWR);

		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		argv[n++] = "redis-server";
		argv[n++] = "--port";
		argv[n++] = port_str;
		argv[n++] = "--bind";
		argv[n++] = "127.0.0.1";
		argv[n++] = "--unixsocket";
		argv[n++] = f->sock;
		argv[n++] = "--unixsocketperm";
		argv[n++] = "700";
		argv[n++] = "--dir";
		argv[n++] = f->dir;
		argv[n++] = "--logfile";
		argv[n++] = log;
		argv[n++] = "--save";
		argv[n++] = "";
		argv[n++] = "--appendonly";
		argv[n++] = "yes";
		argv[n++] = "--appendfsync";
		argv[n++] = "always";
		argv[n++] = "--daemonize";
		argv[n++] = "no";
		if (password != NULL) {
			argv[n++] = "--requirepass";
			argv[n++] = password;
		}
		argv[n] = NULL;
		execv(server, (char *const *)argv);
		_exit(127);
	}
	for (i = 0; i < 500 && !up; i++) {
		if (waitpid(f->redis_pid, &status, WNOHANG) == f->redis_pid) {
			f->redis_pid = 0;
			redis_log_dump(f);
			return -1;
		}
		c = redis_raw(f, password);
		if (c != NULL) {
			reply = redisCommand(c, "PING");
			up = reply != NULL && reply->type == REDIS_REPLY_STATUS;
			freeReplyObject(reply);
			redisFree(c);
		}
		if (!up)
			usleep(10000);
	}
	if (!up) {
		redis_log_dump(f);
		fail_msg("redis-server did not answer within 5 s");
	}
	return 0;
}

static void redis_start(struct fixture *f, int port, const char *password)
{
	if (redis_try_start(f, port, password) < 0)
		fail_msg("redis-server exited at startup");
}

static void redis_stop(struct fixture *f)
{
	if (f->redis_pid <= 0)
		return;
	kill(f->redis_pid, SIGCONT);
	kill(f->redis_pid, SIGTERM);
	waitpid(f->redis_pid, NULL, 0);
	f->redis_pid = 0;
}

static int setup_redis(void **statep)
{
	struct fixture *f;

	if (setup(statep) < 0)
		return -1;
	f = *statep;
	snprintf(f->sock, sizeof(f->sock), "%s/redis.sock", f->dir);
	snprintf(f->uri, sizeof(f->uri), "redis+unix://%s", f->sock);
	redis_start(f, 0, NULL);
	return 0;
}

static void test_redis_uris(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state, *other;
	struct bf_dedup_key key;
	const char *error;
	char uri[400], *oerror;
	int port = free_port();

	static const struct {
		const char *uri, *want;
	} bad[] = {
	        {"redis:localhost", "expected redis://"},
	        {"redis://", "no host"},
	        {"redis://:6379/0", "no host"},
	        {"redis://h:0/0", "invalid port"},
	        {"redis://h:99999/0", "invalid port"},
	        {"redis://h:63x/0", "invalid port"},
	        {"redis://h:6379/zero", "invalid database"},
	        {"redis://h:6379/0?bogus=1", "unknown option \"bogus\""},
	        {"redis://h:6379/0?db=1", "unknown option \"db\""},
	        {"redis://h:6379/0?timeout=0", "invalid timeout"},
	        {"redis://h:6379/0?timeout=soon", "invalid timeout"},
	        {"redis://h:6379/0?prefix=%zz", "invalid prefix"},
	        {"redis://h:6379/0?timeout", "option without value"},
	        {"redis://alice@h:6379/0", "no password"},
	        {"redis://[::1/0", "invalid IPv6"},
	        {"redis+unix:relative.sock", "no absolute socket path"},
	        {"redis+unix://", "no absolute socket path"},
	        {"redis+unix:///x.sock?db=two", "invalid db"},
	        {"redis+unix:///x.sock?password=", "invalid password"},
	        {"redis+unix:///x.sock?user=", "invalid user"},
	        {"redis://h:6379/0?password=x", "unknown option \"password\""},
	        {"rediss://h:6380/0", "TLS is not supported"},
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		oerror = open_error(bad[i].uri);
		assert_contains(oerror, bad[i].want);
		free(oerror);
	}

	/* Nothing listens: the error names the server, never the
	   password, and says what to check. */
	snprintf(uri, sizeof(uri), "redis://:Sekr1t-pw@127.0.0.1:%d/0", port);
	oerror = open_error(uri);
	snprintf(uri, sizeof(uri),
	         "state store redis://127.0.0.1:%d/0: connecting: connection "
	         "refused (is redis-server running?)",
	         port);
	assert_string_equal(oerror, uri);
	free(oerror);
	snprintf(uri, sizeof(uri), "redis+unix://%s/none.sock", f->dir);
	oerror = open_error(uri);
	assert_contains(oerror, "none.sock");
	assert_contains(oerror, "is redis-server running?");
	free(oerror);

	/* Options; the database and the prefix separate stores. */
	snprintf(uri, sizeof(uri), "%s?db=2&timeout=500&prefix=x%%3A", f->uri);
	state = open_ok(uri);
	assert_string_equal(bf_state_uri(state), uri);
	other = open_ok(f->uri);
	make_key(&key, "w", "a@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 1);
	assert_int_equal(bf_state_dedup_check_and_set(other, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 1);
	bf_state_close(&other);
	snprintf(uri, sizeof(uri), "%s?db=2", f->uri);
	other = open_ok(uri);
	assert_int_equal(bf_state_dedup_check_and_set(other, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 1);
	bf_state_close(&other);
	snprintf(uri, sizeof(uri), "%s?prefix=x:&db=2", f->uri);
	other = open_ok(uri);
	assert_int_equal(bf_state_dedup_check_and_set(other, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 0);
	bf_state_close(&other);
	bf_state_close(&state);

	/* A database the server does not have. */
	snprintf(uri, sizeof(uri), "%s?db=999", f->uri);
	oerror = open_error(uri);
	assert_contains(oerror, "cannot select database 999");
	free(oerror);
}

/* TCP on 127.0.0.1 with requirepass: redis://:password@host:port/db and
   redis://user:password@..., a wrong or missing password. */
static void test_redis_tcp_password(void **statep)
{
	struct fixture *f = *statep;
	static const char pw[] = "pw-Zq8x/7";
	struct bf_state *state, *other;
	struct bf_dedup_key key;
	const char *error;
	char uri[300], *oerror;
	int attempt;

	redis_stop(f);
	/* The port may be taken between free_port() and the server's bind:
	   then it exits at once, and another port is tried. */
	for (attempt = 0; redis_try_start(f, free_port(), pw) < 0; attempt++)
		assert_true(attempt < 5);
	snprintf(uri, sizeof(uri), "redis://:pw-Zq8x%%2F7@127.0.0.1:%d/3",
	         f->port);
	state = open_ok(uri);
	make_key(&key, "w", "a@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 0);
	/* The ACL form, with the default user. */
	snprintf(uri, sizeof(uri),
	         "redis://default:pw-Zq8x%%2F7@localhost:%d/3?timeout=1000",
	         f->port);
	other = open_ok(uri);
	assert_int_equal(bf_state_dedup_check_and_set(other, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 0);
	/* What the milter and the plugin log never shows the password. */
	assert_null(strstr(bf_state_uri(other), "Zq8x"));
	assert_contains(bf_state_uri(other), "redis://default:***@localhost:");
	bf_state_close(&other);
	/* On the unix socket, user and password are options. */
	snprintf(uri, sizeof(uri),
	         "redis+unix://%s?db=3&user=default&password=pw-Zq8x%%2F7",
	         f->sock);
	other = open_ok(uri);
	assert_null(strstr(bf_state_uri(other), "Zq8x"));
	assert_contains(bf_state_uri(other), "&password=***");
	assert_int_equal(bf_state_dedup_check_and_set(other, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 0);
	bf_state_close(&other);
	/* Another database is another store. */
	snprintf(uri, sizeof(uri), "redis://:pw-Zq8x%%2F7@127.0.0.1:%d/4",
	         f->port);
	other = open_ok(uri);
	assert_int_equal(bf_state_dedup_check_and_set(other, &key, NOW, 60,
	                                              "mx", "Q", NULL, &error),
	                 1);
	bf_state_close(&other);
	bf_state_close(&state);

	snprintf(uri, sizeof(uri), "redis://:not-it@127.0.0.1:%d/3", f->port);
	oerror = open_error(uri);
	assert_contains(oerror, "authentication failed");
	assert_null(strstr(oerror, "not-it"));
	free(oerror);
	snprintf(uri, sizeof(uri), "redis://127.0.0.1:%d/3", f->port);
	oerror = open_error(uri);
	assert_contains(oerror, "wants a password");
	free(oerror);
}

/* redis-server stops in the middle: every call fails with an error that
   names the server; once it is back the same handle works again by
   itself, with the data it had. */
static void test_redis_restart(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key key, key2;
	struct bf_merge_record rec;
	struct bf_window w;
	const char *error;
	char want[512], *holder = NULL;

	make_key(&key, "w", "a@example.org", 1);
	make_key(&key2, "w", "b@example.org", 2);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 1);
	assert_int_equal(
	        bf_state_window_open(state, "restore-1", NOW, 0, &error), 0);

	redis_stop(f);
	snprintf(want, sizeof(want),
	         "state store %s: check-and-set: no socket %s (is "
	         "redis-server running?)",
	         f->uri, f->sock);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key2, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 -1);
	assert_string_equal(error, want);
	assert_int_equal(bf_state_window_current(state, NOW, &w, &error), -1);
	assert_contains(error, "is redis-server running?");
	assert_int_equal(bf_state_lease_acquire(state, "merge/a", "h:1:x", NOW,
	                                        60, &holder, &error),
	                 -1);
	assert_null(holder);
	assert_int_equal(bf_state_merge_get(state, "a", &rec, &error), -1);
	assert_contains(error, f->uri);

	/* Back: the next call reconnects, and the data survived. */
	redis_start(f, 0, NULL);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 0);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key2, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 1);
	assert_int_equal(bf_state_window_current(state, NOW, &w, &error), 1);
	assert_string_equal(w.name, "restore-1");
	bf_window_clear(&w);

	/* A restart between two calls costs no failed call: the closed
	   connection is noticed before sending. */
	redis_stop(f);
	redis_start(f, 0, NULL);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key2, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 0);
	bf_state_close(&state);
}

/* A hung redis-server (SIGSTOP): calls fail after the timeout instead of
   hanging a login, and work again when it continues. */
static void test_redis_timeout(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state;
	struct bf_dedup_key key;
	const char *error;
	char uri[300];
	double start;

	snprintf(uri, sizeof(uri), "%s?timeout=300", f->uri);
	state = open_ok(uri);
	make_key(&key, "w", "a@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 1);
	assert_int_equal(kill(f->redis_pid, SIGSTOP), 0);
	start = now_mono();
	make_key(&key, "w", "a@example.org", 2);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 -1);
	assert_true(now_mono() - start < 1.5);
	assert_contains(error, "no answer within 300 ms");
	assert_contains(error, f->uri);
	/* A new connection is accepted by the kernel but not answered
	   either. */
	start = now_mono();
	assert_int_equal(bf_state_window_close(state, NOW, &error), -1);
	assert_true(now_mono() - start < 1.5);
	assert_contains(error, "no answer within 300 ms");
	assert_int_equal(kill(f->redis_pid, SIGCONT), 0);
	make_key(&key, "w", "a@example.org", 3);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 1);
	bf_state_close(&state);
}

/* A caller's wait limit on Redis: a hung server (SIGSTOP) on the
   connection in use, and a server that accepts connections and never
   answers (a socket nobody reads), each cost about the limit instead of
   the URI's timeout (2000 ms by default); 0 restores that. */
static void test_redis_wait_limit(void **statep)
{
	struct fixture *f = *statep;
	struct sockaddr_un sun;
	struct bf_state *state;
	struct bf_dedup_key key;
	const char *error;
	double start, took;
	int fd;

	state = open_ok(f->uri);
	make_key(&key, "w", "a@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 1);
	bf_state_set_wait_limit(state, 200);
	assert_int_equal(kill(f->redis_pid, SIGSTOP), 0);
	start = now_mono();
	make_key(&key, "w", "a@example.org", 2);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 -1);
	took = now_mono() - start;
	assert_true(took >= 0.19);
	assert_true(took < 1.5);
	assert_contains(error, "no answer within 200 ms");
	assert_contains(error, "wait limit");

	bf_state_set_wait_limit(state, 0);
	start = now_mono();
	assert_int_equal(bf_state_window_close(state, NOW, &error), -1);
	took = now_mono() - start;
	assert_true(took >= 1.99);
	assert_contains(error, "no answer within 2000 ms");
	assert_contains(error, "?timeout=MS");

	/* The server goes away and something else listens on its socket,
	   accepting connections and never answering: the reconnect is
	   bounded by the limit too. */
	redis_stop(f);
	unlink(f->sock);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_true(strlen(f->sock) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, f->sock, strlen(f->sock) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 16), 0);
	bf_state_set_wait_limit(state, 200);
	start = now_mono();
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 -1);
	took = now_mono() - start;
	assert_true(took >= 0.19);
	assert_true(took < 1.5);
	assert_contains(error, "no answer within 200 ms");
	close(fd);
	bf_state_close(&state);
}

/* The server forgot the scripts (SCRIPT FLUSH, as after a restart): they
   are sent whole again. */
static void test_redis_noscript(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key key;
	redisContext *c;
	redisReply *reply;
	const char *error;
	int i;

	make_key(&key, "w", "a@example.org", 1);
	for (i = 0; i < 3; i++) {
		c = redis_raw(f, NULL);
		assert_non_null(c);
		reply = redisCommand(c, "SCRIPT FLUSH");
		assert_non_null(reply);
		freeReplyObject(reply);
		redisFree(c);
		assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW,
		                                              600, "mx", "Q",
		                                              NULL, &error),
		                 i == 0 ? 1 : 0);
		assert_int_equal(bf_state_lease_acquire(state, "l", "h:1:x",
		                                        NOW, 60, NULL, &error),
		                 1);
	}
	bf_state_close(&state);
}

/* A checkpoint that cannot store its record stores no journal entry
   either: the script checks every key before its first write.  The
   failure is injected by giving the record's key the wrong type. */
static void test_redis_checkpoint_atomic(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_journal_entry entries[3];
	struct journal_iter_ctx ctx;
	struct bf_merge_record rec, got;
	redisContext *c = redis_raw(f, NULL);
	redisReply *reply;
	const char *error;
	unsigned int i;

	assert_non_null(c);
	reply = redisCommand(c, "SET backfill:merge:erin junk");
	freeReplyObject(reply);
	for (i = 0; i < 3; i++)
		make_entry(&entries[i], i);
	memset(&rec, 0, sizeof(rec));
	rec.status = BF_MERGE_RUNNING;
	assert_int_equal(bf_state_merge_checkpoint(state, "erin", &rec, entries,
	                                           3, &error),
	                 -1);
	assert_contains(error, f->uri);
	assert_contains(error, "WRONGTYPE");
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(bf_state_journal_iter(state, "erin", journal_iter_cb,
	                                       &ctx, &error),
	                 0);
	assert_int_equal(ctx.count, 0);
	reply = redisCommand(c, "EXISTS backfill:journal:erin");
	assert_int_equal(reply->integer, 0);
	freeReplyObject(reply);
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
	redisFree(c);
	bf_state_close(&state);
}

/* Key layout: records carry a Redis TTL (they expire by themselves, a
   little after their expiry by the caller's clock), leases and merge
   records do not; the window name is escaped so keys stay unambiguous. */
static void test_redis_keys_and_ttl(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key key, keys[4];
	struct bf_merge_record rec;
	redisContext *c = redis_raw(f, NULL);
	redisReply *reply;
	const char *error;
	char hex[BF_FP_HEX_SIZE], name[256];
	int results[4];

	assert_non_null(c);
	make_key(&key, "a:b", "x@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 3600,
	                                              "mx1", "Q1", NULL,
	                                              &error),
	                 1);
	/* Would be the same key without escaping. */
	make_key(&key, "a%3Ab", "x@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 3600,
	                                              "mx1", "Q1", NULL,
	                                              &error),
	                 1);
	bf_fp_to_hex(key.fingerprint, hex);
	snprintf(name, sizeof(name), "backfill:dedup:a%%3Ab:%s:x@example.org",
	         hex);
	reply = redisCommand(c, "PTTL %s", name);
	assert_non_null(reply);
	assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
	assert_true(reply->integer > 3600 * 1000LL);
	assert_true(reply->integer <= (3600 + 300) * 1000LL);
	freeReplyObject(reply);
	reply = redisCommand(c, "GET %s", name);
	assert_non_null(reply);
	assert_string_equal(reply->str, "1700000000:1700003600:0:0:3:mx1Q1");
	freeReplyObject(reply);
	/* mark_delivered keeps the TTL. */
	assert_int_equal(
	        bf_state_dedup_mark_delivered(state, &key, NOW + 5, &error), 1);
	reply = redisCommand(c, "PTTL %s", name);
	assert_true(reply->integer > 3600 * 1000LL);
	freeReplyObject(reply);

	/* All recipients of a message in one round trip: one command. */
	make_key(&keys[0], "w", "r1@example.org", 7);
	make_key(&keys[1], "w", "r2@example.org", 7);
	make_key(&keys[2], "w", "r1@example.org", 7);
	make_key(&keys[3], "w", "r3@example.org", 7);
	reply = redisCommand(c, "CONFIG RESETSTAT");
	freeReplyObject(reply);
	assert_int_equal(
	        bf_state_dedup_check_and_set_many(state, keys, 4, NOW, 60, "mx",
	                                          "Q", results, NULL, &error),
	        0);
	assert_int_equal(results[0] + results[1] + results[2] + results[3], 3);
	reply = redisCommand(c, "INFO commandstats");
	assert_non_null(strstr(reply->str, "cmdstat_evalsha:calls=1,"));
	assert_null(strstr(reply->str, "cmdstat_eval:"));
	/* (commands inside the script are counted too: set, get) */
	assert_null(strstr(reply->str, "cmdstat_select:"));
	freeReplyObject(reply);

	assert_int_equal(bf_state_lease_acquire(state, "merge/alice", "h:1:x",
	                                        NOW, 60, NULL, &error),
	                 1);
	reply = redisCommand(c, "PTTL backfill:lease:merge/alice");
	assert_int_equal(reply->integer, -1);
	freeReplyObject(reply);
	memset(&rec, 0, sizeof(rec));
	assert_int_equal(bf_state_merge_put(state, "alice", &rec, &error), 0);
	reply = redisCommand(c, "HGET backfill:merge:alice status");
	assert_string_equal(reply->str, "pending");
	freeReplyObject(reply);
	reply = redisCommand(c, "ZSCORE backfill:merges alice");
	assert_string_equal(reply->str, "0");
	freeReplyObject(reply);
	redisFree(c);
	bf_state_close(&state);
}

/* A handle inherited over fork() is not shared with the parent: the
   child connects anew (two processes reading one socket would take each
   other's replies). */
static void test_redis_fork(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key key;
	const char *error;
	unsigned int i;
	pid_t pid;
	int status;

	make_key(&key, "w", "a@example.org", 0);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 600,
	                                              "mx", "Q", NULL, &error),
	                 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (i = 1; i <= 200; i++) {
			make_key(&key, "child", "a@example.org", i);
			if (bf_state_dedup_check_and_set(state, &key, NOW, 600,
			                                 "mx", "Q", NULL,
			                                 &error) != 1)
				_exit(1);
		}
		_exit(0);
	}
	for (i = 1; i <= 200; i++) {
		make_key(&key, "parent", "a@example.org", i);
		assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW,
		                                              600, "mx", "Q",
		                                              NULL, &error),
		                 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	bf_state_close(&state);
}

#endif /* BF_HAVE_REDIS */

#define T(name)  cmocka_unit_test_setup_teardown(name, setup, teardown)
#define TR(name) cmocka_unit_test_setup_teardown(name, setup_redis, teardown)

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
	        T(test_open_missing_dir),
	        T(test_open_corrupt),
	        T(test_open_newer_schema),
	        T(test_open_unwritable),
	        T(test_busy_timeout),
	        T(test_wait_limit),
	        T(test_merge_status_names),
	        T(test_merge_records),
	        T(test_journal),
	        T(test_checkpoint_atomic),
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
	        TR(test_redis_keys_and_ttl),
	        TR(test_redis_fork),
	};

	if (redis_server_path() == NULL) {
		/* Built with hiredis but the server is missing here:
		   scripts/install-deps installs it. */
		fprintf(stderr, "redis-server not found (install redis-server "
		                "or set BF_REDIS_SERVER): the Redis backend is "
		                "NOT tested\n");
		return failed != 0 ? 1 : 77;
	}
	failed += cmocka_run_group_tests_name("redis", redis_tests, NULL, NULL);
#endif
	return failed != 0 ? 1 : 0;
}
