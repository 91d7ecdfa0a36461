/* Value parsers and the Key value config reader. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config-file.h"
#include "parse.h"

static const char *tmp_dir;

static void test_duration(void **state)
{
	uint64_t ms;
	const char *error;

	(void)state;
	assert_int_equal(bf_parse_duration_ms("300ms", 1, &ms, &error), 0);
	assert_int_equal(ms, 300);
	assert_int_equal(bf_parse_duration_ms("5s", 1, &ms, &error), 0);
	assert_int_equal(ms, 5000);
	assert_int_equal(bf_parse_duration_ms("2m", 1, &ms, &error), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(bf_parse_duration_ms("1d", 1, &ms, &error), 0);
	assert_int_equal(ms, 86400000);
	assert_int_equal(bf_parse_duration_ms("7", 1000, &ms, &error), 0);
	assert_int_equal(ms, 7000);
	assert_int_equal(bf_parse_duration_ms("300 ms", 1, &ms, &error), -1);
	assert_int_equal(bf_parse_duration_ms("-1s", 1, &ms, &error), -1);
	assert_int_equal(bf_parse_duration_ms("", 1, &ms, &error), -1);
	assert_int_equal(bf_parse_duration_ms("5x", 1, &ms, &error), -1);
	assert_int_equal(
	        bf_parse_duration_ms("99999999999999999999w", 1, &ms, &error),
	        -1);
	assert_int_equal(
	        bf_parse_duration_ms("999999999999999999w", 1, &ms, &error),
	        -1);
}

static void test_size(void **state)
{
	uint64_t b;
	const char *error;

	(void)state;
	assert_int_equal(bf_parse_size("512", &b, &error), 0);
	assert_int_equal(b, 512);
	assert_int_equal(bf_parse_size("64k", &b, &error), 0);
	assert_int_equal(b, 65536);
	assert_int_equal(bf_parse_size("10MB", &b, &error), 0);
	assert_int_equal(b, 10 * 1024 * 1024);
	assert_int_equal(bf_parse_size("2G", &b, &error), 0);
	assert_int_equal(bf_parse_size("2Q", &b, &error), -1);
	assert_int_equal(bf_parse_size("k", &b, &error), -1);
	assert_int_equal(bf_parse_size("1kk", &b, &error), -1);
}

static void test_bool_uint(void **state)
{
	bool v;
	uint64_t n;
	const char *error;

	(void)state;
	assert_int_equal(bf_parse_bool("Yes", &v, &error), 0);
	assert_true(v);
	assert_int_equal(bf_parse_bool("off", &v, &error), 0);
	assert_false(v);
	assert_int_equal(bf_parse_bool("maybe", &v, &error), -1);
	assert_int_equal(bf_parse_uint("8", 1, 64, &n, &error), 0);
	assert_int_equal(n, 8);
	assert_int_equal(bf_parse_uint("0", 1, 64, &n, &error), -1);
	assert_int_equal(bf_parse_uint("65", 1, 64, &n, &error), -1);
	assert_int_equal(bf_parse_uint("8 ", 1, 64, &n, &error), -1);
}

struct seen {
	char keys[8][64], values[8][256];
	int count;
};

static int collect(const char *key, const char *value, void *context,
                   char **error_r)
{
	struct seen *seen = context;

	if (strcmp(key, "Bad") == 0) {
		*error_r = strdup("Bad: not allowed here");
		return -1;
	}
	snprintf(seen->keys[seen->count], 64, "%s", key);
	snprintf(seen->values[seen->count], 256, "%s", value);
	seen->count++;
	return 0;
}

static char *write_conf(const char *name, const char *text)
{
	char *path;
	FILE *f;

	assert_true(asprintf(&path, "%s/%s", tmp_dir, name) > 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* backfillctl window open --until (fuzzed by fuzz-until). */
static void test_until(void **state)
{
	const time_t now = 1700000000;
	const char *error;
	time_t t;

	(void)state;
	assert_int_equal(bf_parse_until("6h", now, &t, &error), 0);
	assert_int_equal(t, now + 6 * 3600);
	assert_int_equal(bf_parse_until("+2d", now, &t, &error), 0);
	assert_int_equal(t, now + 2 * 86400);
	assert_int_equal(bf_parse_until("@1700003600", now, &t, &error), 0);
	assert_int_equal(t, 1700003600);
	assert_int_equal(bf_parse_until("2099-01-02 03:04", now, &t, &error),
	                 0);
	assert_int_equal(t, 4071006240);
	assert_int_equal(
	        bf_parse_until("2099-01-02T03:04:05Z", now, &t, &error), 0);
	assert_int_equal(t, 4071006245);
	assert_int_equal(bf_parse_until("9999-12-31 23:59:59", now, &t, &error),
	                 0);
	assert_int_equal(t, BF_PARSE_UNTIL_MAX);
	/* gmtime() cannot show every time_t: past 9999 is refused, not
	   printed as garbage */
	assert_int_equal(bf_parse_until("@253402300800", now, &t, &error), -1);
	assert_string_equal(error, "later than the year 9999");
	assert_int_equal(
	        bf_parse_until("@4000000000000000000", now, &t, &error), -1);
	assert_int_equal(bf_parse_until("10000-01-01", now, &t, &error), -1);
	assert_int_equal(bf_parse_until("500000000w", now, &t, &error), -1);
	assert_string_equal(error, "later than the year 9999");
	assert_int_equal(bf_parse_until("900ms", now, &t, &error), -1);
	assert_int_equal(bf_parse_until("yesterday", now, &t, &error), -1);
	assert_int_equal(bf_parse_until("", now, &t, &error), -1);
	assert_int_equal(bf_parse_until("@", now, &t, &error), -1);
	assert_int_equal(bf_parse_until("@-5", now, &t, &error), -1);
	assert_int_equal(bf_parse_until("2026-12-06x", now, &t, &error), -1);
}

static void test_config_file(void **state)
{
	struct seen seen = {0};
	char *error = NULL;
	char *path =
	        write_conf("ok.conf", "# comment\n\n"
	                              "Socket  unix:/run/x.sock  # trailing\n"
	                              "\tWindow\tauto\r\n");

	(void)state;
	assert_int_equal(bf_config_file_read(path, collect, &seen, &error), 0);
	assert_int_equal(seen.count, 2);
	assert_string_equal(seen.keys[0], "Socket");
	assert_string_equal(seen.values[0], "unix:/run/x.sock");
	assert_string_equal(seen.keys[1], "Window");
	assert_string_equal(seen.values[1], "auto");
	free(path);

	path = write_conf("bad.conf", "Socket x\nBad value\n");
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(bf_config_file_read(path, collect, &seen, &error), -1);
	assert_non_null(strstr(error, "bad.conf:2: Bad: not allowed here"));
	free(error);
	free(path);

	path = write_conf("novalue.conf", "Socket\n");
	assert_int_equal(bf_config_file_read(path, collect, &seen, &error), -1);
	assert_non_null(strstr(error, "novalue.conf:1: Socket: missing value"));
	free(error);
	free(path);

	assert_int_equal(bf_config_file_read("/nonexistent/backfill.conf",
	                                     collect, &seen, &error),
	                 -1);
	assert_non_null(strstr(error, "/nonexistent/backfill.conf: "));
	free(error);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_duration),
	        cmocka_unit_test(test_size),
	        cmocka_unit_test(test_bool_uint),
	        cmocka_unit_test(test_until),
	        cmocka_unit_test(test_config_file),
	};

	tmp_dir = argc > 1 ? argv[1] : ".";
	return cmocka_run_group_tests(tests, NULL, NULL);
}
