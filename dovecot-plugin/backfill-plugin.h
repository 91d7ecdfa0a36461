#ifndef BACKFILL_PLUGIN_H
#define BACKFILL_PLUGIN_H

#include "module-context.h"
#include "mail-user.h"

struct bf_state;
struct backfill_merge;
struct client;

enum backfill_dedup {
	BACKFILL_DEDUP_USER = 0,
	BACKFILL_DEDUP_MAILBOX,
	BACKFILL_DEDUP_OFF,
};

enum backfill_pop3_hide {
	BACKFILL_POP3_HIDE_SEEN = 0,
	BACKFILL_POP3_HIDE_ALL,
	BACKFILL_POP3_HIDE_NONE,
};

/* The user's plugin settings, read once when the user is created.  Strings
   live in the user's pool. */
struct backfill_settings {
	/* backfill_archive with Dovecot's %-variables expanded; NULL when
	   unset. */
	const char *archive;
	/* The leading part of the unexpanded backfill_archive path that no
	   %-variable can change: the expanded path must stay below it. */
	const char *archive_root;
	const char *state_uri;
	uint64_t login_budget_ms;
	unsigned int max_parallel;
	/* NULL: no keyword */
	const char *keyword;
	enum backfill_dedup dedup;
	enum backfill_pop3_hide pop3_hide;
};

struct backfill_user {
	union mail_user_module_context module_ctx;
	struct mail_user *user;
	struct backfill_settings set;
	/* Opened on first need; NULL when closed. */
	struct bf_state *state;
	/* A merge still running in background IMAP slices. */
	struct backfill_merge *merge;
	struct timeout *to_slice;
	/* imap: the session's client (struct client), to see whether it
	   is busy; NULL elsewhere */
	struct client *imap_client;
	unsigned int slice_delay_ms;
};

#define BACKFILL_USER_CONTEXT(obj) MODULE_CONTEXT(obj, backfill_user_module)
extern MODULE_CONTEXT_DEFINE(backfill_user_module, &mail_user_module_register);

extern const char *backfill_plugin_version;
void backfill_plugin_init(struct module *module);
void backfill_plugin_deinit(void);

/* Reads the user's plugin settings (strings stay in the user's pool);
   problems are logged and defaults used.  doveadm uses it too. */
void backfill_settings_read(struct mail_user *user,
                            struct backfill_settings *set);

/* Opens the user's state store if not open yet.  Returns 0, or -1 with a
   message for the log in *error_r. */
int backfill_user_state_open(struct backfill_user *buser, const char **error_r);

#endif
