#ifndef BACKFILL_DELIVERY_CONFIRM_H
#define BACKFILL_DELIVERY_CONFIRM_H

/* In lmtp: records in the state store that a message the milter tagged
   (X-Backfill-Fingerprint, X-Backfill-Window) was delivered to its
   recipient, so that the milter may remove later copies of it. */
void backfill_delivery_confirm_init(void);
void backfill_delivery_confirm_deinit(void);

#endif
