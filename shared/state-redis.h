#ifndef BF_STATE_REDIS_H
#define BF_STATE_REDIS_H

/* The Redis backend's own modules, private to it:
   - state-redis-uri.c    the URI: redis://..., rediss://... and
                          redis+unix://...
   - state-redis-conn.c   the connection: command arguments, connecting,
                          AUTH/SELECT, timeouts, errors, reconnecting
   - state-redis-resolve.c the host name looked up within the wait limit
   - state-redis-tls.c    TLS (rediss://), where hiredis has hiredis_ssl
                          (BF_HAVE_REDIS_TLS): the certificate checks
   - state-redis-values.c the values stored in Redis read back into
                          records (every one of them may be damaged or
                          foreign: the parsers are fuzzed)
   - state-redis.c        the operations: Lua scripts and the keys. */

#include "state-private.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- the URI ---- */

#define BF_REDIS_DEFAULT_PORT       6379
#define BF_REDIS_DEFAULT_TIMEOUT_MS 2000
#define BF_REDIS_MAX_TIMEOUT_MS     600000
#define BF_REDIS_DEFAULT_PREFIX     "backfill:"

enum bf_redis_transport {
	BF_REDIS_TCP,  /* redis:// */
	BF_REDIS_UNIX, /* redis+unix:// */
	BF_REDIS_TLS,  /* rediss:// */
};

struct bf_redis_uri {
	enum bf_redis_transport transport;
	char *host; /* TCP and TLS */
	int port;
	char *socket_path; /* unix socket */
	char *user, *password;
	unsigned int db;
	char *prefix;
	int timeout_ms;
	/* TLS: absolute paths (NULL: the system's CAs; no client
	   certificate), and the name the server's certificate must carry
	   (NULL: host). */
	char *cacert, *cert, *key, *sni;
};

/* Parses location (the URI after "redis:", "rediss:" or "redis+unix:")
   into uri (all of it freed with bf_redis_uri_clear(), also after an
   error).  -1 with a malloc()ed message in *error_r (never quoting the
   password).  The TLS options are parsed also where this build has no
   TLS (bf_redis_open() refuses rediss:// there). */
int bf_redis_uri_parse(const char *location, enum bf_redis_transport transport,
                       struct bf_redis_uri *uri, char **error_r);
void bf_redis_uri_clear(struct bf_redis_uri *uri);
/* What error messages call the store: the server, without credentials
   (malloc()ed, NULL when out of memory). */
char *bf_redis_uri_name(const struct bf_redis_uri *uri);

/* ---- the connection ---- */

struct redisContext;
struct redisReply;
struct ssl_ctx_st;

struct redis_state {
	struct bf_state state;

	struct ssl_ctx_st *tls;   /* rediss://: made once per handle */
	struct redisContext *ctx; /* NULL: connect at the next call */
	pid_t ctx_pid;            /* the process that connected it */
	struct bf_redis_uri uri;
	/* The one in force: the URI's, or the caller's wait limit (see
	   bf_state_set_wait_limit()). */
	int timeout_ms;
	/* a host name lookup still running (state-redis-resolve.c) */
	struct bf_redis_lookup *lookup;
};

#define RS(state) ((struct redis_state *)(state))

/* ---- the host name (state-redis-resolve.c) ---- */

struct bf_redis_lookup;
/* Looks host up within timeout_ms.  1: *addrs_r (NULL-terminated numeric
   addresses, freed with bf_redis_addrs_free()); 0: connect with the name
   itself (a numeric address, or no lookup with a deadline in this
   build); -1: the lookup failed (*error_r, static); -2: no answer within
   timeout_ms (the lookup stays in *lookup, for the next call). */
int bf_redis_resolve(struct bf_redis_lookup **lookup, const char *host,
                     int port, int timeout_ms, char ***addrs_r,
                     const char **error_r);
void bf_redis_addrs_free(char **addrs);
/* At close: a lookup still running is cancelled or left to glibc. */
void bf_redis_lookup_abandon(struct bf_redis_lookup **lookup);

/* argv of one command; strings are borrowed or owned (freed with it). */
struct bf_rargs {
	const char **argv;
	size_t *lens;
	char **owned;
	size_t count, alloc;
	bool failed; /* out of memory: the command is not sent */
};

void bf_rargs_add(struct bf_rargs *a, const char *s, size_t len);
void bf_rargs_str(struct bf_rargs *a, const char *s);
/* Takes s (malloc()ed, NULL = out of memory). */
void bf_rargs_take(struct bf_rargs *a, char *s, size_t len);
void bf_rargs_printf(struct bf_rargs *a, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void bf_rargs_free(struct bf_rargs *a);

/* Opens a handle and connects (a wrong address or password is reported
   at once); later failures are per call, and reconnect.  wait_ms bounds
   connecting and every reply from the start, as bf_redis_set_wait_limit()
   (0: the URI's timeout=). */
int bf_redis_open(const char *location, enum bf_redis_transport transport,
                  unsigned int wait_ms, struct bf_state **state_r,
                  char **error_r);
void bf_redis_close(struct bf_state *state);
/* Parses location as bf_redis_open() does, connecting nowhere: what a
   configuration check can tell (rediss:// in a build without TLS too). */
int bf_redis_check(const char *location, enum bf_redis_transport transport,
                   char **error_r);
void bf_redis_set_wait_limit(struct bf_state *state, unsigned int ms);

/* Connects unless connected (again after fork() or when the server
   closed the connection). */
int bf_redis_connect(struct redis_state *r, const char *what);
/* Sends one command on the connection and reads its reply, error replies
   included.  -1 on I/O errors (connection dropped). */
int bf_redis_send(struct redis_state *r, const struct bf_rargs *a,
                  const char *what, struct redisReply **reply_r);
/* One command (connecting first); error replies are errors.  *reply_r to
   freeReplyObject(). */
int bf_redis_call(struct redis_state *r, const struct bf_rargs *a,
                  const char *what, struct redisReply **reply_r);
void bf_redis_drop(struct redis_state *r);
/* Drops the connection after an I/O error on it and describes it. */
int bf_redis_conn_failed(struct redis_state *r, const char *what);
/* An error reply of the server, with what the operator can do. */
int bf_redis_reply_error(struct redis_state *r, const char *what,
                         const struct redisReply *reply);
/* Frees reply. */
int bf_redis_bad_reply(struct redis_state *r, const char *what,
                       struct redisReply *reply);
int bf_redis_oom(struct redis_state *r);

#ifdef BF_HAVE_REDIS_TLS
/* state-redis-tls.c: the handle's TLS context from the URI's files (a
   missing or unreadable file is reported at open), and the handshake on a
   connected context, checking the server's certificate against the CAs
   and its name against sni= or the host.  Both -1 with the handle's
   error set. */
int bf_redis_tls_init(struct redis_state *r);
int bf_redis_tls_connect(struct redis_state *r, const char *what);
void bf_redis_tls_deinit(struct redis_state *r);
#endif

/* SIGPIPE blocked around a write (pipelined commands). */
struct bf_redis_sigpipe_guard {
	sigset_t old;
	bool was_pending;
};
void bf_redis_sigpipe_block(struct bf_redis_sigpipe_guard *g);
void bf_redis_sigpipe_restore(struct bf_redis_sigpipe_guard *g);

/* ---- stored values ---- */

/* Every parser takes the value as Redis returned it (len bytes, NUL at
   str[len] as hiredis gives it) and refuses what backfill did not write;
   none trusts a length or a number inside the value. */

/* The numeric fields of a merge record's hash after status, cursor and
   last_error: 5 counters then 3 times. */
extern const char *const bf_redis_merge_num_fields[8];
void bf_redis_merge_num_ptrs(struct bf_merge_record *rec, uint64_t *u[5],
                             time_t *t[3]);
/* One field/value pair of the hash into rec (zeroed by the caller first).
   1 it was the status, 0 another or an unknown field, 2 a count or time
   whose value is not a number as backfill writes it (canonical unsigned
   decimal within BF_STATE_COUNT_MAX or BF_STATE_TIME_MAX): the field is
   set to 0 and the caller marks the record damaged
   (bf_merge_record_damaged()), -1 out of memory (rec cleared).  A record
   without status reads as failed: the caller sets it. */
int bf_redis_merge_field(struct bf_merge_record *rec, const char *field,
                         const char *value, size_t len);
/* A journal entry (see state-redis.c); false: damaged (row may hold
   strings to free with the row). */
bool bf_redis_journal_parse(const char *str, size_t len,
                            struct bf_journal_row *row);
/* "opened:until:closed:name"; false: damaged. */
bool bf_redis_window_parse(const char *str, size_t len,
                           struct bf_window *window);
/* A dedup record; false: damaged (first cleared). */
bool bf_redis_dedup_first_parse(const char *str, size_t len,
                                struct bf_dedup_first *first);

#endif
