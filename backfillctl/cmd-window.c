/* backfillctl window open NAME [--until TIME] | close | status: the
   restore window lives in the state store, so every MX sharing the store
   (and its backfill-milter, within its WindowRefresh) agrees on it. */

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

/* TIME: a duration from now ("6h", "+2d"), "@UNIXTIME", or a UTC date
   "YYYY-MM-DD[ HH:MM[:SS]]" (also with 'T' and a trailing 'Z'). */
static int parse_until(const char *text, time_t now, time_t *until_r)
{
	static const char *const formats[] = {
	        "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M",
	        "%Y-%m-%d %H:%M",    "%Y-%m-%d",
	};
	const char *error;
	uint64_t ms, secs;

	if (text[0] == '@') {
		if (bf_parse_uint(text + 1, 1, (uint64_t)INT64_MAX / 2, &secs,
		                  &error) < 0)
			return -1;
		*until_r = (time_t)secs;
		return 0;
	}
	if (bf_parse_duration_ms(text[0] == '+' ? text + 1 : text, 1000, &ms,
	                         &error) == 0) {
		if (ms < 1000)
			return -1;
		*until_r = now + (time_t)(ms / 1000);
		return 0;
	}
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
		struct tm tm;
		const char *end;

		memset(&tm, 0, sizeof(tm));
		end = strptime(text, formats[i], &tm);
		if (end == NULL || (*end != '\0' && strcmp(end, "Z") != 0))
			continue;
		*until_r = timegm(&tm);
		return 0;
	}
	return -1;
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

static int window_open(const char *uri, int argc, char **argv)
{
	const char *name = NULL, *until_text = NULL, *error;
	struct bf_state *state;
	time_t now = time(NULL), until = 0;
	char buf[64];

	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--until") == 0 && i + 1 < argc)
			until_text = argv[++i];
		else if (argv[i][0] != '-' && name == NULL)
			name = argv[i];
		else
			goto usage;
	}
	if (name == NULL || name[0] == '\0')
		goto usage;
	if (until_text != NULL && parse_until(until_text, now, &until) < 0) {
		fprintf(stderr,
		        "backfillctl: --until %s: expected a duration (6h, "
		        "2d), @UNIXTIME or a UTC date YYYY-MM-DD[ "
		        "HH:MM[:SS]]\n",
		        until_text);
		return EXIT_USAGE;
	}
	if (until != 0 && until <= now) {
		fprintf(stderr, "backfillctl: --until %s is in the past\n",
		        until_text);
		return EXIT_USAGE;
	}
	if (open_store(uri, &state) < 0)
		return EXIT_LOOK;
	if (bf_state_window_open(state, name, now, until, &error) < 0) {
		fprintf(stderr, "backfillctl: window open %s: %s\n", name,
		        error);
		bf_state_close(&state);
		return EXIT_LOOK;
	}
	if (until != 0) {
		format_time(until, buf, sizeof(buf));
		printf("window %s opened, until %s\n", name, buf);
	} else {
		printf("window %s opened, until closed (backfillctl window "
		       "close)\n",
		       name);
	}
	bf_state_close(&state);
	return EXIT_DONE;
usage:
	fprintf(stderr, "usage: backfillctl window open NAME [--until TIME]\n");
	return EXIT_USAGE;
}

static int window_close(struct bf_state *state)
{
	struct bf_window window;
	const char *error;
	time_t now = time(NULL);
	int ret;

	memset(&window, 0, sizeof(window));
	ret = bf_state_window_current(state, now, &window, &error);
	if (ret >= 0)
		ret = bf_state_window_close(state, now, &error);
	if (ret < 0) {
		fprintf(stderr, "backfillctl: window close: %s\n", error);
		bf_window_clear(&window);
		return EXIT_LOOK;
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
	fprintf(stderr, "usage: backfillctl window open NAME [--until TIME]\n"
	                "       backfillctl window close\n"
	                "       backfillctl window status\n");
	return EXIT_USAGE;
}
