/* SPDX-License-Identifier: GPL-2.0-only */
/* Read planning: where each byte of a request comes from (the store, the
 * cache, the base, zeros, a segment held in memory) or which segments it
 * must wait for; then the reads themselves, with the first-use checks:
 * cache chunks are hashed once per session, base chunks are checked against
 * the base's index once per mount (those it records as zero are zeros,
 * neither read nor hashed), runs of either read in one go. */
#include "cl_lazy_int.h"
#include "cl_bitmap.h"
#include "cl_error.h"
#include "cl_synth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MAX    64         /* base or cache chunks checked per read, see base_run() */
#define ADVISE_MAX (1u << 20) /* bytes per readahead announced */
#define INDEX_GAP  128        /* index hashes apart still announced together (a page) */

/* One contiguous piece of a request and where its bytes are. */
struct piece {
	uint8_t *dst;
	uint32_t len;
	int fd;         /* -1: zeros */
	uint64_t foff;  /* offset in fd */
	uint32_t valid; /* bytes to read from fd; the rest of the piece is zero */
	const char *path;
	/* A cache chunk not yet checked this session: read whole, hash. */
	const struct cl_chunk *verify;
	/* A base chunk not yet checked against the base's index this mount
	 * (bimage -1: none): read whole, hash, serve from that buffer. */
	int bimage;
	uint64_t bchunk;
	int bhole;
};

/* Pieces from the base image, zero past its end. */
static void base_piece_locked(struct cl_lazy *l, enum cl_image_id im, uint64_t off, struct piece *p)
{
	uint64_t size = l->base->size[im], k = off / l->cs;

	lazy_assert_locked(l);
	if (k < l->base->nchunks[im] && !cl_bit_get(l->base_ok[im], k)) {
		/* First use this mount: lazy_run_pieces checks it against the index. */
		p->bimage = im;
		p->bchunk = k;
		p->bhole = !cl_bit_get(l->base_data[im], k);
		p->fd = -1;
		p->path = l->base->path[im];
		p->foff = off;
		p->valid = 0;
		return;
	}
	/* Holes read as zeros without a read: the kernel would zero-fill
	 * page-cache pages for them, most of a sparse image's cost. So do the
	 * chunks the index records as zero, whatever the base holds there. */
	if (off >= size || !cl_bit_get(l->base_data[im], k) || cl_bit_get(l->base_izero[im], k)) {
		p->fd = -1;
		p->valid = 0;
		return;
	}
	p->fd = l->base->fd[im];
	p->path = l->base->path[im];
	p->foff = off;
	p->valid = off >= size ? 0 : (size - off < p->len ? (uint32_t)(size - off) : p->len);
}

/* A chunk of a segment held in memory is made at once, under the lock (a
 * degraded mode: the cache refused the segment), straight into p->dst;
 * fd -2 marks the piece as filled. */
static int64_t resolve_mem_locked(struct cl_lazy *l, const struct cl_chunk *c, uint32_t co,
                                  struct piece *p)
{
	struct segment *sg = &l->seg[c->p.seg];
	uint8_t *buf;

	lazy_assert_locked(l);
	sg->used = cl_now();
	p->fd = -2;
	p->valid = p->len;
	if (!p->dst)
		return -1;
	buf = malloc(l->cs);
	if (!buf)
		return c->p.seg;
	l->decodes++;
	if (cl_chunk_synthesize(l->m, l->base, c, sg->raw, buf) < 0) {
		free(buf);
		lazy_spill_drop_locked(l, c->p.seg); /* fetch it again */
		return c->p.seg;
	}
	memcpy(p->dst, buf + co, p->len);
	free(buf);
	return -1;
}

/* Decides where chunk k's bytes [co, co + n) come from, or returns the
 * segment to wait for (>= 0) when they have not arrived. */
static int64_t resolve_locked(struct cl_lazy *l, enum cl_image_id im, uint64_t k, uint32_t co,
                              struct piece *p)
{
	struct image *img = &l->img[im];
	const struct cl_chunk *c;

	lazy_assert_locked(l);
	p->verify = NULL;
	p->bimage = -1;
	if (cl_bit_get(img->modified, k)) {
		p->fd = img->store_fd;
		p->path = img->store_path;
		p->foff = k * l->cs + co;
		p->valid = p->len;
		return -1;
	}
	c = cl_recindex_find(&l->ix, im, k);
	if (!c) {
		base_piece_locked(l, im, k * l->cs + co, p);
		return -1;
	}
	switch (c->recipe) {
	case CL_R_ZERO:
		p->fd = -1;
		p->valid = 0;
		return -1;
	case CL_R_BASE_DISK:
	case CL_R_BASE_MEMORY:
		base_piece_locked(l, c->recipe == CL_R_BASE_DISK ? CL_DISK : CL_MEMORY,
		                  c->arg * l->cs + co, p);
		return -1;
	}
	if (l->seg[c->p.seg].state == SEG_MEM)
		return resolve_mem_locked(l, c, co, p);
	/* A chunk of a segment still being decoded may be in the cache already. */
	if (l->seg[c->p.seg].state != SEG_DONE && !lazy_chunk_ready_locked(l, c))
		return c->p.seg;
	p->fd = img->cache_fd;
	p->path = img->cache_path;
	p->foff = k * l->cs + co;
	p->valid = p->len;
	if (!cl_bit_get(img->verified, k))
		p->verify = c;
	return -1;
}

/* How many pieces from p on are the first uses of base chunks that follow
 * each other in one base image and in the request (read in one go). */
static size_t base_run(const struct piece *p, size_t n)
{
	size_t j;

	/* Holes in runs too: a sparse base is mostly holes, one index read each. */
	for (j = 1; j < n && j < RUN_MAX; j++)
		if (p[j].bimage != p[0].bimage || p[j].bhole != p[0].bhole ||
		    p[j].bchunk != p[0].bchunk + j || p[j].dst != p[j - 1].dst + p[j - 1].len)
			break;
	return j;
}

/* How many pieces from p on are cache chunks not yet checked this session
 * that follow each other in the image and in the request. */
static size_t cache_run(const struct piece *p, size_t n)
{
	size_t j;

	for (j = 1; j < n && j < RUN_MAX; j++)
		if (!p[j].verify || p[j].verify->index != p[0].verify->index + j ||
		    p[j].dst != p[j - 1].dst + p[j - 1].len)
			break;
	return j;
}

/* Whether pieces p[0..n), of chunks first.. of a file of size bytes, are
 * whole chunks inside it: then they are read straight into the request's
 * buffer and hashed there. */
static int whole_chunks(const struct cl_lazy *l, const struct piece *p, size_t n, uint64_t first,
                        uint64_t size)
{
	size_t k;

	if ((first + n) * l->cs > size)
		return 0;
	for (k = 0; k < n; k++)
		if (p[k].len != l->cs || p[k].foff != (first + k) * l->cs)
			return 0;
	return 1;
}

/* Copies each piece's bytes out of buf, which holds the whole chunks of
 * pieces p[0..n) from chunk first on. */
static void copy_out(const struct cl_lazy *l, struct piece *p, size_t n, uint64_t first,
                     const uint8_t *buf)
{
	size_t k;

	for (k = 0; k < n; k++)
		memcpy(p[k].dst, buf + (p[k].foff - first * l->cs), p[k].len);
}

/* Which chunks of a base run the index records as zero (zero[k]): they
 * are served as zeros without a read or a hash, the bytes the overlay was
 * made against whatever the base holds there now; and the span [*lo, *hi)
 * of those it does not, which is read. */
static void index_zeros(const struct cl_lazy *l, const struct piece *p, size_t n,
                        uint8_t (*want)[CL_SHA256_LEN], uint8_t *zero, size_t *lo, size_t *hi)
{
	enum cl_image_id bim = (enum cl_image_id)p[0].bimage;
	size_t k;

	for (k = 0; k < n; k++)
		zero[k] = cl_base_index_zero(l->base, bim, p[k].bchunk, want[k]);
	for (*lo = 0; *lo < n && zero[*lo]; (*lo)++)
		;
	for (*hi = n; *hi > *lo && zero[*hi - 1]; (*hi)--)
		;
}

/* Reads the chunks [lo, hi) of base run p[0..n) into buf (holding the run
 * from its first chunk), zero past the base's end, and zeros the chunks
 * the index records as zero. */
static int base_read_run(struct cl_lazy *l, const struct piece *p, size_t n, const uint8_t *zero,
                         size_t lo, size_t hi, uint8_t *buf)
{
	enum cl_image_id bim = (enum cl_image_id)p[0].bimage;
	uint64_t from = (p[0].bchunk + lo) * l->cs, to = (p[0].bchunk + hi) * l->cs, have;
	uint8_t *at = buf + lo * l->cs;
	size_t k;
	int r = 0;

	if (lo < hi) {
		have = to < l->base->size[bim] ? to : l->base->size[bim];
		r = cl_pread_full(l->base->fd[bim], at, (size_t)(have - from), from,
		                  l->base->path[bim]);
		if (r == 0)
			memset(at + (have - from), 0, (size_t)(to - have));
	}
	for (k = 0; r == 0 && k < n; k++)
		if (zero[k])
			memset(buf + k * l->cs, 0, l->cs);
	return r;
}

/* Records the outcome of a base run's check: its first good chunks are
 * not checked again this mount. */
static void base_record(struct cl_lazy *l, const struct piece *p, const uint8_t *zero, size_t good,
                        int r)
{
	enum cl_image_id bim = (enum cl_image_id)p[0].bimage;
	size_t k;

	lazy_lock(l);
	for (k = 0; k < good; k++) {
		cl_bit_set(l->base_ok[bim], p[k].bchunk);
		if (zero[k])
			cl_bit_set(l->base_izero[bim], p[k].bchunk);
		else if (!p[0].bhole)
			l->base_checked++;
	}
	if (r < 0)
		snprintf(l->reason, sizeof(l->reason), "%s", cl_error_msg());
	lazy_unlock(l);
}

/* Checks the base chunks of pieces p[0..n) (see base_run) against the
 * index and fills the pieces from the very buffer that was hashed (holes
 * and chunks the index records as zero: zeros, without a read; whole
 * chunks: the request's own buffer). The hashing runs on the FUSE worker
 * that serves the request, so the kernel's concurrent readahead requests
 * hash on all cores. A damaged base chunk, or a hole where the index says
 * data, is -EIO, and status names it. */
static int base_check(struct cl_lazy *l, struct piece *p, size_t n)
{
	enum cl_image_id bim = (enum cl_image_id)p[0].bimage;
	uint8_t want[RUN_MAX][CL_SHA256_LEN], zero[RUN_MAX], *buf = NULL, *data;
	int direct = whole_chunks(l, p, n, p[0].bchunk, l->base->size[bim]), r;
	size_t k, lo, hi, ok = 0;

	r = cl_base_chunk_hashes(l->base, bim, p[0].bchunk, n, want);
	if (r < 0)
		goto out;
	index_zeros(l, p, n, want, zero, &lo, &hi);
	if (p[0].bhole || lo == hi)
		direct = 0; /* nothing to read: zeros */
	else if (!direct && !(buf = malloc(n * l->cs)))
		return -ENOMEM;
	data = direct ? p[0].dst : buf;
	if (data)
		r = base_read_run(l, p, n, zero, lo, hi, data);
	for (; r == 0 && ok < n; ok++)
		if (!zero[ok])
			r = cl_base_check_against(l->base, bim, p[ok].bchunk,
			                          data ? data + ok * l->cs : NULL, want[ok]);
	for (k = 0; r == 0 && !data && k < n; k++)
		memset(p[k].dst, 0, p[k].len);
	if (r == 0 && buf)
		copy_out(l, p, n, p[0].bchunk, buf);
	free(buf);
out:
	base_record(l, p, zero, r == 0 ? n : (ok ? ok - 1 : 0), r);
	if (r < 0)
		return r == -ENOMEM ? r : -EIO;
	return 0;
}

/* Checks the cache chunks of pieces p[0..n) of image im (see cache_run),
 * read in one go, each against its record's hash, and fills the pieces from
 * the very buffer that was hashed. A chunk that fails marks its segment
 * absent again (a damaged cache is refetched, never served): -EAGAIN. */
static int cache_check(struct cl_lazy *l, enum cl_image_id im, struct piece *p, size_t n)
{
	const struct cl_chunk *c;
	uint64_t first = p[0].verify->index, size = l->m->image_size[im];
	uint8_t *buf, h[CL_SHA256_LEN], good[RUN_MAX];
	int direct = whole_chunks(l, p, n, first, size), r;
	size_t k, len = 0;

	for (k = 0; k < n; k++)
		len += cl_chunk_len(size, l->cs, first + k);
	buf = direct ? p[0].dst : malloc(n * l->cs);
	if (!buf)
		return -ENOMEM;
	r = cl_pread_full(p[0].fd, buf, len, first * l->cs, p[0].path);
	/* Hashed outside the lock: FUSE workers hash their runs at once. */
	for (k = 0; r == 0 && k < n; k++) {
		c = p[k].verify;
		cl_sha256(buf + k * l->cs, cl_chunk_len(size, l->cs, c->index), h);
		good[k] = !memcmp(h, c->sha256, CL_SHA256_LEN);
	}
	if (r == 0) {
		lazy_lock(l);
		for (k = 0; k < n; k++) {
			c = p[k].verify;
			if (good[k]) {
				cl_bit_set(l->img[im].verified, c->index);
				continue;
			}
			if (l->seg[c->p.seg].state == SEG_DONE) {
				lazy_segment_lost_locked(l, c->p.seg);
				l->map_dirty = 1;
			}
			r = -EAGAIN;
		}
		lazy_unlock(l);
	}
	if (r == 0 && !direct)
		copy_out(l, p, n, first, buf);
	if (!direct)
		free(buf);
	return r;
}

size_t cl_lazy_max_segs(const struct cl_lazy *l, size_t len)
{
	return 2 * (len / l->cs + 2); /* per piece: its file's bytes, then zeros */
}

/* Appends a part of the answer (fd -1: mem) to segs, if any, merged with the
 * one before when it continues it. */
static void seg_add(struct cl_lazy_seg *segs, size_t *n, int fd, uint64_t off, const uint8_t *mem,
                    size_t len)
{
	struct cl_lazy_seg *last = segs && *n ? &segs[*n - 1] : NULL;

	if (!segs || !len)
		return;
	if (last && last->fd == fd &&
	    (fd >= 0 ? last->off + last->len == off
	             : (const uint8_t *)last->mem + last->len == mem)) {
		last->len += len;
		return;
	}
	segs[(*n)++] = (struct cl_lazy_seg){fd, off, mem, len};
}

/* The buffer's bytes of pieces p[0..n), which follow each other in it. */
static void seg_add_mem(struct cl_lazy_seg *segs, size_t *n, const struct piece *p, size_t np)
{
	seg_add(segs, n, -1, 0, p[0].dst, (size_t)(p[np - 1].dst + p[np - 1].len - p[0].dst));
}

/* Checks the run of first uses that starts at p[0] (base or cache chunks,
 * into the pieces' buffers); *np: how many pieces it took. */
static int check_run(struct cl_lazy *l, enum cl_image_id im, struct piece *p, size_t n, size_t *np)
{
	if (p[0].bimage >= 0) {
		*np = base_run(p, n);
		return base_check(l, p, *np);
	}
	*np = cache_run(p, n);
	return cache_check(l, im, p, *np);
}

/* Reads pieces, merging neighbours in the same file; with segs, lists the
 * answer's parts, leaving the bytes of files that need no check there (see
 * cl_lazy_read_segs). Returns 0, -errno, or
 * -EAGAIN if a cached chunk failed its check (its segment is then marked
 * absent again and the request must be retried). */
int lazy_run_pieces(struct cl_lazy *l, enum cl_image_id im, struct piece *p, size_t n,
                    struct cl_lazy_seg *segs, size_t *nsegs)
{
	size_t i, j, k;
	uint64_t len;
	int r = 0;

	for (i = 0; i < n && r == 0; i = j) {
		if (p[i].bimage >= 0 || p[i].verify) {
			r = check_run(l, im, &p[i], n - i, &k);
			seg_add_mem(segs, nsegs, &p[i], k);
			j = i + k;
			continue;
		}
		/* Merge the run of pieces that continue this one in the same file. */
		len = p[i].valid;
		for (j = i + 1; j < n && !p[j].verify && p[j].bimage < 0 && p[j].fd == p[i].fd &&
		                p[i].fd >= 0 && p[j - 1].valid == p[j - 1].len &&
		                p[j].foff == p[i].foff + len && p[j].dst == p[i].dst + len;
		     j++)
			len += p[j].valid;
		if (p[i].fd == -2) {
			j = i + 1; /* filled while planning */
			seg_add_mem(segs, nsegs, &p[i], 1);
			continue;
		}
		if (p[i].fd >= 0 && len && segs)
			seg_add(segs, nsegs, p[i].fd, p[i].foff, NULL, (size_t)len);
		else if (p[i].fd >= 0 && len)
			r = cl_pread_full(p[i].fd, p[i].dst, (size_t)len, p[i].foff, p[i].path);
		/* Zero what no file supplies: holes past the base, zero chunks. */
		for (k = i; r == 0 && k < j; k++)
			if (p[k].valid < p[k].len) {
				memset(p[k].dst + p[k].valid, 0, p[k].len - p[k].valid);
				seg_add(segs, nsegs, -1, 0, p[k].dst + p[k].valid,
				        p[k].len - p[k].valid);
			}
	}
	return r;
}

/* A byte range of a backing file that pieces will read, grown while the
 * next piece continues it. */
struct span {
	int fd;
	uint64_t from, to;
};

/* Where piece p's bytes are read from, if from a file: what the read of its
 * run will ask (base and cache chunks whole, for their check). */
static int piece_span(const struct cl_lazy *l, const struct piece *p, struct span *s)
{
	if (p->bimage >= 0) {
		enum cl_image_id bim = (enum cl_image_id)p->bimage;
		s->fd = l->base->fd[bim];
		s->from = p->bchunk * l->cs;
		s->to = s->from + cl_chunk_len(l->base->size[bim], l->cs, p->bchunk);
		return !p->bhole;
	}
	if (p->verify) {
		s->fd = p->fd;
		s->from = p->verify->index * l->cs;
		s->to = s->from + l->cs;
		return 1;
	}
	s->fd = p->fd;
	s->from = p->foff;
	s->to = p->foff + p->valid;
	return p->fd >= 0 && p->valid;
}

static void span_advise(const struct span *s)
{
	if (s->fd >= 0 && s->to > s->from)
		posix_fadvise(s->fd, (off_t)s->from, (off_t)(s->to - s->from), POSIX_FADV_WILLNEED);
}

/* Index hashes of base chunks [first, to) of image im, to be announced. */
struct index_span {
	int im; /* -1: none */
	uint64_t first, to;
};

static void index_advise(const struct cl_lazy *l, const struct index_span *x)
{
	if (x->im >= 0)
		cl_base_index_advise(l->base, (enum cl_image_id)x->im, x->first, x->to - x->first);
}

/* First uses of base chunks read their hashes from the index too; those of
 * chunks near each other share its pages. */
static void index_add(const struct cl_lazy *l, struct index_span *x, const struct piece *p)
{
	if (x->im != p->bimage || p->bchunk < x->first || p->bchunk > x->to + INDEX_GAP ||
	    p->bchunk - x->first >= ADVISE_MAX / CL_SHA256_LEN) {
		index_advise(l, x);
		*x = (struct index_span){p->bimage, p->bchunk, p->bchunk};
	}
	if (p->bchunk + 1 > x->to)
		x->to = p->bchunk + 1;
}

void lazy_plan_advise(const struct cl_lazy *l, const struct plan *pl)
{
	struct span cur = {-1, 0, 0}, s;
	struct index_span x = {-1, 0, 0};
	size_t i;

	for (i = 0; i < pl->n; i++) {
		if (pl->p[i].bimage >= 0)
			index_add(l, &x, &pl->p[i]);
		if (!piece_span(l, &pl->p[i], &s))
			continue;
		if (s.fd == cur.fd && s.from >= cur.from && s.from <= cur.to &&
		    s.to - cur.from <= ADVISE_MAX) {
			cur.to = s.to > cur.to ? s.to : cur.to;
			continue;
		}
		span_advise(&cur);
		cur = s;
	}
	span_advise(&cur);
	index_advise(l, &x);
}

/* A base chunk past the base's end or a hole in it reads as zeros. */
static int base_zero(const struct cl_lazy *l, enum cl_image_id im, uint64_t k)
{
	return k >= l->base->nchunks[im] || !cl_bit_get(l->base_data[im], k);
}

enum lazy_chunk_class lazy_chunk_class_locked(struct cl_lazy *l, enum cl_image_id im, uint64_t k)
{
	const struct cl_chunk *c;

	lazy_assert_locked(l);
	if (cl_bit_get(l->img[im].modified, k))
		return LAZY_CHUNK_LOCAL;
	c = cl_recindex_find(&l->ix, im, k);
	if (!c)
		return base_zero(l, im, k) ? LAZY_CHUNK_ZERO : LAZY_CHUNK_LOCAL;
	switch (c->recipe) {
	case CL_R_ZERO:
		return LAZY_CHUNK_ZERO;
	case CL_R_BASE_DISK:
	case CL_R_BASE_MEMORY:
		return base_zero(l, c->recipe == CL_R_BASE_DISK ? CL_DISK : CL_MEMORY, c->arg)
		           ? LAZY_CHUNK_ZERO
		           : LAZY_CHUNK_LOCAL;
	}
	return LAZY_CHUNK_OVERLAY;
}

/* Safe to call again: a failed plan is freed by its maker and its caller. */
void lazy_plan_free(struct plan *pl)
{
	free(pl->p);
	free(pl->segs);
	pl->p = NULL;
	pl->segs = NULL;
}

/* Splits [off, off + len) into pieces, or lists the segments
 * it waits for. */
int lazy_plan_locked(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len, uint8_t *dst,
                     struct plan *pl)
{
	uint64_t k = off / l->cs, end = off + len, pos = off;
	size_t max = len / l->cs + 2, i;
	int64_t s;

	lazy_assert_locked(l);
	memset(pl, 0, sizeof(*pl));
	pl->p = malloc(max * sizeof(*pl->p));
	pl->segs = malloc(max * sizeof(*pl->segs));
	if (!pl->p || !pl->segs) {
		lazy_plan_free(pl);
		return -ENOMEM;
	}
	for (; pos < end; k++) {
		struct piece *p = &pl->p[pl->n];
		uint32_t co = (uint32_t)(pos - k * l->cs);
		p->len = (uint32_t)((end - pos) < l->cs - co ? end - pos : l->cs - co);
		p->dst = dst ? dst + (pos - off) : NULL;
		s = resolve_locked(l, im, k, co, p);
		if (s >= 0) {
			for (i = 0; i < pl->nsegs && pl->segs[i] != s; i++)
				;
			if (i == pl->nsegs)
				pl->segs[pl->nsegs++] = s;
		} else {
			pl->n++;
		}
		pos += p->len;
	}
	return 0;
}
