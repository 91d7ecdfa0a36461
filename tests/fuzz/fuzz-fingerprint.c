/* libFuzzer: any chunking of any input, in either feeding style, gives the
   one-shot result and never crashes.  The first bytes of the input choose
   the chunk sizes, the rest is the message. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bf_fp *fp;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bf_fp_result whole, chunked;
	const char *error;
	uint8_t seed[8] = {0};
	size_t n_seed = size < sizeof(seed) ? size : sizeof(seed);

	if (fp == NULL && (fp = bf_fp_new()) == NULL)
		abort();
	memcpy(seed, data, n_seed);
	data += n_seed;
	size -= n_seed;

	if (bf_fp_compute(data, size, &whole, &error) < 0)
		abort();

	bf_fp_reset(fp);
	for (size_t pos = 0, k = 0; pos < size; k++) {
		size_t n = 1 + (size_t)seed[k % sizeof(seed)] % 23;
		if (n > size - pos)
			n = size - pos;
		bf_fp_feed(fp, data + pos, n);
		pos += n;
	}
	if (bf_fp_finish(fp, &chunked, &error) < 0)
		abort();
	if (memcmp(whole.fingerprint, chunked.fingerprint, BF_FP_SIZE) != 0 ||
	    memcmp(whole.hdr_key, chunked.hdr_key, BF_FP_SIZE) != 0)
		abort();

	/* Style 2 with arbitrary names, values and body chunks must not
	   crash (its equality with style 1 is tested on parsed messages in
	   the unit tests). */
	bf_fp_reset(fp);
	if (size >= 4) {
		size_t name_len = data[0] % (size / 2 + 1);
		size_t value_len = data[1] % (size - name_len + 1);
		bf_fp_header(fp, (const char *)data, name_len,
		             (const char *)data + name_len, value_len);
		bf_fp_end_headers(fp);
		bf_fp_body(fp, data + name_len, size - name_len);
	}
	if (bf_fp_finish(fp, &chunked, &error) < 0)
		abort();
	return 0;
}
