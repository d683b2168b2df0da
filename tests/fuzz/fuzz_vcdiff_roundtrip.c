/* SPDX-License-Identifier: GPL-2.0-only */
/* cl_vcdiff_encode -> cl_vcdiff_decode gives back the target exactly.
 *
 * Input: source length (2 bytes LE, cut to what is there), the source, then
 * the target. Also checks the -ENOSPC contract: with a capacity of the
 * target's length, encoding either fails with -ENOSPC or writes a delta no
 * larger that still decodes to the target. */
#include "cl_vcdiff.h"
#include "fuzz_common.h"

#include <errno.h>
#include <string.h>

static void roundtrip(const uint8_t *src, size_t slen, const uint8_t *tgt, size_t tlen, size_t cap)
{
	uint8_t *delta = malloc(cap ? cap : 1), *out = malloc(tlen ? tlen : 1);
	size_t dlen = (size_t)-1, olen = (size_t)-1;
	int r;

	FUZZ_CHECK(delta && out);
	r = cl_vcdiff_encode(slen ? src : NULL, slen, tgt, tlen, delta, cap, &dlen);
	FUZZ_CHECK(r == 0 || r == -ENOSPC);
	FUZZ_CHECK(r == 0 || cap < cl_vcdiff_bound(tlen));
	if (r == 0) {
		FUZZ_CHECK(dlen <= cap);
		FUZZ_CHECK(
		    cl_vcdiff_decode(slen ? src : NULL, slen, delta, dlen, out, tlen, &olen) == 0);
		FUZZ_CHECK(olen == tlen);
		FUZZ_CHECK(!tlen || !memcmp(out, tgt, tlen));
		if (tlen)
			FUZZ_CHECK(cl_vcdiff_decode(slen ? src : NULL, slen, delta, dlen, out,
			                            tlen - 1, &olen) == -ENOSPC);
	}
	free(delta);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t slen = (size_t)fuzz_take(&data, &size, 2);
	uint8_t *src, *tgt;

	if (slen > size)
		slen = size;
	src = fuzz_dup(data, slen);
	tgt = fuzz_dup(data + slen, size - slen);
	FUZZ_CHECK(src && tgt);
	roundtrip(src, slen, tgt, size - slen, cl_vcdiff_bound(size - slen));
	roundtrip(src, slen, tgt, size - slen, size - slen);
	free(src);
	free(tgt);
	return 0;
}
