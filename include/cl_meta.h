/* SPDX-License-Identifier: GPL-2.0-only */
/* overlay-meta: the description of an overlay (docs/FORMAT.md).
 *
 * The meta is msgpack. cl_meta_parse() checks everything it reads (types,
 * ranges, cross references) so that later code may trust a parsed meta's
 * indices: every segment, record and payload reference is in bounds. */
#ifndef CL_META_H
#define CL_META_H

#include <stddef.h>
#include <stdint.h>

#include "cl_codec.h"
#include "cl_util.h"

#define CL_META_VERSION  1
#define CL_META_MAX_SIZE (1024u << 20) /* largest meta file accepted */
#define CL_SEGMENT_MAX   (64u << 20)   /* largest segment (raw or compressed) */

enum cl_image_id {
	CL_DISK = 0,
	CL_MEMORY = 1,
	CL_NIMAGES = 2,
};

const char *cl_image_name(enum cl_image_id i); /* "disk", "memory" */

/* How a chunk of the synthesized image is made, cheapest first. */
enum cl_recipe {
	CL_R_ZERO = 0,        /* all zero bytes */
	CL_R_BASE_DISK = 1,   /* base disk chunk `arg` */
	CL_R_BASE_MEMORY = 2, /* base memory chunk `arg` */
	CL_R_DEDUP = 3,       /* same bytes as overlay record `arg` (a DELTA or RAW) */
	CL_R_DELTA = 4,       /* VCDIFF payload against the base chunk at the same place */
	CL_R_RAW = 5,         /* payload is the chunk itself */
	CL_R_COUNT = 6,
};

const char *cl_recipe_name(enum cl_recipe r);

struct cl_segment {
	uint64_t offset;               /* in the pack */
	uint32_t clen;                 /* compressed length */
	uint32_t rlen;                 /* raw (decompressed) length */
	uint8_t sha256[CL_SHA256_LEN]; /* of the compressed bytes */
};

/* Where a payload lies: raw bytes [off, off + len) of segment seg. */
struct cl_payload {
	uint32_t seg;
	uint32_t off;
	uint32_t len;
};

/* One overlay record. DEDUP records copy their source's payload reference,
 * so decoding never needs another record's output. */
struct cl_chunk {
	uint64_t index;                /* chunk number in its image */
	uint64_t arg;                  /* BASE_*: source chunk; DEDUP: source record */
	struct cl_payload p;           /* DELTA, RAW and DEDUP only */
	uint8_t image;                 /* enum cl_image_id */
	uint8_t recipe;                /* enum cl_recipe */
	uint8_t sha256[CL_SHA256_LEN]; /* of the synthesized chunk */
};

/* State and domain XML travel as payloads too (first in the pack). */
struct cl_blob {
	int present;
	struct cl_payload p;
	uint8_t sha256[CL_SHA256_LEN];
};

struct cl_meta {
	uint32_t version;
	uint8_t base_id[CL_SHA256_LEN];
	uint32_t chunk_size;
	enum cl_codec codec;
	uint64_t image_size[CL_NIMAGES];      /* synthesized images */
	uint64_t base_image_size[CL_NIMAGES]; /* the base's, for checks */
	char *pack;                           /* pack file name, sibling of the meta */
	uint64_t pack_size;
	struct cl_blob state;
	struct cl_blob domain;
	uint32_t nsegments;
	struct cl_segment *segments;
	uint64_t nchunks;
	struct cl_chunk *chunks; /* overlay order */
	/* Informative (optional key left_out): chunks the guest discarded
	 * (disk: zero extents of its copy-on-write disk) or freed (memory:
	 * holes in the RAM file where the base has data). */
	uint64_t left_out[CL_NIMAGES];
	/* Derived on parse, not stored: */
	uint8_t id[CL_SHA256_LEN]; /* overlay id: SHA-256 of the meta file */
};

/* Number of chunks of an image of size bytes, and length of chunk idx. */
uint64_t cl_chunk_count(uint64_t size, uint32_t chunk_size);
uint32_t cl_chunk_len(uint64_t size, uint32_t chunk_size, uint64_t idx);

/* Serializes m into a malloc'd buffer the caller frees. */
int cl_meta_encode(const struct cl_meta *m, void **buf, size_t *len);

/* Parses and validates a meta; name is used in error messages. On success
 * *out is owned by the caller (cl_meta_free). */
int cl_meta_parse(const void *buf, size_t len, const char *name, struct cl_meta **out);

/* Loads an overlay's meta from a path or URL of the meta file, or a local
 * directory holding overlay-meta. *meta_location (optional) receives the
 * resolved location, which the caller frees. */
int cl_meta_load(const char *overlay, struct cl_meta **out, char **meta_location);

void cl_meta_free(struct cl_meta *m);

/* The blobs' file names: in a mount, in a registered base's directory and
 * in apply's output, in the order state, domain XML. */
#define CL_BLOB_STATE  "state"
#define CL_BLOB_DOMAIN "domain.xml"
#define CL_BLOB_NAMES                                                                              \
	{                                                                                          \
		CL_BLOB_STATE, CL_BLOB_DOMAIN                                                      \
	}

#endif
