/* SPDX-License-Identifier: GPL-2.0-only */
/* Guest RAM for postcopy mode on a tmpfs of its own (see cl_pcram.h). */
#include "cl_pcram.h"
#include "cl_error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

/* What the host keeps for everything else when a tmpfs takes guest RAM. */
#define MARGIN (256ull << 20)

static int meminfo_available(uint64_t *out)
{
	char line[256];
	unsigned long long kb;
	FILE *f = fopen("/proc/meminfo", "re");
	int r = -ENOENT;

	if (!f)
		return cl_errorf(-errno, "/proc/meminfo: %s", strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
			*out = (uint64_t)kb << 10;
			r = 0;
			break;
		}
	fclose(f);
	return r < 0 ? cl_errorf(r, "/proc/meminfo has no MemAvailable") : 0;
}

int cl_pcram_fits(uint64_t bytes)
{
	uint64_t avail;
	int r;

	if (!bytes)
		return -EINVAL;
	r = meminfo_available(&avail);
	if (r < 0)
		return r;
	if (avail >= bytes + MARGIN)
		return 0;
	return cl_errorf(-ENOSPC,
	                 "postcopy memory mode: the guest's %" PRIu64
	                 " MiB of RAM go to a tmpfs, and this host has %" PRIu64
	                 " MiB available (%llu MiB kept for the rest)",
	                 bytes >> 20, avail >> 20, (unsigned long long)(MARGIN >> 20));
}

static int make_file(const char *path, uint64_t bytes, uid_t uid, gid_t gid)
{
	int fd, r = 0;

	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)bytes) < 0 || fchown(fd, uid, gid) < 0)
		r = cl_errorf(-errno, "%s: %s", path, strerror(errno));
	close(fd);
	return r;
}

/* CL_PCRAM_ROOT: a directory of root's that nobody else may change. */
static int root_dir(void)
{
	struct stat st;

	if (mkdir(CL_PCRAM_ROOT, 0711) < 0 && errno != EEXIST)
		return cl_errorf(-errno, "%s: %s", CL_PCRAM_ROOT, strerror(errno));
	if (lstat(CL_PCRAM_ROOT, &st) < 0)
		return cl_errorf(-errno, "%s: %s", CL_PCRAM_ROOT, strerror(errno));
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
		return cl_errorf(-EPERM, "%s: not a directory that only root may change",
		                 CL_PCRAM_ROOT);
	return 0;
}

static int ram_dir(const char *name, char *dir, size_t cap)
{
	if (!name || !*name || strchr(name, '/') || name[0] == '.')
		return -EINVAL;
	if ((size_t)snprintf(dir, cap, CL_PCRAM_ROOT "/%s", name) >= cap)
		return cl_errorf(-ENAMETOOLONG, "%s: name too long", name);
	return 0;
}

int cl_pcram_make(const char *name, uint64_t bytes, uid_t uid, gid_t gid, char *path, size_t cap)
{
	char dir[PATH_MAX], opts[128];
	int r;

	if (!bytes || !path)
		return -EINVAL;
	r = ram_dir(name, dir, sizeof(dir));
	if (r == 0 && (size_t)snprintf(path, cap, "%s/" CL_PCRAM_FILE, dir) >= cap)
		r = cl_errorf(-ENAMETOOLONG, "%s: name too long", name);
	if (r == 0)
		r = root_dir();
	if (r < 0)
		return r;
	if (mkdir(dir, 0700) < 0)
		return cl_errorf(-errno, "%s: %s", dir, strerror(errno));
	/* Rounded up to whole pages: size= takes bytes. */
	snprintf(opts, sizeof(opts), "size=%" PRIu64 ",mode=0700,uid=%u,gid=%u",
	         (bytes + 4095) & ~(uint64_t)4095, (unsigned)uid, (unsigned)gid);
	if (mount("cloudlet-ram", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0) {
		r = cl_errorf(-errno, "%s: cannot mount a tmpfs for guest RAM: %s", dir,
		              strerror(errno));
		goto out_dir;
	}
	r = make_file(path, bytes, uid, gid);
	if (r == 0)
		return 0;
	umount2(dir, MNT_DETACH | UMOUNT_NOFOLLOW);
out_dir:
	rmdir(dir);
	return r;
}

int cl_pcram_remove(const char *name)
{
	char dir[PATH_MAX];
	int r = ram_dir(name, dir, sizeof(dir));

	if (r < 0)
		return r;
	if (access(dir, F_OK) < 0)
		return 0;
	if (umount2(dir, UMOUNT_NOFOLLOW) < 0 && errno != EINVAL &&
	    (errno != EBUSY || umount2(dir, MNT_DETACH | UMOUNT_NOFOLLOW) < 0))
		return cl_errorf(-errno, "%s: cannot unmount: %s", dir, strerror(errno));
	if (rmdir(dir) < 0)
		return cl_errorf(-errno, "%s: %s", dir, strerror(errno));
	return 0;
}
