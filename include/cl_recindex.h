/* SPDX-License-Identifier: GPL-2.0-only */
/* The record index of an overlay: which record makes chunk k of an image,
 * which chunks have a record at all, and which records each segment's
 * payload serves. Built once from a parsed meta (cl_meta_parse vouches for
 * its references); read-only afterwards, so threads share it without a
 * lock. Eager apply and verify (cl_synth) and the lazy engine use it. */
#ifndef CL_RECINDEX_H
#define CL_RECINDEX_H

#include <stdint.h>

#include "cl_bitmap.h"
#include "cl_meta.h"

struct cl_recindex {
	const struct cl_meta *m;
	uint64_t *recs[CL_NIMAGES]; /* every record of an image, sorted by chunk index */
	uint64_t nrecs[CL_NIMAGES];
	uint64_t npayload[CL_NIMAGES];  /* of those, records with a payload */
	uint8_t *has[CL_NIMAGES];       /* bitmap: chunks that have a record */
	uint32_t *seg_nrec[CL_NIMAGES]; /* payload records of each segment, per image */
	uint64_t *seg_start;            /* CSR: the payload records of segment s are */
	uint64_t *seg_recs;             /* seg_recs[seg_start[s] .. seg_start[s + 1]), meta order */
};

/* Builds the index of m, which must outlive it. On failure ix is freed. */
int cl_recindex_build(const struct cl_meta *m, struct cl_recindex *ix);
void cl_recindex_free(struct cl_recindex *ix);

/* The record of chunk k of image im, or NULL (the base's chunk stays). */
const struct cl_chunk *cl_recindex_find(const struct cl_recindex *ix, enum cl_image_id im,
                                        uint64_t k);

static inline int cl_recindex_has(const struct cl_recindex *ix, enum cl_image_id im, uint64_t k)
{
	return cl_bit_get(ix->has[im], k);
}

#endif
