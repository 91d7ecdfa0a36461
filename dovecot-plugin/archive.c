/* Opening a restored archive read-only, with the old server's UIDs.

   The archive is usually a snapshot: read-only, often owned by root.
   Dovecot wants to lock and write dovecot-uidlist and its indexes there.
   Opening it with INDEX=MEMORY logs errors and shows phantom messages;
   pointing CONTROL= at an empty directory silently renumbers every message
   (new UIDVALIDITY), which would change every POP3 UIDL the old server
   showed.  So the small control files are copied once into a private,
   writable directory of the live user and Dovecot is pointed there with
   CONTROL= and INDEX=.  The copy is kept across logins: UIDs that Dovecot
   assigns to files missing from the old uidlist must stay the same from
   one login to the next, since the merge cursor is an archive UID. */

#include "lib.h"
#include "str.h"
#include "file-copy.h"
#include "mkdir-parents.h"
#include "mail-storage-private.h"
#include "mail-storage-service.h"
#include "mail-namespace.h"
#include "dovecot-compat.h"
#include "backfill-settings.h"
#include "archive.h"
#include "maildir-storage.h"
#include "mailbox-list-private.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define BACKFILL_PRIVATE_DIR   ".backfill"
#define BACKFILL_COPIED_MARKER "backfill-copied"

struct archive_location {
	const char *driver;
	const char *path;
	/* ":PARAM=..." parts we keep (LAYOUT=, DIRNAME=, ...) */
	const char *params;
};

static void archive_location_parse(const char *location,
                                   struct archive_location *loc_r)
{
	const char *p = strchr(location, ':');

	i_zero(loc_r);
	if (p == NULL || strchr(location, '/') < p) {
		/* a bare path: Maildir, like Dovecot's own autodetection
		   would most often decide */
		loc_r->driver = "maildir";
		p = location;
	} else {
		loc_r->driver = t_strdup_until(location, p);
		p++;
	}
	const char *end = strchr(p, ':');
	if (end == NULL) {
		loc_r->path = p;
		loc_r->params = "";
	} else {
		loc_r->path = t_strdup_until(p, end);
		loc_r->params = end;
	}
}

/* Removes parameters we set ourselves (CONTROL, INDEX, VOLATILEDIR,
   ALTNOCHECK). */
static const char *archive_params_filter(const char *params)
{
	string_t *str = t_str_new(64);
	const char *const *args = t_strsplit(params, ":");
	bool alt = FALSE;

	for (; *args != NULL; args++) {
		if (**args == '\0' || backfill_str_begins(*args, "CONTROL=") ||
		    backfill_str_begins(*args, "INDEX=") ||
		    backfill_str_begins(*args, "INDEXPVT=") ||
		    backfill_str_begins(*args, "VOLATILEDIR=") ||
		    strcmp(*args, "ALTNOCHECK") == 0)
			continue;
		if (backfill_str_begins(*args, "ALT="))
			alt = TRUE;
		str_printfa(str, ":%s", *args);
	}
	/* Without it dbox replaces the archive's dbox-alt-root symlink
	   (the old server's ALT path) with one to this ALT: a write into the
	   archive, and an error logged at every opening of a read-only one. */
	if (alt)
		str_append(str, ":ALTNOCHECK");
	return str_c(str);
}

static const char *home_expand(struct mail_user *user, const char *path)
{
	const char *home;

	if (path[0] != '~' || (path[1] != '/' && path[1] != '\0'))
		return path;
	if (mail_user_get_home(user, &home) <= 0)
		return path;
	return t_strconcat(home, path + 1, NULL);
}

/* Whether the archive path, below the fixed part of backfill_archive
   (root), goes through a symlink: real_path is not where the path's own
   components lead from real_root.  The fixed part is the operator's
   layout and may hold symlinks; what the variables made, and the
   archive directory itself, come with the restore: a home restored as a
   relative symlink to another user's (../vic/Maildir) stays inside the
   archive root and would merge that user's mail.  This also refuses every
   user of a domain whose directory (/srv/restore/%d/...) an operator made
   a symlink to another disk: telling that from a planted link would need
   trusting the link's owner, and all users share the mail uid, so the
   log line and the docs say to bind-mount such a directory instead (a
   mount point is no symlink; test_merge_symlinks). */
static bool archive_path_linked(const char *root, const char *real_root,
                                const char *path, const char *real_path)
{
	size_t len = strlen(root);
	const char *const *parts;
	string_t *want;

	if (strncmp(path, root, len) != 0)
		return FALSE;
	want = t_str_new(256);
	str_append(want, real_root);
	for (parts = t_strsplit(path + len, "/"); *parts != NULL; parts++) {
		if (**parts == '\0' || strcmp(*parts, ".") == 0)
			continue;
		if (strcmp(*parts, "..") == 0)
			return TRUE;
		if (str_len(want) == 0 || str_c(want)[str_len(want) - 1] != '/')
			str_append_c(want, '/');
		str_append(want, *parts);
	}
	return strcmp(str_c(want), real_path) != 0;
}

/* path (the archive's, or its ALT= storage's) must lie below root, the
   fixed part of its setting, without a symlink on the way there.
   Returns 0 with its real path, -1 when it is refused. */
static int archive_dir_check(struct mail_user *user, const char *path,
                             const char *real_path, const char *root_set,
                             const char **error_r)
{
	char real_root[PATH_MAX];
	const char *root = home_expand(user, root_set);

	if (realpath(root, real_root) == NULL) {
		*error_r = t_strdup_printf("archive root %s does not exist: %m",
		                           root);
		return -1;
	}
	size_t len = strlen(real_root);
	if (strcmp(real_path, real_root) != 0 &&
	    (strncmp(real_path, real_root, len) != 0 ||
	     (real_root[len - 1] != '/' && real_path[len] != '/'))) {
		*error_r = t_strdup_printf(
		        "archive path %s resolves to %s, outside the archive root %s: refusing it (check the user name and backfill_archive; a directory restored to another disk must be bind-mounted there, a symlink is never followed)",
		        path, real_path, real_root);
		return -1;
	}
	if (archive_path_linked(root, real_root, path, real_path)) {
		*error_r = t_strdup_printf(
		        "archive path %s resolves to %s: refusing it, a symlink is never followed below the archive root %s (restore the archive as a directory, or bind-mount one restored to another disk there; for an alias domain, point its users' backfill_archive at the real path)",
		        path, real_path, real_root);
		return -1;
	}
	return 0;
}

/* mdbox's alternate storage (ALT=): Dovecot reads the storage files the
   map index names from ALT/storage/ when they are not in storage/, so a
   user's ALT directory is held to the same rule as the archive's own: a
   restore that made it a symlink to another user's (../vic) would merge
   that user's mail.  A missing one is not an error: Dovecot finds
   nothing there either. */
static int archive_alt_check(struct mail_user *user,
                             const struct backfill_settings *set,
                             const struct archive_location *loc,
                             const char **error_r)
{
	const char *const *args, *alt = NULL;
	char real_alt[PATH_MAX];
	struct stat st;

	if (strcmp(loc->driver, "mdbox") != 0)
		return 0;
	for (args = t_strsplit(loc->params, ":"); *args != NULL; args++) {
		if (backfill_str_begins(*args, "ALT="))
			alt = *args + 4;
	}
	if (alt == NULL || alt[0] == '\0')
		return 0;
	alt = home_expand(user, alt);
	if (realpath(alt, real_alt) == NULL || stat(real_alt, &st) < 0 ||
	    !S_ISDIR(st.st_mode))
		return 0;
	if (archive_dir_check(
	            user, alt, real_alt,
	            set->archive_alt_root != NULL ? set->archive_alt_root : alt,
	            error_r) < 0) {
		*error_r = t_strdup_printf("ALT storage: %s", *error_r);
		return -1;
	}
	return 0;
}

int backfill_archive_resolve(struct mail_user *user,
                             const struct backfill_settings *set,
                             const char **path_r, const char **error_r)
{
	struct archive_location loc;
	char real_path[PATH_MAX];
	const char *path;
	struct stat st;

	if (set->archive == NULL || set->archive[0] == '\0')
		return 0;
	archive_location_parse(set->archive, &loc);
	if (strcmp(loc.driver, "maildir") != 0 &&
	    strcmp(loc.driver, "mdbox") != 0) {
		*error_r = t_strdup_printf(
		        "backfill_archive=%s: only maildir and mdbox archives are supported",
		        set->archive);
		return -1;
	}
	path = home_expand(user, loc.path);
	if (realpath(path, real_path) == NULL || stat(real_path, &st) < 0 ||
	    !S_ISDIR(st.st_mode)) {
		/* nothing restored for this user */
		return 0;
	}

	/* Usernames are whatever the userdb says: "../", dots, plus signs.
	   Whatever the variables expanded to, the archive must lie below the
	   fixed part of the configured path. */
	if (archive_dir_check(user, path, real_path, set->archive_root,
	                      error_r) < 0 ||
	    archive_alt_check(user, set, &loc, error_r) < 0)
		return -1;
	*path_r = t_strdup(real_path);
	return 1;
}

static int copy_if_exists(const char *src, const char *dest,
                          const char **error_r)
{
	struct stat st;

	/* a symlink is never followed: nothing outside the archive is read
	   (the merge skips and logs a symlinked folder) */
	if (lstat(src, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		*error_r = t_strdup_printf("lstat %s: %m", src);
		return -1;
	}
	if (!S_ISREG(st.st_mode))
		return 0;
	if (file_copy(src, dest, FALSE) < 0) {
		*error_r = t_strdup_printf("copy %s to %s: %m", src, dest);
		return -1;
	}
	/* file_copy() returns 0 when src does not exist: fine, not every
	   folder has keywords */
	return 0;
}

static int copy_folder_control(const char *src_dir, const char *dest_dir,
                               const char **error_r)
{
	if (mkdir_parents(dest_dir, 0700) < 0 && errno != EEXIST) {
		*error_r = t_strdup_printf("mkdir %s: %m", dest_dir);
		return -1;
	}
	if (copy_if_exists(t_strconcat(src_dir, "/dovecot-uidlist", NULL),
	                   t_strconcat(dest_dir, "/dovecot-uidlist", NULL),
	                   error_r) < 0 ||
	    copy_if_exists(t_strconcat(src_dir, "/dovecot-keywords", NULL),
	                   t_strconcat(dest_dir, "/dovecot-keywords", NULL),
	                   error_r) < 0)
		return -1;
	return 0;
}

/* The UIDVALIDITY in a dovecot-uidlist's header ("3 V1234 N5 G..."), 0
   when there is none. */
static uint32_t uidlist_validity(const char *dir)
{
	char buf[128];
	uint32_t uidvalidity = 0;
	const char *path = t_strconcat(dir, "/dovecot-uidlist", NULL);
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return 0;
	if (fgets(buf, sizeof(buf), f) != NULL) {
		const char *v = strstr(buf, " V");
		if (v != NULL && str_parse_uint32(v + 2, &uidvalidity, &v) < 0)
			uidvalidity = 0;
	}
	(void)fclose(f);
	return uidvalidity;
}

/* A folder's control files are copied once, before Dovecot first opens
   it, and then kept: UIDs that Dovecot gives files missing from the old
   uidlist must stay the same from one login to the next.  Each folder has
   its own marker, so that a folder restored after the first copy (a
   staged restore) gets its copy too: without one, Dovecot makes up a new
   UIDVALIDITY for it and every POP3 UIDL of it changes.  copied_before:
   an older version marked the whole tree copied at once; a folder it
   copied is kept if its UIDVALIDITY is still the archive's. */
static int folder_control_once(const char *src_dir, const char *dest_dir,
                               bool copied_before, const char **error_r)
{
	const char *marker =
	        t_strconcat(dest_dir, "/" BACKFILL_COPIED_MARKER, NULL);
	struct stat st;

	if (access(marker, F_OK) == 0)
		return 0;
	if (!copied_before || stat(dest_dir, &st) < 0 ||
	    (uidlist_validity(src_dir) != 0 &&
	     uidlist_validity(src_dir) != uidlist_validity(dest_dir))) {
		if (copy_folder_control(src_dir, dest_dir, error_r) < 0)
			return -1;
	}
	/* Only now may Dovecot use the copy: a crash above leaves no marker
	   and the next login copies again. */
	int fd = creat(marker, 0600);
	if (fd < 0) {
		*error_r = t_strdup_printf("creat %s: %m", marker);
		return -1;
	}
	i_close_fd(&fd);
	return 0;
}

/* Layout that Dovecot expects with CONTROL= for Maildir++: INBOX's files
   go to CTL/.INBOX/, a folder's to CTL/.Folder/, subscriptions to CTL/. */
static int copy_control_files(const char *archive, const char *ctl,
                              const char **error_r)
{
	const char *marker = t_strconcat(ctl, "/" BACKFILL_COPIED_MARKER, NULL);
	bool copied_before = access(marker, F_OK) == 0;
	struct dirent *d;
	DIR *dir;
	int ret = 0;

	if (!copied_before &&
	    copy_if_exists(t_strconcat(archive, "/subscriptions", NULL),
	                   t_strconcat(ctl, "/subscriptions", NULL),
	                   error_r) < 0)
		return -1;
	if (folder_control_once(archive, t_strconcat(ctl, "/.INBOX", NULL),
	                        copied_before, error_r) < 0)
		return -1;

	dir = opendir(archive);
	if (dir == NULL) {
		*error_r = t_strdup_printf("opendir %s: %m", archive);
		return -1;
	}
	while (ret == 0 && (d = readdir(dir)) != NULL) {
		if (d->d_name[0] != '.' || strcmp(d->d_name, ".") == 0 ||
		    strcmp(d->d_name, "..") == 0)
			continue;
		const char *src = t_strconcat(archive, "/", d->d_name, NULL);
		struct stat st;
		if (lstat(src, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		ret = folder_control_once(
		        src, t_strconcat(ctl, "/", d->d_name, NULL),
		        copied_before, error_r);
	}
	(void)closedir(dir);
	if (ret < 0 || copied_before)
		return ret;
	/* the subscriptions are copied */
	int fd = creat(marker, 0600);
	if (fd < 0) {
		*error_r = t_strdup_printf("creat %s: %m", marker);
		return -1;
	}
	i_close_fd(&fd);
	return 0;
}

/* A symlinked directory is not read (its folder is skipped and logged by
   the merge): copying another user's indexes would already read them. */
static bool dir_is_link(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

static int copy_prefixed(const char *src_dir, const char *dest_dir,
                         const char *prefix, const char **error_r)
{
	struct dirent *d;
	DIR *dir;
	int ret = 0;

	if (dir_is_link(src_dir))
		return 0;
	dir = opendir(src_dir);
	if (dir == NULL) {
		if (errno == ENOENT)
			return 0;
		*error_r = t_strdup_printf("opendir %s: %m", src_dir);
		return -1;
	}
	if (mkdir_parents(dest_dir, 0700) < 0 && errno != EEXIST) {
		*error_r = t_strdup_printf("mkdir %s: %m", dest_dir);
		(void)closedir(dir);
		return -1;
	}
	while (ret == 0 && (d = readdir(dir)) != NULL) {
		if (!backfill_str_begins(d->d_name, prefix))
			continue;
		ret = copy_if_exists(
		        t_strconcat(src_dir, "/", d->d_name, NULL),
		        t_strconcat(dest_dir, "/", d->d_name, NULL), error_r);
	}
	(void)closedir(dir);
	return ret;
}

/* mailboxes/<name>/dbox-Mails/dovecot.index* -> IDX/mailboxes/<name>/,
   recursively: folder hierarchies are directory hierarchies. */
static int copy_mdbox_mailboxes(const char *src, const char *dest,
                                const char **error_r)
{
	struct dirent *d;
	DIR *dir;
	int ret = 0;

	if (dir_is_link(src))
		return 0;
	if (copy_prefixed(t_strconcat(src, "/dbox-Mails", NULL), dest,
	                  "dovecot.index", error_r) < 0)
		return -1;
	dir = opendir(src);
	if (dir == NULL)
		return 0;
	while (ret == 0 && (d = readdir(dir)) != NULL) {
		if (d->d_name[0] == '.' || strcmp(d->d_name, "dbox-Mails") == 0)
			continue;
		const char *sub = t_strconcat(src, "/", d->d_name, NULL);
		struct stat st;
		if (lstat(sub, &st) < 0 || !S_ISDIR(st.st_mode))
			continue;
		ret = copy_mdbox_mailboxes(
		        sub, t_strconcat(dest, "/", d->d_name, NULL), error_r);
	}
	(void)closedir(dir);
	return ret;
}

/* mdbox keeps UIDs in its indexes: a read-only mdbox without them shows
   nothing.  Copied once, like Maildir's control files. */
static int copy_mdbox_indexes(const char *archive, const char *idx,
                              const char **error_r)
{
	const char *marker = t_strconcat(idx, "/" BACKFILL_COPIED_MARKER, NULL);

	if (access(marker, F_OK) == 0)
		return 0;
	if (copy_mdbox_mailboxes(t_strconcat(archive, "/mailboxes", NULL),
	                         t_strconcat(idx, "/mailboxes", NULL),
	                         error_r) < 0 ||
	    copy_prefixed(t_strconcat(archive, "/storage", NULL),
	                  t_strconcat(idx, "/storage", NULL),
	                  "dovecot.map.index", error_r) < 0 ||
	    copy_prefixed(archive, idx, "dovecot.list.index", error_r) < 0 ||
	    copy_prefixed(archive, idx, "dovecot.mailbox.log", error_r) < 0)
		return -1;
	int fd = creat(marker, 0600);
	if (fd < 0) {
		*error_r = t_strdup_printf("creat %s: %m", marker);
		return -1;
	}
	i_close_fd(&fd);
	return 0;
}

/* One level of a private directory: created 0700 if missing, never
   through a symlink (O_NOFOLLOW), and only used when it is ours and
   nobody else may write it.  Returns the directory's fd, or -1. */
static int private_subdir(int parent_fd, const char *parent, const char *name,
                          const char **error_r)
{
	const char *path = t_strconcat(parent, "/", name, NULL);
	struct stat st;
	int fd;

	if (mkdirat(parent_fd, name, 0700) < 0 && errno != EEXIST) {
		*error_r = t_strdup_printf("mkdir %s: %m", path);
		return -1;
	}
	fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (fd < 0) {
		*error_r = t_strdup_printf(
		        "%s: %m (a symlink or not a directory: refusing it)",
		        path);
		return -1;
	}
	if (fstat(fd, &st) < 0 || st.st_uid != geteuid() ||
	    (st.st_mode & 0077) != 0) {
		*error_r = t_strdup_printf(
		        "%s is not a private directory of uid %ld (owner %ld, mode %04o): refusing it (remove it; backfill makes it again)",
		        path, (long)geteuid(), (long)st.st_uid,
		        (unsigned int)(st.st_mode & 07777));
		i_close_fd(&fd);
		return -1;
	}
	return fd;
}

/* Creates base/rel level by level with private_subdir(); base itself is
   the operator's (a home, the state store's directory) and must exist. */
static int private_path(const char *base, const char *rel, const char **path_r,
                        const char **error_r)
{
	const char *path = base;
	int fd = open(base, O_RDONLY | O_DIRECTORY);

	if (fd < 0) {
		*error_r = t_strdup_printf("%s: %m", base);
		return -1;
	}
	for (const char *const *p = t_strsplit(rel, "/"); *p != NULL; p++) {
		if (**p == '\0')
			continue;
		int sub = private_subdir(fd, path, *p, error_r);
		i_close_fd(&fd);
		if (sub < 0)
			return -1;
		fd = sub;
		path = t_strconcat(path, "/", *p, NULL);
	}
	i_close_fd(&fd);
	*path_r = path;
	return 0;
}

/* A user name as one safe path component. */
static const char *username_component(const char *username)
{
	string_t *str = t_str_new(64);

	for (const unsigned char *p = (const unsigned char *)username;
	     *p != '\0'; p++) {
		if (i_isalnum(*p) || *p == '-' || *p == '_' || *p == '@' ||
		    (*p == '.' && p != (const unsigned char *)username))
			str_append_c(str, *p);
		else
			str_printfa(str, "%%%02x", *p);
	}
	return str_c(str);
}

/* Where the archive's private control and index copies live: the user's
   home, else a directory per user next to the SQLite state store, which
   the operator made and controls.  Never a shared temp directory: a fixed
   name there lets any local user plant a symlink and have the merge write
   through it as the mail uid.  Returns 1, 0 when there is no such place
   (*error_r says what to set: the merge is postponed), -1 on error. */
static int private_dir(struct mail_user *user,
                       const struct backfill_settings *set, const char **dir_r,
                       const char **error_r)
{
	const char *home, *state_dir, *slash;
	int ret;

	if (mail_user_get_home(user, &home) > 0 && home[0] == '/') {
		/* A first login may come before Dovecot has made the home
		   (it makes it lazily, with the first mailbox): make it the
		   way Dovecot would rather than fail the user's first merge. */
		if (mail_user_home_mkdir(user) < 0) {
			*error_r = t_strdup_printf(
			        "%s: cannot create the home directory (see the error before)",
			        home);
			return -1;
		}
		ret = private_path(home, BACKFILL_PRIVATE_DIR, dir_r, error_r);
		return ret < 0 ? -1 : 1;
	}
	if (set->state_uri == NULL ||
	    !backfill_str_begins(set->state_uri, "sqlite:") ||
	    set->state_uri[7] != '/' ||
	    (slash = strrchr(set->state_uri + 7, '/')) == NULL) {
		*error_r =
		        "merge postponed: the user has no home directory and the state store is not a local SQLite file, so there is no private place for the archive's index copy: give the user a home (userdb home or mail_home)";
		return 0;
	}
	state_dir = t_strdup_until(set->state_uri + 7, slash);
	if (state_dir[0] == '\0')
		state_dir = "/";
	if (private_path(state_dir,
	                 t_strconcat("archive-cache/",
	                             username_component(user->username), NULL),
	                 dir_r, error_r) < 0)
		return -1;
	return 1;
}

int backfill_archive_open(struct mail_user *user,
                          const struct backfill_settings *set,
                          struct backfill_archive **archive_r,
                          const char **error_r)
{
	struct archive_location loc;
	struct backfill_location bloc;
	struct backfill_location_user *luser;
	struct backfill_archive *archive;
	struct mail_user *auser;
	const char *path, *base, *ctl, *idx, *error;
	int ret;

	if ((ret = backfill_archive_resolve(user, set, &path, error_r)) <= 0)
		return ret;
	archive_location_parse(set->archive, &loc);

	/* no private place (0): postponed, with what to set */
	if (private_dir(user, set, &base, error_r) <= 0)
		return -1;
	if (private_path(base, "archive-control", &ctl, error_r) < 0 ||
	    private_path(base, "archive-index", &idx, error_r) < 0)
		return -1;
	i_zero(&bloc);
	bloc.driver = loc.driver;
	bloc.path = path;
	bloc.params = archive_params_filter(loc.params);
	bloc.index_dir = idx;
	if (strcmp(loc.driver, "mdbox") == 0) {
		if (copy_mdbox_indexes(path, idx, error_r) < 0)
			return -1;
	} else {
		if (copy_control_files(path, ctl, error_r) < 0)
			return -1;
		bloc.control_dir = ctl;
	}

	if (backfill_location_user_open(user, &bloc, &luser, &auser, &error) <
	    0) {
		*error_r =
		        t_strdup_printf("opening archive %s: %s", path, error);
		return -1;
	}
	archive = i_new(struct backfill_archive, 1);
	archive->luser = luser;
	archive->user = auser;
	archive->ns = mail_namespace_find_inbox(auser->namespaces);
	archive->path = i_strdup(path);
	*archive_r = archive;
	return 1;
}

void backfill_archive_close(struct backfill_archive **_archive)
{
	struct backfill_archive *archive = *_archive;

	if (archive == NULL)
		return;
	*_archive = NULL;
	archive->user = NULL;
	backfill_location_user_free(&archive->luser);
	i_free(archive->path);
	i_free(archive);
}

/* ---- the archive's signature ---- */

/* Deep enough for any folder hierarchy; a deeper tree is not an archive
   Dovecot wrote. */
#define SIGNATURE_MAX_DEPTH 64

struct signature {
	uint64_t sum, xor;
	unsigned int entries;
};

static uint64_t fnv1a(uint64_t h, const void *data, size_t size)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < size; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* One entry: its path and what a restore changes (the inode, size and
   ctime: cp -a and rsync -a set mtimes back, never ctimes).  Sum and xor
   make the digest independent of readdir order. */
static void signature_add(struct signature *sig, const char *relpath,
                          const struct stat *st)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	uint64_t fields[6] = {
	        (uint64_t)st->st_ino,          (uint64_t)st->st_mode,
	        (uint64_t)st->st_size,         (uint64_t)st->st_ctim.tv_sec,
	        (uint64_t)st->st_ctim.tv_nsec, (uint64_t)st->st_mtim.tv_sec,
	};

	h = fnv1a(h, relpath, strlen(relpath) + 1);
	h = fnv1a(h, fields, sizeof(fields));
	sig->sum += h;
	sig->xor ^= h * 0x9e3779b97f4a7c15ULL;
	sig->entries++;
}

/* Maildir's message directories are not listed: adding or removing a
   message there changes the directory's own ctime, and listing them would
   cost a stat() per message at every login. */
static bool signature_leaf_dir(const char *name)
{
	return strcmp(name, "cur") == 0 || strcmp(name, "new") == 0 ||
	       strcmp(name, "tmp") == 0;
}

static int signature_dir(struct signature *sig, int dir_fd, const char *relpath,
                         unsigned int depth, const char **error_r)
{
	struct dirent *d;
	DIR *dir;
	int ret = 0;

	if (depth > SIGNATURE_MAX_DEPTH) {
		*error_r = t_strdup_printf("%s: more than %u levels deep",
		                           relpath, SIGNATURE_MAX_DEPTH);
		i_close_fd(&dir_fd);
		return -1;
	}
	dir = fdopendir(dir_fd);
	if (dir == NULL) {
		*error_r = t_strdup_printf("fdopendir(%s): %m", relpath);
		i_close_fd(&dir_fd);
		return -1;
	}
	while (ret == 0 && (d = readdir(dir)) != NULL) {
		struct stat st;
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		const char *sub = t_strconcat(relpath, "/", d->d_name, NULL);
		/* never follows a symlink: nothing outside the archive */
		if (fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) <
		    0)
			continue;
		signature_add(sig, sub, &st);
		if (!S_ISDIR(st.st_mode) || signature_leaf_dir(d->d_name))
			continue;
		int fd = openat(dirfd(dir), d->d_name,
		                O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		if (fd < 0)
			continue;
		ret = signature_dir(sig, fd, sub, depth + 1, error_r);
	}
	(void)closedir(dir);
	return ret;
}

int backfill_archive_signature(const char *path, const char **sig_r,
                               const char **error_r)
{
	struct signature sig;
	struct stat st;
	int fd;

	i_zero(&sig);
	fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		*error_r = t_strdup_printf("archive %s: %m", path);
		if (fd >= 0)
			i_close_fd(&fd);
		return -1;
	}
	signature_add(&sig, "", &st);
	if (signature_dir(&sig, fd, "", 0, error_r) < 0) {
		*error_r = t_strdup_printf("archive %s: %s", path, *error_r);
		return -1;
	}
	*sig_r = t_strdup_printf("%016" PRIx64 "%016" PRIx64 "%x", sig.sum,
	                         sig.xor, sig.entries);
	return 0;
}

/* ---- symlinks ---- */

bool backfill_archive_folder_linked(struct backfill_archive *archive,
                                    struct mailbox *box, const char **path_r)
{
	char real[PATH_MAX];
	const char *path;

	if (mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_MAILBOX, &path) <=
	            0 ||
	    realpath(path, real) == NULL) {
		/* no directory: Dovecot reports what it cannot open */
		return FALSE;
	}
	/* The archive's root is a real path (backfill_archive_resolve()) and
	   Dovecot builds the folder's below it: any difference is a symlink
	   on the way. */
	if (strcmp(real, path) != 0) {
		*path_r = t_strdup_printf("%s -> %s", path, real);
		return TRUE;
	}
	/* A real folder directory whose cur/ (or new/, tmp/) is a symlink
	   to another user's: Dovecot reads the messages there (found by
	   test_merge_symlinks: vic's live mail merged into cy's Work). */
	if (strcmp(box->storage->name, "maildir") == 0) {
		static const char *const subs[] = {"cur", "new", "tmp"};
		for (unsigned int i = 0; i < N_ELEMENTS(subs); i++) {
			const char *sub = t_strconcat(path, "/", subs[i], NULL);
			if (realpath(sub, real) != NULL &&
			    strcmp(real, sub) != 0) {
				*path_r =
				        t_strdup_printf("%s -> %s", sub, real);
				return TRUE;
			}
		}
	}
	(void)archive;
	return FALSE;
}

struct backfill_archive_files {
	const char *dir;
	/* mdbox: a symlinked storage file */
	const char *storage_link;
	/* Maildir: the symlinks in cur/ and new/, and the foreign files there
	   (FIFOs, devices, sockets) */
	ARRAY_TYPE(const_string) links;
	ARRAY_TYPE(const_string) foreign;
};

/* d_type from the listing: no stat() per message file. */
static unsigned char dirent_type(int dir_fd, const struct dirent *d)
{
	struct stat st;

	if (d->d_type != DT_UNKNOWN)
		return d->d_type;
	if (fstatat(dir_fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return DT_UNKNOWN;
	if (S_ISLNK(st.st_mode))
		return DT_LNK;
	if (S_ISREG(st.st_mode))
		return DT_REG;
	if (S_ISDIR(st.st_mode))
		return DT_DIR;
	/* a FIFO, a device or a socket: foreign all the same */
	return DT_FIFO;
}

static int files_scan(struct backfill_archive_files *files, const char *dir,
                      pool_t pool, bool storage, const char **error_r)
{
	struct dirent *d;
	struct stat st;

	/* mdbox's storage/ itself a symlink to another user's: the copied
	   map index and the m.* files would both be that user's (ALT's
	   storage/: the m.* files) */
	if (storage && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode)) {
		files->storage_link = p_strdup(pool, dir);
		return 0;
	}
	DIR *dirp = opendir(dir);

	if (dirp == NULL) {
		if (errno == ENOENT)
			return 0;
		*error_r = t_strdup_printf("opendir(%s) failed: %m", dir);
		return -1;
	}
	while ((d = readdir(dirp)) != NULL) {
		unsigned char type = dirent_type(dirfd(dirp), d);
		const char *path;
		if (type == DT_LNK) {
			path = p_strconcat(pool, dir, "/", d->d_name, NULL);
			if (storage && files->storage_link == NULL)
				files->storage_link = path;
			array_push_back(&files->links, &path);
		} else if (type != DT_REG && type != DT_DIR &&
		           type != DT_UNKNOWN) {
			/* Opening a FIFO blocks until someone writes to it,
			   reading /dev/zero never ends: a restored one (tar
			   restores them) hung the merge for good. */
			path = p_strconcat(pool, dir, "/", d->d_name, NULL);
			if (storage && files->storage_link == NULL)
				files->storage_link = path;
			array_push_back(&files->foreign, &path);
		}
	}
	(void)closedir(dirp);
	return 0;
}

int backfill_archive_files_load(struct backfill_archive *archive,
                                struct mailbox *box, pool_t pool,
                                struct backfill_archive_files **files_r,
                                const char **error_r)
{
	struct backfill_archive_files *files;
	const char *path;

	files = p_new(pool, struct backfill_archive_files, 1);
	p_array_init(&files->links, pool, 4);
	p_array_init(&files->foreign, pool, 4);
	*files_r = files;
	if (strcmp(box->storage->name, "mdbox") == 0) {
		files->dir = p_strconcat(pool, archive->path, NULL);
		if (files_scan(files,
		               t_strconcat(archive->path, "/storage", NULL),
		               pool, TRUE, error_r) < 0)
			return -1;
		/* Dovecot reads a storage file the map index names from
		   ALT/storage/ when storage/ has none: a symlinked ALT
		   storage/ or m.* file there would read another user's
		   mail all the same (the ALT directory itself is held to
		   backfill_archive_resolve()'s rule). */
		if (files->storage_link == NULL &&
		    mailbox_list_get_root_path(
		            box->list, MAILBOX_LIST_PATH_TYPE_ALT_DIR, &path) &&
		    files_scan(files, t_strconcat(path, "/storage", NULL), pool,
		               TRUE, error_r) < 0)
			return -1;
		return 0;
	}
	if (mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_MAILBOX, &path) <=
	    0)
		return 0;
	files->dir = p_strdup(pool, path);
	if (files_scan(files, t_strconcat(path, "/cur", NULL), pool, FALSE,
	               error_r) < 0 ||
	    files_scan(files, t_strconcat(path, "/new", NULL), pool, FALSE,
	               error_r) < 0)
		return -1;
	return 0;
}

bool backfill_archive_files_storage_linked(
        const struct backfill_archive_files *files, const char **path_r)
{
	*path_r = files->storage_link;
	return files->storage_link != NULL;
}

struct mail_file_lstat {
	bool found;
	mode_t mode;
	char path[PATH_MAX];
};

static int mail_file_lstat(struct maildir_mailbox *mbox ATTR_UNUSED,
                           const char *path, struct mail_file_lstat *ctx)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	ctx->found = TRUE;
	ctx->mode = st.st_mode;
	/* path is on Dovecot's data stack frame of this call */
	i_strocpy(ctx->path, path, sizeof(ctx->path));
	return 1;
}

bool backfill_archive_mail_linked(struct backfill_archive_files *files,
                                  struct mail *mail, const char **path_r)
{
	struct mail_file_lstat ctx;

	if ((array_count(&files->links) == 0 &&
	     array_count(&files->foreign) == 0) ||
	    files->storage_link != NULL)
		return FALSE;
	/* The file Dovecot reads the message from, as Dovecot finds it (new/
	   or cur/, renamed since), looked at without following it.  Matching
	   the inode the message is read from against those of the folder's
	   own files was not enough: a symlink to a file on another file system
	   (the live mail volume) whose inode number one of the folder's files
	   also has counted as ours and another user's mail was merged
	   (found in review: two tmpfs, archive and live volumes are separate
	   file systems in production and their inode ranges overlap). */
	i_zero(&ctx);
	if (strcmp(mail->box->storage->name, "maildir") == 0 &&
	    maildir_file_do(MAILDIR_MAILBOX(mail->box), mail->uid,
	                    mail_file_lstat, &ctx) > 0 &&
	    ctx.found) {
		if (S_ISREG(ctx.mode))
			return FALSE;
		*path_r = S_ISLNK(ctx.mode)
		                  ? t_strdup(ctx.path)
		                  : t_strdup_printf("%s (not a regular file)",
		                                    ctx.path);
		return TRUE;
	}
	/* not found, or not Maildir: cannot tell, so it is not read */
	*path_r = t_strdup_printf("a symlink in %s", files->dir);
	return TRUE;
}

/* Message files in dir/sub: -1 when it cannot be listed, 0 when it is
   missing or a symlink. */
static int dir_messages(const char *dir, const char *sub, unsigned int *count)
{
	const char *path = t_strconcat(dir, "/", sub, NULL);
	struct dirent *d;
	struct stat st;
	DIR *dirp;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return 0;
	if ((dirp = opendir(path)) == NULL)
		return -1;
	while ((d = readdir(dirp)) != NULL) {
		if (d->d_name[0] == '.')
			continue;
		if (dirent_type(dirfd(dirp), d) == DT_REG)
			(*count)++;
	}
	(void)closedir(dirp);
	return 0;
}

static bool dir_covered(const ARRAY_TYPE(const_string) * paths,
                        const char *path)
{
	const char *const *p;

	array_foreach(paths, p)
	{
		if (strcmp(*p, path) == 0)
			return TRUE;
	}
	return FALSE;
}

int backfill_archive_dirs_uncovered(struct backfill_archive *archive,
                                    const ARRAY_TYPE(const_string) * covered,
                                    pool_t pool,
                                    ARRAY_TYPE(backfill_archive_dir) * dirs_r,
                                    const char **error_r)
{
	struct mailbox_list *list = archive->ns->list;
	ARRAY_TYPE(const_string) paths;
	const char *const *vname, *root, *path;
	struct dirent *d;
	struct stat st;
	DIR *dirp;

	p_array_init(dirs_r, pool, 4);
	if (strcmp(list->name, MAILBOX_LIST_NAME_MAILDIRPLUSPLUS) != 0 ||
	    strcmp(archive->ns->storage->name, "maildir") != 0 ||
	    !mailbox_list_get_root_path(list, MAILBOX_LIST_PATH_TYPE_MAILBOX,
	                                &root))
		return 0;
	/* Dovecot's own path for each folder read: the same root string,
	   so plain comparison tells the directories apart */
	t_array_init(&paths, array_count(covered) + 1);
	array_foreach(covered, vname)
	{
		struct mailbox *box =
		        mailbox_alloc(list, *vname, MAILBOX_FLAG_READONLY);
		if (mailbox_get_path_to(box, MAILBOX_LIST_PATH_TYPE_MAILBOX,
		                        &path) > 0) {
			path = t_strdup(path);
			array_push_back(&paths, &path);
		}
		mailbox_free(&box);
	}
	if ((dirp = opendir(root)) == NULL) {
		*error_r = t_strdup_printf("opendir(%s) failed: %m", root);
		return -1;
	}
	while ((d = readdir(dirp)) != NULL) {
		unsigned int count = 0;
		int ret;

		if (d->d_name[0] != '.' || strcmp(d->d_name, ".") == 0 ||
		    strcmp(d->d_name, "..") == 0)
			continue;
		path = t_strconcat(root, "/", d->d_name, NULL);
		if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode) ||
		    dir_covered(&paths, path))
			continue;
		ret = dir_messages(path, "cur", &count);
		if (dir_messages(path, "new", &count) < 0)
			ret = -1;
		if (count == 0 && ret == 0)
			continue;
		struct backfill_archive_dir *dir = array_append_space(dirs_r);
		dir->name = p_strdup(pool, d->d_name);
		dir->messages = count;
		dir->unreadable = ret < 0;
	}
	(void)closedir(dirp);
	return 0;
}

int backfill_archive_dirs_unread(struct backfill_archive *archive,
                                 const ARRAY_TYPE(const_string) * covered,
                                 unsigned int *messages_r, const char **text_r,
                                 const char **error_r)
{
	ARRAY_TYPE(backfill_archive_dir) dirs;
	const struct backfill_archive_dir *dir;
	string_t *text;

	*messages_r = 0;
	*text_r = NULL;
	if (backfill_archive_dirs_uncovered(archive, covered,
	                                    pool_datastack_create(), &dirs,
	                                    error_r) < 0)
		return -1;
	if (array_count(&dirs) == 0)
		return 0;
	text = t_str_new(128);
	array_foreach(&dirs, dir)
	{
		*messages_r += dir->messages;
		str_printfa(text, "%s%s: %u messages%s",
		            str_len(text) == 0 ? "" : ", ", dir->name,
		            dir->messages,
		            dir->unreadable
		                    ? " or more (cur/ or new/ unreadable)"
		                    : "");
	}
	*text_r = t_strdup_printf(
	        "%u messages in archive folder directories no folder Dovecot can open covers, not merged: %s",
	        *messages_r, str_c(text));
	return 0;
}
