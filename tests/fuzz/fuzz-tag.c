/* libFuzzer: X-Backfill-Tag values and PeerList text from anywhere never
   crash; a tag verifies only if it is exactly the one bf_tag_make()
   writes for its host and queue id. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint.h"
#include "peer-list.h"
#include "tag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char secret[] = "fuzzing secret, 32 bytes long...";
static const char window[] = "restore-1";
static const char fp_text[] = "v1:0123456789abcdef0123456789abcdef0123456789"
                              "abcdef0123456789abcdef";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char value[BF_TAG_VALUE_MAX + 2], made[BF_TAG_VALUE_MAX + 1];
	struct milter_peer_list *list = NULL;
	struct bf_tag tag;
	char *text, *error = NULL;

	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	/* PeerList inline only: a path would read this machine's files */
	if (text[0] != '/') {
		if (milter_peer_list_parse(text, &list, &error) == 0) {
			milter_peer_list_match(list, "192.0.2.1");
			milter_peer_list_match(list, "IPv6:2001:db8::1");
		}
		/* made at the first entry, kept on an error */
		milter_peer_list_free(&list);
	}
	free(error);
	if (size <= BF_TAG_VALUE_MAX) {
		memcpy(value, text, size + 1);
		if (bf_tag_verify(secret, sizeof(secret) - 1, window, fp_text,
		                  value, &tag) > 0) {
			if (bf_tag_make(secret, sizeof(secret) - 1, window,
			                fp_text, tag.host, tag.qid, made,
			                sizeof(made)) < 0)
				abort();
		}
	}
	free(text);
	return 0;
}
