/* The Redis backend's URIs:

     redis://[user:password@]host[:port][/db][?options]
     redis+unix:///path/redis.sock[?db=N&options]

   options: timeout=MS (connect and command timeout, default 2000),
   prefix=STR (key prefix, default "backfill:"); on a unix socket also
   user=NAME and password=PW (AUTH), db=N.  Values are %-decoded.

   The URI comes from configuration files, but it holds a password: error
   messages never quote it. */

#include "parse.h"
#include "state-redis.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE                                                                  \
	"expected redis://[user:password@]host[:port][/db] or "                \
	"redis+unix:///path/redis.sock[?db=N]"

/* %-decodes s[0..len).  NULL: a bad escape, a NUL byte or out of memory. */
static char *pct_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1), *p = out;
	size_t i;

	if (out == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			*p++ = s[i];
			continue;
		}
		if (i + 2 >= len || bf_parse_hex_digit(s[i + 1]) < 0 ||
		    bf_parse_hex_digit(s[i + 2]) < 0 ||
		    (bf_parse_hex_digit(s[i + 1]) == 0 &&
		     bf_parse_hex_digit(s[i + 2]) == 0)) {
			free(out);
			return NULL;
		}
		*p++ = (char)(bf_parse_hex_digit(s[i + 1]) * 16 +
		              bf_parse_hex_digit(s[i + 2]));
		i += 2;
	}
	*p = '\0';
	return out;
}

static bool parse_uint(const char *s, size_t len, unsigned long max,
                       unsigned long *value_r)
{
	unsigned long value = 0;
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' ||
		    value > (max - (s[i] - '0')) / 10)
			return false;
		value = value * 10 + (unsigned long)(s[i] - '0');
	}
	*value_r = value;
	return true;
}

/* "?timeout=MS&prefix=STR" and, on a unix socket (whose URI has no other
   place for them), "&db=N&user=NAME&password=PW". */
static int parse_options(struct bf_redis_uri *r, const char *query,
                         bool unix_socket, const char *name, char **error_r)
{
	const char *opt, *end, *eq;
	unsigned long value;

	for (opt = query; opt != NULL && *opt != '\0';
	     opt = *end == '&' ? end + 1 : NULL) {
		end = opt + strcspn(opt, "&");
		eq = memchr(opt, '=', (size_t)(end - opt));
		if (eq == NULL) {
			*error_r = bf_state_error_new(
			        name, "option without value in URI (%s)",
			        USAGE);
			return -1;
		}
		if ((size_t)(eq - opt) == 7 &&
		    strncmp(opt, "timeout", 7) == 0) {
			if (!parse_uint(eq + 1, (size_t)(end - eq - 1),
			                BF_REDIS_MAX_TIMEOUT_MS, &value) ||
			    value == 0) {
				*error_r = bf_state_error_new(
				        name,
				        "invalid timeout in URI (milliseconds, "
				        "1 to %d)",
				        BF_REDIS_MAX_TIMEOUT_MS);
				return -1;
			}
			r->timeout_ms = (int)value;
		} else if ((size_t)(eq - opt) == 6 &&
		           strncmp(opt, "prefix", 6) == 0) {
			free(r->prefix);
			r->prefix = pct_decode(eq + 1, (size_t)(end - eq - 1));
			if (r->prefix == NULL) {
				*error_r = bf_state_error_new(
				        name, "invalid prefix in URI (bad "
				              "%%-escape)");
				return -1;
			}
		} else if (unix_socket && (size_t)(eq - opt) == 8 &&
		           strncmp(opt, "password", 8) == 0) {
			free(r->password);
			r->password =
			        pct_decode(eq + 1, (size_t)(end - eq - 1));
			if (r->password == NULL || *r->password == '\0') {
				*error_r = bf_state_error_new(
				        name, "invalid password in URI (empty "
				              "or bad %%-escape)");
				return -1;
			}
		} else if (unix_socket && (size_t)(eq - opt) == 4 &&
		           strncmp(opt, "user", 4) == 0) {
			free(r->user);
			r->user = pct_decode(eq + 1, (size_t)(end - eq - 1));
			if (r->user == NULL || *r->user == '\0') {
				*error_r = bf_state_error_new(
				        name, "invalid user in URI (empty or "
				              "bad %%-escape)");
				return -1;
			}
		} else if (unix_socket && (size_t)(eq - opt) == 2 &&
		           strncmp(opt, "db", 2) == 0) {
			if (!parse_uint(eq + 1, (size_t)(end - eq - 1), INT_MAX,
			                &value)) {
				*error_r = bf_state_error_new(
				        name, "invalid db in URI (a number)");
				return -1;
			}
			r->db = (unsigned int)value;
		} else {
			*error_r = bf_state_error_new(
			        name,
			        "unknown option \"%.*s\" in URI (supported: "
			        "timeout=MS, prefix=STR%s)",
			        (int)(eq - opt), opt,
			        unix_socket ? ", db=N, user=NAME, password=PW"
			                    : "");
			return -1;
		}
	}
	return 0;
}

/* "//[user:password@]host[:port][/db][?options]".  Error messages never
   quote the URI: it may hold the password. */
static int parse_tcp(struct bf_redis_uri *r, const char *location,
                     char **error_r)
{
	static const char *const name = "redis:";
	const char *p, *auth_end, *at = NULL, *colon, *host, *host_end;
	const char *port_str = NULL, *q;
	unsigned long value;

	if (strncmp(location, "//", 2) != 0) {
		*error_r = bf_state_error_new(name, "invalid URI (%s)", USAGE);
		return -1;
	}
	p = location + 2;
	auth_end = p + strcspn(p, "/?");
	for (q = p; q < auth_end; q++) {
		if (*q == '@')
			at = q;
	}
	if (at != NULL) {
		colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL || colon + 1 == at) {
			*error_r = bf_state_error_new(
			        name, "no password in the URI's user part "
			              "(redis://:password@host:port/db or "
			              "redis://user:password@host:port/db)");
			return -1;
		}
		if (colon > p &&
		    (r->user = pct_decode(p, (size_t)(colon - p))) == NULL) {
			*error_r = bf_state_error_new(
			        name, "invalid user in URI (bad %%-escape)");
			return -1;
		}
		r->password = pct_decode(colon + 1, (size_t)(at - colon - 1));
		if (r->password == NULL) {
			*error_r = bf_state_error_new(
			        name,
			        "invalid password in URI (bad %%-escape)");
			return -1;
		}
		p = at + 1;
	}
	host = p;
	if (*p == '[') {
		host = p + 1;
		host_end = memchr(host, ']', (size_t)(auth_end - host));
		if (host_end == NULL ||
		    (host_end + 1 < auth_end && host_end[1] != ':')) {
			*error_r = bf_state_error_new(
			        name, "invalid IPv6 address in URI (%s)",
			        USAGE);
			return -1;
		}
		if (host_end + 1 < auth_end)
			port_str = host_end + 2;
	} else {
		host_end = memchr(host, ':', (size_t)(auth_end - host));
		if (host_end != NULL)
			port_str = host_end + 1;
		else
			host_end = auth_end;
	}
	if (host_end == host) {
		*error_r =
		        bf_state_error_new(name, "no host in URI (%s)", USAGE);
		return -1;
	}
	r->host = strndup(host, (size_t)(host_end - host));
	r->port = BF_REDIS_DEFAULT_PORT;
	if (port_str != NULL) {
		if (!parse_uint(port_str, (size_t)(auth_end - port_str), 65535,
		                &value) ||
		    value == 0) {
			*error_r = bf_state_error_new(
			        name, "invalid port in URI (1 to 65535)");
			return -1;
		}
		r->port = (int)value;
	}
	p = auth_end;
	if (*p == '/') {
		p++;
		q = p + strcspn(p, "?");
		if (q > p && !parse_uint(p, (size_t)(q - p), INT_MAX, &value)) {
			*error_r = bf_state_error_new(
			        name, "invalid database number in URI (%s)",
			        USAGE);
			return -1;
		}
		r->db = q > p ? (unsigned int)value : 0;
		p = q;
	}
	if (r->host == NULL)
		return -1;
	return parse_options(r, *p == '?' ? p + 1 : NULL, false, name, error_r);
}

/* "///path/redis.sock[?db=N&options]" (or "/path/...") */
static int parse_unix(struct bf_redis_uri *r, const char *location,
                      char **error_r)
{
	static const char *const name = "redis+unix:";
	const char *query;

	if (strncmp(location, "//", 2) == 0)
		location += 2;
	query = strchr(location, '?');
	if (location[0] != '/' || location[1] == '\0' || location[1] == '?') {
		*error_r = bf_state_error_new(
		        name, "no absolute socket path in URI (%s)", USAGE);
		return -1;
	}
	r->socket_path =
	        pct_decode(location, query != NULL ? (size_t)(query - location)
	                                           : strlen(location));
	if (r->socket_path == NULL) {
		*error_r = bf_state_error_new(
		        name, "invalid socket path in URI (bad %%-escape)");
		return -1;
	}
	return parse_options(r, query != NULL ? query + 1 : NULL, true, name,
	                     error_r);
}

/* What error messages call the store: the server, without credentials. */
char *bf_redis_uri_name(const struct bf_redis_uri *r)
{
	char *name;
	int ret;

	if (r->socket_path != NULL) {
		ret = r->db != 0 ? asprintf(&name, "redis+unix://%s?db=%u",
		                            r->socket_path, r->db)
		                 : asprintf(&name, "redis+unix://%s",
		                            r->socket_path);
	} else {
		ret = asprintf(&name,
		               strchr(r->host, ':') != NULL
		                       ? "redis://[%s]:%d/%u"
		                       : "redis://%s:%d/%u",
		               r->host, r->port, r->db);
	}
	return ret < 0 ? NULL : name;
}

void bf_redis_uri_clear(struct bf_redis_uri *uri)
{
	free(uri->host);
	free(uri->socket_path);
	free(uri->user);
	if (uri->password != NULL) {
		/* Not left behind in freed memory. */
		explicit_bzero(uri->password, strlen(uri->password));
		free(uri->password);
	}
	free(uri->prefix);
	memset(uri, 0, sizeof(*uri));
}

int bf_redis_uri_parse(const char *location, bool unix_socket,
                       struct bf_redis_uri *uri, char **error_r)
{
	int ret;

	memset(uri, 0, sizeof(*uri));
	uri->timeout_ms = BF_REDIS_DEFAULT_TIMEOUT_MS;
	*error_r = NULL;
	ret = unix_socket ? parse_unix(uri, location, error_r)
	                  : parse_tcp(uri, location, error_r);
	if (ret == 0 && uri->prefix == NULL &&
	    (uri->prefix = strdup(BF_REDIS_DEFAULT_PREFIX)) == NULL)
		ret = -1;
	if (ret < 0 && *error_r == NULL)
		*error_r = bf_state_error_new("redis", "out of memory");
	return ret;
}
