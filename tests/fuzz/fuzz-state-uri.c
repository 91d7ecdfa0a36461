/* libFuzzer: the state store URIs, as they come from backfill_state,
   State in backfill-milter.conf or backfillctl --state.  The first byte
   picks the parser: the SQLite location, a redis://, rediss:// (TLS
   options included) or redis+unix:// URI, or the redaction every URI goes
   through before it reaches a log line.  Nothing is opened or connected.
   Properties: no crash, leak or overflow; an error always has a message; a
   parsed redis URI has a server (host or socket), a prefix and a timeout, and
   its password does not show once redacted; a redacted URI never shows a
   password given as "password=". */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "state-private.h"
#ifdef BF_HAVE_REDIS
#include "state-redis.h"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_redacted(const char *uri)
{
	char *shown = bf_state_uri_redact(uri);
	const char *p;

	if (shown == NULL)
		abort();
	/* every "password=" in an option is followed by *** */
	for (p = shown; (p = strstr(p, "password=")) != NULL; p += 9) {
		if (p > shown && (p[-1] == '?' || p[-1] == '&') &&
		    strncmp(p + 9, "***", 3) != 0)
			abort();
	}
	free(shown);
}

#ifdef BF_HAVE_REDIS
/* How often needle occurs in haystack. */
static unsigned int occurrences(const char *haystack, const char *needle,
                                size_t len)
{
	unsigned int n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p++) {
		if (strncmp(p, needle, len) == 0)
			n++;
	}
	return n;
}

/* No part of the password of a redis:// URI that parsed shows in its
   redacted form: neither its first nor its last 6 characters, when they
   appear in the URI once and the password is typed as is. */
static void check_password_hidden(const char *location,
                                  const struct bf_redis_uri *uri)
{
	char *full, *shown, part[2][7];
	const char *pw = uri->password;
	size_t len = pw != NULL ? strlen(pw) : 0;

	/* typed as is, so that a part that occurs once is the password's
	   own: with no %-escape anywhere in the URI.  An escaped password
	   ("llp%41ss" for "llpAss") may also occur as is elsewhere, in a part
	   that is no secret (found by this target in CI). */
	if (len < 6 || strchr(location, '%') != NULL ||
	    strstr(location, pw) == NULL)
		return;
	memcpy(part[0], pw, 6);
	memcpy(part[1], pw + len - 6, 6);
	part[0][6] = part[1][6] = '\0';
	full = malloc(strlen(location) + 7);
	if (full == NULL)
		return;
	memcpy(full, "redis:", 6);
	memcpy(full + 6, location, strlen(location) + 1);
	shown = bf_state_uri_redact(full);
	if (shown == NULL)
		abort();
	for (int i = 0; i < 2; i++) {
		/* A part with a '*' may be the redaction's own "***" and
		   what follows it ("u:*@ssw0r@h" shows "u:***@h"). */
		if (strchr(part[i], '*') == NULL &&
		    occurrences(location, part[i], 6) == 1 &&
		    strstr(shown, part[i]) != NULL)
			abort();
	}
	free(shown);
	free(full);
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *error = NULL, *path = NULL;
	int busy_timeout;

	if (size < 1)
		return 0;
	text = malloc(size);
	if (text == NULL)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	switch (data[0] % 5) {
	case 0:
		if (bf_state_sqlite_parse_location(text, &path, &busy_timeout,
		                                   &error) < 0 &&
		    error == NULL)
			abort();
		free(path);
		break;
#ifdef BF_HAVE_REDIS
	case 1:
	case 2:
	case 4: {
		static const enum bf_redis_transport transports[] = {
		        [1] = BF_REDIS_TCP,
		        [2] = BF_REDIS_UNIX,
		        [4] = BF_REDIS_TLS,
		};
		enum bf_redis_transport transport = transports[data[0] % 5];
		struct bf_redis_uri uri;

		if (bf_redis_uri_parse(text, transport, &uri, &error) < 0) {
			if (error == NULL)
				abort();
		} else {
			char *name = bf_redis_uri_name(&uri);

			if (name == NULL || uri.prefix == NULL ||
			    (uri.host == NULL) == (uri.socket_path == NULL) ||
			    uri.timeout_ms <= 0 ||
			    /* TLS options only over TLS, files absolute,
			       a client certificate whole */
			    (transport != BF_REDIS_TLS &&
			     (uri.cacert != NULL || uri.cert != NULL ||
			      uri.key != NULL || uri.sni != NULL)) ||
			    (uri.cacert != NULL && uri.cacert[0] != '/') ||
			    (uri.cert != NULL && uri.cert[0] != '/') ||
			    (uri.key != NULL && uri.key[0] != '/') ||
			    (uri.cert == NULL) != (uri.key == NULL) ||
			    (uri.sni != NULL && uri.sni[0] == '\0'))
				abort();
			free(name);
			if (transport != BF_REDIS_UNIX)
				check_password_hidden(text, &uri);
		}
		bf_redis_uri_clear(&uri);
		break;
	}
#endif
	default:
		check_redacted(text);
		break;
	}
	free(error);
	free(text);
	return 0;
}
