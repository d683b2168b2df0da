/* SPDX-License-Identifier: GPL-2.0-only */
/* The pack of an overlay being written: payloads into segments, segments
 * compressed and written in order (see cl_pack_writer.h). */
#include "cl_pack_writer.h"
#include "cl_codec.h"
#include "cl_error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DENSE_SEGMENT (64u << 10) /* segments of incompressible data: see cl_pack_writer_add() */
#define DENSE_BITS    7.5         /* order-0 entropy (bits per byte) taken as incompressible */

void cl_pack_writer_init(struct cl_pack_writer *w, struct cl_meta *m, struct cl_out *out, int level,
                         uint32_t segment_size, int dense)
{
	memset(w, 0, sizeof(*w));
	w->m = m;
	w->out = out;
	w->level = level;
	w->segment_size = segment_size;
	w->dense = dense;
}

void cl_pack_writer_fini(struct cl_pack_writer *w)
{
	uint32_t i;

	for (i = 0; i < w->npending; i++)
		free(w->pending[i].data);
	free(w->pending);
	free(w->cur.data);
	w->pending = NULL;
	w->npending = w->cap_pending = 0;
	memset(&w->cur, 0, sizeof(w->cur));
}

static int seg_append(struct cl_pack_segbuf *s, const void *data, size_t len)
{
	uint8_t *p;
	size_t cap;

	if (!len)
		return 0; /* an empty state file: nothing to copy, maybe no buffer yet */
	if (s->len + len > s->cap) {
		cap = s->cap ? s->cap : (1u << 20);
		while (cap < s->len + len)
			cap *= 2;
		p = realloc(s->data, cap);
		if (!p)
			return -ENOMEM;
		s->data = p;
		s->cap = cap;
	}
	memcpy(s->data + s->len, data, len);
	s->len += len;
	return 0;
}

/* Number of the segment now being filled. */
static uint32_t cur_seg(const struct cl_pack_writer *w)
{
	return w->m->nsegments + w->npending;
}

int cl_pack_writer_close_segment(struct cl_pack_writer *w)
{
	struct cl_pack_segbuf *p;

	if (!w->cur.len)
		return 0;
	if (w->npending == w->cap_pending) {
		w->cap_pending = w->cap_pending ? 2 * w->cap_pending : 16;
		p = realloc(w->pending, w->cap_pending * sizeof(*p));
		if (!p)
			return -ENOMEM;
		w->pending = p;
	}
	w->pending[w->npending++] = w->cur;
	memset(&w->cur, 0, sizeof(w->cur));
	w->cur_dense = 0;
	return 0;
}

/* Whether data looks incompressible by its order-0 entropy (random or
 * already compressed bytes). */
static int incompressible(const uint8_t *d, size_t len)
{
	uint32_t n[256] = {0};
	double h = 0;
	size_t i;

	if (len < 512)
		return 0;
	for (i = 0; i < len; i++)
		n[d[i]]++;
	for (i = 0; i < 256; i++) {
		double p = (double)n[i] / (double)len;
		if (n[i])
			h -= p * log2(p);
	}
	return h >= DENSE_BITS;
}

/* With dense set, a segment of incompressible payloads closes at
 * DENSE_SEGMENT: it would compress no better at the full size, and a demand
 * fetch for one page of it then transfers 64 KiB rather than the full size. */
int cl_pack_writer_add(struct cl_pack_writer *w, const void *data, size_t len, struct cl_payload *p)
{
	int r;

	if (len > CL_PACK_PAYLOAD_MAX)
		return cl_errorf(-EFBIG, "payload of %zu bytes is too large", len);
	p->seg = cur_seg(w);
	p->off = (uint32_t)w->cur.len;
	p->len = (uint32_t)len;
	r = seg_append(&w->cur, data, len);
	if (r < 0)
		return r;
	if (w->dense && incompressible(data, len))
		w->cur_dense += len;
	if (w->cur.len >= w->segment_size ||
	    (w->cur.len >= DENSE_SEGMENT && w->cur_dense * 10 >= w->cur.len * 9))
		return cl_pack_writer_close_segment(w);
	return 0;
}

struct compressed {
	void *data;
	size_t len;
};

struct compress_job {
	struct cl_pack_writer *w;
	struct compressed *out;
};

static int compress_one(void *ctx, size_t i)
{
	struct compress_job *j = ctx;
	struct cl_pack_segbuf *s = &j->w->pending[i];

	return cl_codec_compress(j->w->m->codec, j->w->level, s->data, s->len, &j->out[i].data,
	                         &j->out[i].len);
}

/* On all cores; appended in order. */
int cl_pack_writer_flush(struct cl_pack_writer *w)
{
	struct compressed *out;
	struct compress_job j;
	struct cl_segment *segs, *s;
	uint32_t i;
	int r;

	if (!w->npending)
		return 0;
	out = calloc(w->npending, sizeof(*out));
	if (!out)
		return -ENOMEM;
	j.w = w;
	j.out = out;
	r = cl_pfor(0, w->npending, compress_one, &j);
	if (r < 0)
		goto out;
	if (w->m->nsegments + w->npending > w->cap_segments) {
		w->cap_segments = 2 * (w->m->nsegments + w->npending);
		segs = realloc(w->m->segments, w->cap_segments * sizeof(*segs));
		if (!segs) {
			r = -ENOMEM;
			goto out;
		}
		w->m->segments = segs;
	}
	for (i = 0; i < w->npending; i++) {
		if (out[i].len > CL_SEGMENT_MAX) {
			r = cl_errorf(-EFBIG, "segment of %zu bytes is too large", out[i].len);
			goto out;
		}
		r = cl_pwrite_full(w->out->fd, out[i].data, out[i].len, w->pos, w->out->path);
		if (r < 0)
			goto out;
		s = &w->m->segments[w->m->nsegments++];
		s->offset = w->pos;
		s->clen = (uint32_t)out[i].len;
		s->rlen = (uint32_t)w->pending[i].len;
		cl_sha256(out[i].data, out[i].len, s->sha256);
		w->pos += out[i].len;
	}
out:
	for (i = 0; i < w->npending; i++) {
		free(out[i].data);
		free(w->pending[i].data);
	}
	w->npending = 0;
	free(out);
	return r;
}
