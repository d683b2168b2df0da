/* SPDX-License-Identifier: GPL-2.0-only */
/* The layout of a base's index file, shared by cl_base.c (writing and
 * loading it) and cl_base_check.c (opening it for checks); private to the
 * core. The file: INDEX_MAGIC, version (u32), chunk size (u32), disk and
 * memory sizes (u64), the base id, one SHA-256 per chunk of the disk then
 * of the memory, and a SHA-256 of all that (docs/FORMAT.md). */
#ifndef CL_BASE_INDEX_H
#define CL_BASE_INDEX_H

#include <stdint.h>

#include "cl_base.h"
#include "cl_util.h"

#define INDEX_MAGIC   "CLBIDX01"
#define INDEX_VERSION 1
#define INDEX_HDR     (8 + 4 + 4 + 8 + 8 + CL_SHA256_LEN)
#define INDEX_BLOCK   (64u << 10) /* streamed check: bytes hashed per read */

static inline void put_le(uint8_t *p, uint64_t v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	int i;

	for (i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Opens the index at path read-only into *fd, its header into hdr, checked
 * against b's chunk size and image sizes and the file's size against the
 * chunk counts; -EBADMSG naming the file otherwise (*fd then closed). */
int cl_base_index_open_file(const struct cl_base *b, const char *path, uint8_t hdr[INDEX_HDR],
                            int *fd);

#endif
