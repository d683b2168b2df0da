/* SPDX-License-Identifier: GPL-2.0-only */
/* The push of the postcopy source (cl_pcsource_int.h): every page the
 * destination did not ask for, without waiting on the network. In order:
 * the pages of each memory chunk the engine makes present (its PRESENT
 * events: the order segments arrive, a requested page's neighbours right
 * after its segment is decoded), then the pages the base holds; pages of
 * chunks known zero are marked, never sent; the neighbours of an answered
 * page (its segment's) before the events that came earlier. Only when the
 * engine's stream will not bring the missing segments by itself (a failed
 * one, one past every segment with memory) does the push wait for pages,
 * as quiet reads of the engine: fetched, but neither demand fetches nor a
 * hold on the stream. Under no_stream it fetches nothing: what is not
 * asked for stays unsent and the migration open. */
#include "cl_pcsource_int.h"
#include "cl_lazy_int.h"
#include "cl_error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BATCH        64   /* pages per pushed section */
#define HOLD_S       2.0  /* the push waits for the guest to run, at most this long */
#define POLL_S       0.02 /* the push looks for new segments this often */
#define READ_SLACK_S 5.0  /* beyond the engine's memory bound */

/* The push's read of one page into buf: without waiting (-EAGAIN when its
 * segment is missing), or waiting as long as the engine's memory bound. */
static int push_read(struct cl_pcsource *ps, uint64_t off, int wait, uint8_t *buf)
{
	double until = cl_now() + ps->l->img[CL_MEMORY].timeout_ms / 1000.0 + READ_SLACK_S;
	struct pread *pr;
	int r;

	if (!wait)
		return lazy_read_present(ps->l, CL_MEMORY, off, PAGE, buf);
	r = pcs_read_page(ps, off, 1, &pr);
	if (r)
		return r;
	pthread_mutex_lock(&ps->lock);
	while (!pr->done && !ps->stop && cl_now() < until)
		cl_cond_wait_until(&ps->cond, &ps->lock, until);
	if (!pr->done) {
		pr->abandoned = 1;
		r = ps->stop ? -ECANCELED
		             : cl_errorf(-ETIMEDOUT, "page %#llx: no answer in time",
		                         (unsigned long long)off);
		pthread_mutex_unlock(&ps->lock);
		return r;
	}
	pthread_mutex_unlock(&ps->lock);
	r = pr->result < 0 ? (int)pr->result : 0;
	if (!r)
		memcpy(buf, pr->data, PAGE);
	free(pr);
	return r;
}

/* The costliest class of the chunks under page off (OVERLAY < LOCAL < ZERO). */
static enum lazy_chunk_class page_class(struct cl_pcsource *ps, uint64_t off)
{
	struct cl_lazy *l = ps->l;
	uint64_t k, last = (off + PAGE - 1) / l->cs;
	enum lazy_chunk_class c, worst = LAZY_CHUNK_ZERO;

	lazy_lock(l);
	for (k = off / l->cs; k <= last; k++) {
		c = lazy_chunk_class_locked(l, CL_MEMORY, k);
		worst = c < worst ? c : worst;
	}
	lazy_unlock(l);
	return worst;
}

/* Waits while answers wait to be written: they go first. */
static void yield_to_answers(struct cl_pcsource *ps)
{
	pthread_mutex_lock(&ps->lock);
	while ((ps->ready || ps->answering) && !ps->stop)
		cl_cond_wait_until(&ps->cond, &ps->lock, cl_now() + 0.1);
	pthread_mutex_unlock(&ps->lock);
}

/* Pages collected for one pushed section. */
struct pushq {
	uint64_t off[BATCH];
	size_t n;
	uint8_t (*buf)[PAGE]; /* BATCH pages */
	uint64_t events;      /* memory PRESENT events taken */
	uint64_t scan;        /* next page of the pass over local pages */
};

/* Marks zero[0..nz) zero and sends pages[0..np), leaving out what the
 * answers sent meanwhile. */
static int push_write(struct cl_pcsource *ps, const uint64_t *zero, size_t nz,
                      struct cl_pcstream_page *pages, size_t np)
{
	size_t i, k = 0;
	int r = 0;

	yield_to_answers(ps);
	pthread_mutex_lock(&ps->wlock);
	for (i = 0; !r && i < nz; i++)
		r = cl_pcstream_set_zero(ps->st, ps->main, zero[i]);
	for (i = 0; i < np; i++)
		if (!cl_pcstream_is_sent(ps->st, ps->main, pages[i].offset))
			pages[k++] = pages[i];
	if (!r && k)
		r = cl_pcstream_send(ps->st, pages, k);
	pthread_mutex_unlock(&ps->wlock);
	if (r)
		return r;
	pthread_mutex_lock(&ps->lock);
	ps->pushed += k;
	ps->zero_skipped += nz;
	pthread_mutex_unlock(&ps->lock);
	return 0;
}

/* Pushes the pages collected in q that are still due: zero ones marked,
 * the others read (a page whose segment is missing is skipped unless
 * wait) and sent in one section. */
static int push_flush(struct cl_pcsource *ps, struct pushq *q, int wait)
{
	struct cl_pcstream_page pages[BATCH];
	uint64_t zero[BATCH];
	size_t i, np = 0, nz = 0, nd = 0;
	int r = 0;

	pthread_mutex_lock(&ps->wlock);
	for (i = 0; i < q->n; i++)
		if (!cl_pcstream_is_sent(ps->st, ps->main, q->off[i]))
			q->off[nd++] = q->off[i];
	pthread_mutex_unlock(&ps->wlock);
	q->n = 0;
	for (i = 0; i < nd; i++) {
		if (page_class(ps, q->off[i]) == LAZY_CHUNK_ZERO) {
			zero[nz++] = q->off[i];
			continue;
		}
		r = push_read(ps, q->off[i], wait, q->buf[np]);
		if (r == -EAGAIN)
			continue;
		if (r)
			return r == -ECANCELED
			           ? r
			           : cl_errorf(r, "page %#llx of %s: %s",
			                       (unsigned long long)q->off[i], CL_PCSOURCE_BLOCK,
			                       *cl_error_msg() ? cl_error_msg() : strerror(-r));
		if (cl_is_zero(q->buf[np], PAGE)) {
			zero[nz++] = q->off[i];
			continue;
		}
		pages[np].block = ps->main;
		pages[np].offset = q->off[i];
		pages[np].data = q->buf[np];
		np++;
	}
	return push_write(ps, zero, nz, pages, np);
}

static int push_add(struct cl_pcsource *ps, struct pushq *q, uint64_t off)
{
	q->off[q->n++] = off;
	return q->n == BATCH ? push_flush(ps, q, 0) : 0;
}

/* Adds the pages of memory chunk k. */
static int push_chunk(struct cl_pcsource *ps, struct pushq *q, uint64_t k)
{
	uint32_t cs = ps->l->cs;
	uint64_t off, end = (k + 1) * cs < ps->npages * PAGE ? (k + 1) * cs : ps->npages * PAGE;
	int r = 0;

	for (off = k * cs / PAGE * PAGE; !r && off < end; off += PAGE)
		r = push_add(ps, q, off);
	return r;
}

/* The memory chunks of the segments of answered pages, those present.
 * A segment still being decoded stays queued: its other chunks come next
 * time. 0 or -errno. */
static int push_prio(struct cl_pcsource *ps, struct pushq *q)
{
	const struct cl_recindex *ix = &ps->l->ix;
	const struct cl_chunk *c;
	uint32_t segs[PRIO_MAX];
	unsigned i, n = pcs_take_prio(ps, segs);
	uint64_t j;
	int r = 0, fetching;

	for (i = 0; !r && i < n; i++) {
		lazy_lock(ps->l);
		fetching = ps->l->seg[segs[i]].state == SEG_FETCHING;
		lazy_unlock(ps->l);
		if (fetching) {
			pcs_prio(ps, segs[i]);
			continue;
		}
		for (j = ix->seg_start[segs[i]]; !r && j < ix->seg_start[segs[i] + 1]; j++) {
			c = &ps->l->m->chunks[ix->seg_recs[j]];
			if (c->image == CL_MEMORY)
				r = push_chunk(ps, q, c->index);
		}
	}
	if (!r && q->n)
		r = push_flush(ps, q, 0);
	return r;
}

/* The pages of the memory chunks the engine made present since the last
 * call, in the order they came. 1 if there were some, 0, -errno. */
static int push_events(struct cl_pcsource *ps, struct pushq *q)
{
	struct cl_lazy_event ev[BATCH];
	/* about one section's worth: the answers' neighbours go in between */
	size_t i, n, want = (size_t)BATCH * PAGE / ps->l->cs;
	int r = 0;

	want = want < 1 ? 1 : want < BATCH ? want : BATCH;
	n = cl_lazy_events(ps->l, CL_MEMORY, CL_EV_PRESENT, q->events, ev, want);
	q->events += n;
	for (i = 0; !r && i < n; i++)
		r = push_chunk(ps, q, ev[i].chunk);
	if (!r && q->n)
		r = push_flush(ps, q, 0);
	return r ? r : n > 0;
}

/* The next pages that need no overlay data (the base's, zeros), in
 * order, once. 1 if it looked at some, 0 when that pass is over. */
static int push_local(struct cl_pcsource *ps, struct pushq *q)
{
	uint64_t end = q->scan + 4 * BATCH < ps->npages ? q->scan + 4 * BATCH : ps->npages;
	int r = 0;

	if (q->scan >= ps->npages)
		return 0;
	for (; !r && q->scan < end; q->scan++)
		if (page_class(ps, q->scan * PAGE) != LAZY_CHUNK_OVERLAY)
			r = push_add(ps, q, q->scan * PAGE);
	if (!r && q->n)
		r = push_flush(ps, q, 0);
	return r ? r : 1;
}

/* Whether the pages still due would never come without a fetch of ours
 * (or are all here): else the push waits for their PRESENT events. Under
 * no_stream nothing is fetched that was not asked for: the push sends what
 * demand brought and the migration stays open. */
static int must_fetch(struct cl_pcsource *ps)
{
	struct cl_lazy *l = ps->l;
	int f;

	lazy_lock(l);
	f = !l->img[CL_MEMORY].missing ||
	    (!l->o.no_stream && !lazy_stream_brings_locked(l, CL_MEMORY));
	lazy_unlock(l);
	return f;
}

/* One section of the pages still due, in page order, waiting for them. */
static int push_fetch(struct cl_pcsource *ps, struct pushq *q)
{
	uint64_t off;
	uint32_t b;

	pthread_mutex_lock(&ps->wlock);
	while (q->n < BATCH && !cl_pcstream_next(ps->st, &b, &off) &&
	       (!q->n || off > q->off[q->n - 1]))
		q->off[q->n++] = off;
	pthread_mutex_unlock(&ps->wlock);
	return push_flush(ps, q, 1);
}

static uint64_t pages_left(struct cl_pcsource *ps)
{
	uint64_t n;

	pthread_mutex_lock(&ps->wlock);
	n = cl_pcstream_left(ps->st);
	pthread_mutex_unlock(&ps->wlock);
	return n;
}

/* Waits for the package to be written and the guest to run (HOLD_S at
 * most: the push must not slow the resume), or for a stop. */
static int push_hold(struct cl_pcsource *ps)
{
	int r;

	pthread_mutex_lock(&ps->lock);
	while (!ps->stop && (!ps->t_started || (!ps->running && cl_now() < ps->t_started + HOLD_S)))
		cl_cond_wait_until(&ps->cond, &ps->lock,
		                   ps->t_started ? ps->t_started + HOLD_S : cl_now() + 1.0);
	r = ps->stop ? -ECANCELED : 0;
	pthread_mutex_unlock(&ps->lock);
	return r;
}

/* Sleeps seconds, or until a stop. 0 or -ECANCELED. */
static int push_nap(struct cl_pcsource *ps, double seconds)
{
	int r;

	pthread_mutex_lock(&ps->lock);
	if (!ps->stop)
		cl_cond_wait_until(&ps->cond, &ps->lock, cl_now() + seconds);
	r = ps->stop ? -ECANCELED : 0;
	pthread_mutex_unlock(&ps->lock);
	return r;
}

static int push_all(struct cl_pcsource *ps, struct pushq *q)
{
	int r = push_hold(ps);

	while (!r) {
		r = push_prio(ps, q);
		if (!r)
			r = push_events(ps, q);
		if (!r)
			r = push_local(ps, q);
		if (r) {
			r = r < 0 ? r : (pcs_stopped(ps) ? -ECANCELED : 0);
			continue;
		}
		if (!pages_left(ps))
			return 0;
		r = must_fetch(ps) ? push_fetch(ps, q) : push_nap(ps, POLL_S);
		if (!r && pcs_stopped(ps))
			r = -ECANCELED;
	}
	return r;
}

void *pcs_pusher_main(void *arg)
{
	struct cl_pcsource *ps = arg;
	struct pushq q = {.buf = malloc((size_t)BATCH * PAGE)};
	int r = q.buf ? push_all(ps, &q) : -ENOMEM;

	free(q.buf);
	pthread_mutex_lock(&ps->lock);
	if (r && r != -ECANCELED)
		pcs_fail_locked(ps, r, "push");
	ps->push_done = !r;
	pthread_cond_broadcast(&ps->cond);
	pthread_mutex_unlock(&ps->lock);
	return NULL;
}
