/* SPDX-License-Identifier: GPL-2.0-only */
/* What else cloudlet needs of a host (see cl_hostcheck.h). */
#include "cl_hostcheck.h"
#include "cl_accel.h"
#include "cl_error.h"
#include "cl_tool.h"
#include "cl_util.h"
#include "cl_vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define VERSION_TIMEOUT 10.0 /* seconds `qemu-system-x86_64 --version` may take */

int cl_host_which(const char *prog, char *out, size_t cap)
{
	const char *env = getenv("PATH");
	char *dirs, *dir, *save = NULL;
	struct stat st;
	int r = -ENOENT;

	if (!prog || !*prog || strchr(prog, '/') || !out || !cap)
		return -EINVAL;
	if (asprintf(&dirs, "%s:/usr/sbin:/sbin", env && *env ? env : "/usr/bin:/bin") < 0)
		return -ENOMEM;
	for (dir = strtok_r(dirs, ":", &save); dir && r; dir = strtok_r(NULL, ":", &save)) {
		if ((size_t)snprintf(out, cap, "%s/%s", dir, prog) >= cap)
			continue;
		if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
			r = 0;
	}
	free(dirs);
	if (r)
		out[0] = '\0';
	return r;
}

/* Whether CL_HOST_FUSE_CONF has the line user_allow_other (alone on its
 * line, as fusermount3 reads it). */
static int fuse_conf_allows(void)
{
	char line[256];
	int hit = 0;
	FILE *f;

	f = fopen(CL_HOST_FUSE_CONF, "re");
	if (!f)
		return 0;
	while (!hit && fgets(line, sizeof(line), f)) {
		char *p = line + strspn(line, " \t");

		p[strcspn(p, " \t\r\n")] = '\0';
		hit = !strcmp(p, "user_allow_other");
	}
	fclose(f);
	return hit;
}

int cl_host_fuse_check(struct cl_host_fuse *f)
{
	int fd, r;

	if (!f)
		return -EINVAL;
	memset(f, 0, sizeof(*f));
	/* Opening the device alone mounts nothing. */
	fd = open(CL_HOST_FUSE_DEV, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		f->dev = 1;
		close(fd);
	} else {
		f->dev_errno = errno;
	}
	f->root = geteuid() == 0;
	f->user_allow_other = fuse_conf_allows();
	r = cl_host_which("fusermount3", f->fusermount, sizeof(f->fusermount));
	return r == -ENOENT ? 0 : r;
}

int cl_host_quser_check(struct cl_host_quser *q)
{
	char name[64];
	uid_t uid;
	gid_t gid;
	int r;

	if (!q)
		return -EINVAL;
	memset(q, 0, sizeof(*q));
	r = cl_vm_qemu_user(&uid, &gid, q->group, sizeof(q->group), q->user, sizeof(q->user));
	if (r < 0)
		return r;
	r = cl_vm_qemu_conf("user", name, sizeof(name));
	q->from_conf = r == 0 ? 1 : r == -EACCES ? -1 : 0;
	return 0;
}

int cl_host_accel_check(struct cl_host_accel *a)
{
	const char *type;
	int r;

	if (!a)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	r = cl_accel_known(&type, a->why, sizeof(a->why));
	if (r < 0)
		return r;
	snprintf(a->type, sizeof(a->type), "%s", !type ? "" : !strcmp(type, "kvm") ? "kvm" : "tcg");
	return 0;
}

int cl_host_qemu_parse_version(const char *text, unsigned long *version)
{
	static const char lead[] = "QEMU emulator version ";
	unsigned long major, minor, micro = 0;
	const char *p;
	char *end;

	if (!text || !version)
		return -EINVAL;
	p = strstr(text, lead);
	if (!p)
		return -EINVAL;
	p += sizeof(lead) - 1;
	/* strtoul would take a sign or blanks: digits only. */
	if (*p < '0' || *p > '9' || (major = strtoul(p, &end, 10)) > 999 || *end != '.' ||
	    end[1] < '0' || end[1] > '9' || (minor = strtoul(end + 1, &end, 10)) > 999)
		return -EINVAL;
	if (*end == '.' && end[1] >= '0' && end[1] <= '9')
		micro = strtoul(end + 1, &end, 10);
	if (micro > 999 || (*end >= '0' && *end <= '9'))
		return -EINVAL;
	*version = major * 1000000 + minor * 1000 + micro;
	return 0;
}

int cl_host_qemu_version(const char *bin, unsigned long *version, char *line, size_t cap)
{
	char path[4096], *out = NULL;
	char *argv[] = {path, "--version", NULL};
	size_t len = 0;
	int r;

	if (!bin || !version || !line || !cap)
		return -EINVAL;
	line[0] = '\0';
	r = cl_host_which(bin, path, sizeof(path));
	if (r < 0)
		return r == -ENOENT ? cl_errorf(r, "%s: not installed", bin) : r;
	r = cl_tool_run(argv, VERSION_TIMEOUT, NULL, &out, &len);
	if (r < 0)
		return r;
	snprintf(line, cap, "%.*s", (int)strcspn(out, "\n"), out);
	r = cl_host_qemu_parse_version(out, version);
	if (r < 0)
		r = cl_errorf(r, "%s --version: no version in \"%s\"", path, line);
	free(out);
	return r;
}

int cl_host_postcopy_version_ok(unsigned long version, char *why, size_t cap)
{
	/* 7.2.x: the stream format of the tests (tests/shell/postcopy_qemu.sh). */
	if (version / 1000 == 7002)
		return 0;
	if (why && cap)
		snprintf(why, cap,
		         "QEMU %lu.%lu.%lu: postcopy memory runs on QEMU %s only, the stream "
		         "format the tests cover",
		         version / 1000000, version / 1000 % 1000, version % 1000,
		         CL_HOST_POSTCOPY_QEMU);
	return -ENOTSUP;
}

/* The integer in the one-line file path into *v. */
static int read_int(const char *path, int *v)
{
	char buf[32];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	*v = atoi(buf);
	return 0;
}

int cl_host_uffd_check(struct cl_host_uffd *u)
{
	struct cl_host_quser q;
	char clear[16];
	int r;

	if (!u)
		return -EINVAL;
	memset(u, 0, sizeof(*u));
	r = cl_host_quser_check(&q);
	if (r < 0)
		return r;
	snprintf(u->user, sizeof(u->user), "%s", q.user);
	r = read_int(CL_HOST_UFFD_SYSCTL, &u->sysctl);
	if (r < 0 && r != -ENOENT)
		return cl_errorf(r, "%s: %s", CL_HOST_UFFD_SYSCTL, strerror(-r));
	u->kernel = r == 0;
	/* libvirt drops QEMU's capabilities unless told not to, even as root. */
	u->caps = !strcmp(q.user, "root") &&
	          cl_vm_qemu_conf("clear_emulator_capabilities", clear, sizeof(clear)) == 0 &&
	          !strcmp(clear, "0");
	u->ok = u->kernel && (u->sysctl == 1 || u->caps);
	return 0;
}

/* Writes val to the sysctl, the old value into *old. */
static int set_sysctl(const char *val, int *old)
{
	int fd, r;

	r = read_int(CL_HOST_UFFD_SYSCTL, old);
	if (r == -ENOENT)
		return cl_errorf(-ENOTSUP, "this kernel has no userfaultfd (no %s)",
		                 CL_HOST_UFFD_SYSCTL);
	if (r < 0)
		return cl_errorf(r, "%s: %s", CL_HOST_UFFD_SYSCTL, strerror(-r));
	fd = open(CL_HOST_UFFD_SYSCTL, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return cl_errorf(-errno, "%s: %s", CL_HOST_UFFD_SYSCTL, strerror(errno));
	errno = EIO; /* a short write sets none */
	if (write(fd, val, strlen(val)) != (ssize_t)strlen(val))
		r = cl_errorf(-errno, "%s: %s", CL_HOST_UFFD_SYSCTL, strerror(errno));
	close(fd);
	return r;
}

int cl_host_uffd_fix(char *done, size_t cap)
{
	static const char dropin[] =
	    "# Written by `cloudlet check --fix`: QEMU, run by libvirt without\n"
	    "# capabilities, needs userfaultfd(2) for cloudlet's postcopy memory.\n"
	    "vm.unprivileged_userfaultfd = 1\n";
	char old_val[16];
	int old, r;

	if (!done || !cap)
		return -EINVAL;
	done[0] = '\0';
	if (geteuid() != 0)
		return cl_errorf(-EPERM, "%s: changing it needs root", CL_HOST_UFFD_SYSCTL);
	r = set_sysctl("1\n", &old);
	if (r < 0)
		return r;
	r = cl_write_file_atomic(CL_HOST_UFFD_DROPIN, dropin, sizeof(dropin) - 1, 0644);
	if (r < 0) {
		/* Both or neither: a setting that a reboot loses would surprise. */
		snprintf(old_val, sizeof(old_val), "%d\n", old);
		set_sysctl(old_val, &old);
		return cl_errorf(r, "%s: %s", CL_HOST_UFFD_DROPIN, strerror(-r));
	}
	snprintf(done, cap, "wrote %s; vm.unprivileged_userfaultfd was %d, now 1",
	         CL_HOST_UFFD_DROPIN, old);
	return 0;
}

int cl_host_postcopy_ok(unsigned long version, char *why, size_t cap)
{
	struct cl_host_uffd u;
	int r;

	if (!why || !cap)
		return -EINVAL;
	why[0] = '\0';
	r = cl_host_postcopy_version_ok(version, why, cap);
	if (r < 0)
		return r;
	r = cl_host_uffd_check(&u);
	if (r < 0)
		return r;
	if (!u.kernel)
		snprintf(why, cap, "this kernel has no userfaultfd (no %s)", CL_HOST_UFFD_SYSCTL);
	else if (!u.ok)
		snprintf(why, cap,
		         "QEMU (as %s, without capabilities) may not call userfaultfd(2) while "
		         "vm.unprivileged_userfaultfd is %d: run `cloudlet check --fix` as root",
		         u.user, u.sysctl);
	return u.ok ? 0 : -ENOTSUP;
}
