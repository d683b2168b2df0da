/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_synth.h"
#include "cl_recindex.h"
#include "cl_error.h"
#include "cl_progress.h"
#include "cl_vcdiff.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PLAIN_BATCH 1024 /* payload-free records per work item */
#define COPY_BATCH  256  /* unchanged base chunks per read of the index */

/* Base bytes are checked against the base's index wherever it is at hand
 * (a registered base's opened index, or the hashes of a base just indexed). */
static int index_at_hand(const struct cl_base *b, enum cl_image_id im, uint64_t idx)
{
	return (b->index_fd >= 0 || b->hash[im]) && idx < b->nchunks[im];
}

/* The base chunk a record names; -EBADMSG naming the base chunk when it
 * differs from the index (only asked once the record's own hash failed). */
static int base_blame(const struct cl_base *b, enum cl_image_id im, uint64_t idx)
{
	uint8_t *buf;
	int r;

	if (!index_at_hand(b, im, idx))
		return 0;
	buf = malloc(b->chunk_size);
	if (!buf)
		return -ENOMEM;
	r = cl_base_read_checked(b, im, idx, 0, buf);
	free(buf);
	return r;
}

int cl_synth_check_base(const struct cl_meta *m, const struct cl_base *b, const char *name)
{
	char want[2 * CL_SHA256_LEN + 1], have[2 * CL_SHA256_LEN + 1];

	if (!m || !b)
		return -EINVAL;
	if (!memcmp(m->base_id, b->id, CL_SHA256_LEN))
		return 0;
	cl_hex(m->base_id, CL_SHA256_LEN, want);
	cl_hex(b->id, CL_SHA256_LEN, have);
	want[16] = have[16] = '\0';
	if (m->chunk_size != b->chunk_size)
		return cl_errorf(-EXDEV,
		                 "%s: overlay uses %u-byte chunks but base %s was indexed with "
		                 "%u-byte chunks (register the base again with --chunk-size %u)",
		                 name, m->chunk_size, b->path[CL_DISK], b->chunk_size,
		                 m->chunk_size);
	return cl_errorf(-EXDEV, "%s: overlay was made for base %s, but %s is base %s", name, want,
	                 b->path[CL_DISK], have);
}

int cl_segment_decode(const struct cl_meta *m, uint32_t seg, const void *comp, size_t clen,
                      void *raw)
{
	const struct cl_segment *s;
	uint8_t h[CL_SHA256_LEN];
	int r;

	if (!m || seg >= m->nsegments || !comp || !raw)
		return -EINVAL;
	s = &m->segments[seg];
	if (clen != s->clen)
		return cl_errorf(-EBADMSG, "segment %u: %zu bytes, expected %u", seg, clen,
		                 s->clen);
	cl_sha256(comp, clen, h);
	if (memcmp(h, s->sha256, CL_SHA256_LEN))
		return cl_errorf(-EBADMSG, "segment %u: SHA-256 mismatch (corrupt pack)", seg);
	r = cl_codec_decompress(m->codec, comp, clen, raw, s->rlen);
	if (r < 0)
		return cl_errorf(r, "segment %u: %s data does not decode to %u bytes", seg,
		                 cl_codec_name(m->codec), s->rlen);
	return 0;
}

int cl_segment_fetch(const struct cl_meta *m, struct cl_source *pack, uint32_t seg, uint8_t **raw)
{
	uint8_t *comp, *out;
	int r;

	if (!m || !pack || seg >= m->nsegments || !raw)
		return -EINVAL;
	comp = malloc(m->segments[seg].clen);
	out = malloc(m->segments[seg].rlen ? m->segments[seg].rlen : 1);
	if (!comp || !out) {
		r = -ENOMEM;
		goto fail;
	}
	r = cl_source_read(pack, m->segments[seg].offset, m->segments[seg].clen, comp);
	if (r < 0)
		goto fail;
	r = cl_segment_decode(m, seg, comp, m->segments[seg].clen, out);
	if (r < 0)
		goto fail;
	free(comp);
	*raw = out;
	return 0;
fail:
	free(comp);
	free(out);
	return r;
}

/* The base chunk a delta decodes against: zeros without a read where the
 * index records zeros (the rule for unchanged chunks too:
 * cl_base_index_zero()), else its bytes as they are now, which the record's
 * own hash then checks. Base copies need no such rule: the writer never
 * makes one of a chunk that is zero. */
static int delta_source(const struct cl_base *b, enum cl_image_id im, uint64_t idx, uint32_t len,
                        uint8_t *out)
{
	uint8_t want[CL_SHA256_LEN];

	if (index_at_hand(b, im, idx) && cl_base_chunk_hash(b, im, idx, want) == 0 &&
	    cl_base_index_zero(b, im, idx, want)) {
		memset(out, 0, len);
		return 0;
	}
	return cl_base_read(b, im, idx, len, out);
}

int cl_chunk_synthesize(const struct cl_meta *m, const struct cl_base *b, const struct cl_chunk *c,
                        const uint8_t *seg_raw, uint8_t *out)
{
	const struct cl_chunk *src = c;
	uint32_t len, srclen;
	uint8_t h[CL_SHA256_LEN], *base = NULL;
	size_t n;
	int r = 0;

	if (!m || !b || !c || !out)
		return -EINVAL;
	len = cl_chunk_len(m->image_size[c->image], m->chunk_size, c->index);
	if (c->recipe == CL_R_DEDUP)
		src = &m->chunks[c->arg];
	srclen = cl_chunk_len(m->image_size[src->image], m->chunk_size, src->index);
	if (src->recipe >= CL_R_DEDUP && !seg_raw)
		return -EINVAL;
	switch (src->recipe) {
	case CL_R_ZERO:
		memset(out, 0, len);
		break;
	case CL_R_BASE_DISK:
		r = cl_base_read(b, CL_DISK, src->arg, len, out);
		break;
	case CL_R_BASE_MEMORY:
		r = cl_base_read(b, CL_MEMORY, src->arg, len, out);
		break;
	case CL_R_RAW:
		if (src->p.len != len)
			return cl_errorf(-EBADMSG, "%s chunk %llu: raw payload has the wrong size",
			                 cl_image_name(c->image), (unsigned long long)c->index);
		memcpy(out, seg_raw + src->p.off, len);
		break;
	case CL_R_DELTA:
		/* The delta's source is the base chunk where the record that owns
		 * the payload lies. */
		base = malloc(m->chunk_size);
		if (!base)
			return -ENOMEM;
		r = delta_source(b, src->image, src->index, srclen, base);
		if (r < 0)
			break;
		r = cl_vcdiff_decode(base, srclen, seg_raw + src->p.off, src->p.len, out, len, &n);
		if (r < 0 || n != len) {
			r = base_blame(b, src->image, src->index);
			if (r == 0)
				r = cl_errorf(-EBADMSG, "%s chunk %llu: delta does not decode",
				              cl_image_name(c->image),
				              (unsigned long long)c->index);
		}
		break;
	default:
		return -EINVAL;
	}
	free(base);
	if (r < 0)
		return r;
	cl_sha256(out, len, h);
	if (!memcmp(h, c->sha256, CL_SHA256_LEN))
		return 0;
	/* The record's hash covers the base bytes it was made from, so they
	 * are hashed against the index only to name a damaged base chunk. */
	if (src->recipe == CL_R_BASE_DISK || src->recipe == CL_R_BASE_MEMORY)
		r = base_blame(b, src->recipe == CL_R_BASE_DISK ? CL_DISK : CL_MEMORY, src->arg);
	else if (src->recipe == CL_R_DELTA)
		r = base_blame(b, src->image, src->index);
	if (r < 0)
		return r;
	return cl_errorf(-EBADMSG, "%s chunk %llu (%s): SHA-256 mismatch", cl_image_name(c->image),
	                 (unsigned long long)c->index, cl_recipe_name(src->recipe));
	return 0;
}

int cl_blob_extract(const struct cl_meta *m, const struct cl_blob *blob, const uint8_t *seg_raw,
                    void **out, size_t *len)
{
	uint8_t h[CL_SHA256_LEN];
	void *buf;

	if (!m || !blob || !blob->present || !seg_raw || !out || !len)
		return -EINVAL;
	cl_sha256(seg_raw + blob->p.off, blob->p.len, h);
	if (memcmp(h, blob->sha256, CL_SHA256_LEN))
		return cl_errorf(-EBADMSG, "SHA-256 mismatch in the overlay's %s",
		                 blob == &m->state ? "device state" : "domain XML");
	buf = malloc(blob->p.len ? blob->p.len : 1);
	if (!buf)
		return -ENOMEM;
	memcpy(buf, seg_raw + blob->p.off, blob->p.len);
	*out = buf;
	*len = blob->p.len;
	return 0;
}

/* ---- eager apply and verify ---- */

struct run {
	const struct cl_base *b;
	const struct cl_meta *m;
	struct cl_source *pack;
	char *pack_loc; /* for messages */
	const char *meta_loc;
	int verify; /* count failures and go on */
	struct cl_out out[CL_NIMAGES];
	struct cl_recindex ix;
	uint64_t *plain; /* records without payload */
	uint64_t nplain;
	void *blob_data[2]; /* state, domain; each written by one worker */
	size_t blob_len[2];
	atomic_uint_fast64_t segments_bad, chunks_bad, chunks_ok, fetched;
	struct cl_progress prog;
	cl_report_fn report; /* verify: told of each fault */
	void *report_ctx;
	pthread_mutex_t report_lock; /* one report at a time */
};

/* Verify tells of a fault and goes on. */
static void run_report(struct run *rn)
{
	if (!rn->report)
		return;
	pthread_mutex_lock(&rn->report_lock);
	rn->report(rn->report_ctx, cl_error_msg());
	pthread_mutex_unlock(&rn->report_lock);
}

static int run_fail(struct run *rn, atomic_uint_fast64_t *counter, int r)
{
	atomic_fetch_add(counter, 1);
	if (rn->verify && r == -EBADMSG) {
		run_report(rn);
		return 0;
	}
	return r;
}

/* Gathers chunks that follow each other in one image so that they reach
 * the output in one write (records come in image order within a segment). */
#define GATHER_CHUNKS 256

struct gather {
	int image;    /* -1: empty */
	uint64_t off; /* of the first chunk */
	size_t len;
	uint8_t *data; /* GATHER_CHUNKS chunks */
};

static int gather_flush(struct run *rn, struct gather *g)
{
	int r = 0;

	if (g->image >= 0 && g->len)
		r = cl_pwrite_full(rn->out[g->image].fd, g->data, g->len, g->off,
		                   rn->out[g->image].path);
	g->image = -1;
	g->len = 0;
	return r;
}

static int emit_chunk(struct run *rn, const struct cl_chunk *c, const uint8_t *seg_raw,
                      struct gather *g)
{
	uint32_t cs = rn->m->chunk_size,
	         len = cl_chunk_len(rn->m->image_size[c->image], cs, c->index);
	uint64_t off = c->index * cs;
	int r;

	if (!rn->verify && (g->image != c->image || g->off + g->len != off ||
	                    g->len + cs > (size_t)GATHER_CHUNKS * cs)) {
		r = gather_flush(rn, g);
		if (r < 0)
			return r;
		g->image = c->image;
		g->off = off;
	}
	r = cl_chunk_synthesize(rn->m, rn->b, c, seg_raw, g->data + g->len);
	if (r < 0)
		return run_fail(rn, &rn->chunks_bad,
		                cl_errorf(r, "%s: %s", rn->meta_loc, cl_error_msg()));
	atomic_fetch_add(&rn->chunks_ok, 1);
	if (!rn->verify)
		g->len += len;
	return 0;
}

static int gather_init(struct run *rn, struct gather *g)
{
	g->image = -1;
	g->len = 0;
	g->data = malloc((size_t)GATHER_CHUNKS * rn->m->chunk_size);
	return g->data ? 0 : -ENOMEM;
}

static int run_segment(void *ctx, size_t s)
{
	struct run *rn = ctx;
	const struct cl_meta *m = rn->m;
	struct gather g;
	uint8_t *raw = NULL;
	uint64_t i;
	int r, k;

	if (gather_init(rn, &g) < 0)
		return -ENOMEM;
	r = cl_segment_fetch(m, rn->pack, (uint32_t)s, &raw);
	atomic_fetch_add(&rn->fetched, m->segments[s].clen);
	if (r < 0) {
		/* Every chunk of a bad segment is bad too. */
		atomic_fetch_add(&rn->chunks_bad, rn->ix.seg_start[s + 1] - rn->ix.seg_start[s]);
		r = run_fail(rn, &rn->segments_bad,
		             cl_errorf(r, "%s: %s", rn->pack_loc, cl_error_msg()));
		goto out;
	}
	for (k = 0; k < 2; k++) {
		const struct cl_blob *bl = k ? &m->domain : &m->state;
		if (bl->present && bl->p.seg == s) {
			r = cl_blob_extract(m, bl, raw, &rn->blob_data[k], &rn->blob_len[k]);
			if (r < 0)
				r = run_fail(rn, &rn->chunks_bad,
				             cl_errorf(r, "%s: %s", rn->pack_loc, cl_error_msg()));
			if (r < 0)
				goto out;
		}
	}
	for (i = rn->ix.seg_start[s]; i < rn->ix.seg_start[s + 1] && r == 0; i++)
		r = emit_chunk(rn, &m->chunks[rn->ix.seg_recs[i]], raw, &g);
	if (r == 0)
		r = gather_flush(rn, &g);
out:
	cl_progress_add(&rn->prog, rn->ix.seg_start[s + 1] - rn->ix.seg_start[s]);
	free(raw);
	free(g.data);
	return r;
}

/* Zero and base-copy records. Zero chunks need no write: the output
 * starts as holes wherever the base is not copied. */
static int run_plain(void *ctx, size_t item)
{
	struct run *rn = ctx;
	uint64_t i, end = (item + 1) * PLAIN_BATCH;
	struct gather g;
	int r = 0;

	if (gather_init(rn, &g) < 0)
		return -ENOMEM;
	if (end > rn->nplain)
		end = rn->nplain;
	for (i = item * PLAIN_BATCH; i < end && r == 0; i++) {
		const struct cl_chunk *c = &rn->m->chunks[rn->plain[i]];
		if (c->recipe == CL_R_ZERO && !rn->verify) {
			atomic_fetch_add(&rn->chunks_ok, 1);
			continue;
		}
		r = emit_chunk(rn, c, NULL, &g);
	}
	if (r == 0)
		r = gather_flush(rn, &g);
	cl_progress_add(&rn->prog, end - item * PLAIN_BATCH);
	free(g.data);
	return r;
}

/* The record index, and the payload-free records in meta order. */
static int build_lists(struct run *rn)
{
	const struct cl_meta *m = rn->m;
	uint64_t i;
	int r;

	r = cl_recindex_build(m, &rn->ix);
	if (r < 0)
		return r;
	rn->plain = malloc((m->nchunks ? m->nchunks : 1) * sizeof(uint64_t));
	if (!rn->plain)
		return -ENOMEM;
	for (i = 0; i < m->nchunks; i++)
		if (m->chunks[i].recipe < CL_R_DEDUP)
			rn->plain[rn->nplain++] = i;
	return 0;
}

/* The base copy covers chunks [0, copy_chunks) of each image. */
static uint64_t copy_chunks(const struct run *rn, int im)
{
	uint64_t end =
	    rn->b->size[im] < rn->m->image_size[im] ? rn->b->size[im] : rn->m->image_size[im];

	return (end + rn->m->chunk_size - 1) / rn->m->chunk_size;
}

/* Copies base chunks [run, run + n) of image im to the output (up to its
 * end) in the kernel (copy_file_range: a write from user space costs
 * several times more here), then reads them back from the output into buf
 * and checks each against the index: what the output holds is what was
 * checked, whatever the base did meanwhile. */
static int copy_run(struct run *rn, int im, uint64_t run, uint64_t n, uint8_t *buf,
                    const uint8_t (*want)[CL_SHA256_LEN], char **fallback)
{
	const struct cl_base *b = rn->b;
	const struct cl_out *o = &rn->out[im];
	uint32_t cs = rn->m->chunk_size;
	uint64_t from = run * cs, to = (run + n) * cs, k;
	uint64_t end = b->size[im] < rn->m->image_size[im] ? b->size[im] : rn->m->image_size[im];
	uint64_t bend = to < b->size[im] ? to : b->size[im]; /* the base's bytes of the run */
	uint64_t wend = to < end ? to : end;                 /* what the output gets */
	int r;

	r = cl_copy_range(b->fd[im], b->path[im], o->fd, o->path, from, wend, fallback);
	if (r == 0)
		r = cl_pread_full(o->fd, buf, (size_t)(wend - from), from, o->path);
	/* A chunk that the image's end cuts is checked whole. */
	if (r == 0 && bend > wend)
		r = cl_pread_full(b->fd[im], buf + (wend - from), (size_t)(bend - wend), wend,
		                  b->path[im]);
	if (r < 0)
		return r;
	memset(buf + (bend - from), 0, (size_t)(to - bend));
	for (k = 0; k < n && r == 0; k++)
		r = cl_base_check_against(b, (enum cl_image_id)im, run + k, buf + k * cs, want[k]);
	return r;
}

/* Copies the unchanged chunks among [first, first + COPY_BATCH) of image
 * im (a hole is checked against the index without a read; a chunk the
 * index records as zero stays a hole of the output, neither copied nor
 * hashed). */
static int copy_batch(struct run *rn, int im, uint64_t first, uint8_t *buf,
                      struct cl_base_extents *ext, char **fallback)
{
	const struct cl_base *b = rn->b;
	uint64_t last = copy_chunks(rn, im), k, run = 0, n = 0;
	uint8_t want[COPY_BATCH][CL_SHA256_LEN];
	int r;

	if (last > first + COPY_BATCH)
		last = first + COPY_BATCH;
	/* The batch's hashes in one read of the index. */
	r = cl_base_chunk_hashes(b, (enum cl_image_id)im, first, last - first, want);
	for (k = first; k <= last && r == 0; k++) {
		int take = k < last && !cl_recindex_has(&rn->ix, (enum cl_image_id)im, k) &&
		           !cl_base_index_zero(b, (enum cl_image_id)im, k, want[k - first]);
		if (take && cl_base_chunk_is_hole(b, (enum cl_image_id)im, k, ext)) {
			r = cl_base_check_against(b, (enum cl_image_id)im, k, NULL,
			                          want[k - first]);
			take = 0;
		}
		if (take && r == 0) {
			if (!n)
				run = k;
			n++;
			continue;
		}
		if (n && r == 0)
			r = copy_run(rn, im, run, n, buf, want + (run - first), fallback);
		n = 0;
	}
	return r;
}

/* The output image starts as the base's bytes where the overlay has no
 * record (holes stay holes); overlay chunks are written by the decoders,
 * so copying them too would write them twice. Every base chunk copied is
 * checked against the base's index as the output holds it. One item per
 * image, in order: writers of one file in parallel
 * spin on its inode lock. */
static int copy_base(struct run *rn, int im)
{
	struct cl_base_extents ext = CL_BASE_EXTENTS_INIT;
	uint64_t first, last = copy_chunks(rn, im);
	uint8_t *buf = malloc((size_t)COPY_BATCH * rn->m->chunk_size);
	char *fallback = NULL; /* cl_copy_range's, across file systems */
	int r = 0;

	if (!buf)
		return -ENOMEM;
	for (first = 0; first < last && r == 0; first += COPY_BATCH)
		r = copy_batch(rn, im, first, buf, &ext, &fallback);
	free(fallback);
	free(buf);
	return r;
}

/* One parallel pass: the two base copies first (the longest items), then
 * every segment, then the payload-free records in batches. */
static int run_item(void *ctx, size_t i)
{
	struct run *rn = ctx;
	size_t ncopy = rn->verify ? 0 : CL_NIMAGES;

	if (i < ncopy)
		return copy_base(rn, (int)i);
	i -= ncopy;
	if (i < rn->m->nsegments)
		return run_segment(rn, i);
	return run_plain(rn, i - rn->m->nsegments);
}

static int run_all(struct run *rn, const char *meta_location)
{
	char *packloc = NULL;
	int r;

	rn->meta_loc = meta_location;
	r = cl_source_sibling(meta_location, rn->m->pack, &rn->pack_loc);
	if (r < 0)
		return r;
	packloc = rn->pack_loc;
	r = cl_source_open(packloc, NULL, &rn->pack);
	if (r < 0)
		goto out;
	if (cl_source_size(rn->pack) != rn->m->pack_size) {
		r = cl_errorf(-EBADMSG, "%s: pack is %llu bytes, the meta says %llu", packloc,
		              (unsigned long long)cl_source_size(rn->pack),
		              (unsigned long long)rn->m->pack_size);
		if (!rn->verify)
			goto out;
		run_report(rn);
		atomic_fetch_add(&rn->segments_bad, 1);
	}
	r = build_lists(rn);
	if (r < 0)
		goto out;
	cl_progress_start(&rn->prog, rn->verify ? "verifying" : "applying", rn->m->nchunks);
	r = cl_pfor(0,
	            (rn->verify ? 0 : CL_NIMAGES) + rn->m->nsegments +
	                (rn->nplain + PLAIN_BATCH - 1) / PLAIN_BATCH,
	            run_item, rn);
	cl_progress_end(&rn->prog);
out:
	return r;
}

static void run_free(struct run *rn, struct cl_apply_stats *st)
{
	if (st) {
		st->segments_bad = atomic_load(&rn->segments_bad);
		st->chunks_bad = atomic_load(&rn->chunks_bad);
		st->chunks_ok = atomic_load(&rn->chunks_ok);
		st->bytes_fetched = atomic_load(&rn->fetched);
	}
	cl_source_close(rn->pack);
	free(rn->pack_loc);
	cl_recindex_free(&rn->ix);
	free(rn->plain);
	free(rn->blob_data[0]);
	free(rn->blob_data[1]);
}

int cl_verify(struct cl_base *b, const struct cl_meta *m, const char *meta_location,
              cl_report_fn report, void *ctx, struct cl_apply_stats *st)
{
	struct run rn = {.b = b, .m = m, .verify = 1, .report = report, .report_ctx = ctx};
	int r;

	if (!b || !m || !meta_location)
		return -EINVAL;
	r = cl_synth_check_base(m, b, meta_location);
	if (r == 0)
		r = cl_base_open_index(b);
	if (r < 0)
		return r;
	pthread_mutex_init(&rn.report_lock, NULL);
	r = run_all(&rn, meta_location);
	pthread_mutex_destroy(&rn.report_lock);
	if (r == 0 && (atomic_load(&rn.segments_bad) || atomic_load(&rn.chunks_bad)))
		r = cl_errorf(-EBADMSG, "%s: %llu bad segments, %llu bad chunks", meta_location,
		              (unsigned long long)atomic_load(&rn.segments_bad),
		              (unsigned long long)atomic_load(&rn.chunks_bad));
	run_free(&rn, st);
	return r;
}

int cl_apply(struct cl_base *b, const struct cl_meta *m, const char *meta_location,
             const char *outdir, struct cl_apply_stats *st)
{
	static const char *names[CL_NIMAGES] = {"disk.img", "memory.img"};
	static const char *blob_names[2] = CL_BLOB_NAMES;
	struct run rn = {.b = b, .m = m};
	char *path;
	int r, i, made;

	if (!b || !m || !meta_location || !outdir)
		return -EINVAL;
	for (i = 0; i < CL_NIMAGES; i++)
		rn.out[i].fd = -1;
	r = cl_synth_check_base(m, b, meta_location);
	if (r == 0)
		r = cl_base_open_index(b); /* every base byte written is checked */
	if (r < 0)
		return r;
	r = cl_mkdir_p_made(outdir, 0755, &made);
	if (r < 0)
		return r;
	for (i = 0; i < CL_NIMAGES; i++) {
		if (asprintf(&path, "%s/%s", outdir, names[i]) < 0) {
			r = -ENOMEM;
			goto out;
		}
		r = cl_out_open(&rn.out[i], path, 0600);
		free(path);
		if (r < 0)
			goto out;
		if (ftruncate(rn.out[i].fd, (off_t)m->image_size[i]) < 0) {
			r = cl_errorf(-errno, "%s: %s", rn.out[i].path, strerror(errno));
			goto out;
		}
	}
	r = run_all(&rn, meta_location);
	for (i = 0; i < CL_NIMAGES && r == 0; i++)
		r = cl_out_commit(&rn.out[i]);
	for (i = 0; i < 2 && r == 0; i++) {
		if (asprintf(&path, "%s/%s", outdir, blob_names[i]) < 0) {
			r = -ENOMEM;
			break;
		}
		/* A state left by an earlier apply must not pass for this VM's. */
		if (rn.blob_data[i])
			r = cl_write_file_atomic(path, rn.blob_data[i], rn.blob_len[i], 0644);
		else if (unlink(path) < 0 && errno != ENOENT)
			r = cl_errorf(-errno, "%s: %s", path, strerror(errno));
		free(path);
	}
out:
	/* Outputs not committed (path still set) are removed. */
	for (i = 0; i < CL_NIMAGES; i++)
		if (rn.out[i].path)
			cl_out_abort(&rn.out[i]);
	/* A directory made for a failed run goes too (rmdir: only if empty). */
	if (r < 0 && made)
		rmdir(outdir);
	run_free(&rn, st);
	return r;
}
