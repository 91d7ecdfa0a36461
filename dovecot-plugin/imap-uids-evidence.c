/* Can an IMAP client of the new server have cached a live folder since
   the incident?  Decided from Dovecot's own index, nothing of our own.

   The evidence is \Recent.  Dovecot keeps in each folder's index header
   the first UID that is still recent (first_recent_uid).  A session that
   opens the folder with MAILBOX_FLAG_DROP_RECENT moves it past every
   message it saw: imap's SELECT does (EXAMINE does not), and pop3 does
   unless pop3_no_flag_updates = yes.  LMTP and LDA deliveries, doveadm,
   the indexer and this plugin never drop it.  So when every live message
   is still recent (first_recent_uid <= the lowest UID), no IMAP client
   that SELECTs has seen any of them, and none can have cached a message
   under the live UIDVALIDITY.  This errs on the safe side: a POP3 session
   without pop3_no_flag_updates counts as a client that saw the INBOX.
   Not evidence: the cache decisions IMAP FETCHes leave in
   dovecot.index.cache (LMTP's own caching and the indexer make them too)
   and a folder's mere existence (Dovecot makes an autocreated folder on a
   STATUS as on a SELECT).

   A client that only ever saw the folder empty knows its UIDVALIDITY but
   no message; the folder's existence is all that is left of it, and it
   is counted as opened (the brief's guarantee: a folder an IMAP client
   may have cached keeps its live UIDVALIDITY), except where the operator
   asks for the archive's UIDs (backfill_imap_uids = archive). */

#include "lib.h"
#include "mail-storage-private.h"
#include "mail-namespace.h"
#include "mail-index.h"
#include "imap-uids-evidence.h"

bool backfill_live_never_used(const struct mailbox_status *status)
{
	return status->messages == 0 && status->uidnext <= 1;
}

/* first_recent_uid past the lowest UID: a SELECT saw a message. */
static bool evidence_seen(struct mailbox *box)
{
	const struct mail_index_header *hdr = mail_index_get_header(box->view);
	uint32_t first_uid;

	if (mail_index_view_get_messages_count(box->view) == 0)
		return FALSE;
	mail_index_lookup_uid(box->view, 1, &first_uid);
	return hdr->first_recent_uid > first_uid;
}

int backfill_live_evidence_get(struct mail_user *user, const char *vname,
                               struct backfill_live_evidence *ev_r,
                               const char **error_r)
{
	struct mail_namespace *ns =
	        mail_namespace_find(user->namespaces, vname);
	struct mailbox *box =
	        mailbox_alloc(ns->list, vname, MAILBOX_FLAG_READONLY);
	enum mailbox_existence existence;
	int ret = 0;

	i_zero(ev_r);
	ev_r->guid = "";
	/* auto_boxes FALSE: a folder Dovecot would autocreate but never
	   made holds nothing anyone cached */
	if (mailbox_exists(box, FALSE, &existence) < 0)
		ret = -1;
	else if (existence == MAILBOX_EXISTENCE_SELECT) {
		ev_r->exists = TRUE;
		if (mailbox_sync(box, 0) < 0 ||
		    mailbox_get_status(box,
		                       STATUS_MESSAGES | STATUS_UIDNEXT |
		                               STATUS_UIDVALIDITY,
		                       &ev_r->status) < 0)
			ret = -1;
		else {
			struct mailbox_metadata md;
			ev_r->seen = evidence_seen(box);
			if (ev_r->seen)
				ev_r->seen_reason = "imap-selected";
			if (mailbox_get_metadata(box, MAILBOX_METADATA_GUID,
			                         &md) == 0)
				ev_r->guid = guid_128_to_string(md.guid);
		}
	}
	if (ret < 0) {
		*error_r = t_strdup_printf(
		        "live folder %s: %s", vname,
		        mailbox_get_last_internal_error(box, NULL));
	}
	mailbox_free(&box);
	return ret;
}
