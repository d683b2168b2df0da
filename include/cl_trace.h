/* SPDX-License-Identifier: GPL-2.0-only */
/* TRACE files: the order in which a VM first touched its chunks.
 * Text, one chunk per line: `disk N` or `memory N`; blank lines and lines
 * starting with '#' are ignored. */
#ifndef CL_TRACE_H
#define CL_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "cl_meta.h"

struct cl_trace_entry {
	uint8_t image; /* enum cl_image_id */
	uint64_t index;
};

/* Parses a TRACE held in memory. nchunks[i] bounds the indices of image i.
 * Repeated entries are dropped (first access counts). *out is malloc'd, the
 * caller frees it. name is used in error messages (with the line number). */
int cl_trace_parse(const char *text, size_t len, const char *name,
                   const uint64_t nchunks[CL_NIMAGES], struct cl_trace_entry **out, size_t *n);

int cl_trace_load(const char *path, const uint64_t nchunks[CL_NIMAGES], struct cl_trace_entry **out,
                  size_t *n);

#endif
