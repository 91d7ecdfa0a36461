#ifndef ACCOUNTS_REPORT_H
#define ACCOUNTS_REPORT_H

/* One report per domain for its administrator, as plain text and as a
   self-contained HTML page (inline style, no scripts, nothing fetched). */

#include <stdio.h>

#include "accounts-reconcile.h"

struct acc_report_ctx {
	const char *generated; /* "YYYY-MM-DD HH:MM UTC" */
	size_t n_skipped;      /* input lines left out with --keep-going */
};

/* The report's file name without extension, malloc()ed: the domain, or
   "_nodomain" for addresses without one, or a name no domain can take
   (acc_domain_file_stem()). */
char *acc_report_name(const char *domain);

/* Figures of one domain, indexed by enum acc_kind. */
void acc_report_figures(const struct acc_reconcile *m, const char *domain,
                        size_t figures[ACC_KINDS], size_t *conflicts_r);

int acc_report_text(const struct acc_reconcile *m, const char *domain,
                    const struct acc_report_ctx *ctx, FILE *out);
int acc_report_html(const struct acc_reconcile *m, const char *domain,
                    const struct acc_report_ctx *ctx, FILE *out);

#endif
