/* SPDX-License-Identifier: GPL-2.0-only */
/* Making an overlay: what changed between a base and a customized VM,
 * deduplicated, delta-encoded and packed into compressed segments. */
#ifndef CL_OVERLAY_H
#define CL_OVERLAY_H

#include "cl_base.h"
#include "cl_codec.h"
#include "cl_meta.h"

#define CL_PACK_NAME      "overlay-blob"
#define CL_META_NAME      "overlay-meta"
#define CL_SEGMENT_TARGET (256u << 10) /* see docs/BENCHMARKS.md, session 8 */

/* A range of a customized image that may differ from the base (an extent
 * map, e.g. the clusters a qcow2 overlay holds itself): its bytes are at
 * `offset` in the image's file, or all zero (discarded). */
struct cl_extent {
	uint64_t start, length; /* in the image */
	uint64_t offset;        /* in the file; unused when zero */
	int zero;
};

struct cl_overlay_opts {
	enum cl_codec codec;   /* 0 = xz */
	int level;             /* < 0 = the codec's default */
	uint32_t segment_size; /* raw bytes per segment; 0: CL_SEGMENT_TARGET, and runs of
	                          incompressible payloads cut at 64 KiB */
	const char *state;     /* device state file, or NULL */
	const char *domain;    /* domain XML file, or NULL */
	const char *trace;     /* TRACE file: put these chunks first, or NULL */
	/* With disk_extents non-NULL (even with no extents), the disk argument is the file their
	 * offsets point into (not a raw image), the disk image is disk_size bytes, and only chunks
	 * overlapping the extents (sorted, disjoint) are read and hashed: every other byte equals
	 * the base's (zero past its end). */
	const struct cl_extent *disk_extents;
	size_t ndisk_extents;
	uint64_t disk_size;
};

struct cl_overlay_stats {
	uint64_t chunks[CL_NIMAGES][CL_R_COUNT]; /* records per image and recipe */
	uint64_t payload[CL_R_COUNT];            /* uncompressed payload bytes per recipe */
	uint64_t changed_bytes[CL_NIMAGES];      /* bytes of chunks that differ from the base */
	uint64_t traced;                         /* records placed by the TRACE */
	uint64_t left_out[CL_NIMAGES];           /* chunks the guest discarded (disk: in
	                                            zero extents) or freed (memory: holes
	                                            where the base has data) */
	uint64_t pack_size, meta_size;
	uint32_t nsegments;
};

/* Writes outdir/overlay-meta and outdir/overlay-blob for the customized
 * images disk and memory against base b (whose index must be loaded). The
 * files replace earlier ones only once complete. st may be NULL. */
int cl_overlay_create(struct cl_base *b, const char *disk, const char *memory, const char *outdir,
                      const struct cl_overlay_opts *opts, struct cl_overlay_stats *st);

#endif
