/* SPDX-License-Identifier: GPL-2.0-only */
/* Unit tests for cl_recindex: the record index that apply, verify and the
 * lazy engine share (sorted lists per image, has-a-record bitmaps, records
 * per segment in meta order, the lookup of chunk k's record). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cl_recindex.h"

/* A small meta, records out of chunk order: disk chunks 9, 2, 5 and
 * memory chunks 3, 0; payloads in segments 1 and 0. */
static struct cl_chunk chunks[] = {
    {.index = 9, .image = CL_DISK, .recipe = CL_R_RAW, .p = {.seg = 1}},
    {.index = 3, .image = CL_MEMORY, .recipe = CL_R_DELTA, .p = {.seg = 0}},
    {.index = 2, .image = CL_DISK, .recipe = CL_R_ZERO},
    {.index = 5, .image = CL_DISK, .recipe = CL_R_DEDUP, .arg = 0, .p = {.seg = 1}},
    {.index = 0, .image = CL_MEMORY, .recipe = CL_R_BASE_DISK, .arg = 4},
};

static void make_meta(struct cl_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->chunk_size = 4096;
	m->image_size[CL_DISK] = 10 * 4096;
	m->image_size[CL_MEMORY] = 4 * 4096 - 100; /* a short last chunk */
	m->nsegments = 3;                          /* segment 2 serves no record */
	m->nchunks = sizeof(chunks) / sizeof(chunks[0]);
	m->chunks = chunks;
}

static void test_lists(void **state)
{
	struct cl_recindex ix;
	struct cl_meta m;

	(void)state;
	make_meta(&m);
	assert_int_equal(cl_recindex_build(&m, &ix), 0);
	assert_int_equal(ix.nrecs[CL_DISK], 3);
	assert_int_equal(ix.nrecs[CL_MEMORY], 2);
	/* Sorted by chunk index within each image. */
	assert_int_equal(ix.recs[CL_DISK][0], 2);
	assert_int_equal(ix.recs[CL_DISK][1], 3);
	assert_int_equal(ix.recs[CL_DISK][2], 0);
	assert_int_equal(ix.recs[CL_MEMORY][0], 4);
	assert_int_equal(ix.recs[CL_MEMORY][1], 1);
	assert_int_equal(ix.npayload[CL_DISK], 2);
	assert_int_equal(ix.npayload[CL_MEMORY], 1);
	/* Segment 0: record 1; segment 1: records 0 and 3 (meta order); 2: none. */
	assert_int_equal(ix.seg_start[0], 0);
	assert_int_equal(ix.seg_start[1], 1);
	assert_int_equal(ix.seg_start[2], 3);
	assert_int_equal(ix.seg_start[3], 3);
	assert_int_equal(ix.seg_recs[0], 1);
	assert_int_equal(ix.seg_recs[1], 0);
	assert_int_equal(ix.seg_recs[2], 3);
	assert_int_equal(ix.seg_nrec[CL_DISK][1], 2);
	assert_int_equal(ix.seg_nrec[CL_MEMORY][0], 1);
	assert_int_equal(ix.seg_nrec[CL_DISK][0], 0);
	cl_recindex_free(&ix);
}

static void test_find(void **state)
{
	struct cl_recindex ix;
	struct cl_meta m;
	uint64_t k;

	(void)state;
	make_meta(&m);
	assert_int_equal(cl_recindex_build(&m, &ix), 0);
	for (k = 0; k < 10; k++) {
		const struct cl_chunk *c = cl_recindex_find(&ix, CL_DISK, k);
		int want = k == 2 || k == 5 || k == 9;
		assert_int_equal(cl_recindex_has(&ix, CL_DISK, k), want);
		if (want) {
			assert_non_null(c);
			assert_int_equal(c->index, k);
			assert_int_equal(c->image, CL_DISK);
		} else {
			assert_null(c);
		}
	}
	assert_ptr_equal(cl_recindex_find(&ix, CL_MEMORY, 3), &chunks[1]);
	assert_ptr_equal(cl_recindex_find(&ix, CL_MEMORY, 0), &chunks[4]);
	assert_null(cl_recindex_find(&ix, CL_MEMORY, 2));
	cl_recindex_free(&ix);
}

static void test_empty(void **state)
{
	struct cl_recindex ix;
	struct cl_meta m;

	(void)state;
	make_meta(&m);
	m.nchunks = 0;
	m.nsegments = 0;
	assert_int_equal(cl_recindex_build(&m, &ix), 0);
	assert_int_equal(ix.nrecs[CL_DISK], 0);
	assert_null(cl_recindex_find(&ix, CL_DISK, 4));
	cl_recindex_free(&ix);
	assert_int_equal(cl_recindex_build(NULL, &ix), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lists),
	    cmocka_unit_test(test_find),
	    cmocka_unit_test(test_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
