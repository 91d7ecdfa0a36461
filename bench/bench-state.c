/* State store throughput: dedup check-and-set and lease acquire+release
   per second, from 1 and from 8 processes at once, each printed as a
   ratio to plain SQLite measured in the same run on the same file system:
   one autocommit INSERT per row of the same shape, from the same number of
   processes (what the milter's check-and-set costs at the least).

   With the Redis backend built and redis-server installed, the same
   check-and-set and lease workloads run against a private redis-server
   the bench starts in DIR (appendonly yes, appendfsync everysec: the
   setting docs/state-store.md recommends), over its unix socket and over
   TCP on 127.0.0.1, and are printed as a ratio to SQLite's check-and-set
   with the same number of processes.  Then it fills an empty Redis with
   RECORDS dedup records of realistic size and reports the memory they
   take (INFO memory, used_memory before and after), per million.

   bench-state [DIR] [OPS] [RECORDS]   DIR defaults to $TMPDIR or /tmp;
   note that a tmpfs hides the cost of fsync, so run it on the disk the
   store will use (e.g. /var/lib/backfill) for figures that mean
   something.  RECORDS defaults to 200000. */

#include "state-fixture.h"
#include "state.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef BF_HAVE_REDIS
#include <hiredis/hiredis.h>
#endif

#define DEFAULT_OPS     4000
#define DEFAULT_RECORDS 200000
#define NOW             1700000000

enum workload {
	W_RAW_INSERT,
	W_CHECK_AND_SET,
	W_LEASE,
	W_REDIS_UNIX_CHECK_AND_SET,
	W_REDIS_TCP_CHECK_AND_SET,
	W_REDIS_UNIX_LEASE,

	W_COUNT
};
#define W_FIRST_REDIS W_REDIS_UNIX_CHECK_AND_SET

static const char *const workload_names[] = {
        [W_RAW_INSERT] = "raw SQLite INSERT (reference)",
        [W_CHECK_AND_SET] = "dedup check-and-set (new key)",
        [W_LEASE] = "lease acquire + release",
        [W_REDIS_UNIX_CHECK_AND_SET] = "redis unix: check-and-set",
        [W_REDIS_TCP_CHECK_AND_SET] = "redis tcp: check-and-set",
        [W_REDIS_UNIX_LEASE] = "redis unix: lease acq + rel",
};

/* The Redis URIs of the private server, "" when there is none. */
static char redis_unix_uri[600], redis_tcp_uri[64];

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
		if (w == W_CHECK_AND_SET || w == W_REDIS_UNIX_CHECK_AND_SET ||
		    w == W_REDIS_TCP_CHECK_AND_SET) {
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

/* ---- the private redis-server ---- */

#ifdef BF_HAVE_REDIS
static struct bf_fixture_redis redis;

static redisReply *redis_cmd(const char *cmd)
{
	redisContext *c = redisConnectUnix(redis.sock);
	redisReply *reply = NULL;

	if (c != NULL && c->err == 0)
		reply = redisCommand(c, cmd);
	if (c != NULL)
		redisFree(c);
	return reply;
}

static int redis_flush(void)
{
	redisReply *reply = redis_cmd("FLUSHALL");
	int ret = reply != NULL && reply->type == REDIS_REPLY_STATUS ? 0 : -1;

	if (ret < 0)
		fprintf(stderr, "redis-server: FLUSHALL failed\n");
	freeReplyObject(reply);
	return ret;
}

/* Starts redis-server in dir, configured as docs/state-store.md
   recommends.  0 started, -1 not available (the reason printed). */
static int redis_start(const char *dir)
{
	int port, attempt;

	if (bf_fixture_redis_server() == NULL) {
		printf("redis: not measured: redis-server not found (set "
		       "BF_REDIS_SERVER)\n");
		return -1;
	}
	/* The port may be taken between free_port() and the server's bind. */
	for (attempt = 0; attempt < 3; attempt++) {
		port = bf_fixture_free_port();
		if (port > 0 && bf_fixture_redis_start(&redis, dir, port, NULL,
		                                       "everysec") == 0) {
			snprintf(redis_unix_uri, sizeof(redis_unix_uri),
			         "redis+unix://%s", redis.sock);
			snprintf(redis_tcp_uri, sizeof(redis_tcp_uri),
			         "redis://127.0.0.1:%d/0", redis.port);
			return 0;
		}
	}
	printf("redis: not measured: redis-server did not start\n");
	return -1;
}

static long long redis_used_memory(void)
{
	redisReply *reply = redis_cmd("INFO memory");
	const char *p;
	long long used = -1;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING &&
	    (p = strstr(reply->str, "used_memory:")) != NULL)
		used = strtoll(p + 12, NULL, 10);
	freeReplyObject(reply);
	return used;
}

/* Fills an empty Redis with records as the milter writes them (8
   recipients per message, a Postfix long queue id, a 7-day ttl) and
   returns the bytes each takes, or -1. */
static double redis_memory_per_record(unsigned int records)
{
	struct bf_state *state = NULL;
	struct bf_dedup_key keys[8];
	char rcpts[8][64], *error = NULL;
	const char *cerror;
	int results[8];
	long long before, after;
	unsigned int i, j, n;

	if (redis_flush() < 0 ||
	    bf_state_open(redis_unix_uri, &state, &error) < 0) {
		fprintf(stderr, "%s\n", error != NULL ? error : "flush failed");
		free(error);
		return -1;
	}
	/* Let the allocator settle after the flush. */
	usleep(100000);
	before = redis_used_memory();
	for (i = 0; i < records; i += 8) {
		for (j = 0; j < 8; j++) {
			n = i + j;
			snprintf(rcpts[j], sizeof(rcpts[j]),
			         "firstname.lastname%07u@example-hosting.net",
			         n % (records / 4 + 1));
			memset(&keys[j], 0, sizeof(keys[j]));
			keys[j].window = "restore-20261121";
			keys[j].recipient = rcpts[j];
			fill_fp(keys[j].fingerprint, 0xbe, n);
		}
		if (bf_state_dedup_check_and_set_many(
		            state, keys, 8, NOW, 7 * 86400, "mx1.example.net",
		            "4ZkR7n3bWQz9xYt", results, NULL, &cerror) < 0) {
			fprintf(stderr, "%s\n", cerror);
			bf_state_close(&state);
			return -1;
		}
	}
	bf_state_close(&state);
	after = redis_used_memory();
	if (before < 0 || after < before)
		return -1;
	return (double)(after - before) / (double)((records + 7) / 8 * 8);
}
#else
static int redis_flush(void)
{
	return -1;
}
#endif

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
	if (w == W_REDIS_UNIX_CHECK_AND_SET || w == W_REDIS_UNIX_LEASE)
		snprintf(uri, sizeof(uri), "%s", redis_unix_uri);
	else if (w == W_REDIS_TCP_CHECK_AND_SET)
		snprintf(uri, sizeof(uri), "%s", redis_tcp_uri);
	/* Every run starts from an empty Redis: the keys are the same in
	   every run and must be new. */
	if (w >= W_FIRST_REDIS && redis_flush() < 0)
		return -1;
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
	start = bf_fixture_now();
	close(go[1]);
	for (i = 0; i < procs; i++) {
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failed = 1;
	}
	elapsed = bf_fixture_now() - start;
	return failed ? -1 : (double)procs * ops / elapsed;
}

static void print_row(enum workload w, unsigned int procs, double rate,
                      double reference)
{
	printf("%-32s %5u %12.0f %8.2f\n", workload_names[w], procs, rate,
	       rate / reference);
}

int main(int argc, char **argv)
{
	static const unsigned int proc_counts[] = {1, 8};
	const char *base = argc > 1 ? argv[1] : getenv("TMPDIR");
	unsigned int ops = argc > 2 ? (unsigned int)atoi(argv[2]) : DEFAULT_OPS;
	unsigned int records =
	        argc > 3 ? (unsigned int)atoi(argv[3]) : DEFAULT_RECORDS;
	double rates[W_COUNT][2], per_record = -1;
	unsigned int p, w, workloads = W_FIRST_REDIS;
	char dir[512];
	int ret = 0;

	if (base == NULL || *base == '\0')
		base = "/tmp";
	if (ops == 0 || records == 0) {
		fprintf(stderr, "usage: bench-state [DIR] [OPS] [RECORDS]\n");
		return 2;
	}
	if (bf_fixture_mkdtemp(base, "bench-state", dir, sizeof(dir)) < 0)
		return 2;
#ifdef BF_HAVE_REDIS
	if (redis_start(dir) == 0)
		workloads = W_COUNT;
#else
	printf("redis: not measured: built without the Redis backend\n");
#endif
	for (p = 0; p < 2 && ret == 0; p++) {
		for (w = 0; w < workloads; w++) {
			/* With 8 processes each does a share, so that the
			   runs take similar time. */
			rates[w][p] =
			        measure((enum workload)w, dir, proc_counts[p],
			                p == 0 ? ops : ops / 2);
			if (rates[w][p] < 0) {
				fprintf(stderr, "%s with %u processes failed\n",
				        workload_names[w], proc_counts[p]);
				ret = 1;
				break;
			}
		}
	}
#ifdef BF_HAVE_REDIS
	if (ret == 0 && workloads == W_COUNT) {
		per_record = redis_memory_per_record(records);
		if (per_record < 0)
			ret = 1;
	}
	bf_fixture_redis_stop(&redis);
#endif
	bf_fixture_rmtree(dir);
	if (ret != 0)
		return ret;

	printf("state store (sqlite, WAL, synchronous=NORMAL) in %s, %u ops "
	       "per run\n",
	       base, ops);
	printf("%-32s %5s %12s %8s\n", "operation", "procs", "ops/s", "ratio");
	for (p = 0; p < 2; p++) {
		for (w = 0; w < W_FIRST_REDIS; w++)
			print_row(w, proc_counts[p], rates[w][p],
			          rates[W_RAW_INSERT][p]);
	}
	printf("ratio: ops/s over the raw INSERT reference with the same "
	       "number of processes\n(a lease op is an acquire and a "
	       "release: two write transactions)\n");
	if (workloads < W_COUNT)
		return 0;

	printf("\nstate store on redis-server (appendonly yes, appendfsync "
	       "everysec) on this host\n");
	printf("%-32s %5s %12s %8s\n", "operation", "procs", "ops/s", "ratio");
	for (p = 0; p < 2; p++) {
		for (w = W_FIRST_REDIS; w < W_COUNT; w++)
			print_row(w, proc_counts[p], rates[w][p],
			          rates[w == W_REDIS_UNIX_LEASE
			                        ? W_LEASE
			                        : W_CHECK_AND_SET][p]);
	}
	printf("ratio: ops/s over the same operation on SQLite with the same "
	       "number of processes\n");
	printf("check-and-set, Redis (unix socket) / SQLite: %.2f with 1 "
	       "process, %.2f with 8\n",
	       rates[W_REDIS_UNIX_CHECK_AND_SET][0] / rates[W_CHECK_AND_SET][0],
	       rates[W_REDIS_UNIX_CHECK_AND_SET][1] /
	               rates[W_CHECK_AND_SET][1]);
	printf("redis memory: %.0f bytes per dedup record (%u records, INFO "
	       "memory used_memory), %.0f MB per million\n",
	       per_record, records, per_record * 1e6 / (1024 * 1024));
	return 0;
}
