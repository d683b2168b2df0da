/* SPDX-License-Identifier: GPL-2.0-only */
/* Synthesis: rebuilding the customized VM's bytes from base + overlay.
 *
 * The building blocks (segment and chunk decoding) are shared by the eager
 * `cloudlet apply`, `cloudlet verify` and the FUSE daemon. Every decoded
 * segment and chunk is checked against its SHA-256 in the meta: a mismatch
 * is -EBADMSG and no byte of it is returned as good. */
#ifndef CL_SYNTH_H
#define CL_SYNTH_H

#include "cl_base.h"
#include "cl_meta.h"
#include "cl_source.h"

/* 0 if overlay m was made for base b, else -EXDEV with a message naming
 * both ids. */
int cl_synth_check_base(const struct cl_meta *m, const struct cl_base *b, const char *name);

/* Checks the compressed bytes of segment seg against the meta and
 * decompresses them into raw (segments[seg].rlen bytes). */
int cl_segment_decode(const struct cl_meta *m, uint32_t seg, const void *comp, size_t clen,
                      void *raw);

/* Reads segment seg from pack and decodes it into a malloc'd buffer the
 * caller frees. */
int cl_segment_fetch(const struct cl_meta *m, struct cl_source *pack, uint32_t seg, uint8_t **raw);

/* Makes the bytes of record c (cl_chunk_len of its image) into out.
 * seg_raw holds the decoded segment c->p.seg for DELTA, RAW and DEDUP
 * records and is ignored otherwise. */
int cl_chunk_synthesize(const struct cl_meta *m, const struct cl_base *b, const struct cl_chunk *c,
                        const uint8_t *seg_raw, uint8_t *out);

/* Copies a blob (state, domain XML) out of its decoded segment into a
 * malloc'd buffer, checking its hash. */
int cl_blob_extract(const struct cl_meta *m, const struct cl_blob *blob, const uint8_t *seg_raw,
                    void **out, size_t *len);

struct cl_apply_stats {
	uint64_t segments_bad; /* verify: segments that failed their check */
	uint64_t chunks_bad;   /* verify: chunks that failed their check */
	uint64_t chunks_ok;
	uint64_t bytes_fetched;
};

/* Eager synthesis into outdir: disk.img, memory.img, state, domain.xml.
 * Every base chunk it uses is checked against the base's index (opened
 * here); nothing is left in outdir on a failure. */
int cl_apply(struct cl_base *b, const struct cl_meta *m, const char *meta_location,
             const char *outdir, struct cl_apply_stats *st);

/* Checks every segment and every chunk of the overlay against base b.
 * Returns 0 only if all hold; keeps going after a failure to count all,
 * telling report (if not NULL) of each. */
int cl_verify(struct cl_base *b, const struct cl_meta *m, const char *meta_location,
              cl_report_fn report, void *ctx, struct cl_apply_stats *st);

#endif
