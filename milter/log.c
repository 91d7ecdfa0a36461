/* Logging: one line per event, prefixed "backfill-milter". */

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "log.h"

static atomic_int log_level = MILTER_LOG_INFO;
static bool log_syslog;

static const char *const level_names[] = {"error", "warning", "info", "debug"};

int milter_log_level_parse(const char *text, enum milter_log_level *level_r)
{
	for (int i = 0; i <= MILTER_LOG_DEBUG; i++) {
		if (strcasecmp(text, level_names[i]) == 0 ||
		    (text[0] == '0' + i && text[1] == '\0')) {
			*level_r = (enum milter_log_level)i;
			return 0;
		}
	}
	return -1;
}

int milter_log_facility_parse(const char *text, int *facility_r)
{
	static const struct {
		const char *name;
		int facility;
	} names[] = {
	        {"mail", LOG_MAIL},     {"daemon", LOG_DAEMON},
	        {"user", LOG_USER},     {"local0", LOG_LOCAL0},
	        {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
	        {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4},
	        {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},
	        {"local7", LOG_LOCAL7},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(text, names[i].name) == 0) {
			*facility_r = names[i].facility;
			return 0;
		}
	}
	return -1;
}

void milter_log_open(bool use_syslog, int facility)
{
	log_syslog = use_syslog;
	if (use_syslog)
		openlog("backfill-milter", LOG_PID | LOG_NDELAY, facility);
}

void milter_log_set_level(enum milter_log_level level)
{
	atomic_store(&log_level, (int)level);
}

bool milter_log_enabled(enum milter_log_level level)
{
	return (int)level <= atomic_load(&log_level);
}

void milter_log(enum milter_log_level level, const char *fmt, ...)
{
	static const int priorities[] = {LOG_ERR, LOG_WARNING, LOG_INFO,
	                                 LOG_DEBUG};
	char line[2048];
	va_list args;

	if (!milter_log_enabled(level))
		return;
	va_start(args, fmt);
	vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);

	if (log_syslog) {
		syslog(priorities[level], "%s", line);
		return;
	}
	/* One fprintf per line: stdio locks the stream, so lines of
	   concurrent sessions do not interleave. */
	struct timespec ts;
	struct tm tm;
	char stamp[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ldZ backfill-milter: %s: %s\n", stamp,
	        ts.tv_nsec / 1000000, level_names[level], line);
}
