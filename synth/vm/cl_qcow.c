/* SPDX-License-Identifier: GPL-2.0-only */
/* qemu-img map parsing (see cl_qcow.h). */
#include "cl_qcow.h"
#include "cl_base.h"
#include "cl_error.h"
#include "cl_qmp.h"
#include "cl_tool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QEMU_IMG_TIMEOUT 600.0 /* seconds */

/* The value of "key" inside the object text [p, end): a number into *num,
 * or true/false into *num as 1/0. -ENOENT if the object has no such key. */
static int field(const char *p, const char *end, const char *key, uint64_t *num)
{
	size_t klen = strlen(key);
	char *stop;

	for (; p + klen + 2 <= end; p++) {
		if (p[0] != '"' || memcmp(p + 1, key, klen) || p[klen + 1] != '"')
			continue;
		for (p += klen + 2; p < end && (*p == ' ' || *p == ':' || *p == '\t'); p++)
			;
		if (end - p >= 4 && !memcmp(p, "true", 4)) {
			*num = 1;
			return 0;
		}
		if (end - p >= 5 && !memcmp(p, "false", 5)) {
			*num = 0;
			return 0;
		}
		if (p >= end || *p < '0' || *p > '9')
			return -EINVAL;
		errno = 0;
		*num = strtoull(p, &stop, 10);
		return errno || stop > end ? -EINVAL : 0;
	}
	return -ENOENT;
}

static int push(struct cl_extent **v, size_t *n, size_t *cap, const struct cl_extent *x)
{
	struct cl_extent *p, *last = *n ? &(*v)[*n - 1] : NULL;

	/* Adjacent and of one kind (zero, or contiguous in the file): one. */
	if (last && last->start + last->length == x->start && last->zero == x->zero &&
	    (x->zero || last->offset + last->length == x->offset)) {
		last->length += x->length;
		return 0;
	}
	if (*n == *cap) {
		*cap = *cap ? 2 * *cap : 64;
		p = realloc(*v, *cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		*v = p;
	}
	(*v)[(*n)++] = *x;
	return 0;
}

int cl_qcow_parse_map(const char *json, size_t len, const char *name, struct cl_extent **out,
                      size_t *n, uint64_t *size)
{
	const char *p = json, *end = json + len, *o, *c;
	uint64_t start, length, depth, zero, data, off, present, pos = 0;
	struct cl_extent *v = NULL, x;
	size_t cnt = 0, cap = 0;
	int r = 0;

	if (!json || !name || !out || !n || !size)
		return -EINVAL;
	while ((o = memchr(p, '{', (size_t)(end - p)))) {
		c = memchr(o, '}', (size_t)(end - o));
		if (!c) {
			r = cl_errorf(-EBADMSG, "%s: truncated qemu-img map output", name);
			goto fail;
		}
		if (field(o, c, "start", &start) < 0 || field(o, c, "length", &length) < 0 ||
		    field(o, c, "depth", &depth) < 0 || field(o, c, "zero", &zero) < 0 ||
		    field(o, c, "data", &data) < 0 || start != pos || !length ||
		    length > UINT64_MAX - start) {
			r = cl_errorf(-EBADMSG, "%s: unexpected qemu-img map entry at byte %zu",
			              name, (size_t)(o - json));
			goto fail;
		}
		pos = start + length;
		p = c + 1;
		if (depth != 0)
			continue; /* the backing file's bytes: the base's */
		if (field(o, c, "present", &present) == 0 && !present)
			continue; /* past the backing file's end: zeros, as the base view */
		memset(&x, 0, sizeof(x));
		x.start = start;
		x.length = length;
		x.zero = !data;
		if (data && field(o, c, "offset", &off) < 0) {
			r = cl_errorf(-ENOTSUP,
			              "%s: the qcow2 range at %llu has no host offset (compressed "
			              "or encrypted clusters are not read directly)",
			              name, (unsigned long long)start);
			goto fail;
		}
		if (!data && !zero) {
			r = cl_errorf(-EBADMSG,
			              "%s: the qcow2 range at %llu is neither data nor zero", name,
			              (unsigned long long)start);
			goto fail;
		}
		x.offset = data ? off : 0;
		r = push(&v, &cnt, &cap, &x);
		if (r < 0)
			goto fail;
	}
	/* Non-NULL even when empty: a map with no extents says "all base". */
	if (!v && !(v = malloc(sizeof(*v))))
		return -ENOMEM;
	*out = v;
	*n = cnt;
	*size = pos;
	return 0;
fail:
	free(v);
	return r;
}

int cl_qcow_is_qcow2(const char *path)
{
	unsigned char magic[4];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	n = pread(fd, magic, sizeof(magic), 0);
	close(fd);
	if (n < 0)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	return n == 4 && !memcmp(magic, "QFI\xfb", 4);
}

/* The qcow2's backing file must be the base's raw disk itself. */
static int check_backing(const char *qcow, const char *backing, double timeout,
                         const atomic_int *stop)
{
	char *argv[] = {"qemu-img", "info", "--output=json", "-f", "qcow2", (char *)qcow, NULL};
	char file[PATH_MAX], fmt[32], real[PATH_MAX], want[PATH_MAX], *json = NULL;
	size_t len;
	int r;

	r = cl_tool_run(argv, timeout, stop, &json, &len);
	if (r < 0)
		return r;
	r = cl_qmp_json_str(json, "full-backing-filename", file, sizeof(file));
	if (r < 0)
		r = cl_qmp_json_str(json, "backing-filename", file, sizeof(file));
	if (r == 0 && cl_qmp_json_str(json, "backing-filename-format", fmt, sizeof(fmt)) == 0 &&
	    strcmp(fmt, "raw"))
		r = cl_errorf(-EINVAL, "%s: its backing file is %s, not raw", qcow, fmt);
	else if (r < 0)
		r = cl_errorf(-EINVAL, "%s: a qcow2 file without a backing file", qcow);
	else if (!realpath(file, real) || !realpath(backing, want) || strcmp(real, want))
		r = cl_errorf(-EINVAL, "%s: its backing file is %s, not the base's disk %s", qcow,
		              file, backing);
	free(json);
	return r;
}

int cl_qcow_map(const char *qcow, const char *backing, double timeout, const atomic_int *stop,
                struct cl_extent **out, size_t *n, uint64_t *size)
{
	char *argv[] = {"qemu-img", "map", "--output=json", "-f", "qcow2", (char *)qcow, NULL};
	char *json = NULL;
	size_t len;
	int r;

	r = check_backing(qcow, backing, timeout, stop);
	if (r < 0)
		return r;
	r = cl_tool_run(argv, timeout, stop, &json, &len);
	if (r < 0)
		return r;
	r = cl_qcow_parse_map(json, len, qcow, out, n, size);
	free(json);
	return r;
}

int cl_qcow_overlay_create(struct cl_base *b, const char *disk, const char *memory,
                           const char *outdir, struct cl_overlay_opts *o,
                           struct cl_overlay_stats *st)
{
	struct cl_extent *ext = NULL;
	int r;

	if (!b || !disk || !memory || !outdir || !o || !st)
		return -EINVAL;
	/* A copy-on-write disk: read only what it holds. */
	r = cl_qcow_is_qcow2(disk);
	if (r == 1)
		r = cl_qcow_map(disk, b->path[CL_DISK], QEMU_IMG_TIMEOUT, NULL, &ext,
		                &o->ndisk_extents, &o->disk_size);
	o->disk_extents = ext;
	if (r == 0)
		r = cl_overlay_create(b, disk, memory, outdir, o, st);
	o->disk_extents = NULL;
	o->ndisk_extents = 0;
	free(ext);
	return r;
}
