#ifndef BF_TAG_H
#define BF_TAG_H

/* The tag only this site's milters can make: X-Backfill-Tag names the
   milter host and queue id under which a message was checked for a
   window, with a MAC over window, fingerprint, host and queue id keyed
   with the site secret (SecretFile).  An MX recognises by it a message
   its peers already checked (a relay between our own MXs is the same
   delivery), and the Dovecot plugin trusts only tagged fingerprints.

   Value: "host=H; qid=Q; mac=<64 hex>" (HMAC-SHA-256). */

#include <stdbool.h>
#include <stddef.h>

#define BF_TAG_HEADER "X-Backfill-Tag"
/* host and queue id are at most this long (a DNS name is 253) */
#define BF_TAG_FIELD_MAX 255
#define BF_TAG_VALUE_MAX (2 * BF_TAG_FIELD_MAX + 96)
/* Shorter secrets are refused: the MAC is only as strong as the key. */
#define BF_SECRET_MIN 16
#define BF_SECRET_MAX 4096

struct bf_tag {
	char host[BF_TAG_FIELD_MAX + 1];
	char qid[BF_TAG_FIELD_MAX + 1];
};

/* Writes the header value for window, fp_text ("v1:..."), host and qid
   into out (BF_TAG_VALUE_MAX + 1 bytes).  host and qid must be free of
   ';', blanks and control characters.  Returns 0, or -1 (bad field,
   crypto failure). */
int bf_tag_make(const unsigned char *secret, size_t secret_len,
                const char *window, const char *fp_text, const char *host,
                const char *qid, char *out, size_t out_size);

/* 1 if value is a tag made with secret for window and fp_text (tag_r
   filled), 0 if not (malformed, other window or message, other key). */
int bf_tag_verify(const unsigned char *secret, size_t secret_len,
                  const char *window, const char *fp_text, const char *value,
                  struct bf_tag *tag_r);

/* Reads the site secret from path: its bytes with trailing blanks and
   line breaks removed, at least BF_SECRET_MIN.  A file that others than
   its owner and group may read is refused.  Returns 0 with a malloc()ed
   *secret_r, or -1 with a malloc()ed *error_r. */
int bf_secret_read(const char *path, unsigned char **secret_r, size_t *len_r,
                   char **error_r);

#endif
