#ifndef BF_STATE_PRIVATE_H
#define BF_STATE_PRIVATE_H

/* What a state store backend implements.  state.c owns everything that is
   the same for every backend (URI dispatch, argument checks, the error
   buffer, dead-holder takeover of leases, slots built from leases,
   single-key dedup as a one-key batch, paging of the iterators), so a
   backend only stores and fetches.  Every operation that must be atomic
   is one backend call: a network backend does it in one round trip (a
   Lua script, MULTI/EXEC), SQLite in one transaction.

   Return values follow state.h: -1 error (the backend has called
   bf_state_set_error()), otherwise 0, or 1/0 as documented below. */

#include "parse.h"
#include "state.h"

#include <stdarg.h>

/* The longest wait bf_state_set_wait_limit() passes to a backend. */
#define BF_STATE_MAX_WAIT_MS 3600000U

/* Rows handed back by the paging list operations.  Backends fill them with
   malloc()ed strings; state.c frees them with bf_state_page_free(). */
struct bf_merge_row {
	char *user;
	struct bf_merge_record rec;
};

struct bf_journal_row {
	uint64_t seq; /* increasing in insertion order within a user */
	char *mailbox, *mailbox_guid, *archive_mailbox;
	uint32_t uid, archive_uid;
	unsigned char fingerprint[BF_FP_SIZE];
};

struct bf_state_backend {
	const char *scheme; /* "sqlite" for "sqlite:..." */

	/* location is the URI after "scheme:".  Allocates the backend's
	   struct (which starts with struct bf_state) and returns it; on error
	   a malloc()ed message naming the store.  wait_ms: as for
	   set_wait_limit, from the start (0: the URI's). */
	int (*open)(const char *location, unsigned int wait_ms,
	            struct bf_state **state_r, char **error_r);
	/* Parses location as open() does, without opening or connecting
	   (a configuration check); -1 with a malloc()ed message. */
	int (*check)(const char *location, char **error_r);
	void (*close)(struct bf_state *state);
	/* bf_state_set_wait_limit(): ms > 0 (capped by state.c), or 0 for
	   the default of the URI. */
	void (*set_wait_limit)(struct bf_state *state, unsigned int ms);

	/* merge records */
	int (*merge_get)(struct bf_state *state, const char *user,
	                 struct bf_merge_record *rec_r);
	int (*merge_put)(struct bf_state *state, const char *user,
	                 const struct bf_merge_record *rec);
	/* Removes record and journal of user together. */
	int (*merge_delete)(struct bf_state *state, const char *user);
	/* Up to max records of users sorting after after_user (NULL: from
	   the first), ordered by user name.  *count_r rows in *rows_r. */
	int (*merge_list)(struct bf_state *state, const char *after_user,
	                  size_t max, struct bf_merge_row **rows_r,
	                  size_t *count_r);

	/* journal; rec NULL = append only, otherwise entries and rec are
	   stored atomically. */
	int (*journal_append)(struct bf_state *state, const char *user,
	                      const struct bf_merge_record *rec,
	                      const struct bf_journal_entry *entries,
	                      size_t count);
	/* Up to max entries of user with seq > after_seq, by seq. */
	int (*journal_list)(struct bf_state *state, const char *user,
	                    uint64_t after_seq, size_t max,
	                    struct bf_journal_row **rows_r, size_t *count_r);
	/* 1 set (the oldest matching entry with uid 0), 0 none. */
	int (*journal_set_uid)(struct bf_state *state, const char *user,
	                       const char *archive_mailbox,
	                       uint32_t archive_uid, uint32_t uid);
	int (*journal_delete)(struct bf_state *state, const char *user);

	/* windows.  open, in one transaction: reads the window in force at
	   now into *previous_r (name NULL: none); if that is name, sets its
	   until (no write when unchanged); if it is another and exclusive,
	   returns 0 without writing; otherwise closes every open window and
	   adds name.  1 name is open. */
	int (*window_open)(struct bf_state *state, const char *name, time_t now,
	                   time_t until, bool exclusive,
	                   struct bf_window *previous_r);
	int (*window_close)(struct bf_state *state, time_t now);
	/* The newest window not closed whose until is 0 or after now. */
	int (*window_current)(struct bf_state *state, time_t now,
	                      struct bf_window *window_r);

	/* dedup: all keys in one transaction, in order (a key repeated in the
	   batch is "seen" the second time).  A record is live while
	   expires > now; an expired one counts as absent and is replaced. */
	int (*dedup_check_and_set)(struct bf_state *state,
	                           const struct bf_dedup_key *keys,
	                           size_t count, time_t now, unsigned int ttl,
	                           const char *host, const char *queue_id,
	                           int *results_r,
	                           struct bf_dedup_first *firsts_r);
	int (*dedup_mark_delivered)(struct bf_state *state,
	                            const struct bf_dedup_key *key, time_t now);
	int (*dedup_purge)(struct bf_state *state, time_t now,
	                   uint64_t *purged_r);
	int (*dedup_stats)(struct bf_state *state, time_t now,
	                   struct bf_dedup_stats *stats_r);

	/* leases: one row per name (owner, expires).
	   acquire: takes the lease if it is absent or expired (expires <=
	   now), or, when reentrant, already held by owner (then renews it).
	   1 taken; 0 held by another, *holder_r (malloc()ed) says by whom. */
	int (*lease_acquire)(struct bf_state *state, const char *name,
	                     const char *owner, time_t now, unsigned int ttl,
	                     bool reentrant, char **holder_r);
	/* Compare and swap: gives the lease to owner only if it is still held
	   by expected_holder.  1 swapped, 0 the holder changed. */
	int (*lease_swap)(struct bf_state *state, const char *name,
	                  const char *expected_holder, const char *owner,
	                  time_t now, unsigned int ttl);
	/* 1 renewed, 0 not held by owner. */
	int (*lease_renew)(struct bf_state *state, const char *name,
	                   const char *owner, time_t now, unsigned int ttl);
	/* 1 released, 0 not held by owner. */
	int (*lease_release)(struct bf_state *state, const char *name,
	                     const char *owner);
};

/* The common part of every handle; a backend's own struct starts with it. */
struct bf_state {
	const struct bf_state_backend *backend;
	char *uri;
	/* What error messages call the store: the file for SQLite, the
	   server for a network backend. */
	char *name;
	char *error;
	/* The last call failed giving up a wait (a lock held by another
	   process, a server that does not answer): bf_state_stalled().
	   Cleared by bf_state_set_error() and by a call that succeeds, set
	   by the backend after bf_state_set_error(). */
	bool stalled;
	/* The last window call failed on a window in force that is damaged
	   in the store: bf_state_window_damaged().  Cleared like stalled,
	   set by the backend after bf_state_set_error(). */
	bool window_damaged;
};

extern const struct bf_state_backend bf_state_backend_sqlite;

/* Sets the handle's error: "state store NAME: <fmt>". */
void bf_state_set_error(struct bf_state *state, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* malloc()ed "state store NAME: <fmt>" for open errors (NULL only when out
   of memory). */
char *bf_state_error_new(const char *name, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* The URI as it may appear in logs: passwords replaced by "***"
   (malloc()ed, NULL when out of memory). */
char *bf_state_uri_redact(const char *uri);
/* state-sqlite.c: "/path[?busy_timeout=MS]" (after "sqlite:") into a
   malloc()ed path (freed by the caller, also after an error) and the busy
   timeout; -1 with a malloc()ed message in *error_r. */
int bf_state_sqlite_parse_location(const char *location, char **path_r,
                                   int *busy_timeout_r, char **error_r);

/* lease-owner.c: true only when owner was made by bf_lease_owner() in
   this pid space (this host or container) and its process is gone. */
bool bf_lease_owner_is_dead(const char *owner);

/* The values a backend reads back as backfill wrote them: counts up to
   what SQLite's INTEGER holds (both backends keep the same range), times
   from 0 (never) to the latest bf_parse_until() gives.  Anything else in
   a stored record (a sign, a fraction, text, an overflow) was written by
   a hand or by other software and is never taken for a figure. */
#define BF_STATE_COUNT_MAX ((uint64_t)INT64_MAX)
#define BF_STATE_TIME_MAX  ((uint64_t)BF_PARSE_UNTIL_MAX)

/* Marks a merge record read back with values backfill cannot have
   written in fields (names, comma-separated; those figures left 0): it
   reads as failed, with a last_error naming user and fields and saying
   what to do, the earlier last_error kept after it.  Status, report and
   the next merge see a damaged record, never figures.  -1 out of memory
   (rec cleared). */
int bf_merge_record_damaged(struct bf_merge_record *rec, const char *user,
                            const char *fields);

void bf_merge_rows_free(struct bf_merge_row *rows, size_t count);
void bf_journal_rows_free(struct bf_journal_row *rows, size_t count);

#endif
