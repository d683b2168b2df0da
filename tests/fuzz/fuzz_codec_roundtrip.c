/* SPDX-License-Identifier: GPL-2.0-only */
/* cl_codec_compress -> cl_codec_decompress gives back the input exactly,
 * and decompression to any other length fails.
 *
 * Input: a byte (low bit: codec, 0 xz, 1 zstd; the rest: level), then the
 * data. Levels stay low (xz 0-3, zstd 1-6) to keep executions fast. */
#include "cl_codec.h"
#include "cl_error.h"
#include "fuzz_common.h"

#include <errno.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned b = (unsigned)fuzz_take(&data, &size, 1);
	enum cl_codec c = b & 1 ? CL_CODEC_ZSTD : CL_CODEC_XZ;
	int level = c == CL_CODEC_XZ ? (int)(b >> 1) % 4 : 1 + (int)(b >> 1) % 6;
	uint8_t *out;
	size_t zlen;
	void *z;

	FUZZ_CHECK(cl_codec_compress(c, level, data, size, &z, &zlen) == 0);
	out = malloc(size + 1);
	FUZZ_CHECK(out);
	FUZZ_CHECK(cl_codec_decompress(c, z, zlen, out, size) == 0);
	FUZZ_CHECK(!size || !memcmp(out, data, size));
	FUZZ_CHECK(cl_codec_decompress(c, z, zlen, out, size + 1) == -EBADMSG);
	if (size)
		FUZZ_CHECK(cl_codec_decompress(c, z, zlen, out, size - 1) == -EBADMSG);
	if (zlen > 1)
		FUZZ_CHECK(cl_codec_decompress(c, z, zlen - 1, out, size) == -EBADMSG);
	free(out);
	free(z);
	cl_error_clear();
	return 0;
}
