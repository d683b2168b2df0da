/* SPDX-License-Identifier: GPL-2.0-only */
/* The answer to an image read: its bytes in the read's buffer, or, with
 * splice, partly left in the cache, store or base files (cl_lazy_read_segs)
 * and moved from their pages to the kernel by libfuse, not copied twice. */
#ifndef CL_FS_ANSWER_H
#define CL_FS_ANSWER_H

#include "cl_fs.h"
#include "cl_lazy.h"

struct cl_fs_answer {
	struct cl_lazy_seg *segs; /* NULL: all in the buffer */
	size_t nsegs;
	struct fuse_bufvec *bv; /* room for nsegs buffers, in the same allocation */
};

/* Room for the parts of a read of len bytes, if splice (else none). */
int cl_fs_answer_init(struct cl_fs_answer *a, struct cl_lazy *l, size_t len, int splice);

/* Reads len bytes at off of image into buf, and a's parts if it has room
 * for them; done as for cl_lazy_read. */
void cl_fs_answer_read(struct cl_fs_answer *a, struct cl_lazy *l, enum cl_image_id image,
                       uint64_t off, size_t len, void *buf, cl_lazy_done_fn done, void *ctx);

/* Answers req with result r of that read (bytes, or -errno), then frees
 * a's room. */
void cl_fs_answer_send(struct cl_fs_answer *a, fuse_req_t req, const void *buf, ssize_t r);

#endif
