/* Lazy synthesis engine (see include/cl_lazy.h).
 *
 * State lives under one mutex, l->lock; I/O on the base, cache and store
 * files happens outside it. A segment moves ABSENT -> FETCHING -> DONE (its
 * payload chunks written to the cache file) or back to ABSENT after a
 * transient failure, or to BAD after it failed its checks twice. Requests
 * that need a segment that is not DONE become waiters, listed on each such
 * segment and on l->waiters (for timeouts and shutdown); the worker that
 * finishes the last of a waiter's segments completes it.
 *
 * Threads: `connections` fetch workers (one keeps itself free of the
 * background stream for demand fetches), and a timer that fails waiters
 * whose bound has passed. Completion callbacks always run without l->lock. */
#include "cl_lazy.h"
#include "cl_ahead.h"
#include "cl_store.h"
#include "cl_base.h"
#include "cl_bitmap.h"
#include "cl_cache.h"
#include "cl_error.h"
#include "cl_recindex.h"
#include "cl_source.h"
#include "cl_synth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Checked builds: without NDEBUG, and under a sanitizer (the sanitizer
 * builds of the test suite are RelWithDebInfo, which defines NDEBUG). */
#if !defined(NDEBUG) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CL_LAZY_LOCK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CL_LAZY_LOCK_CHECK 1
#endif
#endif

#define DEFAULT_CONNECTIONS 4
#define DEFAULT_TIMEOUT_MS  60000
#define DEFAULT_MEM_TIMEOUT 300000
#define DEFAULT_CACHE_LIMIT (10ull << 30)
#define MAP_SAVE_INTERVAL   1.0 /* seconds between saves of the presence map */
#define RETRY_DELAY_MIN     0.2 /* background refetch backoff after a failure */
#define RETRY_DELAY_MAX     5.0
#define SEG_TRIES           2    /* integrity failures before a segment is BAD */
#define FAIL_FAST_S         2.0  /* see fail_fast_locked() */
#define DEMAND_QUIET_S      0.05 /* see pick_locked() */
#define SPILL_MAX           16   /* segments held in memory at most (about 1 MiB each) */
#define BASE_RUN_MAX        64   /* base chunks checked per read, see base_run() */
#define AHEAD_WINDOW        64   /* base chunks per read-ahead window (256 KiB of 4 KiB) */
#define AHEAD_MIN           16   /* shorter stretches are not worth a window */

/* The lock rule, for every file of the engine:
 * - l->lock guards each field marked "lock" below (and every field of a
 *   segment, of a waiter while it is listed, and of an event wait while it
 *   is on l->evwaits). Fields not marked are set while one thread opens the
 *   engine and only read afterwards, or are owned by one thread.
 * - A function named *_locked expects its caller to hold l->lock; it never
 *   drops it. Checked builds (without NDEBUG, and every sanitizer build)
 *   assert that the calling thread holds it.
 * - l->lock is taken and released with lazy_lock()/lazy_unlock() and waited
 *   on with lazy_wait_locked() only, which keep the owner the check needs.
 * - No I/O on the base, cache or store files and no completion callback runs
 *   under l->lock. Lock order: l->store_lock before l->lock; the read-ahead's
 *   lock (cl_ahead.h) may be taken under l->lock, never the other way. */

enum seg_state {
	SEG_ABSENT = 0,
	SEG_FETCHING = 1,
	SEG_DONE = 2,
	SEG_BAD = 3,
	SEG_MEM = 4, /* decoded, but held in memory: the cache could not take it */
};

/* A request that waits for segments; its fields other than the links,
 * pending and result are fixed at submission. */
struct waiter {
	struct waiter *prev, *next; /* lock: l->waiters */
	int is_write;
	enum cl_image_id image;
	uint64_t off;
	size_t len;
	void *buf;        /* read target */
	const void *wbuf; /* write source, NULL for zeros */
	cl_lazy_done_fn done;
	void *ctx;
	uint32_t pending; /* lock: segments still missing */
	double deadline;
	struct waiter *cnext; /* completion list link (local to one thread) */
	ssize_t result;       /* lock */
};

/* Every field: lock. */
struct segment {
	uint8_t state;
	uint8_t bad_tries;
	uint8_t demanded; /* someone waits on it: fetch ahead of the stream */
	uint8_t *raw;     /* SEG_MEM: the decoded segment */
	/* A wait of that image on it just timed out: new waits of the same image
	 * fail until then (another image's bound was not measured). */
	double fail_until[CL_NIMAGES];
	double used; /* SEG_MEM: last use, for eviction */
	struct waiter **w;
	uint32_t nw, capw;
};

/* An event log: older events in an unlinked file (a VM that reads its
 * whole disk would otherwise hold 16 bytes per chunk in memory), the
 * newest EV_TAIL in memory. Every field: lock (flushed events never change,
 * so cl_lazy_events reads them from fd after unlocking). */
#ifndef EV_TAIL
#define EV_TAIL 4096
#endif

struct evlog {
	struct cl_lazy_event *tail; /* events [flushed, n) */
	uint64_t n, flushed;
	int fd;        /* events [0, flushed); -1 before the first flush */
	uint8_t *seen; /* bitmap per chunk */
};

/* A cl_lazy_events_wait; on l->evwaits (lock) until it is answered. */
struct evwait {
	struct evwait *next;
	enum cl_image_id image;
	enum cl_lazy_event_kind kind;
	uint64_t from;
	cl_lazy_done_fn done;
	void *ctx;
	int result;
};

struct image {
	uint64_t size, nchunks;
	int cache_fd, store_fd;
	char *cache_path, *store_path;
	uint8_t *modified;             /* lock: bitmap */
	uint8_t *verified;             /* lock: cache chunks checked this session */
	struct evlog log[CL_EV_KINDS]; /* lock */
	struct cl_lazy_image_stats st; /* lock */
	uint64_t missing;              /* lock: payload records whose segment is not DONE */
	unsigned timeout_ms;
};

struct cl_lazy {
	struct cl_lazy_opts o;
	struct cl_base *base;
	struct cl_meta *m;
	char *meta_location;
	char *pack_location;
	struct cl_source *pack;
	int ranges;
	uint32_t cs;
	struct image img[CL_NIMAGES];
	struct cl_recindex ix;
	uint8_t *base_data[CL_NIMAGES]; /* bitmap: base chunks holding data (not a hole) */
	uint8_t *base_ok[CL_NIMAGES];   /* lock: bitmap, base chunks checked this mount */
	struct cl_ahead *ahead;         /* checked base read-ahead, or NULL */
	void *blob[2];
	size_t blob_len[2];
	struct cl_cache cache;
	char *store_dir;
	int store_created; /* we made store_dir, remove it at close */
	double t0;

	pthread_mutex_t lock;
	pthread_mutex_t store_lock;        /* serializes first writes to a chunk */
	pthread_cond_t work;               /* lock: workers wait for something to fetch */
	pthread_cond_t tick;               /* lock: the timer waits for a deadline */
	struct segment *seg;               /* lock */
	uint32_t segs_done;                /* lock */
	uint32_t bg_next;                  /* lock: background stream cursor */
	double bg_resume;                  /* lock: no background fetch before this time */
	double bg_delay;                   /* lock: current backoff */
	unsigned bg_busy;                  /* lock: workers on background segments */
	unsigned demand_queue;             /* lock: demanded segments not yet taken */
	double demand_at;                  /* lock: when a request last had to wait */
	struct waiter waiters;             /* lock: list head */
	struct evwait *evwaits;            /* lock */
	int shutdown;                      /* lock */
	int started;                       /* lock */
	unsigned spilled;                  /* lock: segments in SEG_MEM */
	enum cl_lazy_state state;          /* lock */
	char reason[256];                  /* lock: why a request failed, or "" */
	char last_error[256];              /* lock: the last fetch error, or "" */
	char cache_note[256];              /* lock: why the cache is bypassed, or "" */
	uint64_t bytes_fetched;            /* lock */
	uint64_t cache_hits;               /* lock */
	uint64_t base_checked, base_ahead; /* lock */
	double map_saved;                  /* lock */
	int map_dirty;                     /* lock */
#ifdef CL_LAZY_LOCK_CHECK
	pthread_t lock_owner; /* lock: who holds it, while lock_held */
	int lock_held;        /* lock */
#endif
	pthread_t *threads;
	unsigned nthreads; /* lock */
	pthread_t timer;
	int timer_started;
};

#ifdef CL_LAZY_LOCK_CHECK
void lazy_check_locked(const struct cl_lazy *l, const char *fn);
#define lazy_assert_locked(l) lazy_check_locked(l, __func__)
#else
#define lazy_assert_locked(l) ((void)(l))
#endif

static inline void lazy_lock(struct cl_lazy *l)
{
	pthread_mutex_lock(&l->lock);
#ifdef CL_LAZY_LOCK_CHECK
	l->lock_owner = pthread_self();
	l->lock_held = 1;
#endif
}

static inline void lazy_unlock(struct cl_lazy *l)
{
	lazy_assert_locked(l);
#ifdef CL_LAZY_LOCK_CHECK
	l->lock_held = 0;
#endif
	pthread_mutex_unlock(&l->lock);
}

/* Waits on c (guarded by l->lock) until signalled or until the monotonic
 * time `until` (cl_now() seconds) has passed. */
static inline void lazy_wait_locked(struct cl_lazy *l, pthread_cond_t *c, double until)
{
	lazy_assert_locked(l);
#ifdef CL_LAZY_LOCK_CHECK
	l->lock_held = 0; /* others take the lock meanwhile */
#endif
	cl_cond_wait_until(c, &l->lock, until);
#ifdef CL_LAZY_LOCK_CHECK
	l->lock_owner = pthread_self();
	l->lock_held = 1;
#endif
}

#ifdef CL_LAZY_LOCK_CHECK
void lazy_check_locked(const struct cl_lazy *l, const char *fn)
{
	/* Read without the lock only when the rule is already broken. */
	if (l->lock_held && pthread_equal(l->lock_owner, pthread_self()))
		return;
	fprintf(stderr, "cloudlet: %s called without the engine lock held\n", fn);
	abort();
}
#endif

/* ---- events ---- */

/* Appends chunk to an event log unless it is there already. */
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

static void event_locked(struct cl_lazy *l, enum cl_image_id im, enum cl_lazy_event_kind kind,
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
static struct evwait *ready_evwaits_locked(struct cl_lazy *l)
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

static void run_evwaits(struct evwait *ready)
{
	struct evwait *next;

	for (; ready; ready = next) {
		next = ready->next;
		ready->done(ready->ctx, ready->result);
		free(ready);
	}
}

/* ---- reading pieces of chunks ---- */

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
		/* First use this mount: run_pieces checks it against the index. */
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
	 * page-cache pages for them, most of a sparse image's cost. */
	if (off >= size || !cl_bit_get(l->base_data[im], k)) {
		p->fd = -1;
		p->valid = 0;
		return;
	}
	p->fd = l->base->fd[im];
	p->path = l->base->path[im];
	p->foff = off;
	p->valid = off >= size ? 0 : (size - off < p->len ? (uint32_t)(size - off) : p->len);
}

static void spill_drop_locked(struct cl_lazy *l, uint32_t s);
static void spill_locked(struct cl_lazy *l, uint32_t s, uint8_t *raw);

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
	if (cl_chunk_synthesize(l->m, l->base, c, sg->raw, buf) < 0) {
		free(buf);
		spill_drop_locked(l, c->p.seg); /* fetch it again */
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
	if (l->seg[c->p.seg].state != SEG_DONE)
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
	for (j = 1; j < n && j < BASE_RUN_MAX; j++)
		if (p[j].bimage != p[0].bimage || p[j].bhole != p[0].bhole ||
		    p[j].bchunk != p[0].bchunk + j || p[j].dst != p[j - 1].dst + p[j - 1].len)
			break;
	return j;
}

/* Whether pieces p[0..n) are whole chunks inside the base: then they are
 * read straight into the request's buffer and hashed there. */
static int base_direct(const struct cl_lazy *l, const struct piece *p, size_t n)
{
	size_t k;

	if (p[0].bhole || (p[0].bchunk + n) * l->cs > l->base->size[(enum cl_image_id)p[0].bimage])
		return 0;
	for (k = 0; k < n; k++)
		if (p[k].len != l->cs || p[k].foff != p[k].bchunk * l->cs)
			return 0;
	return 1;
}

/* After base chunks up to `next` of im were served, asks the
 * read-ahead for the stretch that a sequential reader wants next: chunks
 * that hold data, are not checked yet and that image's overlay leaves as
 * they are (so they are read as base chunk k for image chunk k). */
static void base_ahead_locked(struct cl_lazy *l, enum cl_image_id im, uint64_t next)
{
	uint64_t k, end = l->base->nchunks[im];

	lazy_assert_locked(l);
	if (end > l->img[im].nchunks)
		end = l->img[im].nchunks;
	next = cl_ahead_next(l->ahead, im, next);
	for (k = next; k < end && k - next < AHEAD_WINDOW; k++)
		if (!cl_bit_get(l->base_data[im], k) || cl_bit_get(l->base_ok[im], k) ||
		    cl_bit_get(l->img[im].modified, k) || cl_recindex_has(&l->ix, im, k))
			break;
	if (k - next >= AHEAD_MIN)
		cl_ahead_want(l->ahead, im, next, k - next);
}

/* Checks the base chunks of pieces p[0..n) (see base_run) against the
 * index and fills the pieces from the very buffer that was hashed (a hole:
 * zeros, without a read; whole chunks: the request's own buffer, or the
 * read-ahead's buffer that was hashed). A damaged base chunk is -EIO, and
 * status names it. */
static int base_check(struct cl_lazy *l, struct piece *p, size_t n)
{
	enum cl_image_id bim = (enum cl_image_id)p[0].bimage;
	uint64_t from = p[0].bchunk * l->cs, to = (p[0].bchunk + n) * l->cs, have;
	uint8_t want[BASE_RUN_MAX][CL_SHA256_LEN], *buf = NULL;
	int direct = base_direct(l, p, n), r = 0, ahead = 0;
	size_t k, ok = 0, good;

	if (direct)
		buf = p[0].dst;
	else if (!p[0].bhole && !(buf = malloc((size_t)(to - from))))
		return -ENOMEM;
	if (!p[0].bhole)
		ahead = cl_ahead_take(l->ahead, bim, p[0].bchunk, n, buf) == 0;
	if (!ahead) {
		r = cl_base_chunk_hashes(l->base, bim, p[0].bchunk, n, want);
		if (r == 0 && !p[0].bhole) {
			have = to < l->base->size[bim] ? to : l->base->size[bim];
			r = cl_pread_full(l->base->fd[bim], buf, (size_t)(have - from), from,
			                  l->base->path[bim]);
			if (r == 0)
				memset(buf + (have - from), 0, (size_t)(to - have));
		}
		for (; r == 0 && ok < n; ok++)
			r = cl_base_check_against(l->base, bim, p[ok].bchunk,
			                          p[0].bhole ? NULL : buf + ok * l->cs, want[ok]);
	}
	good = r == 0 ? n : (ok ? ok - 1 : 0); /* the chunks that passed */
	lazy_lock(l);
	for (k = 0; k < good; k++)
		cl_bit_set(l->base_ok[bim], p[k].bchunk);
	if (!p[0].bhole) {
		l->base_checked += good;
		l->base_ahead += ahead ? n : 0;
	}
	if (r < 0)
		snprintf(l->reason, sizeof(l->reason), "%s", cl_error_msg());
	else if (!p[0].bhole && l->ahead)
		base_ahead_locked(l, bim, p[0].bchunk + n);
	lazy_unlock(l);
	for (k = 0; r == 0 && !direct && k < n; k++) {
		if (p[k].bhole)
			memset(p[k].dst, 0, p[k].len);
		else
			memcpy(p[k].dst, buf + k * l->cs + (p[k].foff - p[k].bchunk * l->cs),
			       p[k].len);
	}
	if (!direct)
		free(buf);
	if (r < 0)
		return r == -ENOMEM ? r : -EIO;
	return 0;
}

/* Reads pieces, merging neighbours in the same file. Returns 0, -errno, or
 * -EAGAIN if a cached chunk failed its check (its segment is then marked
 * absent again and the request must be retried). */
static int run_pieces(struct cl_lazy *l, enum cl_image_id im, struct piece *p, size_t n)
{
	uint8_t *chunk = NULL, h[CL_SHA256_LEN];
	size_t i, j;
	uint64_t len;
	int r = 0;

	for (i = 0; i < n && r == 0; i = j) {
		if (p[i].bimage >= 0) {
			j = i + base_run(&p[i], n - i);
			r = base_check(l, &p[i], j - i);
			continue;
		}
		if (p[i].verify) {
			const struct cl_chunk *c = p[i].verify;
			uint32_t clen = cl_chunk_len(l->m->image_size[im], l->cs, c->index);
			if (!chunk && !(chunk = malloc(l->cs)))
				return -ENOMEM;
			r = cl_pread_full(p[i].fd, chunk, clen, c->index * l->cs, p[i].path);
			if (r < 0)
				break;
			cl_sha256(chunk, clen, h);
			lazy_lock(l);
			if (memcmp(h, c->sha256, CL_SHA256_LEN)) {
				/* A damaged cache is refetched, never served. */
				struct segment *s = &l->seg[c->p.seg];
				if (s->state == SEG_DONE) {
					s->state = SEG_ABSENT;
					l->segs_done--;
					l->img[CL_DISK].missing +=
					    l->ix.seg_nrec[CL_DISK][c->p.seg];
					l->img[CL_MEMORY].missing +=
					    l->ix.seg_nrec[CL_MEMORY][c->p.seg];
					if (l->state == CL_LAZY_COMPLETE)
						l->state = CL_LAZY_STREAMING;
					l->map_dirty = 1;
				}
				r = -EAGAIN;
			} else {
				cl_bit_set(l->img[im].verified, c->index);
			}
			lazy_unlock(l);
			if (r == 0)
				memcpy(p[i].dst, chunk + (p[i].foff - c->index * l->cs), p[i].len);
			j = i + 1;
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
			continue;
		}
		if (p[i].fd >= 0 && len)
			r = cl_pread_full(p[i].fd, p[i].dst, (size_t)len, p[i].foff, p[i].path);
		/* Zero what no file supplies: holes past the base, zero chunks. */
		if (r == 0) {
			size_t k;
			for (k = i; k < j; k++)
				if (p[k].valid < p[k].len)
					memset(p[k].dst + p[k].valid, 0, p[k].len - p[k].valid);
		}
	}
	free(chunk);
	return r;
}

/* ---- requests ---- */

struct plan {
	struct piece *p;
	size_t n;
	int64_t *segs; /* segments to wait for, without repeats */
	size_t nsegs;
};

static void plan_free(struct plan *pl)
{
	free(pl->p);
	free(pl->segs);
}

/* Splits [off, off + len) into pieces, or lists the segments
 * it waits for. */
static int plan_locked(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len,
                       uint8_t *dst, struct plan *pl)
{
	uint64_t k = off / l->cs, end = off + len, pos = off;
	size_t max = len / l->cs + 2, i;
	int64_t s;

	lazy_assert_locked(l);
	memset(pl, 0, sizeof(*pl));
	pl->p = malloc(max * sizeof(*pl->p));
	pl->segs = malloc(max * sizeof(*pl->segs));
	if (!pl->p || !pl->segs) {
		plan_free(pl);
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

static void unlink_waiter(struct waiter *w)
{
	w->prev->next = w->next;
	w->next->prev = w->prev;
	w->prev = w->next = w;
}

/* Takes w off every segment list and l->waiters. */
static void drop_waiter_locked(struct cl_lazy *l, struct waiter *w)
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
		unlink_waiter(w);
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
	l->demand_at = cl_now();
	if (w->next == w) {
		/* First park: join the list and start the clock. */
		w->next = &l->waiters;
		w->prev = l->waiters.prev;
		l->waiters.prev->next = w;
		l->waiters.prev = w;
		l->img[w->image].st.waiting++;
		pthread_cond_signal(&l->tick);
	}
	if (queued)
		pthread_cond_broadcast(&l->work);
	return 1;
}

static void finish(struct cl_lazy *l, struct waiter *w, ssize_t r)
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
		event_locked(l, w->image, CL_EV_ACCESSED, k);
		if (modified) {
			cl_bit_set(l->img[w->image].modified, k);
			event_locked(l, w->image, CL_EV_MODIFIED, k);
		}
	}
}

static void attempt(struct cl_lazy *l, struct waiter *w);

static void attempt_read(struct cl_lazy *l, struct waiter *w)
{
	struct evwait *ready;
	struct plan pl;
	int r;

	for (;;) {
		lazy_lock(l);
		r = plan_locked(l, w->image, w->off, w->len, w->buf, &pl);
		if (r == 0 && pl.nsegs) {
			r = park_locked(l, w, &pl);
			if (r != 0) {
				if (r < 0)
					drop_waiter_locked(l, w);
				lazy_unlock(l);
				plan_free(&pl);
				if (r < 0)
					finish(l, w, r);
				return; /* parked: a worker calls attempt() again */
			}
			/* Everything arrived meanwhile: plan again. */
			lazy_unlock(l);
			plan_free(&pl);
			continue;
		}
		drop_waiter_locked(l, w);
		lazy_unlock(l);
		if (r == 0)
			r = run_pieces(l, w->image, pl.p, pl.n);
		plan_free(&pl);
		if (r != -EAGAIN)
			break;
	}
	if (r == 0) {
		lazy_lock(l);
		touch_locked(l, w, 0);
		l->img[w->image].st.bytes_read += w->len;
		ready = ready_evwaits_locked(l);
		lazy_unlock(l);
		run_evwaits(ready);
	}
	finish(l, w, r < 0 ? r : (ssize_t)w->len);
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
		finish(l, w, -ENOMEM);
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
		plan_free(&pl);
		r = plan_locked(l, w->image, cstart, clen, NULL, &pl);
		if (r == 0 && pl.nsegs) {
			r = park_locked(l, w, &pl);
			if (r > 0) {
				lazy_unlock(l);
				pthread_mutex_unlock(&l->store_lock);
				plan_free(&pl);
				free(chunk);
				return;
			}
			if (r == 0)
				goto again;
		}
	}
	drop_waiter_locked(l, w);
	lazy_unlock(l);
	plan_free(&pl);
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
			r = plan_locked(l, w->image, cstart, clen, chunk, &pl);
		lazy_unlock(l);
		if (r < 0)
			break;
		if (!whole && !modified) {
			if (pl.nsegs) {
				/* Its segment went away meanwhile (bad cache). */
				plan_free(&pl);
				r = 0;
				goto retry;
			}
			r = run_pieces(l, w->image, pl.p, pl.n);
			plan_free(&pl);
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
			event_locked(l, w->image, CL_EV_MODIFIED, k);
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
		ready = ready_evwaits_locked(l);
		lazy_unlock(l);
		run_evwaits(ready);
	}
	finish(l, w, r < 0 ? r : (ssize_t)w->len);
	return;

again:
	lazy_unlock(l);
	r = 0;
	goto retry;
}

static void attempt(struct cl_lazy *l, struct waiter *w)
{
	if (w->is_write)
		attempt_write(l, w);
	else
		attempt_read(l, w);
}

static void submit(struct cl_lazy *l, int is_write, enum cl_image_id im, uint64_t off, size_t len,
                   void *buf, const void *wbuf, cl_lazy_done_fn done, void *ctx)
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
	w->buf = buf;
	w->wbuf = wbuf;
	w->done = done;
	w->ctx = ctx;
	w->deadline = cl_now() + l->img[im].timeout_ms / 1000.0;
	attempt(l, w);
}

void cl_lazy_read(struct cl_lazy *l, enum cl_image_id image, uint64_t off, size_t len, void *buf,
                  cl_lazy_done_fn done, void *ctx)
{
	submit(l, 0, image, off, len, buf, NULL, done, ctx);
}

void cl_lazy_write(struct cl_lazy *l, enum cl_image_id image, uint64_t off, size_t len,
                   const void *buf, cl_lazy_done_fn done, void *ctx)
{
	submit(l, 1, image, off, len, NULL, buf, done, ctx);
}

/* ---- segments ---- */

/* Names the pack in the last error, unless the message already does. */
static int pack_error(struct cl_lazy *l, int r)
{
	const char *msg = cl_error_msg();

	if (!strncmp(msg, l->pack_location, strlen(l->pack_location)))
		return r;
	return cl_errorf(r, "%s: %s", l->pack_location, msg);
}

/* Writes the payload chunks of decoded segment s into the cache. */
static int decode_into_cache(struct cl_lazy *l, uint32_t s, const uint8_t *raw)
{
	uint8_t *buf;
	uint64_t i;
	int r = 0;

	buf = malloc(l->cs);
	if (!buf)
		return -ENOMEM;
	for (i = l->ix.seg_start[s]; i < l->ix.seg_start[s + 1] && r == 0; i++) {
		const struct cl_chunk *c = &l->m->chunks[l->ix.seg_recs[i]];
		struct image *img = &l->img[c->image];
		uint32_t len = cl_chunk_len(l->m->image_size[c->image], l->cs, c->index);
		r = cl_chunk_synthesize(l->m, l->base, c, raw, buf);
		if (r == 0)
			r = cl_pwrite_full(img->cache_fd, buf, len, c->index * l->cs,
			                   img->cache_path);
	}
	free(buf);
	return r;
}

static void save_map(struct cl_lazy *l);

/* Segment s is in the cache; wakes its waiters onto *done. */
static void segment_done_locked(struct cl_lazy *l, uint32_t s, struct waiter **done)
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
		event_locked(l, c->image, CL_EV_PRESENT, c->index);
	}
	for (k = 0; k < CL_NIMAGES; k++)
		l->img[k].missing -= l->ix.seg_nrec[k][s];
	for (k = 0; k < sg->nw; k++) {
		struct waiter *w = sg->w[k];
		if (--w->pending == 0) {
			l->img[w->image].st.waiting--;
			unlink_waiter(w);
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
		drop_waiter_locked(l, w);
		w->result = -EIO;
		w->cnext = *done;
		*done = w;
	}
}

/* Answers that no retry will change: the pack changed on the server, is
 * gone or is refused. */
static int permanent(int r)
{
	return r == -ESTALE || r == -ENOENT || r == -EACCES || r == -EPROTONOSUPPORT || r == -ELOOP;
}

/* The pack cannot be used any more; every segment still
 * missing fails at once, with l->last_error as the reason. */
static void pack_failed_locked(struct cl_lazy *l, struct waiter **done)
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

static void run_done(struct cl_lazy *l, struct waiter *done)
{
	struct waiter *next;
	struct evwait *ready;

	lazy_lock(l);
	ready = ready_evwaits_locked(l);
	lazy_unlock(l);
	run_evwaits(ready);
	for (; done; done = next) {
		next = done->cnext;
		if (done->result < 0)
			finish(l, done, done->result);
		else
			attempt(l, done);
	}
}

/* After fetching (or failing to fetch) segment s: records the outcome. */
static void segment_outcome(struct cl_lazy *l, uint32_t s, int r, uint8_t *spill, int background)
{
	uint32_t clen = l->m->segments[s].clen;
	struct segment *sg = &l->seg[s];
	struct waiter *done = NULL;
	double t = cl_now();
	int save;

	lazy_lock(l);
	if (background)
		l->bg_busy--;
	if (r == 0) {
		l->bytes_fetched += clen;
		segment_done_locked(l, s, &done);
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
		if (permanent(r)) {
			pack_failed_locked(l, &done);
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
			l->bg_delay = l->bg_delay ? l->bg_delay * 2 : RETRY_DELAY_MIN;
			if (l->bg_delay > RETRY_DELAY_MAX)
				l->bg_delay = RETRY_DELAY_MAX;
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
		save_map(l);
	run_done(l, done);
}

/* Forgets a segment held in memory. */
static void spill_drop_locked(struct cl_lazy *l, uint32_t s)
{
	struct segment *sg = &l->seg[s];
	int k;

	lazy_assert_locked(l);
	free(sg->raw);
	sg->raw = NULL;
	sg->state = SEG_ABSENT;
	l->spilled--;
	l->segs_done--;
	for (k = 0; k < CL_NIMAGES; k++)
		l->img[k].missing += l->ix.seg_nrec[k][s];
	if (l->state == CL_LAZY_COMPLETE)
		l->state = CL_LAZY_STREAMING;
	if (s < l->bg_next)
		l->bg_next = s;
}

/* Holds decoded segment s in memory, evicting the least
 * recently used one past SPILL_MAX. */
static void spill_locked(struct cl_lazy *l, uint32_t s, uint8_t *raw)
{
	uint32_t i, lru = UINT32_MAX;

	lazy_assert_locked(l);
	if (l->spilled >= SPILL_MAX) {
		for (i = 0; i < l->m->nsegments; i++)
			if (l->seg[i].state == SEG_MEM &&
			    (lru == UINT32_MAX || l->seg[i].used < l->seg[lru].used))
				lru = i;
		if (lru != UINT32_MAX)
			spill_drop_locked(l, lru);
	}
	l->seg[s].raw = raw;
	l->seg[s].used = cl_now();
	l->spilled++;
}

/* Fetches, checks and decodes segment s into the cache. If the cache
 * cannot take it (full, read-only), *spill receives the decoded segment
 * and 0 is returned: reads are then served from memory. */
static int fetch_segment(struct cl_lazy *l, uint32_t s, const uint8_t *comp, uint8_t **spill)
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
			return pack_error(l, r);
		}
	} else {
		r = cl_segment_fetch(l->m, l->pack, s, &raw);
		if (r < 0)
			return pack_error(l, r);
	}
	r = decode_into_cache(l, s, raw);
	if (r < 0 && r != -EBADMSG && r != -ENOMEM) {
		*spill = raw;
		return 0;
	}
	free(raw);
	if (r < 0)
		pack_error(l, r);
	return r;
}

/* The next segment to fetch, or -1 (then *wait_until says
 * when to look again). Demand first; one worker stays off the stream. The
 * stream also holds back while requests wait and for DEMAND_QUIET_S after
 * the last one: on a shared link its segments would queue ahead of the
 * demanded ones, and a resumed VM faults in bursts. */
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
					if (!seen[sg->w[i]->image]++)
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
	if (l->waiters.next != &l->waiters || t < l->demand_at + DEMAND_QUIET_S) {
		if (l->waiters.next == &l->waiters)
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
		r = fetch_segment(l, (uint32_t)s, NULL, &spill);
		segment_outcome(l, (uint32_t)s, r, spill, background);
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
			r = fetch_segment(l, sc->seg, sc->buf, &spill);
			segment_outcome(l, sc->seg, r, spill, 0);
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
			if (permanent(r)) {
				struct waiter *done = NULL;

				pack_failed_locked(l, &done);
				lazy_unlock(l);
				run_done(l, done);
				lazy_lock(l);
				continue;
			}
			l->bg_delay = l->bg_delay ? l->bg_delay * 2 : RETRY_DELAY_MIN;
			if (l->bg_delay > RETRY_DELAY_MAX)
				l->bg_delay = RETRY_DELAY_MAX;
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
	if (plan_locked(l, w->image, w->off, w->len, NULL, &pl) < 0)
		return;
	for (i = 0; i < pl.nsegs; i++)
		l->seg[pl.segs[i]].fail_until[w->image] = t + FAIL_FAST_S;
	plan_free(&pl);
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
				drop_waiter_locked(l, w);
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
				save_map(l);
			run_done(l, done);
			done = NULL;
			lazy_lock(l);
			continue;
		}
		lazy_wait_locked(l, &l->tick, until);
	}
	lazy_unlock(l);
	return NULL;
}

/* ---- cache and store ---- */

static void save_map(struct cl_lazy *l)
{
	uint8_t *map;
	char *path;
	uint32_t s, n = l->m->nsegments;

	map = cl_bitmap_new(n);
	if (!map)
		return;
	lazy_lock(l);
	for (s = 0; s < n; s++)
		if (l->seg[s].state == SEG_DONE)
			cl_bit_set(map, s);
	l->map_dirty = 0;
	l->map_saved = cl_now();
	lazy_unlock(l);
	/* Best effort: a lost map only costs a refetch. The data it vouches
	 * for was written before, and every chunk is rechecked on first use. */
	if (asprintf(&path, "%s/segments.map", l->cache.dir) >= 0) {
		cl_write_file_atomic(path, map, cl_bitmap_bytes(n), 0644);
		free(path);
	}
	free(map);
}

static void load_map_locked(struct cl_lazy *l)
{
	struct waiter *none = NULL;
	uint8_t *map;
	size_t len;
	char *path;
	uint32_t s;

	lazy_assert_locked(l);
	if (asprintf(&path, "%s/segments.map", l->cache.dir) < 0)
		return;
	if (cl_read_file(path, cl_bitmap_bytes(l->m->nsegments), (void **)&map, &len) == 0) {
		if (len == cl_bitmap_bytes(l->m->nsegments)) {
			for (s = 0; s < l->m->nsegments; s++)
				if (cl_bit_get(map, s)) {
					segment_done_locked(l, s, &none);
					l->cache_hits++;
				}
			/* Chunks of a reused cache are checked on first use. */
			for (s = 0; s < CL_NIMAGES; s++) {
				memset(l->img[s].verified, 0, cl_bitmap_bytes(l->img[s].nchunks));
				l->img[s].st.chunk_fetches = 0;
			}
		}
		free(map);
	}
	cl_error_clear();
	free(path);
}

/* The cache directory of this overlay (see cl_cache.h); its note, if the
 * shared one cannot be used, shows in status. */
static int setup_cache(struct cl_lazy *l)
{
	uint64_t need = 0;
	char *root = NULL;
	int r, i;

	for (i = 0; i < CL_NIMAGES; i++)
		need += (uint64_t)l->ix.npayload[i] * l->cs;
	if (!l->o.no_cache) {
		if (l->o.cache_dir)
			root = strdup(l->o.cache_dir);
		else if (asprintf(&root, "%s/cache", cl_home()) < 0)
			root = NULL;
		if (!root)
			return -ENOMEM;
	}
	r = cl_cache_open(&l->cache, root, l->m->id, l->o.cache_limit, need);
	free(root);
	if (r == 0 && l->cache.note[0])
		snprintf(l->cache_note, sizeof(l->cache_note), "%s", l->cache.note);
	return r;
}

/* The copy-on-write store: a kept store of this overlay comes back with
 * its map (cl_store.h); any other is started afresh, but not a kept store
 * that this mount would lose (no keep_store), nor one of another overlay. */
static int open_store(struct cl_lazy *l)
{
	static const char *names[CL_NIMAGES] = {"disk.store", "memory.store"};
	uint64_t n[CL_NIMAGES];
	uint8_t *maps[CL_NIMAGES];
	int i, r, kept;

	for (i = 0; i < CL_NIMAGES; i++) {
		n[i] = l->img[i].nchunks;
		maps[i] = l->img[i].modified;
	}
	r = cl_store_map_load(l->store_dir, l->m->id, n, maps);
	if (r < 0 && r != -ENOENT)
		return r;
	kept = r == 0;
	if (kept && !l->o.keep_store)
		return cl_errorf(-EEXIST,
		                 "%s holds a kept store: mount with keep_store to use its writes, "
		                 "or remove it",
		                 l->store_dir);
	for (i = 0; i < CL_NIMAGES; i++) {
		struct image *img = &l->img[i];

		/* Afresh: emptied first, so no old write shows through. */
		r = cl_cache_file(l->store_dir, names[i], kept ? img->size : 0, &img->store_path,
		                  &img->store_fd);
		if (r == 0 && ftruncate(img->store_fd, (off_t)img->size) < 0)
			r = cl_errorf(-errno, "%s: %s", img->store_path, strerror(errno));
		if (r < 0)
			return r;
		img->st.chunks_modified = kept ? cl_bit_count(img->modified, img->nchunks) : 0;
	}
	return 0;
}

int cl_lazy_sync(struct cl_lazy *l)
{
	uint64_t n[CL_NIMAGES];
	uint8_t *maps[CL_NIMAGES] = {NULL};
	int i, r = 0;

	if (!l)
		return -EINVAL;
	if (!l->o.keep_store)
		return 0; /* scratch space that dies with the mount */
	/* The maps first: every chunk they name was written before, so the
	 * data sync that follows covers it. */
	lazy_lock(l);
	for (i = 0; i < CL_NIMAGES; i++) {
		n[i] = l->img[i].nchunks;
		maps[i] = malloc(cl_bitmap_bytes(n[i]));
		if (maps[i])
			memcpy(maps[i], l->img[i].modified, cl_bitmap_bytes(n[i]));
		else
			r = -ENOMEM;
	}
	lazy_unlock(l);
	for (i = 0; i < CL_NIMAGES && r == 0; i++)
		if (fdatasync(l->img[i].store_fd) < 0)
			r = cl_errorf(-errno, "%s: %s", l->img[i].store_path, strerror(errno));
	if (r == 0)
		r = cl_store_map_save(l->store_dir, l->m->id, n, (const uint8_t *const *)maps);
	for (i = 0; i < CL_NIMAGES; i++)
		free(maps[i]);
	return r;
}

static int setup_files(struct cl_lazy *l)
{
	static const char *cache_names[CL_NIMAGES] = {"disk.cache", "memory.cache"};
	int r, i;

	r = setup_cache(l);
	if (r < 0)
		return r;
	if (l->o.store_dir) {
		l->store_dir = strdup(l->o.store_dir);
		if (!l->store_dir)
			return -ENOMEM;
		r = cl_mkdir_p(l->store_dir, 0700);
	} else {
		r = cl_cache_temp_dir("cloudlet-store", &l->store_dir);
		l->store_created = 1;
	}
	if (r < 0)
		return r;
	for (i = 0; i < CL_NIMAGES; i++) {
		struct image *img = &l->img[i];
		r = cl_cache_file(l->cache.dir, cache_names[i], img->size, &img->cache_path,
		                  &img->cache_fd);
		if (r < 0)
			return r;
	}
	return open_store(l);
}

/* ---- blobs: device state and domain XML ---- */

struct collect {
	uint8_t *buf;
	uint32_t want, have;
};

static int collect_piece(void *arg, uint64_t off, const void *data, size_t len)
{
	struct collect *c = arg;
	size_t n = c->want - c->have < len ? c->want - c->have : len;

	(void)off;
	memcpy(c->buf + c->have, data, n);
	c->have += (uint32_t)n;
	return c->have == c->want ? 1 : 0;
}

/* Fetches and decodes segment s now, also from a server without ranges
 * (by streaming up to its end). *raw is malloc'd. */
static int fetch_now(struct cl_lazy *l, uint32_t s, uint8_t **raw)
{
	const struct cl_segment *sg = &l->m->segments[s];
	struct collect c = {.want = sg->clen};
	int r;

	if (l->ranges)
		return cl_segment_fetch(l->m, l->pack, s, raw);
	c.buf = malloc(sg->clen);
	*raw = malloc(sg->rlen ? sg->rlen : 1);
	if (!c.buf || !*raw) {
		r = -ENOMEM;
		goto out;
	}
	r = cl_source_stream(l->pack, sg->offset, collect_piece, &c);
	if (r >= 0 && c.have != c.want)
		r = cl_errorf(-EIO, "%s: pack ended early", l->pack_location);
	if (r >= 0)
		r = cl_segment_decode(l->m, s, c.buf, sg->clen, *raw);
out:
	free(c.buf);
	if (r < 0) {
		free(*raw);
		*raw = NULL;
		return r;
	}
	return 0;
}

/* The blobs come from the cache directory if a checked copy is there,
 * otherwise their segment is fetched (and decoded into the cache) now. */
static int load_blobs(struct cl_lazy *l)
{
	static const char *names[2] = {"state", "domain.xml"};
	const struct cl_blob *b;
	uint8_t h[CL_SHA256_LEN], *raw = NULL, *spill;
	int64_t raw_seg = -1; /* the segment in raw: state and XML share one */
	char *path;
	int i, r;

	for (i = 0; i < 2; i++) {
		b = i ? &l->m->domain : &l->m->state;
		if (!b->present)
			continue;
		if (asprintf(&path, "%s/%s", l->cache.dir, names[i]) < 0)
			return -ENOMEM;
		if (cl_read_file(path, CL_SEGMENT_MAX, &l->blob[i], &l->blob_len[i]) == 0) {
			cl_sha256(l->blob[i], l->blob_len[i], h);
			if (!memcmp(h, b->sha256, CL_SHA256_LEN)) {
				free(path);
				continue;
			}
			free(l->blob[i]);
			l->blob[i] = NULL;
		}
		cl_error_clear();
		r = 0;
		if (raw_seg != (int64_t)b->p.seg) {
			free(raw);
			raw = NULL;
			r = fetch_now(l, b->p.seg, &raw);
			raw_seg = r == 0 ? (int64_t)b->p.seg : -1;
		}
		if (r == 0)
			r = cl_blob_extract(l->m, b, raw, &l->blob[i], &l->blob_len[i]);
		if (r < 0) {
			free(raw);
			free(path);
			return pack_error(l, r);
		}
		cl_write_file_atomic(path, l->blob[i], l->blob_len[i], 0600);
		free(path);
		lazy_lock(l);
		r = l->seg[b->p.seg].state == SEG_ABSENT;
		if (r)
			l->seg[b->p.seg].state = SEG_FETCHING;
		lazy_unlock(l);
		if (r) {
			/* The rest of that segment is wanted first anyway. */
			r = decode_into_cache(l, b->p.seg, raw);
			spill = NULL;
			if (r < 0 && r != -EBADMSG && r != -ENOMEM) {
				/* Held in memory from now on: a copy, raw stays ours. */
				spill = malloc(l->m->segments[b->p.seg].rlen);
				if (spill)
					memcpy(spill, raw, l->m->segments[b->p.seg].rlen);
				r = spill ? 0 : -ENOMEM;
			}
			segment_outcome(l, b->p.seg, r, spill, 0);
		}
	}
	free(raw);
	cl_error_clear();
	return 0;
}

/* ---- life cycle ---- */

static void free_all(struct cl_lazy *l)
{
	uint32_t s;
	int i, k;

	for (i = 0; i < CL_NIMAGES; i++) {
		struct image *img = &l->img[i];
		if (img->cache_fd >= 0)
			close(img->cache_fd);
		if (img->store_fd >= 0)
			close(img->store_fd);
		if (!l->o.keep_store && img->store_path)
			unlink(img->store_path);
		free(img->cache_path);
		free(img->store_path);
		free(img->modified);
		free(img->verified);
		for (k = 0; k < CL_EV_KINDS; k++) {
			free(img->log[k].tail);
			free(img->log[k].seen);
			if (img->log[k].fd >= 0)
				close(img->log[k].fd);
		}
		free(l->base_data[i]);
		free(l->base_ok[i]);
	}
	if (l->seg) {
		for (s = 0; s < l->m->nsegments; s++) {
			free(l->seg[s].w);
			free(l->seg[s].raw);
		}
	}
	if (l->store_created && !l->o.keep_store && l->store_dir)
		rmdir(l->store_dir);
	cl_cache_close(&l->cache);
	cl_ahead_free(l->ahead); /* before the base it reads */
	free(l->seg);
	cl_recindex_free(&l->ix);
	free(l->blob[0]);
	free(l->blob[1]);
	free(l->store_dir);
	free(l->meta_location);
	free(l->pack_location);
	cl_source_close(l->pack);
	cl_meta_free(l->m);
	cl_base_free(l->base);
	pthread_mutex_destroy(&l->lock);
	pthread_mutex_destroy(&l->store_lock);
	pthread_cond_destroy(&l->work);
	pthread_cond_destroy(&l->tick);
	free(l);
}

/* Marks the base chunks that hold data, from the base images' extents. */
static int map_base_data(struct cl_lazy *l)
{
	uint64_t n, k, end;
	off_t data, hole;
	int i;

	for (i = 0; i < CL_NIMAGES; i++) {
		n = cl_chunk_count(l->base->size[i], l->cs);
		l->base_data[i] = cl_bitmap_new(n);
		l->base_ok[i] = cl_bitmap_new(n);
		if (!l->base_data[i] || !l->base_ok[i])
			return -ENOMEM;
		for (data = 0; (uint64_t)data < l->base->size[i]; data = hole) {
			data = lseek(l->base->fd[i], data, SEEK_DATA);
			if (data < 0)
				break; /* ENXIO: no more data */
			hole = lseek(l->base->fd[i], data, SEEK_HOLE);
			if (hole < 0)
				hole = (off_t)l->base->size[i];
			end = ((uint64_t)hole + l->cs - 1) / l->cs;
			for (k = (uint64_t)data / l->cs; k < end && k < n; k++)
				cl_bit_set(l->base_data[i], k);
		}
	}
	return 0;
}

static int init_images(struct cl_lazy *l)
{
	int i, k;

	for (i = 0; i < CL_NIMAGES; i++) {
		struct image *img = &l->img[i];
		img->size = l->m->image_size[i];
		img->nchunks = cl_chunk_count(img->size, l->cs);
		img->modified = cl_bitmap_new(img->nchunks);
		img->verified = cl_bitmap_new(img->nchunks);
		if (!img->modified || !img->verified)
			return -ENOMEM;
		for (k = 0; k < CL_EV_KINDS; k++) {
			img->log[k].seen = cl_bitmap_new(img->nchunks);
			if (!img->log[k].seen)
				return -ENOMEM;
		}
		img->missing = l->ix.npayload[i];
		img->st.chunk_size = l->cs;
		img->st.chunks = img->nchunks;
		img->st.chunks_overlay = l->ix.nrecs[i];
		img->timeout_ms = i == CL_MEMORY ? l->o.memory_timeout_ms : l->o.timeout_ms;
	}
	return 0;
}

int cl_lazy_open(const char *base, const char *overlay, const struct cl_lazy_opts *opts,
                 struct cl_lazy **out)
{
	struct cl_source_opts so = {0};
	struct cl_lazy *l;
	char *packloc;
	int r, i, k;

	if (!base || !overlay || !out)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	if (opts)
		l->o = *opts;
	if (!l->o.connections)
		l->o.connections = DEFAULT_CONNECTIONS;
	if (!l->o.timeout_ms)
		l->o.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (!l->o.memory_timeout_ms)
		l->o.memory_timeout_ms = DEFAULT_MEM_TIMEOUT;
	if (!l->o.cache_limit)
		l->o.cache_limit = DEFAULT_CACHE_LIMIT;
	l->t0 = cl_now();
	l->cache.lock_fd = -1;
	for (i = 0; i < CL_NIMAGES; i++) {
		l->img[i].cache_fd = l->img[i].store_fd = -1;
		for (k = 0; k < CL_EV_KINDS; k++)
			l->img[i].log[k].fd = -1;
	}
	l->waiters.next = l->waiters.prev = &l->waiters;
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->store_lock, NULL);
	cl_cond_init_monotonic(&l->work);
	cl_cond_init_monotonic(&l->tick);

	r = cl_meta_load(overlay, &l->m, &l->meta_location);
	if (r < 0)
		goto fail;
	r = cl_base_find(base, &l->base);
	if (r < 0)
		goto fail;
	r = cl_synth_check_base(l->m, l->base, l->meta_location);
	if (r == 0)
		r = cl_base_open_index(l->base); /* every base byte served is checked */
	if (r < 0)
		goto fail;
	l->cs = l->m->chunk_size;
	so.timeout_ms = l->o.fetch_timeout_ms;
	so.retries = l->o.retries;
	so.connections = l->o.connections;
	r = cl_source_sibling(l->meta_location, l->m->pack, &l->pack_location);
	if (r < 0)
		goto fail;
	packloc = l->pack_location;
	r = cl_source_open(packloc, &so, &l->pack);
	if (r < 0)
		goto fail;
	if (cl_source_size(l->pack) != l->m->pack_size) {
		r = cl_errorf(-EBADMSG, "%s: pack is %llu bytes, the meta says %llu", packloc,
		              (unsigned long long)cl_source_size(l->pack),
		              (unsigned long long)l->m->pack_size);
		goto fail;
	}
	l->ranges = cl_source_has_ranges(l->pack);
	l->seg = calloc((size_t)l->m->nsegments + 1, sizeof(*l->seg));
	if (!l->seg) {
		r = -ENOMEM;
		goto fail;
	}
	r = cl_recindex_build(l->m, &l->ix);
	if (r == 0)
		r = init_images(l);
	if (r == 0)
		r = map_base_data(l);
	if (r == 0)
		r = setup_files(l);
	if (r < 0)
		goto fail;
	lazy_lock(l);
	load_map_locked(l);
	lazy_unlock(l);
	r = load_blobs(l);
	if (r < 0)
		goto fail;
	*out = l;
	return 0;

fail:
	free_all(l);
	return r;
}

int cl_lazy_start(struct cl_lazy *l)
{
	unsigned i, n;
	int r;

	if (!l || l->started)
		return -EINVAL;
	/* Here, not at open: a daemon forks between the two. Without it (no
	 * memory, no thread) reads check base chunks themselves. */
	if (cl_ahead_new(l->base, AHEAD_WINDOW, &l->ahead) < 0)
		l->ahead = NULL;
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
			l->nthreads = i;
			return cl_errorf(-r, "cannot start fetch threads: %s", strerror(r));
		}
	}
	r = pthread_create(&l->timer, NULL, timer_main, l);
	if (r)
		return cl_errorf(-r, "cannot start the timer thread: %s", strerror(r));
	l->timer_started = 1;
	return 0;
}

void cl_lazy_shutdown(struct cl_lazy *l)
{
	struct waiter *done = NULL, *w;
	struct evwait *ready;

	if (!l)
		return;
	lazy_lock(l);
	l->shutdown = 1;
	while ((w = l->waiters.next) != &l->waiters) {
		drop_waiter_locked(l, w);
		w->result = -EIO;
		w->cnext = done;
		done = w;
	}
	ready = ready_evwaits_locked(l);
	pthread_cond_broadcast(&l->work);
	pthread_cond_broadcast(&l->tick);
	lazy_unlock(l);
	/* Transfers under way on a slow link would hold up close. */
	cl_source_abort(l->pack);
	run_evwaits(ready);
	for (; done; done = w) {
		w = done->cnext;
		finish(l, done, -EIO);
	}
}

void cl_lazy_close(struct cl_lazy *l)
{
	unsigned i;

	if (!l)
		return;
	cl_lazy_shutdown(l);
	for (i = 0; i < l->nthreads; i++)
		pthread_join(l->threads[i], NULL);
	if (l->timer_started)
		pthread_join(l->timer, NULL);
	free(l->threads);
	if (!l->cache.is_private)
		save_map(l);
	free_all(l);
}

const struct cl_meta *cl_lazy_meta(const struct cl_lazy *l)
{
	return l->m;
}

uint64_t cl_lazy_size(const struct cl_lazy *l, enum cl_image_id image)
{
	return (unsigned)image < CL_NIMAGES ? l->img[image].size : 0;
}

void cl_lazy_blob(const struct cl_lazy *l, int which, const void **data, size_t *len)
{
	which = which ? 1 : 0;
	*data = l->blob[which];
	*len = l->blob[which] ? l->blob_len[which] : 0;
}

void cl_lazy_stats(struct cl_lazy *l, struct cl_lazy_stats *st)
{
	int i;

	memset(st, 0, sizeof(*st));
	lazy_lock(l);
	for (i = 0; i < CL_NIMAGES; i++) {
		st->image[i] = l->img[i].st;
		st->image[i].chunks_present = l->img[i].nchunks - l->img[i].missing;
		st->image[i].chunks_fetched = l->img[i].log[CL_EV_PRESENT].n;
	}
	st->state = l->state;
	if (l->reason[0])
		snprintf(st->reason, sizeof(st->reason), "%s", l->reason);
	else if (l->cache_note[0])
		snprintf(st->reason, sizeof(st->reason), "%s", l->cache_note);
	else if (l->segs_done < l->m->nsegments)
		snprintf(st->reason, sizeof(st->reason), "%s", l->last_error);
	st->ranges = l->ranges;
	st->segments = l->m->nsegments;
	st->segments_present = l->segs_done;
	st->pack_bytes = l->m->pack_size;
	st->bytes_fetched = l->bytes_fetched;
	st->cache_hits = l->cache_hits;
	st->base_checked = l->base_checked;
	st->base_ahead = l->base_ahead;
	st->seconds = cl_now() - l->t0;
	lazy_unlock(l);
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
