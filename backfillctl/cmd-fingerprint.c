/* backfillctl fingerprint [--hdr-key] FILE...: answers "why was this (not)
   a duplicate?" with the same code the milter and the plugin run. */

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "fingerprint.h"

static int fingerprint_stream(struct bf_fp *fp, FILE *f, const char *name,
                              bool hdr_key)
{
	unsigned char buf[65536];
	struct bf_fp_result result;
	char text[BF_FP_TEXT_SIZE], hk[BF_FP_HEX_SIZE];
	const char *error;
	size_t n;

	bf_fp_reset(fp);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		bf_fp_feed(fp, buf, n);
	if (ferror(f)) {
		fprintf(stderr, "backfillctl: %s: read failed: %s\n", name,
		        strerror(errno));
		return -1;
	}
	if (bf_fp_finish(fp, &result, &error) < 0) {
		fprintf(stderr, "backfillctl: %s: %s\n", name, error);
		return -1;
	}
	bf_fp_to_text(result.fingerprint, text);
	if (hdr_key) {
		bf_fp_to_hex(result.hdr_key, hk);
		printf("%s %s %s\n", text, hk, name);
	} else {
		printf("%s %s\n", text, name);
	}
	return 0;
}

int cmd_fingerprint(int argc, char **argv)
{
	bool hdr_key = false;
	int i = 1, failed = 0;
	struct bf_fp *fp;

	if (i < argc && strcmp(argv[i], "--hdr-key") == 0) {
		hdr_key = true;
		i++;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: backfillctl fingerprint [--hdr-key] "
		                "FILE... (- for stdin)\n");
		return EXIT_USAGE;
	}
	fp = bf_fp_new();
	if (fp == NULL) {
		fprintf(stderr, "backfillctl: out of memory\n");
		return EXIT_LOOK;
	}
	for (; i < argc; i++) {
		FILE *f = strcmp(argv[i], "-") == 0 ? stdin
		                                    : fopen(argv[i], "rb");
		if (f == NULL) {
			fprintf(stderr, "backfillctl: %s: %s\n", argv[i],
			        strerror(errno));
			failed = 1;
			continue;
		}
		if (fingerprint_stream(fp, f, argv[i], hdr_key) < 0)
			failed = 1;
		if (f != stdin)
			fclose(f);
	}
	bf_fp_free(&fp);
	/* every file that could be read was printed; say if some were not */
	return failed ? EXIT_LOOK : EXIT_DONE;
}
