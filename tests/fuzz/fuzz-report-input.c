/* libFuzzer: backfillctl report's readers of doveadm's verify output and
   of the domain map, and the reports made from what they read, never
   crash, leak or run out of bounds on any input.  The first byte says
   where the input is cut into the verify output and the map; every
   domain's text and HTML report and the index go to /dev/null, after the
   oracles of check_domains(). */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts-util.h"

#include "proof-report.h"
#include "proof.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

/* Oracles: every user is in exactly one domain's run of the sorted list
   (what each report and its figures are made of), and no two domains'
   report files, nor one and the index, share a name. */
static void check_domains(const struct proof *p)
{
	size_t covered = 0;

	for (size_t d = 0; d < p->n_domains; d++) {
		size_t first, n = proof_domain_users(p, p->domains[d], &first);
		const char *name = proof_report_name(p, d);

		if (n == 0 || first != covered)
			abort();
		for (size_t i = first; i < first + n; i++) {
			if (strcmp(p->v[i].domain, p->domains[d]) != 0)
				abort();
		}
		covered += n;
		if (strcmp(name, "index") == 0 || strchr(name, '/') != NULL ||
		    *name == '.' || strlen(name) > ACC_DOMAIN_STEM_MAX)
			abort();
		for (size_t e = 0; e < d; e++) {
			if (strcmp(proof_report_name(p, e), name) == 0)
				abort();
		}
	}
	if (covered != p->n)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proof p = {0};
	struct proof_report_ctx ctx = {"2026-12-06 00:00 UTC", "sqlite:/x",
	                               "verify.tsv"};
	char *error = NULL;
	size_t cut;

	if (size < 1)
		return 0;
	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	cut = (size_t)data[0] * (size - 1) / 255;
	data++;
	size--;
	if (proof_parse_verify(&p, (const char *)data, cut, &error) < 0) {
		free(error);
		error = NULL;
	}
	if (proof_parse_domain_map(&p, (const char *)data + cut, size - cut,
	                           &error) < 0)
		free(error);
	proof_finish(&p);
	check_domains(&p);
	for (size_t d = 0; d < p.n_domains; d++) {
		proof_report_text(&p, p.domains[d], &ctx, devnull);
		proof_report_html(&p, p.domains[d], &ctx, devnull);
	}
	proof_index_text(&p, &ctx, devnull);
	proof_index_html(&p, &ctx, devnull);
	proof_free(&p);
	return 0;
}
