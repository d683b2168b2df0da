/* SPDX-License-Identifier: GPL-2.0-only */
/* The record index of an overlay (see cl_recindex.h). */
#include "cl_recindex.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int cmp_rec(const void *a, const void *b, void *meta)
{
	const struct cl_meta *m = meta;
	uint64_t x = m->chunks[*(const uint64_t *)a].index;
	uint64_t y = m->chunks[*(const uint64_t *)b].index;

	return x < y ? -1 : x > y;
}

/* Records usually come in chunk order already: then no sort is needed. */
static void sort_recs(const struct cl_meta *m, uint64_t *recs, uint64_t n)
{
	uint64_t i;

	for (i = 1; i < n; i++)
		if (m->chunks[recs[i - 1]].index > m->chunks[recs[i]].index)
			break;
	if (i < n)
		qsort_r(recs, n, sizeof(*recs), cmp_rec, (void *)m);
}

static int alloc_index(const struct cl_meta *m, struct cl_recindex *ix)
{
	int im;

	memset(ix, 0, sizeof(*ix));
	ix->m = m;
	for (im = 0; im < CL_NIMAGES; im++) {
		ix->recs[im] = malloc((m->nchunks + 1) * sizeof(uint64_t));
		ix->has[im] = cl_bitmap_new(cl_chunk_count(m->image_size[im], m->chunk_size));
		ix->seg_nrec[im] = calloc((size_t)m->nsegments + 1, sizeof(uint32_t));
		if (!ix->recs[im] || !ix->has[im] || !ix->seg_nrec[im])
			return -ENOMEM;
	}
	ix->seg_start = calloc((size_t)m->nsegments + 1, sizeof(uint64_t));
	ix->seg_recs = malloc((m->nchunks + 1) * sizeof(uint64_t));
	return ix->seg_start && ix->seg_recs ? 0 : -ENOMEM;
}

int cl_recindex_build(const struct cl_meta *m, struct cl_recindex *ix)
{
	uint64_t i, *fill;
	int im, r;

	if (!m || !ix)
		return -EINVAL;
	r = alloc_index(m, ix);
	fill = calloc((size_t)m->nsegments + 1, sizeof(uint64_t));
	if (r < 0 || !fill) {
		free(fill);
		cl_recindex_free(ix);
		return -ENOMEM;
	}
	for (i = 0; i < m->nchunks; i++) {
		const struct cl_chunk *c = &m->chunks[i];
		ix->recs[c->image][ix->nrecs[c->image]++] = i;
		cl_bit_set(ix->has[c->image], c->index);
		if (c->recipe >= CL_R_DEDUP) {
			ix->npayload[c->image]++;
			ix->seg_nrec[c->image][c->p.seg]++;
			ix->seg_start[c->p.seg + 1]++;
		}
	}
	for (i = 0; i < m->nsegments; i++)
		ix->seg_start[i + 1] += ix->seg_start[i];
	for (i = 0; i < m->nchunks; i++) {
		const struct cl_chunk *c = &m->chunks[i];
		if (c->recipe >= CL_R_DEDUP)
			ix->seg_recs[ix->seg_start[c->p.seg] + fill[c->p.seg]++] = i;
	}
	free(fill);
	for (im = 0; im < CL_NIMAGES; im++)
		sort_recs(m, ix->recs[im], ix->nrecs[im]);
	return 0;
}

void cl_recindex_free(struct cl_recindex *ix)
{
	int im;

	if (!ix)
		return;
	for (im = 0; im < CL_NIMAGES; im++) {
		free(ix->recs[im]);
		free(ix->has[im]);
		free(ix->seg_nrec[im]);
	}
	free(ix->seg_start);
	free(ix->seg_recs);
	memset(ix, 0, sizeof(*ix));
}

const struct cl_chunk *cl_recindex_find(const struct cl_recindex *ix, enum cl_image_id im,
                                        uint64_t k)
{
	const uint64_t *list = ix->recs[im];
	uint64_t lo = 0, hi = ix->nrecs[im], mid;

	/* The bitmap answers most lookups (chunks without a record) at once. */
	if (!cl_recindex_has(ix, im, k))
		return NULL;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (ix->m->chunks[list[mid]].index < k)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < ix->nrecs[im] && ix->m->chunks[list[lo]].index == k)
		return &ix->m->chunks[list[lo]];
	return NULL;
}
