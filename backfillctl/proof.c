/* backfillctl report: reading the state store's merge records, doveadm's
   verify output and the domain map into one list of users by domain. */

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "accounts-util.h"
#include "escape.h"
#include "proof.h"

static size_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return (size_t)h;
}

/* The slot of user in the hash table: its own, or the free one it would
   take.  n_slots is a power of two, at least twice the users. */
static size_t *user_slot(const struct proof *p, const char *user)
{
	size_t mask = p->n_slots - 1, i = name_hash(user) & mask;

	while (p->slots[i] != 0 &&
	       strcmp(p->v[p->slots[i] - 1].user, user) != 0)
		i = (i + 1) & mask;
	return &p->slots[i];
}

static void slots_grow(struct proof *p)
{
	size_t *old = p->slots, n_old = p->n_slots;

	p->n_slots = n_old == 0 ? 1024 : n_old * 2;
	p->slots = acc_xmalloc(p->n_slots * sizeof(*p->slots));
	memset(p->slots, 0, p->n_slots * sizeof(*p->slots));
	for (size_t i = 0; i < n_old; i++) {
		if (old[i] != 0)
			*user_slot(p, p->v[old[i] - 1].user) = old[i];
	}
	free(old);
}

static struct proof_user *user_add(struct proof *p, const char *user)
{
	struct proof_user *u;

	if ((p->n + 1) * 2 > p->n_slots)
		slots_grow(p);
	acc_grow(&p->v, &p->cap, p->n, sizeof(*p->v));
	u = &p->v[p->n++];
	memset(u, 0, sizeof(*u));
	u->user = acc_xstrdup(user);
	*user_slot(p, user) = p->n;
	return u;
}

static struct proof_user *user_find(struct proof *p, const char *user)
{
	size_t *slot;

	if (p->n_slots == 0)
		return NULL;
	slot = user_slot(p, user);
	return *slot == 0 ? NULL : &p->v[*slot - 1];
}

char *proof_escape(const char *s, unsigned int flags)
{
	size_t len = strlen(s);
	size_t n = bf_escape(s, len, flags, "", NULL, 0);
	char *escaped = acc_xmalloc(n + 1);

	bf_escape(s, len, flags, "", escaped, n + 1);
	return escaped;
}

/* user as doveadm backfill prints it (dovecot-plugin/value-escape.h): the
   verify output names users so, the store and the map by their own
   bytes, and each user must be one entry of the proof. */
static char *printed_user(const char *user)
{
	return proof_escape(user, BF_ESCAPE_REVERSIBLE);
}

/* user as verify prints it back to the user's own bytes, so that the
   commands a report names open that user and no other (a backslash is
   printed \\); NULL for a name that is not doveadm's escaping (a lone
   or unknown backslash escape, a NUL byte): the name is then shown and
   named as printed, as an older doveadm printed names unescaped. */
static char *real_user(const char *printed)
{
	size_t len = strlen(printed), real_len;
	char *real = acc_xstrndup(printed, len);

	if (bf_unescape(printed, len, real, &real_len) < 0 ||
	    strlen(real) != real_len) {
		free(real);
		return NULL;
	}
	return real;
}

static int store_cb(const char *user, const struct bf_merge_record *rec,
                    void *context)
{
	struct proof *p = context;
	char *printed = printed_user(user);
	struct proof_user *u = user_add(p, printed);

	free(printed);
	if (u->real_user == NULL)
		u->real_user = acc_xstrdup(user);
	u->has_record = true;
	u->status = rec->status;
	u->archived = rec->archived;
	u->added = rec->added;
	u->duplicates = rec->duplicates;
	u->skipped = rec->skipped;
	/* the stores keep counts as signed 64-bit numbers: one above
	   INT64_MAX is a negative count read back, or garbage */
	u->damaged_record =
	        rec->archived > INT64_MAX || rec->added > INT64_MAX ||
	        rec->duplicates > INT64_MAX || rec->skipped > INT64_MAX;
	if (rec->last_error != NULL)
		u->last_error = acc_xstrdup(rec->last_error);
	return 0;
}

int proof_read_store(struct proof *p, const char *uri, char **error_r)
{
	struct bf_state *state;
	const char *error;
	int ret;

	if (bf_state_open(uri, &state, error_r) < 0)
		return -1;
	ret = bf_state_merge_iter(state, store_cb, p, &error);
	if (ret < 0)
		*error_r = acc_xprintf("%s: %s", uri, error);
	bf_state_close(&state);
	return ret < 0 ? -1 : 0;
}

/* Splits a line at tabs into at most max fields; returns the count of
   fields in the line, which is more than max when there are more. */
static size_t split_tabs(char *line, char **fields, size_t max)
{
	size_t n = 0;

	for (;;) {
		char *tab = strchr(line, '\t');

		if (n < max)
			fields[n] = line;
		n++;
		if (tab == NULL)
			break;
		if (n < max)
			*tab = '\0';
		line = tab + 1;
	}
	return n;
}

static bool parse_count(const char *s, uint64_t *n_r)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	*n_r = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0' && *n_r <= INT64_MAX;
}

/* A count of verify's row: empty is 0 (a user verify could not check
   prints no figures, with an error); anything else but a number sets
   *damaged. */
static uint64_t verify_count(const char *s, bool *damaged)
{
	uint64_t n;

	if (*s == '\0')
		return 0;
	if (!parse_count(s, &n)) {
		*damaged = true;
		return 0;
	}
	return n;
}

enum verify_col {
	COL_USER,
	COL_USERNAME,
	COL_RESULT,
	COL_ARCHIVED,
	COL_PRESENT,
	COL_MISSING,
	COL_MISSING_LIST,
	COL_ERROR,
	COL_SYMLINKS,
	COL_UID_MISMATCHES,
	COL_UID_MISMATCH_LIST,
	COLS
};
static const char *const col_titles[COLS] = {
        "user",     "username",      "result",           "archived",
        "present",  "missing",       "missingfolderuid", "error",
        "symlinks", "uidmismatches", "uidmismatchlist",
};
#define MAX_FIELDS 32

int proof_parse_verify(struct proof *p, const char *data, size_t size,
                       char **error_r)
{
	int col[COLS];
	char *fields[MAX_FIELDS];
	const char *line;
	size_t pos = 0, len, nf = 0, header_nf = 0;
	unsigned int lineno = 0;
	bool header = true;

	for (int c = 0; c < COLS; c++)
		col[c] = -1;
	while (acc_next_line(data, size, &pos, &line, &len)) {
		char *copy = acc_xstrndup(line, len);
		struct proof_user *u;
		const char *name;

		lineno++;
		if (len > 0 && copy[len - 1] == '\r')
			copy[len - 1] = '\0';
		if (*copy == '\0') {
			free(copy);
			continue;
		}
		nf = split_tabs(copy, fields, MAX_FIELDS);
		if (header) {
			if (nf > MAX_FIELDS) {
				*error_r = acc_xprintf(
				        "line %u: %zu columns, more than "
				        "doveadm backfill verify prints",
				        lineno, nf);
				free(copy);
				return -1;
			}
			header_nf = nf;
			for (size_t i = 0; i < nf; i++) {
				acc_lowercase(fields[i]);
				for (int c = 0; c < COLS; c++) {
					if (strcmp(fields[i], col_titles[c]) ==
					    0)
						col[c] = (int)i;
				}
			}
			free(copy);
			if ((col[COL_USER] < 0 && col[COL_USERNAME] < 0) ||
			    col[COL_ARCHIVED] < 0 || col[COL_PRESENT] < 0 ||
			    col[COL_MISSING] < 0) {
				*error_r = acc_xstrdup(
				        "line 1: not the header of doveadm -f "
				        "tab backfill verify (User, Archived, "
				        "Present, Missing)");
				return -1;
			}
			header = false;
			continue;
		}
		/* A tab or a line break inside a value (a folder name in an
		   error, printed by a doveadm that does not escape -f tab)
		   shifts or splits a row, and a split row can read as another
		   user's: no row is taken unless it has the header's shape. */
		if (nf != header_nf) {
			*error_r = acc_xprintf(
			        "line %u: %zu fields, the header has %zu: a tab "
			        "or line break inside a value (a folder name?) "
			        "changed the rows; nothing of this file is "
			        "trusted (read the line, run verify for the "
			        "users one by one)",
			        lineno, nf, header_nf);
			free(copy);
			return -1;
		}
		name = fields[col[COL_USER] >= 0 ? col[COL_USER]
		                                 : col[COL_USERNAME]];
		if (*name == '\0') {
			*error_r = acc_xprintf("line %u: no user", lineno);
			free(copy);
			return -1;
		}
		if ((u = user_find(p, name)) == NULL) {
			u = user_add(p, name);
			u->real_user = real_user(name);
		}
		if (u->has_verify) {
			*error_r = acc_xprintf("line %u: user %s twice", lineno,
			                       name);
			free(copy);
			return -1;
		}
		u->has_verify = true;
		u->v_archived = verify_count(fields[col[COL_ARCHIVED]],
		                             &u->damaged_verify);
		u->v_present = verify_count(fields[col[COL_PRESENT]],
		                            &u->damaged_verify);
		u->v_missing = verify_count(fields[col[COL_MISSING]],
		                            &u->damaged_verify);
		if (col[COL_SYMLINKS] >= 0)
			u->v_symlinks = verify_count(fields[col[COL_SYMLINKS]],
			                             &u->damaged_verify);
		if (col[COL_UID_MISMATCHES] >= 0)
			u->v_uid_mismatches =
			        verify_count(fields[col[COL_UID_MISMATCHES]],
			                     &u->damaged_verify);
		if (u->damaged_verify)
			u->v_archived = u->v_present = u->v_missing =
			        u->v_symlinks = u->v_uid_mismatches = 0;
		if (col[COL_RESULT] >= 0)
			u->verify_result = acc_xstrdup(fields[col[COL_RESULT]]);
		if (col[COL_MISSING_LIST] >= 0 &&
		    *fields[col[COL_MISSING_LIST]] != '\0')
			u->missing_list =
			        acc_xstrdup(fields[col[COL_MISSING_LIST]]);
		if (col[COL_ERROR] >= 0 && *fields[col[COL_ERROR]] != '\0')
			u->verify_error = acc_xstrdup(fields[col[COL_ERROR]]);
		if (col[COL_UID_MISMATCH_LIST] >= 0 &&
		    *fields[col[COL_UID_MISMATCH_LIST]] != '\0')
			u->uid_mismatch_list =
			        acc_xstrdup(fields[col[COL_UID_MISMATCH_LIST]]);
		free(copy);
	}
	if (header) {
		*error_r = acc_xstrdup("empty: no header line");
		return -1;
	}
	return 0;
}

int proof_parse_domain_map(struct proof *p, const char *data, size_t size,
                           char **error_r)
{
	const char *line;
	size_t pos = 0, len;
	unsigned int lineno = 0;

	while (acc_next_line(data, size, &pos, &line, &len)) {
		size_t i = 0, u0, u1, d0, d1;
		char *name;

		lineno++;
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i == len || line[i] == '#')
			continue;
		u0 = i;
		while (i < len && line[i] != ' ' && line[i] != '\t')
			i++;
		u1 = i;
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		d0 = i;
		while (i < len && line[i] != ' ' && line[i] != '\t' &&
		       line[i] != '\r')
			i++;
		d1 = i;
		while (i < len &&
		       (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
			i++;
		if (d0 == d1 || i != len) {
			*error_r = acc_xprintf("line %u: expected USER DOMAIN",
			                       lineno);
			return -1;
		}
		acc_grow(&p->map_user, &p->cap_map, p->n_map,
		         sizeof(*p->map_user));
		p->map_domain = acc_xrealloc(
		        p->map_domain, p->cap_map * sizeof(*p->map_domain));
		name = acc_xstrndup(line + u0, u1 - u0);
		p->map_user[p->n_map] = printed_user(name);
		free(name);
		p->map_domain[p->n_map] = acc_xstrndup(line + d0, d1 - d0);
		acc_lowercase(p->map_domain[p->n_map]);
		p->n_map++;
	}
	return 0;
}

static int user_cmp(const void *a, const void *b)
{
	const struct proof_user *ua = a, *ub = b;
	int r = strcmp(ua->domain, ub->domain);

	return r != 0 ? r : strcmp(ua->user, ub->user);
}

/* Domains are case-insensitive and "example.com." is "example.com": one
   domain, one report, however its users spell it. */
static char *domain_normal(const char *domain)
{
	char *d = acc_xstrdup(domain);
	size_t len = strlen(d);

	acc_lowercase(d);
	if (len > 0 && d[len - 1] == '.')
		d[len - 1] = '\0';
	return d;
}

static const struct proof *map_sort_p;

/* the map by user, ties in file order: the first line for a user wins */
static int map_cmp(const void *a, const void *b)
{
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	int r = strcmp(map_sort_p->map_user[ia], map_sort_p->map_user[ib]);

	return r != 0 ? r : ia < ib ? -1 : ia > ib;
}

static const char *map_find(const struct proof *p, const size_t *order,
                            const char *user)
{
	size_t lo = 0, hi = p->n_map;

	/* the first entry not below user */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(p->map_user[order[mid]], user) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < p->n_map && strcmp(p->map_user[order[lo]], user) == 0
	               ? p->map_domain[order[lo]]
	               : NULL;
}

void proof_finish(struct proof *p)
{
	size_t *order = acc_xmalloc((p->n_map + 1) * sizeof(*order));

	for (size_t j = 0; j < p->n_map; j++)
		order[j] = j;
	map_sort_p = p;
	qsort(order, p->n_map, sizeof(*order), map_cmp);
	for (size_t i = 0; i < p->n; i++) {
		struct proof_user *u = &p->v[i];
		const char *at = strrchr(u->user, '@');
		const char *domain = at != NULL ? at + 1 : "";

		if (at == NULL && p->n_map > 0) {
			const char *mapped = map_find(p, order, u->user);

			if (mapped != NULL)
				domain = mapped;
		}
		/* any domain gets a report of its own, under a file name
		   no other domain can take (acc_domain_file_stem) */
		u->domain = domain_normal(domain);
	}
	free(order);
	/* sorted, the hash table's indexes are stale: lookups are done */
	free(p->slots);
	p->slots = NULL;
	p->n_slots = 0;
	qsort(p->v, p->n, sizeof(*p->v), user_cmp);
	for (size_t i = 0; i < p->n; i++) {
		if (p->n_domains > 0 &&
		    strcmp(p->domains[p->n_domains - 1], p->v[i].domain) == 0) {
			p->domain_n[p->n_domains - 1]++;
			continue;
		}
		if (p->n_domains == p->cap_domains) {
			acc_grow(&p->domains, &p->cap_domains, p->n_domains,
			         sizeof(*p->domains));
			p->domain_files = acc_xrealloc(
			        p->domain_files,
			        p->cap_domains * sizeof(*p->domain_files));
			p->domain_first = acc_xrealloc(
			        p->domain_first,
			        p->cap_domains * sizeof(*p->domain_first));
			p->domain_n = acc_xrealloc(
			        p->domain_n,
			        p->cap_domains * sizeof(*p->domain_n));
		}
		p->domains[p->n_domains] = acc_xstrdup(p->v[i].domain);
		p->domain_files[p->n_domains] =
		        acc_domain_file_stem(p->v[i].domain);
		p->domain_first[p->n_domains] = i;
		p->domain_n[p->n_domains] = 1;
		p->n_domains++;
	}
}

size_t proof_domain_users(const struct proof *p, const char *domain,
                          size_t *first_r)
{
	size_t lo = 0, hi = p->n_domains;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(p->domains[mid], domain);

		if (r == 0) {
			*first_r = p->domain_first[mid];
			return p->domain_n[mid];
		}
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*first_r = p->n;
	return 0;
}

void proof_free(struct proof *p)
{
	for (size_t i = 0; i < p->n; i++) {
		struct proof_user *u = &p->v[i];

		free(u->user);
		free(u->real_user);
		free(u->domain);
		free(u->last_error);
		free(u->verify_result);
		free(u->missing_list);
		free(u->verify_error);
		free(u->uid_mismatch_list);
	}
	free(p->v);
	for (size_t i = 0; i < p->n_domains; i++) {
		free(p->domains[i]);
		free(p->domain_files[i]);
	}
	free(p->domains);
	free(p->domain_files);
	free(p->domain_first);
	free(p->domain_n);
	free(p->slots);
	for (size_t i = 0; i < p->n_map; i++) {
		free(p->map_user[i]);
		free(p->map_domain[i]);
	}
	free(p->map_user);
	free(p->map_domain);
	memset(p, 0, sizeof(*p));
}
