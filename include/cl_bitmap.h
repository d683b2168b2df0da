/* SPDX-License-Identifier: GPL-2.0-only */
/* Bitmaps of chunks and segments: bit i is bit i % 8 of byte i / 8 (the
 * order the presence map and the kept store's map are written in). */
#ifndef CL_BITMAP_H
#define CL_BITMAP_H

#include <stdint.h>
#include <stdlib.h>

/* Bytes of a bitmap of nbits bits; one spare byte, so that an empty map
 * is still an allocation (and the files written from maps keep their size). */
static inline size_t cl_bitmap_bytes(uint64_t nbits)
{
	return (size_t)(nbits / 8 + 1);
}

/* A zeroed bitmap of nbits bits, or NULL; free() it. */
static inline uint8_t *cl_bitmap_new(uint64_t nbits)
{
	return calloc(cl_bitmap_bytes(nbits), 1);
}

static inline int cl_bit_get(const uint8_t *b, uint64_t i)
{
	return b[i / 8] >> (i % 8) & 1;
}

static inline void cl_bit_set(uint8_t *b, uint64_t i)
{
	b[i / 8] |= (uint8_t)(1u << (i % 8));
}

static inline void cl_bit_clear(uint8_t *b, uint64_t i)
{
	b[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

/* Number of bits set among the first nbits. */
static inline uint64_t cl_bit_count(const uint8_t *b, uint64_t nbits)
{
	uint64_t i, n = 0;

	for (i = 0; i < nbits; i++)
		n += (uint64_t)cl_bit_get(b, i);
	return n;
}

#endif
