/* X-Backfill-Tag: see tag.h. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "fingerprint.h"
#include "tag.h"

#define MAC_SIZE 32

static bool field_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > BF_TAG_FIELD_MAX)
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c <= 0x20 || c >= 0x7f || c == ';' || c == '=')
			return false;
	}
	return true;
}

/* The MAC input has one field per line, each free of line breaks (the
   window name is checked where it is made, fp_text is hex, host and qid
   by field_ok), so no two inputs can run together. */
static int compute(const unsigned char *secret, size_t secret_len,
                   const char *window, const char *fp_text, const char *host,
                   const char *qid, unsigned char mac_r[MAC_SIZE])
{
	static const char prefix[] = "backfill-tag1\n";
	unsigned char buf[4 * BF_TAG_FIELD_MAX + 2 * BF_FP_TEXT_SIZE + 32];
	unsigned int mac_len = 0;
	int len;

	if (strchr(window, '\n') != NULL)
		return -1;
	len = snprintf((char *)buf, sizeof(buf), "%s%s\n%s\n%s\n%s\n", prefix,
	               window, fp_text, host, qid);
	if (len < 0 || (size_t)len >= sizeof(buf))
		return -1;
	if (HMAC(EVP_sha256(), secret, (int)secret_len, buf, (size_t)len, mac_r,
	         &mac_len) == NULL ||
	    mac_len != MAC_SIZE)
		return -1;
	return 0;
}

int bf_tag_make(const unsigned char *secret, size_t secret_len,
                const char *window, const char *fp_text, const char *host,
                const char *qid, char *out, size_t out_size)
{
	unsigned char mac[MAC_SIZE];
	char hex[BF_FP_HEX_SIZE];
	int len;

	if (!field_ok(host) || !field_ok(qid) ||
	    compute(secret, secret_len, window, fp_text, host, qid, mac) < 0)
		return -1;
	bf_fp_to_hex(mac, hex);
	len = snprintf(out, out_size, "host=%s; qid=%s; mac=%s", host, qid,
	               hex);
	return len < 0 || (size_t)len >= out_size ? -1 : 0;
}

/* Copies the value of "name=" at *p up to ';' or the end into out. */
static bool take_field(const char **p, const char *name, char *out,
                       size_t out_size)
{
	size_t name_len = strlen(name), len;
	const char *s = *p, *end;

	/* a relay may have folded the field */
	s += strspn(s, " \t\r\n");
	if (strncmp(s, name, name_len) != 0 || s[name_len] != '=')
		return false;
	s += name_len + 1;
	end = strchr(s, ';');
	len = end != NULL ? (size_t)(end - s) : strlen(s);
	while (len > 0 && strchr(" \t\r\n", s[len - 1]) != NULL)
		len--;
	if (len == 0 || len >= out_size)
		return false;
	memcpy(out, s, len);
	out[len] = '\0';
	*p = end != NULL ? end + 1 : s + strlen(s);
	return true;
}

int bf_tag_verify(const unsigned char *secret, size_t secret_len,
                  const char *window, const char *fp_text, const char *value,
                  struct bf_tag *tag_r)
{
	unsigned char want[MAC_SIZE], got[MAC_SIZE];
	char hex[BF_FP_HEX_SIZE + 1];
	const char *p = value;

	if (secret == NULL || window == NULL || fp_text == NULL ||
	    strlen(value) > BF_TAG_VALUE_MAX ||
	    !take_field(&p, "host", tag_r->host, sizeof(tag_r->host)) ||
	    !take_field(&p, "qid", tag_r->qid, sizeof(tag_r->qid)) ||
	    !take_field(&p, "mac", hex, sizeof(hex)) || *p != '\0' ||
	    !field_ok(tag_r->host) || !field_ok(tag_r->qid) ||
	    bf_fp_from_text(hex, got) < 0 ||
	    compute(secret, secret_len, window, fp_text, tag_r->host,
	            tag_r->qid, want) < 0)
		return 0;
	return CRYPTO_memcmp(want, got, MAC_SIZE) == 0 ? 1 : 0;
}

static int secret_error(char **error_r, const char *path, const char *what)
{
	char *text = NULL;

	if (asprintf(&text, "SecretFile %s: %s", path, what) < 0)
		text = NULL;
	*error_r = text != NULL ? text : strdup(what);
	return -1;
}

int bf_secret_read(const char *path, unsigned char **secret_r, size_t *len_r,
                   char **error_r)
{
	unsigned char *buf;
	struct stat st;
	ssize_t got;
	size_t len = 0;
	int fd;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return secret_error(error_r, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return secret_error(error_r, path, "not a regular file");
	}
	if ((st.st_mode & S_IROTH) != 0) {
		close(fd);
		return secret_error(error_r, path,
		                    "readable by everyone (chmod o-rwx: only "
		                    "the milter's and Dovecot's group may read "
		                    "it)");
	}
	if ((buf = malloc(BF_SECRET_MAX + 1)) == NULL) {
		close(fd);
		return secret_error(error_r, path, "out of memory");
	}
	while (len <= BF_SECRET_MAX &&
	       (got = read(fd, buf + len, BF_SECRET_MAX + 1 - len)) > 0)
		len += (size_t)got;
	close(fd);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
	                   buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	if (len > BF_SECRET_MAX || len < BF_SECRET_MIN) {
		OPENSSL_cleanse(buf, BF_SECRET_MAX + 1);
		free(buf);
		return secret_error(error_r, path,
		                    len < BF_SECRET_MIN
		                            ? "shorter than 16 bytes (make one "
		                              "with: openssl rand -hex 32)"
		                            : "longer than 4096 bytes");
	}
	*secret_r = buf;
	*len_r = len;
	return 0;
}
