/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_fs_text.h"

#include <inttypes.h>
#include <stdio.h>

const char *const cl_fs_stat_names[CL_FS_NSTATS] = {
    "chunk_size",      "chunks",          "chunks_overlay", "chunks_fetched", "chunks_present",
    "chunks_accessed", "chunks_modified", "bytes_read",     "bytes_written",  "chunk_fetches",
    "demand_fetches",  "io_errors",       "waiting",
};

const char *const cl_fs_stream_names[CL_EV_KINDS] = {
    [CL_EV_ACCESSED] = "chunks_accessed",
    [CL_EV_PRESENT] = "chunks_present",
    [CL_EV_MODIFIED] = "chunks_modified",
};

static uint64_t stat_value(const struct cl_lazy_image_stats *s, int which)
{
	switch (which) {
	case 0:
		return s->chunk_size;
	case 1:
		return s->chunks;
	case 2:
		return s->chunks_overlay;
	case 3:
		return s->chunks_fetched;
	case 4:
		return s->chunks_present;
	case 5:
		return s->chunks_accessed;
	case 6:
		return s->chunks_modified;
	case 7:
		return s->bytes_read;
	case 8:
		return s->bytes_written;
	case 9:
		return s->chunk_fetches;
	case 10:
		return s->demand_fetches;
	case 11:
		return s->io_errors;
	default:
		return s->waiting;
	}
}

/* snprintf's return clipped to what was written. */
static size_t clip(int n, size_t cap)
{
	if (n < 0 || cap == 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}

size_t cl_fs_stat_text(const struct cl_lazy_stats *st, int image, int which, char *buf, size_t cap)
{
	return clip(snprintf(buf, cap, "%" PRIu64 "\n", stat_value(&st->image[image], which)), cap);
}

static const char *state_name(enum cl_lazy_state s)
{
	switch (s) {
	case CL_LAZY_STREAMING:
		return "streaming";
	case CL_LAZY_COMPLETE:
		return "complete";
	default:
		return "failed";
	}
}

size_t cl_fs_status_text(const struct cl_lazy_stats *st, const struct cl_fs_status_info *info,
                         char *buf, size_t cap)
{
	const struct cl_lazy_image_stats *d = &st->image[CL_DISK], *m = &st->image[CL_MEMORY];
	char reason[sizeof(st->reason)];
	size_t i;
	int n;

	/* One `key: value` per line: a reason never breaks a line. */
	for (i = 0; i < sizeof(reason) - 1 && st->reason[i]; i++)
		reason[i] = (unsigned char)st->reason[i] < 0x20 ? ' ' : st->reason[i];
	reason[i] = '\0';
	n = snprintf(buf, cap,
	             "state: %s\n"
	             "reason: %s\n"
	             "segments: %" PRIu32 "/%" PRIu32 "\n"
	             "bytes: %" PRIu64 "/%" PRIu64 "\n"
	             "ranges: %s\n"
	             "demand_fetch: %s\n"
	             "seconds: %.3f\n"
	             "cache_hits: %" PRIu64 "\n"
	             "disk_chunks: %" PRIu64 "/%" PRIu64 "\n"
	             "memory_chunks: %" PRIu64 "/%" PRIu64 "\n"
	             "waiting: %" PRIu64 "\n"
	             "io_errors: %" PRIu64 "\n"
	             "overlay: %s\n"
	             "base: %s\n"
	             "mountpoint: %s\n"
	             "pid: %ld\n",
	             state_name(st->state), reason[0] ? reason : "none", st->segments_present,
	             st->segments, st->bytes_fetched, st->pack_bytes, st->ranges ? "on" : "off",
	             st->ranges ? "on" : "off", st->seconds, st->cache_hits, d->chunks_present,
	             d->chunks, m->chunks_present, m->chunks, d->waiting + m->waiting,
	             d->io_errors + m->io_errors, info->overlay, info->base, info->mountpoint,
	             info->pid);
	if (n >= 0 && (size_t)n < cap && info->note[0])
		n += snprintf(buf + n, cap - (size_t)n, "%s\n", info->note);
	return clip(n, cap);
}

size_t cl_fs_event_line(const struct cl_lazy_event *ev, char *buf)
{
	return clip(snprintf(buf, CL_FS_EVENT_LINE_MAX, "%" PRIu64 ".%06" PRIu64 "\t%" PRIu64 "\n",
	                     ev->usec / 1000000, ev->usec % 1000000, ev->chunk),
	            CL_FS_EVENT_LINE_MAX);
}
