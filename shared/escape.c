/* Escaping of control characters: see escape.h. */

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "escape.h"
#include "parse.h"

/* The escape of in[i] (and in[i + 1] for a C1 character) in unit; returns
   its length and the number of input bytes it stands for in *used_r. */
static size_t escape_one(const unsigned char *in, size_t i, size_t in_len,
                         unsigned int flags, const char *specials, char unit[8],
                         size_t *used_r)
{
	unsigned char c = in[i];

	*used_r = 1;
	if ((flags & BF_ESCAPE_REVERSIBLE) != 0) {
		const char *named = c == '\\'   ? "\\\\"
		                    : c == '\t' ? "\\t"
		                    : c == '\n' ? "\\n"
		                    : c == '\r' ? "\\r"
		                                : NULL;
		if (named != NULL) {
			memcpy(unit, named, 2);
			return 2;
		}
	}
	if (c < 0x20 || c == 0x7f)
		return (size_t)snprintf(unit, 8, "\\x%02x", c);
	if ((flags & BF_ESCAPE_C1) != 0 && c == 0xc2 && i + 1 < in_len &&
	    in[i + 1] >= 0x80 && in[i + 1] <= 0x9f) {
		*used_r = 2;
		return (size_t)snprintf(unit, 8, "\\u%04x", in[i + 1]);
	}
	if (c != '\0' && strchr(specials, c) != NULL) {
		unit[0] = '\\';
		unit[1] = (char)c;
		return 2;
	}
	unit[0] = (char)c;
	return 1;
}

size_t bf_escape(const char *in, size_t in_len, unsigned int flags,
                 const char *specials, char *out, size_t out_size)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, len = 0, written = 0;
	bool full = out_size == 0;

	while (i < in_len) {
		char unit[8];
		size_t used, n;

		n = escape_one(p, i, in_len, flags, specials, unit, &used);
		i += used;
		/* whole escapes only: a cut one could end in a lone backslash
		 */
		if (!full && written + n < out_size) {
			memcpy(out + written, unit, n);
			written += n;
		} else
			full = true;
		len += n;
	}
	if (out_size > 0)
		out[written] = '\0';
	return len;
}

int bf_unescape(const char *in, size_t in_len, char *out, size_t *out_len_r)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, len = 0;

	while (i < in_len) {
		int hi, lo;

		if (p[i] != '\\') {
			out[len++] = (char)p[i++];
			continue;
		}
		/* a lone trailing backslash: a cut value, not an escape */
		if (i + 1 == in_len)
			return -1;
		switch (p[i + 1]) {
		case '\\':
			out[len++] = '\\';
			break;
		case 't':
			out[len++] = '\t';
			break;
		case 'n':
			out[len++] = '\n';
			break;
		case 'r':
			out[len++] = '\r';
			break;
		case 'x':
			if (i + 3 >= in_len ||
			    (hi = bf_parse_hex_digit((char)p[i + 2])) < 0 ||
			    (lo = bf_parse_hex_digit((char)p[i + 3])) < 0)
				return -1;
			out[len++] = (char)(hi * 16 + lo);
			i += 4;
			continue;
		default:
			return -1;
		}
		i += 2;
	}
	out[len] = '\0';
	*out_len_r = len;
	return 0;
}
