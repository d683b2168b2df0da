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
#include "cl_pcsource.h"
#include "cl_lazy_int.h"
#include "cl_error.h"
#include "cl_pcstream.h"
#include "cl_vmstate.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define PAGE         CL_VMSTATE_PAGE
#define RP_BUF       (64u << 10)
#define BATCH        64   /* pages per pushed section */
#define MAX_ANSWER   1024 /* pages per section of answers */
#define SEND_TMO_S   10   /* a write stalled longer fails the source */
#define SHUT_TMO_S   30   /* bound on the wait for SHUT after EOF */
#define HOLD_S       2.0  /* the push waits for the guest to run, at most this long */
#define IDLE_S       5.0  /* no segment came that long: the push fetches what it needs */
#define POLL_S       0.02 /* the push looks for new segments this often */
#define READ_SLACK_S 5.0  /* beyond the engine's memory bound */
#define NBUCKETS     256  /* latency histogram: 4 buckets per power of two of microseconds */

/* One page read of the engine: requested (to answer) or for the push. */
struct pread {
	struct cl_pcsource *ps;
	struct pread *next; /* lock: ps->ready */
	uint64_t offset;
	double asked;
	int push;       /* the pusher waits for it; else it goes on ps->ready */
	int done;       /* lock */
	int abandoned;  /* lock: the pusher stopped waiting, the completion frees it */
	ssize_t result; /* lock */
	uint8_t data[PAGE];
};

struct cl_pcsource {
	struct cl_lazy *l;
	struct cl_vmstate *vs;
	uint32_t main;
	uint64_t npages;
	int fd;
	pthread_mutex_t wlock;
	struct cl_pcstream *st; /* wlock */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* lock: broadcast at every change of the fields below */
	pthread_t threads[3];
	unsigned nthreads;                 /* started (the owner's only) */
	unsigned refs;                     /* lock */
	struct pread *ready, **ready_tail; /* lock: requested pages read, to answer */
	int answering;                     /* lock: the sender writes answers */
	uint64_t inflight;                 /* lock: requested pages in the engine */
	double t_started;                  /* lock: the package is written (0: not yet) */
	int running;                       /* lock: the package's PING answered */
	int push_done;                     /* lock */
	int finished;                      /* lock: EOF written */
	int shut;                          /* lock: SHUT came, with shut_rc */
	uint32_t shut_rc;                  /* lock */
	int stop;                          /* lock */
	enum cl_pcsource_state state;      /* lock */
	char reason[256];                  /* lock */
	uint64_t requested, demand, pushed, zero_skipped; /* lock */
	uint64_t hist[NBUCKETS];                          /* lock: request-to-answer times */
	uint64_t nlat;                                    /* lock */
};

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
	free(ps);
}

/* Drops a reference taken under ps->lock (held): 1 if ps must be freed. */
static int put_locked(struct cl_pcsource *ps)
{
	return --ps->refs == 0;
}

/* Records the first failure (reason NULL: none, a stop after the end),
 * stops everything and shuts the socket down: the reader and any blocked
 * write wake, QEMU goes postcopy-paused. */
static void stop_locked(struct cl_pcsource *ps, const char *reason)
{
	if (ps->state == CL_PCSOURCE_STREAMING && reason) {
		ps->state = CL_PCSOURCE_FAILED;
		snprintf(ps->reason, sizeof(ps->reason), "%s", reason);
	}
	ps->stop = 1;
	shutdown(ps->fd, SHUT_RDWR);
	pthread_cond_broadcast(&ps->cond);
}

/* Fails with "what: " and the message of r. */
static void fail_locked(struct cl_pcsource *ps, int r, const char *what)
{
	char reason[sizeof(ps->reason)];

	snprintf(reason, sizeof(reason), "%s: %s", what,
	         *cl_error_msg() ? cl_error_msg() : strerror(-r));
	stop_locked(ps, reason);
}

static void fail(struct cl_pcsource *ps, int r, const char *what)
{
	pthread_mutex_lock(&ps->lock);
	fail_locked(ps, r, what);
	pthread_mutex_unlock(&ps->lock);
}

static int stopped(struct cl_pcsource *ps)
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

/* Hands page off to the engine: a requested page is an access (its answer
 * goes on ps->ready); the push's is quiet (*out: the pusher waits for it). */
static int read_page(struct cl_pcsource *ps, uint64_t off, int push, struct pread **out)
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

/* The push's read of one page into buf: without waiting (-EAGAIN when its
 * segment is missing), or waiting as long as the engine's memory bound. */
static int push_read(struct cl_pcsource *ps, uint64_t off, int wait, uint8_t *buf)
{
	double until = cl_now() + ps->l->img[CL_MEMORY].timeout_ms / 1000.0 + READ_SLACK_S;
	struct pread *pr;
	int r;

	if (!wait)
		return lazy_read_present(ps->l, CL_MEMORY, off, PAGE, buf);
	r = read_page(ps, off, 1, &pr);
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

/* ---- the return path ---- */

static int rp_message(struct cl_pcsource *ps, const struct cl_pcrp_msg *m)
{
	uint64_t off;
	int r = 0;

	if (m->type == CL_PCRP_REQ || m->type == CL_PCRP_REQ_ID) {
		if (m->block != ps->main)
			return cl_errorf(-EPROTO,
			                 "a request for RAM block %s, which was sent whole",
			                 cl_vmstate_block(ps->vs, m->block)->name);
		for (off = m->offset; !r && off < m->offset + m->length; off += PAGE)
			r = read_page(ps, off, 0, NULL);
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
	while (!r && !shut && !stopped(ps)) {
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
	const struct cl_pcstream_page *x = a, *y = b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Answers n read pages in one section: a page sent already, or asked twice,
 * goes once; a zero page as a zero record. Times the answers. */
static int answer_batch(struct cl_pcsource *ps, struct pread **prs, size_t n)
{
	struct cl_pcstream_page pages[MAX_ANSWER];
	size_t i, k = 0;
	double now;
	int r = 0;

	for (i = 0; i < n; i++) {
		if (prs[i]->result < 0)
			return cl_errorf((int)prs[i]->result, "page %#llx of %s: %s",
			                 (unsigned long long)prs[i]->offset, CL_PCSOURCE_BLOCK,
			                 strerror((int)-prs[i]->result));
		pages[i].block = ps->main;
		pages[i].offset = prs[i]->offset;
		pages[i].data = cl_is_zero(prs[i]->data, PAGE) ? NULL : prs[i]->data;
	}
	qsort(pages, n, sizeof(*pages), by_offset);
	pthread_mutex_lock(&ps->wlock);
	for (i = 0; i < n; i++)
		if (!(k && pages[k - 1].offset == pages[i].offset) &&
		    !cl_pcstream_is_sent(ps->st, ps->main, pages[i].offset))
			pages[k++] = pages[i];
	if (k)
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

/* END and EOF, then the destination's SHUT, bounded. */
static int finish(struct cl_pcsource *ps)
{
	double until = cl_now() + SHUT_TMO_S;
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
	while (!ps->shut && !ps->stop && cl_now() < until)
		cl_cond_wait_until(&ps->cond, &ps->lock, until);
	if (ps->shut && !ps->shut_rc && ps->state == CL_PCSOURCE_STREAMING)
		ps->state = CL_PCSOURCE_COMPLETE;
	else if (ps->shut)
		r = cl_errorf(-EIO, "the destination failed to load the stream (SHUT %u)",
		              ps->shut_rc);
	else if (!ps->stop)
		r = cl_errorf(-ETIMEDOUT, "no SHUT %d s after the end of the stream", SHUT_TMO_S);
	pthread_cond_broadcast(&ps->cond);
	pthread_mutex_unlock(&ps->lock);
	return r;
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

/* ---- the push ---- */

/* The cheapest class of the chunks under page off. */
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
	int wait;             /* read what is missing (else skip it) */
	uint8_t (*buf)[PAGE]; /* BATCH pages */
	uint64_t events;      /* memory PRESENT events taken */
	uint64_t scan;        /* next page of the pass over local pages */
	double progress;      /* when the push last found something to do */
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
 * q->wait) and sent in one section. */
static int push_flush(struct cl_pcsource *ps, struct pushq *q)
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
		r = push_read(ps, q->off[i], q->wait, q->buf[np]);
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
	if (nz || np)
		q->progress = cl_now();
	return push_write(ps, zero, nz, pages, np);
}

static int push_add(struct cl_pcsource *ps, struct pushq *q, uint64_t off)
{
	q->off[q->n++] = off;
	return q->n == BATCH ? push_flush(ps, q) : 0;
}

/* The pages of the memory chunks the engine made present since the last
 * call, in the order they came. 1 if there were some, 0, -errno. */
static int push_events(struct cl_pcsource *ps, struct pushq *q)
{
	struct cl_lazy_event ev[BATCH];
	uint32_t cs = ps->l->cs;
	uint64_t off, end;
	size_t i, n;
	int r = 0;

	n = cl_lazy_events(ps->l, CL_MEMORY, CL_EV_PRESENT, q->events, ev, BATCH);
	q->events += n;
	for (i = 0; !r && i < n; i++) {
		end = (ev[i].chunk + 1) * cs < ps->npages * PAGE ? (ev[i].chunk + 1) * cs
		                                                 : ps->npages * PAGE;
		for (off = ev[i].chunk * cs / PAGE * PAGE; !r && off < end; off += PAGE)
			r = push_add(ps, q, off);
	}
	if (!r && q->n)
		r = push_flush(ps, q);
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
		r = push_flush(ps, q);
	return r ? r : 1;
}

/* Whether the pages still due would never come without a fetch of ours:
 * the engine fetches nothing by itself, or nothing came for IDLE_S. */
static int must_fetch(struct cl_pcsource *ps, const struct pushq *q)
{
	struct cl_lazy *l = ps->l;
	int f;

	lazy_lock(l);
	f = l->o.no_stream || l->state != CL_LAZY_STREAMING || !l->img[CL_MEMORY].missing ||
	    cl_now() > q->progress + IDLE_S;
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
	q->wait = 1;
	return push_flush(ps, q);
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

	q->progress = cl_now();
	while (!r) {
		r = push_events(ps, q);
		if (!r)
			r = push_local(ps, q);
		if (r) {
			r = r < 0 ? r : (stopped(ps) ? -ECANCELED : 0);
			continue;
		}
		if (!pages_left(ps))
			return 0;
		r = must_fetch(ps, q) ? push_fetch(ps, q) : push_nap(ps, POLL_S);
		if (!r && stopped(ps))
			r = -ECANCELED;
	}
	return r;
}

static void *pusher_main(void *arg)
{
	struct cl_pcsource *ps = arg;
	struct pushq q = {.buf = malloc((size_t)BATCH * PAGE)};
	int r = q.buf ? push_all(ps, &q) : -ENOMEM;

	free(q.buf);
	pthread_mutex_lock(&ps->lock);
	if (r && r != -ECANCELED)
		fail_locked(ps, r, "push");
	ps->push_done = !r;
	pthread_cond_broadcast(&ps->cond);
	pthread_mutex_unlock(&ps->lock);
	return NULL;
}

/* ---- set-up and the API ---- */

int cl_pcsource_connect(const char *path, double timeout, int *fd)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	double until = cl_now() + timeout;
	int s, r;

	if (!path || !*path || !fd || timeout < 0)
		return -EINVAL;
	if (strlen(path) >= sizeof(a.sun_path))
		return cl_errorf(-ENAMETOOLONG, "%s: socket path too long", path);
	memcpy(a.sun_path, path, strlen(path));
	for (;;) {
		s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return cl_errorf(-errno, "socket: %s", strerror(errno));
		if (!connect(s, (struct sockaddr *)&a, sizeof(a)))
			break;
		r = -errno;
		close(s);
		if ((r != -ENOENT && r != -ECONNREFUSED && r != -EAGAIN) || cl_now() >= until)
			return cl_errorf(r, "%s: %s", path, strerror(-r));
		cl_sleep_ms(50);
	}
	*fd = s;
	return 0;
}

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
	if (pthread_mutex_init(&ps->wlock, NULL))
		goto fail_alloc;
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
fail_alloc:
	free(ps);
	return -ENOMEM;
}

int cl_pcsource_start(struct cl_lazy *l, int fd, struct cl_pcsource **out)
{
	void *(*const mains[3])(void *) = {rp_main, pusher_main, sender_main};
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
	stop_locked(ps, "stopped before the end (the mount is going away)");
	pthread_mutex_unlock(&ps->lock);
	while (ps->nthreads)
		pthread_join(ps->threads[--ps->nthreads], NULL);
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
