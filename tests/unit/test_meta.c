/* SPDX-License-Identifier: GPL-2.0-only */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cl_meta.h"

/* A small valid meta: 2 segments, one record of every recipe. */
static struct cl_meta *sample(void)
{
	struct cl_meta *m = calloc(1, sizeof(*m));
	int i;

	m->version = CL_META_VERSION;
	memset(m->base_id, 0xab, CL_SHA256_LEN);
	m->chunk_size = 4096;
	m->codec = CL_CODEC_ZSTD;
	m->image_size[CL_DISK] = 10 * 4096 + 100;
	m->image_size[CL_MEMORY] = 8 * 4096;
	m->base_image_size[CL_DISK] = 10 * 4096;
	m->base_image_size[CL_MEMORY] = 8 * 4096;
	m->pack = strdup("overlay-blob");
	m->nsegments = 2;
	m->segments = calloc(2, sizeof(*m->segments));
	m->segments[0] = (struct cl_segment){.offset = 0, .clen = 500, .rlen = 9000};
	m->segments[1] = (struct cl_segment){.offset = 500, .clen = 300, .rlen = 4196};
	m->pack_size = 800;
	m->state = (struct cl_blob){.present = 1, .p = {0, 0, 700}};
	m->nchunks = 6;
	m->chunks = calloc(6, sizeof(*m->chunks));
	m->chunks[0] = (struct cl_chunk){.image = CL_MEMORY, .index = 1, .recipe = CL_R_ZERO};
	m->chunks[1] =
	    (struct cl_chunk){.image = CL_MEMORY, .index = 2, .recipe = CL_R_BASE_DISK, .arg = 9};
	m->chunks[2] = (struct cl_chunk){
	    .image = CL_DISK, .index = 0, .recipe = CL_R_RAW, .p = {0, 700, 4096}};
	m->chunks[3] =
	    (struct cl_chunk){.image = CL_DISK, .index = 10, .recipe = CL_R_DELTA, .p = {1, 0, 50}};
	m->chunks[4] = (struct cl_chunk){
	    .image = CL_DISK, .index = 3, .recipe = CL_R_DEDUP, .arg = 2, .p = {0, 700, 4096}};
	m->chunks[5] =
	    (struct cl_chunk){.image = CL_DISK, .index = 4, .recipe = CL_R_BASE_MEMORY, .arg = 7};
	for (i = 0; i < 6; i++)
		memset(m->chunks[i].sha256, i + 1, CL_SHA256_LEN);
	memcpy(m->chunks[4].sha256, m->chunks[2].sha256, CL_SHA256_LEN);
	return m;
}

static int parse(const struct cl_meta *m, struct cl_meta **out)
{
	size_t len;
	void *buf;
	int r;

	assert_int_equal(cl_meta_encode(m, &buf, &len), 0);
	r = cl_meta_parse(buf, len, "test", out);
	free(buf);
	return r;
}

static void test_roundtrip(void **state)
{
	struct cl_meta *m = sample(), *p;

	(void)state;
	assert_int_equal(parse(m, &p), 0);
	assert_int_equal(p->version, CL_META_VERSION);
	assert_memory_equal(p->base_id, m->base_id, CL_SHA256_LEN);
	assert_int_equal(p->codec, CL_CODEC_ZSTD);
	assert_int_equal(p->image_size[CL_DISK], m->image_size[CL_DISK]);
	assert_string_equal(p->pack, "overlay-blob");
	assert_int_equal(p->nsegments, 2);
	assert_int_equal(p->segments[1].offset, 500);
	assert_true(p->state.present);
	assert_false(p->domain.present);
	assert_int_equal(p->nchunks, 6);
	assert_memory_equal(p->chunks, m->chunks, 6 * sizeof(*m->chunks));
	cl_meta_free(p);
	cl_meta_free(m);
}

/* Every truncation of a valid meta is refused cleanly. */
static void test_truncated(void **state)
{
	struct cl_meta *m = sample(), *p;
	size_t len, n;
	void *buf;

	(void)state;
	assert_int_equal(cl_meta_encode(m, &buf, &len), 0);
	for (n = 0; n < len; n++)
		assert_int_equal(cl_meta_parse(buf, n, "t", &p), -EBADMSG);
	free(buf);
	cl_meta_free(m);
}

/* Flipping any byte never crashes; most flips are caught. */
static void test_flips(void **state)
{
	struct cl_meta *m = sample(), *p;
	size_t len, n, caught = 0;
	uint8_t *buf;

	(void)state;
	assert_int_equal(cl_meta_encode(m, (void **)&buf, &len), 0);
	for (n = 0; n < len; n++) {
		buf[n] ^= 0x5a;
		if (cl_meta_parse(buf, len, "t", &p) < 0)
			caught++;
		else
			cl_meta_free(p);
		buf[n] ^= 0x5a;
	}
	assert_true(caught > len / 4);
	free(buf);
	cl_meta_free(m);
}

static void expect_bad(struct cl_meta *m)
{
	struct cl_meta *p = NULL;

	assert_true(parse(m, &p) < 0);
	assert_null(p);
	cl_meta_free(m);
}

static void test_invalid(void **state)
{
	struct cl_meta *m, *p;

	(void)state;
	m = sample();
	m->version = 2;
	assert_int_equal(parse(m, &p), -EPROTONOSUPPORT);
	cl_meta_free(m);

	m = sample();
	m->chunks[3].p.len = 4197; /* past its segment */
	expect_bad(m);
	m = sample();
	m->chunks[2].p.seg = 2; /* no such segment */
	expect_bad(m);
	m = sample();
	m->chunks[4].arg = 5; /* dedup must point back */
	expect_bad(m);
	m = sample();
	m->chunks[4].arg = 0; /* dedup of a non-payload record */
	expect_bad(m);
	m = sample();
	m->chunks[5].index = 3; /* disk 3 twice */
	expect_bad(m);
	m = sample();
	m->chunks[1].arg = 10; /* base disk has 10 chunks */
	expect_bad(m);
	m = sample();
	m->chunks[0].index = 8; /* memory has 8 chunks */
	expect_bad(m);
	m = sample();
	m->segments[1].offset = 501; /* gap in the pack */
	expect_bad(m);
	m = sample();
	m->pack_size = 801;
	expect_bad(m);
	m = sample();
	m->chunks[2].p.len = 100; /* raw payload must be a whole chunk */
	expect_bad(m);
	m = sample();
	m->chunk_size = 3000;
	expect_bad(m);
	m = sample();
	free(m->pack);
	m->pack = strdup("../etc/passwd");
	expect_bad(m);
}

static void test_chunk_math(void **state)
{
	(void)state;
	assert_int_equal(cl_chunk_count(0, 4096), 0);
	assert_int_equal(cl_chunk_count(1, 4096), 1);
	assert_int_equal(cl_chunk_count(8192, 4096), 2);
	assert_int_equal(cl_chunk_count(8193, 4096), 3);
	assert_int_equal(cl_chunk_len(8193, 4096, 2), 1);
	assert_int_equal(cl_chunk_len(8193, 4096, 1), 4096);
	assert_int_equal(cl_chunk_len(8193, 4096, 3), 0);
}

/* left_out: optional; absent when zero (the meta is then what earlier
 * versions wrote), kept when set. */
static void test_left_out(void **state)
{
	struct cl_meta *m = sample(), *p;
	size_t len0, len1;
	void *b0, *b1;

	(void)state;
	assert_int_equal(cl_meta_encode(m, &b0, &len0), 0);
	assert_int_equal(parse(m, &p), 0);
	assert_int_equal(p->left_out[CL_DISK], 0);
	assert_int_equal(p->left_out[CL_MEMORY], 0);
	cl_meta_free(p);
	m->left_out[CL_DISK] = 5;
	m->left_out[CL_MEMORY] = 123456789;
	assert_int_equal(cl_meta_encode(m, &b1, &len1), 0);
	assert_true(len1 != len0 || memcmp(b0, b1, len0));
	assert_int_equal(parse(m, &p), 0);
	assert_int_equal(p->left_out[CL_DISK], 5);
	assert_int_equal(p->left_out[CL_MEMORY], 123456789);
	cl_meta_free(p);
	free(b0);
	free(b1);
	cl_meta_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),  cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_flips),      cmocka_unit_test(test_invalid),
	    cmocka_unit_test(test_chunk_math), cmocka_unit_test(test_left_out),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
