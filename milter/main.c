/* backfill-milter: tags mail arriving during a restore window and removes
   repeated deliveries of the same message to the same recipient.

   Signals: libmilter runs its own signal thread that stops the milter on
   SIGHUP.  We want SIGHUP to reload, so smfi_main() runs on a second
   thread, created with the signals blocked (libmilter's thread inherits
   that), and the main thread alone leaves them unblocked with a handler
   that writes to a pipe: Linux delivers a signal sent to the process to
   the main thread whenever it does not block it.  libmilter's own
   sigwait() is kept away from them by libmilter-signals.c. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backfill-config.h"
#include "milter-config.h"
#include "daemon.h"
#include "log.h"
#include "milter.h"
#include "state-pool.h"
#include "state.h"
#include "stats.h"

/* How long SIGTERM waits for sessions in the middle of a message. */
#define STOP_GRACE_SECS 30
/* How often StatsFile is rewritten. */
#define STATS_INTERVAL_SECS 10
/* Up to 1 MB per milter packet: a header line may be longer than
   libmilter's 64 KB default (Postfix's header_size_limit is 100 KB). */
#define MAX_DATA_SIZE (1024 * 1024 - 1)

static atomic_int smfi_result = -1;
static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	unsigned char byte = (unsigned char)sig;
	int saved_errno = errno;

	if (write(signal_pipe[1], &byte, 1) < 0) {
		/* Pipe full: signals are already pending. */
	}
	errno = saved_errno;
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: backfill-milter [-c CONFIG] [-f] [-n] [-s]\n"
	        "  -c CONFIG  configuration file (default %s)\n"
	        "  -f         stay in the foreground\n"
	        "  -n         check the configuration and exit\n"
	        "  -s         print the running milter's counters "
	        "(StatsFile)\n",
	        MILTER_DEFAULT_CONFIG);
}

static void *smfi_thread(void *context)
{
	(void)context;
	atomic_store(&smfi_result, smfi_main());
	on_signal(0); /* wake the main thread: libmilter has stopped */
	return NULL;
}

static int config_activate(struct milter_config *config, char **error_r)
{
	config->pool = milter_state_pool_new(config->state_uri,
	                                     config->store_timeout_ms,
	                                     config->store_retry_secs);
	if (config->pool == NULL) {
		*error_r = strdup("out of memory");
		return -1;
	}
	milter_log_set_level(config->log_level);
	milter_config_set_current(config);
	return 0;
}

static void warn_fixed(const char *key, const char *old, const char *new)
{
	if ((old == NULL) != (new == NULL) ||
	    (old != NULL && strcmp(old, new) != 0))
		milter_warning("reload: %s changed; it applies only after a "
		               "restart of backfill-milter",
		               key);
}

static void reload(const char *path)
{
	struct milter_config *old = milter_config_get(), *config;
	char *error = NULL;

	if (milter_config_read(path, &config, &error) < 0) {
		milter_error("reload failed: %s; still running with the "
		             "previous configuration",
		             error != NULL ? error : "out of memory");
		free(error);
		milter_config_unref(&old);
		return;
	}
	warn_fixed("Socket", old->socket, config->socket);
	warn_fixed("SocketGroup", old->socket_group, config->socket_group);
	warn_fixed("UserID", old->user_id, config->user_id);
	warn_fixed("PidFile", old->pid_file, config->pid_file);
	if (old->socket_mode != config->socket_mode)
		warn_fixed("SocketMode", "old", "new");
	if (old->syslog != config->syslog)
		warn_fixed("Syslog", "old", "new");
	if (old->syslog_facility != config->syslog_facility)
		warn_fixed("SyslogFacility", "old", "new");
	if (old->umask != config->umask)
		warn_fixed("UMask", "old", "new");
	milter_config_unref(&old);
	if (config_activate(config, &error) < 0) {
		milter_error("reload failed: %s", error);
		free(error);
		milter_config_unref(&config);
		return;
	}
	milter_info("configuration reloaded from %s", path);
}

/* A store that cannot be opened is not fatal (mail is accepted and tagged
   unchecked), but the operator should hear about it at once. */
static void check_state(const struct milter_config *config)
{
	struct bf_state *state;
	char *error = NULL;

	if (bf_state_open(config->state_uri, &state, &error) < 0) {
		milter_error("state store %s cannot be opened: %s; mail will "
		             "be accepted unchecked until it can",
		             config->state_uri,
		             error != NULL ? error : "out of memory");
		free(error);
		return;
	}
	bf_state_close(&state);
}

/* libmilter drops every open session when it stops (its worker pool
   closes them), so the messages in progress are finished first: the
   listener keeps running and new messages are handled normally, and the
   stop comes at the first moment no message is in progress (or after
   STOP_GRACE_SECS).  Sessions idle between messages are then closed;
   Postfix applies milter_default_action to their later messages. */
static void stop_listening(void)
{
	milter_info("stopping: %u session(s) open, %u with a message in "
	            "progress; waiting up to %ds for those messages",
	            milter_active_sessions(), milter_active_messages(),
	            STOP_GRACE_SECS);
	for (int i = 0; i < STOP_GRACE_SECS * 100; i++) {
		if (milter_active_messages() == 0)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	smfi_stop();
}

/* The counters for backfill-milter -s, from the main thread: a failure
   is logged once per cause, not at every write. */
static void stats_write(time_t started)
{
	static int last_errno;
	struct milter_config *config = milter_config_get();

	if (config == NULL)
		return;
	if (milter_stats_write(config->stats_file, started) < 0) {
		if (errno != last_errno)
			milter_warning("StatsFile %s cannot be written: %s "
			               "(backfill-milter -s shows nothing)",
			               config->stats_file, strerror(errno));
		last_errno = errno;
	} else {
		last_errno = 0;
	}
	milter_config_unref(&config);
}

static int run(const char *path)
{
	time_t started = time(NULL);
	struct sigaction sa;
	sigset_t set;
	pthread_t thread;
	unsigned char sig;
	bool stopping = false, smfi_ended = false;

	if (pipe2(signal_pipe, O_CLOEXEC) < 0 ||
	    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK) < 0) {
		milter_error("cannot create the signal pipe: %s",
		             strerror(errno));
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (pthread_create(&thread, NULL, smfi_thread, NULL) != 0 ||
	    pthread_detach(thread) != 0) {
		milter_error("cannot start the milter thread: %s",
		             strerror(errno));
		return 1;
	}
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	stats_write(started);
	while (!stopping && !smfi_ended) {
		struct pollfd pfd = {.fd = signal_pipe[0], .events = POLLIN};
		int ready = poll(&pfd, 1, STATS_INTERVAL_SECS * 1000);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready == 0) {
			stats_write(started);
			continue;
		}
		ssize_t ret = read(signal_pipe[0], &sig, 1);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0) {
			milter_error("signal pipe: %s", strerror(errno));
			smfi_ended = true;
			break;
		}
		switch (sig) {
		case 0:
			smfi_ended = true;
			break;
		case SIGHUP:
			reload(path);
			break;
		case SIGTERM:
		case SIGINT:
			stopping = true;
			break;
		}
	}
	if (stopping)
		stop_listening();
	else
		milter_error("libmilter stopped on its own (result %d); "
		             "exiting so that the service manager restarts "
		             "backfill-milter",
		             atomic_load(&smfi_result));
	stats_write(started);
	if (milter_active_messages() > 0)
		milter_warning(
		        "stopped with %u message(s) in progress; Postfix "
		        "applies milter_default_action to them",
		        milter_active_messages());
	return stopping ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *path = MILTER_DEFAULT_CONFIG;
	bool foreground = false, check_only = false;
	struct milter_config *config, *current;
	char *error = NULL;
	int opt, ret;

	bool stats_only = false;

	while ((opt = getopt(argc, argv, "c:fnshV")) != -1) {
		switch (opt) {
		case 'c':
			path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'n':
			check_only = true;
			break;
		case 's':
			stats_only = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("backfill-milter %s\n", BACKFILL_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (milter_config_read(path, &config, &error) < 0) {
		fprintf(stderr, "backfill-milter: %s\n",
		        error != NULL ? error : "out of memory");
		free(error);
		return 2;
	}
	if (check_only) {
		milter_config_unref(&config);
		return 0;
	}
	if (stats_only) {
		ret = milter_stats_print(config->stats_file, time(NULL));
		milter_config_unref(&config);
		return ret;
	}
	if (config->umask >= 0)
		umask((mode_t)config->umask);
	/* SIGHUP re-reads the file after detaching has changed to "/". */
	char *abs_path = realpath(path, NULL);
	if (abs_path != NULL)
		path = abs_path;
	/* Postfix may close a milter connection at any time; a write to it
	   must fail with EPIPE, not end the process. */
	signal(SIGPIPE, SIG_IGN);
	milter_log_open(config->syslog, config->syslog_facility);
	milter_log_set_level(config->log_level);

	if (smfi_register(milter_desc) != MI_SUCCESS) {
		fprintf(stderr, "backfill-milter: smfi_register failed\n");
		milter_config_unref(&config);
		free(abs_path);
		return 1;
	}
	smfi_setmaxdatasize(MAX_DATA_SIZE);
	if (milter_daemon_open_socket(config, &error) < 0 ||
	    (!foreground && milter_daemon_detach(&error) < 0) ||
	    (config->pid_file != NULL &&
	     milter_daemon_write_pid(config->pid_file, &error) < 0) ||
	    (config->user_id != NULL &&
	     milter_daemon_drop_privileges(config->user_id, &error) < 0)) {
		milter_error("cannot start: %s",
		             error != NULL ? error : "out of memory");
		/* On syslog the line may go unseen by whoever started us. */
		if (config->syslog)
			fprintf(stderr, "backfill-milter: cannot start: %s\n",
			        error != NULL ? error : "out of memory");
		free(error);
		milter_config_unref(&config);
		free(abs_path);
		return 2;
	}
	if (config_activate(config, &error) < 0) {
		milter_error("cannot start: %s", error);
		free(error);
		milter_config_unref(&config);
		free(abs_path);
		return 1;
	}
	current = milter_config_get();
	milter_info(
	        "started %s on %s, state %s, window %s, duplicates %s, "
	        "quarantine %s, confirm delivery %s",
	        BACKFILL_VERSION, current->socket, current->state_uri,
	        current->window_mode == MILTER_WINDOW_AUTO ? "auto" : "off",
	        current->duplicate_action == MILTER_DUPLICATE_REMOVE ? "remove"
	                                                             : "tag",
	        current->quarantine == MILTER_QUARANTINE_HOLD ? "hold" : "none",
	        current->confirm_delivery ? "yes" : "no");
	check_state(current);
	char *pid_file =
	        current->pid_file != NULL ? strdup(current->pid_file) : NULL;
	milter_config_unref(&current);

	ret = run(path);

	if (pid_file != NULL) {
		/* May fail after dropping privileges: a stale pid file is
		   harmless, the next start rewrites it. */
		(void)unlink(pid_file);
		free(pid_file);
	}
	milter_config_set_current(NULL);
	milter_info("stopped");
	free(abs_path);
	return ret;
}
