/* backfillctl: operator's tool for backfill's state store and fingerprints.
   One subcommand per file (cmd-*.c); this file only dispatches. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backfill-config.h"
#include "commands.h"
#include "state.h"

static const struct backfillctl_command commands[] = {
        {"fingerprint", "fingerprint [--hdr-key] FILE...", cmd_fingerprint},
        {"window",
         "window open NAME [--until TIME] [--replace] | close | status",
         cmd_window},
        {"dedup", "dedup stats | purge | mark-delivered WINDOW RCPT FP",
         cmd_dedup},
        {"accounts",
         "accounts --old-passwd F --new-passwd F [--old-aliases F "
         "--new-aliases F] --out DIR [--keep-going]",
         cmd_accounts},
        {"report", "report --verify FILE --out DIR [--domain-map FILE]",
         cmd_report},
};

const char *backfillctl_state_uri(int *argc, char **argv)
{
	const char *uri = getenv("BACKFILL_STATE");

	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], "--state") == 0 && i + 1 < *argc) {
			uri = argv[i + 1];
			memmove(&argv[i], &argv[i + 2],
			        (size_t)(*argc - i - 1) * sizeof(*argv));
			*argc -= 2;
			break;
		}
	}
	return uri != NULL && *uri != '\0' ? uri : BF_STATE_DEFAULT_URI;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: backfillctl [--state URI] COMMAND [ARGS]\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "       backfillctl %s\n", commands[i].usage);
}

int main(int argc, char **argv)
{
	/* "--state URI" before the command applies to every command that
	   opens the store; after the command it is the command's own. */
	while (argc >= 3 && strcmp(argv[1], "--state") == 0) {
		if (setenv("BACKFILL_STATE", argv[2], 1) < 0) {
			perror("backfillctl: setenv");
			return EXIT_USAGE;
		}
		argv[2] = argv[0];
		argv += 2;
		argc -= 2;
	}
	if (argc < 2 || strcmp(argv[1], "--state") == 0) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(stdout);
		return EXIT_DONE;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("backfillctl %s\n", BACKFILL_VERSION);
		return EXIT_DONE;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "backfillctl: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
