/* Redis backend of the state store, for several hosts sharing one store
   (two MX hosts, several Dovecot backends): its operations.  The URI is
   read in state-redis-uri.c, the connection kept in state-redis-conn.c,
   and the values below read back in state-redis-values.c.

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
     P journal:<user>        list of journal entries, seq = index + 1:
         "<uid, 10 digits>:archive_uid:<fingerprint hex>:guidlen:<guid>:"
         "amblen:<archive mailbox>:<mailbox>"
     P journal-pending:<user> hash "archive_uid:archive_mailbox" -> list
                             indexes of its entries that still have uid 0
     P windows               list "opened:until:closed:name", oldest first
*/

#include "state-redis.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        /* KEYS: journal, journal-pending, merge record, merges; ARGV:
           user. */
        [SC_MERGE_DELETE] = "redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])\n"
                            "redis.call('ZREM', KEYS[4], ARGV[1])\n"
                            "return 1\n",
};

static char script_sha[SCRIPT_COUNT][SHA_DIGEST_LENGTH * 2 + 1];
static pthread_once_t script_sha_once = PTHREAD_ONCE_INIT;

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

/* EVALSHA sha numkeys: the keys and arguments follow. */
static void args_script(struct bf_rargs *a, enum script_id id, size_t nkeys)
{
	pthread_once(&script_sha_once, script_sha_init);
	bf_rargs_str(a, "EVALSHA");
	bf_rargs_str(a, script_sha[id]);
	bf_rargs_printf(a, "%zu", nkeys);
}

/* ---- keys ---- */

static void args_key(struct bf_rargs *a, const struct redis_state *r,
                     const char *kind, const char *name)
{
	bf_rargs_printf(a, "%s%s%s", r->uri.prefix, kind, name);
}

/* A user's journal and the list of its entries still without a UID. */
static void args_journal_keys(struct bf_rargs *a, const struct redis_state *r,
                              const char *user)
{
	args_key(a, r, "journal:", user);
	args_key(a, r, "journal-pending:", user);
}

/* Every key of a user's merge state, as the checkpoint and merge-delete
   scripts take them: journal, journal-pending, merge record, merges. */
static void args_merge_keys(struct bf_rargs *a, const struct redis_state *r,
                            const char *user)
{
	args_journal_keys(a, r, user);
	args_key(a, r, "merge:", user);
	args_key(a, r, "merges", "");
}

static void args_dedup_key(struct bf_rargs *a, const struct redis_state *r,
                           const struct bf_dedup_key *key)
{
	char hex[BF_FP_HEX_SIZE], *s, *p;
	const char *w;
	size_t len;

	bf_fp_to_hex(key->fingerprint, hex);
	len = strlen(r->uri.prefix) + 6 + 3 * strlen(key->window) + 1 +
	      strlen(hex) + 1 + strlen(key->recipient);
	s = malloc(len + 1);
	if (s == NULL) {
		bf_rargs_take(a, NULL, 0);
		return;
	}
	p = stpcpy(stpcpy(s, r->uri.prefix), "dedup:");
	for (w = key->window; *w != '\0'; w++) {
		if (*w == ':' || *w == '%')
			p += sprintf(p, "%%%02X", (unsigned char)*w);
		else
			*p++ = *w;
	}
	*p++ = ':';
	p = stpcpy(stpcpy(p, hex), ":");
	p = stpcpy(p, key->recipient);
	bf_rargs_take(a, s, (size_t)(p - s));
}

/* A script call built with args_script().  A server that restarted (or
   ran SCRIPT FLUSH) has forgotten the script: then it is sent whole once,
   which also puts it back in the server's cache. */
static int script_call(struct redis_state *r, struct bf_rargs *a,
                       enum script_id id, const char *what,
                       redisReply **reply_r)
{
	redisReply *reply;

	*reply_r = NULL;
	if (a->failed)
		return bf_redis_oom(r);
	if (bf_redis_connect(r, what) < 0 ||
	    bf_redis_send(r, a, what, &reply) < 0)
		return -1;
	if (reply->type == REDIS_REPLY_ERROR && reply->str != NULL &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(reply);
		a->argv[0] = "EVAL";
		a->lens[0] = 4;
		a->argv[1] = scripts[id];
		a->lens[1] = strlen(scripts[id]);
		if (bf_redis_send(r, a, what, &reply) < 0)
			return -1;
	}
	if (reply->type == REDIS_REPLY_ERROR) {
		bf_redis_reply_error(r, what, reply);
		freeReplyObject(reply);
		return -1;
	}
	*reply_r = reply;
	return 0;
}

/* The integer answer of a script (1/0 answers). */
static int script_int(struct redis_state *r, struct bf_rargs *a,
                      enum script_id id, const char *what)
{
	redisReply *reply;
	long long value;

	if (script_call(r, a, id, what, &reply) < 0)
		return -1;
	if (reply->type != REDIS_REPLY_INTEGER)
		return bf_redis_bad_reply(r, what, reply);
	value = reply->integer;
	freeReplyObject(reply);
	return value != 0 ? 1 : 0;
}

/* A command whose reply must be an array (bf_redis_call()): any other
   reply is an error too. */
static int call_array(struct redis_state *r, const struct bf_rargs *a,
                      const char *what, redisReply **reply_r)
{
	if (bf_redis_call(r, a, what, reply_r) < 0)
		return -1;
	if ((*reply_r)->type != REDIS_REPLY_ARRAY) {
		(void)bf_redis_bad_reply(r, what, *reply_r);
		*reply_r = NULL;
		return -1;
	}
	return 0;
}

static int corrupt(struct redis_state *r, const char *what, const char *kind)
{
	bf_state_set_error(&r->state,
	                   "%s: unreadable %s in redis (written by something "
	                   "else than backfill under the same prefix?)",
	                   what, kind);
	return -1;
}

/* rec from the field/value pairs of HGETALL of user's record. */
static int merge_from_reply(struct redis_state *r, const char *user,
                            const redisReply *reply,
                            struct bf_merge_record *rec)
{
	/* the names of the damaged fields, comma-separated */
	char bad_fields[128] = "";
	bool have_status = false;
	size_t i;
	int ret;

	memset(rec, 0, sizeof(*rec));
	for (i = 0; i + 1 < reply->elements; i += 2) {
		const redisReply *field = reply->element[i];
		const redisReply *value = reply->element[i + 1];

		if (field->str == NULL || value->str == NULL)
			continue;
		ret = bf_redis_merge_field(rec, field->str, value->str,
		                           value->len);
		if (ret < 0)
			return bf_redis_oom(r);
		if (ret == 2) {
			/* a known field name: at most 8 of them fit */
			if (bad_fields[0] != '\0')
				strcat(bad_fields, ", ");
			strcat(bad_fields, field->str);
		}
		have_status = have_status || ret == 1;
	}
	if (!have_status)
		rec->status = BF_MERGE_FAILED;
	if (bad_fields[0] != '\0' &&
	    bf_merge_record_damaged(rec, user, bad_fields) < 0)
		return bf_redis_oom(r);
	return 0;
}

static int redis_merge_get(struct bf_state *state, const char *user,
                           struct bf_merge_record *rec_r)
{
	static const char *const what = "reading the merge record";
	struct redis_state *r = RS(state);
	struct bf_rargs a = {0};
	redisReply *reply;
	int ret;

	bf_rargs_str(&a, "HGETALL");
	args_key(&a, r, "merge:", user);
	ret = call_array(r, &a, what, &reply);
	bf_rargs_free(&a);
	if (ret < 0)
		return -1;
	ret = 0;
	if (reply->elements > 0)
		ret = merge_from_reply(r, user, reply, rec_r) < 0 ? -1 : 1;
	freeReplyObject(reply);
	return ret;
}

/* The record's fields as field/value pairs after the checkpoint script's
   nfields argument. */
static void args_merge_record(struct bf_rargs *a,
                              const struct bf_merge_record *rec)
{
	struct bf_merge_record copy = *rec;
	uint64_t *u[5];
	time_t *t[3];
	size_t nf = 9, i;

	bf_redis_merge_num_ptrs(&copy, u, t);
	nf += rec->cursor != NULL ? 1 : 0;
	nf += rec->last_error != NULL ? 1 : 0;
	bf_rargs_printf(a, "%zu", nf);
	bf_rargs_str(a, "status");
	bf_rargs_str(a, bf_merge_status_name(rec->status));
	if (rec->cursor != NULL) {
		bf_rargs_str(a, "cursor");
		bf_rargs_str(a, rec->cursor);
	}
	if (rec->last_error != NULL) {
		bf_rargs_str(a, "last_error");
		bf_rargs_str(a, rec->last_error);
	}
	for (i = 0; i < 8; i++) {
		bf_rargs_str(a, bf_redis_merge_num_fields[i]);
		if (i < 5)
			bf_rargs_printf(a, "%" PRIu64, *u[i]);
		else
			bf_rargs_printf(a, "%lld", (long long)*t[i - 5]);
	}
}

static void args_journal_entry(struct bf_rargs *a,
                               const struct bf_journal_entry *e)
{
	char hex[BF_FP_HEX_SIZE];

	bf_fp_to_hex(e->fingerprint, hex);
	bf_rargs_printf(a,
	                "%0" STR(UID_DIGITS) PRIu32 ":%" PRIu32
	                                            ":%s:%zu:%s:%zu:%s:%s",
	                e->uid, e->archive_uid, hex, strlen(e->mailbox_guid),
	                e->mailbox_guid, strlen(e->archive_mailbox),
	                e->archive_mailbox, e->mailbox);
	if (e->uid == 0)
		bf_rargs_printf(a, "%" PRIu32 ":%s", e->archive_uid,
		                e->archive_mailbox);
	else
		bf_rargs_str(a, "");
}

static int checkpoint(struct redis_state *r, const char *user,
                      const struct bf_merge_record *rec,
                      const struct bf_journal_entry *entries, size_t count,
                      const char *what)
{
	struct bf_rargs a = {0};
	size_t i;
	int ret;

	args_script(&a, SC_CHECKPOINT, 4);
	args_merge_keys(&a, r, user);
	bf_rargs_str(&a, user);
	if (rec != NULL)
		args_merge_record(&a, rec);
	else
		bf_rargs_str(&a, "0");
	for (i = 0; i < count; i++)
		args_journal_entry(&a, &entries[i]);
	ret = script_int(r, &a, SC_CHECKPOINT, what);
	bf_rargs_free(&a);
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
	struct bf_rargs a = {0};
	int ret;

	args_script(&a, SC_MERGE_DELETE, 4);
	args_merge_keys(&a, r, user);
	bf_rargs_str(&a, user);
	ret = script_int(r, &a, SC_MERGE_DELETE, "deleting the merge record");
	bf_rargs_free(&a);
	return ret < 0 ? -1 : 0;
}

/* Reads the records of names[0..count) in one round trip (pipelined
   HGETALLs) and appends those that exist to rows. */
static int merge_rows_fetch(struct redis_state *r, redisReply **names,
                            size_t count, struct bf_merge_row *rows,
                            size_t *row_count)
{
	static const char *const what = "listing merge records";
	struct bf_redis_sigpipe_guard guard;
	struct bf_merge_row *row;
	redisReply *reply;
	size_t i;
	void *rp;
	int ret = 0, io;

	for (i = 0; i < count; i++) {
		struct bf_rargs a = {0};

		bf_rargs_str(&a, "HGETALL");
		args_key(&a, r, "merge:", names[i]->str);
		if (a.failed ||
		    redisAppendCommandArgv(r->ctx, (int)a.count, a.argv,
		                           a.lens) != REDIS_OK) {
			bf_rargs_free(&a);
			/* The replies of the commands appended so far would
			   be read by the next command: start afresh. */
			bf_redis_drop(r);
			return bf_redis_oom(r);
		}
		bf_rargs_free(&a);
	}
	/* Every reply is read, even after an error, to keep the connection
	   in step. */
	for (i = 0; i < count; i++) {
		bf_redis_sigpipe_block(&guard);
		io = redisGetReply(r->ctx, &rp);
		bf_redis_sigpipe_restore(&guard);
		if (io != REDIS_OK)
			return bf_redis_conn_failed(r, what);
		reply = rp;
		if (ret < 0) {
			/* already failed */
		} else if (reply->type == REDIS_REPLY_ERROR) {
			ret = bf_redis_reply_error(r, what, reply);
		} else if (reply->type == REDIS_REPLY_ARRAY &&
		           reply->elements > 0) {
			row = &rows[*row_count];
			row->user = strndup(names[i]->str, names[i]->len);
			if (row->user == NULL) {
				ret = bf_redis_oom(r);
			} else if (merge_from_reply(r, row->user, reply,
			                            &row->rec) < 0) {
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
		return bf_redis_oom(r);
	if (after_user != NULL && (after = strdup(after_user)) == NULL) {
		free(rows);
		return bf_redis_oom(r);
	}
	/* Names whose record was deleted since ZRANGEBYLEX are skipped; a
	   short page would end the iteration, so the page is filled up from
	   the names after them. */
	while (ret == 0 && count < max) {
		struct bf_rargs a = {0};
		size_t got;

		asked = max - count;
		bf_rargs_str(&a, "ZRANGEBYLEX");
		args_key(&a, r, "merges", "");
		if (after == NULL)
			bf_rargs_str(&a, "-");
		else
			bf_rargs_printf(&a, "(%s", after);
		bf_rargs_str(&a, "+");
		bf_rargs_str(&a, "LIMIT");
		bf_rargs_str(&a, "0");
		bf_rargs_printf(&a, "%zu", asked);
		ret = call_array(r, &a, what, &reply);
		bf_rargs_free(&a);
		if (ret < 0)
			break;
		got = reply->elements;
		for (i = 0; i < got; i++) {
			if (reply->element[i]->type != REDIS_REPLY_STRING)
				break;
		}
		if (i < got) {
			ret = bf_redis_bad_reply(r, what, reply);
			break;
		}
		if (got > 0) {
			ret = merge_rows_fetch(r, reply->element, got, rows,
			                       &count);
			free(after);
			after = strdup(reply->element[got - 1]->str);
			if (after == NULL && ret == 0)
				ret = bf_redis_oom(r);
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

static int redis_journal_list(struct bf_state *state, const char *user,
                              uint64_t after_seq, size_t max,
                              struct bf_journal_row **rows_r, size_t *count_r)
{
	static const char *const what = "reading the journal";
	struct redis_state *r = RS(state);
	struct bf_journal_row *rows;
	struct bf_rargs a = {0};
	redisReply *reply;
	size_t i;
	int ret;

	*rows_r = NULL;
	*count_r = 0;
	if (max == 0)
		return 0;
	bf_rargs_str(&a, "LRANGE");
	args_key(&a, r, "journal:", user);
	bf_rargs_printf(&a, "%" PRIu64, after_seq);
	bf_rargs_printf(&a, "%" PRIu64, after_seq + max - 1);
	ret = call_array(r, &a, what, &reply);
	bf_rargs_free(&a);
	if (ret < 0)
		return -1;
	rows = calloc(reply->elements > 0 ? reply->elements : 1, sizeof(*rows));
	if (rows == NULL) {
		freeReplyObject(reply);
		return bf_redis_oom(r);
	}
	for (i = 0; i < reply->elements && i < max; i++) {
		rows[i].seq = after_seq + i + 1;
		if (reply->element[i]->type != REDIS_REPLY_STRING ||
		    !bf_redis_journal_parse(reply->element[i]->str,
		                            reply->element[i]->len, &rows[i])) {
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
	struct bf_rargs a = {0};
	int ret;

	args_script(&a, SC_SET_UID, 2);
	args_journal_keys(&a, r, user);
	bf_rargs_printf(&a, "%" PRIu32 ":%s", archive_uid, archive_mailbox);
	bf_rargs_printf(&a, "%0" STR(UID_DIGITS) PRIu32, uid);
	ret = script_int(r, &a, SC_SET_UID, "setting a journal UID");
	bf_rargs_free(&a);
	return ret;
}

static int redis_journal_delete(struct bf_state *state, const char *user)
{
	struct redis_state *r = RS(state);
	struct bf_rargs a = {0};
	redisReply *reply;
	int ret;

	bf_rargs_str(&a, "DEL");
	args_journal_keys(&a, r, user);
	ret = bf_redis_call(r, &a, "deleting the journal", &reply);
	bf_rargs_free(&a);
	freeReplyObject(reply);
	return ret;
}

/* ---- windows ---- */

/* The window script with op at now: the other arguments follow. */
static void args_window(struct bf_rargs *a, const struct redis_state *r,
                        const char *op, time_t now)
{
	args_script(a, SC_WINDOW, 1);
	args_key(a, r, "windows", "");
	bf_rargs_str(a, op);
	bf_rargs_printf(a, "%lld", (long long)now);
}

/* A window as the list holds it ("opened:until:closed:name", or nil for
   none): 1 window_r filled, 0 none.  Does not free v. */
static int window_parse(struct redis_state *r, const char *what,
                        const redisReply *v, struct bf_window *window_r)
{
	if (v->type == REDIS_REPLY_NIL)
		return 0;
	if (v->type != REDIS_REPLY_STRING ||
	    !bf_redis_window_parse(v->str, v->len, window_r)) {
		(void)corrupt(r, what, "window");
		r->state.window_damaged = true;
		return -1;
	}
	return 1;
}

static int redis_window_open(struct bf_state *state, const char *name,
                             time_t now, time_t until, bool exclusive,
                             struct bf_window *previous_r)
{
	static const char *const what = "opening a window";
	struct redis_state *r = RS(state);
	struct bf_rargs a = {0};
	redisReply *reply;
	int ret;

	args_window(&a, r, "open", now);
	bf_rargs_printf(&a, "%lld", (long long)until);
	bf_rargs_str(&a, name);
	bf_rargs_str(&a, exclusive ? "exclusive" : "replace");
	ret = script_call(r, &a, SC_WINDOW, what, &reply);
	bf_rargs_free(&a);
	if (ret < 0)
		return -1;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER)
		return bf_redis_bad_reply(r, what, reply);
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
	struct bf_rargs a = {0};
	int ret;

	args_window(&a, r, "close", now);
	ret = script_int(r, &a, SC_WINDOW, "closing the window");
	bf_rargs_free(&a);
	return ret;
}

static int redis_window_current(struct bf_state *state, time_t now,
                                struct bf_window *window_r)
{
	static const char *const what = "reading the current window";
	struct redis_state *r = RS(state);
	struct bf_rargs a = {0};
	redisReply *reply;
	int ret;

	args_window(&a, r, "current", now);
	ret = script_call(r, &a, SC_WINDOW, what, &reply);
	bf_rargs_free(&a);
	if (ret < 0)
		return -1;
	ret = window_parse(r, what, reply, window_r);
	freeReplyObject(reply);
	return ret;
}

/* ---- dedup ---- */

static int redis_dedup_check_and_set(struct bf_state *state,
                                     const struct bf_dedup_key *keys,
                                     size_t count, time_t now, unsigned int ttl,
                                     const char *host, const char *queue_id,
                                     int *results_r,
                                     struct bf_dedup_first *firsts_r)
{
	static const char *const what = "check-and-set";
	struct redis_state *r = RS(state);
	struct bf_rargs a = {0};
	redisReply *reply, *e;
	size_t i;
	int ret;

	/* All recipients of the message in one script: one round trip. */
	args_script(&a, SC_CAS, count);
	for (i = 0; i < count; i++)
		args_dedup_key(&a, r, &keys[i]);
	bf_rargs_printf(&a, "%lld", (long long)now);
	bf_rargs_printf(&a, "%llu",
	                ((unsigned long long)ttl + EXPIRY_SLACK_SECS) *
	                        1000ULL);
	bf_rargs_printf(&a, "%lld:%lld:0:0:%zu:%s%s", (long long)now,
	                (long long)now + ttl, strlen(host), host, queue_id);
	ret = script_call(r, &a, SC_CAS, what, &reply);
	bf_rargs_free(&a);
	if (ret < 0)
		return -1;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != count)
		return bf_redis_bad_reply(r, what, reply);
	for (i = 0; i < count; i++) {
		e = reply->element[i];
		if (e->type == REDIS_REPLY_INTEGER) {
			results_r[i] = 1;
			continue;
		}
		results_r[i] = 0;
		if (e->type != REDIS_REPLY_STRING) {
			freeReplyObject(reply);
			return bf_redis_bad_reply(r, what, NULL);
		}
		if (firsts_r != NULL &&
		    !bf_redis_dedup_first_parse(e->str, e->len, &firsts_r[i])) {
			/* (e is part of reply: not read after freeing it) */
			freeReplyObject(reply);
			return corrupt(r, what, "dedup record");
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
	struct bf_rargs a = {0};
	int ret;

	args_script(&a, SC_MARK, 1);
	args_dedup_key(&a, r, key);
	bf_rargs_printf(&a, "%lld", (long long)now);
	ret = script_int(r, &a, SC_MARK, "marking delivered");
	bf_rargs_free(&a);
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
	struct bf_rargs a = {0};
	redisReply *reply, *keys, *sums;
	char *cursor, *pattern, *p;
	const char *s;
	size_t i;
	int ret = 0;

	memset(counts_r, 0, 3 * sizeof(*counts_r));
	/* The prefix is literal: glob characters in it are escaped. */
	pattern = malloc(2 * strlen(r->uri.prefix) + sizeof("dedup:*"));
	cursor = strdup("0");
	if (pattern == NULL || cursor == NULL) {
		free(pattern);
		free(cursor);
		return bf_redis_oom(r);
	}
	for (s = r->uri.prefix, p = pattern; *s != '\0'; s++) {
		if (strchr("*?[]\\", *s) != NULL)
			*p++ = '\\';
		*p++ = *s;
	}
	strcpy(p, "dedup:*");
	do {
		bf_rargs_str(&a, "SCAN");
		bf_rargs_str(&a, cursor);
		bf_rargs_str(&a, "MATCH");
		bf_rargs_str(&a, pattern);
		bf_rargs_str(&a, "COUNT");
		bf_rargs_str(&a, SCAN_COUNT);
		ret = bf_redis_call(r, &a, what, &reply);
		bf_rargs_free(&a);
		if (ret < 0)
			break;
		if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		    reply->element[0]->type != REDIS_REPLY_STRING ||
		    reply->element[1]->type != REDIS_REPLY_ARRAY) {
			ret = bf_redis_bad_reply(r, what, reply);
			break;
		}
		free(cursor);
		cursor = strdup(reply->element[0]->str);
		keys = reply->element[1];
		if (cursor == NULL)
			ret = bf_redis_oom(r);
		if (ret == 0 && keys->elements > 0) {
			args_script(&a, SC_SCAN, keys->elements);
			for (i = 0; i < keys->elements; i++)
				bf_rargs_add(&a, keys->element[i]->str,
				             keys->element[i]->len);
			bf_rargs_printf(&a, "%lld", (long long)now);
			bf_rargs_str(&a, purge ? "purge" : "stats");
			ret = script_call(r, &a, SC_SCAN, what, &sums);
			bf_rargs_free(&a);
			if (ret == 0 && (sums->type != REDIS_REPLY_ARRAY ||
			                 sums->elements != 3)) {
				ret = bf_redis_bad_reply(r, what, sums);
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
	struct bf_rargs a = {0};
	redisReply *reply;
	int ret;

	args_script(&a, SC_LEASE, 1);
	args_key(&a, r, "lease:", name);
	bf_rargs_str(&a, op);
	bf_rargs_str(&a, owner);
	bf_rargs_printf(&a, "%lld", (long long)now);
	bf_rargs_printf(&a, "%lld", (long long)now + ttl);
	bf_rargs_str(&a, reentrant ? "1" : "0");
	bf_rargs_str(&a, expected != NULL ? expected : "");
	ret = script_call(r, &a, SC_LEASE, what, &reply);
	bf_rargs_free(&a);
	if (ret < 0)
		return -1;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_INTEGER)
		return bf_redis_bad_reply(r, what, reply);
	ret = reply->element[0]->integer != 0 ? 1 : 0;
	if (ret == 0 && holder_r != NULL && reply->elements > 1 &&
	    reply->element[1]->type == REDIS_REPLY_STRING) {
		*holder_r =
		        strndup(reply->element[1]->str, reply->element[1]->len);
		if (*holder_r == NULL)
			ret = bf_redis_oom(r);
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

static int redis_open_tcp(const char *location, unsigned int wait_ms,
                          struct bf_state **state_r, char **error_r)
{
	return bf_redis_open(location, BF_REDIS_TCP, wait_ms, state_r, error_r);
}

static int redis_open_unix(const char *location, unsigned int wait_ms,
                           struct bf_state **state_r, char **error_r)
{
	return bf_redis_open(location, BF_REDIS_UNIX, wait_ms, state_r,
	                     error_r);
}

/* Refused with the reason in a build whose hiredis has no TLS. */
static int redis_open_tls(const char *location, unsigned int wait_ms,
                          struct bf_state **state_r, char **error_r)
{
	return bf_redis_open(location, BF_REDIS_TLS, wait_ms, state_r, error_r);
}

static int redis_check_tcp(const char *location, char **error_r)
{
	return bf_redis_check(location, BF_REDIS_TCP, error_r);
}

static int redis_check_unix(const char *location, char **error_r)
{
	return bf_redis_check(location, BF_REDIS_UNIX, error_r);
}

static int redis_check_tls(const char *location, char **error_r)
{
	return bf_redis_check(location, BF_REDIS_TLS, error_r);
}

#define REDIS_OPS                                                              \
	.close = bf_redis_close, .set_wait_limit = bf_redis_set_wait_limit,    \
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
        .check = redis_check_tcp,
        REDIS_OPS,
};

const struct bf_state_backend bf_state_backend_redis_unix = {
        .scheme = "redis+unix",
        .open = redis_open_unix,
        .check = redis_check_unix,
        REDIS_OPS,
};

const struct bf_state_backend bf_state_backend_rediss = {
        .scheme = "rediss",
        .open = redis_open_tls,
        .check = redis_check_tls,
        REDIS_OPS,
};
