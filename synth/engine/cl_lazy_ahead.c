/* SPDX-License-Identifier: GPL-2.0-only */
/* Readahead of the backing files. What a sequential read of an image needs
 * of the base images and the cache files is scattered over sparse files:
 * the kernel's own readahead on each of them reads, or for holes zero-fills,
 * much that no request wants (a third of the daemon's time in a memory
 * image read was zero-filling holes of the cache and base files), and a
 * chunk it did not foresee (a base disk chunk a memory chunk copies) is a
 * synchronous disk read. So these files are read with POSIX_FADV_RANDOM,
 * and once an image is read sequentially the byte ranges its next
 * AHEAD_WINDOW bytes need are announced with POSIX_FADV_WILLNEED: the
 * kernel reads just those, all at once, while the requests before them are
 * served. */
#include "cl_lazy_int.h"

#include <fcntl.h>

#define AHEAD_WINDOW (4u << 20)   /* bytes of an image announced ahead of its reader */
#define AHEAD_NEAR   (512u << 10) /* a read this near the last one continues it */
#define AHEAD_RUN    2            /* reads in a row that make a sequential reader */

void lazy_ahead_setup(struct cl_lazy *l)
{
	int i;

	for (i = 0; i < CL_NIMAGES; i++) {
		posix_fadvise(l->base->fd[i], 0, 0, POSIX_FADV_RANDOM);
		posix_fadvise(l->img[i].cache_fd, 0, 0, POSIX_FADV_RANDOM);
	}
}

/* Whether a read at off continues the reads of img: near where they ended
 * (the kernel's readahead requests of the mount arrive out of order). */
static int near_locked(struct cl_lazy *l, const struct image *img, uint64_t off)
{
	lazy_assert_locked(l);
	return off <= img->ahead_pos + AHEAD_NEAR && off + AHEAD_NEAR >= img->ahead_pos;
}

void lazy_ahead(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len)
{
	struct image *img = &l->img[im];
	uint64_t end = off + len, from, to;
	struct plan pl;
	int r;

	lazy_lock(l);
	if (!near_locked(l, img, off)) {
		/* A random read announces nothing; a sequential run may start here. */
		img->ahead_run = 0;
		img->ahead_pos = img->ahead_end = end;
		lazy_unlock(l);
		return;
	}
	img->ahead_run++;
	if (end > img->ahead_pos)
		img->ahead_pos = end;
	/* Back to an earlier place, or past what was announced: from here. */
	if (img->ahead_end < off || img->ahead_end > img->ahead_pos + AHEAD_WINDOW)
		img->ahead_end = off;
	from = img->ahead_end;
	to = img->ahead_pos + AHEAD_WINDOW < img->size ? img->ahead_pos + AHEAD_WINDOW : img->size;
	/* Once less than half a window is announced: each byte planned once. */
	if (img->ahead_run < AHEAD_RUN || from >= to ||
	    img->ahead_end >= img->ahead_pos + AHEAD_WINDOW / 2) {
		lazy_unlock(l);
		return;
	}
	img->ahead_end = to;
	r = lazy_plan_locked(l, im, from, (size_t)(to - from), NULL, &pl);
	lazy_unlock(l);
	if (r == 0)
		lazy_plan_advise(l, &pl);
	lazy_plan_free(&pl);
}
