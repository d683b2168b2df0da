/* SPDX-License-Identifier: GPL-2.0-only */
/* Writes seed inputs for the fuzz targets from a real overlay, in each
 * target's input format (make-corpus.sh):
 *
 *   fuzz_seeds OVERLAY_META BASE_DISK BASE_MEMORY OUTDIR PREFIX
 *
 * OUTDIR/fuzz_meta/       the meta as it is, and its body (for wrapping)
 * OUTDIR/fuzz_segment/    segments with their codec and raw length
 * OUTDIR/fuzz_codec_roundtrip/  decoded segment bytes
 * OUTDIR/fuzz_vcdiff/     delta payloads with their base chunk
 * OUTDIR/fuzz_vcdiff_roundtrip/ base chunk and target chunk of deltas
 * File names start with PREFIX. */
#include "cl_codec.h"
#include "cl_error.h"
#include "cl_meta.h"
#include "cl_synth.h"
#include "cl_util.h"
#include "cl_vcdiff.h"

#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SEEDS     16 /* per kind and overlay */
#define MAX_SEED_SIZE (256u << 10)

static const char *outdir, *prefix;

static void put(const char *target, const char *kind, unsigned i, const void *head, size_t head_len,
                const void *a, size_t a_len, const void *b, size_t b_len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s-%s-%u", outdir, target, prefix, kind, i);
	f = fopen(path, "wb");
	if (!f || fwrite(head, 1, head_len, f) != head_len ||
	    (a_len && fwrite(a, 1, a_len, f) != a_len) ||
	    (b_len && fwrite(b, 1, b_len, f) != b_len) || fclose(f)) {
		fprintf(stderr, "fuzz_seeds: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

static void le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The decompressed body of a meta (the bytes the body-mode seeds hold). */
static int meta_body(const void *buf, size_t len, void **body, size_t *body_len)
{
	msgpack_unpacked up;
	const msgpack_object *o = NULL, *sz = NULL, *cd = NULL;
	enum cl_codec codec;
	char name[16];
	size_t off = 0;
	uint32_t i;
	int r = -EBADMSG;

	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
	    up.data.type != MSGPACK_OBJECT_MAP)
		goto out;
	for (i = 0; i < up.data.via.map.size; i++) {
		const msgpack_object_kv *kv = &up.data.via.map.ptr[i];
		if (kv->key.type != MSGPACK_OBJECT_STR)
			continue;
		if (kv->key.via.str.size == 4 && !memcmp(kv->key.via.str.ptr, "body", 4))
			o = &kv->val;
		else if (kv->key.via.str.size == 9 && !memcmp(kv->key.via.str.ptr, "body_size", 9))
			sz = &kv->val;
		else if (kv->key.via.str.size == 10 &&
		         !memcmp(kv->key.via.str.ptr, "body_codec", 10))
			cd = &kv->val;
	}
	if (!o || !sz || !cd || o->type != MSGPACK_OBJECT_BIN || cd->type != MSGPACK_OBJECT_STR ||
	    cd->via.str.size >= sizeof(name))
		goto out;
	memcpy(name, cd->via.str.ptr, cd->via.str.size);
	name[cd->via.str.size] = '\0';
	if (cl_codec_parse(name, &codec) < 0)
		goto out;
	*body_len = sz->via.u64;
	*body = malloc(*body_len ? *body_len : 1);
	if (!*body) {
		r = -ENOMEM;
		goto out;
	}
	r = cl_codec_decompress(codec, o->via.bin.ptr, o->via.bin.size, *body, *body_len);
	if (r < 0)
		free(*body);
out:
	msgpack_unpacked_destroy(&up);
	return r;
}

/* The base view of chunk index of a base image: len bytes, zero past its end. */
static void base_view(int fd, uint32_t chunk_size, uint64_t index, uint8_t *out, uint32_t len)
{
	ssize_t n;

	memset(out, 0, len);
	n = pread(fd, out, len, (off_t)(index * chunk_size));
	(void)n;
}

int main(int argc, char **argv)
{
	unsigned nseg = 0, ndelta = 0;
	int fd_pack, fd_base[CL_NIMAGES];
	size_t meta_len, body_len;
	void *meta_buf, *body;
	struct cl_meta *m;
	uint8_t **raw;
	char *pack_path, *slash;
	uint64_t i;
	int r;

	if (argc != 6) {
		fprintf(stderr,
		        "usage: fuzz_seeds OVERLAY_META BASE_DISK BASE_MEMORY OUTDIR PREFIX\n");
		return 2;
	}
	outdir = argv[4];
	prefix = argv[5];
	r = cl_read_file(argv[1], CL_META_MAX_SIZE, &meta_buf, &meta_len);
	if (r == 0)
		r = cl_meta_parse(meta_buf, meta_len, argv[1], &m);
	if (r < 0) {
		fprintf(stderr, "fuzz_seeds: %s\n", cl_error_msg());
		return 1;
	}
	{
		uint8_t mode = 0;

		put("fuzz_meta", "meta", 0, &mode, 1, meta_buf, meta_len, NULL, 0);
	}
	if (meta_body(meta_buf, meta_len, &body, &body_len) == 0) {
		uint8_t mode = m->codec == CL_CODEC_ZSTD ? 1 : 2;

		put("fuzz_meta", "body", 0, &mode, 1, body, body_len, NULL, 0);
		free(body);
	}

	pack_path = malloc(strlen(argv[1]) + strlen(m->pack) + 2);
	strcpy(pack_path, argv[1]);
	slash = strrchr(pack_path, '/');
	strcpy(slash ? slash + 1 : pack_path, m->pack);
	fd_pack = open(pack_path, O_RDONLY);
	fd_base[CL_DISK] = open(argv[2], O_RDONLY);
	fd_base[CL_MEMORY] = open(argv[3], O_RDONLY);
	if (fd_pack < 0 || fd_base[0] < 0 || fd_base[1] < 0) {
		fprintf(stderr, "fuzz_seeds: cannot open the pack or the base images\n");
		return 1;
	}
	raw = calloc(m->nsegments + 1, sizeof(*raw));
	for (i = 0; i < m->nsegments; i++) {
		const struct cl_segment *s = &m->segments[i];
		uint8_t *comp = malloc(s->clen), head[4];

		raw[i] = malloc(s->rlen ? s->rlen : 1);
		if (pread(fd_pack, comp, s->clen, (off_t)s->offset) != (ssize_t)s->clen ||
		    cl_segment_decode(m, (uint32_t)i, comp, s->clen, raw[i]) < 0) {
			fprintf(stderr, "fuzz_seeds: segment %llu: %s\n", (unsigned long long)i,
			        cl_error_msg());
			return 1;
		}
		if (nseg < MAX_SEEDS && s->clen <= MAX_SEED_SIZE && s->rlen < (1u << 24)) {
			head[0] = m->codec == CL_CODEC_ZSTD;
			le(head + 1, s->rlen, 3);
			put("fuzz_segment", "seg", nseg, head, 4, comp, s->clen, NULL, 0);
			head[0] = m->codec == CL_CODEC_ZSTD ? 1 : 6;
			put("fuzz_codec_roundtrip", "raw", nseg, head, 1, raw[i],
			    s->rlen < (64u << 10) ? s->rlen : (64u << 10), NULL, 0);
			nseg++;
		}
		free(comp);
	}
	for (i = 0; i < m->nchunks && ndelta < MAX_SEEDS; i++) {
		const struct cl_chunk *c = &m->chunks[i];
		uint32_t len = cl_chunk_len(m->image_size[c->image], m->chunk_size, c->index);
		uint8_t *src, *tgt, head[5];
		size_t n;

		if (c->recipe != CL_R_DELTA || len >= (1u << 16))
			continue;
		src = malloc(len);
		tgt = malloc(len);
		base_view(fd_base[c->image], m->chunk_size, c->index, src, len);
		if (cl_vcdiff_decode(src, len, raw[c->p.seg] + c->p.off, c->p.len, tgt, len, &n) ==
		        0 &&
		    n == len) {
			le(head, len, 2);
			le(head + 2, len, 3);
			put("fuzz_vcdiff", "delta", ndelta, head, 5, src, len,
			    raw[c->p.seg] + c->p.off, c->p.len);
			put("fuzz_vcdiff_roundtrip", "pair", ndelta, head, 2, src, len, tgt, len);
			ndelta++;
		}
		free(src);
		free(tgt);
	}
	for (i = 0; i < m->nsegments; i++)
		free(raw[i]);
	free(raw);
	free(pack_path);
	close(fd_pack);
	close(fd_base[0]);
	close(fd_base[1]);
	cl_meta_free(m);
	free(meta_buf);
	printf("fuzz_seeds: %s: %u segments, %u deltas\n", argv[1], nseg, ndelta);
	return 0;
}
