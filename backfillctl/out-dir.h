#ifndef BACKFILLCTL_OUT_DIR_H
#define BACKFILLCTL_OUT_DIR_H

/* The output directory of a backfillctl command that writes several files
   (accounts, report): every file is written and synced in a temporary
   directory made inside it (mkdtemp: a name nobody can guess or plant a
   symlink at, mode 0700), opened with O_CREAT|O_EXCL|O_NOFOLLOW, then
   renamed into place.  A run that stops before the renames leaves the
   previous outputs as they were.  POSIX has no rename of several files at
   once, so a rename that fails after others succeeded is reported file by
   file (OUTDIR_PARTIAL). */

#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

enum outdir_result {
	OUTDIR_WRITTEN,      /* every output in place */
	OUTDIR_WRITTEN_WARN, /* in place, and a warning printed */
	OUTDIR_NOTHING,      /* nothing in the directory replaced or removed */
	OUTDIR_PARTIAL,      /* some outputs replaced, others not (listed) */
};

struct outdir {
	const char *who; /* "backfillctl accounts", in every message */
	const char *dir;
	const char *subdir; /* one subdirectory files may go to, or NULL */
	char *tmp;          /* DIR/.backfillctl-accounts.XXXXXX (who) */
	char **names;       /* files written in tmp, relative ("reports/x.txt"),
	                       in the order they are renamed into place */
	size_t n, cap;
	size_t n_committed; /* names[0..n_committed) are in DIR now */
};

/* Creates dir (with dir_mode) if missing, refuses one that others may
   write to (they could swap the outputs), makes the temporary directory
   (and subdir in it).  -1 with a message on stderr. */
int outdir_prepare(struct outdir *o, const char *who, const char *dir,
                   mode_t dir_mode, const char *subdir);
/* Opens tmp/NAME for writing with mode, regardless of umask; with owner
   (and as root) the file gets owner's uid and gid.  NULL with a message. */
FILE *outdir_open(struct outdir *o, const char *name, mode_t mode,
                  const struct stat *owner);
/* Flushes, fsyncs and closes: the rename that puts a file in place must
   never be on disk before the file's own contents. */
int outdir_close(const struct outdir *o, FILE *f, const char *name);
int outdir_text(struct outdir *o, const char *name, const char *text,
                mode_t mode, const struct stat *owner);
/* Puts every file in place; stale (may be NULL) is an earlier run's file
   removed only once every new output is in place. */
enum outdir_result outdir_commit(struct outdir *o, const char *stale);
/* Removes what was not committed, and the temporary directory. */
void outdir_cleanup(struct outdir *o);
void outdir_free(struct outdir *o);

#endif
