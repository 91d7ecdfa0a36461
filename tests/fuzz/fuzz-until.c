/* libFuzzer: backfillctl window open --until TIME (bf_parse_until()).
   Properties: no crash or undefined behaviour (signed overflow of a
   duration added to now, a huge @UNIXTIME), and what is accepted is a
   time gmtime() can show, never after the year 9999; a duration is never
   before now. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const time_t now = 1700000000;
	const char *error = NULL;
	struct tm tm;
	time_t until;
	char *text = malloc(size + 1);

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (bf_parse_until(text, now, &until, &error) < 0) {
		if (error == NULL)
			abort();
	} else {
		if (until > BF_PARSE_UNTIL_MAX ||
		    (until >= 0 && gmtime_r(&until, &tm) == NULL))
			abort();
		if (text[0] != '@' && text[0] >= '0' && text[0] <= '9' &&
		    strchr(text, '-') == NULL && until <= now)
			abort();
	}
	free(text);
	return 0;
}
