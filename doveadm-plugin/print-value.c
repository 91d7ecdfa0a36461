/* The one place where doveadm backfill's commands turn folder names and
   free text into printed fields.  Dovecot 2.3's tab formatter prints a
   value as it is: a folder name holding a newline and tabs printed raw
   makes a complete row for another user (review s6 F4). */

#include "lib.h"
#include "str.h"
#include "doveadm-print.h"
#include "print-value.h"

void doveadm_backfill_print_text(const char *text)
{
	doveadm_print(text == NULL ? ""
	                           : backfill_value_escape(
	                                     text, BACKFILL_ESCAPE_TEXT));
}

void doveadm_backfill_list_append(string_t *list, const char *sep,
                                  const char *item)
{
	if (str_len(list) > 0)
		str_append(list, sep);
	str_append(list, backfill_value_escape(item, BACKFILL_ESCAPE_LIST));
}

void doveadm_backfill_print_list(const char *list)
{
	doveadm_print(list == NULL ? "" : list);
}
