/* libFuzzer: backfillctl accounts' readers, merge and reports on any
   input never crash, leak or run out of bounds.  The first three bytes
   cut the rest (see below) into the old and new passwd-files and the old and
   new virtual maps; every domain's text and HTML report is written to
   /dev/null. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "accounts-aliases.h"
#include "accounts-reconcile.h"
#include "accounts-passwd.h"
#include "accounts-report.h"
#include "accounts-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

/* The readers take a path: hand them an in-memory file. */
static int memfile(const uint8_t *data, size_t size, char path[64])
{
	int fd = memfd_create("fuzz-accounts", 0);

	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, 64, "/proc/self/fd/%d", fd);
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct acc_pw_file old_pw = {0}, new_pw = {0};
	struct acc_alias_file old_al = {0}, new_al = {0};
	struct acc_issues issues = {0};
	struct acc_reconcile m = {0};
	struct acc_report_ctx rctx = {.generated = "2026-11-21 00:00 UTC"};
	size_t cut[5];
	char path[4][64];
	int fds[4];
	const char *error;

	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	if (size < 3)
		return 0;
	cut[0] = 3;
	/* part i takes data[i]/255 of what is left after the parts before */
	for (int i = 0; i < 3; i++)
		cut[i + 1] = cut[i] + (size - cut[i]) * data[i] / 255;
	cut[4] = size;
	for (int i = 0; i < 4; i++)
		fds[i] = memfile(data + cut[i], cut[i + 1] - cut[i], path[i]);

	if (acc_pw_read(path[0], &old_pw, &issues, &error) < 0 ||
	    acc_pw_read(path[1], &new_pw, &issues, &error) < 0 ||
	    acc_alias_read(path[2], &old_al, &issues, &error) < 0 ||
	    acc_alias_read(path[3], &new_al, &issues, &error) < 0)
		abort(); /* an in-memory file can always be read */
	acc_reconcile_run(&old_pw, &new_pw, &old_al, &new_al, &m);
	for (size_t d = 0; d < m.n_domains; d++) {
		if (acc_report_text(&m, m.domains[d], &rctx, devnull) < 0 ||
		    acc_report_html(&m, m.domains[d], &rctx, devnull) < 0)
			abort();
	}

	acc_reconcile_free(&m);
	acc_pw_file_free(&old_pw);
	acc_pw_file_free(&new_pw);
	acc_alias_file_free(&old_al);
	acc_alias_file_free(&new_al);
	acc_issues_free(&issues);
	for (int i = 0; i < 4; i++)
		close(fds[i]);
	return 0;
}
