#ifndef RENUMBER_UNFINISHED_H
#define RENUMBER_UNFINISHED_H

struct mail_user;
struct bf_cursor;

/* The archive folders (", "-separated) whose live folder's renumbering was
   begun and not finished, in *names_r ("" when none); -1 with *error_r
   when a live folder cannot be read (the error says only that: the caller
   adds what it did not do). */
int doveadm_backfill_renumber_unfinished(struct mail_user *user,
                                         const struct bf_cursor *cursor,
                                         const char **names_r,
                                         const char **error_r);

#endif
