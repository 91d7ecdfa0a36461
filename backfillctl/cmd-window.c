/* backfillctl window open NAME [--until TIME] [--replace] | close |
   status: the restore window lives in the state store, so every MX
   sharing the store (and its backfill-milter, within its WindowRefresh)
   agrees on it. */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "commands.h"
#include "parse.h"
#include "state.h"

static void format_time(time_t t, char *buf, size_t size)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static int open_store(const char *uri, struct bf_state **state_r)
{
	char *error = NULL;

	if (bf_state_open(uri, state_r, &error) < 0) {
		fprintf(stderr, "backfillctl: %s\n",
		        error != NULL ? error : "out of memory");
		free(error);
		return -1;
	}
	return 0;
}

/* Another window open is refused without --replace: dedup records are
   per window, so opening a second name by mistake (a typo, a second
   operator, a script run twice with a date in the name) silently ends
   the first one's dedup, and every repeat of mail it saw would be
   delivered again.  The refusal is part of the store's write
   (BF_WINDOW_OPEN_EXCLUSIVE), not a read before it: two operators
   opening different names at the same moment would both pass a check
   of their own, and the second open would end the first window.
   --replace is the deliberate switch: one write in the store, so the
   milters never see a moment with no window, which a close followed by
   an open would give them.  The same name again stays allowed (scripts
   and restarted milters' set-ups run it twice); it only moves the end
   to the new --until and keeps the time it opened. */
static int window_open(const char *uri, int argc, char **argv)
{
	const char *name = NULL, *until_text = NULL, *error;
	struct bf_state *state;
	struct bf_window previous;
	time_t now = time(NULL), until = 0;
	char buf[64], since[64], old_until[64];
	bool replace = false;
	int ret;

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--until") == 0 && i + 1 < argc)
			until_text = argv[++i];
		else if (strcmp(argv[i], "--replace") == 0)
			replace = true;
		else if (argv[i][0] != '-' && name == NULL)
			name = argv[i];
		else
			goto usage;
	}
	if (name == NULL || name[0] == '\0')
		goto usage;
	/* Checked before the store is opened, and the name is not echoed:
	   it may hold the control characters that are the reason for the
	   refusal. */
	if (!bf_window_name_valid(name)) {
		fprintf(stderr,
		        "backfillctl: window open: invalid window name: "
		        "expected " BF_WINDOW_NAME_RULE "\n");
		goto usage;
	}
	if (until_text != NULL &&
	    bf_parse_until(until_text, now, &until, &error) < 0) {
		fprintf(stderr, "backfillctl: --until %s: %s\n", until_text,
		        error);
		return EXIT_USAGE;
	}
	if (until != 0 && until <= now) {
		fprintf(stderr, "backfillctl: --until %s is in the past\n",
		        until_text);
		return EXIT_USAGE;
	}
	if (open_store(uri, &state) < 0)
		return EXIT_LOOK;
	ret = bf_state_window_open_full(state, name, now, until,
	                                replace ? BF_WINDOW_OPEN_REPLACE
	                                        : BF_WINDOW_OPEN_EXCLUSIVE,
	                                &previous, &error);
	if (ret < 0) {
		fprintf(stderr, "backfillctl: window open %s: %s\n", name,
		        error);
		bf_state_close(&state);
		return EXIT_LOOK;
	}
	bf_state_close(&state);
	if (previous.name != NULL) {
		format_time(previous.opened, since, sizeof(since));
		if (previous.until != 0)
			format_time(previous.until, old_until,
			            sizeof(old_until));
		else
			strcpy(old_until, "closed");
	}
	if (ret == 0) {
		fprintf(stderr,
		        "backfillctl: window open %s: window %s is open (since "
		        "%s, until %s); opening %s would end it, and repeats "
		        "of mail %s saw would no longer be removed. Nothing "
		        "changed. Close it first (backfillctl window close), "
		        "or run again with --replace to switch to %s at "
		        "once\n",
		        name, previous.name, since, old_until, name,
		        previous.name, name);
		bf_window_clear(&previous);
		return EXIT_LOOK;
	}
	if (until != 0)
		format_time(until, buf, sizeof(buf));
	else
		strcpy(buf, "closed (backfillctl window close)");
	if (previous.name == NULL || strcmp(previous.name, name) != 0) {
		if (previous.name != NULL)
			printf("window %s closed\n", previous.name);
		printf("window %s opened, until %s\n", name, buf);
	} else if (previous.until == until) {
		/* nothing written */
		printf("window %s already open, until %s\n", name, old_until);
	} else {
		printf("window %s was already open; now until %s\n", name, buf);
	}
	bf_window_clear(&previous);
	return EXIT_DONE;
usage:
	fprintf(stderr, "usage: backfillctl window open NAME [--until TIME] "
	                "[--replace]\n");
	return EXIT_USAGE;
}

/* The store's error for a damaged window without the remedy at its end
   (the remedy is this very close). */
static char *damaged_detail(const char *error)
{
	const char *suffix = "; " BF_WINDOW_DAMAGED_REMEDY;
	size_t len = strlen(error), slen = strlen(suffix);

	if (len >= slen && strcmp(error + len - slen, suffix) == 0)
		len -= slen;
	return strndup(error, len);
}

/* A window damaged in the store (a time or a name backfill does not
   write) is closed all the same: the operator who runs close wants no
   window, and the store's close needs nothing of the record but that it
   is open.  Reading stays strict everywhere else (the milter accepts mail
   unchecked while such a window is in force). */
static int window_close(struct bf_state *state)
{
	struct bf_window window;
	const char *error;
	char *damaged = NULL;
	time_t now = time(NULL);
	int ret;

	memset(&window, 0, sizeof(window));
	ret = bf_state_window_current(state, now, &window, &error);
	if (ret < 0 && bf_state_window_damaged(state)) {
		damaged = damaged_detail(error);
		if (damaged == NULL) {
			fprintf(stderr, "backfillctl: out of memory\n");
			return EXIT_LOOK;
		}
		ret = 1;
	}
	if (ret >= 0)
		ret = bf_state_window_close(state, now, &error);
	if (ret < 0) {
		fprintf(stderr, "backfillctl: window close: %s\n", error);
		if (damaged != NULL)
			fprintf(stderr,
			        "backfillctl: window close: the window "
			        "in force was damaged: %s\n",
			        damaged);
		free(damaged);
		bf_window_clear(&window);
		return EXIT_LOOK;
	}
	if (damaged != NULL) {
		if (ret == 0) {
			/* closed by someone else in between */
			printf("no window was open (the damaged one was "
			       "closed meanwhile)\n");
		} else {
			printf("damaged window closed (%s)\n", damaged);
		}
		free(damaged);
		return ret == 0 ? EXIT_LOOK : EXIT_DONE;
	}
	if (ret == 0) {
		printf("no window was open\n");
		bf_window_clear(&window);
		return EXIT_LOOK;
	}
	printf("window %s closed\n", window.name != NULL ? window.name : "");
	bf_window_clear(&window);
	return EXIT_DONE;
}

static int window_status(struct bf_state *state)
{
	struct bf_window window;
	const char *error;
	char opened[64], until[64];
	int ret;

	memset(&window, 0, sizeof(window));
	ret = bf_state_window_current(state, time(NULL), &window, &error);
	if (ret < 0) {
		fprintf(stderr, "backfillctl: window status: %s\n", error);
		return EXIT_LOOK;
	}
	if (ret == 0) {
		printf("no window open\n");
		return EXIT_LOOK;
	}
	format_time(window.opened, opened, sizeof(opened));
	if (window.until != 0)
		format_time(window.until, until, sizeof(until));
	else
		strcpy(until, "closed");
	printf("window %s open since %s, until %s\n", window.name, opened,
	       until);
	bf_window_clear(&window);
	return EXIT_DONE;
}

int cmd_window(int argc, char **argv)
{
	const char *uri = backfillctl_state_uri(&argc, argv);
	struct bf_state *state;
	int ret;

	if (argc < 2)
		goto usage;
	if (strcmp(argv[1], "open") == 0)
		return window_open(uri, argc, argv);
	if ((strcmp(argv[1], "close") != 0 && strcmp(argv[1], "status") != 0) ||
	    argc != 2)
		goto usage;
	if (open_store(uri, &state) < 0)
		return EXIT_LOOK;
	ret = strcmp(argv[1], "close") == 0 ? window_close(state)
	                                    : window_status(state);
	bf_state_close(&state);
	return ret;
usage:
	fprintf(stderr, "usage: backfillctl window open NAME [--until TIME] "
	                "[--replace]\n"
	                "       backfillctl window close\n"
	                "       backfillctl window status\n");
	return EXIT_USAGE;
}
