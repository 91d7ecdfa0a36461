/* Keeps libmilter's signal thread away from SIGHUP, SIGTERM and SIGINT.

   smfi_main() starts a thread that sigwait()s for these three and stops
   the milter on any of them: SIGHUP would end the process instead of
   reloading it.  main.c handles them in the main thread, the only thread
   that does not block them; but a thread in sigwait() counts as one that
   accepts the signal, and when a burst of signals finds the main thread
   busy, the kernel hands one to libmilter's thread (seen in testing:
   about one in ten thousand SIGHUPs).  So this file interposes sigwait():
   libmilter calls it through the dynamic linker, which finds this
   definition in the executable first.  The three signals are taken out
   of the set; a set left empty parks the calling thread for good, which
   is what libmilter's signal thread then should do. */

#include <errno.h>
#include <signal.h>
#include <unistd.h>

int sigwait(const sigset_t *set, int *sig)
{
	sigset_t filtered = *set;
	siginfo_t info;
	int ret;

	sigdelset(&filtered, SIGHUP);
	sigdelset(&filtered, SIGTERM);
	sigdelset(&filtered, SIGINT);
	if (sigisemptyset(&filtered)) {
		for (;;)
			pause();
	}
	do {
		ret = sigwaitinfo(&filtered, &info);
	} while (ret < 0 && errno == EINTR);
	if (ret < 0)
		return errno;
	*sig = ret;
	return 0;
}
