/* SPDX-License-Identifier: GPL-2.0-only */
/* Base VMs: their chunk index and the registry they are kept in.
 *
 * A base is a disk image and a memory image (plus, optionally, a device
 * state file and a domain XML). Registering a base hashes every chunk of
 * both images once; the index and a small base.conf are stored in the
 * registry under CLOUDLET_HOME/bases/<first 16 hex digits of the base id>/.
 * CLOUDLET_HOME defaults to /var/lib/cloudlet for root and to
 * $XDG_DATA_HOME/cloudlet (~/.local/share/cloudlet) for other users. */
#ifndef CL_BASE_H
#define CL_BASE_H

#include <stdint.h>
#include <sys/types.h>

#include "cl_error.h"
#include "cl_meta.h"
#include "cl_progress.h"

/* A file of the base's registry directory and its SHA-256 at registration. */
struct cl_base_file {
	char *name;
	uint8_t sha256[CL_SHA256_LEN];
};

struct cl_base {
	char *dir;              /* registry directory, NULL if not registered */
	char *path[CL_NIMAGES]; /* absolute image paths */
	int fd[CL_NIMAGES];     /* read-only */
	uint64_t size[CL_NIMAGES];
	uint64_t nchunks[CL_NIMAGES];
	uint32_t chunk_size;
	uint8_t (*hash[CL_NIMAGES])[CL_SHA256_LEN]; /* per chunk */
	uint8_t id[CL_SHA256_LEN];
	char *state_path;  /* registered copy of the device state, or NULL */
	char *domain_path; /* registered copy of the domain XML, or NULL */
	uint64_t *table;   /* hash -> chunk lookup, built by cl_base_build_lookup */
	uint64_t table_mask;
	int index_fd;               /* the registry's index, opened by cl_base_open_index, or -1 */
	struct cl_base_file *files; /* registry files recorded in base.conf */
	unsigned nfiles;
};

/* The registry root (CLOUDLET_HOME or its default); never NULL. */
const char *cl_home(void);

/* Hashes every chunk of an open image into hashes (cl_chunk_count entries),
 * on all cores, skipping holes. */
int cl_hash_image(int fd, const char *path, uint64_t size, uint32_t chunk_size,
                  uint8_t (*hashes)[CL_SHA256_LEN], struct cl_progress *prog);

/* SHA-256 of chunk_len zero bytes, for chunk_len <= chunk_size. */
void cl_zero_hash(uint32_t chunk_len, uint8_t out[CL_SHA256_LEN]);

/* Opens and indexes disk and memory images as a new (unregistered) base. */
int cl_base_index(const char *disk, const char *memory, uint32_t chunk_size, struct cl_base **out);

/* Stores b in the registry with copies of state and domain (either may be
 * NULL), replacing an earlier registration of the same base. */
int cl_base_register(struct cl_base *b, const char *state, const char *domain);

/* Hashes every file of a registered base's directory (device state, domain
 * XML, kernel, initrd: all but base.conf and the index) into its base.conf,
 * for a registration completed after cl_base_register. cl_base_register
 * seals them itself, unless the domain XML boots a kernel: `cloudlet base
 * --kernel` copies the kernel and initrd in and rewrites the XML afterwards,
 * and must seal then (until it does, only the device state is recorded). */
int cl_base_seal(struct cl_base *b);

/* Checks a file against the hash base.conf recorded for it: 0 also when path
 * is not in the registry directory or nothing is recorded for it (a base
 * registered before hashes were), else -EBADMSG naming the file. */
int cl_base_check_file(const struct cl_base *b, const char *path);

/* Opens the registered base whose disk image is image (or whose registry
 * directory or id prefix is image): its images, not its index. Fails with
 * a hint if none is registered or if an image changed since registration
 * (size or mtime), or naming the file if its device state or domain XML
 * does not match the hash recorded at registration. */
int cl_base_find(const char *image, struct cl_base **out);

/* Loads the chunk index of a base opened by cl_base_find (checking it
 * against the base id); a no-op if it is loaded. */
int cl_base_load_index(struct cl_base *b);

/* Opens the index of a base opened by cl_base_find for cl_base_chunk_hash:
 * checks it against the base id block by block, without loading it (its
 * hashes are looked up with pread, so memory does not grow with the base).
 * A no-op if it is open or loaded. */
int cl_base_open_index(struct cl_base *b);

/* The index's hash of chunk idx of image (from the loaded or opened index). */
int cl_base_chunk_hash(const struct cl_base *b, enum cl_image_id image, uint64_t idx,
                       uint8_t out[CL_SHA256_LEN]);

/* The index's hashes of chunks [first, first + n) of image, in one read. */
int cl_base_chunk_hashes(const struct cl_base *b, enum cl_image_id image, uint64_t first,
                         uint64_t n, uint8_t (*out)[CL_SHA256_LEN]);

/* Announces to the kernel (POSIX_FADV_WILLNEED) that the index's hashes of
 * chunks [first, first + n) of image will be read: a no-op unless the index
 * is opened rather than loaded. */
void cl_base_index_advise(const struct cl_base *b, enum cl_image_id image, uint64_t first,
                          uint64_t n);

/* Whether want, base chunk idx's hash from the index, is the hash of zeros:
 * then the chunk is served or written as zeros, neither read nor hashed,
 * whatever the base holds there now (the index describes the base the
 * overlay was made against). */
int cl_base_index_zero(const struct cl_base *b, enum cl_image_id image, uint64_t idx,
                       const uint8_t want[CL_SHA256_LEN]);

/* Checks base chunk idx of image, as data (its cl_chunk_len bytes) or, data
 * NULL, as a hole (zeros), against want, its hash from the index: 0, or -EBADMSG
 * with a message naming the base file and chunk. */
int cl_base_check_against(const struct cl_base *b, enum cl_image_id image, uint64_t idx,
                          const void *data, const uint8_t want[CL_SHA256_LEN]);

/* A walk over a base image's extents, chunk by chunk in increasing order. */
struct cl_base_extents {
	off_t data, hole; /* the data extent [data, hole) at or after the last chunk */
};
#define CL_BASE_EXTENTS_INIT                                                                       \
	{                                                                                          \
		-1, -1                                                                             \
	}

/* Whether chunk k of image im is wholly a hole of the base file (read as
 * zeros without a read); e carries the extent found between calls for
 * increasing k, so that a walk costs two lseeks per extent. */
int cl_base_chunk_is_hole(const struct cl_base *b, enum cl_image_id im, uint64_t k,
                          struct cl_base_extents *e);

/* Checks base chunk idx of image against the index. hole: the chunk is a
 * hole of the base and is checked as zeros without reading (buf may be
 * NULL); a chunk the index records as zero is zeros in buf, not read
 * (cl_base_index_zero); otherwise it is read whole into buf (chunk_size
 * bytes, zero-filled past the base's end, as cl_base_read) and hashed, so
 * that the caller can use the very bytes that were checked. 0, or -EBADMSG with a message naming
 * the base file and chunk when they differ. Thread-safe. */
int cl_base_read_checked(const struct cl_base *b, enum cl_image_id image, uint64_t idx, int hole,
                         void *buf);

/* Checks every chunk of both images of b against its index (holes without
 * reading them), on all cores, with a progress bar. Calls report (if not
 * NULL) for each bad chunk (the message names the base file and chunk), counts them in *bad, and
 * returns -EBADMSG if any. */
int cl_base_check_all(struct cl_base *b, cl_report_fn report, void *ctx, uint64_t *bad);

/* Calls fn for every registered base; stops at a non-zero return. */
int cl_base_list(int (*fn)(void *ctx, const struct cl_base *b), void *ctx);

/* Reads chunk idx of image as the base has it, zero-filled past the base's
 * end, len bytes (<= chunk_size). Thread-safe. */
int cl_base_read(const struct cl_base *b, enum cl_image_id image, uint64_t idx, uint32_t len,
                 void *buf);

/* Builds the hash lookup table; then cl_base_lookup finds a non-zero chunk
 * with the given hash (0, or -ENOENT). */
int cl_base_build_lookup(struct cl_base *b);
int cl_base_lookup(const struct cl_base *b, const uint8_t hash[CL_SHA256_LEN],
                   enum cl_image_id *image, uint64_t *idx);

void cl_base_free(struct cl_base *b);

#endif
