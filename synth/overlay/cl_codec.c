/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_codec.h"
#include "cl_error.h"

#include <errno.h>
#include <lzma.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

const char *cl_codec_name(enum cl_codec c)
{
	switch (c) {
	case CL_CODEC_XZ:
		return "xz";
	case CL_CODEC_ZSTD:
		return "zstd";
	}
	return NULL;
}

int cl_codec_parse(const char *name, enum cl_codec *out)
{
	if (!name || !out)
		return -EINVAL;
	if (!strcmp(name, "xz") || !strcmp(name, "lzma"))
		*out = CL_CODEC_XZ;
	else if (!strcmp(name, "zstd"))
		*out = CL_CODEC_ZSTD;
	else
		return -EINVAL;
	return 0;
}

int cl_codec_default_level(enum cl_codec c)
{
	return c == CL_CODEC_ZSTD ? 19 : 9;
}

int cl_codec_max_level(enum cl_codec c)
{
	return c == CL_CODEC_ZSTD ? ZSTD_maxCLevel() : 9;
}

static int xz_compress(int level, const void *in, size_t in_len, void **out, size_t *out_len)
{
	lzma_options_lzma opt;
	lzma_filter filters[2];
	size_t cap, pos = 0;
	uint8_t *buf;
	lzma_ret ret;

	if (lzma_lzma_preset(&opt, (uint32_t)level))
		return -EINVAL;
	/* A segment decodes alone, so a dictionary larger than the segment
	 * only costs encoder memory (674 MiB per thread at -9). */
	if (opt.dict_size > in_len)
		opt.dict_size = in_len < LZMA_DICT_SIZE_MIN ? LZMA_DICT_SIZE_MIN : (uint32_t)in_len;
	filters[0].id = LZMA_FILTER_LZMA2;
	filters[0].options = &opt;
	filters[1].id = LZMA_VLI_UNKNOWN;
	cap = lzma_stream_buffer_bound(in_len);
	buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	ret =
	    lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC64, NULL, in, in_len, buf, &pos, cap);
	if (ret != LZMA_OK) {
		free(buf);
		return cl_errorf(ret == LZMA_MEM_ERROR ? -ENOMEM : -EIO,
		                 "xz: compression failed (%d)", (int)ret);
	}
	*out = buf;
	*out_len = pos;
	return 0;
}

static int zstd_compress(int level, const void *in, size_t in_len, void **out, size_t *out_len)
{
	ZSTD_CCtx *cctx;
	size_t cap, n;
	void *buf;

	cap = ZSTD_compressBound(in_len);
	buf = malloc(cap);
	cctx = ZSTD_createCCtx();
	if (!buf || !cctx) {
		free(buf);
		ZSTD_freeCCtx(cctx);
		return -ENOMEM;
	}
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
	n = ZSTD_compress2(cctx, buf, cap, in, in_len);
	ZSTD_freeCCtx(cctx);
	if (ZSTD_isError(n)) {
		free(buf);
		return cl_errorf(-EIO, "zstd: compression failed: %s", ZSTD_getErrorName(n));
	}
	*out = buf;
	*out_len = n;
	return 0;
}

int cl_codec_compress(enum cl_codec c, int level, const void *in, size_t in_len, void **out,
                      size_t *out_len)
{
	if ((!in && in_len) || !out || !out_len)
		return -EINVAL;
	if (level < 0)
		level = cl_codec_default_level(c);
	if (level > cl_codec_max_level(c))
		return cl_errorf(-EINVAL, "%s: level %d is above the maximum %d", cl_codec_name(c),
		                 level, cl_codec_max_level(c));
	switch (c) {
	case CL_CODEC_XZ:
		return xz_compress(level, in, in_len, out, out_len);
	case CL_CODEC_ZSTD:
		return zstd_compress(level, in, in_len, out, out_len);
	}
	return -EINVAL;
}

static int xz_decompress(const void *in, size_t in_len, void *out, size_t out_len)
{
	uint64_t memlimit = 64u << 20;
	size_t in_pos = 0, out_pos = 0;
	lzma_ret ret;

	/* LZMA_OK means one whole stream decoded and its CRC64 held; a stream
	 * longer than out_len gives LZMA_BUF_ERROR rather than being cut. */
	ret = lzma_stream_buffer_decode(&memlimit, 0, NULL, in, &in_pos, in_len, out, &out_pos,
	                                out_len);
	if (ret != LZMA_OK || in_pos != in_len || out_pos != out_len)
		return -EBADMSG;
	return 0;
}

static int zstd_decompress(const void *in, size_t in_len, void *out, size_t out_len)
{
	unsigned long long content;
	size_t n;

	content = ZSTD_getFrameContentSize(in, in_len);
	if (content != out_len)
		return -EBADMSG;
	if (ZSTD_findFrameCompressedSize(in, in_len) != in_len)
		return -EBADMSG;
	n = ZSTD_decompress(out, out_len, in, in_len);
	if (ZSTD_isError(n) || n != out_len)
		return -EBADMSG;
	return 0;
}

int cl_codec_decompress(enum cl_codec c, const void *in, size_t in_len, void *out, size_t out_len)
{
	if ((!in && in_len) || (!out && out_len))
		return -EINVAL;
	switch (c) {
	case CL_CODEC_XZ:
		return xz_decompress(in, in_len, out, out_len);
	case CL_CODEC_ZSTD:
		return zstd_decompress(in, in_len, out, out_len);
	}
	return -EINVAL;
}
