/* Reading backfill-milter.conf and sharing it between session threads. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "backfill-config.h"
#include "config-file.h"
#include "parse.h"
#include "state.h"
#include "milter-config.h"
#include "peer-list.h"
#include "state-pool.h"
#include "tag.h"

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct milter_config *current;

static char *xasprintf(const char *fmt, ...)
        __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list args;
	char *str;

	va_start(args, fmt);
	if (vasprintf(&str, fmt, args) < 0)
		str = NULL;
	va_end(args);
	return str;
}

static int set_string(char **dest, const char *value, char **error_r)
{
	char *copy = strdup(value);

	if (copy == NULL) {
		*error_r = strdup("out of memory");
		return -1;
	}
	free(*dest);
	*dest = copy;
	return 0;
}

static int parse_secs(const char *key, const char *value, unsigned int *secs_r,
                      char **error_r)
{
	const char *error;
	uint64_t ms;

	if (bf_parse_duration_ms(value, 1000, &ms, &error) < 0) {
		*error_r = xasprintf("%s: %s", key, error);
		return -1;
	}
	if (ms / 1000 > 0x7fffffff) {
		*error_r = xasprintf("%s: %s is too long", key, value);
		return -1;
	}
	*secs_r = (unsigned int)(ms / 1000);
	return 0;
}

/* An octal permission value (SocketMode, UMask). */
static int parse_mode(const char *key, const char *value, const char *example,
                      mode_t *mode_r, char **error_r)
{
	char *end;
	unsigned long mode;

	errno = 0;
	mode = strtoul(value, &end, 8);
	if (errno != 0 || *end != '\0' || end == value || mode > 0777) {
		*error_r = xasprintf("%s: expected an octal %s, not '%s'", key,
		                     example, value);
		return -1;
	}
	*mode_r = (mode_t)mode;
	return 0;
}

static int parse_choice(const char *key, const char *value,
                        const char *const *names, int *choice_r, char **error_r)
{
	for (int i = 0; names[i] != NULL; i++) {
		if (strcasecmp(value, names[i]) == 0) {
			*choice_r = i;
			return 0;
		}
	}
	*error_r = xasprintf("%s: expected %s or %s, not '%s'", key, names[0],
	                     names[1], value);
	return -1;
}

static int parse_bool(const char *key, const char *value, bool *value_r,
                      char **error_r)
{
	const char *error;

	if (bf_parse_bool(value, value_r, &error) < 0) {
		*error_r = xasprintf("%s: %s", key, error);
		return -1;
	}
	return 0;
}

/* inet:PORT[@HOST]: a port number or service name, and a host if '@'.
   Without them libmilter fails only at start, with an error that
   speaks of another milter running; -n must catch the typo. */
static bool inet_spec_ok(const char *spec)
{
	size_t port = strspn(spec, "abcdefghijklmnopqrstuvwxyz"
	                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-");

	if (port == 0)
		return false;
	return spec[port] == '\0' ||
	       (spec[port] == '@' && spec[port + 1] != '\0');
}

static int parse_socket(const char *value, char **error_r)
{
	/* The forms libmilter accepts: unix:/path, local:/path, /path,
	   inet:port[@host], inet6:port[@host]. */
	if (value[0] == '/' || strncasecmp(value, "unix:/", 6) == 0 ||
	    strncasecmp(value, "local:/", 7) == 0 ||
	    (strncasecmp(value, "inet:", 5) == 0 && inet_spec_ok(value + 5)) ||
	    (strncasecmp(value, "inet6:", 6) == 0 && inet_spec_ok(value + 6)))
		return 0;
	*error_r = xasprintf("Socket: expected unix:/path or inet:port@host, "
	                     "not '%s'",
	                     value);
	return -1;
}

/* RFC 5322 atext: what a dot-atom local part is made of. */
static bool is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* NULL if local is a dot-atom, else why not. */
static const char *check_local_part(const char *local, size_t len)
{
	if (local[0] == '.' || local[len - 1] == '.')
		return "a dot may not start or end the local part";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)local[i];

		if (c == '.') {
			if (local[i + 1] == '.')
				return "two dots in a row in the local part";
		} else if (c >= 0x80) {
			return "8-bit characters in the local part";
		} else if (c == '"' || c == '\\') {
			return "quoted local parts are not accepted";
		} else if (c == '%' || c == '!') {
			/* allow_percent_hack, swap_bangpath: rewritten only
			   where the domain is local, which differs by host */
			return "'%' and '!' are routing characters that each "
			       "Postfix may rewrite its own way";
		} else if (!is_atext(c)) {
			return "the local part may only have letters, digits, "
			       "dots and #$&'*+-/=?^_`{|}~";
		}
	}
	return NULL;
}

/* NULL if domain is a host name of LDH labels or an address literal
   ([192.0.2.1], [IPv6:2001:db8::1]), else why not. */
static const char *check_domain(const char *domain, size_t len)
{
	size_t label = 0;
	char literal[INET6_ADDRSTRLEN + 5];
	unsigned char buf[sizeof(struct in6_addr)];

	if (domain[0] == '[') {
		const char *ip = domain + 1;
		size_t ip_len = len - 2;
		int family = AF_INET;

		if (domain[len - 1] != ']' || len < 3)
			return "an address literal is [192.0.2.1] or "
			       "[IPv6:2001:db8::1]";
		if (ip_len > 5 && strncasecmp(ip, "IPv6:", 5) == 0) {
			family = AF_INET6;
			ip += 5;
			ip_len -= 5;
		}
		if (ip_len >= sizeof(literal))
			return "the address literal is too long";
		memcpy(literal, ip, ip_len);
		literal[ip_len] = '\0';
		if (inet_pton(family, literal, buf) != 1)
			return "an address literal is [192.0.2.1] or "
			       "[IPv6:2001:db8::1]";
		return NULL;
	}
	if (len > 253)
		return "the domain is longer than 253 characters";
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)domain[i] : '.';

		if (c == '.') {
			if (label == 0)
				return "an empty label in the domain (a dot "
				       "at an end or two in a row)";
			if (domain[i - 1] == '-')
				return "a domain label may not start or end "
				       "with a hyphen";
			if (label > 63)
				return "a domain label is longer than 63 "
				       "characters";
			label = 0;
			continue;
		}
		if (c >= 0x80)
			return "8-bit characters in the domain (write an "
			       "internationalized domain in its xn-- form)";
		if (c == '-' && label == 0)
			return "a domain label may not start or end with a "
			       "hyphen";
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-'))
			return "the domain may only have letters, digits, "
			       "hyphens and dots";
		label++;
	}
	return NULL;
}

const char *milter_address_check(const char *addr, size_t len)
{
	const char *at = len == 0 ? NULL : memrchr(addr, '@', len);
	const char *reason;

	if (at == NULL || at == addr || at == addr + len - 1)
		return "not local@domain";
	if (memchr(addr, '@', len) != at)
		return "more than one @";
	reason = check_local_part(addr, (size_t)(at - addr));
	if (reason == NULL)
		reason = check_domain(at + 1, (size_t)(addr + len - at - 1));
	return reason;
}

/* QuarantineRecipient: one address, local@domain, angle brackets
   optional.  This address receives every removed copy on every MX, so it
   must mean the same thing to every Postfix: only a plain ASCII
   dot-atom@domain is taken.  Postfix would parse much more, differently:
   "ops,q@example.org" is a list whose first address, "ops", is completed
   with each host's own $myorigin; quoted local parts, comments (;:()),
   8-bit and IDN addresses depend on per-host rewriting and SMTPUTF8
   settings.  A value that goes somewhere else, or nowhere, loses the
   copies it was set up to keep. */
static int parse_address(const char *key, const char *value, char **dest,
                         char **error_r)
{
	size_t len = strlen(value);
	const char *addr = value, *at, *reason;
	char *copy;

	if (value[0] == '<' || value[len - 1] == '>') {
		if (len < 2 || value[0] != '<' || value[len - 1] != '>') {
			*error_r = xasprintf("%s: unbalanced <> in '%s'", key,
			                     value);
			return -1;
		}
		addr = value + 1;
		len -= 2;
	}
	at = len == 0 ? NULL : memrchr(addr, '@', len);
	if (at == NULL || at == addr || at == addr + len - 1) {
		*error_r = xasprintf("%s: expected one address like "
		                     "quarantine@example.org, not '%s'",
		                     key, value);
		return -1;
	}
	reason = milter_address_check(addr, len);
	if (reason != NULL) {
		*error_r = xasprintf("%s: expected one plain address like "
		                     "quarantine@example.org, not '%s': %s",
		                     key, value, reason);
		return -1;
	}
	if (asprintf(&copy, "<%.*s>", (int)len, addr) < 0) {
		*error_r = strdup("out of memory");
		return -1;
	}
	free(*dest);
	*dest = copy;
	return 0;
}

static int config_setting(const char *key, const char *value, void *context,
                          char **error_r)
{
	static const char *const window_names[] = {"auto", "off", NULL};
	static const char *const action_names[] = {"remove", "tag", NULL};
	static const char *const quarantine_names[] = {"hold", "none", NULL};
	struct milter_config *config = context;
	int choice;
	mode_t mode;

	if (strcasecmp(key, "Socket") == 0) {
		if (parse_socket(value, error_r) < 0)
			return -1;
		return set_string(&config->socket, value, error_r);
	}
	if (strcasecmp(key, "SocketMode") == 0) {
		if (parse_mode(key, value, "mode like 0660", &mode, error_r) <
		    0)
			return -1;
		config->socket_mode = mode;
		config->socket_mode_set = true;
		return 0;
	}
	if (strcasecmp(key, "UMask") == 0) {
		if (parse_mode(key, value, "mask like 007", &mode, error_r) < 0)
			return -1;
		config->umask = (int)mode;
		return 0;
	}
	if (strcasecmp(key, "SyslogFacility") == 0) {
		if (milter_log_facility_parse(value, &config->syslog_facility) <
		    0) {
			*error_r =
			        xasprintf("SyslogFacility: expected mail, "
			                  "daemon, user or local0 to local7, "
			                  "not '%s'",
			                  value);
			return -1;
		}
		return 0;
	}
	if (strcasecmp(key, "StatsFile") == 0) {
		if (value[0] != '/') {
			*error_r = xasprintf("StatsFile: expected an absolute "
			                     "path, not '%s'",
			                     value);
			return -1;
		}
		return set_string(&config->stats_file, value, error_r);
	}
	if (strcasecmp(key, "SocketGroup") == 0)
		return set_string(&config->socket_group, value, error_r);
	if (strcasecmp(key, "UserID") == 0)
		return set_string(&config->user_id, value, error_r);
	if (strcasecmp(key, "PidFile") == 0) {
		/* The daemon changes to "/" when it detaches. */
		if (value[0] != '/') {
			*error_r = xasprintf("PidFile: expected an absolute "
			                     "path, not '%s'",
			                     value);
			return -1;
		}
		return set_string(&config->pid_file, value, error_r);
	}
	if (strcasecmp(key, "Syslog") == 0)
		return parse_bool(key, value, &config->syslog, error_r);
	if (strcasecmp(key, "State") == 0) {
		/* Checked as the store would parse it, without opening it:
		   a typo found only when the store is opened leaves the
		   milter accepting every message unchecked, with one log
		   line at start. */
		char *uri_error;
		if (bf_state_uri_check(value, &uri_error) < 0) {
			*error_r = xasprintf("State: %s (expected a URI like "
			                     "sqlite:/path or redis://host)",
			                     uri_error);
			free(uri_error);
			return -1;
		}
		return set_string(&config->state_uri, value, error_r);
	}
	if (strcasecmp(key, "Window") == 0) {
		if (parse_choice(key, value, window_names, &choice, error_r) <
		    0)
			return -1;
		config->window_mode = (enum milter_window_mode)choice;
		return 0;
	}
	if (strcasecmp(key, "WindowRefresh") == 0) {
		if (parse_secs(key, value, &config->window_refresh_secs,
		               error_r) < 0)
			return -1;
		if (config->window_refresh_secs == 0) {
			*error_r = strdup("WindowRefresh: must be at least 1s");
			return -1;
		}
		return 0;
	}
	if (strcasecmp(key, "StoreTimeout") == 0) {
		const char *error;
		uint64_t ms;

		if (bf_parse_duration_ms(value, 1000, &ms, &error) < 0) {
			*error_r = xasprintf("StoreTimeout: %s", error);
			return -1;
		}
		if (ms > 300 * 1000) {
			/* Postfix's milter_content_timeout: a wait past it
			   makes Postfix pass the message untagged */
			*error_r = xasprintf("StoreTimeout: %s is longer than "
			                     "Postfix's milter timeout (300s)",
			                     value);
			return -1;
		}
		config->store_timeout_ms = (unsigned int)ms;
		return 0;
	}
	if (strcasecmp(key, "StoreRetry") == 0) {
		if (parse_secs(key, value, &config->store_retry_secs, error_r) <
		    0)
			return -1;
		if (config->store_retry_secs == 0) {
			*error_r = strdup("StoreRetry: must be at least 1s");
			return -1;
		}
		return 0;
	}
	if (strcasecmp(key, "DuplicateAction") == 0) {
		if (parse_choice(key, value, action_names, &choice, error_r) <
		    0)
			return -1;
		config->duplicate_action = (enum milter_duplicate_action)choice;
		return 0;
	}
	if (strcasecmp(key, "Quarantine") == 0) {
		if (parse_choice(key, value, quarantine_names, &choice,
		                 error_r) < 0)
			return -1;
		config->quarantine = (enum milter_quarantine)choice;
		return 0;
	}
	if (strcasecmp(key, "QuarantineRecipient") == 0)
		return parse_address(key, value, &config->quarantine_rcpt,
		                     error_r);
	if (strcasecmp(key, "ConfirmDelivery") == 0)
		return parse_bool(key, value, &config->confirm_delivery,
		                  error_r);
	if (strcasecmp(key, "MinAge") == 0)
		return parse_secs(key, value, &config->min_age_secs, error_r);
	if (strcasecmp(key, "DedupTTL") == 0) {
		if (parse_secs(key, value, &config->dedup_ttl_secs, error_r) <
		    0)
			return -1;
		if (config->dedup_ttl_secs == 0) {
			*error_r = strdup("DedupTTL: must be at least 1s");
			return -1;
		}
		return 0;
	}
	if (strcasecmp(key, "LogLevel") == 0) {
		if (milter_log_level_parse(value, &config->log_level) < 0) {
			*error_r = xasprintf("LogLevel: expected error, "
			                     "warning, info or debug, not '%s'",
			                     value);
			return -1;
		}
		return 0;
	}
	if (strcasecmp(key, "Hostname") == 0)
		return set_string(&config->hostname, value, error_r);
	if (strcasecmp(key, "SecretFile") == 0) {
		if (config->secret != NULL) {
			OPENSSL_cleanse(config->secret, config->secret_len);
			free(config->secret);
			config->secret = NULL;
		}
		return bf_secret_read(value, &config->secret,
		                      &config->secret_len, error_r);
	}
	/* every PeerList line adds its peers (peer-list.h) */
	if (strcasecmp(key, "PeerList") == 0)
		return milter_peer_list_parse(value, &config->peers, error_r);
	*error_r = xasprintf("unknown key '%s'", key);
	return -1;
}

static void config_free(struct milter_config *config)
{
	if (config->pool != NULL)
		milter_state_pool_free(&config->pool);
	free(config->path);
	free(config->socket);
	free(config->socket_group);
	free(config->user_id);
	free(config->pid_file);
	free(config->stats_file);
	free(config->state_uri);
	free(config->quarantine_rcpt);
	free(config->hostname);
	if (config->secret != NULL) {
		OPENSSL_cleanse(config->secret, config->secret_len);
		free(config->secret);
	}
	milter_peer_list_free(&config->peers);
	free(config);
}

int milter_config_read(const char *path, struct milter_config **config_r,
                       char **error_r)
{
	struct milter_config *config = calloc(1, sizeof(*config));
	char host[256];

	if (config == NULL) {
		*error_r = strdup("out of memory");
		return -1;
	}
	config->refcount = 1;
	config->socket_mode = 0660;
	config->umask = -1;
	config->syslog = true;
	config->syslog_facility = LOG_MAIL;
	config->window_mode = MILTER_WINDOW_AUTO;
	config->window_refresh_secs = 5;
	config->store_timeout_ms = 2000;
	config->store_retry_secs = 30;
	config->duplicate_action = MILTER_DUPLICATE_REMOVE;
	config->quarantine = MILTER_QUARANTINE_HOLD;
	config->confirm_delivery = true;
	config->min_age_secs = 600;
	config->dedup_ttl_secs = 30 * 86400;
	config->log_level = MILTER_LOG_INFO;
	if ((config->path = strdup(path)) == NULL ||
	    (config->socket = strdup(MILTER_DEFAULT_SOCKET)) == NULL ||
	    (config->state_uri = strdup(BF_STATE_DEFAULT_URI)) == NULL ||
	    (config->stats_file = strdup(MILTER_DEFAULT_STATS)) == NULL) {
		config_free(config);
		*error_r = strdup("out of memory");
		return -1;
	}
	if (bf_config_file_read(path, config_setting, config, error_r) < 0) {
		config_free(config);
		return -1;
	}
	if (config->hostname == NULL) {
		if (gethostname(host, sizeof(host)) < 0)
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		if ((config->hostname = strdup(host)) == NULL) {
			config_free(config);
			*error_r = strdup("out of memory");
			return -1;
		}
	}
	/* opendkim: without its own mode the socket follows UMask */
	if (config->umask >= 0 && !config->socket_mode_set)
		config->socket_mode = 0777 & ~(mode_t)config->umask;
	if (config->peers != NULL && config->secret == NULL) {
		/* an address alone proves nothing: local webmail or a
		   relayed sender on a peer could write any tag */
		*error_r = xasprintf("%s: PeerList needs SecretFile (the "
		                     "site secret that proves a tag was made "
		                     "by one of this site's milters)",
		                     path);
		config_free(config);
		return -1;
	}
	if (config->secret != NULL &&
	    strcspn(config->hostname, " \t;=") != strlen(config->hostname)) {
		*error_r = xasprintf("%s: Hostname '%s' cannot name this host "
		                     "in X-Backfill-Tag (blanks, ';' or '=')",
		                     path, config->hostname);
		config_free(config);
		return -1;
	}
	*config_r = config;
	return 0;
}

void milter_config_set_current(struct milter_config *config)
{
	struct milter_config *old;

	pthread_mutex_lock(&current_lock);
	old = current;
	current = config;
	pthread_mutex_unlock(&current_lock);
	if (old != NULL)
		milter_config_unref(&old);
}

struct milter_config *milter_config_get(void)
{
	struct milter_config *config;

	pthread_mutex_lock(&current_lock);
	config = current;
	if (config != NULL)
		config->refcount++;
	pthread_mutex_unlock(&current_lock);
	return config;
}

void milter_config_unref(struct milter_config **_config)
{
	struct milter_config *config = *_config;
	bool last;

	if (config == NULL)
		return;
	*_config = NULL;
	pthread_mutex_lock(&current_lock);
	last = --config->refcount == 0;
	pthread_mutex_unlock(&current_lock);
	if (last)
		config_free(config);
}
