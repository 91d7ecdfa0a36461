/* backfillctl report: the per-domain proof for domain administrators.
   Reads every merge record of the state store and the output of
   `doveadm -f tab backfill verify -A`, and writes, into --out DIR, one
   report per domain (DOMAIN.txt and a self-contained DOMAIN.html) and an
   index of all domains (index.txt, index.html).  Every file is written in
   a temporary directory inside DIR and renamed into place once all are
   written (out-dir.h). */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "accounts-util.h"
#include "commands.h"
#include "out-dir.h"
#include "proof-report.h"
#include "proof.h"

#define REPORT_USAGE                                                           \
	"usage: backfillctl [--state URI] report --verify FILE --out DIR "     \
	"[--domain-map FILE]\n"                                                \
	"  FILE: the output of doveadm -f tab backfill verify -A\n"            \
	"  --domain-map FILE: \"USER DOMAIN\" lines, for logins without @\n"

typedef int report_writer(const struct proof *p, const char *domain,
                          const struct proof_report_ctx *ctx, FILE *out);

/* Report files: readable by the group of the out dir's owner at most;
   they name every user of a domain and what failed for them. */
#define REPORT_FILE_MODE 0640
#define REPORT_DIR_MODE  0750

static int write_file(struct outdir *o, const char *name, const char *ext,
                      const struct proof *p, const char *domain,
                      const struct proof_report_ctx *ctx, report_writer *w)
{
	char *file = acc_xprintf("%s.%s", name, ext);
	FILE *out = outdir_open(o, file, REPORT_FILE_MODE, NULL);
	int ret = -1;

	if (out != NULL) {
		ret = w(p, domain, ctx, out);
		if (outdir_close(o, out, file) < 0)
			ret = -1;
		else if (ret < 0)
			fprintf(stderr,
			        "backfillctl report: writing %s failed\n",
			        file);
	}
	free(file);
	return ret;
}

static int index_text(const struct proof *p, const char *domain,
                      const struct proof_report_ctx *ctx, FILE *out)
{
	(void)domain;
	return proof_index_text(p, ctx, out);
}

static int index_html(const struct proof *p, const char *domain,
                      const struct proof_report_ctx *ctx, FILE *out)
{
	(void)domain;
	return proof_index_html(p, ctx, out);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* No file is written twice in one run, whatever the domains: a report
   replaced by another is a domain's users in no report at all.  The file
   names are made so (acc_domain_file_stem()); this holds should two
   hashed names ever meet. */
static int names_unique(const struct proof *p)
{
	const char **names = acc_xmalloc((p->n_domains + 1) * sizeof(*names));
	size_t n = 0;
	int ret = 0;

	for (size_t d = 0; d < p->n_domains; d++)
		names[n++] = proof_report_name(p, d);
	names[n++] = "index";
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(names[i - 1], names[i]) == 0) {
			fprintf(stderr,
			        "backfillctl report: two reports would be "
			        "written to %s.txt: nothing written\n",
			        names[i]);
			ret = -1;
			break;
		}
	}
	free(names);
	return ret;
}

static int read_input(const char *what, const char *path, struct proof *p,
                      int (*parse)(struct proof *, const char *, size_t,
                                   char **))
{
	const char *error;
	char *data, *perror_msg = NULL;
	size_t size;

	if (acc_read_file(path, &data, &size, &error) < 0) {
		fprintf(stderr, "backfillctl report: %s: %s\n", path, error);
		return -1;
	}
	if (parse(p, data, size, &perror_msg) < 0) {
		fprintf(stderr, "backfillctl report: %s %s: %s\n", what, path,
		        perror_msg);
		free(perror_msg);
		free(data);
		return -1;
	}
	free(data);
	return 0;
}

int cmd_report(int argc, char **argv)
{
	const char *uri = backfillctl_state_uri(&argc, argv);
	const char *verify = NULL, *out = NULL, *map = NULL;
	struct proof_report_ctx ctx;
	struct proof p = {0};
	struct proof_figures all;
	struct outdir o;
	char generated[64], *error = NULL;
	time_t now = time(NULL);
	int ret = EXIT_DONE, written = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--verify") == 0 && i + 1 < argc)
			verify = argv[++i];
		else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
			out = argv[++i];
		else if (strcmp(argv[i], "--domain-map") == 0 && i + 1 < argc)
			map = argv[++i];
		else if (strcmp(argv[i], "--help") == 0) {
			fputs(REPORT_USAGE, stdout);
			return EXIT_DONE;
		} else {
			fputs(REPORT_USAGE, stderr);
			return EXIT_USAGE;
		}
	}
	if (verify == NULL || out == NULL) {
		fputs(REPORT_USAGE, stderr);
		return EXIT_USAGE;
	}
	if (proof_read_store(&p, uri, &error) < 0) {
		fprintf(stderr, "backfillctl report: %s\n",
		        error != NULL ? error : "out of memory");
		free(error);
		proof_free(&p);
		return EXIT_LOOK;
	}
	if (read_input("verify output", verify, &p, proof_parse_verify) < 0 ||
	    (map != NULL &&
	     read_input("domain map", map, &p, proof_parse_domain_map) < 0)) {
		proof_free(&p);
		return EXIT_USAGE;
	}
	proof_finish(&p);
	if (names_unique(&p) < 0) {
		proof_free(&p);
		return EXIT_USAGE;
	}
	strftime(generated, sizeof(generated), "%Y-%m-%d %H:%M UTC",
	         gmtime(&now));
	ctx.generated = generated;
	ctx.state_uri = uri;
	ctx.verify_path = verify;
	if (outdir_prepare(&o, "backfillctl report", out, REPORT_DIR_MODE,
	                   NULL) < 0) {
		outdir_cleanup(&o);
		outdir_free(&o);
		proof_free(&p);
		return EXIT_USAGE;
	}
	for (size_t d = 0; d < p.n_domains && written == 0; d++) {
		const char *name = proof_report_name(&p, d);

		if (write_file(&o, name, "txt", &p, p.domains[d], &ctx,
		               proof_report_text) < 0 ||
		    write_file(&o, name, "html", &p, p.domains[d], &ctx,
		               proof_report_html) < 0)
			written = -1;
	}
	/* the index last: it is renamed into place after every report it
	   links to */
	if (written == 0 &&
	    (write_file(&o, "index", "txt", &p, NULL, &ctx, index_text) < 0 ||
	     write_file(&o, "index", "html", &p, NULL, &ctx, index_html) < 0))
		written = -1;
	if (written == 0) {
		switch (outdir_commit(&o, NULL)) {
		case OUTDIR_WRITTEN:
			break;
		case OUTDIR_WRITTEN_WARN:
		case OUTDIR_PARTIAL:
			ret = EXIT_LOOK;
			break;
		case OUTDIR_NOTHING:
			written = -1;
			break;
		}
	}
	outdir_cleanup(&o);
	outdir_free(&o);
	if (written < 0) {
		fprintf(stderr,
		        "backfillctl report: no report written to %s (the "
		        "previous reports there are as they were)\n",
		        out);
		proof_free(&p);
		return EXIT_LOOK;
	}
	proof_figures(&p, NULL, &all);
	printf("backfillctl report: %zu domain%s, %" PRIu64 " users, %zu to "
	       "look at: %s/index.html\n",
	       p.n_domains, p.n_domains == 1 ? "" : "s", all.users,
	       all.findings, out);
	if (all.findings > 0 && ret == EXIT_DONE)
		ret = EXIT_LOOK;
	proof_free(&p);
	return ret;
}
