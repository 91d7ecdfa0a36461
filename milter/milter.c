/* libmilter callbacks: collect what the message needs while it streams,
   act at end of message. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "milter-config.h"
#include "dedup.h"
#include "fingerprint.h"
#include "log.h"
#include "milter.h"
#include "session.h"
#include "stats.h"
#include "tag.h"
#include "window.h"

#define FORGED_PREFIX     "X-Backfill-"
#define FORGED_PREFIX_LEN (sizeof(FORGED_PREFIX) - 1)

/* Every action the milter may take, offered at registration and asked
   for at negotiation.  SMFIF_ADDRCPT: QuarantineRecipient gets the copy
   of recipients removed as partial duplicates. */
#define MILTER_ACTIONS                                                         \
	(SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT | SMFIF_DELRCPT |       \
	 SMFIF_QUARANTINE)

static atomic_uint active_sessions;
static atomic_uint active_messages;

unsigned int milter_active_sessions(void)
{
	return atomic_load(&active_sessions);
}

unsigned int milter_active_messages(void)
{
	return atomic_load(&active_messages);
}

static void message_begin(struct milter_session *session)
{
	if (!session->in_message) {
		session->in_message = true;
		atomic_fetch_add(&active_messages, 1);
	}
}

static void message_end(struct milter_session *session)
{
	if (session->in_message) {
		session->in_message = false;
		atomic_fetch_sub(&active_messages, 1);
	}
}

/* A store that is down would otherwise log a line per message. */
static void log_window_error(const char *error)
{
	static _Atomic time_t last;
	static atomic_uint suppressed;
	time_t now = time(NULL);
	time_t prev = atomic_load(&last);

	if (now - prev < 60 ||
	    !atomic_compare_exchange_strong(&last, &prev, now)) {
		atomic_fetch_add(&suppressed, 1);
		return;
	}
	milter_error("cannot read the restore window from the state store: "
	             "%s; mail is accepted and tagged X-Backfill-Dedup: "
	             "unchecked until the store answers (%u similar messages "
	             "not logged)",
	             error, atomic_exchange(&suppressed, 0));
}

static struct milter_session *session_get(SMFICTX *ctx)
{
	struct milter_session *session = smfi_getpriv(ctx);

	if (session != NULL)
		return session;
	session = milter_session_new();
	if (session == NULL)
		return NULL;
	if (smfi_setpriv(ctx, session) != MI_SUCCESS) {
		milter_session_free(&session);
		return NULL;
	}
	atomic_fetch_add(&active_sessions, 1);
	milter_stats_connection();
	return session;
}

static void save_macro(SMFICTX *ctx, const char *macro, char **dest)
{
	const char *value = smfi_getsymval(ctx, (char *)macro);

	if (value == NULL || *value == '\0')
		return;
	char *copy = strdup(value);
	if (copy != NULL) {
		free(*dest);
		*dest = copy;
	}
}

/* The answer to a step that needs none when the MTA agreed to that. */
static sfsistat go_on(const struct milter_session *session, unsigned long step)
{
	return session != NULL && (session->no_reply & step) != 0
	               ? SMFIS_NOREPLY
	               : SMFIS_CONTINUE;
}

static sfsistat milter_negotiate(SMFICTX *ctx, unsigned long f0,
                                 unsigned long f1, unsigned long f2,
                                 unsigned long f3, unsigned long *pf0,
                                 unsigned long *pf1, unsigned long *pf2,
                                 unsigned long *pf3)
{
	const unsigned long actions = MILTER_ACTIONS;
	/* One round trip per message: the steps we do not use are not
	   sent, and the MTA does not wait for our answer to the others
	   (we never reject: only end of message has something to say).
	   Every round trip is two context switches in smtpd's path, and
	   they, not our CPU time, are what a milter costs Postfix. */
	const unsigned long no_reply = SMFIP_NR_MAIL | SMFIP_NR_RCPT |
	                               SMFIP_NR_HDR | SMFIP_NR_EOH |
	                               SMFIP_NR_BODY;
	const unsigned long steps = SMFIP_NOCONNECT | SMFIP_NOHELO |
	                            SMFIP_NOUNKNOWN | SMFIP_NODATA | no_reply;
	struct milter_session *session = session_get(ctx);

	(void)f2;
	(void)f3;
	if ((f0 & actions) != actions)
		milter_warning("the MTA does not offer every milter action "
		               "backfill-milter uses (offered 0x%lx, wanted "
		               "0x%lx): duplicates may be tagged instead of "
		               "removed",
		               f0, actions);
	*pf0 = f0 & actions;
	/* Without a session we could not tell later what was agreed. */
	*pf1 = f1 & (session != NULL ? steps : steps & ~no_reply);
	*pf2 = 0;
	*pf3 = 0;
	if (session != NULL) {
		session->no_reply = *pf1 & no_reply;
		session->actions = *pf0;
		session->actions_known = true;
	}
	/* The only macros we read are the queue id and the client address
	   (a peer MX?), at end of message: asking for nothing else
	   spares the MTA a macro packet at every other step. */
	if ((f0 & SMFIF_SETSYMLIST) != 0) {
		static const struct {
			int stage;
			const char *macros;
		} lists[] = {
		        {SMFIM_CONNECT, ""},
		        {SMFIM_HELO, ""},
		        {SMFIM_ENVFROM, ""},
		        {SMFIM_ENVRCPT, ""},
		        {SMFIM_DATA, ""},
		        {SMFIM_EOH, ""},
		        {SMFIM_EOM, "i {client_addr}"},
		};
		bool all = true;
		for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
			if (smfi_setsymlist(ctx, lists[i].stage,
			                    (char *)lists[i].macros) !=
			    MI_SUCCESS)
				all = false;
		}
		if (all)
			*pf0 |= SMFIF_SETSYMLIST;
	}
	return SMFIS_CONTINUE;
}

static sfsistat milter_envfrom(SMFICTX *ctx, char **argv)
{
	struct milter_session *session = session_get(ctx);
	char *error = NULL;
	int ret;

	(void)argv;
	/* Without a session (out of memory) nothing can be tracked; the
	   message passes untouched, as default_action=accept would do. */
	if (session == NULL) {
		milter_error("out of memory for a new session: message "
		             "accepted unchecked and untagged (forged "
		             "X-Backfill headers not removed)");
		return SMFIS_ACCEPT;
	}
	milter_session_reset(session);
	message_begin(session);
	session->config = milter_config_get();
	if (session->config == NULL)
		return go_on(session, SMFIP_NR_MAIL);

	ret = milter_window_current(session->config, time(NULL),
	                            &session->window, &error);
	if (ret < 0) {
		log_window_error(error != NULL ? error : "out of memory");
		milter_session_unchecked(
		        session, error != NULL ? error : "out of memory");
		free(error);
	} else if (ret > 0) {
		/* milter_session_reset() above reset a kept one */
		if (session->fp == NULL)
			session->fp = bf_fp_new();
		if (session->fp == NULL)
			milter_session_unchecked(session, "out of memory");
	}
	return go_on(session, SMFIP_NR_MAIL);
}

static bool dedup_active(const struct milter_session *session)
{
	return session != NULL && session->window != NULL &&
	       session->unchecked == NULL;
}

static sfsistat milter_envrcpt(SMFICTX *ctx, char **argv)
{
	struct milter_session *session = smfi_getpriv(ctx);

	if (dedup_active(session) &&
	    (argv[0] == NULL || milter_session_add_rcpt(session, argv[0]) < 0))
		milter_session_unchecked(session, "out of memory");
	return go_on(session, SMFIP_NR_RCPT);
}

static sfsistat milter_header(SMFICTX *ctx, char *name, char *value)
{
	struct milter_session *session = smfi_getpriv(ctx);

	if (session == NULL)
		return SMFIS_CONTINUE;
	if (strncasecmp(name, FORGED_PREFIX, FORGED_PREFIX_LEN) == 0) {
		/* Nobody outside may speak for the milter: a forged
		   X-Backfill-Fingerprint would make the plugin confirm a
		   delivery that never happened. */
		if (milter_session_add_forged(session, name) < 0)
			milter_session_unchecked(session, "out of memory");
		/* A peer MX's tag: trusted only if the client turns out to
		   be in PeerList and the MAC holds (dedup.c). */
		if (dedup_active(session) && session->config->peers != NULL &&
		    strcasecmp(name, BF_TAG_HEADER) == 0 &&
		    milter_session_add_peer_tag(session, value) < 0)
			milter_session_unchecked(session, "out of memory");
	}
	if (dedup_active(session)) {
		bf_fp_header(session->fp, name, strlen(name), value,
		             strlen(value));
		if (bf_fp_header_bytes(session->fp) > MILTER_MAX_HEADER_BYTES) {
			milter_session_unchecked(
			        session, "its To, Cc, Subject and other "
			                 "fingerprinted header fields exceed "
			                 "1 MiB");
			/* the memory goes back now, not at the end */
			bf_fp_reset(session->fp);
		}
	}
	return go_on(session, SMFIP_NR_HDR);
}

static sfsistat milter_eoh(SMFICTX *ctx)
{
	struct milter_session *session = smfi_getpriv(ctx);

	if (dedup_active(session))
		bf_fp_end_headers(session->fp);
	return go_on(session, SMFIP_NR_EOH);
}

static sfsistat milter_body(SMFICTX *ctx, unsigned char *data, size_t size)
{
	struct milter_session *session = smfi_getpriv(ctx);

	if (dedup_active(session))
		bf_fp_body(session->fp, data, size);
	return go_on(session, SMFIP_NR_BODY);
}

static void remove_forged(SMFICTX *ctx, struct milter_session *session)
{
	const char *qid = session->queue_id != NULL ? session->queue_id : "?";
	unsigned int removed = 0;

	for (size_t i = 0; i < session->forged_count; i++) {
		struct milter_forged *forged = &session->forged[i];

		/* From the last to the first, so that the index of the
		   remaining ones does not move. */
		for (unsigned int idx = forged->count; idx > 0; idx--) {
			if (smfi_chgheader(ctx, forged->name, (int)idx, NULL) !=
			    MI_SUCCESS)
				milter_error("%s: could not remove forged "
				             "header %s #%u",
				             qid, forged->name, idx);
			else
				removed++;
		}
	}
	milter_stats_add(MILTER_STAT_FORGED, removed);
	if (session->forged_count > 0)
		milter_info("%s: removed %u forged X-Backfill-* header "
		            "field(s) (%zu name(s), the first %s) from the "
		            "incoming message",
		            qid, removed, session->forged_count,
		            session->forged[0].name);
}

/* More forged fields than removing them allows in time: the sender is
   told, nothing is lost silently (issue 16: accepting it after the MTA's
   milter timeout would let the forged tags through). */
static sfsistat reject_forged(SMFICTX *ctx, struct milter_session *session)
{
	milter_warning("%s: rejected: the message carries %u X-Backfill-* "
	               "header fields (more than %u); only this site's "
	               "milters may write them",
	               session->queue_id != NULL ? session->queue_id : "?",
	               session->forged_fields, MILTER_MAX_FORGED);
	if (smfi_setreply(ctx, "550", "5.7.1",
	                  "message refused: too many X-Backfill-* header "
	                  "fields") != MI_SUCCESS)
		milter_error("could not set the reject reply");
	return SMFIS_REJECT;
}

static sfsistat milter_eom(SMFICTX *ctx)
{
	struct milter_session *session = smfi_getpriv(ctx);
	sfsistat status = SMFIS_ACCEPT;

	if (session == NULL)
		return SMFIS_ACCEPT;
	milter_stats_add(MILTER_STAT_SEEN, 1);
	save_macro(ctx, "i", &session->queue_id);
	save_macro(ctx, "{client_addr}", &session->client_addr);
	if (session->forged_fields > MILTER_MAX_FORGED) {
		milter_stats_add(MILTER_STAT_REJECTED, 1);
		status = reject_forged(ctx, session);
		milter_session_reset(session);
		message_end(session);
		return status;
	}
	remove_forged(ctx, session);
	if (session->window != NULL && session->unchecked == NULL)
		status = milter_dedup_eom(ctx, session);
	if (session->unchecked != NULL) {
		milter_stats_add(MILTER_STAT_UNCHECKED, 1);
		/* info: the cause is logged at error level, once a minute,
		   where it arose */
		milter_info("%s: accepted without duplicate check "
		            "(%s); tagged X-Backfill-Dedup: unchecked",
		            session->queue_id != NULL ? session->queue_id : "?",
		            session->unchecked);
		if (smfi_addheader(ctx, "X-Backfill-Dedup", "unchecked") !=
		    MI_SUCCESS)
			milter_error("%s: could not add "
			             "X-Backfill-Dedup header",
			             session->queue_id != NULL
			                     ? session->queue_id
			                     : "?");
	}
	milter_session_reset(session);
	message_end(session);
	return status;
}

static sfsistat milter_abort(SMFICTX *ctx)
{
	struct milter_session *session = smfi_getpriv(ctx);

	if (session != NULL) {
		milter_session_reset(session);
		message_end(session);
	}
	return SMFIS_CONTINUE;
}

static sfsistat milter_close(SMFICTX *ctx)
{
	struct milter_session *session = smfi_getpriv(ctx);

	if (session != NULL) {
		smfi_setpriv(ctx, NULL);
		message_end(session);
		milter_session_free(&session);
		atomic_fetch_sub(&active_sessions, 1);
	}
	return SMFIS_CONTINUE;
}

struct smfiDesc milter_desc = {
        .xxfi_name = "backfill-milter",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = MILTER_ACTIONS,
        .xxfi_envfrom = milter_envfrom,
        .xxfi_envrcpt = milter_envrcpt,
        .xxfi_header = milter_header,
        .xxfi_eoh = milter_eoh,
        .xxfi_body = milter_body,
        .xxfi_eom = milter_eom,
        .xxfi_abort = milter_abort,
        .xxfi_close = milter_close,
        .xxfi_negotiate = milter_negotiate,
};
