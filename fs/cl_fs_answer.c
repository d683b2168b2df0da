/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_fs_answer.h"

#include <errno.h>
#include <stdlib.h>

int cl_fs_answer_init(struct cl_fs_answer *a, struct cl_lazy *l, size_t len, int splice)
{
	size_t n = cl_lazy_max_segs(l, len);

	a->segs = NULL;
	a->nsegs = 0;
	a->bv = NULL;
	if (!splice)
		return 0;
	/* The parts, then the bufvec (its buf[1] and n more). */
	a->segs = malloc(n * sizeof(*a->segs) + sizeof(*a->bv) + n * sizeof(struct fuse_buf));
	if (!a->segs)
		return -ENOMEM;
	a->bv = (struct fuse_bufvec *)(a->segs + n);
	*a->bv = (struct fuse_bufvec)FUSE_BUFVEC_INIT(0);
	return 0;
}

void cl_fs_answer_read(struct cl_fs_answer *a, struct cl_lazy *l, enum cl_image_id image,
                       uint64_t off, size_t len, void *buf, cl_lazy_done_fn done, void *ctx)
{
	if (a->segs)
		cl_lazy_read_segs(l, image, off, len, buf, a->segs, &a->nsegs, done, ctx);
	else
		cl_lazy_read(l, image, off, len, buf, done, ctx);
}

/* Describes the parts to libfuse; 0 if none lies in a file. */
static int to_bufvec(struct cl_fs_answer *a)
{
	size_t i;
	int in_files = 0;

	for (i = 0; i < a->nsegs; i++) {
		const struct cl_lazy_seg *s = &a->segs[i];
		struct fuse_buf *b = &a->bv->buf[i];

		*b = (struct fuse_buf){.size = s->len, .mem = (void *)s->mem};
		if (s->fd >= 0) {
			b->flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
			b->fd = s->fd;
			b->pos = (off_t)s->off;
			in_files = 1;
		}
	}
	a->bv->count = a->nsegs;
	return in_files;
}

void cl_fs_answer_send(struct cl_fs_answer *a, fuse_req_t req, const void *buf, ssize_t r)
{
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else if (r > 0 && a->segs && to_bufvec(a))
		fuse_reply_data(req, a->bv, 0);
	else
		fuse_reply_buf(req, buf, (size_t)r); /* wholly in the buffer */
	free(a->segs);
	a->segs = NULL;
}
