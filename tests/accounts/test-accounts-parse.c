/* backfillctl accounts: the passwd-file and virtual map readers, and the
   merge rules on small files (run under ASan in CI). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "accounts-aliases.h"
#include "accounts-reconcile.h"
#include "accounts-passwd.h"
#include "accounts-report.h"

static char tmp_dir[] = "/tmp/bf-test-accounts.XXXXXX";

static const char *write_tmp(const char *name, const char *text)
{
	static char path[4][256];
	static int next;
	char *p = path[next++ % 4];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", tmp_dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return p;
}

static void test_passwd_fields_byte_exact(void **state)
{
	static const char line[] =
	        "Alice@Example.COM:{SHA512-CRYPT}$6$s$h:8:mail:A:/h/a:/bin/sh:"
	        "userdb_quota_rule=*:storage=1G  nologin";
	struct acc_pw_entry e;
	const char *reason;

	(void)state;
	memset(&e, 0, sizeof(e));
	assert_int_equal(acc_pw_parse_line(line, strlen(line), &e, &reason), 0);
	assert_string_equal(e.field[ACC_PW_USER], "Alice@Example.COM");
	assert_string_equal(e.field[ACC_PW_PASSWORD], "{SHA512-CRYPT}$6$s$h");
	assert_string_equal(e.field[ACC_PW_UID], "8");
	assert_string_equal(e.field[ACC_PW_GID], "mail");
	assert_string_equal(e.field[ACC_PW_GECOS], "A");
	assert_string_equal(e.field[ACC_PW_HOME], "/h/a");
	assert_string_equal(e.field[ACC_PW_SHELL], "/bin/sh");
	/* everything after the 7th ':' is one field, ':' and spaces kept */
	assert_string_equal(e.field[ACC_PW_EXTRA],
	                    "userdb_quota_rule=*:storage=1G  nologin");
	assert_string_equal(e.raw, line);
	assert_string_equal(e.key, "alice@example.com");
	assert_string_equal(e.domain, "example.com");
	acc_pw_entry_free(&e);

	memset(&e, 0, sizeof(e));
	assert_int_equal(acc_pw_parse_line("bob:x", 5, &e, &reason), 0);
	assert_string_equal(e.field[ACC_PW_PASSWORD], "x");
	assert_null(e.field[ACC_PW_UID]);
	assert_null(e.field[ACC_PW_EXTRA]);
	assert_string_equal(e.domain, "");
	acc_pw_entry_free(&e);
}

static void test_passwd_malformed(void **state)
{
	static const struct {
		const char *line, *reason;
	} bad[] = {
	        {"{PLAIN}secret", "no ':'"},
	        {":{PLAIN}x", "empty user name"},
	        {"a b@x.org:x", "whitespace"},
	        {"a@b@x.org:x", "neither user nor user@domain"},
	        {"@x.org:x", "neither user nor user@domain"},
	        {"a@x/y:x", "not a domain name"},
	        {"a@x.org:x:8 8:8", "uid is neither"},
	        {"a@x.org:x:8:8/8", "gid is neither"},
	        {"a@x.org:x:8:8::/h::=v", "extra field without a name"},
	        {"a@x.org:x:8:8::/h::\r", "carriage return"},
	};
	struct acc_pw_entry e;
	const char *reason;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&e, 0, sizeof(e));
		assert_int_equal(acc_pw_parse_line(bad[i].line,
		                                   strlen(bad[i].line), &e,
		                                   &reason),
		                 -1);
		assert_non_null(strstr(reason, bad[i].reason));
		/* the reason never quotes the line */
		assert_null(strstr(reason, "secret"));
		assert_null(e.raw);
	}
	memset(&e, 0, sizeof(e));
	assert_int_equal(acc_pw_parse_line("a\0b:x", 5, &e, &reason), -1);
	assert_non_null(strstr(reason, "NUL"));
}

static void test_passwd_read(void **state)
{
	struct acc_pw_file f;
	struct acc_issues issues = {NULL, 0, 0};
	const char *error, *path;

	(void)state;
	path = write_tmp("p", "# top\n"
	                      "\n"
	                      "# about a\n"
	                      "  # indented comment\n"
	                      "a@x.org:1:8:8::/a::\n"
	                      "broken\n"
	                      "b@x.org:2:8:8::/b::\n"
	                      "A@X.org:3:8:8::/a2::\n"
	                      "c@y.org:4");
	assert_int_equal(acc_pw_read(path, &f, &issues, &error), 0);
	assert_int_equal(f.n, 3);
	assert_string_equal(f.v[0].comments,
	                    "# about a\n  # indented comment\n");
	assert_null(f.v[1].comments);
	assert_int_equal(f.v[0].line, 5);
	assert_int_equal(f.v[2].line, 9);
	assert_string_equal(f.v[2].raw, "c@y.org:4");
	assert_int_equal(issues.n, 2);
	assert_int_equal(issues.v[0].line, 6);
	assert_int_equal(issues.v[1].line, 8);
	assert_non_null(strstr(issues.v[1].reason, "same user as line 5"));
	assert_non_null(acc_pw_find(&f, "b@x.org"));
	assert_null(acc_pw_find(&f, "B@x.org"));
	assert_null(acc_pw_find(&f, "nobody@x.org"));
	acc_pw_file_free(&f);
	acc_issues_free(&issues);

	assert_int_equal(acc_pw_read("/nonexistent/x", &f, &issues, &error),
	                 -1);
}

static void test_alias_parse(void **state)
{
	static const char text[] = "Sales@Example.com a@example.com,\n"
	                           "\tb@example.com  c@Example.com,,";
	struct acc_alias a, b;
	const char *reason;

	(void)state;
	memset(&a, 0, sizeof(a));
	assert_int_equal(acc_alias_parse(text, strlen(text), &a, &reason), 0);
	assert_string_equal(a.key, "sales@example.com");
	assert_string_equal(a.domain, "example.com");
	assert_int_equal(a.n_targets, 3);
	assert_string_equal(a.targets[2], "c@Example.com");
	assert_string_equal(a.raw, text);
	assert_false(acc_alias_is_domain_line(&a));

	memset(&b, 0, sizeof(b));
	assert_int_equal(acc_alias_parse("sales@example.com c@example.com "
	                                 "a@example.com,b@example.com,"
	                                 "A@example.com",
	                                 strlen("sales@example.com "
	                                        "c@example.com "
	                                        "a@example.com,b@example.com,"
	                                        "A@example.com"),
	                                 &b, &reason),
	                 0);
	/* order, case and repeats do not make a different recipient set */
	assert_true(acc_alias_same_targets(&a, &b));
	acc_alias_free(&b);
	memset(&b, 0, sizeof(b));
	assert_int_equal(
	        acc_alias_parse("s@example.com a@example.com", 27, &b, &reason),
	        0);
	assert_false(acc_alias_same_targets(&a, &b));
	acc_alias_free(&b);
	acc_alias_free(&a);

	memset(&a, 0, sizeof(a));
	assert_int_equal(
	        acc_alias_parse("example.com anything", 20, &a, &reason), 0);
	assert_true(acc_alias_is_domain_line(&a));
	assert_string_equal(a.domain, "example.com");
	acc_alias_free(&a);

	memset(&a, 0, sizeof(a));
	assert_int_equal(acc_alias_parse("lonely@x.org", 12, &a, &reason), -1);
	assert_non_null(strstr(reason, "no target"));
	memset(&a, 0, sizeof(a));
	assert_int_equal(acc_alias_parse("a@x.org b@x.org\r", 16, &a, &reason),
	                 -1);
	memset(&a, 0, sizeof(a));
	assert_int_equal(acc_alias_parse("a@x.org ,, ", 11, &a, &reason), -1);
}

static void test_alias_read(void **state)
{
	struct acc_alias_file f;
	struct acc_issues issues = {NULL, 0, 0};
	const char *error, *path;

	(void)state;
	path = write_tmp("v", "  orphan@x.org y@x.org\n"
	                      "# a comment\n"
	                      "a@x.org b@x.org,\n"
	                      "# a comment inside a logical line\n"
	                      "\n"
	                      "  c@x.org\n"
	                      "bad@x.org\n"
	                      "d@x.org e@x.org\n"
	                      "A@x.org z@x.org\n");
	assert_int_equal(acc_alias_read(path, &f, &issues, &error), 0);
	assert_int_equal(f.n, 2);
	assert_string_equal(f.v[0].key, "a@x.org");
	assert_int_equal(f.v[0].n_targets, 2);
	assert_string_equal(f.v[0].targets[1], "c@x.org");
	assert_string_equal(f.v[0].comments, "# a comment\n");
	assert_string_equal(f.v[0].raw, "a@x.org b@x.org,\n  c@x.org");
	assert_int_equal(issues.n, 3);
	assert_int_equal(issues.v[0].line, 1);
	assert_int_equal(issues.v[1].line, 7);
	assert_int_equal(issues.v[2].line, 9);
	assert_non_null(strstr(issues.v[2].reason, "same address as line 3"));
	acc_alias_file_free(&f);
	acc_issues_free(&issues);
}

static const struct acc_item *find_item(const struct acc_reconcile *m,
                                        enum acc_kind kind, const char *address)
{
	for (size_t i = 0; i < m->n; i++) {
		if (m->items[i].kind == kind &&
		    strcmp(m->items[i].address, address) == 0)
			return &m->items[i];
	}
	return NULL;
}

static void test_merge_rules(void **state)
{
	struct acc_pw_file op, np;
	struct acc_alias_file oa, na;
	struct acc_issues issues = {NULL, 0, 0};
	struct acc_reconcile m;
	struct acc_report_ctx ctx = {"2026-01-01 00:00 UTC", 0};
	const char *error;
	char *text = NULL, *html = NULL;
	size_t text_len, html_len, figures[ACC_KINDS], conflicts;
	FILE *f;

	(void)state;
	assert_int_equal(
	        acc_pw_read(write_tmp("op",
	                              "u@x.org:{P}OLDHASH1:8:8:U:/old/u:/s:"
	                              "userdb_a=1 allow_nets=1.2.3.4\n"
	                              "r@x.org:{P}OLDHASH2:8:8::/old/r::\n"
	                              "same@x.org:{P}OLDHASH3:8:8::/h::\n"
	                              "gone@x.org:{P}OLDHASH4:8:8::/h::\n"),
	                    &op, &issues, &error),
	        0);
	assert_int_equal(
	        acc_pw_read(write_tmp("np", "u@x.org:{P}NEWHASH1:8:8::/new/u\n"
	                                    "r@x.org:{P}OLDHASH2:9:9::/new/r::"
	                                    "userdb_b=2\n"
	                                    "same@x.org:{P}OLDHASH3:8:8::/h::\n"
	                                    "n@x.org:{P}NEWHASH5:8:8::/h::\n"),
	                    &np, &issues, &error),
	        0);
	assert_int_equal(acc_alias_read(write_tmp("oa", "n@x.org u@x.org\n"
	                                                "k@x.org u@x.org\n"),
	                                &oa, &issues, &error),
	                 0);
	assert_int_equal(acc_alias_read(write_tmp("na", "gone@x.org u@x.org\n"),
	                                &na, &issues, &error),
	                 0);
	assert_int_equal(issues.n, 0);
	acc_reconcile_run(&op, &np, &oa, &na, &m);

	assert_non_null(strstr(m.passwd.s, "\nu@x.org:{P}NEWHASH1:8:8::/new/u:"
	                                   ":userdb_a=1\n"));
	assert_non_null(strstr(m.passwd.s, "\nr@x.org:{P}OLDHASH2:9:9::/new/"
	                                   "r::userdb_b=2\n"));
	assert_non_null(strstr(m.passwd.s, "\nsame@x.org:{P}OLDHASH3:8:8::/h:"
	                                   ":\n"));
	assert_null(strstr(m.passwd.s, "gone@x.org"));
	assert_null(strstr(m.passwd.s, "allow_nets"));
	assert_non_null(find_item(&m, ACC_ACCOUNT_NEW_PASSWORD, "u@x.org"));
	assert_non_null(find_item(&m, ACC_ACCOUNT_UNCHANGED, "r@x.org"));
	assert_non_null(find_item(&m, ACC_ACCOUNT_UNCHANGED, "same@x.org"));
	assert_non_null(find_item(&m, ACC_ACCOUNT_ADDED, "n@x.org"));
	assert_non_null(
	        find_item(&m, ACC_CONFLICT_NEW_ACCOUNT_OLD_ALIAS, "n@x.org"));
	assert_non_null(find_item(&m, ACC_CONFLICT_OLD_ACCOUNT_NEW_ALIAS,
	                          "gone@x.org"));
	assert_non_null(find_item(&m, ACC_ALIAS_RESTORED, "k@x.org"));
	assert_int_equal(m.n_conflicts, 2);
	assert_int_equal(m.n_domains, 1);
	assert_string_equal(m.domains[0], "x.org");
	assert_string_equal(
	        m.virtual_map.s + strcspn(m.virtual_map.s, "\n") + 1,
	        "gone@x.org u@x.org\n# Restored from the old server "
	        "by backfillctl accounts\nk@x.org u@x.org\n");

	acc_report_figures(&m, "x.org", figures, &conflicts);
	assert_int_equal(conflicts, 2);
	assert_int_equal(figures[ACC_ACCOUNT_UNCHANGED], 2);
	f = open_memstream(&text, &text_len);
	assert_int_equal(acc_report_text(&m, "x.org", &ctx, f), 0);
	fclose(f);
	f = open_memstream(&html, &html_len);
	assert_int_equal(acc_report_html(&m, "x.org", &ctx, f), 0);
	fclose(f);
	assert_null(strstr(text, "HASH"));
	assert_null(strstr(html, "HASH"));
	assert_non_null(strstr(html, "data-figure=\"conflicts\">2<"));
	assert_null(strstr(html, "<script"));
	free(text);
	free(html);

	acc_reconcile_free(&m);
	acc_pw_file_free(&op);
	acc_pw_file_free(&np);
	acc_alias_file_free(&oa);
	acc_alias_file_free(&na);
	acc_issues_free(&issues);
}

static void test_secret_keys(void **state)
{
	(void)state;
	assert_true(acc_extra_key_secret("pass", 4));
	assert_true(acc_extra_key_secret("userdb_master_password", 22));
	assert_true(acc_extra_key_secret("x_secret_y", 10));
	assert_false(acc_extra_key_secret("userdb_quota_rule", 17));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_passwd_fields_byte_exact),
	        cmocka_unit_test(test_passwd_malformed),
	        cmocka_unit_test(test_passwd_read),
	        cmocka_unit_test(test_alias_parse),
	        cmocka_unit_test(test_alias_read),
	        cmocka_unit_test(test_merge_rules),
	        cmocka_unit_test(test_secret_keys),
	};
	int ret;
	char cmd[64];

	if (mkdtemp(tmp_dir) == NULL)
		return 1;
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp_dir);
	if (system(cmd) != 0)
		ret = ret == 0 ? 1 : ret;
	return ret;
}
