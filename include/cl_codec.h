/* SPDX-License-Identifier: GPL-2.0-only */
/* Segment compression: xz (LZMA2) or zstd, one buffer at a time.
 * Each segment is compressed alone so it decodes without any other. */
#ifndef CL_CODEC_H
#define CL_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum cl_codec {
	CL_CODEC_XZ = 1,   /* .xz stream, LZMA2, CRC64 check */
	CL_CODEC_ZSTD = 2, /* zstd frame with content size and checksum */
};

/* "xz" / "zstd"; NULL for an unknown value. */
const char *cl_codec_name(enum cl_codec c);
/* Parses a codec name; 0 or -EINVAL. */
int cl_codec_parse(const char *name, enum cl_codec *out);
/* The default and maximum level for a codec. */
int cl_codec_default_level(enum cl_codec c);
int cl_codec_max_level(enum cl_codec c);

/* Compresses in into a malloc'd buffer the caller frees. level < 0 means the
 * codec's default. */
int cl_codec_compress(enum cl_codec c, int level, const void *in, size_t in_len, void **out,
                      size_t *out_len);

/* Decompresses in into out, which must come out exactly out_len bytes long;
 * anything else (corrupt, truncated, longer, trailing bytes) is -EBADMSG. */
int cl_codec_decompress(enum cl_codec c, const void *in, size_t in_len, void *out, size_t out_len);

#endif
