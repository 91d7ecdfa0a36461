#ifndef MILTER_STATS_H
#define MILTER_STATS_H

/* Counters an operator reads per MX in one command (backfill-milter -s):
   the daemon rewrites StatsFile every few seconds.  Counted since start;
   a reload keeps them. */

#include <stdbool.h>
#include <time.h>

enum milter_stat {
	MILTER_STAT_CONNECTIONS = 0, /* milter connections from the MTA */
	MILTER_STAT_SEEN,            /* messages at end of message */
	MILTER_STAT_TAGGED,          /* checked and tagged in a window */
	MILTER_STAT_UNCHECKED,       /* accepted, tagged unchecked */
	MILTER_STAT_HELD,            /* duplicates put on hold */
	MILTER_STAT_DISCARDED,    /* duplicates discarded (Quarantine none) */
	MILTER_STAT_REMOVED,      /* duplicate recipients removed */
	MILTER_STAT_RELAYED,      /* recipients a peer MX checked already */
	MILTER_STAT_FORGED,       /* forged X-Backfill-* fields removed */
	MILTER_STAT_REJECTED,     /* messages refused (forged flood) */
	MILTER_STAT_STORE_ERRORS, /* state store failures */
	MILTER_STAT_COUNT
};

void milter_stats_add(enum milter_stat stat, unsigned long n);
/* A connection from the MTA: counted, and its time kept (Postfix does
   talk to the milter). */
void milter_stats_connection(void);

/* Writes the counters to path (a new file renamed over the old one, so a
   reader never sees half of it).  Returns 0 or -1 with errno. */
int milter_stats_write(const char *path, time_t started);

/* backfill-milter -s: prints the stats file with the age of each time.
   Returns 0, or 1 when the file is missing or stale. */
int milter_stats_print(const char *path, time_t now);

#endif
