/* Pool of state store handles shared by the session threads. */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "state-pool.h"
#include "state.h"
#include "stats.h"

/* Enough for the usual smtpd process limit of a Postfix host; more
   concurrent sessions still work, their extra handles are just closed
   instead of kept. */
#define POOL_MAX_IDLE 32

struct milter_state_pool {
	pthread_mutex_t lock;
	char *uri;
	unsigned int wait_ms, retry_secs;
	struct bf_state *idle[POOL_MAX_IDLE];
	unsigned int idle_count;

	/* The store failed: handles are refused until down_until, then
	   the one caller that finds it passed probes (down_until moves on
	   for the others meanwhile). */
	bool down;
	time_t down_since, down_until;
	char *down_error;
	unsigned long refused; /* handles refused while down */
};

struct milter_state_pool *milter_state_pool_new(const char *uri,
                                                unsigned int wait_ms,
                                                unsigned int retry_secs)
{
	struct milter_state_pool *pool = calloc(1, sizeof(*pool));

	if (pool == NULL)
		return NULL;
	if ((pool->uri = strdup(uri)) == NULL) {
		free(pool);
		return NULL;
	}
	pool->wait_ms = wait_ms;
	pool->retry_secs = retry_secs;
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
	free(pool->down_error);
	free(pool->uri);
	free(pool);
}

static char *refusal(const struct milter_state_pool *pool, time_t now)
{
	char *text = NULL;

	if (asprintf(&text,
	             "state store not asked for %lds after it failed (%s); "
	             "StoreRetry",
	             (long)(pool->down_until - now), pool->down_error) < 0)
		return strdup("state store left alone after a failure");
	return text;
}

/* The store failed (lock held): log once when it goes down, not at each
   failed probe. */
static void pool_down(struct milter_state_pool *pool, const char *error,
                      time_t now)
{
	char *copy = strdup(error);

	milter_stats_add(MILTER_STAT_STORE_ERRORS, 1);
	if (copy != NULL) {
		free(pool->down_error);
		pool->down_error = copy;
	}
	pool->down_until = now + (time_t)pool->retry_secs;
	if (pool->down)
		return;
	pool->down = true;
	pool->down_since = now;
	pool->refused = 0;
	milter_error("state store failed: %s; not asked again for %us "
	             "(StoreRetry): mail is accepted and tagged "
	             "X-Backfill-Dedup: unchecked meanwhile, then one message "
	             "probes it",
	             error, pool->retry_secs);
}

int milter_state_pool_get(struct milter_state_pool *pool,
                          struct bf_state **state_r, char **error_r)
{
	struct bf_state *state = NULL;
	time_t now = time(NULL);
	const char *error;
	char *open_error = NULL;

	pthread_mutex_lock(&pool->lock);
	if (pool->down) {
		if (now < pool->down_until) {
			pool->refused++;
			*error_r = refusal(pool, now);
			pthread_mutex_unlock(&pool->lock);
			return -1;
		}
		/* this caller probes; the others wait for its answer */
		pool->down_until = now + (time_t)pool->retry_secs;
	}
	if (pool->idle_count > 0)
		state = pool->idle[--pool->idle_count];
	pthread_mutex_unlock(&pool->lock);
	if (state != NULL) {
		*state_r = state;
		return 0;
	}
	/* Opened outside the lock: a slow or unreachable store must not
	   hold up sessions that could use an idle handle. */
	if (bf_state_open(pool->uri, &state, &open_error) < 0) {
		error = open_error != NULL ? open_error : "out of memory";
		pthread_mutex_lock(&pool->lock);
		pool_down(pool, error, time(NULL));
		pthread_mutex_unlock(&pool->lock);
		*error_r = open_error;
		if (*error_r == NULL)
			*error_r = strdup("out of memory");
		return -1;
	}
	if (pool->wait_ms > 0)
		bf_state_set_wait_limit(state, pool->wait_ms);
	*state_r = state;
	return 0;
}

void milter_state_pool_put(struct milter_state_pool *pool,
                           struct bf_state **_state, const char *error)
{
	struct bf_state *state = *_state;

	if (state == NULL)
		return;
	*_state = NULL;
	pthread_mutex_lock(&pool->lock);
	if (error != NULL) {
		pool_down(pool, error, time(NULL));
	} else {
		if (pool->down) {
			pool->down = false;
			milter_info("state store answers again after %lds "
			            "(%lu request(s) for it answered "
			            "unchecked meanwhile)",
			            (long)(time(NULL) - pool->down_since),
			            pool->refused);
		}
		if (pool->idle_count < POOL_MAX_IDLE) {
			pool->idle[pool->idle_count++] = state;
			state = NULL;
		}
	}
	pthread_mutex_unlock(&pool->lock);
	if (state != NULL)
		bf_state_close(&state);
}
