/* SPDX-License-Identifier: GPL-2.0-only */
/* Shared helpers of the fuzz targets. A finding is a sanitizer report, a
 * crash, a leak, a timeout, or a broken invariant (FUZZ_CHECK aborts). */
#ifndef CL_FUZZ_COMMON_H
#define CL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__,       \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Takes n bytes (little-endian, n <= 8) off the front of the input; missing
 * bytes read as zero. */
static inline uint64_t fuzz_take(const uint8_t **data, size_t *size, unsigned n)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < n && *size; i++) {
		v |= (uint64_t)(*data)[0] << (8 * i);
		(*data)++;
		(*size)--;
	}
	return v;
}

/* A malloc'd copy of len bytes (at least 1 byte allocated), so that ASan
 * sees reads past the end of the input exactly. */
static inline uint8_t *fuzz_dup(const uint8_t *data, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	if (p && len)
		for (size_t i = 0; i < len; i++)
			p[i] = data[i];
	return p;
}

#endif
