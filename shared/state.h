#ifndef BF_STATE_H
#define BF_STATE_H

/* The state store: merge progress, the journal of what a merge added,
   restore windows, dedup records and leases.  One API; the backend is
   chosen by URI: "sqlite:/var/lib/backfill/state.db" (the default, one
   host) or "redis://host:port/db" and "redis+unix:///path.sock" (several
   hosts sharing one store), see docs/state-store.md.  Both keep the same
   promises and pass the same tests.

   Conventions:
   - Functions return -1 on error with *error_r set, otherwise 0, or 1/0 for
     yes/no answers as documented.  Nothing aborts the process.
   - *error_r points into the handle: valid until the next call on it.
   - A handle is used by one thread at a time.  Open one per thread (the
     milter) or per process (the plugin); the backend handles concurrency
     between handles and processes.
   - Times are Unix seconds supplied by the caller, so that tests and
     benchmarks control the clock.
   - Strings returned inside records are malloc()ed and freed with the
     matching *_clear() function. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "fingerprint.h"

#define BF_STATE_DEFAULT_URI "sqlite:/var/lib/backfill/state.db"

struct bf_state;

/* Opens (and creates, group-writable, or migrates) the store.  On failure
   returns -1 and a malloc()ed message in *error_r that names the store. */
int bf_state_open(const char *uri, struct bf_state **state_r, char **error_r);
/* bf_state_open() that waits at most wait_ms for a lock or a reply while
   opening (SQLite's busy handler, Redis's connect and its AUTH/SELECT
   replies) instead of the URI's busy_timeout= or timeout=, and leaves the
   handle with that wait limit (bf_state_set_wait_limit()); 0 is
   bf_state_open().  For a login within its budget: a store locked by
   another process, or a Redis that accepts and never replies, would
   otherwise hold it for the store's own 10 s. */
int bf_state_open_within(const char *uri, unsigned int wait_ms,
                         struct bf_state **state_r, char **error_r);
void bf_state_close(struct bf_state **state);
/* Parses uri as bf_state_open() would (scheme, path, options), opening
   and connecting nothing: for a configuration check that must not touch
   the store (backfill-milter -n).  -1 with a malloc()ed message naming the
   store, without its secrets. */
int bf_state_uri_check(const char *uri, char **error_r);
/* The URI as given, for log lines. */
const char *bf_state_uri(const struct bf_state *state);
/* True when the handle's last call failed because it gave up waiting: a
   lock another process held past the wait limit (SQLite), no reply in
   time (Redis).
   Such a store answers again later, and nothing it holds is wrong: a
   caller with a deadline (an IMAP session's background merge) tries
   again later instead of giving up on what it was doing. */
bool bf_state_stalled(const struct bf_state *state);
/* Every later operation of this handle waits at most ms for a lock or a
   reply (SQLite busy timeout, Redis command timeout); 0 restores the
   handle's default (the URI's busy_timeout= or timeout=).  For callers
   with a deadline of their own: a login that has a budget must not wait
   out a store's 10 s busy timeout. */
void bf_state_set_wait_limit(struct bf_state *state, unsigned int ms);

/* ---- per-user merge records ---- */

enum bf_merge_status {
	BF_MERGE_PENDING = 0,
	BF_MERGE_RUNNING,
	BF_MERGE_DONE,
	BF_MERGE_FAILED,
};

struct bf_merge_record {
	enum bf_merge_status status;
	/* Opaque to the store: where a resumed merge continues. */
	char *cursor;
	uint64_t archived, added, duplicates, skipped, uidl_collisions;
	time_t started, finished, updated; /* 0 = never */
	char *last_error;                  /* NULL = none */
};

const char *bf_merge_status_name(enum bf_merge_status status);
/* Returns the status for a name, or -1. */
int bf_merge_status_parse(const char *name);
void bf_merge_record_clear(struct bf_merge_record *rec);

/* 1 found (rec_r filled), 0 no record (rec_r zeroed), -1 error. */
int bf_state_merge_get(struct bf_state *state, const char *user,
                       struct bf_merge_record *rec_r, const char **error_r);
/* Insert or replace the user's record. */
int bf_state_merge_put(struct bf_state *state, const char *user,
                       const struct bf_merge_record *rec, const char **error_r);
/* Forget the user's record and journal (doveadm backfill reset). */
int bf_state_merge_delete(struct bf_state *state, const char *user,
                          const char **error_r);
/* Calls cb for every user with a record, ordered by user name.  A non-zero
   return from cb stops the walk and is returned. */
typedef int bf_merge_iter_cb(const char *user,
                             const struct bf_merge_record *rec, void *context);
int bf_state_merge_iter(struct bf_state *state, bf_merge_iter_cb *cb,
                        void *context, const char **error_r);

/* ---- journal of messages a merge added ---- */

struct bf_journal_entry {
	const char *mailbox;      /* live mailbox name */
	const char *mailbox_guid; /* live mailbox GUID, hex */
	uint32_t uid;             /* live UID; 0 = saved but not yet known */
	const char *archive_mailbox;
	uint32_t archive_uid;
	unsigned char fingerprint[BF_FP_SIZE];
};

/* Appends entries and stores rec in one transaction: a merge never has
   its cursor ahead of its journal or the other way round. */
int bf_state_merge_checkpoint(struct bf_state *state, const char *user,
                              const struct bf_merge_record *rec,
                              const struct bf_journal_entry *entries,
                              size_t count, const char **error_r);
int bf_state_journal_append(struct bf_state *state, const char *user,
                            const struct bf_journal_entry *entries,
                            size_t count, const char **error_r);
/* Entries in insertion order.  Pointers in the entry are valid during the
   callback only. */
typedef int bf_journal_iter_cb(const struct bf_journal_entry *entry,
                               void *context);
int bf_state_journal_iter(struct bf_state *state, const char *user,
                          bf_journal_iter_cb *cb, void *context,
                          const char **error_r);
/* Sets the live UID of the entry (user, archive_mailbox, archive_uid)
   that has uid 0.  1 updated, 0 no such entry. */
int bf_state_journal_set_uid(struct bf_state *state, const char *user,
                             const char *archive_mailbox, uint32_t archive_uid,
                             uint32_t uid, const char **error_r);
int bf_state_journal_delete(struct bf_state *state, const char *user,
                            const char **error_r);

/* ---- restore windows ---- */

struct bf_window {
	char *name;
	time_t opened;
	time_t until;  /* 0 = open until closed */
	time_t closed; /* 0 = not closed */
};
void bf_window_clear(struct bf_window *window);

/* A window name is a short printable token: 1 to BF_WINDOW_NAME_MAX
   characters of A-Z a-z 0-9 and . _ : -.  It travels in the milter's
   X-Backfill-Window header and in every dedup key: a space, CR, LF or
   control character there would break delivery confirmation silently
   (the header is folded or cut, the key never matches).  The store
   refuses to open any other name. */
#define BF_WINDOW_NAME_MAX 64
#define BF_WINDOW_NAME_RULE                                                    \
	"1 to 64 characters of A-Z a-z 0-9 . _ : - (no spaces or control "     \
	"characters)"
bool bf_window_name_valid(const char *name);

/* How bf_state_window_open_full() treats a window of another name that
   is open at now. */
enum bf_window_open_flags {
	/* Close it and open the new one in the same write, so the milters
	   never see a moment without a window. */
	BF_WINDOW_OPEN_REPLACE = 0,
	/* Refuse: dedup records belong to their window, and ending one by
	   mistake lets every repeat of mail it saw through.  The check and
	   the open are one store operation, so of two opens of different
	   names at the same moment exactly one succeeds. */
	BF_WINDOW_OPEN_EXCLUSIVE = 1 << 0,
};

/* Opens window name at now, until (0 = no end), in one atomic operation:
   - no window open: name opens;
   - name itself is open: it stays open (its opened time is kept) and
     only its end moves to until; nothing is written when until is the
     same;
   - another window is open: with BF_WINDOW_OPEN_EXCLUSIVE nothing
     changes and 0 is returned, otherwise it is closed and name opens.
   Returns 1 (name is open now) or 0 (refused), -1 error.  previous_r, if
   not NULL, gets the window that was in force at now before the call
   (name NULL: none); clear it with bf_window_clear(). */
int bf_state_window_open_full(struct bf_state *state, const char *name,
                              time_t now, time_t until,
                              enum bf_window_open_flags flags,
                              struct bf_window *previous_r,
                              const char **error_r);
/* bf_state_window_open_full() with BF_WINDOW_OPEN_REPLACE: opens name,
   closing any other open window.  Returns 0 or -1. */
int bf_state_window_open(struct bf_state *state, const char *name, time_t now,
                         time_t until, const char **error_r);
/* 1 closed one, 0 none was open.  Closes a damaged window too: it
   reads no window. */
int bf_state_window_close(struct bf_state *state, time_t now,
                          const char **error_r);
/* The window in force at now: 1 (window_r filled), 0 none, -1 error. */
int bf_state_window_current(struct bf_state *state, time_t now,
                            struct bf_window *window_r, const char **error_r);
/* What ends a damaged window; the error of a window call that found one
   ends with "; " and this. */
#define BF_WINDOW_DAMAGED_REMEDY                                               \
	"backfillctl window close ends it (or window open NAME --replace "     \
	"switches to another at once)"
/* Whether the last bf_state_window_current() or
   bf_state_window_open_full() failed on a window in force that is damaged
   in the store (a time or a name backfill does not write), not on the
   store itself: the store answered, and bf_state_window_close() ends
   such a window. */
bool bf_state_window_damaged(const struct bf_state *state);

/* ---- dedup records of the milter ---- */

struct bf_dedup_first {
	time_t first_seen;
	char *host;     /* MX that saw it first */
	char *queue_id; /* its Postfix queue id there */
	bool delivered;
	time_t delivered_at;
};
void bf_dedup_first_clear(struct bf_dedup_first *first);

struct bf_dedup_key {
	const char *window;
	const char *recipient; /* bf_dedup_recipient() of the address */
	unsigned char fingerprint[BF_FP_SIZE];
};

/* The recipient as dedup keys hold it, the same for the milter (RCPT TO
   as Postfix passes it), the plugin (the LMTP recipient) and backfillctl:
   without surrounding blanks, <> and an RFC 5321 source route, ASCII
   lowercased.  Returns a malloc()ed string, NULL when out of memory. */
char *bf_dedup_recipient(const char *raw);

/* Atomically records (window, recipient, fingerprint) unless a live
   (unexpired) record exists.  Returns 1 new, 0 seen before (first_r, if not
   NULL, describes the first copy), -1 error.  The record expires at
   now + ttl. */
int bf_state_dedup_check_and_set(struct bf_state *state,
                                 const struct bf_dedup_key *key, time_t now,
                                 unsigned int ttl, const char *host,
                                 const char *queue_id,
                                 struct bf_dedup_first *first_r,
                                 const char **error_r);
/* The same for several recipients of one message, in one transaction (one
   round trip for network backends).  results_r[i] is 1 or 0 as above;
   firsts_r may be NULL. */
int bf_state_dedup_check_and_set_many(
        struct bf_state *state, const struct bf_dedup_key *keys, size_t count,
        time_t now, unsigned int ttl, const char *host, const char *queue_id,
        int *results_r, struct bf_dedup_first *firsts_r, const char **error_r);
/* 1 marked, 0 no such live record. */
int bf_state_dedup_mark_delivered(struct bf_state *state,
                                  const struct bf_dedup_key *key, time_t now,
                                  const char **error_r);
/* Deletes records that expired at or before now. */
int bf_state_dedup_purge(struct bf_state *state, time_t now, uint64_t *purged_r,
                         const char **error_r);

struct bf_dedup_stats {
	uint64_t records, delivered, expired;
};
int bf_state_dedup_stats(struct bf_state *state, time_t now,
                         struct bf_dedup_stats *stats_r, const char **error_r);

/* ---- leases ---- */

/* An owner string identifies the holder: bf_lease_owner() makes
   "host:pid:space.random", unique per call and per running instance even
   where hosts or containers share a hostname (space names the pid
   namespace of this boot of this host, see lease-owner.c).  A holder of
   the same space that died (SIGKILL) is taken over at once instead of
   after ttl; holders elsewhere only lose their lease when it expires.
   size 128 is ample; a shorter buffer loses the end of the host name. */
void bf_lease_owner(char *buf, size_t size);

/* 1 acquired (or already ours: renewed), 0 held by someone else (holder_r,
   if not NULL, gets a malloc()ed copy of the holder), -1 error. */
int bf_state_lease_acquire(struct bf_state *state, const char *name,
                           const char *owner, time_t now, unsigned int ttl,
                           char **holder_r, const char **error_r);
/* 1 renewed, 0 no longer ours. */
int bf_state_lease_renew(struct bf_state *state, const char *name,
                         const char *owner, time_t now, unsigned int ttl,
                         const char **error_r);
/* 1 released, 0 was not ours. */
int bf_state_lease_release(struct bf_state *state, const char *name,
                           const char *owner, const char **error_r);

/* Host-wide limit of running merges: takes one of max_slots slots of
   host.  1 acquired (*slot_r set), 0 all taken, -1 error.  Release with
   bf_state_slot_release(). */
int bf_state_slot_acquire(struct bf_state *state, const char *host,
                          unsigned int max_slots, const char *owner, time_t now,
                          unsigned int ttl, unsigned int *slot_r,
                          const char **error_r);
int bf_state_slot_renew(struct bf_state *state, const char *host,
                        unsigned int slot, const char *owner, time_t now,
                        unsigned int ttl, const char **error_r);
int bf_state_slot_release(struct bf_state *state, const char *host,
                          unsigned int slot, const char *owner,
                          const char **error_r);

#endif
