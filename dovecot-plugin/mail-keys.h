#ifndef BACKFILL_MAIL_KEYS_H
#define BACKFILL_MAIL_KEYS_H

#include "fingerprint.h"

struct mail;
struct mailbox;
struct bf_fp;

/* Cache field indexes of one opened mailbox. */
struct backfill_cache_fields {
	unsigned int hdr_key_idx, fp_idx;
};

/* Registers our two fixed-size fields in the mailbox's cache ("as
   pop3-migration caches its header hash"): a resumed merge and the next
   login then find the keys without reading the messages again. */
void backfill_cache_fields_register(struct mailbox *box,
                                    struct backfill_cache_fields *fields_r);

struct backfill_mail_keys {
	unsigned char hdr_key[BF_FP_SIZE];
	unsigned char fp[BF_FP_SIZE];
	bool fp_set;
	/* The message has no header section (or no selected header). */
	bool no_header;
};

/* Fills keys->hdr_key, and keys->fp too when want_fp (reading the whole
   message unless both are cached).  fields NULL: no cache at all (the
   archive: a resumed merge starts at its cursor and never reads the
   messages before it again, so caching them only costs writes).  Returns 1, 0
   if the message was expunged meanwhile, -1 with *error_r when it could not be
   read. */
int backfill_mail_keys_get(struct mail *mail,
                           const struct backfill_cache_fields *fields,
                           struct bf_fp *fp, bool want_fp,
                           struct backfill_mail_keys *keys,
                           const char **error_r);

#endif
