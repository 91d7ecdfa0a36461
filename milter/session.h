#ifndef MILTER_SESSION_H
#define MILTER_SESSION_H

/* State of one SMTP session (one milter connection) and of the message in
   it.  Memory per session is constant in the message size: the body only
   passes through the streaming fingerprint; what grows is bounded by
   Postfix's own limits (recipients by smtpd_recipient_limit, forged
   headers by header_size_limit). */

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
	struct milter_forged *forged;
	size_t forged_count, forged_alloc;
};

struct milter_session *milter_session_new(void);
void milter_session_free(struct milter_session **session);
/* Forget the message (keeps the fingerprint buffers). */
void milter_session_reset(struct milter_session *session);

/* Mark the message unchecked (first reason wins).  Never fails: without
   memory the reason is a static string. */
void milter_session_unchecked(struct milter_session *session,
                              const char *reason);

int milter_session_add_rcpt(struct milter_session *session, const char *raw);
int milter_session_add_forged(struct milter_session *session, const char *name);

#endif
