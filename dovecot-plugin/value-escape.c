/* Escaping of printed and logged values (value-escape.h has the
   rules).  One function for every doveadm backfill command and log line,
   so that a reader of any of them unescapes the same way; the escaping
   itself is libbackfill's (shared/escape.c), which backfillctl's text
   report uses too. */

#include "lib.h"
#include "escape.h"
#include "value-escape.h"

const char *backfill_value_escape(const char *value, const char *specials)
{
	size_t len = strlen(value), escaped_len;
	char *out;

	escaped_len =
	        bf_escape(value, len, BF_ESCAPE_REVERSIBLE, specials, NULL, 0);
	if (escaped_len == len)
		return value;
	out = t_malloc_no0(escaped_len + 1);
	bf_escape(value, len, BF_ESCAPE_REVERSIBLE, specials, out,
	          escaped_len + 1);
	return out;
}
