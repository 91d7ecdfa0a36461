/* The Redis backend's URIs:

     redis://[user:password@]host[:port][/db][?options]
     rediss://[user:password@]host[:port][/db][?options]   (TLS)
     redis+unix:///path/redis.sock[?db=N&options]

   options: timeout=MS (host lookup, connect and command timeout, default
   2000),
   prefix=STR (key prefix, default "backfill:"); on a unix socket also
   user=NAME and password=PW (AUTH), db=N; over TLS also cacert=FILE (the
   CAs that sign the server's certificate, default the system's),
   cert=FILE and key=FILE (a client certificate, both or neither),
   sni=NAME (the name sent and checked in the server's certificate,
   default the host).  Values are %-decoded.

   The URI comes from configuration files, but it holds a password: error
   messages never quote it. */

#include "parse.h"
#include "state-redis.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE                                                                  \
	"expected redis://[user:password@]host[:port][/db], "                  \
	"rediss://[user:password@]host[:port][/db] or "                        \
	"redis+unix:///path/redis.sock[?db=N]"

static const char *const scheme_names[] = {
        [BF_REDIS_TCP] = "redis:",
        [BF_REDIS_UNIX] = "redis+unix:",
        [BF_REDIS_TLS] = "rediss:",
};

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

static bool opt_is(const char *opt, const char *eq, const char *name)
{
	return (size_t)(eq - opt) == strlen(name) &&
	       strncmp(opt, name, (size_t)(eq - opt)) == 0;
}

/* A TLS option's value into *value_r: a file must be an absolute path
   (Dovecot's processes run in other directories than where the
   configuration was written), a name printable without spaces. */
static int parse_tls_value(const char *opt, const char *eq, const char *end,
                           bool file, char **value_r, const char *name,
                           char **error_r)
{
	const char *p;

	free(*value_r);
	*value_r = pct_decode(eq + 1, (size_t)(end - eq - 1));
	if (*value_r == NULL || **value_r == '\0' ||
	    (file && **value_r != '/')) {
		*error_r = bf_state_error_new(
		        name, "invalid %.*s in URI (%s)", (int)(eq - opt), opt,
		        file ? "an absolute file name" : "a host name");
		return -1;
	}
	for (p = *value_r; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f) {
			*error_r = bf_state_error_new(
			        name,
			        "invalid %.*s in URI (a space or "
			        "control character)",
			        (int)(eq - opt), opt);
			return -1;
		}
	}
	return 0;
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
   place for them), "&db=N&user=NAME&password=PW"; over TLS
   "&cacert=FILE&cert=FILE&key=FILE&sni=NAME". */
static int parse_options(struct bf_redis_uri *r, const char *query,
                         const char *name, char **error_r)
{
	bool unix_socket = r->transport == BF_REDIS_UNIX;
	bool tls = r->transport == BF_REDIS_TLS;
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
		} else if (tls && opt_is(opt, eq, "cacert")) {
			if (parse_tls_value(opt, eq, end, true, &r->cacert,
			                    name, error_r) < 0)
				return -1;
		} else if (tls && opt_is(opt, eq, "cert")) {
			if (parse_tls_value(opt, eq, end, true, &r->cert, name,
			                    error_r) < 0)
				return -1;
		} else if (tls && opt_is(opt, eq, "key")) {
			if (parse_tls_value(opt, eq, end, true, &r->key, name,
			                    error_r) < 0)
				return -1;
		} else if (tls && opt_is(opt, eq, "sni")) {
			if (parse_tls_value(opt, eq, end, false, &r->sni, name,
			                    error_r) < 0)
				return -1;
		} else {
			*error_r = bf_state_error_new(
			        name,
			        "unknown option \"%.*s\" in URI (supported: "
			        "timeout=MS, prefix=STR%s)",
			        (int)(eq - opt), opt,
			        unix_socket ? ", db=N, user=NAME, password=PW"
			        : tls ? ", cacert=FILE, cert=FILE, key=FILE, "
			                "sni=NAME"
			              : "");
			return -1;
		}
	}
	if ((r->cert == NULL) != (r->key == NULL)) {
		*error_r = bf_state_error_new(
		        name, "a client certificate needs both cert=FILE and "
		              "key=FILE in the URI");
		return -1;
	}
	return 0;
}

/* "//[user:password@]host[:port][/db][?options]".  Error messages never
   quote the URI: it may hold the password. */
static int parse_tcp(struct bf_redis_uri *r, const char *location,
                     char **error_r)
{
	const char *name = scheme_names[r->transport];
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
	return parse_options(r, *p == '?' ? p + 1 : NULL, name, error_r);
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
	return parse_options(r, query != NULL ? query + 1 : NULL, name,
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
		               strchr(r->host, ':') != NULL ? "%s//[%s]:%d/%u"
		                                            : "%s//%s:%d/%u",
		               scheme_names[r->transport], r->host, r->port,
		               r->db);
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
	free(uri->cacert);
	free(uri->cert);
	free(uri->key);
	free(uri->sni);
	memset(uri, 0, sizeof(*uri));
}

int bf_redis_uri_parse(const char *location, enum bf_redis_transport transport,
                       struct bf_redis_uri *uri, char **error_r)
{
	int ret;

	memset(uri, 0, sizeof(*uri));
	uri->transport = transport;
	uri->timeout_ms = BF_REDIS_DEFAULT_TIMEOUT_MS;
	*error_r = NULL;
	ret = transport == BF_REDIS_UNIX ? parse_unix(uri, location, error_r)
	                                 : parse_tcp(uri, location, error_r);
	if (ret == 0 && uri->prefix == NULL &&
	    (uri->prefix = strdup(BF_REDIS_DEFAULT_PREFIX)) == NULL)
		ret = -1;
	if (ret < 0 && *error_r == NULL)
		*error_r = bf_state_error_new("redis", "out of memory");
	return ret;
}
