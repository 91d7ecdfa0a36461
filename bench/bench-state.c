/* State store throughput: dedup check-and-set and lease acquire+release
   per second, from 1 and from 8 processes at once, each printed as a
   ratio to plain SQLite measured in the same run on the same file system:
   one autocommit INSERT per row of the same shape, from the same number of
   processes (what the milter's check-and-set costs at the least).

   bench-state [DIR] [OPS]   DIR defaults to $TMPDIR or /tmp; note that a
   tmpfs hides the cost of fsync, so run it on the disk the store will use
   (e.g. /var/lib/backfill) for figures that mean something. */

#include "state.h"

#include <errno.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_OPS 4000
#define NOW         1700000000

enum workload {
	W_RAW_INSERT,
	W_CHECK_AND_SET,
	W_LEASE,
};

static const char *const workload_names[] = {
        [W_RAW_INSERT] = "raw SQLite INSERT (reference)",
        [W_CHECK_AND_SET] = "dedup check-and-set (new key)",
        [W_LEASE] = "lease acquire + release",
};

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void fill_fp(unsigned char fp[BF_FP_SIZE], unsigned int proc,
                    unsigned int op)
{
	memset(fp, 0x5a, BF_FP_SIZE);
	memcpy(fp, &proc, sizeof(proc));
	memcpy(fp + sizeof(proc), &op, sizeof(op));
}

/* The reference: the same rows the check-and-set writes, inserted by
   plain SQLite in WAL mode with the same durability, one autocommit
   statement each. */
static int run_raw(const char *path, unsigned int proc, unsigned int ops,
                   int go_fd)
{
	static const char *const sql =
	        "INSERT INTO raw (window_name, recipient, fingerprint,"
	        " first_seen, expires, host, queue_id)"
	        " VALUES ('w', 'rcpt@example.org', ?1, ?2, ?3, 'mx1', 'Q')";
	unsigned char fp[BF_FP_SIZE];
	sqlite3_stmt *stmt;
	sqlite3 *db;
	unsigned int op;
	char c;

	if (sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(db, 10000);
	if (sqlite3_exec(db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) !=
	            SQLITE_OK ||
	    sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK) {
		fprintf(stderr, "raw: %s\n", sqlite3_errmsg(db));
		sqlite3_close(db);
		return -1;
	}
	if (read(go_fd, &c, 1) < 0)
		return -1;
	for (op = 0; op < ops; op++) {
		fill_fp(fp, proc, op);
		sqlite3_bind_blob(stmt, 1, fp, sizeof(fp), SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, NOW);
		sqlite3_bind_int64(stmt, 3, NOW + 3600);
		if (sqlite3_step(stmt) != SQLITE_DONE) {
			fprintf(stderr, "raw: %s\n", sqlite3_errmsg(db));
			break;
		}
		sqlite3_reset(stmt);
	}
	sqlite3_finalize(stmt);
	sqlite3_close(db);
	return op == ops ? 0 : -1;
}

static int run_store(enum workload w, const char *uri, unsigned int proc,
                     unsigned int ops, int go_fd)
{
	struct bf_state *state = NULL;
	struct bf_dedup_key key;
	char owner[128], name[64], *error = NULL;
	const char *cerror = NULL;
	unsigned int op;
	int ret = 0;
	char c;

	if (bf_state_open(uri, &state, &error) < 0) {
		fprintf(stderr, "%s\n", error);
		free(error);
		return -1;
	}
	bf_lease_owner(owner, sizeof(owner));
	memset(&key, 0, sizeof(key));
	key.window = "w";
	key.recipient = "rcpt@example.org";
	if (read(go_fd, &c, 1) < 0)
		return -1;
	for (op = 0; op < ops && ret >= 0; op++) {
		if (w == W_CHECK_AND_SET) {
			fill_fp(key.fingerprint, proc, op);
			ret = bf_state_dedup_check_and_set(state, &key, NOW,
			                                   3600, "mx1", "Q",
			                                   NULL, &cerror);
			if (ret == 0) {
				cerror = "a new key was seen before";
				ret = -1;
			}
		} else {
			/* Users of one process; the processes share none,
			   as separate IMAP sessions would. */
			snprintf(name, sizeof(name), "merge/user%u-%u", proc,
			         op % 16);
			ret = bf_state_lease_acquire(state, name, owner, NOW,
			                             60, NULL, &cerror);
			if (ret > 0)
				ret = bf_state_lease_release(state, name, owner,
				                             &cerror);
			if (ret == 0) {
				cerror = "lease not ours";
				ret = -1;
			}
		}
	}
	if (ret < 0)
		fprintf(stderr, "%s\n", cerror);
	bf_state_close(&state);
	return ret < 0 ? -1 : 0;
}

/* Runs ops operations in each of procs processes started together;
   returns operations per second over all of them, or -1. */
static double measure(enum workload w, const char *dir, unsigned int procs,
                      unsigned int ops)
{
	char path[600], uri[700];
	struct bf_state *state = NULL;
	char *error = NULL;
	pid_t pids[64];
	int go[2], status, failed = 0;
	unsigned int i;
	double start, elapsed;
	sqlite3 *db;

	snprintf(path, sizeof(path), "%s/w%d-p%u.db", dir, (int)w, procs);
	snprintf(uri, sizeof(uri), "sqlite:%s", path);
	/* Create the store (or the reference table) before the clock
	   starts. */
	if (bf_state_open(uri, &state, &error) < 0) {
		fprintf(stderr, "%s\n", error);
		free(error);
		return -1;
	}
	bf_state_close(&state);
	if (w == W_RAW_INSERT) {
		if (sqlite3_open(path, &db) != SQLITE_OK ||
		    sqlite3_exec(db,
		                 "CREATE TABLE raw (window_name TEXT NOT NULL,"
		                 " recipient TEXT NOT NULL,"
		                 " fingerprint BLOB NOT NULL,"
		                 " first_seen INTEGER NOT NULL,"
		                 " expires INTEGER NOT NULL,"
		                 " host TEXT NOT NULL, queue_id TEXT NOT NULL,"
		                 " PRIMARY KEY (window_name, recipient,"
		                 " fingerprint)) WITHOUT ROWID",
		                 NULL, NULL, NULL) != SQLITE_OK) {
			fprintf(stderr, "%s\n", sqlite3_errmsg(db));
			sqlite3_close(db);
			return -1;
		}
		sqlite3_close(db);
	}
	if (pipe(go) < 0)
		return -1;
	for (i = 0; i < procs; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			return -1;
		if (pids[i] == 0) {
			close(go[1]);
			_exit((w == W_RAW_INSERT
			               ? run_raw(path, i, ops, go[0])
			               : run_store(w, uri, i, ops, go[0])) < 0
			              ? 1
			              : 0);
		}
	}
	close(go[0]);
	/* Let the children open their handles first. */
	usleep(200000);
	start = now_seconds();
	close(go[1]);
	for (i = 0; i < procs; i++) {
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failed = 1;
	}
	elapsed = now_seconds() - start;
	return failed ? -1 : (double)procs * ops / elapsed;
}

int main(int argc, char **argv)
{
	static const unsigned int proc_counts[] = {1, 8};
	const char *base = argc > 1 ? argv[1] : getenv("TMPDIR");
	unsigned int ops = argc > 2 ? (unsigned int)atoi(argv[2]) : DEFAULT_OPS;
	double rates[3][2];
	char dir[512];
	unsigned int p, w;

	if (base == NULL || *base == '\0')
		base = "/tmp";
	if (ops == 0) {
		fprintf(stderr, "usage: bench-state [DIR] [OPS]\n");
		return 2;
	}
	snprintf(dir, sizeof(dir), "%s/bench-state.XXXXXX", base);
	if (mkdtemp(dir) == NULL) {
		fprintf(stderr, "mkdtemp(%s): %s\n", dir, strerror(errno));
		return 2;
	}
	for (p = 0; p < 2; p++) {
		for (w = 0; w < 3; w++) {
			/* With 8 processes each does a share, so that the
			   runs take similar time. */
			rates[w][p] =
			        measure((enum workload)w, dir, proc_counts[p],
			                p == 0 ? ops : ops / 2);
			if (rates[w][p] < 0) {
				fprintf(stderr, "%s with %u processes failed\n",
				        workload_names[w], proc_counts[p]);
				nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
				return 1;
			}
		}
	}
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

	printf("state store (sqlite, WAL, synchronous=NORMAL) in %s, %u ops "
	       "per run\n",
	       base, ops);
	printf("%-32s %5s %12s %8s\n", "operation", "procs", "ops/s", "ratio");
	for (p = 0; p < 2; p++) {
		for (w = 0; w < 3; w++) {
			printf("%-32s %5u %12.0f %8.2f\n", workload_names[w],
			       proc_counts[p], rates[w][p],
			       rates[w][p] / rates[W_RAW_INSERT][p]);
		}
	}
	printf("ratio: ops/s over the raw INSERT reference with the same "
	       "number of processes\n(a lease op is an acquire and a "
	       "release: two write transactions)\n");
	return 0;
}
