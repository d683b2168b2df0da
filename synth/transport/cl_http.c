/* SPDX-License-Identifier: GPL-2.0-only */
/* HTTP(S) backend of cl_source, on libcurl: the handle pool, one request
 * and its retries, open, read and stream. What a response must look like
 * is cl_http_check.c's.
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
#include "cl_http_check.h"
#include "cl_error.h"
#include "cl_util.h"

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

#define CL_HTTP_TIMEOUT_MS      30000u /* default bound on one request */
#define CL_HTTP_RETRIES         5u     /* default attempts after the first */
#define CL_HTTP_CONNECTIONS     4u     /* default pool size */
#define CL_HTTP_MAX_CONNECTIONS 64u
#define CL_HTTP_MAX_REDIRS      5L
#define CL_HTTP_CONNECT_MAX_MS  10000u /* connect timeout cap */
#define CL_HTTP_LOW_SPEED_BYTES 1024L  /* below this many bytes/s ... */
#define CL_HTTP_LOW_SPEED_MAX_S 10u    /* ... for this long (at most): stalled */
#define CL_HTTP_BACKOFF_MS      100u   /* first retry delay, doubling */
#define CL_HTTP_BACKOFF_MAX_MS  2000u
#define CL_HTTP_BUFFER_BYTES    (128L * 1024)

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
	struct cl_http_object obj; /* the URL; pinned at open, read-only afterwards */
	const struct cl_http_ops *ops;
	unsigned timeout_ms;
	unsigned retries;
	unsigned connections;
	unsigned connect_timeout_ms;
	unsigned low_speed_s;
	uint64_t pool_wait_ms; /* longest a request waits for a free handle */
	int https;
	int ranges; /* pinned at open: the server honours Range */

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

	atomic_int aborted; /* cl_http_abort: end transfers, no retries */

	pthread_mutex_t pool_lock;
	pthread_cond_t pool_cond;  /* signalled when a handle goes idle */
	struct cl_http_conn *idle; /* pool_lock */
	unsigned nconns;           /* pool_lock: handles in existence */
};

static pthread_once_t cl_http_once = PTHREAD_ONCE_INIT;
static CURLcode cl_http_init_code;

static void http_global_init(void)
{
	cl_http_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers ---------------------------------------------------- */

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

	while (attempt-- && d < CL_HTTP_BACKOFF_MAX_MS)
		d *= 2;
	if (d > CL_HTTP_BACKOFF_MAX_MS)
		d = CL_HTTP_BACKOFF_MAX_MS;
	d = d / 2 + jitter(d / 2 + 1);
	/* In 50 ms steps, so that an abort is not kept waiting. */
	while (d && !atomic_load(&h->aborted)) {
		unsigned step = d < 50 ? d : 50;
		h->ops->sleep_ms(step);
		d -= step;
	}
}

/* ---- the network, as cl_http_ops -------------------------------------- */

static CURLcode curl_perform(CURL *c, struct cl_http_xfer *x)
{
	(void)x; /* reached through CURLOPT_HEADERDATA and CURLOPT_WRITEDATA */
	return curl_easy_perform(c);
}

static void sleep_ms(unsigned ms)
{
	cl_sleep_ms(ms);
}

static const struct cl_http_ops curl_ops = {
    .perform = curl_perform,
    .sleep_ms = sleep_ms,
};

/* ---- curl callbacks --------------------------------------------------- */

static size_t on_header(char *data, size_t size, size_t nitems, void *arg)
{
	return cl_http_xfer_header(arg, data, size * nitems) < 0 ? 0 : size * nitems;
}

static size_t on_body(char *data, size_t size, size_t nitems, void *arg)
{
	return cl_http_xfer_body(arg, data, size * nitems) < 0 ? CURL_WRITEFUNC_ERROR
	                                                       : size * nitems;
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
		return cl_errorf(-ENOMEM, "%s: cannot create a curl handle", h->obj.url);
	}
#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (cc == CURLE_OK)                                                                \
			cc = curl_easy_setopt(c, opt, val);                                        \
	} while (0)
	SET(CURLOPT_URL, h->obj.url);
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
		return cl_errorf(-EINVAL, "%s: cannot set up curl: %s", h->obj.url,
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
	double deadline = cl_now() + (double)h->pool_wait_ms / 1000;
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
		if (cl_cond_wait_until(&h->pool_cond, &h->pool_lock, deadline) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&h->pool_lock);
	return cl_errorf(-ETIMEDOUT, "%s: all %u connections stayed busy for %llu ms", h->obj.url,
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
static int curl_fault(struct cl_http *h, struct cl_http_conn *cn, CURLcode cc,
                      struct cl_http_xfer *x)
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
			return cl_errorf(-EHOSTUNREACH, "%s: host unreachable: %s", h->obj.url,
			                 why);
		return cl_errorf(-ECONNREFUSED, "%s: cannot connect: %s", h->obj.url, why);
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		x->transient = 1;
		return cl_errorf(-EHOSTUNREACH, "%s: cannot resolve host: %s", h->obj.url, why);
	case CURLE_OPERATION_TIMEDOUT:
		x->transient = 1;
		curl_easy_getinfo(cn->curl, CURLINFO_CONNECT_TIME_T, &connect_us);
		if (!connect_us && !x->header_bytes)
			return cl_errorf(-EHOSTUNREACH,
			                 "%s: host unreachable: no connection in %u ms", h->obj.url,
			                 h->connect_timeout_ms);
		return cl_errorf(-ETIMEDOUT, "%s: server stalled or too slow: %s", h->obj.url, why);
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		x->transient = 1;
		return cl_errorf(-ECONNRESET, "%s: connection lost: %s", h->obj.url, why);
	case CURLE_PARTIAL_FILE:
		x->transient = 1;
		return cl_errorf(-EIO, "%s: short body: %s", h->obj.url, why);
	case CURLE_TOO_MANY_REDIRECTS:
		return cl_errorf(-ELOOP, "%s: more than %ld redirects", h->obj.url,
		                 CL_HTTP_MAX_REDIRS);
	case CURLE_UNSUPPORTED_PROTOCOL:
		return cl_errorf(-EPROTONOSUPPORT,
		                 "%s: refused (redirect to) an unsupported scheme: %s", h->obj.url,
		                 why);
	case CURLE_URL_MALFORMAT:
		return cl_errorf(-EINVAL, "%s: malformed URL: %s", h->obj.url, why);
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return cl_errorf(-EACCES, "%s: TLS verification failed: %s", h->obj.url, why);
	case CURLE_WEIRD_SERVER_REPLY:
		return cl_errorf(-EPROTO, "%s: malformed response: %s", h->obj.url, why);
	default:
		return cl_errorf(-EIO, "%s: %s", h->obj.url, why);
	}
}

static int perform(struct cl_http *h, struct cl_http_conn *cn, struct cl_http_xfer *x)
{
	CURL *c = cn->curl;
	CURLcode cc = CURLE_OK;
	int r;

	cl_http_xfer_reset(x);
	cn->errbuf[0] = '\0';
	if (x->ranged) {
		if (x->kind == CL_HTTP_XFER_READ || x->kind == CL_HTTP_XFER_PROBE)
			snprintf(
			    x->range, sizeof(x->range), "%llu-%llu", (unsigned long long)x->start,
			    (unsigned long long)(x->start +
			                         (x->kind == CL_HTTP_XFER_READ ? x->len : 1) - 1));
		else
			snprintf(x->range, sizeof(x->range), "%llu-", (unsigned long long)x->start);
	}
	if (x->kind == CL_HTTP_XFER_HEAD) {
		cc = curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else {
		cc = curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(c, CURLOPT_RANGE, x->ranged ? x->range : NULL);
	/* A stream may take long: only stalls bound it, not the total. */
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
		                      x->kind == CL_HTTP_XFER_STREAM ? 0L : (long)h->timeout_ms);
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	if (cc == CURLE_OK)
		cc = curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	if (cc != CURLE_OK)
		return cl_errorf(-EINVAL, "%s: cannot set up curl: %s", h->obj.url,
		                 curl_easy_strerror(cc));

	cc = h->ops->perform(c, x);
	if (x->err)
		return x->err;
	if (x->probe_done && cc == CURLE_WRITE_ERROR)
		return 0;
	if (cc != CURLE_OK)
		return curl_fault(h, cn, cc, x);
	if (!x->checked) {
		r = cl_http_xfer_check(x);
		if (r < 0)
			return r;
	}
	switch (x->kind) {
	case CL_HTTP_XFER_READ:
		if (x->body_at - x->start != x->len) {
			x->transient = 1;
			return cl_errorf(-EIO, "%s: short body: %llu of %zu bytes at %llu",
			                 h->obj.url, (unsigned long long)(x->body_at - x->start),
			                 x->len, (unsigned long long)x->start);
		}
		break;
	case CL_HTTP_XFER_STREAM:
		if (x->pos != h->obj.size) {
			x->transient = 1;
			return cl_errorf(-EIO, "%s: body ended early at %llu of %llu bytes",
			                 h->obj.url, (unsigned long long)x->pos,
			                 (unsigned long long)h->obj.size);
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
static int run(struct cl_http *h, struct cl_http_xfer *x)
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
			                 h->obj.url);
		if (r >= 0 || !x->transient || attempt >= h->retries)
			break;
		backoff(h, attempt);
	}
	if (r < 0 && x->transient)
		r = gave_up(r, attempt + 1);
	return r;
}

/* ---- open ------------------------------------------------------------- */

static int probe(struct cl_http *h)
{
	struct cl_http_xfer x;
	int r;

	cl_http_xfer_init(&x, &h->obj, CL_HTTP_XFER_HEAD);
	r = run(h, &x);
	if (r < 0 && r != -ENOTSUP)
		goto out;
	if (r == 0 && x.have_clen) {
		r = cl_http_object_pin(&h->obj, &x, x.clen);
		if (r < 0)
			goto out;
		if (!h->obj.size) {
			h->ranges = 1; /* nothing to ask a range of */
			goto out;
		}
	}

	/* GET bytes=0-0: 206 means ranges work, 200 that they are ignored. */
	cl_http_xfer_fini(&x);
	cl_http_xfer_init(&x, &h->obj, CL_HTTP_XFER_PROBE);
	x.ranged = 1;
	r = run(h, &x);
	if (r < 0)
		goto out;
	if (x.status == 416) {
		h->ranges = 1;
		if (!h->obj.pinned)
			r = cl_http_object_pin(&h->obj, &x, x.cr_total);
		goto out;
	}
	h->ranges = x.status == 206;
	if (!h->obj.pinned) {
		if (x.status == 206 && x.cr_total != UINT64_MAX)
			r = cl_http_object_pin(&h->obj, &x, x.cr_total);
		else if (x.status == 200 && x.have_clen)
			r = cl_http_object_pin(&h->obj, &x, x.clen);
		else
			r = cl_errorf(-EPROTO, "%s: server does not tell the object's size",
			              h->obj.url);
	}
out:
	cl_http_xfer_fini(&x);
	return r;
}

int cl_http_open(const char *url, const struct cl_source_opts *opts, struct cl_http **out)
{
	return cl_http_open_ops(url, opts, &curl_ops, out);
}

int cl_http_open_ops(const char *url, const struct cl_source_opts *opts,
                     const struct cl_http_ops *ops, struct cl_http **out)
{
	struct cl_http *h;
	unsigned i;
	int r;

	if (!url || !ops || !out)
		return -EINVAL;
	pthread_once(&cl_http_once, http_global_init);
	if (cl_http_init_code != CURLE_OK)
		return cl_errorf(-EIO, "%s: cannot initialise libcurl: %s", url,
		                 curl_easy_strerror(cl_http_init_code));
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->obj.url = strdup(url);
	if (!h->obj.url) {
		r = -ENOMEM;
		goto fail_free;
	}
	h->ops = ops;
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
	cl_cond_init_monotonic(&h->pool_cond);

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
	free(h->obj.etag);
	free(h->obj.last_modified);
fail_share:
	curl_share_cleanup(h->share);
fail_locks:
	pthread_cond_destroy(&h->pool_cond);
	pthread_mutex_destroy(&h->pool_lock);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&h->share_locks[i]);
	free(h->obj.url);
fail_free:
	free(h);
	return r;
}

uint64_t cl_http_size(const struct cl_http *h)
{
	return h->obj.size;
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
	struct cl_http_xfer x;
	int r;

	if (!h || (!buf && len))
		return -EINVAL;
	if (off > h->obj.size || len > h->obj.size - off)
		return cl_errorf(-EIO, "%s: read of %zu bytes at %llu is past its end (%llu bytes)",
		                 h->obj.url, len, (unsigned long long)off,
		                 (unsigned long long)h->obj.size);
	if (!len)
		return 0;
	cl_http_xfer_init(&x, &h->obj, CL_HTTP_XFER_READ);
	x.start = off;
	x.buf = buf;
	x.len = len;
	x.ranged = 1;
	if (!h->ranges) {
		/* The whole object still works with a plain GET. */
		if (off || len != h->obj.size)
			return cl_errorf(-EOPNOTSUPP,
			                 "%s: server ignores Range requests: cannot read %zu bytes "
			                 "at %llu (only streaming the whole object works)",
			                 h->obj.url, len, (unsigned long long)off);
		x.ranged = 0;
	}
	r = run(h, &x);
	cl_http_xfer_fini(&x);
	return r;
}

int cl_http_stream(struct cl_http *h, uint64_t off, cl_source_stream_fn fn, void *ctx)
{
	struct cl_http_conn *cn;
	unsigned fails = 0;
	uint64_t before;
	struct cl_http_xfer x;
	int r;

	if (!h || !fn)
		return -EINVAL;
	if (off > h->obj.size)
		return cl_errorf(-EIO, "%s: stream from %llu is past its end (%llu bytes)",
		                 h->obj.url, (unsigned long long)off,
		                 (unsigned long long)h->obj.size);
	if (off == h->obj.size)
		return 0;
	cl_http_xfer_init(&x, &h->obj, CL_HTTP_XFER_STREAM);
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
			r = cl_errorf(-ECANCELED, "%s: transfer cancelled (shutting down)",
			              h->obj.url);
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
	cl_http_xfer_fini(&x);
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
	free(h->obj.etag);
	free(h->obj.last_modified);
	free(h->obj.url);
	free(h);
}
