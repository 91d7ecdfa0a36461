/* Helpers of the accounts library (backfillctl accounts): memory,
   strings, input problems. */

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts-util.h"

static void acc_oom(void)
{
	fputs("backfillctl: out of memory, nothing was written\n", stderr);
	exit(ACC_EXIT_NOMEM);
}

void *acc_xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		acc_oom();
	return p;
}

void *acc_xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size == 0 ? 1 : size);

	if (p == NULL)
		acc_oom();
	return p;
}

char *acc_xstrndup(const char *s, size_t n)
{
	char *p = acc_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *acc_xstrdup(const char *s)
{
	return acc_xstrndup(s, strlen(s));
}

static char *acc_vprintf(const char *fmt, va_list args)
{
	va_list copy;
	int n;
	char *p;

	va_copy(copy, args);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0)
		acc_oom();
	p = acc_xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, args);
	return p;
}

char *acc_xprintf(const char *fmt, ...)
{
	va_list args;
	char *p;

	va_start(args, fmt);
	p = acc_vprintf(fmt, args);
	va_end(args);
	return p;
}

void acc_grow(void *array_p, size_t *cap, size_t n, size_t elem_size)
{
	void **array = array_p;

	if (n < *cap)
		return;
	*cap = *cap == 0 ? 16 : *cap * 2;
	*array = acc_xrealloc(*array, *cap * elem_size);
}

void acc_buf_add(struct acc_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap == 0 ? 256 : b->cap * 2;
		b->s = acc_xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void acc_buf_puts(struct acc_buf *b, const char *s)
{
	acc_buf_add(b, s, strlen(s));
}

void acc_buf_printf(struct acc_buf *b, const char *fmt, ...)
{
	va_list args;
	char *p;

	va_start(args, fmt);
	p = acc_vprintf(fmt, args);
	va_end(args);
	acc_buf_puts(b, p);
	free(p);
}

void acc_buf_free(struct acc_buf *b)
{
	free(b->s);
	b->s = NULL;
	b->len = b->cap = 0;
}

void acc_issue_add(struct acc_issues *issues, const char *path,
                   unsigned int line, const char *reason)
{
	acc_grow(&issues->v, &issues->cap, issues->n, sizeof(*issues->v));
	issues->v[issues->n].path = path;
	issues->v[issues->n].line = line;
	issues->v[issues->n].reason = acc_xstrdup(reason);
	issues->n++;
}

void acc_issues_free(struct acc_issues *issues)
{
	for (size_t i = 0; i < issues->n; i++)
		free(issues->v[i].reason);
	free(issues->v);
	issues->v = NULL;
	issues->n = issues->cap = 0;
}

int acc_read_file(const char *path, char **data_r, size_t *size_r,
                  const char **error_r)
{
	FILE *f = fopen(path, "rb");
	char *data = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL) {
		*error_r = strerror(errno);
		return -1;
	}
	for (;;) {
		if (len + 65536 + 1 > cap) {
			cap = cap == 0 ? 65536 + 1 : cap * 2;
			data = acc_xrealloc(data, cap);
		}
		n = fread(data + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(f)) {
		*error_r = strerror(errno);
		fclose(f);
		free(data);
		return -1;
	}
	fclose(f);
	if (data == NULL)
		data = acc_xmalloc(1);
	data[len] = '\0';
	*data_r = data;
	*size_r = len;
	return 0;
}

void acc_lowercase(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

const char *acc_address_domain(const char *address)
{
	const char *at = strrchr(address, '@');

	if (at != NULL)
		return at + 1;
	return strchr(address, '.') != NULL ? address : "";
}

bool acc_domain_usable(const char *s)
{
	if (*s == '\0' || *s == '.')
		return false;
	for (; *s != '\0'; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '.' ||
		      *s == '_'))
			return false;
	}
	return true;
}

static bool domain_plain(const char *s)
{
	size_t len = strlen(s);
	bool dot = false;

	if (len == 0 || len > ACC_DOMAIN_STEM_MAX || s[0] == '.' ||
	    s[len - 1] == '.' || !acc_domain_usable(s))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
			dot = true;
		}
	}
	return dot;
}

char *acc_domain_file_stem(const char *domain)
{
	/* FNV-1a: not against an adversary (who picks no second domain on
	   the same server to collide with); the report refuses to write
	   one name twice should two hashes ever meet */
	uint64_t h = 0xcbf29ce484222325ULL;

	if (*domain == '\0')
		return acc_xstrdup("_nodomain");
	if (domain_plain(domain))
		return acc_xstrdup(domain);
	for (const unsigned char *c = (const unsigned char *)domain; *c != '\0';
	     c++) {
		h ^= *c;
		h *= 0x100000001b3ULL;
	}
	return acc_xprintf("_d-%016" PRIx64, h);
}

bool acc_next_line(const char *data, size_t size, size_t *pos,
                   const char **line_r, size_t *len_r)
{
	const char *nl;

	if (*pos >= size)
		return false;
	*line_r = data + *pos;
	nl = memchr(*line_r, '\n', size - *pos);
	*len_r = nl == NULL ? size - *pos : (size_t)(nl - *line_r);
	*pos += *len_r + (nl == NULL ? 0 : 1);
	return true;
}

void acc_comments_line(struct acc_comments *c, const char *line, size_t len)
{
	acc_buf_add(&c->buf, line, len);
	acc_buf_add(&c->buf, "\n", 1);
}

bool acc_comments_entry_line(struct acc_comments *c, const char *line,
                             size_t len, size_t *indent_r)
{
	size_t skip = 0;

	while (skip < len && (line[skip] == ' ' || line[skip] == '\t'))
		skip++;
	if (skip == len) {
		acc_comments_reset(c);
		return false;
	}
	if (line[skip] == '#') {
		acc_comments_line(c, line, len);
		return false;
	}
	*indent_r = skip;
	return true;
}

void acc_comments_reset(struct acc_comments *c)
{
	acc_buf_free(&c->buf);
}

char *acc_comments_take(struct acc_comments *c)
{
	char *s = c->buf.s;

	c->buf.s = NULL;
	c->buf.len = c->buf.cap = 0;
	return s;
}

static const char *record_key(const void *v, size_t i,
                              const struct acc_index_layout *layout)
{
	const char *rec = (const char *)v + i * layout->elem_size;
	const char *key;

	memcpy(&key, rec + layout->key_off, sizeof(key));
	return key;
}

static unsigned int record_line(const void *v, size_t i,
                                const struct acc_index_layout *layout)
{
	const char *rec = (const char *)v + i * layout->elem_size;
	unsigned int line;

	memcpy(&line, rec + layout->line_off, sizeof(line));
	return line;
}

struct index_sort {
	const void *v;
	const struct acc_index_layout *layout;
};

static int index_cmp(const void *a, const void *b, void *context)
{
	const struct index_sort *ctx = context;
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	int r = strcmp(record_key(ctx->v, ia, ctx->layout),
	               record_key(ctx->v, ib, ctx->layout));

	if (r != 0)
		return r;
	return record_line(ctx->v, ia, ctx->layout) <
	                       record_line(ctx->v, ib, ctx->layout)
	               ? -1
	               : 1;
}

size_t *acc_index_build(const void *v, size_t n,
                        const struct acc_index_layout *layout)
{
	struct index_sort ctx = {.v = v, .layout = layout};
	size_t *sorted = acc_xmalloc((n == 0 ? 1 : n) * sizeof(*sorted));

	for (size_t i = 0; i < n; i++)
		sorted[i] = i;
	qsort_r(sorted, n, sizeof(*sorted), index_cmp, &ctx);
	return sorted;
}

size_t acc_index_unique(void *v, size_t n, size_t **sorted_r,
                        const struct acc_index_layout *layout, const char *path,
                        struct acc_issues *issues)
{
	bool *drop = acc_xmalloc(n * sizeof(*drop) + 1);
	char *base = v;
	size_t out = 0, first = 0;

	memset(drop, 0, n * sizeof(*drop) + 1);
	*sorted_r = acc_index_build(v, n, layout);
	for (size_t i = 1; i < n; i++) {
		char *reason;

		/* sorted by key, then line: the first of a run is the line
		   the reading program keeps */
		if (strcmp(record_key(v, (*sorted_r)[first], layout),
		           record_key(v, (*sorted_r)[i], layout)) != 0) {
			first = i;
			continue;
		}
		reason =
		        acc_xprintf("same %s as line %u (%s)", layout->key_name,
		                    record_line(v, (*sorted_r)[first], layout),
		                    layout->repeat_effect);
		acc_issue_add(issues, path,
		              record_line(v, (*sorted_r)[i], layout), reason);
		free(reason);
		drop[(*sorted_r)[i]] = true;
	}
	for (size_t i = 0; i < n; i++) {
		char *rec = base + i * layout->elem_size;

		if (drop[i])
			layout->free_record(rec);
		else if (out++ != i)
			memcpy(base + (out - 1) * layout->elem_size, rec,
			       layout->elem_size);
	}
	free(drop);
	free(*sorted_r);
	*sorted_r = acc_index_build(v, out, layout);
	return out;
}

const void *acc_index_find(const void *v, const size_t *sorted, size_t n,
                           const struct acc_index_layout *layout,
                           const char *key)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(key, record_key(v, sorted[mid], layout));

		if (r == 0)
			return (const char *)v +
			       sorted[mid] * layout->elem_size;
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

void acc_html_escape(FILE *out, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '<':
			fputs("&lt;", out);
			break;
		case '>':
			fputs("&gt;", out);
			break;
		case '&':
			fputs("&amp;", out);
			break;
		case '"':
			fputs("&quot;", out);
			break;
		case '\'':
			fputs("&#39;", out);
			break;
		default:
			fputc(*s, out);
		}
	}
}

void acc_html_printf(FILE *out, const char *fmt, ...)
{
	const char *conv;
	va_list ap;

	va_start(ap, fmt);
	while ((conv = strstr(fmt, "%s")) != NULL) {
		fwrite(fmt, 1, (size_t)(conv - fmt), out);
		acc_html_escape(out, va_arg(ap, const char *));
		fmt = conv + 2;
	}
	va_end(ap);
	fputs(fmt, out);
}

/* The look both kinds of report share: they go to the same people. */
static const char html_base_style[] =
        "body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;"
        "max-width:60em;padding:0 1em;color:#1b1b1b;background:#fff}"
        "h1{font-size:1.5em;margin-bottom:.2em}"
        "h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ccc}"
        ".meta{color:#555}"
        ".verdict{padding:.6em .9em;border-radius:4px;margin:1em 0}"
        ".verdict.ok{background:#e7f5e9;border:1px solid #9ccea4}"
        ".verdict.todo{background:#fff4e0;border:1px solid #e7b15c}"
        "code{font-family:ui-monospace,monospace;font-size:.95em}";

void acc_html_begin(FILE *out, const char *title_prefix, const char *title,
                    const char *style)
{
	/* The pages need nothing but their inline style: a policy that
	   allows nothing else keeps a slip in the escaping from running or
	   fetching anything. */
	fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta "
	      "charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" "
	      "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
	      "<meta name=\"viewport\" "
	      "content=\"width=device-width\">\n<title>",
	      out);
	acc_html_escape(out, title_prefix);
	acc_html_escape(out, title);
	fprintf(out, "</title>\n<style>%s%s</style></head>\n<body>\n",
	        html_base_style, style);
}
