/* SPDX-License-Identifier: GPL-2.0-only */
/* The postcopy migration source of a lazy engine (issue 15): a stock QEMU
 * 7.2 destination (-incoming defer, capability postcopy-ram, guest RAM a
 * memory backend with id "cl-ram") resumes from the overlay's device state
 * while the engine serves guest RAM page by page from its memory image.
 *
 * Given a socket connected to QEMU's incoming listener, three threads run:
 * - the sender writes the stream (cl_pcstream: everything up to the
 *   package), then answers the requested pages as their reads complete,
 *   zero pages included, and at the end writes END/EOF and waits (bounded)
 *   for the destination's SHUT;
 * - the return-path reader parses QEMU's page requests (they come while the
 *   package still loads) and hands each page to cl_lazy_read(): base pages,
 *   copies, deltas, the cache and demand fetches all serve them, and they
 *   count as accesses for traces and profiles as FUSE reads do;
 * - the pusher sends the rest without waiting on the network: the pages of
 *   each segment as the engine makes it present (the order segments arrive:
 *   the overlay's, working set first; a requested page's neighbours, the
 *   rest of its segment, right after its answer), then the pages the base
 *   holds; pages known to be zero are never sent. Pushed pages are not
 *   accesses. Only when the engine will not bring the missing segments by
 *   itself (no stream, a failed one, one past every segment with memory)
 *   does the pusher wait for pages, as quiet reads of the engine (not
 *   demand fetches, no hold on the stream).
 * No page is sent twice; every non-zero page is sent before EOF. Any
 * failure before EOF (a read of the engine for a page not sent, the
 * socket, a write stalled past its bound, a malformed return path, a
 * request over CL_PCSOURCE_MAX_REQUEST bytes) records its reason, shuts
 * the socket down (QEMU goes postcopy-paused) and stops the threads. Once
 * EOF is written every page is in the destination: the outcome is
 * COMPLETE, unless its SHUT says it failed to load. */
#ifndef CL_PCSOURCE_H
#define CL_PCSOURCE_H

#include <stdint.h>

#include "cl_lazy.h"

/* QEMU's name of the RAM block the memory image holds (the memory
 * backend's id, as the mmap mode names it too). */
#define CL_PCSOURCE_BLOCK "cl-ram"

/* The most bytes one page request of the destination may ask for. */
#define CL_PCSOURCE_MAX_REQUEST (2u << 20)

struct cl_pcsource;

enum cl_pcsource_state {
	CL_PCSOURCE_STREAMING = 0,
	CL_PCSOURCE_COMPLETE = 1, /* EOF written; no SHUT, or SHUT 0 */
	CL_PCSOURCE_FAILED = 2,   /* see reason */
};

struct cl_pcsource_stats {
	enum cl_pcsource_state state;
	char reason[256];      /* why FAILED; COMPLETE: what went wrong after EOF, or "" */
	uint64_t pages;        /* in the served block */
	uint64_t requested;    /* pages the destination asked for */
	uint64_t demand;       /* pages sent because they were asked for */
	uint64_t pushed;       /* pages sent by the push */
	uint64_t zero_skipped; /* pages left out as known zero */
	uint64_t latency_n;    /* demand pages timed: request to written */
	double latency_p50_ms; /* upper bounds of their histogram buckets (12%) */
	double latency_p99_ms;
};

/* Starts the source of l (which must outlive it) on the connected socket
 * fd, which it takes over (closed by cl_pcsource_free, also on failure).
 * Checks first that the overlay's device state is a save file whose only
 * shared RAM block is CL_PCSOURCE_BLOCK, the size of the memory image
 * (-ENOENT: no state or no shared block, -EINVAL: another block or size,
 * -EBADMSG/-ENOTSUP: a save file this source cannot read; cl_error_msg()
 * says which). Returns once the threads run. *out: free it with
 * cl_pcsource_free(). */
int cl_pcsource_start(struct cl_lazy *l, int fd, struct cl_pcsource **out);

/* Stops the threads (a source still streaming fails with "stopped") and
 * returns once they have ended (any thread may call it, two at once too): the socket is shut down,
 * which wakes the reader and any blocked write; no wait is longer than the socket's write bound.
 * Page reads still parked in the engine keep what they need alive until they complete
 * (cl_lazy_shutdown() ends them). Idempotent. */
void cl_pcsource_stop(struct cl_pcsource *ps);

/* Stops, closes the socket and drops the caller's reference. NULL is fine. */
void cl_pcsource_free(struct cl_pcsource *ps);

void cl_pcsource_stats(struct cl_pcsource *ps, struct cl_pcsource_stats *st);

#endif
