#ifndef BACKFILL_SETTINGS_H
#define BACKFILL_SETTINGS_H

struct mail_user;
struct event;

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

/* backfill_imap_uids: which IMAP UIDs merged folders show (imap-uids.c,
   docs/imap-caches.md). */
enum backfill_imap_uids {
	/* per folder, from Dovecot's own evidence */
	BACKFILL_IMAP_UIDS_AUTO = 0,
	/* the old server's UIDVALIDITY and UIDs wherever possible */
	BACKFILL_IMAP_UIDS_ARCHIVE,
	/* the live UIDVALIDITY and UIDs everywhere (before issue 19) */
	BACKFILL_IMAP_UIDS_LIVE,
};

/* The user's plugin settings, read once when the user is created.  Strings
   live in the user's pool.  How they are read depends on the Dovecot
   version (plugin {} environment in 2.3); what they mean does not. */
struct backfill_settings {
	/* backfill_archive with Dovecot's %-variables expanded; NULL when
	   unset. */
	const char *archive;
	/* The leading part of the unexpanded backfill_archive path that no
	   %-variable can change: the expanded path must stay below it. */
	const char *archive_root;
	/* The same for its ALT= path; NULL without one. */
	const char *archive_alt_root;
	const char *state_uri;
	uint64_t login_budget_ms;
	/* backfill_confirm_timeout: how long an LMTP delivery waits for the
	   store to record its confirmation for the milter
	   (delivery-confirm.c). */
	uint64_t confirm_timeout_ms;
	unsigned int max_parallel;
	/* NULL: no keyword */
	const char *keyword;
	enum backfill_dedup dedup;
	enum backfill_pop3_hide pop3_hide;
	/* backfill_secret_file: the milters' SecretFile, for checking their
	   tags at delivery; NULL when unset. */
	const char *secret_file;
	enum backfill_imap_uids imap_uids;
	/* Dovecot 2.3 only: backfill_imap_uids had a value that means
	   nothing (NULL: fine).  Unlike the other settings no default is
	   taken for it: guessing wrong either way cannot be undone for the
	   user's IMAP clients, so the merge is postponed until it is
	   fixed. */
	const char *imap_uids_invalid;
	/* backfill_imap_uid_margin: how many UIDs above the archive's UIDNEXT
	   a folder that keeps the archive's UIDVALIDITY leaves free before
	   anything new (a renumbered live message, later mail) takes one:
	   the backup is older than the crash, and the old server gave out
	   UIDs from the backup's UIDNEXT on to mail its clients cached and
	   the crash lost (imap-uids.c, docs/imap-caches.md). */
	uint32_t imap_uid_margin;
};

/* Reads the user's backfill settings into *set_r.  A value that cannot be
   used is logged on event and its default taken: a typo in one setting
   must not keep the user from logging in.  Returns 0, or -1 with *error_r
   when no settings could be had at all (the user then gets no backfill). */
int backfill_settings_get(struct mail_user *user, struct event *event,
                          struct backfill_settings *set_r,
                          const char **error_r);

#endif
