/* The backend-independent half of the state store: URI dispatch, argument
   checks, error text, and the logic built on top of the backends' atomic
   operations (dead-holder takeover of leases, slots, batched iteration).
   Backends (state-sqlite.c, state-redis*.c) implement state-private.h
   and nothing above it. */

#include "state-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rows fetched per backend call while iterating.  Iterators never hold a
   read transaction (or a server-side cursor) across callbacks: a callback
   may take seconds (revert expunges messages) and may call the store
   itself, and a long read transaction would keep SQLite from
   checkpointing its WAL meanwhile. */
#define MERGE_PAGE   256
#define JOURNAL_PAGE 512

/* Attempts at taking a lease whose holder keeps changing under us. */
#define LEASE_TAKE_ATTEMPTS 3

#ifdef BF_HAVE_REDIS
/* state-redis.c: redis://, redis+unix:// and rediss:// (refused with the
   reason where this hiredis has no TLS). */
extern const struct bf_state_backend bf_state_backend_redis;
extern const struct bf_state_backend bf_state_backend_redis_unix;
extern const struct bf_state_backend bf_state_backend_rediss;
#ifdef BF_HAVE_REDIS_TLS
#define SUPPORTED_SCHEMES "sqlite, redis, rediss, redis+unix"
#else
#define SUPPORTED_SCHEMES "sqlite, redis, redis+unix"
#endif
#else
#define SUPPORTED_SCHEMES "sqlite"
#endif

static const struct bf_state_backend *const backends[] = {
        &bf_state_backend_sqlite,
#ifdef BF_HAVE_REDIS
        &bf_state_backend_redis,
        &bf_state_backend_redis_unix,
        &bf_state_backend_rediss,
#endif
};

static const char *oom_error = "state store: out of memory";

static char *error_vformat(const char *name, const char *fmt, va_list args)
{
	char *msg = NULL, *full = NULL;

	if (vasprintf(&msg, fmt, args) < 0)
		return NULL;
	if (asprintf(&full, "state store %s: %s", name, msg) < 0)
		full = NULL;
	free(msg);
	return full;
}

void bf_state_set_error(struct bf_state *state, const char *fmt, ...)
{
	va_list args;

	free(state->error);
	state->stalled = false;
	state->window_damaged = false;
	va_start(args, fmt);
	state->error = error_vformat(
	        state->name != NULL ? state->name : state->uri, fmt, args);
	va_end(args);
}

char *bf_state_error_new(const char *name, const char *fmt, ...)
{
	va_list args;
	char *error;

	va_start(args, fmt);
	error = error_vformat(name, fmt, args);
	va_end(args);
	return error;
}

static const char *state_error(const struct bf_state *state)
{
	return state->error != NULL ? state->error : oom_error;
}

/* Finishes a public call: hands the backend's error to the caller. */
static int state_ret(struct bf_state *state, int ret, const char **error_r)
{
	if (ret < 0)
		*error_r = state_error(state);
	else
		state->stalled = state->window_damaged = false;
	return ret;
}

static int invalid_arg(struct bf_state *state, const char *what,
                       const char **error_r)
{
	bf_state_set_error(state, "invalid argument: %s", what);
	*error_r = state_error(state);
	return -1;
}

static bool str_ok(const char *s)
{
	return s != NULL && *s != '\0';
}

/* ---- open / close ---- */

/* The URI as it may appear in logs: a password in the user info
   ("redis://user:secret@host") or in a "password=" option is replaced by
   "***".  Operators paste log lines into tickets. */
char *bf_state_uri_redact(const char *uri)
{
	/* each "***" stands for a secret of 0 or more bytes behind at least
	   one byte of syntax (":" or "password="): twice the input is ample */
	size_t size = 2 * strlen(uri) + 8;
	char *out = malloc(size), *o = out;
	const char *p = uri, *start, *secret = NULL, *secret_end = NULL;

	if (out == NULL)
		return NULL;
	start = strstr(uri, "://");
	if (start != NULL) {
		const char *auth = start + 3;
		const char *end = auth + strcspn(auth, "/?");
		const char *at = memrchr(auth, '@', (size_t)(end - auth));
		const char *colon =
		        at == NULL ? NULL
		                   : memchr(auth, ':', (size_t)(at - auth));

		/* The user info ends at the last '@' before the path, as
		   state-redis-uri.c reads it: a password with an '@' of its
		   own ("u:p@ss@host") is hidden whole. */
		if (colon != NULL) {
			secret = colon + 1;
			secret_end = at;
		}
	}
	while (*p != '\0') {
		if (p == secret) {
			memcpy(o, "***", 3);
			o += 3;
			/* once: an empty secret ends where it starts */
			p = secret_end;
			secret = NULL;
			continue;
		}
		/* "password=" anywhere an option can start, also before the
		   "://" of a mangled URI */
		if (strncmp(p, "password=", 9) == 0 && p > uri &&
		    (p[-1] == '?' || p[-1] == '&')) {
			memcpy(o, "password=***", 12);
			o += 12;
			p += 9 + strcspn(p + 9, "&");
			/* never stop inside the user info's secret */
			if (secret != NULL && p > secret && p < secret_end) {
				p = secret_end;
				secret = NULL;
			}
			continue;
		}
		*o++ = *p++;
	}
	*o = '\0';
	return out;
}

int bf_state_open(const char *uri, struct bf_state **state_r, char **error_r)
{
	return bf_state_open_within(uri, 0, state_r, error_r);
}

/* The backend of uri's scheme, or NULL with a malloc()ed message naming
   the store (without its secrets). */
static const struct bf_state_backend *backend_find(const char *uri,
                                                   char **error_r)
{
	const char *colon = uri != NULL ? strchr(uri, ':') : NULL;
	size_t i;

	if (colon == NULL || colon == uri) {
		*error_r = bf_state_error_new(
		        uri != NULL ? uri : "(null)",
		        "not a state store URI (expected e.g. %s)",
		        BF_STATE_DEFAULT_URI);
		return NULL;
	}
	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		if (strlen(backends[i]->scheme) == (size_t)(colon - uri) &&
		    strncmp(backends[i]->scheme, uri, colon - uri) == 0)
			return backends[i];
	}
	char *shown = bf_state_uri_redact(uri);
	/* The scheme is quoted only when it is one (RFC 3986 letters): a
	   mangled URI may hold a secret before its first ':'. */
	size_t len = (size_t)(colon - uri);
	bool scheme = strspn(uri, "abcdefghijklmnopqrstuvwxyz"
	                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                          "0123456789+-.") == len;

	*error_r = bf_state_error_new(shown != NULL ? shown : "(uri)",
	                              "unsupported backend \"%.*s\" "
	                              "(supported: " SUPPORTED_SCHEMES ")",
	                              scheme ? (int)len : 0, uri);
	free(shown);
	return NULL;
}

int bf_state_uri_check(const char *uri, char **error_r)
{
	const struct bf_state_backend *backend;

	*error_r = NULL;
	backend = backend_find(uri, error_r);
	if (backend == NULL)
		return -1;
	return backend->check(strchr(uri, ':') + 1, error_r);
}

int bf_state_open_within(const char *uri, unsigned int wait_ms,
                         struct bf_state **state_r, char **error_r)
{
	const struct bf_state_backend *backend;
	struct bf_state *state = NULL;

	*state_r = NULL;
	*error_r = NULL;
	backend = backend_find(uri, error_r);
	if (backend == NULL)
		return -1;
	const char *colon = strchr(uri, ':');
	if (wait_ms > BF_STATE_MAX_WAIT_MS)
		wait_ms = BF_STATE_MAX_WAIT_MS;
	if (backend->open(colon + 1, wait_ms, &state, error_r) < 0)
		return -1;
	state->backend = backend;
	state->uri = bf_state_uri_redact(uri);
	if (state->uri == NULL) {
		bf_state_close(&state);
		*error_r = bf_state_error_new(uri, "out of memory");
		return -1;
	}
	*state_r = state;
	return 0;
}

void bf_state_close(struct bf_state **_state)
{
	struct bf_state *state = *_state;
	char *uri, *name, *error;

	if (state == NULL)
		return;
	*_state = NULL;
	uri = state->uri;
	name = state->name;
	error = state->error;
	state->backend->close(state);
	free(uri);
	free(name);
	free(error);
}

const char *bf_state_uri(const struct bf_state *state)
{
	return state->uri;
}

bool bf_state_stalled(const struct bf_state *state)
{
	return state->stalled;
}

void bf_state_set_wait_limit(struct bf_state *state, unsigned int ms)
{
	/* An hour is more than any caller means; the cap keeps the
	   backends' millisecond arithmetic in int. */
	if (ms > BF_STATE_MAX_WAIT_MS)
		ms = BF_STATE_MAX_WAIT_MS;
	state->backend->set_wait_limit(state, ms);
}

/* ---- merge records ---- */

static const char *const merge_status_names[] = {
        [BF_MERGE_PENDING] = "pending",
        [BF_MERGE_RUNNING] = "running",
        [BF_MERGE_DONE] = "done",
        [BF_MERGE_FAILED] = "failed",
};

const char *bf_merge_status_name(enum bf_merge_status status)
{
	if ((unsigned int)status >=
	    sizeof(merge_status_names) / sizeof(merge_status_names[0]))
		return "unknown";
	return merge_status_names[status];
}

int bf_merge_status_parse(const char *name)
{
	size_t i;

	for (i = 0;
	     name != NULL &&
	     i < sizeof(merge_status_names) / sizeof(merge_status_names[0]);
	     i++) {
		if (strcmp(name, merge_status_names[i]) == 0)
			return (int)i;
	}
	return -1;
}

void bf_merge_record_clear(struct bf_merge_record *rec)
{
	free(rec->cursor);
	free(rec->last_error);
	memset(rec, 0, sizeof(*rec));
}

int bf_merge_record_damaged(struct bf_merge_record *rec, const char *user,
                            const char *fields)
{
	bool several = strchr(fields, ',') != NULL;
	char *msg;
	int ret;

	/* Failed, not the figures: a merge that resumes from it counts on
	   from 0 in those fields, and the note says so.  The value itself is
	   not quoted: it may hold anything (control characters, megabytes). */
	ret = asprintf(&msg,
	               "damaged merge record: field%s %s of %s %s backfill "
	               "writes (edited by hand or by other software?) and "
	               "read%s as 0, so the user's figures cannot be trusted; "
	               "doveadm backfill verify -u %s checks the mailbox, "
	               "doveadm backfill run -u %s resumes the merge%s%s",
	               several ? "s" : "", fields, user,
	               several ? "are not numbers" : "is not a number",
	               several ? "" : "s", user, user,
	               rec->last_error != NULL ? "; last error before: " : "",
	               rec->last_error != NULL ? rec->last_error : "");
	if (ret < 0) {
		bf_merge_record_clear(rec);
		return -1;
	}
	free(rec->last_error);
	rec->last_error = msg;
	rec->status = BF_MERGE_FAILED;
	return 0;
}

static bool merge_record_ok(const struct bf_merge_record *rec)
{
	return rec != NULL &&
	       bf_merge_status_parse(bf_merge_status_name(rec->status)) ==
	               (int)rec->status;
}

int bf_state_merge_get(struct bf_state *state, const char *user,
                       struct bf_merge_record *rec_r, const char **error_r)
{
	memset(rec_r, 0, sizeof(*rec_r));
	if (!str_ok(user))
		return invalid_arg(state, "empty user", error_r);
	return state_ret(state, state->backend->merge_get(state, user, rec_r),
	                 error_r);
}

int bf_state_merge_put(struct bf_state *state, const char *user,
                       const struct bf_merge_record *rec, const char **error_r)
{
	if (!str_ok(user))
		return invalid_arg(state, "empty user", error_r);
	if (!merge_record_ok(rec))
		return invalid_arg(state, "bad merge status", error_r);
	return state_ret(state, state->backend->merge_put(state, user, rec),
	                 error_r);
}

int bf_state_merge_delete(struct bf_state *state, const char *user,
                          const char **error_r)
{
	if (!str_ok(user))
		return invalid_arg(state, "empty user", error_r);
	return state_ret(state, state->backend->merge_delete(state, user),
	                 error_r);
}

void bf_merge_rows_free(struct bf_merge_row *rows, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++) {
		free(rows[i].user);
		bf_merge_record_clear(&rows[i].rec);
	}
	free(rows);
}

int bf_state_merge_iter(struct bf_state *state, bf_merge_iter_cb *cb,
                        void *context, const char **error_r)
{
	struct bf_merge_row *rows;
	char *after = NULL;
	size_t i, count;
	int ret = 0;

	do {
		if (state->backend->merge_list(state, after, MERGE_PAGE, &rows,
		                               &count) < 0) {
			ret = state_ret(state, -1, error_r);
			break;
		}
		for (i = 0; i < count && ret == 0; i++)
			ret = cb(rows[i].user, &rows[i].rec, context);
		if (ret == 0 && count > 0) {
			free(after);
			after = rows[count - 1].user;
			rows[count - 1].user = NULL;
		}
		bf_merge_rows_free(rows, count);
	} while (ret == 0 && count == MERGE_PAGE);
	free(after);
	return ret;
}

/* ---- journal ---- */

static int journal_entries_check(struct bf_state *state,
                                 const struct bf_journal_entry *entries,
                                 size_t count, const char **error_r)
{
	size_t i;

	if (count > 0 && entries == NULL)
		return invalid_arg(state, "no journal entries", error_r);
	for (i = 0; i < count; i++) {
		if (entries[i].mailbox == NULL ||
		    entries[i].mailbox_guid == NULL ||
		    entries[i].archive_mailbox == NULL)
			return invalid_arg(state,
			                   "journal entry without mailbox",
			                   error_r);
	}
	return 0;
}

int bf_state_merge_checkpoint(struct bf_state *state, const char *user,
                              const struct bf_merge_record *rec,
                              const struct bf_journal_entry *entries,
                              size_t count, const char **error_r)
{
	if (!str_ok(user))
		return invalid_arg(state, "empty user", error_r);
	if (!merge_record_ok(rec))
		return invalid_arg(state, "bad merge status", error_r);
	if (journal_entries_check(state, entries, count, error_r) < 0)
		return -1;
	return state_ret(state,
	                 state->backend->journal_append(state, user, rec,
	                                                entries, count),
	                 error_r);
}

int bf_state_journal_append(struct bf_state *state, const char *user,
                            const struct bf_journal_entry *entries,
                            size_t count, const char **error_r)
{
	if (!str_ok(user))
		return invalid_arg(state, "empty user", error_r);
	if (journal_entries_check(state, entries, count, error_r) < 0)
		return -1;
	if (count == 0)
		return 0;
	return state_ret(state,
	                 state->backend->journal_append(state, user, NULL,
	                                                entries, count),
	                 error_r);
}

void bf_journal_rows_free(struct bf_journal_row *rows, size_t count)
{
	size_t i;

	for (i = 0; i < count; i++) {
		free(rows[i].mailbox);
		free(rows[i].mailbox_guid);
		free(rows[i].archive_mailbox);
	}
	free(rows);
}

int bf_state_journal_iter(struct bf_state *state, const char *user,
                          bf_journal_iter_cb *cb, void *context,
                          const char **error_r)
{
	struct bf_journal_row *rows;
	struct bf_journal_entry entry;
	uint64_t after = 0;
	size_t i, count;
	int ret = 0;

	if (!str_ok(user))
		return invalid_arg(state, "empty user", error_r);
	do {
		if (state->backend->journal_list(state, user, after,
		                                 JOURNAL_PAGE, &rows,
		                                 &count) < 0)
			return state_ret(state, -1, error_r);
		for (i = 0; i < count && ret == 0; i++) {
			entry.mailbox = rows[i].mailbox;
			entry.mailbox_guid = rows[i].mailbox_guid;
			entry.uid = rows[i].uid;
			entry.archive_mailbox = rows[i].archive_mailbox;
			entry.archive_uid = rows[i].archive_uid;
			memcpy(entry.fingerprint, rows[i].fingerprint,
			       sizeof(entry.fingerprint));
			ret = cb(&entry, context);
		}
		if (count > 0)
			after = rows[count - 1].seq;
		bf_journal_rows_free(rows, count);
	} while (ret == 0 && count == JOURNAL_PAGE);
	return ret;
}

int bf_state_journal_set_uid(struct bf_state *state, const char *user,
                             const char *archive_mailbox, uint32_t archive_uid,
                             uint32_t uid, const char **error_r)
{
	if (!str_ok(user) || archive_mailbox == NULL)
		return invalid_arg(state, "empty user or mailbox", error_r);
	return state_ret(state,
	                 state->backend->journal_set_uid(state, user,
	                                                 archive_mailbox,
	                                                 archive_uid, uid),
	                 error_r);
}

int bf_state_journal_delete(struct bf_state *state, const char *user,
                            const char **error_r)
{
	if (!str_ok(user))
		return invalid_arg(state, "empty user", error_r);
	return state_ret(state, state->backend->journal_delete(state, user),
	                 error_r);
}

/* ---- windows ---- */

void bf_window_clear(struct bf_window *window)
{
	free(window->name);
	memset(window, 0, sizeof(*window));
}

bool bf_window_name_valid(const char *name)
{
	size_t len = 0;

	if (name == NULL)
		return false;
	for (; name[len] != '\0'; len++) {
		char c = name[len];

		if (len == BF_WINDOW_NAME_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == ':' || c == '-'))
			return false;
	}
	return len > 0;
}

bool bf_state_window_damaged(const struct bf_state *state)
{
	return state->window_damaged;
}

/* A damaged window's error says how to end it, for every caller (the
   milter's log, backfillctl window status and open). */
static void window_damaged_remedy(struct bf_state *state)
{
	char *full;

	if (!state->window_damaged || state->error == NULL)
		return;
	if (asprintf(&full, "%s; %s", state->error, BF_WINDOW_DAMAGED_REMEDY) <
	    0)
		return;
	free(state->error);
	state->error = full;
}

/* A window read back must have a name bf_state_window_open*() takes: the
   milter writes it into X-Backfill-Window and every dedup key, and a
   name with CR or LF from a store changed by hand or by other software
   would start a header of its own (or be folded into this one by the
   MTA).  Such a window is a store error: the milter then accepts mail
   unchecked, as for a store it cannot read.  The name is not quoted: it
   may hold anything. */
static int window_name_check(struct bf_state *state, const char *what,
                             struct bf_window *window)
{
	if (window->name != NULL && bf_window_name_valid(window->name))
		return 0;
	bf_window_clear(window);
	bf_state_set_error(
	        state,
	        "%s: damaged window in the store: its name is not " BF_WINDOW_NAME_RULE
	        " (edited by hand or by other software?)",
	        what);
	state->window_damaged = true;
	return -1;
}

int bf_state_window_open_full(struct bf_state *state, const char *name,
                              time_t now, time_t until,
                              enum bf_window_open_flags flags,
                              struct bf_window *previous_r,
                              const char **error_r)
{
	struct bf_window previous;
	int ret;

	if (previous_r != NULL)
		memset(previous_r, 0, sizeof(*previous_r));
	if (!str_ok(name))
		return invalid_arg(state, "empty window name", error_r);
	if (!bf_window_name_valid(name))
		return invalid_arg(state,
		                   "window name is not " BF_WINDOW_NAME_RULE,
		                   error_r);
	if (until != 0 && until <= now)
		return invalid_arg(state, "window ends before it opens",
		                   error_r);
	if ((flags & ~BF_WINDOW_OPEN_EXCLUSIVE) != 0)
		return invalid_arg(state, "unknown window open flags", error_r);
	memset(&previous, 0, sizeof(previous));
	state->window_damaged = false;
	ret = state->backend->window_open(
	        state, name, now, until,
	        (flags & BF_WINDOW_OPEN_EXCLUSIVE) != 0, &previous);
	if (ret >= 0 && previous.name != NULL &&
	    window_name_check(state, "opening a window", &previous) < 0 &&
	    ret == 0) {
		/* refused in favour of a window whose name is damaged: the
		   error says how to end it.  Opened (1), the one before is
		   only unknown, as when a backend cannot read it. */
		ret = -1;
	}
	if (ret < 0 || previous_r == NULL)
		bf_window_clear(&previous);
	else
		*previous_r = previous;
	if (ret < 0)
		window_damaged_remedy(state);
	return state_ret(state, ret, error_r);
}

int bf_state_window_open(struct bf_state *state, const char *name, time_t now,
                         time_t until, const char **error_r)
{
	return bf_state_window_open_full(state, name, now, until,
	                                 BF_WINDOW_OPEN_REPLACE, NULL,
	                                 error_r) < 0
	               ? -1
	               : 0;
}

int bf_state_window_close(struct bf_state *state, time_t now,
                          const char **error_r)
{
	return state_ret(state, state->backend->window_close(state, now),
	                 error_r);
}

int bf_state_window_current(struct bf_state *state, time_t now,
                            struct bf_window *window_r, const char **error_r)
{
	int ret;

	memset(window_r, 0, sizeof(*window_r));
	state->window_damaged = false;
	ret = state->backend->window_current(state, now, window_r);
	if (ret > 0 && window_name_check(state, "reading the current window",
	                                 window_r) < 0)
		ret = -1;
	if (ret < 0)
		window_damaged_remedy(state);
	return state_ret(state, ret, error_r);
}

/* ---- dedup ---- */

void bf_dedup_first_clear(struct bf_dedup_first *first)
{
	free(first->host);
	free(first->queue_id);
	memset(first, 0, sizeof(*first));
}

static bool dedup_key_ok(const struct bf_dedup_key *key)
{
	return str_ok(key->window) && str_ok(key->recipient);
}

int bf_state_dedup_check_and_set_many(
        struct bf_state *state, const struct bf_dedup_key *keys, size_t count,
        time_t now, unsigned int ttl, const char *host, const char *queue_id,
        int *results_r, struct bf_dedup_first *firsts_r, const char **error_r)
{
	size_t i;
	int ret;

	if (firsts_r != NULL)
		memset(firsts_r, 0, sizeof(*firsts_r) * count);
	if (count == 0)
		return 0;
	if (keys == NULL || results_r == NULL)
		return invalid_arg(state, "no dedup keys", error_r);
	for (i = 0; i < count; i++) {
		if (!dedup_key_ok(&keys[i]))
			return invalid_arg(state,
			                   "dedup key without window or "
			                   "recipient",
			                   error_r);
	}
	if (ttl == 0)
		return invalid_arg(state, "dedup ttl 0", error_r);
	ret = state->backend->dedup_check_and_set(
	        state, keys, count, now, ttl, host != NULL ? host : "",
	        queue_id != NULL ? queue_id : "", results_r, firsts_r);
	if (ret < 0 && firsts_r != NULL) {
		for (i = 0; i < count; i++)
			bf_dedup_first_clear(&firsts_r[i]);
	}
	return state_ret(state, ret < 0 ? -1 : 0, error_r);
}

int bf_state_dedup_check_and_set(struct bf_state *state,
                                 const struct bf_dedup_key *key, time_t now,
                                 unsigned int ttl, const char *host,
                                 const char *queue_id,
                                 struct bf_dedup_first *first_r,
                                 const char **error_r)
{
	int result;

	if (bf_state_dedup_check_and_set_many(state, key, 1, now, ttl, host,
	                                      queue_id, &result, first_r,
	                                      error_r) < 0)
		return -1;
	return result;
}

int bf_state_dedup_mark_delivered(struct bf_state *state,
                                  const struct bf_dedup_key *key, time_t now,
                                  const char **error_r)
{
	if (key == NULL || !dedup_key_ok(key))
		return invalid_arg(state,
		                   "dedup key without window or recipient",
		                   error_r);
	return state_ret(state,
	                 state->backend->dedup_mark_delivered(state, key, now),
	                 error_r);
}

int bf_state_dedup_purge(struct bf_state *state, time_t now, uint64_t *purged_r,
                         const char **error_r)
{
	uint64_t purged = 0;
	int ret;

	ret = state->backend->dedup_purge(state, now, &purged);
	if (purged_r != NULL)
		*purged_r = purged;
	return state_ret(state, ret, error_r);
}

int bf_state_dedup_stats(struct bf_state *state, time_t now,
                         struct bf_dedup_stats *stats_r, const char **error_r)
{
	memset(stats_r, 0, sizeof(*stats_r));
	return state_ret(state,
	                 state->backend->dedup_stats(state, now, stats_r),
	                 error_r);
}

/* ---- leases ---- */

/* Takes the lease if it is free or expired, or if its holder is a dead
   process of this host (compare-and-swap, so that of several processes
   noticing the same dead holder exactly one wins).  lease-owner.c says
   when a holder counts as dead. */
static int lease_take(struct bf_state *state, const char *name,
                      const char *owner, time_t now, unsigned int ttl,
                      bool reentrant, char **holder_r)
{
	char *holder = NULL;
	int attempt, ret;

	for (attempt = 1;; attempt++) {
		ret = state->backend->lease_acquire(state, name, owner, now,
		                                    ttl, reentrant, &holder);
		if (ret != 0 || holder == NULL ||
		    attempt == LEASE_TAKE_ATTEMPTS ||
		    !bf_lease_owner_is_dead(holder))
			break;
		ret = state->backend->lease_swap(state, name, holder, owner,
		                                 now, ttl);
		if (ret != 0)
			break;
		/* Someone else took it over first, or it was released:
		   look again. */
		free(holder);
		holder = NULL;
	}
	if (ret == 0 && holder_r != NULL) {
		*holder_r = holder;
		holder = NULL;
	}
	free(holder);
	return ret;
}

static int lease_args_check(struct bf_state *state, const char *name,
                            const char *owner, unsigned int ttl,
                            const char **error_r)
{
	if (!str_ok(name) || !str_ok(owner))
		return invalid_arg(state, "empty lease name or owner", error_r);
	if (ttl == 0)
		return invalid_arg(state, "lease ttl 0", error_r);
	return 0;
}

int bf_state_lease_acquire(struct bf_state *state, const char *name,
                           const char *owner, time_t now, unsigned int ttl,
                           char **holder_r, const char **error_r)
{
	if (holder_r != NULL)
		*holder_r = NULL;
	if (lease_args_check(state, name, owner, ttl, error_r) < 0)
		return -1;
	return state_ret(
	        state, lease_take(state, name, owner, now, ttl, true, holder_r),
	        error_r);
}

int bf_state_lease_renew(struct bf_state *state, const char *name,
                         const char *owner, time_t now, unsigned int ttl,
                         const char **error_r)
{
	if (lease_args_check(state, name, owner, ttl, error_r) < 0)
		return -1;
	return state_ret(
	        state,
	        state->backend->lease_renew(state, name, owner, now, ttl),
	        error_r);
}

int bf_state_lease_release(struct bf_state *state, const char *name,
                           const char *owner, const char **error_r)
{
	if (!str_ok(name) || !str_ok(owner))
		return invalid_arg(state, "empty lease name or owner", error_r);
	return state_ret(state,
	                 state->backend->lease_release(state, name, owner),
	                 error_r);
}

/* ---- slots: max_slots leases "slot/<host>/<i>" ---- */

static int slot_name(struct bf_state *state, const char *host,
                     unsigned int slot, char **name_r, const char **error_r)
{
	if (!str_ok(host))
		return invalid_arg(state, "empty slot host", error_r);
	if (asprintf(name_r, "slot/%s/%u", host, slot) < 0) {
		*name_r = NULL;
		bf_state_set_error(state, "out of memory");
		return state_ret(state, -1, error_r);
	}
	return 0;
}

int bf_state_slot_acquire(struct bf_state *state, const char *host,
                          unsigned int max_slots, const char *owner, time_t now,
                          unsigned int ttl, unsigned int *slot_r,
                          const char **error_r)
{
	unsigned int slot;
	char *name;
	int ret = 0;

	if (max_slots == 0)
		return invalid_arg(state, "max_slots 0", error_r);
	if (lease_args_check(state, "slot", owner, ttl, error_r) < 0)
		return -1;
	/* Not reentrant: an owner running several merges (doveadm backfill
	   run with parallelism) takes one slot per merge. */
	for (slot = 0; slot < max_slots && ret == 0; slot++) {
		if (slot_name(state, host, slot, &name, error_r) < 0)
			return -1;
		ret = lease_take(state, name, owner, now, ttl, false, NULL);
		free(name);
		if (ret > 0)
			*slot_r = slot;
	}
	return state_ret(state, ret, error_r);
}

int bf_state_slot_renew(struct bf_state *state, const char *host,
                        unsigned int slot, const char *owner, time_t now,
                        unsigned int ttl, const char **error_r)
{
	char *name;
	int ret;

	if (slot_name(state, host, slot, &name, error_r) < 0)
		return -1;
	ret = bf_state_lease_renew(state, name, owner, now, ttl, error_r);
	free(name);
	return ret;
}

int bf_state_slot_release(struct bf_state *state, const char *host,
                          unsigned int slot, const char *owner,
                          const char **error_r)
{
	char *name;
	int ret;

	if (slot_name(state, host, slot, &name, error_r) < 0)
		return -1;
	ret = bf_state_lease_release(state, name, owner, error_r);
	free(name);
	return ret;
}

char *bf_dedup_recipient(const char *raw)
{
	const char *start = raw, *end;
	char *bare;

	while (*start == ' ' || *start == '\t')
		start++;
	if (*start == '<')
		start++;
	/* RFC 5321 source route "@a,@b:user@domain": obsolete, still
	   accepted by Postfix; the mailbox is after the colon. */
	if (*start == '@') {
		const char *colon = strchr(start, ':');
		if (colon != NULL)
			start = colon + 1;
	}
	end = start + strlen(start);
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (end > start && end[-1] == '>')
		end--;
	bare = strndup(start, (size_t)(end - start));
	if (bare == NULL)
		return NULL;
	for (char *p = bare; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	}
	return bare;
}
