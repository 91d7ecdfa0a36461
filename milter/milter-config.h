#ifndef MILTER_CONFIG_H
#define MILTER_CONFIG_H

/* backfill-milter.conf: "Key value" lines like opendkim.conf.  Every key
   is documented in conf.d/backfill-milter.conf. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"

#define MILTER_DEFAULT_CONFIG                                                  \
	BACKFILL_SYSCONFDIR "/backfill/backfill-milter.conf"
#define MILTER_DEFAULT_SOCKET "unix:/run/backfill/backfill-milter.sock"
#define MILTER_DEFAULT_STATS  "/run/backfill/backfill-milter.stats"

enum milter_window_mode {
	MILTER_WINDOW_AUTO = 0, /* the window open in the state store */
	MILTER_WINDOW_OFF,      /* never: only strip forged headers */
};

enum milter_duplicate_action {
	MILTER_DUPLICATE_REMOVE = 0,
	MILTER_DUPLICATE_TAG,
};

enum milter_quarantine {
	MILTER_QUARANTINE_HOLD = 0,
	MILTER_QUARANTINE_NONE,
};

struct milter_peer_list;
struct milter_state_pool;

struct milter_config {
	char *path;

	/* Fixed at start (a reload that changes them is logged). */
	char *socket;
	mode_t socket_mode;
	bool socket_mode_set;
	int umask;           /* UMask; -1: leave the process's as it is */
	int syslog_facility; /* LOG_MAIL, LOG_LOCAL0, ... */
	char *stats_file;
	char *socket_group; /* NULL: leave the group as created */
	char *user_id;      /* "user[:group]", NULL: keep running as is */
	char *pid_file;
	bool syslog;

	/* Reloadable. */
	char *state_uri;
	enum milter_window_mode window_mode;
	unsigned int window_refresh_secs;
	unsigned int store_timeout_ms; /* 0: the State URI's own timeouts */
	unsigned int store_retry_secs;
	enum milter_duplicate_action duplicate_action;
	enum milter_quarantine quarantine;
	/* Where the copy of recipients removed as partial duplicates goes,
	   as smfi_addrcpt takes it ("<local@domain>"); NULL: none. */
	char *quarantine_rcpt;
	bool confirm_delivery;
	unsigned int min_age_secs;
	unsigned int dedup_ttl_secs;
	enum milter_log_level log_level;
	char *hostname;
	/* SecretFile: the site secret that keys X-Backfill-Tag; NULL: no
	   tags are made and none is trusted. */
	unsigned char *secret;
	size_t secret_len;
	/* PeerList: this site's other MXs; NULL: none */
	struct milter_peer_list *peers;

	/* Runtime: the state handles for state_uri, closed with the config. */
	struct milter_state_pool *pool;
	int refcount;
};

/* Reads path into a new config (refcount 1, no pool yet).  Returns 0, or
   -1 with a malloc()ed "FILE:LINE: reason" in *error_r. */
int milter_config_read(const char *path, struct milter_config **config_r,
                       char **error_r);

/* The config in force, shared between session threads: a session takes a
   reference per message, so a SIGHUP reload applies from the next
   message and never changes a message half-way. */
void milter_config_set_current(struct milter_config *config);
struct milter_config *milter_config_get(void);
void milter_config_unref(struct milter_config **config);

/* NULL if addr (len bytes, without <>) is one plain address as
   QuarantineRecipient takes it: an ASCII dot-atom local part without the
   routing characters % and !, @, a domain of LDH labels or an address
   literal.  Else why not. */
const char *milter_address_check(const char *addr, size_t len);

#endif
