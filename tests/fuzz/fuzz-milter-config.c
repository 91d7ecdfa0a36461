/* libFuzzer: backfill-milter's configuration reader (config-file.c and
   the value parsers of parse.c behind milter/milter-config.c) on any input
   either gives a config or an error that names the file, and never
   crashes or leaks. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "milter-config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct milter_config *config = NULL;
	char path[64], *error = NULL;
	int fd = memfd_create("fuzz-milter-config", 0);

	if (fd < 0)
		abort();
	if (size > 0 && write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	if (milter_config_read(path, &config, &error) == 0) {
		if (config == NULL || error != NULL)
			abort();
		milter_config_unref(&config);
	} else {
		/* "FILE:LINE: reason" or "FILE: reason" */
		if (error == NULL || strncmp(error, path, strlen(path)) != 0)
			abort();
		free(error);
	}
	close(fd);
	return 0;
}
