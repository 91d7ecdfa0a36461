#ifndef BACKFILL_IMAP_UIDS_EVIDENCE_H
#define BACKFILL_IMAP_UIDS_EVIDENCE_H

/* What Dovecot's own files say about a live folder's IMAP clients since
   the incident (imap-uids-evidence.c). */

#include "mail-storage.h"

struct backfill_live_evidence {
	/* the folder exists on disk (one Dovecot only autocreates when it
	   is opened does not) */
	bool exists;
	struct mailbox_status status;
	/* an IMAP session has seen at least one of its messages: one that
	   drops \Recent (SELECT), or one that fetched what only a client
	   asks for (EXAMINE-phones) */
	bool seen;
	/* what showed it (a reason for status' uid_way_reasons), set when
	   seen: "imap-selected" or "imap-examined" */
	const char *seen_reason;
	/* its mailbox GUID (32 hex, data stack), "" when unknown */
	const char *guid;
};

/* Reads the evidence without changing anything (read-only, \Recent
   kept).  Returns 0, or -1 with *error_r. */
int backfill_live_evidence_get(struct mail_user *user, const char *vname,
                               struct backfill_live_evidence *ev_r,
                               const char **error_r);

/* The folder never held a message. */
bool backfill_live_never_used(const struct mailbox_status *status);

#endif
