#ifndef MILTER_STATE_POOL_H
#define MILTER_STATE_POOL_H

/* A small pool of state store handles.  libmilter runs every SMTP session
   on its own thread and a handle serves one thread at a time; opening a
   handle per message would cost more than the lookup itself.

   The pool is also where a failing store is left alone: after a failure
   it refuses every handle for retry_secs (StoreRetry), so that a locked
   or hung store costs one timeout, not one per message; then one caller
   probes the store again while the others keep being refused. */

#include <stdbool.h>

struct bf_state;
struct milter_state_pool;

/* wait_ms: the most an operation of a handle may wait for a lock or a
   reply (bf_state_set_wait_limit(); 0: the URI's own timeouts). */
struct milter_state_pool *milter_state_pool_new(const char *uri,
                                                unsigned int wait_ms,
                                                unsigned int retry_secs);
/* Closes the idle handles; every handle taken must have been put back. */
void milter_state_pool_free(struct milter_state_pool **pool);

/* Returns 0 with a handle, or -1 with a malloc()ed error (at once while
   the store is left alone after a failure). */
int milter_state_pool_get(struct milter_state_pool *pool,
                          struct bf_state **state_r, char **error_r);
/* error: NULL if the handle did its work; else why it failed: the handle
   is closed rather than reused (the next use reconnects: the file was
   replaced, the server restarted) and the store is left alone for
   StoreRetry. */
void milter_state_pool_put(struct milter_state_pool *pool,
                           struct bf_state **state, const char *error);

#endif
