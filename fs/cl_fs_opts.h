/* SPDX-License-Identifier: GPL-2.0-only */
/* cloudletfs command line: `cloudletfs OVERLAY MOUNTPOINT -o base=IMAGE[,opt...]`,
 * the form mount(8) and mount.fuse3 use. */
#ifndef CL_FS_OPTS_H
#define CL_FS_OPTS_H

#include <sys/types.h>

#include "cl_lazy.h"

struct cl_fs_args {
	char *overlay;    /* absolute path, or URL */
	char *mountpoint; /* absolute path */
	char *base;       /* absolute path if it names a file, else as given (a base id) */
	char *cache_dir, *store_dir, *log; /* absolute, or NULL */
	struct cl_lazy_opts lazy;          /* points into the strings above */
	int foreground;
	int debug;
	int allow_other;
	int default_permissions;
	int read_only;
	uid_t uid; /* owner of the files: the caller's unless uid= */
	gid_t gid;
	int help;
	int version;
};

extern const char cl_fs_usage[];

/* Fills a from argv; 0, or -EINVAL with the cause in cl_error_msg(). With
 * --help or --version only that flag is set. */
int cl_fs_args_parse(int argc, char **argv, struct cl_fs_args *a);
void cl_fs_args_free(struct cl_fs_args *a);

#endif
