#ifndef BF_FINGERPRINT_H
#define BF_FINGERPRINT_H

/* Message fingerprint v1 (FINGERPRINT.md): the one contract that the milter
   and the Dovecot plugin share.  Both feeding styles below produce the same
   bytes for the same message; memory use is constant in the body size and
   proportional only to the selected headers (see bf_fp_header_bytes()). */

#include <stddef.h>
#include <stdint.h>

#define BF_FP_SIZE 32
/* "v1:" + 64 hex digits + NUL */
#define BF_FP_TEXT_SIZE (3 + 2 * BF_FP_SIZE + 1)
#define BF_FP_HEX_SIZE  (2 * BF_FP_SIZE + 1)

struct bf_fp;

struct bf_fp_result {
	unsigned char fingerprint[BF_FP_SIZE];
	unsigned char hdr_key[BF_FP_SIZE];
	/* Canonical value of the first Message-ID field, reduced to its first
	   <...> token when it has one; "" when absent.  Owned by the bf_fp
	   context: valid until its next reset or free. */
	const char *message_id;
};

/* Returns NULL only when out of memory. */
struct bf_fp *bf_fp_new(void);
void bf_fp_free(struct bf_fp **fp);
/* Start a new message, keeping small allocated buffers (a large one is
   freed: memory held between messages stays small). */
void bf_fp_reset(struct bf_fp *fp);
/* Bytes of the selected header fields held so far for this message (the
   only part of a message a context stores): a caller facing hostile
   input bounds it. */
size_t bf_fp_header_bytes(const struct bf_fp *fp);

/* Style 1: the raw message in chunks of any size (what the plugin reads
   from a mail stream).  CRLF or LF, an mbox "From " line, any byte. */
void bf_fp_feed(struct bf_fp *fp, const void *data, size_t size);

/* Style 2: what libmilter hands a milter.  name as given by the MTA, value
   possibly folded with CRLF or LF and with or without its leading space;
   then bf_fp_end_headers() once, then the body in chunks of any size. */
void bf_fp_header(struct bf_fp *fp, const char *name, size_t name_len,
                  const char *value, size_t value_len);
void bf_fp_end_headers(struct bf_fp *fp);
void bf_fp_body(struct bf_fp *fp, const void *data, size_t size);

/* Finish the message (either style).  Returns 0, or -1 with *error_r set
   (a crypto library failure or out of memory; never the input's fault). */
int bf_fp_finish(struct bf_fp *fp, struct bf_fp_result *result_r,
                 const char **error_r);

/* One-shot helper for tests and backfillctl. */
int bf_fp_compute(const void *data, size_t size, struct bf_fp_result *result_r,
                  const char **error_r);

/* Text forms: "v1:<64 hex>" and bare hex. */
void bf_fp_to_text(const unsigned char fp[BF_FP_SIZE],
                   char out[BF_FP_TEXT_SIZE]);
void bf_fp_to_hex(const unsigned char bin[BF_FP_SIZE],
                  char out[BF_FP_HEX_SIZE]);
/* Parses "v1:<hex>" or bare hex.  Returns 0 or -1. */
int bf_fp_from_text(const char *text, unsigned char fp_r[BF_FP_SIZE]);

#endif
