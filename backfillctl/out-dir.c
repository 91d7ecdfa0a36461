/* The output directory of backfillctl accounts and report: written in a
   temporary directory, then renamed into place (out-dir.h). */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accounts-util.h"
#include "out-dir.h"

void outdir_cleanup(struct outdir *o)
{
	if (o->tmp == NULL)
		return;
	for (size_t i = o->n_committed; i < o->n; i++) {
		char *p = acc_xprintf("%s/%s", o->tmp, o->names[i]);

		(void)unlink(p);
		free(p);
	}
	if (o->subdir != NULL) {
		char *p = acc_xprintf("%s/%s", o->tmp, o->subdir);

		(void)rmdir(p);
		free(p);
	}
	(void)rmdir(o->tmp);
}

void outdir_free(struct outdir *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->names[i]);
	free(o->names);
	free(o->tmp);
}

int outdir_prepare(struct outdir *o, const char *who, const char *dir,
                   mode_t dir_mode, const char *subdir)
{
	struct stat st;
	char *sub;

	memset(o, 0, sizeof(*o));
	o->who = who;
	o->dir = dir;
	o->subdir = subdir;
	if (mkdir(dir, dir_mode) < 0 && errno != EEXIST) {
		fprintf(stderr, "%s: cannot create %s: %s (nothing written)\n",
		        who, dir, strerror(errno));
		return -1;
	}
	/* whoever may write to the directory can replace what is renamed
	   into it, or read what it holds meanwhile: the reports name every
	   user, the accounts outputs hold password hashes */
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "%s: %s: %s (nothing written)\n", who, dir,
		        errno != 0 ? strerror(errno) : "not a directory");
		return -1;
	}
	if ((st.st_mode & S_IWOTH) != 0 ||
	    (st.st_uid != geteuid() && st.st_uid != 0)) {
		fprintf(stderr,
		        "%s: %s may be written by %s: choose a directory "
		        "only you (or root) can write to (nothing written)\n",
		        who, dir,
		        (st.st_mode & S_IWOTH) != 0
		                ? "every local user"
		                : "its owner, another user");
		return -1;
	}
	/* DIR/.backfillctl-accounts.XXXXXX: whose it is, in its name */
	o->tmp = acc_xprintf("%s/.%s.XXXXXX", dir, who);
	for (char *c = o->tmp + strlen(dir); *c != '\0'; c++) {
		if (*c == ' ')
			*c = '-';
	}
	if (mkdtemp(o->tmp) == NULL) {
		fprintf(stderr,
		        "%s: cannot create a temporary directory in %s: %s "
		        "(nothing written)\n",
		        who, dir, strerror(errno));
		free(o->tmp);
		o->tmp = NULL;
		return -1;
	}
	if (subdir == NULL)
		return 0;
	sub = acc_xprintf("%s/%s", o->tmp, subdir);
	if (mkdir(sub, 0755) < 0) {
		fprintf(stderr, "%s: %s: %s\n", who, sub, strerror(errno));
		free(sub);
		return -1;
	}
	free(sub);
	return 0;
}

FILE *outdir_open(struct outdir *o, const char *name, mode_t mode,
                  const struct stat *owner)
{
	char *path = acc_xprintf("%s/%s", o->tmp, name);
	int fd =
	        open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	             0600);
	FILE *f;

	if (fd < 0 || fchmod(fd, mode) < 0 ||
	    (owner != NULL && geteuid() == 0 &&
	     fchown(fd, owner->st_uid, owner->st_gid) < 0)) {
		fprintf(stderr, "%s: cannot write %s: %s\n", o->who, path,
		        strerror(errno));
		if (fd >= 0)
			close(fd);
		free(path);
		return NULL;
	}
	free(path);
	acc_grow(&o->names, &o->cap, o->n, sizeof(*o->names));
	o->names[o->n++] = acc_xstrdup(name);
	f = fdopen(fd, "w");
	if (f == NULL)
		close(fd);
	return f;
}

int outdir_close(const struct outdir *o, FILE *f, const char *name)
{
	if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) < 0) {
		fprintf(stderr, "%s: writing %s failed: %s\n", o->who, name,
		        strerror(errno));
		fclose(f);
		return -1;
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "%s: writing %s failed: %s\n", o->who, name,
		        strerror(errno));
		return -1;
	}
	return 0;
}

int outdir_text(struct outdir *o, const char *name, const char *text,
                mode_t mode, const struct stat *owner)
{
	FILE *f = outdir_open(o, name, mode, owner);

	if (f == NULL)
		return -1;
	fputs(text, f);
	return outdir_close(o, f, name);
}

/* Makes the renames into dir durable.  0, or -1 with a warning. */
static int out_sync_dir(const struct outdir *o, const char *dir)
{
	int fd;

	if (dir == NULL)
		return 0;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 && fsync(fd) == 0) {
		close(fd);
		return 0;
	}
	fprintf(stderr,
	        "%s: warning: cannot sync %s: %s (the new "
	        "files are in place but a crash now could lose them: check "
	        "them before installing)\n",
	        o->who, dir, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* A rename failed after others succeeded: which outputs are the new
   run's and which are not, one per line, so the operator knows exactly
   what not to install. */
static void out_report_partial(const struct outdir *o, char *const *dst,
                               const char *stale)
{
	fprintf(stderr,
	        "%s: %s is PARTLY written: %zu of this "
	        "run's %zu outputs are in place, the others are not; the "
	        "files there do not belong together:\n",
	        o->who, o->dir, o->n_committed, o->n);
	for (size_t i = 0; i < o->n_committed; i++)
		fprintf(stderr, "  written:     %s\n", dst[i]);
	for (size_t i = o->n_committed; i < o->n; i++)
		fprintf(stderr,
		        "  not written: %s (an earlier run's copy, if any, is "
		        "unchanged)\n",
		        dst[i]);
	if (stale != NULL)
		fprintf(stderr,
		        "  not removed: %s (an earlier run's list of skipped "
		        "lines)\n",
		        stale);
	fprintf(stderr,
	        "%s: do not install anything from %s yet: "
	        "fix the cause above and run again (a complete run replaces "
	        "every output)\n",
	        o->who, o->dir);
}

/* Puts every file of tmp in place.  Everything that can be checked
   before the first rename is (a directory where a file goes, reports/
   not a directory), so that the usual mistakes end with nothing
   replaced; what is left (EIO, a mount point, an immutable file) can
   still fail half way, and is then reported file by file.  The old
   skipped.txt (stale: not NULL when this run has no list of its own)
   is removed only once every new output is in place: until then it
   still describes the outputs it came with. */
enum outdir_result outdir_commit(struct outdir *o, const char *stale)
{
	char *reports = o->subdir != NULL
	                        ? acc_xprintf("%s/%s", o->dir, o->subdir)
	                        : NULL;
	char **src = acc_xmalloc((o->n + 1) * sizeof(*src));
	char **dst = acc_xmalloc((o->n + 1) * sizeof(*dst));
	enum outdir_result ret = OUTDIR_NOTHING;
	struct stat st;
	size_t i;

	/* every path built before the first rename: running out of memory
	   half way through would exit without saying what was replaced */
	for (i = 0; i < o->n; i++) {
		src[i] = acc_xprintf("%s/%s", o->tmp, o->names[i]);
		dst[i] = acc_xprintf("%s/%s", o->dir, o->names[i]);
	}
	if (reports != NULL && mkdir(reports, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "%s: cannot create %s: %s\n", o->who, reports,
		        strerror(errno));
		goto out;
	}
	if (reports != NULL &&
	    (stat(reports, &st) < 0 || !S_ISDIR(st.st_mode))) {
		fprintf(stderr,
		        "%s: %s is not a directory: move it "
		        "away and run again\n",
		        o->who, reports);
		goto out;
	}
	for (i = 0; i <= o->n; i++) {
		const char *path = i < o->n ? dst[i] : stale;

		if (path != NULL && lstat(path, &st) == 0 &&
		    S_ISDIR(st.st_mode)) {
			fprintf(stderr,
			        "%s: %s is a directory: move "
			        "it away and run again\n",
			        o->who, path);
			goto out;
		}
	}

	for (i = 0; i < o->n; i++) {
		if (rename(src[i], dst[i]) < 0) {
			fprintf(stderr,
			        "%s: cannot rename %s to %s: "
			        "%s\n",
			        o->who, src[i], dst[i], strerror(errno));
			break;
		}
		o->n_committed = i + 1;
	}
	if (o->n_committed < o->n) {
		if (o->n_committed > 0) {
			(void)out_sync_dir(o, reports);
			(void)out_sync_dir(o, o->dir);
			out_report_partial(
			        o, dst,
			        stale != NULL && access(stale, F_OK) == 0
			                ? stale
			                : NULL);
			ret = OUTDIR_PARTIAL;
		}
		goto out;
	}

	ret = OUTDIR_WRITTEN;
	if (stale != NULL && unlink(stale) < 0 && errno != ENOENT) {
		fprintf(stderr,
		        "%s: warning: cannot remove %s (an "
		        "earlier run's list of skipped lines, not this run's): "
		        "%s; remove it by hand\n",
		        o->who, stale, strerror(errno));
		ret = OUTDIR_WRITTEN_WARN;
	}
	if (out_sync_dir(o, reports) < 0 || out_sync_dir(o, o->dir) < 0)
		ret = OUTDIR_WRITTEN_WARN;
out:
	for (i = 0; i < o->n; i++) {
		free(src[i]);
		free(dst[i]);
	}
	free(src);
	free(dst);
	free(reports);
	return ret;
}
