#ifndef BF_CLOCK_H
#define BF_CLOCK_H

#include <stdint.h>

/* Milliseconds of a clock that never steps back (CLOCK_MONOTONIC): for
   budgets and intervals, which an NTP correction of the wall clock must
   not stretch or cut. */
uint64_t bf_clock_msecs(void);

#endif
