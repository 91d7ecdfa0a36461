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

/* Whether copy is a copy of src as Dovecot's copy makes one: the same
   bytes, up to the line endings (a save writes them LF, or CRLF with
   mail_save_crlf: maildir_save_begin(), dbox_save_begin(); a hardlink
   copy keeps the file as it is).  So the virtual sizes (CRLF counted:
   the same for both forms) first, from the index or the file name where
   Dovecot has them, then both messages streamed and compared block by
   block, never held whole.

   This tells a copy that lost its GUID to a cut commit from the same mail
   delivered again: LMTP adds its own Return-Path, Delivered-To and
   Received lines, which the dedup fingerprint leaves out on purpose
   (docs/fingerprint.md), so the fingerprint cannot tell them apart.  Returns 1
   when they are the same, 0 when not (or one was expunged meanwhile), -1 with
   *error_r when one could not be read. */
int backfill_mail_same_content(struct mail *src, struct mail *copy,
                               const char **error_r);

/* The size backfill_mail_same_content() compares first, for a caller
   that keeps it for many candidates.  Returns 1, 0 if the message was
   expunged, -1 with *error_r. */
int backfill_mail_same_size(struct mail *mail, uoff_t *size_r,
                            const char **error_r);

#endif
