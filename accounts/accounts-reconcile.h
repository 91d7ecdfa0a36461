#ifndef ACCOUNTS_RECONCILE_H
#define ACCOUNTS_RECONCILE_H

/* Reconciling the old server's accounts and aliases with the new
   server's, by the provider's promise (docs/accounts.md has the rules):
   new password where the account was reconfigured after the incident,
   accounts created after it kept, old accounts and settings that were not
   recreated brought back, conflicts left as the new server has them and
   explained in the domain's report. */

#include "accounts-aliases.h"
#include "accounts-passwd.h"

enum acc_kind {
	ACC_ACCOUNT_RESTORED,     /* only on the old server: brought back */
	ACC_ACCOUNT_NEW_PASSWORD, /* password changed after the incident */
	ACC_ACCOUNT_OLD_SETTINGS, /* same password: old settings restored */
	ACC_ACCOUNT_ADDED,        /* created after the incident: kept */
	ACC_ACCOUNT_UNCHANGED,    /* kept as the new server has it */
	ACC_ALIAS_RESTORED,
	ACC_ALIAS_ADDED,
	ACC_ALIAS_UNCHANGED,
	ACC_CONFLICT_NEW_ACCOUNT_OLD_ALIAS,
	ACC_CONFLICT_OLD_ACCOUNT_NEW_ALIAS,
	ACC_CONFLICT_ALIAS_TARGETS,
	ACC_CONFLICT_ALIAS_DANGLING,
	ACC_KINDS
};
#define ACC_FIRST_CONFLICT ACC_CONFLICT_NEW_ACCOUNT_OLD_ALIAS

/* One line of a domain's report.  No text here ever holds a password
   field or the value of an extra field whose name suggests a secret. */
struct acc_item {
	enum acc_kind kind;
	const char *domain; /* "" for addresses without a domain */
	char *address;
	char **notes; /* what was kept from where */
	size_t n_notes, cap_notes;
	char *decision; /* conflicts: what the administrator decides */
};

struct acc_reconcile {
	struct acc_item *items;
	size_t n, cap;
	struct acc_buf passwd;      /* the merged passwd-file */
	struct acc_buf virtual_map; /* the merged virtual alias map source */
	char **domains;             /* sorted, unique; "" if any */
	size_t n_domains, cap_domains;
	size_t n_conflicts;
	/* indexes of items sorted by domain (stable): domain d's items are
	   order[domain_first[d]] .. order[domain_first[d] + domain_n[d] - 1] */
	size_t *order, *domain_first, *domain_n;
};

void acc_reconcile_run(const struct acc_pw_file *old_pw,
                       const struct acc_pw_file *new_pw,
                       const struct acc_alias_file *old_al,
                       const struct acc_alias_file *new_al,
                       struct acc_reconcile *m);
void acc_reconcile_free(struct acc_reconcile *m);

/* The items of one domain, in the order they were found: returns how many,
 *idx_r points at their indexes in m->items. */
size_t acc_reconcile_domain_items(const struct acc_reconcile *m,
                                  const char *domain, const size_t **idx_r);

/* true if an extra field of this name may carry a secret: its value is
   never shown. */
bool acc_extra_key_secret(const char *key, size_t len);

#endif
