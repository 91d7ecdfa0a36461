/* The counters of stats.h and their file. */

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"

/* How often the daemon rewrites the file (main.c); a file older than a
   few times this is from a milter that is not running. */
#define STATS_STALE_SECS 60

static const char *const stat_names[MILTER_STAT_COUNT] = {
        "connections",    "seen",      "tagged",       "unchecked",
        "held",           "discarded", "removed",      "relayed",
        "forged_removed", "rejected",  "store_errors",
};

static atomic_ulong counters[MILTER_STAT_COUNT];
static _Atomic time_t last_connection;

void milter_stats_add(enum milter_stat stat, unsigned long n)
{
	atomic_fetch_add(&counters[stat], n);
}

void milter_stats_connection(void)
{
	atomic_fetch_add(&counters[MILTER_STAT_CONNECTIONS], 1);
	atomic_store(&last_connection, time(NULL));
}

static void put_time(FILE *f, const char *name, time_t t)
{
	char stamp[32];
	struct tm tm;

	if (t == 0) {
		fprintf(f, "%s never\n", name);
		return;
	}
	gmtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(f, "%s %s\n", name, stamp);
}

int milter_stats_write(const char *path, time_t started)
{
	size_t len = strlen(path);
	char *tmp = malloc(len + 8);
	FILE *f;
	int saved;

	if (tmp == NULL)
		return -1;
	snprintf(tmp, len + 8, "%s.new", path);
	if ((f = fopen(tmp, "we")) == NULL) {
		saved = errno;
		free(tmp);
		errno = saved;
		return -1;
	}
	fprintf(f, "pid %ld\n", (long)getpid());
	put_time(f, "started", started);
	put_time(f, "updated", time(NULL));
	put_time(f, "last_connection", atomic_load(&last_connection));
	for (int i = 0; i < MILTER_STAT_COUNT; i++)
		fprintf(f, "%s %lu\n", stat_names[i],
		        atomic_load(&counters[i]));
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		saved = errno;
		unlink(tmp);
		free(tmp);
		errno = saved;
		return -1;
	}
	free(tmp);
	return 0;
}

static time_t parse_time(const char *text)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL)
		return 0;
	return timegm(&tm);
}

int milter_stats_print(const char *path, time_t now)
{
	FILE *f = fopen(path, "re");
	char line[256];
	time_t updated = 0;

	if (f == NULL) {
		fprintf(stderr,
		        "backfill-milter: %s: %s (is the milter running, with "
		        "this StatsFile?)\n",
		        path, strerror(errno));
		return 1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *value = strchr(line, ' ');
		line[strcspn(line, "\n")] = '\0';
		time_t t = value != NULL ? parse_time(value + 1) : 0;
		if (t != 0) {
			if (strncmp(line, "updated ", 8) == 0)
				updated = t;
			printf("%s (%lds ago)\n", line, (long)(now - t));
		} else {
			printf("%s\n", line);
		}
	}
	fclose(f);
	if (updated == 0 || now - updated > STATS_STALE_SECS) {
		fprintf(stderr,
		        "backfill-milter: %s was not updated for over %ds: "
		        "the milter is not running\n",
		        path, STATS_STALE_SECS);
		return 1;
	}
	return 0;
}
