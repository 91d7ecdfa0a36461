/* The Redis backend's connection: command arguments, connecting with
   AUTH and SELECT, timeouts, what each I/O or server error means for the
   operator, and reconnecting.  A connection that failed is dropped; the
   next call connects again, so a restart of redis-server needs no restart
   of Dovecot or the milter. */

#include "state-redis.h"
#include "clock.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int bf_redis_oom(struct redis_state *r)
{
	bf_state_set_error(&r->state, "out of memory");
	return -1;
}

/* ---- command arguments ---- */

static bool args_grow(struct bf_rargs *a)
{
	const char **argv;
	size_t *lens, n;
	char **owned;

	if (a->count < a->alloc)
		return true;
	n = a->alloc == 0 ? 16 : a->alloc * 2;
	argv = realloc(a->argv, n * sizeof(*argv));
	if (argv != NULL)
		a->argv = argv;
	lens = realloc(a->lens, n * sizeof(*lens));
	if (lens != NULL)
		a->lens = lens;
	owned = realloc(a->owned, n * sizeof(*owned));
	if (owned != NULL)
		a->owned = owned;
	if (argv == NULL || lens == NULL || owned == NULL) {
		a->failed = true;
		return false;
	}
	a->alloc = n;
	return true;
}

void bf_rargs_add(struct bf_rargs *a, const char *s, size_t len)
{
	if (a->failed || !args_grow(a))
		return;
	a->argv[a->count] = s;
	a->lens[a->count] = len;
	a->owned[a->count++] = NULL;
}

void bf_rargs_str(struct bf_rargs *a, const char *s)
{
	bf_rargs_add(a, s, strlen(s));
}

void bf_rargs_take(struct bf_rargs *a, char *s, size_t len)
{
	if (s == NULL)
		a->failed = true;
	if (a->failed || !args_grow(a)) {
		free(s);
		return;
	}
	a->argv[a->count] = s;
	a->lens[a->count] = len;
	a->owned[a->count++] = s;
}

void bf_rargs_printf(struct bf_rargs *a, const char *fmt, ...)
{
	va_list args;
	char *s;
	int len;

	va_start(args, fmt);
	len = vasprintf(&s, fmt, args);
	va_end(args);
	if (len < 0)
		bf_rargs_take(a, NULL, 0);
	else
		bf_rargs_take(a, s, (size_t)len);
}

void bf_rargs_free(struct bf_rargs *a)
{
	size_t i;

	for (i = 0; i < a->count; i++)
		free(a->owned[i]);
	free(a->argv);
	free(a->lens);
	free(a->owned);
	memset(a, 0, sizeof(*a));
}

/* ---- errors ---- */

static bool errstr_is(const char *errstr, int errnum)
{
	return strcmp(errstr, strerror(errnum)) == 0;
}

/* Describes an I/O error of hiredis, with what the operator can do. */
static int io_error(struct redis_state *r, const char *what, int err,
                    const char *errstr)
{
	if ((err == REDIS_ERR_EOF || errstr_is(errstr, ECONNRESET)) &&
	    r->uri.transport == BF_REDIS_TLS) {
		/* TLS 1.3: a server that refuses our client certificate says
		   so after the handshake, by hanging up (a reset when our
		   first command was still on its way). */
		bf_state_set_error(
		        &r->state,
		        "%s: redis-server closed the connection "
		        "(restarting? or it wants a client "
		        "certificate signed by its tls-ca-cert-file: "
		        "cert=FILE and key=FILE in the URI)",
		        what);
	} else if (err == REDIS_ERR_EOF) {
		bf_state_set_error(&r->state,
		                   "%s: redis-server closed the connection "
		                   "(restarting? the next call connects again)",
		                   what);
	} else if (errstr_is(errstr, ECONNREFUSED)) {
		bf_state_set_error(&r->state,
		                   "%s: connection refused (is redis-server "
		                   "running?)",
		                   what);
	} else if (errstr_is(errstr, ENOENT)) {
		bf_state_set_error(&r->state,
		                   "%s: no socket %s (is redis-server "
		                   "running?)",
		                   what, r->uri.socket_path);
	} else if (errstr_is(errstr, EACCES)) {
		bf_state_set_error(&r->state,
		                   "%s: permission denied on socket %s (give "
		                   "the mail and milter users access: "
		                   "unixsocketperm 770 and redis-server's "
		                   "group)",
		                   what, r->uri.socket_path);
	} else if (errstr_is(errstr, EAGAIN) || errstr_is(errstr, ETIMEDOUT) ||
	           errstr_is(errstr, EINPROGRESS)) {
		bf_state_set_error(
		        &r->state,
		        r->timeout_ms != r->uri.timeout_ms
		                ? "%s: no answer within %d ms (the caller's "
		                  "wait limit; is redis-server hung or "
		                  "overloaded?)"
		                : "%s: no answer within %d ms (is "
		                  "redis-server hung or overloaded? raise "
		                  "?timeout=MS in the URI if it is just slow)",
		        what, r->timeout_ms);
		r->state.stalled = true;
	} else if (err == REDIS_ERR_OOM) {
		bf_state_set_error(&r->state, "%s: out of memory", what);
	} else {
		bf_state_set_error(&r->state, "%s: %s", what, errstr);
	}
	return -1;
}

void bf_redis_drop(struct redis_state *r)
{
	if (r->ctx != NULL) {
		redisFree(r->ctx);
		r->ctx = NULL;
	}
}

/* Drops the connection after an I/O error on it: its state is unknown
   (a reply may still be on its way), so the next call starts afresh. */
int bf_redis_conn_failed(struct redis_state *r, const char *what)
{
	char errstr[sizeof(r->ctx->errstr)];
	int err = r->ctx->err;

	memcpy(errstr, r->ctx->errstr, sizeof(errstr));
	errstr[sizeof(errstr) - 1] = '\0';
	bf_redis_drop(r);
	return io_error(r, what, err, errstr);
}

/* An error reply of the server, with what the operator can do. */
int bf_redis_reply_error(struct redis_state *r, const char *what,
                         const redisReply *reply)
{
	const char *msg = reply->str != NULL ? reply->str : "";

	if (strncmp(msg, "LOADING", 7) == 0) {
		bf_state_set_error(&r->state,
		                   "%s: redis-server is loading its data after "
		                   "a restart (retry in a moment)",
		                   what);
	} else if (strncmp(msg, "NOAUTH", 6) == 0) {
		/* Authenticated again on the next connection. */
		bf_redis_drop(r);
		bf_state_set_error(
		        &r->state,
		        "%s: redis-server wants a password (put it "
		        "in the URI: redis://:password@host:port/db)",
		        what);
	} else if (strncmp(msg, "READONLY", 8) == 0) {
		bf_state_set_error(&r->state,
		                   "%s: %s (the URI names a replica; point it "
		                   "at the primary)",
		                   what, msg);
	} else if (strncmp(msg, "OOM", 3) == 0) {
		bf_state_set_error(&r->state,
		                   "%s: %s (redis-server reached maxmemory: "
		                   "raise it, see docs/state-store.md)",
		                   what, msg);
	} else if (strncmp(msg, "MISCONF", 7) == 0) {
		bf_state_set_error(&r->state,
		                   "%s: redis-server refuses writes because it "
		                   "cannot persist them (see its log): %s",
		                   what, msg);
	} else {
		bf_state_set_error(&r->state, "%s: %s", what, msg);
	}
	return -1;
}

/* ---- connection ---- */

/* Blocks SIGPIPE around a command: hiredis writes with write(), and a
   server gone away would otherwise kill a milter that does not ignore
   SIGPIPE.  A SIGPIPE raised meanwhile is consumed, unless one was
   pending before (it is someone else's). */
void bf_redis_sigpipe_block(struct bf_redis_sigpipe_guard *g)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	g->was_pending = sigpending(&pending) == 0 &&
	                 sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

void bf_redis_sigpipe_restore(struct bf_redis_sigpipe_guard *g)
{
	static const struct timespec zero = {0, 0};
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	if (!g->was_pending && sigpending(&pending) == 0 &&
	    sigismember(&pending, SIGPIPE) == 1) {
		while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* True when an idle connection has something to read: with every reply
   consumed, that is the server closing it (a restart) or an error.  Seen
   before sending, so a restarted server costs no failed call: sending
   first could not tell whether the command ran before the connection
   broke. */
static bool conn_stale(const redisContext *c)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLIN | POLLRDHUP};

	return poll(&pfd, 1, 0) != 0;
}

/* Sends one command on the connection and reads its reply, error replies
   included.  -1 on I/O errors (connection dropped). */
int bf_redis_send(struct redis_state *r, const struct bf_rargs *a,
                  const char *what, redisReply **reply_r)
{
	struct bf_redis_sigpipe_guard guard;
	void *reply;

	*reply_r = NULL;
	if (a->failed)
		return bf_redis_oom(r);
	bf_redis_sigpipe_block(&guard);
	reply = redisCommandArgv(r->ctx, (int)a->count, a->argv, a->lens);
	bf_redis_sigpipe_restore(&guard);
	if (reply == NULL)
		return bf_redis_conn_failed(r, what);
	*reply_r = reply;
	return 0;
}

/* AUTH and SELECT on a new connection. */
static int conn_setup(struct redis_state *r, const char *what)
{
	struct bf_rargs a = {0};
	redisReply *reply;
	int ret = 0;

	if (r->uri.password != NULL) {
		bf_rargs_str(&a, "AUTH");
		if (r->uri.user != NULL)
			bf_rargs_str(&a, r->uri.user);
		bf_rargs_str(&a, r->uri.password);
		ret = bf_redis_send(r, &a, what, &reply);
		bf_rargs_free(&a);
		if (ret == 0 && reply->type == REDIS_REPLY_ERROR) {
			/* The server's text may quote the user, never the
			   password. */
			bf_state_set_error(
			        &r->state,
			        "%s: authentication failed: %s (check "
			        "the user and password in the URI "
			        "against requirepass or the ACL of "
			        "redis-server)",
			        what, reply->str);
			ret = -1;
		}
		freeReplyObject(reply);
	}
	/* SELECT even for database 0: it also finds out at once whether the
	   server wants a password we do not have. */
	if (ret == 0) {
		bf_rargs_str(&a, "SELECT");
		bf_rargs_printf(&a, "%u", r->uri.db);
		ret = bf_redis_send(r, &a, what, &reply);
		bf_rargs_free(&a);
		if (ret == 0 && reply->type == REDIS_REPLY_ERROR &&
		    strncmp(reply->str, "NOAUTH", 6) == 0) {
			ret = bf_redis_reply_error(r, what, reply);
		} else if (ret == 0 && reply->type == REDIS_REPLY_ERROR) {
			bf_state_set_error(&r->state,
			                   "%s: cannot select database %u: %s "
			                   "(see databases in redis.conf)",
			                   what, r->uri.db, reply->str);
			ret = -1;
		}
		freeReplyObject(reply);
	}
	if (ret < 0)
		bf_redis_drop(r);
	return ret;
}

static struct timeval ms_tv(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

/* TCP: the host name looked up within the timeout, then each of its
   addresses tried with what is left of it (hiredis would look the name up
   without a deadline). */
static redisContext *connect_tcp(struct redis_state *r, const char *what)
{
	uint64_t start = bf_clock_msecs();
	redisContext *c = NULL;
	const char *error = NULL;
	char **addrs;
	int left;

	switch (bf_redis_resolve(&r->lookup, r->uri.host, r->uri.port,
	                         r->timeout_ms, &addrs, &error)) {
	case 0:
		c = redisConnectWithTimeout(r->uri.host, r->uri.port,
		                            ms_tv(r->timeout_ms));
		if (c == NULL)
			bf_redis_oom(r);
		return c;
	case -1:
		bf_state_set_error(&r->state, "%s: looking up %s: %s", what,
		                   r->uri.host, error);
		return NULL;
	case -2:
		bf_state_set_error(
		        &r->state,
		        "%s: looking up %s: no answer from the DNS within %d ms "
		        "(use an IP address or a name in /etc/hosts for a "
		        "DNS that is slow)",
		        what, r->uri.host, r->timeout_ms);
		r->state.stalled = true;
		return NULL;
	}
	for (size_t i = 0; addrs[i] != NULL; i++) {
		if (c != NULL)
			redisFree(c);
		left = r->timeout_ms - (int)(bf_clock_msecs() - start);
		c = redisConnectWithTimeout(addrs[i], r->uri.port,
		                            ms_tv(left > 0 ? left : 1));
		if (c == NULL || c->err == 0)
			break;
	}
	if (c == NULL && addrs[0] != NULL)
		bf_redis_oom(r);
	else if (c == NULL)
		bf_state_set_error(&r->state, "%s: looking up %s: no address",
		                   what, r->uri.host);
	bf_redis_addrs_free(addrs);
	return c;
}

int bf_redis_connect(struct redis_state *r, const char *what)
{
	struct timeval tv;
	redisContext *c;

	/* A connection inherited over fork() belongs to the parent: two
	   processes reading replies from one socket would mix them up. */
	if (r->ctx != NULL && (r->ctx_pid != getpid() || conn_stale(r->ctx)))
		bf_redis_drop(r);
	if (r->ctx != NULL)
		return 0;
	tv = ms_tv(r->timeout_ms);
	if (r->uri.socket_path != NULL) {
		c = redisConnectUnixWithTimeout(r->uri.socket_path, tv);
		if (c == NULL)
			return bf_redis_oom(r);
	} else if ((c = connect_tcp(r, what)) == NULL) {
		return -1;
	}
	if (c->err != 0) {
		io_error(r, what, c->err, c->errstr);
		redisFree(c);
		return -1;
	}
	r->ctx = c;
	r->ctx_pid = getpid();
	/* The connect timeout above covers connecting only; this one every
	   read and write (the TLS handshake too), so that a hung server
	   never hangs a login. */
	if (redisSetTimeout(c, tv) != REDIS_OK)
		return bf_redis_conn_failed(r, what);
#ifdef BF_HAVE_REDIS_TLS
	/* Before AUTH: the password only ever travels encrypted. */
	if (r->tls != NULL && bf_redis_tls_connect(r, what) < 0) {
		bf_redis_drop(r);
		return -1;
	}
#endif
	return conn_setup(r, what);
}

void bf_redis_set_wait_limit(struct bf_state *state, unsigned int ms)
{
	struct redis_state *r = RS(state);

	r->timeout_ms = ms != 0 ? (int)ms : r->uri.timeout_ms;
	/* A connection that cannot take the new timeout is dropped: the
	   next call connects with it. */
	if (r->ctx != NULL &&
	    redisSetTimeout(r->ctx, ms_tv(r->timeout_ms)) != REDIS_OK)
		bf_redis_drop(r);
}

/* One command; error replies are errors.  *reply_r to freeReplyObject(). */
int bf_redis_call(struct redis_state *r, const struct bf_rargs *a,
                  const char *what, redisReply **reply_r)
{
	*reply_r = NULL;
	if (a->failed)
		return bf_redis_oom(r);
	if (bf_redis_connect(r, what) < 0 ||
	    bf_redis_send(r, a, what, reply_r) < 0)
		return -1;
	if ((*reply_r)->type == REDIS_REPLY_ERROR) {
		bf_redis_reply_error(r, what, *reply_r);
		freeReplyObject(*reply_r);
		*reply_r = NULL;
		return -1;
	}
	return 0;
}

int bf_redis_bad_reply(struct redis_state *r, const char *what,
                       redisReply *reply)
{
	bf_state_set_error(&r->state,
	                   "%s: unexpected reply from redis-server (type %d)",
	                   what, reply != NULL ? reply->type : -1);
	freeReplyObject(reply);
	return -1;
}

/* ---- open / close ---- */

void bf_redis_close(struct bf_state *state)
{
	struct redis_state *r = RS(state);

	bf_redis_drop(r);
	bf_redis_lookup_abandon(&r->lookup);
#ifdef BF_HAVE_REDIS_TLS
	bf_redis_tls_deinit(r);
#endif
	bf_redis_uri_clear(&r->uri);
	free(r);
}

/* Debian 12's hiredis (0.14) has no TLS (hiredis_ssl came with 1.0): a
   clear refusal, naming what to do instead.  0 where TLS can be used. */
static int tls_unsupported(enum bf_redis_transport transport, char **error_r)
{
#ifndef BF_HAVE_REDIS_TLS
	if (transport == BF_REDIS_TLS) {
		*error_r = bf_state_error_new(
		        "rediss:",
		        "TLS is not supported: this build's hiredis has no "
		        "TLS (hiredis_ssl, hiredis 1.0 or later: Debian 13); "
		        "use redis:// to a local stunnel that carries the "
		        "link over TLS (docs/redis-tls.md), or redis+unix:// "
		        "on the Redis host");
		return -1;
	}
#else
	(void)transport;
	(void)error_r;
#endif
	return 0;
}

int bf_redis_check(const char *location, enum bf_redis_transport transport,
                   char **error_r)
{
	struct bf_redis_uri uri;
	int ret;

	if (tls_unsupported(transport, error_r) < 0)
		return -1;
	memset(&uri, 0, sizeof(uri));
	ret = bf_redis_uri_parse(location, transport, &uri, error_r);
	bf_redis_uri_clear(&uri);
	return ret;
}

int bf_redis_open(const char *location, enum bf_redis_transport transport,
                  unsigned int wait_ms, struct bf_state **state_r,
                  char **error_r)
{
	struct redis_state *r;
	int ret;

	if (tls_unsupported(transport, error_r) < 0) {
		*state_r = NULL;
		return -1;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		*error_r = bf_state_error_new("redis", "out of memory");
		return -1;
	}
	ret = bf_redis_uri_parse(location, transport, &r->uri, error_r);
	r->timeout_ms = wait_ms != 0 ? (int)wait_ms : r->uri.timeout_ms;
	if (ret == 0 && (r->state.name = bf_redis_uri_name(&r->uri)) == NULL)
		ret = -1;
#ifdef BF_HAVE_REDIS_TLS
	/* A missing or unreadable certificate file is the configuration's
	   error: reported at open, not at every call. */
	if (ret == 0 && transport == BF_REDIS_TLS && bf_redis_tls_init(r) < 0) {
		*error_r = r->state.error;
		r->state.error = NULL;
		ret = -1;
	}
#endif
	/* Connecting at once reports a wrong address or password when the
	   store is opened; later failures are per call, and reconnect. */
	if (ret == 0 && bf_redis_connect(r, "connecting") < 0) {
		*error_r = r->state.error;
		r->state.error = NULL;
		ret = -1;
	}
	if (ret == 0) {
		*state_r = &r->state;
		return 0;
	}
	if (*error_r == NULL)
		*error_r = bf_state_error_new("redis", "out of memory");
	free(r->state.name);
	free(r->state.error);
	bf_redis_close(&r->state);
	return -1;
}
