/* Parsers for values operators type.  Strict: trailing garbage, signs and
   overflow are errors, because a setting silently read as 0 (for example a
   login budget of "300 ms" with a space) is worse than a refusal. */

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "parse.h"

static int parse_number(const char *text, uint64_t *value_r, const char **end_r)
{
	char *end;

	if (!isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno != 0)
		return -1;
	*value_r = v;
	*end_r = end;
	return 0;
}

static int mul_overflows(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_mul_overflow(a, b, r);
}

int bf_parse_duration_ms(const char *text, uint64_t default_unit_ms,
                         uint64_t *ms_r, const char **error_r)
{
	static const struct {
		const char *suffix;
		uint64_t ms;
	} units[] = {
	        {"ms", 1},
	        {"msec", 1},
	        {"msecs", 1},
	        {"s", 1000},
	        {"sec", 1000},
	        {"secs", 1000},
	        {"m", 60000},
	        {"min", 60000},
	        {"mins", 60000},
	        {"h", 3600000},
	        {"hour", 3600000},
	        {"hours", 3600000},
	        {"d", 86400000},
	        {"day", 86400000},
	        {"days", 86400000},
	        {"w", 604800000ULL},
	        {"week", 604800000ULL},
	};
	const char *end;
	uint64_t v, unit = default_unit_ms;

	if (parse_number(text, &v, &end) < 0) {
		*error_r = "expected a duration such as 300ms, 5s, 2m, 1h, 1d";
		return -1;
	}
	if (*end != '\0') {
		size_t i;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			if (strcasecmp(end, units[i].suffix) == 0)
				break;
		}
		if (i == sizeof(units) / sizeof(units[0])) {
			*error_r =
			        "unknown time unit (use ms, s, m, h, d or w)";
			return -1;
		}
		unit = units[i].ms;
	}
	if (mul_overflows(v, unit, ms_r)) {
		*error_r = "duration too large";
		return -1;
	}
	return 0;
}

int bf_parse_size(const char *text, uint64_t *bytes_r, const char **error_r)
{
	const char *end;
	uint64_t v, unit = 1;

	if (parse_number(text, &v, &end) < 0) {
		*error_r = "expected a size such as 512, 64k, 10M, 2G";
		return -1;
	}
	if (*end != '\0') {
		switch (toupper((unsigned char)*end)) {
		case 'B':
			unit = 1;
			break;
		case 'K':
			unit = 1024;
			break;
		case 'M':
			unit = 1024 * 1024;
			break;
		case 'G':
			unit = 1024ULL * 1024 * 1024;
			break;
		case 'T':
			unit = 1024ULL * 1024 * 1024 * 1024;
			break;
		default:
			*error_r = "unknown size unit (use k, M, G or T)";
			return -1;
		}
		end++;
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end != '\0') {
			*error_r = "unknown size unit (use k, M, G or T)";
			return -1;
		}
	}
	if (mul_overflows(v, unit, bytes_r)) {
		*error_r = "size too large";
		return -1;
	}
	return 0;
}

int bf_parse_bool(const char *text, bool *value_r, const char **error_r)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*value_r = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*value_r = false;
			return 0;
		}
	}
	*error_r = "expected yes or no";
	return -1;
}

int bf_parse_uint(const char *text, uint64_t min, uint64_t max,
                  uint64_t *value_r, const char **error_r)
{
	const char *end;
	uint64_t v;

	if (parse_number(text, &v, &end) < 0 || *end != '\0') {
		*error_r = "expected a whole number";
		return -1;
	}
	if (v < min || v > max) {
		*error_r = "number out of range";
		return -1;
	}
	*value_r = v;
	return 0;
}

int bf_parse_until(const char *text, time_t now, time_t *until_r,
                   const char **error_r)
{
	static const char *const formats[] = {
	        "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M",
	        "%Y-%m-%d %H:%M",    "%Y-%m-%d",
	};
	static const char *const expected =
	        "expected a duration (6h, 2d), @UNIXTIME or a UTC date "
	        "YYYY-MM-DD[ HH:MM[:SS]]";
	/* Past 9999 a time is a typing error, and gmtime() cannot show
	   every such time_t. */
	static const char *const too_late = "later than the year 9999";
	const char *error;
	uint64_t ms, secs;

	if (text[0] == '@') {
		if (bf_parse_uint(text + 1, 1, UINT64_MAX, &secs, &error) < 0) {
			*error_r = expected;
			return -1;
		}
		if (secs > (uint64_t)BF_PARSE_UNTIL_MAX) {
			*error_r = too_late;
			return -1;
		}
		*until_r = (time_t)secs;
		return 0;
	}
	if (bf_parse_duration_ms(text[0] == '+' ? text + 1 : text, 1000, &ms,
	                         &error) == 0) {
		if (ms < 1000) {
			*error_r = "a duration of at least 1s";
			return -1;
		}
		secs = ms / 1000;
		if (now > BF_PARSE_UNTIL_MAX ||
		    secs > (uint64_t)(BF_PARSE_UNTIL_MAX - now)) {
			*error_r = too_late;
			return -1;
		}
		*until_r = now + (time_t)secs;
		return 0;
	}
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		struct tm tm;
		const char *end;
		time_t t;

		memset(&tm, 0, sizeof(tm));
		end = strptime(text, formats[i], &tm);
		if (end == NULL || (*end != '\0' && strcmp(end, "Z") != 0))
			continue;
		t = timegm(&tm);
		if (t > BF_PARSE_UNTIL_MAX) {
			*error_r = too_late;
			return -1;
		}
		*until_r = t;
		return 0;
	}
	*error_r = expected;
	return -1;
}

int bf_parse_hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}
