/* SPDX-License-Identifier: GPL-2.0-only */
/* overlay-meta parsing (cl_meta_parse).
 *
 * Input: one mode byte, then
 *   mode 0: an overlay-meta file as it is;
 *   mode 1, 2: a body map (msgpack), which the target wraps in a valid outer
 *     map compressed with zstd (1) or xz (2), so that mutations reach the
 *     body's checks instead of stopping at its SHA-256.
 * Whatever parses must satisfy the promises of cl_meta.h (every index and
 * payload reference in bounds) and survive cl_meta_encode -> cl_meta_parse
 * unchanged. */
#include "cl_codec.h"
#include "cl_error.h"
#include "cl_meta.h"
#include "cl_util.h"
#include "fuzz_common.h"

#include <errno.h>
#include <msgpack.h>
#include <string.h>

static void pack_str(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

static int wrap(enum cl_codec codec, const uint8_t *body, size_t len, void **out, size_t *out_len)
{
	uint8_t h[CL_SHA256_LEN];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t zlen;
	void *z;
	int r;

	r = cl_codec_compress(codec, codec == CL_CODEC_XZ ? 0 : 1, body, len, &z, &zlen);
	if (r < 0)
		return r;
	cl_sha256(z, zlen, h);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 6);
	pack_str(&pk, "format");
	pack_str(&pk, "cloudlet-overlay");
	pack_str(&pk, "version");
	msgpack_pack_uint32(&pk, CL_META_VERSION);
	pack_str(&pk, "body_codec");
	pack_str(&pk, cl_codec_name(codec));
	pack_str(&pk, "body_size");
	msgpack_pack_uint64(&pk, len);
	pack_str(&pk, "body_sha256");
	msgpack_pack_bin(&pk, CL_SHA256_LEN);
	msgpack_pack_bin_body(&pk, h, CL_SHA256_LEN);
	pack_str(&pk, "body");
	msgpack_pack_bin(&pk, zlen);
	msgpack_pack_bin_body(&pk, z, zlen);
	free(z);
	*out = sb.data;
	*out_len = sb.size;
	return 0;
}

static void check_payload(const struct cl_meta *m, const struct cl_payload *p)
{
	FUZZ_CHECK(p->seg < m->nsegments);
	FUZZ_CHECK(p->off <= m->segments[p->seg].rlen);
	FUZZ_CHECK(p->len <= m->segments[p->seg].rlen - p->off);
}

static void check_meta(const struct cl_meta *m)
{
	uint64_t pos = 0, i;

	FUZZ_CHECK(m->chunk_size >= 512 && m->chunk_size <= (1u << 20));
	FUZZ_CHECK(!(m->chunk_size & (m->chunk_size - 1)));
	FUZZ_CHECK(m->pack && *m->pack && !strchr(m->pack, '/'));
	for (i = 0; i < m->nsegments; i++) {
		FUZZ_CHECK(m->segments[i].offset == pos);
		FUZZ_CHECK(m->segments[i].clen > 0 && m->segments[i].clen <= CL_SEGMENT_MAX);
		FUZZ_CHECK(m->segments[i].rlen <= CL_SEGMENT_MAX);
		pos += m->segments[i].clen;
	}
	FUZZ_CHECK(pos == m->pack_size);
	if (m->state.present)
		check_payload(m, &m->state.p);
	if (m->domain.present)
		check_payload(m, &m->domain.p);
	for (i = 0; i < m->nchunks; i++) {
		const struct cl_chunk *c = &m->chunks[i];

		FUZZ_CHECK(c->image < CL_NIMAGES && c->recipe < CL_R_COUNT);
		FUZZ_CHECK(c->index < cl_chunk_count(m->image_size[c->image], m->chunk_size));
		switch (c->recipe) {
		case CL_R_BASE_DISK:
		case CL_R_BASE_MEMORY:
			FUZZ_CHECK(c->arg <
			           cl_chunk_count(m->base_image_size[c->recipe - CL_R_BASE_DISK],
			                          m->chunk_size));
			break;
		case CL_R_DEDUP:
			FUZZ_CHECK(c->arg < i && m->chunks[c->arg].recipe >= CL_R_DELTA);
			FUZZ_CHECK(!memcmp(&m->chunks[c->arg].p, &c->p, sizeof(c->p)));
			check_payload(m, &c->p);
			break;
		case CL_R_RAW:
			FUZZ_CHECK(c->p.len ==
			           cl_chunk_len(m->image_size[c->image], m->chunk_size, c->index));
			check_payload(m, &c->p);
			break;
		case CL_R_DELTA:
			check_payload(m, &c->p);
			break;
		}
	}
}

static void check_same(const struct cl_meta *a, const struct cl_meta *b)
{
	FUZZ_CHECK(a->version == b->version && a->chunk_size == b->chunk_size &&
	           a->codec == b->codec && a->pack_size == b->pack_size);
	FUZZ_CHECK(!memcmp(a->base_id, b->base_id, CL_SHA256_LEN));
	FUZZ_CHECK(!memcmp(a->image_size, b->image_size, sizeof(a->image_size)));
	FUZZ_CHECK(!memcmp(a->base_image_size, b->base_image_size, sizeof(a->base_image_size)));
	FUZZ_CHECK(!strcmp(a->pack, b->pack));
	FUZZ_CHECK(!memcmp(&a->state, &b->state, sizeof(a->state)));
	FUZZ_CHECK(!memcmp(&a->domain, &b->domain, sizeof(a->domain)));
	FUZZ_CHECK(a->nsegments == b->nsegments && a->nchunks == b->nchunks);
	FUZZ_CHECK(!memcmp(a->segments, b->segments, a->nsegments * sizeof(*a->segments)));
	FUZZ_CHECK(!memcmp(a->chunks, b->chunks, a->nchunks * sizeof(*a->chunks)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cl_meta *m = NULL, *m2 = NULL;
	unsigned mode = (unsigned)fuzz_take(&data, &size, 1) % 3;
	void *buf = NULL, *enc = NULL;
	size_t len = size, enc_len;
	int r;

	if (mode == 0) {
		buf = fuzz_dup(data, size);
	} else if (wrap(mode == 1 ? CL_CODEC_ZSTD : CL_CODEC_XZ, data, size, &buf, &len) < 0) {
		return 0;
	}
	if (!buf)
		return 0;
	r = cl_meta_parse(buf, len, "fuzz", &m);
	free(buf);
	if (r < 0) {
		FUZZ_CHECK(r == -EBADMSG || r == -EPROTONOSUPPORT || r == -ENOMEM);
		FUZZ_CHECK(*cl_error_msg() || r == -ENOMEM);
		cl_error_clear();
		return 0;
	}
	check_meta(m);
	/* What was accepted encodes to a meta that parses back the same. */
	FUZZ_CHECK(cl_meta_encode(m, &enc, &enc_len) == 0);
	FUZZ_CHECK(cl_meta_parse(enc, enc_len, "fuzz re-encoded", &m2) == 0);
	check_same(m, m2);
	free(enc);
	cl_meta_free(m2);
	cl_meta_free(m);
	return 0;
}
