/* HTTP(S) backend of cl_source (internal). Same contracts as cl_source.h. */
#ifndef CL_HTTP_H
#define CL_HTTP_H

#include "cl_source.h"

struct cl_http;

int cl_http_open(const char *url, const struct cl_source_opts *opts, struct cl_http **out);
uint64_t cl_http_size(const struct cl_http *h);
int cl_http_has_ranges(const struct cl_http *h);
int cl_http_read(struct cl_http *h, uint64_t off, size_t len, void *buf);
int cl_http_stream(struct cl_http *h, uint64_t off, cl_source_stream_fn fn, void *ctx);
/* Ends transfers under way within about a second (-ECANCELED) and makes
 * later ones fail at once. Thread-safe. */
void cl_http_abort(struct cl_http *h);
void cl_http_close(struct cl_http *h);

#endif
