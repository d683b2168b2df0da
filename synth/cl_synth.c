#include "cl_synth.h"
#include "cl_error.h"
#include "cl_progress.h"
#include "cl_vcdiff.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define COPY_BUF    (4u << 20)
#define PLAIN_BATCH 1024 /* payload-free records per work item */

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
				 name, m->chunk_size, b->path[CL_DISK], b->chunk_size, m->chunk_size);
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
		return cl_errorf(-EBADMSG, "segment %u: %zu bytes, expected %u", seg, clen, s->clen);
	cl_sha256(comp, clen, h);
	if (memcmp(h, s->sha256, CL_SHA256_LEN))
		return cl_errorf(-EBADMSG, "segment %u: SHA-256 mismatch (corrupt pack)", seg);
	r = cl_codec_decompress(m->codec, comp, clen, raw, s->rlen);
	if (r < 0)
		return cl_errorf(r, "segment %u: %s data does not decode to %u bytes", seg,
				 cl_codec_name(m->codec), s->rlen);
	return 0;
}

int cl_segment_fetch(const struct cl_meta *m, struct cl_source *pack, uint32_t seg,
		     uint8_t **raw)
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
		r = cl_base_read(b, src->image, src->index, srclen, base);
		if (r < 0)
			break;
		r = cl_vcdiff_decode(base, srclen, seg_raw + src->p.off, src->p.len, out, len, &n);
		if (r < 0 || n != len)
			r = cl_errorf(-EBADMSG, "%s chunk %llu: delta does not decode",
				      cl_image_name(c->image), (unsigned long long)c->index);
		break;
	default:
		return -EINVAL;
	}
	free(base);
	if (r < 0)
		return r;
	cl_sha256(out, len, h);
	if (memcmp(h, c->sha256, CL_SHA256_LEN))
		return cl_errorf(-EBADMSG, "%s chunk %llu (%s): SHA-256 mismatch",
				 cl_image_name(c->image), (unsigned long long)c->index,
				 cl_recipe_name(src->recipe));
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
	char *pack_loc;             /* for messages */
	const char *meta_loc;
	int verify;                 /* count failures and go on */
	struct cl_out out[CL_NIMAGES];
	uint64_t *seg_start;        /* CSR: records of segment s are */
	uint64_t *seg_recs;         /* seg_recs[seg_start[s] .. seg_start[s+1]) */
	uint64_t *plain;            /* records without payload */
	uint64_t nplain;
	void *blob_data[2];         /* state, domain; each written by one worker */
	size_t blob_len[2];
	atomic_uint_fast64_t segments_bad, chunks_bad, chunks_ok, fetched;
	struct cl_progress prog;
};

static int run_fail(struct run *rn, atomic_uint_fast64_t *counter, int r)
{
	atomic_fetch_add(counter, 1);
	if (rn->verify && r == -EBADMSG) {
		/* Say what failed; verify lists every fault. */
		fprintf(stderr, "cloudlet: %s\n", cl_error_msg());
		return 0;
	}
	return r;
}

static int emit_chunk(struct run *rn, const struct cl_chunk *c, const uint8_t *seg_raw,
		      uint8_t *buf)
{
	uint32_t len = cl_chunk_len(rn->m->image_size[c->image], rn->m->chunk_size, c->index);
	uint64_t off = c->index * rn->m->chunk_size;
	int r;

	r = cl_chunk_synthesize(rn->m, rn->b, c, seg_raw, buf);
	if (r < 0)
		return run_fail(rn, &rn->chunks_bad,
				cl_errorf(r, "%s: %s", rn->meta_loc, cl_error_msg()));
	atomic_fetch_add(&rn->chunks_ok, 1);
	if (rn->verify)
		return 0;
	if (c->recipe == CL_R_ZERO &&
	    fallocate(rn->out[c->image].fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
		      len) == 0)
		return 0;
	return cl_pwrite_full(rn->out[c->image].fd, buf, len, off, rn->out[c->image].path);
}

static int run_segment(void *ctx, size_t s)
{
	struct run *rn = ctx;
	const struct cl_meta *m = rn->m;
	uint8_t *raw = NULL, *buf;
	uint64_t i;
	int r, k;

	buf = malloc(m->chunk_size);
	if (!buf)
		return -ENOMEM;
	r = cl_segment_fetch(m, rn->pack, (uint32_t)s, &raw);
	atomic_fetch_add(&rn->fetched, m->segments[s].clen);
	if (r < 0) {
		/* Every chunk of a bad segment is bad too. */
		atomic_fetch_add(&rn->chunks_bad, rn->seg_start[s + 1] - rn->seg_start[s]);
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
	for (i = rn->seg_start[s]; i < rn->seg_start[s + 1]; i++) {
		r = emit_chunk(rn, &m->chunks[rn->seg_recs[i]], raw, buf);
		if (r < 0)
			goto out;
	}
	r = 0;
out:
	cl_progress_add(&rn->prog, rn->seg_start[s + 1] - rn->seg_start[s]);
	free(raw);
	free(buf);
	return r;
}

static int run_plain(void *ctx, size_t item)
{
	struct run *rn = ctx;
	uint64_t i, end = (item + 1) * PLAIN_BATCH;
	uint8_t *buf;
	int r = 0;

	buf = malloc(rn->m->chunk_size);
	if (!buf)
		return -ENOMEM;
	if (end > rn->nplain)
		end = rn->nplain;
	for (i = item * PLAIN_BATCH; i < end && r == 0; i++)
		r = emit_chunk(rn, &rn->m->chunks[rn->plain[i]], NULL, buf);
	cl_progress_add(&rn->prog, end - item * PLAIN_BATCH);
	free(buf);
	return r;
}

static int build_lists(struct run *rn)
{
	const struct cl_meta *m = rn->m;
	uint64_t i, *fill;

	rn->seg_start = calloc((size_t)m->nsegments + 1, sizeof(uint64_t));
	rn->seg_recs = malloc((m->nchunks ? m->nchunks : 1) * sizeof(uint64_t));
	rn->plain = malloc((m->nchunks ? m->nchunks : 1) * sizeof(uint64_t));
	fill = calloc((size_t)m->nsegments + 1, sizeof(uint64_t));
	if (!rn->seg_start || !rn->seg_recs || !rn->plain || !fill) {
		free(fill);
		return -ENOMEM;
	}
	for (i = 0; i < m->nchunks; i++)
		if (m->chunks[i].recipe >= CL_R_DEDUP)
			rn->seg_start[m->chunks[i].p.seg + 1]++;
	for (i = 0; i < m->nsegments; i++)
		rn->seg_start[i + 1] += rn->seg_start[i];
	for (i = 0; i < m->nchunks; i++) {
		const struct cl_chunk *c = &m->chunks[i];
		if (c->recipe >= CL_R_DEDUP)
			rn->seg_recs[rn->seg_start[c->p.seg] + fill[c->p.seg]++] = i;
		else
			rn->plain[rn->nplain++] = i;
	}
	free(fill);
	return 0;
}

/* dst becomes src's first len bytes (holes stay holes) padded with a hole
 * to size. */
static int copy_sparse(int src, const char *src_path, uint64_t src_size, int dst,
		       const char *dst_path, uint64_t size)
{
	uint64_t end = src_size < size ? src_size : size;
	off_t data, hole;
	ssize_t n;
	char *buf = NULL;
	int r = 0;

	if (ftruncate(dst, (off_t)size) < 0)
		return cl_errorf(-errno, "%s: %s", dst_path, strerror(errno));
	for (data = 0; (uint64_t)data < end; data = hole) {
		data = lseek(src, data, SEEK_DATA);
		if (data < 0 || (uint64_t)data >= end)
			break;
		hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > end)
			hole = (off_t)end;
		while (data < hole) {
			loff_t in = data, outp = data;
			n = copy_file_range(src, &in, dst, &outp, (size_t)(hole - data), 0);
			if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
				      errno == EOPNOTSUPP)) {
				/* Different filesystems on older kernels: plain copy. */
				size_t len = (size_t)(hole - data) < COPY_BUF ? (size_t)(hole - data)
									       : COPY_BUF;
				if (!buf && !(buf = malloc(COPY_BUF))) {
					r = -ENOMEM;
					goto out;
				}
				r = cl_pread_full(src, buf, len, (uint64_t)data, src_path);
				if (r == 0)
					r = cl_pwrite_full(dst, buf, len, (uint64_t)data, dst_path);
				if (r < 0)
					goto out;
				n = (ssize_t)len;
			} else if (n <= 0) {
				r = cl_errorf(n < 0 ? -errno : -EIO, "%s: copy from %s failed: %s",
					      dst_path, src_path, n < 0 ? strerror(errno) : "short");
				goto out;
			}
			data += n;
		}
	}
out:
	free(buf);
	return r;
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
		fprintf(stderr, "cloudlet: %s\n", cl_error_msg());
		atomic_fetch_add(&rn->segments_bad, 1);
	}
	r = build_lists(rn);
	if (r < 0)
		goto out;
	cl_progress_start(&rn->prog, rn->verify ? "verifying" : "applying", rn->m->nchunks);
	r = cl_pfor(0, rn->m->nsegments, run_segment, rn);
	if (r == 0)
		r = cl_pfor(0, (rn->nplain + PLAIN_BATCH - 1) / PLAIN_BATCH, run_plain, rn);
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
	free(rn->seg_start);
	free(rn->seg_recs);
	free(rn->plain);
	free(rn->blob_data[0]);
	free(rn->blob_data[1]);
}

int cl_verify(const struct cl_base *b, const struct cl_meta *m, const char *meta_location,
	      struct cl_apply_stats *st)
{
	struct run rn = {.b = b, .m = m, .verify = 1};
	int r;

	if (!b || !m || !meta_location)
		return -EINVAL;
	r = cl_synth_check_base(m, b, meta_location);
	if (r < 0)
		return r;
	r = run_all(&rn, meta_location);
	if (r == 0 && (atomic_load(&rn.segments_bad) || atomic_load(&rn.chunks_bad)))
		r = cl_errorf(-EBADMSG, "%s: %llu bad segments, %llu bad chunks", meta_location,
			      (unsigned long long)atomic_load(&rn.segments_bad),
			      (unsigned long long)atomic_load(&rn.chunks_bad));
	run_free(&rn, st);
	return r;
}

int cl_apply(const struct cl_base *b, const struct cl_meta *m, const char *meta_location,
	     const char *outdir, struct cl_apply_stats *st)
{
	static const char *names[CL_NIMAGES] = {"disk.img", "memory.img"};
	static const char *blob_names[2] = {"state", "domain.xml"};
	struct run rn = {.b = b, .m = m};
	char *path;
	int r, i;

	if (!b || !m || !meta_location || !outdir)
		return -EINVAL;
	for (i = 0; i < CL_NIMAGES; i++)
		rn.out[i].fd = -1;
	r = cl_synth_check_base(m, b, meta_location);
	if (r < 0)
		return r;
	r = cl_mkdir_p(outdir, 0755);
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
		r = copy_sparse(b->fd[i], b->path[i], b->size[i], rn.out[i].fd, rn.out[i].path,
				m->image_size[i]);
		if (r < 0)
			goto out;
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
	run_free(&rn, st);
	return r;
}
