/* SPDX-License-Identifier: GPL-2.0-only */
/* The VCDIFF wire format of RFC 3284 as cl_vcdiff.c's encoder and decoder
 * both see it (private to synth/overlay): header and window indicator
 * bits, the address cache modes, the default code table and its opcodes,
 * varints, the magic and xdelta3's Adler-32 window checksum. */
#ifndef CL_VCDIFF_FORMAT_H
#define CL_VCDIFF_FORMAT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

enum { VCD_NOOP = 0, VCD_ADD = 1, VCD_RUN = 2, VCD_COPY = 3 };

#define VCD_DECOMPRESS 0x01
#define VCD_CODETABLE  0x02
#define VCD_APPHEADER  0x04 /* xdelta3 extension */

#define VCD_SOURCE  0x01
#define VCD_TARGET  0x02
#define VCD_ADLER32 0x04 /* xdelta3 extension */

#define S_NEAR     4
#define S_SAME     3
#define SAME_SLOTS (S_SAME * 256)
#define MODE_HERE  1
#define MODE_NEAR  2
#define MODE_SAME  (2 + S_NEAR)

#define VARINT_MAX 10 /* bytes of a 64-bit varint */

extern const uint8_t cl_vcdiff_magic[4];

/* The default code table of RFC 3284 section 5.6. */
struct vcd_code {
	uint8_t type1, size1, mode1, type2, size2, mode2;
};

extern const struct vcd_code cl_vcdiff_code_table[256];

/* Opcodes of the same table, computed the other way round for the encoder. */
#define OP_RUN        0
#define OP_ADD(s)     (1 + (s))                           /* s in 0..17 */
#define OP_COPY(m, s) (19 + 16 * (m) + ((s) ? (s)-3 : 0)) /* s 0 or 4..18 */
#define OP_ADD_COPY(a, m, c)                                                                       \
	((m) < MODE_SAME ? 163 + 12 * (m) + 3 * ((a)-1) + ((c)-4)                                  \
	                 : 235 + 4 * ((m)-MODE_SAME) + ((a)-1))
#define OP_COPY_ADD(m) (247 + (m))

static inline size_t cl_vcdiff_varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >>= 7)
		n++;
	return n;
}

static inline uint8_t *cl_vcdiff_put_varint(uint8_t *p, uint64_t v)
{
	size_t n = cl_vcdiff_varint_len(v);

	for (size_t i = n; i-- > 0; v >>= 7)
		p[i] = (uint8_t)((v & 0x7f) | (i + 1 < n ? 0x80 : 0));
	return p + n;
}

/* Reads a varint from [*pp, end); rejects truncation and values over 64 bits. */
static inline int cl_vcdiff_get_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;
	uint8_t b;

	do {
		if (p == end || v >> 57)
			return -EINVAL;
		b = *p++;
		v = (v << 7) | (b & 0x7f);
	} while (b & 0x80);
	*pp = p;
	*out = v;
	return 0;
}

/* xdelta3's window checksum. */
uint32_t cl_vcdiff_adler32(const uint8_t *p, size_t n);

#endif
