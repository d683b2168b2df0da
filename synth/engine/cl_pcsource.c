/* SPDX-License-Identifier: GPL-2.0-only */
/* The postcopy source of include/cl_pcsource.h: its three threads and the
 * order pages go in.
 *
 * Locks: ps->wlock serializes the stream (ps->st: its writes and its
 * sent-page maps); ps->lock guards the fields marked lock. Order: wlock,
 * then lock, then the engine's l->lock; no socket I/O and no engine read
 * under ps->lock. The pusher writes only while no answer waits (it yields
 * on ps->cond), so a requested page waits for at most one pushed section.
 *
 * Lifetime: a page read handed to the engine holds a reference on ps (its
 * completion may come after the source stopped, up to the engine's memory
 * bound or its shutdown); the owner holds one more. The last one frees. */
#include "cl_pcsource_int.h"
#include "cl_lazy_int.h"
#include "cl_error.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RP_BUF      (64u << 10)
#define MAX_ANSWER  1024 /* pages per section of answers */
#define MAX_PENDING 4096 /* requested pages not answered yet: the reader waits */
#define SEND_TMO_S  10   /* a write stalled longer fails the source */
#define SHUT_TMO_S  30   /* bound on the wait for SHUT after EOF */
#define SLACK_S     5.0  /* beyond the engine's memory bound */

static void destroy(struct cl_pcsource *ps)
{
	struct pread *pr;

	while ((pr = ps->ready)) {
		ps->ready = pr->next;
		free(pr);
	}
	cl_pcstream_free(ps->st);
	cl_vmstate_free(ps->vs);
	if (ps->fd >= 0)
		close(ps->fd);
	pthread_cond_destroy(&ps->cond);
	pthread_mutex_destroy(&ps->lock);
	pthread_mutex_destroy(&ps->wlock);
	pthread_mutex_destroy(&ps->jlock);
	free(ps);
}

/* Drops a reference taken under ps->lock (held): 1 if ps must be freed. */
static int put_locked(struct cl_pcsource *ps)
{
	return --ps->refs == 0;
}

/* Records the first outcome: FAILED with reason, or COMPLETE once EOF is
 * written (every page is in the destination; reason notes what went wrong
 * after the end). Stops everything and shuts the socket down. */
static void pcs_stop_locked(struct cl_pcsource *ps, const char *reason)
{
	if (ps->state == CL_PCSOURCE_STREAMING) {
		ps->state = ps->eof ? CL_PCSOURCE_COMPLETE : CL_PCSOURCE_FAILED;
		snprintf(ps->reason, sizeof(ps->reason), "%s%s",
		         ps->eof && *reason ? "after the end: " : "", reason);
	}
	ps->stop = 1;
	shutdown(ps->fd, SHUT_RDWR);
	pthread_cond_broadcast(&ps->cond);
}

void pcs_fail_locked(struct cl_pcsource *ps, int r, const char *what)
{
	char reason[sizeof(ps->reason)];

	snprintf(reason, sizeof(reason), "%s: %s", what,
	         *cl_error_msg() ? cl_error_msg() : strerror(-r));
	pcs_stop_locked(ps, reason);
}

static void fail(struct cl_pcsource *ps, int r, const char *what)
{
	pthread_mutex_lock(&ps->lock);
	pcs_fail_locked(ps, r, what);
	pthread_mutex_unlock(&ps->lock);
}

int pcs_stopped(struct cl_pcsource *ps)
{
	int s;

	pthread_mutex_lock(&ps->lock);
	s = ps->stop;
	pthread_mutex_unlock(&ps->lock);
	return s;
}

/* ---- page reads ---- */

static unsigned bucket(double seconds)
{
	uint64_t us = seconds > 0 ? (uint64_t)(seconds * 1e6) : 0;
	unsigned msb, b;

	if (us < 4)
		return (unsigned)us;
	msb = 63u - (unsigned)__builtin_clzll(us);
	b = msb * 4 + (unsigned)((us >> (msb - 2)) & 3);
	return b < NBUCKETS ? b : NBUCKETS - 1;
}

/* The upper bound of bucket b, in milliseconds. */
static double bucket_ms(unsigned b)
{
	if (b < 4)
		return (b + 1) / 1000.0;
	return (double)((uint64_t)(4 + b % 4 + 1) << (b / 4 - 2)) / 1000.0;
}

static void read_done(void *ctx, ssize_t r)
{
	struct pread *pr = ctx;
	struct cl_pcsource *ps = pr->ps;
	int last;

	pthread_mutex_lock(&ps->lock);
	pr->result = r;
	pr->done = 1;
	if (!pr->push) {
		ps->inflight--;
		*ps->ready_tail = pr;
		ps->ready_tail = &pr->next;
	} else if (pr->abandoned) {
		free(pr);
	}
	pthread_cond_broadcast(&ps->cond);
	last = put_locked(ps);
	pthread_mutex_unlock(&ps->lock);
	if (last)
		destroy(ps);
}

int pcs_read_page(struct cl_pcsource *ps, uint64_t off, int push, struct pread **out)
{
	struct pread *pr = calloc(1, sizeof(*pr));

	if (!pr)
		return -ENOMEM;
	pr->ps = ps;
	pr->offset = off;
	pr->push = push;
	pr->asked = cl_now();
	pthread_mutex_lock(&ps->lock);
	ps->refs++;
	if (!push) {
		ps->inflight++;
		ps->pending++;
		ps->requested++;
	}
	pthread_mutex_unlock(&ps->lock);
	if (out)
		*out = pr;
	if (push)
		lazy_read_quiet(ps->l, CL_MEMORY, off, PAGE, pr->data, read_done, pr);
	else
		cl_lazy_read(ps->l, CL_MEMORY, off, PAGE, pr->data, read_done, pr);
	return 0;
}

/* ---- the return path ---- */

/* Waits until n more requested pages fit under MAX_PENDING: the engine
 * answers or fails each read within its memory bound, the sender writes
 * each answer within SEND_TMO_S. 0, -ECANCELED, -ETIMEDOUT. */
static int rp_room(struct cl_pcsource *ps, uint64_t n)
{
	double until = cl_now() + ps->l->img[CL_MEMORY].timeout_ms / 1000.0 + SEND_TMO_S + SLACK_S;
	int r = 0;

	pthread_mutex_lock(&ps->lock);
	while (!ps->stop && ps->pending + n > MAX_PENDING && cl_now() < until)
		cl_cond_wait_until(&ps->cond, &ps->lock, until);
	if (ps->stop)
		r = -ECANCELED;
	else if (ps->pending + n > MAX_PENDING)
		r = cl_errorf(-ETIMEDOUT, "%llu requested pages unanswered",
		              (unsigned long long)ps->pending);
	pthread_mutex_unlock(&ps->lock);
	return r;
}

static int rp_message(struct cl_pcsource *ps, const struct cl_pcrp_msg *m)
{
	uint64_t off;
	int r = 0;

	if (m->type == CL_PCRP_REQ || m->type == CL_PCRP_REQ_ID) {
		if (m->block != ps->main)
			return cl_errorf(-EPROTO,
			                 "a request for RAM block %s, which was sent whole",
			                 cl_vmstate_block(ps->vs, m->block)->name);
		if (m->length > CL_PCSOURCE_MAX_REQUEST)
			return cl_errorf(-EPROTO, "a request for %llu bytes (at most %u)",
			                 (unsigned long long)m->length, CL_PCSOURCE_MAX_REQUEST);
		r = rp_room(ps, m->length / PAGE); /* page-aligned: the parser checks */
		for (off = m->offset; !r && off < m->offset + m->length; off += PAGE)
			r = pcs_read_page(ps, off, 0, NULL);
		return r;
	}
	pthread_mutex_lock(&ps->lock);
	if (m->type == CL_PCRP_PONG && m->value == CL_PCSTREAM_PING_RUN)
		ps->running = 1;
	if (m->type == CL_PCRP_SHUT) {
		ps->shut = 1;
		ps->shut_rc = m->value;
		if (!ps->finished)
			r = cl_errorf(-EPROTO, "SHUT %u before the end of the stream", m->value);
	}
	pthread_cond_broadcast(&ps->cond);
	pthread_mutex_unlock(&ps->lock);
	return r;
}

/* Handles the whole messages of buf[0..*len) and keeps a partial one. */
static int rp_consume(struct cl_pcsource *ps, struct cl_pcrp *rp, uint8_t *buf, size_t *len,
                      int *shut)
{
	struct cl_pcrp_msg m;
	size_t off = 0, used;
	int r = 0;

	while (!r && !*shut) {
		r = cl_pcrp_parse(rp, buf + off, *len - off, &m, &used);
		if (r || !used)
			break;
		off += used;
		r = rp_message(ps, &m);
		*shut = m.type == CL_PCRP_SHUT;
	}
	memmove(buf, buf + off, *len - off);
	*len -= off;
	return r;
}

static int rp_loop(struct cl_pcsource *ps, uint8_t *buf)
{
	struct pollfd pfd = {.fd = ps->fd, .events = POLLIN};
	struct cl_pcrp rp;
	size_t len = 0;
	ssize_t n;
	int r = 0, shut = 0;

	cl_pcrp_init(&rp, ps->vs);
	while (!r && !shut && !pcs_stopped(ps)) {
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		n = recv(ps->fd, buf + len, RP_BUF - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n ? cl_errorf(-errno, "%s", strerror(errno))
			         : cl_errorf(-ECONNRESET, "the destination closed the connection");
		len += (size_t)n;
		r = rp_consume(ps, &rp, buf, &len, &shut);
	}
	return r;
}

static void *rp_main(void *arg)
{
	struct cl_pcsource *ps = arg;
	uint8_t *buf = malloc(RP_BUF);
	int r = buf ? rp_loop(ps, buf) : -ENOMEM;

	free(buf);
	if (r)
		fail(ps, r, "return path");
	return NULL;
}

/* ---- answers (the sender) ---- */

static int by_offset(const void *a, const void *b)
{
	const struct pread *x = *(struct pread *const *)a, *y = *(struct pread *const *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Queues segment seg for the push unless it is queued already or the
 * queue is full (its PRESENT events bring its pages anyway). */
static void prio_add_locked(struct cl_pcsource *ps, uint32_t seg)
{
	unsigned i;

	for (i = 0; i < ps->nprio && ps->prio[i] != seg; i++)
		;
	if (i == ps->nprio && ps->nprio < PRIO_MAX)
		ps->prio[ps->nprio++] = seg;
}

void pcs_prio(struct cl_pcsource *ps, uint32_t seg)
{
	pthread_mutex_lock(&ps->lock);
	prio_add_locked(ps, seg);
	pthread_mutex_unlock(&ps->lock);
}

/* Queues the segment of the answered page at off, if it has one: its
 * neighbours go next. */
static void prio_locked(struct cl_pcsource *ps, uint64_t off)
{
	const struct cl_chunk *c = cl_recindex_find(&ps->l->ix, CL_MEMORY, off / ps->l->cs);

	if (c && c->recipe >= CL_R_DEDUP) /* a payload of the overlay */
		prio_add_locked(ps, c->p.seg);
}

unsigned pcs_take_prio(struct cl_pcsource *ps, uint32_t *segs)
{
	unsigned n;

	pthread_mutex_lock(&ps->lock);
	n = ps->nprio;
	memcpy(segs, ps->prio, n * sizeof(*segs));
	ps->nprio = 0;
	pthread_mutex_unlock(&ps->lock);
	return n;
}

/* Answers n read pages in one section: a page sent already, or asked twice,
 * goes once; a zero page as a zero record. A failed read fails the source
 * only if its page was not sent (by the push). Times the answers. */
static int answer_batch(struct cl_pcsource *ps, struct pread **prs, size_t n)
{
	struct cl_pcstream_page pages[MAX_ANSWER];
	const struct pread *pr;
	size_t i, k = 0;
	double now;
	int r = 0;

	qsort(prs, n, sizeof(*prs), by_offset);
	pthread_mutex_lock(&ps->wlock);
	for (i = 0; !r && i < n; i++) {
		pr = prs[i];
		if ((k && pages[k - 1].offset == pr->offset) ||
		    cl_pcstream_is_sent(ps->st, ps->main, pr->offset))
			continue;
		if (pr->result < 0)
			r = cl_errorf((int)pr->result, "page %#llx of %s: %s",
			              (unsigned long long)pr->offset, CL_PCSOURCE_BLOCK,
			              strerror((int)-pr->result));
		pages[k].block = ps->main;
		pages[k].offset = pr->offset;
		pages[k++].data = cl_is_zero(pr->data, PAGE) ? NULL : pr->data;
	}
	if (!r && k)
		r = cl_pcstream_send(ps->st, pages, k);
	pthread_mutex_unlock(&ps->wlock);
	if (r)
		return r;
	/* Every request of the batch is answered now, here or before. */
	now = cl_now();
	pthread_mutex_lock(&ps->lock);
	ps->demand += k;
	for (i = 0; i < n; i++)
		ps->hist[bucket(now - prs[i]->asked)]++;
	ps->nlat += n;
	for (i = 0; i < k; i++)
		prio_locked(ps, pages[i].offset);
	pthread_mutex_unlock(&ps->lock);
	return 0;
}

static int answer(struct cl_pcsource *ps, struct pread *list)
{
	struct pread *prs[MAX_ANSWER];
	size_t n;
	int r = 0;

	while (list) {
		for (n = 0; list && n < MAX_ANSWER; list = list->next)
			prs[n++] = list;
		if (!r)
			r = answer_batch(ps, prs, n);
		pthread_mutex_lock(&ps->lock);
		ps->pending -= n;
		pthread_cond_broadcast(&ps->cond);
		pthread_mutex_unlock(&ps->lock);
		while (n)
			free(prs[--n]);
	}
	return r;
}

/* Answers requests until the push is done and no request waits. */
static int answer_loop(struct cl_pcsource *ps)
{
	struct pread *list;
	int r = 0;

	pthread_mutex_lock(&ps->lock);
	for (;;) {
		while (!ps->stop && !ps->ready && !(ps->push_done && !ps->inflight))
			cl_cond_wait_until(&ps->cond, &ps->lock, cl_now() + 1.0);
		if (ps->stop || !ps->ready)
			break;
		list = ps->ready;
		ps->ready = NULL;
		ps->ready_tail = &ps->ready;
		ps->answering = 1;
		pthread_mutex_unlock(&ps->lock);
		r = answer(ps, list);
		pthread_mutex_lock(&ps->lock);
		ps->answering = 0;
		pthread_cond_broadcast(&ps->cond);
		if (r)
			break;
	}
	if (!r && ps->stop)
		r = -ECANCELED;
	pthread_mutex_unlock(&ps->lock);
	return r;
}

/* END and EOF, then the destination's SHUT, bounded; stops the source. */
static int finish(struct cl_pcsource *ps)
{
	double until = cl_now() + SHUT_TMO_S;
	char note[64] = "";
	int r;

	/* before the EOF: its SHUT may come at once */
	pthread_mutex_lock(&ps->lock);
	ps->finished = 1;
	pthread_mutex_unlock(&ps->lock);
	pthread_mutex_lock(&ps->wlock);
	r = cl_pcstream_finish(ps->st);
	pthread_mutex_unlock(&ps->wlock);
	if (r)
		return r;
	pthread_mutex_lock(&ps->lock);
	ps->eof = 1;
	while (!ps->shut && !ps->stop && cl_now() < until)
		cl_cond_wait_until(&ps->cond, &ps->lock, until);
	if (ps->shut && ps->shut_rc && ps->state == CL_PCSOURCE_STREAMING) {
		ps->state = CL_PCSOURCE_FAILED;
		snprintf(ps->reason, sizeof(ps->reason),
		         "the destination failed to load the stream (SHUT %u)", ps->shut_rc);
	}
	/* COMPLETE unless the destination said otherwise: a missing SHUT is a
	 * note, every page is there */
	if (!ps->shut && !ps->stop)
		snprintf(note, sizeof(note), "no SHUT %d s after EOF", SHUT_TMO_S);
	pcs_stop_locked(ps, note);
	pthread_mutex_unlock(&ps->lock);
	return 0;
}

static void *sender_main(void *arg)
{
	struct cl_pcsource *ps = arg;
	int r;

	pthread_mutex_lock(&ps->wlock);
	r = cl_pcstream_start(ps->st);
	pthread_mutex_unlock(&ps->wlock);
	if (r) {
		fail(ps, r, "stream");
		return NULL;
	}
	pthread_mutex_lock(&ps->lock);
	ps->t_started = cl_now();
	pthread_cond_broadcast(&ps->cond);
	pthread_mutex_unlock(&ps->lock);
	r = answer_loop(ps);
	if (!r)
		r = finish(ps);
	if (r && r != -ECANCELED)
		fail(ps, r, "stream");
	return NULL;
}

/* ---- set-up and the API ---- */

/* The overlay's device state: a save file whose one shared block is the
 * memory image. */
static int load_state(struct cl_pcsource *ps)
{
	const struct cl_vmstate_block *b;
	const void *data;
	size_t len;
	int r;

	cl_lazy_blob(ps->l, 0, &data, &len);
	if (!len)
		return cl_errorf(-ENOENT, "the overlay carries no device state");
	r = cl_vmstate_parse(data, len, CL_BLOB_STATE, &ps->vs);
	if (!r)
		r = cl_vmstate_main_block(ps->vs, &ps->main);
	if (r)
		return r;
	b = cl_vmstate_block(ps->vs, ps->main);
	if (strcmp(b->name, CL_PCSOURCE_BLOCK))
		return cl_errorf(-EINVAL, "the shared RAM block of the state is %s, not %s",
		                 b->name, CL_PCSOURCE_BLOCK);
	if (b->length != cl_lazy_size(ps->l, CL_MEMORY))
		return cl_errorf(-EINVAL, "RAM block %s has %llu bytes, the memory image %llu",
		                 b->name, (unsigned long long)b->length,
		                 (unsigned long long)cl_lazy_size(ps->l, CL_MEMORY));
	ps->npages = b->length / PAGE;
	return 0;
}

static int new_source(struct cl_lazy *l, int fd, struct cl_pcsource **out)
{
	struct cl_pcsource *ps = calloc(1, sizeof(*ps));

	if (!ps)
		return -ENOMEM;
	ps->l = l;
	ps->fd = fd;
	ps->refs = 1;
	ps->ready_tail = &ps->ready;
	if (pthread_mutex_init(&ps->jlock, NULL))
		goto fail_alloc;
	if (pthread_mutex_init(&ps->wlock, NULL))
		goto fail_jlock;
	if (pthread_mutex_init(&ps->lock, NULL))
		goto fail_wlock;
	if (cl_cond_init_monotonic(&ps->cond))
		goto fail_lock;
	*out = ps;
	return 0;

fail_lock:
	pthread_mutex_destroy(&ps->lock);
fail_wlock:
	pthread_mutex_destroy(&ps->wlock);
fail_jlock:
	pthread_mutex_destroy(&ps->jlock);
fail_alloc:
	free(ps);
	return -ENOMEM;
}

int cl_pcsource_start(struct cl_lazy *l, int fd, struct cl_pcsource **out)
{
	void *(*const mains[3])(void *) = {rp_main, pcs_pusher_main, sender_main};
	struct timeval tv = {.tv_sec = SEND_TMO_S};
	struct cl_pcsource *ps;
	int r;

	if (!l || fd < 0 || !out) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	r = new_source(l, fd, &ps);
	if (r) {
		close(fd);
		return r;
	}
	r = load_state(ps);
	if (!r)
		r = cl_pcstream_new(ps->vs, cl_pcstream_write_fd, &ps->fd, &ps->st);
	/* a destination that stops reading fails the write, not hangs it */
	if (!r && setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		r = cl_errorf(-errno, "SO_SNDTIMEO: %s", strerror(errno));
	while (!r && ps->nthreads < 3) {
		r = -pthread_create(&ps->threads[ps->nthreads], NULL, mains[ps->nthreads], ps);
		ps->nthreads += !r;
	}
	if (r) {
		cl_pcsource_free(ps);
		return r;
	}
	*out = ps;
	return 0;
}

void cl_pcsource_stop(struct cl_pcsource *ps)
{
	if (!ps)
		return;
	pthread_mutex_lock(&ps->lock);
	pcs_stop_locked(ps, "stopped before the end (the mount is going away)");
	pthread_mutex_unlock(&ps->lock);
	/* a second caller waits for the first one's joins, then has none left */
	pthread_mutex_lock(&ps->jlock);
	while (ps->nthreads)
		pthread_join(ps->threads[--ps->nthreads], NULL);
	pthread_mutex_unlock(&ps->jlock);
}

void cl_pcsource_free(struct cl_pcsource *ps)
{
	int last;

	if (!ps)
		return;
	cl_pcsource_stop(ps);
	pthread_mutex_lock(&ps->lock);
	last = put_locked(ps);
	pthread_mutex_unlock(&ps->lock);
	if (last)
		destroy(ps);
}

void cl_pcsource_stats(struct cl_pcsource *ps, struct cl_pcsource_stats *st)
{
	uint64_t seen = 0, p50, p99;
	unsigned b;

	memset(st, 0, sizeof(*st));
	if (!ps)
		return;
	pthread_mutex_lock(&ps->lock);
	st->state = ps->state;
	memcpy(st->reason, ps->reason, sizeof(st->reason));
	st->pages = ps->npages;
	st->requested = ps->requested;
	st->demand = ps->demand;
	st->pushed = ps->pushed;
	st->zero_skipped = ps->zero_skipped;
	st->latency_n = ps->nlat;
	p50 = (ps->nlat + 1) / 2;
	p99 = ps->nlat - ps->nlat / 100;
	for (b = 0; b < NBUCKETS && seen < ps->nlat; b++) {
		seen += ps->hist[b];
		if (!st->latency_p50_ms && seen >= p50)
			st->latency_p50_ms = bucket_ms(b);
		if (!st->latency_p99_ms && seen >= p99)
			st->latency_p99_ms = bucket_ms(b);
	}
	pthread_mutex_unlock(&ps->lock);
}
