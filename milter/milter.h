#ifndef MILTER_MILTER_H
#define MILTER_MILTER_H

/* The libmilter callbacks of backfill-milter. */

#include <libmilter/mfapi.h>

extern struct smfiDesc milter_desc;

/* Sessions (milter connections) open right now, and those of them in the
   middle of a message (MAIL FROM seen, end of message not yet). */
unsigned int milter_active_sessions(void);
unsigned int milter_active_messages(void);

#endif
