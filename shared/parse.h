#ifndef BF_PARSE_H
#define BF_PARSE_H

/* Parsers for the values operators type in settings and config files.
   Each returns 0, or -1 with *error_r set to a static or caller-owned
   message that says what was expected. */

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* "300ms", "5s", "2m", "1h", "1d", "1w"; a bare number is in
   default_unit_ms units (1 for ms, 1000 for seconds). */
int bf_parse_duration_ms(const char *text, uint64_t default_unit_ms,
                         uint64_t *ms_r, const char **error_r);
/* "512", "64k", "10M", "2G" (powers of 1024). */
int bf_parse_size(const char *text, uint64_t *bytes_r, const char **error_r);
/* yes/no, true/false, on/off, 1/0 (case-insensitive). */
int bf_parse_bool(const char *text, bool *value_r, const char **error_r);
/* A decimal unsigned integer within [min, max]. */
int bf_parse_uint(const char *text, uint64_t min, uint64_t max,
                  uint64_t *value_r, const char **error_r);

/* The latest time bf_parse_until() gives: 9999-12-31 23:59:59 UTC. */
#define BF_PARSE_UNTIL_MAX ((time_t)253402300799LL)
/* An end time as operators type it (backfillctl window open --until):
   a duration from now ("6h", "+2d", at least 1s), "@UNIXTIME", or a UTC
   date "YYYY-MM-DD[ HH:MM[:SS]]" (also with 'T' and a trailing 'Z').
   Never later than BF_PARSE_UNTIL_MAX; a time in the past is left to the
   caller to refuse. */
int bf_parse_until(const char *text, time_t now, time_t *until_r,
                   const char **error_r);

/* The value of a hex digit (either case), or -1. */
int bf_parse_hex_digit(char c);

#endif
