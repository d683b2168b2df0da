/* SPDX-License-Identifier: GPL-2.0-only */
/* The tables and checksum of the VCDIFF format (see cl_vcdiff_format.h). */
#include "cl_vcdiff_format.h"

const uint8_t cl_vcdiff_magic[4] = {0xd6, 0xc3, 0xc4, 0x00};

/* clang-format off */
#define C1(t, s, m)	{t, s, m, VCD_NOOP, 0, 0}
#define CP(m, s)	C1(VCD_COPY, s, m)
#define COPY16(m)	CP(m, 0), CP(m, 4), CP(m, 5), CP(m, 6), CP(m, 7), CP(m, 8), CP(m, 9), \
			CP(m, 10), CP(m, 11), CP(m, 12), CP(m, 13), CP(m, 14), CP(m, 15), \
			CP(m, 16), CP(m, 17), CP(m, 18)
#define AC(a, c, m)	{VCD_ADD, a, 0, VCD_COPY, c, m}
#define AC3(a, m)	AC(a, 4, m), AC(a, 5, m), AC(a, 6, m)
#define AC12(m)		AC3(1, m), AC3(2, m), AC3(3, m), AC3(4, m)
#define AC4(m)		AC(1, 4, m), AC(2, 4, m), AC(3, 4, m), AC(4, 4, m)
#define CA(m)		{VCD_COPY, 4, m, VCD_ADD, 1, 0}

const struct vcd_code cl_vcdiff_code_table[256] = {
	C1(VCD_RUN, 0, 0),						/* 0 */
	C1(VCD_ADD, 0, 0), C1(VCD_ADD, 1, 0), C1(VCD_ADD, 2, 0),	/* 1..18 */
	C1(VCD_ADD, 3, 0), C1(VCD_ADD, 4, 0), C1(VCD_ADD, 5, 0),
	C1(VCD_ADD, 6, 0), C1(VCD_ADD, 7, 0), C1(VCD_ADD, 8, 0),
	C1(VCD_ADD, 9, 0), C1(VCD_ADD, 10, 0), C1(VCD_ADD, 11, 0),
	C1(VCD_ADD, 12, 0), C1(VCD_ADD, 13, 0), C1(VCD_ADD, 14, 0),
	C1(VCD_ADD, 15, 0), C1(VCD_ADD, 16, 0), C1(VCD_ADD, 17, 0),
	COPY16(0), COPY16(1), COPY16(2), COPY16(3), COPY16(4),		/* 19..162 */
	COPY16(5), COPY16(6), COPY16(7), COPY16(8),
	AC12(0), AC12(1), AC12(2), AC12(3), AC12(4), AC12(5),		/* 163..234 */
	AC4(6), AC4(7), AC4(8),						/* 235..246 */
	CA(0), CA(1), CA(2), CA(3), CA(4), CA(5), CA(6), CA(7), CA(8),	/* 247..255 */
};
/* clang-format on */

uint32_t cl_vcdiff_adler32(const uint8_t *p, size_t n)
{
	uint32_t a = 1, b = 0;

	while (n) {
		/* 5552 is the longest run before b can overflow 32 bits. */
		size_t k = n < 5552 ? n : 5552;

		n -= k;
		while (k >= 4) {
			a += p[0];
			b += a;
			a += p[1];
			b += a;
			a += p[2];
			b += a;
			a += p[3];
			b += a;
			p += 4;
			k -= 4;
		}
		while (k--) {
			a += *p++;
			b += a;
		}
		a %= 65521;
		b %= 65521;
	}
	return b << 16 | a;
}
