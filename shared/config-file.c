/* "Key value" configuration files in the style of opendkim.conf. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-file.h"

static int fail(char **error_r, const char *path, unsigned int line,
                const char *reason)
{
	char *msg = NULL;

	if (line > 0) {
		if (asprintf(&msg, "%s:%u: %s", path, line, reason) < 0)
			msg = NULL;
	} else {
		if (asprintf(&msg, "%s: %s", path, reason) < 0)
			msg = NULL;
	}
	*error_r = msg != NULL ? msg : strdup("out of memory");
	return -1;
}

static char *trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t' ||
	                   end[-1] == '\r' || end[-1] == '\n'))
		end--;
	*end = '\0';
	return s;
}

int bf_config_file_read(const char *path, bf_config_setting_cb *cb,
                        void *context, char **error_r)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, *cb_error;
	size_t line_size = 0;
	unsigned int lineno = 0;
	ssize_t len;
	int ret = 0;

	if (f == NULL)
		return fail(error_r, path, 0, strerror(errno));
	while ((len = getline(&line, &line_size, f)) >= 0) {
		lineno++;
		if (memchr(line, '\0', (size_t)len) != NULL) {
			ret = fail(error_r, path, lineno, "NUL byte in line");
			break;
		}
		char *hash = strchr(line, '#');
		if (hash != NULL)
			*hash = '\0';
		char *key = trim(line);
		if (*key == '\0')
			continue;
		char *value = key + strcspn(key, " \t");
		if (*value != '\0')
			*value++ = '\0';
		value = trim(value);
		if (*value == '\0') {
			char reason[256];
			snprintf(reason, sizeof(reason), "%.64s: missing value",
			         key);
			ret = fail(error_r, path, lineno, reason);
			break;
		}
		cb_error = NULL;
		if (cb(key, value, context, &cb_error) < 0) {
			ret = fail(error_r, path, lineno,
			           cb_error != NULL ? cb_error : "invalid");
			free(cb_error);
			break;
		}
	}
	if (ret == 0 && ferror(f))
		ret = fail(error_r, path, 0, strerror(errno));
	free(line);
	fclose(f);
	return ret;
}
