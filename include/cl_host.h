/* SPDX-License-Identifier: GPL-2.0-only */
/* Whether this host lets libvirt start a domain quickly, and the one fix.
 *
 * libvirt 9.0 probes QEMU's capabilities with CAP_DAC_OVERRIDE, so its probe
 * opens a /dev/kvm of mode 0600 root:root and records KVM as usable. Its
 * cache validity check (virQEMUCapsIsValid) then asks whether QEMU's user
 * may read and write /dev/kvm, without that capability. Where it may not,
 * the cache is stale at every look-up: each domain start probes every QEMU
 * binary again, twice (KVM, then TCG), 30-50 s in all. Debian's udev rule
 * gives /dev/kvm group kvm and mode 0660, and QEMU's user is in group kvm;
 * hosts without udev (containers, minimal roots) keep the kernel's 0600. */
#ifndef CL_HOST_H
#define CL_HOST_H

#include <stddef.h>
#include <sys/types.h>

#define CL_HOST_KVM_DEV   "/dev/kvm"
#define CL_HOST_KVM_GROUP "kvm"
/* A paused domain should start within this many seconds. */
#define CL_HOST_START_GOAL 3.0

struct cl_host_kvm {
	int present;    /* CL_HOST_KVM_DEV is a character device */
	int qemu_rw;    /* QEMU's user may read and write it (by its mode bits) */
	int reprobe;    /* present && !qemu_rw: libvirt re-probes at every start */
	mode_t mode;    /* permission bits */
	uid_t uid;      /* owner */
	gid_t gid;      /* group */
	char user[64];  /* QEMU's user */
	char owner[64]; /* "user:group" of the device */
};

/* Fills *k for QEMU's user (cl_vm_qemu_user). A missing /dev/kvm is not an
 * error (present 0: libvirt then probes TCG only, once). */
int cl_host_kvm_check(struct cl_host_kvm *k);

/* The fix for a host where libvirt re-probes at every start. */
#define CL_HOST_KVM_HINT                                                                           \
	"run `cloudlet check --fix` as root: it gives /dev/kvm group kvm and mode 0660, as "       \
	"Debian's udev rule would"

/* The one line that says why a domain start is slow on host k, after
 * "LEAD: ", into out[cap]. */
void cl_host_kvm_cause(const struct cl_host_kvm *k, const char *lead, char *out, size_t cap);

/* 1 with "warning: " and that line in out[cap] when this host makes libvirt
 * slow to start domains (said before starting one), else 0. */
int cl_host_warning(char *out, size_t cap);

/* Gives /dev/kvm group kvm and mode 0660, as Debian's udev rule does, and
 * says what changed in done[cap] ("" if nothing had to). Needs root; QEMU's
 * user must be in group kvm (-ENOENT with a message otherwise). libvirt
 * notices the change by itself (it watches the device's ctime). */
int cl_host_kvm_fix(const struct cl_host_kvm *k, char *done, size_t cap);

/* A libvirt connection for the check: uri NULL means $CLOUDLET_LIBVIRT_URI,
 * else qemu:///system; -ECONNREFUSED when libvirt does not answer.
 * cl_host_close() frees it (NULL is fine). */
struct cl_host;
int cl_host_open(const char *uri, struct cl_host **out);
void cl_host_close(struct cl_host *h);

/* libvirt's version (major * 1000000 + minor * 1000 + micro) into
 * *version and the connection's URI into uri[cap]. */
int cl_host_libvirt(struct cl_host *h, unsigned long *version, char *uri, size_t cap);

/* Starts a minimal paused transient domain (TCG, 32 MiB, no devices, named
 * cloudlet-check-PID), destroys it, and puts the seconds that the start
 * took into *secs. */
int cl_host_time_start(struct cl_host *h, double *secs);

#endif
