/* The Redis host name looked up within the connection's wait limit.

   getaddrinfo() has no timeout: a DNS server that does not answer held
   every new connection (a login, a delivery confirmation, a background
   slice reconnecting after a stall) for the resolver's own timeout,
   timeout x attempts in resolv.conf (10 s by default), past any wait
   limit its caller had.  glibc's getaddrinfo_a() looks the name up in a
   thread of its own and gai_suspend() waits for it with a timeout.

   A lookup still running when the wait ends cannot be stopped; it ends by
   itself at the resolver's timeout.  It stays with the handle, so the
   handle's next connection takes its answer when it has come, or waits
   for it again within its own limit, instead of starting one more.  A
   handle closed meanwhile cancels it, or when glibc cannot, leaves it the
   request's memory: glibc writes the answer there.

   A numeric address needs no lookup, and where there is no
   getaddrinfo_a() (not glibc) hiredis looks the name up itself, without
   a deadline, as before. */

#include "state-redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifdef BF_HAVE_GETADDRINFO_A
struct bf_redis_lookup {
	struct gaicb cb;
	struct addrinfo hints;
	char *host;
	char port[16];
	pid_t pid;
};

static void lookup_free(struct bf_redis_lookup *l)
{
	if (l->cb.ar_result != NULL)
		freeaddrinfo(l->cb.ar_result);
	free(l->host);
	free(l);
}

void bf_redis_lookup_abandon(struct bf_redis_lookup **_l)
{
	struct bf_redis_lookup *l = *_l;

	if (l == NULL)
		return;
	*_l = NULL;
	/* inherited over fork(): no thread of this process writes to it */
	if (l->pid == getpid() && gai_error(&l->cb) == EAI_INPROGRESS &&
	    gai_cancel(&l->cb) != EAI_CANCELED)
		return; /* glibc still writes to it: not ours to free */
	lookup_free(l);
}

static bool host_numeric(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 ||
	       inet_pton(AF_INET6, host, buf) == 1;
}

/* The addresses as numeric strings, IPv4 first as hiredis tries them
   ("localhost" is 127.0.0.1 before ::1, where redis-server listens by
   default). */
static char **addrs_from(const struct addrinfo *ai)
{
	const struct addrinfo *a;
	char **addrs, host[NI_MAXHOST];
	size_t n = 0, i = 0;

	for (a = ai; a != NULL; a = a->ai_next)
		n++;
	addrs = calloc(n + 1, sizeof(*addrs));
	if (addrs == NULL)
		return NULL;
	for (int pass = 0; pass < 2; pass++) {
		for (a = ai; a != NULL; a = a->ai_next) {
			if ((a->ai_family == AF_INET) != (pass == 0) ||
			    getnameinfo(a->ai_addr, a->ai_addrlen, host,
			                sizeof(host), NULL, 0,
			                NI_NUMERICHOST) != 0)
				continue;
			if ((addrs[i] = strdup(host)) == NULL) {
				bf_redis_addrs_free(addrs);
				return NULL;
			}
			i++;
		}
	}
	return addrs;
}

int bf_redis_resolve(struct bf_redis_lookup **_l, const char *host, int port,
                     int timeout_ms, char ***addrs_r, const char **error_r)
{
	struct bf_redis_lookup *l = *_l;
	struct gaicb *list[1];
	struct timespec ts;
	int ret;

	*addrs_r = NULL;
	if (host_numeric(host))
		return 0;
	if (l != NULL && l->pid != getpid())
		bf_redis_lookup_abandon(_l);
	if ((l = *_l) == NULL) {
		l = calloc(1, sizeof(*l));
		if (l == NULL || (l->host = strdup(host)) == NULL) {
			free(l);
			*error_r = "out of memory";
			return -1;
		}
		snprintf(l->port, sizeof(l->port), "%d", port);
		l->hints.ai_family = AF_UNSPEC;
		l->hints.ai_socktype = SOCK_STREAM;
		l->cb.ar_name = l->host;
		l->cb.ar_service = l->port;
		l->cb.ar_request = &l->hints;
		l->pid = getpid();
		list[0] = &l->cb;
		if ((ret = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL)) != 0) {
			lookup_free(l);
			*error_r = gai_strerror(ret);
			return -1;
		}
		*_l = l;
	}
	list[0] = &l->cb;
	ts.tv_sec = timeout_ms / 1000;
	ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000;
	/* a signal (EAI_INTR) ends the wait early: the caller connects
	   again at its next call, as after any failed connect */
	(void)gai_suspend((const struct gaicb *const *)list, 1, &ts);
	ret = gai_error(&l->cb);
	if (ret == EAI_INPROGRESS)
		return -2; /* the lookup stays pending, for the next call */
	*_l = NULL;
	if (ret != 0) {
		*error_r = gai_strerror(ret);
		lookup_free(l);
		return -1;
	}
	*addrs_r = addrs_from(l->cb.ar_result);
	lookup_free(l);
	if (*addrs_r == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	return 1;
}
#else
void bf_redis_lookup_abandon(struct bf_redis_lookup **l)
{
	*l = NULL;
}

int bf_redis_resolve(struct bf_redis_lookup **l, const char *host, int port,
                     int timeout_ms, char ***addrs_r, const char **error_r)
{
	(void)l;
	(void)host;
	(void)port;
	(void)timeout_ms;
	(void)error_r;
	*addrs_r = NULL;
	return 0;
}
#endif

void bf_redis_addrs_free(char **addrs)
{
	if (addrs == NULL)
		return;
	for (size_t i = 0; addrs[i] != NULL; i++)
		free(addrs[i]);
	free(addrs);
}
