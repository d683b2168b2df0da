/* SPDX-License-Identifier: GPL-2.0-only */
/* Segment decoding: the SHA-256 check and xz/zstd decompression to exactly
 * rlen bytes (cl_segment_decode, over cl_codec_decompress).
 *
 * Input: a byte whose low bit picks the codec (0 xz, 1 zstd), rlen as 3
 * bytes little-endian, then the compressed segment. The target builds a
 * one-segment meta whose SHA-256 matches, so every input reaches the codec;
 * it also checks that a wrong SHA-256 is refused before decoding. */
#include "cl_error.h"
#include "cl_meta.h"
#include "cl_synth.h"
#include "cl_util.h"
#include "fuzz_common.h"

#include <errno.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cl_segment seg = {0};
	struct cl_meta m = {0};
	uint8_t *comp, *raw;
	int r;

	m.codec = fuzz_take(&data, &size, 1) & 1 ? CL_CODEC_ZSTD : CL_CODEC_XZ;
	seg.rlen = (uint32_t)fuzz_take(&data, &size, 3);
	if (!size)
		return 0;
	seg.clen = (uint32_t)size;
	m.nsegments = 1;
	m.segments = &seg;
	m.pack_size = size;
	comp = fuzz_dup(data, size);
	raw = malloc(seg.rlen ? seg.rlen : 1);
	FUZZ_CHECK(comp && raw);
	cl_sha256(comp, size, seg.sha256);

	r = cl_segment_decode(&m, 0, comp, size, raw);
	FUZZ_CHECK(r == 0 || r == -EBADMSG);
	if (r == 0) {
		/* The same bytes with one more or one fewer raw byte expected
		 * must be refused: decoding is exact or nothing. */
		uint8_t *other = malloc(seg.rlen + 1);

		FUZZ_CHECK(other);
		FUZZ_CHECK(cl_codec_decompress(m.codec, comp, size, other, seg.rlen + 1) ==
		           -EBADMSG);
		if (seg.rlen)
			FUZZ_CHECK(cl_codec_decompress(m.codec, comp, size, other, seg.rlen - 1) ==
			           -EBADMSG);
		free(other);
	}
	seg.sha256[0] ^= 1;
	FUZZ_CHECK(cl_segment_decode(&m, 0, comp, size, raw) == -EBADMSG);
	cl_error_clear();
	free(comp);
	free(raw);
	return 0;
}
