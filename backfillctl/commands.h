#ifndef BACKFILLCTL_COMMANDS_H
#define BACKFILLCTL_COMMANDS_H

/* Exit codes scripts can trust (STYLE.md). */
#define EXIT_DONE  0
#define EXIT_LOOK  1 /* something to look at */
#define EXIT_USAGE 2 /* usage or configuration error */
/* backfillctl accounts only: some outputs were replaced and others not
   (a rename failed half way); the run lists which. */
#define EXIT_PARTIAL 3

struct backfillctl_command {
	const char *name;
	const char *usage;
	int (*run)(int argc, char **argv);
};

int cmd_fingerprint(int argc, char **argv);
int cmd_window(int argc, char **argv);
int cmd_dedup(int argc, char **argv);
int cmd_accounts(int argc, char **argv);
int cmd_report(int argc, char **argv);

/* The state store URI: --state URI, else $BACKFILL_STATE, else the
   default.  Removes the option from argv. */
const char *backfillctl_state_uri(int *argc, char **argv);

#endif
