/* SPDX-License-Identifier: GPL-2.0-only */
/* VCDIFF decoding (cl_vcdiff_decode) against a source.
 *
 * Input: source length (2 bytes LE, cut to what is there), output capacity
 * (3 bytes LE, at most 1 MiB: a chunk), the source bytes, then the delta.
 * Every buffer is an exact-size allocation, so ASan sees any access past
 * its end. */
#include "cl_vcdiff.h"
#include "fuzz_common.h"

#include <errno.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t slen = (size_t)fuzz_take(&data, &size, 2);
	size_t cap = (size_t)fuzz_take(&data, &size, 3) % ((1u << 20) + 1);
	uint8_t *src, *delta, *out;
	size_t out_len = (size_t)-1;
	int r;

	if (slen > size)
		slen = size;
	src = fuzz_dup(data, slen);
	delta = fuzz_dup(data + slen, size - slen);
	out = malloc(cap ? cap : 1);
	FUZZ_CHECK(src && delta && out);
	r = cl_vcdiff_decode(slen ? src : NULL, slen, delta, size - slen, out, cap, &out_len);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ENOSPC || r == -ENOTSUP);
	if (r == 0)
		FUZZ_CHECK(out_len <= cap);
	free(src);
	free(delta);
	free(out);
	return 0;
}
