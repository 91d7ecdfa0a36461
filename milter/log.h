#ifndef MILTER_LOG_H
#define MILTER_LOG_H

/* Logging of backfill-milter: syslog (facility mail, like Postfix, so the
   lines land next to the queue ids they mention) or stderr in the
   foreground. */

#include <stdbool.h>

enum milter_log_level {
	MILTER_LOG_ERROR = 0,
	MILTER_LOG_WARNING,
	MILTER_LOG_INFO,
	MILTER_LOG_DEBUG,
};

/* Returns 0 and the level for "error", "warning", "info", "debug" (or a
   number 0-3), else -1. */
int milter_log_level_parse(const char *text, enum milter_log_level *level_r);

void milter_log_open(bool use_syslog, int facility);
/* "mail", "daemon", "user", "local0".."local7" into LOG_*.  0 or -1. */
int milter_log_facility_parse(const char *text, int *facility_r);
void milter_log_set_level(enum milter_log_level level);
bool milter_log_enabled(enum milter_log_level level);

void milter_log(enum milter_log_level level, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

#define milter_error(...)   milter_log(MILTER_LOG_ERROR, __VA_ARGS__)
#define milter_warning(...) milter_log(MILTER_LOG_WARNING, __VA_ARGS__)
#define milter_info(...)    milter_log(MILTER_LOG_INFO, __VA_ARGS__)
#define milter_debug(...)   milter_log(MILTER_LOG_DEBUG, __VA_ARGS__)

#endif
