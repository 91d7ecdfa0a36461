#ifndef MILTER_SESSION_H
#define MILTER_SESSION_H

/* State of one SMTP session (one milter connection) and of the message in
   it.  Memory per session is bounded whatever the message: the body only
   passes through the streaming fingerprint, the selected header fields it
   keeps are capped at MILTER_MAX_HEADER_BYTES, forged header names at
   MILTER_MAX_FORGED, recipients by Postfix's smtpd_recipient_limit; and
   all of it is given back at the end of each message. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bf_fp;
struct milter_config;

struct milter_rcpt {
	char *raw;  /* exactly as RCPT TO gave it: smfi_delrcpt needs it */
	char *bare; /* bare address, lowercased: the dedup key */
	size_t key; /* index of the first recipient with the same bare */
};
/* milter_rcpt.key of a recipient without an address to check. */
#define MILTER_RCPT_NO_KEY ((size_t)-1)

/* The selected header fields (To, Cc, Subject, ...) a message may carry
   for its fingerprint: 10 times Postfix's default header_size_limit,
   far more than any real message; past it the message is accepted
   unchecked.  Without a cap 5,000 To: fields of 2 kB each held 10 MB. */
#define MILTER_MAX_HEADER_BYTES (1024 * 1024)
/* X-Backfill-* fields a message may carry and still be accepted: each
   costs one delete request to the MTA at end of message, and a flood of
   them (100,000 in a 10 MB message) would outlast the MTA's milter
   timeout, after which it passes the message forged headers and all.
   Our milters add at most four; past this the message is rejected. */
#define MILTER_MAX_FORGED 100
/* X-Backfill-Tag fields of a peer looked at: one per MX the message
   crossed, so a handful. */
#define MILTER_MAX_PEER_TAGS 8

struct milter_forged {
	char *name;         /* as received, for smfi_chgheader */
	unsigned int count; /* fields of this name (case-insensitive) */
};

struct milter_session {
	struct bf_fp *fp; /* kept across messages of the session */
	/* SMFIP_NR_* steps the MTA agreed to send without waiting for our
	   reply (we never reject, so only end of message needs one). */
	unsigned long no_reply;
	/* SMFIF_* actions the MTA granted; valid if actions_known */
	unsigned long actions;
	bool actions_known;
	bool in_message; /* counted in milter_active_messages() */

	/* Per message. */
	struct milter_config *config;
	char *window;    /* NULL: outside a window */
	char *unchecked; /* why dedup was not done; NULL: all fine */
	char *queue_id;
	struct milter_rcpt *rcpts;
	size_t rcpt_count, rcpt_alloc;
	/* rcpts index of the first spelling of each bare address, by hash
	   (open addressing, at most half full; SIZE_MAX: free slot): a
	   recipient's key is found without comparing it with every
	   recipient before it (40,000 recipients took 3 s of CPU). */
	size_t *rcpt_index;
	size_t rcpt_index_size;       /* 0 or a power of two */
	struct milter_forged *forged; /* distinct names, in arrival order */
	size_t forged_count, forged_alloc;
	unsigned int forged_fields; /* all X-Backfill-* fields, counted */
	char *client_addr;          /* {client_addr}: the SMTP client */
	/* X-Backfill-Tag values, checked at end of message when the
	   client is in PeerList */
	char *peer_tags[MILTER_MAX_PEER_TAGS];
	size_t peer_tag_count;
};

struct milter_session *milter_session_new(void);
void milter_session_free(struct milter_session **session);
/* Forget the message (keeps the fingerprint buffers). */
void milter_session_reset(struct milter_session *session);

/* Mark the message unchecked (first reason wins).  Never fails: without
   memory the reason is a static string. */
void milter_session_unchecked(struct milter_session *session,
                              const char *reason);

/* Keeps an X-Backfill-Tag value (beyond MILTER_MAX_PEER_TAGS, or too
   long to be one, it is ignored).  Returns 0 or -1 (out of memory). */
int milter_session_add_peer_tag(struct milter_session *session,
                                const char *value);
int milter_session_add_rcpt(struct milter_session *session, const char *raw);
/* Counts one X-Backfill-* field.  Returns 0, 1 when the message has more
   than MILTER_MAX_FORGED of them (their names are no longer kept), or -1
   when out of memory. */
int milter_session_add_forged(struct milter_session *session, const char *name);

#endif
