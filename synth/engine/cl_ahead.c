/* SPDX-License-Identifier: GPL-2.0-only */
/* Checked read-ahead of base chunks (see cl_ahead.h). Two windows: while
 * the reader takes from one, the thread fills the other. A window's bytes
 * are written only while it is FILLING (by the thread alone) and read only
 * while it is READY with its readers counted, so copies run unlocked. */
#include "cl_ahead.h"
#include "cl_error.h"
#include "cl_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NWIN        2
#define TAKE_WAIT_S 1.0 /* a window being filled: one local read and its hashes */

enum win_state { WIN_FREE, WIN_QUEUED, WIN_FILLING, WIN_READY, WIN_BAD };

struct window {
	enum win_state state;           /* lock */
	enum cl_image_id im;            /* lock; fixed while QUEUED, FILLING or read */
	uint64_t first, n;              /* lock; likewise */
	unsigned readers;               /* lock: takes copying out of buf */
	uint64_t used;                  /* lock: a->clock when last asked for or taken */
	uint8_t *buf;                   /* see the file comment */
	uint8_t (*want)[CL_SHA256_LEN]; /* the thread's: the index's hashes */
};

struct cl_ahead {
	const struct cl_base *b;
	uint32_t window;
	pthread_mutex_t lock;
	pthread_cond_t work; /* lock: the thread waits for a queued window */
	pthread_cond_t done; /* lock: takes wait for a window being filled */
	struct window w[NWIN];
	uint64_t clock; /* lock */
	int stop;       /* lock */
	pthread_t thread;
};

/* Reads chunks [first, first + n) of im into buf and checks each one. */
static int fill(struct cl_ahead *a, struct window *w, enum cl_image_id im, uint64_t first,
                uint64_t n)
{
	const struct cl_base *b = a->b;
	uint64_t cs = b->chunk_size, from = first * cs, to = (first + n) * cs, have, k;
	int r;

	have = to < b->size[im] ? to : b->size[im];
	r = cl_base_chunk_hashes(b, im, first, n, w->want);
	if (r == 0)
		r = cl_pread_full(b->fd[im], w->buf, (size_t)(have - from), from, b->path[im]);
	if (r < 0)
		return r;
	memset(w->buf + (have - from), 0, (size_t)(to - have));
	for (k = 0; k < n && r == 0; k++)
		r = cl_base_check_against(b, im, first + k, w->buf + k * cs, w->want[k]);
	return r;
}

/* The queued window asked for first, or NULL. */
static struct window *queued_locked(struct cl_ahead *a)
{
	struct window *best = NULL;
	int i;

	for (i = 0; i < NWIN; i++)
		if (a->w[i].state == WIN_QUEUED && (!best || a->w[i].used < best->used))
			best = &a->w[i];
	return best;
}

static void *ahead_thread(void *arg)
{
	struct cl_ahead *a = arg;
	struct window *w;
	enum cl_image_id im;
	uint64_t first, n;
	int r;

	pthread_mutex_lock(&a->lock);
	while (!a->stop) {
		w = queued_locked(a);
		if (!w) {
			pthread_cond_wait(&a->work, &a->lock); /* cl_ahead_free wakes it */
			continue;
		}
		w->state = WIN_FILLING;
		im = w->im;
		first = w->first;
		n = w->n;
		pthread_mutex_unlock(&a->lock);
		r = fill(a, w, im, first, n);
		pthread_mutex_lock(&a->lock);
		w->state = r == 0 ? WIN_READY : WIN_BAD;
		pthread_cond_broadcast(&a->done);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

int cl_ahead_new(const struct cl_base *base, uint32_t window, struct cl_ahead **out)
{
	struct cl_ahead *a;
	int i, r = -ENOMEM;

	if (!base || !window || !out)
		return -EINVAL;
	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->b = base;
	a->window = window;
	for (i = 0; i < NWIN; i++) {
		a->w[i].buf = malloc((size_t)window * base->chunk_size);
		a->w[i].want = malloc((size_t)window * CL_SHA256_LEN);
		if (!a->w[i].buf || !a->w[i].want)
			goto fail_bufs;
	}
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->work, NULL);
	r = cl_cond_init_monotonic(&a->done);
	if (r < 0)
		goto fail_cond;
	r = -pthread_create(&a->thread, NULL, ahead_thread, a);
	if (r < 0)
		goto fail_thread;
	*out = a;
	return 0;
fail_thread:
	pthread_cond_destroy(&a->done);
fail_cond:
	pthread_cond_destroy(&a->work);
	pthread_mutex_destroy(&a->lock);
fail_bufs:
	for (i = 0; i < NWIN; i++) {
		free(a->w[i].buf);
		free(a->w[i].want);
	}
	free(a);
	return r;
}

void cl_ahead_free(struct cl_ahead *a)
{
	int i;

	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = 1;
	pthread_cond_broadcast(&a->work);
	pthread_cond_broadcast(&a->done);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thread, NULL);
	pthread_cond_destroy(&a->done);
	pthread_cond_destroy(&a->work);
	pthread_mutex_destroy(&a->lock);
	for (i = 0; i < NWIN; i++) {
		free(a->w[i].buf);
		free(a->w[i].want);
	}
	free(a);
}

/* The window asked for or held that covers chunks [first, first + n) of
 * im, or NULL. */
static struct window *holding_locked(struct cl_ahead *a, enum cl_image_id im, uint64_t first,
                                     uint64_t n)
{
	struct window *w;
	int i;

	for (i = 0; i < NWIN; i++) {
		w = &a->w[i];
		if (w->state != WIN_FREE && w->state != WIN_BAD && w->im == im &&
		    w->first <= first && first + n <= w->first + w->n)
			return w;
	}
	return NULL;
}

int cl_ahead_take(struct cl_ahead *a, enum cl_image_id im, uint64_t first, uint64_t n, uint8_t *dst)
{
	double until = cl_now() + TAKE_WAIT_S;
	uint64_t cs;
	struct window *w;

	if (!a || !dst || !n)
		return -ENOENT;
	cs = a->b->chunk_size;
	pthread_mutex_lock(&a->lock);
	for (;;) {
		w = holding_locked(a, im, first, n);
		if (!w || w->state == WIN_READY || a->stop)
			break;
		if (cl_cond_wait_until(&a->done, &a->lock, until) == ETIMEDOUT) {
			w = NULL;
			break;
		}
	}
	if (w && w->state == WIN_READY) {
		w->readers++;
		w->used = ++a->clock;
	} else {
		w = NULL;
	}
	pthread_mutex_unlock(&a->lock);
	if (!w)
		return -ENOENT;
	memcpy(dst, w->buf + (first - w->first) * cs, (size_t)(n * cs));
	pthread_mutex_lock(&a->lock);
	w->readers--;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

uint64_t cl_ahead_next(struct cl_ahead *a, enum cl_image_id im, uint64_t k)
{
	struct window *w;

	if (!a)
		return k;
	pthread_mutex_lock(&a->lock);
	while ((w = holding_locked(a, im, k, 1)))
		k = w->first + w->n;
	pthread_mutex_unlock(&a->lock);
	return k;
}

void cl_ahead_want(struct cl_ahead *a, enum cl_image_id im, uint64_t first, uint64_t n)
{
	struct window *w, *victim = NULL;
	int i;

	if (!a || !n || first >= a->b->nchunks[im])
		return;
	if (n > a->window)
		n = a->window;
	if (n > a->b->nchunks[im] - first)
		n = a->b->nchunks[im] - first;
	pthread_mutex_lock(&a->lock);
	/* The least recently used window that nobody reads or fills. */
	for (i = 0; i < NWIN; i++) {
		w = &a->w[i];
		if (w->readers || w->state == WIN_QUEUED || w->state == WIN_FILLING)
			continue;
		if (!victim || w->state == WIN_FREE ||
		    (victim->state != WIN_FREE && w->used < victim->used))
			victim = w;
	}
	if (victim && !holding_locked(a, im, first, 1)) {
		victim->state = WIN_QUEUED;
		victim->im = im;
		victim->first = first;
		victim->n = n;
		victim->used = ++a->clock;
		pthread_cond_signal(&a->work);
	}
	pthread_mutex_unlock(&a->lock);
}
