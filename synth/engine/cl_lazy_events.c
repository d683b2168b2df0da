/* SPDX-License-Identifier: GPL-2.0-only */
/* The engine's event logs (accessed, modified, present: one per image and
 * kind) and the waits on them (cl_lazy_events_wait). */
#include "cl_lazy_int.h"
#include "cl_bitmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Moves the full in-memory tail of e to its file. */
static int event_flush_locked(struct cl_lazy *l, struct evlog *e)
{
	lazy_assert_locked(l);
	if (e->fd < 0) {
		e->fd = open(l->store_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (e->fd < 0)
			return -errno;
	}
	if (cl_pwrite_full(e->fd, e->tail, EV_TAIL * sizeof(*e->tail),
	                   e->flushed * sizeof(*e->tail), "event log") < 0)
		return -EIO;
	e->flushed += EV_TAIL;
	return 0;
}

void lazy_event_locked(struct cl_lazy *l, enum cl_image_id im, enum cl_lazy_event_kind kind,
                       uint64_t chunk)
{
	struct evlog *e = &l->img[im].log[kind];
	struct cl_lazy_event *ev;

	lazy_assert_locked(l);
	if (cl_bit_get(e->seen, chunk))
		return;
	if (!e->tail && !(e->tail = malloc(EV_TAIL * sizeof(*e->tail))))
		return; /* the stream misses an event; nothing breaks */
	if (e->n - e->flushed == EV_TAIL && event_flush_locked(l, e) < 0)
		return;
	cl_bit_set(e->seen, chunk);
	ev = &e->tail[e->n - e->flushed];
	ev->usec = (uint64_t)((cl_now() - l->t0) * 1e6);
	ev->chunk = chunk;
	e->n++;
	if (kind == CL_EV_ACCESSED)
		l->img[im].st.chunks_accessed++;
	else if (kind == CL_EV_MODIFIED)
		l->img[im].st.chunks_modified++;
}

/* Takes the event waits that are now satisfied off the list. */
struct evwait *lazy_ready_evwaits_locked(struct cl_lazy *l)
{
	struct evwait **pp = &l->evwaits, *w, *ready = NULL;

	lazy_assert_locked(l);
	while ((w = *pp)) {
		if (l->shutdown || l->img[w->image].log[w->kind].n > w->from) {
			w->result = l->img[w->image].log[w->kind].n > w->from ? 0 : -ESHUTDOWN;
			*pp = w->next;
			w->next = ready;
			ready = w;
		} else {
			pp = &w->next;
		}
	}
	return ready;
}

void lazy_run_evwaits(struct evwait *ready)
{
	struct evwait *next;

	for (; ready; ready = next) {
		next = ready->next;
		ready->done(ready->ctx, ready->result);
		free(ready);
	}
}

size_t cl_lazy_events(struct cl_lazy *l, enum cl_image_id image, enum cl_lazy_event_kind kind,
                      uint64_t from, struct cl_lazy_event *out, size_t max)
{
	struct evlog *e;
	size_t n = 0;
	ssize_t got;

	if (!l || (unsigned)image >= CL_NIMAGES || (unsigned)kind >= CL_EV_KINDS || !out)
		return 0;
	lazy_lock(l);
	e = &l->img[image].log[kind];
	if (from < e->n) {
		n = e->n - from < max ? (size_t)(e->n - from) : max;
		if (from >= e->flushed) {
			memcpy(out, e->tail + (from - e->flushed), n * sizeof(*out));
		} else {
			/* Flushed events never change: read them after unlocking. */
			if (n > e->flushed - from)
				n = (size_t)(e->flushed - from);
			lazy_unlock(l);
			got = pread(e->fd, out, n * sizeof(*out), (off_t)(from * sizeof(*out)));
			return got > 0 ? (size_t)got / sizeof(*out) : 0;
		}
	}
	lazy_unlock(l);
	return n;
}

void *cl_lazy_events_wait(struct cl_lazy *l, enum cl_image_id image, enum cl_lazy_event_kind kind,
                          uint64_t from, cl_lazy_done_fn done, void *ctx)
{
	struct evwait *w;
	int now_result = 1;

	if (!l || (unsigned)image >= CL_NIMAGES || (unsigned)kind >= CL_EV_KINDS || !done) {
		if (done)
			done(ctx, -EINVAL);
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	lazy_lock(l);
	if (l->img[image].log[kind].n > from)
		now_result = 0;
	else if (l->shutdown)
		now_result = -ESHUTDOWN;
	else if (!w)
		now_result = -ENOMEM;
	if (now_result == 1) {
		w->image = image;
		w->kind = kind;
		w->from = from;
		w->done = done;
		w->ctx = ctx;
		w->next = l->evwaits;
		l->evwaits = w;
	}
	lazy_unlock(l);
	if (now_result != 1) {
		free(w);
		done(ctx, now_result);
		return NULL;
	}
	return w;
}

void cl_lazy_events_cancel(struct cl_lazy *l, void *handle)
{
	struct evwait **pp, *w = NULL;

	if (!l || !handle)
		return;
	lazy_lock(l);
	for (pp = &l->evwaits; *pp; pp = &(*pp)->next)
		if (*pp == handle) {
			w = *pp;
			*pp = w->next;
			break;
		}
	lazy_unlock(l);
	if (w) {
		w->done(w->ctx, -ECANCELED);
		free(w);
	}
}
