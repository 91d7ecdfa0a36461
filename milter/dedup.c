/* The dedup decision at end of message, inside a restore window. */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "milter-config.h"
#include "dedup.h"
#include "fingerprint.h"
#include "log.h"
#include "peer-list.h"
#include "session.h"
#include "state-pool.h"
#include "state.h"
#include "stats.h"
#include "tag.h"

/* A copy whose record a peer MX made (made_by_peer()): */
enum relay {
	RELAY_NONE = 0, /* not such a copy */
	RELAY_SAME,     /* the relay of that copy, taken here first */
	RELAY_REPEAT,   /* that relay again: the peer sent it twice */
};

enum verdict {
	VERDICT_NEW = 0,
	VERDICT_SUSPECTED, /* seen, earlier copy not known delivered */
	VERDICT_CONFIRMED, /* seen and delivered (or older than MinAge) */
};

struct dedup_run {
	SMFICTX *ctx;
	struct milter_session *session;
	const struct milter_config *config;
	const char *qid;
	unsigned char fingerprint[BF_FP_SIZE];
	char fp_text[BF_FP_TEXT_SIZE];
	size_t key_count;
	struct bf_dedup_key *keys;
	int *results;
	struct bf_dedup_first *firsts;
	enum verdict *verdicts;
	size_t *keymap;       /* recipient index -> key index */
	unsigned int keyless; /* recipients without a checkable address */
	unsigned int new_count, suspected_count, confirmed_count;
	/* The first copy of a confirmed duplicate, for the log and the
	   hold reason: where an operator finds the copy that was kept. */
	const struct bf_dedup_first *example;
	/* Tags of peer MXs that checked this very message before (valid
	   MAC for this window and fingerprint, from a PeerList client) */
	struct bf_tag peer_tags[MILTER_MAX_PEER_TAGS];
	size_t peer_tag_count, peer_tag_index[MILTER_MAX_PEER_TAGS];
	unsigned int relayed_count; /* recipients a peer already checked */
	/* Per key, for a copy a peer relayed: whether that relay was taken
	   before, and then its record (relay_key()). */
	enum relay *relays;
	struct bf_dedup_first *relay_firsts;
};

static void add_header(struct dedup_run *run, const char *name,
                       const char *value)
{
	if (smfi_addheader(run->ctx, (char *)name, (char *)value) != MI_SUCCESS)
		milter_error("%s: could not add header %s: %s", run->qid, name,
		             value);
}

/* Whether the record of key i is the one a peer MX made for this very
   message: then this copy is that delivery relayed between our MXs (the
   secondary flushing its queue), not a repeat.  A repeat has a record of
   another queue id or host: the primary's own first copy, or the
   secondary's for an earlier attempt. */
static bool made_by_peer(const struct dedup_run *run,
                         const struct bf_dedup_first *first)
{
	if (first->host == NULL || first->queue_id == NULL)
		return false;
	for (size_t t = 0; t < run->peer_tag_count; t++) {
		if (strcmp(first->host, run->peer_tags[t].host) == 0 &&
		    strcmp(first->queue_id, run->peer_tags[t].qid) == 0)
			return true;
	}
	return false;
}

/* The record of the copy this one repeats: of the relay taken before
   when a peer sends its copy again, else the first copy's. */
static const struct bf_dedup_first *first_copy(const struct dedup_run *run,
                                               size_t i)
{
	if (run->relays != NULL && run->relays[i] == RELAY_REPEAT &&
	    !run->firsts[i].delivered)
		return &run->relay_firsts[i];
	return &run->firsts[i];
}

static enum verdict classify(struct dedup_run *run, size_t i, time_t now)
{
	const struct bf_dedup_first *first = first_copy(run, i);

	if (run->results[i] > 0)
		return VERDICT_NEW;
	/* Delivered already means some copy got there first (a sender's
	   retry straight to this MX while the peer still queued its copy,
	   or the peer sending its copy twice): this one is a repeat. */
	if (!first->delivered && run->relays != NULL &&
	    run->relays[i] == RELAY_SAME) {
		run->relayed_count++;
		return VERDICT_NEW;
	}
	if (first->delivered)
		return VERDICT_CONFIRMED;
	/* Without delivery confirmation (no Dovecot plugin on the
	   mailbox servers), age is the only evidence that the first copy
	   went through: a retry within MinAge may be the same attempt. */
	if (!run->config->confirm_delivery && first->first_seen <= now &&
	    (uint64_t)(now - first->first_seen) >= run->config->min_age_secs)
		return VERDICT_CONFIRMED;
	return VERDICT_SUSPECTED;
}

/* The key under which the relay of the copy a peer checked as host/qid
   is recorded: the message's own key with the fingerprint replaced by
   SHA-256("backfill-r1" LF fingerprint host LF qid).  The first MX of
   ours that takes that relay makes the record; the same copy sent again
   (a peer that lost the reply to its DATA and retries) finds it. */
static int relay_key(const struct bf_dedup_key *key, const char *host,
                     const char *qid, struct bf_dedup_key *relay_r)
{
	static const char label[] = "backfill-r1\n";
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;
	int ok;

	*relay_r = *key;
	ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, label, sizeof(label) - 1) == 1 &&
	     EVP_DigestUpdate(ctx, key->fingerprint, BF_FP_SIZE) == 1 &&
	     EVP_DigestUpdate(ctx, host, strlen(host)) == 1 &&
	     EVP_DigestUpdate(ctx, "\n", 1) == 1 &&
	     EVP_DigestUpdate(ctx, qid, strlen(qid)) == 1 &&
	     EVP_DigestFinal_ex(ctx, relay_r->fingerprint, &len) == 1 &&
	     len == BF_FP_SIZE;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -1;
}

/* For each key whose record a peer made for this very copy (the peer
   relaying what it checked), whether this relay was taken before: a
   peer whose DATA reply got lost sends the same copy again, with the
   same tag, and the record of the first copy says nothing about that
   (ConfirmDelivery no never marks it delivered).  One more store round
   trip, only for relayed messages.  A chain of three MXs is followed
   one hop: a relay record made by an MX whose tag this copy carries is
   the same delivery.  Returns 0, -1 when the store failed, -2 for a
   failure of our own (*error_r says which). */
static int check_relays(struct dedup_run *run, struct bf_state *state,
                        time_t now, const char **error_r)
{
	size_t n = run->key_count, m = 0, *index = NULL;
	struct bf_dedup_key *keys = NULL;
	struct bf_dedup_first *firsts = NULL;
	int *results = NULL, ret = -1;

	for (size_t i = 0; i < n; i++) {
		if (run->results[i] == 0 && !run->firsts[i].delivered &&
		    made_by_peer(run, &run->firsts[i]))
			m++;
	}
	if (m == 0)
		return 0;
	run->relays = calloc(n, sizeof(*run->relays));
	run->relay_firsts = calloc(n, sizeof(*run->relay_firsts));
	keys = calloc(m, sizeof(*keys));
	index = calloc(m, sizeof(*index));
	results = calloc(m, sizeof(*results));
	firsts = calloc(m, sizeof(*firsts));
	if (run->relays == NULL || run->relay_firsts == NULL || keys == NULL ||
	    index == NULL || results == NULL || firsts == NULL) {
		*error_r = "out of memory";
		ret = -2;
		goto out;
	}
	m = 0;
	for (size_t i = 0; i < n; i++) {
		if (run->results[i] != 0 || run->firsts[i].delivered ||
		    !made_by_peer(run, &run->firsts[i]))
			continue;
		if (relay_key(&run->keys[i], run->firsts[i].host,
		              run->firsts[i].queue_id, &keys[m]) < 0) {
			*error_r = "cannot make the key of a relayed copy "
			           "(crypto failure)";
			ret = -2;
			goto out;
		}
		index[m++] = i;
	}
	if (bf_state_dedup_check_and_set_many(state, keys, m, now,
	                                      run->config->dedup_ttl_secs,
	                                      run->config->hostname, run->qid,
	                                      results, firsts, error_r) < 0)
		goto out;
	for (size_t j = 0; j < m; j++) {
		size_t i = index[j];

		if (results[j] > 0 || made_by_peer(run, &firsts[j])) {
			run->relays[i] = RELAY_SAME;
		} else {
			run->relays[i] = RELAY_REPEAT;
			run->relay_firsts[i] = firsts[j];
			memset(&firsts[j], 0, sizeof(firsts[j]));
		}
	}
	ret = 0;
out:
	if (firsts != NULL) {
		for (size_t j = 0; j < m; j++)
			bf_dedup_first_clear(&firsts[j]);
	}
	free(keys);
	free(index);
	free(results);
	free(firsts);
	return ret;
}

static int check_and_set(struct dedup_run *run, time_t now, char **error_r)
{
	struct milter_session *session = run->session;
	struct bf_state *state;
	const char *error;
	size_t n = 0;
	int ret = 0;

	run->keys = calloc(session->rcpt_count, sizeof(*run->keys));
	run->results = calloc(session->rcpt_count, sizeof(*run->results));
	run->firsts = calloc(session->rcpt_count, sizeof(*run->firsts));
	run->verdicts = calloc(session->rcpt_count, sizeof(*run->verdicts));
	run->keymap = calloc(session->rcpt_count, sizeof(*run->keymap));
	if (run->keys == NULL || run->results == NULL || run->firsts == NULL ||
	    run->verdicts == NULL || run->keymap == NULL) {
		*error_r = strdup("out of memory");
		return -1;
	}
	for (size_t i = 0; i < session->rcpt_count; i++) {
		/* One key per distinct address, in the order of its first
		   spelling; keymap[] leads every spelling to its key. */
		if (session->rcpts[i].key == MILTER_RCPT_NO_KEY) {
			run->keymap[i] = MILTER_RCPT_NO_KEY;
			run->keyless++;
			continue;
		}
		if (session->rcpts[i].key != i) {
			run->keymap[i] = run->keymap[session->rcpts[i].key];
			continue;
		}
		run->keys[n].window = session->window;
		run->keys[n].recipient = session->rcpts[i].bare;
		memcpy(run->keys[n].fingerprint, run->fingerprint, BF_FP_SIZE);
		run->keymap[i] = n++;
	}
	run->key_count = n;
	if (n == 0) {
		*error_r = strdup("no recipient address to check");
		return -1;
	}

	if (milter_state_pool_get(run->config->pool, &state, error_r) < 0)
		return -1;
	if (bf_state_dedup_check_and_set_many(
	            state, run->keys, n, now, run->config->dedup_ttl_secs,
	            run->config->hostname, run->qid, run->results, run->firsts,
	            &error) < 0 ||
	    (ret = check_relays(run, state, now, &error)) == -1) {
		*error_r = strdup(error);
		milter_state_pool_put(run->config->pool, &state, error);
		return -1;
	}
	if (ret < 0) {
		/* not the store's fault: its handle goes back as good */
		*error_r = strdup(error);
		milter_state_pool_put(run->config->pool, &state, NULL);
		return -1;
	}
	milter_state_pool_put(run->config->pool, &state, NULL);

	for (size_t i = 0; i < n; i++) {
		run->verdicts[i] = classify(run, i, now);
		switch (run->verdicts[i]) {
		case VERDICT_NEW:
			run->new_count++;
			break;
		case VERDICT_SUSPECTED:
			run->suspected_count++;
			break;
		case VERDICT_CONFIRMED:
			run->confirmed_count++;
			if (run->example == NULL)
				run->example = first_copy(run, i);
			break;
		}
	}
	return 0;
}

static void log_first(const struct dedup_run *run, char *buf, size_t size)
{
	const struct bf_dedup_first *first = run->example;

	if (first == NULL) {
		buf[0] = '\0';
		return;
	}
	snprintf(buf, size, "first copy queue id %s on %s",
	         first->queue_id != NULL ? first->queue_id : "?",
	         first->host != NULL ? first->host : "?");
}

/* Every recipient already has the message: the copy goes to the hold
   queue (Quarantine hold: postsuper -H releases it) or is discarded. */
static sfsistat all_duplicates(struct dedup_run *run)
{
	char first[256], reason[512];

	log_first(run, first, sizeof(first));
	if (run->config->quarantine == MILTER_QUARANTINE_NONE) {
		milter_info("%s: discarded: duplicate for all %zu "
		            "recipient(s), %s (window %s, fingerprint %s)",
		            run->qid, run->key_count, first,
		            run->session->window, run->fp_text);
		milter_stats_add(MILTER_STAT_DISCARDED, 1);
		return SMFIS_DISCARD;
	}
	snprintf(reason, sizeof(reason),
	         "backfill: duplicate of a delivered message, %s", first);
	if (smfi_quarantine(run->ctx, reason) != MI_SUCCESS) {
		/* Never drop what cannot be held: deliver it, tagged. */
		milter_error("%s: could not put the duplicate on "
		             "hold; delivering it tagged instead",
		             run->qid);
		add_header(run, "X-Backfill-Duplicate", "confirmed");
		return SMFIS_ACCEPT;
	}
	add_header(run, "X-Backfill-Duplicate", "held");
	milter_stats_add(MILTER_STAT_HELD, 1);
	milter_info("%s: held: duplicate for all %zu recipient(s), "
	            "%s (window %s, fingerprint %s); release with postsuper "
	            "-H %s if it is wanted",
	            run->qid, run->key_count, first, run->session->window,
	            run->fp_text, run->qid);
	return SMFIS_ACCEPT;
}

static bool is_confirmed(const struct dedup_run *run, size_t i)
{
	size_t key = run->keymap[i];

	return key != MILTER_RCPT_NO_KEY &&
	       run->verdicts[key] == VERDICT_CONFIRMED;
}

/* The address as smtpd passed it, without the angle brackets. */
static const char *unbracketed(const char *raw, size_t *len_r)
{
	size_t len = strlen(raw);

	if (len >= 2 && raw[0] == '<' && raw[len - 1] == '>') {
		*len_r = len - 2;
		return raw + 1;
	}
	*len_r = len;
	return raw;
}

/* Whether confirmed duplicate recipient i may be removed; NULL if so,
   else why not, for the log.  Postfix's recipient delete
   (cleanup_del_rcpt) unquotes the address it is given and removes every
   recipient record whose original address equals it byte for byte, the
   one smfi_addrcpt just added included.  So only a plain spelling is
   removed (a quoted or escaped one, "q"@ or q\@, can equal the
   quarantine address or another recipient once unquoted), and never
   one equal to QuarantineRecipient (mail to postmaster@ that repeats):
   the copy kept for the others would go too. */
static const char *not_removable(const struct dedup_run *run, size_t i,
                                 const char *kept_in)
{
	size_t len, qlen;
	const char *addr = unbracketed(run->session->rcpts[i].raw, &len);

	if (milter_address_check(addr, len) != NULL)
		return "its address is not plainly spelled (quotes, escapes, "
		       "routing characters), and Postfix could take it for "
		       "another recipient";
	if (kept_in == NULL)
		return NULL;
	const char *q = unbracketed(kept_in, &qlen);
	if (len == qlen && memcmp(addr, q, len) == 0)
		return "it is the QuarantineRecipient, and removing it would "
		       "also remove the copy kept for the others";
	return NULL;
}

static void log_kept(const struct dedup_run *run, size_t i, const char *why)
{
	milter_info("%s: kept recipient %s, although already "
	            "delivered: %s; it gets the message again, tagged",
	            run->qid, run->session->rcpts[i].raw, why);
}

/* Removes the recipients that already have the message.  kept_in names
   where their copy went (QuarantineRecipient), NULL: nowhere. */
static unsigned int remove_recipients(struct dedup_run *run,
                                      const char *kept_in)
{
	struct milter_session *session = run->session;
	unsigned int removed = 0;

	for (size_t i = 0; i < session->rcpt_count; i++) {
		struct milter_rcpt *rcpt = &session->rcpts[i];
		size_t key = run->keymap[i];
		const char *why;

		if (!is_confirmed(run, i))
			continue;
		if ((why = not_removable(run, i, kept_in)) != NULL) {
			log_kept(run, i, why);
			continue;
		}
		if (smfi_delrcpt(run->ctx, rcpt->raw) != MI_SUCCESS) {
			milter_error("%s: could not remove duplicate "
			             "recipient %s; it gets a second copy",
			             run->qid, rcpt->raw);
			continue;
		}
		removed++;
		milter_stats_add(MILTER_STAT_REMOVED, 1);
		milter_info("%s: removed recipient %s: already "
		            "delivered, first copy queue id %s on %s; %s%s "
		            "(fingerprint %s)",
		            run->qid, rcpt->bare,
		            first_copy(run, key)->queue_id != NULL
		                    ? first_copy(run, key)->queue_id
		                    : "?",
		            first_copy(run, key)->host != NULL
		                    ? first_copy(run, key)->host
		                    : "?",
		            kept_in != NULL ? "this copy went to "
		                            : "this copy is not kept "
		                              "(Quarantine none)",
		            kept_in != NULL ? kept_in : "", run->fp_text);
	}
	return removed;
}

/* Some recipients already have the message, the others do not.  Postfix
   has no hold queue per recipient: a recipient removed with smfi_delrcpt
   has its copy nowhere, and "whatever is removed stays recoverable".  So
   the copy goes to QuarantineRecipient once (an operator mailbox that
   expires it); without one the message goes to everyone, tagged, unless
   the operator chose Quarantine none, i.e. not to keep duplicates. */
static unsigned int partial_duplicates(struct dedup_run *run, bool *not_kept_r)
{
	const struct milter_config *config = run->config;
	unsigned int wanted = 0, removed;

	if (config->quarantine_rcpt == NULL) {
		if (config->quarantine == MILTER_QUARANTINE_NONE)
			return remove_recipients(run, NULL);
		*not_kept_r = true;
		return 0;
	}
	for (size_t i = 0; i < run->session->rcpt_count; i++) {
		if (is_confirmed(run, i) &&
		    not_removable(run, i, config->quarantine_rcpt) == NULL)
			wanted++;
	}
	if (run->session->actions_known &&
	    (run->session->actions & SMFIF_DELRCPT) == 0) {
		/* the quarantine copy would be for nobody */
		milter_info(
		        "%s: %u duplicate recipient(s) kept: the "
		        "MTA did not grant the milter the right to remove "
		        "recipients (Postfix does from milter_protocol = 2 "
		        "on; the default is 6); they get the message again, "
		        "tagged",
		        run->qid, wanted);
		return 0;
	}
	if (wanted == 0) {
		/* Nobody to remove (the quarantine address itself, or
		   spellings that are not removed): adding the address
		   would only give it a copy for nobody. */
		for (size_t i = 0; i < run->session->rcpt_count; i++) {
			const char *why;
			if (is_confirmed(run, i) &&
			    (why = not_removable(
			             run, i, config->quarantine_rcpt)) != NULL)
				log_kept(run, i, why);
		}
		return 0;
	}
	if (smfi_addrcpt(run->ctx, config->quarantine_rcpt) != MI_SUCCESS) {
		/* Never remove what cannot be kept. */
		milter_error("%s: could not add QuarantineRecipient "
		             "%s (does the MTA allow the milter to add "
		             "recipients?); the duplicate recipients get the "
		             "message again, tagged X-Backfill-Duplicate: "
		             "confirmed",
		             run->qid, config->quarantine_rcpt);
		return 0;
	}
	removed = remove_recipients(run, config->quarantine_rcpt);
	if (removed == 0)
		milter_error(
		        "%s: added QuarantineRecipient %s, but "
		        "could not remove any of the %u duplicate "
		        "recipient(s) (does the MTA allow the milter to "
		        "remove recipients?): they get the message again, "
		        "tagged X-Backfill-Duplicate: confirmed, and %s gets "
		        "a copy that nobody was removed for (without "
		        "X-Backfill-Removed)",
		        run->qid, config->quarantine_rcpt, wanted,
		        config->quarantine_rcpt);
	return removed;
}

/* The peer tags of a message from a PeerList client that hold for this
   window and fingerprint; the others are ignored (and were removed as
   forged with every incoming X-Backfill-* field). */
static void verify_peer_tags(struct dedup_run *run)
{
	const struct milter_config *config = run->config;
	struct milter_session *session = run->session;

	if (session->peer_tag_count == 0 || config->secret == NULL)
		return;
	if (!milter_peer_list_match(config->peers, session->client_addr)) {
		milter_debug("%s: X-Backfill-Tag from %s ignored: not in "
		             "PeerList",
		             run->qid,
		             session->client_addr != NULL
		                     ? session->client_addr
		                     : "an unknown client");
		return;
	}
	for (size_t i = 0; i < session->peer_tag_count; i++) {
		struct bf_tag *tag = &run->peer_tags[run->peer_tag_count];

		if (bf_tag_verify(config->secret, config->secret_len,
		                  session->window, run->fp_text,
		                  session->peer_tags[i], tag) > 0)
			run->peer_tag_index[run->peer_tag_count++] = i;
		else
			milter_warning("%s: X-Backfill-Tag from peer %s does "
			               "not hold for this message (another "
			               "window or SecretFile, or the message "
			               "was changed on the way): checked as "
			               "any other",
			               run->qid, session->client_addr);
	}
}

/* This milter's own tag, and the peers' that held: an MX after this one
   recognises the records of all of them. */
static void add_tags(struct dedup_run *run)
{
	const struct milter_config *config = run->config;
	char value[BF_TAG_VALUE_MAX + 1];

	if (config->secret == NULL)
		return;
	for (size_t t = 0; t < run->peer_tag_count; t++)
		add_header(run, BF_TAG_HEADER,
		           run->session->peer_tags[run->peer_tag_index[t]]);
	if (run->session->queue_id == NULL)
		return; /* a record under "?" names no message */
	if (bf_tag_make(config->secret, config->secret_len,
	                run->session->window, run->fp_text, config->hostname,
	                run->session->queue_id, value, sizeof(value)) < 0) {
		milter_error("%s: could not make X-Backfill-Tag (queue id "
		             "or host name unusable, or a crypto failure)",
		             run->qid);
		return;
	}
	add_header(run, BF_TAG_HEADER, value);
}

static sfsistat decide(struct dedup_run *run)
{
	const struct milter_config *config = run->config;
	unsigned int removed = 0, confirmed_rcpts = 0;
	bool not_kept = false;
	char value[128];

	add_header(run, "X-Backfill-Window", run->session->window);
	add_header(run, "X-Backfill-Fingerprint", run->fp_text);
	add_tags(run);
	milter_stats_add(MILTER_STAT_TAGGED, 1);
	milter_stats_add(MILTER_STAT_RELAYED, run->relayed_count);
	if (run->relayed_count > 0)
		milter_info("%s: %u recipient(s) already checked by peer %s "
		            "(queue id %s there): the same delivery, relayed "
		            "between our MXs, not a repeat",
		            run->qid, run->relayed_count,
		            run->peer_tags[0].host, run->peer_tags[0].qid);

	if (run->confirmed_count > 0 &&
	    config->duplicate_action == MILTER_DUPLICATE_REMOVE) {
		if (run->confirmed_count == run->key_count && run->keyless == 0)
			return all_duplicates(run);
		removed = partial_duplicates(run, &not_kept);
		if (removed > 0) {
			/* A count, not the addresses: naming them would show
			   Bcc recipients to everyone else.  The log names
			   them. */
			snprintf(value, sizeof(value),
			         "%u duplicate recipient(s) already delivered",
			         removed);
			add_header(run, "X-Backfill-Removed", value);
		}
	}
	/* spellings, not keys: <Bob@x> and <bob@x> are one key, and the
	   removal is per spelling */
	for (size_t i = 0;
	     run->confirmed_count > 0 && i < run->session->rcpt_count; i++) {
		if (is_confirmed(run, i))
			confirmed_rcpts++;
	}
	if (run->suspected_count > 0)
		add_header(run, "X-Backfill-Duplicate", "suspected");
	else if (confirmed_rcpts > removed)
		add_header(run, "X-Backfill-Duplicate", "confirmed");

	if (run->confirmed_count + run->suspected_count > 0 ||
	    milter_log_enabled(MILTER_LOG_DEBUG))
		milter_info(
		        "%s: window %s fingerprint %s: %zu "
		        "recipient(s): %u new, %u suspected duplicate(s) "
		        "delivered tagged, %u confirmed duplicate(s), %u "
		        "removed%s",
		        run->qid, run->session->window, run->fp_text,
		        run->key_count, run->new_count, run->suspected_count,
		        run->confirmed_count, removed,
		        not_kept ? " (partial duplicates are delivered tagged: "
		                   "no QuarantineRecipient is set to keep "
		                   "the copy of removed recipients)"
		                 : "");
	return SMFIS_ACCEPT;
}

sfsistat milter_dedup_eom(SMFICTX *ctx, struct milter_session *session)
{
	struct dedup_run run = {
	        .ctx = ctx,
	        .session = session,
	        .config = session->config,
	        .qid = session->queue_id != NULL ? session->queue_id : "?",
	};
	struct bf_fp_result result;
	const char *error;
	char *error_dup = NULL;
	sfsistat status = SMFIS_ACCEPT;

	if (session->rcpt_count == 0) {
		milter_session_unchecked(session, "no recipients seen");
		return SMFIS_ACCEPT;
	}
	if (bf_fp_finish(session->fp, &result, &error) < 0) {
		milter_session_unchecked(session, error);
		return SMFIS_ACCEPT;
	}
	memcpy(run.fingerprint, result.fingerprint, BF_FP_SIZE);
	bf_fp_to_text(result.fingerprint, run.fp_text);
	verify_peer_tags(&run);

	if (check_and_set(&run, time(NULL), &error_dup) < 0) {
		/* Store errors name the store already. */
		milter_session_unchecked(session, error_dup != NULL
		                                          ? error_dup
		                                          : "out of memory");
		free(error_dup);
	} else {
		status = decide(&run);
	}
	if (run.firsts != NULL) {
		for (size_t i = 0; i < run.key_count; i++)
			bf_dedup_first_clear(&run.firsts[i]);
	}
	if (run.relay_firsts != NULL) {
		for (size_t i = 0; i < run.key_count; i++)
			bf_dedup_first_clear(&run.relay_firsts[i]);
	}
	free(run.relays);
	free(run.relay_firsts);
	free(run.keys);
	free(run.results);
	free(run.firsts);
	free(run.verdicts);
	free(run.keymap);
	return status;
}
