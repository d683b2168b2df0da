/* SPDX-License-Identifier: GPL-2.0-only */
/* HTTP responses, checked (see cl_http_check.h): header lines parsed, the
 * status and headers held against the request and the pinned object, the
 * body taken into place. A response that does not fit fails the request
 * here, described, before any of its body is used. */
#include "cl_http_check.h"
#include "cl_error.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
static int parse_content_range(struct cl_http_xfer *x, const char *v)
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

static void clear_headers(struct cl_http_xfer *x)
{
	free(x->etag);
	free(x->last_modified);
	x->etag = NULL;
	x->last_modified = NULL;
	x->status = 0;
	x->have_clen = 0;
	x->have_crange = 0;
}

void cl_http_xfer_reset(struct cl_http_xfer *x)
{
	clear_headers(x);
	x->header_bytes = 0;
	x->checked = 0;
	x->body_at = 0;
	x->err = 0;
	x->user = 0;
	x->transient = 0;
	x->probe_done = 0;
}

void cl_http_xfer_init(struct cl_http_xfer *x, const struct cl_http_object *obj,
                       enum cl_http_xfer_kind kind)
{
	memset(x, 0, sizeof(*x));
	x->obj = obj;
	x->kind = kind;
}

void cl_http_xfer_fini(struct cl_http_xfer *x)
{
	clear_headers(x);
}

/* ---- checks of a response ---------------------------------------------- */

static int stale(const struct cl_http_object *o, const char *what, const char *was, const char *now)
{
	return cl_errorf(-ESTALE, "%s: object changed mid-synthesis (%s %s, now %s)", o->url, what,
	                 was, now);
}

static int check_validators(struct cl_http_xfer *x)
{
	const struct cl_http_object *o = x->obj;

	if (!o->pinned)
		return 0;
	if (o->etag && x->etag)
		return strcmp(o->etag, x->etag) ? stale(o, "ETag", o->etag, x->etag) : 0;
	if (o->last_modified && x->last_modified && strcmp(o->last_modified, x->last_modified))
		return stale(o, "Last-Modified", o->last_modified, x->last_modified);
	return 0;
}

static int check_total(struct cl_http_xfer *x, uint64_t total)
{
	const struct cl_http_object *o = x->obj;
	char was[24], now[24];

	if (!o->pinned || total == o->size)
		return 0;
	snprintf(was, sizeof(was), "%llu", (unsigned long long)o->size);
	snprintf(now, sizeof(now), "%llu", (unsigned long long)total);
	return stale(o, "size", was, now);
}

/* Status codes shared by every kind of request. */
static int check_status(struct cl_http_xfer *x)
{
	const struct cl_http_object *o = x->obj;
	long s = x->status;

	if (s == 200 || s == 206)
		return 0;
	if (s == 404 || s == 410)
		return cl_errorf(-ENOENT, "%s: not found (HTTP %ld)", o->url, s);
	if (s == 401 || s == 403 || s == 407)
		return cl_errorf(-EACCES, "%s: access denied (HTTP %ld)", o->url, s);
	if (s == 412)
		return cl_errorf(-ESTALE, "%s: object changed mid-synthesis (HTTP 412)", o->url);
	if (s == 416 && x->have_crange && x->cr_total != UINT64_MAX && o->pinned &&
	    x->cr_total != o->size)
		return check_total(x, x->cr_total);
	if (s == 408 || s == 429 || (s >= 500 && s <= 599)) {
		x->transient = 1;
		return cl_errorf(-EIO, "%s: server busy or failing (HTTP %ld)", o->url, s);
	}
	if (s == 0)
		return cl_errorf(-EPROTO, "%s: response without a status line", o->url);
	return cl_errorf(-EIO, "%s: unexpected HTTP status %ld", o->url, s);
}

int cl_http_xfer_check(struct cl_http_xfer *x)
{
	const struct cl_http_object *o = x->obj;
	uint64_t want;
	int r;

	x->checked = 1;
	if (x->kind == CL_HTTP_XFER_HEAD && (x->status == 405 || x->status == 501))
		return -ENOTSUP; /* HEAD refused: the caller probes with GET */
	if (x->kind == CL_HTTP_XFER_PROBE && x->status == 416 && x->have_crange &&
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
		if (x->kind == CL_HTTP_XFER_READ && x->ranged)
			return cl_errorf(-EIO, "%s: server ignored the Range request (HTTP 200)",
			                 o->url);
		x->body_at = 0;
		return 0;
	}

	/* 206 */
	if (x->kind == CL_HTTP_XFER_HEAD || !x->ranged)
		return cl_errorf(
		    -EPROTO, "%s: partial content (HTTP 206) to a request without Range", o->url);
	if (!x->have_crange || x->cr_first == UINT64_MAX)
		return cl_errorf(-EPROTO, "%s: HTTP 206 without a valid Content-Range", o->url);
	if (x->cr_total != UINT64_MAX) {
		r = check_total(x, x->cr_total);
		if (r < 0)
			return r;
	}
	if (x->cr_first != x->start)
		return cl_errorf(-EPROTO, "%s: asked for bytes from %llu, server sent from %llu",
		                 o->url, (unsigned long long)x->start,
		                 (unsigned long long)x->cr_first);
	if (x->kind == CL_HTTP_XFER_READ)
		want = x->len;
	else if (x->kind == CL_HTTP_XFER_PROBE)
		want = 1;
	else
		want = o->size - x->start;
	if (x->cr_last - x->cr_first + 1 != want)
		return cl_errorf(-EPROTO, "%s: asked for %llu bytes at %llu, server sent %llu-%llu",
		                 o->url, (unsigned long long)want, (unsigned long long)x->start,
		                 (unsigned long long)x->cr_first, (unsigned long long)x->cr_last);
	if (x->have_clen && x->clen != want)
		return cl_errorf(
		    -EPROTO, "%s: Content-Length %llu does not match the %llu bytes of the range",
		    o->url, (unsigned long long)x->clen, (unsigned long long)want);
	x->body_at = x->cr_first;
	return 0;
}

/* ---- header lines and body ------------------------------------------------ */

static char *dup_value(const char *v, size_t n)
{
	char *s = malloc(n + 1);

	if (s) {
		memcpy(s, v, n);
		s[n] = '\0';
	}
	return s;
}

int cl_http_xfer_header(struct cl_http_xfer *x, const char *data, size_t n)
{
	size_t namelen, vlen;
	const char *colon, *v;
	char line[128];
	uint64_t num;
	const char *end;

	x->header_bytes += n;
	if (x->header_bytes > CL_HTTP_MAX_HEADER_BYTES) {
		x->err = cl_errorf(-EPROTO, "%s: response headers larger than %u bytes",
		                   x->obj->url, CL_HTTP_MAX_HEADER_BYTES);
		return x->err;
	}
	while (n && (data[n - 1] == '\n' || data[n - 1] == '\r'))
		n--;
	if (n >= 5 && !strncmp(data, "HTTP/", 5)) {
		/* A new response (redirects, interim ones): forget the last. */
		clear_headers(x);
		v = memchr(data, ' ', n);
		if (v && (size_t)(v - data) + 4 <= n && v[1] >= '1' && v[1] <= '5' && v[2] >= '0' &&
		    v[2] <= '9' && v[3] >= '0' && v[3] <= '9')
			x->status = (v[1] - '0') * 100 + (v[2] - '0') * 10 + (v[3] - '0');
		return 0;
	}
	colon = memchr(data, ':', n);
	if (!colon)
		return 0;
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
	return 0;

bad:
	x->err = cl_errorf(-EPROTO, "%s: malformed header: %.*s", x->obj->url,
	                   (int)(n > 200 ? 200 : n), data);
	return x->err;
nomem:
	x->err = -ENOMEM;
	return x->err;
}

int cl_http_xfer_body(struct cl_http_xfer *x, const char *data, size_t n)
{
	const struct cl_http_object *o = x->obj;
	uint64_t at;
	size_t skip;
	int r;

	if (!x->checked) {
		r = cl_http_xfer_check(x);
		if (r < 0) {
			x->err = r;
			return r;
		}
	}
	switch (x->kind) {
	case CL_HTTP_XFER_HEAD:
		return 0;
	case CL_HTTP_XFER_PROBE:
		x->probe_done = 1; /* the headers told all; never take a whole object */
		return x->status == 206 && n <= 1 ? 0 : -ECANCELED;
	case CL_HTTP_XFER_READ:
		if (n > x->len - (size_t)(x->body_at - x->start)) {
			x->err = cl_errorf(-EPROTO, "%s: server sent more than the %zu bytes asked",
			                   o->url, x->len);
			return x->err;
		}
		memcpy(x->buf + (x->body_at - x->start), data, n);
		x->body_at += n;
		return 0;
	case CL_HTTP_XFER_STREAM:
		if (n > o->size - x->body_at) {
			x->err = cl_errorf(-ESTALE,
			                   "%s: object changed mid-synthesis (body longer than "
			                   "its %llu bytes)",
			                   o->url, (unsigned long long)o->size);
			return x->err;
		}
		at = x->body_at;
		x->body_at += n;
		if (x->body_at <= x->pos)
			return 0; /* before the resume point: already delivered */
		skip = at < x->pos ? (size_t)(x->pos - at) : 0;
		r = x->fn(x->ctx, x->pos, data + skip, n - skip);
		if (r) {
			x->err = r;
			x->user = 1;
			return r < 0 ? r : -EIO;
		}
		x->pos += n - skip;
		return 0;
	}
	return -EINVAL;
}

/* ---- pinning -------------------------------------------------------------- */

int cl_http_object_pin(struct cl_http_object *o, const struct cl_http_xfer *x, uint64_t size)
{
	o->size = size;
	if (x->etag) {
		o->etag = strdup(x->etag);
		if (!o->etag)
			return -ENOMEM;
	}
	if (x->last_modified) {
		o->last_modified = strdup(x->last_modified);
		if (!o->last_modified)
			return -ENOMEM;
	}
	o->pinned = 1;
	return 0;
}
