/* libFuzzer target for the merge cursor's parser (dovecot-plugin/cursor.c):
   whatever the text, parsing never crashes nor allocates by the size of a
   range, and what parses formats to text that parses to the same
   cursor. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cursor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bf_cursor c, c2;
	const char *error;
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	/* version 1 is read, not written: it has no text of its own to come
	   back to */
	if (bf_cursor_parse(text, &c, &error) == 0 && c.version == 2) {
		char *out = bf_cursor_format(&c);
		if (out != NULL) {
			if (bf_cursor_parse(out, &c2, &error) != 0)
				abort();
			char *out2 = bf_cursor_format(&c2);
			if (out2 == NULL || strcmp(out, out2) != 0)
				abort();
			free(out2);
			bf_cursor_free(&c2);
			free(out);
		}
	}
	bf_cursor_free(&c);
	free(text);
	return 0;
}
