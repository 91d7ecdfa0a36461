#ifndef DOVEADM_BACKFILL_H
#define DOVEADM_BACKFILL_H

#include "doveadm-mail.h"
#include "doveadm-compat.h"

struct mail_user;
struct bf_state;
struct bf_merge_record;
struct backfill_user;

/* What one user's row of any backfill command amounts to.  The exit code
   follows from it by one rule (docs/doveadm-backfill.md, "Exit codes"),
   the same for every subcommand, so that scripts can retry on 75 and look
   at 1:
   - TEMPFAIL, 75 (EX_TEMPFAIL), try again later: the state store could
     not be opened or read, or refused the writes a merge starts with
     (BACKFILL_MERGE_STORE_ERROR: "postponed"), or a live session's merge
     holds the user's lease ("busy");
   - FAILED, 1, something to look at: any other failure for the user
     (settings, archive, mail, a write to the store once work has begun, a
     merge that stopped on an error or a signal), and verify's missing
     messages.
   With several users 1 wins over 75, 75 over 0.  64 (EX_USAGE) is left
   to doveadm's own usage handling. */
enum doveadm_backfill_outcome {
	DOVEADM_BACKFILL_OK = 0,
	DOVEADM_BACKFILL_TEMPFAIL,
	DOVEADM_BACKFILL_FAILED,
};

extern struct doveadm_cmd_ver2 doveadm_cmd_backfill_plan;
extern struct doveadm_cmd_ver2 doveadm_cmd_backfill_run;
extern struct doveadm_cmd_ver2 doveadm_cmd_backfill_status;
extern struct doveadm_cmd_ver2 doveadm_cmd_backfill_verify;
extern struct doveadm_cmd_ver2 doveadm_cmd_backfill_revert;
extern struct doveadm_cmd_ver2 doveadm_cmd_backfill_reset;

/* The user's backfill settings and state handle (this module's own user
   context), or NULL with *error_r (logged). */
struct backfill_user *doveadm_backfill_user(struct mail_user *user,
                                            const char **error_r);

/* Resolves the archive: 1 the user has one, 0 none, -1 error. */
int doveadm_backfill_archive(struct backfill_user *buser, const char **error_r);

/* The context of a command with no options and no state of its own (plan,
   verify): doveadm's plain one, with init and run, printing a table. */
struct doveadm_mail_cmd_context *
doveadm_backfill_cmd_alloc(doveadm_backfill_init_func *init,
                           int (*run)(struct doveadm_mail_cmd_context *ctx,
                                      struct mail_user *user));

/* Opens the user's state store (once per user) and reads the user's
   merge record from it, so that a store that opens but does not answer
   is found here, before anything is changed: 1 record read into *rec_r,
   0 no record (*rec_r zeroed), -1 the store could not be opened or read
   (TEMPFAIL).  rec_r may be NULL; else bf_merge_record_clear() it. */
int doveadm_backfill_state(struct backfill_user *buser,
                           struct bf_state **state_r,
                           struct bf_merge_record *rec_r, const char **error_r);

/* Records one user's outcome in the command's exit code. */
void doveadm_backfill_outcome(struct doveadm_mail_cmd_context *ctx,
                              enum doveadm_backfill_outcome outcome);

/* The lease a live session's merge holds: revert and reset take it too, so
   that they never run under a merge. */
const char *doveadm_backfill_lease_name(struct mail_user *user);

/* The row's user.  doveadm prints a Username column of its own when it
   iterates users (-A, -F, a wildcard -u); a command adds one only when
   doveadm does not, so that no row names its user twice: header_user
   where the command's headers start, print_user at the start of each row
   (with -p, also when doveadm has moved on to another user). */
void doveadm_backfill_header_user(struct doveadm_mail_cmd_context *ctx);
void doveadm_backfill_print_user(struct doveadm_mail_cmd_context *ctx,
                                 const char *username);

/* Prints a number / a time (ISO 8601 UTC, "" for never). */
void doveadm_backfill_print_num(uint64_t value);
void doveadm_backfill_print_time(time_t t);

#endif

/* ---- walking mailboxes (verify, revert) ---- */

#include "array.h"

struct mail;
struct mailbox;
struct bf_fp;
struct backfill_mail_keys;

/* Calls cb for every message of box in UID order.  With fp non-NULL the
   message's fingerprint is in *keys (from Dovecot's cache when the merge
   or an earlier walk put it there), else keys is NULL.  A message that
   cannot be read gets cb with keys NULL and *read_error set. */
typedef int doveadm_backfill_walk_cb(struct mail *mail,
                                     const struct backfill_mail_keys *keys,
                                     const char *read_error, void *context);
struct backfill_archive_files;
/* afiles (NULL for live folders): the archive folder's files; a message
   whose file is a symlink is never read nor given to cb, only counted in
   *linked_r and logged on event. */
int doveadm_backfill_walk(struct mailbox *box, struct bf_fp *fp,
                          struct backfill_archive_files *afiles,
                          unsigned int *linked_r, struct event *event,
                          doveadm_backfill_walk_cb *cb, void *context,
                          const char **error_r);

/* Messages in the archive (for the ETA of run), -1 on error. */
int doveadm_backfill_archive_count(struct backfill_user *buser,
                                   uint64_t *count_r, const char **error_r);
