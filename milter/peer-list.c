/* PeerList parsing and matching. */

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "peer-list.h"

/* A file of a few thousand entries is already far beyond a site's MXs. */
#define PEER_MAX      4096
#define PEER_FILE_MAX (256 * 1024)

struct peer {
	int family;
	unsigned char addr[16];
	unsigned int prefix; /* bits */
};

struct milter_peer_list {
	struct peer *peers;
	size_t count;
};

static char *errorf(const char *fmt, const char *arg)
{
	char *text = NULL;

	if (asprintf(&text, fmt, arg) < 0)
		return strdup("out of memory");
	return text;
}

/* addr with "IPv6:" stripped, into family/bytes. */
static bool parse_addr(const char *text, int *family_r, unsigned char *out)
{
	if (strncasecmp(text, "IPv6:", 5) == 0)
		text += 5;
	if (inet_pton(AF_INET, text, out) == 1) {
		*family_r = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, text, out) == 1) {
		*family_r = AF_INET6;
		return true;
	}
	return false;
}

static int add_entry(struct milter_peer_list *list, const char *entry,
                     char **error_r)
{
	char buf[INET6_ADDRSTRLEN + 8];
	struct peer peer;
	char *slash, *end;
	unsigned long prefix;

	if (strlen(entry) >= sizeof(buf)) {
		*error_r = errorf("PeerList: '%s' is not an address or CIDR "
		                  "block",
		                  entry);
		return -1;
	}
	strcpy(buf, entry);
	slash = strchr(buf, '/');
	if (slash != NULL)
		*slash++ = '\0';
	memset(&peer, 0, sizeof(peer));
	if (!parse_addr(buf, &peer.family, peer.addr)) {
		*error_r = errorf("PeerList: '%s' is not an IPv4 or IPv6 "
		                  "address (host names are not looked up)",
		                  entry);
		return -1;
	}
	peer.prefix = peer.family == AF_INET ? 32 : 128;
	if (slash != NULL) {
		prefix = strtoul(slash, &end, 10);
		if (*slash == '\0' || *end != '\0' || !isdigit(*slash) ||
		    prefix > peer.prefix) {
			*error_r = errorf("PeerList: '%s' has a bad prefix "
			                  "length",
			                  entry);
			return -1;
		}
		peer.prefix = (unsigned int)prefix;
	}
	if (list->count == PEER_MAX) {
		*error_r = strdup("PeerList: more than 4096 entries");
		return -1;
	}
	list->peers[list->count++] = peer;
	return 0;
}

/* Splits text at commas, blanks and line breaks, skipping '#' comments
   to the end of their line. */
static int add_text(struct milter_peer_list *list, char *text, char **error_r)
{
	char *p = text;

	while (*p != '\0') {
		if (*p == '#') {
			p += strcspn(p, "\n");
			continue;
		}
		size_t len = strcspn(p, ", \t\r\n#");
		if (len == 0) {
			p++;
			continue;
		}
		char save = p[len];
		p[len] = '\0';
		int ret = add_entry(list, p, error_r);
		p[len] = save;
		if (ret < 0)
			return -1;
		p += len;
	}
	return 0;
}

static char *read_file(const char *path, char **error_r)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t len;

	if (f == NULL) {
		*error_r = errorf("PeerList: cannot read %s", path);
		return NULL;
	}
	buf = malloc(PEER_FILE_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		*error_r = strdup("out of memory");
		return NULL;
	}
	len = fread(buf, 1, PEER_FILE_MAX + 1, f);
	fclose(f);
	if (len > PEER_FILE_MAX) {
		free(buf);
		*error_r = errorf("PeerList: %s is larger than 256 kB", path);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
}

int milter_peer_list_parse(const char *text, struct milter_peer_list **list_r,
                           char **error_r)
{
	struct milter_peer_list *list = *list_r;
	char *copy;
	int ret;

	*error_r = NULL;
	copy = text[0] == '/' ? read_file(text, error_r) : strdup(text);
	if (copy == NULL) {
		if (*error_r == NULL)
			*error_r = strdup("out of memory");
		return -1;
	}
	if (list == NULL) {
		list = calloc(1, sizeof(*list));
		if (list == NULL ||
		    (list->peers = calloc(PEER_MAX, sizeof(*list->peers))) ==
		            NULL) {
			milter_peer_list_free(&list);
			free(copy);
			*error_r = strdup("out of memory");
			return -1;
		}
		*list_r = list;
	}
	/* On an error the entries before it stay: the caller refuses the
	   whole configuration anyway. */
	ret = add_text(list, copy, error_r);
	free(copy);
	return ret;
}

void milter_peer_list_free(struct milter_peer_list **_list)
{
	struct milter_peer_list *list = *_list;

	if (list == NULL)
		return;
	*_list = NULL;
	free(list->peers);
	free(list);
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b,
                         unsigned int bits)
{
	unsigned int bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (a[bytes] & mask) == (b[bytes] & mask);
}

bool milter_peer_list_match(const struct milter_peer_list *list,
                            const char *addr)
{
	unsigned char bytes[16];
	int family;

	if (list == NULL || addr == NULL || !parse_addr(addr, &family, bytes))
		return false;
	for (size_t i = 0; i < list->count; i++) {
		const struct peer *peer = &list->peers[i];
		if (peer->family == family &&
		    prefix_equal(peer->addr, bytes, peer->prefix))
			return true;
	}
	return false;
}
