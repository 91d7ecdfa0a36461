/* SQLite backend of the state store: "sqlite:/path[?busy_timeout=MS]".

   One database file shared by every process of one host: the Dovecot
   plugin (one handle per IMAP/POP3 process), doveadm and the milter (one
   handle per libmilter thread).  WAL lets readers run beside the single
   writer; every read-modify-write runs in BEGIN IMMEDIATE so that it takes
   the write lock before reading and never has to be retried halfway. */

#include "state-private.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_BUSY_TIMEOUT_MS 10000
#define MAX_BUSY_TIMEOUT_MS     3600000
/* Rows examined per transaction by a purge, so that purging a large table
   never holds the write lock for long while milter threads wait. */
#define PURGE_CHUNK 2000

#define PERMISSION_HINT                                                        \
	"fix permissions: group backfill, mode 0660 on the file and its "      \
	"-wal and -shm files, 2770 on its directory"

/* Schema migrations: migrations[i] takes the schema from version i to
   i + 1.  Append only; never edit a released one.  Each runs inside the
   transaction that records its version, so a crash leaves the old or the
   new schema, never half of one. */
static const char *const migrations[] = {
        /* 1: the first schema */
        "CREATE TABLE merges ("
        " user TEXT PRIMARY KEY NOT NULL,"
        " status TEXT NOT NULL,"
        " cursor TEXT,"
        " archived INTEGER NOT NULL DEFAULT 0,"
        " added INTEGER NOT NULL DEFAULT 0,"
        " duplicates INTEGER NOT NULL DEFAULT 0,"
        " skipped INTEGER NOT NULL DEFAULT 0,"
        " uidl_collisions INTEGER NOT NULL DEFAULT 0,"
        " started INTEGER NOT NULL DEFAULT 0,"
        " finished INTEGER NOT NULL DEFAULT 0,"
        " updated INTEGER NOT NULL DEFAULT 0,"
        " last_error TEXT"
        ") WITHOUT ROWID;"
        "CREATE TABLE journal ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " user TEXT NOT NULL,"
        " mailbox TEXT NOT NULL,"
        " mailbox_guid TEXT NOT NULL,"
        " uid INTEGER NOT NULL,"
        " archive_mailbox TEXT NOT NULL,"
        " archive_uid INTEGER NOT NULL,"
        " fingerprint BLOB NOT NULL"
        ");"
        "CREATE INDEX journal_user ON journal (user, seq);"
        "CREATE INDEX journal_archive ON journal"
        " (user, archive_mailbox, archive_uid);"
        "CREATE TABLE windows ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " name TEXT NOT NULL,"
        " opened INTEGER NOT NULL,"
        " until INTEGER NOT NULL,"
        " closed INTEGER NOT NULL"
        ");"
        "CREATE TABLE dedup ("
        " window_name TEXT NOT NULL,"
        " recipient TEXT NOT NULL,"
        " fingerprint BLOB NOT NULL,"
        " first_seen INTEGER NOT NULL,"
        " expires INTEGER NOT NULL,"
        " host TEXT NOT NULL,"
        " queue_id TEXT NOT NULL,"
        " delivered INTEGER NOT NULL DEFAULT 0,"
        " delivered_at INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (window_name, recipient, fingerprint)"
        ") WITHOUT ROWID;"
        "CREATE TABLE leases ("
        " name TEXT PRIMARY KEY NOT NULL,"
        " owner TEXT NOT NULL,"
        " expires INTEGER NOT NULL"
        ") WITHOUT ROWID;",
};
#define SCHEMA_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

#define MERGE_COLS                                                             \
	"status, cursor, archived, added, duplicates, skipped, "               \
	"uidl_collisions, started, finished, updated, last_error"

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_MERGE_GET,
	ST_MERGE_PUT,
	ST_MERGE_DELETE,
	ST_MERGE_LIST_FIRST,
	ST_MERGE_LIST_AFTER,
	ST_JOURNAL_INSERT,
	ST_JOURNAL_LIST,
	ST_JOURNAL_SET_UID,
	ST_JOURNAL_DELETE,
	ST_WINDOW_CLOSE,
	ST_WINDOW_INSERT,
	ST_WINDOW_SET_UNTIL,
	ST_WINDOW_CURRENT,
	ST_DEDUP_GET,
	ST_DEDUP_PUT,
	ST_DEDUP_MARK,
	ST_DEDUP_PURGE_CHUNK_END,
	ST_DEDUP_PURGE_RANGE,
	ST_DEDUP_PURGE_TAIL,
	ST_DEDUP_STATS,
	ST_LEASE_GET,
	ST_LEASE_PUT,
	ST_LEASE_SWAP,
	ST_LEASE_RENEW,
	ST_LEASE_RELEASE,

	STMT_COUNT
};

/* Every statement, with what it does for error messages ("check-and-set:
   database is locked"); NULL: the caller says (BEGIN and COMMIT belong
   to the operation that runs them). */
static const struct {
	const char *sql;
	const char *what;
} stmts[STMT_COUNT] = {
        [ST_BEGIN] = {"BEGIN IMMEDIATE", NULL},
        [ST_COMMIT] = {"COMMIT", NULL},
        [ST_ROLLBACK] = {"ROLLBACK", NULL},
        [ST_MERGE_GET] = {"SELECT " MERGE_COLS " FROM merges WHERE user = ?1",
                          "reading the merge record"},
        [ST_MERGE_PUT] = {"INSERT OR REPLACE INTO merges (user, " MERGE_COLS
                          ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                          " ?11, ?12)",
                          "writing the merge record"},
        [ST_MERGE_DELETE] = {"DELETE FROM merges WHERE user = ?1",
                             "deleting the merge record"},
        [ST_MERGE_LIST_FIRST] = {"SELECT " MERGE_COLS ", user FROM merges"
                                 " ORDER BY user LIMIT ?1",
                                 "listing merge records"},
        [ST_MERGE_LIST_AFTER] = {"SELECT " MERGE_COLS ", user FROM merges"
                                 " WHERE user > ?2 ORDER BY user LIMIT ?1",
                                 "listing merge records"},
        [ST_JOURNAL_INSERT] = {"INSERT INTO journal (user, mailbox,"
                               " mailbox_guid, uid, archive_mailbox,"
                               " archive_uid, fingerprint)"
                               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                               "appending to the journal"},
        [ST_JOURNAL_LIST] = {"SELECT seq, mailbox, mailbox_guid, uid,"
                             " archive_mailbox, archive_uid, fingerprint"
                             " FROM journal WHERE user = ?1 AND seq > ?2"
                             " ORDER BY seq LIMIT ?3",
                             "reading the journal"},
        [ST_JOURNAL_SET_UID] = {"UPDATE journal SET uid = ?4 WHERE seq ="
                                " (SELECT seq FROM journal WHERE user = ?1"
                                " AND archive_mailbox = ?2 AND archive_uid = ?3"
                                " AND uid = 0 ORDER BY seq LIMIT 1)",
                                "setting a journal UID"},
        [ST_JOURNAL_DELETE] = {"DELETE FROM journal WHERE user = ?1",
                               "deleting the journal"},
        [ST_WINDOW_CLOSE] = {"UPDATE windows SET closed = ?1 WHERE closed = 0",
                             "closing the window"},
        [ST_WINDOW_INSERT] = {"INSERT INTO windows (name, opened, until,"
                              " closed) VALUES (?1, ?2, ?3, 0)",
                              "opening a window"},
        [ST_WINDOW_SET_UNTIL] = {"UPDATE windows SET until = ?2 WHERE id = ?1",
                                 "opening a window"},
        [ST_WINDOW_CURRENT] = {"SELECT name, opened, until, closed, id"
                               " FROM windows"
                               " WHERE closed = 0 AND (until = 0 OR until > ?1)"
                               " ORDER BY id DESC LIMIT 1",
                               "reading the current window"},
        [ST_DEDUP_GET] = {"SELECT first_seen, host, queue_id, delivered,"
                          " delivered_at FROM dedup WHERE window_name = ?1"
                          " AND recipient = ?2 AND fingerprint = ?3"
                          " AND expires > ?4",
                          "check-and-set"},
        /* Inserts, or replaces an expired record (so its delivered flag does
           not carry over); a live record is left alone: changes() says
           which happened, in one statement. */
        [ST_DEDUP_PUT] = {"INSERT INTO dedup (window_name, recipient,"
                          " fingerprint, first_seen, expires, host, queue_id,"
                          " delivered, delivered_at)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0)"
                          " ON CONFLICT (window_name, recipient, fingerprint)"
                          " DO UPDATE SET first_seen = excluded.first_seen,"
                          " expires = excluded.expires, host = excluded.host,"
                          " queue_id = excluded.queue_id, delivered = 0,"
                          " delivered_at = 0"
                          " WHERE dedup.expires <= excluded.first_seen",
                          "check-and-set"},
        /* The first delivery time stays: later LMTP deliveries of the same
           copy (a retried transaction) do not move it. */
        [ST_DEDUP_MARK] = {"UPDATE dedup SET delivered_at = CASE WHEN delivered"
                           " THEN delivered_at ELSE ?4 END, delivered = 1"
                           " WHERE window_name = ?1 AND recipient = ?2"
                           " AND fingerprint = ?3 AND expires > ?4",
                           "marking delivered"},
        /* The dedup table has no index on expires: a second b-tree to update
           halved check-and-set throughput (the milter's hot path),
           while a purge (rare, in the background) can as well walk the primary
           key in chunks, each in its own short transaction. */
        [ST_DEDUP_PURGE_CHUNK_END] = {"SELECT window_name, recipient,"
                                      " fingerprint FROM dedup"
                                      " WHERE (window_name, recipient,"
                                      " fingerprint) > (?1, ?2, ?3)"
                                      " ORDER BY window_name, recipient,"
                                      " fingerprint LIMIT 1 OFFSET ?4",
                                      "purging dedup records"},
        [ST_DEDUP_PURGE_RANGE] = {"DELETE FROM dedup WHERE (window_name,"
                                  " recipient, fingerprint) > (?1, ?2, ?3)"
                                  " AND (window_name, recipient, fingerprint)"
                                  " <= (?4, ?5, ?6) AND expires <= ?7",
                                  "purging dedup records"},
        [ST_DEDUP_PURGE_TAIL] = {"DELETE FROM dedup WHERE (window_name,"
                                 " recipient, fingerprint) > (?1, ?2, ?3)"
                                 " AND expires <= ?4",
                                 "purging dedup records"},
        [ST_DEDUP_STATS] = {"SELECT coalesce(sum(expires > ?1), 0),"
                            " coalesce(sum(expires > ?1 AND delivered), 0),"
                            " coalesce(sum(expires <= ?1), 0) FROM dedup",
                            "reading dedup statistics"},
        [ST_LEASE_GET] = {"SELECT owner, expires FROM leases WHERE name = ?1",
                          "acquiring a lease"},
        /* Takes the lease if it is free, expired, or (?5) already ours. */
        [ST_LEASE_PUT] = {"INSERT INTO leases (name, owner, expires)"
                          " VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE"
                          " SET owner = excluded.owner,"
                          " expires = excluded.expires"
                          " WHERE leases.expires <= ?4"
                          " OR (?5 AND leases.owner = excluded.owner)",
                          "acquiring a lease"},
        [ST_LEASE_SWAP] = {"UPDATE leases SET owner = ?3, expires = ?4"
                           " WHERE name = ?1 AND owner = ?2",
                           "taking over a lease"},
        [ST_LEASE_RENEW] = {"UPDATE leases SET expires = ?3"
                            " WHERE name = ?1 AND owner = ?2",
                            "renewing a lease"},
        [ST_LEASE_RELEASE] = {"DELETE FROM leases WHERE name = ?1"
                              " AND owner = ?2",
                              "releasing a lease"},
};

struct sqlite_state {
	struct bf_state state;

	sqlite3 *db;
	char *path;
	/* The URI's busy_timeout, and the one in force (the caller's wait
	   limit, see bf_state_set_wait_limit()). */
	int default_busy_timeout_ms;
	int busy_timeout_ms;
	/* How long the busy handler waits: busy_timeout_ms, except while
	   switching to WAL (see set_wal()). */
	int busy_wait_ms;
	struct timespec busy_since;
	unsigned int busy_seed;
	/* Prepared on first use, kept until close. */
	sqlite3_stmt *stmts[STMT_COUNT];
};

#define SQ(state) ((struct sqlite_state *)(state))

/* ---- errors ---- */

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, slash - path);
}

/* Describes the last SQLite error, with what the operator can do about
   it.  what names the operation ("check-and-set"). */
static int db_error(struct sqlite_state *s, const char *what)
{
	int code = sqlite3_extended_errcode(s->db);
	int sys_errno = sqlite3_system_errno(s->db);
	const char *msg = sqlite3_errmsg(s->db);

	switch (code & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		if (s->busy_timeout_ms != s->default_busy_timeout_ms) {
			bf_state_set_error(&s->state,
			                   "%s: %s: still locked by another "
			                   "process after %d ms (the caller's "
			                   "wait limit)",
			                   what, msg, s->busy_timeout_ms);
			s->state.stalled = true;
			break;
		}
		bf_state_set_error(&s->state,
		                   "%s: %s: still locked by another process "
		                   "after %d ms (raise it with "
		                   "?busy_timeout=MS in the URI if the "
		                   "store is just very busy)",
		                   what, msg, s->busy_timeout_ms);
		s->state.stalled = true;
		break;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		bf_state_set_error(&s->state,
		                   "%s: %s: the file is not a usable SQLite "
		                   "database (restore it from a backup; moving "
		                   "it aside makes backfill start over with "
		                   "no state)",
		                   what, msg);
		break;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		bf_state_set_error(&s->state, "%s: %s: not writable (%s)", what,
		                   msg, PERMISSION_HINT);
		break;
	case SQLITE_FULL:
		bf_state_set_error(&s->state,
		                   "%s: %s: the file system is full (free "
		                   "space, then retry)",
		                   what, msg);
		break;
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
		if (sys_errno == EACCES || sys_errno == EPERM ||
		    sys_errno == EROFS || (code & 0xff) == SQLITE_CANTOPEN) {
			bf_state_set_error(&s->state, "%s: %s (%s): %s", what,
			                   msg, strerror(sys_errno),
			                   PERMISSION_HINT);
			break;
		}
		if (sys_errno == ENOSPC) {
			bf_state_set_error(&s->state,
			                   "%s: %s: the file system is full "
			                   "(free space, then retry)",
			                   what, msg);
			break;
		}
		/* fall through */
	default:
		if (sys_errno != 0)
			bf_state_set_error(&s->state, "%s: %s (%s)", what, msg,
			                   strerror(sys_errno));
		else
			bf_state_set_error(&s->state, "%s: %s", what, msg);
		break;
	}
	return -1;
}

static int oom(struct sqlite_state *s)
{
	bf_state_set_error(&s->state, "out of memory");
	return -1;
}

/* ---- statements ---- */

/* The operations below are mostly one statement of the table with its
   arguments: EXEC(s, ST_X, TEXT(user), INT(now)) binds them to ?1, ?2 ...
   in order, runs the statement and resets it; QUERY() does the same for a
   statement that returns rows and leaves the first one to read. */
struct arg {
	enum { ARG_TEXT, ARG_INT, ARG_BLOB } type;
	const char *text; /* NULL binds NULL */
	int64_t i;
	const void *blob;
	int blob_size;
};
#define TEXT(v) ((struct arg){.type = ARG_TEXT, .text = (v)})
#define INT(v)  ((struct arg){.type = ARG_INT, .i = (int64_t)(v)})
#define BLOB(v, n)                                                             \
	((struct arg){.type = ARG_BLOB, .blob = (v), .blob_size = (n)})
#define FP(v) BLOB((v), BF_FP_SIZE)
#define ARGS(...)                                                              \
	(const struct arg[]){__VA_ARGS__},                                     \
	        sizeof((const struct arg[]){__VA_ARGS__}) / sizeof(struct arg)
/* Rows changed, or -1. */
#define EXEC(s, id, ...) stmt_run((s), (id), NULL, ARGS(__VA_ARGS__))
/* The same, errors naming the operation what (a transaction's). */
#define EXEC_AS(s, what, id, ...) stmt_run((s), (id), (what), ARGS(__VA_ARGS__))
/* 1 the first row is ready in *stmt_r, 0 no row, -1 error; the caller
   reads it (stmt_row() for the next) and ends with stmt_done(). */
#define QUERY(s, id, stmt_r, ...)                                              \
	stmt_query((s), (id), NULL, (stmt_r), ARGS(__VA_ARGS__))
#define QUERY_AS(s, what, id, stmt_r, ...)                                     \
	stmt_query((s), (id), (what), (stmt_r), ARGS(__VA_ARGS__))

static sqlite3_stmt *stmt_get(struct sqlite_state *s, enum stmt_id id)
{
	if (s->stmts[id] == NULL &&
	    sqlite3_prepare_v3(s->db, stmts[id].sql, -1,
	                       SQLITE_PREPARE_PERSISTENT, &s->stmts[id],
	                       NULL) != SQLITE_OK) {
		db_error(s, "preparing a statement");
		return NULL;
	}
	return s->stmts[id];
}

/* Statement id, prepared on first use, with args bound to ?1 ... ?n.
   SQLITE_STATIC: the values outlive the statement's run (stmt_done()
   clears the bindings). */
static sqlite3_stmt *stmt_bind(struct sqlite_state *s, enum stmt_id id,
                               const struct arg *args, size_t n)
{
	sqlite3_stmt *stmt = stmt_get(s, id);
	size_t i;

	for (i = 0; stmt != NULL && i < n; i++) {
		int idx = (int)i + 1;

		switch (args[i].type) {
		case ARG_TEXT:
			if (args[i].text == NULL)
				sqlite3_bind_null(stmt, idx);
			else
				sqlite3_bind_text(stmt, idx, args[i].text, -1,
				                  SQLITE_STATIC);
			break;
		case ARG_INT:
			sqlite3_bind_int64(stmt, idx, args[i].i);
			break;
		case ARG_BLOB:
			sqlite3_bind_blob(stmt, idx, args[i].blob,
			                  args[i].blob_size, SQLITE_STATIC);
			break;
		}
	}
	return stmt;
}

static void stmt_done(sqlite3_stmt *stmt)
{
	if (stmt == NULL)
		return;
	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
}

static int stmt_run(struct sqlite_state *s, enum stmt_id id, const char *what,
                    const struct arg *args, size_t n)
{
	sqlite3_stmt *stmt = stmt_bind(s, id, args, n);
	int ret;

	if (stmt == NULL)
		return -1;
	ret = sqlite3_step(stmt);
	if (ret != SQLITE_DONE && ret != SQLITE_ROW) {
		db_error(s, what != NULL ? what : stmts[id].what);
		stmt_done(stmt);
		return -1;
	}
	stmt_done(stmt);
	return sqlite3_changes(s->db);
}

/* Steps a query: 1 a row is ready, 0 no (more) rows, -1 error.  The caller
   resets the statement when done. */
static int stmt_row(struct sqlite_state *s, sqlite3_stmt *stmt,
                    const char *what)
{
	int ret = sqlite3_step(stmt);

	if (ret == SQLITE_ROW)
		return 1;
	if (ret == SQLITE_DONE)
		return 0;
	return db_error(s, what);
}

static int stmt_query(struct sqlite_state *s, enum stmt_id id, const char *what,
                      sqlite3_stmt **stmt_r, const struct arg *args, size_t n)
{
	*stmt_r = stmt_bind(s, id, args, n);
	if (*stmt_r == NULL)
		return -1;
	return stmt_row(s, *stmt_r, what != NULL ? what : stmts[id].what);
}

/* 1/0: whether a statement changed a row (-1 stays). */
static int changed(int ret)
{
	return ret < 0 ? -1 : ret > 0;
}

static int run(struct sqlite_state *s, enum stmt_id id, const char *what)
{
	return stmt_run(s, id, what, NULL, 0);
}

/* A text column as a malloc()ed string; NULL stays NULL. */
static int col_str(struct sqlite_state *s, sqlite3_stmt *stmt, int col,
                   char **str_r)
{
	const unsigned char *text = sqlite3_column_text(stmt, col);

	*str_r = NULL;
	if (text == NULL)
		return sqlite3_errcode(s->db) == SQLITE_NOMEM ? oom(s) : 0;
	*str_r = strdup((const char *)text);
	return *str_r == NULL ? oom(s) : 0;
}

/* ---- transactions ---- */

static int tx_begin(struct sqlite_state *s, const char *what)
{
	return run(s, ST_BEGIN, what) < 0 ? -1 : 0;
}

static int tx_commit(struct sqlite_state *s, const char *what)
{
	return run(s, ST_COMMIT, what) < 0 ? -1 : 0;
}

/* Rolls back after an error, keeping the error that caused it. */
static void tx_rollback(struct sqlite_state *s)
{
	sqlite3_stmt *stmt;

	if (sqlite3_get_autocommit(s->db))
		return;
	stmt = s->stmts[ST_ROLLBACK];
	if (stmt == NULL && sqlite3_prepare_v3(s->db, stmts[ST_ROLLBACK].sql,
	                                       -1, SQLITE_PREPARE_PERSISTENT,
	                                       &stmt, NULL) != SQLITE_OK) {
		sqlite3_finalize(stmt);
		return;
	}
	s->stmts[ST_ROLLBACK] = stmt;
	(void)sqlite3_step(stmt);
	sqlite3_reset(stmt);
}

/* Ends a transaction: commits when ret >= 0, else rolls back.  Returns
   ret, or -1 when the commit fails. */
static int tx_end(struct sqlite_state *s, int ret, const char *what)
{
	if (ret >= 0 && tx_commit(s, what) < 0)
		ret = -1;
	if (ret < 0)
		tx_rollback(s);
	return ret;
}

/* ---- busy waiting ---- */

static long ms_since(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000L +
	       (now.tv_nsec - since->tv_nsec) / 1000000L;
}

/* SQLite's own busy handler sleeps 1, 2, 5, 10 ... 100 ms between
   attempts.  Write transactions here last tens of microseconds, so with a
   dozen milter threads and IMAP processes contending, those sleeps (not
   the work) would set the throughput.  Short randomized sleeps keep the
   lock busy without a thundering herd; the total is still bounded by
   busy_timeout, after which the call fails instead of hanging. */
static int busy_handler(void *context, int count)
{
	struct sqlite_state *s = context;
	struct timespec ts;
	long max_us;

	if (s->busy_wait_ms == 0)
		return 0;
	if (count == 0)
		clock_gettime(CLOCK_MONOTONIC, &s->busy_since);
	else if (ms_since(&s->busy_since) >= s->busy_wait_ms)
		return 0;
	max_us = 50L << (count < 6 ? count : 6); /* up to 3.2 ms */
	ts.tv_sec = 0;
	ts.tv_nsec = (20 + rand_r(&s->busy_seed) % max_us) * 1000L;
	nanosleep(&ts, NULL);
	return 1;
}

/* ---- open ---- */

int bf_state_sqlite_parse_location(const char *location, char **path_r,
                                   int *busy_timeout_r, char **error_r)
{
	const char *query, *opt;
	char *end;
	unsigned long value;

	*path_r = NULL;
	*busy_timeout_r = DEFAULT_BUSY_TIMEOUT_MS;
	/* "sqlite:///var/lib/..." as well as "sqlite:/var/lib/..." */
	if (strncmp(location, "///", 3) == 0)
		location += 2;
	query = strchr(location, '?');
	*path_r = query == NULL ? strdup(location)
	                        : strndup(location, query - location);
	if (*path_r == NULL) {
		*error_r = bf_state_error_new(location, "out of memory");
		return -1;
	}
	if (**path_r == '\0') {
		*error_r = bf_state_error_new(
		        "sqlite:", "no database path (expected e.g. %s)",
		        BF_STATE_DEFAULT_URI);
		return -1;
	}
	/* Every process sharing the store must open the same file, and
	   none runs where the operator typed the path: Dovecot's mail
	   processes run in each user's home (a store per user: no lease,
	   no confirmation seen by the milter), the milter in "/" once
	   detached. */
	if (**path_r != '/') {
		*error_r = bf_state_error_new(
		        *path_r,
		        "not an absolute path (expected e.g. %s): the "
		        "processes sharing the store run in different "
		        "directories",
		        BF_STATE_DEFAULT_URI);
		return -1;
	}
	for (opt = query; opt != NULL; opt = strchr(opt + 1, '&')) {
		if (strncmp(opt + 1, "busy_timeout=", 13) != 0) {
			*error_r = bf_state_error_new(
			        *path_r,
			        "unknown option in URI \"%s\" "
			        "(supported: busy_timeout=MS)",
			        opt + 1);
			return -1;
		}
		errno = 0;
		value = strtoul(opt + 14, &end, 10);
		/* strtoul() alone would take " 5", "+5" and "-1" */
		if (errno != 0 || opt[14] < '0' || opt[14] > '9' ||
		    (*end != '\0' && *end != '&') ||
		    value > MAX_BUSY_TIMEOUT_MS) {
			*error_r = bf_state_error_new(
			        *path_r,
			        "invalid busy_timeout in URI (milliseconds, "
			        "at most %d)",
			        MAX_BUSY_TIMEOUT_MS);
			return -1;
		}
		*busy_timeout_r = (int)value;
	}
	return 0;
}

/* Creates the file ourselves, before SQLite does: SQLite would create it
   with 0644 minus umask, and the store must be writable by both Dovecot's
   mail user and the milter's user through the group.  SQLite gives the
   -wal and -shm files the mode (and, as root, the owner) of the database
   file, so getting this one right is enough. */
static int create_file(const char *path, char **error_r)
{
	struct stat st;
	char *dir;
	int fd, err;

	/* An existing store is only checked, never opened here: closing any
	   descriptor of the file drops the POSIX locks that SQLite
	   connections of other threads of this process (the milter's) hold
	   on it. */
	if (stat(path, &st) == 0) {
		if (faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS) == 0)
			return 0;
		err = errno;
		goto existing_failed;
	}
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0660);
	if (fd >= 0) {
		/* umask may have taken the group bits.  The file is new, so
		   no connection can hold locks on it yet. */
		if (fchmod(fd, 0660) < 0) {
			err = errno;
			close(fd);
			*error_r = bf_state_error_new(
			        path, "fchmod(0660) failed: %s", strerror(err));
			return -1;
		}
		/* Like a setgid directory does: so that a store created by
		   root (doveadm run by hand) stays usable by the group that
		   owns the directory.  Fails harmlessly when not root. */
		dir = dir_of(path);
		if (dir != NULL && stat(dir, &st) == 0)
			(void)fchown(fd, (uid_t)-1, st.st_gid);
		free(dir);
		close(fd);
		return 0;
	}
	err = errno;
	if (err == EEXIST) {
		/* Created by another process just now. */
		if (faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS) == 0)
			return 0;
		err = errno;
		goto existing_failed;
	}
	dir = dir_of(path);
	if (err == ENOENT || err == ENOTDIR) {
		*error_r = bf_state_error_new(
		        path,
		        "directory %s does not exist (create it: group "
		        "backfill, mode 2770)",
		        dir != NULL ? dir : path);
	} else if (err == EACCES || err == EPERM || err == EROFS) {
		*error_r = bf_state_error_new(
		        path,
		        "cannot create it in directory %s as uid %u gid %u: "
		        "%s (%s)",
		        dir != NULL ? dir : path, (unsigned int)geteuid(),
		        (unsigned int)getegid(), strerror(err),
		        PERMISSION_HINT);
	} else {
		*error_r = bf_state_error_new(path, "cannot create: %s",
		                              strerror(err));
	}
	free(dir);
	return -1;

existing_failed:
	if (err == EACCES || err == EPERM || err == EROFS) {
		*error_r = bf_state_error_new(
		        path, "not writable by uid %u gid %u: %s (%s)",
		        (unsigned int)geteuid(), (unsigned int)getegid(),
		        strerror(err), PERMISSION_HINT);
	} else {
		*error_r = bf_state_error_new(path, "cannot open: %s",
		                              strerror(err));
	}
	return -1;
}

static int schema_version(struct sqlite_state *s, int *version_r)
{
	static const char *const sql =
	        "SELECT (SELECT count(*) FROM sqlite_master"
	        " WHERE type = 'table' AND name = 'schema_version'),"
	        " (SELECT max(version) FROM schema_version)";
	static const char *const sql_empty =
	        "SELECT count(*), 0 FROM sqlite_master"
	        " WHERE type = 'table' AND name = 'schema_version'";
	sqlite3_stmt *stmt = NULL;
	int ret;

	*version_r = 0;
	/* The version table may not exist yet, and SQLite resolves table
	   names when preparing, so ask the catalogue first. */
	if (sqlite3_prepare_v2(s->db, sql_empty, -1, &stmt, NULL) != SQLITE_OK)
		return db_error(s, "reading the schema version");
	ret = stmt_row(s, stmt, "reading the schema version");
	if (ret > 0 && sqlite3_column_int(stmt, 0) > 0) {
		sqlite3_finalize(stmt);
		if (sqlite3_prepare_v2(s->db, sql, -1, &stmt, NULL) !=
		    SQLITE_OK)
			return db_error(s, "reading the schema version");
		ret = stmt_row(s, stmt, "reading the schema version");
		if (ret > 0)
			*version_r = sqlite3_column_int(stmt, 1);
	}
	sqlite3_finalize(stmt);
	return ret < 0 ? -1 : 0;
}

static int schema_migrate(struct sqlite_state *s)
{
	char sql[128];
	char *errmsg = NULL;
	int version, v;

	if (schema_version(s, &version) < 0)
		return -1;
	if (version == SCHEMA_VERSION)
		return 0;
	if (version > SCHEMA_VERSION)
		goto newer;

	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return db_error(s, "upgrading the schema");
	/* Another process may have migrated while we waited for the lock. */
	if (sqlite3_exec(s->db,
	                 "CREATE TABLE IF NOT EXISTS schema_version"
	                 " (version INTEGER NOT NULL)",
	                 NULL, NULL, NULL) != SQLITE_OK ||
	    schema_version(s, &version) < 0)
		goto failed;
	if (version > SCHEMA_VERSION) {
		tx_rollback(s);
		goto newer;
	}
	for (v = version; v < SCHEMA_VERSION; v++) {
		if (sqlite3_exec(s->db, migrations[v], NULL, NULL, &errmsg) !=
		    SQLITE_OK) {
			bf_state_set_error(&s->state,
			                   "upgrading the schema to version "
			                   "%d: %s",
			                   v + 1, errmsg);
			sqlite3_free(errmsg);
			tx_rollback(s);
			return -1;
		}
	}
	snprintf(sql, sizeof(sql),
	         "DELETE FROM schema_version;"
	         "INSERT INTO schema_version VALUES (%d)",
	         SCHEMA_VERSION);
	if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK ||
	    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		goto failed;
	return 0;

failed:
	db_error(s, "upgrading the schema");
	tx_rollback(s);
	return -1;
newer:
	bf_state_set_error(&s->state,
	                   "schema version %d was written by a newer backfill "
	                   "(this one knows up to %d): upgrade backfill here "
	                   "too",
	                   version, SCHEMA_VERSION);
	return -1;
}

/* 0 WAL is on, -1 error; *busy_r tells a lock conflict from the rest. */
static int try_set_wal(struct sqlite_state *s, bool *busy_r)
{
	sqlite3_stmt *stmt = NULL;
	const char *mode;
	int ret, code;

	*busy_r = false;
	/* Preparing reads the schema, which can meet a lock too. */
	if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &stmt,
	                       NULL) != SQLITE_OK)
		ret = db_error(s, "opening");
	else
		ret = stmt_row(s, stmt, "opening");
	if (ret < 0) {
		code = sqlite3_errcode(s->db) & 0xff;
		*busy_r = code == SQLITE_BUSY || code == SQLITE_LOCKED;
	} else if (ret == 0) {
		bf_state_set_error(&s->state,
		                   "opening: no answer to PRAGMA journal_mode");
		ret = -1;
	} else {
		mode = (const char *)sqlite3_column_text(stmt, 0);
		if (mode == NULL || strcmp(mode, "wal") != 0) {
			/* WAL needs shared memory between processes: this
			   happens on network file systems. */
			bf_state_set_error(&s->state,
			                   "cannot use WAL mode (journal mode "
			                   "stays %s): keep the store on a "
			                   "local file system",
			                   mode != NULL ? mode : "unknown");
			ret = -1;
		}
	}
	sqlite3_finalize(stmt);
	return ret < 0 ? -1 : 0;
}

/* Switching a new database to WAL takes an exclusive lock, and processes
   that open a new store at the same moment (the first logins after the
   plugin is enabled) can each hold the shared lock the others wait for:
   with the normal busy handler all of them would wait out busy_timeout
   and fail.  So each attempt waits only a short random time, then lets
   go of its locks and tries again, until busy_timeout in total.  On an
   existing WAL database the pragma changes nothing and takes no lock. */
static int set_wal(struct sqlite_state *s)
{
	struct timespec start, ts;
	bool busy;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		s->busy_wait_ms = 10 + rand_r(&s->busy_seed) % 50;
		if (s->busy_wait_ms > s->busy_timeout_ms)
			s->busy_wait_ms = s->busy_timeout_ms;
		ret = try_set_wal(s, &busy);
		s->busy_wait_ms = s->busy_timeout_ms;
		if (ret == 0)
			break;
		if (!busy || ms_since(&start) >= s->busy_timeout_ms)
			return -1;
		ts.tv_sec = 0;
		ts.tv_nsec = (1 + rand_r(&s->busy_seed) % 5) * 1000000L;
		nanosleep(&ts, NULL);
	}
	/* NORMAL in WAL mode: a commit survives the process being killed,
	   only a power loss may lose the last ones.  Losing a dedup record
	   means a duplicate is delivered (never a loss), and a merge that
	   loses its last checkpoint redoes it against the live mailbox. */
	if (sqlite3_exec(s->db, "PRAGMA synchronous = NORMAL", NULL, NULL,
	                 NULL) != SQLITE_OK)
		return db_error(s, "setting synchronous mode");
	return 0;
}

static void sqlite_close(struct bf_state *state)
{
	struct sqlite_state *s = SQ(state);
	int i;

	for (i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(s->stmts[i]);
	if (s->db != NULL)
		sqlite3_close(s->db);
	free(s->path);
	free(s);
}

static void sqlite_set_wait_limit(struct bf_state *state, unsigned int ms)
{
	struct sqlite_state *s = SQ(state);

	s->busy_timeout_ms = ms != 0 ? (int)ms : s->default_busy_timeout_ms;
	s->busy_wait_ms = s->busy_timeout_ms;
}

static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

static int sqlite_check(const char *location, char **error_r)
{
	char *path;
	int busy_timeout, ret;

	ret = bf_state_sqlite_parse_location(location, &path, &busy_timeout,
	                                     error_r);
	free(path);
	return ret;
}

static int sqlite_open(const char *location, unsigned int wait_ms,
                       struct bf_state **state_r, char **error_r)
{
	struct sqlite_state *s;
	int busy_timeout, ret;
	char *path;

	if (bf_state_sqlite_parse_location(location, &path, &busy_timeout,
	                                   error_r) < 0) {
		free(path);
		return -1;
	}
	/* Serialized between the threads of a process: a thread that found
	   the file another thread had just created could otherwise open it
	   in SQLite before that thread closed its descriptor, and lose its
	   locks to that close. */
	pthread_mutex_lock(&create_lock);
	ret = create_file(path, error_r);
	pthread_mutex_unlock(&create_lock);
	if (ret < 0) {
		free(path);
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		*error_r = bf_state_error_new(path, "out of memory");
		free(path);
		return -1;
	}
	s->path = path;
	s->default_busy_timeout_ms = busy_timeout;
	/* Opening reads the schema (and switches a new file to WAL), which a
	   process holding the file locked stops like any other read. */
	s->busy_timeout_ms = wait_ms != 0 ? (int)wait_ms : busy_timeout;
	s->busy_wait_ms = s->busy_timeout_ms;
	s->busy_seed = (unsigned int)getpid() ^ (unsigned int)(uintptr_t)s;
	s->state.name = strdup(path);
	if (s->state.name == NULL) {
		*error_r = bf_state_error_new(path, "out of memory");
		sqlite_close(&s->state);
		return -1;
	}
	/* NOMUTEX: a handle is used by one thread at a time (state.h), so
	   SQLite's per-connection mutex would be pure overhead. */
	if (sqlite3_open_v2(path, &s->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		if (s->db == NULL)
			bf_state_set_error(&s->state, "out of memory");
		else
			db_error(s, "opening");
	} else {
		sqlite3_extended_result_codes(s->db, 1);
		sqlite3_busy_handler(s->db, busy_handler, s);
		if (set_wal(s) == 0 && schema_migrate(s) == 0) {
			*state_r = &s->state;
			return 0;
		}
	}
	*error_r = s->state.error != NULL
	                   ? s->state.error
	                   : bf_state_error_new(path, "out of memory");
	s->state.error = NULL;
	free(s->state.name);
	sqlite_close(&s->state);
	return -1;
}

/* ---- merge records ---- */

/* Column col as backfill writes a count or a time: an integer from 0 to
   max.  A column declared INTEGER still holds whatever a hand or other
   software put there (text, a real, a negative number), and
   sqlite3_column_int64() would hand back 0, a truncation or, cast to
   uint64_t, a wrapped figure. */
static bool col_uint(sqlite3_stmt *stmt, int col, uint64_t max,
                     uint64_t *value_r)
{
	sqlite3_int64 v;

	*value_r = 0;
	if (sqlite3_column_type(stmt, col) != SQLITE_INTEGER)
		return false;
	v = sqlite3_column_int64(stmt, col);
	if (v < 0 || (uint64_t)v > max)
		return false;
	*value_r = (uint64_t)v;
	return true;
}

static bool col_time(sqlite3_stmt *stmt, int col, time_t *time_r)
{
	uint64_t value;
	bool ok = col_uint(stmt, col, BF_STATE_TIME_MAX, &value);

	*time_r = (time_t)value;
	return ok;
}

/* A row with a value backfill does not write: an error naming it (the
   value itself is not quoted: it may hold anything). */
static int damaged(struct sqlite_state *s, const char *what, const char *kind,
                   const char *field)
{
	bf_state_set_error(&s->state,
	                   "%s: damaged %s in the store: field %s is not a "
	                   "value backfill writes (edited by hand or by other "
	                   "software?)",
	                   what, kind, field);
	return -1;
}

/* Reads user's MERGE_COLS columns starting at column 0.  A count or time
   that is not one backfill wrote reads as a damaged record
   (bf_merge_record_damaged()), never as a figure. */
static int merge_from_row(struct sqlite_state *s, sqlite3_stmt *stmt,
                          const char *user, struct bf_merge_record *rec)
{
	static const char *const names[] = {
	        "archived",        "added",   "duplicates", "skipped",
	        "uidl_collisions", "started", "finished",   "updated",
	};
	const char *status = (const char *)sqlite3_column_text(stmt, 0);
	int st = bf_merge_status_parse(status);
	uint64_t *counts[] = {&rec->archived, &rec->added, &rec->duplicates,
	                      &rec->skipped, &rec->uidl_collisions};
	time_t *times[] = {&rec->started, &rec->finished, &rec->updated};
	char bad_fields[128] = "";
	size_t i;
	bool ok;

	memset(rec, 0, sizeof(*rec));
	/* An unknown status (a newer writer) reads as failed rather than as
	   something that would start or skip a merge. */
	rec->status = st < 0 ? BF_MERGE_FAILED : (enum bf_merge_status)st;
	for (i = 0; i < 8; i++) {
		if (i < 5)
			ok = col_uint(stmt, 2 + (int)i, BF_STATE_COUNT_MAX,
			              counts[i]);
		else
			ok = col_time(stmt, 2 + (int)i, times[i - 5]);
		if (!ok) {
			/* the 8 names fit */
			if (bad_fields[0] != '\0')
				strcat(bad_fields, ", ");
			strcat(bad_fields, names[i]);
		}
	}
	if (col_str(s, stmt, 1, &rec->cursor) < 0 ||
	    col_str(s, stmt, 10, &rec->last_error) < 0) {
		bf_merge_record_clear(rec);
		return -1;
	}
	if (bad_fields[0] != '\0' &&
	    bf_merge_record_damaged(rec, user, bad_fields) < 0)
		return oom(s);
	return 0;
}

static int sqlite_merge_get(struct bf_state *state, const char *user,
                            struct bf_merge_record *rec_r)
{
	struct sqlite_state *s = SQ(state);
	sqlite3_stmt *stmt;
	int ret;

	ret = QUERY(s, ST_MERGE_GET, &stmt, TEXT(user));
	if (ret > 0 && merge_from_row(s, stmt, user, rec_r) < 0)
		ret = -1;
	stmt_done(stmt);
	return ret;
}

static int merge_put(struct sqlite_state *s, const char *user,
                     const struct bf_merge_record *rec)
{
	return EXEC(s, ST_MERGE_PUT, TEXT(user),
	            TEXT(bf_merge_status_name(rec->status)), TEXT(rec->cursor),
	            INT(rec->archived), INT(rec->added), INT(rec->duplicates),
	            INT(rec->skipped), INT(rec->uidl_collisions),
	            INT(rec->started), INT(rec->finished), INT(rec->updated),
	            TEXT(rec->last_error)) < 0
	               ? -1
	               : 0;
}

static int sqlite_merge_put(struct bf_state *state, const char *user,
                            const struct bf_merge_record *rec)
{
	return merge_put(SQ(state), user, rec);
}

static int sqlite_merge_delete(struct bf_state *state, const char *user)
{
	static const char *const what = "deleting the merge record";
	struct sqlite_state *s = SQ(state);
	int ret;

	if (tx_begin(s, what) < 0)
		return -1;
	ret = EXEC(s, ST_MERGE_DELETE, TEXT(user));
	if (ret >= 0)
		ret = EXEC(s, ST_JOURNAL_DELETE, TEXT(user));
	return tx_end(s, ret < 0 ? -1 : 0, what);
}

static int sqlite_merge_list(struct bf_state *state, const char *after_user,
                             size_t max, struct bf_merge_row **rows_r,
                             size_t *count_r)
{
	struct sqlite_state *s = SQ(state);
	struct bf_merge_row *rows;
	sqlite3_stmt *stmt;
	size_t count = 0;
	int ret;

	*rows_r = NULL;
	*count_r = 0;
	rows = calloc(max, sizeof(*rows));
	if (rows == NULL)
		return oom(s);
	ret = after_user == NULL
	              ? QUERY(s, ST_MERGE_LIST_FIRST, &stmt, INT(max))
	              : QUERY(s, ST_MERGE_LIST_AFTER, &stmt, INT(max),
	                      TEXT(after_user));
	while (ret > 0 && count < max) {
		if (col_str(s, stmt, 11, &rows[count].user) < 0 ||
		    rows[count].user == NULL) {
			free(rows[count].user);
			rows[count].user = NULL;
			ret = -1;
			break;
		}
		if (merge_from_row(s, stmt, rows[count].user,
		                   &rows[count].rec) < 0) {
			free(rows[count].user);
			rows[count].user = NULL;
			ret = -1;
			break;
		}
		count++;
		if (count < max)
			ret = stmt_row(s, stmt, "listing merge records");
	}
	stmt_done(stmt);
	if (ret < 0) {
		bf_merge_rows_free(rows, count);
		return -1;
	}
	*rows_r = rows;
	*count_r = count;
	return 0;
}

/* ---- journal ---- */

static int sqlite_journal_append(struct bf_state *state, const char *user,
                                 const struct bf_merge_record *rec,
                                 const struct bf_journal_entry *entries,
                                 size_t count)
{
	static const char *const what = "appending to the journal";
	struct sqlite_state *s = SQ(state);
	const struct bf_journal_entry *e;
	size_t i;
	int ret = 0;

	if (tx_begin(s, what) < 0)
		return -1;
	for (i = 0; i < count && ret == 0; i++) {
		e = &entries[i];
		if (EXEC(s, ST_JOURNAL_INSERT, TEXT(user), TEXT(e->mailbox),
		         TEXT(e->mailbox_guid), INT(e->uid),
		         TEXT(e->archive_mailbox), INT(e->archive_uid),
		         FP(e->fingerprint)) < 0)
			ret = -1;
	}
	if (ret == 0 && rec != NULL)
		ret = merge_put(s, user, rec);
	return tx_end(s, ret, what);
}

static int sqlite_journal_list(struct bf_state *state, const char *user,
                               uint64_t after_seq, size_t max,
                               struct bf_journal_row **rows_r, size_t *count_r)
{
	struct sqlite_state *s = SQ(state);
	struct bf_journal_row *rows, *row;
	sqlite3_stmt *stmt;
	size_t count = 0;
	int ret;

	*rows_r = NULL;
	*count_r = 0;
	rows = calloc(max, sizeof(*rows));
	if (rows == NULL)
		return oom(s);
	ret = QUERY(s, ST_JOURNAL_LIST, &stmt, TEXT(user), INT(after_seq),
	            INT(max));
	while (ret > 0 && count < max) {
		uint64_t uid, archive_uid;
		const char *bad = NULL;

		row = &rows[count++];
		if (!col_uint(stmt, 0, BF_STATE_COUNT_MAX, &row->seq))
			bad = "seq";
		else if (!col_uint(stmt, 3, UINT32_MAX, &uid))
			bad = "uid";
		else if (!col_uint(stmt, 5, UINT32_MAX, &archive_uid))
			bad = "archive_uid";
		else if (sqlite3_column_type(stmt, 6) != SQLITE_BLOB ||
		         sqlite3_column_bytes(stmt, 6) != BF_FP_SIZE)
			bad = "fingerprint";
		if (bad != NULL) {
			ret = damaged(s, "reading the journal", "journal entry",
			              bad);
			break;
		}
		row->uid = (uint32_t)uid;
		row->archive_uid = (uint32_t)archive_uid;
		memcpy(row->fingerprint, sqlite3_column_blob(stmt, 6),
		       BF_FP_SIZE);
		if (col_str(s, stmt, 1, &row->mailbox) < 0 ||
		    col_str(s, stmt, 2, &row->mailbox_guid) < 0 ||
		    col_str(s, stmt, 4, &row->archive_mailbox) < 0) {
			ret = -1;
			break;
		}
		if (count < max)
			ret = stmt_row(s, stmt, "reading the journal");
	}
	stmt_done(stmt);
	if (ret < 0) {
		bf_journal_rows_free(rows, count);
		return -1;
	}
	*rows_r = rows;
	*count_r = count;
	return 0;
}

static int sqlite_journal_set_uid(struct bf_state *state, const char *user,
                                  const char *archive_mailbox,
                                  uint32_t archive_uid, uint32_t uid)
{
	return changed(EXEC(SQ(state), ST_JOURNAL_SET_UID, TEXT(user),
	                    TEXT(archive_mailbox), INT(archive_uid), INT(uid)));
}

static int sqlite_journal_delete(struct bf_state *state, const char *user)
{
	return EXEC(SQ(state), ST_JOURNAL_DELETE, TEXT(user)) < 0 ? -1 : 0;
}

/* ---- windows ---- */

/* The window in force at now: 1 (window_r and *id_r set), 0 none.  A
   window with a time backfill does not write is an error, with
   *damaged_r set. */
static int window_current(struct sqlite_state *s, time_t now, const char *what,
                          struct bf_window *window_r, int64_t *id_r,
                          bool *damaged_r)
{
	sqlite3_stmt *stmt;
	int ret;

	*damaged_r = false;
	ret = QUERY_AS(s, what, ST_WINDOW_CURRENT, &stmt, INT(now));
	if (ret > 0) {
		const char *bad =
		        !col_time(stmt, 1, &window_r->opened)   ? "opened"
		        : !col_time(stmt, 2, &window_r->until)  ? "until"
		        : !col_time(stmt, 3, &window_r->closed) ? "closed"
		                                                : NULL;

		*id_r = sqlite3_column_int64(stmt, 4);
		*damaged_r = bad != NULL;
		if (bad != NULL) {
			ret = damaged(s,
			              what != NULL
			                      ? what
			                      : "reading the current window",
			              "window", bad);
			s->state.window_damaged = true;
		} else if (col_str(s, stmt, 0, &window_r->name) < 0)
			ret = -1;
	}
	stmt_done(stmt);
	return ret;
}

/* BEGIN IMMEDIATE takes the write lock before the read, so no other
   process can open a window between this one's check and its write. */
static int sqlite_window_open(struct bf_state *state, const char *name,
                              time_t now, time_t until, bool exclusive,
                              struct bf_window *previous_r)
{
	static const char *const what = "opening a window";
	struct sqlite_state *s = SQ(state);
	int64_t id = 0;
	bool damaged_prev;
	int ret;

	if (tx_begin(s, what) < 0)
		return -1;
	ret = window_current(s, now, what, previous_r, &id, &damaged_prev);
	if (ret < 0 && damaged_prev) {
		/* As with Redis: a damaged window in force is another one,
		   unknown; replacing it is how the operator gets out. */
		bf_window_clear(previous_r);
		if (exclusive)
			return tx_end(s, -1, what);
		ret = 0;
	}
	if (ret > 0 && previous_r->name != NULL &&
	    strcmp(previous_r->name, name) == 0) {
		/* the same window: it keeps its opened time */
		if (previous_r->until == until)
			return tx_end(s, 1, what);
		ret = EXEC(s, ST_WINDOW_SET_UNTIL, INT(id), INT(until));
		return tx_end(s, ret < 0 ? -1 : 1, what);
	}
	if (ret > 0 && exclusive)
		return tx_end(s, 0, what);
	if (ret >= 0)
		ret = EXEC_AS(s, what, ST_WINDOW_CLOSE, INT(now));
	if (ret >= 0)
		ret = EXEC(s, ST_WINDOW_INSERT, TEXT(name), INT(now),
		           INT(until));
	return tx_end(s, ret < 0 ? -1 : 1, what);
}

static int sqlite_window_close(struct bf_state *state, time_t now)
{
	return changed(EXEC(SQ(state), ST_WINDOW_CLOSE, INT(now)));
}

static int sqlite_window_current(struct bf_state *state, time_t now,
                                 struct bf_window *window_r)
{
	int64_t id;
	bool damaged_window;

	return window_current(SQ(state), now, NULL, window_r, &id,
	                      &damaged_window);
}

/* ---- dedup ---- */

#define KEY(key)                                                               \
	TEXT((key)->window), TEXT((key)->recipient), FP((key)->fingerprint)

/* 1 a live record exists (first_r, if not NULL, filled), 0 none. */
static int dedup_get(struct sqlite_state *s, const struct bf_dedup_key *key,
                     time_t now, struct bf_dedup_first *first_r)
{
	sqlite3_stmt *stmt;
	int ret;

	ret = QUERY(s, ST_DEDUP_GET, &stmt, KEY(key), INT(now));
	if (ret > 0 && first_r != NULL) {
		uint64_t delivered = 0;
		const char *bad =
		        !col_time(stmt, 0, &first_r->first_seen) ? "first_seen"
		        : !col_uint(stmt, 3, 1, &delivered)      ? "delivered"
		        : !col_time(stmt, 4, &first_r->delivered_at)
		                ? "delivered_at"
		                : NULL;

		first_r->delivered = delivered != 0;
		if (bad != NULL)
			ret = damaged(s, "check-and-set", "dedup record", bad);
		else if (col_str(s, stmt, 1, &first_r->host) < 0 ||
		         col_str(s, stmt, 2, &first_r->queue_id) < 0)
			ret = -1;
	}
	stmt_done(stmt);
	return ret;
}

/* 1 inserted (or replaced an expired record), 0 a live record exists. */
static int dedup_put(struct sqlite_state *s, const struct bf_dedup_key *key,
                     time_t now, unsigned int ttl, const char *host,
                     const char *queue_id)
{
	return changed(EXEC(s, ST_DEDUP_PUT, KEY(key), INT(now),
	                    INT(now + (time_t)ttl), TEXT(host),
	                    TEXT(queue_id)));
}

/* The milter's common case, one recipient, without BEGIN and COMMIT: the
   upsert alone is atomic and decides new or seen; only a seen key needs
   a second statement to describe the first copy.  If that copy vanished in
   between (purged, or expired and replaced by a process with a later
   clock), the caller falls back to a transaction.  Returns 1 done, 0 fall
   back, -1 error. */
static int dedup_one(struct sqlite_state *s, const struct bf_dedup_key *key,
                     time_t now, unsigned int ttl, const char *host,
                     const char *queue_id, int *result_r,
                     struct bf_dedup_first *first_r)
{
	int ret;

	ret = dedup_put(s, key, now, ttl, host, queue_id);
	if (ret != 0) {
		*result_r = 1;
		return ret;
	}
	*result_r = 0;
	if (first_r == NULL)
		return 1;
	return dedup_get(s, key, now, first_r);
}

static int sqlite_dedup_check_and_set(struct bf_state *state,
                                      const struct bf_dedup_key *keys,
                                      size_t count, time_t now,
                                      unsigned int ttl, const char *host,
                                      const char *queue_id, int *results_r,
                                      struct bf_dedup_first *firsts_r)
{
	static const char *const what = "check-and-set";
	struct sqlite_state *s = SQ(state);
	size_t i;
	int ret = 0;

	if (count == 1) {
		ret = dedup_one(s, keys, now, ttl, host, queue_id, results_r,
		                firsts_r);
		if (ret != 0)
			return ret < 0 ? -1 : 0;
	}
	if (tx_begin(s, what) < 0)
		return -1;
	for (i = 0; i < count && ret >= 0; i++) {
		ret = dedup_put(s, &keys[i], now, ttl, host, queue_id);
		results_r[i] = ret > 0;
		if (ret == 0 && firsts_r != NULL)
			ret = dedup_get(s, &keys[i], now, &firsts_r[i]);
	}
	return tx_end(s, ret < 0 ? -1 : 0, what);
}

static int sqlite_dedup_mark_delivered(struct bf_state *state,
                                       const struct bf_dedup_key *key,
                                       time_t now)
{
	return changed(EXEC(SQ(state), ST_DEDUP_MARK, KEY(key), INT(now)));
}

/* A primary key of the dedup table, owned. */
struct dedup_pk {
	char *window, *recipient;
	void *fp;
	int fp_size;
};

static void dedup_pk_clear(struct dedup_pk *pk)
{
	free(pk->window);
	free(pk->recipient);
	free(pk->fp);
	memset(pk, 0, sizeof(*pk));
}

/* The walk starts before ('', '', x''): keys have a non-empty window and
   recipient. */
#define PK(pk)                                                                 \
	TEXT((pk)->window != NULL ? (pk)->window : ""),                        \
	        TEXT((pk)->recipient != NULL ? (pk)->recipient : ""),          \
	        BLOB((pk)->fp != NULL ? (pk)->fp : "", (pk)->fp_size)

/* One chunk of the walk: deletes the expired records among the next
   PURGE_CHUNK keys after *start and advances *start.  1 more to do, 0 at
   the end, -1 error. */
static int purge_chunk(struct sqlite_state *s, struct dedup_pk *start,
                       time_t now, uint64_t *purged)
{
	static const char *const what = "purging dedup records";
	struct dedup_pk end;
	sqlite3_stmt *stmt;
	int ret, more;

	memset(&end, 0, sizeof(end));
	if (tx_begin(s, what) < 0)
		return -1;
	more = QUERY(s, ST_DEDUP_PURGE_CHUNK_END, &stmt, PK(start),
	             INT(PURGE_CHUNK - 1));
	if (more > 0) {
		const void *blob = sqlite3_column_blob(stmt, 2);

		end.fp_size = sqlite3_column_bytes(stmt, 2);
		end.fp = malloc(end.fp_size > 0 ? end.fp_size : 1);
		if (end.fp == NULL || col_str(s, stmt, 0, &end.window) < 0 ||
		    col_str(s, stmt, 1, &end.recipient) < 0)
			more = end.fp == NULL ? oom(s) : -1;
		else if (end.fp_size > 0)
			memcpy(end.fp, blob, end.fp_size);
	}
	stmt_done(stmt);
	if (more < 0) {
		dedup_pk_clear(&end);
		return tx_end(s, -1, what);
	}

	ret = more > 0 ? EXEC(s, ST_DEDUP_PURGE_RANGE, PK(start), PK(&end),
	                      INT(now))
	               : EXEC(s, ST_DEDUP_PURGE_TAIL, PK(start), INT(now));
	if (tx_end(s, ret < 0 ? -1 : 0, what) < 0) {
		dedup_pk_clear(&end);
		return -1;
	}
	*purged += (uint64_t)ret;
	dedup_pk_clear(start);
	*start = end;
	return more;
}

static int sqlite_dedup_purge(struct bf_state *state, time_t now,
                              uint64_t *purged_r)
{
	struct sqlite_state *s = SQ(state);
	struct dedup_pk start;
	int ret;

	*purged_r = 0;
	memset(&start, 0, sizeof(start));
	while ((ret = purge_chunk(s, &start, now, purged_r)) > 0)
		;
	dedup_pk_clear(&start);
	return ret;
}

static int sqlite_dedup_stats(struct bf_state *state, time_t now,
                              struct bf_dedup_stats *stats_r)
{
	struct sqlite_state *s = SQ(state);
	sqlite3_stmt *stmt;
	int ret;

	ret = QUERY(s, ST_DEDUP_STATS, &stmt, INT(now));
	if (ret > 0) {
		stats_r->records = (uint64_t)sqlite3_column_int64(stmt, 0);
		stats_r->delivered = (uint64_t)sqlite3_column_int64(stmt, 1);
		stats_r->expired = (uint64_t)sqlite3_column_int64(stmt, 2);
	}
	stmt_done(stmt);
	return ret < 0 ? -1 : 0;
}

/* ---- leases ---- */

static int lease_put(struct sqlite_state *s, const char *name,
                     const char *owner, time_t now, unsigned int ttl,
                     bool reentrant)
{
	return changed(EXEC(s, ST_LEASE_PUT, TEXT(name), TEXT(owner),
	                    INT(now + (time_t)ttl), INT(now),
	                    INT(reentrant ? 1 : 0)));
}

static int sqlite_lease_acquire(struct bf_state *state, const char *name,
                                const char *owner, time_t now, unsigned int ttl,
                                bool reentrant, char **holder_r)
{
	static const char *const what = "acquiring a lease";
	struct sqlite_state *s = SQ(state);
	sqlite3_stmt *stmt;
	int ret;

	*holder_r = NULL;
	/* Free leases are taken in one statement.  Only a lease held by
	   someone else needs a transaction, to name the holder that refused
	   us (it may release in between otherwise). */
	ret = lease_put(s, name, owner, now, ttl, reentrant);
	if (ret != 0)
		return ret;
	if (tx_begin(s, what) < 0)
		return -1;
	ret = lease_put(s, name, owner, now, ttl, reentrant);
	if (ret == 0) {
		ret = QUERY(s, ST_LEASE_GET, &stmt, TEXT(name));
		if (ret > 0)
			ret = col_str(s, stmt, 0, holder_r) < 0 ? -1 : 0;
		stmt_done(stmt);
	}
	ret = tx_end(s, ret, what);
	if (ret != 0) {
		free(*holder_r);
		*holder_r = NULL;
	}
	return ret;
}

static int sqlite_lease_swap(struct bf_state *state, const char *name,
                             const char *expected_holder, const char *owner,
                             time_t now, unsigned int ttl)
{
	return changed(EXEC(SQ(state), ST_LEASE_SWAP, TEXT(name),
	                    TEXT(expected_holder), TEXT(owner),
	                    INT(now + (time_t)ttl)));
}

static int sqlite_lease_renew(struct bf_state *state, const char *name,
                              const char *owner, time_t now, unsigned int ttl)
{
	return changed(EXEC(SQ(state), ST_LEASE_RENEW, TEXT(name), TEXT(owner),
	                    INT(now + (time_t)ttl)));
}

static int sqlite_lease_release(struct bf_state *state, const char *name,
                                const char *owner)
{
	return changed(
	        EXEC(SQ(state), ST_LEASE_RELEASE, TEXT(name), TEXT(owner)));
}

const struct bf_state_backend bf_state_backend_sqlite = {
        .scheme = "sqlite",
        .open = sqlite_open,
        .check = sqlite_check,
        .close = sqlite_close,
        .set_wait_limit = sqlite_set_wait_limit,
        .merge_get = sqlite_merge_get,
        .merge_put = sqlite_merge_put,
        .merge_delete = sqlite_merge_delete,
        .merge_list = sqlite_merge_list,
        .journal_append = sqlite_journal_append,
        .journal_list = sqlite_journal_list,
        .journal_set_uid = sqlite_journal_set_uid,
        .journal_delete = sqlite_journal_delete,
        .window_open = sqlite_window_open,
        .window_close = sqlite_window_close,
        .window_current = sqlite_window_current,
        .dedup_check_and_set = sqlite_dedup_check_and_set,
        .dedup_mark_delivered = sqlite_dedup_mark_delivered,
        .dedup_purge = sqlite_dedup_purge,
        .dedup_stats = sqlite_dedup_stats,
        .lease_acquire = sqlite_lease_acquire,
        .lease_swap = sqlite_lease_swap,
        .lease_renew = sqlite_lease_renew,
        .lease_release = sqlite_lease_release,
};
