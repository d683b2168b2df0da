/* SPDX-License-Identifier: GPL-2.0-only */
/* Lazy synthesis: the customized VM's disk and memory images served while
 * the overlay is still arriving.
 *
 * A cl_lazy owns the base, the meta, the pack source (file or URL), a chunk
 * cache and a copy-on-write store, and a pool of fetch threads. Reads and
 * writes are asynchronous: the caller passes a completion function that is
 * called exactly once, either before cl_lazy_read() returns (data present)
 * or later from a fetch or timer thread (data arrived, failed, timed out, or
 * the instance is closing). This is what lets the FUSE layer park a request
 * without tying up a worker thread. Nothing here knows about FUSE.
 *
 * Chunks are served as: modified (in the copy-on-write store) > not in the
 * overlay or a zero/base recipe (from the base, at once) > present (from the
 * cache file) > missing (its segment is fetched at once, ahead of the
 * background stream, and the request waits, bounded by a timeout).
 * Every segment and every chunk is checked against its SHA-256 before a
 * byte of it is served; a segment that fails is fetched once more, then the
 * reads that need it fail with -EIO. */
#ifndef CL_LAZY_H
#define CL_LAZY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cl_meta.h"

struct cl_lazy;

struct cl_lazy_opts {
	const char *cache_dir; /* persistent chunk cache root; NULL = CLOUDLET_HOME/cache */
	uint64_t cache_limit;  /* bytes; least recently used overlays are evicted; 0 = 10 GiB */
	int no_cache;          /* 1: cache in a private temporary directory */
	const char *store_dir; /* copy-on-write store; NULL = a temporary directory */
	int keep_store;        /* 1: keep the store, and its map at each sync, so that
	                        * the same overlay mounted again serves its writes;
	                        * needs store_dir */
	unsigned connections;  /* parallel segment fetches; 0 = 4 */
	unsigned timeout_ms;   /* bound on a disk read's wait; 0 = 60000 */
	unsigned memory_timeout_ms; /* bound on a memory read's wait; 0 = 300000 */
	unsigned fetch_timeout_ms;  /* bound on one HTTP request; 0 = 30000 */
	unsigned retries;           /* HTTP retries per request; 0 = 5 */
	int no_stream;              /* 1: fetch on demand only, no background stream */
};

/* Opens base image `base` (a registered base's disk image, id or directory)
 * and overlay (path, directory or URL of the overlay-meta). Fetches what
 * holds the device state and domain XML before returning. */
int cl_lazy_open(const char *base, const char *overlay, const struct cl_lazy_opts *opts,
                 struct cl_lazy **out);

/* Starts the background stream (if enabled). Separate from open so that a
 * daemon can fork first: threads do not survive fork(). */
int cl_lazy_start(struct cl_lazy *l);

/* Fails every waiting request with -EIO (they complete before this returns
 * or from their own threads right after), stops the threads, saves the
 * cache's presence map and frees l. */
void cl_lazy_close(struct cl_lazy *l);

/* Fails every waiting request with -EIO and refuses new waits, without
 * freeing anything: for unmount while requests are parked. Thread-safe. */
void cl_lazy_shutdown(struct cl_lazy *l);

/* With keep_store, makes every write answered so far durable: syncs the
 * copy-on-write store and writes its map (cl_store.h), so that the same
 * overlay mounted again over the store serves them, also after a crash.
 * Without, nothing to do: the store is scratch that dies with the mount. */
int cl_lazy_sync(struct cl_lazy *l);

const struct cl_meta *cl_lazy_meta(const struct cl_lazy *l);
uint64_t cl_lazy_size(const struct cl_lazy *l, enum cl_image_id image);

/* The device state (which = 0) or domain XML (1): *data points into l and
 * stays valid until close; *len 0 if the overlay carries none. */
void cl_lazy_blob(const struct cl_lazy *l, int which, const void **data, size_t *len);

/* Completion of an asynchronous request: result is the number of bytes
 * (always the full length asked, clipped at the end of the image) or
 * -errno. Called exactly once, without any cl_lazy lock held. */
typedef void (*cl_lazy_done_fn)(void *ctx, ssize_t result);

/* Reads len bytes at off of image into buf (which must stay valid until
 * done is called). */
void cl_lazy_read(struct cl_lazy *l, enum cl_image_id image, uint64_t off, size_t len, void *buf,
                  cl_lazy_done_fn done, void *ctx);

/* Where a part of a read's answer is: len bytes at off of file fd (open
 * until cl_lazy_close), or, fd -1, at mem (in the read's buffer). */
struct cl_lazy_seg {
	int fd;
	uint64_t off;
	const void *mem;
	size_t len;
};

/* Room for the parts of a read of len bytes (cl_lazy_read_segs). */
size_t cl_lazy_max_segs(const struct cl_lazy *l, size_t len);

/* As cl_lazy_read, but bytes already checked that lie in a file (cache,
 * store, base) are left there, not read into buf: when done is called with
 * a result > 0, segs[0..*nsegs) (room for cl_lazy_max_segs) lists in order
 * where each part of the answer is. For a caller that moves file pages to
 * its reader (splice) instead of copying them; what was checked on this
 * read (a first use) is in buf, from the very buffer that was hashed. */
void cl_lazy_read_segs(struct cl_lazy *l, enum cl_image_id image, uint64_t off, size_t len,
                       void *buf, struct cl_lazy_seg *segs, size_t *nsegs, cl_lazy_done_fn done,
                       void *ctx);

/* Copy-on-write write of len bytes at off (within the image's size); buf
 * must stay valid until done. A write that covers part of a chunk whose
 * overlay data has not arrived waits for it. data NULL writes zeros (hole
 * punching). */
void cl_lazy_write(struct cl_lazy *l, enum cl_image_id image, uint64_t off, size_t len,
                   const void *buf, cl_lazy_done_fn done, void *ctx);

/* Per-image counters (monotonic unless said otherwise). */
struct cl_lazy_image_stats {
	uint32_t chunk_size;
	uint64_t chunks;         /* in the image */
	uint64_t chunks_overlay; /* with a record in the overlay */
	uint64_t chunks_fetched; /* overlay chunks that needed a segment */
	uint64_t
	    chunks_present; /* readable now without waiting (overlay chunks decoded + the rest) */
	uint64_t chunks_accessed; /* distinct chunks read or written */
	uint64_t chunks_modified; /* distinct chunks written */
	uint64_t bytes_read;
	uint64_t bytes_written;
	uint64_t chunk_fetches;  /* payload chunks decoded from fetched segments */
	uint64_t demand_fetches; /* segments fetched because a request waited on them */
	uint64_t io_errors;      /* requests failed with -EIO */
	uint64_t waiting;        /* requests waiting now (not monotonic) */
};

enum cl_lazy_state {
	CL_LAZY_STREAMING = 0,
	CL_LAZY_COMPLETE = 1, /* every segment decoded */
	CL_LAZY_FAILED = 2,   /* some segment cannot be had; see reason */
};

struct cl_lazy_stats {
	struct cl_lazy_image_stats image[CL_NIMAGES];
	enum cl_lazy_state state;
	char reason[256];          /* why FAILED, or the last transient error */
	int ranges;                /* 0: the server ignores Range, demand fetch is off */
	uint32_t segments;         /* in the overlay */
	uint32_t segments_present; /* decoded into the cache */
	uint64_t pack_bytes;
	uint64_t bytes_fetched; /* from the pack's source (not from the cache): each segment
	                         * that arrived intact, counted before its chunks are served */
	uint64_t cache_hits;    /* segments found in the persistent cache at open */
	uint64_t base_checked;  /* base chunks with data checked against the index */
	uint64_t decodes;       /* payloads (VCDIFF deltas, raw chunks) decoded: once per
	                         * payload of a fetched segment, however many chunks copy
	                         * it; a segment held in memory decodes per read */
	double seconds;         /* since open */
};

void cl_lazy_stats(struct cl_lazy *l, struct cl_lazy_stats *st);

/* Event streams: which chunks were accessed, became present, or were
 * modified, in order, with microseconds since open (monotonic clock).
 * Each chunk appears at most once per kind. */
enum cl_lazy_event_kind {
	CL_EV_ACCESSED = 0,
	CL_EV_PRESENT = 1,
	CL_EV_MODIFIED = 2,
	CL_EV_KINDS = 3,
};

struct cl_lazy_event {
	uint64_t usec;
	uint64_t chunk;
};

/* Copies up to max events from number `from` on into out; returns how many
 * (0 if none yet). Never blocks. */
size_t cl_lazy_events(struct cl_lazy *l, enum cl_image_id image, enum cl_lazy_event_kind kind,
                      uint64_t from, struct cl_lazy_event *out, size_t max);

/* Calls done(ctx, 0) once there are more than `from` events of that kind,
 * or done(ctx, -ESHUTDOWN) when the instance shuts down; at once if either
 * already holds. Returns a handle for cl_lazy_events_cancel. */
void *cl_lazy_events_wait(struct cl_lazy *l, enum cl_image_id image, enum cl_lazy_event_kind kind,
                          uint64_t from, cl_lazy_done_fn done, void *ctx);
/* Cancels a wait that has not completed: done is called with -ECANCELED
 * (unless it already ran). */
void cl_lazy_events_cancel(struct cl_lazy *l, void *handle);

#endif
