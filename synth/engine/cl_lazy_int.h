/* SPDX-License-Identifier: GPL-2.0-only */
/* The lazy engine's internal header, private to synth/engine (the API is
 * include/cl_lazy.h): the engine's state, the lock rule, and the functions
 * its files call in one another.
 *
 * The files: cl_lazy.c (open, close, shutdown, stats), cl_lazy_events.c
 * (event logs), cl_lazy_plan.c (where a request's bytes come from, reads,
 * first-use checks), cl_lazy_request.c (waiters, reads, copy-on-write
 * writes), cl_lazy_segment.c (the segment state machine and retries),
 * cl_lazy_decode.c (a fetched segment decoded into the cache, waiters'
 * chunks first), cl_lazy_sched.c (workers, stream, timer), cl_lazy_files.c
 * (presence map, cache and store files), cl_lazy_blobs.c (state and domain
 * XML), cl_lazy_ahead.c (readahead of the backing files for sequential
 * readers); the record index is cl_recindex.h.
 *
 * A segment moves ABSENT -> FETCHING -> DONE (its payload chunks written to
 * the cache file) or back to ABSENT after a transient failure, or to BAD
 * after it failed its checks twice. Requests that need a segment that is
 * not DONE become waiters, listed on each such segment and on l->waiters
 * (for timeouts and shutdown). While a FETCHING segment is decoded, the
 * chunks its waiters need are decoded and written first: a chunk in the
 * cache is readable at once (seg->ready), and the decoding thread answers
 * the waiters that then need nothing more of it. The worker that finishes
 * the last of a waiter's segments completes it.
 *
 * Threads: `connections` fetch workers (one keeps itself free of the
 * background stream for demand fetches), and a timer that fails waiters
 * whose bound has passed. Completion callbacks always run without l->lock. */
#ifndef CL_LAZY_INT_H
#define CL_LAZY_INT_H

#include "cl_lazy.h"
#include "cl_base.h"
#include "cl_cache.h"
#include "cl_recindex.h"
#include "cl_util.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

/* Checked builds: without NDEBUG, and under a sanitizer (the sanitizer
 * builds of the test suite are RelWithDebInfo, which defines NDEBUG). */
#if !defined(NDEBUG) || defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CL_LAZY_LOCK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CL_LAZY_LOCK_CHECK 1
#endif
#endif

#define MAP_SAVE_INTERVAL 1.0 /* seconds between saves of the presence map */

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
 * - No I/O on the base, cache or store files, no decoding of a segment and
 *   no completion callback runs under l->lock (the one exception: a chunk
 *   of a segment held in memory, SEG_MEM, a degraded mode, is made under
 *   it). Lock order: l->store_lock before l->lock. */

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
	void *buf;                /* read target */
	struct cl_lazy_seg *segs; /* cl_lazy_read_segs: the answer's parts, or NULL */
	size_t *nsegs;
	const void *wbuf; /* write source, NULL for zeros */
	cl_lazy_done_fn done;
	void *ctx;
	int quiet;        /* not an access: no event, not in bytes_read, not a
	                   * demand fetch, does not hold the stream back */
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
	/* FETCHING, while its records are decoded (cl_lazy_decode.c): bitmap
	 * over them (seg_recs order), set for those in the cache and checked;
	 * NULL otherwise. The decoding thread owns the memory. */
	uint8_t *ready;
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
	/* lock, see cl_lazy_ahead.c: where the last reads ended, how far what
	 * they will need is announced, and how many of them ran in a row */
	uint64_t ahead_pos, ahead_end;
	unsigned ahead_run;
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
	uint8_t *base_data[CL_NIMAGES];  /* bitmap: base chunks holding data (not a hole) */
	uint8_t *base_ok[CL_NIMAGES];    /* lock: bitmap, base chunks checked this mount */
	uint8_t *base_izero[CL_NIMAGES]; /* lock: bitmap, of those the index records as zero */
	void *blob[2];
	size_t blob_len[2];
	struct cl_cache cache;
	char *store_dir;
	int store_created; /* we made store_dir, remove it at close */
	int store_lock_fd; /* flock of our store_dir's lock file, or -1 */
	double t0;

	pthread_mutex_t lock;
	pthread_mutex_t store_lock; /* serializes first writes to a chunk */
	pthread_cond_t work;        /* lock: workers wait for something to fetch */
	pthread_cond_t tick;        /* lock: the timer waits for a deadline */
	struct segment *seg;        /* lock */
	uint32_t segs_done;         /* lock */
	uint32_t bg_next;           /* lock: background stream cursor */
	double bg_resume;           /* lock: no background fetch before this time */
	double bg_delay;            /* lock: current backoff */
	unsigned bg_busy;           /* lock: workers on background segments */
	unsigned demand_queue;      /* lock: demanded segments not yet taken */
	double demand_at;           /* lock: when a request (not quiet) last had to wait */
	struct waiter waiters;      /* lock: list head */
	unsigned loud_waiters;      /* lock: those on it not quiet: they hold the stream back */
	struct evwait *evwaits;     /* lock */
	int shutdown;               /* lock */
	int started;                /* lock */
	unsigned spilled;           /* lock: segments in SEG_MEM */
	enum cl_lazy_state state;   /* lock */
	char reason[256];           /* lock: why a request failed, or "" */
	char last_error[256];       /* lock: the last fetch error, or "" */
	char cache_note[256];       /* lock: why the cache is bypassed, or "" */
	uint64_t bytes_fetched;     /* lock */
	uint64_t cache_hits;        /* lock */
	uint64_t base_checked;      /* lock */
	uint64_t decodes;           /* lock: payloads decoded, see cl_lazy_stats */
	double map_saved;           /* lock */
	int map_dirty;              /* lock */
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

/* ---- cl_lazy_events.c ---- */

/* Appends chunk to an event log of image im unless it is there already. */
void lazy_event_locked(struct cl_lazy *l, enum cl_image_id im, enum cl_lazy_event_kind kind,
                       uint64_t chunk);
struct evwait *lazy_ready_evwaits_locked(struct cl_lazy *l);
/* Answers the event waits lazy_ready_evwaits_locked took (without the lock). */
void lazy_run_evwaits(struct evwait *ready);

/* ---- cl_lazy_plan.c ---- */

struct piece;

/* A request split into pieces, or the segments it waits for. */
struct plan {
	struct piece *p;
	size_t n;
	int64_t *segs; /* segments to wait for, without repeats */
	size_t nsegs;
};

int lazy_plan_locked(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len, uint8_t *dst,
                     struct plan *pl);
void lazy_plan_free(struct plan *pl);
/* What chunk k of image im needs: LAZY_CHUNK_ZERO (all zero, known
 * without a read), LAZY_CHUNK_LOCAL (the base or the store: no segment)
 * or LAZY_CHUNK_OVERLAY (a payload of the overlay). */
enum lazy_chunk_class { LAZY_CHUNK_OVERLAY = 0, LAZY_CHUNK_LOCAL = 1, LAZY_CHUNK_ZERO = 2 };
enum lazy_chunk_class lazy_chunk_class_locked(struct cl_lazy *l, enum cl_image_id im, uint64_t k);
/* Runs pieces p[0..n) into their buffers; with segs, the bytes of files
 * that need no check are left there and listed (see cl_lazy_read_segs). */
int lazy_run_pieces(struct cl_lazy *l, enum cl_image_id im, struct piece *p, size_t n,
                    struct cl_lazy_seg *segs, size_t *nsegs);
/* Announces to the kernel (POSIX_FADV_WILLNEED) the byte ranges of the
 * backing files, and of the base's index, that running plan pl will read. */
void lazy_plan_advise(const struct cl_lazy *l, const struct plan *pl);

/* ---- cl_lazy_ahead.c ---- */

/* Turns the kernel's readahead off on the base and cache files (see
 * cl_lazy_ahead.c). */
void lazy_ahead_setup(struct cl_lazy *l);
/* Called before a read [off, off + len) of image im: once the reads of im
 * run sequentially, announces what the next bytes of im will read. */
void lazy_ahead(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len);

/* ---- cl_lazy_request.c ---- */

/* Takes w off l->waiters. */
void lazy_unlink_waiter_locked(struct cl_lazy *l, struct waiter *w);
void lazy_drop_waiter_locked(struct cl_lazy *l, struct waiter *w);
/* Tries request w again (its segments arrived); completes or parks it. */
void lazy_attempt(struct cl_lazy *l, struct waiter *w);
/* Completes w with r and frees it. */
void lazy_finish(struct cl_lazy *l, struct waiter *w, ssize_t r);
/* For the postcopy source, whose pushed pages are not the guest's
 * accesses: a cl_lazy_read() that records no access (quiet), and a read
 * that never waits: 0 when all of [off, off + len) was here, -EAGAIN
 * when a segment is missing (nothing is fetched or demanded), -errno. */
void lazy_read_quiet(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len, void *buf,
                     cl_lazy_done_fn done, void *ctx);
int lazy_read_present(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len, void *buf);

/* ---- cl_lazy_sched.c ---- */

/* Whether the fetch threads will bring the missing segments of image im
 * without a request: the stream runs and some segment with im's payloads
 * is being fetched or still ahead of the stream. */
int lazy_stream_brings_locked(struct cl_lazy *l, enum cl_image_id im);

/* ---- cl_lazy_segment.c ---- */

int lazy_pack_error(struct cl_lazy *l, int r);
int lazy_permanent(int r);
int lazy_fetch_segment(struct cl_lazy *l, uint32_t s, const uint8_t *comp, uint8_t **spill);
void lazy_segment_outcome(struct cl_lazy *l, uint32_t s, int r, uint8_t *spill, int background);
void lazy_segment_done_locked(struct cl_lazy *l, uint32_t s, struct waiter **done);
void lazy_pack_failed_locked(struct cl_lazy *l, struct waiter **done);
/* Segment s (DONE, or MEM) is gone and must be fetched again. */
void lazy_segment_lost_locked(struct cl_lazy *l, uint32_t s);
/* Forgets segment s held in memory (MEM): it is fetched again. */
void lazy_spill_drop_locked(struct cl_lazy *l, uint32_t s);
/* Doubles the background backoff (from RETRY_DELAY_MIN up to RETRY_DELAY_MAX). */
void lazy_backoff_locked(struct cl_lazy *l);
/* Answers the event waits now satisfied, then completes or retries the
 * waiters on the list done (linked by cnext). Without the lock. */
void lazy_run_done(struct cl_lazy *l, struct waiter *done);

/* ---- cl_lazy_decode.c ---- */

/* Writes the payload chunks of decoded segment s (FETCHING, by this thread)
 * into the cache, the chunks its waiters need first, and answers those
 * waiters as soon as it can. 0, or the first error (its outcome follows). */
int lazy_decode_into_cache(struct cl_lazy *l, uint32_t s, const uint8_t *raw);
/* Whether record c (with a payload) is in the cache while its segment is
 * still being decoded. */
int lazy_chunk_ready_locked(const struct cl_lazy *l, const struct cl_chunk *c);

/* ---- cl_lazy_files.c ---- */

int lazy_setup_files(struct cl_lazy *l);
int lazy_map_base_data(struct cl_lazy *l);
void lazy_save_map(struct cl_lazy *l);
void lazy_load_map_locked(struct cl_lazy *l);

/* ---- cl_lazy_blobs.c ---- */

int lazy_load_blobs(struct cl_lazy *l);

#endif
