/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_source.h"
#include "cl_error.h"
#include "cl_http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

struct cl_source {
	char *location;
	uint64_t size;
	int fd;               /* local file, or -1 */
	struct cl_http *http; /* URL, or NULL */
};

int cl_source_is_url(const char *location)
{
	return location &&
	       (!strncasecmp(location, "http://", 7) || !strncasecmp(location, "https://", 8));
}

int cl_source_open(const char *location, const struct cl_source_opts *opts, struct cl_source **out)
{
	struct cl_source *src;
	struct stat st;
	int r;

	if (!location || !out)
		return -EINVAL;
	src = calloc(1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	src->fd = -1;
	src->location = strdup(location);
	if (!src->location) {
		r = -ENOMEM;
		goto fail_free;
	}
	if (cl_source_is_url(location)) {
		r = cl_http_open(location, opts, &src->http);
		if (r < 0)
			goto fail_loc;
		src->size = cl_http_size(src->http);
	} else {
		src->fd = open(location, O_RDONLY | O_CLOEXEC);
		if (src->fd < 0) {
			r = cl_errorf(-errno, "%s: %s", location, strerror(errno));
			goto fail_loc;
		}
		if (fstat(src->fd, &st) < 0) {
			r = cl_errorf(-errno, "%s: %s", location, strerror(errno));
			goto fail_fd;
		}
		if (!S_ISREG(st.st_mode)) {
			r = cl_errorf(-EINVAL, "%s: not a regular file", location);
			goto fail_fd;
		}
		src->size = (uint64_t)st.st_size;
	}
	*out = src;
	return 0;

fail_fd:
	close(src->fd);
fail_loc:
	free(src->location);
fail_free:
	free(src);
	return r;
}

uint64_t cl_source_size(const struct cl_source *src)
{
	return src->size;
}

int cl_source_has_ranges(const struct cl_source *src)
{
	return src->http ? cl_http_has_ranges(src->http) : 1;
}

int cl_source_read(struct cl_source *src, uint64_t off, size_t len, void *buf)
{
	size_t done = 0;
	ssize_t n;

	if (!src || (!buf && len))
		return -EINVAL;
	if (off > src->size || len > src->size - off)
		return cl_errorf(-EIO, "%s: read of %zu bytes at %llu is past its end (%llu bytes)",
		                 src->location, len, (unsigned long long)off,
		                 (unsigned long long)src->size);
	if (src->http)
		return cl_http_read(src->http, off, len, buf);
	while (done < len) {
		n = pread(src->fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return cl_errorf(-errno, "%s: %s", src->location, strerror(errno));
		}
		if (n == 0)
			return cl_errorf(-EIO, "%s: file shrank while reading (truncated)",
			                 src->location);
		done += (size_t)n;
	}
	return 0;
}

int cl_source_stream(struct cl_source *src, uint64_t off, cl_source_stream_fn fn, void *ctx)
{
	char *buf;
	size_t n;
	int r = 0;

	if (!src || !fn)
		return -EINVAL;
	if (src->http)
		return cl_http_stream(src->http, off, fn, ctx);
	buf = malloc(1 << 20);
	if (!buf)
		return -ENOMEM;
	while (off < src->size) {
		n = src->size - off < (1 << 20) ? (size_t)(src->size - off) : (1 << 20);
		r = cl_source_read(src, off, n, buf);
		if (r < 0)
			break;
		r = fn(ctx, off, buf, n);
		if (r)
			break;
		off += n;
	}
	free(buf);
	return r;
}

void cl_source_abort(struct cl_source *src)
{
	if (src && src->http)
		cl_http_abort(src->http);
}

void cl_source_close(struct cl_source *src)
{
	if (!src)
		return;
	if (src->http)
		cl_http_close(src->http);
	if (src->fd >= 0)
		close(src->fd);
	free(src->location);
	free(src);
}

int cl_source_read_all(const char *location, const struct cl_source_opts *opts, size_t max_len,
                       void **buf, size_t *len)
{
	struct cl_source *src;
	void *data;
	int r;

	if (!location || !buf || !len)
		return -EINVAL;
	r = cl_source_open(location, opts, &src);
	if (r < 0)
		return r;
	if (src->size > max_len) {
		r = cl_errorf(-EFBIG, "%s: %llu bytes is more than the %zu accepted", location,
		              (unsigned long long)src->size, max_len);
		goto out;
	}
	data = malloc(src->size ? (size_t)src->size : 1);
	if (!data) {
		r = -ENOMEM;
		goto out;
	}
	r = cl_source_read(src, 0, (size_t)src->size, data);
	if (r < 0) {
		free(data);
		goto out;
	}
	*buf = data;
	*len = (size_t)src->size;
out:
	cl_source_close(src);
	return r;
}

int cl_source_sibling(const char *location, const char *name, char **out)
{
	const char *slash;
	size_t dirlen;
	char *s;

	if (!location || !name || !out)
		return -EINVAL;
	if (!*name || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return cl_errorf(-EINVAL, "%s: unsafe file name in overlay", name);
	slash = strrchr(location, '/');
	if (cl_source_is_url(location)) {
		/* Never replace the host part: a URL needs a path slash past "://". */
		const char *host = strstr(location, "://") + 3;
		if (!slash || slash < host)
			return cl_errorf(-EINVAL, "%s: URL has no path", location);
	}
	dirlen = slash ? (size_t)(slash - location + 1) : 0;
	s = malloc(dirlen + strlen(name) + 1);
	if (!s)
		return -ENOMEM;
	memcpy(s, location, dirlen);
	strcpy(s + dirlen, name);
	*out = s;
	return 0;
}
