#ifndef MILTER_DEDUP_H
#define MILTER_DEDUP_H

/* End of message inside a restore window: the check-and-set of every
   recipient and what follows from it (tag, remove recipients, hold or
   discard).  Never loses a message: every failure leaves the message
   accepted and marks the session unchecked. */

#include <libmilter/mfapi.h>

struct milter_session;

sfsistat milter_dedup_eom(SMFICTX *ctx, struct milter_session *session);

#endif
