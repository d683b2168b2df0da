/* SPDX-License-Identifier: GPL-2.0-only */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cl_trace.h"

static const uint64_t nchunks[CL_NIMAGES] = {100, 50};

static void test_parse(void **state)
{
	const char *t = "# first access\nmemory 3\ndisk 7\n\ndisk 7\nmemory  49\r\ndisk\t0";
	struct cl_trace_entry *e;
	size_t n;

	(void)state;
	assert_int_equal(cl_trace_parse(t, strlen(t), "t", nchunks, &e, &n), 0);
	assert_int_equal(n, 4); /* the repeated `disk 7` counts once */
	assert_int_equal(e[0].image, CL_MEMORY);
	assert_int_equal(e[0].index, 3);
	assert_int_equal(e[1].image, CL_DISK);
	assert_int_equal(e[1].index, 7);
	assert_int_equal(e[2].index, 49);
	assert_int_equal(e[3].image, CL_DISK);
	assert_int_equal(e[3].index, 0);
	free(e);
}

static void test_bad(void **state)
{
	const char *bad[] = {"disk",
	                     "disk -1",
	                     "disk 1x",
	                     "cpu 3",
	                     "disk 100",
	                     "memory 50",
	                     "disk 99999999999999999999999",
	                     "diskette 1",
	                     "disk 1 2"};
	struct cl_trace_entry *e;
	size_t n, i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_true(cl_trace_parse(bad[i], strlen(bad[i]), "t", nchunks, &e, &n) < 0);
}

static void test_empty(void **state)
{
	struct cl_trace_entry *e;
	size_t n;

	(void)state;
	assert_int_equal(cl_trace_parse("", 0, "t", nchunks, &e, &n), 0);
	assert_int_equal(n, 0);
	free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_bad),
	    cmocka_unit_test(test_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
