/* SPDX-License-Identifier: GPL-2.0-only */
/* Generated base and customized VM images for unit tests. */
#ifndef CL_TESTIMG_H
#define CL_TESTIMG_H

#include <stddef.h>
#include <stdint.h>

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

/* rm -rf dir. */
void cl_test_cleanup(const char *dir);

#endif
