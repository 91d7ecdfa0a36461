/* The IMAP UIDs merged folders show (imap-uids.h, docs/imap-caches.md).

   An IMAP client that keeps mail offline (Thunderbird, Outlook, phones,
   mbsync) knows a folder by its UIDVALIDITY and each message by its UID.
   When a folder shows another UIDVALIDITY, the client throws its cache
   away and downloads the folder again (mbsync even refuses the folder:
   "UIDVALIDITY genuinely changed").  So a merged folder keeps the old
   server's UIDVALIDITY and UIDs wherever no client of the new server can
   have cached it: Dovecot lets a new mailbox take a UIDVALIDITY
   (mailbox_update.uid_validity at creation) and a save ask for its UID
   (mailbox_save_set_uid(), which Dovecot honours when the UID is not
   below the folder's next UID: dsync keeps UIDs that way).

   Each archive folder goes one of three ways (bf_uid_way, in the cursor):
   - archive: the merge creates the live folder with the archive folder's
     UIDVALIDITY, saves every copy at its archive UID (gaps stay gaps) and
     gives the live folder the archive's UIDNEXT plus a margin at the
     end, so later deliveries get UIDs above;
   - renumber: an existing live folder no IMAP client can have cached
     since the incident takes the archive's UIDVALIDITY and UIDs, its
     live messages moving above them and the margin (renumber.c);
   - live: the live UIDVALIDITY and UIDs are kept, copies get UIDs above.
   The way is on record in the state store before the live folder is
   created, so a crash can never leave a folder with the archive's
   UIDVALIDITY that a rerun would fill with other UIDs.

   The margin (backfill_imap_uid_margin): the archive is a backup, older
   than the crash.  The old server went on delivering after it, giving
   out UIDs from the backup's UIDNEXT on under the same UIDVALIDITY, and
   its clients cached that mail, which the crash lost.  A live message at
   such a UID would be taken for the lost one it replaces and never be
   shown (nor downloaded by POP3 where the UIDL comes from the UID).  The
   archive cannot say how far the old server got, so nothing new in such
   a folder takes a UID below the archive's UIDNEXT plus the margin (a
   gap costs clients nothing).

   A folder whose archive UIDs reach 2^31 goes the live way (uid-range,
   BF_ARCHIVE_UID_LIMIT says why), and so does one whose archive UIDNEXT
   plus the margin (and its live messages, for the renumber way) would
   (uid-space).

   The archive way is given up (live way, reason uid-taken) when anything
   else puts a message into the live folder below the archive's UIDNEXT
   while the merge fills it (a client's APPEND, a sieve fileinto): a
   client of the old server would take that UID for a message it cached,
   and never see the new one.  The live folder then gets a fresh
   UIDVALIDITY: its clients download it again, which beats a silent
   miss. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "ioloop.h"
#include "mail-storage-private.h"
#include "mail-namespace.h"
#include "mail-search-build.h"
#include "backfill-settings.h"
#include "pop3-uidl.h"
#include "imap-uids.h"
#include "imap-uids-evidence.h"
#include "value-escape.h"
#include "renumber.h"
#include "merge-private.h"

static struct cursor_folder *cur_folder(const struct backfill_merge *m)
{
	if (m->cur_cf == UINT_MAX)
		return NULL;
	return array_idx_modifiable(&m->cfolders, m->cur_cf);
}

/* The ways that keep the archive's UIDs. */
static bool way_keeps_uids(enum bf_uid_way way)
{
	return way == BF_UID_WAY_ARCHIVE || way == BF_UID_WAY_RENUMBER;
}

static enum bf_uid_way cur_way(const struct backfill_merge *m)
{
	const struct cursor_folder *cf = cur_folder(m);

	return cf == NULL ? BF_UID_WAY_UNDECIDED : cf->way;
}

int backfill_imap_uids_record(struct backfill_merge *m)
{
	const char *error;

	if (m->dry_run)
		return 0;
	backfill_merge_record_set_cursor(m, m->intent);
	backfill_merge_store_wait(m);
	if (bf_state_merge_put(m->state, m->user->username, &m->rec, &error) <
	    0) {
		backfill_merge_log_error(
		        m, "merge postponed: %s (the next login retries)",
		        error);
		return -1;
	}
	return 0;
}

/* A dry run creates nothing: the second archive folder of one new live
   folder finds it "missing" too. */
static bool dry_created(struct backfill_merge *m, const char *vname)
{
	const char *const *name;

	if (!m->dry_run)
		return FALSE;
	array_foreach(&m->dry_new_folders, name)
	{
		if (strcmp(*name, vname) == 0)
			return TRUE;
	}
	return FALSE;
}

/* The first archive UID the merge may save into the live folder, or
   the archive's UIDNEXT when it has none. */
static uint32_t archive_first_uid(const struct backfill_merge *m)
{
	struct mailbox_status status;

	if (array_count(&m->walk.uids) > 0)
		return *array_idx(&m->walk.uids, 0);
	mailbox_get_open_status(m->walk.box, STATUS_UIDNEXT, &status);
	return status.uidnext;
}

/* The live folder is the user's INBOX (the one folder POP3 shows) on a
   storage that cannot store a POP3 UIDL in place: Dovecot implements
   mail_update_pop3_uidl() only where the mail's vfunc is there (Maildir,
   not mdbox), so the capability is asked of a mail, not of the driver
   name. */
static int live_inbox_uidls_unstorable(struct backfill_merge *m,
                                       const char *vname, bool *unstorable_r,
                                       const char **error_r)
{
	struct mail_namespace *ns =
	        mail_namespace_find(m->luser->namespaces, vname);
	struct mailbox *box =
	        mailbox_alloc(ns->list, vname, MAILBOX_FLAG_READONLY);
	struct mailbox_transaction_context *t;
	struct mail *mail;

	*unstorable_r = FALSE;
	if (!box->inbox_user) {
		mailbox_free(&box);
		return 0;
	}
	if (mailbox_open(box) < 0) {
		*error_r = t_strdup_printf(
		        "live folder %s: %s", vname,
		        mailbox_get_last_internal_error(box, NULL));
		mailbox_free(&box);
		return -1;
	}
	t = mailbox_transaction_begin(box, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	*unstorable_r =
	        ((struct mail_private *)mail)->v.update_pop3_uidl == NULL;
	mail_free(&mail);
	mailbox_transaction_rollback(&t);
	mailbox_free(&box);
	return 0;
}

/* A live folder that exists already (imap-uids-evidence.c says what
   the evidence is).  Its live messages are renumbered above the archive's
   UIDs (renumber.c) only where it has given out no UID the archive uses:
   Dovecot never lowers a next UID, and doing it anyway would need the
   folder rebuilt under another mailbox and swapped in, which Dovecot's
   API does not offer for a Maildir INBOX. */
static int decide_existing(struct backfill_merge *m,
                           const struct backfill_folder *folder,
                           struct cursor_folder *cf,
                           const struct backfill_live_evidence *live,
                           enum bf_uid_way *way_r, const char **reason_r,
                           const char **error_r)
{
	bool force = m->set->imap_uids == BACKFILL_IMAP_UIDS_ARCHIVE;
	bool unstorable;

	*way_r = BF_UID_WAY_LIVE;
	if (backfill_live_never_used(&live->status)) {
		*reason_r = force ? "live-folder-empty" : "live-folder-opened";
		if (force)
			*way_r = BF_UID_WAY_ARCHIVE;
		return 0;
	}
	if (live->seen && !force) {
		*reason_r = live->seen_reason;
		return 0;
	}
	if (live->status.uidnext > archive_first_uid(m)) {
		e_info(m->event,
		       "%s: not renumbered: the live folder gave out UIDs up to %u, the archive's start at %u (live-uids-overlap: its live UIDs stay)",
		       cf->name, live->status.uidnext - 1,
		       archive_first_uid(m));
		*reason_r = "live-uids-overlap";
		return 0;
	}
	/* Where the INBOX's UIDLs are computed from %u/%v and cannot be
	   stored in place, they would change for POP3 sessions from the new
	   UIDVALIDITY until the move (for good if the way is given up), and
	   POP3 clients would download that mail again. */
	if (backfill_pop3_uidl_changes_with_uid(m->pop3_uidl_format)) {
		if (live_inbox_uidls_unstorable(m, folder->live_vname,
		                                &unstorable, error_r) < 0)
			return -1;
		if (unstorable) {
			e_info(m->event,
			       "%s: not renumbered: its POP3 UIDLs (pop3_uidl_format=%s) change with the UIDVALIDITY and this storage cannot store them in place (pop3-uidls-unstorable: its live UIDs stay)",
			       folder->live_vname, m->pop3_uidl_format);
			*reason_r = "pop3-uidls-unstorable";
			return 0;
		}
	}
	cf->renumber_below = live->status.uidnext;
	cf->renumber_uidvalidity = live->status.uidvalidity;
	*reason_r = live->seen ? "setting" : "no-imap-client";
	*way_r = BF_UID_WAY_RENUMBER;
	return 0;
}

/* Another archive folder of this merge took the live folder's UIDs
   already ("Sent Items" and "Sent" both go to the live Sent): its copies
   are the merge's own, not evidence of a client. */
static bool live_taken_by_merge(struct backfill_merge *m, const char *guid)
{
	const struct cursor_folder *cf;

	if (guid[0] == '\0')
		return FALSE;
	array_foreach(&m->cfolders, cf)
	{
		if ((cf->way == BF_UID_WAY_ARCHIVE ||
		     cf->way == BF_UID_WAY_RENUMBER) &&
		    cf->way_live_guid != NULL &&
		    strcmp(cf->way_live_guid, guid) == 0)
			return TRUE;
	}
	return FALSE;
}

/* The archive way keeps UIDs below this only.  IMAP allows UIDs up to
   2^32-1, but Dovecot asserts that a folder's next UID stays below it: a
   save at UID 2^32-2 (or a UIDNEXT raised to 2^32-1) panics the process
   at its commit, and as every later login resumes the merge, every
   session of the user, and doveadm backfill run -A at that user.  A
   folder near the top would also have no room left for the mail
   delivered after the merge, and many clients keep UIDs in signed 32-bit
   integers.  No real folder comes near 2^31 (two billion deliveries):
   an archive beyond it has a damaged or forged dovecot-uidlist, and its
   folder goes the live way (reason uid-range). */
#define BF_ARCHIVE_UID_LIMIT 0x80000000U

/* The archive folder's highest UID or UIDNEXT when it is at or above
   BF_ARCHIVE_UID_LIMIT ((uint32_t)-1 for a UIDNEXT that wrapped to 0),
   else 0. */
static uint32_t archive_uid_out_of_range(const struct backfill_merge *m,
                                         const char **what_r)
{
	struct mailbox_status status;
	unsigned int count = array_count(&m->walk.uids);
	uint32_t high = count == 0 ? 0 : *array_idx(&m->walk.uids, count - 1);

	*what_r = "UID";
	if (high >= BF_ARCHIVE_UID_LIMIT)
		return high;
	mailbox_get_open_status(m->walk.box, STATUS_UIDNEXT, &status);
	*what_r = "UIDNEXT";
	if (status.uidnext >= BF_ARCHIVE_UID_LIMIT)
		return status.uidnext;
	if (status.uidnext == 0)
		return (uint32_t)-1;
	return 0;
}

/* The UIDNEXT a live folder may be raised to for the archive folder: its
   UIDNEXT, or past its highest UID below BF_ARCHIVE_UID_LIMIT when the
   UIDNEXT is not (a raise to the top would make Dovecot panic at the
   next delivery). */
static uint32_t archive_next_bounded(const struct backfill_merge *m,
                                     uint32_t uidnext)
{
	const uint32_t *uid;
	uint32_t next = 1;

	if (uidnext != 0 && uidnext < BF_ARCHIVE_UID_LIMIT)
		return uidnext;
	array_foreach(&m->walk.uids, uid)
	{
		if (*uid < BF_ARCHIVE_UID_LIMIT && *uid >= next)
			next = *uid + 1;
	}
	return next;
}

uint32_t backfill_imap_uids_keep_next(uint32_t archive_next, uint32_t margin)
{
	uint64_t next = (uint64_t)archive_next + margin;

	return next < BF_ARCHIVE_UID_LIMIT ? (uint32_t)next
	                                   : BF_ARCHIVE_UID_LIMIT;
}

/* TRUE when the archive's UIDNEXT, the margin above it and moved live
   messages (fewer than renumber_below) do not fit below
   BF_ARCHIVE_UID_LIMIT: the folder keeps its live UIDs (uid-space). */
static bool uid_space_short(const struct backfill_merge *m,
                            uint32_t renumber_below)
{
	struct mailbox_status status;

	mailbox_get_open_status(m->walk.box, STATUS_UIDNEXT, &status);
	return (uint64_t)archive_next_bounded(m, status.uidnext) +
	               m->set->imap_uid_margin + renumber_below >=
	       BF_ARCHIVE_UID_LIMIT;
}

static int
decide(struct backfill_merge *m, const struct backfill_folder *folder,
       struct cursor_folder *cf, const struct backfill_live_evidence *live,
       enum bf_uid_way *way_r, const char **reason_r, const char **error_r)
{
	if (m->set->imap_uids == BACKFILL_IMAP_UIDS_LIVE) {
		*reason_r = "setting";
		*way_r = BF_UID_WAY_LIVE;
		return 0;
	}
	const char *what;
	uint32_t uid = archive_uid_out_of_range(m, &what);
	if (uid != 0) {
		e_warning(
		        m->event,
		        "%s: archive %s %u is not below %u: %s keeps live UIDs (a damaged or forged dovecot-uidlist?)",
		        folder->archive_vname, what, uid, BF_ARCHIVE_UID_LIMIT,
		        folder->live_vname);
		*reason_r = "uid-range";
		*way_r = BF_UID_WAY_LIVE;
		return 0;
	}
	/* merged in part before the ways existed: its copies have live
	   UIDs already */
	if (cf->high_committed > 0) {
		*reason_r = "merged-before";
		*way_r = BF_UID_WAY_LIVE;
		return 0;
	}
	if (dry_created(m, folder->live_vname)) {
		*reason_r = "shared-live-folder";
		*way_r = BF_UID_WAY_LIVE;
		return 0;
	}
	if (!live->exists) {
		*reason_r = "created";
		*way_r = BF_UID_WAY_ARCHIVE;
		return 0;
	}
	if (live_taken_by_merge(m, live->guid)) {
		*reason_r = "shared-live-folder";
		*way_r = BF_UID_WAY_LIVE;
		return 0;
	}
	return decide_existing(m, folder, cf, live, way_r, reason_r, error_r);
}

/* A renumbering decided by an earlier session whose live folder has not
   changed yet (its UIDVALIDITY is still the recorded live one, nothing
   moved): a crash between the decision and the change leaves it so
   until the next login. */
static bool renumber_unstarted(const struct backfill_merge *m,
                               const struct cursor_folder *cf)
{
	return cf->way == BF_UID_WAY_RENUMBER && cf->move_uids == NULL &&
	       !cf->move_done && cf->renumber_uidvalidity != 0 &&
	       cf->renumber_uidvalidity != m->walk.uidvalidity &&
	       m->set->imap_uids_invalid == NULL;
}

/* What the decision of renumber_unstarted() saw must still hold when its
   live folder is still unchanged: an IMAP client that saw the folder
   since keeps it live (its cache stays valid), and mail delivered since
   is renumbered with the rest (deciding again), instead of the folder
   taking the archive's UIDVALIDITY and only then giving the way up with
   a fresh one.  TRUE when the decision is made again. */
static bool renumber_recheck(struct backfill_merge *m,
                             const struct backfill_folder *folder,
                             const struct backfill_live_evidence *live)
{
	struct cursor_folder *cf = cur_folder(m);
	bool force = m->set->imap_uids == BACKFILL_IMAP_UIDS_ARCHIVE;

	/* changed already, or made again: renumber_opened() sees to it */
	if (!live->exists || strcmp(live->guid, cf->way_live_guid) != 0 ||
	    live->status.uidvalidity != cf->renumber_uidvalidity)
		return FALSE;
	if (live->status.uidnext == cf->renumber_below &&
	    (!live->seen || force))
		return FALSE;
	e_info(m->event,
	       "%s: renumbering decided earlier, not begun: the live folder changed since (UIDNEXT %u, was %u%s): deciding again",
	       folder->live_vname, live->status.uidnext, cf->renumber_below,
	       live->seen ? ", an IMAP client saw it" : "");
	cf->way = BF_UID_WAY_UNDECIDED;
	cf->way_live_guid = "";
	return TRUE;
}

int backfill_imap_uids_decide(struct backfill_merge *m,
                              const struct backfill_folder *folder)
{
	struct cursor_folder *cf = cur_folder(m);
	const char *error, *reason;
	struct backfill_live_evidence live;
	enum bf_uid_way way;

	if (renumber_unstarted(m, cf)) {
		if (backfill_live_evidence_get(m->luser, folder->live_vname,
		                               &live, &error) < 0) {
			backfill_merge_log_error(m, "%s", error);
			return -1;
		}
		if (!renumber_recheck(m, folder, &live))
			return 0;
	} else if (cf->way != BF_UID_WAY_UNDECIDED)
		return 0;
	else if (m->set->imap_uids_invalid != NULL) {
		backfill_merge_log_error(
		        m,
		        "merge postponed: backfill_imap_uids=%s: expected auto, archive or live (fix the setting; nothing of %s was merged)",
		        m->set->imap_uids_invalid, folder->archive_vname);
		return -1;
	} else if (backfill_live_evidence_get(m->luser, folder->live_vname,
	                                      &live, &error) < 0) {
		backfill_merge_log_error(m, "%s", error);
		return -1;
	}
	cf->renumber_below = cf->renumber_uidvalidity = 0;
	if (decide(m, folder, cf, &live, &way, &reason, &error) < 0) {
		backfill_merge_log_error(m, "%s", error);
		return -1;
	}
	if (way_keeps_uids(way) && uid_space_short(m, cf->renumber_below)) {
		e_warning(
		        m->event,
		        "%s: the archive's UIDNEXT and backfill_imap_uid_margin=%u leave no room below %u: %s keeps live UIDs (uid-space)",
		        folder->archive_vname, m->set->imap_uid_margin,
		        BF_ARCHIVE_UID_LIMIT, folder->live_vname);
		way = BF_UID_WAY_LIVE;
		reason = "uid-space";
		cf->renumber_below = cf->renumber_uidvalidity = 0;
	}
	cf->way = way;
	cf->way_reason = reason;
	/* the renumber way names its live folder from the start: a folder
	   made again under its name since must not be renumbered */
	cf->way_live_guid = cf->way == BF_UID_WAY_RENUMBER
	                            ? p_strdup(m->pool, live.guid)
	                            : "";
	e_debug(m->event, "%s -> %s: IMAP UIDs go the %s way (%s)",
	        folder->archive_vname, folder->live_vname,
	        bf_uid_way_name(cf->way), reason);
	if (backfill_imap_uids_record(m) < 0)
		return -1;
	if (cf->way == BF_UID_WAY_RENUMBER && !m->dry_run)
		backfill_crash_point("renumber-decided");
	return 0;
}

const struct mailbox_update *
backfill_imap_uids_create_update(struct backfill_merge *m,
                                 struct mailbox_update *update)
{
	const struct cursor_folder *cf = cur_folder(m);

	/* A live folder the merge created before (its GUID is on record)
	   that is missing now was deleted since: clients of the old server
	   may have cached what it held, under the archive's UIDVALIDITY.
	   Made again, it gets Dovecot's own, and the way is given up when
	   it is opened (backfill_imap_uids_live_opened()). */
	if (cur_way(m) != BF_UID_WAY_ARCHIVE || cf->way_live_guid[0] != '\0')
		return NULL;
	i_zero(update);
	update->uid_validity = m->walk.uidvalidity;
	return update;
}

/* Dovecot's own choice for a new folder, never the archive's. */
static int fresh_uidvalidity(struct backfill_merge *m)
{
	struct mailbox_update update;
	uint32_t old = m->lbox_uidvalidity;

	i_zero(&update);
	update.uid_validity = (uint32_t)ioloop_time;
	if (update.uid_validity == m->walk.uidvalidity)
		update.uid_validity++;
	if (mailbox_update(m->lbox, &update) < 0) {
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s: giving it a new UIDVALIDITY failed: %s (the next login retries)",
		        mailbox_get_vname(m->lbox),
		        mailbox_get_last_internal_error(m->lbox, NULL));
		return -1;
	}
	m->lbox_uidvalidity = update.uid_validity;
	m->uid_fresh_pending = FALSE;
	e_warning(
	        m->event,
	        "%s: UIDVALIDITY changed from %u to %u: IMAP clients of the old server download this folder again",
	        mailbox_get_vname(m->lbox), old, update.uid_validity);
	return 0;
}

static void give_up(struct backfill_merge *m, uint32_t uid, const char *why);

/* An existing live folder that never held a message takes the archive's
   UIDVALIDITY (recorded before, so a crash before or after this gives
   the same).  Anything else (a message came since the decision, or a
   folder made again by someone else) gives the way up. */
static int adopt_uidvalidity(struct backfill_merge *m)
{
	struct mailbox_status status;
	struct mailbox_update update;

	if (mailbox_get_status(m->lbox, STATUS_MESSAGES | STATUS_UIDNEXT,
	                       &status) < 0) {
		backfill_merge_log_error(
		        m, "%s: %s", mailbox_get_vname(m->lbox),
		        mailbox_get_last_internal_error(m->lbox, NULL));
		return -1;
	}
	if (!backfill_live_never_used(&status)) {
		give_up(m, 0,
		        "the live folder has another UIDVALIDITY and mail");
		return backfill_imap_uids_record(m);
	}
	i_zero(&update);
	update.uid_validity = m->walk.uidvalidity;
	if (mailbox_update(m->lbox, &update) < 0) {
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s: giving it the archive's UIDVALIDITY %u failed: %s (the next login retries)",
		        mailbox_get_vname(m->lbox), update.uid_validity,
		        mailbox_get_last_internal_error(m->lbox, NULL));
		return -1;
	}
	e_info(m->event,
	       "%s: empty live folder takes the archive's UIDVALIDITY %u (was %u)",
	       mailbox_get_vname(m->lbox), update.uid_validity,
	       m->lbox_uidvalidity);
	m->lbox_uidvalidity = update.uid_validity;
	return 0;
}

static void give_up(struct backfill_merge *m, uint32_t uid, const char *why)
{
	struct cursor_folder *cf = cur_folder(m);

	/* a renumbering under way goes on: its messages move (once done,
	   the way can be given up like the archive way) */
	if (cf->way != BF_UID_WAY_ARCHIVE &&
	    (cf->way != BF_UID_WAY_RENUMBER ||
	     (cf->move_uids != NULL && !cf->move_done)))
		return;
	cf->way = BF_UID_WAY_LIVE;
	cf->way_reason = "uid-taken";
	m->cursor_dirty = TRUE;
	m->uid_fresh_pending = m->lbox_uidvalidity == m->walk.uidvalidity;
	e_warning(
	        m->event,
	        "%s/uid %u: %s: the archive's UIDs cannot be kept in %s, its copies get live UIDs",
	        cf->name, uid, why, mailbox_get_vname(m->lbox));
}

/* The renumber way's live folder takes the archive's UIDVALIDITY, once
   its live messages' POP3 UIDLs are pinned (renumber.c).  It must be the
   folder decided for, with the UIDVALIDITY it had then (or the archive's,
   after a crash): anything else gives the way up. */
static int renumber_opened(struct backfill_merge *m)
{
	struct cursor_folder *cf = cur_folder(m);
	const char *error;

	if (cf->way_live_guid[0] == '\0')
		cf->way_live_guid = m->lbox_guid;
	else if (strcmp(cf->way_live_guid, m->lbox_guid) != 0) {
		give_up(m, 0, "the live folder was made again since");
		return backfill_imap_uids_record(m);
	}
	if (m->lbox_uidvalidity == m->walk.uidvalidity)
		return 0;
	if (cf->move_uids != NULL ||
	    m->lbox_uidvalidity != cf->renumber_uidvalidity) {
		give_up(m, 0, "the live folder has another UIDVALIDITY since");
		return backfill_imap_uids_record(m);
	}
	if (backfill_renumber_pin_uidls(m, &error) < 0) {
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s: keeping its POP3 UIDLs failed: %s (the next login retries)",
		        mailbox_get_vname(m->lbox), error);
		return -1;
	}
	if (backfill_renumber_set_uidvalidity(m, &error) < 0) {
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s: giving it the archive's UIDVALIDITY %u failed: %s (the next login retries)",
		        mailbox_get_vname(m->lbox), m->walk.uidvalidity, error);
		return -1;
	}
	e_info(m->event,
	       "%s: takes the archive's UIDVALIDITY %u (was %u); its live messages move to UID %u on once merged (the archive's UIDNEXT %u plus backfill_imap_uid_margin)",
	       mailbox_get_vname(m->lbox), m->walk.uidvalidity,
	       m->lbox_uidvalidity, m->uid_keep_next, m->uid_archive_next);
	m->lbox_uidvalidity = m->walk.uidvalidity;
	backfill_crash_point("renumber-uidvalidity");
	return 0;
}

int backfill_imap_uids_live_opened(struct backfill_merge *m,
                                   const struct backfill_folder *folder)
{
	struct cursor_folder *cf = cur_folder(m);
	struct mailbox_status status;

	mailbox_get_open_status(m->walk.box, STATUS_UIDNEXT, &status);
	m->uid_archive_next = archive_next_bounded(m, status.uidnext);
	m->uid_keep_next = backfill_imap_uids_keep_next(
	        m->uid_archive_next, m->set->imap_uid_margin);
	m->uid_fresh_pending = FALSE;
	if (array_is_created(&m->uid_ours))
		array_clear(&m->uid_ours);
	else
		p_array_init(&m->uid_ours, m->pool, 16);
	if (m->dry_run)
		return 0;
	if (cf->way == BF_UID_WAY_RENUMBER)
		return renumber_opened(m);
	if (cf->way == BF_UID_WAY_ARCHIVE) {
		if (cf->way_live_guid[0] == '\0')
			cf->way_live_guid = m->lbox_guid;
		else if (strcmp(cf->way_live_guid, m->lbox_guid) != 0) {
			/* deleted and made again since the merge created it
			   (backfill_imap_uids_create_update()) */
			give_up(m, 0, "the live folder was made again since");
			return backfill_imap_uids_record(m);
		}
		if (m->lbox_uidvalidity == m->walk.uidvalidity)
			return 0;
		return adopt_uidvalidity(m);
	}
	/* a way given up before a crash cut the UIDVALIDITY change */
	if (cf->way == BF_UID_WAY_LIVE &&
	    strcmp(cf->way_reason, "uid-taken") == 0 &&
	    m->lbox_uidvalidity == m->walk.uidvalidity && !m->dry_run) {
		e_info(m->event, "%s: finishing the UIDVALIDITY change",
		       folder->live_vname);
		return fresh_uidvalidity(m);
	}
	return 0;
}

bool backfill_imap_uids_taken(const struct backfill_merge *m)
{
	return way_keeps_uids(cur_way(m));
}

void backfill_imap_uids_save(struct backfill_merge *m,
                             struct mail_save_context *save, uint32_t uid)
{
	if (!way_keeps_uids(cur_way(m)))
		return;
	/* decided before uid-range existed: never ask Dovecot for it */
	if (uid >= BF_ARCHIVE_UID_LIMIT) {
		give_up(m, uid, "the UID is beyond the archive way's range");
		return;
	}
	/* The batch's UIDs ascend, so only its first save can meet a UID
	   that another process took since the last one. */
	if (uid < m->batch_uidnext) {
		give_up(m, uid,
		        t_strdup_printf("live UID %u was taken since",
		                        m->batch_uidnext - 1));
		return;
	}
	mailbox_save_set_uid(save, uid);
}

bool backfill_imap_uids_uidl_needed(struct backfill_merge *m,
                                    struct mail *amail)
{
	const char *stored;

	if (!way_keeps_uids(cur_way(m)))
		return TRUE;
	/* POP3 sees the INBOX only, and there the way can still be given
	   up after the copy landed: the fresh UIDVALIDITY would then change
	   the UIDL of every copy without a stored one, and every POP3 client
	   of the old server would download them all again.  Elsewhere the
	   UIDL is never shown. */
	if (strcasecmp(mailbox_get_vname(m->lbox), "INBOX") == 0)
		return TRUE;
	if (mail_get_special(amail, MAIL_FETCH_UIDL_BACKEND, &stored) == 0 &&
	    stored[0] != '\0')
		return TRUE;
	return !backfill_pop3_uidl_from_uid_only(m->pop3_uidl_format);
}

void backfill_imap_uids_saved(struct backfill_merge *m,
                              const struct batch_item *item)
{
	uint32_t uid = item->entry.uid;

	if (uid == 0 || cur_folder(m) == NULL)
		return;
	if (array_is_created(&m->uid_ours))
		seq_range_array_add(&m->uid_ours, uid);
	if (way_keeps_uids(cur_way(m)) && uid != item->entry.archive_uid) {
		give_up(m, item->entry.archive_uid,
		        t_strdup_printf("Dovecot gave its copy live UID %u",
		                        uid));
	}
}

int backfill_imap_uids_checkpointed(struct backfill_merge *m)
{
	if (!m->uid_fresh_pending || m->lbox == NULL || m->dry_run)
		return 0;
	return fresh_uidvalidity(m);
}

/* A message below the archive's UIDNEXT plus the margin that the merge
   did not put there (this session's copies, or journalled ones of
   earlier sessions).  Returns 1 and its UID, 0 none, -1 error. */
static int foreign_below(struct backfill_merge *m, uint32_t *uid_r,
                         const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_search_context *ctx;
	struct mail *mail;
	int ret = 0;

	const struct cursor_folder *cf = cur_folder(m);
	/* the renumber way's live messages: they move above */
	uint32_t below =
	        cf->way == BF_UID_WAY_RENUMBER ? cf->renumber_below : 0;
	/* a move on record from before the margin existed put its copies
	   from the archive's UIDNEXT on: they are the merge's */
	uint32_t top = cf->move_uids != NULL && cf->move_base < m->uid_keep_next
	                       ? cf->move_base
	                       : m->uid_keep_next;

	if (top <= 1)
		return 0;
	if (mailbox_sync(m->lbox, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	ctx = backfill_merge_search_uids(t, 1, top - 1);
	while (ret == 0 && mailbox_search_next(ctx, &mail)) {
		if (mail->uid >= top || mail->uid < below ||
		    seq_range_exists(&m->uid_ours, mail->uid) ||
		    backfill_live_added_by_backfill(m, m->lbox_guid, mail->uid))
			continue;
		*uid_r = mail->uid;
		ret = 1;
	}
	if (mailbox_search_deinit(&ctx) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		ret = -1;
	}
	(void)mailbox_transaction_commit(&t);
	return ret;
}

static int uidnext_raise(struct backfill_merge *m, uint32_t next)
{
	struct mailbox_update update;

	i_zero(&update);
	update.min_next_uid = next;
	if (mailbox_update(m->lbox, &update) < 0) {
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s: setting UIDNEXT %u (the archive's plus backfill_imap_uid_margin) failed: %s (the next login retries)",
		        mailbox_get_vname(m->lbox), next,
		        mailbox_get_last_internal_error(m->lbox, NULL));
		return -1;
	}
	return 0;
}

/* The margin the live folder's UIDNEXT now has above the archive's,
   noted for the record once the raise is done: verify
   (doveadm-verify-uids.c) checks the folder against it, so that a later
   change of backfill_imap_uid_margin does not make a folder merged
   under the old one wrong.  A kill before it is on record leaves the
   margin of an earlier run or none (verify then checks no more than the
   archive's UIDNEXT), never one the folder did not get.  TRUE when it
   changed. */
static bool margin_note(struct backfill_merge *m)
{
	struct cursor_folder *cf = cur_folder(m);

	if (cf->margin_known && cf->margin == m->set->imap_uid_margin)
		return FALSE;
	cf->margin_known = TRUE;
	cf->margin = m->set->imap_uid_margin;
	return TRUE;
}

/* A renumbering not on record yet: mail that came into the live folder
   after it took the archive's UIDVALIDITY and before the first copy (a
   delivery after a run cut at renumber-uidvalidity, before its rerun) is
   renumbered with the live mail (renumber.c), instead of giving the way
   up (foreign_below()) with a fresh UIDVALIDITY that every IMAP client
   downloads again and that changes that mail's POP3 UIDL.  No client of
   the old server can hold it (it is below the archive's UIDNEXT they
   cached); a client of the new server that saw it there sees it move,
   as the rest of the live mail.  Not where the moved mail would not fit
   below BF_ARCHIVE_UID_LIMIT, and not from the archive's first UID on:
   the UIDL pinned there would be the one the old server showed for the
   archived message of that UID, and where that message was not copied
   (a duplicate, or skipped) nothing else gives the way up, so an old
   POP3 client would skip the new mail as one it has.  That mail is left
   to foreign_below(), which gives the way up as before. */
static int renumber_delivered(struct backfill_merge *m)
{
	struct cursor_folder *cf = cur_folder(m);
	const char *error;
	uint32_t below, top = m->uid_keep_next;
	int ret;

	if (cf->way != BF_UID_WAY_RENUMBER || cf->move_uids != NULL ||
	    cf->move_done || cf->renumber_below == 0)
		return 0;
	if (top > archive_first_uid(m))
		top = archive_first_uid(m);
	/* the move puts fewer than below messages from uid_keep_next on */
	if (top > BF_ARCHIVE_UID_LIMIT - m->uid_keep_next)
		top = BF_ARCHIVE_UID_LIMIT - m->uid_keep_next;
	ret = backfill_renumber_delivered(m, top, &below, &error);
	if (ret < 0) {
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s: reading the mail delivered since it took the archive's UIDVALIDITY failed: %s (the next login retries)",
		        mailbox_get_vname(m->lbox), error);
		return -1;
	}
	if (ret == 0)
		return 0;
	e_info(m->event,
	       "%s: live UIDs %u-%u came after it took the archive's UIDVALIDITY and before the merge's copies: renumbered with its live messages",
	       mailbox_get_vname(m->lbox), cf->renumber_below, below - 1);
	cf->renumber_below = below;
	return backfill_imap_uids_record(m);
}

int backfill_imap_uids_folder_done(struct backfill_merge *m)
{
	const struct cursor_folder *cf = cur_folder(m);
	const char *error;
	uint32_t uid, next = m->uid_keep_next;
	bool noted;
	int ret;

	if (m->dry_run || m->lbox == NULL || !backfill_imap_uids_taken(m))
		return 0;
	/* a move on record from before the margin existed goes on at its
	   recorded UIDs (Dovecot would give its copies the next ones): the
	   margin follows once it is done */
	if (cf->move_uids != NULL && !cf->move_done && cf->move_base < next)
		next = cf->move_base;
	/* UIDNEXT first, then the search: a message saved after the raise
	   gets a UID above the archive's and the margin, and one saved
	   before it (Maildir gives the UID under the uidlist lock the raise
	   takes too) is in the search.  The other way round, a client's
	   APPEND between the two got a UID below, unseen, and an old client
	   that cached the archive's UIDNEXT would never fetch it. */
	if (uidnext_raise(m, next) < 0)
		return -1;
	noted = next == m->uid_keep_next && margin_note(m);
	if (renumber_delivered(m) < 0)
		return -1;
	ret = foreign_below(m, &uid, &error);
	if (ret < 0) {
		backfill_merge_log_error(
		        m, "merge postponed: %s: reading its UIDs failed: %s",
		        mailbox_get_vname(m->lbox), error);
		return -1;
	}
	if (ret > 0) {
		give_up(m, uid,
		        t_strdup_printf("live UID %u is not the merge's copy",
		                        uid));
		if (cur_way(m) == BF_UID_WAY_LIVE) {
			if (backfill_imap_uids_record(m) < 0)
				return -1;
			return fresh_uidvalidity(m);
		}
	}
	/* (its records carry the margin noted) */
	if (backfill_renumber_move(m) < 0)
		return -1;
	if (next != m->uid_keep_next) {
		if (uidnext_raise(m, m->uid_keep_next) < 0)
			return -1;
		noted = margin_note(m);
	}
	return noted ? backfill_imap_uids_record(m) : 0;
}

void backfill_imap_uids_cursor_in(struct cursor_folder *cf,
                                  const struct bf_cursor_folder *f)
{
	cf->way = f->way;
	cf->way_live_guid = f->way_live_guid == NULL ? "" : f->way_live_guid;
	cf->way_reason = f->way_reason == NULL ? "" : f->way_reason;
	cf->renumber_below = f->renumber_below;
	cf->renumber_uidvalidity = f->renumber_uidvalidity;
	cf->move_uids = f->move_uids;
	cf->move_base = f->move_base;
	cf->move_done = f->move_done;
	cf->margin_known = f->margin_known;
	cf->margin = f->margin;
}

void backfill_imap_uids_cursor_out(struct bf_cursor_folder *f,
                                   const struct cursor_folder *cf)
{
	f->way = cf->way;
	f->way_live_guid = cf->way_live_guid;
	f->way_reason = cf->way_reason;
	f->renumber_below = cf->renumber_below;
	f->renumber_uidvalidity = cf->renumber_uidvalidity;
	f->move_uids = cf->move_uids;
	f->move_base = cf->move_base;
	f->move_done = cf->move_done;
	f->margin_known = cf->margin_known;
	f->margin = cf->margin;
}

/* "NAME=WAY" (or "NAME=REASON") appended, for a decided folder. */
static void way_append(string_t *str, const char *name, enum bf_uid_way way,
                       const char *reason, bool reasons)
{
	if (way == BF_UID_WAY_UNDECIDED)
		return;
	if (str_len(str) > 0)
		str_append_c(str, ',');
	str_printfa(str, "%s=%s",
	            backfill_value_escape(name, BACKFILL_ESCAPE_LIST),
	            !reasons                            ? bf_uid_way_name(way)
	            : reason == NULL || *reason == '\0' ? "-"
	                                                : reason);
}

const char *backfill_imap_uids_text(const struct backfill_merge *m,
                                    bool reasons)
{
	const struct cursor_folder *cf;
	string_t *str = t_str_new(128);

	array_foreach(&m->cfolders, cf)
	{
		if (cf->matched)
			way_append(str, cf->name, cf->way, cf->way_reason,
			           reasons);
	}
	return str_c(str);
}

const char *backfill_imap_uids_cursor_text(const char *cursor, bool reasons)
{
	struct bf_cursor c;
	const char *error;
	string_t *str = t_str_new(128);

	if (bf_cursor_parse(cursor, &c, &error) == 0) {
		for (size_t i = 0; i < c.folders_count; i++) {
			way_append(str, c.folders[i].name, c.folders[i].way,
			           c.folders[i].way_reason, reasons);
		}
	}
	bf_cursor_free(&c);
	return str_c(str);
}
