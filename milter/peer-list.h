#ifndef MILTER_PEER_LIST_H
#define MILTER_PEER_LIST_H

/* PeerList: the addresses of this site's other MXs (opendkim's
   convention: IPs and CIDR blocks, inline or one per line in a file).
   Only a message from one of them is asked for an X-Backfill-Tag; the
   tag's MAC then proves that one of our milters checked it. */

#include <stdbool.h>
#include <stddef.h>

struct milter_peer_list;

/* Parses "a, b c" (commas or blanks), or the file at text if it starts
   with '/' (one entry per line, '#' comments).  An entry is an IPv4 or
   IPv6 address with an optional /prefix.  The entries are added to
   *list_r, which is made if NULL: several PeerList lines add up (an
   operator writing one line per MX must not lose all but the last: that
   MX's relayed mail would be held as repeats).  Returns 0 or -1 with a
   malloc()ed *error_r. */
int milter_peer_list_parse(const char *text, struct milter_peer_list **list_r,
                           char **error_r);
void milter_peer_list_free(struct milter_peer_list **list);
/* addr as Postfix's {client_addr} gives it ("192.0.2.1", "2001:db8::1",
   "IPv6:2001:db8::1"). */
bool milter_peer_list_match(const struct milter_peer_list *list,
                            const char *addr);

#endif
