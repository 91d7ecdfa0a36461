/* Pool of state store handles shared by the session threads. */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"
#include "state-pool.h"

/* Enough for the usual smtpd process limit of a Postfix host; more
   concurrent sessions still work, their extra handles are just closed
   instead of kept. */
#define POOL_MAX_IDLE 32

struct milter_state_pool {
	pthread_mutex_t lock;
	char *uri;
	struct bf_state *idle[POOL_MAX_IDLE];
	unsigned int idle_count;
};

struct milter_state_pool *milter_state_pool_new(const char *uri)
{
	struct milter_state_pool *pool = calloc(1, sizeof(*pool));

	if (pool == NULL)
		return NULL;
	if ((pool->uri = strdup(uri)) == NULL) {
		free(pool);
		return NULL;
	}
	pthread_mutex_init(&pool->lock, NULL);
	return pool;
}

void milter_state_pool_free(struct milter_state_pool **_pool)
{
	struct milter_state_pool *pool = *_pool;

	if (pool == NULL)
		return;
	*_pool = NULL;
	for (unsigned int i = 0; i < pool->idle_count; i++)
		bf_state_close(&pool->idle[i]);
	pthread_mutex_destroy(&pool->lock);
	free(pool->uri);
	free(pool);
}

int milter_state_pool_get(struct milter_state_pool *pool,
                          struct bf_state **state_r, char **error_r)
{
	struct bf_state *state = NULL;

	pthread_mutex_lock(&pool->lock);
	if (pool->idle_count > 0)
		state = pool->idle[--pool->idle_count];
	pthread_mutex_unlock(&pool->lock);
	if (state != NULL) {
		*state_r = state;
		return 0;
	}
	/* Opened outside the lock: a slow or unreachable store must not
	   hold up sessions that could use an idle handle. */
	return bf_state_open(pool->uri, state_r, error_r);
}

void milter_state_pool_put(struct milter_state_pool *pool,
                           struct bf_state **_state, bool broken)
{
	struct bf_state *state = *_state;

	if (state == NULL)
		return;
	*_state = NULL;
	if (!broken) {
		pthread_mutex_lock(&pool->lock);
		if (pool->idle_count < POOL_MAX_IDLE) {
			pool->idle[pool->idle_count++] = state;
			state = NULL;
		}
		pthread_mutex_unlock(&pool->lock);
	}
	if (state != NULL)
		bf_state_close(&state);
}
