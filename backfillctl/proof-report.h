#ifndef BACKFILLCTL_PROOF_REPORT_H
#define BACKFILLCTL_PROOF_REPORT_H

/* The reports of backfillctl report: per domain, for the domain's
   administrator, as plain text and as one self-contained HTML page (inline
   style and charts, no scripts, nothing fetched); and an index of all
   domains for the operator. */

#include <stdio.h>

#include "proof.h"

struct proof_report_ctx {
	const char *generated; /* "YYYY-MM-DD HH:MM UTC" */
	const char *state_uri, *verify_path;
};

/* Figures of one domain (or of all: domain NULL). */
struct proof_figures {
	uint64_t users, done, not_finished, failed, no_record;
	uint64_t archived, added, duplicates, skipped;
	uint64_t verified, present, missing;
	uint64_t symlinks, uid_mismatches; /* verify: items not read, folders */
	size_t findings;                   /* users on the "to look at" list */
};
void proof_figures(const struct proof *p, const char *domain,
                   struct proof_figures *f);

/* The report file name without extension of p->domains[d]: the domain,
   "_nodomain", or a name no domain can take (acc_domain_file_stem()). */
const char *proof_report_name(const struct proof *p, size_t d);

int proof_report_text(const struct proof *p, const char *domain,
                      const struct proof_report_ctx *ctx, FILE *out);
int proof_report_html(const struct proof *p, const char *domain,
                      const struct proof_report_ctx *ctx, FILE *out);
int proof_index_text(const struct proof *p, const struct proof_report_ctx *ctx,
                     FILE *out);
int proof_index_html(const struct proof *p, const struct proof_report_ctx *ctx,
                     FILE *out);

#endif
