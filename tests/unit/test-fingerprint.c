/* Fingerprint v1 against the spec's vectors, fed every way a caller can
   feed it: whole, byte by byte, at random split points, and header by
   header as libmilter hands a message over. */

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fingerprint.h"

struct vector {
	char file[256];
	char group[128];
	char fp_hex[BF_FP_HEX_SIZE];
	char hk_hex[BF_FP_HEX_SIZE];
	unsigned char *data;
	size_t size;
};

static struct vector vectors[128];
static size_t n_vectors;
static const char *vector_dir;

static unsigned char *read_file(const char *path, size_t *size_r)
{
	FILE *f = fopen(path, "rb");
	unsigned char *data = NULL;
	size_t size = 0, alloc = 0, n;

	if (f == NULL)
		return NULL;
	do {
		if (alloc - size < 65536) {
			alloc = alloc * 2 + 65536;
			data = realloc(data, alloc);
			assert_non_null(data);
		}
		n = fread(data + size, 1, alloc - size, f);
		size += n;
	} while (n > 0);
	fclose(f);
	*size_r = size;
	return data;
}

static int load_vectors(void **state)
{
	char path[4096], line[1024];
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/vectors.tsv", vector_dir);
	f = fopen(path, "r");
	if (f == NULL) {
		fprintf(stderr, "cannot open %s\n", path);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		struct vector *v = &vectors[n_vectors];
		if (line[0] == '#' || line[0] == '\n')
			continue;
		if (sscanf(line, "%255[^\t]\t%127[^\t]\t%64s\t%64s", v->file,
		           v->group, v->fp_hex, v->hk_hex) != 4)
			continue;
		snprintf(path, sizeof(path), "%s/%s", vector_dir, v->file);
		v->data = read_file(path, &v->size);
		if (v->data == NULL) {
			fprintf(stderr, "cannot read %s\n", path);
			fclose(f);
			return -1;
		}
		n_vectors++;
	}
	fclose(f);
	return n_vectors > 0 ? 0 : -1;
}

static int free_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_vectors; i++)
		free(vectors[i].data);
	return 0;
}

static void check_result(const struct vector *v, const struct bf_fp_result *r,
                         const char *how)
{
	char fp_hex[BF_FP_HEX_SIZE], hk_hex[BF_FP_HEX_SIZE];

	bf_fp_to_hex(r->fingerprint, fp_hex);
	bf_fp_to_hex(r->hdr_key, hk_hex);
	if (strcmp(fp_hex, v->fp_hex) != 0 || strcmp(hk_hex, v->hk_hex) != 0)
		fail_msg("%s (%s): got %s %s, want %s %s", v->file, how, fp_hex,
		         hk_hex, v->fp_hex, v->hk_hex);
}

static void test_vectors_whole(void **state)
{
	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		struct bf_fp_result r;
		const char *error;
		assert_int_equal(bf_fp_compute(vectors[i].data, vectors[i].size,
		                               &r, &error),
		                 0);
		check_result(&vectors[i], &r, "whole");
	}
}

static void test_vectors_byte_by_byte(void **state)
{
	struct bf_fp *fp = bf_fp_new();

	(void)state;
	assert_non_null(fp);
	for (size_t i = 0; i < n_vectors; i++) {
		struct bf_fp_result r;
		const char *error;
		bf_fp_reset(fp);
		for (size_t j = 0; j < vectors[i].size; j++)
			bf_fp_feed(fp, vectors[i].data + j, 1);
		assert_int_equal(bf_fp_finish(fp, &r, &error), 0);
		check_result(&vectors[i], &r, "byte by byte");
	}
	bf_fp_free(&fp);
	assert_null(fp);
}

static void test_vectors_random_splits(void **state)
{
	struct bf_fp *fp = bf_fp_new();

	(void)state;
	srand(20261121);
	for (size_t i = 0; i < n_vectors; i++) {
		for (int round = 0; round < 40; round++) {
			struct bf_fp_result r;
			const char *error;
			size_t pos = 0, size = vectors[i].size;
			bf_fp_reset(fp);
			while (pos < size) {
				size_t n = (size_t)rand() % 17;
				if (round % 4 == 3)
					n = (size_t)rand() % 70000;
				if (n > size - pos)
					n = size - pos;
				bf_fp_feed(fp, vectors[i].data + pos, n);
				pos += n;
			}
			assert_int_equal(bf_fp_finish(fp, &r, &error), 0);
			check_result(&vectors[i], &r, "random splits");
		}
	}
	bf_fp_free(&fp);
}

/* Splits a raw message the way an MTA hands it to a milter: one call per
   field with the name as written and the value after the colon (folds kept,
   as CRLF or LF, with or without the leading space), then the body. */
static void feed_as_milter(struct bf_fp *fp, const unsigned char *data,
                           size_t size, bool crlf_folds, bool strip_leadspace,
                           size_t body_chunk)
{
	const unsigned char *p = data, *end = data + size;
	char *value = malloc(size + 1024);
	size_t value_len = 0, name_len = 0;
	const unsigned char *name = NULL;
	bool have_field = false, first = true;

	assert_non_null(value);
	while (p < end) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		const unsigned char *line_end = nl != NULL ? nl : end;
		const unsigned char *next = nl != NULL ? nl + 1 : end;
		if (line_end > p && nl != NULL && line_end[-1] == '\r')
			line_end--;
		size_t len = (size_t)(line_end - p);

		if (first && len >= 5 && memcmp(p, "From ", 5) == 0) {
			first = false;
			p = next;
			continue;
		}
		first = false;
		if (len == 0 && nl != NULL) {
			/* end of header section */
			p = next;
			break;
		}
		if (*p == ' ' || *p == '\t') {
			if (have_field) {
				memcpy(value + value_len,
				       crlf_folds ? "\r\n" : "\n",
				       crlf_folds ? 2 : 1);
				value_len += crlf_folds ? 2 : 1;
				memcpy(value + value_len, p, len);
				value_len += len;
			}
			p = next;
			continue;
		}
		if (have_field)
			bf_fp_header(fp, (const char *)name, name_len, value,
			             value_len);
		have_field = false;
		const unsigned char *colon = memchr(p, ':', len);
		if (colon != NULL && colon > p) {
			const unsigned char *v = colon + 1;
			if (strip_leadspace && v < line_end && *v == ' ')
				v++;
			name = p;
			name_len = (size_t)(colon - p);
			value_len = (size_t)(line_end - v);
			memcpy(value, v, value_len);
			have_field = true;
		}
		p = next;
		if (p == end)
			break;
	}
	if (have_field)
		bf_fp_header(fp, (const char *)name, name_len, value,
		             value_len);
	bf_fp_end_headers(fp);
	while (p < end) {
		size_t n = body_chunk < (size_t)(end - p) ? body_chunk
		                                          : (size_t)(end - p);
		bf_fp_body(fp, p, n);
		p += n;
	}
	free(value);
}

static void test_vectors_milter_style(void **state)
{
	struct bf_fp *fp = bf_fp_new();
	static const size_t chunks[] = {1, 2, 7, 65535};

	(void)state;
	for (size_t i = 0; i < n_vectors; i++) {
		/* A lone CR without any LF makes the whole input one header
		   line; an MTA would not hand that over as a header. */
		if (strstr(vectors[i].file, "lone-cr") != NULL)
			continue;
		for (int variant = 0; variant < 4; variant++) {
			struct bf_fp_result r;
			const char *error;
			bf_fp_reset(fp);
			feed_as_milter(fp, vectors[i].data, vectors[i].size,
			               variant & 1, variant & 2,
			               chunks[variant]);
			assert_int_equal(bf_fp_finish(fp, &r, &error), 0);
			check_result(&vectors[i], &r, "milter style");
		}
	}
	bf_fp_free(&fp);
}

static void test_groups(void **state)
{
	(void)state;
	/* rows of one group share a fingerprint; base~change differs */
	for (size_t i = 0; i < n_vectors; i++) {
		for (size_t j = 0; j < n_vectors; j++) {
			const char *gi = vectors[i].group,
			           *gj = vectors[j].group;
			size_t base_len = strcspn(gi, "~");
			if (strcmp(gi, gj) == 0) {
				assert_string_equal(vectors[i].fp_hex,
				                    vectors[j].fp_hex);
			} else if (strchr(gi, '~') != NULL &&
			           strlen(gj) == base_len &&
			           strncmp(gi, gj, base_len) == 0) {
				assert_string_not_equal(vectors[i].fp_hex,
				                        vectors[j].fp_hex);
			}
		}
	}
}

static void test_message_id(void **state)
{
	static const char msg[] =
	        "Received: x\r\n"
	        "Message-ID:\r\n  <Abc@Example.COM>  (comment)\r\n"
	        "Message-ID: <second@x>\r\n\r\nbody\r\n";
	struct bf_fp *fp = bf_fp_new();
	struct bf_fp_result r;
	const char *error;

	(void)state;
	bf_fp_feed(fp, msg, sizeof(msg) - 1);
	assert_int_equal(bf_fp_finish(fp, &r, &error), 0);
	assert_string_equal(r.message_id, "<Abc@Example.COM>");

	bf_fp_reset(fp);
	bf_fp_feed(fp, "Subject: x\n\nbody\n", 17);
	assert_int_equal(bf_fp_finish(fp, &r, &error), 0);
	assert_string_equal(r.message_id, "");
	bf_fp_free(&fp);
}

static void test_text_forms(void **state)
{
	unsigned char bin[BF_FP_SIZE], back[BF_FP_SIZE];
	char text[BF_FP_TEXT_SIZE];

	(void)state;
	for (int i = 0; i < BF_FP_SIZE; i++)
		bin[i] = (unsigned char)(i * 37 + 5);
	bf_fp_to_text(bin, text);
	assert_int_equal(strncmp(text, "v1:", 3), 0);
	assert_int_equal(strlen(text), 67);
	assert_int_equal(bf_fp_from_text(text, back), 0);
	assert_memory_equal(bin, back, BF_FP_SIZE);
	assert_int_equal(bf_fp_from_text(text + 3, back), 0);
	assert_memory_equal(bin, back, BF_FP_SIZE);
	assert_int_equal(bf_fp_from_text("v1:zz", back), -1);
	text[10] = 'g';
	assert_int_equal(bf_fp_from_text(text, back), -1);
}

/* Separator details that the vectors do not pin down. */
static void fp_of(const char *msg, struct bf_fp_result *r)
{
	const char *error;

	assert_int_equal(bf_fp_compute(msg, strlen(msg), r, &error), 0);
}

static void test_separators(void **state)
{
	struct bf_fp_result a, b;

	(void)state;
	fp_of("From: a\n\nx\n", &a);
	/* "From " starts an mbox line only on the very first line */
	fp_of("From a\nFrom: a\n\nx\n", &b);
	assert_memory_equal(a.fingerprint, b.fingerprint, BF_FP_SIZE);
	/* trailing blank lines and blanks do not count */
	fp_of("From: a\n\nx  \n\n \n\t\n", &b);
	assert_memory_equal(a.fingerprint, b.fingerprint, BF_FP_SIZE);
	/* a continuation after a malformed line is ignored with it */
	fp_of("From: a\nbad line\n Subject: y\n\nx\n", &b);
	assert_memory_equal(a.fingerprint, b.fingerprint, BF_FP_SIZE);
	/* ... but a blank line in the body is kept */
	fp_of("From: a\n\n\nx\n", &b);
	assert_memory_not_equal(a.fingerprint, b.fingerprint, BF_FP_SIZE);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_vectors_whole),
	        cmocka_unit_test(test_vectors_byte_by_byte),
	        cmocka_unit_test(test_vectors_random_splits),
	        cmocka_unit_test(test_vectors_milter_style),
	        cmocka_unit_test(test_groups),
	        cmocka_unit_test(test_message_id),
	        cmocka_unit_test(test_text_forms),
	        cmocka_unit_test(test_separators),
	};

	vector_dir = argc > 1 ? argv[1] : "tests/data/fingerprint";
	return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
