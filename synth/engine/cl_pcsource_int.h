/* SPDX-License-Identifier: GPL-2.0-only */
/* What the two files of the postcopy source share (include/cl_pcsource.h):
 * cl_pcsource.c (set-up, return path, answers, end) and cl_pcsource_push.c
 * (the push). Private to the engine. Fields marked "lock" are guarded by
 * ps->lock, "wlock" by ps->wlock (the stream); the rule and the lock order
 * are in cl_pcsource.c's header comment. */
#ifndef CL_PCSOURCE_INT_H
#define CL_PCSOURCE_INT_H

#include "cl_pcsource.h"
#include "cl_pcstream.h"
#include "cl_vmstate.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#define PAGE     CL_VMSTATE_PAGE
#define NBUCKETS 256 /* latency histogram: 4 buckets per power of two of microseconds */
#define PRIO_MAX 64  /* segments of answered pages waiting for the push */

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
	pthread_cond_t cond;   /* lock: broadcast at every change of the fields below */
	pthread_mutex_t jlock; /* serializes the joins of cl_pcsource_stop() */
	pthread_t threads[3];
	unsigned nthreads;                 /* jlock: started, not joined yet */
	unsigned refs;                     /* lock */
	struct pread *ready, **ready_tail; /* lock: requested pages read, to answer */
	int answering;                     /* lock: the sender writes answers */
	uint64_t inflight;                 /* lock: requested pages in the engine */
	uint64_t pending;                  /* lock: requested pages not answered yet */
	uint32_t prio[PRIO_MAX];           /* lock: segments of answered pages, to push first */
	unsigned nprio;                    /* lock */
	double t_started;                  /* lock: the package is written (0: not yet) */
	int running;                       /* lock: the package's PING answered */
	int push_done;                     /* lock */
	int finished;                      /* lock: EOF being written */
	int eof;                           /* lock: EOF written: the outcome is COMPLETE */
	int shut;                          /* lock: SHUT came, with shut_rc */
	uint32_t shut_rc;                  /* lock */
	int stop;                          /* lock */
	enum cl_pcsource_state state;      /* lock */
	char reason[256];                  /* lock */
	uint64_t requested, demand, pushed, zero_skipped; /* lock */
	uint64_t hist[NBUCKETS];                          /* lock: request-to-answer times */
	uint64_t nlat;                                    /* lock */
};

/* Records the first failure, with the reason "what: " and the message of
 * r (after EOF the state is COMPLETE, the reason a note), stops everything
 * and shuts the socket down: the reader and any blocked write wake, QEMU
 * goes postcopy-paused. */
void pcs_fail_locked(struct cl_pcsource *ps, int r, const char *what);
int pcs_stopped(struct cl_pcsource *ps);
/* Hands page off to the engine: a requested page is an access (its answer
 * goes on ps->ready); the push's is quiet (*out: the pusher waits for it,
 * then frees it, unless it gave up: then the completion frees it). */
int pcs_read_page(struct cl_pcsource *ps, uint64_t off, int push, struct pread **out);
/* Takes the segments of answered pages (ps->prio) into segs[PRIO_MAX];
 * pcs_prio() queues one again. */
unsigned pcs_take_prio(struct cl_pcsource *ps, uint32_t *segs);
void pcs_prio(struct cl_pcsource *ps, uint32_t seg);

/* ---- cl_pcsource_push.c ---- */

/* The pusher thread (arg: ps): sets ps->push_done once every page that
 * must be sent is, or fails the source. */
void *pcs_pusher_main(void *arg);

#endif
