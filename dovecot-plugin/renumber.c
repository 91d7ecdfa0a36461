/* The renumber way's live side (renumber.h, docs/imap-caches.md).

   A live folder that exists with mail no IMAP client cached (INBOX after
   days of LMTP deliveries, a folder sieve filed into) takes the archive
   folder's UIDVALIDITY and UIDs like a folder the merge creates.  Dovecot
   never lowers a folder's next UID, so this is done only where the live
   folder's UIDNEXT at the decision (renumber_below) is not above the
   lowest archive UID merged into it: the normal case, where the old
   server's folder has years of mail and its lowest kept UID is in the
   thousands (imap-uids.c decides, else the live way, live-uids-overlap).
   Then, in place, no rebuild:
   1. the decision, renumber_below and the live UIDVALIDITY are on record
      (the cursor's w item) before anything changes;
   2. the live messages keep the POP3 UIDL they show (pinned: stored where
      the format computes it, on Maildir; an INBOX whose storage cannot
      store one, mdbox, is not renumbered: imap-uids.c,
      pop3-uidls-unstorable), then the folder takes the
      archive's UIDVALIDITY (mailbox_update(): Maildir rewrites
      dovecot-uidlist's header and mdbox its index header, both keeping
      UIDs and the next UID);
   3. the copies are saved at their archive UIDs, all >= renumber_below;
      mail delivered after 2 and before the first copy (a delivery after
      a kill between 2 and 3) is live mail too: once the last batch is
      in, renumber_below goes up past it, its UIDLs pinned as they show
      under the archive's UIDVALIDITY (backfill_renumber_delivered());
   4. after the folder's last batch, every live message below
      renumber_below moves to a new UID from the archive's UIDNEXT on,
      ascending in old-UID order, with its flags, keywords, dates, GUID and
      the POP3 UIDL it showed (the one the recorded UIDVALIDITY gave it):
      the move (old UIDs, first new UID) is on record first (the r item),
      then, chunk after chunk of old UIDs, the copies are committed and
      the originals expunged (a session's deadline stops it between
      chunks, the next run goes on), then the record says done.  A
      resumed run completes it by GUID: a copy from the first new UID on
      with the old message's GUID means the old one only has to go (its
      flags and keywords of now go to the copy first: the user may have
      changed them since the cut); an old message with no such copy takes
      a copy no GUID names that has its exact bytes
      (copies_match_leftovers()), else it is copied.
   Every step can be cut by SIGKILL and the rerun gives the same
   mailbox. */

#include "lib.h"
#include "array.h"
#include "str.h"
#include "hash.h"
#include "ioloop.h"
#include "mail-storage-private.h"
#include "pop3-uidl.h"
#include "imap-uids.h"
#include "renumber.h"
#include "merge-private.h"
#include "mail-keys.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

/* The old messages one step of the move takes: copied in one commit, as
   a batch's saves (BACKFILL_BATCH_MAX, merge-private.h), then expunged in
   one.  Measured on Maildir (1500 live messages, doveadm backfill run):
   see docs/imap-caches.md. */
#define BACKFILL_MOVE_CHUNK 100

void backfill_crash_point(const char *name)
{
	static unsigned int hits = 0;
	const char *want = getenv("BACKFILL_TEST_CRASH");
	size_t len = strlen(name);

	if (want == NULL || strncmp(want, name, len) != 0 ||
	    (want[len] != '\0' && want[len] != ':'))
		return;
	if (++hits < (want[len] == ':' ? strtoul(want + len + 1, NULL, 10) : 1))
		return;
	(void)kill(getpid(), SIGKILL);
}

static struct cursor_folder *cur_folder(struct backfill_merge *m)
{
	return array_idx_modifiable(&m->cfolders, m->cur_cf);
}

/* The messages of UIDs first..below-1 keep the POP3 UIDL uidvalidity
   gives them (the one they show). */
static int pin_uidls(struct backfill_merge *m, uint32_t first, uint32_t below,
                     uint32_t uidvalidity, const char **error_r)
{
	struct mailbox_transaction_context *t;
	struct mail_search_context *ctx;
	struct mail *mail;
	const char *stored, *uidl, *error;
	bool changed = FALSE;
	int ret = 0;

	/* a stored UIDL stays what it is; nothing else changes with the
	   UIDVALIDITY */
	if (below <= first ||
	    !backfill_pop3_uidl_changes_with_uid(m->pop3_uidl_format))
		return 0;
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	ctx = backfill_merge_search_uids(t, first, below - 1);
	while (mailbox_search_next(ctx, &mail)) {
		if (mail->uid < first || mail->uid >= below ||
		    mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND, &stored) <
		            0 ||
		    stored[0] != '\0')
			continue;
		if (backfill_pop3_uidl_get(mail, uidvalidity,
		                           m->pop3_uidl_format, &uidl,
		                           &error) < 0)
			continue;
		/* no-op on formats that cannot store one in place (mdbox):
		   there the move gives the copy its UIDL */
		mail_update_pop3_uidl(mail, uidl);
		changed = TRUE;
	}
	if (mailbox_search_deinit(&ctx) < 0)
		ret = -1;
	if (mailbox_transaction_commit(&t) < 0)
		ret = -1;
	if (ret == 0 && changed) {
		/* Maildir writes the UIDLs into dovecot-uidlist when it
		   rewrites it: before the UIDVALIDITY changes */
		struct mailbox_status status;
		struct mailbox_update update;
		if (mailbox_sync(m->lbox, 0) < 0)
			ret = -1;
		mailbox_get_open_status(m->lbox, STATUS_UIDNEXT, &status);
		i_zero(&update);
		update.min_next_uid = status.uidnext;
		if (ret == 0 && mailbox_update(m->lbox, &update) < 0)
			ret = -1;
	}
	if (ret < 0)
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
	return ret;
}

int backfill_renumber_pin_uidls(struct backfill_merge *m, const char **error_r)
{
	const struct cursor_folder *cf = cur_folder(m);

	return pin_uidls(m, 1, cf->renumber_below, cf->renumber_uidvalidity,
	                 error_r);
}

int backfill_renumber_delivered(struct backfill_merge *m, uint32_t top,
                                uint32_t *below_r, const char **error_r)
{
	const struct cursor_folder *cf = cur_folder(m);
	struct mailbox_transaction_context *t;
	struct mail_search_context *ctx;
	struct mail *mail;
	uint32_t below = cf->renumber_below;
	int ret = 0;

	*below_r = below;
	if (top <= below)
		return 0;
	if (mailbox_sync(m->lbox, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	/* ascending: everything before the first copy of the merge came
	   before any copy; what came after one is not taken (the archive
	   way's rule gives the way up for it, imap-uids.c) */
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	ctx = backfill_merge_search_uids(t, below, top - 1);
	while (mailbox_search_next(ctx, &mail)) {
		if (mail->uid < cf->renumber_below || mail->uid >= top)
			continue;
		if (seq_range_exists(&m->uid_ours, mail->uid) ||
		    backfill_live_added_by_backfill(m, m->lbox_guid, mail->uid))
			break;
		below = mail->uid + 1;
	}
	if (mailbox_search_deinit(&ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	if (ret < 0) {
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
		return -1;
	}
	if (below == cf->renumber_below)
		return 0;
	/* delivered under the archive's UIDVALIDITY: the UIDL it shows is
	   the one that gives it */
	if (pin_uidls(m, cf->renumber_below, below, m->lbox_uidvalidity,
	              error_r) < 0)
		return -1;
	*below_r = below;
	return 1;
}

struct flags_kept {
	uint32_t uid;
	enum mail_flags flags;
	const char *const *keywords;
};
ARRAY_DEFINE_TYPE(flags_kept, struct flags_kept);

/* The flags and keywords of the live messages below renumber_below, as
   the folder's index has them now. */
static int flags_read(struct backfill_merge *m, pool_t pool,
                      ARRAY_TYPE(flags_kept) * kept)
{
	const struct cursor_folder *cf = cur_folder(m);
	struct mailbox_transaction_context *t;
	struct mail_search_context *ctx;
	struct mail *mail;
	int ret = 0;

	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	ctx = backfill_merge_search_uids(t, 1, cf->renumber_below - 1);
	while (mailbox_search_next(ctx, &mail)) {
		if (mail->uid >= cf->renumber_below)
			continue;
		struct flags_kept *k = array_append_space(kept);
		k->uid = mail->uid;
		k->flags = mail_get_flags(mail) & ~MAIL_RECENT;
		k->keywords = p_strarray_dup(pool, mail_get_keywords(mail));
	}
	if (mailbox_search_deinit(&ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	return ret;
}

static bool keywords_equal(const char *const *a, const char *const *b)
{
	if (str_array_length(a) != str_array_length(b))
		return FALSE;
	for (; *a != NULL; a++) {
		if (!str_array_find(b, *a))
			return FALSE;
	}
	return TRUE;
}

/* Gives back what the index of this process lost: Dovecot resets a
   Maildir folder's index when its UIDVALIDITY changes, and the resync in
   the same process shows a file in new/ named ":2,S" without \Seen
   (another process reads it from the name: a crash before this costs
   nothing). */
static int flags_restore(struct backfill_merge *m,
                         const ARRAY_TYPE(flags_kept) * kept)
{
	struct mailbox_transaction_context *t;
	const struct flags_kept *k;
	struct mail *mail;

	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	array_foreach(kept, k)
	{
		if (!mail_set_uid(mail, k->uid))
			continue;
		if ((mail_get_flags(mail) & ~MAIL_RECENT) != k->flags)
			mail_update_flags(mail, MODIFY_REPLACE, k->flags);
		if (!keywords_equal(mail_get_keywords(mail), k->keywords)) {
			struct mail_keywords *kw =
			        mailbox_keywords_create_valid(m->lbox,
			                                      k->keywords);
			mail_update_keywords(mail, MODIFY_REPLACE, kw);
			mailbox_keywords_unref(&kw);
		}
	}
	mail_free(&mail);
	if (mailbox_transaction_commit(&t) < 0)
		return -1;
	return mailbox_sync(m->lbox, 0);
}

int backfill_renumber_set_uidvalidity(struct backfill_merge *m,
                                      const char **error_r)
{
	ARRAY_TYPE(flags_kept) kept;
	struct mailbox_update update;
	pool_t pool = pool_alloconly_create("backfill flags", 1024);
	int ret;

	p_array_init(&kept, pool, 16);
	i_zero(&update);
	update.uid_validity = m->walk.uidvalidity;
	ret = flags_read(m, pool, &kept);
	if (ret == 0)
		ret = mailbox_update(m->lbox, &update);
	/* Maildir reset the index: only a full resync shows this process
	   the messages again */
	if (ret == 0)
		ret = mailbox_sync(
		        m->lbox, strcmp(m->lbox->storage->name, "maildir") == 0
		                         ? MAILBOX_SYNC_FLAG_FORCE_RESYNC
		                         : 0);
	if (ret == 0)
		ret = flags_restore(m, &kept);
	if (ret < 0)
		*error_r = mailbox_get_last_internal_error(m->lbox, NULL);
	pool_unref(&pool);
	return ret;
}

/* The old UIDs the move takes: every message below renumber_below. */
static int move_uids_read(struct backfill_merge *m, const char **uids_r,
                          unsigned int *count_r)
{
	const struct cursor_folder *cf = cur_folder(m);
	struct mailbox_transaction_context *t;
	struct mail_search_context *ctx;
	struct mail *mail;
	ARRAY_TYPE(seq_range) uids;
	const struct seq_range *r;
	string_t *str = t_str_new(64);
	int ret = 0;

	*count_r = 0;
	if (mailbox_sync(m->lbox, 0) < 0)
		return -1;
	t_array_init(&uids, 8);
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	ctx = backfill_merge_search_uids(t, 1, cf->renumber_below - 1);
	while (mailbox_search_next(ctx, &mail)) {
		if (mail->uid < cf->renumber_below) {
			seq_range_array_add(&uids, mail->uid);
			(*count_r)++;
		}
	}
	if (mailbox_search_deinit(&ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	array_foreach(&uids, r)
	{
		if (str_len(str) > 0)
			str_append_c(str, ',');
		if (r->seq1 == r->seq2)
			str_printfa(str, "%u", r->seq1);
		else
			str_printfa(str, "%u-%u", r->seq1, r->seq2);
	}
	*uids_r = p_strdup(m->pool, str_c(str));
	return ret;
}

HASH_TABLE_DEFINE_TYPE(guid_uid, char *, void *);

struct move_item {
	uint32_t old_uid, new_uid;
};
ARRAY_DEFINE_TYPE(move_item, struct move_item);

/* The recorded move: old UID -> new UID, in old-UID order. */
static void move_items(const struct cursor_folder *cf,
                       ARRAY_TYPE(seq_range) * old_r,
                       ARRAY_TYPE(move_item) * items_r)
{
	const char *pos = cf->move_uids;
	uint32_t first, last, next = cf->move_base;

	while (bf_uid_ranges_next(&pos, &first, &last)) {
		for (uint32_t uid = first;; uid++) {
			struct move_item *item = array_append_space(items_r);
			item->old_uid = uid;
			item->new_uid = next++;
			seq_range_array_add(old_r, uid);
			if (uid == last)
				break;
		}
	}
}

/* GUID -> UID of the messages from UID first on (at or above the first
   new UID): the copies the move made. */
static int copies_read(struct backfill_merge *m, pool_t pool, uint32_t first,
                       HASH_TABLE_TYPE(guid_uid) * copies_r)
{
	const struct cursor_folder *cf = cur_folder(m);
	struct mailbox_transaction_context *t;
	struct mail_search_context *ctx;
	struct mail *mail;
	const char *guid, *stored;
	int ret = 0;

	if (first < cf->move_base)
		first = cf->move_base;
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	ctx = backfill_merge_search_uids(t, first, (uint32_t)-1);
	while (mailbox_search_next(ctx, &mail)) {
		if (mail->uid < first ||
		    mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0 ||
		    guid[0] == '\0')
			continue;
		/* two with one GUID (a user's copy within the folder beside
		   the move's): the move's is the one with a stored UIDL */
		if (hash_table_lookup(*copies_r, guid) != NULL &&
		    (mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND, &stored) <
		             0 ||
		     stored[0] == '\0'))
			continue;
		hash_table_update(*copies_r, p_strdup(pool, guid),
		                  POINTER_CAST(mail->uid));
	}
	if (mailbox_search_deinit(&ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	return ret;
}

struct leftover {
	uint32_t uid;
	uoff_t size;
	bool used;
};

/* The copy of an old message that no GUID names (leftover) becomes its
   copy: it shows the POP3 UIDL, flags and keywords the old one shows. */
static void leftover_take(struct backfill_merge *m, struct mail *old,
                          struct mail *copy)
{
	const struct cursor_folder *cf = cur_folder(m);
	const char *uidl, *cur, *error;
	struct mail_keywords *kw;

	if (backfill_pop3_uidl_get(old, cf->renumber_uidvalidity,
	                           m->pop3_uidl_format, &uidl, &error) == 0 &&
	    uidl[0] != '\0' &&
	    mail_get_special(copy, MAIL_FETCH_UIDL_BACKEND, &cur) == 0 &&
	    strcmp(cur, uidl) != 0)
		mail_update_pop3_uidl(copy, uidl);
	mail_update_flags(copy, MODIFY_REPLACE,
	                  mail_get_flags(old) & ~MAIL_RECENT);
	kw = mailbox_keywords_create_valid(m->lbox, mail_get_keywords(old));
	mail_update_keywords(copy, MODIFY_REPLACE, kw);
	mailbox_keywords_unref(&kw);
}

/* A SIGKILL inside Maildir's commit of the move's copies (files in cur/
   under new names, dovecot-uidlist not written yet) leaves copies whose
   GUID is their new file name: no GUID ties them to their old message.
   An old message without a copy by GUID takes the first unused copy
   (from the first new UID on, named by no old message's GUID) that has
   its exact bytes (backfill_mail_same_content(): a hardlink or a save of
   the same file), and the copy is given what it would have had.  Not the
   dedup fingerprint: the same mail delivered again by LMTP while the move
   was pending has the old message's fingerprint; taken for the copy, it
   lost its own UIDL and flags and one of the two messages was gone after
   the expunge (review s7 F2).  Only reads messages when both exist, so
   an uncut move reads nothing. */
static int copies_match_leftovers(struct backfill_merge *m,
                                  const ARRAY_TYPE(move_item) * items,
                                  pool_t pool, HASH_TABLE_TYPE(guid_uid) copies)
{
	struct mailbox_transaction_context *t;
	struct mail *old, *copy;
	const struct move_item *item;
	ARRAY(uint32_t) unmatched;
	ARRAY_TYPE(seq_range) named;
	ARRAY(struct leftover) leftovers;
	struct leftover *lo;
	const char *guid, *error;
	const uint32_t *uid;
	bool taken = FALSE;
	uoff_t size;
	void *value;
	int ret = 0;

	t_array_init(&unmatched, 8);
	t_array_init(&named, 8);
	t_array_init(&leftovers, 8);
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	old = mail_alloc(t, MAIL_FETCH_GUID, NULL);
	copy = mail_alloc(t, MAIL_FETCH_GUID, NULL);
	array_foreach(items, item)
	{
		if (!mail_set_uid(old, item->old_uid) ||
		    mail_get_special(old, MAIL_FETCH_GUID, &guid) < 0 ||
		    guid[0] == '\0')
			continue;
		value = hash_table_lookup(copies, guid);
		if (value != NULL)
			seq_range_array_add(&named,
			                    POINTER_CAST_TO(value, uint32_t));
		else
			array_push_back(&unmatched, &item->old_uid);
	}
	if (array_count(&unmatched) > 0) {
		/* the copies no old message's GUID names */
		struct hash_iterate_context *iter =
		        hash_table_iterate_init(copies);
		char *key;
		while (hash_table_iterate(iter, copies, &key, &value)) {
			uint32_t cuid = POINTER_CAST_TO(value, uint32_t);
			if (seq_range_exists(&named, cuid) ||
			    !mail_set_uid(copy, cuid) ||
			    backfill_mail_same_size(copy, &size, &error) <= 0)
				continue;
			lo = array_append_space(&leftovers);
			lo->uid = cuid;
			lo->size = size;
		}
		hash_table_iterate_deinit(&iter);
	}
	array_foreach(&unmatched, uid)
	{
		if (array_count(&leftovers) == 0)
			break;
		if (!mail_set_uid(old, *uid) ||
		    mail_get_special(old, MAIL_FETCH_GUID, &guid) < 0 ||
		    backfill_mail_same_size(old, &size, &error) <= 0)
			continue;
		array_foreach_modifiable(&leftovers, lo)
		{
			if (lo->used || lo->size != size ||
			    !mail_set_uid(copy, lo->uid))
				continue;
			int same =
			        backfill_mail_same_content(old, copy, &error);
			if (same < 0) {
				e_warning(
				        m->event,
				        "%s: UID %u not taken for the copy of UID %u, it cannot be compared: %s",
				        mailbox_get_vname(m->lbox), lo->uid,
				        *uid, error);
			}
			if (same <= 0)
				continue;
			lo->used = TRUE;
			leftover_take(m, old, copy);
			hash_table_update(copies, p_strdup(pool, guid),
			                  POINTER_CAST(lo->uid));
			taken = TRUE;
			break;
		}
	}
	mail_free(&old);
	mail_free(&copy);
	if (mailbox_transaction_commit(&t) < 0)
		ret = -1;
	if (ret == 0 && taken) {
		/* durable before an old message goes: Maildir writes the
		   UIDLs into dovecot-uidlist when it rewrites it */
		struct mailbox_status status;
		struct mailbox_update update;
		if (mailbox_sync(m->lbox, 0) < 0)
			return -1;
		mailbox_get_open_status(m->lbox, STATUS_UIDNEXT, &status);
		i_zero(&update);
		update.min_next_uid = status.uidnext;
		ret = mailbox_update(m->lbox, &update);
		e_warning(
		        m->event,
		        "%s: a cut move left copies no GUID names: taken by their content for the live messages they copy",
		        mailbox_get_vname(m->lbox));
	}
	return ret;
}

/* Whether every keyword of a is in b. */
static bool keywords_within(const char *const *a, const char *const *b)
{
	for (; *a != NULL; a++) {
		if (!str_array_find(b, *a))
			return FALSE;
	}
	return TRUE;
}

/* On a resumed move, an old message with a copy already shows the flags
   and keywords of now, which the user may have changed since the cut
   commit of its copy (the user saw every message twice meanwhile, and
   may as well have changed the copy): the copy gets the union of both
   before the old one goes, which loses nothing the user set on either
   (a flag the user took off one of them may come back: the lesser harm).
   Reads the index only. */
static int copies_flags_take(struct backfill_merge *m,
                             const ARRAY_TYPE(move_item) * items,
                             HASH_TABLE_TYPE(guid_uid) copies)
{
	struct mailbox_transaction_context *t;
	const struct move_item *item;
	struct mail *old, *copy;
	const char *guid;
	bool changed = FALSE;
	void *value;

	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	old = mail_alloc(t, MAIL_FETCH_GUID, NULL);
	copy = mail_alloc(t, 0, NULL);
	array_foreach(items, item)
	{
		if (!mail_set_uid(old, item->old_uid) ||
		    mail_get_special(old, MAIL_FETCH_GUID, &guid) < 0 ||
		    guid[0] == '\0' ||
		    (value = hash_table_lookup(copies, guid)) == NULL ||
		    !mail_set_uid(copy, POINTER_CAST_TO(value, uint32_t)))
			continue;
		enum mail_flags add = mail_get_flags(old) & ~MAIL_RECENT &
		                      ~mail_get_flags(copy);
		if (add != 0) {
			mail_update_flags(copy, MODIFY_ADD, add);
			changed = TRUE;
		}
		const char *const *keywords = mail_get_keywords(old);
		if (!keywords_within(keywords, mail_get_keywords(copy))) {
			struct mail_keywords *kw =
			        mailbox_keywords_create_valid(m->lbox,
			                                      keywords);
			mail_update_keywords(copy, MODIFY_ADD, kw);
			mailbox_keywords_unref(&kw);
			changed = TRUE;
		}
	}
	mail_free(&old);
	mail_free(&copy);
	if (mailbox_transaction_commit(&t) < 0)
		return -1;
	/* on Maildir the file names take them with the sync: before an
	   old message goes */
	return changed ? mailbox_sync(m->lbox, 0) : 0;
}

/* One old message copied to its new UID, as it was. */
static int move_copy_one(struct backfill_merge *m,
                         struct mailbox_transaction_context *t,
                         struct mail *src, uint32_t new_uid)
{
	const struct cursor_folder *cf = cur_folder(m);
	struct mail_save_context *save;
	struct mail_keywords *kw;
	const char *uidl, *error;
	time_t save_date;

	save = mailbox_save_alloc(t);
	kw = mailbox_keywords_create_valid(m->lbox, mail_get_keywords(src));
	mailbox_save_set_flags(save, mail_get_flags(src) & ~MAIL_RECENT, kw);
	mailbox_save_set_uid(save, new_uid);
	/* received date, GUID: mailbox_copy() takes them from src */
	if (mail_get_save_date(src, &save_date) > 0)
		mailbox_save_set_save_date(save, save_date);
	/* what it showed: a stored UIDL, else the one the live UIDVALIDITY
	   and its old UID gave it */
	if (backfill_pop3_uidl_get(src, cf->renumber_uidvalidity,
	                           m->pop3_uidl_format, &uidl, &error) == 0 &&
	    uidl[0] != '\0')
		mailbox_save_set_pop3_uidl(save, uidl);
	int ret = mailbox_copy(&save, src);
	mailbox_keywords_unref(&kw);
	return ret;
}

/* Copies the old messages of items[0..count) that have no copy yet, in
   one commit, and stops early (after one copy at least) when the
   deadline passes: *used_r says how many items it went through.
   Returns 0, or -1. */
static int move_copies(struct backfill_merge *m, const struct move_item *items,
                       unsigned int count, uint64_t deadline,
                       HASH_TABLE_TYPE(guid_uid) copies, unsigned int *used_r)
{
	struct mailbox_transaction_context *st, *t;
	struct mail *src;
	const char *guid;
	unsigned int i, n = 0;
	int ret = 0;

	st = mailbox_transaction_begin(m->lbox, 0, __func__);
	t = mailbox_transaction_begin(
	        m->lbox,
	        MAILBOX_TRANSACTION_FLAG_EXTERNAL |
	                MAILBOX_TRANSACTION_FLAG_ASSIGN_UIDS,
	        __func__);
	src = mail_alloc(st, MAIL_FETCH_GUID, NULL);
	/* a full copy, not mdbox's reference to the same message: that one
	   keeps the original's metadata and cannot take the UIDL it showed */
	m->lbox->disable_reflink_copy_to = TRUE;
	for (i = 0; i < count; i++) {
		if (n > 0 && deadline != 0 && bf_clock_msecs() >= deadline)
			break;
		if (!mail_set_uid(src, items[i].old_uid))
			continue;
		if (mail_get_special(src, MAIL_FETCH_GUID, &guid) < 0) {
			ret = -1;
			break;
		}
		if (guid[0] != '\0' && hash_table_lookup(copies, guid) != NULL)
			continue;
		if (move_copy_one(m, t, src, items[i].new_uid) < 0) {
			ret = -1;
			break;
		}
		n++;
	}
	*used_r = i;
	mail_free(&src);
	if (ret == 0 && n > 0)
		ret = mailbox_transaction_commit(&t);
	else
		mailbox_transaction_rollback(&t);
	m->lbox->disable_reflink_copy_to = FALSE;
	(void)mailbox_transaction_commit(&st);
	return ret;
}

/* Expunges every old message whose copy is there.  Returns 0, or -1 with
   the UID of one that has none in *missing_r (0: Dovecot's error). */
static int move_expunges(struct backfill_merge *m,
                         const ARRAY_TYPE(move_item) * items,
                         HASH_TABLE_TYPE(guid_uid) copies, uint32_t *missing_r)
{
	struct mailbox_transaction_context *t;
	const struct move_item *item;
	ARRAY_TYPE(const_string) gone;
	struct mail *mail;
	const char *guid;
	unsigned int n = 0;
	int ret = 0;

	*missing_r = 0;
	t_array_init(&gone, 32);
	/* not EXTERNAL: that expunges from the index only, and Maildir
	   finds the file again ("Expunged message reappeared") */
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	mail = mail_alloc(t, MAIL_FETCH_GUID, NULL);
	array_foreach(items, item)
	{
		if (!mail_set_uid(mail, item->old_uid))
			continue;
		if (mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0) {
			ret = -1;
			break;
		}
		if (guid[0] == '\0' ||
		    hash_table_lookup(copies, guid) == NULL) {
			*missing_r = item->old_uid;
			ret = -1;
			break;
		}
		guid = t_strdup(guid);
		array_push_back(&gone, &guid);
		mail_expunge(mail);
		n++;
	}
	mail_free(&mail);
	if (ret == 0 && n > 0)
		ret = mailbox_transaction_commit(&t);
	else
		mailbox_transaction_rollback(&t);
	/* A copy stands for the old messages of its own chunk only: a later
	   chunk's old message with the same GUID (Dovecot gives a copy within
	   a folder its source's GUID) must get a copy of its own, not be
	   taken for moved already and expunged (review s7, diffreview F0). */
	if (ret == 0) {
		const char *const *g;
		array_foreach(&gone, g)(void) hash_table_try_remove(copies, *g);
	}
	return ret;
}

/* The live copies that archived messages consumed (dedup) moved too: the
   cursor names them by their new UIDs from now on.  Returns TRUE when
   one moved. */
static bool consumed_moved(struct backfill_merge *m,
                           const ARRAY_TYPE(move_item) * items)
{
	const struct cursor_folder *cf = cur_folder(m);
	struct consumed *c;
	const struct move_item *item;
	bool moved = FALSE;

	if (m->lbox_live_idx == UINT_MAX)
		return FALSE;
	array_foreach_modifiable(&m->consumed, c)
	{
		if (c->box_idx != m->lbox_live_idx ||
		    c->uid >= cf->renumber_below)
			continue;
		array_foreach(items, item)
		{
			if (item->old_uid == c->uid) {
				c->uid = item->new_uid;
				moved = TRUE;
				break;
			}
		}
	}
	return moved;
}

static int move_failed(struct backfill_merge *m, const char *what)
{
	backfill_merge_log_error(
	        m,
	        "merge postponed: %s: renumbering its live messages: %s failed: %s (the next login completes it)",
	        mailbox_get_vname(m->lbox), what,
	        mailbox_get_last_internal_error(m->lbox, NULL));
	return -1;
}

/* items[from..from+count) as an array of their own */
static void items_sub(const ARRAY_TYPE(move_item) * items, unsigned int from,
                      unsigned int count, ARRAY_TYPE(move_item) * sub_r)
{
	t_array_init(sub_r, count + 1);
	if (count > 0)
		array_append(sub_r, array_idx(items, from), count);
}

/* The first item whose old message is still there (the ones before
   moved in an earlier chunk, or were expunged by the user). */
static unsigned int items_first_left(struct backfill_merge *m,
                                     const ARRAY_TYPE(move_item) * items)
{
	struct mailbox_transaction_context *t;
	const struct move_item *item;
	struct mail *mail;
	unsigned int i = 0;

	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	mail = mail_alloc(t, 0, NULL);
	array_foreach(items, item)
	{
		if (mail_set_uid(mail, item->old_uid))
			break;
		i++;
	}
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
	return i;
}

/* The copies a resumed move may have to match by content: those of the
   chunk's old messages (chunk, by GUID), and those no old message names
   that may be a cut commit's copy of one of the chunk's.  A copy of an
   earlier chunk, whose old message is gone, shows the POP3 UIDL it
   kept (stored by the move); a cut commit's copy shows none yet (Maildir
   writes it into dovecot-uidlist with the commit), or the one of the old
   message it was taken for (leftover_take()).  Keeping the earlier
   chunks' copies out keeps copies_match_leftovers() from reading every
   moved message again at each resume, and from taking one for the copy
   of another old message with the same bytes (that message would go
   without a copy). */
static int chunk_candidates(struct backfill_merge *m,
                            const ARRAY_TYPE(move_item) * chunk,
                            HASH_TABLE_TYPE(guid_uid) copies, pool_t pool,
                            HASH_TABLE_TYPE(guid_uid) * cand_r)
{
	const struct cursor_folder *cf = cur_folder(m);
	struct mailbox_transaction_context *t;
	struct hash_iterate_context *iter;
	HASH_TABLE(char *, char *) chunk_guids;
	HASH_TABLE(char *, char *) uidls;
	const struct move_item *item;
	struct mail *mail;
	const char *guid, *uidl, *error;
	char *key;
	void *value;
	bool unmatched = FALSE;

	hash_table_create(&chunk_guids, pool, 0, str_hash, strcmp);
	hash_table_create(&uidls, pool, 0, str_hash, strcmp);
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	mail = mail_alloc(t, MAIL_FETCH_GUID, NULL);
	array_foreach(chunk, item)
	{
		if (!mail_set_uid(mail, item->old_uid) ||
		    mail_get_special(mail, MAIL_FETCH_GUID, &guid) < 0 ||
		    guid[0] == '\0')
			continue;
		char *g = p_strdup(pool, guid);
		hash_table_update(chunk_guids, g, g);
		if (hash_table_lookup(copies, guid) != NULL)
			continue;
		unmatched = TRUE;
		if (backfill_pop3_uidl_get(mail, cf->renumber_uidvalidity,
		                           m->pop3_uidl_format, &uidl,
		                           &error) == 0 &&
		    uidl[0] != '\0') {
			char *u = p_strdup(pool, uidl);
			hash_table_update(uidls, u, u);
		}
	}
	iter = hash_table_iterate_init(copies);
	while (hash_table_iterate(iter, copies, &key, &value)) {
		const char *stored;
		if (hash_table_lookup(chunk_guids, key) == NULL) {
			/* no old message of the chunk names it: a candidate
			   only if some old message needs one */
			if (!unmatched ||
			    !mail_set_uid(mail,
			                  POINTER_CAST_TO(value, uint32_t)) ||
			    mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND,
			                     &stored) < 0 ||
			    (stored[0] != '\0' &&
			     hash_table_lookup(uidls, stored) == NULL))
				continue;
		}
		hash_table_update(*cand_r, key, value);
	}
	hash_table_iterate_deinit(&iter);
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
	hash_table_destroy(&chunk_guids);
	hash_table_destroy(&uidls);
	return 0;
}

/* The copies that can be the move's for the old messages items[from..to):
   the move stores on each copy the POP3 UIDL its old message showed, and
   no two messages show one.  Left out: an earlier chunk's copy (its old
   message is gone: its UIDL is no old one's of these), and a copy without
   a stored UIDL where the move stores one, which is not the move's: the
   user's own copy of an old message within the folder while the move was
   cut or paused (Dovecot gives it its source's GUID), which was taken for
   the move's and its source expunged (review s7 diffreview F0, F11).  A
   cut commit's copy that lost its GUID is found by its bytes instead
   (copies_match_leftovers()).  Without a POP3 UIDL format the GUID is all
   there is. */
static int copies_keep_pending(struct backfill_merge *m,
                               const ARRAY_TYPE(move_item) * items,
                               unsigned int from, unsigned int to, pool_t pool,
                               HASH_TABLE_TYPE(guid_uid) copies)
{
	bool stores_uidls =
	        m->pop3_uidl_format != NULL && m->pop3_uidl_format[0] != '\0';
	const struct cursor_folder *cf = cur_folder(m);
	struct mailbox_transaction_context *t;
	struct hash_iterate_context *iter;
	HASH_TABLE(char *, char *) uidls;
	HASH_TABLE(char *, char *) guids;
	ARRAY_TYPE(const_string) drop;
	const struct move_item *item;
	const char *uidl, *stored, *guid, *error, *const *key_p;
	struct mail *mail;
	char *key;
	void *value;
	unsigned int i = 0;

	hash_table_create(&uidls, pool, 0, str_hash, strcmp);
	hash_table_create(&guids, pool, 0, str_hash, strcmp);
	t_array_init(&drop, 8);
	t = mailbox_transaction_begin(m->lbox, 0, __func__);
	mail = mail_alloc(t, MAIL_FETCH_GUID, NULL);
	array_foreach(items, item)
	{
		if (i >= to)
			break;
		if (i++ < from || !mail_set_uid(mail, item->old_uid) ||
		    backfill_pop3_uidl_get(mail, cf->renumber_uidvalidity,
		                           m->pop3_uidl_format, &uidl,
		                           &error) < 0 ||
		    uidl[0] == '\0')
			continue;
		char *u = p_strdup(pool, uidl);
		hash_table_update(uidls, u, u);
		if (mail_get_special(mail, MAIL_FETCH_GUID, &guid) == 0 &&
		    guid[0] != '\0') {
			char *g = p_strdup(pool, guid);
			hash_table_update(guids, g, g);
		}
	}
	iter = hash_table_iterate_init(copies);
	while (hash_table_iterate(iter, copies, &key, &value)) {
		/* without a stored UIDL: a cut commit's copy under a GUID of
		   its own stays (a candidate for copies_match_leftovers());
		   one with an old message's GUID is the user's copy of it */
		if (!mail_set_uid(mail, POINTER_CAST_TO(value, uint32_t)) ||
		    mail_get_special(mail, MAIL_FETCH_UIDL_BACKEND, &stored) <
		            0 ||
		    (stored[0] == '\0'
		             ? !stores_uidls ||
		                       hash_table_lookup(guids, key) == NULL
		             : hash_table_lookup(uidls, stored) != NULL))
			continue;
		const char *k = key;
		array_push_back(&drop, &k);
	}
	hash_table_iterate_deinit(&iter);
	array_foreach(&drop, key_p)(void) hash_table_try_remove(copies, *key_p);
	mail_free(&mail);
	(void)mailbox_transaction_commit(&t);
	hash_table_destroy(&uidls);
	hash_table_destroy(&guids);
	return 0;
}

/* copies_match_leftovers() for the chunk's old messages, over the copies
   that may be theirs; what it takes goes into copies. */
static int chunk_match_leftovers(struct backfill_merge *m,
                                 const ARRAY_TYPE(move_item) * chunk,
                                 pool_t pool, HASH_TABLE_TYPE(guid_uid) copies)
{
	HASH_TABLE_TYPE(guid_uid) cand;
	struct hash_iterate_context *iter;
	char *key;
	void *value;
	int ret;

	hash_table_create(&cand, pool, 0, str_hash, strcmp);
	ret = chunk_candidates(m, chunk, copies, pool, &cand);
	if (ret == 0)
		ret = copies_match_leftovers(m, chunk, pool, cand);
	iter = hash_table_iterate_init(cand);
	while (hash_table_iterate(iter, cand, &key, &value))
		hash_table_update(copies, key, value);
	hash_table_iterate_deinit(&iter);
	hash_table_destroy(&cand);
	return ret;
}

/* The session's deadline (login budget, IMAP slice) has passed; doveadm
   has none. */
static bool move_deadline_passed(const struct backfill_merge *m)
{
	return m->run_deadline != 0 && bf_clock_msecs() >= m->run_deadline;
}

/* One chunk: its old messages without a copy are copied (one commit),
   then every one whose copy is there is expunged (one commit), so that
   between chunks no message shows twice.  *used_r: how many items it
   took (fewer than count when the deadline cut the copying short).
   Returns 0, or -1 (logged). */
static int move_chunk(struct backfill_merge *m,
                      const ARRAY_TYPE(move_item) * items, unsigned int from,
                      unsigned int count, pool_t pool,
                      HASH_TABLE_TYPE(guid_uid) copies, unsigned int *used_r)
{
	ARRAY_TYPE(move_item) chunk;
	struct mailbox_status status;
	uint32_t missing;

	mailbox_get_open_status(m->lbox, STATUS_UIDNEXT, &status);
	if (move_copies(m, array_idx(items, from), count, m->run_deadline,
	                copies, used_r) < 0)
		return move_failed(m, "copying");
	backfill_crash_point("renumber-copied");
	items_sub(items, from, *used_r, &chunk);
	/* the chunk's copies: from the UIDNEXT before their commit on */
	if (mailbox_sync(m->lbox, 0) < 0 ||
	    copies_read(m, pool, status.uidnext, &copies) < 0 ||
	    copies_keep_pending(m, items, from, from + *used_r, pool, copies) <
	            0 ||
	    chunk_match_leftovers(m, &chunk, pool, copies) < 0)
		return move_failed(m, "reading its copies");
	if (move_expunges(m, &chunk, copies, &missing) < 0) {
		if (missing == 0)
			return move_failed(m, "expunging the old UIDs");
		backfill_merge_log_error(
		        m,
		        "merge postponed: %s: live UID %u has no copy at its new UID, it stays where it is (the next login retries)",
		        mailbox_get_vname(m->lbox), missing);
		return -1;
	}
	backfill_crash_point("renumber-expunged");
	if (mailbox_sync(m->lbox, 0) < 0)
		return move_failed(m, "syncing");
	/* a move a deadline stops goes on in a later session, whose live
	   index knows the moved ones by their new UIDs only: the session's
	   last checkpoint keeps them consumed */
	if (consumed_moved(m, &chunk))
		m->cursor_dirty = TRUE;
	return 0;
}

bool backfill_renumber_move_pending(struct backfill_merge *m)
{
	if (m->cur_cf == UINT_MAX)
		return FALSE;
	const struct cursor_folder *cf = cur_folder(m);
	return cf->move_running && !cf->move_done;
}

int backfill_renumber_move(struct backfill_merge *m)
{
	struct cursor_folder *cf = cur_folder(m);
	ARRAY_TYPE(seq_range) old;
	ARRAY_TYPE(move_item) items, chunk;
	HASH_TABLE_TYPE(guid_uid) copies;
	bool resumed = cf->move_uids != NULL;
	unsigned int pos, count, used;
	pool_t pool;
	int ret = 0;

	if (cf->way != BF_UID_WAY_RENUMBER || cf->move_done || m->dry_run)
		return 0;
	if (!resumed) {
		const char *uids;
		unsigned int n;
		if (move_uids_read(m, &uids, &n) < 0)
			return move_failed(m, "reading its UIDs");
		cf->move_base = m->uid_keep_next;
		cf->move_uids = uids;
		/* nothing below (the user expunged it all meanwhile) */
		cf->move_done = n == 0;
		if (n == 0)
			cf->move_uids = NULL;
		if (backfill_imap_uids_record(m) < 0)
			return -1;
		if (n == 0)
			return 0;
		backfill_crash_point("renumber-intent");
	}
	/* A kill inside Maildir's commit can leave files that only a full
	   resync shows (as for a batch's landed copies, merge-batch.c).
	   mdbox's is a rebuild of its storage, not wanted here.  Not when
	   this process did the move's earlier chunks. */
	if (mailbox_sync(m->lbox, resumed && !cf->move_running &&
	                                          strcmp(m->lbox->storage->name,
	                                                 "maildir") == 0
	                                  ? MAILBOX_SYNC_FLAG_FORCE_RESYNC
	                                  : 0) < 0)
		return move_failed(m, "syncing");
	cf->move_running = TRUE;
	t_array_init(&old, 8);
	t_array_init(&items, 32);
	move_items(cf, &old, &items);
	count = array_count(&items);

	/* the new UIDs start at the archive's UIDNEXT plus the margin (as
	   recorded: an older record has none): the live UIDNEXT is there
	   already (backfill_imap_uids_folder_done()) */
	pool = pool_alloconly_create("backfill renumber", 1024);
	hash_table_create(&copies, pool, 0, str_hash, strcmp);
	/* A cut chunk (or the whole move, before chunks) is the first of
	   the old messages still there: at most one chunk of them can have
	   a copy already, or a cut commit's copy no GUID names. */
	pos = items_first_left(m, &items);
	items_sub(&items, pos, I_MIN(count - pos, BACKFILL_MOVE_CHUNK), &chunk);
	if (copies_read(m, pool, cf->move_base, &copies) < 0 ||
	    copies_keep_pending(m, &items, pos, count, pool, copies) < 0 ||
	    chunk_match_leftovers(m, &chunk, pool, copies) < 0)
		ret = move_failed(m, "reading its copies");
	else if (resumed && copies_flags_take(m, &chunk, copies) < 0)
		ret = move_failed(m, "updating the flags of its copies");
	/* Chunk after chunk in old-UID order, each one bounded (a commit
	   of Maildir saves costs n^2, as a batch's, merge-private.h), with
	   the session's deadline checked and the lease renewed between
	   them: a login waits no longer than its budget, a move longer than
	   the lease's TTL keeps it (review s7 F10).  A deadline stops it
	   with the move on record and not done: the next login or slice
	   goes on (the resume above). */
	while (ret == 0 && pos < count) {
		T_BEGIN
			ret = move_chunk(
			        m, &items, pos,
			        I_MIN(count - pos, BACKFILL_MOVE_CHUNK), pool,
			        copies, &used);
		T_END;
		if (ret < 0)
			break;
		pos += used;
		m->move_progress = TRUE;
		if (pos >= count)
			break;
		io_loop_time_refresh();
		if (backfill_merge_leases_renew(m) < 0) {
			ret = -1;
			break;
		}
		if (move_deadline_passed(m))
			break;
	}
	hash_table_destroy(&copies);
	pool_unref(&pool);
	if (ret < 0)
		return -1;
	if (pos < count) {
		e_debug(m->event,
		        "%s: renumbering paused at the deadline, %u of %u live messages to go",
		        mailbox_get_vname(m->lbox), count - pos, count);
		return 0;
	}
	(void)consumed_moved(m, &items);
	cf->move_done = TRUE;
	e_info(m->event,
	       "%s: %u live messages renumbered from UID %u on (the archive's UIDNEXT plus backfill_imap_uid_margin)",
	       mailbox_get_vname(m->lbox), count, cf->move_base);
	return backfill_imap_uids_record(m);
}
