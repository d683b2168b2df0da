/* SPDX-License-Identifier: GPL-2.0-only */
/* The pack of an overlay being written (private to synth/overlay):
 * payloads are appended to the segment being filled, which closes at the
 * segment size (or early, for a run of incompressible payloads); closed
 * segments are compressed on all cores and written to the pack in order,
 * each entered in the meta's segment table. */
#ifndef CL_PACK_WRITER_H
#define CL_PACK_WRITER_H

#include "cl_meta.h"
#include "cl_util.h"

#include <stddef.h>
#include <stdint.h>

#define CL_PACK_PAYLOAD_MAX (64u << 20) /* largest payload */

/* Raw bytes of one segment. */
struct cl_pack_segbuf {
	uint8_t *data;
	size_t len, cap;
};

struct cl_pack_writer {
	struct cl_meta *m;     /* its codec; its segment table grows here */
	int level;             /* compression level, < 0: the codec's default */
	uint32_t segment_size; /* raw bytes per segment */
	int dense;             /* cut incompressible runs at 64 KiB */
	struct cl_out *out;    /* the pack file, opened by the caller */
	uint64_t pos;          /* bytes written to it */

	struct cl_pack_segbuf cur;      /* the segment being filled */
	size_t cur_dense;               /* bytes of cur that look incompressible */
	struct cl_pack_segbuf *pending; /* closed, not yet written */
	uint32_t npending, cap_pending;
	uint32_t cap_segments; /* room in m->segments */
};

void cl_pack_writer_init(struct cl_pack_writer *w, struct cl_meta *m, struct cl_out *out, int level,
                         uint32_t segment_size, int dense);
/* Frees the segments not written; the file stays the caller's. */
void cl_pack_writer_fini(struct cl_pack_writer *w);

/* Appends a payload of len bytes (at most CL_PACK_PAYLOAD_MAX) to the
 * segment being filled; its reference goes to *p. */
int cl_pack_writer_add(struct cl_pack_writer *w, const void *data, size_t len,
                       struct cl_payload *p);
/* Closes the segment being filled, if it holds anything. */
int cl_pack_writer_close_segment(struct cl_pack_writer *w);
/* Compresses the closed segments and writes them to the pack. */
int cl_pack_writer_flush(struct cl_pack_writer *w);

#endif
