/* The SQLite backend's own tests: the file, its mode and group, a
   directory that is missing or not writable, a damaged or newer file,
   what a lock held by another process costs, and a checkpoint that fails
   half-way (a trigger makes it fail). */

#include "test-state.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- open, files, URIs ---- */

void test_open_creates_group_writable(void **statep)
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

/* bf_state_uri_check(): what bf_state_open() would refuse for the URI's
   syntax, with the same message, and nothing opened, created or
   connected for a good one (backfill-milter -n). */
void test_uri_check(void **statep)
{
	struct fixture *f = *statep;
	char uri[320], never[200], *error, *oerror;

	snprintf(never, sizeof(never), "%s/never.db", f->dir);
	snprintf(uri, sizeof(uri), "sqlite:%s?busy_timeout=50", never);
	error = NULL;
	assert_int_equal(bf_state_uri_check(uri, &error), 0);
	assert_null(error);
	assert_int_equal(access(never, F_OK), -1);

	const char *bad[] = {"nonsense", ":", "memcached://localhost",
	                     "sqlite:", "sqlite:/x.db?bogus=1",
	                     "sqlite:/x.db?busy_timeout=soon",
	                     /* each process would open its own */
	                     "sqlite:state.db",
	                     "sqlite:var/x.db?busy_timeout=5"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(bf_state_uri_check(bad[i], &error), -1);
		oerror = open_error(bad[i]);
		assert_string_equal(error, oerror);
		free(error);
		free(oerror);
	}
#ifdef BF_HAVE_REDIS
	/* a port nobody listens on: the check connects nowhere */
	assert_int_equal(bf_state_uri_check("redis://127.0.0.1:1/0", &error),
	                 0);
	assert_int_equal(
	        bf_state_uri_check("redis://u:secret@h:99999/0", &error), -1);
	assert_contains(error, "port");
	assert_null(strstr(error, "secret"));
	free(error);
#endif
}

void test_open_bad_uris(void **statep)
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
	/* Error messages quote the URI with its secrets hidden, whatever
	   its shape: a password with an '@' of its own is hidden whole, an
	   empty one costs nothing, and "password=" before a mangled "://"
	   is hidden too (found by fuzz-state-uri). */
	error = open_error("memcached://user:p@ss@host:1/0?password=x&a=b");
	assert_contains(error,
	                "memcached://user:***@host:1/0?password=***&a=b");
	assert_null(strstr(error, "ss@"));
	free(error);
	error = open_error("memcached://u:@host");
	assert_contains(error, "memcached://u:***@host");
	free(error);
	error = open_error("mem&password=secret://u:pw@h");
	assert_null(strstr(error, "secret"));
	assert_null(strstr(error, "pw"));
	free(error);
	error = open_error("sqlite:");
	assert_contains(error, "no database path");
	free(error);
	error = open_error("sqlite:state.db");
	assert_contains(error, "not an absolute path");
	free(error);
	snprintf(uri, sizeof(uri), "%s?bogus=1", f->uri);
	error = open_error(uri);
	assert_contains(error, "unknown option");
	free(error);
	for (const char *const *v = (const char *const[]){"soon", " 5", "+5",
	                                                  "-1", "", "5x", NULL};
	     *v != NULL; v++) {
		snprintf(uri, sizeof(uri), "%s?busy_timeout=%s", f->uri, *v);
		error = open_error(uri);
		assert_contains(error, "invalid busy_timeout");
		free(error);
	}

	/* The URI forms that work. */
	snprintf(uri, sizeof(uri), "%s?busy_timeout=500", f->uri);
	state = open_ok(uri);
	bf_state_close(&state);
	snprintf(uri, sizeof(uri), "sqlite://%s", f->path);
	state = open_ok(uri);
	bf_state_close(&state);
}

void test_open_missing_dir(void **statep)
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

void test_open_corrupt(void **statep)
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

void test_open_newer_schema(void **statep)
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
			ret = check_and_set(state, &key, NOW, 60, &cerror);
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

void test_open_unwritable(void **statep)
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
void test_busy_timeout(void **statep)
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
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), -1);
	assert_contains(error, f->path);
	assert_contains(error, "locked");
	assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL),
	                 SQLITE_OK);
	sqlite3_close(db);
	/* The handle is usable again once the lock is gone. */
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), 1);
	bf_state_close(&state);
}

/* Another process runs sql (takes a lock) and holds it until told to let
   go through done_fd; returns its pid once it holds it. */
static pid_t lock_in_child_sql(const char *path, const char *sql,
                               int *done_fd_r)
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
		    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
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

/* The write lock (BEGIN EXCLUSIVE): a WAL store's readers go on. */
static pid_t lock_in_child(const char *path, int *done_fd_r)
{
	return lock_in_child_sql(path, "BEGIN EXCLUSIVE", done_fd_r);
}

/* Opening with a wait limit (bf_state_open_within(), a login with a
   budget): a file another process holds locked for readers too
   (exclusive locking mode) fails the open after about the limit, not
   after the URI's busy_timeout; the schema check of opening is a read. */
void test_open_wait_limit(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state;
	char *error = NULL;
	char uri[256];
	double start, took;
	int done_fd;
	pid_t pid;

	state = open_ok(f->uri);
	bf_state_close(&state);
	snprintf(uri, sizeof(uri), "%s?busy_timeout=5000", f->uri);
	pid = lock_in_child_sql(f->path,
	                        "PRAGMA locking_mode = EXCLUSIVE; "
	                        "BEGIN EXCLUSIVE",
	                        &done_fd);
	start = bf_fixture_now();
	assert_int_equal(bf_state_open_within(uri, 200, &state, &error), -1);
	took = bf_fixture_now() - start;
	assert_true(took >= 0.19);
	assert_true(took < 1.5);
	assert_non_null(error);
	assert_contains(error, "locked");
	assert_contains(error, "after 200 ms");
	free(error);
	error = NULL;

	assert_int_equal(write(done_fd, "d", 1), 1);
	close(done_fd);
	assert_int_equal(bf_fixture_wait_children(&pid, 1), 0);
	assert_int_equal(bf_state_open_within(uri, 200, &state, &error), 0);
	bf_state_close(&state);
}

/* A caller with a deadline (a login with a budget) sets a wait limit:
   with the file locked by another process an operation fails after about
   the limit, not after the store's 10 s busy timeout; 0 restores the
   busy timeout of the URI. */
void test_wait_limit(void **statep)
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
	start = bf_fixture_now();
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), -1);
	took = bf_fixture_now() - start;
	assert_true(took >= 0.19);
	assert_true(took < 1.5);
	assert_contains(error, "locked");
	assert_contains(error, "after 200 ms");
	assert_contains(error, f->path);
	/* a wait given up, which a later try may get past */
	assert_true(bf_state_stalled(state));
	/* an error of another kind is not one */
	assert_int_equal(
	        bf_state_lease_acquire(state, "l", "", NOW, 60, NULL, &error),
	        -1);
	assert_false(bf_state_stalled(state));
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), -1);
	assert_true(bf_state_stalled(state));

	/* 0: the URI's busy_timeout again */
	bf_state_set_wait_limit(state2, 200);
	bf_state_set_wait_limit(state2, 0);
	start = bf_fixture_now();
	assert_int_equal(bf_state_window_close(state2, NOW, &error), -1);
	took = bf_fixture_now() - start;
	assert_true(took >= 0.99);
	assert_contains(error, "after 1000 ms");
	assert_contains(error, "busy_timeout=MS");

	assert_int_equal(write(done_fd, "d", 1), 1);
	close(done_fd);
	assert_int_equal(bf_fixture_wait_children(&pid, 1), 0);
	/* The limit stays on the handle and does not stop it working. */
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), 1);
	/* a call that succeeds: no longer stalled */
	assert_false(bf_state_stalled(state));
	bf_state_close(&state);
	bf_state_close(&state2);
}

/* A checkpoint that fails half-way leaves neither the journal entries nor
   the record: the failure is injected by a trigger on the merges table,
   which fires after the journal rows were inserted. */
void test_checkpoint_atomic(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_merge_record got;
	const char *error;
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(
	        sqlite3_exec(db,
	                     "CREATE TRIGGER boom BEFORE INSERT ON merges"
	                     " WHEN NEW.user = 'erin'"
	                     " BEGIN SELECT RAISE(ABORT, 'injected'); END",
	                     NULL, NULL, NULL),
	        SQLITE_OK);
	sqlite3_close(db);

	checkpoint_not_half_done(state, f->path, "injected");
	/* rolled back: no record either */
	assert_int_equal(bf_state_merge_get(state, "erin", &got, &error), 0);
	bf_state_close(&state);
}

/* ---- values damaged in the file ---- */

static void sql_ok(const char *path, const char *sql)
{
	sqlite3 *db;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* A count or time in the file that backfill cannot have written (a
   negative number, text, a fraction) is never read as a figure: -1 came
   back as 18446744073709551615 archived messages.  A merge record reads
   as failed with an error naming user and field, the other users'
   records as they are; a window, journal entry or dedup record is an
   error naming the field. */
void test_sqlite_damaged_numbers(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct damaged_iter_ctx ctx;
	struct journal_iter_ctx jctx;
	struct bf_journal_entry entry;
	struct bf_merge_record rec;
	struct bf_dedup_first first;
	struct bf_dedup_key key;
	struct bf_window w;
	const char *error;
	int result;

	memset(&rec, 0, sizeof(rec));
	rec.status = BF_MERGE_DONE;
	rec.archived = 5;
	rec.added = 4;
	rec.duplicates = 1;
	rec.started = NOW;
	rec.last_error = "skipped folder x";
	assert_int_equal(bf_state_merge_put(state, "good", &rec, &error), 0);
	assert_int_equal(bf_state_merge_put(state, "neg", &rec, &error), 0);
	assert_int_equal(bf_state_merge_put(state, "text", &rec, &error), 0);
	assert_int_equal(bf_state_merge_put(state, "real", &rec, &error), 0);
	sql_ok(f->path,
	       "UPDATE merges SET archived = -1 WHERE user = 'neg';"
	       "UPDATE merges SET added = 'abc', started = -5"
	       " WHERE user = 'text';"
	       "UPDATE merges SET duplicates = 1.5 WHERE user = 'real'");

	assert_int_equal(bf_state_merge_get(state, "neg", &rec, &error), 1);
	assert_int_equal(rec.status, BF_MERGE_FAILED);
	assert_int_equal(rec.archived, 0);
	assert_int_equal(rec.added, 4);
	assert_non_null(rec.last_error);
	assert_contains(rec.last_error,
	                "damaged merge record: field archived of neg is not");
	assert_contains(rec.last_error, "doveadm backfill verify -u neg");
	assert_contains(rec.last_error, "last error before: skipped folder x");
	bf_merge_record_clear(&rec);
	assert_int_equal(bf_state_merge_get(state, "text", &rec, &error), 1);
	assert_int_equal(rec.status, BF_MERGE_FAILED);
	assert_int_equal(rec.added, 0);
	assert_int_equal(rec.started, 0);
	assert_int_equal(rec.archived, 5);
	assert_contains(rec.last_error,
	                "fields added, started of text are not numbers");
	bf_merge_record_clear(&rec);
	assert_int_equal(bf_state_merge_get(state, "real", &rec, &error), 1);
	assert_int_equal(rec.status, BF_MERGE_FAILED);
	assert_int_equal(rec.duplicates, 0);
	assert_contains(rec.last_error, "field duplicates of real");
	bf_merge_record_clear(&rec);
	/* the others' records as they were */
	assert_int_equal(bf_state_merge_get(state, "good", &rec, &error), 1);
	assert_int_equal(rec.status, BF_MERGE_DONE);
	assert_int_equal(rec.archived, 5);
	assert_string_equal(rec.last_error, "skipped folder x");
	bf_merge_record_clear(&rec);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(
	        bf_state_merge_iter(state, damaged_iter_cb, &ctx, &error), 0);
	assert_int_equal(ctx.count, 4);
	assert_int_equal(ctx.failed, 3);
	assert_int_equal(ctx.archived_sum, 5 + 5 + 5);

	/* a journal entry */
	make_entry(&entry, 1);
	assert_int_equal(
	        bf_state_journal_append(state, "good", &entry, 1, &error), 0);
	sql_ok(f->path, "UPDATE journal SET uid = -1 WHERE user = 'good'");
	memset(&jctx, 0, sizeof(jctx));
	assert_int_equal(bf_state_journal_iter(state, "good", journal_iter_cb,
	                                       &jctx, &error),
	                 -1);
	assert_contains(error, "damaged journal entry");
	assert_contains(error, "field uid");
	sql_ok(f->path,
	       "UPDATE journal SET uid = 4294967296 WHERE user = 'good'");
	assert_int_equal(bf_state_journal_iter(state, "good", journal_iter_cb,
	                                       &jctx, &error),
	                 -1);
	assert_contains(error, "field uid");

	/* a dedup record */
	make_key(&key, "w1", "a@example.org", 1);
	assert_int_equal(bf_state_dedup_check_and_set(state, &key, NOW, 3600,
	                                              "mx1", "Q1", NULL,
	                                              &error),
	                 1);
	sql_ok(f->path, "UPDATE dedup SET first_seen = -3");
	memset(&first, 0, sizeof(first));
	assert_int_equal(bf_state_dedup_check_and_set_many(
	                         state, &key, 1, NOW + 1, 3600, "mx1", "Q2",
	                         &result, &first, &error),
	                 -1);
	assert_contains(error, "damaged dedup record");
	assert_contains(error, "field first_seen");
	bf_dedup_first_clear(&first);

	/* a window: an error, and opening another one ends it */
	assert_int_equal(bf_state_window_open(state, "w1", NOW, 0, &error), 0);
	sql_ok(f->path, "UPDATE windows SET opened = 'x'");
	assert_int_equal(bf_state_window_current(state, NOW + 1, &w, &error),
	                 -1);
	assert_contains(error, "damaged window");
	assert_contains(error, "field opened");
	assert_null(w.name);
	damaged_window_replaced(state);
	bf_state_close(&state);
}

/* A window name in the file that bf_state_window_open() refuses (CR LF
   and a header line after it) is a store error, never handed to the
   milter for X-Backfill-Window; opening another window ends it. */
void test_sqlite_damaged_window_name(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_window w;
	const char *error;

	assert_int_equal(bf_state_window_open(state, "w1", NOW, 0, &error), 0);
	sql_ok(f->path, "UPDATE windows SET name = 'w1' || char(13, 10) ||"
	                " 'Authentication-Results: x; dkim=pass'");
	damaged_window_name_refused(state);
	/* an empty name and a space */
	sql_ok(f->path, "UPDATE windows SET name = '' WHERE closed = 0");
	assert_int_equal(bf_state_window_current(state, NOW + 3, &w, &error),
	                 -1);
	sql_ok(f->path, "UPDATE windows SET name = 'a b' WHERE closed = 0");
	assert_int_equal(bf_state_window_current(state, NOW + 3, &w, &error),
	                 -1);
	bf_state_close(&state);
}
