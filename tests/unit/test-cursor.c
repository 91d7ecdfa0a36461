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

static void test_v2_roundtrip(void **state)
{
	(void)state;
	roundtrip("2");
	roundtrip("2 s:0123abcd");
	roundtrip("2 f:1400000001:0:-:INBOX");
	roundtrip("2 s:ff f:1400000001:30:" G1 ":INBOX f:1400000002:214:" G2
	          ":Work");
	roundtrip("2 f:1:7:-:Work i:0:" G1 ":1500:400 c:" G1 ":1-5,9 c:" G2
	          ":4294967295");
	roundtrip("2 f:1:0:-:Sent%20Messages f:2:0:-:100%25%0A f:3:0:-:a:b/c");
	roundtrip("2 f:1:0:-:\xc3\x84rger");
	roundtrip("2 s:ab f:1:9:-:INBOX l:2");
	roundtrip("2 f:1:9:-:INBOX f:2:0:-:Sent w:0:live:-:- w:1:archive:" G1
	          ":created l:2 i:1:" G1 ":3:4");
	roundtrip("2 f:1:9:-:INBOX w:0:renumber:" G2 ":no-imap-select");
	roundtrip("2 f:1:9:-:INBOX w:0:renumber:" G2
	          ":no-imap-client:7:1700000001 r:0:3001:p:1-4,6,9-10");
	roundtrip("2 f:1:9:-:INBOX w:0:renumber:-:setting:2:5 r:0:10:d:1");
	roundtrip("2 f:1:9:-:INBOX f:2:0:-:Sent w:0:renumber:-:setting:2:5 "
	          "w:1:archive:" G1 ":created r:0:10:d:1 m:0:1000 m:1:0");
}

/* The margin a folder's UIDNEXT was raised with (the m item): known per
   folder, unknown for a folder without one (an older record). */
static void test_v2_margin(void **state)
{
	struct bf_cursor c;
	const char *error = NULL;

	(void)state;
	assert_int_equal(bf_cursor_parse("2 f:1:9:-:INBOX f:2:0:-:Sent "
	                                 "f:3:0:-:Work m:1:100000 m:2:0",
	                                 &c, &error),
	                 0);
	assert_false(c.folders[0].margin_known);
	assert_true(c.folders[1].margin_known);
	assert_int_equal(c.folders[1].margin, 100000);
	assert_true(c.folders[2].margin_known);
	assert_int_equal(c.folders[2].margin, 0);
	bf_cursor_free(&c);
}

/* The processes that committed an intent's batch (review s7 F7): their
   Maildir file name tags, escaped, kept in the i item. */
static void test_v2_savers(void **state)
{
	struct bf_cursor c;
	const char *error = NULL;
	char *tag;

	(void)state;
	roundtrip("2 f:1:7:-:Work i:0:" G1 ":1500:400:4242.mx1.example.org");
	roundtrip("2 f:1:7:-:Work i:0:-:1:2:1.a,22.b_c-d,333.h%3Ax%2C");
	assert_int_equal(
	        bf_cursor_parse("2 f:1:7:-:W i:0:-:3:4:9.h,10.h", &c, &error),
	        0);
	assert_true(c.intent);
	assert_int_equal(c.intent_uidnext, 3);
	assert_int_equal(c.intent_last_uid, 4);
	assert_string_equal(c.intent_savers, "9.h,10.h");
	assert_true(bf_cursor_savers_has(c.intent_savers, "9.h"));
	assert_true(bf_cursor_savers_has(c.intent_savers, "10.h"));
	assert_false(bf_cursor_savers_has(c.intent_savers, "1.h"));
	assert_false(bf_cursor_savers_has(c.intent_savers, "10.h,"));
	assert_false(bf_cursor_savers_has(c.intent_savers, ""));
	assert_int_equal(bf_cursor_savers_count(c.intent_savers), 2);
	bf_cursor_free(&c);
	/* none written: "" */
	assert_int_equal(bf_cursor_parse("2 f:1:7:-:W i:0:-:3:4", &c, &error),
	                 0);
	assert_string_equal(c.intent_savers, "");
	assert_int_equal(bf_cursor_savers_count(c.intent_savers), 0);
	bf_cursor_free(&c);

	tag = bf_cursor_saver_tag("4242", "mx1.example.org");
	assert_string_equal(tag, "4242.mx1.example.org");
	free(tag);
	/* ',' ':' ' ' '%' and non-ASCII bytes escaped: one tag, one field */
	tag = bf_cursor_saver_tag("7", "a,b:c d%\xc3\x84");
	assert_string_equal(tag, "7.a%2Cb%3Ac%20d%25%C3%84");
	free(tag);

	/* a failed commit's intent names no process */
	roundtrip("2 f:1:7:-:W i:0:-:3:4:" BF_CURSOR_SAVERS_NONE);
	assert_false(bf_cursor_savers_has(BF_CURSOR_SAVERS_NONE, "9.h"));

	refused("2 f:1:7:-:W i:0:-:3:4:");
	refused("2 f:1:7:-:W i:0:-:3:4:a,");
	refused("2 f:1:7:-:W i:0:-:3:4:,a");
	refused("2 f:1:7:-:W i:0:-:3:4:a,,b");
	refused("2 f:1:7:-:W i:0:-:3:4:a:b");
	refused("2 f:1:7:-:W i:0:-:3:4:a b");
	refused("2 f:1:7:-:W i:0:-:3:4:a%2");
	refused("2 f:1:7:-:W i:0:-:3:4:a%2c");
	refused("2 f:1:7:-:W i:0:-:3:4:1,2,3,4,5,6,7,8,9");
	roundtrip("2 f:1:7:-:W i:0:-:3:4:1,2,3,4,5,6,7,8");
}

/* The renumber way's live folder and its renumbering (issue 19). */
static void test_v2_renumber(void **state)
{
	struct bf_cursor c;
	const char *error = NULL, *pos;
	uint32_t first, last;

	(void)state;
	assert_int_equal(bf_cursor_parse("2 f:5:9:-:INBOX w:0:renumber:" G1
	                                 ":no-imap-client:7:1700000001 "
	                                 "r:0:3001:p:1-4,6",
	                                 &c, &error),
	                 0);
	assert_int_equal(c.folders[0].renumber_below, 7);
	assert_int_equal(c.folders[0].renumber_uidvalidity, 1700000001);
	assert_int_equal(c.folders[0].move_base, 3001);
	assert_false(c.folders[0].move_done);
	pos = c.folders[0].move_uids;
	assert_true(bf_uid_ranges_next(&pos, &first, &last));
	assert_int_equal(first, 1);
	assert_int_equal(last, 4);
	assert_true(bf_uid_ranges_next(&pos, &first, &last));
	assert_int_equal(first, 6);
	assert_int_equal(last, 6);
	assert_false(bf_uid_ranges_next(&pos, &first, &last));
	bf_cursor_free(&c);
}

/* The way each archive folder's messages got their IMAP UIDs (issue 19). */
static void test_v2_ways(void **state)
{
	struct bf_cursor c;
	const char *error = NULL;

	(void)state;
	assert_int_equal(bf_cursor_parse("2 f:5:9:-:INBOX f:6:0:-:Sent "
	                                 "f:7:0:-:Work w:1:archive:" G1
	                                 ":created w:0:live:-:imap-selected",
	                                 &c, &error),
	                 0);
	assert_int_equal(c.folders[0].way, BF_UID_WAY_LIVE);
	assert_string_equal(c.folders[0].way_live_guid, "");
	assert_string_equal(c.folders[0].way_reason, "imap-selected");
	assert_int_equal(c.folders[1].way, BF_UID_WAY_ARCHIVE);
	assert_string_equal(c.folders[1].way_live_guid, G1);
	assert_string_equal(c.folders[1].way_reason, "created");
	assert_int_equal(c.folders[2].way, BF_UID_WAY_UNDECIDED);
	assert_string_equal(c.folders[2].way_reason, "");
	bf_cursor_free(&c);
	assert_string_equal(bf_uid_way_name(BF_UID_WAY_RENUMBER), "renumber");
	assert_string_equal(bf_uid_way_name(BF_UID_WAY_UNDECIDED), "");
}

static void test_v2_fields(void **state)
{
	struct bf_cursor c;
	const char *error = NULL;

	(void)state;
	assert_int_equal(
	        bf_cursor_parse("2 s:abc f:5:214:" G1
	                        ":Work f:6:4294967295:-:Sent%20Messages i:1:" G2
	                        ":1500:400 c:" G2 ":1-3",
	                        &c, &error),
	        0);
	assert_int_equal(c.version, 2);
	assert_string_equal(c.signature, "abc");
	assert_int_equal(c.folders_count, 2);
	assert_string_equal(c.folders[0].name, "Work");
	assert_string_equal(c.folders[0].guid, G1);
	assert_int_equal(c.folders[0].uidvalidity, 5);
	assert_int_equal(c.folders[0].high, 214);
	assert_string_equal(c.folders[1].name, "Sent Messages");
	assert_string_equal(c.folders[1].guid, "");
	assert_int_equal(c.folders[1].high, 4294967295U);
	assert_true(c.intent);
	assert_int_equal(c.intent_folder, 1);
	assert_string_equal(c.intent_live_guid, G2);
	assert_int_equal(c.intent_uidnext, 1500);
	assert_int_equal(c.intent_last_uid, 400);
	assert_true(bf_cursor_consumed_has(&c, G2, 2));
	assert_false(bf_cursor_consumed_has(&c, G1, 2));
	bf_cursor_free(&c);
}

/* Version 1 is read (merges begun before), never written. */
static void test_v1_fields(void **state)
{
	struct bf_cursor c;
	const char *error = NULL;

	(void)state;
	assert_int_equal(
	        bf_cursor_parse("1:3:214:3:1500:400|" G1 ":1-3", &c, &error),
	        0);
	assert_int_equal(c.version, 1);
	assert_int_equal(c.v1_folder, 3);
	assert_int_equal(c.v1_uid, 214);
	assert_true(c.intent);
	assert_int_equal(c.intent_folder, 3);
	assert_int_equal(c.intent_uidnext, 1500);
	assert_int_equal(c.intent_last_uid, 400);
	assert_true(bf_cursor_consumed_has(&c, G1, 1));
	assert_true(bf_cursor_consumed_has(&c, G1, 3));
	assert_false(bf_cursor_consumed_has(&c, G1, 4));
	assert_false(bf_cursor_consumed_has(&c, G2, 2));
	bf_cursor_free(&c);
	assert_int_equal(bf_cursor_parse("1:0:0", &c, &error), 0);
	assert_int_equal(c.version, 1);
	assert_false(c.intent);
	bf_cursor_free(&c);
}

/* Ranges come out sorted and joined, whatever order they were added in. */
static void test_format_joins(void **state)
{
	struct bf_cursor_range r[] = {
	        {G2, 7, 7}, {G1, 3, 3}, {G1, 1, 1},  {G1, 2, 2},
	        {G1, 9, 9}, {G1, 2, 2}, {G2, 8, 10},
	};
	struct bf_cursor c = {.signature = ""};

	(void)state;
	c.consumed = r;
	c.consumed_count = sizeof(r) / sizeof(r[0]);
	char *out = bf_cursor_format(&c);
	assert_string_equal(out, "2 c:" G1 ":1-3,9 c:" G2 ":7-10");
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
	assert_int_equal(bf_cursor_parse("2 c:" G1 ":1-100 c:" G1 ":5-6,200",
	                                 &c, &error),
	                 0);
	assert_true(bf_cursor_consumed_has(&c, G1, 50));
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
	assert_int_equal(bf_cursor_parse("2 c:" G1 ":1-4294967295", &c, &error),
	                 0);
	assert_int_equal(c.consumed_count, 1);
	assert_true(bf_cursor_consumed_has(&c, G1, 4294967295U));
	assert_true(bf_cursor_consumed_has(&c, G1, 1));
	bf_cursor_free(&c);
	assert_int_equal(
	        bf_cursor_parse("1:0:0|" G1 ":1-4294967295", &c, &error), 0);
	assert_int_equal(c.consumed_count, 1);
	bf_cursor_free(&c);
}

static void test_refused(void **state)
{
	(void)state;
	refused("x");
	refused("3");
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
	refused("1:0:0|nothex:1");
	refused("1:0:0|" G1 ":0");
	refused("1:0:0|" G1 ":5-3");
	refused("1:0:0|" G1 ":1-");
	refused("1:0:0|" G1 ":-1");
	refused("1:0:0|" G1 ":1-2-3");
	refused("1:0:0|" G1 ":1,,2");
	refused("1:0:0|" G1 ":1;");
	refused("1:0:0|" G1 ":0-4294967295");
	/* version 2 */
	refused("2 ");
	refused("2  f:1:0:-:A");
	refused("2 f:1:0:-:A ");
	refused("2 x:1");
	refused("2 f");
	refused("2 f:1:0:-");
	refused("2 f:1:0:-:");
	refused("2 f:1:0:nothex:A");
	refused("2 f:1:-1:-:A");
	refused("2 f:1:4294967296:-:A");
	refused("2 f:1:0:-:A%");
	refused("2 f:1:0:-:A%4");
	refused("2 f:1:0:-:A%zz");
	refused("2 f:1:0:-:A%00");
	refused("2 f:1:0:-:A%0a");
	refused("2 i:0:-:1:1");
	refused("2 f:1:0:-:A i:1:-:1:1");
	refused("2 f:1:0:-:A i:0:-:1:1 i:0:-:1:1");
	refused("2 f:1:0:-:A i:0:xyz:1:1");
	refused("2 f:1:0:-:A i:0:-:1");
	refused("2 s:");
	refused("2 s:XYZ");
	refused("2 s:ab s:cd");
	refused("2 c:" G1);
	refused("2 c:" G1 ":0");
	refused("2 c:" G1 ":0-4294967295");
	refused("2 c:" G1 ":5-3");
	refused("2 c::1");
	refused("2 l:0");
	refused("2 l:");
	refused("2 l:1 l:1");
	refused("2 l:4294967296");
	refused("2 w:0:live:-:-");
	refused("2 f:1:0:-:A w:1:live:-:-");
	refused("2 f:1:0:-:A w:0:old:-:-");
	refused("2 f:1:0:-:A w:0:live:xyz:-");
	refused("2 f:1:0:-:A w:0:live:-:Bad");
	refused("2 f:1:0:-:A w:0:live:-:");
	refused("2 f:1:0:-:A w:0:live:-");
	refused("2 f:1:0:-:A w:0:live:-:- w:0:archive:-:-");
	refused("2 f:1:0:-:A w:0:renumber:-:-:0:5");
	refused("2 f:1:0:-:A w:0:renumber:-:-:5:0");
	refused("2 f:1:0:-:A w:0:renumber:-:-:5");
	refused("2 f:1:0:-:A w:0:live:-:-:5:6");
	refused("2 f:1:0:-:A w:0:renumber:-:-:5:6 r:0:9:p:");
	refused("2 f:1:0:-:A w:0:renumber:-:-:5:6 r:0:9:p:1,");
	refused("2 f:1:0:-:A w:0:renumber:-:-:5:6 r:0:9:p:3,2");
	refused("2 f:1:0:-:A w:0:renumber:-:-:5:6 r:0:9:p:1-3,3");
	refused("2 f:1:0:-:A w:0:renumber:-:-:5:6 r:0:9:x:1");
	refused("2 f:1:0:-:A w:0:renumber:-:-:5:6 r:0:0:p:1");
	refused("2 f:1:0:-:A w:0:live:-:- r:0:9:p:1");
	refused("2 f:1:0:-:A r:0:9:p:1");
	refused("2 f:1:0:-:A w:0:renumber:-:-:5:6 r:0:9:p:1 r:0:9:p:1");
	refused("2 m:0:5");
	refused("2 f:1:0:-:A m:1:5");
	refused("2 f:1:0:-:A m:0:5 m:0:5");
	refused("2 f:1:0:-:A m:0:");
	refused("2 f:1:0:-:A m:0");
	refused("2 f:1:0:-:A m:0:5:6");
	refused("2 f:1:0:-:A m:0:4294967296");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_empty),
	        cmocka_unit_test(test_v2_roundtrip),
	        cmocka_unit_test(test_v2_margin),
	        cmocka_unit_test(test_v2_fields),
	        cmocka_unit_test(test_v2_ways),
	        cmocka_unit_test(test_v2_renumber),
	        cmocka_unit_test(test_v2_savers),
	        cmocka_unit_test(test_v1_fields),
	        cmocka_unit_test(test_format_joins),
	        cmocka_unit_test(test_overlap),
	        cmocka_unit_test(test_huge_range),
	        cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
