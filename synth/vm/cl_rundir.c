/* SPDX-License-Identifier: GPL-2.0-only */
/* Run directories and the boot files of a base (see cl_rundir.h). */
#include "cl_rundir.h"
#include "cl_base.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_util.h"
#include "cl_vm.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cl_rundir_make(const char *name, gid_t gid, char *out, size_t cap)
{
	int r;

	r = cl_mkdir_p(CL_VM_RUN_DIR, 0755);
	if (r < 0)
		return r;
	if ((size_t)snprintf(out, cap, "%s/%s", CL_VM_RUN_DIR, name) >= cap)
		return cl_errorf(-ENAMETOOLONG, "%s: name too long", name);
	if (mkdir(out, 0770) < 0) {
		if (errno == EEXIST)
			return cl_errorf(-EEXIST,
			                 "%s exists: a VM named %s runs, or one did not clean up",
			                 out, name);
		return cl_errorf(-errno, "%s: %s", out, strerror(errno));
	}
	if (chown(out, 0, gid) < 0 || chmod(out, 0770) < 0) {
		r = cl_errorf(-errno, "%s: %s", out, strerror(errno));
		rmdir(out);
		return r;
	}
	return 0;
}

void cl_rundir_remove(const char *dir)
{
	char p[PATH_MAX + 256];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((e = readdir(d)))
		if (e->d_type != DT_DIR) {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	closedir(d);
	rmdir(dir);
}

/* --- boot files ------------------------------------------------------------ */

/* Kernel and initrd as the base recorded them: a path that exists; else
 * the same name in the base's registry directory (where `cloudlet base`
 * keeps them), then next to the base's disk image (a base copied to
 * another cloudlet). */
/* A kernel or initrd in the registry must be the file hashed into base.conf
 * (when one was: see cl_base_seal); on a mismatch *out is freed. */
static int boot_file_check(const struct cl_base *b, char **out)
{
	int r = cl_base_check_file(b, *out);

	if (r < 0) {
		free(*out);
		*out = NULL;
	}
	return r;
}

static int boot_file(const struct cl_base *b, const char *recorded, const char *what, char **out)
{
	char *disk_dir = strdup(b->path[CL_DISK]), *p = NULL;
	const char *dirs[2] = {b->dir, disk_dir}, *name;
	int i;

	if (!disk_dir)
		return -ENOMEM;
	if (strrchr(disk_dir, '/'))
		*strrchr(disk_dir, '/') = '\0';
	if (recorded[0] == '/' && access(recorded, R_OK) == 0) {
		free(disk_dir);
		*out = strdup(recorded);
		return *out ? boot_file_check(b, out) : -ENOMEM;
	}
	name = strrchr(recorded, '/') ? strrchr(recorded, '/') + 1 : recorded;
	for (i = 0; i < 2; i++) {
		if (!dirs[i] || asprintf(&p, "%s/%s", dirs[i], name) < 0)
			continue;
		if (access(p, R_OK) == 0) {
			free(disk_dir);
			*out = p;
			return boot_file_check(b, out);
		}
		free(p);
	}
	free(disk_dir);
	return cl_errorf(-ENOENT, "%s %s (from the domain XML) not found in %s nor next to %s",
	                 what, recorded, b->dir ? b->dir : "the registry", b->path[CL_DISK]);
}

/* The boot files of the base's own domain XML if it has one, else of the
 * overlay's; NULL when the VM boots from its disk. */
int cl_rundir_boot_files(const struct cl_base *b, const char *xml, size_t len, char **kernel,
                         char **initrd)
{
	char *rk = NULL, *ri = NULL, *bx = NULL;
	size_t blen = 0;
	int r;

	*kernel = *initrd = NULL;
	if (b->domain_path && cl_read_file(b->domain_path, 16u << 20, (void **)&bx, &blen) == 0) {
		cl_domxml_get(bx, blen, "kernel", &rk);
		cl_domxml_get(bx, blen, "initrd", &ri);
		free(bx);
	}
	if (!rk) {
		cl_domxml_get(xml, len, "kernel", &rk);
		cl_domxml_get(xml, len, "initrd", &ri);
	}
	r = 0;
	if (rk)
		r = boot_file(b, rk, "kernel", kernel);
	if (r == 0 && ri)
		r = boot_file(b, ri, "initrd", initrd);
	free(rk);
	free(ri);
	return r;
}
