/* SPDX-License-Identifier: GPL-2.0-only */
/* RFC 3284 VCDIFF encoder and decoder for single chunks.
 *
 * The encoder writes a complete VCDIFF stream (header and one window, no
 * secondary compression, default code table) that `xdelta3 -d -s SOURCE`
 * decodes. The decoder accepts RFC 3284 streams with any number of windows,
 * the default code table, and xdelta3's extensions: the application header
 * (VCD_APPHEADER, skipped) and the Adler-32 window checksum (VCD_ADLER32,
 * checked). It rejects secondary compression and custom code tables with
 * -ENOTSUP and any malformed or out-of-bounds input with -EINVAL; it never
 * reads or writes outside the buffers it is given. */
#ifndef CL_VCDIFF_H
#define CL_VCDIFF_H

#include <stddef.h>
#include <stdint.h>

/* An upper bound on the encoded size of a target of target_len bytes. */
size_t cl_vcdiff_bound(size_t target_len);

/* Encodes target against source into out (capacity out_cap). On success
 * returns 0 and sets *out_len. Returns -ENOSPC if the delta would not fit in
 * out_cap; callers pass out_cap = target_len to learn cheaply that the delta
 * is no smaller than the raw bytes. source may be NULL when source_len is 0. */
int cl_vcdiff_encode(const uint8_t *source, size_t source_len, const uint8_t *target,
                     size_t target_len, uint8_t *out, size_t out_cap, size_t *out_len);

/* Decodes delta (delta_len bytes) against source into out. Returns 0 and
 * sets *out_len, -ENOSPC if the target is larger than out_cap, -EINVAL on a
 * malformed stream or a checksum mismatch, -ENOTSUP on features it lacks. */
int cl_vcdiff_decode(const uint8_t *source, size_t source_len, const uint8_t *delta,
                     size_t delta_len, uint8_t *out, size_t out_cap, size_t *out_len);

#endif
