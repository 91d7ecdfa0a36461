#ifndef BF_TEST_STATE_H
#define BF_TEST_STATE_H

/* The state store's tests, in three files of one program: the contract
   every backend keeps (test-state.c, run on SQLite and on Redis), what is
   SQLite's own (test-state-sqlite.c: files, modes, locks, the schema) and
   what is Redis's own (test-state-redis.c: URIs, passwords, restarts, hung
   servers, the script cache, keys and expiry).  The fixtures below them
   (temporary directories, a private redis-server) are state-fixture.c,
   shared with bench/bench-state.c. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>

#include "state-fixture.h"
#include "state.h"

#define NOW 1700000000

struct fixture {
	char dir[64];
	char path[128];
	char uri[200];
#ifdef BF_HAVE_REDIS
	/* the server this test started, if any */
	struct bf_fixture_redis redis;
#endif
};

/* cmocka set-up and tear-down: a temp dir with uri "sqlite:<dir>/state.db";
   setup_redis() also starts a redis-server there, uri on its socket. */
int setup(void **statep);
int teardown(void **statep);
struct bf_state *open_ok(const char *uri);
/* Opens uri expecting failure; returns the malloc()ed error. */
char *open_error(const char *uri);
void assert_contains(const char *haystack, const char *needle);
void make_key(struct bf_dedup_key *key, const char *window, const char *rcpt,
              unsigned int n);
/* bf_state_dedup_check_and_set() of key at now for ttl seconds, as host
   "mx" and queue id "Q", without the first sighting: 1 new, 0 seen
   before, -1 error (*error_r). */
int check_and_set(struct bf_state *state, const struct bf_dedup_key *key,
                  time_t now, unsigned int ttl, const char **error_r);
/* Journal entry n of a test journal, and the iterator callback that
   checks entries come back as made, in order. */
void make_entry(struct bf_journal_entry *e, unsigned int n);
struct journal_iter_ctx {
	unsigned int count;
	bool bad;
};
int journal_iter_cb(const struct bf_journal_entry *entry, void *context);
/* Counts the records of a merge iteration, the failed ones and the sum of
   archived (tests of damaged values). */
struct damaged_iter_ctx {
	unsigned int count, failed;
	uint64_t archived_sum;
};
int damaged_iter_cb(const char *user, const struct bf_merge_record *rec,
                    void *context);
/* With a damaged window in force (opened at NOW): opening "w2" at NOW + 2
   exclusively is refused with an error saying so, replacing it works (the
   window before unknown), and "w2" then reads back. */
void damaged_window_replaced(struct bf_state *state);
/* With a window in force (opened at NOW) whose name is damaged with CR LF
   and an Authentication-Results header after it: reading it at NOW + 1
   is an error that says what to do and carries neither the line break
   nor the header, and damaged_window_replaced() holds. */
void damaged_window_name_refused(struct bf_state *state);
/* With a failure injected into the checkpoint of "erin" (by the caller,
   as the backend allows): erin's checkpoint of a record and 3 journal
   entries fails with an error containing where and why, and leaves no
   journal entry; then the same handle checkpoints "frank"'s. */
void checkpoint_not_half_done(struct bf_state *state, const char *where,
                              const char *why);

/* test-state-sqlite.c */
void test_open_creates_group_writable(void **statep);
void test_open_bad_uris(void **statep);
void test_uri_check(void **statep);
void test_open_missing_dir(void **statep);
void test_open_corrupt(void **statep);
void test_open_newer_schema(void **statep);
void test_open_unwritable(void **statep);
void test_busy_timeout(void **statep);
void test_wait_limit(void **statep);
void test_open_wait_limit(void **statep);
void test_checkpoint_atomic(void **statep);
void test_sqlite_damaged_numbers(void **statep);
void test_sqlite_damaged_window_name(void **statep);

#ifdef BF_HAVE_REDIS
/* test-state-redis.c */
int setup_redis(void **statep);
void test_redis_uris(void **statep);
void test_redis_tcp_password(void **statep);
void test_redis_restart(void **statep);
void test_redis_timeout(void **statep);
void test_redis_wait_limit(void **statep);
void test_redis_noscript(void **statep);
void test_redis_checkpoint_atomic(void **statep);
void test_redis_damaged_values(void **statep);
void test_redis_damaged_numbers(void **statep);
void test_redis_damaged_window_name(void **statep);
void test_redis_keys_and_ttl(void **statep);
void test_redis_fork(void **statep);
void test_redis_dns_timeout(void **statep);
#ifdef BF_HAVE_REDIS_TLS
int setup_rediss(void **statep);
void test_rediss_refused(void **statep);
#endif
#endif

#endif
