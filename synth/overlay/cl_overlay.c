/* SPDX-License-Identifier: GPL-2.0-only */
/* Overlay creation (cl_overlay_create): the customized images hashed and
 * compared with the base chunk by chunk, each changed chunk given a recipe
 * (zero, a base chunk, a copy of another record, or a payload: raw or a
 * VCDIFF delta against the base), placed in TRACE order, and written as a
 * pack (cl_pack_writer.c) and its meta. */
#include "cl_overlay.h"
#include "cl_bitmap.h"
#include "cl_error.h"
#include "cl_pack_writer.h"
#include "cl_trace.h"
#include "cl_vcdiff.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAYLOAD_BATCH 4096                /* chunks delta-encoded per parallel step */
#define BLOB_MAX      CL_PACK_PAYLOAD_MAX /* a blob is one payload */

/* The customized images being turned into an overlay. */
struct newimg {
	const char *path;
	int fd;
	uint64_t size;
	uint64_t nchunks;
	uint8_t (*hash)[CL_SHA256_LEN];
	/* An extent-mapped image: only chunks set in `touched` may differ from
	 * the base; their bytes are the base view with the extents laid over. */
	const struct cl_extent *ext;
	size_t next;
	uint8_t *touched;
};

struct builder {
	struct cl_base *b;
	struct newimg img[CL_NIMAGES];
	const struct cl_overlay_opts *opts;
	uint32_t cs;
	struct cl_meta m;
	uint64_t cap_chunks;
	/* dedup: sha256 of a payload record -> record number + 1 */
	uint64_t *dedup;
	uint64_t dedup_mask;
	struct cl_out pack;
	struct cl_pack_writer pw; /* segments being filled, compressed, written to pack */
	struct cl_progress prog;
	struct cl_overlay_stats *st;
};

static int add_record(struct builder *bd, const struct cl_chunk *c)
{
	struct cl_chunk *p;

	if (bd->m.nchunks == bd->cap_chunks) {
		bd->cap_chunks = bd->cap_chunks ? 2 * bd->cap_chunks : 4096;
		p = realloc(bd->m.chunks, bd->cap_chunks * sizeof(*p));
		if (!p)
			return -ENOMEM;
		bd->m.chunks = p;
	}
	bd->m.chunks[bd->m.nchunks++] = *c;
	return 0;
}

static int add_blob(struct builder *bd, const char *path, struct cl_blob *blob)
{
	size_t len;
	void *buf;
	int r;

	if (!path)
		return 0;
	r = cl_read_file(path, BLOB_MAX, &buf, &len);
	if (r < 0)
		return r;
	cl_sha256(buf, len, blob->sha256);
	blob->present = 1;
	r = cl_pack_writer_add(&bd->pw, buf, len, &blob->p);
	free(buf);
	return r;
}

/* The hash of chunk k of image i as the base has it (zero-filled past the
 * base's end), for a chunk of len bytes. */
static int base_view_hash(struct builder *bd, int i, uint64_t k, uint32_t len,
                          uint8_t out[CL_SHA256_LEN])
{
	struct cl_base *b = bd->b;
	uint8_t *buf;
	int r;

	if (k < b->nchunks[i] && cl_chunk_len(b->size[i], bd->cs, k) == len) {
		memcpy(out, b->hash[i][k], CL_SHA256_LEN);
		return 0;
	}
	if (k * bd->cs >= b->size[i]) {
		cl_zero_hash(len, out);
		return 0;
	}
	/* Only the chunk where the sizes of base and new image part. */
	buf = malloc(bd->cs);
	if (!buf)
		return -ENOMEM;
	r = cl_base_read(b, i, k, len, buf);
	if (r == 0)
		cl_sha256(buf, len, out);
	free(buf);
	return r;
}

/* The first extent of im that ends after off (binary search). */
static size_t extent_at(const struct newimg *im, uint64_t off)
{
	size_t lo = 0, hi = im->next, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (im->ext[mid].start + im->ext[mid].length <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Chunk k (len bytes) of customized image i. Thread-safe. */
static int read_new_chunk(const struct builder *bd, int i, uint64_t k, uint32_t len, uint8_t *buf)
{
	const struct newimg *im = &bd->img[i];
	uint64_t lo = k * bd->cs, hi = lo + len, a, b;
	size_t e;
	int r;

	if (!im->ext)
		return cl_pread_full(im->fd, buf, len, lo, im->path);
	e = extent_at(im, lo);
	if (e < im->next && im->ext[e].zero && im->ext[e].start <= lo &&
	    im->ext[e].start + im->ext[e].length >= hi) {
		memset(buf, 0, len); /* discarded whole: no need to read the base */
		return 0;
	}
	r = cl_base_read(bd->b, i, k, len, buf);
	for (; r == 0 && e < im->next && im->ext[e].start < hi; e++) {
		a = im->ext[e].start > lo ? im->ext[e].start : lo;
		b = im->ext[e].start + im->ext[e].length;
		b = b < hi ? b : hi;
		if (im->ext[e].zero)
			memset(buf + (a - lo), 0, b - a);
		else
			r = cl_pread_full(im->fd, buf + (a - lo), b - a,
			                  im->ext[e].offset + (a - im->ext[e].start), im->path);
	}
	return r;
}

static uint64_t key64(const uint8_t *hash)
{
	uint64_t k;

	memcpy(&k, hash, sizeof(k));
	return k;
}

static int dedup_find(const struct builder *bd, const uint8_t *hash, uint64_t *rec)
{
	uint64_t slot;

	for (slot = key64(hash) & bd->dedup_mask; bd->dedup[slot];
	     slot = (slot + 1) & bd->dedup_mask) {
		if (!memcmp(bd->m.chunks[bd->dedup[slot] - 1].sha256, hash, CL_SHA256_LEN)) {
			*rec = bd->dedup[slot] - 1;
			return 0;
		}
	}
	return -ENOENT;
}

static void dedup_add(struct builder *bd, uint64_t rec)
{
	uint64_t slot;

	for (slot = key64(bd->m.chunks[rec].sha256) & bd->dedup_mask; bd->dedup[slot];
	     slot = (slot + 1) & bd->dedup_mask)
		;
	bd->dedup[slot] = rec + 1;
}

/* Chooses the recipe of one changed chunk among those needing no payload;
 * payload chunks are left as RAW for encode_payloads() to settle. */
static int classify(struct builder *bd, uint8_t image, uint64_t k)
{
	struct cl_chunk c = {0};
	uint8_t zero[CL_SHA256_LEN];
	enum cl_image_id bi;
	uint64_t bk, rec;
	uint32_t len = cl_chunk_len(bd->img[image].size, bd->cs, k);
	int r;

	c.image = image;
	c.index = k;
	memcpy(c.sha256, bd->img[image].hash[k], CL_SHA256_LEN);
	cl_zero_hash(len, zero);
	if (!memcmp(c.sha256, zero, CL_SHA256_LEN)) {
		c.recipe = CL_R_ZERO;
	} else if (cl_base_lookup(bd->b, c.sha256, &bi, &bk) == 0 &&
	           cl_chunk_len(bd->b->size[bi], bd->cs, bk) == len) {
		c.recipe = bi == CL_DISK ? CL_R_BASE_DISK : CL_R_BASE_MEMORY;
		c.arg = bk;
	} else if (dedup_find(bd, c.sha256, &rec) == 0) {
		c.recipe = CL_R_DEDUP;
		c.arg = rec;
	} else {
		c.recipe = CL_R_RAW;
		r = add_record(bd, &c);
		if (r == 0)
			dedup_add(bd, bd->m.nchunks - 1);
		return r;
	}
	return add_record(bd, &c);
}

struct payload_job {
	struct builder *bd;
	uint64_t first; /* record number of the batch's first item */
	uint64_t *recs; /* record numbers of payload chunks */
	uint8_t **out;
	uint32_t *out_len;
};

/* The base chunk a delta of chunk k is made against, as every reader will
 * have it (cl_chunk_synthesize): checked against the base's index (zeros
 * where the index records zeros), so that a damaged base fails here, naming
 * the chunk, instead of making an overlay that no intact copy of the base
 * can apply. Past the base's end: zeros. */
static int delta_base(const struct cl_base *b, uint8_t image, uint64_t k, uint32_t len,
                      uint8_t *out)
{
	if (k >= b->nchunks[image])
		return cl_base_read(b, image, k, len, out);
	return cl_base_read_checked(b, image, k, 0, out);
}

static int encode_one(void *ctx, size_t i)
{
	struct payload_job *j = ctx;
	struct builder *bd = j->bd;
	struct cl_chunk *c = &bd->m.chunks[j->recs[i]];
	uint32_t len = cl_chunk_len(bd->img[c->image].size, bd->cs, c->index);
	uint8_t *buf, *base, *delta;
	size_t dlen;
	int r;

	buf = malloc(3 * (size_t)bd->cs);
	if (!buf)
		return -ENOMEM;
	base = buf + bd->cs;
	delta = base + bd->cs;
	r = read_new_chunk(bd, c->image, c->index, len, buf);
	if (r < 0)
		goto out;
	r = delta_base(bd->b, c->image, c->index, len, base);
	if (r < 0)
		goto out;
	/* A delta is kept only if smaller than the raw chunk. */
	if (cl_vcdiff_encode(base, len, buf, len, delta, len - 1, &dlen) == 0) {
		c->recipe = CL_R_DELTA;
		memmove(buf, delta, dlen);
		len = (uint32_t)dlen;
	} else {
		c->recipe = CL_R_RAW;
	}
	j->out[i] = buf;
	j->out_len[i] = len;
	buf = NULL;
out:
	free(buf);
	return r;
}

static int encode_payloads(struct builder *bd, uint64_t *recs, uint64_t n)
{
	struct payload_job j = {.bd = bd};
	uint64_t at, k, cnt;
	int r = 0;

	j.out = calloc(PAYLOAD_BATCH, sizeof(*j.out));
	j.out_len = calloc(PAYLOAD_BATCH, sizeof(*j.out_len));
	if (!j.out || !j.out_len) {
		r = -ENOMEM;
		goto out;
	}
	for (at = 0; at < n && r == 0; at += cnt) {
		cnt = n - at < PAYLOAD_BATCH ? n - at : PAYLOAD_BATCH;
		j.recs = recs + at;
		r = cl_pfor(0, cnt, encode_one, &j);
		for (k = 0; k < cnt; k++) {
			struct cl_chunk *c = &bd->m.chunks[recs[at + k]];
			if (r == 0)
				r = cl_pack_writer_add(&bd->pw, j.out[k], j.out_len[k], &c->p);
			if (r == 0)
				bd->st->payload[c->recipe] += j.out_len[k];
			free(j.out[k]);
			j.out[k] = NULL;
			cl_progress_add(&bd->prog,
			                cl_chunk_len(bd->img[c->image].size, bd->cs, c->index));
		}
		/* Keep about two segments per core in flight. */
		if (r == 0 && bd->pw.npending >= 2 * cl_nthreads())
			r = cl_pack_writer_flush(&bd->pw);
	}
out:
	free(j.out);
	free(j.out_len);
	return r;
}

/* Checks an extent map (sorted, disjoint, inside the image) and marks the
 * chunks it overlaps. */
static int map_extents(struct builder *bd, struct newimg *im)
{
	const struct cl_extent *x;
	uint64_t end = 0, k;
	size_t e;

	im->touched = calloc(im->nchunks / 8 + 1, 1);
	if (!im->touched)
		return -ENOMEM;
	for (e = 0; e < im->next; e++) {
		x = &im->ext[e];
		if (!x->length || x->start < end || x->length > im->size - x->start ||
		    x->start > im->size)
			return cl_errorf(-EINVAL,
			                 "%s: extent map entry %zu (%llu+%llu) out of order or "
			                 "past the image's %llu bytes",
			                 im->path, e, (unsigned long long)x->start,
			                 (unsigned long long)x->length,
			                 (unsigned long long)im->size);
		end = x->start + x->length;
		for (k = x->start / bd->cs; k * bd->cs < end; k++)
			cl_bit_set(im->touched, k);
	}
	return 0;
}

static int open_new_images(struct builder *bd, const char *disk, const char *memory)
{
	const char *paths[CL_NIMAGES] = {disk, memory};
	struct stat st;
	int i, r;

	for (i = 0; i < CL_NIMAGES; i++) {
		struct newimg *im = &bd->img[i];
		im->path = paths[i];
		im->fd = open(paths[i], O_RDONLY | O_CLOEXEC);
		if (im->fd < 0)
			return cl_errorf(-errno, "%s: %s", paths[i], strerror(errno));
		if (fstat(im->fd, &st) < 0)
			return cl_errorf(-errno, "%s: %s", paths[i], strerror(errno));
		if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
			return cl_errorf(-EINVAL, "%s: not a regular file", paths[i]);
		im->size = (uint64_t)st.st_size;
		if (i == CL_DISK && bd->opts->disk_extents) {
			im->ext = bd->opts->disk_extents;
			im->next = bd->opts->ndisk_extents;
			im->size = bd->opts->disk_size;
		}
		if (im->size > (1ull << 50))
			return cl_errorf(-EFBIG, "%s: image too large", paths[i]);
		im->nchunks = cl_chunk_count(im->size, bd->cs);
		im->hash = malloc(im->nchunks ? im->nchunks * CL_SHA256_LEN : 1);
		if (!im->hash)
			return -ENOMEM;
		if (im->ext && (r = map_extents(bd, im)) < 0)
			return r;
	}
	return 0;
}

static uint64_t bytes_to_hash(const struct builder *bd)
{
	uint64_t n = 0, k;
	int i;

	for (i = 0; i < CL_NIMAGES; i++) {
		if (!bd->img[i].touched) {
			n += bd->img[i].size;
			continue;
		}
		for (k = 0; k < bd->img[i].nchunks; k++)
			if (cl_bit_get(bd->img[i].touched, k))
				n += cl_chunk_len(bd->img[i].size, bd->cs, k);
	}
	return n;
}

struct touched_job {
	struct builder *bd;
	int image;
	const uint64_t *chunks;
};

static int hash_touched_one(void *ctx, size_t n)
{
	struct touched_job *j = ctx;
	struct newimg *im = &j->bd->img[j->image];
	uint64_t k = j->chunks[n];
	uint32_t len = cl_chunk_len(im->size, j->bd->cs, k);
	uint8_t *buf = malloc(j->bd->cs);
	int r;

	if (!buf)
		return -ENOMEM;
	r = read_new_chunk(j->bd, j->image, k, len, buf);
	if (r == 0)
		cl_sha256(buf, len, im->hash[k]);
	free(buf);
	cl_progress_add(&j->bd->prog, len);
	return r;
}

/* Hashes image i: the whole file, or for an extent-mapped image only the
 * chunks the extents touch. */
static int hash_new_image(struct builder *bd, int i)
{
	struct newimg *im = &bd->img[i];
	struct touched_job j = {.bd = bd, .image = i};
	uint64_t *list, n = 0, k;
	int r;

	if (!im->ext)
		return cl_hash_image(im->fd, im->path, im->size, bd->cs, im->hash, &bd->prog);
	list = malloc((im->nchunks ? im->nchunks : 1) * sizeof(*list));
	if (!list)
		return -ENOMEM;
	for (k = 0; k < im->nchunks; k++)
		if (cl_bit_get(im->touched, k))
			list[n++] = k;
	j.chunks = list;
	r = cl_pfor(0, n, hash_touched_one, &j);
	free(list);
	return r;
}

/* Counts the chunks lying wholly in [start, end) of image i, only the
 * changed ones if changed is not NULL. */
static uint64_t changed_within(const struct builder *bd, int i, const uint8_t *changed,
                               uint64_t start, uint64_t end)
{
	uint64_t k, n = 0, size = bd->img[i].size;

	end = end < size ? end : size;
	for (k = (start + bd->cs - 1) / bd->cs;
	     k < bd->img[i].nchunks && k * bd->cs + cl_chunk_len(size, bd->cs, k) <= end; k++)
		n += changed ? cl_bit_get(changed, k) : 1;
	return n;
}

/* Chunks the guest gave up, which cost nothing in the overlay: every chunk
 * in a zero extent of an extent map (discarded or zeroed disk ranges: a
 * ZERO record, or none where the base is zero too), and the chunks in
 * holes of a raw image where the base has data (freed RAM: free page
 * reporting punches the holes; elsewhere a hole is just untouched). */
static void count_left_out(struct builder *bd, int i, const uint8_t *changed)
{
	struct newimg *im = &bd->img[i];
	off_t data, hole = 0;
	size_t e;

	if (im->ext) {
		for (e = 0; e < im->next; e++)
			if (im->ext[e].zero)
				bd->st->left_out[i] +=
				    changed_within(bd, i, NULL, im->ext[e].start,
				                   im->ext[e].start + im->ext[e].length);
		return;
	}
	for (;;) {
		hole = lseek(im->fd, hole, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole >= im->size)
			break;
		data = lseek(im->fd, hole, SEEK_DATA);
		if (data < 0)
			data = (off_t)im->size; /* ENXIO: a hole up to the end */
		bd->st->left_out[i] +=
		    changed_within(bd, i, changed, (uint64_t)hole, (uint64_t)data);
		hole = data;
	}
}

/* Lists the changed chunks in overlay order: the TRACE's first, then
 * memory, then disk, each by offset. */
static int plan_order(struct builder *bd, uint8_t *changed[CL_NIMAGES])
{
	struct cl_trace_entry *tr = NULL;
	uint64_t nchunks[CL_NIMAGES], k;
	size_t ntr = 0, t;
	int i, r;
	static const int order[CL_NIMAGES] = {CL_MEMORY, CL_DISK};

	for (i = 0; i < CL_NIMAGES; i++)
		nchunks[i] = bd->img[i].nchunks;
	if (bd->opts->trace) {
		r = cl_trace_load(bd->opts->trace, nchunks, &tr, &ntr);
		if (r < 0)
			return r;
	}
	for (t = 0; t < ntr; t++) {
		if (cl_bit_get(changed[tr[t].image], tr[t].index)) {
			cl_bit_clear(changed[tr[t].image], tr[t].index);
			r = classify(bd, tr[t].image, tr[t].index);
			if (r < 0)
				goto out;
			bd->st->traced++;
		}
	}
	for (i = 0; i < CL_NIMAGES; i++)
		for (k = 0; k < nchunks[order[i]]; k++)
			if (cl_bit_get(changed[order[i]], k)) {
				r = classify(bd, (uint8_t)order[i], k);
				if (r < 0)
					goto out;
			}
	r = 0;
out:
	free(tr);
	return r;
}

static int find_changes(struct builder *bd, uint8_t *changed[CL_NIMAGES], uint64_t *total)
{
	uint8_t h[CL_SHA256_LEN];
	uint64_t k;
	uint32_t len;
	int i, r;

	*total = 0;
	for (i = 0; i < CL_NIMAGES; i++) {
		struct newimg *im = &bd->img[i];
		changed[i] = calloc(im->nchunks / 8 + 1, 1);
		if (!changed[i])
			return -ENOMEM;
		for (k = 0; k < im->nchunks; k++) {
			if (im->touched && !cl_bit_get(im->touched, k))
				continue; /* the base view: unchanged */
			len = cl_chunk_len(im->size, bd->cs, k);
			r = base_view_hash(bd, i, k, len, h);
			if (r < 0)
				return r;
			if (memcmp(h, im->hash[k], CL_SHA256_LEN)) {
				cl_bit_set(changed[i], k);
				bd->st->changed_bytes[i] += len;
				(*total)++;
			}
		}
	}
	return 0;
}

/* Writes the meta to a temporary file and forces both outputs to disk
 * before either replaces an earlier overlay, so that a full disk leaves
 * the earlier pair intact. */
static int commit_outputs(struct builder *bd, const char *outdir)
{
	struct cl_out meta;
	char *path;
	size_t len;
	void *buf;
	int r;

	r = cl_meta_encode(&bd->m, &buf, &len);
	if (r < 0)
		return r;
	bd->st->meta_size = len;
	if (asprintf(&path, "%s/%s", outdir, CL_META_NAME) < 0) {
		free(buf);
		return -ENOMEM;
	}
	r = cl_out_open(&meta, path, 0644);
	free(path);
	if (r < 0)
		goto out;
	r = cl_pwrite_full(meta.fd, buf, len, 0, meta.path);
	if (r == 0)
		r = cl_out_flush(&meta);
	if (r == 0)
		r = cl_out_flush(&bd->pack);
	if (r == 0)
		r = cl_out_commit(&bd->pack);
	if (r < 0) {
		cl_out_abort(&meta);
		goto out;
	}
	r = cl_out_commit(&meta);
out:
	free(buf);
	return r;
}

int cl_overlay_create(struct cl_base *b, const char *disk, const char *memory, const char *outdir,
                      const struct cl_overlay_opts *opts, struct cl_overlay_stats *st)
{
	struct cl_overlay_opts o = {0};
	struct cl_overlay_stats dummy;
	uint8_t *changed[CL_NIMAGES] = {NULL, NULL};
	uint64_t *recs = NULL, npay = 0, total, k, size;
	struct builder bd;
	char *packpath = NULL;
	int r, i, made = 0;

	if (!b || !disk || !memory || !outdir)
		return -EINVAL;
	if (!b->hash[CL_DISK]) {
		r = cl_base_load_index(b);
		if (r < 0)
			return r;
	}
	if (opts)
		o = *opts;
	if (!o.codec)
		o.codec = CL_CODEC_XZ;
	if (!o.segment_size)
		o.segment_size = CL_SEGMENT_TARGET;
	if (o.segment_size < b->chunk_size || o.segment_size > CL_SEGMENT_MAX / 2)
		return cl_errorf(-EINVAL, "segment size %u is out of range (%u to %u bytes)",
		                 o.segment_size, b->chunk_size, CL_SEGMENT_MAX / 2);
	memset(&bd, 0, sizeof(bd));
	memset(&dummy, 0, sizeof(dummy));
	bd.st = st ? st : &dummy;
	memset(bd.st, 0, sizeof(*bd.st));
	bd.b = b;
	bd.opts = &o;
	bd.cs = b->chunk_size;
	bd.pack.fd = -1;
	for (i = 0; i < CL_NIMAGES; i++)
		bd.img[i].fd = -1;
	bd.m.version = CL_META_VERSION;
	memcpy(bd.m.base_id, b->id, CL_SHA256_LEN);
	bd.m.chunk_size = bd.cs;
	bd.m.codec = o.codec;
	bd.m.pack = CL_PACK_NAME;
	cl_pack_writer_init(&bd.pw, &bd.m, &bd.pack, o.level, o.segment_size,
	                    !opts || !opts->segment_size);

	r = open_new_images(&bd, disk, memory);
	if (r < 0)
		goto out;
	for (i = 0; i < CL_NIMAGES; i++) {
		bd.m.image_size[i] = bd.img[i].size;
		bd.m.base_image_size[i] = b->size[i];
	}
	r = cl_mkdir_p_made(outdir, 0755, &made);
	if (r < 0)
		goto out;
	if (asprintf(&packpath, "%s/%s", outdir, CL_PACK_NAME) < 0) {
		packpath = NULL;
		r = -ENOMEM;
		goto out;
	}
	r = cl_out_open(&bd.pack, packpath, 0644);
	if (r < 0)
		goto out;

	cl_progress_start(&bd.prog, "hashing images", bytes_to_hash(&bd));
	for (i = 0; i < CL_NIMAGES && r == 0; i++)
		r = hash_new_image(&bd, i);
	cl_progress_end(&bd.prog);
	if (r < 0)
		goto out_pack;
	r = cl_base_build_lookup(b);
	if (r < 0)
		goto out_pack;
	r = find_changes(&bd, changed, &total);
	if (r < 0)
		goto out_pack;
	for (i = 0; i < CL_NIMAGES; i++)
		count_left_out(&bd, i, changed[i]);
	memcpy(bd.m.left_out, bd.st->left_out, sizeof(bd.m.left_out));
	for (size = 16; size < 2 * total + 2;)
		size <<= 1;
	bd.dedup = calloc(size, sizeof(*bd.dedup));
	if (!bd.dedup) {
		r = -ENOMEM;
		goto out_pack;
	}
	bd.dedup_mask = size - 1;

	/* Device state and domain XML come first: synthesis needs them first. */
	r = add_blob(&bd, o.state, &bd.m.state);
	if (r == 0)
		r = add_blob(&bd, o.domain, &bd.m.domain);
	if (r < 0)
		goto out_pack;
	r = plan_order(&bd, changed);
	if (r < 0)
		goto out_pack;

	recs = malloc((bd.m.nchunks ? bd.m.nchunks : 1) * sizeof(*recs));
	if (!recs) {
		r = -ENOMEM;
		goto out_pack;
	}
	for (k = 0; k < bd.m.nchunks; k++)
		if (bd.m.chunks[k].recipe == CL_R_RAW)
			recs[npay++] = k;
	cl_progress_start(&bd.prog, "encoding overlay", npay * (uint64_t)bd.cs);
	r = encode_payloads(&bd, recs, npay);
	if (r == 0)
		r = cl_pack_writer_close_segment(&bd.pw);
	if (r == 0)
		r = cl_pack_writer_flush(&bd.pw);
	cl_progress_end(&bd.prog);
	if (r < 0)
		goto out_pack;
	for (k = 0; k < bd.m.nchunks; k++) {
		struct cl_chunk *c = &bd.m.chunks[k];
		if (c->recipe == CL_R_DEDUP)
			c->p = bd.m.chunks[c->arg].p;
		bd.st->chunks[c->image][c->recipe]++;
	}
	bd.m.pack_size = bd.pw.pos;
	bd.st->pack_size = bd.pw.pos;
	bd.st->nsegments = bd.m.nsegments;
	r = commit_outputs(&bd, outdir);
	if (r < 0)
		goto out_pack;
	goto out;

out_pack:
	if (bd.pack.path)
		cl_out_abort(&bd.pack);
out:
	/* A failed run removes the output directory if it made it (rmdir: only
	 * if empty); parents it made stay. */
	if (r < 0 && made)
		rmdir(outdir);
	for (i = 0; i < CL_NIMAGES; i++) {
		if (bd.img[i].fd >= 0)
			close(bd.img[i].fd);
		free(bd.img[i].hash);
		free(bd.img[i].touched);
		free(changed[i]);
	}
	cl_pack_writer_fini(&bd.pw);
	free(bd.dedup);
	free(recs);
	free(packpath);
	free(bd.m.chunks);
	free(bd.m.segments);
	return r;
}
