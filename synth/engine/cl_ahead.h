/* SPDX-License-Identifier: GPL-2.0-only */
/* Checked read-ahead of base chunks, private to the engine. A sequential
 * reader of unchanged base chunks would hash each one in its own request;
 * instead a thread reads the chunks it will want next and checks them
 * against the base's index on the other core, and the reader takes the
 * very bytes that were checked from the read-ahead's buffers (never a
 * second read of the base). All calls are thread-safe. Lock order: the
 * engine's lock may be held when calling in; the read-ahead never calls
 * back into the engine. */
#ifndef CL_AHEAD_H
#define CL_AHEAD_H

#include <stdint.h>

#include "cl_base.h"

struct cl_ahead;

/* A read-ahead over base (which must outlive it, its index opened), with
 * two buffers of window chunks each. */
int cl_ahead_new(const struct cl_base *base, uint32_t window, struct cl_ahead **out);

/* Stops its thread (after the window in progress: one read and its
 * hashes) and frees it. NULL is ignored. */
void cl_ahead_free(struct cl_ahead *a);

/* Copies base chunks [first, first + n) of image im into dst (n whole
 * chunks, zero-filled past the base's end) when a buffer holds them all,
 * checked; waits a bounded time for a buffer being filled that will.
 * 0 when copied; -ENOENT when not held or not checked (a damaged chunk,
 * a failed read): the caller then reads and checks them itself, which
 * also reports the fault. */
int cl_ahead_take(struct cl_ahead *a, enum cl_image_id im, uint64_t first, uint64_t n,
                  uint8_t *dst);

/* The first chunk of image im at or after k that no buffer holds or has
 * been asked for: where the next cl_ahead_want should start. */
uint64_t cl_ahead_next(struct cl_ahead *a, enum cl_image_id im, uint64_t k);

/* Asks for base chunks [first, first + n) of image im to be read and
 * checked ahead (n is cut to the window). Returns at once; dropped when
 * both buffers are busy. */
void cl_ahead_want(struct cl_ahead *a, enum cl_image_id im, uint64_t first, uint64_t n);

#endif
