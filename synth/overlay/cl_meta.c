/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_meta.h"
#include "cl_error.h"
#include "cl_source.h"

#include <errno.h>
#include <stdio.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define META_FORMAT "cloudlet-overlay"

const char *cl_image_name(enum cl_image_id i)
{
	return i == CL_DISK ? "disk" : i == CL_MEMORY ? "memory" : "?";
}

const char *cl_recipe_name(enum cl_recipe r)
{
	static const char *names[CL_R_COUNT] = {"zero",  "base-disk", "base-memory",
	                                        "dedup", "delta",     "raw"};
	return (unsigned)r < CL_R_COUNT ? names[r] : "?";
}

uint64_t cl_chunk_count(uint64_t size, uint32_t chunk_size)
{
	return size / chunk_size + (size % chunk_size != 0);
}

uint32_t cl_chunk_len(uint64_t size, uint32_t chunk_size, uint64_t idx)
{
	uint64_t start = idx * chunk_size;

	if (start >= size)
		return 0;
	return size - start < chunk_size ? (uint32_t)(size - start) : chunk_size;
}

/* ---- encoding ---- */

static void pack_key(msgpack_packer *pk, const char *key)
{
	size_t n = strlen(key);

	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, key, n);
}

static void pack_bin(msgpack_packer *pk, const void *data, size_t len)
{
	msgpack_pack_bin(pk, len);
	msgpack_pack_bin_body(pk, data, len);
}

static void pack_blob(msgpack_packer *pk, const struct cl_blob *b)
{
	if (!b->present) {
		msgpack_pack_nil(pk);
		return;
	}
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint32(pk, b->p.seg);
	msgpack_pack_uint32(pk, b->p.off);
	msgpack_pack_uint32(pk, b->p.len);
	pack_bin(pk, b->sha256, CL_SHA256_LEN);
}

/* The outer map: format, version, and the body compressed with the
 * overlay's codec (record fields and repeated hashes shrink by half) with
 * the SHA-256 of the stored bytes, so that a damaged meta (a flipped size,
 * say) is refused rather than obeyed. */
static int wrap(uint32_t version, enum cl_codec codec, msgpack_sbuffer *body, void **buf,
                size_t *len)
{
	uint8_t h[CL_SHA256_LEN];
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t zlen;
	void *z;
	int r;

	r = cl_codec_compress(codec, cl_codec_max_level(codec), body->data, body->size, &z, &zlen);
	if (r < 0) {
		msgpack_sbuffer_destroy(body);
		return r;
	}
	cl_sha256(z, zlen, h);
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 6);
	pack_key(&pk, "format");
	pack_key(&pk, META_FORMAT);
	pack_key(&pk, "version");
	msgpack_pack_uint32(&pk, version);
	pack_key(&pk, "body_codec");
	pack_key(&pk, cl_codec_name(codec));
	pack_key(&pk, "body_size");
	msgpack_pack_uint64(&pk, body->size);
	pack_key(&pk, "body_sha256");
	pack_bin(&pk, h, CL_SHA256_LEN);
	pack_key(&pk, "body");
	pack_bin(&pk, z, zlen);
	msgpack_sbuffer_destroy(body);
	free(z);
	if (!sb.data) {
		msgpack_sbuffer_destroy(&sb);
		return -ENOMEM;
	}
	*buf = sb.data;
	*len = sb.size;
	return 0;
}

int cl_meta_encode(const struct cl_meta *m, void **buf, size_t *len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	const char *codec;
	uint64_t i;
	int has_left_out;

	if (!m || !buf || !len || !m->pack)
		return -EINVAL;
	codec = cl_codec_name(m->codec);
	if (!codec)
		return -EINVAL;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

	/* left_out only when there is something to say: an overlay with none
	 * is byte for byte what earlier versions wrote. */
	has_left_out = m->left_out[CL_DISK] || m->left_out[CL_MEMORY];
	msgpack_pack_map(&pk, 12 + has_left_out);
	pack_key(&pk, "base_id");
	pack_bin(&pk, m->base_id, CL_SHA256_LEN);
	pack_key(&pk, "chunk_size");
	msgpack_pack_uint32(&pk, m->chunk_size);
	pack_key(&pk, "codec");
	pack_key(&pk, codec);
	pack_key(&pk, "images");
	msgpack_pack_array(&pk, CL_NIMAGES);
	for (i = 0; i < CL_NIMAGES; i++) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_uint64(&pk, m->image_size[i]);
		msgpack_pack_uint64(&pk, m->base_image_size[i]);
	}
	pack_key(&pk, "pack");
	pack_key(&pk, m->pack);
	pack_key(&pk, "pack_size");
	msgpack_pack_uint64(&pk, m->pack_size);
	pack_key(&pk, "state");
	pack_blob(&pk, &m->state);
	pack_key(&pk, "domain_xml");
	pack_blob(&pk, &m->domain);
	pack_key(&pk, "segments");
	msgpack_pack_array(&pk, m->nsegments);
	for (i = 0; i < m->nsegments; i++) {
		const struct cl_segment *s = &m->segments[i];
		msgpack_pack_array(&pk, 4);
		msgpack_pack_uint64(&pk, s->offset);
		msgpack_pack_uint32(&pk, s->clen);
		msgpack_pack_uint32(&pk, s->rlen);
		pack_bin(&pk, s->sha256, CL_SHA256_LEN);
	}
	pack_key(&pk, "chunk_fields");
	msgpack_pack_array(&pk, 8);
	pack_key(&pk, "image");
	pack_key(&pk, "index");
	pack_key(&pk, "recipe");
	pack_key(&pk, "arg");
	pack_key(&pk, "segment");
	pack_key(&pk, "offset");
	pack_key(&pk, "length");
	pack_key(&pk, "sha256");
	pack_key(&pk, "chunks");
	msgpack_pack_array(&pk, m->nchunks);
	for (i = 0; i < m->nchunks; i++) {
		const struct cl_chunk *c = &m->chunks[i];
		int has_payload = c->recipe >= CL_R_DEDUP;
		msgpack_pack_array(&pk, 8);
		msgpack_pack_uint8(&pk, c->image);
		msgpack_pack_uint64(&pk, c->index);
		msgpack_pack_uint8(&pk, c->recipe);
		msgpack_pack_uint64(&pk, c->arg);
		msgpack_pack_uint32(&pk, has_payload ? c->p.seg : 0);
		msgpack_pack_uint32(&pk, has_payload ? c->p.off : 0);
		msgpack_pack_uint32(&pk, has_payload ? c->p.len : 0);
		pack_bin(&pk, c->sha256, CL_SHA256_LEN);
	}
	if (has_left_out) {
		pack_key(&pk, "left_out");
		msgpack_pack_array(&pk, CL_NIMAGES);
		for (i = 0; i < CL_NIMAGES; i++)
			msgpack_pack_uint64(&pk, m->left_out[i]);
	}
	/* The pack's layout summary last, for humans reading a dump. */
	pack_key(&pk, "created_by");
	pack_key(&pk, "cloudlet");
	if (!sb.data) {
		msgpack_sbuffer_destroy(&sb);
		return -ENOMEM;
	}
	return wrap(m->version, m->codec, &sb, buf, len);
}

/* ---- parsing ---- */

struct parse {
	const char *name;
	const msgpack_object *root;
};

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
	size_t n = strlen(key);
	uint32_t i;

	for (i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
		    !memcmp(k->via.str.ptr, key, n))
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

static int get_u64(const msgpack_object *o, uint64_t max, uint64_t *out)
{
	if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max)
		return -EBADMSG;
	*out = o->via.u64;
	return 0;
}

static int get_u32(const msgpack_object *o, uint32_t max, uint32_t *out)
{
	uint64_t v;

	if (get_u64(o, max, &v) < 0)
		return -EBADMSG;
	*out = (uint32_t)v;
	return 0;
}

static int get_sha(const msgpack_object *o, uint8_t out[CL_SHA256_LEN])
{
	if (!o || o->type != MSGPACK_OBJECT_BIN || o->via.bin.size != CL_SHA256_LEN)
		return -EBADMSG;
	memcpy(out, o->via.bin.ptr, CL_SHA256_LEN);
	return 0;
}

static int get_str(const msgpack_object *o, size_t max, char **out)
{
	char *s;

	if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size > max ||
	    memchr(o->via.str.ptr, '\0', o->via.str.size))
		return -EBADMSG;
	s = strndup(o->via.str.ptr, o->via.str.size);
	if (!s)
		return -ENOMEM;
	*out = s;
	return 0;
}

static int get_array(const msgpack_object *o, uint32_t n, const msgpack_object **items)
{
	if (!o || o->type != MSGPACK_OBJECT_ARRAY || (n && o->via.array.size != n))
		return -EBADMSG;
	*items = o->via.array.ptr;
	return 0;
}

/* A payload reference must lie inside its segment's raw bytes. */
static int check_payload(const struct cl_meta *m, const struct cl_payload *p)
{
	if (p->seg >= m->nsegments)
		return -EBADMSG;
	if (p->off > m->segments[p->seg].rlen || p->len > m->segments[p->seg].rlen - p->off)
		return -EBADMSG;
	return 0;
}

static int parse_blob(const struct parse *ps, struct cl_meta *m, const char *key, struct cl_blob *b)
{
	const msgpack_object *o = map_get(ps->root, key), *it;

	if (!o)
		return cl_errorf(-EBADMSG, "%s: corrupt meta: no %s entry", ps->name, key);
	if (o->type == MSGPACK_OBJECT_NIL)
		return 0;
	if (get_array(o, 4, &it) < 0 || get_u32(&it[0], UINT32_MAX, &b->p.seg) < 0 ||
	    get_u32(&it[1], UINT32_MAX, &b->p.off) < 0 ||
	    get_u32(&it[2], UINT32_MAX, &b->p.len) < 0 || get_sha(&it[3], b->sha256) < 0 ||
	    check_payload(m, &b->p) < 0)
		return cl_errorf(-EBADMSG, "%s: corrupt meta: bad %s entry", ps->name, key);
	b->present = 1;
	return 0;
}

static int parse_segments(const struct parse *ps, struct cl_meta *m)
{
	const msgpack_object *o = map_get(ps->root, "segments"), *it;
	uint64_t pos = 0;
	uint32_t i;

	if (get_array(o, 0, &it) < 0)
		return cl_errorf(-EBADMSG, "%s: corrupt meta: no segment table", ps->name);
	m->nsegments = o->via.array.size;
	m->segments = calloc(m->nsegments ? m->nsegments : 1, sizeof(*m->segments));
	if (!m->segments)
		return -ENOMEM;
	for (i = 0; i < m->nsegments; i++) {
		struct cl_segment *s = &m->segments[i];
		const msgpack_object *f;
		if (get_array(&it[i], 4, &f) < 0 || get_u64(&f[0], UINT64_MAX, &s->offset) < 0 ||
		    get_u32(&f[1], CL_SEGMENT_MAX, &s->clen) < 0 ||
		    get_u32(&f[2], CL_SEGMENT_MAX, &s->rlen) < 0 || get_sha(&f[3], s->sha256) < 0)
			return cl_errorf(-EBADMSG, "%s: corrupt meta: bad segment %u", ps->name, i);
		/* Segments lie back to back from the pack's start. */
		if (s->offset != pos || s->clen == 0)
			return cl_errorf(-EBADMSG, "%s: corrupt meta: segment %u is misplaced",
			                 ps->name, i);
		pos += s->clen;
	}
	if (pos != m->pack_size)
		return cl_errorf(
		    -EBADMSG, "%s: corrupt meta: segments cover %llu bytes, pack is %llu", ps->name,
		    (unsigned long long)pos, (unsigned long long)m->pack_size);
	return 0;
}

static int parse_chunk(const struct cl_meta *m, uint64_t i, const msgpack_object *o,
                       struct cl_chunk *c)
{
	const msgpack_object *f;
	uint32_t image, recipe;
	uint64_t nchunks, len;

	if (get_array(o, 8, &f) < 0 || get_u32(&f[0], CL_NIMAGES - 1, &image) < 0 ||
	    get_u64(&f[1], UINT64_MAX, &c->index) < 0 ||
	    get_u32(&f[2], CL_R_COUNT - 1, &recipe) < 0 ||
	    get_u64(&f[3], UINT64_MAX, &c->arg) < 0 || get_u32(&f[4], UINT32_MAX, &c->p.seg) < 0 ||
	    get_u32(&f[5], UINT32_MAX, &c->p.off) < 0 ||
	    get_u32(&f[6], UINT32_MAX, &c->p.len) < 0 || get_sha(&f[7], c->sha256) < 0)
		return -EBADMSG;
	c->image = (uint8_t)image;
	c->recipe = (uint8_t)recipe;
	nchunks = cl_chunk_count(m->image_size[image], m->chunk_size);
	if (c->index >= nchunks)
		return -EBADMSG;
	len = cl_chunk_len(m->image_size[image], m->chunk_size, c->index);
	switch (c->recipe) {
	case CL_R_ZERO:
		break;
	case CL_R_BASE_DISK:
	case CL_R_BASE_MEMORY:
		image = c->recipe == CL_R_BASE_DISK ? CL_DISK : CL_MEMORY;
		if (c->arg >= cl_chunk_count(m->base_image_size[image], m->chunk_size))
			return -EBADMSG;
		break;
	case CL_R_DEDUP:
		/* Points back at a payload record, whose reference it repeats. */
		if (c->arg >= i || m->chunks[c->arg].recipe < CL_R_DELTA ||
		    memcmp(&m->chunks[c->arg].p, &c->p, sizeof(c->p)) ||
		    memcmp(m->chunks[c->arg].sha256, c->sha256, CL_SHA256_LEN))
			return -EBADMSG;
		break;
	case CL_R_DELTA:
	case CL_R_RAW:
		if (check_payload(m, &c->p) < 0)
			return -EBADMSG;
		if (c->recipe == CL_R_RAW && c->p.len != len)
			return -EBADMSG;
		break;
	}
	if (c->recipe < CL_R_DEDUP)
		memset(&c->p, 0, sizeof(c->p));
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int parse_chunks(const struct parse *ps, struct cl_meta *m)
{
	const msgpack_object *o = map_get(ps->root, "chunks"), *it;
	uint64_t *keys, i;
	int r = 0;

	if (get_array(o, 0, &it) < 0)
		return cl_errorf(-EBADMSG, "%s: corrupt meta: no chunk table", ps->name);
	m->nchunks = o->via.array.size;
	m->chunks = calloc(m->nchunks ? m->nchunks : 1, sizeof(*m->chunks));
	/* Repeated (image, index) pairs are found by sorting the records'
	 * keys: memory in proportion to the meta, not to the images (a
	 * bitmap of 2^50-byte images would take 256 GiB). */
	keys = malloc((m->nchunks ? m->nchunks : 1) * sizeof(*keys));
	if (!m->chunks || !keys) {
		free(keys);
		return -ENOMEM;
	}
	for (i = 0; i < m->nchunks; i++) {
		struct cl_chunk *c = &m->chunks[i];
		if (parse_chunk(m, i, &it[i], c) < 0) {
			r = cl_errorf(-EBADMSG, "%s: corrupt meta: bad chunk record %llu", ps->name,
			              (unsigned long long)i);
			goto out;
		}
		keys[i] = c->index << 1 | c->image; /* index < 2^50 / 512 */
	}
	qsort(keys, m->nchunks, sizeof(*keys), cmp_u64);
	for (i = 1; i < m->nchunks; i++) {
		if (keys[i] == keys[i - 1]) {
			r = cl_errorf(-EBADMSG, "%s: corrupt meta: %s chunk %llu listed twice",
			              ps->name, cl_image_name((enum cl_image_id)(keys[i] & 1)),
			              (unsigned long long)(keys[i] >> 1));
			goto out;
		}
	}
out:
	free(keys);
	return r;
}

static int parse_body(const struct parse *ps, struct cl_meta *m)
{
	const msgpack_object *o, *it;
	char *s = NULL;
	int r, i;

	if (get_sha(map_get(ps->root, "base_id"), m->base_id) < 0 ||
	    get_u32(map_get(ps->root, "chunk_size"), 1u << 20, &m->chunk_size) < 0 ||
	    m->chunk_size < 512 || (m->chunk_size & (m->chunk_size - 1)))
		return cl_errorf(-EBADMSG, "%s: corrupt meta: bad base id or chunk size", ps->name);
	r = get_str(map_get(ps->root, "codec"), 16, &s);
	if (r < 0 || cl_codec_parse(s, &m->codec) < 0) {
		r = cl_errorf(-EBADMSG, "%s: unknown codec '%s'", ps->name, s ? s : "?");
		free(s);
		return r;
	}
	free(s);
	o = map_get(ps->root, "images");
	if (get_array(o, CL_NIMAGES, &it) < 0)
		return cl_errorf(-EBADMSG, "%s: corrupt meta: bad image sizes", ps->name);
	for (i = 0; i < CL_NIMAGES; i++) {
		const msgpack_object *f;
		/* 2^50 bytes bounds chunk counts well inside size_t. */
		if (get_array(&it[i], 2, &f) < 0 ||
		    get_u64(&f[0], 1ull << 50, &m->image_size[i]) < 0 ||
		    get_u64(&f[1], 1ull << 50, &m->base_image_size[i]) < 0)
			return cl_errorf(-EBADMSG, "%s: corrupt meta: bad image sizes", ps->name);
	}
	if (get_str(map_get(ps->root, "pack"), 255, &m->pack) < 0 || !*m->pack ||
	    strchr(m->pack, '/') || !strcmp(m->pack, ".") || !strcmp(m->pack, ".."))
		return cl_errorf(-EBADMSG, "%s: corrupt meta: bad pack name", ps->name);
	if (get_u64(map_get(ps->root, "pack_size"), 1ull << 50, &m->pack_size) < 0)
		return cl_errorf(-EBADMSG, "%s: corrupt meta: bad pack size", ps->name);
	r = parse_segments(ps, m);
	if (r < 0)
		return r;
	r = parse_blob(ps, m, "state", &m->state);
	if (r < 0)
		return r;
	r = parse_blob(ps, m, "domain_xml", &m->domain);
	if (r < 0)
		return r;
	o = map_get(ps->root, "left_out"); /* optional, informative */
	if (o && (get_array(o, CL_NIMAGES, &it) < 0 ||
	          get_u64(&it[0], 1ull << 50, &m->left_out[0]) < 0 ||
	          get_u64(&it[1], 1ull << 50, &m->left_out[1]) < 0))
		return cl_errorf(-EBADMSG, "%s: corrupt meta: bad left_out entry", ps->name);
	return parse_chunks(ps, m);
}

/* Checks the outer map and returns its body, decompressed (the caller
 * frees it). */
static int parse_outer(const msgpack_object *root, const char *name, struct cl_meta *m, void **body,
                       size_t *body_len)
{
	const msgpack_object *o;
	uint8_t want[CL_SHA256_LEN], have[CL_SHA256_LEN];
	enum cl_codec codec;
	char *cname = NULL;
	uint64_t v, size;
	int r;

	o = map_get(root, "format");
	if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size != strlen(META_FORMAT) ||
	    memcmp(o->via.str.ptr, META_FORMAT, o->via.str.size))
		return cl_errorf(-EBADMSG, "%s: not a cloudlet overlay-meta", name);
	if (get_u64(map_get(root, "version"), UINT32_MAX, &v) < 0)
		return cl_errorf(-EBADMSG, "%s: corrupt meta: no version", name);
	if (v != CL_META_VERSION)
		return cl_errorf(-EPROTONOSUPPORT,
		                 "%s: overlay format version %llu; this cloudlet reads version %d",
		                 name, (unsigned long long)v, CL_META_VERSION);
	m->version = (uint32_t)v;
	o = map_get(root, "body");
	if (!o || o->type != MSGPACK_OBJECT_BIN ||
	    get_sha(map_get(root, "body_sha256"), want) < 0 ||
	    get_u64(map_get(root, "body_size"), CL_META_MAX_SIZE, &size) < 0 ||
	    get_str(map_get(root, "body_codec"), 16, &cname) < 0)
		return cl_errorf(-EBADMSG, "%s: corrupt meta: no body", name);
	r = cl_codec_parse(cname, &codec);
	free(cname);
	if (r < 0)
		return cl_errorf(-EBADMSG, "%s: corrupt meta: unknown body codec", name);
	cl_sha256(o->via.bin.ptr, o->via.bin.size, have);
	if (memcmp(want, have, CL_SHA256_LEN))
		return cl_errorf(-EBADMSG, "%s: corrupt meta: checksum mismatch", name);
	*body = malloc(size ? size : 1);
	if (!*body)
		return -ENOMEM;
	r = cl_codec_decompress(codec, o->via.bin.ptr, o->via.bin.size, *body, size);
	if (r < 0) {
		free(*body);
		*body = NULL;
		return cl_errorf(-EBADMSG, "%s: corrupt meta: body does not decode", name);
	}
	*body_len = size;
	return 0;
}

/* msgpack-c allocates every array and map at the size its header claims
 * before reading a single element, so a few corrupt bytes would make it
 * reserve gigabytes. Walks one msgpack object without allocating and
 * refuses it unless every element claimed has at least a byte left to lie
 * in; msgpack-c then allocates about as much as the input is long. */
static int check_counts(const uint8_t *p, size_t len)
{
	/* For 0xc0-0xdf: bytes of payload after the type byte, and the width
	 * of the length (bin, ext, str) or count (array, map) field. */
	/* clang-format off */
	static const uint8_t fixed[32] = {
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 8, 1, 2, 4, 8, /* 0xc0 */
	    1, 2, 4, 8, 2, 3, 5, 9, 17, 0, 0, 0, 0, 0, 0, 0, /* 0xd0 */
	};
	static const uint8_t width[32] = {
	    0, 0, 0, 0, 1, 2, 4, 1, 2, 4, 0, 0, 0, 0, 0, 0, /* 0xc0 */
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 4, 2, 4, 2, 4, /* 0xd0 */
	};
	/* clang-format on */
	const uint8_t *end = p + len;
	uint64_t pending = 1, n;
	unsigned i;
	uint8_t t;

	while (pending) {
		if (p == end)
			return -EBADMSG;
		t = *p++;
		pending--;
		n = 0;
		if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
			continue;
		if (t <= 0x8f) {
			pending += 2u * (t & 0x0f); /* fixmap */
		} else if (t <= 0x9f) {
			pending += t & 0x0f; /* fixarray */
		} else if (t <= 0xbf) {
			n = t & 0x1f; /* fixstr */
		} else if (t == 0xc1) {
			return -EBADMSG;
		} else if (width[t - 0xc0]) {
			if ((size_t)(end - p) < width[t - 0xc0])
				return -EBADMSG;
			for (i = 0; i < width[t - 0xc0]; i++)
				n = n << 8 | *p++;
			if (t >= 0xc7 && t <= 0xc9)
				n++; /* ext: the type byte */
			if (t >= 0xdc) {
				pending += t >= 0xde ? 2 * n : n; /* array, map */
				n = 0;
			}
		} else {
			n = fixed[t - 0xc0];
		}
		if (pending > (uint64_t)(end - p) || n > (uint64_t)(end - p))
			return -EBADMSG;
		p += n;
	}
	return 0;
}

int cl_meta_parse(const void *buf, size_t len, const char *name, struct cl_meta **out)
{
	msgpack_unpacked up, inner;
	void *body = NULL;
	size_t body_len = 0;
	struct cl_meta *m;
	struct parse ps;
	size_t off = 0;
	int r;

	if (!buf || !name || !out)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	msgpack_unpacked_init(&up);
	msgpack_unpacked_init(&inner);
	if (check_counts(buf, len) < 0 ||
	    msgpack_unpack_next(&up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS ||
	    up.data.type != MSGPACK_OBJECT_MAP) {
		r = cl_errorf(-EBADMSG, "%s: not a cloudlet overlay-meta (corrupt or truncated)",
		              name);
		goto fail;
	}
	if (off != len) {
		r = cl_errorf(-EBADMSG, "%s: corrupt meta: %zu trailing bytes", name, len - off);
		goto fail;
	}
	r = parse_outer(&up.data, name, m, &body, &body_len);
	if (r < 0)
		goto fail;
	off = 0;
	if (check_counts(body, body_len) < 0 ||
	    msgpack_unpack_next(&inner, body, body_len, &off) != MSGPACK_UNPACK_SUCCESS ||
	    inner.data.type != MSGPACK_OBJECT_MAP || off != body_len) {
		r = cl_errorf(-EBADMSG, "%s: corrupt meta: bad body", name);
		goto fail;
	}
	ps.name = name;
	ps.root = &inner.data;
	r = parse_body(&ps, m);
	if (r < 0)
		goto fail;
	cl_sha256(buf, len, m->id);
	msgpack_unpacked_destroy(&inner);
	msgpack_unpacked_destroy(&up);
	free(body);
	*out = m;
	return 0;

fail:
	msgpack_unpacked_destroy(&inner);
	msgpack_unpacked_destroy(&up);
	free(body);
	cl_meta_free(m);
	return r;
}

int cl_meta_load(const char *overlay, struct cl_meta **out, char **meta_location)
{
	char *loc = NULL;
	struct stat st;
	size_t len;
	void *buf;
	int r;

	if (!overlay || !out)
		return -EINVAL;
	if (!cl_source_is_url(overlay) && stat(overlay, &st) == 0 && S_ISDIR(st.st_mode)) {
		if (asprintf(&loc, "%s/overlay-meta", overlay) < 0)
			return -ENOMEM;
	} else {
		loc = strdup(overlay);
		if (!loc)
			return -ENOMEM;
	}
	r = cl_source_read_all(loc, NULL, CL_META_MAX_SIZE, &buf, &len);
	if (r < 0)
		goto out;
	r = cl_meta_parse(buf, len, loc, out);
	free(buf);
out:
	if (r == 0 && meta_location)
		*meta_location = loc;
	else
		free(loc);
	return r;
}

void cl_meta_free(struct cl_meta *m)
{
	if (!m)
		return;
	free(m->pack);
	free(m->segments);
	free(m->chunks);
	free(m);
}
