#ifndef ACCOUNTS_UTIL_H
#define ACCOUNTS_UTIL_H

/* Small helpers shared by the accounts-*.c modules: a growing string, a
   growing array, and the list of problems found in the input files. */

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Memory exhaustion in a one-shot command: say so and exit 2, backfillctl's
   "usage or configuration error" (nothing has been written yet, the
   outputs are renamed into place at the very end). */
#define ACC_EXIT_NOMEM 2
void *acc_xmalloc(size_t size);
void *acc_xrealloc(void *ptr, size_t size);
char *acc_xstrdup(const char *s);
char *acc_xstrndup(const char *s, size_t n);
char *acc_xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Grows *array (of *cap elements of elem_size) so that it holds n + 1. */
void acc_grow(void *array_p, size_t *cap, size_t n, size_t elem_size);

struct acc_issues;

/* An index of records (elem_size bytes each, from v) sorted by the
   string at key_off, ties by the unsigned int line number at line_off:
   the passwd-file and map readers both look entries up by key and keep
   the first of a repeated key. */
struct acc_index_layout {
	size_t elem_size, key_off, line_off;
	/* For acc_index_drop_repeats(): what a key is ("user"), what the
	   program that reads the file does with a repeated one, and how a
	   record left out is freed. */
	const char *key_name, *repeat_effect;
	void (*free_record)(void *record);
};
/* Returns the n indexes of v in that order (malloc()ed). */
size_t *acc_index_build(const void *v, size_t n,
                        const struct acc_index_layout *layout);
/* The index of a file just read, both readers' last step: every later
   line of a repeated key is left out (it goes to issues as "same
   <key_name> as line N (<repeat_effect>)" and is freed), v keeps file
   order, *sorted_r gets the index (malloc()ed).  Returns the new number
   of records. */
size_t acc_index_unique(void *v, size_t n, size_t **sorted_r,
                        const struct acc_index_layout *layout, const char *path,
                        struct acc_issues *issues);
/* The record whose key is key (the first line of a repeated one), or NULL. */
const void *acc_index_find(const void *v, const size_t *sorted, size_t n,
                           const struct acc_index_layout *layout,
                           const char *key);

struct acc_buf {
	char *s;
	size_t len, cap;
};
void acc_buf_add(struct acc_buf *b, const char *s, size_t n);
void acc_buf_puts(struct acc_buf *b, const char *s);
void acc_buf_printf(struct acc_buf *b, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
void acc_buf_free(struct acc_buf *b);

/* A problem in an input line.  The reason never quotes the line: a
   malformed passwd-file line may hold a password hash anywhere. */
struct acc_issue {
	const char *path;
	unsigned int line;
	char *reason;
};
struct acc_issues {
	struct acc_issue *v;
	size_t n, cap;
};
void acc_issue_add(struct acc_issues *issues, const char *path,
                   unsigned int line, const char *reason);
void acc_issues_free(struct acc_issues *issues);

/* Reads a whole file; *size_r excludes the added NUL terminator. */
int acc_read_file(const char *path, char **data_r, size_t *size_r,
                  const char **error_r);

/* The next line of data[0..size) from *pos: *line_r and *len_r, without the
   '\n'.  Returns false at the end. */
bool acc_next_line(const char *data, size_t size, size_t *pos,
                   const char **line_r, size_t *len_r);

/* Pending comment lines of a file: the block of comments right above an
   entry travels with it into the merged file. */
struct acc_comments {
	struct acc_buf buf;
};
void acc_comments_line(struct acc_comments *c, const char *line, size_t len);
void acc_comments_reset(struct acc_comments *c);
/* What both file formats make of a line: an empty (or blank) line ends a
   comment block, a line whose first non-blank character is '#' joins it;
   both return false.  Otherwise true, with *indent_r the number of
   leading blanks. */
bool acc_comments_entry_line(struct acc_comments *c, const char *line,
                             size_t len, size_t *indent_r);
/* The pending block (caller frees) or NULL, and resets. */
char *acc_comments_take(struct acc_comments *c);

/* Lower-cases ASCII letters in place (Postfix folds lookup keys, Dovecot
   users are looked up with %Lu in the setups this command serves). */
void acc_lowercase(char *s);

/* The domain of an address: after the last '@', or the key itself for a
   Postfix virtual alias domain line ("example.com anything"), else "". */
const char *acc_address_domain(const char *address);

/* true if s can be used as a report file name: a DNS name (letters,
   digits, '-', '.', '_'), not starting with '.'. */
bool acc_domain_usable(const char *s);

/* The stem (file name without extension) of a domain's report, malloc()ed.
   Report files of domains, the "_nodomain" report (domain "") and other
   files beside them ("index") must never share a name, whatever the
   domain: a domain that is a plain DNS name with at least one dot (letters,
   digits, '-', '_', labels joined by single dots) and fits a file name
   keeps its name, which then has a dot; every other domain ("index",
   "_nodomain", UTF-8, '+', too long) is named "_d-" and a 64-bit hash of
   it in hex, which has none.  Stems without a dot are thus "_nodomain",
   "_d-..." and the caller's own. */
#define ACC_DOMAIN_STEM_MAX 200
char *acc_domain_file_stem(const char *domain);

/* s with <, >, &, " and ' escaped for HTML text and attribute values. */
void acc_html_escape(FILE *out, const char *s);
/* fmt as it is, with every %s replaced by its argument escaped as with
   acc_html_escape(): the markup and the values in it read in one place,
   and no value is printed unescaped.  %s is the only conversion. */
void acc_html_printf(FILE *out, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));
/* The start of a self-contained report page up to <body>: the title
   (prefix and title, escaped) and one inline style, the reports' common
   look followed by style (CSS of the page's own parts). */
void acc_html_begin(FILE *out, const char *title_prefix, const char *title,
                    const char *style);

#endif
