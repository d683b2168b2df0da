/* SPDX-License-Identifier: GPL-2.0-only */
/* cloudletfs: the FUSE presentation of a cl_lazy instance.
 *
 * The tree (inode numbers are fixed, see cl_fs_tree.c):
 *
 *   status                      progress, one `key: value` per line
 *   state, domain.xml           carried by the overlay (absent if it has none)
 *   disk/image, memory/image    the synthesized images, read-write, fixed size
 *   {disk,memory}/stats/NAME    one number per file
 *   {disk,memory}/streams/NAME  chunks_accessed, chunks_present, chunks_modified
 *
 * The FUSE layer does no format work: every byte of the images comes from
 * cl_lazy_read()/cl_lazy_write(), whose completions reply to the kernel from
 * whatever thread they run on. A request waiting for data is parked there,
 * never on a FUSE worker thread. */
#ifndef CL_FS_H
#define CL_FS_H

#define FUSE_USE_VERSION 314

#include <fuse_lowlevel.h>
#include <sys/types.h>

#include "cl_lazy.h"

struct cl_fs;

struct cl_fs_config {
	uid_t uid; /* owner of every file */
	gid_t gid;
	const char *overlay;    /* shown in status */
	const char *base;       /* shown in status */
	const char *mountpoint; /* shown in status */
	/* Called once the kernel's INIT has been answered: the mount serves. */
	void (*ready)(void *ctx);
	void *ready_ctx;
};

/* The lazy instance stays owned by the caller and must outlive fs. */
int cl_fs_new(struct cl_lazy *l, const struct cl_fs_config *cfg, struct cl_fs **out);
void cl_fs_free(struct cl_fs *fs);

const struct fuse_lowlevel_ops *cl_fs_ops(void);

/* Stops what runs beside the requests (the postcopy source): after
 * cl_lazy_shutdown(), before cl_lazy_close(). Idempotent. */
void cl_fs_stop(struct cl_fs *fs);

/* Waits until every request handed to the engine has been answered, at most
 * timeout_ms; 0 or -ETIMEDOUT. For shutdown, after cl_lazy_shutdown(). */
int cl_fs_drain(struct cl_fs *fs, unsigned timeout_ms);

/* Requests answered later than their handler returns are counted so that
 * shutdown can wait for them: hold before handing one to the engine,
 * release after its reply. */
void cl_fs_hold(struct cl_fs *fs);
void cl_fs_release(struct cl_fs *fs);

#endif
