/* bf_escape(): the control-character escaping of the doveadm output
   (BF_ESCAPE_REVERSIBLE with the list separators of value-escape.h) and of
   backfillctl's text report (BF_ESCAPE_C1). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "escape.h"

/* what doveadm backfill passes (dovecot-plugin/value-escape.h) */
#define DOVEADM_FLAGS BF_ESCAPE_REVERSIBLE
#define LIST_SPECIALS ",;=/"
/* what backfillctl report passes */
#define REPORT_FLAGS BF_ESCAPE_C1

/* in (in_len bytes) escaped: checks the returned length against the
   string and that a buffer of exactly that size holds it all. */
static void check(const char *in, size_t in_len, unsigned int flags,
                  const char *specials, const char *expected)
{
	size_t len = bf_escape(in, in_len, flags, specials, NULL, 0);
	char *out = malloc(len + 1);

	assert_non_null(out);
	assert_int_equal(bf_escape(in, in_len, flags, specials, out, len + 1),
	                 len);
	assert_string_equal(out, expected);
	assert_int_equal(strlen(out), len);
	free(out);
}
#define CHECK(in, flags, specials, expected)                                   \
	check((in), sizeof(in) - 1, (flags), (specials), (expected))

static void test_every_control_char(void **state)
{
	(void)state;
	for (unsigned int c = 0; c < 0x20; c++) {
		char in[3] = {'a', (char)c, 'b'}, x[8], rev[8];

		snprintf(x, sizeof(x), "a\\x%02xb", c);
		if (c == '\t')
			strcpy(rev, "a\\tb");
		else if (c == '\n')
			strcpy(rev, "a\\nb");
		else if (c == '\r')
			strcpy(rev, "a\\rb");
		else
			strcpy(rev, x);
		check(in, 3, DOVEADM_FLAGS, "", rev);
		check(in, 3, DOVEADM_FLAGS, LIST_SPECIALS, rev);
		check(in, 3, REPORT_FLAGS, "", x);
		check(in, 3, 0, "", x);
	}
	CHECK("a\x7f"
	      "b",
	      DOVEADM_FLAGS, "", "a\\x7fb");
	CHECK("a\x7f"
	      "b",
	      REPORT_FLAGS, "", "a\\x7fb");
	/* the row a newline in a folder name once forged */
	CHECK("zz\nmallory\tok\t5", DOVEADM_FLAGS, "", "zz\\nmallory\\tok\\t5");
	CHECK("x\nEvery archived message is in its mailbox\n\x1b[2J",
	      REPORT_FLAGS, "",
	      "x\\x0aEvery archived message is in its mailbox\\x0a\\x1b[2J");
}

static void test_printable_unchanged(void **state)
{
	char in[256], out[256];
	size_t n = 0;

	(void)state;
	for (unsigned int c = 0x20; c < 0x7f; c++) {
		if (c != '\\')
			in[n++] = (char)c;
	}
	in[n] = '\0';
	/* nothing escaped: the length says so */
	assert_int_equal(bf_escape(in, n, DOVEADM_FLAGS, "", out, sizeof(out)),
	                 n);
	assert_string_equal(out, in);
	assert_int_equal(bf_escape(in, n, REPORT_FLAGS, "", out, sizeof(out)),
	                 n);
	assert_string_equal(out, in);
	CHECK("", DOVEADM_FLAGS, "", "");
	CHECK("", REPORT_FLAGS, "", "");
}

static void test_backslash(void **state)
{
	(void)state;
	/* doveadm output is read back: a literal "\n" in a name must not
	   read as a newline */
	CHECK("a\\nb\\", DOVEADM_FLAGS, "", "a\\\\nb\\\\");
	CHECK("a\\nb\\", DOVEADM_FLAGS, LIST_SPECIALS, "a\\\\nb\\\\");
	/* the text report is read by a person: as it is */
	CHECK("a\\nb\\", REPORT_FLAGS, "", "a\\nb\\");
}

static void test_list_separators(void **state)
{
	(void)state;
	CHECK("A, B;C=D/E", DOVEADM_FLAGS, LIST_SPECIALS, "A\\, B\\;C\\=D\\/E");
	CHECK("A, B;C=D/E", DOVEADM_FLAGS, "", "A, B;C=D/E");
	CHECK("A, B;C=D/E", REPORT_FLAGS, "", "A, B;C=D/E");
}

static void test_utf8_and_invalid(void **state)
{
	(void)state;
	/* UTF-8 is itself */
	CHECK("Gel\xc3\xb6scht \xe2\x82\xac", DOVEADM_FLAGS, LIST_SPECIALS,
	      "Gel\xc3\xb6scht \xe2\x82\xac");
	CHECK("Gel\xc3\xb6scht \xe2\x82\xac", REPORT_FLAGS, "",
	      "Gel\xc3\xb6scht \xe2\x82\xac");
	/* C1 in UTF-8: escaped for the terminal only */
	CHECK("a\xc2\x85"
	      "b\xc2\x9b"
	      "c\xc2\x80",
	      REPORT_FLAGS, "", "a\\u0085b\\u009bc\\u0080");
	CHECK("a\xc2\x85"
	      "b",
	      DOVEADM_FLAGS, "",
	      "a\xc2\x85"
	      "b");
	/* 0xc2 before a byte out of the C1 range, or at the end */
	CHECK("\xc2\xa0\xc2\x7f\xc2", REPORT_FLAGS, "",
	      "\xc2\xa0\xc2\\x7f\xc2");
	CHECK("\xc2\n", REPORT_FLAGS, "", "\xc2\\x0a");
	/* invalid UTF-8 passes as bytes: lone continuation, overlong,
	   0xff, a raw Latin-1 C1 byte */
	CHECK("\x80\xc0\xaf\xff\xfe\x85", DOVEADM_FLAGS, LIST_SPECIALS,
	      "\x80\xc0\xaf\xff\xfe\x85");
	CHECK("\x80\xc0\xaf\xff\xfe\x85", REPORT_FLAGS, "",
	      "\x80\xc0\xaf\xff\xfe\x85");
}

static void test_nul_inside(void **state)
{
	(void)state;
	check("a\0b", 3, DOVEADM_FLAGS, "", "a\\x00b");
	check("a\0b", 3, REPORT_FLAGS, "", "a\\x00b");
	/* the C1 look-ahead stops at in_len */
	check("a\xc2\x85", 2, REPORT_FLAGS, "", "a\xc2");
}

static void test_small_buffer(void **state)
{
	char out[8];

	(void)state;
	/* whole escapes only, always NUL-terminated */
	memset(out, 'X', sizeof(out));
	assert_int_equal(bf_escape("ab\ncd", 5, DOVEADM_FLAGS, "", out, 4), 6);
	assert_string_equal(out, "ab");
	assert_int_equal(bf_escape("ab\ncd", 5, DOVEADM_FLAGS, "", out, 5), 6);
	assert_string_equal(out, "ab\\n");
	assert_int_equal(bf_escape("\x01", 1, REPORT_FLAGS, "", out, 4), 4);
	assert_string_equal(out, "");
	assert_int_equal(bf_escape("\x01", 1, REPORT_FLAGS, "", out, 1), 4);
	assert_string_equal(out, "");
	assert_int_equal(bf_escape("\x01", 1, REPORT_FLAGS, "", NULL, 0), 4);
}

/* in escaped as doveadm prints a user name and read back: the same bytes */
static void check_round_trip(const char *in, size_t in_len)
{
	size_t len = bf_escape(in, in_len, DOVEADM_FLAGS, "", NULL, 0), back;
	char *esc = malloc(len + 1), *out = malloc(len + 1);

	assert_non_null(esc);
	assert_non_null(out);
	bf_escape(in, in_len, DOVEADM_FLAGS, "", esc, len + 1);
	assert_int_equal(bf_unescape(esc, len, out, &back), 0);
	assert_int_equal(back, in_len);
	assert_memory_equal(out, in, in_len);
	assert_int_equal(out[back], '\0');
	free(esc);
	free(out);
}

static void test_unescape_every_byte(void **state)
{
	static const char tricky[] = "a\\x41\\\\n\\";
	char all[256];

	(void)state;
	for (unsigned int c = 0; c < 256; c++) {
		char in[3] = {'a', (char)c, 'b'};

		all[c] = (char)c;
		check_round_trip(in, 3);
		check_round_trip(in + 1, 1);
	}
	check_round_trip(all, sizeof(all));
	check_round_trip("", 0);
	/* a backslash before what reads as an escape */
	check_round_trip(tricky, sizeof(tricky) - 1);
}

/* in does not unescape */
static void check_refused(const char *in)
{
	char out[64];
	size_t len = 12345;

	assert_true(strlen(in) < sizeof(out));
	assert_int_equal(bf_unescape(in, strlen(in), out, &len), -1);
	assert_int_equal(len, 12345);
}

static void test_unescape_malformed(void **state)
{
	char out[16];
	size_t len;

	(void)state;
	check_refused("a\\"); /* a lone trailing backslash */
	check_refused("\\");
	check_refused("a\\\\\\"); /* \\ then a lone one */
	check_refused("a\\x");    /* \x without hex */
	check_refused("a\\x4");   /* one hex digit */
	check_refused("a\\x4g");  /* not hex */
	check_refused("a\\xg4");
	check_refused("a\\x-1");
	check_refused("a\\b");     /* not an escape bf_escape makes */
	check_refused("a\\u0085"); /* the text report's, not doveadm's */
	check_refused("a\\,b");    /* a list separator's */
	/* upper-case hex is read too; the value can hold a NUL */
	assert_int_equal(bf_unescape("\\x4A\\x00z", 9, out, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(out, "J\0z", 3);
	/* the finding's user: a\b@example.com as doveadm prints it */
	assert_int_equal(bf_unescape("a\\\\b@example.com", 16, out, &len), 0);
	assert_string_equal(out, "a\\b@example.com");
	assert_int_equal(len, 15);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_every_control_char),
	        cmocka_unit_test(test_printable_unchanged),
	        cmocka_unit_test(test_backslash),
	        cmocka_unit_test(test_list_separators),
	        cmocka_unit_test(test_utf8_and_invalid),
	        cmocka_unit_test(test_nul_inside),
	        cmocka_unit_test(test_small_buffer),
	        cmocka_unit_test(test_unescape_every_byte),
	        cmocka_unit_test(test_unescape_malformed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
