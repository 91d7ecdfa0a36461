#ifndef ACCOUNTS_ALIASES_H
#define ACCOUNTS_ALIASES_H

/* Postfix virtual alias map source files, read the way postmap(1) reads
   them: "address target, target ..." per logical line, a line starting
   with whitespace continues the previous one, empty lines and lines whose
   first non-whitespace character is '#' are ignored. */

#include <stddef.h>

#include "accounts-util.h"

struct acc_alias {
	char *raw;          /* the physical lines of the entry, '\n'-joined */
	char *key;          /* the address, lower-cased as postmap folds it */
	const char *domain; /* in key: see acc_address_domain() */
	char **targets;     /* as written, in order */
	size_t n_targets;
	char **targets_sorted; /* lower-cased, sorted: for comparing */
	char *comments;        /* comment lines right above, or NULL */
	unsigned int line;
};

struct acc_alias_file {
	const char *path;
	struct acc_alias *v; /* in file order */
	size_t n, cap;
	size_t *sorted;
};

/* Parses one logical line (continuations joined with '\n').  Returns -1
   with a reason. */
int acc_alias_parse(const char *text, size_t len, struct acc_alias *a,
                    const char **reason_r);
void acc_alias_free(struct acc_alias *a);

/* Reads a map source file; malformed entries and repeated keys (postmap
   keeps the first) go to issues and are left out. */
int acc_alias_read(const char *path, struct acc_alias_file *file,
                   struct acc_issues *issues, const char **error_r);
const struct acc_alias *acc_alias_find(const struct acc_alias_file *file,
                                       const char *key);
/* true if both entries send mail to the same set of addresses */
bool acc_alias_same_targets(const struct acc_alias *a,
                            const struct acc_alias *b);
/* true for "example.com anything": declares a virtual alias domain */
bool acc_alias_is_domain_line(const struct acc_alias *a);
void acc_alias_file_free(struct acc_alias_file *file);

#endif
