/* SPDX-License-Identifier: GPL-2.0-only */
/* The map of a kept copy-on-write store (see cl_store.h). */
#include "cl_store.h"
#include "cl_error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC     "CLSTORE1"
#define MAGIC_LEN 8
#define HEAD_LEN  (MAGIC_LEN + CL_SHA256_LEN + 8 * CL_NIMAGES)
#define MAX_MAP   (1u << 30) /* 1 GiB: the bitmaps of 32 TiB of 4 KiB chunks */

static uint64_t map_len(const uint64_t nchunks[CL_NIMAGES])
{
	uint64_t len = HEAD_LEN + CL_SHA256_LEN;
	int i;

	for (i = 0; i < CL_NIMAGES; i++)
		len += (nchunks[i] + 7) / 8;
	return len;
}

static void put_u64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

int cl_store_map_save(const char *dir, const uint8_t id[CL_SHA256_LEN],
                      const uint64_t nchunks[CL_NIMAGES], const uint8_t *const maps[CL_NIMAGES])
{
	uint64_t len;
	uint8_t *buf, *p;
	char *path;
	int i, r;

	if (!dir || !id || !nchunks || !maps)
		return -EINVAL;
	len = map_len(nchunks);
	if (len > MAX_MAP)
		return -EFBIG;
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	if (asprintf(&path, "%s/%s", dir, CL_STORE_MAP) < 0) {
		free(buf);
		return -ENOMEM;
	}
	memcpy(buf, MAGIC, MAGIC_LEN);
	memcpy(buf + MAGIC_LEN, id, CL_SHA256_LEN);
	p = buf + MAGIC_LEN + CL_SHA256_LEN;
	for (i = 0; i < CL_NIMAGES; i++, p += 8)
		put_u64(p, nchunks[i]);
	for (i = 0; i < CL_NIMAGES; i++) {
		memcpy(p, maps[i], (nchunks[i] + 7) / 8);
		p += (nchunks[i] + 7) / 8;
	}
	cl_sha256(buf, (size_t)(p - buf), p);
	r = cl_write_file_atomic(path, buf, len, 0600);
	free(path);
	free(buf);
	return r;
}

int cl_store_map_load(const char *dir, const uint8_t id[CL_SHA256_LEN],
                      const uint64_t nchunks[CL_NIMAGES], uint8_t *const maps[CL_NIMAGES])
{
	uint8_t sum[CL_SHA256_LEN], *buf = NULL;
	const uint8_t *p;
	size_t len = 0;
	char *path;
	int i, r;

	if (!dir || !id || !nchunks || !maps)
		return -EINVAL;
	if (asprintf(&path, "%s/%s", dir, CL_STORE_MAP) < 0)
		return -ENOMEM;
	r = cl_read_file(path, MAX_MAP, (void **)&buf, &len);
	if (r < 0)
		goto out;
	if (len < HEAD_LEN + CL_SHA256_LEN || memcmp(buf, MAGIC, MAGIC_LEN)) {
		r = cl_errorf(-EBADMSG, "%s: not a store map", path);
		goto out;
	}
	cl_sha256(buf, len - CL_SHA256_LEN, sum);
	if (memcmp(sum, buf + len - CL_SHA256_LEN, CL_SHA256_LEN)) {
		r = cl_errorf(-EBADMSG, "%s: damaged (SHA-256 mismatch)", path);
		goto out;
	}
	p = buf + MAGIC_LEN + CL_SHA256_LEN;
	for (i = 0; i < CL_NIMAGES; i++, p += 8) {
		uint64_t n = 0;
		int b;

		for (b = 7; b >= 0; b--)
			n = n << 8 | p[b];
		if (n != nchunks[i])
			break;
	}
	if (memcmp(buf + MAGIC_LEN, id, CL_SHA256_LEN) || i < CL_NIMAGES ||
	    len != map_len(nchunks)) {
		r = cl_errorf(-ESTALE, "%s: the store holds the writes of another overlay", path);
		goto out;
	}
	for (i = 0; i < CL_NIMAGES; i++) {
		memcpy(maps[i], p, (nchunks[i] + 7) / 8);
		p += (nchunks[i] + 7) / 8;
	}
out:
	free(buf);
	free(path);
	return r;
}
