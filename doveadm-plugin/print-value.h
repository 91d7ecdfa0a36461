#ifndef DOVEADM_BACKFILL_PRINT_VALUE_H
#define DOVEADM_BACKFILL_PRINT_VALUE_H

#include "value-escape.h"

/* Printing a field that holds a folder name or free text: escaped
   (value-escape.h), NULL as "".  The same bytes in every -f format, so
   tab, table, flow and json tell the same story. */
void doveadm_backfill_print_text(const char *text);

/* Appends item, escaped as a list item, to list after sep when list is
   not empty.  Print the finished list (or one built with
   BACKFILL_ESCAPE_LIST items elsewhere, as UIDWays) with
   doveadm_backfill_print_list(): its items are escaped already. */
void doveadm_backfill_list_append(string_t *list, const char *sep,
                                  const char *item);
void doveadm_backfill_print_list(const char *list);

#endif
