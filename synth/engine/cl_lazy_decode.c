/* SPDX-License-Identifier: GPL-2.0-only */
/* Decoding a fetched segment into the cache, in batches. The chunks that
 * requests wait on go first, alone in their batch, and those requests are
 * answered as soon as their chunks are in the cache; then the rest of the
 * segment in order. Each payload is decoded once for all the chunks that
 * copy it (its dedup targets, which the meta gives the same SHA-256), and a
 * batch reaches the cache in one write per run of neighbouring chunks. The
 * engine lock is taken between batches only, never across decoding or I/O:
 * there a batch is published (its chunks readable ahead of the segment,
 * through seg->ready) and the next one chosen. */
#include "cl_lazy_int.h"
#include "cl_bitmap.h"
#include "cl_error.h"
#include "cl_synth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define BATCH_BYTES (256u << 10) /* decoded payloads per batch */
#define WRITE_IOV   256          /* chunks per write */
#define NONE        UINT32_MAX

/* One chunk of a batch to write: a record's bytes, in a decoded slot. */
struct wr {
	const uint8_t *buf;
	uint64_t index;
	uint32_t len;
	uint8_t image;
};

/* A fetched segment being decoded, owned by the thread that decodes it
 * (ready is also seg->ready while published: then under the lock). Its
 * records are numbered locally: seg_recs[first + j]. */
struct arrival {
	struct cl_lazy *l;
	uint32_t s;
	const uint8_t *raw;
	uint64_t first;
	uint32_t n;
	uint32_t *owner; /* the record whose payload makes record j (j itself if none other) */
	uint32_t *gnext; /* the next record of the same payload, or NONE */
	uint8_t *taken;  /* bitmap: payloads decoded or in the batch */
	uint8_t *ready;  /* bitmap: records in the cache, checked */
	uint32_t cursor; /* the rest: the next record to consider */
	uint32_t *heads; /* the batch: its payloads' owners */
	uint32_t nheads, maxheads;
	uint8_t *slots; /* the batch's decoded payloads, one chunk each */
	struct wr *wr;  /* the batch's chunks to write */
	uint32_t nwr;
	uint64_t decodes; /* payloads decoded since the last publish */
	int counted;      /* its bytes count as fetched */
};

static const struct cl_chunk *rec(const struct arrival *a, uint32_t j)
{
	return &a->l->m->chunks[a->l->ix.seg_recs[a->first + j]];
}

static uint32_t rec_len(const struct cl_lazy *l, const struct cl_chunk *c)
{
	return cl_chunk_len(l->m->image_size[c->image], l->cs, c->index);
}

/* The local number of record r (an index into m->chunks) in segment s, or
 * NONE: seg_recs lists each segment's records in meta order. */
static uint32_t local_index(const struct cl_lazy *l, uint32_t s, uint64_t r)
{
	uint64_t lo = l->ix.seg_start[s], hi = l->ix.seg_start[s + 1], mid, base = lo;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (l->ix.seg_recs[mid] < r)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < l->ix.seg_start[s + 1] && l->ix.seg_recs[lo] == r)
		return (uint32_t)(lo - base);
	return NONE;
}

int lazy_chunk_ready_locked(const struct cl_lazy *l, const struct cl_chunk *c)
{
	const struct segment *sg = &l->seg[c->p.seg];
	uint32_t j;

	lazy_assert_locked(l);
	if (sg->state != SEG_FETCHING || !sg->ready)
		return 0;
	j = local_index(l, c->p.seg, (uint64_t)(c - l->m->chunks));
	return j != NONE && cl_bit_get(sg->ready, j);
}

/* Groups the records by payload: a copy joins the record it copies, unless
 * their lengths differ (then it is decoded alone and fails its check, as
 * cl_chunk_synthesize() says). */
static void group(struct arrival *a)
{
	uint32_t j, o;

	for (j = 0; j < a->n; j++) {
		const struct cl_chunk *c = rec(a, j);

		a->owner[j] = j;
		a->gnext[j] = NONE;
		if (c->recipe != CL_R_DEDUP)
			continue;
		o = local_index(a->l, a->s, c->arg);
		if (o == NONE || a->owner[o] != o || rec_len(a->l, rec(a, o)) != rec_len(a->l, c))
			continue;
		a->owner[j] = o;
		a->gnext[j] = a->gnext[o];
		a->gnext[o] = j;
	}
}

static void arrival_free(struct arrival *a)
{
	free(a->owner);
	free(a->gnext);
	free(a->taken);
	free(a->ready);
	free(a->heads);
	free(a->slots);
	free(a->wr);
}

static int arrival_init(struct arrival *a, struct cl_lazy *l, uint32_t s, const uint8_t *raw)
{
	memset(a, 0, sizeof(*a));
	a->l = l;
	a->s = s;
	a->raw = raw;
	a->first = l->ix.seg_start[s];
	a->n = (uint32_t)(l->ix.seg_start[s + 1] - a->first);
	a->maxheads = BATCH_BYTES / l->cs ? BATCH_BYTES / l->cs : 1;
	if (a->maxheads > a->n)
		a->maxheads = a->n ? a->n : 1;
	a->owner = malloc((a->n + 1) * sizeof(*a->owner));
	a->gnext = malloc((a->n + 1) * sizeof(*a->gnext));
	a->taken = cl_bitmap_new(a->n + 1);
	a->ready = cl_bitmap_new(a->n + 1);
	a->heads = malloc(a->maxheads * sizeof(*a->heads));
	a->slots = malloc((size_t)a->maxheads * l->cs);
	a->wr = malloc((a->n + 1) * sizeof(*a->wr));
	if (!a->owner || !a->gnext || !a->taken || !a->ready || !a->heads || !a->slots || !a->wr) {
		arrival_free(a);
		return -ENOMEM;
	}
	group(a);
	return 0;
}

/* Puts the payload of record j's group into the batch, unless it is there
 * or done already. */
static void take(struct arrival *a, uint32_t j)
{
	uint32_t o = a->owner[j];

	if (cl_bit_get(a->taken, o) || a->nheads == a->maxheads)
		return;
	cl_bit_set(a->taken, o);
	a->heads[a->nheads++] = o;
}

/* How many chunks of waiter w this segment still owes (chunks written since
 * it parked are served from the store); with want, their payloads join the
 * batch. */
static uint64_t owed_locked(struct arrival *a, const struct waiter *w, int want)
{
	struct cl_lazy *l = a->l;
	uint64_t k, last = (w->off + w->len - 1) / l->cs, owed = 0;
	const struct cl_chunk *c;
	uint32_t j;

	lazy_assert_locked(l);
	for (k = w->off / l->cs; k <= last; k++) {
		if (cl_bit_get(l->img[w->image].modified, k))
			continue;
		c = cl_recindex_find(&l->ix, w->image, k);
		if (!c || c->recipe < CL_R_DEDUP || c->p.seg != a->s)
			continue;
		j = local_index(l, a->s, (uint64_t)(c - l->m->chunks));
		if (j == NONE || cl_bit_get(a->ready, j))
			continue;
		owed++;
		if (want)
			take(a, j);
	}
	return owed;
}

/* The batch just written is readable: marks its chunks ready (checked:
 * cl_chunk_synthesize hashed them) and moves the waiters this segment owes
 * nothing any more onto *done (those waiting on no other segment). */
static void publish_locked(struct arrival *a, struct waiter **done)
{
	struct cl_lazy *l = a->l;
	struct segment *sg = &l->seg[a->s];
	uint32_t i, j, k;

	lazy_assert_locked(l);
	/* It arrived intact: counted now, as readers may see it before its
	 * outcome. */
	if (!a->counted)
		l->bytes_fetched += l->m->segments[a->s].clen;
	a->counted = 1;
	sg->ready = a->ready;
	for (i = 0; i < a->nheads; i++)
		for (j = a->heads[i]; j != NONE; j = a->gnext[j]) {
			const struct cl_chunk *c = rec(a, j);
			cl_bit_set(a->ready, j);
			cl_bit_set(l->img[c->image].verified, c->index);
		}
	l->decodes += a->decodes;
	a->decodes = 0;
	for (k = 0; k < sg->nw;) {
		struct waiter *w = sg->w[k];
		if (owed_locked(a, w, 0)) {
			k++;
			continue;
		}
		sg->w[k] = sg->w[--sg->nw];
		if (--w->pending == 0) {
			l->img[w->image].st.waiting--;
			lazy_unlink_waiter_locked(l, w);
			w->cnext = *done;
			*done = w;
		}
	}
}

/* The next batch: the payloads that waiters need, alone, so that they are
 * answered first; else the next ones in order. */
static void pick_locked(struct arrival *a)
{
	struct segment *sg = &a->l->seg[a->s];
	uint32_t k;

	lazy_assert_locked(a->l);
	a->nheads = 0;
	for (k = 0; k < sg->nw && a->nheads < a->maxheads; k++)
		owed_locked(a, sg->w[k], 1);
	if (a->nheads)
		return;
	for (; a->cursor < a->n && a->nheads < a->maxheads; a->cursor++)
		take(a, a->cursor);
}

/* Decodes each payload of the batch once, into its slot; lists every chunk
 * made of it to be written. */
static int decode_batch(struct arrival *a)
{
	struct cl_lazy *l = a->l;
	uint32_t i, j;
	int r;

	a->nwr = 0;
	for (i = 0; i < a->nheads; i++) {
		uint8_t *slot = a->slots + (size_t)i * l->cs;

		r = cl_chunk_synthesize(l->m, l->base, rec(a, a->heads[i]), a->raw, slot);
		if (r < 0)
			return r;
		a->decodes++;
		for (j = a->heads[i]; j != NONE; j = a->gnext[j]) {
			const struct cl_chunk *c = rec(a, j);
			a->wr[a->nwr++] = (struct wr){slot, c->index, rec_len(l, c), c->image};
		}
	}
	return 0;
}

static int cmp_wr(const void *x, const void *y)
{
	const struct wr *a = x, *b = y;

	if (a->image != b->image)
		return a->image < b->image ? -1 : 1;
	return a->index < b->index ? -1 : a->index > b->index;
}

/* pwritev until all of iov[0..n) is written (iov is consumed). */
static int pwritev_full(int fd, struct iovec *iov, int n, uint64_t off, const char *path)
{
	ssize_t w;

	while (n > 0) {
		w = pwritev(fd, iov, n, (off_t)off);
		if (w <= 0) {
			if (w < 0 && errno == EINTR)
				continue;
			return cl_errorf(w < 0 ? -errno : -EIO, "%s: write failed: %s", path,
			                 w < 0 ? strerror(errno) : "nothing written");
		}
		off += (uint64_t)w;
		for (; n > 0 && (size_t)w >= iov->iov_len; iov++, n--)
			w -= (ssize_t)iov->iov_len;
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* Writes the batch into the cache: one write per run of neighbouring
 * chunks of an image. */
static int write_batch(struct arrival *a)
{
	struct cl_lazy *l = a->l;
	struct iovec iov[WRITE_IOV];
	uint32_t i, j;
	int n, r = 0;

	qsort(a->wr, a->nwr, sizeof(*a->wr), cmp_wr);
	for (i = 0; i < a->nwr && r == 0; i = j) {
		const struct image *img = &l->img[a->wr[i].image];
		for (j = i, n = 0; j < a->nwr && n < WRITE_IOV; j++, n++) {
			if (j > i &&
			    (a->wr[j].image != a->wr[i].image ||
			     a->wr[j].index != a->wr[j - 1].index + 1 || a->wr[j - 1].len != l->cs))
				break;
			iov[n] = (struct iovec){(void *)a->wr[j].buf, a->wr[j].len};
		}
		r = pwritev_full(img->cache_fd, iov, n, a->wr[i].index * l->cs, img->cache_path);
	}
	return r;
}

int lazy_decode_into_cache(struct cl_lazy *l, uint32_t s, const uint8_t *raw)
{
	struct waiter *done;
	struct arrival a;
	int r;

	r = arrival_init(&a, l, s, raw);
	if (r < 0)
		return r;
	for (;;) {
		done = NULL;
		lazy_lock(l);
		publish_locked(&a, &done);
		lazy_unlock(l);
		if (done)
			lazy_run_done(l, done);
		/* Chosen after answering: requests that came meanwhile go next. */
		lazy_lock(l);
		pick_locked(&a);
		lazy_unlock(l);
		if (!a.nheads)
			break;
		r = decode_batch(&a);
		if (r == 0)
			r = write_batch(&a);
		if (r < 0)
			break;
	}
	/* What was published stays in the cache; the segment's state says the
	 * rest from now on (its outcome follows). */
	lazy_lock(l);
	l->seg[s].ready = NULL;
	l->decodes += a.decodes;
	lazy_unlock(l);
	arrival_free(&a);
	return r;
}
