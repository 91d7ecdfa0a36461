#ifndef MILTER_DAEMON_H
#define MILTER_DAEMON_H

/* Process chores of backfill-milter: the listening socket's path, mode and
   group, detaching, the pid file, dropping privileges. */

#include <sys/types.h>

struct milter_config;

/* Creates the listening socket (libmilter's smfi_opensocket) with the
   configured mode and group.  Returns 0 or -1 with a malloc()ed error. */
int milter_daemon_open_socket(const struct milter_config *config,
                              char **error_r);
/* Detaches from the terminal; returns 0 in the child, -1 on error. */
int milter_daemon_detach(char **error_r);
int milter_daemon_write_pid(const char *path, char **error_r);
/* UserID "user[:group]": all groups of the user, then the uid. */
int milter_daemon_drop_privileges(const char *user_id, char **error_r);

#endif
