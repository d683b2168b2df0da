/* SPDX-License-Identifier: GPL-2.0-only */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cl_codec.h"

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	size_t i;

	/* Half text-like, half noise: both paths of the compressors. */
	for (i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = i < n / 2 ? (uint8_t)("cloudlet synthesis "[i % 19]) : (uint8_t)(seed >> 16);
	}
}

static void roundtrip(enum cl_codec c, size_t n)
{
	uint8_t *in = calloc(1, n + 1), *back = calloc(1, n + 1);
	void *z;
	size_t zlen;

	fill(in, n, (unsigned)n);
	assert_int_equal(cl_codec_compress(c, -1, in, n, &z, &zlen), 0);
	assert_int_equal(cl_codec_decompress(c, z, zlen, back, n), 0);
	assert_memory_equal(in, back, n);
	if (n > 0) {
		/* A wrong expected length is an error, never a short result. */
		assert_int_equal(cl_codec_decompress(c, z, zlen, back, n - 1), -EBADMSG);
	}
	assert_int_equal(cl_codec_decompress(c, z, zlen, back, n + 1), -EBADMSG);
	/* Truncations and a flipped byte are detected. */
	assert_int_equal(cl_codec_decompress(c, z, zlen - 1, back, n), -EBADMSG);
	assert_int_equal(cl_codec_decompress(c, z, zlen / 2, back, n), -EBADMSG);
	((uint8_t *)z)[zlen / 2] ^= 0x40;
	assert_int_not_equal(cl_codec_decompress(c, z, zlen, back, n), 0);
	free(z);
	free(in);
	free(back);
}

static void test_xz(void **state)
{
	(void)state;
	roundtrip(CL_CODEC_XZ, 0);
	roundtrip(CL_CODEC_XZ, 1);
	roundtrip(CL_CODEC_XZ, 4096);
	roundtrip(CL_CODEC_XZ, 1 << 20);
}

static void test_zstd(void **state)
{
	(void)state;
	roundtrip(CL_CODEC_ZSTD, 0);
	roundtrip(CL_CODEC_ZSTD, 1);
	roundtrip(CL_CODEC_ZSTD, 4096);
	roundtrip(CL_CODEC_ZSTD, 1 << 20);
}

static void test_trailing_garbage(void **state)
{
	uint8_t in[1000], back[1000], *z2;
	enum cl_codec codecs[] = {CL_CODEC_XZ, CL_CODEC_ZSTD};
	size_t zlen, i;
	void *z;

	(void)state;
	fill(in, sizeof(in), 7);
	for (i = 0; i < 2; i++) {
		assert_int_equal(cl_codec_compress(codecs[i], 1, in, sizeof(in), &z, &zlen), 0);
		z2 = malloc(zlen + 3);
		memcpy(z2, z, zlen);
		memset(z2 + zlen, 0, 3);
		assert_int_equal(cl_codec_decompress(codecs[i], z2, zlen + 3, back, sizeof(in)),
		                 -EBADMSG);
		free(z2);
		free(z);
	}
}

static void test_names(void **state)
{
	enum cl_codec c;

	(void)state;
	assert_int_equal(cl_codec_parse("xz", &c), 0);
	assert_int_equal(c, CL_CODEC_XZ);
	assert_int_equal(cl_codec_parse("zstd", &c), 0);
	assert_string_equal(cl_codec_name(c), "zstd");
	assert_int_equal(cl_codec_parse("gzip", &c), -EINVAL);
	assert_int_not_equal(cl_codec_compress(CL_CODEC_XZ, 10, "a", 1, (void **)&c, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_xz),
	    cmocka_unit_test(test_zstd),
	    cmocka_unit_test(test_trailing_garbage),
	    cmocka_unit_test(test_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
