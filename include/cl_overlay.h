/* Making an overlay: what changed between a base and a customized VM,
 * deduplicated, delta-encoded and packed into compressed segments. */
#ifndef CL_OVERLAY_H
#define CL_OVERLAY_H

#include "cl_base.h"
#include "cl_codec.h"
#include "cl_meta.h"

#define CL_PACK_NAME      "overlay-blob"
#define CL_META_NAME      "overlay-meta"
#define CL_SEGMENT_TARGET (1u << 20)

struct cl_overlay_opts {
	enum cl_codec codec;   /* 0 = xz */
	int level;             /* < 0 = the codec's default */
	uint32_t segment_size; /* raw bytes per segment, 0 = CL_SEGMENT_TARGET */
	const char *state;     /* device state file, or NULL */
	const char *domain;    /* domain XML file, or NULL */
	const char *trace;     /* TRACE file: put these chunks first, or NULL */
};

struct cl_overlay_stats {
	uint64_t chunks[CL_NIMAGES][CL_R_COUNT]; /* records per image and recipe */
	uint64_t payload[CL_R_COUNT];            /* uncompressed payload bytes per recipe */
	uint64_t changed_bytes[CL_NIMAGES];      /* bytes of chunks that differ from the base */
	uint64_t traced;                         /* records placed by the TRACE */
	uint64_t pack_size, meta_size;
	uint32_t nsegments;
};

/* Writes outdir/overlay-meta and outdir/overlay-blob for the customized
 * images disk and memory against base b (whose index must be loaded). The
 * files replace earlier ones only once complete. st may be NULL. */
int cl_overlay_create(struct cl_base *b, const char *disk, const char *memory, const char *outdir,
		      const struct cl_overlay_opts *opts, struct cl_overlay_stats *st);

#endif
