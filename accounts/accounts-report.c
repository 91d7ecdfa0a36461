/* The per-domain reports of backfillctl accounts.  They are written for
   the domain's administrator, who did not run the command: every section
   says what happened and what, if anything, is theirs to decide.  Nothing
   here ever prints a password field: the items carry none. */

#include <string.h>

#ifndef ATTR_UNUSED
#define ATTR_UNUSED __attribute__((unused))
#endif

#include "accounts-report.h"

/* In the order the reports show them. */
#define N_FIGURES (sizeof(figure_order) / sizeof(*figure_order))
static const enum acc_kind figure_order[] = {
        ACC_ACCOUNT_RESTORED,     ACC_ACCOUNT_NEW_PASSWORD,
        ACC_ACCOUNT_OLD_SETTINGS, ACC_ACCOUNT_ADDED,
        ACC_ACCOUNT_UNCHANGED,    ACC_ALIAS_RESTORED,
        ACC_ALIAS_ADDED,          ACC_ALIAS_UNCHANGED,
};

static const struct {
	const char *id;    /* data-figure name in the HTML */
	const char *title; /* section title */
	const char *about; /* one line on what the section means */
} kinds[ACC_KINDS] = {
        [ACC_ACCOUNT_RESTORED] = {"accounts-restored",
                                  "Accounts restored from the old server",
                                  "Not recreated on the new server: "
                                  "brought back with the old password and "
                                  "settings."},
        [ACC_ACCOUNT_NEW_PASSWORD] = {"passwords-kept-new",
                                      "Passwords kept from the new server",
                                      "Password changed after the "
                                      "incident: the new password stays, "
                                      "old userdb settings the new entry "
                                      "lacked are restored."},
        [ACC_ACCOUNT_OLD_SETTINGS] = {"settings-restored",
                                      "Old settings restored",
                                      "Same password on both servers: the "
                                      "old settings are back, the mailbox "
                                      "location stays the new server's."},
        [ACC_ACCOUNT_ADDED] = {"accounts-added",
                               "Accounts added after the incident",
                               "Created on the new server: kept as they "
                               "are."},
        [ACC_ACCOUNT_UNCHANGED] = {"accounts-unchanged", "Accounts unchanged",
                                   "The same on both servers (or nothing "
                                   "of the old entry to bring back)."},
        [ACC_ALIAS_RESTORED] = {"aliases-restored",
                                "Aliases restored from the old server",
                                "Not recreated on the new server: brought "
                                "back."},
        [ACC_ALIAS_ADDED] = {"aliases-added",
                             "Aliases added after the incident",
                             "Created on the new server: kept."},
        [ACC_ALIAS_UNCHANGED] = {"aliases-unchanged", "Aliases unchanged",
                                 "The same targets on both servers."},
        [ACC_CONFLICT_NEW_ACCOUNT_OLD_ALIAS] =
                {"conflict-new-account-old-alias",
                 "New account where an old alias was", ""},
        [ACC_CONFLICT_OLD_ACCOUNT_NEW_ALIAS] =
                {"conflict-old-account-new-alias",
                 "Old account that is now an alias", ""},
        [ACC_CONFLICT_ALIAS_TARGETS] = {"conflict-alias-targets",
                                        "Same alias, different targets", ""},
        [ACC_CONFLICT_ALIAS_DANGLING] = {"conflict-alias-dangling",
                                         "Alias to an address that is no "
                                         "account",
                                         ""},
};

char *acc_report_name(const char *domain)
{
	return acc_domain_file_stem(domain);
}

static const char *domain_title(const char *domain)
{
	return *domain == '\0' ? "addresses without a domain" : domain;
}

void acc_report_figures(const struct acc_reconcile *m, const char *domain,
                        size_t figures[ACC_KINDS], size_t *conflicts_r)
{
	const size_t *idx;
	size_t n = acc_reconcile_domain_items(m, domain, &idx);

	memset(figures, 0, sizeof(size_t) * ACC_KINDS);
	*conflicts_r = 0;
	for (size_t i = 0; i < n; i++) {
		figures[m->items[idx[i]].kind]++;
		if (m->items[idx[i]].kind >= ACC_FIRST_CONFLICT)
			(*conflicts_r)++;
	}
}

/* Unchanged entries are counted, and listed only when there is something
   to say about them. */
static bool listed(const struct acc_item *it)
{
	return !((it->kind == ACC_ACCOUNT_UNCHANGED ||
	          it->kind == ACC_ALIAS_UNCHANGED) &&
	         it->n_notes == 0);
}

/* ------------------------------------------------------------ the walk */

/* One report, whatever its format: the walk over a domain's items (and
   which of them are shown, in which order, numbered how) is here once;
   a format only says how each part looks. */
struct report_format {
	void (*begin)(FILE *out, const char *domain,
	              const struct acc_report_ctx *ctx, size_t conflicts);
	void (*figure)(FILE *out, const char *id, const char *title, size_t n);
	void (*figures_end)(FILE *out);
	void (*conflicts_begin)(FILE *out);
	void (*conflict)(FILE *out, size_t number, enum acc_kind kind,
	                 const struct acc_item *it);
	void (*section_begin)(FILE *out, enum acc_kind kind, size_t n);
	void (*item)(FILE *out, const struct acc_item *it);
	void (*section_end)(FILE *out);
	void (*end)(FILE *out);
};

static int report_write(const struct acc_reconcile *m, const char *domain,
                        const struct acc_report_ctx *ctx,
                        const struct report_format *fmt, FILE *out)
{
	size_t figures[ACC_KINDS], conflicts, number = 0;
	const size_t *idx;
	size_t n_idx = acc_reconcile_domain_items(m, domain, &idx);

	acc_report_figures(m, domain, figures, &conflicts);
	fmt->begin(out, domain, ctx, conflicts);
	fmt->figure(out, "conflicts", "Conflicts to decide", conflicts);
	for (size_t k = 0; k < N_FIGURES; k++)
		fmt->figure(out, kinds[figure_order[k]].id,
		            kinds[figure_order[k]].title,
		            figures[figure_order[k]]);
	fmt->figures_end(out);

	if (conflicts > 0)
		fmt->conflicts_begin(out);
	for (int kind = ACC_FIRST_CONFLICT; kind < ACC_KINDS; kind++) {
		for (size_t i = 0; i < n_idx; i++) {
			const struct acc_item *it = &m->items[idx[i]];

			if (it->kind == (enum acc_kind)kind)
				fmt->conflict(out, ++number, it->kind, it);
		}
	}
	for (size_t k = 0; k < N_FIGURES; k++) {
		enum acc_kind kind = figure_order[k];
		bool header = false;

		for (size_t i = 0; i < n_idx; i++) {
			const struct acc_item *it = &m->items[idx[i]];

			if (it->kind != kind || !listed(it))
				continue;
			if (!header)
				fmt->section_begin(out, kind, figures[kind]);
			header = true;
			fmt->item(out, it);
		}
		if (header)
			fmt->section_end(out);
	}
	fmt->end(out);
	return ferror(out) ? -1 : 0;
}

/* ------------------------------------------------------------ text */

static void text_begin(FILE *out, const char *domain,
                       const struct acc_report_ctx *ctx, size_t conflicts)
{
	fprintf(out, "Accounts after the incident: %s\n", domain_title(domain));
	fprintf(out, "Generated by backfillctl accounts on %s.\n\n",
	        ctx->generated);
	if (conflicts > 0)
		fprintf(out,
		        "%zu conflict%s to decide: see \"Conflicts\" "
		        "below. Until you decide, the merged files keep "
		        "what the new server has, so mail keeps flowing "
		        "as it does today.\n\n",
		        conflicts, conflicts == 1 ? "" : "s");
	else
		fprintf(out, "Nothing to decide for this domain.\n\n");
	if (ctx->n_skipped > 0)
		fprintf(out,
		        "Warning: %zu input line%s could not be read and "
		        "%s left out (see skipped.txt next to the reports); "
		        "some of them may belong to this domain.\n\n",
		        ctx->n_skipped, ctx->n_skipped == 1 ? "" : "s",
		        ctx->n_skipped == 1 ? "was" : "were");
	fprintf(out, "Summary\n");
}

static void text_figure(FILE *out, const char *id ATTR_UNUSED,
                        const char *title, size_t n)
{
	fprintf(out, "  %-44s %6zu\n", title, n);
}

static void text_conflicts_begin(FILE *out)
{
	fprintf(out, "\nConflicts\n");
}

static void text_conflict(FILE *out, size_t number, enum acc_kind kind,
                          const struct acc_item *it)
{
	fprintf(out, "\n%zu. %s: %s\n", number, kinds[kind].title, it->address);
	for (size_t j = 0; j < it->n_notes; j++)
		fprintf(out, "   - %s\n", it->notes[j]);
	fprintf(out, "   To decide: %s\n", it->decision);
}

static void text_section_begin(FILE *out, enum acc_kind kind, size_t n)
{
	fprintf(out, "\n%s (%zu)\n%s\n", kinds[kind].title, n,
	        kinds[kind].about);
}

static void text_item(FILE *out, const struct acc_item *it)
{
	fprintf(out, "  %s\n", it->address);
	for (size_t j = 0; j < it->n_notes; j++)
		fprintf(out, "    - %s\n", it->notes[j]);
}

static void nothing(FILE *out ATTR_UNUSED)
{
}

static const struct report_format text_format = {
        .begin = text_begin,
        .figure = text_figure,
        .figures_end = nothing,
        .conflicts_begin = text_conflicts_begin,
        .conflict = text_conflict,
        .section_begin = text_section_begin,
        .item = text_item,
        .section_end = nothing,
        .end = nothing,
};

int acc_report_text(const struct acc_reconcile *m, const char *domain,
                    const struct acc_report_ctx *ctx, FILE *out)
{
	return report_write(m, domain, ctx, &text_format, out);
}

/* ------------------------------------------------------------ HTML */

static const char html_style[] =
        "table.figures{border-collapse:collapse;margin:.5em 0}"
        "table.figures td{padding:.25em .8em;border-bottom:1px solid #eee}"
        "table.figures td.n{text-align:right;font-variant-numeric:"
        "tabular-nums;font-weight:600}"
        "tr.conflicts td{color:#9a5b00}"
        ".conflict{border:1px solid #e7b15c;border-left:6px solid #e7b15c;"
        "border-radius:4px;padding:.4em 1em;margin:1em 0}"
        ".conflict h3{font-size:1em;margin:.4em 0}"
        ".decide{background:#fff8ec;padding:.5em .7em;border-radius:3px}"
        "ul.items{padding-left:1.2em}ul.items ul{color:#444}";

static void html_begin(FILE *out, const char *domain,
                       const struct acc_report_ctx *ctx, size_t conflicts)
{
	acc_html_begin(out,
	               "Accounts after the incident: ", domain_title(domain),
	               html_style);
	fputs("<h1>Accounts after the incident: <span id=\"domain\">", out);
	acc_html_escape(out, domain_title(domain));
	fputs("</span></h1>\n<p class=\"meta\">Generated by backfillctl "
	      "accounts on ",
	      out);
	acc_html_escape(out, ctx->generated);
	fputs(".</p>\n", out);
	if (conflicts > 0)
		fprintf(out,
		        "<p class=\"verdict todo\"><strong>%zu conflict%s to "
		        "decide.</strong> Until you decide, the merged files "
		        "keep what the new server has, so mail keeps flowing "
		        "as it does today.</p>\n",
		        conflicts, conflicts == 1 ? "" : "s");
	else
		fputs("<p class=\"verdict ok\">Nothing to decide for this "
		      "domain.</p>\n",
		      out);
	if (ctx->n_skipped > 0)
		fprintf(out,
		        "<p class=\"verdict todo\">%zu input line%s could not "
		        "be read and %s left out (see skipped.txt next to the "
		        "reports); some of them may belong to this "
		        "domain.</p>\n",
		        ctx->n_skipped, ctx->n_skipped == 1 ? "" : "s",
		        ctx->n_skipped == 1 ? "was" : "were");
	fputs("<h2>Summary</h2>\n<table class=\"figures\">\n", out);
}

static void html_figure(FILE *out, const char *id, const char *title, size_t n)
{
	fprintf(out,
	        "<tr%s><td>%s</td><td class=\"n\" "
	        "data-figure=\"%s\">%zu</td></tr>\n",
	        strcmp(id, "conflicts") == 0 ? " class=\"conflicts\"" : "",
	        title, id, n);
}

static void html_figures_end(FILE *out)
{
	fputs("</table>\n", out);
}

static void html_conflicts_begin(FILE *out)
{
	fputs("<h2 id=\"conflicts\">Conflicts</h2>\n", out);
}

static void html_notes(FILE *out, const struct acc_item *it)
{
	for (size_t j = 0; j < it->n_notes; j++) {
		fputs("<li>", out);
		acc_html_escape(out, it->notes[j]);
		fputs("</li>", out);
	}
}

static void html_conflict(FILE *out, size_t number, enum acc_kind kind,
                          const struct acc_item *it)
{
	fprintf(out,
	        "<section class=\"conflict\" data-kind=\"%s\">\n<h3>%zu. %s: "
	        "<code>",
	        kinds[kind].id, number, kinds[kind].title);
	acc_html_escape(out, it->address);
	fputs("</code></h3>\n<ul>\n", out);
	html_notes(out, it);
	fputs("</ul>\n<p class=\"decide\"><strong>To decide:</strong> ", out);
	acc_html_escape(out, it->decision);
	fputs("</p>\n</section>\n", out);
}

static void html_section_begin(FILE *out, enum acc_kind kind, size_t n)
{
	fprintf(out,
	        "<h2 id=\"%s\">%s (%zu)</h2>\n<p>%s</p>\n"
	        "<ul class=\"items\" data-list=\"%s\">\n",
	        kinds[kind].id, kinds[kind].title, n, kinds[kind].about,
	        kinds[kind].id);
}

static void html_item(FILE *out, const struct acc_item *it)
{
	fputs("<li><code>", out);
	acc_html_escape(out, it->address);
	fputs("</code>", out);
	if (it->n_notes > 0) {
		fputs("<ul>", out);
		html_notes(out, it);
		fputs("</ul>", out);
	}
	fputs("</li>\n", out);
}

static void html_section_end(FILE *out)
{
	fputs("</ul>\n", out);
}

static void html_end(FILE *out)
{
	fputs("</body></html>\n", out);
}

static const struct report_format html_format = {
        .begin = html_begin,
        .figure = html_figure,
        .figures_end = html_figures_end,
        .conflicts_begin = html_conflicts_begin,
        .conflict = html_conflict,
        .section_begin = html_section_begin,
        .item = html_item,
        .section_end = html_section_end,
        .end = html_end,
};

int acc_report_html(const struct acc_reconcile *m, const char *domain,
                    const struct acc_report_ctx *ctx, FILE *out)
{
	return report_write(m, domain, ctx, &html_format, out);
}
