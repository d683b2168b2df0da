/* SPDX-License-Identifier: GPL-2.0-only */
/* Generated base and customized VM images for unit tests. */
#ifndef CL_TESTIMG_H
#define CL_TESTIMG_H

#include <stddef.h>
#include <stdint.h>

struct cl_meta;

#define CL_TEST_CS 4096

/* Makes a temporary directory (name in dir, PATH_MAX bytes) holding bd, bm
 * (base disk and memory), nd, nm (customized), and state; sets
 * CLOUDLET_HOME inside it. The customized VM exercises every recipe:
 * disk chunk 0 zeroed, disk 200 = base memory 5, memory 10 = base disk 7,
 * sparse edits in disk 20..39, random memory 100..129, disk 250..252 =
 * memory 100..102, and a disk two chunks larger than the base's with a
 * partial last chunk. */
int cl_test_images(char *dir);

/* dir/name into a static buffer (8 rotating slots). */
const char *cl_test_path(const char *dir, const char *name);

/* Whole file into a malloc'd buffer. */
uint8_t *cl_test_read(const char *path, size_t *len);

/* The customized images' bytes (dir/nd, dir/nm) into want[0] and want[1]
 * (malloc'd: the caller frees them), their lengths into len; -1 if one
 * cannot be read. */
int cl_test_want(const char *dir, uint8_t *want[2], size_t len[2]);

/* Registers the base of dir (bd, bm) in $CLOUDLET_HOME and makes an
 * overlay of the customized images (nd, nm, state) into dir/out: xz level
 * 1, segments of segsize bytes (0: the default). 0 or -errno. */
int cl_test_overlay(const char *dir, const char *out, uint32_t segsize);

/* Writes dir/name: the customized disk nd with a few bytes set in chunk
 * 160, which the base's index records as zero (160..199 are zero in both),
 * so that an overlay of it holds a delta against a zero base chunk. */
int cl_test_izero_disk(const char *dir, const char *name);

/* The same as cl_test_overlay with dir/disk as the customized disk instead
 * of nd. */
int cl_test_overlay_disk(const char *dir, const char *out, uint32_t segsize, const char *disk);

/* The recipe of the record of chunk index of image in m, or -1 if m has
 * no record of it. */
int cl_test_recipe_of(const struct cl_meta *m, uint8_t image, uint64_t index);

/* Writes len bytes (data NULL: punches a hole) at off of file and puts its
 * mtime back, as `touch -r` would: the base id check (size and mtime)
 * cannot see it. 0 or -errno. */
int cl_test_change_keep_mtime(const char *file, uint64_t off, size_t len, const void *data);

/* Puts dir/bd back as cl_test_images() made it, mtime kept: the teardown of
 * a test that damages the base, so that a failed assert cannot leave the
 * damage to the tests after it. 0 or -errno. */
int cl_test_restore_base(const char *dir);

/* rm -rf dir. */
void cl_test_cleanup(const char *dir);

#endif
