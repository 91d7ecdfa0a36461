/* The reports of backfillctl report.  They are written for a domain's
   administrator, who did not run the restore: first the verdict, then the
   figures (numbers with thousands separators, each chart on one scale of
   its own), then every user that needs a look with the next step to take,
   then the users one by one.  The list of what to look at and the figures
   are computed once and shown by both formats. */

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "accounts-util.h"
#include "escape.h"
#include "proof-report.h"

#define MAX_FINDINGS 8

struct finding {
	char *what, *next;
};

static const char *fmt_n(uint64_t n, char *buf, size_t size)
{
	char digits[24];
	size_t len = (size_t)snprintf(digits, sizeof(digits), "%" PRIu64, n);
	size_t o = 0;

	for (size_t i = 0; i < len && o + 2 < size; i++) {
		if (i > 0 && (len - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = digits[i];
	}
	buf[o] = '\0';
	return buf;
}
#define N(n) fmt_n((n), (char[32]){0}, 32)
/* a count of the merge record, "?" when the record is damaged */
#define SN(u, n) ((u)->damaged_record ? "?" : N(n))

const char *proof_report_name(const struct proof *p, size_t d)
{
	return p->domain_files[d];
}

/* s as one shell word: a "Next:" line is pasted into a root shell, and a
   legal local part may hold ' $ ` | & ;.  Plain words stay as they are. */
static char *sh_quote(const char *s)
{
	size_t len = strlen(s), o = 0;
	bool plain = len > 0;
	char *q;

	for (const char *c = s; *c != '\0' && plain; c++)
		plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
		               "0123456789@%+=:,./_-",
		               *c) != NULL;
	if (plain)
		return acc_xstrdup(s);
	/* 'it'\''s': each ' becomes four bytes */
	q = acc_xmalloc(len * 4 + 3);
	q[o++] = '\'';
	for (const char *c = s; *c != '\0'; c++) {
		if (*c == '\'') {
			memcpy(q + o, "'\\''", 4);
			o += 4;
		} else
			q[o++] = *c;
	}
	q[o++] = '\'';
	q[o] = '\0';
	return q;
}

/* s for a text report read on a terminal: control characters (C0, DEL,
   and C1 as UTF-8) shown as \xNN / \u00NN, so that an error text or a
   user name can neither start a line of its own nor send an escape
   sequence.  A backslash stays itself: the report is read, not parsed. */
static char *text_safe(const char *s)
{
	return proof_escape(s, BF_ESCAPE_C1);
}

static const char *domain_title(const char *domain)
{
	return *domain == '\0' ? "users without a domain" : domain;
}

static const char *state_name(const struct proof_user *u)
{
	if (!u->has_record)
		return u->has_verify && u->v_archived == 0 ? "no archive"
		                                           : "no record";
	return bf_merge_status_name(u->status);
}

static void add(struct finding *f, size_t *n, char *what, char *next)
{
	f[*n].what = what;
	f[*n].next = next;
	(*n)++;
}

/* A verify Result that proves the user's mail is all there.  Without a
   Result column (an older verify) the counts alone decide. */
static bool verify_result_fine(const char *result)
{
	return result == NULL || strcmp(result, "ok") == 0 ||
	       strcmp(result, "no-archive") == 0;
}

/* What verify found for this user.  Every Result but ok and no-archive
   ends in a finding, one this backfillctl does not know too: a check
   added to verify later must not pass as "merged and verified". */
static void verify_findings(const struct proof_user *u, const char *user,
                            struct finding f[MAX_FINDINGS], size_t *n)
{
	const char *result = u->verify_result;
	size_t n0 = *n;

	if (u->damaged_verify)
		add(f, n,
		    acc_xstrdup("verify output damaged: a count that is not a "
		                "number (below zero, too large, or text)"),
		    acc_xprintf("doveadm -f tab backfill verify -u %s", user));
	else if (u->verify_error != NULL && result != NULL &&
	         strcmp(result, "postponed") == 0)
		/* verify proved the content but could not read the merge
		   record from the state store for the UID check */
		add(f, n, acc_xprintf("verify postponed: %s", u->verify_error),
		    acc_xprintf("doveadm backfill verify -u %s once the state "
		                "store answers",
		                user));
	else if (u->verify_error != NULL)
		add(f, n, acc_xprintf("verify failed: %s", u->verify_error),
		    acc_xprintf("fix what the error names, then doveadm "
		                "backfill verify -u %s",
		                user));
	else if (u->v_missing > 0)
		add(f, n,
		    acc_xprintf("%s archived message%s missing: %s",
		                N(u->v_missing), u->v_missing == 1 ? "" : "s",
		                u->missing_list != NULL ? u->missing_list
		                                        : "?"),
		    acc_xprintf("doveadm backfill run -u %s, then doveadm "
		                "backfill verify -u %s",
		                user, user));
	if (u->v_symlinks > 0)
		add(f, n,
		    acc_xprintf("%s archived item%s %s a symlink: never read, "
		                "in neither the merge nor this proof",
		                N(u->v_symlinks), u->v_symlinks == 1 ? "" : "s",
		                u->v_symlinks == 1 ? "is" : "are"),
		    acc_xprintf("doveadm backfill verify -u %s names each on "
		                "stderr; put the real file or folder in the "
		                "archive in its place, then doveadm backfill "
		                "run -u %s and doveadm backfill verify -u %s",
		                user, user, user));
	if (u->v_uid_mismatches > 0 ||
	    (result != NULL && strcmp(result, "uids") == 0))
		add(f, n,
		    acc_xprintf("%s folder%s without the archive's UIDs (the "
		                "old server's IMAP/POP3 clients will download "
		                "them again): %s",
		                N(u->v_uid_mismatches),
		                u->v_uid_mismatches == 1 ? "" : "s",
		                u->uid_mismatch_list != NULL
		                        ? u->uid_mismatch_list
		                        : "?"),
		    acc_xprintf("see docs/imap-caches.md (\"What the commands "
		                "show\"); doveadm backfill status -u %s shows "
		                "each folder's uid_ways",
		                user));
	if (*n == n0 && !verify_result_fine(result))
		add(f, n,
		    acc_xprintf("verify result %s%s",
		                *result != '\0' ? result : "(empty)",
		                strcmp(result, "failed") == 0 ||
		                                strcmp(result, "missing") ==
		                                        0 ||
		                                strcmp(result, "symlinks") == 0
		                        ? ""
		                        : " (a result this backfillctl does "
		                          "not know)"),
		    acc_xprintf("doveadm backfill verify -u %s and read what "
		                "it names on stderr",
		                user));
}

/* What needs a look for this user, each with the next step. */
static size_t user_findings(const struct proof_user *u,
                            struct finding f[MAX_FINDINGS])
{
	char *user = sh_quote(u->real_user != NULL ? u->real_user : u->user);
	size_t n = 0;

	if (u->damaged_record)
		add(f, &n,
		    acc_xprintf("damaged merge record in the state store: "
		                "archived %" PRId64 ", added %" PRId64
		                ", already there %" PRId64 ", skipped %" PRId64
		                " (a count below zero: another writer or a "
		                "damaged store); its figures are not counted",
		                (int64_t)u->archived, (int64_t)u->added,
		                (int64_t)u->duplicates, (int64_t)u->skipped),
		    acc_xprintf(
		            "doveadm backfill status -u %s; check the state "
		            "store (docs/state-store.md), and doveadm "
		            "backfill verify -u %s says whether the mail "
		            "is all there",
		            user, user));

	if (!u->has_record && u->has_verify && u->v_archived > 0)
		add(f, &n,
		    acc_xprintf("%s archived messages, no merge yet",
		                N(u->v_archived)),
		    acc_xprintf("doveadm backfill run -u %s", user));
	if (u->has_record && u->status == BF_MERGE_FAILED)
		add(f, &n,
		    acc_xprintf("merge failed: %s",
		                u->last_error != NULL ? u->last_error
		                                      : "(no error recorded)"),
		    acc_xprintf("fix what the error names, then doveadm "
		                "backfill run -u %s",
		                user));
	else if (u->has_record && u->status != BF_MERGE_DONE)
		add(f, &n,
		    acc_xprintf("merge not finished (%s)%s%s", state_name(u),
		                u->last_error != NULL ? ": " : "",
		                u->last_error != NULL ? u->last_error : ""),
		    acc_xprintf("doveadm backfill run -u %s (it resumes where "
		                "the merge stopped; exit 75: the state store "
		                "did not answer, run it again)",
		                user));
	if (u->has_record && !u->damaged_record && u->skipped > 0)
		add(f, &n,
		    acc_xprintf("%s archived message%s skipped: could not be "
		                "read (a damaged file, a symlink)",
		                N(u->skipped), u->skipped == 1 ? "" : "s"),
		    acc_xprintf("the mail log names each (backfill lines of "
		                "%s); repair them in the archive, then doveadm "
		                "backfill revert -u %s -y and doveadm backfill "
		                "run -u %s",
		                user, user, user));
	if (u->has_verify)
		verify_findings(u, user, f, &n);
	else
		add(f, &n, acc_xstrdup("not verified"),
		    acc_xprintf("doveadm -f tab backfill verify -u %s", user));
	free(user);
	return n;
}

static void findings_free(struct finding *f, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(f[i].what);
		free(f[i].next);
	}
}

void proof_figures(const struct proof *p, const char *domain,
                   struct proof_figures *f)
{
	size_t first = 0, n = p->n;

	/* a domain's users are one run of the sorted list: the figures of
	   every domain cost one pass over all users, not one per domain */
	if (domain != NULL)
		n = proof_domain_users(p, domain, &first);
	memset(f, 0, sizeof(*f));
	for (size_t i = first; i < first + n; i++) {
		const struct proof_user *u = &p->v[i];
		struct finding fs[MAX_FINDINGS];
		size_t nf;

		f->users++;
		if (!u->has_record)
			f->no_record++;
		else if (u->status == BF_MERGE_DONE)
			f->done++;
		else if (u->status == BF_MERGE_FAILED)
			f->failed++;
		else
			f->not_finished++;
		if (u->has_record && !u->damaged_record) {
			f->archived += u->archived;
			f->added += u->added;
			f->duplicates += u->duplicates;
			f->skipped += u->skipped;
		} else
			f->archived += u->v_archived;
		if (u->has_verify) {
			/* verified: verify's result says the mail is all
			   there; a failed or postponed row (the UIDs not
			   checked) is in the counts below, not here */
			if (!u->damaged_verify &&
			    verify_result_fine(u->verify_result) &&
			    u->v_missing == 0)
				f->verified++;
			f->present += u->v_present;
			f->missing += u->v_missing;
			f->symlinks += u->v_symlinks;
			f->uid_mismatches += u->v_uid_mismatches;
		}
		nf = user_findings(u, fs);
		if (nf > 0)
			f->findings++;
		findings_free(fs, nf);
	}
}

/* ------------------------------------------------------------ the walk */

/* One domain's report, whatever its format: the order of the parts and
   what is in them are here once; a format only says how each looks. */
struct proof_format {
	void (*begin)(FILE *out, const char *domain,
	              const struct proof_report_ctx *ctx,
	              const struct proof_figures *f);
	void (*finding)(FILE *out, size_t number, const struct proof_user *u,
	                const struct finding *fd);
	void (*users_begin)(FILE *out);
	void (*user)(FILE *out, const struct proof_user *u);
	void (*end)(FILE *out);
};

static int report_write(const struct proof *p, const char *domain,
                        const struct proof_report_ctx *ctx,
                        const struct proof_format *fmt, FILE *out)
{
	struct proof_figures f;
	size_t first, n = proof_domain_users(p, domain, &first), number = 0;

	proof_figures(p, domain, &f);
	fmt->begin(out, domain, ctx, &f);
	for (size_t i = first; i < first + n; i++) {
		struct finding fs[MAX_FINDINGS];
		size_t nf = user_findings(&p->v[i], fs);

		for (size_t j = 0; j < nf; j++)
			fmt->finding(out, ++number, &p->v[i], &fs[j]);
		findings_free(fs, nf);
	}
	fmt->users_begin(out);
	for (size_t i = first; i < first + n; i++)
		fmt->user(out, &p->v[i]);
	fmt->end(out);
	return ferror(out) ? -1 : 0;
}

static void verdict_text(const struct proof_figures *f, char *buf, size_t size)
{
	if (f->findings == 0)
		snprintf(buf, size,
		         "Every archived message is in its mailbox: %s "
		         "messages of %s users, merged and verified.",
		         N(f->archived), N(f->users));
	else
		snprintf(buf, size,
		         "%s of %s users need a look: see \"To look at\" "
		         "below, each with the next step.",
		         N(f->findings), N(f->users));
}

/* ------------------------------------------------------------ text */

static void text_begin(FILE *out, const char *domain,
                       const struct proof_report_ctx *ctx,
                       const struct proof_figures *f)
{
	char verdict[256], *title = text_safe(domain_title(domain)),
	                   *uri = text_safe(ctx->state_uri),
	                   *verify = text_safe(ctx->verify_path);

	verdict_text(f, verdict, sizeof(verdict));
	fprintf(out, "Restore report: %s\n", title);
	fprintf(out,
	        "Generated by backfillctl report on %s from the state "
	        "store %s and %s.\n\n%s\n\n",
	        ctx->generated, uri, verify, verdict);
	free(title);
	free(uri);
	free(verify);
	fprintf(out, "Users                                  %12s\n",
	        N(f->users));
	fprintf(out, "  merged                               %12s\n",
	        N(f->done));
	fprintf(out, "  not finished                         %12s\n",
	        N(f->not_finished));
	fprintf(out, "  failed                               %12s\n",
	        N(f->failed));
	fprintf(out, "  no merge record                      %12s\n",
	        N(f->no_record));
	fprintf(out, "Archived messages                      %12s\n",
	        N(f->archived));
	fprintf(out, "  added to the mailboxes               %12s\n",
	        N(f->added));
	fprintf(out, "  already in the mailboxes             %12s\n",
	        N(f->duplicates));
	fprintf(out, "  skipped (could not be read)          %12s\n",
	        N(f->skipped));
	fprintf(out, "Verified users                         %12s\n",
	        N(f->verified));
	fprintf(out, "  archived messages present            %12s\n",
	        N(f->present));
	fprintf(out, "  archived messages missing            %12s\n",
	        N(f->missing));
	fprintf(out, "  archived symlinks, never read        %12s\n",
	        N(f->symlinks));
	fprintf(out, "  folders without the archive's UIDs   %12s\n",
	        N(f->uid_mismatches));
	if (f->findings > 0)
		fprintf(out, "\nTo look at\n");
}

static void text_finding(FILE *out, size_t number, const struct proof_user *u,
                         const struct finding *fd)
{
	char *user = text_safe(u->user), *what = text_safe(fd->what),
	     *next = text_safe(fd->next);

	fprintf(out, "%3zu. %s: %s\n     Next: %s\n", number, user, what, next);
	free(user);
	free(what);
	free(next);
}

static void text_users_begin(FILE *out)
{
	fprintf(out, "\nUsers\n  %-32s %-10s %10s %10s %10s %8s %8s\n", "user",
	        "state", "archived", "added", "already", "skipped", "missing");
}

static void text_user(FILE *out, const struct proof_user *u)
{
	char *user = text_safe(u->user);

	fprintf(out, "  %-32s %-10s %10s %10s %10s %8s %8s\n", user,
	        state_name(u),
	        u->has_record ? SN(u, u->archived) : N(u->v_archived),
	        SN(u, u->added), SN(u, u->duplicates), SN(u, u->skipped),
	        u->has_verify ? N(u->v_missing) : "-");
	free(user);
}

static void text_end(FILE *out __attribute__((unused)))
{
}

static const struct proof_format text_format = {
        .begin = text_begin,
        .finding = text_finding,
        .users_begin = text_users_begin,
        .user = text_user,
        .end = text_end,
};

int proof_report_text(const struct proof *p, const char *domain,
                      const struct proof_report_ctx *ctx, FILE *out)
{
	return report_write(p, domain, ctx, &text_format, out);
}

/* ------------------------------------------------------------ HTML */

static const char html_style[] =
        ".charts{display:flex;flex-wrap:wrap;gap:2em}"
        ".chart h3{font-size:1em;margin:.5em 0}"
        "svg text{font:13px system-ui,sans-serif;fill:#1b1b1b}"
        "svg .axis{stroke:#999}svg .grid{stroke:#e5e5e5}"
        "table{border-collapse:collapse;margin:.5em 0}"
        "td,th{padding:.25em .7em;border-bottom:1px solid #eee;"
        "text-align:left}"
        "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
        "ol.look li{margin:.6em 0}.next{background:#fff8ec;padding:.2em .5em;"
        "border-radius:3px;display:inline-block;margin-top:.2em}";

/* A round top for a chart's scale: 1, 2 or 5 times a power of ten. */
static uint64_t nice_top(uint64_t max)
{
	uint64_t p = 1;

	if (max == 0)
		return 1;
	while (p <= max / 10)
		p *= 10;
	if (max <= p)
		return p;
	if (max <= 2 * p)
		return 2 * p;
	if (max <= 5 * p)
		return 5 * p;
	return 10 * p;
}

struct bar {
	const char *label;
	uint64_t value;
	const char *color;
};

/* A horizontal bar chart: every bar on one scale, 0..top, with the scale
   drawn and each value written beside its bar. */
static void html_chart(FILE *out, const char *id, const char *title,
                       const struct bar *bars, size_t n)
{
	const unsigned int label_w = 210, plot_w = 330, row_h = 28, top_h = 8;
	unsigned int height = top_h + (unsigned int)n * row_h + 26;
	uint64_t max = 0, top;
	unsigned int ticks;

	for (size_t i = 0; i < n; i++)
		if (bars[i].value > max)
			max = bars[i].value;
	top = nice_top(max);
	/* ticks at whole numbers: 1, 2, 5 x 10^k divide into 4 or 5 */
	ticks = top % 4 == 0 ? 4 : top % 5 == 0 ? 5 : (unsigned int)top;
	fprintf(out,
	        "<div class=\"chart\" data-chart=\"%s\"><h3>%s</h3>\n"
	        "<svg width=\"%u\" "
	        "height=\"%u\" role=\"img\" aria-label=\"%s\">\n",
	        id, title, label_w + plot_w + 90, height, title);
	for (unsigned int t = 0; t <= ticks; t++) {
		unsigned int x = label_w + plot_w * t / ticks;

		fprintf(out,
		        "<line class=\"grid\" x1=\"%u\" y1=\"%u\" x2=\"%u\" "
		        "y2=\"%u\"/><text x=\"%u\" y=\"%u\" "
		        "text-anchor=\"middle\">%s</text>\n",
		        x, top_h, x, top_h + (unsigned int)n * row_h, x,
		        height - 6, N(top * t / ticks));
	}
	for (size_t i = 0; i < n; i++) {
		unsigned int y = top_h + (unsigned int)i * row_h;
		unsigned int w = (unsigned int)(bars[i].value * plot_w / top);

		fprintf(out,
		        "<text x=\"%u\" y=\"%u\" text-anchor=\"end\">%s</text>"
		        "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\" "
		        "fill=\"%s\"/><text x=\"%u\" y=\"%u\" "
		        "data-value=\"%" PRIu64 "\">%s</text>\n",
		        label_w - 8, y + 18, bars[i].label, label_w, y + 4,
		        w == 0 && bars[i].value > 0 ? 1 : w, row_h - 8,
		        bars[i].color, label_w + w + 6, y + 18, bars[i].value,
		        N(bars[i].value));
	}
	fprintf(out,
	        "<line class=\"axis\" x1=\"%u\" y1=\"%u\" x2=\"%u\" "
	        "y2=\"%u\"/></svg></div>\n",
	        label_w, top_h, label_w, top_h + (unsigned int)n * row_h);
}

static void html_head(FILE *out, const char *title)
{
	acc_html_begin(out, "Restore report: ", title, html_style);
}

static void html_meta(FILE *out, const struct proof_report_ctx *ctx)
{
	acc_html_printf(out,
	                "<p class=\"meta\">Generated by backfillctl report on "
	                "%s from the state store <code>%s</code> and "
	                "<code>%s</code>.</p>\n",
	                ctx->generated, ctx->state_uri, ctx->verify_path);
}

static void html_verdict(FILE *out, const struct proof_figures *f)
{
	char verdict[256];

	verdict_text(f, verdict, sizeof(verdict));
	acc_html_printf(out, "<p class=\"verdict %s\" id=\"verdict\">%s</p>\n",
	                f->findings == 0 ? "ok" : "todo", verdict);
}

static void html_begin(FILE *out, const char *domain,
                       const struct proof_report_ctx *ctx,
                       const struct proof_figures *f)
{
	const struct bar users[] = {
	        {"merged", f->done, "#3b8b4a"},
	        {"not finished", f->not_finished, "#d9a13b"},
	        {"failed", f->failed, "#c0392b"},
	        {"no merge record", f->no_record, "#8a8a8a"},
	};
	const struct bar msgs[] = {
	        {"archived", f->archived, "#4a6fa5"},
	        {"added to the mailboxes", f->added, "#3b8b4a"},
	        {"already in the mailboxes", f->duplicates, "#7fb08a"},
	        {"skipped (unreadable)", f->skipped, "#d9a13b"},
	        {"present (verify)", f->present, "#2e6f8e"},
	        {"missing (verify)", f->missing, "#c0392b"},
	        {"symlinks, never read (verify)", f->symlinks, "#8e44ad"},
	};
	const char *t = domain_title(domain);

	html_head(out, t);
	acc_html_printf(
	        out, "<h1>Restore report: <span id=\"domain\">%s</span></h1>\n",
	        t);
	html_meta(out, ctx);
	html_verdict(out, f);
	fputs("<div class=\"charts\">\n", out);
	html_chart(out, "users", "Users", users,
	           sizeof(users) / sizeof(*users));
	html_chart(out, "messages", "Archived messages", msgs,
	           sizeof(msgs) / sizeof(*msgs));
	fputs("</div>\n", out);
	fprintf(out,
	        "<p id=\"uid-mismatches\">Folders without the archive's "
	        "UIDs (verify): <span data-value=\"%" PRIu64
	        "\">%s</span></p>\n",
	        f->uid_mismatches, N(f->uid_mismatches));
	if (f->findings > 0)
		fputs("<h2 id=\"look\">To look at</h2>\n", out);
	fputs("<ol class=\"look\">\n", out);
}

static void html_finding(FILE *out, size_t number __attribute__((unused)),
                         const struct proof_user *u, const struct finding *fd)
{
	acc_html_printf(out,
	                "<li data-user=\"%s\"><strong>%s</strong>: %s<br><span "
	                "class=\"next\">Next: <code>%s</code></span></li>\n",
	                u->user, u->user, fd->what, fd->next);
}

static void html_users_begin(FILE *out)
{
	/* the list of findings, empty when there is none (it shows
	   nothing then) */
	fputs("</ol>\n<h2>Users</h2>\n<table id=\"users\"><tr><th>user</th>"
	      "<th>state</th><th class=\"n\">archived</th><th "
	      "class=\"n\">added</th><th class=\"n\">already there</th>"
	      "<th class=\"n\">skipped</th><th class=\"n\">missing</th></tr>\n",
	      out);
}

static void html_user(FILE *out, const struct proof_user *u)
{
	acc_html_printf(out,
	                "<tr><td>%s</td><td>%s</td><td class=\"n\">%s</td><td "
	                "class=\"n\">%s</td><td class=\"n\">%s</td><td "
	                "class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n",
	                u->user, state_name(u),
	                u->has_record ? SN(u, u->archived) : N(u->v_archived),
	                SN(u, u->added), SN(u, u->duplicates),
	                SN(u, u->skipped),
	                u->has_verify ? N(u->v_missing) : "-");
}

static void html_end(FILE *out)
{
	fputs("</table>\n</body></html>\n", out);
}

static const struct proof_format html_format = {
        .begin = html_begin,
        .finding = html_finding,
        .users_begin = html_users_begin,
        .user = html_user,
        .end = html_end,
};

int proof_report_html(const struct proof *p, const char *domain,
                      const struct proof_report_ctx *ctx, FILE *out)
{
	return report_write(p, domain, ctx, &html_format, out);
}

/* ------------------------------------------------------------ index */

int proof_index_text(const struct proof *p, const struct proof_report_ctx *ctx,
                     FILE *out)
{
	struct proof_figures all;

	proof_figures(p, NULL, &all);
	fprintf(out,
	        "Restore report: all domains\nGenerated by backfillctl "
	        "report on %s.\n\n",
	        ctx->generated);
	fprintf(out, "%-32s %8s %12s %12s %10s %10s\n", "domain", "users",
	        "archived", "added", "missing", "to look at");
	for (size_t d = 0; d < p->n_domains; d++) {
		struct proof_figures f;

		char *title = text_safe(domain_title(p->domains[d]));

		proof_figures(p, p->domains[d], &f);
		fprintf(out, "%-32s %8s %12s %12s %10s %10s\n", title,
		        N(f.users), N(f.archived), N(f.added), N(f.missing),
		        N(f.findings));
		free(title);
	}
	fprintf(out, "%-32s %8s %12s %12s %10s %10s\n", "all", N(all.users),
	        N(all.archived), N(all.added), N(all.missing), N(all.findings));
	return ferror(out) ? -1 : 0;
}

int proof_index_html(const struct proof *p, const struct proof_report_ctx *ctx,
                     FILE *out)
{
	struct proof_figures all;

	proof_figures(p, NULL, &all);
	html_head(out, "all domains");
	fputs("<h1>Restore report: all domains</h1>\n", out);
	html_meta(out, ctx);
	html_verdict(out, &all);
	fputs("<table id=\"domains\"><tr><th>domain</th><th "
	      "class=\"n\">users</th><th class=\"n\">archived</th><th "
	      "class=\"n\">added</th><th class=\"n\">missing</th><th "
	      "class=\"n\">to look at</th></tr>\n",
	      out);
	for (size_t d = 0; d < p->n_domains; d++) {
		struct proof_figures f;

		proof_figures(p, p->domains[d], &f);
		acc_html_printf(
		        out,
		        "<tr><td><a href=\"%s.html\">%s</a></td><td "
		        "class=\"n\">%s</td><td class=\"n\">%s</td>"
		        "<td class=\"n\">%s</td><td class=\"n\">%s</td><td "
		        "class=\"n\">%s</td></tr>\n",
		        proof_report_name(p, d), domain_title(p->domains[d]),
		        N(f.users), N(f.archived), N(f.added), N(f.missing),
		        N(f.findings));
	}
	fputs("</table>\n</body></html>\n", out);
	return ferror(out) ? -1 : 0;
}
