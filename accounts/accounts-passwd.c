/* Reading Dovecot passwd-files for backfillctl accounts.  The merged file
   is built from these fields byte for byte, so parsing never normalises
   anything except the lookup key. */

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts-passwd.h"

static int check_user(const char *user, const char **reason_r)
{
	const char *at = strchr(user, '@');

	if (*user == '\0') {
		*reason_r = "empty user name";
		return -1;
	}
	for (const char *p = user; *p != '\0'; p++) {
		if (*p == ' ' || *p == '\t') {
			*reason_r = "user name contains whitespace";
			return -1;
		}
	}
	if (at == NULL)
		return 0;
	if (at == user || strchr(at + 1, '@') != NULL) {
		*reason_r = "user name is neither user nor user@domain";
		return -1;
	}
	if (!acc_domain_usable(at + 1)) {
		*reason_r = "domain of the user name is not a domain name";
		return -1;
	}
	return 0;
}

/* uid and gid may be numbers or system user/group names in Dovecot. */
static int check_id(const char *id, const char *what, const char **reason_r)
{
	static char reason[64];

	for (const char *p = id; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
		      *p == '.')) {
			snprintf(reason, sizeof(reason),
			         "%s is neither a number nor a name", what);
			*reason_r = reason;
			return -1;
		}
	}
	return 0;
}

static int check_extra(const char *extra, const char **reason_r)
{
	const char *p = extra;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (*p == '=') {
			*reason_r = "extra field without a name before '='";
			return -1;
		}
		while (*p != '\0' && *p != ' ')
			p++;
	}
	return 0;
}

int acc_pw_parse_line(const char *line, size_t len, struct acc_pw_entry *e,
                      const char **reason_r)
{
	const char *p = line, *end = line + len, *colon;
	unsigned int i;

	if (memchr(line, '\0', len) != NULL) {
		*reason_r = "NUL byte in the line";
		return -1;
	}
	if (memchr(line, '\r', len) != NULL) {
		*reason_r = "carriage return in the line (CRLF line ends?)";
		return -1;
	}
	if (memchr(line, ':', len) == NULL) {
		*reason_r = "no ':' after the user name (expected "
		            "user:password:uid:gid:gecos:home:shell:extra)";
		return -1;
	}
	for (i = 0; i < ACC_PW_EXTRA; i++) {
		colon = memchr(p, ':', (size_t)(end - p));
		if (colon == NULL)
			break;
		e->field[i] = acc_xstrndup(p, (size_t)(colon - p));
		p = colon + 1;
	}
	/* the last field present runs to the end of the line */
	e->field[i] = acc_xstrndup(p, (size_t)(end - p));
	e->raw = acc_xstrndup(line, len);
	if (check_user(e->field[ACC_PW_USER], reason_r) < 0 ||
	    (e->field[ACC_PW_UID] != NULL &&
	     check_id(e->field[ACC_PW_UID], "uid", reason_r) < 0) ||
	    (e->field[ACC_PW_GID] != NULL &&
	     check_id(e->field[ACC_PW_GID], "gid", reason_r) < 0) ||
	    (e->field[ACC_PW_EXTRA] != NULL &&
	     check_extra(e->field[ACC_PW_EXTRA], reason_r) < 0)) {
		acc_pw_entry_free(e);
		return -1;
	}
	e->key = acc_xstrdup(e->field[ACC_PW_USER]);
	acc_lowercase(e->key);
	e->domain = strchr(e->key, '@') != NULL ? strchr(e->key, '@') + 1 : "";
	return 0;
}

void acc_pw_entry_free(struct acc_pw_entry *e)
{
	for (unsigned int i = 0; i < ACC_PW_FIELDS; i++)
		free(e->field[i]);
	free(e->raw);
	free(e->key);
	free(e->comments);
	memset(e, 0, sizeof(*e));
}

static void free_record(void *record)
{
	acc_pw_entry_free(record);
}

/* Dovecot warns about a user listed twice and uses one of the lines; which
   one the operator meant is not ours to guess, so the later line is an
   input problem like a malformed one. */
static const struct acc_index_layout index_layout = {
        .elem_size = sizeof(struct acc_pw_entry),
        .key_off = offsetof(struct acc_pw_entry, key),
        .line_off = offsetof(struct acc_pw_entry, line),
        .key_name = "user",
        .repeat_effect = "Dovecot would use only one of them",
        .free_record = free_record,
};

int acc_pw_read(const char *path, struct acc_pw_file *file,
                struct acc_issues *issues, const char **error_r)
{
	struct acc_comments comments = {{NULL, 0, 0}};
	const char *line, *reason;
	char *data;
	size_t size, pos = 0, len;
	unsigned int lineno = 0;

	memset(file, 0, sizeof(*file));
	file->path = path;
	if (acc_read_file(path, &data, &size, error_r) < 0)
		return -1;
	while (acc_next_line(data, size, &pos, &line, &len)) {
		struct acc_pw_entry e;
		size_t skip = 0;

		lineno++;
		if (!acc_comments_entry_line(&comments, line, len, &skip))
			continue;
		memset(&e, 0, sizeof(e));
		if (acc_pw_parse_line(line, len, &e, &reason) < 0) {
			acc_issue_add(issues, path, lineno, reason);
			acc_comments_reset(&comments);
			continue;
		}
		e.line = lineno;
		e.comments = acc_comments_take(&comments);
		acc_grow(&file->v, &file->cap, file->n, sizeof(*file->v));
		file->v[file->n++] = e;
	}
	acc_comments_reset(&comments);
	free(data);
	file->n = acc_index_unique(file->v, file->n, &file->sorted,
	                           &index_layout, path, issues);
	return 0;
}

const struct acc_pw_entry *acc_pw_find(const struct acc_pw_file *file,
                                       const char *key)
{
	return acc_index_find(file->v, file->sorted, file->n, &index_layout,
	                      key);
}

void acc_pw_file_free(struct acc_pw_file *file)
{
	for (size_t i = 0; i < file->n; i++)
		acc_pw_entry_free(&file->v[i]);
	free(file->v);
	free(file->sorted);
	memset(file, 0, sizeof(*file));
}
