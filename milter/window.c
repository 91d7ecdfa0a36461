/* Cached view of the restore window open in the state store. */

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "milter-config.h"
#include "state-pool.h"
#include "state.h"
#include "window.h"
#include "log.h"

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	/* The pool the answer came from: a reload that changes State
	   makes a new pool, and the answer of the old store is void. */
	const struct milter_state_pool *pool;
	time_t checked;
	time_t until;
	char *name; /* NULL: no window */
	bool valid;
	/* The last refresh failed with error: until failed_until every
	   session gets that answer at once.  A store that hangs instead of
	   refusing then costs one timeout per WindowRefresh, not one per
	   message queued up behind cache_lock (which Postfix would end with
	   its milter timeout, passing mail untagged). */
	char *error;
	time_t failed_until;
	time_t last_warning;
} cache;

static int window_refresh(struct milter_config *config, time_t now,
                          char **error_r)
{
	struct bf_window window;
	struct bf_state *state;
	const char *error;
	int ret;

	if (milter_state_pool_get(config->pool, &state, error_r) < 0)
		return -1;
	memset(&window, 0, sizeof(window));
	ret = bf_state_window_current(state, now, &window, &error);
	if (ret < 0) {
		*error_r = strdup(error);
		milter_state_pool_put(config->pool, &state, error);
		return -1;
	}
	milter_state_pool_put(config->pool, &state, NULL);

	char *old = cache.name;
	if (ret > 0 && (old == NULL || strcmp(old, window.name) != 0))
		milter_info("restore window '%s' is open: tagging and "
		            "de-duplicating incoming mail",
		            window.name);
	else if (ret == 0 && old != NULL)
		milter_info("restore window '%s' is no longer open: mail "
		            "passes untouched (forged X-Backfill headers are "
		            "still removed)",
		            old);
	free(old);
	cache.name = NULL;
	if (ret > 0) {
		cache.name = window.name;
		window.name = NULL;
	}
	cache.until = ret > 0 ? window.until : 0;
	cache.pool = config->pool;
	cache.checked = now;
	cache.valid = true;
	bf_window_clear(&window);
	return 0;
}

int milter_window_current(struct milter_config *config, time_t now,
                          char **name_r, char **error_r)
{
	int ret = 0;

	*name_r = NULL;
	if (config->window_mode == MILTER_WINDOW_OFF)
		return 0;

	/* One refresh at a time: the other sessions wait for its answer
	   rather than all querying the store at once. */
	pthread_mutex_lock(&cache_lock);
	if (cache.error != NULL && cache.pool == config->pool &&
	    now < cache.failed_until) {
		*error_r = strdup(cache.error);
		pthread_mutex_unlock(&cache_lock);
		return -1;
	}
	free(cache.error);
	cache.error = NULL;
	if (!cache.valid || cache.pool != config->pool || now < cache.checked ||
	    now - cache.checked >= (time_t)config->window_refresh_secs ||
	    (cache.until != 0 && now >= cache.until)) {
		if (window_refresh(config, now, error_r) < 0) {
			if (cache.valid && cache.pool == config->pool &&
			    cache.name == NULL) {
				/* No window was open at the last answer, and
				   none can be opened in a store nobody can
				   reach: mail outside a window needs nothing
				   from the store.  Asked again after
				   WindowRefresh; logged once a minute. */
				if (now - cache.last_warning >= 60) {
					milter_warning(
					        "cannot read the restore "
					        "window "
					        "from the state store: %s; "
					        "going "
					        "on as outside a window (check "
					        "the State setting and that "
					        "the "
					        "store is up)",
					        *error_r);
					cache.last_warning = now;
				}
				free(*error_r);
				*error_r = NULL;
				cache.checked = now;
			} else {
				cache.valid = false;
				cache.pool = config->pool;
				cache.error = strdup(*error_r);
				/* from when the answer came: a hung store
				   may have taken its whole timeout */
				cache.failed_until =
				        time(NULL) +
				        (time_t)config->window_refresh_secs;
				ret = -1;
			}
		}
	}
	if (ret == 0 && cache.name != NULL) {
		if ((*name_r = strdup(cache.name)) == NULL) {
			*error_r = strdup("out of memory");
			ret = -1;
		} else {
			ret = 1;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	return ret;
}
