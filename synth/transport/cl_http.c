/* HTTP(S) backend of cl_source, on libcurl.
 *
 * The object is probed once at open (size, validators, Range support) and
 * every later response is checked against what was pinned then, so that a
 * pack replaced on the server mid-synthesis fails with -ESTALE instead of
 * mixing two versions. Reads are single range requests that either deliver
 * exactly the bytes asked or fail; a stream is one sequential GET that
 * resumes where it stopped after a transient fault.
 *
 * Threads: cl_http_read() and cl_http_stream() may run concurrently. Each
 * request borrows a curl easy handle from a small pool (one per connection,
 * so each keeps its own keep-alive connection); the handles share a DNS and
 * TLS session cache. Nothing sleeps while holding a lock or a pool handle. */
#include "cl_http.h"
#include "cl_error.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CL_HTTP_TIMEOUT_MS       30000u /* default bound on one request */
#define CL_HTTP_RETRIES          5u     /* default attempts after the first */
#define CL_HTTP_CONNECTIONS      4u     /* default pool size */
#define CL_HTTP_MAX_CONNECTIONS  64u
#define CL_HTTP_MAX_REDIRS       5L
#define CL_HTTP_CONNECT_MAX_MS   10000u /* connect timeout cap */
#define CL_HTTP_LOW_SPEED_BYTES  1024L  /* below this many bytes/s ... */
#define CL_HTTP_LOW_SPEED_MAX_S  10u    /* ... for this long (at most): stalled */
#define CL_HTTP_BACKOFF_MS       100u   /* first retry delay, doubling */
#define CL_HTTP_BACKOFF_MAX_MS   2000u
#define CL_HTTP_MAX_HEADER_BYTES (256u * 1024) /* per attempt, all responses */
#define CL_HTTP_BUFFER_BYTES     (128L * 1024)

#ifndef CURL_WRITEFUNC_ERROR
#define CURL_WRITEFUNC_ERROR 0xFFFFFFFF
#endif

/* One pooled easy handle and its connection. */
struct cl_http_conn {
	CURL *curl;
	char errbuf[CURL_ERROR_SIZE];
	struct cl_http_conn *next; /* pool_lock: idle list link */
};

struct cl_http {
	char *url;
	unsigned timeout_ms;
	unsigned retries;
	unsigned connections;
	unsigned connect_timeout_ms;
	unsigned low_speed_s;
	uint64_t pool_wait_ms; /* longest a request waits for a free handle */
	int https;

	/* Pinned at open, read-only afterwards. */
	uint64_t size;
	int ranges;
	int pinned;          /* the fields below are set: check responses */
	char *etag;          /* NULL if the server sent none */
	char *last_modified; /* NULL if the server sent none */

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

	atomic_int aborted; /* cl_http_abort: end transfers, no retries */

	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;  /* signalled when a handle goes idle */
	struct cl_http_conn *idle; /* pool_lock */
	unsigned nconns;           /* pool_lock: handles in existence */
};

enum xfer_kind {
	XFER_HEAD,   /* open: size and validators */
	XFER_PROBE,  /* open: GET bytes=0-0, does the server honour Range? */
	XFER_READ,   /* exactly len bytes at start */
	XFER_STREAM, /* start to the end, handed to fn */
};

/* State of one request (one attempt; the stream fields persist across). */
struct xfer {
	struct cl_http *h;
	enum xfer_kind kind;
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

	/* XFER_READ */
	char *buf;
	size_t len;

	/* XFER_STREAM */
	cl_source_stream_fn fn;
	void *ctx;
	uint64_t pos; /* next object offset to hand to fn */

	/* Outcome of the attempt. */
	int err;       /* fault found in a callback (already described) */
	int user;      /* err is fn's return value */
	int transient; /* a retry may succeed */
	int probe_done;
};

static pthread_once_t cl_http_once = PTHREAD_ONCE_INIT;
static CURLcode cl_http_init_code;

static void http_global_init(void)
{
	cl_http_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers ---------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static unsigned jitter(unsigned n)
{
	static _Thread_local uint64_t state;
	struct timespec ts;

	if (!state) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
		        (uint64_t)(uintptr_t)&state;
		state |= 1;
	}
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return n ? (unsigned)(state % n) : 0;
}

/* Waits before retry number attempt (0-based): 100 ms doubling up to 2 s,
 * each drawn from [d/2, d]. Called with no lock and no handle held. */
static void backoff(struct cl_http *h, unsigned attempt)
{
	unsigned d = CL_HTTP_BACKOFF_MS;
	struct timespec ts;

	while (attempt-- && d < CL_HTTP_BACKOFF_MAX_MS)
		d *= 2;
	if (d > CL_HTTP_BACKOFF_MAX_MS)
		d = CL_HTTP_BACKOFF_MAX_MS;
	d = d / 2 + jitter(d / 2 + 1);
	/* In 50 ms steps, so that an abort is not kept waiting. */
	while (d && !atomic_load(&h->aborted)) {
		unsigned step = d < 50 ? d : 50;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)step * 1000000;
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		d -= step;
	}
}

/* Parses a decimal number without sign or spaces; *end is past it. */
static int parse_u64(const char *s, const char **end, uint64_t *v)
{
	uint64_t n = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (n > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*end = s;
	*v = n;
	return 0;
}

/* Content-Range: "bytes FIRST-LAST/TOTAL"; FIRST-LAST or TOTAL may be "*". */
static int parse_content_range(struct xfer *x, const char *v)
{
	const char *p = v;

	if (strncasecmp(p, "bytes", 5))
		return -EINVAL;
	p += 5;
	while (*p == ' ' || *p == '=')
		p++;
	if (*p == '*') {
		x->cr_first = x->cr_last = UINT64_MAX;
		p++;
	} else {
		if (parse_u64(p, &p, &x->cr_first) < 0 || *p++ != '-' ||
		    parse_u64(p, &p, &x->cr_last) < 0 || x->cr_last < x->cr_first)
			return -EINVAL;
	}
	if (*p++ != '/')
		return -EINVAL;
	if (*p == '*') {
		x->cr_total = UINT64_MAX;
		p++;
	} else if (parse_u64(p, &p, &x->cr_total) < 0) {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	x->have_crange = 1;
	return 0;
}

static void xfer_clear_headers(struct xfer *x)
{
	free(x->etag);
	free(x->last_modified);
	x->etag = NULL;
	x->last_modified = NULL;
	x->status = 0;
	x->have_clen = 0;
	x->have_crange = 0;
}

/* Prepares x for a new attempt; the stream position and target persist. */
static void xfer_reset(struct xfer *x)
{
	xfer_clear_headers(x);
	x->header_bytes = 0;
	x->checked = 0;
	x->body_at = 0;
	x->err = 0;
	x->user = 0;
	x->transient = 0;
	x->probe_done = 0;
}

static void xfer_init(struct xfer *x, struct cl_http *h, enum xfer_kind kind)
{
	memset(x, 0, sizeof(*x));
	x->h = h;
	x->kind = kind;
}

static void xfer_fini(struct xfer *x)
{
	xfer_clear_headers(x);
}

/* ---- validation of a response ----------------------------------------- */

static int stale(struct cl_http *h, const char *what, const char *was, const char *now)
{
	return cl_errorf(-ESTALE, "%s: object changed mid-synthesis (%s %s, now %s)", h->url, what,
	                 was, now);
}

static int check_validators(struct xfer *x)
{
	struct cl_http *h = x->h;

	if (!h->pinned)
		return 0;
	if (h->etag && x->etag)
		return strcmp(h->etag, x->etag) ? stale(h, "ETag", h->etag, x->etag) : 0;
	if (h->last_modified && x->last_modified && strcmp(h->last_modified, x->last_modified))
		return stale(h, "Last-Modified", h->last_modified, x->last_modified);
	return 0;
}

static int check_total(struct xfer *x, uint64_t total)
{
	struct cl_http *h = x->h;
	char was[24], now[24];

	if (!h->pinned || total == h->size)
		return 0;
	snprintf(was, sizeof(was), "%llu", (unsigned long long)h->size);
	snprintf(now, sizeof(now), "%llu", (unsigned long long)total);
	return stale(h, "size", was, now);
}

/* Status codes shared by every kind of request. */
static int check_status(struct xfer *x)
{
	struct cl_http *h = x->h;
	long s = x->status;

	if (s == 200 || s == 206)
		return 0;
	if (s == 404 || s == 410)
		return cl_errorf(-ENOENT, "%s: not found (HTTP %ld)", h->url, s);
	if (s == 401 || s == 403 || s == 407)
		return cl_errorf(-EACCES, "%s: access denied (HTTP %ld)", h->url, s);
	if (s == 412)
		return cl_errorf(-ESTALE, "%s: object changed mid-synthesis (HTTP 412)", h->url);
	if (s == 416 && x->have_crange && x->cr_total != UINT64_MAX && h->pinned &&
	    x->cr_total != h->size)
		return check_total(x, x->cr_total);
	if (s == 408 || s == 429 || (s >= 500 && s <= 599)) {
		x->transient = 1;
		return cl_errorf(-EIO, "%s: server busy or failing (HTTP %ld)", h->url, s);
	}
	if (s == 0)
		return cl_errorf(-EPROTO, "%s: response without a status line", h->url);
	return cl_errorf(-EIO, "%s: unexpected HTTP status %ld", h->url, s);
}

/* Checks the final response's headers before its body is accepted (or
 * after the transfer if it had no body). Sets body_at. */
static int check_response(struct xfer *x)
{
	struct cl_http *h = x->h;
	uint64_t want;
	int r;

	x->checked = 1;
	if (x->kind == XFER_HEAD && (x->status == 405 || x->status == 501))
		return -ENOTSUP; /* HEAD refused: the caller probes with GET */
	if (x->kind == XFER_PROBE && x->status == 416 && x->have_crange &&
	    x->cr_total != UINT64_MAX) {
		/* bytes=0-0 of an empty object: size 0 */
		r = check_validators(x);
		return r < 0 ? r : check_total(x, x->cr_total);
	}
	r = check_status(x);
	if (r < 0)
		return r;
	r = check_validators(x);
	if (r < 0)
		return r;

	if (x->status == 200) {
		if (x->have_clen) {
			r = check_total(x, x->clen);
			if (r < 0)
				return r;
		}
		if (x->kind == XFER_READ && x->ranged)
			return cl_errorf(-EIO, "%s: server ignored the Range request (HTTP 200)",
			                 h->url);
		x->body_at = 0;
		return 0;
	}

	/* 206 */
	if (x->kind == XFER_HEAD || !x->ranged)
		return cl_errorf(
		    -EPROTO, "%s: partial content (HTTP 206) to a request without Range", h->url);
	if (!x->have_crange || x->cr_first == UINT64_MAX)
		return cl_errorf(-EPROTO, "%s: HTTP 206 without a valid Content-Range", h->url);
	if (x->cr_total != UINT64_MAX) {
		r = check_total(x, x->cr_total);
		if (r < 0)
			return r;
	}
	if (x->cr_first != x->start)
		return cl_errorf(-EPROTO, "%s: asked for bytes from %llu, server sent from %llu",
		                 h->url, (unsigned long long)x->start,
		                 (unsigned long long)x->cr_first);
	if (x->kind == XFER_READ)
		want = x->len;
	else if (x->kind == XFER_PROBE)
		want = 1;
	else
		want = h->size - x->start;
	if (x->cr_last - x->cr_first + 1 != want)
		return cl_errorf(-EPROTO, "%s: asked for %llu bytes at %llu, server sent %llu-%llu",
		                 h->url, (unsigned long long)want, (unsigned long long)x->start,
		                 (unsigned long long)x->cr_first, (unsigned long long)x->cr_last);
	if (x->have_clen && x->clen != want)
		return cl_errorf(
		    -EPROTO, "%s: Content-Length %llu does not match the %llu bytes of the range",
		    h->url, (unsigned long long)x->clen, (unsigned long long)want);
	x->body_at = x->cr_first;
	return 0;
}

/* ---- curl callbacks --------------------------------------------------- */

static char *dup_value(const char *v, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, v, n);
		s[n] = '\0';
	}
	return s;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nitems, namelen, vlen;
	const char *colon, *v;
	char line[128];
	uint64_t num;
	const char *end;

	x->header_bytes += n;
	if (x->header_bytes > CL_HTTP_MAX_HEADER_BYTES) {
		x->err = cl_errorf(-EPROTO, "%s: response headers larger than %u bytes", x->h->url,
		                   CL_HTTP_MAX_HEADER_BYTES);
		return 0;
	}
	while (n && (data[n - 1] == '\n' || data[n - 1] == '\r'))
		n--;
	if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
		/* A new response (redirects, interim ones): forget the last. */
		xfer_clear_headers(x);
		v = memchr(data, ' ', n);
		if (v && (size_t)(v - data) + 4 <= n && v[1] >= '1' && v[1] <= '5' && v[2] >= '0' &&
		    v[2] <= '9' && v[3] >= '0' && v[3] <= '9')
			x->status = (v[1] - '0') * 100 + (v[2] - '0') * 10 + (v[3] - '0');
		return size * nitems;
	}
	colon = memchr(data, ':', n);
	if (!colon)
		return size * nitems;
	namelen = (size_t)(colon - data);
	v = colon + 1;
	vlen = n - namelen - 1;
	while (vlen && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;

	if (namelen == 4 && !strncasecmp(data, "etag", 4)) {
		free(x->etag);
		x->etag = dup_value(v, vlen);
		if (!x->etag)
			goto nomem;
	} else if (namelen == 13 && !strncasecmp(data, "last-modified", 13)) {
		free(x->last_modified);
		x->last_modified = dup_value(v, vlen);
		if (!x->last_modified)
			goto nomem;
	} else if (namelen == 14 && !strncasecmp(data, "content-length", 14)) {
		if (vlen >= sizeof(line))
			goto bad;
		memcpy(line, v, vlen);
		line[vlen] = '\0';
		if (parse_u64(line, &end, &num) < 0 || *end)
			goto bad;
		x->have_clen = 1;
		x->clen = num;
	} else if (namelen == 13 && !strncasecmp(data, "content-range", 13)) {
		if (vlen >= sizeof(line))
			goto bad;
		memcpy(line, v, vlen);
		line[vlen] = '\0';
		if (parse_content_range(x, line) < 0)
			goto bad;
	}
	return size * nitems;

bad:
	x->err = cl_errorf(-EPROTO, "%s: malformed header: %.*s", x->h->url,
	                   (int)(n > 200 ? 200 : n), data);
	return 0;
nomem:
	x->err = -ENOMEM;
	return 0;
}

static size_t on_body(char *data, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	struct cl_http *h = x->h;
	size_t n = size * nitems, skip;
	uint64_t at;
	int r;

	if (!x->checked) {
		r = check_response(x);
		if (r < 0) {
			x->err = r;
			return CURL_WRITEFUNC_ERROR;
		}
	}
	switch (x->kind) {
	case XFER_HEAD:
		return n;
	case XFER_PROBE:
		x->probe_done = 1; /* the headers told all; never take a whole object */
		return x->status == 206 && n <= 1 ? n : CURL_WRITEFUNC_ERROR;
	case XFER_READ:
		if (n > x->len - (size_t)(x->body_at - x->start)) {
			x->err = cl_errorf(-EPROTO, "%s: server sent more than the %zu bytes asked",
			                   h->url, x->len);
			return CURL_WRITEFUNC_ERROR;
		}
		memcpy(x->buf + (x->body_at - x->start), data, n);
		x->body_at += n;
		return n;
	case XFER_STREAM:
		if (n > h->size - x->body_at) {
			x->err = cl_errorf(-ESTALE,
			                   "%s: object changed mid-synthesis (body longer than "
			                   "its %llu bytes)",
			                   h->url, (unsigned long long)h->size);
			return CURL_WRITEFUNC_ERROR;
		}
		at = x->body_at;
		x->body_at += n;
		if (x->body_at <= x->pos)
			return n; /* before the resume point: already delivered */
		skip = at < x->pos ? (size_t)(x->pos - at) : 0;
		r = x->fn(x->ctx, x->pos, data + skip, n - skip);
		if (r) {
			x->err = r;
			x->user = 1;
			return CURL_WRITEFUNC_ERROR;
		}
		x->pos += n - skip;
		return n;
	}
	return CURL_WRITEFUNC_ERROR;
}

static void share_lock(CURL *c, curl_lock_data data, curl_lock_access access, void *arg)
{
	struct cl_http *h = arg;

	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&h->share_locks[data]);
}

static void share_unlock(CURL *c, curl_lock_data data, void *arg)
{
	struct cl_http *h = arg;

	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&h->share_locks[data]);
}

/* ---- handle pool ------------------------------------------------------ */

/* Called by libcurl at least once a second, also while nothing arrives:
 * the point where cl_http_abort() ends a transfer. */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
	struct cl_http *h = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load(&h->aborted) ? 1 : 0;
}

static int conn_new(struct cl_http *h, struct cl_http_conn **out)
{
	const char *protos = h->https ? "https" : "http,https";
	struct cl_http_conn *cn;
	CURLcode cc = CURLE_OK;
	CURL *c;

	cn = calloc(1, sizeof(*cn));
	if (!cn)
		return -ENOMEM;
	c = curl_easy_init();
	if (!c) {
		free(cn);
		return cl_errorf(-ENOMEM, "%s: cannot create a curl handle", h->url);
	}
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (cc == CURLE_OK)                                                                \
			cc = curl_easy_setopt(c, opt, val);                                        \
	} while (0)
	SET(CURLOPT_URL, h->url);
	SET(CURLOPT_ERRORBUFFER, cn->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, protos);
	SET(CURLOPT_REDIR_PROTOCOLS_STR, protos); /* never https -> http */
#else
	SET(CURLOPT_PROTOCOLS, h->https ? CURLPROTO_HTTPS : CURLPROTO_HTTP | CURLPROTO_HTTPS);
	SET(CURLOPT_REDIR_PROTOCOLS, h->https ? CURLPROTO_HTTPS : CURLPROTO_HTTP | CURLPROTO_HTTPS);
	(void)protos;
#endif
	SET(CURLOPT_FOLLOWLOCATION, 1L);
	SET(CURLOPT_MAXREDIRS, CL_HTTP_MAX_REDIRS);
	SET(CURLOPT_CONNECTTIMEOUT_MS, (long)h->connect_timeout_ms);
	SET(CURLOPT_LOW_SPEED_LIMIT, CL_HTTP_LOW_SPEED_BYTES);
	SET(CURLOPT_LOW_SPEED_TIME, (long)h->low_speed_s);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_BUFFERSIZE, CL_HTTP_BUFFER_BYTES);
	SET(CURLOPT_USERAGENT, "cloudlet");
	SET(CURLOPT_SHARE, h->share);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_NOPROGRESS, 0L);
	SET(CURLOPT_XFERINFOFUNCTION, on_progress);
	SET(CURLOPT_XFERINFODATA, h);
#undef SET
	if (cc != CURLE_OK) {
		curl_easy_cleanup(c);
		free(cn);
		return cl_errorf(-EINVAL, "%s: cannot set up curl: %s", h->url,
		                 curl_easy_strerror(cc));
	}
	cn->curl = c;
	*out = cn;
	return 0;
}

static void conn_free(struct cl_http_conn *cn)
{
	curl_easy_cleanup(cn->curl);
	free(cn);
}

/* Takes an idle handle, creates one if fewer than connections exist, or
 * waits (bounded) for one to be released. */
static int conn_get(struct cl_http *h, struct cl_http_conn **out)
{
	uint64_t deadline = now_ms() + h->pool_wait_ms, t;
	struct timespec ts;
	int r = 0;

	pthread_mutex_lock(&h->pool_lock);
	for (;;) {
		if (h->idle) {
			*out = h->idle;
			h->idle = h->idle->next;
			pthread_mutex_unlock(&h->pool_lock);
			return 0;
		}
		if (h->nconns < h->connections) {
			h->nconns++;
			pthread_mutex_unlock(&h->pool_lock);
			r = conn_new(h, out);
			if (r < 0) {
				pthread_mutex_lock(&h->pool_lock);
				h->nconns--;
				pthread_cond_signal(&h->pool_cond);
				pthread_mutex_unlock(&h->pool_lock);
			}
			return r;
		}
		t = now_ms();
		if (t >= deadline)
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		t = deadline - t;
		ts.tv_sec += (time_t)(t / 1000);
		ts.tv_nsec += (long)(t % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&h->pool_cond, &h->pool_lock, &ts);
	}
	pthread_mutex_unlock(&h->pool_lock);
	return cl_errorf(-ETIMEDOUT, "%s: all %u connections stayed busy for %llu ms", h->url,
	                 h->connections, (unsigned long long)h->pool_wait_ms);
}

static void conn_put(struct cl_http *h, struct cl_http_conn *cn)
{
	pthread_mutex_lock(&h->pool_lock);
	cn->next = h->idle;
	h->idle = cn;
	pthread_cond_signal(&h->pool_cond);
	pthread_mutex_unlock(&h->pool_lock);
}

/* ---- one request ------------------------------------------------------ */

/* Describes a failed transfer; sets x->transient for faults worth a retry. */
static int curl_fault(struct cl_http *h, struct cl_http_conn *cn, CURLcode cc, struct xfer *x)
{
	const char *why = cn->errbuf[0] ? cn->errbuf : curl_easy_strerror(cc);
	curl_off_t connect_us = 0;
	long oserr = 0;

	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		x->transient = 1;
		curl_easy_getinfo(cn->curl, CURLINFO_OS_ERRNO, &oserr);
		if (oserr)
			why = strerror((int)oserr);
		if (oserr == EHOSTUNREACH || oserr == ENETUNREACH)
			return cl_errorf(-EHOSTUNREACH, "%s: host unreachable: %s", h->url, why);
		return cl_errorf(-ECONNREFUSED, "%s: cannot connect: %s", h->url, why);
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		x->transient = 1;
		return cl_errorf(-EHOSTUNREACH, "%s: cannot resolve host: %s", h->url, why);
	case CURLE_OPERATION_TIMEDOUT:
		x->transient = 1;
		curl_easy_getinfo(cn->curl, CURLINFO_CONNECT_TIME_T, &connect_us);
		if (!connect_us && !x->header_bytes)
			return cl_errorf(-EHOSTUNREACH,
			                 "%s: host unreachable: no connection in %u ms", h->url,
			                 h->connect_timeout_ms);
		return cl_errorf(-ETIMEDOUT, "%s: server stalled or too slow: %s", h->url, why);
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		x->transient = 1;
		return cl_errorf(-ECONNRESET, "%s: connection lost: %s", h->url, why);
	case CURLE_PARTIAL_FILE:
		x->transient = 1;
		return cl_errorf(-EIO, "%s: short body: %s", h->url, why);
	case CURLE_TOO_MANY_REDIRECTS:
		return cl_errorf(-ELOOP, "%s: more than %ld redirects", h->url, CL_HTTP_MAX_REDIRS);
	case CURLE_UNSUPPORTED_PROTOCOL:
		return cl_errorf(-EPROTONOSUPPORT,
		                 "%s: refused (redirect to) an unsupported scheme: %s", h->url,
		                 why);
	case CURLE_URL_MALFORMAT:
		return cl_errorf(-EINVAL, "%s: malformed URL: %s", h->url, why);
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return cl_errorf(-EACCES, "%s: TLS verification failed: %s", h->url, why);
	case CURLE_WEIRD_SERVER_REPLY:
		return cl_errorf(-EPROTO, "%s: malformed response: %s", h->url, why);
	default:
		return cl_errorf(-EIO, "%s: %s", h->url, why);
	}
}

static int perform(struct cl_http *h, struct cl_http_conn *cn, struct xfer *x)
{
	CURL *c = cn->curl;
	CURLcode cc = CURLE_OK;
	int r;

	xfer_reset(x);
	cn->errbuf[0] = '\0';
	if (x->ranged) {
		if (x->kind == XFER_READ || x->kind == XFER_PROBE)
			snprintf(x->range, sizeof(x->range), "%llu-%llu",
			         (unsigned long long)x->start,
			         (unsigned long long)(x->start +
			                              (x->kind == XFER_READ ? x->len : 1) - 1));
		else
			snprintf(x->range, sizeof(x->range), "%llu-", (unsigned long long)x->start);
	}
	if (x->kind == XFER_HEAD) {
		cc = curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else {
		cc = curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(c, CURLOPT_RANGE, x->ranged ? x->range : NULL);
	/* A stream may take long: only stalls bound it, not the total. */
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
		                      x->kind == XFER_STREAM ? 0L : (long)h->timeout_ms);
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	if (cc != CURLE_OK)
		return cl_errorf(-EINVAL, "%s: cannot set up curl: %s", h->url,
		                 curl_easy_strerror(cc));

	cc = curl_easy_perform(c);
	if (x->err)
		return x->err;
	if (x->probe_done && cc == CURLE_WRITE_ERROR)
		return 0;
	if (cc != CURLE_OK)
		return curl_fault(h, cn, cc, x);
	if (!x->checked) {
		r = check_response(x);
		if (r < 0)
			return r;
	}
	switch (x->kind) {
	case XFER_READ:
		if (x->body_at - x->start != x->len) {
			x->transient = 1;
			return cl_errorf(-EIO, "%s: short body: %llu of %zu bytes at %llu", h->url,
			                 (unsigned long long)(x->body_at - x->start), x->len,
			                 (unsigned long long)x->start);
		}
		break;
	case XFER_STREAM:
		if (x->pos != h->size) {
			x->transient = 1;
			return cl_errorf(-EIO, "%s: body ended early at %llu of %llu bytes", h->url,
			                 (unsigned long long)x->pos, (unsigned long long)h->size);
		}
		break;
	default:
		break;
	}
	return 0;
}

/* Tells that retries were spent, keeping the cause. */
static int gave_up(int r, unsigned attempts)
{
	char msg[768];

	if (attempts < 2)
		return r;
	snprintf(msg, sizeof(msg), "%s", cl_error_msg());
	return cl_errorf(r, "%s (gave up after %u attempts)", msg, attempts);
}

/* Runs a request, retrying transient faults with backoff. */
static int run(struct cl_http *h, struct xfer *x)
{
	struct cl_http_conn *cn;
	unsigned attempt;
	int r;

	for (attempt = 0;; attempt++) {
		r = conn_get(h, &cn);
		if (r < 0)
			return r;
		r = perform(h, cn, x);
		conn_put(h, cn);
		if (atomic_load(&h->aborted))
			return cl_errorf(-ECANCELED, "%s: transfer cancelled (shutting down)",
			                 h->url);
		if (r >= 0 || !x->transient || attempt >= h->retries)
			break;
		backoff(h, attempt);
	}
	if (r < 0 && x->transient)
		r = gave_up(r, attempt + 1);
	return r;
}

/* ---- open ------------------------------------------------------------- */

static int pin(struct cl_http *h, struct xfer *x, uint64_t size)
{
	h->size = size;
	if (x->etag) {
		h->etag = strdup(x->etag);
		if (!h->etag)
			return -ENOMEM;
	}
	if (x->last_modified) {
		h->last_modified = strdup(x->last_modified);
		if (!h->last_modified)
			return -ENOMEM;
	}
	h->pinned = 1;
	return 0;
}

static int probe(struct cl_http *h)
{
	struct xfer x;
	int r;

	xfer_init(&x, h, XFER_HEAD);
	r = run(h, &x);
	if (r < 0 && r != -ENOTSUP)
		goto out;
	if (r == 0 && x.have_clen) {
		r = pin(h, &x, x.clen);
		if (r < 0)
			goto out;
		if (!h->size) {
			h->ranges = 1; /* nothing to ask a range of */
			goto out;
		}
	}

	/* GET bytes=0-0: 206 means ranges work, 200 that they are ignored. */
	xfer_fini(&x);
	xfer_init(&x, h, XFER_PROBE);
	x.ranged = 1;
	r = run(h, &x);
	if (r < 0)
		goto out;
	if (x.status == 416) {
		h->ranges = 1;
		if (!h->pinned)
			r = pin(h, &x, x.cr_total);
		goto out;
	}
	h->ranges = x.status == 206;
	if (!h->pinned) {
		if (x.status == 206 && x.cr_total != UINT64_MAX)
			r = pin(h, &x, x.cr_total);
		else if (x.status == 200 && x.have_clen)
			r = pin(h, &x, x.clen);
		else
			r = cl_errorf(-EPROTO, "%s: server does not tell the object's size",
			              h->url);
	}
out:
	xfer_fini(&x);
	return r;
}

int cl_http_open(const char *url, const struct cl_source_opts *opts, struct cl_http **out)
{
	struct cl_http *h;
	unsigned i;
	int r;

	if (!url || !out)
		return -EINVAL;
	pthread_once(&cl_http_once, http_global_init);
	if (cl_http_init_code != CURLE_OK)
		return cl_errorf(-EIO, "%s: cannot initialise libcurl: %s", url,
		                 curl_easy_strerror(cl_http_init_code));
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->url = strdup(url);
	if (!h->url) {
		r = -ENOMEM;
		goto fail_free;
	}
	h->https = !strncasecmp(url, "https://", 8);
	h->timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms : CL_HTTP_TIMEOUT_MS;
	h->retries = opts && opts->retries ? opts->retries : CL_HTTP_RETRIES;
	h->connections = opts && opts->connections ? opts->connections : CL_HTTP_CONNECTIONS;
	if (h->connections > CL_HTTP_MAX_CONNECTIONS)
		h->connections = CL_HTTP_MAX_CONNECTIONS;
	h->connect_timeout_ms =
	    h->timeout_ms < CL_HTTP_CONNECT_MAX_MS ? h->timeout_ms : CL_HTTP_CONNECT_MAX_MS;
	h->low_speed_s = h->timeout_ms / 3000;
	if (h->low_speed_s < 1)
		h->low_speed_s = 1;
	if (h->low_speed_s > CL_HTTP_LOW_SPEED_MAX_S)
		h->low_speed_s = CL_HTTP_LOW_SPEED_MAX_S;
	/* As long as one other request may legitimately take, retries included. */
	h->pool_wait_ms = (uint64_t)h->timeout_ms * (h->retries + 1) +
	                  (uint64_t)CL_HTTP_BACKOFF_MAX_MS * h->retries;

	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&h->share_locks[i], NULL);
	pthread_mutex_init(&h->pool_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&h->pool_cond, &ca);
		pthread_condattr_destroy(&ca);
	}

	h->share = curl_share_init();
	if (!h->share) {
		r = -ENOMEM;
		goto fail_locks;
	}
	/* DNS and TLS sessions only: sharing live connections between
	 * threads is not safe in libcurl; each handle keeps its own. */
	if (curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock) ||
	    curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
	    curl_share_setopt(h->share, CURLSHOPT_USERDATA, h) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION)) {
		r = cl_errorf(-EIO, "%s: cannot set up a curl share", url);
		goto fail_share;
	}

	r = probe(h);
	if (r < 0)
		goto fail_pool;
	*out = h;
	return 0;

fail_pool:
	while (h->idle) {
		struct cl_http_conn *cn = h->idle;

		h->idle = cn->next;
		conn_free(cn);
	}
	free(h->etag);
	free(h->last_modified);
fail_share:
	curl_share_cleanup(h->share);
fail_locks:
	pthread_cond_destroy(&h->pool_cond);
	pthread_mutex_destroy(&h->pool_lock);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&h->share_locks[i]);
	free(h->url);
fail_free:
	free(h);
	return r;
}

uint64_t cl_http_size(const struct cl_http *h)
{
	return h->size;
}

void cl_http_abort(struct cl_http *h)
{
	if (h)
		atomic_store(&h->aborted, 1);
}

int cl_http_has_ranges(const struct cl_http *h)
{
	return h->ranges;
}

int cl_http_read(struct cl_http *h, uint64_t off, size_t len, void *buf)
{
	struct xfer x;
	int r;

	if (!h || (!buf && len))
		return -EINVAL;
	if (off > h->size || len > h->size - off)
		return cl_errorf(-EIO, "%s: read of %zu bytes at %llu is past its end (%llu bytes)",
		                 h->url, len, (unsigned long long)off, (unsigned long long)h->size);
	if (!len)
		return 0;
	xfer_init(&x, h, XFER_READ);
	x.start = off;
	x.buf = buf;
	x.len = len;
	x.ranged = 1;
	if (!h->ranges) {
		/* The whole object still works with a plain GET. */
		if (off || len != h->size)
			return cl_errorf(-EOPNOTSUPP,
			                 "%s: server ignores Range requests: cannot read %zu bytes "
			                 "at %llu (only streaming the whole object works)",
			                 h->url, len, (unsigned long long)off);
		x.ranged = 0;
	}
	r = run(h, &x);
	xfer_fini(&x);
	return r;
}

int cl_http_stream(struct cl_http *h, uint64_t off, cl_source_stream_fn fn, void *ctx)
{
	struct cl_http_conn *cn;
	unsigned fails = 0;
	uint64_t before;
	struct xfer x;
	int r;

	if (!h || !fn)
		return -EINVAL;
	if (off > h->size)
		return cl_errorf(-EIO, "%s: stream from %llu is past its end (%llu bytes)", h->url,
		                 (unsigned long long)off, (unsigned long long)h->size);
	if (off == h->size)
		return 0;
	xfer_init(&x, h, XFER_STREAM);
	x.fn = fn;
	x.ctx = ctx;
	x.pos = off;
	for (;;) {
		/* Resume where the last attempt stopped; without ranges,
		 * start over and skip what was delivered. */
		x.ranged = h->ranges && x.pos > 0;
		x.start = x.ranged ? x.pos : 0;
		before = x.pos;
		r = conn_get(h, &cn);
		if (r < 0)
			break;
		r = perform(h, cn, &x);
		conn_put(h, cn);
		if (atomic_load(&h->aborted)) {
			r = cl_errorf(-ECANCELED, "%s: transfer cancelled (shutting down)", h->url);
			break;
		}
		if (r == 0 || x.user || !x.transient)
			break;
		if (x.pos > before)
			fails = 0; /* progress: a fresh retry budget */
		if (fails >= h->retries)
			break;
		backoff(h, fails++);
	}
	if (r < 0 && r != -ECANCELED && !x.user && x.transient)
		r = gave_up(r, fails + 1);
	xfer_fini(&x);
	return r;
}

void cl_http_close(struct cl_http *h)
{
	struct cl_http_conn *cn;
	unsigned i;

	if (!h)
		return;
	/* The caller guarantees no request is running: all handles are idle. */
	while (h->idle) {
		cn = h->idle;
		h->idle = cn->next;
		conn_free(cn);
	}
	curl_share_cleanup(h->share);
	pthread_cond_destroy(&h->pool_cond);
	pthread_mutex_destroy(&h->pool_lock);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&h->share_locks[i]);
	free(h->etag);
	free(h->last_modified);
	free(h->url);
	free(h);
}
