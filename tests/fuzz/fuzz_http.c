/* SPDX-License-Identifier: GPL-2.0-only */
/* HTTP response handling of the pack source (synth/transport): status
 * lines, ETag/Last-Modified pinning, Content-Length, Content-Range, short,
 * long and early-ending bodies, transient faults and retries.
 *
 * libcurl parses nothing here that cloudlet relies on: cl_http_check.c's
 * header and body functions and checks do. The target opens the handle with
 * its own cl_http_ops (cl_http_open_ops): the transfer feeds the next
 * scripted response to those functions, line by line and in small body
 * pieces, as libcurl's callbacks do, and retry back-off does not sleep.
 * Everything else (the handle pool, the request set-up, libcurl faults,
 * both retry loops, open's probe) is the library's own code.
 *
 * Input: 8 bytes of parameters (retries, read offset and length, stream
 * offset, when the stream consumer gives up), then the server's responses
 * separated by "\n@@\n". A response is header lines, an empty line, and the
 * body; a response starting with '!' and a digit makes the transfer end with
 * a libcurl error after it is delivered. Once the script runs out, every
 * request fails to connect. cl_http_open runs first (HEAD, then a bytes=0-0
 * probe), then a ranged read and a stream of the object. */
#include "cl_error.h"
#include "cl_http.h"
#include "cl_http_check.h"
#include "fuzz_common.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t *g_data; /* the rest of the script */
static size_t g_size;

static void fake_sleep_ms(unsigned ms)
{
	(void)ms;
}

/* The next response of the script: [*p, *p + *n). */
static int next_response(const uint8_t **p, size_t *n)
{
	static const char sep[] = "\n@@\n";
	const uint8_t *s;

	if (!g_size)
		return -1;
	*p = g_data;
	s = memmem(g_data, g_size, sep, 4);
	if (s) {
		*n = (size_t)(s - g_data);
		g_size -= *n + 4;
		g_data = s + 4;
	} else {
		*n = g_size;
		g_data += g_size;
		g_size = 0;
	}
	return 0;
}

static CURLcode fake_perform(CURL *c, struct cl_http_xfer *x)
{
	static const CURLcode faults[10] = {
	    CURLE_PARTIAL_FILE,         CURLE_OPERATION_TIMEDOUT,   CURLE_RECV_ERROR,
	    CURLE_COULDNT_CONNECT,      CURLE_WEIRD_SERVER_REPLY,   CURLE_GOT_NOTHING,
	    CURLE_TOO_MANY_REDIRECTS,   CURLE_UNSUPPORTED_PROTOCOL, CURLE_SSL_CONNECT_ERROR,
	    CURLE_COULDNT_RESOLVE_HOST,
	};
	CURLcode end = CURLE_OK;
	const uint8_t *p, *nl;
	size_t n, line, piece;
	char *copy;
	int r;

	(void)c;
	FUZZ_CHECK(x && x->obj);
	/* What open pinned came from headers, within their bound. */
	if (x->obj->etag)
		FUZZ_CHECK(strlen(x->obj->etag) < CL_HTTP_MAX_HEADER_BYTES);
	if (next_response(&p, &n) < 0)
		return CURLE_COULDNT_CONNECT;
	if (n >= 2 && p[0] == '!' && p[1] >= '0' && p[1] <= '9') {
		end = faults[p[1] - '0'];
		p += 2;
		n -= 2;
	}
	/* Header lines, each with its line end, up to and with the empty one. */
	while (n) {
		nl = memchr(p, '\n', n);
		line = nl ? (size_t)(nl - p) + 1 : n;
		copy = (char *)fuzz_dup(p, line); /* exact size: ASan sees overreads */
		FUZZ_CHECK(copy);
		r = cl_http_xfer_header(x, (const char *)copy, line);
		free(copy);
		if (r < 0)
			return CURLE_WRITE_ERROR;
		p += line;
		n -= line;
		if (line <= 2 && (line == 1 || p[-2] == '\r'))
			break;
	}
	/* The body, in pieces of 1 to 16 bytes. */
	while (n && x->kind != CL_HTTP_XFER_HEAD) {
		piece = 1 + (p[0] & 15);
		if (piece > n)
			piece = n;
		copy = (char *)fuzz_dup(p, piece);
		FUZZ_CHECK(copy);
		r = cl_http_xfer_body(x, (const char *)copy, piece);
		free(copy);
		if (r < 0)
			return CURLE_WRITE_ERROR;
		p += piece;
		n -= piece;
	}
	return end;
}

static const struct cl_http_ops fake_ops = {
    .perform = fake_perform,
    .sleep_ms = fake_sleep_ms,
};

struct sink {
	uint64_t next;    /* the offset the next piece must start at */
	unsigned calls;   /* pieces so far */
	unsigned give_up; /* fail at this piece (0: never) */
};

static int on_piece(void *ctx, uint64_t off, const void *data, size_t len)
{
	struct sink *s = ctx;

	FUZZ_CHECK(off == s->next);
	FUZZ_CHECK(len > 0 && data);
	s->next += len;
	if (++s->calls == s->give_up)
		return -EPIPE;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cl_source_opts opts = {0};
	unsigned flags = (unsigned)fuzz_take(&data, &size, 1);
	uint64_t roff = fuzz_take(&data, &size, 4), soff;
	size_t rlen = (size_t)fuzz_take(&data, &size, 2);
	unsigned sparams = (unsigned)fuzz_take(&data, &size, 1);
	struct sink sink = {0};
	struct cl_http *h;
	uint8_t *buf;
	int r;

	g_data = data;
	g_size = size;
	opts.retries = 1 + flags % 3;
	opts.connections = 1 + (flags >> 2) % 2;
	opts.timeout_ms = 1000;
	r = cl_http_open_ops("http://fuzz.invalid/overlay-blob", &opts, &fake_ops, &h);
	if (r < 0) {
		FUZZ_CHECK(r > -4096);
		cl_error_clear();
		return 0;
	}
	/* A ranged read: exactly rlen bytes or an error. */
	if (cl_http_size(h)) {
		roff %= cl_http_size(h);
		if (rlen > cl_http_size(h) - roff)
			rlen = (size_t)(cl_http_size(h) - roff);
		buf = malloc(rlen ? rlen : 1);
		FUZZ_CHECK(buf);
		r = cl_http_read(h, roff, rlen, buf);
		FUZZ_CHECK(r <= 0 && r > -4096);
		free(buf);
	}

	/* A stream from soff: contiguous pieces, and all of them on success. */
	soff = cl_http_size(h) ? (sparams & 15) % (cl_http_size(h) + 1) : 0;
	sink.next = soff;
	sink.give_up = sparams >> 4;
	r = cl_http_stream(h, soff, on_piece, &sink);
	if (r == 0)
		FUZZ_CHECK(sink.next == cl_http_size(h));
	else if (sink.give_up && sink.calls == sink.give_up)
		FUZZ_CHECK(r == -EPIPE);
	FUZZ_CHECK(r <= 0 && r > -4096);
	cl_http_close(h);
	cl_error_clear();
	return 0;
}
