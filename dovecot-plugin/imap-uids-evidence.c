/* Can an IMAP client of the new server have cached a live folder since
   the incident?  Decided from Dovecot's own index and cache, nothing of
   our own (docs/imap-caches.md, "The evidence").

   First evidence: \Recent.  Dovecot keeps in each folder's index header
   the first UID that is still recent (first_recent_uid).  A session that
   opens the folder with MAILBOX_FLAG_DROP_RECENT moves it past every
   message it saw: imap's SELECT does (EXAMINE does not), and pop3 does
   unless pop3_no_flag_updates = yes.  LMTP and LDA deliveries, doveadm,
   the indexer and this plugin never drop it.  So when a message is no
   longer recent, a SELECT saw it (or a POP3 session: counted the same,
   the safe side).

   Second evidence, for the clients that sync with EXAMINE (K-9 Mail,
   Thunderbird for Android): the caching decisions in
   dovecot.index.cache.  The first time anything looks up a cache field
   of a folder, Dovecot records the field with a "temp" decision (and a
   last_used time), EXAMINE sessions included.  A mail list needs the
   header fields it shows (Date, To, Cc, Content-Type, ...: K-9 fetches
   them with BODY.PEEK[HEADER.FIELDS], other clients with ENVELOPE), or a
   structure or a preview.  Checked on 2.3.19 and 2.4.1: LMTP deliveries
   (with or without sieve header tests, one recipient or several), POP3
   and the mail_log plugin decide none of client_fields below, only From,
   Subject and Message-ID (the delivery log line reads them), sizes,
   mime.parts and, from doveadm searches and expunges by date, the
   arrival date; so the arrival date (INTERNALDATE) alone is not counted
   either.  A field the admin configured (mail_cache_fields,
   mail_always_cache_fields; 2.4's default mail_cache_fields names most
   of them) is decided at the first delivery, before any client, and is
   not counted.  Blind to a client that only fetched FLAGS or whole
   messages, to a list made only of configured fields (on 2.4's defaults
   K-9 is seen by its Content-Type alone), and to fields dropped again
   (unused for twice mail_cache_unaccessed_field_drop, 60 days).  Wrong
   the safe way: an admin's doveadm fetch of those fields counts, and so
   does push_notification's OX or Lua driver (it reads the preview of
   every delivered message).

   Not evidence: a folder's mere existence (Dovecot makes an autocreated
   folder on a STATUS as on a SELECT).  A client that only ever saw the
   folder empty knows its UIDVALIDITY but no message; the folder's
   existence is all that is left of it, and it is counted as opened (the
   brief's guarantee: a folder an IMAP client may have cached keeps its
   live UIDVALIDITY), except where the operator asks for the archive's
   UIDs (backfill_imap_uids = archive). */

#include "lib.h"
#include "mail-storage-private.h"
#include "mail-namespace.h"
#include "mail-index.h"
#include "mail-cache.h"
#include "dovecot-compat.h"
#include "imap-uids-evidence.h"

/* Cache fields only a mail client asks for: FETCH ENVELOPE, BODY,
   BODYSTRUCTURE, SNIPPET/PREVIEW, the header fields of a mail list and
   threads, SORT by sent date.  Not From, Subject and Message-ID: every
   LMTP or LDA delivery reads those for its log line; not date.received:
   doveadm expunge ... before 30d reads it too. */
static const char *const client_fields[] = {
        "date.sent",      "imap.body",        "imap.bodystructure",
        "imap.envelope",  "body.snippet",     "hdr.Date",
        "hdr.To",         "hdr.Cc",           "hdr.Bcc",
        "hdr.Sender",     "hdr.Reply-To",     "hdr.In-Reply-To",
        "hdr.References", "hdr.Content-Type", NULL};

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

/* A cache field a client asked for, not one the admin configured: an
   IMAP session fetched the folder's messages.  Returns the field's name
   (for the debug log), or NULL. */
static const char *evidence_examined(struct mailbox *box)
{
	struct mailbox_metadata md;
	const struct mailbox_cache_field *cf;

	/* opens dovecot.index.cache read-only, writes nothing */
	if (mailbox_get_metadata(box, MAILBOX_METADATA_CACHE_FIELDS, &md) < 0)
		return NULL;
	array_foreach(md.cache_fields, cf)
	{
		/* metadata lists only temp and yes; forced is the admin's
		   mail_always_cache_fields */
		if ((cf->decision & MAIL_CACHE_DECISION_FORCED) != 0 ||
		    !str_array_icase_find(client_fields, cf->name) ||
		    backfill_cache_field_configured(box, cf->name))
			continue;
		return t_strdup(cf->name);
	}
	return NULL;
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
			const char *field;
			ev_r->seen = evidence_seen(box);
			if (ev_r->seen)
				ev_r->seen_reason = "imap-selected";
			else if ((field = evidence_examined(box)) != NULL) {
				ev_r->seen = TRUE;
				ev_r->seen_reason = "imap-examined";
				e_debug(user->event,
				        "backfill: %s: an IMAP client fetched its messages (cache field %s)",
				        vname, field);
			}
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
