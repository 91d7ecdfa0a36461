#ifndef BF_ESCAPE_H
#define BF_ESCAPE_H

/* Control characters in values that come from users' mailboxes and
   userdbs (folder names, user names, error texts) made printable, so
   that a printed value can neither start a line or a field of its own
   nor send a terminal an escape sequence.  One function for the doveadm
   backfill commands and log lines (dovecot-plugin/value-escape.h) and for
   backfillctl's text report.

   Every byte below 0x20 and 0x7f becomes \xHH (two lowercase hex
   digits), except as the flags say.  Every other byte, UTF-8 or not, is
   itself, except as the flags and specials say. */

#include <stddef.h>

enum bf_escape_flags {
	/* Reversible: a backslash becomes \\, tab, line feed and carriage
	   return become \t \n \r.  For values a program reads back (the
	   doveadm output). */
	BF_ESCAPE_REVERSIBLE = 0x01,
	/* A C1 control character in UTF-8 (0xc2 0x80 .. 0xc2 0x9f) becomes
	   \u00HH: a terminal that reads UTF-8 would act on it. */
	BF_ESCAPE_C1 = 0x02,
};

/* Escapes the in_len bytes at in (NUL bytes included) into out: at most
   out_size - 1 bytes and a NUL, never half an escape.  specials: bytes
   (0x20 and above, NUL-terminated, "" for none) that become a backslash
   and the byte.  Returns the length of the whole escaped value without
   its NUL, as snprintf() does: a return of out_size or more means out
   was too small (out may be NULL when out_size is 0).  The result equals
   in_len exactly when nothing needed escaping. */
size_t bf_escape(const char *in, size_t in_len, unsigned int flags,
                 const char *specials, char *out, size_t out_size);

/* The inverse of bf_escape() with BF_ESCAPE_REVERSIBLE and no specials
   (a user name as doveadm backfill prints it): \\ \t \n \r and \xHH (hex,
   either case) become their byte, every other byte is itself.  out must
   hold in_len + 1 bytes (a value never grows); it gets the value and a
   NUL, and *out_len_r its length (NUL bytes may be inside).  Returns -1,
   out undefined, for what bf_escape() never makes: a lone trailing
   backslash, \x without two hex digits, a backslash before any other
   byte.  The caller decides what such a value means. */
int bf_unescape(const char *in, size_t in_len, char *out, size_t *out_len_r);

#endif
