/* Reading a folder (archive or live) in UID order across slices: the
   UIDs are listed once, the mails are read through a transaction that
   never outlives a slice. */

#include "lib.h"
#include "array.h"
#include "mail-storage-private.h"
#include "mail-search-build.h"
#include "merge-private.h"

int backfill_merge_walk_open(struct backfill_merge *m, struct mailbox *box,
                             const char **error_r)
{
	struct mail_search_args *args;
	struct mail_search_context *ctx;
	struct mailbox_transaction_context *t;
	struct mailbox_status status;
	struct mail *mail;
	int ret = 0;

	i_zero(&m->walk);
	m->walk.box = box;
	if (mailbox_sync(box, 0) < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	mailbox_get_open_status(box, STATUS_UIDVALIDITY, &status);
	m->walk.uidvalidity = status.uidvalidity;
	backfill_cache_fields_register(box, &m->walk.cf);
	p_array_init(&m->walk.uids, m->pool, 64);

	t = mailbox_transaction_begin(box, 0, __func__);
	args = mail_search_build_init();
	mail_search_build_add_all(args);
	ctx = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	while (mailbox_search_next(ctx, &mail))
		array_push_back(&m->walk.uids, &mail->uid);
	if (mailbox_search_deinit(&ctx) < 0)
		ret = -1;
	(void)mailbox_transaction_commit(&t);
	if (ret < 0) {
		*error_r = mailbox_get_last_internal_error(box, NULL);
		return -1;
	}
	m->walk_open = TRUE;
	return 0;
}

/* Transactions never stay open between slices: the IMAP client may use
   the same mailboxes in between.  Their commits store the keys added to
   the mail cache. */
void backfill_merge_walk_slice_end(struct backfill_merge *m)
{
	struct live_box *lb;

	if (m->walk.mail != NULL)
		mail_free(&m->walk.mail);
	if (m->walk.trans != NULL)
		(void)mailbox_transaction_commit(&m->walk.trans);
	if (!array_is_created(&m->live_boxes))
		return;
	array_foreach_modifiable(&m->live_boxes, lb)
	{
		if (lb->mail != NULL)
			mail_free(&lb->mail);
		if (lb->trans != NULL)
			(void)mailbox_transaction_commit(&lb->trans);
	}
}

struct mail *backfill_merge_walk_mail(struct backfill_merge *m)
{
	if (m->walk.trans == NULL) {
		m->walk.trans =
		        mailbox_transaction_begin(m->walk.box, 0, __func__);
		m->walk.mail = mail_alloc(m->walk.trans, 0, NULL);
	}
	return m->walk.mail;
}

void backfill_merge_walk_close(struct backfill_merge *m)
{
	backfill_merge_walk_slice_end(m);
	if (m->walk.box != NULL)
		mailbox_free(&m->walk.box);
	m->walk_open = FALSE;
}

/* ---- live index ---- */

struct mail_search_context *
backfill_merge_search_uids(struct mailbox_transaction_context *t,
                           uint32_t first, uint32_t last)
{
	struct mail_search_args *args = mail_search_build_init();
	struct mail_search_arg *arg =
	        mail_search_build_add(args, SEARCH_UIDSET);
	struct mail_search_context *ctx;

	p_array_init(&arg->value.seqset, args->pool, 1);
	seq_range_array_add_range(&arg->value.seqset, first, last);
	ctx = mailbox_search_init(t, args, NULL, 0, NULL);
	mail_search_args_unref(&args);
	return ctx;
}
