/* SPDX-License-Identifier: GPL-2.0-only */
/* The threads: fetch workers that pick demanded segments first and stream
 * the rest in the background (or one worker reading the pack in order from
 * a server without ranges), and the timer that fails waits past their
 * bound and saves the presence map. */
#include "cl_lazy_int.h"
#include "cl_error.h"
#include "cl_source.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL_FAST_S    2.0  /* see fail_fast_locked() */
#define DEMAND_QUIET_S 0.05 /* see pick_locked() */

/* The next segment to fetch, or -1 (then *wait_until says when to look
 * again). Demand first; one worker stays off the stream. The
 * stream also holds back while requests wait and for DEMAND_QUIET_S after
 * the last one (quiet reads, the postcopy push's, do not count): on a shared link its segments
 * would queue ahead of the demanded ones, and a resumed VM faults in bursts. */
static int64_t pick_locked(struct cl_lazy *l, int *background, double *wait_until)
{
	double t = cl_now();
	uint32_t s;

	lazy_assert_locked(l);
	*wait_until = t + 1.0;
	if (l->demand_queue) {
		for (s = 0; s < l->m->nsegments; s++) {
			struct segment *sg = &l->seg[s];
			if (sg->demanded && sg->state == SEG_ABSENT &&
			    (l->bg_resume <= t || sg->bad_tries)) {
				int seen[CL_NIMAGES] = {0, 0};
				uint32_t i;
				for (i = 0; i < sg->nw; i++)
					if (!sg->w[i]->quiet && !seen[sg->w[i]->image]++)
						l->img[sg->w[i]->image].st.demand_fetches++;
				sg->state = SEG_FETCHING;
				sg->demanded = 0;
				l->demand_queue--;
				*background = 0;
				return s;
			}
		}
		if (l->bg_resume > t)
			*wait_until = l->bg_resume;
	}
	if (!l->started || l->o.no_stream || l->bg_busy + 1 >= l->nthreads + (l->nthreads == 1))
		return -1;
	if (l->bg_resume > t) {
		*wait_until = l->bg_resume;
		return -1;
	}
	if (l->loud_waiters || t < l->demand_at + DEMAND_QUIET_S) {
		if (!l->loud_waiters)
			*wait_until = l->demand_at + DEMAND_QUIET_S;
		return -1;
	}
	while (l->bg_next < l->m->nsegments && l->seg[l->bg_next].state != SEG_ABSENT)
		l->bg_next++;
	if (l->bg_next >= l->m->nsegments)
		return -1;
	s = l->bg_next++;
	l->seg[s].state = SEG_FETCHING;
	l->bg_busy++;
	*background = 1;
	return s;
}

int lazy_stream_brings_locked(struct cl_lazy *l, enum cl_image_id im)
{
	uint32_t s;

	lazy_assert_locked(l);
	if (!l->started || (l->o.no_stream && l->ranges) || l->state != CL_LAZY_STREAMING)
		return 0;
	for (s = 0; s < l->m->nsegments; s++)
		if (l->ix.seg_nrec[im][s] &&
		    (l->seg[s].state == SEG_FETCHING ||
		     (l->seg[s].state == SEG_ABSENT && (s >= l->bg_next || !l->ranges))))
			return 1;
	return 0;
}

static void *worker_main(void *arg)
{
	struct cl_lazy *l = arg;
	uint8_t *spill;
	int64_t s;
	double until;
	int background, r;

	lazy_lock(l);
	while (!l->shutdown) {
		s = pick_locked(l, &background, &until);
		if (s < 0) {
			lazy_wait_locked(l, &l->work, until);
			continue;
		}
		lazy_unlock(l);
		r = lazy_fetch_segment(l, (uint32_t)s, NULL, &spill);
		lazy_segment_outcome(l, (uint32_t)s, r, spill, background);
		lazy_lock(l);
	}
	lazy_unlock(l);
	return NULL;
}

/* A server that ignores Range: one worker reads the pack in order. */
struct stream_ctx {
	struct cl_lazy *l;
	uint32_t seg; /* segment being filled */
	uint8_t *buf;
	uint32_t have;
};

static int stream_piece(void *arg, uint64_t off, const void *data, size_t len)
{
	struct stream_ctx *sc = arg;
	struct cl_lazy *l = sc->l;
	const uint8_t *p = data;
	uint8_t *spill;
	int r, skip;

	(void)off;
	while (len) {
		const struct cl_segment *sg = &l->m->segments[sc->seg];
		uint32_t n = sg->clen - sc->have < len ? sg->clen - sc->have : (uint32_t)len;
		memcpy(sc->buf + sc->have, p, n);
		sc->have += n;
		p += n;
		len -= n;
		if (sc->have < sg->clen)
			break;
		lazy_lock(l);
		if (l->shutdown) {
			lazy_unlock(l);
			return -ECANCELED;
		}
		skip = l->seg[sc->seg].state != SEG_ABSENT;
		if (!skip)
			l->seg[sc->seg].state = SEG_FETCHING;
		lazy_unlock(l);
		if (!skip) {
			r = lazy_fetch_segment(l, sc->seg, sc->buf, &spill);
			lazy_segment_outcome(l, sc->seg, r, spill, 0);
		}
		sc->seg++;
		sc->have = 0;
		if (sc->seg == l->m->nsegments)
			return 1;
	}
	return 0;
}

static void *stream_main(void *arg)
{
	struct cl_lazy *l = arg;
	struct stream_ctx sc = {.l = l};
	uint32_t max = 0, s;
	int r;

	for (s = 0; s < l->m->nsegments; s++)
		if (l->m->segments[s].clen > max)
			max = l->m->segments[s].clen;
	sc.buf = malloc(max ? max : 1);
	if (!sc.buf)
		return NULL;
	lazy_lock(l);
	while (!l->shutdown && l->segs_done < l->m->nsegments) {
		for (s = 0; s < l->m->nsegments && l->seg[s].state != SEG_ABSENT; s++)
			;
		if (s == l->m->nsegments) {
			lazy_wait_locked(l, &l->work, cl_now() + 1.0);
			continue;
		}
		lazy_unlock(l);
		sc.seg = s;
		sc.have = 0;
		r = cl_source_stream(l->pack, l->m->segments[s].offset, stream_piece, &sc);
		lazy_lock(l);
		if (r < 0 && r != -ECANCELED && !l->shutdown) {
			snprintf(l->last_error, sizeof(l->last_error), "%s", cl_error_msg());
			if (lazy_permanent(r)) {
				struct waiter *done = NULL;

				lazy_pack_failed_locked(l, &done);
				lazy_unlock(l);
				lazy_run_done(l, done);
				lazy_lock(l);
				continue;
			}
			lazy_backoff_locked(l);
			lazy_wait_locked(l, &l->work, cl_now() + l->bg_delay);
		}
	}
	lazy_unlock(l);
	free(sc.buf);
	return NULL;
}

/* After a wait timed out, new waits of the same image on
 * its segments fail at once for a moment. The kernel retries a failed
 * readahead with a plain read at once, which would otherwise wait a second
 * full bound. Other images keep their own bound: a disk timeout must not
 * fail a memory read (a SIGBUS in QEMU) of a segment both share. */
static void fail_fast_locked(struct cl_lazy *l, struct waiter *w, double t)
{
	struct plan pl;
	size_t i;

	lazy_assert_locked(l);
	if (lazy_plan_locked(l, w->image, w->off, w->len, NULL, &pl) < 0)
		return;
	for (i = 0; i < pl.nsegs; i++)
		l->seg[pl.segs[i]].fail_until[w->image] = t + FAIL_FAST_S;
	lazy_plan_free(&pl);
}

/* Fails the waiters whose bound has passed. */
static void *timer_main(void *arg)
{
	struct cl_lazy *l = arg;
	struct waiter *w, *next, *done = NULL;
	double t, until;
	int save;

	lazy_lock(l);
	while (!l->shutdown) {
		t = cl_now();
		until = t + MAP_SAVE_INTERVAL;
		for (w = l->waiters.next; w != &l->waiters; w = next) {
			next = w->next;
			if (w->deadline <= t) {
				lazy_drop_waiter_locked(l, w);
				fail_fast_locked(l, w, t);
				snprintf(
				    l->reason, sizeof(l->reason),
				    "a %s request waited %.1f s for its data (last error: %.150s)",
				    cl_image_name(w->image), l->img[w->image].timeout_ms / 1000.0,
				    l->last_error[0] ? l->last_error : "none");
				w->result = -EIO;
				w->cnext = done;
				done = w;
			} else if (w->deadline < until) {
				until = w->deadline;
			}
		}
		save = l->map_dirty && t - l->map_saved >= MAP_SAVE_INTERVAL;
		if (done || save) {
			lazy_unlock(l);
			if (save)
				lazy_save_map(l);
			lazy_run_done(l, done);
			done = NULL;
			lazy_lock(l);
			continue;
		}
		lazy_wait_locked(l, &l->tick, until);
	}
	lazy_unlock(l);
	return NULL;
}

int cl_lazy_start(struct cl_lazy *l)
{
	unsigned i, n;
	int r;

	if (!l || l->started)
		return -EINVAL;
	n = l->ranges ? l->o.connections : 1;
	l->threads = calloc(n, sizeof(pthread_t));
	if (!l->threads)
		return -ENOMEM;
	lazy_lock(l);
	l->started = 1;
	l->nthreads = n;
	lazy_unlock(l);
	for (i = 0; i < n; i++) {
		r = pthread_create(&l->threads[i], NULL, l->ranges ? worker_main : stream_main, l);
		if (r) {
			/* The threads started read nthreads under the lock. */
			lazy_lock(l);
			l->nthreads = i;
			lazy_unlock(l);
			return cl_errorf(-r, "cannot start fetch threads: %s", strerror(r));
		}
	}
	r = pthread_create(&l->timer, NULL, timer_main, l);
	if (r)
		return cl_errorf(-r, "cannot start the timer thread: %s", strerror(r));
	l->timer_started = 1;
	return 0;
}
