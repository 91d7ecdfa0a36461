#ifndef BF_STATE_FIXTURE_H
#define BF_STATE_FIXTURE_H

/* What the state store's tests and its benchmark (bench/bench-state.c)
   set up around the store: private temporary directories, and a private
   redis-server started for the run.  No cmocka here: the benchmark is
   not a test.  Functions return -1 (and say why on stderr) where a test
   would fail. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A new private directory "<base>/<name>.XXXXXX".  0 or -1. */
int bf_fixture_mkdtemp(const char *base, const char *name, char *dir_r,
                       size_t size);
/* Removes dir and everything below it, never following symlinks. */
void bf_fixture_rmtree(const char *dir);
/* Waits for every child; returns how many did not exit 0. */
unsigned int bf_fixture_wait_children(const pid_t *pids, unsigned int count);
double bf_fixture_now(void); /* CLOCK_MONOTONIC seconds */

#ifdef BF_HAVE_REDIS
struct redisContext;

struct bf_fixture_redis {
	pid_t pid; /* 0 = not running */
	int port;  /* 0 = unix socket only */
	bool tls;  /* port speaks TLS only (the socket stays plain) */
	char dir[96];
	char sock[108]; /* sun_path's size */
};

/* redis-server: $BF_REDIS_SERVER, or the first one in PATH or the usual
   places.  NULL: not installed. */
const char *bf_fixture_redis_server(void);
/* A TCP port free right now on 127.0.0.1 (others run tests on this
   machine at the same time: never a fixed one); -1 on error. */
int bf_fixture_free_port(void);
/* Starts redis-server in dir (its data, log and socket dir/redis.sock):
   on 127.0.0.1:port too when port is not 0, with requirepass when
   password is not NULL, appendonly with appendfsync as given ("always"
   keeps every write over a restart, "everysec" is what
   docs/state-store.md recommends).  0 once it answers PING; -1 when it
   exited at startup (the port was taken meanwhile: try another) or did
   not answer within 5 s (its log is printed on stderr). */
int bf_fixture_redis_start(struct bf_fixture_redis *redis, const char *dir,
                           int port, const char *password,
                           const char *appendfsync);
/* The same on 127.0.0.1:port over TLS only (--port 0 --tls-port port,
   client certificates required, appendfsync always), with a throwaway
   CA made by openssl in dir: ca.pem signs server.pem (for localhost and
   127.0.0.1) and client.pem/client.key; other-ca.pem is a CA that signed
   nothing of this server's. */
int bf_fixture_redis_start_tls(struct bf_fixture_redis *redis, const char *dir,
                               int port);
/* Stops it (also when stopped with SIGSTOP) and waits for it. */
void bf_fixture_redis_stop(struct bf_fixture_redis *redis);
/* A connection of the test itself (TCP when it has a plain port, else
   the unix socket), to look at or
   tamper with the data; NULL when it cannot connect. */
struct redisContext *
bf_fixture_redis_connect(const struct bf_fixture_redis *redis,
                         const char *password);
void bf_fixture_redis_log_dump(const struct bf_fixture_redis *redis);
#endif

#endif
