/* What backfill's settings mean, whichever Dovecot release read them
   (settings.c: 2.3's plugin {} environment, settings-24.c: 2.4's declared
   settings). */

#include "lib.h"
#include "dovecot-compat.h"
#include "backfill-settings.h"
#include "settings-common.h"

/* Everything of path before its first %-variable, up to the last '/'. */
static const char *path_fixed_part(const char *path)
{
	const char *p, *pct, *slash;

	pct = strchr(path, '%');
	if (pct == NULL)
		return path;
	if (pct == path && (backfill_str_begins(path, "%h") ||
	                    backfill_str_begins(path, "%{home}")))
		return "~";
	slash = NULL;
	for (p = path; p < pct; p++) {
		if (*p == '/')
			slash = p;
	}
	if (slash == NULL)
		return "/";
	return t_strdup_until(path, slash + 1);
}

/* "maildir:/srv/restore/%d/%n/Maildir" (2.3) and
   "maildir:/srv/restore/%{user | domain}/%{user | username}/Maildir" (2.4)
   both give "/srv/restore/". */
const char *backfill_settings_archive_root(const char *raw)
{
	const char *path = raw, *p;

	p = strchr(raw, ':');
	if (p != NULL && (strchr(raw, '/') == NULL || p < strchr(raw, '/')))
		path = p + 1;
	p = strchr(path, ':');
	if (p != NULL)
		path = t_strdup_until(path, p);
	return path_fixed_part(path);
}

/* "mdbox:/srv/restore/%n/mdbox:ALT=/srv/restore-alt/%n" gives
   "/srv/restore-alt/". */
const char *backfill_settings_archive_alt_root(const char *raw)
{
	const char *const *args;

	for (args = t_strsplit(raw, ":"); *args != NULL; args++) {
		if (backfill_str_begins(*args, "ALT="))
			return path_fixed_part(*args + 4);
	}
	return NULL;
}

bool backfill_settings_dedup_parse(const char *value,
                                   enum backfill_dedup *dedup_r)
{
	if (strcmp(value, "user") == 0)
		*dedup_r = BACKFILL_DEDUP_USER;
	else if (strcmp(value, "mailbox") == 0)
		*dedup_r = BACKFILL_DEDUP_MAILBOX;
	else if (strcmp(value, "off") == 0)
		*dedup_r = BACKFILL_DEDUP_OFF;
	else
		return FALSE;
	return TRUE;
}

bool backfill_settings_pop3_hide_parse(const char *value,
                                       enum backfill_pop3_hide *hide_r)
{
	if (strcmp(value, "seen") == 0)
		*hide_r = BACKFILL_POP3_HIDE_SEEN;
	else if (strcmp(value, "all") == 0)
		*hide_r = BACKFILL_POP3_HIDE_ALL;
	else if (strcmp(value, "none") == 0)
		*hide_r = BACKFILL_POP3_HIDE_NONE;
	else
		return FALSE;
	return TRUE;
}

bool backfill_settings_imap_uids_parse(const char *value,
                                       enum backfill_imap_uids *uids_r)
{
	if (strcmp(value, "auto") == 0)
		*uids_r = BACKFILL_IMAP_UIDS_AUTO;
	else if (strcmp(value, "archive") == 0)
		*uids_r = BACKFILL_IMAP_UIDS_ARCHIVE;
	else if (strcmp(value, "live") == 0)
		*uids_r = BACKFILL_IMAP_UIDS_LIVE;
	else
		return FALSE;
	return TRUE;
}
