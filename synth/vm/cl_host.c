/* SPDX-License-Identifier: GPL-2.0-only */
/* Host checks for libvirt's domain start (see cl_host.h). */
#include "cl_host.h"
#include "cl_error.h"
#include "cl_util.h"
#include "cl_vm.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_GROUPS 256

/* Whether user (primary group gid) is in group g. */
static int in_group(const char *user, gid_t gid, gid_t g)
{
	gid_t groups[MAX_GROUPS];
	int n = MAX_GROUPS, i;

	if (gid == g)
		return 1;
	if (getgrouplist(user, gid, groups, &n) < 0)
		return 0; /* more than MAX_GROUPS: not worth a bigger list */
	for (i = 0; i < n; i++)
		if (groups[i] == g)
			return 1;
	return 0;
}

/* What access(2) would answer for that user, from the mode bits alone
 * (libvirt's own check, virFileAccessibleAs, switches to the user and asks
 * access(2); ACLs on /dev/kvm are not considered here). */
static int user_rw(const struct stat *st, uid_t uid, gid_t gid, const char *user)
{
	mode_t m = st->st_mode;

	if (uid == 0)
		return 1;
	if (st->st_uid == uid)
		return (m & 0600) == 0600;
	if (in_group(user, gid, st->st_gid))
		return (m & 0060) == 0060;
	return (m & 0006) == 0006;
}

/* The _r look-ups: a synthesis session checks the host, and sessions may
 * run on several threads. */
static void name_owner(const struct stat *st, char *out, size_t cap)
{
	struct passwd pwbuf, *pw = NULL;
	struct group grbuf, *gr = NULL;
	char buf[16384], u[32], g[32];

	if (getpwuid_r(st->st_uid, &pwbuf, buf, sizeof(buf), &pw) == 0 && pw)
		snprintf(u, sizeof(u), "%s", pw->pw_name);
	else
		snprintf(u, sizeof(u), "%ld", (long)st->st_uid);
	if (getgrgid_r(st->st_gid, &grbuf, buf, sizeof(buf), &gr) == 0 && gr)
		snprintf(g, sizeof(g), "%s", gr->gr_name);
	else
		snprintf(g, sizeof(g), "%ld", (long)st->st_gid);
	snprintf(out, cap, "%s:%s", u, g);
}

int cl_host_kvm_check(struct cl_host_kvm *k)
{
	struct stat st;
	char group[64];
	uid_t uid;
	gid_t gid;
	int r;

	if (!k)
		return -EINVAL;
	memset(k, 0, sizeof(*k));
	r = cl_vm_qemu_user(&uid, &gid, group, sizeof(group), k->user, sizeof(k->user));
	if (r < 0)
		return r;
	if (stat(CL_HOST_KVM_DEV, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return cl_errorf(-errno, "%s: %s", CL_HOST_KVM_DEV, strerror(errno));
	}
	if (!S_ISCHR(st.st_mode))
		return 0;
	k->present = 1;
	k->mode = st.st_mode & 07777;
	k->uid = st.st_uid;
	k->gid = st.st_gid;
	name_owner(&st, k->owner, sizeof(k->owner));
	k->qemu_rw = user_rw(&st, uid, gid, k->user);
	k->reprobe = !k->qemu_rw;
	return 0;
}

int cl_host_kvm_fix(const struct cl_host_kvm *k, char *done, size_t cap)
{
	struct passwd *pw, *owner;
	struct group *gr;
	mode_t mode;
	int r;

	if (!k || !done || !cap)
		return -EINVAL;
	done[0] = '\0';
	if (!k->reprobe)
		return 0;
	gr = getgrnam(CL_HOST_KVM_GROUP);
	if (!gr)
		return cl_errorf(-ENOENT, "no group %s on this host (qemu-system-x86 makes it)",
		                 CL_HOST_KVM_GROUP);
	pw = getpwnam(k->user);
	if (!pw || !in_group(k->user, pw->pw_gid, gr->gr_gid))
		return cl_errorf(
		    -ENOENT, "%s is not in group %s: `usermod -aG %s %s`, then restart libvirtd",
		    k->user, CL_HOST_KVM_GROUP, CL_HOST_KVM_GROUP, k->user);
	if (geteuid() != 0)
		return cl_errorf(-EPERM, "%s: changing its mode needs root", CL_HOST_KVM_DEV);
	/* Read-write for the group, nothing more for others than before. */
	mode = (k->mode & ~0070) | 0060;
	if (chown(CL_HOST_KVM_DEV, (uid_t)-1, gr->gr_gid) < 0 || chmod(CL_HOST_KVM_DEV, mode) < 0) {
		r = -errno;
		return cl_errorf(r, "%s: %s", CL_HOST_KVM_DEV, strerror(-r));
	}
	owner = getpwuid(k->uid);
	snprintf(done, cap, "%s was %04o %s, now %04o %s:%s", CL_HOST_KVM_DEV, (unsigned)k->mode,
	         k->owner, (unsigned)mode, owner ? owner->pw_name : "root", gr->gr_name);
	return 0;
}

void cl_host_kvm_cause(const struct cl_host_kvm *k, const char *lead, char *out, size_t cap)
{
	snprintf(out, cap,
	         "%s: %s is %04o %s, which %s may not read and write, so libvirt probes QEMU's "
	         "capabilities again at every domain start (30-50 s)",
	         lead, CL_HOST_KVM_DEV, (unsigned)k->mode, k->owner, k->user);
}

int cl_host_warning(char *out, size_t cap)
{
	struct cl_host_kvm k;

	if (!out || cl_host_kvm_check(&k) < 0 || !k.reprobe)
		return 0;
	cl_host_kvm_cause(&k, "warning", out, cap);
	return 1;
}

struct cl_host {
	virConnectPtr c;
};

int cl_host_open(const char *uri, struct cl_host **out)
{
	struct cl_host *h;
	int r;

	if (!out)
		return -EINVAL;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	r = cl_vm_connect(uri, &h->c);
	if (r < 0) {
		free(h);
		return r;
	}
	*out = h;
	return 0;
}

void cl_host_close(struct cl_host *h)
{
	if (!h)
		return;
	virConnectClose(h->c);
	free(h);
}

int cl_host_libvirt(struct cl_host *h, unsigned long *version, char *uri, size_t cap)
{
	char *u;

	if (!h || !version || !uri || !cap)
		return -EINVAL;
	if (virConnectGetLibVersion(h->c, version) < 0)
		return cl_errorf(-EIO, "libvirt does not say its version: %s", cl_vm_error());
	u = virConnectGetURI(h->c);
	if (!u)
		return cl_errorf(-EIO, "libvirt does not say its URI: %s", cl_vm_error());
	snprintf(uri, cap, "%s", u);
	free(u);
	return 0;
}

int cl_host_time_start(struct cl_host *h, double *secs)
{
	char xml[512];
	virDomainPtr d;
	double t0;

	if (!h || !secs)
		return -EINVAL;
	snprintf(xml, sizeof(xml),
	         "<domain type='qemu'><name>cloudlet-check-%ld</name>"
	         "<memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os>"
	         "<devices><memballoon model='none'/></devices></domain>",
	         (long)getpid());
	t0 = cl_now();
	d = virDomainCreateXML(h->c, xml, VIR_DOMAIN_START_PAUSED);
	*secs = cl_now() - t0;
	if (!d)
		return cl_errorf(-EIO, "libvirt cannot start a minimal domain: %s", cl_vm_error());
	virDomainDestroy(d);
	virDomainFree(d);
	return 0;
}
