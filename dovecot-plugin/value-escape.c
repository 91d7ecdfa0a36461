/* Escaping of printed and logged values (value-escape.h has the
   rules).  One function for every doveadm backfill command and log line,
   so that a reader of any of them unescapes the same way. */

#include "lib.h"
#include "str.h"
#include "value-escape.h"

static bool escape_needed(unsigned char c, const char *specials)
{
	return c < 0x20 || c == 0x7f || c == '\\' ||
	       (c != '\0' && strchr(specials, c) != NULL);
}

const char *backfill_value_escape(const char *value, const char *specials)
{
	string_t *str;
	size_t i;

	for (i = 0; value[i] != '\0'; i++) {
		if (escape_needed(value[i], specials))
			break;
	}
	if (value[i] == '\0')
		return value;
	str = t_str_new(i + strlen(value + i) * 4 + 1);
	str_append_data(str, value, i);
	for (; value[i] != '\0'; i++) {
		unsigned char c = value[i];

		if (!escape_needed(c, specials))
			str_append_c(str, c);
		else if (c == '\t')
			str_append(str, "\\t");
		else if (c == '\n')
			str_append(str, "\\n");
		else if (c == '\r')
			str_append(str, "\\r");
		else if (c < 0x20 || c == 0x7f)
			str_printfa(str, "\\x%02x", c);
		else {
			str_append_c(str, '\\');
			str_append_c(str, c);
		}
	}
	return str_c(str);
}
