/* The merge cursor's text format (dovecot-plugin/cursor.h): what the
   merge writes reads back the same, and damaged or hostile text is refused
   with a reason, without allocating by the size of a UID range. */

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cursor.h"

#define G1 "0123456789abcdef0123456789abcdef"
#define G2 "fedcba9876543210fedcba9876543210"

static void roundtrip(const char *text)
{
	struct bf_cursor c;
	const char *error = NULL;

	assert_int_equal(bf_cursor_parse(text, &c, &error), 0);
	char *out = bf_cursor_format(&c);
	assert_non_null(out);
	assert_string_equal(out, text);
	free(out);
	bf_cursor_free(&c);
}

static void refused(const char *text)
{
	struct bf_cursor c;
	const char *error = NULL;

	assert_int_equal(bf_cursor_parse(text, &c, &error), -1);
	assert_non_null(error);
	assert_true(strlen(error) > 0);
	bf_cursor_free(&c);
}

static void test_empty(void **state)
{
	struct bf_cursor c;
	const char *error = NULL;

	(void)state;
	assert_int_equal(bf_cursor_parse(NULL, &c, &error), 0);
	assert_false(c.intent);
	assert_int_equal(c.consumed_count, 0);
	bf_cursor_free(&c);
	assert_int_equal(bf_cursor_parse("", &c, &error), 0);
	bf_cursor_free(&c);
}

static void test_v1_roundtrip(void **state)
{
	(void)state;
	roundtrip("1:0:0");
	roundtrip("1:3:214");
	roundtrip("1:3:214:3:1500:400");
	roundtrip("1:2:7|" G1 ":1-5,9");
	roundtrip("1:2:7:2:10:9|" G1 ":1-5,9;" G2 ":4294967295");
}

static void test_v1_fields(void **state)
{
	struct bf_cursor c;
	const char *error = NULL;

	(void)state;
	assert_int_equal(
	        bf_cursor_parse("1:3:214:3:1500:400|" G1 ":1-3", &c, &error),
	        0);
	assert_int_equal(c.folder, 3);
	assert_int_equal(c.uid, 214);
	assert_true(c.intent);
	assert_int_equal(c.intent_folder, 3);
	assert_int_equal(c.intent_uidnext, 1500);
	assert_int_equal(c.intent_last_uid, 400);
	assert_true(bf_cursor_consumed_has(&c, G1, 1));
	assert_true(bf_cursor_consumed_has(&c, G1, 3));
	assert_false(bf_cursor_consumed_has(&c, G1, 4));
	assert_false(bf_cursor_consumed_has(&c, G2, 2));
	bf_cursor_free(&c);
}

/* Ranges come out sorted and joined, whatever order they were added in. */
static void test_format_joins(void **state)
{
	struct bf_cursor_range r[] = {
	        {G2, 7, 7}, {G1, 3, 3}, {G1, 1, 1}, {G1, 2, 2},
	        {G1, 9, 9}, {G1, 2, 2}, {G2, 8, 10},
	};
	struct bf_cursor c = {.folder = 1, .uid = 2};

	(void)state;
	c.consumed = r;
	c.consumed_count = sizeof(r) / sizeof(r[0]);
	char *out = bf_cursor_format(&c);
	assert_string_equal(out, "1:1:2|" G1 ":1-3,9;" G2 ":7-10");
	free(out);
}

/* Overlapping ranges on input are joined, so lookups stay right. */
static void test_overlap(void **state)
{
	struct bf_cursor c;
	const char *error = NULL;

	(void)state;
	assert_int_equal(
	        bf_cursor_parse("1:0:0|" G1 ":1-100,5-6,200", &c, &error), 0);
	assert_true(bf_cursor_consumed_has(&c, G1, 50));
	assert_true(bf_cursor_consumed_has(&c, G1, 200));
	assert_false(bf_cursor_consumed_has(&c, G1, 150));
	assert_int_equal(c.consumed_count, 2);
	bf_cursor_free(&c);
}

/* The whole UID space in one range costs one range, not 4 billion. */
static void test_huge_range(void **state)
{
	struct bf_cursor c;
	const char *error = NULL;

	(void)state;
	assert_int_equal(
	        bf_cursor_parse("1:0:0|" G1 ":1-4294967295", &c, &error), 0);
	assert_int_equal(c.consumed_count, 1);
	assert_true(bf_cursor_consumed_has(&c, G1, 4294967295U));
	assert_true(bf_cursor_consumed_has(&c, G1, 1));
	bf_cursor_free(&c);
}

static void test_refused(void **state)
{
	(void)state;
	refused("x");
	refused("9:0:0");
	refused("1");
	refused("1:0");
	refused("1:0:0:0");
	refused("1:0:0:0:0:0:0");
	refused("1:-1:0");
	refused("1:0:4294967296");
	refused("1:0:99999999999999999999");
	refused("1:0: 1");
	refused("1:0:+1");
	refused("1:0:01");
	refused("1:0:0|");
	refused("1:0:0|" G1);
	refused("1:0:0|" G1 ":");
	refused("1:0:0|:1");
	refused("1:0:0|" G1 ":0");
	refused("1:0:0|" G1 ":5-3");
	refused("1:0:0|" G1 ":1-");
	refused("1:0:0|" G1 ":-1");
	refused("1:0:0|" G1 ":1-2-3");
	refused("1:0:0|" G1 ":1,,2");
	refused("1:0:0|" G1 ":1;");
	refused("1:0:0|" G1 ":0-4294967295");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_empty),
	        cmocka_unit_test(test_v1_roundtrip),
	        cmocka_unit_test(test_v1_fields),
	        cmocka_unit_test(test_format_joins),
	        cmocka_unit_test(test_overlap),
	        cmocka_unit_test(test_huge_range),
	        cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
