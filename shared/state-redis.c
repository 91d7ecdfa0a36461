/* Redis backend of the state store, for several hosts sharing one store
   (two MX hosts, several Dovecot backends):

     redis://[user:password@]host[:port][/db][?options]
     redis+unix:///path/redis.sock[?db=N&options]

   options: timeout=MS (connect and command timeout, default 2000),
   prefix=STR (key prefix, default "backfill:"); on a unix socket also
   user=NAME and password=PW (AUTH), db=N.  Values are %-decoded.

   Every operation that must be atomic is one Lua script (EVALSHA, falling
   back to EVAL when the server lost its script cache in a restart), so it
   costs one round trip and no other client sees half of it.  Times come
   from the caller (state.h), so expiry is decided by comparing the stored
   expiry with the caller's now, exactly as the SQLite backend does; dedup
   records additionally carry a Redis TTL so that they disappear by
   themselves.

   Keys (P = prefix):
     P dedup:<window>:<fingerprint hex>:<recipient>   string, with TTL
         "first_seen:expires:delivered:delivered_at:hostlen:<host><queue id>"
         (':' and '%' in the window are %-escaped, so the key is
         unambiguous: the fingerprint has a fixed length)
     P lease:<name>          string "expires:owner", no TTL
     P merge:<user>          hash of the merge record
     P merges                sorted set of user names (score 0: ordered by
                             name for the iteration)
     P journal:<user>        list of journal entries, seq = index + 1
     P journal-pending:<user> hash "archive_uid:archive_mailbox" -> list
                             indexes of its entries that still have uid 0
     P windows               list "opened:until:closed:name", oldest first

   A connection that failed is dropped; the next call connects again, so a
   restart of redis-server needs no restart of Dovecot or the milter. */

#include "parse.h"
#include "state-private.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_PORT       6379
#define DEFAULT_TIMEOUT_MS 2000
#define MAX_TIMEOUT_MS     600000
#define DEFAULT_PREFIX     "backfill:"
/* Dedup records stay in Redis this long after they expired by the
   caller's clock: the hosts sharing the store do not have exactly the
   same time, and a record must not vanish while a host with a slower
   clock still counts it as live. */
#define EXPIRY_SLACK_SECS 300
/* Keys per SCAN step of purge and stats, each step a short script, so
   that walking millions of records never blocks the server for long. */
#define SCAN_COUNT "1000"
/* A journal entry starts with its live UID in this many digits, so that
   a script can set it without parsing the rest. */
#define UID_DIGITS 10

#define STR_(x) #x
#define STR(x)  STR_(x)

#define USAGE                                                                  \
	"expected redis://[user:password@]host[:port][/db] or "                \
	"redis+unix:///path/redis.sock[?db=N]"

enum script_id {
	SC_CAS,
	SC_MARK,
	SC_SCAN,
	SC_LEASE,
	SC_WINDOW,
	SC_CHECKPOINT,
	SC_SET_UID,
	SC_MERGE_DELETE,

	SCRIPT_COUNT
};

/* Each script validates before it writes: Redis does not roll a script
   back when a command inside it fails, so a failure must come before the
   first write to keep the operation all-or-nothing. */
static const char *const scripts[SCRIPT_COUNT] = {
        /* KEYS: dedup keys in order; ARGV: now, px, new record.  SET NX is
           the atomic check-and-set; an existing record that expired by
           the caller's clock (or is unreadable) is replaced. */
        [SC_CAS] = "local now = tonumber(ARGV[1])\n"
                   "local out = {}\n"
                   "for i, k in ipairs(KEYS) do\n"
                   "  if redis.call('SET', k, ARGV[3], 'NX', 'PX', ARGV[2])"
                   " then\n"
                   "    out[i] = 1\n"
                   "  else\n"
                   "    local v = redis.call('GET', k)\n"
                   "    local e = tonumber(string.match(v,"
                   " '^%-?%d+:(%-?%d+):'))\n"
                   "    if e == nil or e <= now then\n"
                   "      redis.call('SET', k, ARGV[3], 'PX', ARGV[2])\n"
                   "      out[i] = 1\n"
                   "    else\n"
                   "      out[i] = v\n"
                   "    end\n"
                   "  end\n"
                   "end\n"
                   "return out\n",
        /* KEYS: the record; ARGV: now.  The first delivery time stays. */
        [SC_MARK] = "local v = redis.call('GET', KEYS[1])\n"
                    "if not v then return 0 end\n"
                    "local head, e, d, tail = string.match(v,"
                    " '^(%-?%d+:(%-?%d+):)(%d):%-?%d+(:.*)$')\n"
                    "if head == nil or tonumber(e) <= tonumber(ARGV[1])"
                    " then return 0 end\n"
                    "if d ~= '1' then\n"
                    "  redis.call('SET', KEYS[1], head .. '1:' .. ARGV[1]"
                    " .. tail, 'KEEPTTL')\n"
                    "end\n"
                    "return 1\n",
        /* KEYS: dedup keys found by SCAN; ARGV: now, "purge" or "stats".
           Returns {live, live delivered, expired}; purge deletes the
           expired ones.  Keys gone since the SCAN are skipped. */
        [SC_SCAN] = "local now = tonumber(ARGV[1])\n"
                    "local live, delivered, expired = 0, 0, 0\n"
                    "for _, k in ipairs(KEYS) do\n"
                    "  if redis.call('TYPE', k)['ok'] == 'string' then\n"
                    "    local v = redis.call('GET', k)\n"
                    "    local e, d = string.match(v,"
                    " '^%-?%d+:(%-?%d+):(%d):')\n"
                    "    e = tonumber(e)\n"
                    "    if e == nil or e <= now then\n"
                    "      expired = expired + 1\n"
                    "      if ARGV[2] == 'purge' then"
                    " redis.call('DEL', k) end\n"
                    "    else\n"
                    "      live = live + 1\n"
                    "      if d == '1' then delivered = delivered + 1 end\n"
                    "    end\n"
                    "  end\n"
                    "end\n"
                    "return {live, delivered, expired}\n",
        /* KEYS: the lease; ARGV: op, owner, now, expires, reentrant,
           expected holder.  Returns {1} or {0[, holder]}.  Only the
           owner renews or releases (compare-and-expire,
           compare-and-delete); swap is the compare-and-swap of the
           dead-holder takeover. */
        [SC_LEASE] = "local v = redis.call('GET', KEYS[1])\n"
                     "local e, holder\n"
                     "if v then e, holder = string.match(v,"
                     " '^(%-?%d+):(.*)$') end\n"
                     "local op, owner = ARGV[1], ARGV[2]\n"
                     "if op == 'acquire' then\n"
                     "  if holder and tonumber(e) > tonumber(ARGV[3]) and"
                     " not (ARGV[5] == '1' and holder == owner) then\n"
                     "    return {0, holder}\n"
                     "  end\n"
                     "elseif op == 'swap' then\n"
                     "  if holder == nil or holder ~= ARGV[6] then"
                     " return {0} end\n"
                     "elseif holder == nil or holder ~= owner then\n"
                     "  return {0}\n"
                     "elseif op == 'release' then\n"
                     "  redis.call('DEL', KEYS[1])\n"
                     "  return {1}\n"
                     "end\n"
                     "redis.call('SET', KEYS[1], ARGV[4] .. ':' .. owner)\n"
                     "return {1}\n",
        /* KEYS: the window list; ARGV: op, now[, until, name, mode].
           current returns the window in force: the newest one not closed
           whose until is 0 or after now.  close closes every open window.
           open returns {1 or 0, the window in force before}: the same
           name only gets the new until (and keeps its opened time);
           another name in force is closed, or with mode "exclusive"
           refused (0) before anything is written; otherwise every open
           window is closed and name added. */
        [SC_WINDOW] = "local op, now = ARGV[1], ARGV[2]\n"
                      "local at, prev = nil, false\n"
                      "local n = redis.call('LLEN', KEYS[1])\n"
                      "for i = n - 1, 0, -1 do\n"
                      "  local v = redis.call('LINDEX', KEYS[1], i)\n"
                      "  local u, c = string.match(v,"
                      " '^%-?%d+:(%-?%d+):(%-?%d+):')\n"
                      "  if c == '0' and (u == '0' or tonumber(u) >"
                      " tonumber(now)) then\n"
                      "    at, prev = i, v\n"
                      "    break\n"
                      "  end\n"
                      "end\n"
                      "if op == 'current' then return prev end\n"
                      "if op == 'open' and prev then\n"
                      "  local o, name = string.match(prev,"
                      " '^(%-?%d+):%-?%d+:0:(.*)$')\n"
                      "  if name == ARGV[4] then\n"
                      "    local w = o .. ':' .. ARGV[3] .. ':0:' .. name\n"
                      "    if w ~= prev then"
                      " redis.call('LSET', KEYS[1], at, w) end\n"
                      "    return {1, prev}\n"
                      "  end\n"
                      "  if ARGV[5] == 'exclusive' then"
                      " return {0, prev} end\n"
                      "end\n"
                      "local closed = 0\n"
                      "for i, v in ipairs(redis.call('LRANGE', KEYS[1], 0,"
                      " -1)) do\n"
                      "  local o, u, c, name = string.match(v,"
                      " '^(%-?%d+):(%-?%d+):(%-?%d+):(.*)$')\n"
                      "  if c == '0' then\n"
                      "    redis.call('LSET', KEYS[1], i - 1, o .. ':' .. u"
                      " .. ':' .. now .. ':' .. name)\n"
                      "    closed = closed + 1\n"
                      "  end\n"
                      "end\n"
                      "if op == 'open' then\n"
                      "  redis.call('RPUSH', KEYS[1], now .. ':' .. ARGV[3]"
                      " .. ':0:' .. ARGV[4])\n"
                      "  return {1, prev}\n"
                      "end\n"
                      "return closed\n",
        /* KEYS: journal, journal-pending, merge record, merges; ARGV:
           user, nfields, nfields field/value pairs of the record (none:
           journal only), then (entry, pending field or '') pairs. */
        [SC_CHECKPOINT] =
                "local want = {'list', 'hash', 'hash', 'zset'}\n"
                "for i = 1, 4 do\n"
                "  local t = redis.call('TYPE', KEYS[i])['ok']\n"
                "  if t ~= 'none' and t ~= want[i] then\n"
                "    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .."
                " ' holds a ' .. t .. ', not a ' .. want[i])\n"
                "  end\n"
                "end\n"
                "local nf = tonumber(ARGV[2])\n"
                "local i = 3 + 2 * nf\n"
                "while i < #ARGV do\n"
                "  local n = redis.call('RPUSH', KEYS[1], ARGV[i])\n"
                "  local f = ARGV[i + 1]\n"
                "  if f ~= '' then\n"
                "    local cur = redis.call('HGET', KEYS[2], f)\n"
                "    if cur then cur = cur .. ' ' .. (n - 1)"
                " else cur = tostring(n - 1) end\n"
                "    redis.call('HSET', KEYS[2], f, cur)\n"
                "  end\n"
                "  i = i + 2\n"
                "end\n"
                "if nf > 0 then\n"
                "  redis.call('DEL', KEYS[3])\n"
                "  redis.call('HSET', KEYS[3], unpack(ARGV, 3, 2 + 2 * nf))\n"
                "  redis.call('ZADD', KEYS[4], 0, ARGV[1])\n"
                "end\n"
                "return 1\n",
        /* KEYS: journal, journal-pending; ARGV: pending field, new uid in
           UID_DIGITS digits.  Sets the oldest entry of the field that
           still has uid 0. */
        [SC_SET_UID] = "local cur = redis.call('HGET', KEYS[2], ARGV[1])\n"
                       "if not cur then return 0 end\n"
                       "local idx, rest = string.match(cur,"
                       " '^(%d+) ?(.*)$')\n"
                       "local v = redis.call('LINDEX', KEYS[1], idx)\n"
                       "if not v then return 0 end\n"
                       "if tonumber(ARGV[2]) == 0 then return 1 end\n"
                       "if rest == '' then\n"
                       "  redis.call('HDEL', KEYS[2], ARGV[1])\n"
                       "else\n"
                       "  redis.call('HSET', KEYS[2], ARGV[1], rest)\n"
                       "end\n"
                       "redis.call('LSET', KEYS[1], idx, ARGV[2] .."
                       " string.sub(v, " STR(UID_DIGITS) " + 1))\n"
                                                         "return 1\n",
        /* KEYS: merge record, journal, journal-pending, merges; ARGV:
           user. */
        [SC_MERGE_DELETE] = "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])\n"
                            "redis.call('ZREM', KEYS[4], ARGV[1])\n"
                            "return 1\n",
};

static char script_sha[SCRIPT_COUNT][SHA_DIGEST_LENGTH * 2 + 1];
static pthread_once_t script_sha_once = PTHREAD_ONCE_INIT;

struct redis_state {
	struct bf_state state;

	redisContext *ctx; /* NULL: connect at the next call */
	pid_t ctx_pid;     /* the process that connected it */
	char *host;        /* TCP */
	int port;
	char *socket_path; /* unix socket */
	char *user, *password;
	unsigned int db;
	char *prefix;
	/* The URI's timeout, and the one in force (the caller's wait limit,
	   see bf_state_set_wait_limit()). */
	int default_timeout_ms;
	int timeout_ms;
};

#define RS(state) ((struct redis_state *)(state))

static void script_sha_init(void)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[SHA_DIGEST_LENGTH];
	size_t i, j;

	for (i = 0; i < SCRIPT_COUNT; i++) {
		SHA1((const unsigned char *)scripts[i], strlen(scripts[i]), md);
		for (j = 0; j < SHA_DIGEST_LENGTH; j++) {
			script_sha[i][2 * j] = hex[md[j] >> 4];
			script_sha[i][2 * j + 1] = hex[md[j] & 15];
		}
		script_sha[i][2 * SHA_DIGEST_LENGTH] = '\0';
	}
}

static int oom(struct redis_state *r)
{
	bf_state_set_error(&r->state, "out of memory");
	return -1;
}

/* ---- command arguments ---- */

/* argv of one command; strings are borrowed or owned (freed with it). */
struct rargs {
	const char **argv;
	size_t *lens;
	char **owned;
	size_t count, alloc;
	bool failed; /* out of memory: the command is not sent */
};

static bool args_grow(struct rargs *a)
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

static void args_add(struct rargs *a, const char *s, size_t len)
{
	if (a->failed || !args_grow(a))
		return;
	a->argv[a->count] = s;
	a->lens[a->count] = len;
	a->owned[a->count++] = NULL;
}

static void args_str(struct rargs *a, const char *s)
{
	args_add(a, s, strlen(s));
}

/* Takes s (malloc()ed, NULL = out of memory). */
static void args_take(struct rargs *a, char *s, size_t len)
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

static void args_printf(struct rargs *a, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

static void args_printf(struct rargs *a, const char *fmt, ...)
{
	va_list args;
	char *s;
	int len;

	va_start(args, fmt);
	len = vasprintf(&s, fmt, args);
	va_end(args);
	if (len < 0)
		args_take(a, NULL, 0);
	else
		args_take(a, s, (size_t)len);
}

static void args_free(struct rargs *a)
{
	size_t i;

	for (i = 0; i < a->count; i++)
		free(a->owned[i]);
	free(a->argv);
	free(a->lens);
	free(a->owned);
	memset(a, 0, sizeof(*a));
}

/* EVALSHA sha numkeys: the keys and arguments follow. */
static void args_script(struct rargs *a, enum script_id id, size_t nkeys)
{
	pthread_once(&script_sha_once, script_sha_init);
	args_str(a, "EVALSHA");
	args_str(a, script_sha[id]);
	args_printf(a, "%zu", nkeys);
}

/* ---- keys ---- */

static void args_key(struct rargs *a, const struct redis_state *r,
                     const char *kind, const char *name)
{
	args_printf(a, "%s%s%s", r->prefix, kind, name);
}

static void args_dedup_key(struct rargs *a, const struct redis_state *r,
                           const struct bf_dedup_key *key)
{
	char hex[BF_FP_HEX_SIZE], *s, *p;
	const char *w;
	size_t len;

	bf_fp_to_hex(key->fingerprint, hex);
	len = strlen(r->prefix) + 6 + 3 * strlen(key->window) + 1 +
	      strlen(hex) + 1 + strlen(key->recipient);
	s = malloc(len + 1);
	if (s == NULL) {
		args_take(a, NULL, 0);
		return;
	}
	p = stpcpy(stpcpy(s, r->prefix), "dedup:");
	for (w = key->window; *w != '\0'; w++) {
		if (*w == ':' || *w == '%')
			p += sprintf(p, "%%%02X", (unsigned char)*w);
		else
			*p++ = *w;
	}
	*p++ = ':';
	p = stpcpy(stpcpy(p, hex), ":");
	p = stpcpy(p, key->recipient);
	args_take(a, s, (size_t)(p - s));
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
	if (err == REDIS_ERR_EOF) {
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
		                   what, r->socket_path);
	} else if (errstr_is(errstr, EACCES)) {
		bf_state_set_error(&r->state,
		                   "%s: permission denied on socket %s (give "
		                   "the mail and milter users access: "
		                   "unixsocketperm 770 and redis-server's "
		                   "group)",
		                   what, r->socket_path);
	} else if (errstr_is(errstr, EAGAIN) || errstr_is(errstr, ETIMEDOUT) ||
	           errstr_is(errstr, EINPROGRESS)) {
		bf_state_set_error(
		        &r->state,
		        r->timeout_ms != r->default_timeout_ms
		                ? "%s: no answer within %d ms (the caller's "
		                  "wait limit; is redis-server hung or "
		                  "overloaded?)"
		                : "%s: no answer within %d ms (is "
		                  "redis-server hung or overloaded? raise "
		                  "?timeout=MS in the URI if it is just slow)",
		        what, r->timeout_ms);
	} else if (err == REDIS_ERR_OOM) {
		bf_state_set_error(&r->state, "%s: out of memory", what);
	} else {
		bf_state_set_error(&r->state, "%s: %s", what, errstr);
	}
	return -1;
}

static void conn_drop(struct redis_state *r)
{
	if (r->ctx != NULL) {
		redisFree(r->ctx);
		r->ctx = NULL;
	}
}

/* Drops the connection after an I/O error on it: its state is unknown
   (a reply may still be on its way), so the next call starts afresh. */
static int conn_failed(struct redis_state *r, const char *what)
{
	char errstr[sizeof(r->ctx->errstr)];
	int err = r->ctx->err;

	memcpy(errstr, r->ctx->errstr, sizeof(errstr));
	errstr[sizeof(errstr) - 1] = '\0';
	conn_drop(r);
	return io_error(r, what, err, errstr);
}

/* An error reply of the server, with what the operator can do. */
static int reply_error(struct redis_state *r, const char *what,
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
		conn_drop(r);
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
struct sigpipe_guard {
	sigset_t old;
	bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	g->was_pending = sigpending(&pending) == 0 &&
	                 sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(struct sigpipe_guard *g)
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
static int conn_send(struct redis_state *r, const struct rargs *a,
                     const char *what, redisReply **reply_r)
{
	struct sigpipe_guard guard;
	void *reply;

	*reply_r = NULL;
	if (a->failed)
		return oom(r);
	sigpipe_block(&guard);
	reply = redisCommandArgv(r->ctx, (int)a->count, a->argv, a->lens);
	sigpipe_restore(&guard);
	if (reply == NULL)
		return conn_failed(r, what);
	*reply_r = reply;
	return 0;
}

/* AUTH and SELECT on a new connection. */
static int conn_setup(struct redis_state *r, const char *what)
{
	struct rargs a = {0};
	redisReply *reply;
	int ret = 0;

	if (r->password != NULL) {
		args_str(&a, "AUTH");
		if (r->user != NULL)
			args_str(&a, r->user);
		args_str(&a, r->password);
		ret = conn_send(r, &a, what, &reply);
		args_free(&a);
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
		args_str(&a, "SELECT");
		args_printf(&a, "%u", r->db);
		ret = conn_send(r, &a, what, &reply);
		args_free(&a);
		if (ret == 0 && reply->type == REDIS_REPLY_ERROR &&
		    strncmp(reply->str, "NOAUTH", 6) == 0) {
			ret = reply_error(r, what, reply);
		} else if (ret == 0 && reply->type == REDIS_REPLY_ERROR) {
			bf_state_set_error(&r->state,
			                   "%s: cannot select database %u: %s "
			                   "(see databases in redis.conf)",
			                   what, r->db, reply->str);
			ret = -1;
		}
		freeReplyObject(reply);
	}
	if (ret < 0)
		conn_drop(r);
	return ret;
}

static struct timeval timeout_tv(const struct redis_state *r)
{
	struct timeval tv;

	tv.tv_sec = r->timeout_ms / 1000;
	tv.tv_usec = (r->timeout_ms % 1000) * 1000;
	return tv;
}

static int conn_open(struct redis_state *r, const char *what)
{
	struct timeval tv;
	redisContext *c;

	/* A connection inherited over fork() belongs to the parent: two
	   processes reading replies from one socket would mix them up. */
	if (r->ctx != NULL && (r->ctx_pid != getpid() || conn_stale(r->ctx)))
		conn_drop(r);
	if (r->ctx != NULL)
		return 0;
	tv = timeout_tv(r);
	c = r->socket_path != NULL
	            ? redisConnectUnixWithTimeout(r->socket_path, tv)
	            : redisConnectWithTimeout(r->host, r->port, tv);
	if (c == NULL)
		return oom(r);
	if (c->err != 0) {
		io_error(r, what, c->err, c->errstr);
		redisFree(c);
		return -1;
	}
	r->ctx = c;
	r->ctx_pid = getpid();
	/* The connect timeout above covers connecting only; this one every
	   read and write, so that a hung server never hangs a login. */
	if (redisSetTimeout(c, tv) != REDIS_OK)
		return conn_failed(r, what);
	return conn_setup(r, what);
}

static void redis_set_wait_limit(struct bf_state *state, unsigned int ms)
{
	struct redis_state *r = RS(state);

	r->timeout_ms = ms != 0 ? (int)ms : r->default_timeout_ms;
	/* A connection that cannot take the new timeout is dropped: the
	   next call connects with it. */
	if (r->ctx != NULL &&
	    redisSetTimeout(r->ctx, timeout_tv(r)) != REDIS_OK)
		conn_drop(r);
}

/* One command; error replies are errors.  *reply_r to freeReplyObject(). */
static int redis_call(struct redis_state *r, const struct rargs *a,
                      const char *what, redisReply **reply_r)
{
	*reply_r = NULL;
	if (a->failed)
		return oom(r);
	if (conn_open(r, what) < 0 || conn_send(r, a, what, reply_r) < 0)
		return -1;
	if ((*reply_r)->type == REDIS_REPLY_ERROR) {
		reply_error(r, what, *reply_r);
		freeReplyObject(*reply_r);
		*reply_r = NULL;
		return -1;
	}
	return 0;
}

/* A script call built with args_script().  A server that restarted (or
   ran SCRIPT FLUSH) has forgotten the script: then it is sent whole once,
   which also puts it back in the server's cache. */
static int script_call(struct redis_state *r, struct rargs *a,
                       enum script_id id, const char *what,
                       redisReply **reply_r)
{
	redisReply *reply;

	*reply_r = NULL;
	if (a->failed)
		return oom(r);
	if (conn_open(r, what) < 0 || conn_send(r, a, what, &reply) < 0)
		return -1;
	if (reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(reply);
		a->argv[0] = "EVAL";
		a->lens[0] = 4;
		a->argv[1] = scripts[id];
		a->lens[1] = strlen(scripts[id]);
		if (conn_send(r, a, what, &reply) < 0)
			return -1;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		reply_error(r, what, reply);
		freeReplyObject(reply);
		return -1;
	}
	*reply_r = reply;
	return 0;
}

static int bad_reply(struct redis_state *r, const char *what, redisReply *reply)
{
	bf_state_set_error(&r->state,
	                   "%s: unexpected reply from redis-server (type %d)",
	                   what, reply != NULL ? reply->type : -1);
	freeReplyObject(reply);
	return -1;
}

/* The integer answer of a script (1/0 answers). */
static int script_int(struct redis_state *r, struct rargs *a, enum script_id id,
                      const char *what)
{
	redisReply *reply;
	long long value;

	if (script_call(r, a, id, what, &reply) < 0)
		return -1;
	if (reply->type != REDIS_REPLY_INTEGER)
		return bad_reply(r, what, reply);
	value = reply->integer;
	freeReplyObject(reply);
	return value != 0 ? 1 : 0;
}

/* ---- parsing stored values ---- */

struct cursor {
	const char *p, *end;
};

/* A decimal number followed by ':'. */
static bool cur_num(struct cursor *c, long long *value_r)
{
	char buf[24], *end;
	size_t n = 0;

	while (c->p + n < c->end && c->p[n] != ':' && n < sizeof(buf) - 1) {
		buf[n] = c->p[n];
		n++;
	}
	if (n == 0 || c->p + n >= c->end || c->p[n] != ':')
		return false;
	buf[n] = '\0';
	errno = 0;
	*value_r = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	c->p += n + 1;
	return true;
}

/* len bytes as a new string. */
static bool cur_bytes(struct cursor *c, size_t len, char **str_r)
{
	if ((size_t)(c->end - c->p) < len)
		return false;
	*str_r = strndup(c->p, len);
	c->p += len;
	return *str_r != NULL;
}

static bool cur_lenstr(struct cursor *c, char **str_r)
{
	long long len;

	if (!cur_num(c, &len) || len < 0 || !cur_bytes(c, (size_t)len, str_r))
		return false;
	if (c->p < c->end && *c->p == ':') {
		c->p++;
		return true;
	}
	free(*str_r);
	*str_r = NULL;
	return false;
}

static int corrupt(struct redis_state *r, const char *what, const char *kind)
{
	bf_state_set_error(&r->state,
	                   "%s: unreadable %s in redis (written by something "
	                   "else than backfill under the same prefix?)",
	                   what, kind);
	return -1;
}

/* ---- merge records ---- */

static const char *const merge_num_fields[] = {
        "archived",        "added",   "duplicates", "skipped",
        "uidl_collisions", "started", "finished",   "updated",
};

static void merge_num_ptrs(struct bf_merge_record *rec, uint64_t **u,
                           time_t **t)
{
	u[0] = &rec->archived;
	u[1] = &rec->added;
	u[2] = &rec->duplicates;
	u[3] = &rec->skipped;
	u[4] = &rec->uidl_collisions;
	t[0] = &rec->started;
	t[1] = &rec->finished;
	t[2] = &rec->updated;
}

/* rec from the field/value pairs of HGETALL. */
static int merge_from_reply(struct redis_state *r, const redisReply *reply,
                            struct bf_merge_record *rec)
{
	uint64_t *u[5];
	time_t *t[3];
	bool have_status = false;
	size_t i, j;

	memset(rec, 0, sizeof(*rec));
	merge_num_ptrs(rec, u, t);
	for (i = 0; i + 1 < reply->elements; i += 2) {
		const char *field = reply->element[i]->str;
		const redisReply *value = reply->element[i + 1];

		if (field == NULL || value->str == NULL)
			continue;
		if (strcmp(field, "status") == 0) {
			int st = bf_merge_status_parse(value->str);

			/* An unknown status (a newer writer) reads as failed
			   rather than as something that would start or skip
			   a merge. */
			rec->status = st < 0 ? BF_MERGE_FAILED
			                     : (enum bf_merge_status)st;
			have_status = true;
		} else if (strcmp(field, "cursor") == 0 ||
		           strcmp(field, "last_error") == 0) {
			char **dst = field[0] == 'c' ? &rec->cursor
			                             : &rec->last_error;

			free(*dst);
			*dst = strndup(value->str, value->len);
			if (*dst == NULL) {
				bf_merge_record_clear(rec);
				return oom(r);
			}
		} else {
			for (j = 0; j < 8; j++) {
				if (strcmp(field, merge_num_fields[j]) != 0)
					continue;
				if (j < 5)
					*u[j] = strtoull(value->str, NULL, 10);
				else
					*t[j - 5] = (time_t)strtoll(value->str,
					                            NULL, 10);
			}
		}
	}
	if (!have_status)
		rec->status = BF_MERGE_FAILED;
	return 0;
}

static int redis_merge_get(struct bf_state *state, const char *user,
                           struct bf_merge_record *rec_r)
{
	static const char *const what = "reading the merge record";
	struct redis_state *r = RS(state);
	struct rargs a = {0};
	redisReply *reply;
	int ret;

	args_str(&a, "HGETALL");
	args_key(&a, r, "merge:", user);
	ret = redis_call(r, &a, what, &reply);
	args_free(&a);
	if (ret < 0)
		return -1;
	if (reply->type != REDIS_REPLY_ARRAY)
		return bad_reply(r, what, reply);
	ret = 0;
	if (reply->elements > 0)
		ret = merge_from_reply(r, reply, rec_r) < 0 ? -1 : 1;
	freeReplyObject(reply);
	return ret;
}

/* The record's fields as field/value pairs after the checkpoint script's
   nfields argument. */
static void args_merge_record(struct rargs *a,
                              const struct bf_merge_record *rec)
{
	struct bf_merge_record copy = *rec;
	uint64_t *u[5];
	time_t *t[3];
	size_t nf = 9, i;

	merge_num_ptrs(&copy, u, t);
	nf += rec->cursor != NULL ? 1 : 0;
	nf += rec->last_error != NULL ? 1 : 0;
	args_printf(a, "%zu", nf);
	args_str(a, "status");
	args_str(a, bf_merge_status_name(rec->status));
	if (rec->cursor != NULL) {
		args_str(a, "cursor");
		args_str(a, rec->cursor);
	}
	if (rec->last_error != NULL) {
		args_str(a, "last_error");
		args_str(a, rec->last_error);
	}
	for (i = 0; i < 8; i++) {
		args_str(a, merge_num_fields[i]);
		if (i < 5)
			args_printf(a, "%" PRIu64, *u[i]);
		else
			args_printf(a, "%lld", (long long)*t[i - 5]);
	}
}

static void args_journal_entry(struct rargs *a,
                               const struct bf_journal_entry *e)
{
	char hex[BF_FP_HEX_SIZE];

	bf_fp_to_hex(e->fingerprint, hex);
	args_printf(a,
	            "%0" STR(UID_DIGITS) PRIu32 ":%" PRIu32
	                                        ":%s:%zu:%s:%zu:%s:%s",
	            e->uid, e->archive_uid, hex, strlen(e->mailbox_guid),
	            e->mailbox_guid, strlen(e->archive_mailbox),
	            e->archive_mailbox, e->mailbox);
	if (e->uid == 0)
		args_printf(a, "%" PRIu32 ":%s", e->archive_uid,
		            e->archive_mailbox);
	else
		args_str(a, "");
}

static int checkpoint(struct redis_state *r, const char *user,
                      const struct bf_merge_record *rec,
                      const struct bf_journal_entry *entries, size_t count,
                      const char *what)
{
	struct rargs a = {0};
	size_t i;
	int ret;

	args_script(&a, SC_CHECKPOINT, 4);
	args_key(&a, r, "journal:", user);
	args_key(&a, r, "journal-pending:", user);
	args_key(&a, r, "merge:", user);
	args_key(&a, r, "merges", "");
	args_str(&a, user);
	if (rec != NULL)
		args_merge_record(&a, rec);
	else
		args_str(&a, "0");
	for (i = 0; i < count; i++)
		args_journal_entry(&a, &entries[i]);
	ret = script_int(r, &a, SC_CHECKPOINT, what);
	args_free(&a);
	return ret < 0 ? -1 : 0;
}

static int redis_merge_put(struct bf_state *state, const char *user,
                           const struct bf_merge_record *rec)
{
	return checkpoint(RS(state), user, rec, NULL, 0,
	                  "writing the merge record");
}

static int redis_merge_delete(struct bf_state *state, const char *user)
{
	struct redis_state *r = RS(state);
	struct rargs a = {0};
	int ret;

	args_script(&a, SC_MERGE_DELETE, 4);
	args_key(&a, r, "merge:", user);
	args_key(&a, r, "journal:", user);
	args_key(&a, r, "journal-pending:", user);
	args_key(&a, r, "merges", "");
	args_str(&a, user);
	ret = script_int(r, &a, SC_MERGE_DELETE, "deleting the merge record");
	args_free(&a);
	return ret < 0 ? -1 : 0;
}

/* Reads the records of names[0..count) in one round trip (pipelined
   HGETALLs) and appends those that exist to rows. */
static int merge_rows_fetch(struct redis_state *r, redisReply **names,
                            size_t count, struct bf_merge_row *rows,
                            size_t *row_count)
{
	static const char *const what = "listing merge records";
	struct sigpipe_guard guard;
	struct bf_merge_row *row;
	redisReply *reply;
	size_t i;
	void *rp;
	int ret = 0, io;

	for (i = 0; i < count; i++) {
		struct rargs a = {0};

		args_str(&a, "HGETALL");
		args_key(&a, r, "merge:", names[i]->str);
		if (a.failed ||
		    redisAppendCommandArgv(r->ctx, (int)a.count, a.argv,
		                           a.lens) != REDIS_OK) {
			args_free(&a);
			/* The replies of the commands appended so far would
			   be read by the next command: start afresh. */
			conn_drop(r);
			return oom(r);
		}
		args_free(&a);
	}
	/* Every reply is read, even after an error, to keep the connection
	   in step. */
	for (i = 0; i < count; i++) {
		sigpipe_block(&guard);
		io = redisGetReply(r->ctx, &rp);
		sigpipe_restore(&guard);
		if (io != REDIS_OK)
			return conn_failed(r, what);
		reply = rp;
		if (ret < 0) {
			/* already failed */
		} else if (reply->type == REDIS_REPLY_ERROR) {
			ret = reply_error(r, what, reply);
		} else if (reply->type == REDIS_REPLY_ARRAY &&
		           reply->elements > 0) {
			row = &rows[*row_count];
			row->user = strndup(names[i]->str, names[i]->len);
			if (row->user == NULL) {
				ret = oom(r);
			} else if (merge_from_reply(r, reply, &row->rec) < 0) {
				free(row->user);
				row->user = NULL;
				ret = -1;
			} else {
				(*row_count)++;
			}
		}
		freeReplyObject(reply);
	}
	return ret;
}

static int redis_merge_list(struct bf_state *state, const char *after_user,
                            size_t max, struct bf_merge_row **rows_r,
                            size_t *count_r)
{
	static const char *const what = "listing merge records";
	struct redis_state *r = RS(state);
	struct bf_merge_row *rows;
	redisReply *reply;
	char *after = NULL;
	size_t count = 0, asked, i;
	int ret = 0;

	*rows_r = NULL;
	*count_r = 0;
	rows = calloc(max > 0 ? max : 1, sizeof(*rows));
	if (rows == NULL)
		return oom(r);
	if (after_user != NULL && (after = strdup(after_user)) == NULL) {
		free(rows);
		return oom(r);
	}
	/* Names whose record was deleted since ZRANGEBYLEX are skipped; a
	   short page would end the iteration, so the page is filled up from
	   the names after them. */
	while (ret == 0 && count < max) {
		struct rargs a = {0};
		size_t got;

		asked = max - count;
		args_str(&a, "ZRANGEBYLEX");
		args_key(&a, r, "merges", "");
		if (after == NULL)
			args_str(&a, "-");
		else
			args_printf(&a, "(%s", after);
		args_str(&a, "+");
		args_str(&a, "LIMIT");
		args_str(&a, "0");
		args_printf(&a, "%zu", asked);
		ret = redis_call(r, &a, what, &reply);
		args_free(&a);
		if (ret < 0)
			break;
		if (reply->type != REDIS_REPLY_ARRAY) {
			ret = bad_reply(r, what, reply);
			break;
		}
		got = reply->elements;
		for (i = 0; i < got; i++) {
			if (reply->element[i]->type != REDIS_REPLY_STRING)
				break;
		}
		if (i < got) {
			ret = bad_reply(r, what, reply);
			break;
		}
		if (got > 0) {
			ret = merge_rows_fetch(r, reply->element, got, rows,
			                       &count);
			free(after);
			after = strdup(reply->element[got - 1]->str);
			if (after == NULL && ret == 0)
				ret = oom(r);
		}
		freeReplyObject(reply);
		if (got < asked)
			break;
	}
	free(after);
	if (ret < 0) {
		bf_merge_rows_free(rows, count);
		return -1;
	}
	*rows_r = rows;
	*count_r = count;
	return 0;
}

/* ---- journal ---- */

static int redis_journal_append(struct bf_state *state, const char *user,
                                const struct bf_merge_record *rec,
                                const struct bf_journal_entry *entries,
                                size_t count)
{
	return checkpoint(RS(state), user, rec, entries, count,
	                  "appending to the journal");
}

static int journal_row_parse(const redisReply *v, struct bf_journal_row *row)
{
	struct cursor c = {v->str, v->str + v->len};
	long long uid, archive_uid;
	char *hex = NULL;
	int ret;

	if (v->type != REDIS_REPLY_STRING || !cur_num(&c, &uid) ||
	    !cur_num(&c, &archive_uid) || uid < 0 || uid > UINT32_MAX ||
	    archive_uid < 0 || archive_uid > UINT32_MAX ||
	    !cur_bytes(&c, 2 * BF_FP_SIZE + 1, &hex))
		return -1;
	ret = hex[2 * BF_FP_SIZE] == ':' ? 0 : -1;
	hex[2 * BF_FP_SIZE] = '\0';
	if (ret == 0)
		ret = bf_fp_from_text(hex, row->fingerprint);
	free(hex);
	if (ret < 0 || !cur_lenstr(&c, &row->mailbox_guid) ||
	    !cur_lenstr(&c, &row->archive_mailbox) ||
	    !cur_bytes(&c, (size_t)(c.end - c.p), &row->mailbox))
		return -1;
	row->uid = (uint32_t)uid;
	row->archive_uid = (uint32_t)archive_uid;
	return 0;
}

static int redis_journal_list(struct bf_state *state, const char *user,
                              uint64_t after_seq, size_t max,
                              struct bf_journal_row **rows_r, size_t *count_r)
{
	static const char *const what = "reading the journal";
	struct redis_state *r = RS(state);
	struct bf_journal_row *rows;
	struct rargs a = {0};
	redisReply *reply;
	size_t i;
	int ret;

	*rows_r = NULL;
	*count_r = 0;
	if (max == 0)
		return 0;
	args_str(&a, "LRANGE");
	args_key(&a, r, "journal:", user);
	args_printf(&a, "%" PRIu64, after_seq);
	args_printf(&a, "%" PRIu64, after_seq + max - 1);
	ret = redis_call(r, &a, what, &reply);
	args_free(&a);
	if (ret < 0)
		return -1;
	if (reply->type != REDIS_REPLY_ARRAY)
		return bad_reply(r, what, reply);
	rows = calloc(reply->elements > 0 ? reply->elements : 1, sizeof(*rows));
	if (rows == NULL) {
		freeReplyObject(reply);
		return oom(r);
	}
	for (i = 0; i < reply->elements && i < max; i++) {
		rows[i].seq = after_seq + i + 1;
		if (journal_row_parse(reply->element[i], &rows[i]) < 0) {
			freeReplyObject(reply);
			bf_journal_rows_free(rows, i + 1);
			return corrupt(r, what, "journal entry");
		}
	}
	freeReplyObject(reply);
	*rows_r = rows;
	*count_r = i;
	return 0;
}

static int redis_journal_set_uid(struct bf_state *state, const char *user,
                                 const char *archive_mailbox,
                                 uint32_t archive_uid, uint32_t uid)
{
	struct redis_state *r = RS(state);
	struct rargs a = {0};
	int ret;

	args_script(&a, SC_SET_UID, 2);
	args_key(&a, r, "journal:", user);
	args_key(&a, r, "journal-pending:", user);
	args_printf(&a, "%" PRIu32 ":%s", archive_uid, archive_mailbox);
	args_printf(&a, "%0" STR(UID_DIGITS) PRIu32, uid);
	ret = script_int(r, &a, SC_SET_UID, "setting a journal UID");
	args_free(&a);
	return ret;
}

static int redis_journal_delete(struct bf_state *state, const char *user)
{
	struct redis_state *r = RS(state);
	struct rargs a = {0};
	redisReply *reply;
	int ret;

	args_str(&a, "DEL");
	args_key(&a, r, "journal:", user);
	args_key(&a, r, "journal-pending:", user);
	ret = redis_call(r, &a, "deleting the journal", &reply);
	args_free(&a);
	freeReplyObject(reply);
	return ret;
}

/* ---- windows ---- */

/* A window as the list holds it ("opened:until:closed:name", or nil for
   none): 1 window_r filled, 0 none.  Does not free v. */
static int window_parse(struct redis_state *r, const char *what,
                        const redisReply *v, struct bf_window *window_r)
{
	struct cursor c;
	long long opened, until, closed;

	if (v->type == REDIS_REPLY_NIL)
		return 0;
	if (v->type != REDIS_REPLY_STRING)
		return corrupt(r, what, "window");
	c.p = v->str;
	c.end = v->str + v->len;
	if (!cur_num(&c, &opened) || !cur_num(&c, &until) ||
	    !cur_num(&c, &closed) ||
	    !cur_bytes(&c, (size_t)(c.end - c.p), &window_r->name))
		return corrupt(r, what, "window");
	window_r->opened = (time_t)opened;
	window_r->until = (time_t)until;
	window_r->closed = (time_t)closed;
	return 1;
}

static int redis_window_open(struct bf_state *state, const char *name,
                             time_t now, time_t until, bool exclusive,
                             struct bf_window *previous_r)
{
	static const char *const what = "opening a window";
	struct redis_state *r = RS(state);
	struct rargs a = {0};
	redisReply *reply;
	int ret;

	args_script(&a, SC_WINDOW, 1);
	args_key(&a, r, "windows", "");
	args_str(&a, "open");
	args_printf(&a, "%lld", (long long)now);
	args_printf(&a, "%lld", (long long)until);
	args_str(&a, name);
	args_str(&a, exclusive ? "exclusive" : "replace");
	ret = script_call(r, &a, SC_WINDOW, what, &reply);
	args_free(&a);
	if (ret < 0)
		return -1;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER)
		return bad_reply(r, what, reply);
	ret = reply->element[0]->integer != 0 ? 1 : 0;
	if (window_parse(r, what, reply->element[1], previous_r) < 0) {
		/* the window is open all the same: say so, only the one
		   before is unknown (foreign or damaged data) */
		bf_window_clear(previous_r);
		if (ret == 0)
			ret = -1;
	}
	freeReplyObject(reply);
	return ret;
}

static int redis_window_close(struct bf_state *state, time_t now)
{
	struct redis_state *r = RS(state);
	struct rargs a = {0};
	int ret;

	args_script(&a, SC_WINDOW, 1);
	args_key(&a, r, "windows", "");
	args_str(&a, "close");
	args_printf(&a, "%lld", (long long)now);
	ret = script_int(r, &a, SC_WINDOW, "closing the window");
	args_free(&a);
	return ret;
}

static int redis_window_current(struct bf_state *state, time_t now,
                                struct bf_window *window_r)
{
	static const char *const what = "reading the current window";
	struct redis_state *r = RS(state);
	struct rargs a = {0};
	redisReply *reply;
	int ret;

	args_script(&a, SC_WINDOW, 1);
	args_key(&a, r, "windows", "");
	args_str(&a, "current");
	args_printf(&a, "%lld", (long long)now);
	ret = script_call(r, &a, SC_WINDOW, what, &reply);
	args_free(&a);
	if (ret < 0)
		return -1;
	ret = window_parse(r, what, reply, window_r);
	freeReplyObject(reply);
	return ret;
}

/* ---- dedup ---- */

/* "first_seen:expires:delivered:delivered_at:hostlen:<host><queue id>" */
static bool dedup_first_parse(const redisReply *v, struct bf_dedup_first *first)
{
	struct cursor c = {v->str, v->str + v->len};
	long long first_seen, expires, delivered, delivered_at, host_len;

	if (!cur_num(&c, &first_seen) || !cur_num(&c, &expires) ||
	    !cur_num(&c, &delivered) || !cur_num(&c, &delivered_at) ||
	    !cur_num(&c, &host_len) || host_len < 0 ||
	    !cur_bytes(&c, (size_t)host_len, &first->host) ||
	    !cur_bytes(&c, (size_t)(c.end - c.p), &first->queue_id)) {
		bf_dedup_first_clear(first);
		return false;
	}
	first->first_seen = (time_t)first_seen;
	first->delivered = delivered != 0;
	first->delivered_at = (time_t)delivered_at;
	return true;
}

static int redis_dedup_check_and_set(struct bf_state *state,
                                     const struct bf_dedup_key *keys,
                                     size_t count, time_t now, unsigned int ttl,
                                     const char *host, const char *queue_id,
                                     int *results_r,
                                     struct bf_dedup_first *firsts_r)
{
	static const char *const what = "check-and-set";
	struct redis_state *r = RS(state);
	struct rargs a = {0};
	redisReply *reply, *e;
	size_t i;
	int ret;

	/* All recipients of the message in one script: one round trip. */
	args_script(&a, SC_CAS, count);
	for (i = 0; i < count; i++)
		args_dedup_key(&a, r, &keys[i]);
	args_printf(&a, "%lld", (long long)now);
	args_printf(&a, "%llu",
	            ((unsigned long long)ttl + EXPIRY_SLACK_SECS) * 1000ULL);
	args_printf(&a, "%lld:%lld:0:0:%zu:%s%s", (long long)now,
	            (long long)now + ttl, strlen(host), host, queue_id);
	ret = script_call(r, &a, SC_CAS, what, &reply);
	args_free(&a);
	if (ret < 0)
		return -1;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != count)
		return bad_reply(r, what, reply);
	for (i = 0; i < count; i++) {
		e = reply->element[i];
		if (e->type == REDIS_REPLY_INTEGER) {
			results_r[i] = 1;
			continue;
		}
		results_r[i] = 0;
		if (e->type != REDIS_REPLY_STRING ||
		    (firsts_r != NULL && !dedup_first_parse(e, &firsts_r[i]))) {
			freeReplyObject(reply);
			return e->type != REDIS_REPLY_STRING
			               ? bad_reply(r, what, NULL)
			               : corrupt(r, what, "dedup record");
		}
	}
	freeReplyObject(reply);
	return 0;
}

static int redis_dedup_mark_delivered(struct bf_state *state,
                                      const struct bf_dedup_key *key,
                                      time_t now)
{
	struct redis_state *r = RS(state);
	struct rargs a = {0};
	int ret;

	args_script(&a, SC_MARK, 1);
	args_dedup_key(&a, r, key);
	args_printf(&a, "%lld", (long long)now);
	ret = script_int(r, &a, SC_MARK, "marking delivered");
	args_free(&a);
	return ret;
}

/* Walks the dedup records with SCAN, a script per step.  Records expire
   by themselves in Redis (EXPIRY_SLACK_SECS after their expiry), so purge
   mostly finds little; it deletes what expired by the caller's clock, as
   with SQLite.  SCAN may return a key twice while the server resizes its
   table, so stats taken during heavy traffic are approximate. */
static int dedup_scan(struct redis_state *r, time_t now, bool purge,
                      uint64_t counts_r[3], const char *what)
{
	struct rargs a = {0};
	redisReply *reply, *keys, *sums;
	char *cursor, *pattern, *p;
	const char *s;
	size_t i;
	int ret = 0;

	memset(counts_r, 0, 3 * sizeof(*counts_r));
	/* The prefix is literal: glob characters in it are escaped. */
	pattern = malloc(2 * strlen(r->prefix) + sizeof("dedup:*"));
	cursor = strdup("0");
	if (pattern == NULL || cursor == NULL) {
		free(pattern);
		free(cursor);
		return oom(r);
	}
	for (s = r->prefix, p = pattern; *s != '\0'; s++) {
		if (strchr("*?[]\\", *s) != NULL)
			*p++ = '\\';
		*p++ = *s;
	}
	strcpy(p, "dedup:*");
	do {
		args_str(&a, "SCAN");
		args_str(&a, cursor);
		args_str(&a, "MATCH");
		args_str(&a, pattern);
		args_str(&a, "COUNT");
		args_str(&a, SCAN_COUNT);
		ret = redis_call(r, &a, what, &reply);
		args_free(&a);
		if (ret < 0)
			break;
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		    reply->element[0]->type != REDIS_REPLY_STRING ||
		    reply->element[1]->type != REDIS_REPLY_ARRAY) {
			ret = bad_reply(r, what, reply);
			break;
		}
		free(cursor);
		cursor = strdup(reply->element[0]->str);
		keys = reply->element[1];
		if (cursor == NULL)
			ret = oom(r);
		if (ret == 0 && keys->elements > 0) {
			args_script(&a, SC_SCAN, keys->elements);
			for (i = 0; i < keys->elements; i++)
				args_add(&a, keys->element[i]->str,
				         keys->element[i]->len);
			args_printf(&a, "%lld", (long long)now);
			args_str(&a, purge ? "purge" : "stats");
			ret = script_call(r, &a, SC_SCAN, what, &sums);
			args_free(&a);
			if (ret == 0 && (sums->type != REDIS_REPLY_ARRAY ||
			                 sums->elements != 3)) {
				ret = bad_reply(r, what, sums);
			} else if (ret == 0) {
				for (i = 0; i < 3; i++)
					counts_r[i] +=
					        (uint64_t)sums->element[i]
					                ->integer;
				freeReplyObject(sums);
			}
		}
		freeReplyObject(reply);
	} while (ret == 0 && strcmp(cursor, "0") != 0);
	free(cursor);
	free(pattern);
	return ret;
}

static int redis_dedup_purge(struct bf_state *state, time_t now,
                             uint64_t *purged_r)
{
	uint64_t counts[3];

	if (dedup_scan(RS(state), now, true, counts, "purging dedup records") <
	    0)
		return -1;
	*purged_r = counts[2];
	return 0;
}

static int redis_dedup_stats(struct bf_state *state, time_t now,
                             struct bf_dedup_stats *stats_r)
{
	uint64_t counts[3];

	if (dedup_scan(RS(state), now, false, counts,
	               "reading dedup statistics") < 0)
		return -1;
	stats_r->records = counts[0];
	stats_r->delivered = counts[1];
	stats_r->expired = counts[2];
	return 0;
}

/* ---- leases ---- */

/* Leases have no Redis TTL: like a SQLite row, an expired lease stays
   until it is taken or released, so that its owner can still renew it if
   nobody took it meanwhile.  There is one per user and slot at most. */
static int lease_script(struct redis_state *r, const char *op, const char *name,
                        const char *owner, time_t now, unsigned int ttl,
                        bool reentrant, const char *expected, char **holder_r,
                        const char *what)
{
	struct rargs a = {0};
	redisReply *reply;
	int ret;

	args_script(&a, SC_LEASE, 1);
	args_key(&a, r, "lease:", name);
	args_str(&a, op);
	args_str(&a, owner);
	args_printf(&a, "%lld", (long long)now);
	args_printf(&a, "%lld", (long long)now + ttl);
	args_str(&a, reentrant ? "1" : "0");
	args_str(&a, expected != NULL ? expected : "");
	ret = script_call(r, &a, SC_LEASE, what, &reply);
	args_free(&a);
	if (ret < 0)
		return -1;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER)
		return bad_reply(r, what, reply);
	ret = reply->element[0]->integer != 0 ? 1 : 0;
	if (ret == 0 && holder_r != NULL && reply->elements > 1 &&
	    reply->element[1]->type == REDIS_REPLY_STRING) {
		*holder_r =
		        strndup(reply->element[1]->str, reply->element[1]->len);
		if (*holder_r == NULL)
			ret = oom(r);
	}
	freeReplyObject(reply);
	return ret;
}

static int redis_lease_acquire(struct bf_state *state, const char *name,
                               const char *owner, time_t now, unsigned int ttl,
                               bool reentrant, char **holder_r)
{
	*holder_r = NULL;
	return lease_script(RS(state), "acquire", name, owner, now, ttl,
	                    reentrant, NULL, holder_r, "acquiring a lease");
}

static int redis_lease_swap(struct bf_state *state, const char *name,
                            const char *expected_holder, const char *owner,
                            time_t now, unsigned int ttl)
{
	return lease_script(RS(state), "swap", name, owner, now, ttl, false,
	                    expected_holder, NULL, "taking over a lease");
}

static int redis_lease_renew(struct bf_state *state, const char *name,
                             const char *owner, time_t now, unsigned int ttl)
{
	return lease_script(RS(state), "renew", name, owner, now, ttl, false,
	                    NULL, NULL, "renewing a lease");
}

static int redis_lease_release(struct bf_state *state, const char *name,
                               const char *owner)
{
	return lease_script(RS(state), "release", name, owner, 0, 0, false,
	                    NULL, NULL, "releasing a lease");
}

/* ---- open / close ---- */

static void redis_close(struct bf_state *state)
{
	struct redis_state *r = RS(state);

	conn_drop(r);
	free(r->host);
	free(r->socket_path);
	free(r->user);
	if (r->password != NULL) {
		/* Not left behind in freed memory. */
		explicit_bzero(r->password, strlen(r->password));
		free(r->password);
	}
	free(r->prefix);
	free(r);
}

/* %-decodes s[0..len).  NULL: a bad escape, a NUL byte or out of memory. */
static char *pct_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1), *p = out;
	size_t i;

	if (out == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			*p++ = s[i];
			continue;
		}
		if (i + 2 >= len || bf_parse_hex_digit(s[i + 1]) < 0 ||
		    bf_parse_hex_digit(s[i + 2]) < 0 ||
		    (bf_parse_hex_digit(s[i + 1]) == 0 &&
		     bf_parse_hex_digit(s[i + 2]) == 0)) {
			free(out);
			return NULL;
		}
		*p++ = (char)(bf_parse_hex_digit(s[i + 1]) * 16 +
		              bf_parse_hex_digit(s[i + 2]));
		i += 2;
	}
	*p = '\0';
	return out;
}

static bool parse_uint(const char *s, size_t len, unsigned long max,
                       unsigned long *value_r)
{
	unsigned long value = 0;
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' ||
		    value > (max - (s[i] - '0')) / 10)
			return false;
		value = value * 10 + (unsigned long)(s[i] - '0');
	}
	*value_r = value;
	return true;
}

/* "?timeout=MS&prefix=STR" and, on a unix socket (whose URI has no other
   place for them), "&db=N&user=NAME&password=PW". */
static int parse_options(struct redis_state *r, const char *query,
                         bool unix_socket, const char *name, char **error_r)
{
	const char *opt, *end, *eq;
	unsigned long value;

	for (opt = query; opt != NULL && *opt != '\0';
	     opt = *end == '&' ? end + 1 : NULL) {
		end = opt + strcspn(opt, "&");
		eq = memchr(opt, '=', (size_t)(end - opt));
		if (eq == NULL) {
			*error_r = bf_state_error_new(
			        name, "option without value in URI (%s)",
			        USAGE);
			return -1;
		}
		if ((size_t)(eq - opt) == 7 &&
		    strncmp(opt, "timeout", 7) == 0) {
			if (!parse_uint(eq + 1, (size_t)(end - eq - 1),
			                MAX_TIMEOUT_MS, &value) ||
			    value == 0) {
				*error_r = bf_state_error_new(
				        name,
				        "invalid timeout in URI (milliseconds, "
				        "1 to %d)",
				        MAX_TIMEOUT_MS);
				return -1;
			}
			r->timeout_ms = (int)value;
		} else if ((size_t)(eq - opt) == 6 &&
		           strncmp(opt, "prefix", 6) == 0) {
			free(r->prefix);
			r->prefix = pct_decode(eq + 1, (size_t)(end - eq - 1));
			if (r->prefix == NULL) {
				*error_r = bf_state_error_new(
				        name, "invalid prefix in URI (bad "
				              "%%-escape)");
				return -1;
			}
		} else if (unix_socket && (size_t)(eq - opt) == 8 &&
		           strncmp(opt, "password", 8) == 0) {
			free(r->password);
			r->password =
			        pct_decode(eq + 1, (size_t)(end - eq - 1));
			if (r->password == NULL || *r->password == '\0') {
				*error_r = bf_state_error_new(
				        name, "invalid password in URI (empty "
				              "or bad %%-escape)");
				return -1;
			}
		} else if (unix_socket && (size_t)(eq - opt) == 4 &&
		           strncmp(opt, "user", 4) == 0) {
			free(r->user);
			r->user = pct_decode(eq + 1, (size_t)(end - eq - 1));
			if (r->user == NULL || *r->user == '\0') {
				*error_r = bf_state_error_new(
				        name, "invalid user in URI (empty or "
				              "bad %%-escape)");
				return -1;
			}
		} else if (unix_socket && (size_t)(eq - opt) == 2 &&
		           strncmp(opt, "db", 2) == 0) {
			if (!parse_uint(eq + 1, (size_t)(end - eq - 1), INT_MAX,
			                &value)) {
				*error_r = bf_state_error_new(
				        name, "invalid db in URI (a number)");
				return -1;
			}
			r->db = (unsigned int)value;
		} else {
			*error_r = bf_state_error_new(
			        name,
			        "unknown option \"%.*s\" in URI (supported: "
			        "timeout=MS, prefix=STR%s)",
			        (int)(eq - opt), opt,
			        unix_socket ? ", db=N, user=NAME, password=PW"
			                    : "");
			return -1;
		}
	}
	return 0;
}

/* "//[user:password@]host[:port][/db][?options]".  Error messages never
   quote the URI: it may hold the password. */
static int parse_tcp(struct redis_state *r, const char *location,
                     char **error_r)
{
	static const char *const name = "redis:";
	const char *p, *auth_end, *at = NULL, *colon, *host, *host_end;
	const char *port_str = NULL, *q;
	unsigned long value;

	if (strncmp(location, "//", 2) != 0) {
		*error_r = bf_state_error_new(name, "invalid URI (%s)", USAGE);
		return -1;
	}
	p = location + 2;
	auth_end = p + strcspn(p, "/?");
	for (q = p; q < auth_end; q++) {
		if (*q == '@')
			at = q;
	}
	if (at != NULL) {
		colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL || colon + 1 == at) {
			*error_r = bf_state_error_new(
			        name, "no password in the URI's user part "
			              "(redis://:password@host:port/db or "
			              "redis://user:password@host:port/db)");
			return -1;
		}
		if (colon > p &&
		    (r->user = pct_decode(p, (size_t)(colon - p))) == NULL) {
			*error_r = bf_state_error_new(
			        name, "invalid user in URI (bad %%-escape)");
			return -1;
		}
		r->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
		if (r->password == NULL) {
			*error_r = bf_state_error_new(
			        name,
			        "invalid password in URI (bad %%-escape)");
			return -1;
		}
		p = at + 1;
	}
	host = p;
	if (*p == '[') {
		host = p + 1;
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (host_end == NULL ||
		    (host_end + 1 < auth_end && host_end[1] != ':')) {
			*error_r = bf_state_error_new(
			        name, "invalid IPv6 address in URI (%s)",
			        USAGE);
			return -1;
		}
		if (host_end + 1 < auth_end)
			port_str = host_end + 2;
	} else {
		host_end = memchr(host, ':', (size_t)(auth_end - host));
		if (host_end != NULL)
			port_str = host_end + 1;
		else
			host_end = auth_end;
	}
	if (host_end == host) {
		*error_r =
		        bf_state_error_new(name, "no host in URI (%s)", USAGE);
		return -1;
	}
	r->host = strndup(host, (size_t)(host_end - host));
	r->port = DEFAULT_PORT;
	if (port_str != NULL) {
		if (!parse_uint(port_str, (size_t)(auth_end - port_str), 65535,
		                &value) ||
		    value == 0) {
			*error_r = bf_state_error_new(
			        name, "invalid port in URI (1 to 65535)");
			return -1;
		}
		r->port = (int)value;
	}
	p = auth_end;
	if (*p == '/') {
		p++;
		q = p + strcspn(p, "?");
		if (q > p && !parse_uint(p, (size_t)(q - p), INT_MAX, &value)) {
			*error_r = bf_state_error_new(
			        name, "invalid database number in URI (%s)",
			        USAGE);
			return -1;
		}
		r->db = q > p ? (unsigned int)value : 0;
		p = q;
	}
	if (r->host == NULL)
		return -1;
	return parse_options(r, *p == '?' ? p + 1 : NULL, false, name, error_r);
}

/* "///path/redis.sock[?db=N&options]" (or "/path/...") */
static int parse_unix(struct redis_state *r, const char *location,
                      char **error_r)
{
	static const char *const name = "redis+unix:";
	const char *query;

	if (strncmp(location, "//", 2) == 0)
		location += 2;
	query = strchr(location, '?');
	if (location[0] != '/' || location[1] == '\0' || location[1] == '?') {
		*error_r = bf_state_error_new(
		        name, "no absolute socket path in URI (%s)", USAGE);
		return -1;
	}
	r->socket_path =
	        pct_decode(location, query != NULL ? (size_t)(query - location)
	                                           : strlen(location));
	if (r->socket_path == NULL) {
		*error_r = bf_state_error_new(
		        name, "invalid socket path in URI (bad %%-escape)");
		return -1;
	}
	return parse_options(r, query != NULL ? query + 1 : NULL, true, name,
	                     error_r);
}

/* What error messages call the store: the server, without credentials. */
static char *store_name(const struct redis_state *r)
{
	char *name;
	int ret;

	if (r->socket_path != NULL) {
		ret = r->db != 0 ? asprintf(&name, "redis+unix://%s?db=%u",
		                            r->socket_path, r->db)
		                 : asprintf(&name, "redis+unix://%s",
		                            r->socket_path);
	} else {
		ret = asprintf(&name,
		               strchr(r->host, ':') != NULL
		                       ? "redis://[%s]:%d/%u"
		                       : "redis://%s:%d/%u",
		               r->host, r->port, r->db);
	}
	return ret < 0 ? NULL : name;
}

static int open_common(const char *location, bool unix_socket,
                       struct bf_state **state_r, char **error_r)
{
	struct redis_state *r;
	int ret;

	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		*error_r = bf_state_error_new("redis", "out of memory");
		return -1;
	}
	r->timeout_ms = DEFAULT_TIMEOUT_MS;
	*error_r = NULL;
	ret = unix_socket ? parse_unix(r, location, error_r)
	                  : parse_tcp(r, location, error_r);
	r->default_timeout_ms = r->timeout_ms;
	if (ret == 0 && r->prefix == NULL &&
	    (r->prefix = strdup(DEFAULT_PREFIX)) == NULL)
		ret = -1;
	if (ret == 0 && (r->state.name = store_name(r)) == NULL)
		ret = -1;
	/* Connecting at once reports a wrong address or password when the
	   store is opened; later failures are per call, and reconnect. */
	if (ret == 0 && conn_open(r, "connecting") < 0) {
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
	redis_close(&r->state);
	return -1;
}

static int redis_open_tcp(const char *location, struct bf_state **state_r,
                          char **error_r)
{
	return open_common(location, false, state_r, error_r);
}

static int redis_open_unix(const char *location, struct bf_state **state_r,
                           char **error_r)
{
	return open_common(location, true, state_r, error_r);
}

/* Debian 12's hiredis (0.14) has no TLS (hiredis_ssl came with 1.0): a
   clear refusal instead of "unsupported backend". */
static int redis_open_tls(const char *location, struct bf_state **state_r,
                          char **error_r)
{
	(void)location;
	*state_r = NULL;
	*error_r = bf_state_error_new(
	        "rediss:", "TLS is not supported: this build's hiredis has no "
	                   "TLS; use redis+unix:// on the Redis host, or a "
	                   "TLS tunnel (stunnel, spiped) to redis:// on "
	                   "127.0.0.1 (see docs/state-store.md)");
	return -1;
}

#define REDIS_OPS                                                              \
	.close = redis_close, .set_wait_limit = redis_set_wait_limit,          \
	.merge_get = redis_merge_get, .merge_put = redis_merge_put,            \
	.merge_delete = redis_merge_delete, .merge_list = redis_merge_list,    \
	.journal_append = redis_journal_append,                                \
	.journal_list = redis_journal_list,                                    \
	.journal_set_uid = redis_journal_set_uid,                              \
	.journal_delete = redis_journal_delete,                                \
	.window_open = redis_window_open, .window_close = redis_window_close,  \
	.window_current = redis_window_current,                                \
	.dedup_check_and_set = redis_dedup_check_and_set,                      \
	.dedup_mark_delivered = redis_dedup_mark_delivered,                    \
	.dedup_purge = redis_dedup_purge, .dedup_stats = redis_dedup_stats,    \
	.lease_acquire = redis_lease_acquire, .lease_swap = redis_lease_swap,  \
	.lease_renew = redis_lease_renew, .lease_release = redis_lease_release

const struct bf_state_backend bf_state_backend_redis = {
        .scheme = "redis",
        .open = redis_open_tcp,
        REDIS_OPS,
};

const struct bf_state_backend bf_state_backend_redis_unix = {
        .scheme = "redis+unix",
        .open = redis_open_unix,
        REDIS_OPS,
};

const struct bf_state_backend bf_state_backend_rediss = {
        .scheme = "rediss",
        .open = redis_open_tls,
        REDIS_OPS,
};
