/* SPDX-License-Identifier: GPL-2.0-only */
/* The segment state machine: ABSENT -> FETCHING -> DONE (in the cache) or
 * MEM (held in memory when the cache refuses it), back to ABSENT after a
 * transient failure (with backoff) or a damaged cache, BAD after failing
 * its checks SEG_TRIES times or when the pack is gone; and what each
 * outcome means for the requests waiting on it. */
#include "cl_lazy_int.h"
#include "cl_bitmap.h"
#include "cl_error.h"
#include "cl_synth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_DELAY_MIN 0.2 /* background refetch backoff after a failure */
#define RETRY_DELAY_MAX 5.0
#define SEG_TRIES       2  /* integrity failures before a segment is BAD */
#define SPILL_MAX       16 /* segments held in memory at most (about 1 MiB each) */

/* Names the pack in the last error, unless the message already does. */
int lazy_pack_error(struct cl_lazy *l, int r)
{
	const char *msg = cl_error_msg();

	if (!strncmp(msg, l->pack_location, strlen(l->pack_location)))
		return r;
	return cl_errorf(r, "%s: %s", l->pack_location, msg);
}

/* Segment s is in the cache; wakes its waiters onto *done. */
void lazy_segment_done_locked(struct cl_lazy *l, uint32_t s, struct waiter **done)
{
	struct segment *sg = &l->seg[s];
	uint64_t i;
	uint32_t k;

	lazy_assert_locked(l);
	sg->state = SEG_DONE;
	sg->bad_tries = 0;
	memset(sg->fail_until, 0, sizeof(sg->fail_until));
	if (sg->demanded) {
		sg->demanded = 0;
		l->demand_queue--;
	}
	l->segs_done++;
	l->map_dirty = 1;
	for (i = l->ix.seg_start[s]; i < l->ix.seg_start[s + 1]; i++) {
		const struct cl_chunk *c = &l->m->chunks[l->ix.seg_recs[i]];
		cl_bit_set(l->img[c->image].verified, c->index);
		if (!cl_bit_get(l->img[c->image].log[CL_EV_PRESENT].seen, c->index))
			l->img[c->image].st.chunk_fetches++;
		lazy_event_locked(l, c->image, CL_EV_PRESENT, c->index);
	}
	for (k = 0; k < CL_NIMAGES; k++)
		l->img[k].missing -= l->ix.seg_nrec[k][s];
	for (k = 0; k < sg->nw; k++) {
		struct waiter *w = sg->w[k];
		if (--w->pending == 0) {
			l->img[w->image].st.waiting--;
			lazy_unlink_waiter_locked(l, w);
			w->cnext = *done;
			*done = w;
		}
	}
	sg->nw = 0;
	if (l->segs_done == l->m->nsegments && l->state == CL_LAZY_STREAMING)
		l->state = CL_LAZY_COMPLETE;
}

/* Fails every waiter of segment s onto *done. */
static void segment_fail_locked(struct cl_lazy *l, uint32_t s, struct waiter **done)
{
	struct segment *sg = &l->seg[s];

	lazy_assert_locked(l);
	while (sg->nw) {
		struct waiter *w = sg->w[0];
		lazy_drop_waiter_locked(l, w);
		w->result = -EIO;
		w->cnext = *done;
		*done = w;
	}
}

/* Answers that no retry will change: the pack changed on the server, is
 * gone or is refused. */
int lazy_permanent(int r)
{
	return r == -ESTALE || r == -ENOENT || r == -EACCES || r == -EPROTONOSUPPORT || r == -ELOOP;
}

/* The pack cannot be used any more; every segment still
 * missing fails at once, with l->last_error as the reason. */
void lazy_pack_failed_locked(struct cl_lazy *l, struct waiter **done)
{
	uint32_t s;

	lazy_assert_locked(l);
	l->state = CL_LAZY_FAILED;
	snprintf(l->reason, sizeof(l->reason), "%s", l->last_error);
	for (s = 0; s < l->m->nsegments; s++) {
		struct segment *sg = &l->seg[s];

		if (sg->state != SEG_ABSENT)
			continue;
		sg->state = SEG_BAD;
		if (sg->demanded) {
			sg->demanded = 0;
			l->demand_queue--;
		}
		segment_fail_locked(l, s, done);
	}
}

void lazy_backoff_locked(struct cl_lazy *l)
{
	lazy_assert_locked(l);
	l->bg_delay = l->bg_delay ? l->bg_delay * 2 : RETRY_DELAY_MIN;
	if (l->bg_delay > RETRY_DELAY_MAX)
		l->bg_delay = RETRY_DELAY_MAX;
}

void lazy_run_done(struct cl_lazy *l, struct waiter *done)
{
	struct waiter *next;
	struct evwait *ready;

	lazy_lock(l);
	ready = lazy_ready_evwaits_locked(l);
	lazy_unlock(l);
	lazy_run_evwaits(ready);
	for (; done; done = next) {
		next = done->cnext;
		if (done->result < 0)
			lazy_finish(l, done, done->result);
		else
			lazy_attempt(l, done);
	}
}

void lazy_segment_lost_locked(struct cl_lazy *l, uint32_t s)
{
	int k;

	lazy_assert_locked(l);
	l->seg[s].state = SEG_ABSENT;
	l->segs_done--;
	for (k = 0; k < CL_NIMAGES; k++)
		l->img[k].missing += l->ix.seg_nrec[k][s];
	if (l->state == CL_LAZY_COMPLETE)
		l->state = CL_LAZY_STREAMING;
}

/* Forgets a segment held in memory. */
void lazy_spill_drop_locked(struct cl_lazy *l, uint32_t s)
{
	struct segment *sg = &l->seg[s];

	lazy_assert_locked(l);
	free(sg->raw);
	sg->raw = NULL;
	l->spilled--;
	lazy_segment_lost_locked(l, s);
	if (s < l->bg_next)
		l->bg_next = s;
}

/* Holds decoded segment s in memory, evicting the least recently used one
 * past SPILL_MAX. */
static void spill_locked(struct cl_lazy *l, uint32_t s, uint8_t *raw)
{
	uint32_t i, lru = UINT32_MAX;

	lazy_assert_locked(l);
	if (l->spilled >= SPILL_MAX) {
		for (i = 0; i < l->m->nsegments; i++)
			if (i != s && l->seg[i].state == SEG_MEM &&
			    (lru == UINT32_MAX || l->seg[i].used < l->seg[lru].used))
				lru = i;
		if (lru != UINT32_MAX)
			lazy_spill_drop_locked(l, lru);
	}
	l->seg[s].raw = raw;
	l->seg[s].used = cl_now();
	l->spilled++;
}

/* After fetching (or failing to fetch) segment s: records the outcome. */
void lazy_segment_outcome(struct cl_lazy *l, uint32_t s, int r, uint8_t *spill, int background)
{
	struct segment *sg = &l->seg[s];
	struct waiter *done = NULL;
	double t = cl_now();
	int save;

	lazy_lock(l);
	if (background)
		l->bg_busy--;
	if (r == 0) {
		lazy_segment_done_locked(l, s, &done);
		if (spill) {
			l->seg[s].state = SEG_MEM;
			spill_locked(l, s, spill);
			snprintf(l->cache_note, sizeof(l->cache_note),
			         "cannot write the cache (%s); serving from memory",
			         cl_error_msg());
		}
		l->bg_delay = 0;
	} else {
		sg->state = SEG_ABSENT;
		snprintf(l->last_error, sizeof(l->last_error), "%s", cl_error_msg());
		if (lazy_permanent(r)) {
			lazy_pack_failed_locked(l, &done);
		} else if (r == -EBADMSG && ++sg->bad_tries >= SEG_TRIES) {
			/* Fetched twice and wrong twice: the pack is bad. */
			sg->state = SEG_BAD;
			if (sg->demanded) {
				sg->demanded = 0;
				l->demand_queue--;
			}
			l->state = CL_LAZY_FAILED;
			snprintf(l->reason, sizeof(l->reason), "%s", l->last_error);
			segment_fail_locked(l, s, &done);
		} else if (r != -EBADMSG) {
			/* Transient (or so we hope): back off; waiters keep their
			 * deadlines and the demand stays queued. */
			lazy_backoff_locked(l);
			l->bg_resume = t + l->bg_delay;
		}
		/* Requests still wait on it: it stays a demand fetch. */
		if (sg->state == SEG_ABSENT && sg->nw && !sg->demanded) {
			sg->demanded = 1;
			l->demand_queue++;
		}
		if (s < l->bg_next)
			l->bg_next = s;
	}
	save = l->map_dirty && t - l->map_saved >= MAP_SAVE_INTERVAL;
	if (l->segs_done == l->m->nsegments && l->map_dirty)
		save = 1;
	pthread_cond_broadcast(&l->work);
	lazy_unlock(l);
	if (save)
		lazy_save_map(l);
	lazy_run_done(l, done);
}

/* Fetches, checks and decodes segment s into the cache. If the cache
 * cannot take it (full, read-only), *spill receives the decoded segment
 * and 0 is returned: reads are then served from memory. */
int lazy_fetch_segment(struct cl_lazy *l, uint32_t s, const uint8_t *comp, uint8_t **spill)
{
	uint8_t *raw;
	int r;

	*spill = NULL;
	if (comp) {
		raw = malloc(l->m->segments[s].rlen ? l->m->segments[s].rlen : 1);
		if (!raw)
			return -ENOMEM;
		r = cl_segment_decode(l->m, s, comp, l->m->segments[s].clen, raw);
		if (r < 0) {
			free(raw);
			return lazy_pack_error(l, r);
		}
	} else {
		r = cl_segment_fetch(l->m, l->pack, s, &raw);
		if (r < 0)
			return lazy_pack_error(l, r);
	}
	r = lazy_decode_into_cache(l, s, raw);
	if (r < 0 && r != -EBADMSG && r != -ENOMEM) {
		*spill = raw;
		return 0;
	}
	free(raw);
	if (r < 0)
		lazy_pack_error(l, r);
	return r;
}
