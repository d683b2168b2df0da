/* SPDX-License-Identifier: GPL-2.0-only */
/* The request path: reads and copy-on-write writes, which wait (as waiters
 * on their segments) for what has not arrived, with a bound. */
#include "cl_lazy_int.h"
#include "cl_bitmap.h"
#include "cl_error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void lazy_unlink_waiter_locked(struct cl_lazy *l, struct waiter *w)
{
	lazy_assert_locked(l);
	l->loud_waiters -= !w->quiet;
	w->prev->next = w->next;
	w->next->prev = w->prev;
	w->prev = w->next = w;
}

/* Takes w off every segment list and l->waiters. */
void lazy_drop_waiter_locked(struct cl_lazy *l, struct waiter *w)
{
	uint32_t s, i;

	lazy_assert_locked(l);
	if (w->pending) {
		for (s = 0; s < l->m->nsegments; s++) {
			struct segment *sg = &l->seg[s];
			for (i = 0; i < sg->nw; i++)
				if (sg->w[i] == w) {
					sg->w[i] = sg->w[--sg->nw];
					break;
				}
		}
	}
	w->pending = 0;
	if (w->next != w) {
		l->img[w->image].st.waiting--;
		lazy_unlink_waiter_locked(l, w);
	}
}

/* Lists w on the segments of pl; 1 if it now waits, 0 if nothing was left
 * to wait for (retry), -errno if it cannot wait. */
static int park_locked(struct cl_lazy *l, struct waiter *w, const struct plan *pl)
{
	size_t i;
	int queued = 0;

	lazy_assert_locked(l);
	if (l->shutdown)
		return cl_errorf(-EIO, "shutting down");
	for (i = 0; i < pl->nsegs; i++) {
		const struct segment *sg = &l->seg[pl->segs[i]];
		if (sg->state == SEG_BAD ||
		    (sg->fail_until[w->image] && cl_now() < sg->fail_until[w->image]))
			return cl_errorf(-EIO, "segment %lld cannot be had",
			                 (long long)pl->segs[i]);
	}
	for (i = 0; i < pl->nsegs; i++) {
		struct segment *sg = &l->seg[pl->segs[i]];
		struct waiter **nw;
		if (sg->state == SEG_DONE || sg->state == SEG_MEM)
			continue;
		if (sg->nw == sg->capw) {
			sg->capw = sg->capw ? 2 * sg->capw : 4;
			nw = realloc(sg->w, sg->capw * sizeof(*nw));
			if (!nw)
				return -ENOMEM; /* the caller drops w from the lists */
			sg->w = nw;
		}
		sg->w[sg->nw++] = w;
		w->pending++;
		if (sg->state == SEG_ABSENT && !sg->demanded) {
			sg->demanded = 1;
			l->demand_queue++;
			queued = 1;
		}
	}
	if (!w->pending)
		return 0;
	if (!w->quiet)
		l->demand_at = cl_now();
	if (w->next == w) {
		/* First park: join the list and start the clock. */
		w->next = &l->waiters;
		w->prev = l->waiters.prev;
		l->waiters.prev->next = w;
		l->waiters.prev = w;
		l->img[w->image].st.waiting++;
		l->loud_waiters += !w->quiet;
		pthread_cond_signal(&l->tick);
	}
	if (queued)
		pthread_cond_broadcast(&l->work);
	return 1;
}

void lazy_finish(struct cl_lazy *l, struct waiter *w, ssize_t r)
{
	if (r < 0 && r != -ENOMEM) {
		lazy_lock(l);
		l->img[w->image].st.io_errors++;
		lazy_unlock(l);
	}
	w->done(w->ctx, r);
	free(w);
}

/* Marks the chunks of a request accessed (and, for writes, modified). */
static void touch_locked(struct cl_lazy *l, struct waiter *w, int modified)
{
	uint64_t k, last = (w->off + w->len - 1) / l->cs;

	lazy_assert_locked(l);
	for (k = w->off / l->cs; k <= last; k++) {
		lazy_event_locked(l, w->image, CL_EV_ACCESSED, k);
		if (modified) {
			cl_bit_set(l->img[w->image].modified, k);
			lazy_event_locked(l, w->image, CL_EV_MODIFIED, k);
		}
	}
}

static void attempt_read(struct cl_lazy *l, struct waiter *w)
{
	struct evwait *ready;
	struct plan pl;
	int r;

	for (;;) {
		lazy_lock(l);
		r = lazy_plan_locked(l, w->image, w->off, w->len, w->buf, &pl);
		if (r == 0 && pl.nsegs) {
			r = park_locked(l, w, &pl);
			if (r != 0) {
				if (r < 0)
					lazy_drop_waiter_locked(l, w);
				lazy_unlock(l);
				lazy_plan_free(&pl);
				if (r < 0)
					lazy_finish(l, w, r);
				return; /* parked: a worker calls lazy_attempt() again */
			}
			/* Everything arrived meanwhile: plan again. */
			lazy_unlock(l);
			lazy_plan_free(&pl);
			continue;
		}
		lazy_drop_waiter_locked(l, w);
		lazy_unlock(l);
		if (w->nsegs)
			*w->nsegs = 0;
		if (r == 0)
			r = lazy_run_pieces(l, w->image, pl.p, pl.n, w->segs, w->nsegs);
		lazy_plan_free(&pl);
		if (r != -EAGAIN)
			break;
	}
	if (r == 0 && !w->quiet) {
		lazy_lock(l);
		touch_locked(l, w, 0);
		l->img[w->image].st.bytes_read += w->len;
		ready = lazy_ready_evwaits_locked(l);
		lazy_unlock(l);
		lazy_run_evwaits(ready);
	}
	lazy_finish(l, w, r < 0 ? r : (ssize_t)w->len);
}

/* Copy-on-write: a chunk's first write copies what it held into the store
 * (unless the write covers it whole); l->store_lock makes that first write
 * atomic against other writers of the same chunk. */
static void attempt_write(struct cl_lazy *l, struct waiter *w)
{
	struct image *img = &l->img[w->image];
	uint64_t k, first = w->off / l->cs, last = (w->off + w->len - 1) / l->cs;
	uint8_t *chunk = NULL, *zero = NULL;
	struct evwait *ready;
	struct plan pl = {0};
	int r = 0;

	chunk = malloc(l->cs);
	if (!chunk) {
		lazy_finish(l, w, -ENOMEM);
		return;
	}
	pthread_mutex_lock(&l->store_lock);
retry:
	lazy_lock(l);
	/* Only the partly written chunks at either end need their old bytes. */
	for (k = first; k <= last && r == 0; k += (last > first ? last - first : 1)) {
		uint64_t cstart = k * l->cs;
		uint32_t clen = cl_chunk_len(l->m->image_size[w->image], l->cs, k);
		int whole = w->off <= cstart && w->off + w->len >= cstart + clen;
		if (whole || cl_bit_get(img->modified, k))
			continue;
		lazy_plan_free(&pl);
		r = lazy_plan_locked(l, w->image, cstart, clen, NULL, &pl);
		if (r == 0 && pl.nsegs) {
			r = park_locked(l, w, &pl);
			if (r > 0) {
				lazy_unlock(l);
				pthread_mutex_unlock(&l->store_lock);
				lazy_plan_free(&pl);
				free(chunk);
				return;
			}
			if (r == 0)
				goto again;
		}
	}
	lazy_drop_waiter_locked(l, w);
	lazy_unlock(l);
	lazy_plan_free(&pl);
	if (r < 0)
		goto out;
	for (k = first; k <= last && r == 0; k++) {
		uint64_t cstart = k * l->cs;
		uint32_t clen = cl_chunk_len(l->m->image_size[w->image], l->cs, k);
		uint64_t a = w->off > cstart ? w->off : cstart;
		uint64_t b = w->off + w->len < cstart + clen ? w->off + w->len : cstart + clen;
		int whole = a == cstart && b == cstart + clen;
		const uint8_t *src;

		lazy_lock(l);
		int modified = cl_bit_get(img->modified, k);
		if (!whole && !modified)
			r = lazy_plan_locked(l, w->image, cstart, clen, chunk, &pl);
		lazy_unlock(l);
		if (r < 0)
			break;
		if (!whole && !modified) {
			if (pl.nsegs) {
				/* Its segment went away meanwhile (bad cache). */
				lazy_plan_free(&pl);
				r = 0;
				goto retry;
			}
			r = lazy_run_pieces(l, w->image, pl.p, pl.n, NULL, NULL);
			lazy_plan_free(&pl);
			if (r == -EAGAIN) {
				r = 0;
				goto retry;
			}
			if (r < 0)
				break;
			r = cl_pwrite_full(img->store_fd, chunk, clen, cstart, img->store_path);
			if (r < 0)
				break;
		}
		if (w->wbuf) {
			src = (const uint8_t *)w->wbuf + (a - w->off);
		} else {
			if (!zero && !(zero = calloc(1, l->cs))) {
				r = -ENOMEM;
				break;
			}
			src = zero;
		}
		r = cl_pwrite_full(img->store_fd, src, (size_t)(b - a), a, img->store_path);
		if (r == 0 && !modified) {
			lazy_lock(l);
			cl_bit_set(img->modified, k);
			lazy_event_locked(l, w->image, CL_EV_MODIFIED, k);
			lazy_unlock(l);
		}
	}
out:
	pthread_mutex_unlock(&l->store_lock);
	free(chunk);
	free(zero);
	if (r == 0) {
		lazy_lock(l);
		touch_locked(l, w, 0);
		img->st.bytes_written += w->len;
		ready = lazy_ready_evwaits_locked(l);
		lazy_unlock(l);
		lazy_run_evwaits(ready);
	}
	lazy_finish(l, w, r < 0 ? r : (ssize_t)w->len);
	return;

again:
	lazy_unlock(l);
	r = 0;
	goto retry;
}

void lazy_attempt(struct cl_lazy *l, struct waiter *w)
{
	if (w->is_write)
		attempt_write(l, w);
	else
		attempt_read(l, w);
}

/* Where a request's bytes go: buf, or (read) buf and segs (see
 * cl_lazy_read_segs); or come from: wbuf (write, NULL for zeros). */
struct target {
	void *buf;
	const void *wbuf;
	struct cl_lazy_seg *segs;
	size_t *nsegs;
};

static void submit(struct cl_lazy *l, int is_write, enum cl_image_id im, uint64_t off, size_t len,
                   const struct target *t, cl_lazy_done_fn done, void *ctx, int quiet)
{
	struct waiter *w;
	uint64_t size;

	if (!l || (unsigned)im >= CL_NIMAGES || !done) {
		if (done)
			done(ctx, -EINVAL);
		return;
	}
	size = l->img[im].size;
	if (off >= size || !len) {
		/* Reads past the end see EOF; images do not grow. */
		done(ctx, is_write && len ? -ENOSPC : 0);
		return;
	}
	if (len > size - off) {
		if (is_write) {
			done(ctx, -ENOSPC);
			return;
		}
		len = (size_t)(size - off);
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		done(ctx, -ENOMEM);
		return;
	}
	w->prev = w->next = w;
	w->is_write = is_write;
	w->image = im;
	w->off = off;
	w->len = len;
	w->buf = t->buf;
	w->wbuf = t->wbuf;
	w->segs = t->segs;
	w->nsegs = t->nsegs;
	w->done = done;
	w->ctx = ctx;
	w->quiet = quiet;
	w->deadline = cl_now() + l->img[im].timeout_ms / 1000.0;
	if (!is_write)
		lazy_ahead(l, im, off, len);
	lazy_attempt(l, w);
}

void cl_lazy_read(struct cl_lazy *l, enum cl_image_id image, uint64_t off, size_t len, void *buf,
                  cl_lazy_done_fn done, void *ctx)
{
	struct target t = {.buf = buf};

	submit(l, 0, image, off, len, &t, done, ctx, 0);
}

void cl_lazy_read_segs(struct cl_lazy *l, enum cl_image_id image, uint64_t off, size_t len,
                       void *buf, struct cl_lazy_seg *segs, size_t *nsegs, cl_lazy_done_fn done,
                       void *ctx)
{
	struct target t = {.buf = buf, .segs = segs, .nsegs = nsegs};

	if (!segs || !nsegs) {
		if (done)
			done(ctx, -EINVAL);
		return;
	}
	*nsegs = 0;
	submit(l, 0, image, off, len, &t, done, ctx, 0);
}

void lazy_read_quiet(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len, void *buf,
                     cl_lazy_done_fn done, void *ctx)
{
	struct target t = {.buf = buf};

	submit(l, 0, im, off, len, &t, done, ctx, 1);
}

int lazy_read_present(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len, void *buf)
{
	struct plan pl;
	int r;

	if (!l || (unsigned)im >= CL_NIMAGES || !buf || off > l->img[im].size ||
	    len > l->img[im].size - off)
		return -EINVAL;
	lazy_lock(l);
	r = lazy_plan_locked(l, im, off, len, buf, &pl);
	lazy_unlock(l);
	if (r < 0)
		return r;
	r = pl.nsegs ? -EAGAIN : lazy_run_pieces(l, im, pl.p, pl.n, NULL, NULL);
	lazy_plan_free(&pl);
	return r;
}

void cl_lazy_write(struct cl_lazy *l, enum cl_image_id image, uint64_t off, size_t len,
                   const void *buf, cl_lazy_done_fn done, void *ctx)
{
	struct target t = {.wbuf = buf};

	submit(l, 1, image, off, len, &t, done, ctx, 0);
}
