/* SPDX-License-Identifier: GPL-2.0-only */
/* Chunk hashes of a base (see cl_base.h): hashing images, the hash lookup
 * that overlay creation uses, and checking base bytes against the index,
 * which is opened with a streamed check against the base id and read with
 * pread, never loaded. */
#include "cl_base.h"
#include "cl_base_index.h"
#include "cl_error.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HASH_BATCH 1024 /* chunks hashed per work item */
#ifdef CL_BENCH_NO_BASE_HASH
#define BASE_HASHING 0 /* bench-verify.sh's baseline build (CMakeLists.txt) */
#else
#define BASE_HASHING 1
#endif

void cl_zero_hash(uint32_t chunk_len, uint8_t out[CL_SHA256_LEN])
{
	static _Thread_local uint32_t cached_len = UINT32_MAX;
	static _Thread_local uint8_t cached[CL_SHA256_LEN];
	void *zero;

	if (chunk_len != cached_len) {
		zero = calloc(1, chunk_len ? chunk_len : 1);
		if (!zero)
			abort(); /* a few KiB; nothing sensible to return */
		cl_sha256(zero, chunk_len, cached);
		free(zero);
		cached_len = chunk_len;
	}
	memcpy(out, cached, CL_SHA256_LEN);
}

/* The SHA-256 of a chunk; zero chunks (a fifth of a memory image's data)
 * skip the SHA-256 run: their hash is the zero hash. */
static void chunk_hash(const uint8_t *data, uint32_t len, uint8_t out[CL_SHA256_LEN])
{
	if (cl_is_zero(data, len))
		cl_zero_hash(len, out);
	else
		cl_sha256(data, len, out);
}

struct hash_job {
	int fd;
	const char *path;
	uint64_t size;
	uint32_t chunk_size;
	uint8_t (*hashes)[CL_SHA256_LEN];
	struct cl_progress *prog;
};

static int hash_batch(void *ctx, size_t item)
{
	struct hash_job *j = ctx;
	uint64_t first = (uint64_t)item * HASH_BATCH, n, k, start, end;
	uint8_t zero[CL_SHA256_LEN];
	off_t data;
	uint8_t *buf;
	int r;

	n = cl_chunk_count(j->size, j->chunk_size) - first;
	if (n > HASH_BATCH)
		n = HASH_BATCH;
	start = first * j->chunk_size;
	end = start + n * j->chunk_size;
	if (end > j->size)
		end = j->size;
	/* A batch wholly inside a hole is zeros without reading it. */
	data = lseek(j->fd, (off_t)start, SEEK_DATA);
	if ((data < 0 && errno == ENXIO) || (data >= 0 && (uint64_t)data >= end)) {
		for (k = 0; k < n; k++) {
			cl_zero_hash(cl_chunk_len(j->size, j->chunk_size, first + k), zero);
			memcpy(j->hashes[first + k], zero, CL_SHA256_LEN);
		}
		cl_progress_add(j->prog, end - start);
		return 0;
	}
	buf = malloc(end - start);
	if (!buf)
		return -ENOMEM;
	r = cl_pread_full(j->fd, buf, end - start, start, j->path);
	if (r == 0)
		for (k = 0; k < n; k++)
			chunk_hash(buf + k * j->chunk_size,
			           cl_chunk_len(j->size, j->chunk_size, first + k),
			           j->hashes[first + k]);
	free(buf);
	cl_progress_add(j->prog, end - start);
	return r;
}

int cl_hash_image(int fd, const char *path, uint64_t size, uint32_t chunk_size,
                  uint8_t (*hashes)[CL_SHA256_LEN], struct cl_progress *prog)
{
	struct hash_job j = {fd, path, size, chunk_size, hashes, prog};
	uint64_t n = cl_chunk_count(size, chunk_size);

	if (!path || !chunk_size || (!hashes && n))
		return -EINVAL;
	return cl_pfor(0, (size_t)((n + HASH_BATCH - 1) / HASH_BATCH), hash_batch, &j);
}

/* Hashes the index's chunk hashes as they are streamed, as the base id
 * covers them (see base_compute_id): a digest equal to the registered id
 * proves every hash in the file, so the file's own checksum (which only
 * guards a copy of the index read whole) is not computed again. */
static int index_stream_check(struct cl_base *b, int fd, const char *path, const uint8_t *hdr)
{
	uint8_t id[CL_SHA256_LEN], idhdr[14 + 4 + 16];
	uint64_t off = INDEX_HDR, end = INDEX_HDR + (b->nchunks[0] + b->nchunks[1]) * CL_SHA256_LEN;
	EVP_MD_CTX *idc = EVP_MD_CTX_new();
	unsigned n = CL_SHA256_LEN;
	uint8_t *buf = malloc(INDEX_BLOCK);
	size_t len;
	int r = 0;

	if (!idc || !buf) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(idhdr, "cloudlet-base", 14);
	put_le(idhdr + 14, b->chunk_size, 4);
	put_le(idhdr + 18, b->size[CL_DISK], 8);
	put_le(idhdr + 26, b->size[CL_MEMORY], 8);
	EVP_DigestInit_ex(idc, EVP_sha256(), NULL);
	EVP_DigestUpdate(idc, idhdr, sizeof(idhdr));
	for (; off < end && r == 0; off += len) {
		len = end - off < INDEX_BLOCK ? (size_t)(end - off) : INDEX_BLOCK;
		r = cl_pread_full(fd, buf, len, off, path);
		EVP_DigestUpdate(idc, buf, len);
	}
	if (r < 0)
		goto out;
	EVP_DigestFinal_ex(idc, id, &n);
	if (memcmp(id, b->id, CL_SHA256_LEN) || memcmp(hdr + 32, b->id, CL_SHA256_LEN))
		r = cl_errorf(-EBADMSG,
		              "%s: index does not match base %s (base id mismatch: corrupt, or "
		              "another base's)",
		              path, b->path[CL_DISK]);
out:
	EVP_MD_CTX_free(idc);
	free(buf);
	return r;
}

int cl_base_index_open_file(const struct cl_base *b, const char *path, uint8_t hdr[INDEX_HDR],
                            int *fd)
{
	struct stat st;
	int r;

	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	r = cl_pread_full(*fd, hdr, INDEX_HDR, 0, path);
	if (r == 0 &&
	    (memcmp(hdr, INDEX_MAGIC, 8) || get_le(hdr + 8, 4) != INDEX_VERSION ||
	     get_le(hdr + 12, 4) != b->chunk_size || get_le(hdr + 16, 8) != b->size[CL_DISK] ||
	     get_le(hdr + 24, 8) != b->size[CL_MEMORY]))
		r = cl_errorf(-EBADMSG, "%s: index does not match the base images", path);
	if (r == 0 && (fstat(*fd, &st) < 0 ||
	               (uint64_t)st.st_size !=
	                   INDEX_HDR + (b->nchunks[0] + b->nchunks[1] + 1) * CL_SHA256_LEN))
		r = cl_errorf(-EBADMSG, "%s: index is truncated or corrupt", path);
	if (r < 0) {
		close(*fd);
		*fd = -1;
	}
	return r;
}

int cl_base_open_index(struct cl_base *b)
{
	uint8_t hdr[INDEX_HDR];
	char *path;
	int fd = -1, r;

	if (b && (b->index_fd >= 0 || b->hash[CL_DISK]))
		return 0;
	if (!b || !b->dir || b->fd[CL_DISK] < 0)
		return -EINVAL;
	if (asprintf(&path, "%s/index", b->dir) < 0)
		return -ENOMEM;
	r = cl_base_index_open_file(b, path, hdr, &fd);
	if (r < 0)
		goto out;
	r = index_stream_check(b, fd, path, hdr);
	if (r < 0)
		goto out;
	/* Lookups read what they need; the page cache keeps no more. */
	posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	b->index_fd = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return r;
}

int cl_base_chunk_is_hole(const struct cl_base *b, enum cl_image_id im, uint64_t k,
                          struct cl_base_extents *e)
{
	uint64_t start = k * b->chunk_size, end = start + b->chunk_size;

	/* One SEEK_DATA and one SEEK_HOLE per extent, not per chunk. */
	if (e->data < 0 || (uint64_t)e->hole <= start) {
		e->data = lseek(b->fd[im], (off_t)start, SEEK_DATA);
		if (e->data < 0) {
			e->data = e->hole = (off_t)b->size[im]; /* ENXIO: no more data */
		} else {
			e->hole = lseek(b->fd[im], e->data, SEEK_HOLE);
			if (e->hole < 0)
				e->hole = (off_t)b->size[im];
		}
	}
	return (uint64_t)e->data >= end;
}

/* Where the hash of chunk k of image is in the index file. */
static uint64_t index_offset(const struct cl_base *b, enum cl_image_id image, uint64_t k)
{
	return INDEX_HDR + ((image == CL_MEMORY ? b->nchunks[CL_DISK] : 0) + k) * CL_SHA256_LEN;
}

void cl_base_index_advise(const struct cl_base *b, enum cl_image_id image, uint64_t first,
                          uint64_t n)
{
	if (b->index_fd >= 0 && !b->hash[image])
		posix_fadvise(b->index_fd, (off_t)index_offset(b, image, first),
		              (off_t)(n * CL_SHA256_LEN), POSIX_FADV_WILLNEED);
}

int cl_base_chunk_hashes(const struct cl_base *b, enum cl_image_id image, uint64_t first,
                         uint64_t n, uint8_t (*out)[CL_SHA256_LEN])
{

	if (!b || (unsigned)image >= CL_NIMAGES || first > b->nchunks[image] ||
	    n > b->nchunks[image] - first || !out)
		return -EINVAL;
	if (b->hash[image]) {
		memcpy(out, b->hash[image][first], n * CL_SHA256_LEN);
		return 0;
	}
	if (b->index_fd < 0)
		return cl_errorf(-EINVAL, "%s: base index not opened", b->path[image]);
	return cl_pread_full(b->index_fd, out, n * CL_SHA256_LEN, index_offset(b, image, first),
	                     "base index");
}

int cl_base_chunk_hash(const struct cl_base *b, enum cl_image_id image, uint64_t idx,
                       uint8_t out[CL_SHA256_LEN])
{
	return cl_base_chunk_hashes(b, image, idx, 1, (uint8_t(*)[CL_SHA256_LEN])out);
}

int cl_base_index_zero(const struct cl_base *b, enum cl_image_id image, uint64_t idx,
                       const uint8_t want[CL_SHA256_LEN])
{
	uint8_t z[CL_SHA256_LEN];

	cl_zero_hash(cl_chunk_len(b->size[image], b->chunk_size, idx), z);
	return !memcmp(want, z, CL_SHA256_LEN);
}

int cl_base_check_against(const struct cl_base *b, enum cl_image_id image, uint64_t idx,
                          const void *data, const uint8_t want[CL_SHA256_LEN])
{
	uint32_t len = cl_chunk_len(b->size[image], b->chunk_size, idx);
	uint8_t have[CL_SHA256_LEN];

	if (!BASE_HASHING)
		return 0;
	if (data)
		chunk_hash(data, len, have);
	else
		cl_zero_hash(len, have);
	if (!memcmp(have, want, CL_SHA256_LEN))
		return 0;
	if (!data)
		return cl_errorf(-EBADMSG,
		                 "base %s chunk %llu: a hole where the index says data (the base "
		                 "changed since it was registered)",
		                 b->path[image], (unsigned long long)idx);
	return cl_errorf(-EBADMSG,
	                 "base %s chunk %llu: SHA-256 mismatch (the base changed since it was "
	                 "registered)",
	                 b->path[image], (unsigned long long)idx);
}

int cl_base_read_checked(const struct cl_base *b, enum cl_image_id image, uint64_t idx, int hole,
                         void *buf)
{
	uint8_t want[CL_SHA256_LEN];
	int r;

	if (!b || (unsigned)image >= CL_NIMAGES || idx >= b->nchunks[image] || (!hole && !buf))
		return -EINVAL;
	r = cl_base_chunk_hash(b, image, idx, want);
	if (r == 0 && !hole && cl_base_index_zero(b, image, idx, want)) {
		memset(buf, 0, b->chunk_size);
		return 0;
	}
	if (r == 0 && !hole)
		r = cl_base_read(b, image, idx, b->chunk_size, buf);
	return r < 0 ? r : cl_base_check_against(b, image, idx, hole ? NULL : buf, want);
}

struct check_job {
	struct cl_base *b;
	struct cl_progress prog;
	cl_report_fn report;
	void *ctx;
	pthread_mutex_t report_lock; /* one report at a time */
	atomic_uint_fast64_t bad;
};

static void check_report(struct check_job *j)
{
	atomic_fetch_add(&j->bad, 1);
	if (!j->report)
		return;
	pthread_mutex_lock(&j->report_lock);
	j->report(j->ctx, cl_error_msg());
	pthread_mutex_unlock(&j->report_lock);
}

/* Chunks [first, first + n) of image im (a batch): holes against the zero
 * hash without reading, runs of chunks with data read in one go. */
static int check_batch(void *ctx, size_t item)
{
	struct check_job *j = ctx;
	struct cl_base *b = j->b;
	uint64_t first = (uint64_t)item * HASH_BATCH, k, n, run = 0, nrun = 0, from, have;
	uint64_t disk_items = (b->nchunks[CL_DISK] + HASH_BATCH - 1) / HASH_BATCH;
	uint32_t cs = b->chunk_size;
	uint8_t(*want)[CL_SHA256_LEN] = malloc((size_t)HASH_BATCH * CL_SHA256_LEN);
	uint8_t *buf = malloc((size_t)HASH_BATCH * cs);
	enum cl_image_id im = CL_DISK;
	struct cl_base_extents ext = CL_BASE_EXTENTS_INIT;
	int r = 0;

	if (item >= disk_items) {
		im = CL_MEMORY;
		first = (item - disk_items) * HASH_BATCH;
	}
	n = b->nchunks[im] - first < HASH_BATCH ? b->nchunks[im] - first : HASH_BATCH;
	if (!want || !buf) {
		r = -ENOMEM;
		goto out;
	}
	r = cl_base_chunk_hashes(b, im, first, n, want);
	for (k = first; k <= first + n && r == 0; k++) {
		if (k < first + n && !cl_base_chunk_is_hole(b, im, k, &ext)) {
			if (!nrun++)
				run = k;
			continue;
		}
		if (nrun) {
			from = run * cs;
			have = (run + nrun) * cs < b->size[im] ? (run + nrun) * cs : b->size[im];
			r = cl_pread_full(b->fd[im], buf, (size_t)(have - from), from, b->path[im]);
			for (; r == 0 && nrun; nrun--, run++)
				if (cl_base_check_against(b, im, run, buf + (run * cs - from),
				                          want[run - first]) < 0)
					check_report(j);
			nrun = 0;
		}
		if (k < first + n && r == 0 &&
		    cl_base_check_against(b, im, k, NULL, want[k - first]))
			check_report(j);
	}
	cl_progress_add(&j->prog, n * cs);
out:
	free(want);
	free(buf);
	return r;
}

int cl_base_check_all(struct cl_base *b, cl_report_fn report, void *ctx, uint64_t *bad)
{
	struct check_job j = {.b = b, .report = report, .ctx = ctx};
	size_t items;
	int r;

	if (!b)
		return -EINVAL;
	r = cl_base_open_index(b);
	if (r < 0)
		return r;
	items = (size_t)((b->nchunks[CL_DISK] + HASH_BATCH - 1) / HASH_BATCH +
	                 (b->nchunks[CL_MEMORY] + HASH_BATCH - 1) / HASH_BATCH);
	atomic_init(&j.bad, 0);
	cl_progress_start(&j.prog, "checking base", b->size[CL_DISK] + b->size[CL_MEMORY]);
	pthread_mutex_init(&j.report_lock, NULL);
	r = cl_pfor(0, items, check_batch, &j);
	pthread_mutex_destroy(&j.report_lock);
	cl_progress_end(&j.prog);
	if (bad)
		*bad = atomic_load(&j.bad);
	if (r == 0 && atomic_load(&j.bad))
		r = cl_errorf(-EBADMSG, "base %s: %llu chunks differ from its index",
		              b->path[CL_DISK], (unsigned long long)atomic_load(&j.bad));
	return r;
}

static uint64_t hash_key(const uint8_t *h)
{
	return get_le(h, 8);
}

int cl_base_build_lookup(struct cl_base *b)
{
	uint64_t total = b->nchunks[0] + b->nchunks[1], size = 16, k, slot;
	int i;

	while (size < 2 * total)
		size <<= 1;
	free(b->table);
	b->table = calloc(size, sizeof(*b->table));
	if (!b->table)
		return -ENOMEM;
	b->table_mask = size - 1;
	for (i = 0; i < CL_NIMAGES; i++) {
		for (k = 0; k < b->nchunks[i]; k++) {
			if (cl_base_index_zero(b, (enum cl_image_id)i, k, b->hash[i][k]))
				continue;
			for (slot = hash_key(b->hash[i][k]) & b->table_mask; b->table[slot];
			     slot = (slot + 1) & b->table_mask) {
				uint64_t e = b->table[slot] - 1;
				if (!memcmp(b->hash[e >> 63][e & ~(1ull << 63)], b->hash[i][k],
				            CL_SHA256_LEN))
					break; /* first copy wins */
			}
			if (!b->table[slot])
				b->table[slot] = ((uint64_t)i << 63 | k) + 1;
		}
	}
	return 0;
}

int cl_base_lookup(const struct cl_base *b, const uint8_t hash[CL_SHA256_LEN],
                   enum cl_image_id *image, uint64_t *idx)
{
	uint64_t slot, e;

	if (!b->table)
		return -ENOENT;
	for (slot = hash_key(hash) & b->table_mask; b->table[slot];
	     slot = (slot + 1) & b->table_mask) {
		e = b->table[slot] - 1;
		if (!memcmp(b->hash[e >> 63][e & ~(1ull << 63)], hash, CL_SHA256_LEN)) {
			*image = (enum cl_image_id)(e >> 63);
			*idx = e & ~(1ull << 63);
			return 0;
		}
	}
	return -ENOENT;
}
