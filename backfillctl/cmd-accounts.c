/* backfillctl accounts: reconciles the old server's Dovecot passwd-file
   and Postfix virtual alias map with the new server's after an incident,
   and writes one report per domain for its administrator.  The rules are
   in accounts/accounts-reconcile.c and docs/accounts.md.

   Nothing is written unless every input line was understood (or
   --keep-going says to leave the others out), and everything is written
   and synced to a temporary directory inside --out first, then renamed
   into place: a run that stops before the renames leaves the previous
   outputs as they were.  POSIX has no rename of several files at once,
   so a rename that fails after others succeeded is reported file by
   file, with exit code 3 (EXIT_PARTIAL). */

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "accounts-aliases.h"
#include "accounts-reconcile.h"
#include "accounts-passwd.h"
#include "accounts-report.h"
#include "commands.h"
#include "out-dir.h"

#define ACC_USAGE                                                              \
	"usage: backfillctl accounts --old-passwd FILE --new-passwd FILE\n"    \
	"                            [--old-aliases FILE] [--new-aliases "     \
	"FILE]\n"                                                              \
	"                            --out DIR [--keep-going]\n"

struct acc_options {
	const char *old_passwd, *new_passwd, *old_aliases, *new_aliases, *out;
	bool keep_going;
};

static int parse_options(int argc, char **argv, struct acc_options *opt)
{
	static const struct {
		const char *name;
		size_t offset;
	} with_value[] = {
	        {"--old-passwd", offsetof(struct acc_options, old_passwd)},
	        {"--new-passwd", offsetof(struct acc_options, new_passwd)},
	        {"--old-aliases", offsetof(struct acc_options, old_aliases)},
	        {"--new-aliases", offsetof(struct acc_options, new_aliases)},
	        {"--out", offsetof(struct acc_options, out)},
	};

	memset(opt, 0, sizeof(*opt));
	for (int i = 1; i < argc; i++) {
		bool found = false;

		if (strcmp(argv[i], "--keep-going") == 0) {
			opt->keep_going = true;
			continue;
		}
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			fputs(ACC_USAGE, stdout);
			exit(EXIT_DONE);
		}
		for (size_t o = 0; o < sizeof(with_value) / sizeof(*with_value);
		     o++) {
			if (strcmp(argv[i], with_value[o].name) != 0)
				continue;
			if (i + 1 >= argc || argv[i + 1][0] == '\0') {
				fprintf(stderr,
				        "backfillctl accounts: %s needs a "
				        "value\n",
				        argv[i]);
				return -1;
			}
			*(const char **)((char *)opt + with_value[o].offset) =
			        argv[++i];
			found = true;
			break;
		}
		if (!found) {
			fprintf(stderr,
			        "backfillctl accounts: unknown argument '%s'\n",
			        argv[i]);
			return -1;
		}
	}
	if (opt->old_passwd == NULL || opt->new_passwd == NULL ||
	    opt->out == NULL) {
		fprintf(stderr, "backfillctl accounts: --old-passwd, "
		                "--new-passwd and --out are required\n");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------ the command */

static void print_issues(const struct acc_issues *issues, FILE *out,
                         const char *prefix)
{
	for (size_t i = 0; i < issues->n; i++)
		fprintf(out, "%s%s:%u: %s\n", prefix, issues->v[i].path,
		        issues->v[i].line, issues->v[i].reason);
}

/* Writes every output into the temporary directory, in the order they
   are renamed into place: the reports first, the two files an operator
   installs last, so that a rename failing half way leaves those two as
   they were for as long as it can. */
static enum outdir_result write_outputs(const struct acc_options *opt,
                                        const struct acc_reconcile *m,
                                        const struct acc_issues *issues,
                                        const struct stat *new_st)
{
	struct acc_report_ctx ctx;
	struct outdir o;
	char generated[64], *stale = NULL;
	time_t now = time(NULL);
	struct tm tm;
	mode_t mode;
	enum outdir_result ret = OUTDIR_NOTHING;

	gmtime_r(&now, &tm);
	strftime(generated, sizeof(generated), "%Y-%m-%d %H:%M UTC", &tm);
	ctx.generated = generated;
	ctx.n_skipped = issues->n;

	if (outdir_prepare(&o, "backfillctl accounts", opt->out, 0755,
	                   "reports") < 0)
		goto out;
	for (size_t d = 0; d < m->n_domains; d++) {
		char *name = acc_report_name(m->domains[d]);
		char *txt = acc_xprintf("reports/%s.txt", name);
		char *html = acc_xprintf("reports/%s.html", name);
		FILE *f;
		int r = -1;

		free(name);

		f = outdir_open(&o, txt, 0644, NULL);
		if (f != NULL) {
			r = acc_report_text(m, m->domains[d], &ctx, f);
			r = outdir_close(&o, f, txt) < 0 ? -1 : r;
		}
		if (r == 0) {
			f = outdir_open(&o, html, 0644, NULL);
			r = -1;
			if (f != NULL) {
				r = acc_report_html(m, m->domains[d], &ctx, f);
				r = outdir_close(&o, f, html) < 0 ? -1 : r;
			}
		}
		free(txt);
		free(html);
		if (r < 0)
			goto out;
	}
	if (issues->n > 0) {
		FILE *f = outdir_open(&o, "skipped.txt", 0644, NULL);

		if (f == NULL)
			goto out;
		fputs("# Input lines left out by backfillctl accounts "
		      "--keep-going\n",
		      f);
		print_issues(issues, f, "");
		if (outdir_close(&o, f, "skipped.txt") < 0)
			goto out;
	} else {
		/* a list from an earlier run would describe other inputs:
		   removed, but only once this run's outputs are in place */
		stale = acc_xprintf("%s/skipped.txt", opt->out);
	}
	/* The merged passwd-file holds password hashes: the new file's
	   mode without any bit for others (0640 at most), its owner and
	   group, so the Dovecot that reads the new file reads this one. */
	mode = (new_st->st_mode & 0640) | 0600;
	if (outdir_text(&o, "virtual", m->virtual_map.s, 0644, NULL) < 0 ||
	    outdir_text(&o, "passwd", m->passwd.s, mode, new_st) < 0)
		goto out;
	ret = outdir_commit(&o, stale);
out:
	outdir_cleanup(&o);
	outdir_free(&o);
	free(stale);
	return ret;
}

static void print_summary(const struct acc_options *opt,
                          const struct acc_reconcile *m)
{
	for (size_t d = 0; d < m->n_domains; d++) {
		size_t f[ACC_KINDS], conflicts;

		acc_report_figures(m, m->domains[d], f, &conflicts);
		printf("%s: %zu conflict%s, %zu restored, %zu new password%s "
		       "kept, %zu old settings restored, %zu added, %zu "
		       "unchanged; aliases: %zu restored, %zu added, %zu "
		       "unchanged\n",
		       *m->domains[d] == '\0' ? "addresses without a domain"
		                              : m->domains[d],
		       conflicts, conflicts == 1 ? "" : "s",
		       f[ACC_ACCOUNT_RESTORED], f[ACC_ACCOUNT_NEW_PASSWORD],
		       f[ACC_ACCOUNT_NEW_PASSWORD] == 1 ? "" : "s",
		       f[ACC_ACCOUNT_OLD_SETTINGS], f[ACC_ACCOUNT_ADDED],
		       f[ACC_ACCOUNT_UNCHANGED], f[ACC_ALIAS_RESTORED],
		       f[ACC_ALIAS_ADDED], f[ACC_ALIAS_UNCHANGED]);
	}
	printf("wrote %s/passwd, %s/virtual and the reports of %zu domain%s "
	       "in %s/reports (.txt and .html)\n",
	       opt->out, opt->out, m->n_domains, m->n_domains == 1 ? "" : "s",
	       opt->out);
	if (m->n_conflicts > 0)
		printf("%zu conflict%s to decide: the merged files keep the "
		       "new "
		       "server's side for them; each domain's report says what "
		       "to decide\n",
		       m->n_conflicts, m->n_conflicts == 1 ? "" : "s");
	printf("next: check %s/virtual with postmap, then install both files "
	       "(postmap the map where Postfix reads it)\n",
	       opt->out);
}

int cmd_accounts(int argc, char **argv)
{
	struct acc_options opt;
	struct acc_pw_file old_pw, new_pw;
	struct acc_alias_file old_al, new_al;
	struct acc_issues issues = {NULL, 0, 0};
	struct acc_reconcile m;
	struct stat new_st;
	const char *error;
	bool written_warn = false;
	int ret = EXIT_USAGE;

	if (parse_options(argc, argv, &opt) < 0) {
		fputs(ACC_USAGE, stderr);
		return EXIT_USAGE;
	}
	memset(&old_pw, 0, sizeof(old_pw));
	memset(&new_pw, 0, sizeof(new_pw));
	memset(&old_al, 0, sizeof(old_al));
	memset(&new_al, 0, sizeof(new_al));
	memset(&m, 0, sizeof(m));
	if (stat(opt.new_passwd, &new_st) < 0) {
		fprintf(stderr, "backfillctl accounts: %s: %s\n",
		        opt.new_passwd, strerror(errno));
		return EXIT_USAGE;
	}
	if (acc_pw_read(opt.old_passwd, &old_pw, &issues, &error) < 0) {
		fprintf(stderr, "backfillctl accounts: %s: %s\n",
		        opt.old_passwd, error);
		goto out;
	}
	if (acc_pw_read(opt.new_passwd, &new_pw, &issues, &error) < 0) {
		fprintf(stderr, "backfillctl accounts: %s: %s\n",
		        opt.new_passwd, error);
		goto out;
	}
	if (opt.old_aliases != NULL &&
	    acc_alias_read(opt.old_aliases, &old_al, &issues, &error) < 0) {
		fprintf(stderr, "backfillctl accounts: %s: %s\n",
		        opt.old_aliases, error);
		goto out;
	}
	if (opt.new_aliases != NULL &&
	    acc_alias_read(opt.new_aliases, &new_al, &issues, &error) < 0) {
		fprintf(stderr, "backfillctl accounts: %s: %s\n",
		        opt.new_aliases, error);
		goto out;
	}
	if (issues.n > 0 && !opt.keep_going) {
		print_issues(&issues, stderr, "");
		fprintf(stderr,
		        "backfillctl accounts: %zu input line%s not "
		        "understood; "
		        "nothing written (fix %s, or run again with "
		        "--keep-going to write the rest without %s)\n",
		        issues.n, issues.n == 1 ? "" : "s",
		        issues.n == 1 ? "it" : "them",
		        issues.n == 1 ? "it" : "them");
		goto out;
	}
	if (issues.n > 0)
		print_issues(&issues, stderr, "skipped: ");
	acc_reconcile_run(&old_pw, &new_pw, &old_al, &new_al, &m);
	switch (write_outputs(&opt, &m, &issues, &new_st)) {
	case OUTDIR_NOTHING:
		fprintf(stderr,
		        "backfillctl accounts: nothing written to %s (the "
		        "previous outputs there are as they were)\n",
		        opt.out);
		goto out;
	case OUTDIR_PARTIAL:
		ret = EXIT_PARTIAL;
		goto out;
	case OUTDIR_WRITTEN_WARN:
		written_warn = true;
		break;
	case OUTDIR_WRITTEN:
		break;
	}
	print_summary(&opt, &m);
	if (issues.n > 0)
		fprintf(stderr,
		        "backfillctl accounts: %zu input line%s left out "
		        "(listed in %s/skipped.txt): fix %s and run again\n",
		        issues.n, issues.n == 1 ? "" : "s", opt.out,
		        issues.n == 1 ? "it" : "them");
	ret = m.n_conflicts > 0 || issues.n > 0 || written_warn ? EXIT_LOOK
	                                                        : EXIT_DONE;
out:
	acc_reconcile_free(&m);
	acc_pw_file_free(&old_pw);
	acc_pw_file_free(&new_pw);
	acc_alias_file_free(&old_al);
	acc_alias_file_free(&new_al);
	acc_issues_free(&issues);
	return ret;
}
