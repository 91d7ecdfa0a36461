/* The Redis backend's own tests, against a private redis-server: URIs,
   a password over TCP, TLS (rediss://, where hiredis has it), a restart and a
   hung or silent server in the middle of a test, the script cache, atomic
   checkpoints, key layout and expiry, handles inherited over fork(). */

#include "test-state.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef BF_HAVE_REDIS
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#endif

/* ---- Redis ---- */

#ifdef BF_HAVE_REDIS

/* Every write is kept over a restart (appendfsync always): the restart
   tests count on the data. */
static int redis_try_start(struct fixture *f, int port, const char *password)
{
	return bf_fixture_redis_start(&f->redis, f->dir, port, password,
	                              "always");
}

static void redis_start(struct fixture *f, int port, const char *password)
{
	if (redis_try_start(f, port, password) < 0)
		fail_msg("redis-server did not start");
}

static void redis_stop(struct fixture *f)
{
	bf_fixture_redis_stop(&f->redis);
}

int setup_redis(void **statep)
{
	struct fixture *f;

	if (setup(statep) < 0)
		return -1;
	f = *statep;
	redis_start(f, 0, NULL);
	snprintf(f->uri, sizeof(f->uri), "redis+unix://%s", f->redis.sock);
	return 0;
}

void test_redis_uris(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state, *other;
	struct bf_dedup_key key;
	const char *error;
	char uri[400], *oerror;
	int port = bf_fixture_free_port();

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
	        {"redis://h:6379/0?cacert=/ca.pem",
	         "unknown option \"cacert\""},
	        {"redis+unix:///x.sock?sni=h", "unknown option \"sni\""},
#ifdef BF_HAVE_REDIS_TLS
	        {"rediss://", "no host"},
	        {"rediss://h:6380/0?cacert=ca.pem", "invalid cacert"},
	        {"rediss://h:6380/0?cert=/c.pem",
	         "both cert=FILE and key=FILE"},
	        {"rediss://h:6380/0?key=/k.pem", "both cert=FILE and key=FILE"},
	        {"rediss://h:6380/0?sni=", "invalid sni"},
	        {"rediss://h:6380/0?sni=a%20b", "invalid sni"},
	        {"rediss://h:6380/0?cacert=/nonexistent/ca.pem",
	         "cannot read the CA certificates /nonexistent/ca.pem"},
	        {"rediss://h:6380/0?bogus=1", "cacert=FILE, cert=FILE"},
#else
	        /* Debian 12: refused, naming the alternative. */
	        {"rediss://h:6380/0", "TLS is not supported"},
	        {"rediss://h:6380/0?cacert=/ca.pem",
	         "to a local stunnel that carries the link over TLS "
	         "(docs/redis-tls.md)"},
#endif
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
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), 1);
	assert_int_equal(check_and_set(other, &key, NOW, 60, &error), 1);
	bf_state_close(&other);
	snprintf(uri, sizeof(uri), "%s?db=2", f->uri);
	other = open_ok(uri);
	assert_int_equal(check_and_set(other, &key, NOW, 60, &error), 1);
	bf_state_close(&other);
	snprintf(uri, sizeof(uri), "%s?prefix=x:&db=2", f->uri);
	other = open_ok(uri);
	assert_int_equal(check_and_set(other, &key, NOW, 60, &error), 0);
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
void test_redis_tcp_password(void **statep)
{
	struct fixture *f = *statep;
	static const char pw[] = "pw-Zq8x/7";
	struct bf_state *state, *other;
	struct bf_dedup_key key;
	const char *error;
	char uri[300], *oerror;
	int attempt;

	redis_stop(f);
	/* The port may be taken between bf_fixture_free_port() and the server's
	   bind: then it exits at once, and another port is tried. */
	for (attempt = 0; redis_try_start(f, bf_fixture_free_port(), pw) < 0;
	     attempt++)
		assert_true(attempt < 5);
	snprintf(uri, sizeof(uri), "redis://:pw-Zq8x%%2F7@127.0.0.1:%d/3",
	         f->redis.port);
	state = open_ok(uri);
	make_key(&key, "w", "a@example.org", 1);
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), 1);
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), 0);
	/* The ACL form, with the default user. */
	snprintf(uri, sizeof(uri),
	         "redis://default:pw-Zq8x%%2F7@localhost:%d/3?timeout=1000",
	         f->redis.port);
	other = open_ok(uri);
	assert_int_equal(check_and_set(other, &key, NOW, 60, &error), 0);
	/* What the milter and the plugin log never shows the password. */
	assert_null(strstr(bf_state_uri(other), "Zq8x"));
	assert_contains(bf_state_uri(other), "redis://default:***@localhost:");
	bf_state_close(&other);
	/* On the unix socket, user and password are options. */
	snprintf(uri, sizeof(uri),
	         "redis+unix://%s?db=3&user=default&password=pw-Zq8x%%2F7",
	         f->redis.sock);
	other = open_ok(uri);
	assert_null(strstr(bf_state_uri(other), "Zq8x"));
	assert_contains(bf_state_uri(other), "&password=***");
	assert_int_equal(check_and_set(other, &key, NOW, 60, &error), 0);
	bf_state_close(&other);
	/* Another database is another store. */
	snprintf(uri, sizeof(uri), "redis://:pw-Zq8x%%2F7@127.0.0.1:%d/4",
	         f->redis.port);
	other = open_ok(uri);
	assert_int_equal(check_and_set(other, &key, NOW, 60, &error), 1);
	bf_state_close(&other);
	bf_state_close(&state);

	snprintf(uri, sizeof(uri), "redis://:not-it@127.0.0.1:%d/3",
	         f->redis.port);
	oerror = open_error(uri);
	assert_contains(oerror, "authentication failed");
	assert_null(strstr(oerror, "not-it"));
	free(oerror);
	snprintf(uri, sizeof(uri), "redis://127.0.0.1:%d/3", f->redis.port);
	oerror = open_error(uri);
	assert_contains(oerror, "wants a password");
	free(oerror);
}

/* redis-server stops in the middle: every call fails with an error that
   names the server; once it is back the same handle works again by
   itself, with the data it had. */
void test_redis_restart(void **statep)
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
	assert_int_equal(check_and_set(state, &key, NOW, 600, &error), 1);
	assert_int_equal(
	        bf_state_window_open(state, "restore-1", NOW, 0, &error), 0);

	redis_stop(f);
	snprintf(want, sizeof(want),
	         "state store %s: check-and-set: no socket %s (is "
	         "redis-server running?)",
	         f->uri, f->redis.sock);
	assert_int_equal(check_and_set(state, &key2, NOW, 600, &error), -1);
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
	assert_int_equal(check_and_set(state, &key, NOW, 600, &error), 0);
	assert_int_equal(check_and_set(state, &key2, NOW, 600, &error), 1);
	assert_int_equal(bf_state_window_current(state, NOW, &w, &error), 1);
	assert_string_equal(w.name, "restore-1");
	bf_window_clear(&w);

	/* A restart between two calls costs no failed call: the closed
	   connection is noticed before sending. */
	redis_stop(f);
	redis_start(f, 0, NULL);
	assert_int_equal(check_and_set(state, &key2, NOW, 600, &error), 0);
	bf_state_close(&state);
}

/* A hung redis-server (SIGSTOP): calls fail after the timeout instead of
   hanging a login, and work again when it continues. */
void test_redis_timeout(void **statep)
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
	assert_int_equal(check_and_set(state, &key, NOW, 600, &error), 1);
	assert_int_equal(kill(f->redis.pid, SIGSTOP), 0);
	start = bf_fixture_now();
	make_key(&key, "w", "a@example.org", 2);
	assert_int_equal(check_and_set(state, &key, NOW, 600, &error), -1);
	assert_true(bf_fixture_now() - start < 1.5);
	assert_contains(error, "no answer within 300 ms");
	assert_contains(error, f->uri);
	/* A new connection is accepted by the kernel but not answered
	   either. */
	start = bf_fixture_now();
	assert_int_equal(bf_state_window_close(state, NOW, &error), -1);
	assert_true(bf_fixture_now() - start < 1.5);
	assert_contains(error, "no answer within 300 ms");
	assert_int_equal(kill(f->redis.pid, SIGCONT), 0);
	make_key(&key, "w", "a@example.org", 3);
	assert_int_equal(check_and_set(state, &key, NOW, 600, &error), 1);
	bf_state_close(&state);
}

/* A caller's wait limit on Redis: a hung server (SIGSTOP) on the
   connection in use, and a server that accepts connections and never
   answers (a socket nobody reads), each cost about the limit instead of
   the URI's timeout (2000 ms by default); 0 restores that. */
void test_redis_wait_limit(void **statep)
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
	assert_int_equal(check_and_set(state, &key, NOW, 600, &error), 1);
	bf_state_set_wait_limit(state, 200);
	assert_int_equal(kill(f->redis.pid, SIGSTOP), 0);
	start = bf_fixture_now();
	make_key(&key, "w", "a@example.org", 2);
	assert_int_equal(check_and_set(state, &key, NOW, 600, &error), -1);
	took = bf_fixture_now() - start;
	assert_true(took >= 0.19);
	assert_true(took < 1.5);
	assert_contains(error, "no answer within 200 ms");
	assert_contains(error, "wait limit");
	assert_true(bf_state_stalled(state));

	bf_state_set_wait_limit(state, 0);
	start = bf_fixture_now();
	assert_int_equal(bf_state_window_close(state, NOW, &error), -1);
	took = bf_fixture_now() - start;
	assert_true(took >= 1.99);
	assert_contains(error, "no answer within 2000 ms");
	assert_contains(error, "?timeout=MS");

	/* The server goes away and something else listens on its socket,
	   accepting connections and never answering: the reconnect is
	   bounded by the limit too. */
	redis_stop(f);
	unlink(f->redis.sock);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	assert_true(strlen(f->redis.sock) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, f->redis.sock, strlen(f->redis.sock) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(fd, 16), 0);
	bf_state_set_wait_limit(state, 200);
	start = bf_fixture_now();
	assert_int_equal(check_and_set(state, &key, NOW, 600, &error), -1);
	took = bf_fixture_now() - start;
	assert_true(took >= 0.19);
	assert_true(took < 1.5);
	assert_contains(error, "no answer within 200 ms");
	close(fd);
	bf_state_close(&state);
}

/* The server forgot the scripts (SCRIPT FLUSH, as after a restart): they
   are sent whole again. */
void test_redis_noscript(void **statep)
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
		c = bf_fixture_redis_connect(&f->redis, NULL);
		assert_non_null(c);
		reply = redisCommand(c, "SCRIPT FLUSH");
		assert_non_null(reply);
		freeReplyObject(reply);
		redisFree(c);
		assert_int_equal(check_and_set(state, &key, NOW, 600, &error),
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
void test_redis_checkpoint_atomic(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	redisContext *c = bf_fixture_redis_connect(&f->redis, NULL);
	redisReply *reply;

	assert_non_null(c);
	reply = redisCommand(c, "SET backfill:merge:erin junk");
	freeReplyObject(reply);
	checkpoint_not_half_done(state, f->uri, "WRONGTYPE");
	reply = redisCommand(c, "EXISTS backfill:journal:erin");
	assert_int_equal(reply->integer, 0);
	freeReplyObject(reply);
	redisFree(c);
	bf_state_close(&state);
}

/* Values damaged in Redis (by hand, or by something else under the same
   prefix) are refused with an error naming them, never read past: a NUL
   byte inside a journal entry's fingerprint made the parser index beyond
   the string strndup() gave it (found by fuzz-redis-values). */
void test_redis_damaged_values(void **statep)
{
	static const char fp[] = "00112233445566778899aabbccddeeff"
	                         "00112233445566778899aabbccddeeff";
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct journal_iter_ctx ctx;
	struct bf_window w;
	redisContext *c = bf_fixture_redis_connect(&f->redis, NULL);
	redisReply *reply;
	const char *error;
	char entry[256];
	size_t len;

	assert_non_null(c);
	len = (size_t)snprintf(entry, sizeof(entry),
	                       "0000000012:7:%s:32:%s:5:INBOX:INBOX", fp, fp);
	entry[13 + 60] = '\0'; /* inside the fingerprint */
	reply = redisCommand(c, "RPUSH backfill:journal:gina %b", entry, len);
	freeReplyObject(reply);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(bf_state_journal_iter(state, "gina", journal_iter_cb,
	                                       &ctx, &error),
	                 -1);
	assert_contains(error, "unreadable journal entry");
	reply = redisCommand(c, "RPUSH backfill:windows %b", "1:0:0:w\0x", 9);
	freeReplyObject(reply);
	assert_int_equal(bf_state_window_current(state, NOW, &w, &error), -1);
	assert_contains(error, "unreadable window");
	redisFree(c);
	bf_state_close(&state);
}

static void redis_ok(redisContext *c, const char *fmt, ...)
{
	redisReply *reply;
	va_list args;

	va_start(args, fmt);
	reply = redisvCommand(c, fmt, args);
	va_end(args);
	assert_non_null(reply);
	assert_int_not_equal(reply->type, REDIS_REPLY_ERROR);
	freeReplyObject(reply);
}

/* A count or time in a merge record's hash that backfill cannot have
   written is never read as a figure: "-7" came back as 2^64 - 7
   archived messages, an overflow as 2^64 - 1, "abc" as 0.  The record
   reads as failed with an error naming user and field; the other users'
   records are read as they are.  A window or dedup record with such a
   number is unreadable, as other damage is. */
void test_redis_damaged_numbers(void **statep)
{
	static const struct {
		const char *user, *field, *value;
	} cases[] = {
	        {"neg", "archived", "-7"},
	        {"big", "archived", "99999999999999999999999"},
	        {"abc", "archived", "abc"},
	        {"int64", "archived", "9223372036854775808"},
	        {"blank", "added", " 5"},
	        {"plus", "added", "+5"},
	        {"zero", "skipped", "05"},
	        {"tail", "duplicates", "5x"},
	        {"empty", "uidl_collisions", ""},
	        {"time", "started", "-1"},
	        {"late", "updated", "253402300800"},
	};
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	redisContext *c = bf_fixture_redis_connect(&f->redis, NULL);
	struct damaged_iter_ctx ctx;
	struct bf_merge_record rec;
	struct bf_dedup_first first;
	struct bf_dedup_key key;
	struct bf_window w;
	const char *error;
	char want[128], hex[BF_FP_HEX_SIZE];
	size_t i, n = sizeof(cases) / sizeof(cases[0]);
	int result;

	assert_non_null(c);
	redis_ok(c, "HSET backfill:merge:good status done archived 5 added 5 "
	            "updated 9223372036 last_error x");
	redis_ok(c, "ZADD backfill:merges 0 good");
	for (i = 0; i < n; i++) {
		redis_ok(c,
		         "HSET backfill:merge:%s status done archived 5 "
		         "added 5 %s %s",
		         cases[i].user, cases[i].field, cases[i].value);
		redis_ok(c, "ZADD backfill:merges 0 %s", cases[i].user);
	}
	/* the largest count SQLite holds is a count */
	redis_ok(c, "HSET backfill:merge:max status done archived "
	            "9223372036854775807");
	redis_ok(c, "ZADD backfill:merges 0 max");

	for (i = 0; i < n; i++) {
		assert_int_equal(
		        bf_state_merge_get(state, cases[i].user, &rec, &error),
		        1);
		assert_int_equal(rec.status, BF_MERGE_FAILED);
		assert_int_not_equal(rec.archived + rec.added, 0);
		assert_true(rec.archived <= 5 && rec.added <= 5 &&
		            rec.skipped == 0 && rec.duplicates == 0 &&
		            rec.uidl_collisions == 0 && rec.started == 0 &&
		            rec.updated == 0);
		assert_non_null(rec.last_error);
		snprintf(want, sizeof(want),
		         "damaged merge record: field %s of %s is not",
		         cases[i].field, cases[i].user);
		assert_contains(rec.last_error, want);
		bf_merge_record_clear(&rec);
	}
	assert_int_equal(bf_state_merge_get(state, "good", &rec, &error), 1);
	assert_int_equal(rec.status, BF_MERGE_DONE);
	assert_int_equal(rec.archived, 5);
	assert_int_equal(rec.updated, 9223372036);
	assert_string_equal(rec.last_error, "x");
	bf_merge_record_clear(&rec);
	assert_int_equal(bf_state_merge_get(state, "max", &rec, &error), 1);
	assert_int_equal(rec.status, BF_MERGE_DONE);
	assert_true(rec.archived == 9223372036854775807ULL);
	assert_null(rec.last_error);
	bf_merge_record_clear(&rec);
	memset(&ctx, 0, sizeof(ctx));
	assert_int_equal(
	        bf_state_merge_iter(state, damaged_iter_cb, &ctx, &error), 0);
	assert_int_equal(ctx.count, n + 2);
	assert_int_equal(ctx.failed, n);
	/* 5 from every record but the three damaged in archived, and max */
	assert_true(ctx.archived_sum == 5 * (n - 3) + 9223372036854775807ULL);

	/* a window with a signed time */
	redis_ok(c, "RPUSH backfill:windows -1:0:0:w");
	assert_int_equal(bf_state_window_current(state, NOW, &w, &error), -1);
	assert_contains(error, "unreadable window");
	redis_ok(c, "DEL backfill:windows");
	redis_ok(c, "RPUSH backfill:windows 1700000000:0:0:w");
	assert_int_equal(bf_state_window_current(state, NOW, &w, &error), 1);
	bf_window_clear(&w);

	/* a dedup record with a delivered flag backfill does not write */
	make_key(&key, "w", "a@example.org", 1);
	bf_fp_to_hex(key.fingerprint, hex);
	redis_ok(c,
	         "SET backfill:dedup:w:%s:a@example.org "
	         "1700000000:1800000000:7:0:3:mx1Q1",
	         hex);
	memset(&first, 0, sizeof(first));
	assert_int_equal(bf_state_dedup_check_and_set_many(
	                         state, &key, 1, NOW, 3600, "mx1", "Q2",
	                         &result, &first, &error),
	                 -1);
	assert_contains(error, "unreadable dedup record");
	bf_dedup_first_clear(&first);
	redisFree(c);
	bf_state_close(&state);
}

/* A window name in Redis that bf_state_window_open() refuses is a store
   error, never handed to the milter for X-Backfill-Window; opening
   another window ends it. */
void test_redis_damaged_window_name(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	redisContext *c = bf_fixture_redis_connect(&f->redis, NULL);

	assert_non_null(c);
	redis_ok(c, "RPUSH backfill:windows %s",
	         "1700000000:0:0:w1\r\nAuthentication-Results: x; dkim=pass");
	damaged_window_name_refused(state);
	redisFree(c);
	bf_state_close(&state);
}

/* Key layout: records carry a Redis TTL (they expire by themselves, a
   little after their expiry by the caller's clock), leases and merge
   records do not; the window name is escaped so keys stay unambiguous. */
void test_redis_keys_and_ttl(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key key, keys[4];
	struct bf_merge_record rec;
	redisContext *c = bf_fixture_redis_connect(&f->redis, NULL);
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
void test_redis_fork(void **statep)
{
	struct fixture *f = *statep;
	struct bf_state *state = open_ok(f->uri);
	struct bf_dedup_key key;
	const char *error;
	unsigned int i;
	pid_t pid;
	int status;

	make_key(&key, "w", "a@example.org", 0);
	assert_int_equal(check_and_set(state, &key, NOW, 600, &error), 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (i = 1; i <= 200; i++) {
			make_key(&key, "child", "a@example.org", i);
			if (check_and_set(state, &key, NOW, 600, &error) != 1)
				_exit(1);
		}
		_exit(0);
	}
	for (i = 1; i <= 200; i++) {
		make_key(&key, "parent", "a@example.org", i);
		assert_int_equal(check_and_set(state, &key, NOW, 600, &error),
		                 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	bf_state_close(&state);
}

#endif /* BF_HAVE_REDIS */

#ifdef BF_HAVE_REDIS_TLS
/* ---- TLS (rediss://) ---- */

/* A private redis-server speaking TLS only, with a throwaway CA; the
   fixture's uri verifies its certificate with that CA and presents a
   client certificate (redis-server wants one by default).  The contract
   tests run on it unchanged. */
int setup_rediss(void **statep)
{
	struct fixture *f;
	int attempt;

	if (setup(statep) < 0)
		return -1;
	f = *statep;
	/* The port may be taken before the server binds it: another. */
	for (attempt = 0;
	     bf_fixture_redis_start_tls(&f->redis, f->dir,
	                                bf_fixture_free_port()) < 0;
	     attempt++) {
		if (attempt == 4)
			fail_msg("redis-server with TLS did not start");
	}
	if (snprintf(f->uri, sizeof(f->uri),
	             "rediss://127.0.0.1:%d/0?cacert=%s/ca.pem"
	             "&cert=%s/client.pem&key=%s/client.key",
	             f->redis.port, f->dir, f->dir,
	             f->dir) >= (int)sizeof(f->uri))
		fail_msg("the test's directory name is too long");
	return 0;
}

/* "rediss://HOST:PORT/0?" with the test CA's files of dir: cacert (NULL:
   none, the system's CAs), the client certificate with key (NULL: none),
   sni (NULL: none). */
static void tls_uri(char *buf, size_t size, const char *host, int port,
                    const char *dir, const char *cacert, const char *key,
                    const char *sni)
{
	int len = snprintf(buf, size, "rediss://%s:%d/0?timeout=2000", host,
	                   port);

	if (cacert != NULL)
		len += snprintf(buf + len, size - (size_t)len, "&cacert=%s/%s",
		                dir, cacert);
	if (key != NULL)
		len += snprintf(buf + len, size - (size_t)len,
		                "&cert=%s/client.pem&key=%s/%s", dir, dir, key);
	if (sni != NULL)
		len += snprintf(buf + len, size - (size_t)len, "&sni=%s", sni);
	assert_true((size_t)len < size);
}

/* Who should get a link gets one (by address and by name); who should
   not gets none, and an error that says why. */
void test_rediss_refused(void **statep)
{
	struct fixture *f = *statep;
	static const struct {
		const char *host, *cacert, *key, *sni, *want;
	} refused[] = {
	        /* another CA */
	        {"127.0.0.1", "other-ca.pem", "client.key", NULL,
	         "connecting: TLS: the server's certificate is not trusted"},
	        /* the system's CAs do not know the test CA either */
	        {"127.0.0.1", NULL, "client.key", NULL, "not trusted"},
	        /* the right CA, but the certificate names another server */
	        {"127.0.0.1", "ca.pem", "client.key", "redis.example.net",
	         "does not name redis.example.net"},
	        /* no client certificate: the server hangs up (TLS 1.3: after
	           the handshake, at the first command) */
	        {"127.0.0.1", "ca.pem", NULL, NULL, "client certificate"},
	        /* a key that does not match the certificate */
	        {"127.0.0.1", "ca.pem", "server.key", NULL,
	         "cannot use the client certificate"},
	};
	struct bf_state *state;
	struct bf_dedup_key key;
	const char *error;
	char uri[400], *oerror;
	size_t i;

	state = open_ok(f->uri);
	assert_string_equal(bf_state_uri(state), f->uri);
	make_key(&key, "w", "a@example.org", 1);
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), 1);
	bf_state_close(&state);
	/* localhost is in the certificate too */
	tls_uri(uri, sizeof(uri), "localhost", f->redis.port, f->dir, "ca.pem",
	        "client.key", NULL);
	state = open_ok(uri);
	assert_int_equal(check_and_set(state, &key, NOW, 60, &error), 0);
	bf_state_close(&state);

	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		tls_uri(uri, sizeof(uri), refused[i].host, f->redis.port,
		        f->dir, refused[i].cacert, refused[i].key,
		        refused[i].sni);
		oerror = open_error(uri);
		assert_contains(oerror, refused[i].want);
		free(oerror);
	}
	/* Plain redis:// to the TLS port: no link either. */
	snprintf(uri, sizeof(uri), "redis://127.0.0.1:%d/0?timeout=500",
	         f->redis.port);
	oerror = open_error(uri);
	assert_contains(oerror, "connecting: ");
	free(oerror);
}
#endif

/* A Redis host name whose DNS server never answers: opening the store
   fails after the URI's timeout, not after the resolver's own (here
   timeout:5 attempts:2 in resolv.conf: 10 s and more).  In a child, in a
   mount namespace of its own where /etc/resolv.conf names a UDP socket of
   this test that reads and never answers, and nsswitch.conf looks host
   names up in the DNS only.  Root only (mounts); skipped where the mount
   namespace cannot be made private (a chroot whose / is no mount point):
   a bind mount that propagated would change the host's resolv.conf. */
void test_redis_dns_timeout(void **statep)
{
	struct fixture *f = *statep;
	struct sockaddr_in sin;
	char resolv[160], nss[160];
	FILE *fp;
	pid_t pid;
	int fd, status;

	if (geteuid() != 0)
		skip();
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(53);
	sin.sin_addr.s_addr = htonl(0x7f00004d); /* 127.0.0.77 */
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	snprintf(resolv, sizeof(resolv), "%s/resolv.conf", f->dir);
	snprintf(nss, sizeof(nss), "%s/nsswitch.conf", f->dir);
	assert_non_null(fp = fopen(resolv, "w"));
	fputs("nameserver 127.0.0.77\noptions timeout:5 attempts:2\n", fp);
	assert_int_equal(fclose(fp), 0);
	assert_non_null(fp = fopen(nss, "w"));
	fputs("hosts: dns\n", fp);
	assert_int_equal(fclose(fp), 0);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct bf_state *state;
		char *error = NULL;
		double start, took;
		int ret;

		if (unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount(resolv, "/etc/resolv.conf", NULL, MS_BIND, NULL) <
		            0 ||
		    mount(nss, "/etc/nsswitch.conf", NULL, MS_BIND, NULL) < 0) {
			perror("test_redis_dns_timeout: skipped: mount "
			       "namespace");
			_exit(77);
		}
		start = bf_fixture_now();
		ret = bf_state_open("redis://redis.backfill-test.example:6379/"
		                    "0?timeout=300",
		                    &state, &error);
		took = bf_fixture_now() - start;
		fprintf(stderr, "open with a silent DNS: %d after %.3f s: %s\n",
		        ret, took, error != NULL ? error : "");
		_exit(ret == -1 && took < 1.5 && error != NULL &&
		                      strstr(error, "no answer from the DNS "
		                                    "within 300 ms") != NULL
		              ? 0
		              : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(fd);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		skip();
	assert_int_equal(WEXITSTATUS(status), 0);
}
