/* Reading Postfix virtual(5) alias map sources for backfillctl accounts.
   The merged map carries each entry's lines as they were written. */

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts-aliases.h"

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int acc_alias_parse(const char *text, size_t len, struct acc_alias *a,
                    const char **reason_r)
{
	const char *p = text, *end = text + len, *start;
	size_t cap = 0;

	if (memchr(text, '\0', len) != NULL) {
		*reason_r = "NUL byte in the line";
		return -1;
	}
	if (memchr(text, '\r', len) != NULL) {
		*reason_r = "carriage return in the line (CRLF line ends?)";
		return -1;
	}
	start = p;
	while (p < end && !is_space(*p))
		p++;
	a->key = acc_xstrndup(start, (size_t)(p - start));
	acc_lowercase(a->key);
	if (a->key[0] == '@' && a->key[1] == '\0') {
		*reason_r = "address is a lone '@'";
		goto fail;
	}
	for (;;) {
		while (p < end && (is_space(*p) || *p == ','))
			p++;
		if (p == end)
			break;
		start = p;
		while (p < end && !is_space(*p) && *p != ',')
			p++;
		acc_grow(&a->targets, &cap, a->n_targets, sizeof(*a->targets));
		a->targets[a->n_targets++] =
		        acc_xstrndup(start, (size_t)(p - start));
	}
	if (a->n_targets == 0) {
		*reason_r = "no target after the address (expected "
		            "\"address target, target...\")";
		goto fail;
	}
	a->domain = acc_address_domain(a->key);
	if (*a->domain != '\0' && !acc_domain_usable(a->domain)) {
		*reason_r = "domain of the address is not a domain name";
		goto fail;
	}
	a->targets_sorted =
	        acc_xmalloc(a->n_targets * sizeof(*a->targets_sorted));
	for (size_t i = 0; i < a->n_targets; i++) {
		a->targets_sorted[i] = acc_xstrdup(a->targets[i]);
		acc_lowercase(a->targets_sorted[i]);
	}
	qsort(a->targets_sorted, a->n_targets, sizeof(*a->targets_sorted),
	      cmp_str);
	a->raw = acc_xstrndup(text, len);
	return 0;
fail:
	acc_alias_free(a);
	return -1;
}

void acc_alias_free(struct acc_alias *a)
{
	for (size_t i = 0; i < a->n_targets; i++) {
		free(a->targets[i]);
		if (a->targets_sorted != NULL)
			free(a->targets_sorted[i]);
	}
	free(a->targets);
	free(a->targets_sorted);
	free(a->raw);
	free(a->key);
	free(a->comments);
	memset(a, 0, sizeof(*a));
}

static void free_record(void *record)
{
	acc_alias_free(record);
}

/* postmap warns about a repeated key and keeps the first; a map whose
   author wrote one address twice needs a look, not a silent pick. */
static const struct acc_index_layout index_layout = {
        .elem_size = sizeof(struct acc_alias),
        .key_off = offsetof(struct acc_alias, key),
        .line_off = offsetof(struct acc_alias, line),
        .key_name = "address",
        .repeat_effect = "postmap keeps only the first",
        .free_record = free_record,
};

static void finish_entry(struct acc_alias_file *file, struct acc_buf *entry,
                         unsigned int line, char **comments,
                         struct acc_issues *issues)
{
	struct acc_alias a;
	const char *reason;

	if (entry->s == NULL)
		return;
	memset(&a, 0, sizeof(a));
	if (acc_alias_parse(entry->s, entry->len, &a, &reason) < 0) {
		acc_issue_add(issues, file->path, line, reason);
		free(*comments);
	} else {
		a.line = line;
		a.comments = *comments;
		acc_grow(&file->v, &file->cap, file->n, sizeof(*file->v));
		file->v[file->n++] = a;
	}
	*comments = NULL;
	acc_buf_free(entry);
}

int acc_alias_read(const char *path, struct acc_alias_file *file,
                   struct acc_issues *issues, const char **error_r)
{
	struct acc_comments comments = {{NULL, 0, 0}};
	struct acc_buf entry = {NULL, 0, 0};
	char *data, *entry_comments = NULL;
	const char *line;
	size_t size, pos = 0, len;
	unsigned int lineno = 0, entry_line = 0;

	memset(file, 0, sizeof(*file));
	file->path = path;
	if (acc_read_file(path, &data, &size, error_r) < 0)
		return -1;
	while (acc_next_line(data, size, &pos, &line, &len)) {
		size_t skip = 0;

		lineno++;
		if (!acc_comments_entry_line(&comments, line, len, &skip))
			continue;
		if (skip > 0) {
			/* continues the logical line, as postmap joins it */
			if (entry.s == NULL && entry_line == 0) {
				acc_issue_add(issues, path, lineno,
				              "line starts with whitespace but "
				              "continues no entry");
				continue;
			}
			if (entry.s != NULL) {
				acc_buf_add(&entry, "\n", 1);
				acc_buf_add(&entry, line, len);
			}
			continue;
		}
		finish_entry(file, &entry, entry_line, &entry_comments, issues);
		entry_line = lineno;
		entry_comments = acc_comments_take(&comments);
		acc_buf_add(&entry, line, len);
	}
	finish_entry(file, &entry, entry_line, &entry_comments, issues);
	acc_comments_reset(&comments);
	free(data);
	file->n = acc_index_unique(file->v, file->n, &file->sorted,
	                           &index_layout, path, issues);
	return 0;
}

const struct acc_alias *acc_alias_find(const struct acc_alias_file *file,
                                       const char *key)
{
	return acc_index_find(file->v, file->sorted, file->n, &index_layout,
	                      key);
}

bool acc_alias_same_targets(const struct acc_alias *a,
                            const struct acc_alias *b)
{
	size_t i = 0, j = 0;

	/* a target written twice is still one recipient */
	while (i < a->n_targets && j < b->n_targets) {
		if (strcmp(a->targets_sorted[i], b->targets_sorted[j]) != 0)
			return false;
		do
			i++;
		while (i < a->n_targets &&
		       strcmp(a->targets_sorted[i], a->targets_sorted[i - 1]) ==
		               0);
		do
			j++;
		while (j < b->n_targets &&
		       strcmp(b->targets_sorted[j], b->targets_sorted[j - 1]) ==
		               0);
	}
	return i == a->n_targets && j == b->n_targets;
}

bool acc_alias_is_domain_line(const struct acc_alias *a)
{
	return strchr(a->key, '@') == NULL && strchr(a->key, '.') != NULL;
}

void acc_alias_file_free(struct acc_alias_file *file)
{
	for (size_t i = 0; i < file->n; i++)
		acc_alias_free(&file->v[i]);
	free(file->v);
	free(file->sorted);
	memset(file, 0, sizeof(*file));
}
