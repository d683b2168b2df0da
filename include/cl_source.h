/* SPDX-License-Identifier: GPL-2.0-only */
/* A read-only byte source: a local file or an http:// / https:// URL.
 *
 * The overlay pack and meta are read through this, so the same code applies
 * or serves an overlay from disk or from a web server. All functions return
 * 0 or -errno and describe failures with cl_errorf(). */
#ifndef CL_SOURCE_H
#define CL_SOURCE_H

#include <stddef.h>
#include <stdint.h>

struct cl_source;

struct cl_source_opts {
	unsigned timeout_ms;  /* bound on one request, 0 = default (30 s) */
	unsigned retries;     /* attempts after the first on transient errors, 0 = default (5) */
	unsigned connections; /* parallel connections an HTTP source may use, 0 = default (4) */
};

/* True if location names an HTTP(S) URL rather than a local path. */
int cl_source_is_url(const char *location);

/* Opens location. A URL is probed once: size, ETag/Last-Modified (pinned:
 * a later response with other validators fails with -ESTALE) and whether the
 * server honours Range. opts may be NULL. The caller frees with
 * cl_source_close(). */
int cl_source_open(const char *location, const struct cl_source_opts *opts, struct cl_source **out);

/* Size in bytes of the object. */
uint64_t cl_source_size(const struct cl_source *src);

/* Non-zero if cl_source_read() may fetch arbitrary ranges; 0 for an HTTP
 * server that ignores Range (then only cl_source_stream() works). */
int cl_source_has_ranges(const struct cl_source *src);

/* Reads exactly len bytes at off into buf. Safe to call from several
 * threads at once. A short object or body is -EIO, never a short read. */
int cl_source_read(struct cl_source *src, uint64_t off, size_t len, void *buf);

/* Reads the object from off to its end in order, handing each piece to fn;
 * a non-zero return from fn stops the stream and is returned. */
typedef int (*cl_source_stream_fn)(void *ctx, uint64_t off, const void *data, size_t len);
int cl_source_stream(struct cl_source *src, uint64_t off, cl_source_stream_fn fn, void *ctx);

/* Ends reads and streams under way (they fail with -ECANCELED within
 * about a second) and makes later ones fail at once: for shutdown while a
 * slow server is being read. Thread-safe. */
void cl_source_abort(struct cl_source *src);

void cl_source_close(struct cl_source *src);

/* Reads a whole object of at most max_len bytes into a malloc'd buffer that
 * the caller frees. Larger objects fail with -EFBIG. */
int cl_source_read_all(const char *location, const struct cl_source_opts *opts, size_t max_len,
                       void **buf, size_t *len);

/* The location of name relative to location's directory (a sibling file or
 * URL). name must be a plain file name (no '/', not "." or ".."), otherwise
 * -EINVAL. The caller frees *out. */
int cl_source_sibling(const char *location, const char *name, char **out);

#endif
