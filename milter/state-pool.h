#ifndef MILTER_STATE_POOL_H
#define MILTER_STATE_POOL_H

/* A small pool of state store handles.  libmilter runs every SMTP session
   on its own thread and a handle serves one thread at a time; opening a
   handle per message would cost more than the lookup itself. */

#include <stdbool.h>

struct bf_state;
struct milter_state_pool;

struct milter_state_pool *milter_state_pool_new(const char *uri);
/* Closes the idle handles; every handle taken must have been put back. */
void milter_state_pool_free(struct milter_state_pool **pool);

/* Returns 0 with a handle, or -1 with a malloc()ed error. */
int milter_state_pool_get(struct milter_state_pool *pool,
                          struct bf_state **state_r, char **error_r);
/* broken: the handle failed; close it rather than reuse it, so that the
   next message reconnects (the file was replaced, the server restarted). */
void milter_state_pool_put(struct milter_state_pool *pool,
                           struct bf_state **state, bool broken);

#endif
