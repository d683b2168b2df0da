/* SPDX-License-Identifier: GPL-2.0-only */
/* HTTP(S) backend of cl_source (internal). Same contracts as cl_source.h. */
#ifndef CL_HTTP_H
#define CL_HTTP_H

#include "cl_source.h"

#include <curl/curl.h>

struct cl_http;
struct cl_http_xfer;

int cl_http_open(const char *url, const struct cl_source_opts *opts, struct cl_http **out);
uint64_t cl_http_size(const struct cl_http *h);
int cl_http_has_ranges(const struct cl_http *h);
int cl_http_read(struct cl_http *h, uint64_t off, size_t len, void *buf);
int cl_http_stream(struct cl_http *h, uint64_t off, cl_source_stream_fn fn, void *ctx);
/* Ends transfers under way within about a second (-ECANCELED) and makes
 * later ones fail at once. Thread-safe. */
void cl_http_abort(struct cl_http *h);
void cl_http_close(struct cl_http *h);

/* Where a handle's requests meet the network. cl_http_open uses libcurl's
 * transfer and real sleeps; a test (tests/fuzz/fuzz_http.c) opens with its
 * own to script the server's responses and skip back-off waits. */
struct cl_http_ops {
	/* Runs the transfer set up on c (URL, Range, timeouts) and returns
	 * libcurl's result; every header line of the response goes to
	 * cl_http_xfer_header(x) and the body to cl_http_xfer_body(x), and a
	 * refusal there ends the transfer with CURLE_WRITE_ERROR. */
	CURLcode (*perform)(CURL *c, struct cl_http_xfer *x);
	/* Waits ms milliseconds, ms <= 50 (a retry's back-off, in steps). */
	void (*sleep_ms)(unsigned ms);
};

/* cl_http_open with the given ops, which must outlive the handle. */
int cl_http_open_ops(const char *url, const struct cl_source_opts *opts,
                     const struct cl_http_ops *ops, struct cl_http **out);

#endif
