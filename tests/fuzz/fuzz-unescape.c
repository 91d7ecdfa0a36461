/* libFuzzer: bf_unescape(), the reader of user names as doveadm backfill
   prints them (backfillctl report's verify input).  Properties: no crash
   or read beyond the input; what is accepted is never longer than its
   input and ends in a NUL; and the input taken as bytes, escaped
   (BF_ESCAPE_REVERSIBLE) and read back, is those bytes again. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "escape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	char *out = malloc(size + 1), *esc, *back;
	size_t len = 0, esc_len, back_len = 0;

	if (out == NULL)
		return 0;
	if (bf_unescape(in, size, out, &len) == 0) {
		if (len > size || out[len] != '\0')
			abort();
	}
	free(out);

	/* the input as a value: escaped and read back unchanged */
	esc_len = bf_escape(in, size, BF_ESCAPE_REVERSIBLE, "", NULL, 0);
	esc = malloc(esc_len + 1);
	back = malloc(esc_len + 1);
	if (esc == NULL || back == NULL) {
		free(esc);
		free(back);
		return 0;
	}
	bf_escape(in, size, BF_ESCAPE_REVERSIBLE, "", esc, esc_len + 1);
	if (bf_unescape(esc, esc_len, back, &back_len) < 0 ||
	    back_len != size || memcmp(back, in, size) != 0)
		abort();
	free(esc);
	free(back);
	return 0;
}
