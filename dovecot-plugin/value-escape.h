#ifndef BACKFILL_VALUE_ESCAPE_H
#define BACKFILL_VALUE_ESCAPE_H

/* Folder names and free text as doveadm backfill prints them and the
   plugin logs them.  A folder name is whatever the restored archive holds
   (a Maildir++ ".x&AAo-y" is "x<LF>y"): printed raw, a newline or tab
   would make doveadm -f tab's rows for other users, and a separator
   inside a name would make a list of names ambiguous.

   The escapes, the same in every output format (tab, table, flow, json):
     \\   a backslash
     \t \n \r   tab, line feed, carriage return
     \xHH   any other byte below 0x20, and 0x7f (two lowercase hex digits)
     \, \; \= \/   in a list item only: the separators of the lists
                   (FoldersToCreate "A, B", UIDWays "A=way,B=way",
                   MissingFolderUID "A/uid; B/uid")
   Every other byte (UTF-8 included) is itself.  An escaped value holds no
   byte below 0x20 nor 0x7f, and an escaped list item no unescaped
   separator. */

/* free text: a whole field (an error, last_error) */
#define BACKFILL_ESCAPE_TEXT ""
/* an item of a list inside one field */
#define BACKFILL_ESCAPE_LIST ",;=/"

/* value escaped (data stack), or value itself when nothing needs it.
   specials: the bytes (>= 0x20) escaped as backslash + the byte. */
const char *backfill_value_escape(const char *value, const char *specials);

#endif
