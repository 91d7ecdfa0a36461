#ifndef MILTER_MILTER_H
#define MILTER_MILTER_H

/* The libmilter callbacks of backfill-milter. */

#include <libmilter/mfapi.h>

extern struct smfiDesc milter_desc;

/* Sessions (milter connections) open right now: SIGTERM waits for them to
   finish their message before the process exits. */
unsigned int milter_active_sessions(void);

#endif
