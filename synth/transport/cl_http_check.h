/* SPDX-License-Identifier: GPL-2.0-only */
/* One HTTP response, checked (private to synth/transport): its header
 * lines parsed (status, ETag, Last-Modified, Content-Length,
 * Content-Range), its status and headers checked against the request and
 * against the object pinned at open, and its body accepted into the
 * request's buffer or stream consumer. No libcurl and no I/O here: cl_http.c
 * feeds a response in (from libcurl's callbacks) and tells what failed. */
#ifndef CL_HTTP_CHECK_H
#define CL_HTTP_CHECK_H

#include "cl_source.h"

#include <stddef.h>
#include <stdint.h>

#define CL_HTTP_MAX_HEADER_BYTES (256u * 1024) /* per attempt, all responses */

/* The object a handle serves, as found at open; read-only once pinned. */
struct cl_http_object {
	char *url;
	uint64_t size;
	int pinned;          /* the fields below are set: check responses */
	char *etag;          /* NULL if the server sent none */
	char *last_modified; /* NULL if the server sent none */
};

enum cl_http_xfer_kind {
	CL_HTTP_XFER_HEAD,   /* open: size and validators */
	CL_HTTP_XFER_PROBE,  /* open: GET bytes=0-0, does the server honour Range? */
	CL_HTTP_XFER_READ,   /* exactly len bytes at start */
	CL_HTTP_XFER_STREAM, /* start to the end, handed to fn */
};

/* State of one request (one attempt; the stream fields persist across). */
struct cl_http_xfer {
	const struct cl_http_object *obj;
	enum cl_http_xfer_kind kind;
	int ranged;     /* a Range header was sent */
	uint64_t start; /* first byte asked for */
	char range[48];

	/* Headers of the latest response (reset at each status line). */
	long status;
	char *etag;
	char *last_modified;
	int have_clen;
	uint64_t clen;
	int have_crange;
	uint64_t cr_first, cr_last; /* UINT64_MAX for "bytes * / total" */
	uint64_t cr_total;          /* UINT64_MAX if "*" */
	size_t header_bytes;

	/* Body. */
	int checked;      /* the final response's headers were accepted */
	uint64_t body_at; /* object offset of the next body byte */

	/* CL_HTTP_XFER_READ */
	char *buf;
	size_t len;

	/* CL_HTTP_XFER_STREAM */
	cl_source_stream_fn fn;
	void *ctx;
	uint64_t pos; /* next object offset to hand to fn */

	/* Outcome of the attempt. */
	int err;       /* fault found in a callback (already described) */
	int user;      /* err is fn's return value */
	int transient; /* a retry may succeed */
	int probe_done;
};

void cl_http_xfer_init(struct cl_http_xfer *x, const struct cl_http_object *obj,
                       enum cl_http_xfer_kind kind);
/* Prepares x for a new attempt; the stream position and target persist. */
void cl_http_xfer_reset(struct cl_http_xfer *x);
void cl_http_xfer_fini(struct cl_http_xfer *x);

/* One header line of a response, with or without its line end. Returns 0,
 * or -errno with x->err set (and described) when the response is refused. */
int cl_http_xfer_header(struct cl_http_xfer *x, const char *data, size_t n);
/* The next n bytes of the body. Returns 0 when they were taken; -errno with
 * x->err set when the response or the consumer refused them; -ECANCELED
 * with x->err 0 and x->probe_done set when a probe has what it needs. */
int cl_http_xfer_body(struct cl_http_xfer *x, const char *data, size_t n);
/* Checks the final response's headers before its body is accepted (or
 * after the transfer if it had no body). Sets body_at. Returns 0,
 * -ENOTSUP for a HEAD the server refuses, or -errno, described; sets
 * x->transient for a status worth a retry. */
int cl_http_xfer_check(struct cl_http_xfer *x);

/* Pins obj to the response of x (its validators) with the given size. */
int cl_http_object_pin(struct cl_http_object *obj, const struct cl_http_xfer *x, uint64_t size);

#endif
