#ifndef ACCOUNTS_PASSWD_H
#define ACCOUNTS_PASSWD_H

/* Dovecot passwd-file user databases, read the way Dovecot reads them:
   user:password:uid:gid:gecos:home:shell:extra_fields, '#' comments and
   empty lines ignored.  Every field is kept byte for byte; extra_fields is
   everything after the seventh ':'. */

#include <stddef.h>

#include "accounts-util.h"

enum acc_pw_field {
	ACC_PW_USER = 0,
	ACC_PW_PASSWORD,
	ACC_PW_UID,
	ACC_PW_GID,
	ACC_PW_GECOS,
	ACC_PW_HOME,
	ACC_PW_SHELL,
	ACC_PW_EXTRA,
	ACC_PW_FIELDS
};

struct acc_pw_entry {
	char *raw;                  /* the line, without its '\n' */
	char *field[ACC_PW_FIELDS]; /* NULL past the line's last field */
	char *key;                  /* the user, lower-cased */
	const char *domain;         /* in key: after '@', or "" */
	char *comments;             /* comment lines right above, or NULL */
	unsigned int line;
};

struct acc_pw_file {
	const char *path;
	struct acc_pw_entry *v; /* in file order */
	size_t n, cap;
	size_t *sorted; /* indexes of v sorted by key */
};

/* Parses one non-comment line into *e (zeroed by the caller).  Returns -1
   with a reason that never quotes the line. */
int acc_pw_parse_line(const char *line, size_t len, struct acc_pw_entry *e,
                      const char **reason_r);
void acc_pw_entry_free(struct acc_pw_entry *e);

/* Reads a passwd-file.  Malformed lines and repeated users (a later line
   with a user already seen) are added to issues and left out.  Returns -1
   only if the file cannot be read. */
int acc_pw_read(const char *path, struct acc_pw_file *file,
                struct acc_issues *issues, const char **error_r);
const struct acc_pw_entry *acc_pw_find(const struct acc_pw_file *file,
                                       const char *key);
void acc_pw_file_free(struct acc_pw_file *file);

#endif
