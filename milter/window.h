#ifndef MILTER_WINDOW_H
#define MILTER_WINDOW_H

/* Which restore window is open.  The window lives in the state store
   (backfillctl window open/close), so every MX sharing the store agrees;
   the answer is cached for WindowRefresh so that a message costs no extra
   lookup. */

#include <time.h>

struct milter_config;

/* 1 with the window's name (malloc()ed) in *name_r, 0 no window open,
   -1 with a malloc()ed error (the store could not be read). */
int milter_window_current(struct milter_config *config, time_t now,
                          char **name_r, char **error_r);

#endif
