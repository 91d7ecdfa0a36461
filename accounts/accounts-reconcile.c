/* The reconciliation of backfillctl accounts.  Every decision lands in an
   acc_item for the domain's report; the merged files are built alongside.
   The rules, field by field, are in docs/accounts.md: keep both in step. */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "accounts-reconcile.h"

static const char *const field_names[ACC_PW_FIELDS] = {
        "user",  "password", "uid",   "gid",
        "gecos", "home",     "shell", "extra fields",
};

/* ------------------------------------------------------------ items */

static struct acc_item *item_add(struct acc_reconcile *m, enum acc_kind kind,
                                 const char *domain, const char *address)
{
	struct acc_item *it;

	acc_grow(&m->items, &m->cap, m->n, sizeof(*m->items));
	it = &m->items[m->n++];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	it->domain = domain;
	it->address = acc_xstrdup(address);
	if (kind >= ACC_FIRST_CONFLICT)
		m->n_conflicts++;
	return it;
}

static void __attribute__((format(printf, 2, 3)))
item_note(struct acc_item *it, const char *fmt, ...)
{
	va_list args;
	char *text;
	int n;

	va_start(args, fmt);
	n = vsnprintf(NULL, 0, fmt, args);
	va_end(args);
	text = acc_xmalloc((size_t)(n < 0 ? 0 : n) + 1);
	va_start(args, fmt);
	vsnprintf(text, (size_t)(n < 0 ? 0 : n) + 1, fmt, args);
	va_end(args);
	acc_grow(&it->notes, &it->cap_notes, it->n_notes, sizeof(*it->notes));
	it->notes[it->n_notes++] = text;
}

static void add_domain(struct acc_reconcile *m, const char *domain)
{
	acc_grow(&m->domains, &m->cap_domains, m->n_domains,
	         sizeof(*m->domains));
	m->domains[m->n_domains++] = (char *)domain;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void finish_domains(struct acc_reconcile *m)
{
	size_t out = 0;

	if (m->n_domains == 0)
		return;
	qsort(m->domains, m->n_domains, sizeof(*m->domains), cmp_str);
	for (size_t i = 0; i < m->n_domains; i++) {
		if (out > 0 && strcmp(m->domains[out - 1], m->domains[i]) == 0)
			continue;
		m->domains[out++] = m->domains[i];
	}
	m->n_domains = out;
	for (size_t i = 0; i < m->n_domains; i++)
		m->domains[i] = acc_xstrdup(m->domains[i]);
}

static const struct acc_reconcile *sort_merge;

static int cmp_item_index(const void *a, const void *b)
{
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	int r = strcmp(sort_merge->items[ia].domain,
	               sort_merge->items[ib].domain);

	return r != 0 ? r : (ia < ib ? -1 : 1);
}

/* Reports are written per domain: index the items by domain once instead
   of scanning every item for every domain (2000 domains, 100k accounts). */
static void index_domains(struct acc_reconcile *m)
{
	size_t j = 0;

	m->order = acc_xmalloc((m->n + 1) * sizeof(*m->order));
	m->domain_first = acc_xmalloc((m->n_domains + 1) * sizeof(size_t));
	m->domain_n = acc_xmalloc((m->n_domains + 1) * sizeof(size_t));
	for (size_t i = 0; i < m->n; i++)
		m->order[i] = i;
	sort_merge = m;
	if (m->n > 0)
		qsort(m->order, m->n, sizeof(*m->order), cmp_item_index);
	sort_merge = NULL;
	for (size_t d = 0; d < m->n_domains; d++) {
		/* every item's domain is in m->domains, both sorted */
		while (j < m->n &&
		       strcmp(m->items[m->order[j]].domain, m->domains[d]) < 0)
			j++;
		m->domain_first[d] = j;
		while (j < m->n &&
		       strcmp(m->items[m->order[j]].domain, m->domains[d]) == 0)
			j++;
		m->domain_n[d] = j - m->domain_first[d];
	}
}

size_t acc_reconcile_domain_items(const struct acc_reconcile *m,
                                  const char *domain, const size_t **idx_r)
{
	size_t lo = 0, hi = m->n_domains;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(domain, m->domains[mid]);

		if (r == 0) {
			*idx_r = m->order + m->domain_first[mid];
			return m->domain_n[mid];
		}
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	*idx_r = m->order;
	return 0;
}

/* ------------------------------------------------------------ extra fields */

struct tokens {
	char **v;
	size_t n, cap;
};

static void tokens_split(const char *extra, struct tokens *t)
{
	const char *p = extra == NULL ? "" : extra, *start;

	memset(t, 0, sizeof(*t));
	while (*p != '\0') {
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		acc_grow(&t->v, &t->cap, t->n, sizeof(*t->v));
		t->v[t->n++] = acc_xstrndup(start, (size_t)(p - start));
	}
}

static void tokens_push(struct tokens *t, const char *tok)
{
	acc_grow(&t->v, &t->cap, t->n, sizeof(*t->v));
	t->v[t->n++] = acc_xstrdup(tok);
}

static void tokens_free(struct tokens *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i]);
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static bool tokens_equal(const struct tokens *a, const struct tokens *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		if (strcmp(a->v[i], b->v[i]) != 0)
			return false;
	}
	return true;
}

static size_t key_len(const char *tok)
{
	return strcspn(tok, "=");
}

static const char *tokens_find(const struct tokens *t, const char *tok)
{
	size_t len = key_len(tok);

	for (size_t i = 0; i < t->n; i++) {
		if (key_len(t->v[i]) == len && memcmp(t->v[i], tok, len) == 0)
			return t->v[i];
	}
	return NULL;
}

static bool key_is(const char *tok, const char *key)
{
	size_t len = key_len(tok);

	return strlen(key) == len && memcmp(tok, key, len) == 0;
}

/* Fields that say where the user's mailbox is.  The live mailbox is where
   the new server put it (backfill merges the old mail into it), so these
   always come from the new server. */
static bool is_location_key(const char *tok)
{
	return key_is(tok, "userdb_mail") || key_is(tok, "userdb_home") ||
	       key_is(tok, "userdb_uid") || key_is(tok, "userdb_gid");
}

bool acc_extra_key_secret(const char *key, size_t len)
{
	static const char *const words[] = {"pass", "secret", "token", "key",
	                                    "crypt"};

	for (size_t w = 0; w < sizeof(words) / sizeof(words[0]); w++) {
		size_t wl = strlen(words[w]);

		for (size_t i = 0; i + wl <= len; i++) {
			if (strncasecmp(key + i, words[w], wl) == 0)
				return true;
		}
	}
	return false;
}

/* An extra field as a report may show it. */
static char *token_shown(const char *tok)
{
	size_t len = key_len(tok);

	if (tok[len] == '=' && acc_extra_key_secret(tok, len))
		return acc_xprintf("%.*s=(value not shown)", (int)len, tok);
	return acc_xstrdup(tok);
}

static char *tokens_join(const struct tokens *t)
{
	struct acc_buf b = {NULL, 0, 0};

	acc_buf_puts(&b, "");
	for (size_t i = 0; i < t->n; i++) {
		if (i > 0)
			acc_buf_add(&b, " ", 1);
		acc_buf_puts(&b, t->v[i]);
	}
	return b.s;
}

/* ------------------------------------------------------------ passwd */

static void emit_fields(struct acc_buf *b, const char *const f[ACC_PW_FIELDS])
{
	int last = ACC_PW_FIELDS - 1;

	while (last > 1 && f[last] == NULL)
		last--;
	for (int i = 0; i <= last; i++) {
		if (i > 0)
			acc_buf_add(b, ":", 1);
		acc_buf_puts(b, f[i] == NULL ? "" : f[i]);
	}
	acc_buf_add(b, "\n", 1);
}

static const char *fv(const struct acc_pw_entry *e, int i)
{
	return e->field[i] == NULL ? "" : e->field[i];
}

static void note_token(struct acc_item *it, const char *what, const char *tok)
{
	char *shown = token_shown(tok);

	item_note(it, "%s%s", what, shown);
	free(shown);
}

/* "what: kept (other server: other)", so the administrator can go back */
static void note_token_pair(struct acc_item *it, const char *what,
                            const char *kept, const char *other_side,
                            const char *other)
{
	char *k = token_shown(kept), *o = token_shown(other);

	item_note(it, "%s%s (%s: %s)", what, k, other_side, o);
	free(k);
	free(o);
}

/* Password changed after the incident: the account was reconfigured on
   the new server and the new server's entry wins, field by field; old
   userdb settings the new entry lacks come back (they were not recreated),
   except the mailbox location.  Old passdb fields (allow_nets, nologin,
   proxy, ...) do not: they belong to the old password. */
static void merge_reconfigured(struct acc_reconcile *m, struct acc_item *it,
                               const struct acc_pw_entry *o,
                               const struct acc_pw_entry *n)
{
	const char *out[ACC_PW_FIELDS];
	struct tokens ot, nt;
	char *extra = NULL;
	bool added = false;

	item_note(it, "password: the new server's (changed after the "
	              "incident)");
	for (int i = ACC_PW_UID; i < ACC_PW_EXTRA; i++) {
		if (strcmp(fv(o, i), fv(n, i)) != 0)
			item_note(it,
			          "%s: the new server's \"%s\" (old server: "
			          "\"%s\")",
			          field_names[i], fv(n, i), fv(o, i));
	}
	for (int i = 0; i < ACC_PW_FIELDS; i++)
		out[i] = n->field[i];
	tokens_split(o->field[ACC_PW_EXTRA], &ot);
	tokens_split(n->field[ACC_PW_EXTRA], &nt);
	for (size_t i = 0; i < nt.n; i++) {
		const char *old = tokens_find(&ot, nt.v[i]);

		if (old != NULL && strcmp(old, nt.v[i]) != 0)
			note_token_pair(it, "extra field: the new server's ",
			                nt.v[i], "old server", old);
	}
	for (size_t i = 0; i < ot.n; i++) {
		if (tokens_find(&nt, ot.v[i]) != NULL)
			continue;
		if (is_location_key(ot.v[i])) {
			note_token(it,
			           "not restored (mailbox location: the live "
			           "mailbox is where the new server has it): ",
			           ot.v[i]);
		} else if (strncmp(ot.v[i], "userdb_", 7) == 0) {
			tokens_push(&nt, ot.v[i]);
			added = true;
			note_token(it,
			           "restored from the old server: ", ot.v[i]);
		} else {
			note_token(it,
			           "not restored (a passdb field of the old "
			           "password; the password was set anew): ",
			           ot.v[i]);
		}
	}
	if (added) {
		extra = tokens_join(&nt);
		out[ACC_PW_EXTRA] = extra;
	}
	emit_fields(&m->passwd, out);
	free(extra);
	tokens_free(&ot);
	tokens_free(&nt);
}

/* Same password on both servers: nobody reconfigured the account after
   the incident, so the old server's settings come back; the mailbox
   location (uid, gid, home, userdb_mail/home/uid/gid) stays the new
   server's, and extra fields only the new server has are kept. */
static void merge_untouched(struct acc_reconcile *m, struct acc_item *it,
                            const struct acc_pw_entry *o,
                            const struct acc_pw_entry *n)
{
	const char *out[ACC_PW_FIELDS];
	struct tokens ot, nt, rt;
	struct acc_buf line = {NULL, 0, 0};
	char *extra = NULL;

	for (int i = 0; i < ACC_PW_FIELDS; i++)
		out[i] = n->field[i];
	for (int i = ACC_PW_UID; i < ACC_PW_EXTRA; i++) {
		if (strcmp(fv(o, i), fv(n, i)) == 0)
			continue;
		if ((i == ACC_PW_GECOS || i == ACC_PW_SHELL) &&
		    o->field[i] != NULL) {
			out[i] = o->field[i];
			item_note(it,
			          "%s: restored from the old server: \"%s\" "
			          "(new server: \"%s\")",
			          field_names[i], fv(o, i), fv(n, i));
		} else if (i == ACC_PW_GECOS || i == ACC_PW_SHELL) {
			item_note(it,
			          "%s: kept (added on the new server): "
			          "\"%s\"",
			          field_names[i], fv(n, i));
		} else {
			item_note(it,
			          "%s: the new server's \"%s\" (old server: "
			          "\"%s\"): the live mailbox is there",
			          field_names[i], fv(n, i), fv(o, i));
		}
	}
	tokens_split(o->field[ACC_PW_EXTRA], &ot);
	tokens_split(n->field[ACC_PW_EXTRA], &nt);
	memset(&rt, 0, sizeof(rt));
	for (size_t i = 0; i < ot.n; i++) {
		const char *cur = tokens_find(&nt, ot.v[i]);

		if (is_location_key(ot.v[i])) {
			if (cur == NULL || strcmp(cur, ot.v[i]) != 0)
				note_token(it,
				           "not restored (mailbox location: "
				           "the live mailbox is where the new "
				           "server has it): ",
				           ot.v[i]);
			continue;
		}
		tokens_push(&rt, ot.v[i]);
		if (cur == NULL)
			note_token(it,
			           "restored from the old server: ", ot.v[i]);
		else if (strcmp(cur, ot.v[i]) != 0)
			note_token_pair(it, "restored the old server's value: ",
			                ot.v[i], "new server", cur);
	}
	for (size_t i = 0; i < nt.n; i++) {
		if (is_location_key(nt.v[i])) {
			tokens_push(&rt, nt.v[i]);
		} else if (tokens_find(&ot, nt.v[i]) == NULL) {
			tokens_push(&rt, nt.v[i]);
			note_token(it,
			           "kept (added on the new server): ", nt.v[i]);
		}
	}
	if (tokens_equal(&rt, &ot) && o->field[ACC_PW_EXTRA] != NULL) {
		out[ACC_PW_EXTRA] = o->field[ACC_PW_EXTRA];
	} else if (!tokens_equal(&rt, &nt)) {
		extra = tokens_join(&rt);
		out[ACC_PW_EXTRA] = extra;
	}
	emit_fields(&line, out);
	if (line.len == strlen(n->raw) + 1 &&
	    memcmp(line.s, n->raw, line.len - 1) == 0)
		it->kind = ACC_ACCOUNT_UNCHANGED;
	acc_buf_add(&m->passwd, line.s, line.len);
	acc_buf_free(&line);
	free(extra);
	tokens_free(&ot);
	tokens_free(&nt);
	tokens_free(&rt);
}

static void targets_text(struct acc_buf *b, const struct acc_alias *a)
{
	for (size_t i = 0; i < a->n_targets; i++) {
		if (i > 0)
			acc_buf_add(b, ", ", 2);
		acc_buf_puts(b, a->targets[i]);
	}
}

static char *targets_string(const struct acc_alias *a)
{
	struct acc_buf b = {NULL, 0, 0};

	targets_text(&b, a);
	return b.s;
}

static void merge_accounts(struct acc_reconcile *m,
                           const struct acc_pw_file *op,
                           const struct acc_pw_file *np,
                           const struct acc_alias_file *na, bool *restore)
{
	bool header = false;

	for (size_t i = 0; i < np->n; i++) {
		const struct acc_pw_entry *n = &np->v[i];
		const struct acc_pw_entry *o = acc_pw_find(op, n->key);
		struct acc_item *it;

		if (n->comments != NULL)
			acc_buf_puts(&m->passwd, n->comments);
		if (o == NULL) {
			item_add(m, ACC_ACCOUNT_ADDED, n->domain,
			         n->field[ACC_PW_USER]);
			acc_buf_puts(&m->passwd, n->raw);
			acc_buf_add(&m->passwd, "\n", 1);
		} else if (strcmp(o->raw, n->raw) == 0) {
			item_add(m, ACC_ACCOUNT_UNCHANGED, n->domain,
			         n->field[ACC_PW_USER]);
			acc_buf_puts(&m->passwd, n->raw);
			acc_buf_add(&m->passwd, "\n", 1);
		} else if (strcmp(fv(o, ACC_PW_PASSWORD),
		                  fv(n, ACC_PW_PASSWORD)) != 0) {
			it = item_add(m, ACC_ACCOUNT_NEW_PASSWORD, n->domain,
			              n->field[ACC_PW_USER]);
			merge_reconfigured(m, it, o, n);
		} else {
			it = item_add(m, ACC_ACCOUNT_OLD_SETTINGS, n->domain,
			              n->field[ACC_PW_USER]);
			merge_untouched(m, it, o, n);
		}
	}
	for (size_t i = 0; i < op->n; i++) {
		const struct acc_pw_entry *o = &op->v[i];
		const struct acc_alias *alias;
		struct acc_item *it;
		char *targets;

		restore[i] = false;
		if (acc_pw_find(np, o->key) != NULL)
			continue;
		alias = acc_alias_find(na, o->key);
		if (alias != NULL) {
			/* The address was turned into an alias after the
			   incident.  Postfix rewrites aliases before delivery,
			   so the restored mailbox would get no mail anyway;
			   which one it should be is the domain's call. */
			it = item_add(m, ACC_CONFLICT_OLD_ACCOUNT_NEW_ALIAS,
			              o->domain, o->field[ACC_PW_USER]);
			targets = targets_string(alias);
			item_note(it,
			          "old server: an account (old passwd-file "
			          "line %u)",
			          o->line);
			item_note(it, "new server: an alias to %s", targets);
			item_note(it, "merged files: the alias, as the new "
			              "server has it; the account is not "
			              "restored");
			it->decision = acc_xprintf(
			        "Decide whether %s is a mailbox again or stays "
			        "an alias to %s. Mailbox: remove the alias "
			        "from "
			        "the virtual map, run postmap, and add the old "
			        "account's line (old passwd-file line %u) to "
			        "the "
			        "passwd-file. Alias: nothing to change; its "
			        "old "
			        "mail can be restored into %s.",
			        o->field[ACC_PW_USER], targets, o->line,
			        alias->targets[0]);
			free(targets);
			continue;
		}
		restore[i] = true;
		item_add(m, ACC_ACCOUNT_RESTORED, o->domain,
		         o->field[ACC_PW_USER]);
		if (!header) {
			acc_buf_puts(&m->passwd,
			             "# Restored from the old server by "
			             "backfillctl accounts\n");
			header = true;
		}
		if (o->comments != NULL)
			acc_buf_puts(&m->passwd, o->comments);
		acc_buf_puts(&m->passwd, o->raw);
		acc_buf_add(&m->passwd, "\n", 1);
	}
}

/* ------------------------------------------------------------ aliases */

struct candidate {
	const struct acc_alias *a;
	bool from_old, drop;
};

struct keyset {
	const char **v;
	size_t n, cap;
};

static void keyset_add(struct keyset *s, const char *key)
{
	acc_grow(&s->v, &s->cap, s->n, sizeof(*s->v));
	s->v[s->n++] = key;
}

static void keyset_sort(struct keyset *s)
{
	if (s->n > 0)
		qsort(s->v, s->n, sizeof(*s->v), cmp_str);
}

static bool keyset_has(const struct keyset *s, const char *key)
{
	return s->n > 0 &&
	       bsearch(&key, s->v, s->n, sizeof(*s->v), cmp_str) != NULL;
}

/* A target in one of our domains that is neither an account nor an alias
   after the merge: mail to it bounces. */
static bool target_dangles(const char *target, const struct keyset *accounts,
                           const struct keyset *aliases,
                           const struct keyset *domains)
{
	char *t = acc_xstrdup(target), *catchall;
	const char *at = strrchr(t, '@');
	bool dangles = false;

	acc_lowercase(t);
	if (at != NULL && at != t && keyset_has(domains, at + 1) &&
	    !keyset_has(accounts, t) && !keyset_has(aliases, t)) {
		catchall = acc_xprintf("@%s", at + 1);
		dangles = !keyset_has(aliases, catchall);
		free(catchall);
	}
	free(t);
	return dangles;
}

static void check_dangling(struct acc_reconcile *m, struct candidate *c,
                           size_t nc, const struct acc_pw_file *op,
                           const struct acc_pw_file *np,
                           const struct acc_alias_file *oa,
                           const struct acc_alias_file *na, const bool *restore)
{
	struct keyset accounts = {0}, aliases = {0}, domains = {0};

	for (size_t i = 0; i < np->n; i++) {
		keyset_add(&accounts, np->v[i].key);
		keyset_add(&domains, np->v[i].domain);
	}
	for (size_t i = 0; i < op->n; i++) {
		if (restore[i])
			keyset_add(&accounts, op->v[i].key);
		keyset_add(&domains, op->v[i].domain);
	}
	for (size_t i = 0; i < oa->n; i++)
		keyset_add(&domains, oa->v[i].domain);
	for (size_t i = 0; i < na->n; i++)
		keyset_add(&domains, na->v[i].domain);
	for (size_t i = 0; i < nc; i++)
		keyset_add(&aliases, c[i].a->key);
	keyset_sort(&accounts);
	keyset_sort(&aliases);
	keyset_sort(&domains);

	for (size_t i = 0; i < nc; i++) {
		const struct acc_alias *a = c[i].a;
		struct acc_item *it = NULL;
		char *targets;

		if (acc_alias_is_domain_line(a))
			continue;
		for (size_t t = 0; t < a->n_targets; t++) {
			if (!target_dangles(a->targets[t], &accounts, &aliases,
			                    &domains))
				continue;
			if (it == NULL) {
				it = item_add(m, ACC_CONFLICT_ALIAS_DANGLING,
				              a->domain, a->key);
				targets = targets_string(a);
				item_note(it, "%s: an alias to %s",
				          c[i].from_old ? "old server"
				                        : "new server",
				          targets);
				free(targets);
			}
			item_note(it,
			          "%s is neither an account nor an alias after "
			          "the merge (a deleted account?): mail to %s "
			          "for it bounces",
			          a->targets[t], a->key);
			if (it->decision == NULL)
				it->decision = acc_xprintf(
				        "Decide where mail to %s should go: "
				        "recreate the account %s, point %s at "
				        "another address, or remove %s from "
				        "it; "
				        "then edit the virtual map and run "
				        "postmap.",
				        a->targets[t], a->targets[t], a->key,
				        a->targets[t]);
		}
		if (it == NULL)
			continue;
		if (c[i].from_old) {
			c[i].drop = true;
			item_note(it, "merged files: not restored (the new "
			              "server does not have it)");
		} else {
			item_note(it, "merged files: kept as the new server "
			              "has it");
		}
	}
	free(accounts.v);
	free(aliases.v);
	free(domains.v);
}

static void emit_alias(struct acc_buf *b, const struct acc_alias *a)
{
	if (a->comments != NULL)
		acc_buf_puts(b, a->comments);
	acc_buf_puts(b, a->raw);
	acc_buf_add(b, "\n", 1);
}

static void merge_aliases(struct acc_reconcile *m, const struct acc_pw_file *op,
                          const struct acc_pw_file *np,
                          const struct acc_alias_file *oa,
                          const struct acc_alias_file *na, const bool *restore)
{
	struct candidate *c = acc_xmalloc((oa->n + na->n + 1) * sizeof(*c));
	size_t nc = 0;
	bool header = false;

	for (size_t i = 0; i < na->n; i++) {
		const struct acc_alias *n = &na->v[i];
		const struct acc_alias *o = acc_alias_find(oa, n->key);
		struct acc_item *it;
		char *text;

		if (o == NULL) {
			item_add(m, ACC_ALIAS_ADDED, n->domain, n->key);
		} else if (acc_alias_same_targets(o, n)) {
			item_add(m, ACC_ALIAS_UNCHANGED, n->domain, n->key);
		} else {
			it = item_add(m, ACC_CONFLICT_ALIAS_TARGETS, n->domain,
			              n->key);
			text = targets_string(o);
			item_note(it, "old server: an alias to %s", text);
			free(text);
			text = targets_string(n);
			item_note(it, "new server: an alias to %s", text);
			item_note(it, "merged files: the new server's targets");
			it->decision = acc_xprintf(
			        "Decide whom mail to %s should reach: the new "
			        "server's targets (%s, nothing to change), the "
			        "old server's (old map line %u), or both; then "
			        "edit the virtual map and run postmap.",
			        n->key, text, o->line);
			free(text);
		}
		c[nc++] = (struct candidate){n, false, false};
	}
	for (size_t i = 0; i < oa->n; i++) {
		const struct acc_alias *o = &oa->v[i];
		struct acc_item *it;
		char *text;

		if (acc_alias_find(na, o->key) != NULL)
			continue;
		if (acc_pw_find(np, o->key) != NULL &&
		    acc_pw_find(op, o->key) == NULL) {
			/* Restoring the alias would take the new account's
			   mail (Postfix applies virtual aliases first). */
			it = item_add(m, ACC_CONFLICT_NEW_ACCOUNT_OLD_ALIAS,
			              o->domain, o->key);
			text = targets_string(o);
			item_note(it,
			          "old server: an alias to %s (old map "
			          "line %u)",
			          text, o->line);
			item_note(it, "new server: an account created after "
			              "the incident");
			item_note(it, "merged files: the account; the alias is "
			              "not restored");
			it->decision = acc_xprintf(
			        "Decide whether %s stays the account created "
			        "after the incident (then tell %s that mail to "
			        "%s no longer reaches them) or is the alias "
			        "again (delete the account from the "
			        "passwd-file, add old map line %u back to the "
			        "virtual map and run postmap).",
			        o->key, text, o->key, o->line);
			free(text);
			continue;
		}
		c[nc++] = (struct candidate){o, true, false};
	}
	check_dangling(m, c, nc, op, np, oa, na, restore);
	for (size_t i = 0; i < nc; i++) {
		if (c[i].from_old)
			continue;
		emit_alias(&m->virtual_map, c[i].a);
	}
	for (size_t i = 0; i < nc; i++) {
		if (!c[i].from_old || c[i].drop)
			continue;
		item_add(m, ACC_ALIAS_RESTORED, c[i].a->domain, c[i].a->key);
		if (!header) {
			acc_buf_puts(&m->virtual_map,
			             "# Restored from the old server by "
			             "backfillctl accounts\n");
			header = true;
		}
		emit_alias(&m->virtual_map, c[i].a);
	}
	free(c);
}

void acc_reconcile_run(const struct acc_pw_file *old_pw,
                       const struct acc_pw_file *new_pw,
                       const struct acc_alias_file *old_al,
                       const struct acc_alias_file *new_al,
                       struct acc_reconcile *m)
{
	bool *restore = acc_xmalloc((old_pw->n + 1) * sizeof(*restore));

	memset(m, 0, sizeof(*m));
	acc_buf_puts(&m->passwd, "# Merged by backfillctl accounts: the new "
	                         "server's entries first, then the old "
	                         "server's restored ones\n");
	acc_buf_puts(&m->virtual_map,
	             "# Merged by backfillctl accounts: the new server's "
	             "entries first, then the old server's restored ones\n");
	merge_accounts(m, old_pw, new_pw, new_al, restore);
	merge_aliases(m, old_pw, new_pw, old_al, new_al, restore);
	free(restore);
	for (size_t i = 0; i < old_pw->n; i++)
		add_domain(m, old_pw->v[i].domain);
	for (size_t i = 0; i < new_pw->n; i++)
		add_domain(m, new_pw->v[i].domain);
	for (size_t i = 0; i < old_al->n; i++)
		add_domain(m, old_al->v[i].domain);
	for (size_t i = 0; i < new_al->n; i++)
		add_domain(m, new_al->v[i].domain);
	finish_domains(m);
	index_domains(m);
}

void acc_reconcile_free(struct acc_reconcile *m)
{
	for (size_t i = 0; i < m->n; i++) {
		struct acc_item *it = &m->items[i];

		for (size_t j = 0; j < it->n_notes; j++)
			free(it->notes[j]);
		free(it->notes);
		free(it->address);
		free(it->decision);
	}
	free(m->items);
	for (size_t i = 0; i < m->n_domains; i++)
		free(m->domains[i]);
	free(m->domains);
	free(m->order);
	free(m->domain_first);
	free(m->domain_n);
	acc_buf_free(&m->passwd);
	acc_buf_free(&m->virtual_map);
	memset(m, 0, sizeof(*m));
}
