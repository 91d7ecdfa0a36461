/* Delivery confirmation for backfill-milter.

   The milter removes a repeated delivery only when it knows the earlier
   copy reached the mailbox; this is where it learns that.  Dovecot's LMTP
   hands each recipient's delivery to the deliver_mail hook of lib-lda,
   which knows the envelope recipient exactly as RCPT TO gave it: better
   than the Delivered-To header, which LMTP adds only for single-recipient
   transactions.  lib-lda exists only in lmtp and dovecot-lda, so its
   functions are looked up at run time: linking them would keep the plugin
   from loading into imap and pop3.

   A confirmation that cannot be written is only logged, and not retried:
   the milter then treats a later copy as a suspected duplicate and
   delivers it (tagged), which loses nothing; the worst it costs is that
   one repeat of that message lands as well, a duplicate the user sees.
   Retrying later would need a queue of its own that outlives the LMTP
   process, for a record whose only use is to let the milter drop a
   repeat.

   So the wait for the store is bounded, and the bound tells a busy store
   from a stalled one.  The store gets backfill_confirm_timeout (default
   2 s, as the milter's StoreTimeout: both wait as long for the same
   store) for opening and the write together.  A BUSY store answers
   within it: a SQLite write lock held half a second by a merge's
   checkpoint on a loaded host during a login storm, an fsync on a slow
   disk.  The login's 300 ms (backfill_login_budget), which bounded the
   confirmation before, dropped those, and each one dropped let the next
   repeat of its message through to the user.  A STALLED store (the
   SQLite file locked by another process for long, a Redis that accepts
   and never answers) answers within no bound: it held every delivery to
   a user with the plugin for the store's own timeout (10 s for SQLite),
   and with it the LMTP session and Postfix's delivery agent.  Now it
   costs one backfill_confirm_timeout and is then left alone for a while,
   as the milter does (StoreRetry): after a confirmation gave up on it,
   this process's confirmations for that store wait only
   backfill_login_budget for 30 s, not the whole timeout each; the first
   one that gets through ends that at once.

   Only the milter's own tags confirm anything (issue 16): mail can reach
   LMTP without passing the milter (local sendmail, a milter timeout with
   default_action=accept) carrying any X-Backfill-* fields, and a forged
   fingerprint would "confirm" another message for the recipient, whose
   real copy would then be held.  So the fingerprint is computed again
   from the delivered bytes and must equal X-Backfill-Fingerprint, and,
   with backfill_secret_file (the milters' SecretFile), an
   X-Backfill-Tag must hold for that window and fingerprint. */

#include "lib.h"
#include "str.h"
#include "ioloop.h"
#include "smtp-address.h"
#include "mail-storage.h"
#include "mail-deliver.h"
#include "fingerprint.h"
#include "clock.h"
#include "state.h"
#include "tag.h"
#include "backfill-user.h"
#include "mail-keys.h"
#include "delivery-confirm.h"

#include <dlfcn.h>
#include <openssl/crypto.h>

typedef deliver_mail_func_t *hook_set_func_t(deliver_mail_func_t *new_hook);
typedef int deliver_save_func_t(struct mail_deliver_context *ctx,
                                const char *mailbox, enum mail_flags flags,
                                const char *const *keywords,
                                struct mail_storage **storage_r);

/* lib-lda's hook chain is process-wide, so these are too. */
static hook_set_func_t *backfill_hook_set = NULL;
static deliver_save_func_t *backfill_deliver_save = NULL;
static deliver_mail_func_t *backfill_next_deliver_mail = NULL;
static bool backfill_hooked = FALSE;

/* How long confirmations wait only the short wait after one gave up on a
   stalled store: the milter's StoreRetry default. */
#define CONFIRM_STALLED_SECS 30

/* The store a confirmation last gave up on as stalled, and until when
   confirmations for it wait only backfill_login_budget.  Process-wide, not
   in the user's context: an LMTP process delivers to many users, a mail
   user lives for one delivery, and the users share the store as a rule;
   a per-user memory would be gone with the delivery, and every delivery
   would pay the whole timeout again.  One store is remembered: a host
   whose users have stores of their own (a userdb override) and several
   stalled at once is not worth a table. */
static struct {
	char *uri;
	uint64_t until_msecs;
} backfill_stalled;

static bool stalled_store(const char *uri)
{
	return backfill_stalled.uri != NULL &&
	       strcmp(backfill_stalled.uri, uri) == 0 &&
	       bf_clock_msecs() < backfill_stalled.until_msecs;
}

static void stalled_store_set(const char *uri)
{
	i_free(backfill_stalled.uri);
	backfill_stalled.uri = i_strdup(uri);
	backfill_stalled.until_msecs =
	        bf_clock_msecs() + CONFIRM_STALLED_SECS * 1000;
}

static void stalled_store_forget(const char *uri)
{
	if (backfill_stalled.uri != NULL &&
	    (uri == NULL || strcmp(backfill_stalled.uri, uri) == 0))
		i_free_and_null(backfill_stalled.uri);
}

/* The site secret, read once per process: an LMTP process delivers many
   messages with the same setting. */
static struct {
	char *path;
	unsigned char *data;
	size_t len;
} backfill_secret;

static void secret_forget(void)
{
	if (backfill_secret.data != NULL) {
		OPENSSL_cleanse(backfill_secret.data, backfill_secret.len);
		free(backfill_secret.data);
	}
	free(backfill_secret.path);
	i_zero(&backfill_secret);
}

static int secret_get(const char *path, const char **error_r)
{
	unsigned char *data;
	char *error;
	size_t len;

	if (backfill_secret.path != NULL &&
	    strcmp(backfill_secret.path, path) == 0)
		return 0;
	if (bf_secret_read(path, &data, &len, &error) < 0) {
		*error_r = t_strdup(error);
		free(error);
		return -1;
	}
	secret_forget();
	backfill_secret.path = i_strdup(path);
	backfill_secret.data = data;
	backfill_secret.len = len;
	return 0;
}

/* NULL if the message's tags may confirm a delivery, else why not. */
static const char *tags_refused(struct mail_user *user, struct mail *mail,
                                const char *window, const char *fp_text)
{
	struct backfill_mail_keys keys;
	struct bf_fp *fp;
	const char *secret_path, *const *tags, *error;
	char text[BF_FP_TEXT_SIZE];
	struct bf_tag tag;
	int ret;

	if ((fp = bf_fp_new()) == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "backfill: out of memory");
	ret = backfill_mail_keys_get(mail, NULL, fp, TRUE, &keys, &error);
	bf_fp_free(&fp);
	if (ret <= 0)
		return t_strdup_printf("the delivered message could not be "
		                       "read: %s",
		                       ret < 0 ? error : "expunged");
	bf_fp_to_text(keys.fp, text);
	if (strcmp(text, fp_text) != 0)
		return t_strdup_printf("X-Backfill-Fingerprint is not the "
		                       "delivered message's (%s): forged, or "
		                       "the message changed after the milter",
		                       text);
	/* delivery_confirm() runs only for users with the context */
	const struct backfill_user *buser = BACKFILL_USER_CONTEXT(user);
	secret_path = buser->set.secret_file;
	if (secret_path == NULL || *secret_path == '\0')
		return NULL;
	if (secret_get(secret_path, &error) < 0)
		return t_strdup_printf("backfill_secret_file: %s", error);
	if (mail_get_headers(mail, BF_TAG_HEADER, &tags) < 0)
		return "its X-Backfill-Tag could not be read";
	for (; tags != NULL && *tags != NULL; tags++) {
		if (bf_tag_verify(backfill_secret.data, backfill_secret.len,
		                  window, fp_text, *tags, &tag) > 0)
			return NULL;
	}
	return "no X-Backfill-Tag made by this site's milters (SecretFile) "
	       "holds for it: the message did not pass the milter";
}

/* stalled: the store did not answer within the wait (not: refused).  A
   short wait that failed does not make the store's quiet time longer:
   once it is over one confirmation waits the whole timeout again, and
   gets through if the store only was busy. */
static void confirm_failed(struct backfill_user *buser, const char *fp_text,
                           const char *recipient, const char *error,
                           bool short_wait, bool stalled)
{
	const char *next = "";

	if (stalled && !short_wait &&
	    buser->set.login_budget_ms < buser->set.confirm_timeout_ms) {
		stalled_store_set(buser->set.state_uri);
		next = t_strdup_printf(
		        "; for %u s this process's confirmations wait for this "
		        "store only backfill_login_budget=%" PRIu64 "ms",
		        CONFIRM_STALLED_SECS, buser->set.login_budget_ms);
	}
	e_warning(buser->event,
	          "delivery of %s to %s not confirmed for the milter: %s "
	          "(the message is delivered; a later copy of it is "
	          "delivered too, tagged, instead of being dropped%s)",
	          fp_text, recipient, error, next);
}

static void delivery_confirm(struct mail_deliver_context *ctx)
{
	struct backfill_user *buser = BACKFILL_USER_CONTEXT(ctx->rcpt_user);
	struct bf_dedup_key key;
	const char *fp_text, *window, *recipient, *error;
	int ret;

	if (buser == NULL)
		return;
	if (mail_get_first_header(ctx->src_mail, "X-Backfill-Fingerprint",
	                          &fp_text) <= 0 ||
	    mail_get_first_header(ctx->src_mail, "X-Backfill-Window",
	                          &window) <= 0)
		return;
	fp_text = t_str_trim(fp_text, " \t");
	window = t_str_trim(window, " \t");
	i_zero(&key);
	if (bf_fp_from_text(fp_text, key.fingerprint) < 0) {
		e_warning(
		        buser->event,
		        "X-Backfill-Fingerprint '%s' is not a fingerprint: delivery not confirmed",
		        fp_text);
		return;
	}
	if (ctx->rcpt_to != NULL && !smtp_address_isnull(ctx->rcpt_to))
		recipient = smtp_address_encode(ctx->rcpt_to);
	else if (mail_get_first_header(ctx->src_mail, "Delivered-To",
	                               &recipient) <= 0)
		return;
	/* the key the milter wrote: bf_dedup_recipient() on both sides */
	char *bare = bf_dedup_recipient(recipient);
	if (bare == NULL)
		i_fatal_status(FATAL_OUTOFMEM, "backfill: out of memory");
	recipient = t_strdup(bare);
	free(bare);
	key.window = window;
	key.recipient = recipient;
	if ((error = tags_refused(ctx->rcpt_user, ctx->src_mail, window,
	                          fp_text)) != NULL) {
		e_warning(buser->event,
		          "delivery of %s to %s not confirmed for the milter: "
		          "%s",
		          fp_text, recipient, error);
		return;
	}

	/* the whole timeout, or the short wait while the store is known
	   stalled (the header comment says why) */
	const char *uri = buser->set.state_uri;
	uint64_t budget = buser->set.confirm_timeout_ms;
	bool short_wait = FALSE;
	if (buser->set.login_budget_ms < budget && stalled_store(uri)) {
		budget = buser->set.login_budget_ms;
		short_wait = TRUE;
	}
	uint64_t start = bf_clock_msecs();
	if (backfill_user_state_open_within(buser, (unsigned int)budget,
	                                    &error) < 0) {
		/* opening has no bf_state_stalled(): one that waited the
		   whole budget gave up waiting */
		confirm_failed(buser, fp_text, recipient, error, short_wait,
		               bf_clock_msecs() - start >= budget);
		return;
	}
	/* what is left of the budget (open_within left the whole of it on a
	   handle opened just now; an older handle has its own limit) */
	uint64_t spent = bf_clock_msecs() - start;
	bf_state_set_wait_limit(buser->state,
	                        budget > spent ? (unsigned int)(budget - spent)
	                                       : 1);
	ret = bf_state_dedup_mark_delivered(buser->state, &key, ioloop_time,
	                                    &error);
	if (ret < 0) {
		confirm_failed(buser, fp_text, recipient,
		               t_strdup_printf("state store %s: %s",
		                               bf_state_uri(buser->state),
		                               error),
		               short_wait, bf_state_stalled(buser->state));
	} else {
		stalled_store_forget(uri);
		/* for stats: metric { filter =
		 * event=backfill_delivery_confirmed } */
		e_debug(event_create_passthrough(buser->event)
		                ->set_name("backfill_delivery_confirmed")
		                ->add_str("window", window)
		                ->add_str("recipient", recipient)
		                ->add_int("recorded", ret > 0 ? 1 : 0)
		                ->event(),
		        "delivery of %s to %s in window %s confirmed%s",
		        fp_text, recipient, window,
		        ret == 0 ? " (no record: window closed or expired)"
		                 : "");
	}
}

static bool deliver_tempfailed(struct mail_deliver_context *ctx,
                               struct mail_storage *storage)
{
	enum mail_error error;

	if (ctx->tempfail_error != NULL)
		return TRUE;
	if (storage != NULL) {
		(void)mail_storage_get_last_error(storage, &error);
		return error == MAIL_ERROR_TEMP;
	}
	return FALSE;
}

/* Runs the rest of the chain (Sieve, ...) and, as lib-lda would after
   it, the save into the default mailbox; then confirms if saved. */
static int backfill_deliver_mail(struct mail_deliver_context *ctx,
                                 struct mail_storage **storage_r)
{
	int ret = -1;

	if (backfill_next_deliver_mail != NULL)
		ret = backfill_next_deliver_mail(ctx, storage_r);
	if (ret <= 0 && !ctx->saved_mail && !ctx->tried_default_save &&
	    !deliver_tempfailed(ctx, *storage_r)) {
		if (backfill_deliver_save(ctx, ctx->rcpt_default_mailbox, 0,
		                          NULL, storage_r) == 0)
			ret = 1;
		else
			ret = -1;
	}
	if (ctx->saved_mail) {
		T_BEGIN
			delivery_confirm(ctx);
		T_END;
	}
	return ret;
}

void backfill_delivery_confirm_init(void)
{
	backfill_hook_set =
	        (hook_set_func_t *)dlsym(RTLD_DEFAULT, "mail_deliver_hook_set");
	backfill_deliver_save =
	        (deliver_save_func_t *)dlsym(RTLD_DEFAULT, "mail_deliver_save");
	if (backfill_hook_set == NULL || backfill_deliver_save == NULL) {
		i_warning(
		        "backfill: lib-lda not found in this process: deliveries are not confirmed for backfill-milter");
		return;
	}
	backfill_next_deliver_mail = backfill_hook_set(backfill_deliver_mail);
	backfill_hooked = TRUE;
}

void backfill_delivery_confirm_deinit(void)
{
	secret_forget();
	stalled_store_forget(NULL);
	if (!backfill_hooked)
		return;
	(void)backfill_hook_set(backfill_next_deliver_mail);
	backfill_hooked = FALSE;
}
