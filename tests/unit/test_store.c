/* SPDX-License-Identifier: GPL-2.0-only */
/* Unit tests for cl_store: the map of a kept copy-on-write store comes back
 * for its own overlay only, and a damaged one is refused. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cl_cache.h"
#include "cl_store.h"

static char dir[PATH_MAX];
static const uint64_t n[CL_NIMAGES] = {1000, 77};

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/cl-test-store-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	return cl_cache_rm_rf(dir);
}

/* Saves maps with bits k*7 set for the overlay id filled with byte idb. */
static void save(int idb)
{
	uint8_t id[CL_SHA256_LEN], m0[126] = {0}, m1[10] = {0};
	const uint8_t *maps[CL_NIMAGES] = {m0, m1};
	uint64_t k;

	memset(id, idb, sizeof(id));
	for (k = 0; k < n[0]; k += 7)
		m0[k / 8] |= (uint8_t)(1u << (k % 8));
	m1[76 / 8] |= 1u << (76 % 8);
	assert_int_equal(cl_store_map_save(dir, id, n, maps), 0);
}

static int load(int idb, const uint64_t *counts, uint8_t *m0, uint8_t *m1)
{
	uint8_t id[CL_SHA256_LEN], *maps[CL_NIMAGES] = {m0, m1};

	memset(id, idb, sizeof(id));
	return cl_store_map_load(dir, id, counts, maps);
}

static void test_roundtrip(void **state)
{
	uint8_t m0[126] = {0}, m1[10] = {0};
	uint64_t k;

	(void)state;
	assert_int_equal(load(1, n, m0, m1), -ENOENT);
	save(1);
	assert_int_equal(load(1, n, m0, m1), 0);
	for (k = 0; k < n[0]; k++)
		assert_int_equal(m0[k / 8] >> (k % 8) & 1, k % 7 == 0);
	for (k = 0; k < n[1]; k++)
		assert_int_equal(m1[k / 8] >> (k % 8) & 1, k == 76);
}

static void test_other_overlay(void **state)
{
	uint8_t m0[126] = {0}, m1[10] = {0};
	uint64_t other[CL_NIMAGES] = {1000, 78};

	(void)state;
	save(1);
	assert_int_equal(load(2, n, m0, m1), -ESTALE);
	assert_int_equal(load(1, other, m0, m1), -ESTALE);
	assert_int_equal(m0[0] | m1[9], 0); /* nothing loaded */
}

static void test_damaged(void **state)
{
	uint8_t m0[126] = {0}, m1[10] = {0};
	char path[PATH_MAX + 16];
	FILE *f;

	(void)state;
	save(1);
	snprintf(path, sizeof(path), "%s/%s", dir, CL_STORE_MAP);
	f = fopen(path, "r+");
	assert_non_null(f);
	assert_int_equal(fseek(f, 60, SEEK_SET), 0);
	assert_int_equal(fputc(0xff, f), 0xff);
	fclose(f);
	assert_int_equal(load(1, n, m0, m1), -EBADMSG);
	assert_int_equal(truncate(path, 20), 0);
	assert_int_equal(load(1, n, m0, m1), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_overlay, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
