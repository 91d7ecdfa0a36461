/* Per-session and per-message bookkeeping of the milter. */

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "milter-config.h"
#include "fingerprint.h"
#include "session.h"
#include "state.h"
#include "tag.h"

static char out_of_memory[] = "out of memory";

struct milter_session *milter_session_new(void)
{
	return calloc(1, sizeof(struct milter_session));
}

void milter_session_reset(struct milter_session *session)
{
	milter_config_unref(&session->config);
	free(session->window);
	session->window = NULL;
	if (session->unchecked != out_of_memory)
		free(session->unchecked);
	session->unchecked = NULL;
	free(session->queue_id);
	session->queue_id = NULL;
	for (size_t i = 0; i < session->rcpt_count; i++) {
		free(session->rcpts[i].raw);
		free(session->rcpts[i].bare);
	}
	if (session->rcpt_count > 0 && session->rcpt_index != NULL)
		memset(session->rcpt_index, 0xff,
		       session->rcpt_index_size * sizeof(size_t));
	session->rcpt_count = 0;
	for (size_t i = 0; i < session->forged_count; i++)
		free(session->forged[i].name);
	session->forged_count = 0;
	session->forged_fields = 0;
	free(session->client_addr);
	session->client_addr = NULL;
	for (size_t i = 0; i < session->peer_tag_count; i++)
		free(session->peer_tags[i]);
	session->peer_tag_count = 0;
	/* gives back what a message with large header fields took */
	if (session->fp != NULL)
		bf_fp_reset(session->fp);
	/* Arrays are kept for the next message, but not when a message
	   made them large, so that a session stays small. */
	if (session->rcpt_alloc > 64) {
		free(session->rcpts);
		session->rcpts = NULL;
		session->rcpt_alloc = 0;
	}
	if (session->rcpt_index_size > 128) {
		free(session->rcpt_index);
		session->rcpt_index = NULL;
		session->rcpt_index_size = 0;
	}
	if (session->forged_alloc > 16) {
		free(session->forged);
		session->forged = NULL;
		session->forged_alloc = 0;
	}
}

void milter_session_free(struct milter_session **_session)
{
	struct milter_session *session = *_session;

	if (session == NULL)
		return;
	*_session = NULL;
	milter_session_reset(session);
	free(session->rcpts);
	free(session->rcpt_index);
	free(session->forged);
	if (session->fp != NULL)
		bf_fp_free(&session->fp);
	free(session);
}

void milter_session_unchecked(struct milter_session *session,
                              const char *reason)
{
	if (session->unchecked != NULL)
		return;
	session->unchecked = strdup(reason);
	if (session->unchecked == NULL)
		session->unchecked = out_of_memory;
}

/* The recipient index's hash is keyed with a secret of the process:
   unkeyed, a sender could pick addresses whose hashes share their low
   bits (user+X@domain gives as many valid ones as he likes), and linear
   probing would make each one cost as much as all before it, the
   quadratic recipient check back where smtpd_recipient_limit was
   raised. */
static uint64_t rcpt_seed;
static pthread_once_t rcpt_seed_once = PTHREAD_ONCE_INIT;

static void rcpt_seed_init(void)
{
	struct timespec ts;

	if (getrandom(&rcpt_seed, sizeof(rcpt_seed), GRND_NONBLOCK) ==
	    sizeof(rcpt_seed))
		return;
	/* no entropy yet (early boot): worse than random, still not known
	   in advance to a sender */
	clock_gettime(CLOCK_REALTIME, &ts);
	rcpt_seed = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^
	            ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)&ts;
}

static size_t rcpt_hash(const char *bare)
{
	uint64_t hash;

	pthread_once(&rcpt_seed_once, rcpt_seed_init);
	/* FNV-1a from a secret offset basis, then a final mix: the low
	   bits the index uses depend on every bit of the state, not only
	   on the low bits of the input and the basis */
	hash = 14695981039346656037ull ^ rcpt_seed;
	for (const unsigned char *p = (const unsigned char *)bare; *p != '\0';
	     p++)
		hash = (hash ^ *p) * 1099511628211ull;
	hash ^= hash >> 33;
	hash *= 0xff51afd7ed558ccdull;
	hash ^= hash >> 33;
	hash *= 0xc4ceb9fe1a85ec53ull;
	hash ^= hash >> 33;
	return (size_t)hash;
}

/* The slot of bare in the index: where its first spelling is, or the
   free slot where it goes. */
static size_t *rcpt_slot(struct milter_session *session, const char *bare)
{
	size_t mask = session->rcpt_index_size - 1;
	size_t i = rcpt_hash(bare) & mask;

	while (session->rcpt_index[i] != SIZE_MAX &&
	       strcmp(session->rcpts[session->rcpt_index[i]].bare, bare) != 0)
		i = (i + 1) & mask;
	return &session->rcpt_index[i];
}

/* Room for one more address in the index. */
static int rcpt_index_grow(struct milter_session *session)
{
	size_t size = session->rcpt_index_size;
	size_t *old = session->rcpt_index;

	if ((session->rcpt_count + 1) * 2 <= size)
		return 0;
	size = size == 0 ? 16 : size * 2;
	session->rcpt_index = malloc(size * sizeof(size_t));
	if (session->rcpt_index == NULL) {
		session->rcpt_index = old;
		return -1;
	}
	memset(session->rcpt_index, 0xff, size * sizeof(size_t));
	session->rcpt_index_size = size;
	free(old);
	for (size_t i = 0; i < session->rcpt_count; i++) {
		if (session->rcpts[i].key == i)
			*rcpt_slot(session, session->rcpts[i].bare) = i;
	}
	return 0;
}

int milter_session_add_rcpt(struct milter_session *session, const char *raw)
{
	struct milter_rcpt *rcpt;
	size_t *slot;

	if (rcpt_index_grow(session) < 0)
		return -1;
	if (session->rcpt_count == session->rcpt_alloc) {
		size_t alloc =
		        session->rcpt_alloc == 0 ? 4 : session->rcpt_alloc * 2;
		rcpt = realloc(session->rcpts, alloc * sizeof(*rcpt));
		if (rcpt == NULL)
			return -1;
		session->rcpts = rcpt;
		session->rcpt_alloc = alloc;
	}
	rcpt = &session->rcpts[session->rcpt_count];
	rcpt->raw = strdup(raw);
	rcpt->bare = bf_dedup_recipient(raw);
	if (rcpt->raw == NULL || rcpt->bare == NULL) {
		free(rcpt->raw);
		free(rcpt->bare);
		return -1;
	}
	/* Two spellings of one address in one message ("<A@x>", "<a@x>")
	   are one dedup key: checking it twice would make the second look
	   like a duplicate of the first. */
	rcpt->key = session->rcpt_count;
	/* "<>" or an empty address cannot be a dedup key: that recipient
	   is simply not checked (it always gets the message). */
	if (rcpt->bare[0] == '\0') {
		rcpt->key = MILTER_RCPT_NO_KEY;
	} else {
		slot = rcpt_slot(session, rcpt->bare);
		if (*slot == SIZE_MAX)
			*slot = session->rcpt_count;
		else
			rcpt->key = *slot;
	}
	session->rcpt_count++;
	return 0;
}

int milter_session_add_forged(struct milter_session *session, const char *name)
{
	struct milter_forged *forged;

	/* The cap keeps the search below linear in the message. */
	if (++session->forged_fields > MILTER_MAX_FORGED)
		return 1;
	for (size_t i = 0; i < session->forged_count; i++) {
		if (strcasecmp(session->forged[i].name, name) == 0) {
			session->forged[i].count++;
			return 0;
		}
	}
	if (session->forged_count == session->forged_alloc) {
		size_t alloc = session->forged_alloc == 0
		                       ? 4
		                       : session->forged_alloc * 2;
		forged = realloc(session->forged, alloc * sizeof(*forged));
		if (forged == NULL)
			return -1;
		session->forged = forged;
		session->forged_alloc = alloc;
	}
	forged = &session->forged[session->forged_count];
	if ((forged->name = strdup(name)) == NULL)
		return -1;
	forged->count = 1;
	session->forged_count++;
	return 0;
}

int milter_session_add_peer_tag(struct milter_session *session,
                                const char *value)
{
	if (session->peer_tag_count == MILTER_MAX_PEER_TAGS ||
	    strlen(value) > BF_TAG_VALUE_MAX)
		return 0;
	if ((session->peer_tags[session->peer_tag_count] = strdup(value)) ==
	    NULL)
		return -1;
	session->peer_tag_count++;
	return 0;
}
