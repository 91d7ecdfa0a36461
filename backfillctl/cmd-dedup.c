/* backfillctl dedup stats | purge | mark-delivered: the records
   backfill-milter keeps per (window, recipient, fingerprint). */

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "fingerprint.h"
#include "state.h"

static int dedup_stats(struct bf_state *state)
{
	struct bf_dedup_stats stats;
	const char *error;

	if (bf_state_dedup_stats(state, time(NULL), &stats, &error) < 0) {
		fprintf(stderr, "backfillctl: dedup stats: %s\n", error);
		return EXIT_LOOK;
	}
	printf("records %" PRIu64 "\n", stats.records);
	printf("delivered %" PRIu64 "\n", stats.delivered);
	printf("expired %" PRIu64 "\n", stats.expired);
	return EXIT_DONE;
}

static int dedup_purge(struct bf_state *state)
{
	const char *error;
	uint64_t purged;

	if (bf_state_dedup_purge(state, time(NULL), &purged, &error) < 0) {
		fprintf(stderr, "backfillctl: dedup purge: %s\n", error);
		return EXIT_LOOK;
	}
	printf("purged %" PRIu64 " expired record(s)\n", purged);
	return EXIT_DONE;
}

/* What the Dovecot plugin does at LMTP delivery, by hand: for mailbox
   servers without the plugin, or to release a suspected duplicate. */
static int dedup_mark_delivered(struct bf_state *state, char **argv)
{
	struct bf_dedup_key key;
	const char *error;
	char *rcpt;
	int ret;

	if (bf_fp_from_text(argv[4], key.fingerprint) < 0) {
		fprintf(stderr,
		        "backfillctl: %s: expected a fingerprint v1:<64 hex>\n",
		        argv[4]);
		return EXIT_USAGE;
	}
	if ((rcpt = bf_dedup_recipient(argv[3])) == NULL)
		return EXIT_LOOK;
	key.window = argv[2];
	key.recipient = rcpt;
	ret = bf_state_dedup_mark_delivered(state, &key, time(NULL), &error);
	if (ret < 0) {
		fprintf(stderr, "backfillctl: dedup mark-delivered: %s\n",
		        error);
		free(rcpt);
		return EXIT_LOOK;
	}
	if (ret == 0) {
		printf("no live record for window %s, %s, %s\n", argv[2], rcpt,
		       argv[4]);
		free(rcpt);
		return EXIT_LOOK;
	}
	printf("marked delivered: window %s, %s, %s\n", argv[2], rcpt, argv[4]);
	free(rcpt);
	return EXIT_DONE;
}

int cmd_dedup(int argc, char **argv)
{
	const char *uri = backfillctl_state_uri(&argc, argv);
	struct bf_state *state;
	char *error = NULL;
	int ret;

	bool valid = (argc == 2 && (strcmp(argv[1], "stats") == 0 ||
	                            strcmp(argv[1], "purge") == 0)) ||
	             (argc == 5 && strcmp(argv[1], "mark-delivered") == 0);

	if (!valid) {
		fprintf(stderr,
		        "usage: backfillctl dedup stats\n"
		        "       backfillctl dedup purge\n"
		        "       backfillctl dedup mark-delivered WINDOW "
		        "RECIPIENT FINGERPRINT\n");
		return EXIT_USAGE;
	}
	if (bf_state_open(uri, &state, &error) < 0) {
		fprintf(stderr, "backfillctl: %s\n",
		        error != NULL ? error : "out of memory");
		free(error);
		return EXIT_LOOK;
	}
	if (strcmp(argv[1], "stats") == 0)
		ret = dedup_stats(state);
	else if (strcmp(argv[1], "purge") == 0)
		ret = dedup_purge(state);
	else
		ret = dedup_mark_delivered(state, argv);
	bf_state_close(&state);
	return ret;
}
