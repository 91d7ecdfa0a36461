#ifndef BACKFILL_DOVECOT_COMPAT_H
#define BACKFILL_DOVECOT_COMPAT_H

/* Where Dovecot 2.3 and 2.4 differ for this plugin, in one place.  The
   rest of the plugin calls these and never tests the release itself
   (the settings are the other place: settings-23.c reads 2.3's plugin {}
   environment, settings-24.c 2.4's declared settings).  The release is the
   one whose headers the plugin is built with: every 2.4.x has an ABI of its
   own, so a build runs only on the Dovecot it was built for. */

#include "var-expand.h"

struct mail_cache;
struct mail_cache_field;
struct mail_user;
struct mailbox;

#if DOVECOT_PREREQ(2, 4, 0)
/* 2.4's str_begins() takes a third argument (the rest of the string). */
#define backfill_str_begins(str, prefix) str_begins_with(str, prefix)
#else
#define backfill_str_begins(str, prefix) str_begins(str, prefix)
#endif

/* Registers cache fields; their names are short and fixed, so 2.4's
   truncation of long names never applies. */
void backfill_cache_register_fields(struct mail_cache *cache,
                                    struct mail_cache_field *fields,
                                    unsigned int count);

/* A second mail user for the same person (same uid, home, variables and
   service user), not yet initialized: what mail_user_dup() gives on 2.4. */
struct mail_user *backfill_user_dup(struct mail_user *user);

/* Where a mail user other than the live one keeps its mail. */
struct backfill_location {
	/* "maildir" or "mdbox" */
	const char *driver;
	const char *path;
	/* the rest of a 2.3 location (":LAYOUT=fs:DIRNAME=..."), "" if none */
	const char *params;
	/* NULL: the driver's default */
	const char *control_dir;
	const char *index_dir;
};

/* A user like backfill_user_dup()'s whose only namespace is the inbox
   namespace at loc, opened the way the archive must be (no temp file
   scans: nothing may be written there), initialized.  Free it with
   backfill_location_user_free(). */
struct backfill_location_user;
int backfill_location_user_open(struct mail_user *user,
                                const struct backfill_location *loc,
                                struct backfill_location_user **luser_r,
                                struct mail_user **mail_user_r,
                                const char **error_r);
void backfill_location_user_free(struct backfill_location_user **luser);

/* The user's pop3_uidl_format, unexpanded. */
const char *backfill_user_pop3_uidl_format(struct mail_user *user);
/* The user's pop3_deleted_flag, or NULL when it is unset or cannot be
   known in this process (only a pop3 process knows it). */
const char *backfill_user_pop3_deleted_flag(struct mail_user *user);

/* Whether the mailbox's settings name a cache field in mail_cache_fields
   or mail_always_cache_fields (2.3: a space or comma separated string,
   2.4: a list), in any case. */
bool backfill_cache_field_configured(struct mailbox *box, const char *name);

/* One variable of a format such as pop3_uidl_format: 2.3 knows it by its
   letter (%u) or long name (%{uid}), 2.4 by its name (%{uid | hex(8)}). */
struct backfill_var {
	char key;
	const char *name;
	const char *value;
};
/* Whether format uses the variable; a format that does not parse uses
   none. */
bool backfill_var_used(const char *format, char key, const char *name);
/* Expands format with vars (ended by an entry with name NULL) into dest.
   Returns 0, or -1 with *error_r (an unknown variable is an error on
   both). */
int backfill_var_expand(string_t *dest, const char *format,
                        const struct backfill_var *vars, const char **error_r);

#endif
