/* SPDX-License-Identifier: GPL-2.0-only */
/* The overlay's blobs (device state, domain XML), loaded when the engine
 * opens: from the cache directory, or fetched with their segment. */
#include "cl_lazy_int.h"
#include "cl_error.h"
#include "cl_source.h"
#include "cl_synth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct collect {
	uint8_t *buf;
	uint32_t want, have;
};

static int collect_piece(void *arg, uint64_t off, const void *data, size_t len)
{
	struct collect *c = arg;
	size_t n = c->want - c->have < len ? c->want - c->have : len;

	(void)off;
	memcpy(c->buf + c->have, data, n);
	c->have += (uint32_t)n;
	return c->have == c->want ? 1 : 0;
}

/* Fetches and decodes segment s now, also from a server without ranges
 * (by streaming up to its end). *raw is malloc'd. */
static int fetch_now(struct cl_lazy *l, uint32_t s, uint8_t **raw)
{
	const struct cl_segment *sg = &l->m->segments[s];
	struct collect c = {.want = sg->clen};
	int r;

	if (l->ranges)
		return cl_segment_fetch(l->m, l->pack, s, raw);
	c.buf = malloc(sg->clen);
	*raw = malloc(sg->rlen ? sg->rlen : 1);
	if (!c.buf || !*raw) {
		r = -ENOMEM;
		goto out;
	}
	r = cl_source_stream(l->pack, sg->offset, collect_piece, &c);
	if (r >= 0 && c.have != c.want)
		r = cl_errorf(-EIO, "%s: pack ended early", l->pack_location);
	if (r >= 0)
		r = cl_segment_decode(l->m, s, c.buf, sg->clen, *raw);
out:
	free(c.buf);
	if (r < 0) {
		free(*raw);
		*raw = NULL;
		return r;
	}
	return 0;
}

/* The blobs come from the cache directory if a checked copy is there,
 * otherwise their segment is fetched (and decoded into the cache) now. */
int lazy_load_blobs(struct cl_lazy *l)
{
	static const char *names[2] = CL_BLOB_NAMES;
	const struct cl_blob *b;
	uint8_t h[CL_SHA256_LEN], *raw = NULL, *spill;
	int64_t raw_seg = -1; /* the segment in raw: state and XML share one */
	char *path;
	int i, r;

	for (i = 0; i < 2; i++) {
		b = i ? &l->m->domain : &l->m->state;
		if (!b->present)
			continue;
		if (asprintf(&path, "%s/%s", l->cache.dir, names[i]) < 0)
			return -ENOMEM;
		if (cl_read_file(path, CL_SEGMENT_MAX, &l->blob[i], &l->blob_len[i]) == 0) {
			cl_sha256(l->blob[i], l->blob_len[i], h);
			if (!memcmp(h, b->sha256, CL_SHA256_LEN)) {
				free(path);
				continue;
			}
			free(l->blob[i]);
			l->blob[i] = NULL;
		}
		cl_error_clear();
		r = 0;
		if (raw_seg != (int64_t)b->p.seg) {
			free(raw);
			raw = NULL;
			r = fetch_now(l, b->p.seg, &raw);
			raw_seg = r == 0 ? (int64_t)b->p.seg : -1;
		}
		if (r == 0)
			r = cl_blob_extract(l->m, b, raw, &l->blob[i], &l->blob_len[i]);
		if (r < 0) {
			free(raw);
			free(path);
			return lazy_pack_error(l, r);
		}
		cl_write_file_atomic(path, l->blob[i], l->blob_len[i], 0600);
		free(path);
		lazy_lock(l);
		r = l->seg[b->p.seg].state == SEG_ABSENT;
		if (r)
			l->seg[b->p.seg].state = SEG_FETCHING;
		lazy_unlock(l);
		if (r) {
			/* The rest of that segment is wanted first anyway. */
			r = lazy_decode_into_cache(l, b->p.seg, raw);
			spill = NULL;
			if (r < 0 && r != -EBADMSG && r != -ENOMEM) {
				/* Held in memory from now on: a copy, raw stays ours. */
				spill = malloc(l->m->segments[b->p.seg].rlen);
				if (spill)
					memcpy(spill, raw, l->m->segments[b->p.seg].rlen);
				r = spill ? 0 : -ENOMEM;
			}
			lazy_segment_outcome(l, b->p.seg, r, spill, 0);
		}
	}
	free(raw);
	cl_error_clear();
	return 0;
}
