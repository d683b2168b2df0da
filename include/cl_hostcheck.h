/* SPDX-License-Identifier: GPL-2.0-only */
/* What else cloudlet needs of a host, beside a quick domain start
 * (cl_host.h): FUSE for cloudletfs, QEMU's user, the accelerator, QEMU's
 * version and userfaultfd for postcopy memory, and tc for the benchmarks.
 * Each check fills a struct of facts and returns 0 (a missing piece is a
 * fact, not an error) or -errno when it could not look; `cloudlet check`
 * words and prints them. Nothing here allocates. */
#ifndef CL_HOSTCHECK_H
#define CL_HOSTCHECK_H

#include <stddef.h>

#define CL_HOST_FUSE_DEV  "/dev/fuse"
#define CL_HOST_FUSE_CONF "/etc/fuse.conf"

/* FUSE as cloudletfs uses it: synthesis mounts with allow_other, so that
 * QEMU (another user) may open the images. Root's mounts may always use
 * allow_other; other users' only where CL_HOST_FUSE_CONF says
 * user_allow_other, and they mount and unmount through fusermount3. */
struct cl_host_fuse {
	int dev;              /* CL_HOST_FUSE_DEV opens read-write */
	int dev_errno;        /* else why not: ENOENT, EACCES, ... */
	int root;             /* this process runs as root */
	int user_allow_other; /* CL_HOST_FUSE_CONF has a user_allow_other line */
	char fusermount[256]; /* fusermount3's path, "" if not installed */
};
int cl_host_fuse_check(struct cl_host_fuse *f);

/* QEMU's user as libvirt runs it (cl_vm_qemu_user). */
struct cl_host_quser {
	int from_conf;  /* 1 named by `user =` in /etc/libvirt/qemu.conf, 0 the
	                 * default, -1 the default assumed: not readable here */
	char user[64];  /* its name */
	char group[64]; /* its primary group */
};
int cl_host_quser_check(struct cl_host_quser *q);

/* The accelerator guests run under, as far as known without booting one
 * (cl_accel_known): type "kvm", "tcg", or "" when /dev/kvm opens but no
 * guest was probed since the host booted; why says how it is known. */
struct cl_host_accel {
	char type[8];
	char why[256];
};
int cl_host_accel_check(struct cl_host_accel *a);

/* Versions are encoded as libvirt encodes QEMU's (its hypervisor version
 * call): major * 1000000 + minor * 1000 + micro. */
#define CL_HOST_QEMU_BIN "qemu-system-x86_64"

/* The version of the first "QEMU emulator version X.Y[.Z]" line in text
 * (what `qemu-system-x86_64 --version` prints) into *version; -EINVAL if
 * there is none. */
int cl_host_qemu_parse_version(const char *text, unsigned long *version);

/* Runs `bin --version` (bounded) and parses it: the version into
 * *version, its first line into line[cap]. -ENOENT when bin is not
 * installed. */
int cl_host_qemu_version(const char *bin, unsigned long *version, char *line, size_t cap);

/* The QEMU versions postcopy memory runs on: those whose migration stream
 * format the tests cover, 7.2.x now (a newer QEMU accepts a 7.2 stream,
 * but the save-file parser must follow its new RAM flags and sections
 * first). 0 if version is one of them; else -ENOTSUP with the reason in
 * why[cap]. The one place that rule lives. */
#define CL_HOST_POSTCOPY_QEMU "7.2"
int cl_host_postcopy_version_ok(unsigned long version, char *why, size_t cap);

/* userfaultfd(2), which a postcopy destination QEMU calls (QEMU 7.2 does
 * not use /dev/userfaultfd). A process without CAP_SYS_PTRACE may call it
 * only when vm.unprivileged_userfaultfd is 1; libvirt runs QEMU without
 * capabilities (clear_emulator_capabilities, default 1), as root too. */
#define CL_HOST_UFFD_SYSCTL "/proc/sys/vm/unprivileged_userfaultfd"
#define CL_HOST_UFFD_DROPIN "/etc/sysctl.d/60-cloudlet-userfaultfd.conf"
struct cl_host_uffd {
	int kernel;    /* the kernel has userfaultfd (the sysctl exists) */
	int sysctl;    /* vm.unprivileged_userfaultfd */
	int caps;      /* QEMU keeps its capabilities: root, and
	                * clear_emulator_capabilities = 0 in qemu.conf */
	int ok;        /* QEMU as libvirt runs it may call userfaultfd(2) */
	char user[64]; /* QEMU's user */
};
int cl_host_uffd_check(struct cl_host_uffd *u);

/* Writes CL_HOST_UFFD_DROPIN (vm.unprivileged_userfaultfd = 1, so that
 * boots keep it) and sets the sysctl now; what changed into done[cap].
 * Needs root (-EPERM otherwise). This lets every user of the host call
 * userfaultfd(2): only `cloudlet check --fix` calls it. */
int cl_host_uffd_fix(char *done, size_t cap);

/* Whether a synthesis may serve guest memory by postcopy here, with QEMU
 * of version: the version rule (cl_host_postcopy_version_ok), then
 * userfaultfd for QEMU's user. 0 if so, else -ENOTSUP with the reason and
 * what to do in why[cap] (one line; the caller then uses mmap memory). */
int cl_host_postcopy_ok(unsigned long version, char *why, size_t cap);

/* The path of program prog in $PATH, /usr/sbin or /sbin (tc is in sbin,
 * which a user's PATH may lack) into out[cap]; -ENOENT if none. */
int cl_host_which(const char *prog, char *out, size_t cap);

#endif
