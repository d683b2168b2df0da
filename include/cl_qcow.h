/* SPDX-License-Identifier: GPL-2.0-only */
/* The allocation map of a copy-on-write qcow2 disk, as `qemu-img map
 * --output=json` prints it, turned into the extent map cl_overlay_create
 * takes: what the guest wrote or discarded since the qcow2 was created on
 * top of the base's raw disk. */
#ifndef CL_QCOW_H
#define CL_QCOW_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_overlay.h"

/* Parses the JSON map (len bytes; name for errors) of a qcow2 file backed
 * by a raw image. Entries at depth 0 are the qcow2's own: data at "offset"
 * in the qcow2 file, or zero (discarded or written as zeros); deeper ones
 * are the backing file's and left out, as are depth-0 entries that are not
 * "present" (past the backing file's end, where the base view is zero). *out (malloc'd, sorted,
 * adjacent entries of one kind merged; never NULL, even for none) gets *n extents, *size the
 * virtual disk size. A depth-0 data entry with no host offset (a compressed cluster) is refused:
 * its bytes cannot be read from the file as they are. */
int cl_qcow_parse_map(const char *json, size_t len, const char *name, struct cl_extent **out,
                      size_t *n, uint64_t *size);

/* 1 if the file at path starts with the qcow2 magic, 0 if not, -errno. */
int cl_qcow_is_qcow2(const char *path);

/* The extent map of the qcow2 file qcow (see cl_qcow_parse_map), which
 * must be backed directly by the raw image backing (checked with `qemu-img
 * info`, so that everything the qcow2 does not hold is the base's).
 * Runs qemu-img (in PATH), bounded by timeout seconds or *stop. */
int cl_qcow_map(const char *qcow, const char *backing, double timeout, const atomic_int *stop,
                struct cl_extent **out, size_t *n, uint64_t *size);

struct cl_base;

/* cl_overlay_create for a customized disk that is raw or a qcow2 file
 * backed directly by the base's raw disk: of a qcow2 only what it holds is
 * read (its extent map goes into o for the call). */
int cl_qcow_overlay_create(struct cl_base *b, const char *disk, const char *memory,
                           const char *outdir, struct cl_overlay_opts *o,
                           struct cl_overlay_stats *st);

#endif
