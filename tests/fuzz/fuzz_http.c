/* HTTP response handling of the pack source (synth/cl_http.c): status
 * lines, ETag/Last-Modified pinning, Content-Length, Content-Range, short,
 * long and early-ending bodies, transient faults and retries.
 *
 * libcurl parses nothing here that cl_http.c relies on: cl_http.c's own
 * callbacks (on_header, on_body) and checks do. They are static, so the
 * target includes cl_http.c and replaces the two libcurl calls that would
 * touch the network: curl_easy_setopt (recorded) and curl_easy_perform
 * (feeds the next scripted response to the callbacks, line by line and in
 * small body pieces, as libcurl does). Retry back-off does not sleep.
 *
 * Input: 8 bytes of parameters (retries, read offset and length, stream
 * offset, when the stream consumer gives up), then the server's responses
 * separated by "\n@@\n". A response is header lines, an empty line, and the
 * body; a response starting with '!' and a digit makes the transfer end with
 * a libcurl error after it is delivered. Once the script runs out, every
 * request fails to connect. cl_http_open runs first (HEAD, then a bytes=0-0
 * probe), then a ranged read and a stream of the object. */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>
#include <stdint.h>
#include <time.h>

static CURLcode fake_perform(CURL *c);
static CURLcode fake_setopt(CURL *c, CURLoption opt, uintptr_t val);
static int fake_nanosleep(const struct timespec *req, struct timespec *rem);

#undef curl_easy_setopt
#define curl_easy_setopt(c, opt, val) fake_setopt(c, opt, (uintptr_t)(val))
#define curl_easy_perform             fake_perform
#define nanosleep                     fake_nanosleep

#include "cl_http.c"

#undef curl_easy_setopt
#undef curl_easy_perform
#undef nanosleep

#include "fuzz_common.h"

static const uint8_t *g_data; /* the rest of the script */
static size_t g_size;
static struct xfer *g_header_x, *g_body_x;
static int g_nobody;

static int fake_nanosleep(const struct timespec *req, struct timespec *rem)
{
	(void)req;
	(void)rem;
	return 0;
}

static CURLcode fake_setopt(CURL *c, CURLoption opt, uintptr_t val)
{
	(void)c;
	if (opt == CURLOPT_HEADERDATA)
		g_header_x = (struct xfer *)val;
	else if (opt == CURLOPT_WRITEDATA)
		g_body_x = (struct xfer *)val;
	else if (opt == CURLOPT_NOBODY)
		g_nobody = val != 0;
	else if (opt == CURLOPT_HTTPGET)
		g_nobody = 0;
	return CURLE_OK;
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

static CURLcode fake_perform(CURL *c)
{
	static const CURLcode faults[10] = {
	    CURLE_PARTIAL_FILE,         CURLE_OPERATION_TIMEDOUT,   CURLE_RECV_ERROR,
	    CURLE_COULDNT_CONNECT,      CURLE_WEIRD_SERVER_REPLY,   CURLE_GOT_NOTHING,
	    CURLE_TOO_MANY_REDIRECTS,   CURLE_UNSUPPORTED_PROTOCOL, CURLE_SSL_CONNECT_ERROR,
	    CURLE_COULDNT_RESOLVE_HOST,
	};
	struct xfer *x = g_header_x;
	CURLcode end = CURLE_OK;
	const uint8_t *p, *nl;
	size_t n, line, piece;
	char *copy;

	(void)c;
	FUZZ_CHECK(x && x == g_body_x);
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
		piece = on_header(copy, 1, line, x);
		free(copy);
		if (piece != line)
			return CURLE_WRITE_ERROR;
		p += line;
		n -= line;
		if (line <= 2 && (line == 1 || p[-2] == '\r'))
			break;
	}
	/* The body, in pieces of 1 to 16 bytes. */
	while (n && !g_nobody) {
		piece = 1 + (p[0] & 15);
		if (piece > n)
			piece = n;
		copy = (char *)fuzz_dup(p, piece);
		FUZZ_CHECK(copy);
		line = on_body(copy, 1, piece, x);
		free(copy);
		if (line != piece)
			return CURLE_WRITE_ERROR;
		p += piece;
		n -= piece;
	}
	return end;
}

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
	g_header_x = g_body_x = NULL;
	opts.retries = 1 + flags % 3;
	opts.connections = 1 + (flags >> 2) % 2;
	opts.timeout_ms = 1000;
	r = cl_http_open("http://fuzz.invalid/overlay-blob", &opts, &h);
	if (r < 0) {
		FUZZ_CHECK(r > -4096);
		cl_error_clear();
		return 0;
	}
	if (h->etag)
		FUZZ_CHECK(strlen(h->etag) < CL_HTTP_MAX_HEADER_BYTES);

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
