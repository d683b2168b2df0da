/* SPDX-License-Identifier: GPL-2.0-only */
/* cloudletfs's command line (fs/cl_fs_opts.c: cl_fs_args_parse), as
 * mount(8), mount.fuse3 and fstab hand it over.
 *
 * Input: the arguments after argv[0], separated by NUL bytes. Paths are
 * resolved against the real filesystem (read-only: realpath, access). */
#include "cl_error.h"
#include "cl_fs_opts.h"
#include "fuzz_common.h"

#include <errno.h>
#include <string.h>

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[MAX_ARGS + 2], *buf;
	struct cl_fs_args a;
	int argc = 1, r;
	size_t i, start = 0;

	buf = malloc(size + 1);
	FUZZ_CHECK(buf);
	memcpy(buf, data, size);
	buf[size] = '\0';
	argv[0] = "cloudletfs";
	for (i = 0; i <= size && argc <= MAX_ARGS; i++) {
		if (buf[i] == '\0') {
			argv[argc++] = buf + start;
			start = i + 1;
		}
	}
	argv[argc] = NULL;
	r = cl_fs_args_parse(argc, argv, &a);
	if (r == 0 && !a.help && !a.version) {
		FUZZ_CHECK(a.overlay && a.mountpoint && a.base);
		FUZZ_CHECK(a.mountpoint[0] == '/');
		FUZZ_CHECK(!a.cache_dir || a.cache_dir[0] == '/');
		FUZZ_CHECK(!a.store_dir || a.store_dir[0] == '/');
		FUZZ_CHECK(!a.log || a.log[0] == '/');
		FUZZ_CHECK(a.lazy.cache_dir == a.cache_dir && a.lazy.store_dir == a.store_dir);
	} else if (r < 0) {
		FUZZ_CHECK(r == -EINVAL || r == -ENOMEM || r == -ENOENT || r == -ENOTDIR ||
		           r == -EACCES || r == -ENAMETOOLONG || r == -ELOOP);
	}
	cl_fs_args_free(&a);
	cl_error_clear();
	free(buf);
	return 0;
}
