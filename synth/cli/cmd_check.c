/* SPDX-License-Identifier: GPL-2.0-only */
/* cloudlet check: does this host have what cloudlet needs? One line per
 * fact, "LEVEL AREA: text", so that a script can grep for them. */
#include "cl_cli.h"
#include "cl_error.h"
#include "cl_host.h"
#include "cl_hostcheck.h"
#include "cl_session.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char check_usage[] =
    "Usage: cloudlet check [--fix]\n"
    "\n"
    "Reports, one line each, what cloudlet needs of this host: FUSE for\n"
    "cloudletfs (/dev/fuse, fusermount3, allow_other), libvirt and the user it\n"
    "runs QEMU as, /dev/kvm for that user, KVM or TCG, QEMU's version and\n"
    "userfaultfd (postcopy memory), tc (benchmarks only), and the time libvirt\n"
    "takes to start a minimal paused domain (goal: under 3 s).\n"
    "\n"
    "Each line is LEVEL AREA: TEXT, with LEVEL one of\n"
    "  ok     fine\n"
    "  note   worth knowing, cloudlet works (e.g. TCG, no postcopy memory, no tc)\n"
    "  FAIL   cloudlet cannot work well here until it is fixed\n"
    "  fix    after a FAIL or note: the one thing to do (--fix does those that\n"
    "         say `cloudlet check --fix`)\n"
    "  fixed  what --fix changed\n"
    "\n"
    "Options:\n"
    "  --fix       as root, first apply the fixes that name `cloudlet check --fix`,\n"
    "              each printed before it is applied, then check again:\n"
    "              /dev/kvm: group kvm and mode 0660, as Debian's udev rule does;\n"
    "              userfaultfd: write /etc/sysctl.d/60-cloudlet-userfaultfd.conf\n"
    "              (vm.unprivileged_userfaultfd = 1) and set the sysctl now\n"
    "  -h, --help  this help\n"
    "\n"
    "Environment:\n"
    "  CLOUDLET_LIBVIRT_URI  libvirt connection (default qemu:///system)\n"
    "  CLOUDLET_ACCEL        kvm or tcg: the accelerator is not probed, but taken\n"
    "\n"
    "Exit status: 0 if nothing FAILs (notes allowed), 1 if something does or a\n"
    "fix failed, 2 on a usage error.\n";

/* What the checks pass on to the ones after them. */
struct ctx {
	struct cl_host *h;  /* libvirt, when it answers */
	unsigned long qemu; /* QEMU's version, 0 if unknown */
	int kvm_bad;        /* libvirt re-probes QEMU at every start */
};

void cl_cli_host_warn(void)
{
	char line[512];

	if (cl_host_warning(line, sizeof(line)))
		fprintf(stderr, "cloudlet: %s\nhint: %s\n", line, CL_HOST_KVM_HINT);
}

/* One report line: "LEVEL AREA: text". */
__attribute__((format(printf, 3, 4))) static void say(const char *level, const char *area,
                                                      const char *fmt, ...)
{
	va_list ap;

	printf("%-5s %s: ", level, area);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* A check that could not look is a failure too: 1. */
static int unknown(const char *area, int r)
{
	const char *msg = cl_error_msg();

	say("FAIL", area, "cannot check: %s", *msg ? msg : strerror(-r));
	return 1;
}

static int fuse_dev(const struct cl_host_fuse *f)
{
	if (f->dev) {
		say("ok", "fuse", "%s opens read-write", CL_HOST_FUSE_DEV);
		return 0;
	}
	say("FAIL", "fuse", "%s: %s: cloudletfs cannot mount", CL_HOST_FUSE_DEV,
	    strerror(f->dev_errno));
	if (f->dev_errno == EACCES)
		say("fix", "fuse",
		    "chmod 0666 %s (as root; udev's rule makes it so), or run "
		    "cloudlet as root",
		    CL_HOST_FUSE_DEV);
	else
		say("fix", "fuse", "modprobe fuse (as root; a container needs %s passed in)",
		    CL_HOST_FUSE_DEV);
	return 1;
}

static int fusermount(const struct cl_host_fuse *f)
{
	if (*f->fusermount) {
		say("ok", "fusermount3", "%s", f->fusermount);
		return 0;
	}
	say(f->root ? "note" : "FAIL", "fusermount3",
	    "not installed: root mounts without it, other users mount and unmount through it");
	say("fix", "fusermount3", "apt-get install fuse3");
	return !f->root;
}

static int allow_other(const struct cl_host_fuse *f)
{
	if (f->root) {
		say("ok", "allow_other",
		    "root's mounts may use it; %s %s user_allow_other (only other users' "
		    "mounts need it)",
		    CL_HOST_FUSE_CONF, f->user_allow_other ? "has" : "has no");
		return 0;
	}
	if (f->user_allow_other) {
		say("ok", "allow_other", "%s has user_allow_other", CL_HOST_FUSE_CONF);
		return 0;
	}
	say("FAIL", "allow_other",
	    "not root, and %s has no user_allow_other: cloudletfs mounts with allow_other "
	    "so that QEMU's user may open the images",
	    CL_HOST_FUSE_CONF);
	say("fix", "allow_other", "echo user_allow_other >> %s (as root), or run cloudlet as root",
	    CL_HOST_FUSE_CONF);
	return 1;
}

/* cloudletfs's device, fusermount3 and allow_other: three lines. */
static int check_fuse(struct ctx *c)
{
	struct cl_host_fuse f;
	int r;

	(void)c;
	r = cl_host_fuse_check(&f);
	if (r < 0)
		return unknown("fuse", r);
	return fuse_dev(&f) | fusermount(&f) | allow_other(&f);
}

static int check_libvirt(struct ctx *c)
{
	unsigned long v;
	char uri[256];
	int r;

	r = cl_host_open(NULL, &c->h);
	if (r < 0) {
		say("FAIL", "libvirt", "%s", cl_error_msg());
		say("fix", "libvirt", "%s", CL_SESSION_LIBVIRTD_HINT);
		return 1;
	}
	r = cl_host_libvirt(c->h, &v, uri, sizeof(uri));
	if (r < 0)
		return unknown("libvirt", r);
	say("ok", "libvirt", "%s answers (libvirt %lu.%lu.%lu)", uri, v / 1000000, v / 1000 % 1000,
	    v % 1000);
	return 0;
}

static int check_quser(struct ctx *c)
{
	struct cl_host_quser q;
	int r;

	(void)c;
	r = cl_host_quser_check(&q);
	if (r < 0) {
		say("FAIL", "qemu-user", "%s", cl_error_msg());
		say("fix", "qemu-user",
		    "set `user =` in /etc/libvirt/qemu.conf to a user that exists");
		return 1;
	}
	say("ok", "qemu-user", "libvirt runs QEMU as %s (group %s): %s", q.user, q.group,
	    q.from_conf > 0    ? "`user =` in /etc/libvirt/qemu.conf"
	    : q.from_conf == 0 ? "libvirt's default (no `user =` in /etc/libvirt/qemu.conf)"
	                       : "libvirt's default, assumed (/etc/libvirt/qemu.conf is not "
	                         "readable here)");
	return 0;
}

static int check_kvm(struct ctx *c)
{
	struct cl_host_kvm k;
	char line[512];
	int r;

	r = cl_host_kvm_check(&k);
	if (r < 0)
		return unknown("kvm", r);
	if (!k.present) {
		say("note", "kvm", "no %s: libvirt probes TCG only", CL_HOST_KVM_DEV);
		return 0;
	}
	if (!k.reprobe) {
		say("ok", "kvm", "%s %04o %s, read-write for %s", CL_HOST_KVM_DEV, (unsigned)k.mode,
		    k.owner, k.user);
		return 0;
	}
	cl_host_kvm_cause(&k, "libvirt starts domains slowly", line, sizeof(line));
	say("FAIL", "kvm", "%s", line);
	say("fix", "kvm", "%s", CL_HOST_KVM_HINT);
	c->kvm_bad = 1;
	return 1;
}

static int check_accel(struct ctx *c)
{
	struct cl_host_accel a;
	int r;

	(void)c;
	r = cl_host_accel_check(&a);
	if (r < 0)
		return unknown("accel", r);
	if (!strcmp(a.type, "kvm"))
		say("ok", "accel", "KVM%s%s%s", *a.why ? " (" : "", a.why, *a.why ? ")" : "");
	else if (!strcmp(a.type, "tcg"))
		say("note", "accel", "TCG, not KVM (guests run, more slowly): %s", a.why);
	else
		say("note", "accel",
		    "%s opens; whether a KVM guest boots here is probed at the first VM start "
		    "since the host booted (at most 20 s), which then runs under KVM or TCG",
		    CL_HOST_KVM_DEV);
	return 0;
}

static int check_qemu(struct ctx *c)
{
	char line[256];
	int r;

	r = cl_host_qemu_version(CL_HOST_QEMU_BIN, &c->qemu, line, sizeof(line));
	if (r == -ENOENT) {
		say("FAIL", "qemu", "%s is not installed", CL_HOST_QEMU_BIN);
		say("fix", "qemu", "apt-get install qemu-system-x86");
		return 1;
	}
	if (r < 0)
		return unknown("qemu", r);
	say("ok", "qemu", "%s", line);
	return 0;
}

static int check_uffd(struct ctx *c)
{
	struct cl_host_uffd u;
	int r;

	(void)c;
	r = cl_host_uffd_check(&u);
	if (r < 0)
		return unknown("userfaultfd", r);
	if (!u.kernel)
		say("note", "userfaultfd", "this kernel has none (no %s)", CL_HOST_UFFD_SYSCTL);
	else if (u.caps)
		say("ok", "userfaultfd",
		    "QEMU runs as root with its capabilities (clear_emulator_capabilities = 0)");
	else if (u.ok)
		say("ok", "userfaultfd",
		    "vm.unprivileged_userfaultfd = 1: QEMU (as %s) may call it", u.user);
	if (!u.kernel || u.ok)
		return 0;
	say("note", "userfaultfd",
	    "vm.unprivileged_userfaultfd = %d: QEMU (as %s, without capabilities) may not call "
	    "userfaultfd(2), which postcopy memory needs",
	    u.sysctl, u.user);
	say("fix", "userfaultfd",
	    "run `cloudlet check --fix` as root: it writes %s (vm.unprivileged_userfaultfd = 1) "
	    "and sets it now (every user may then call userfaultfd(2))",
	    CL_HOST_UFFD_DROPIN);
	return 0;
}

static int check_postcopy(struct ctx *c)
{
	char why[512];
	int r;

	if (!c->qemu) {
		say("note", "postcopy", "unavailable: QEMU's version is unknown (see qemu)");
		return 0;
	}
	r = cl_host_postcopy_ok(c->qemu, why, sizeof(why));
	if (r == -ENOTSUP)
		say("note", "postcopy",
		    "unavailable, guest memory is mapped from cloudletfs (mmap) instead: %s", why);
	else if (r < 0)
		return unknown("postcopy", r);
	else
		say("ok", "postcopy", "available: guest memory is served page by page");
	return 0;
}

static int check_tc(struct ctx *c)
{
	char path[256];

	(void)c;
	if (cl_host_which("tc", path, sizeof(path)) == 0) {
		say("ok", "tc", "%s (the benchmarks shape their link with it)", path);
		return 0;
	}
	say("note", "tc", "not installed: only the benchmarks need it (to shape their link)");
	say("fix", "tc", "apt-get install iproute2");
	return 0;
}

static int check_start(struct ctx *c)
{
	double secs;
	int r;

	if (!c->h) {
		say("FAIL", "domain-start", "not timed: libvirt does not answer");
		return 1;
	}
	if (c->kvm_bad)
		say("note", "domain-start", "timing it (this host takes 30-50 s)");
	fflush(stdout);
	r = cl_host_time_start(c->h, &secs);
	if (r < 0)
		return unknown("domain-start", r);
	if (secs < CL_HOST_START_GOAL || c->kvm_bad) {
		say(secs < CL_HOST_START_GOAL ? "ok" : "FAIL", "domain-start",
		    "%.2f s (goal under %.0f s)%s", secs, CL_HOST_START_GOAL,
		    c->kvm_bad ? ", slow because of /dev/kvm (see kvm)" : "");
		return secs >= CL_HOST_START_GOAL;
	}
	say("FAIL", "domain-start",
	    "%.2f s (goal under %.0f s) for a reason cloudlet does not know", secs,
	    CL_HOST_START_GOAL);
	say("fix", "domain-start",
	    "libvirt's debug log (log_filters=\"1:qemu\" in libvirtd.conf) says what it does "
	    "meanwhile");
	return 1;
}

static int fix_failed(const char *area)
{
	say("FAIL", area, "the fix failed: %s", cl_error_msg());
	return 1;
}

/* --fix: the fixes `cloudlet check --fix` names, each said first. 1 if
 * one failed. */
static int apply_fixes(void)
{
	struct cl_host_kvm k;
	struct cl_host_uffd u;
	char done[256];
	int failed = 0;

	if (cl_host_kvm_check(&k) == 0 && k.reprobe) {
		say("fix", "kvm", "giving %s group %s and mode 0660", CL_HOST_KVM_DEV,
		    CL_HOST_KVM_GROUP);
		if (cl_host_kvm_fix(&k, done, sizeof(done)) < 0)
			failed = fix_failed("kvm");
		else
			say("fixed", "kvm", "%s", done);
	}
	if (cl_host_uffd_check(&u) == 0 && u.kernel && !u.ok) {
		say("fix", "userfaultfd",
		    "writing %s (vm.unprivileged_userfaultfd = 1), setting it now",
		    CL_HOST_UFFD_DROPIN);
		if (cl_host_uffd_fix(done, sizeof(done)) < 0)
			failed = fix_failed("userfaultfd");
		else
			say("fixed", "userfaultfd", "%s", done);
	}
	return failed;
}

static int (*const checks[])(struct ctx *) = {
    check_fuse, check_libvirt, check_quser,    check_kvm, check_accel,
    check_qemu, check_uffd,    check_postcopy, check_tc,  check_start};

int cl_cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"fix", no_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'}, {0}};
	struct ctx c = {0};
	int fix = 0, o, bad = 0;
	size_t i;

	optind = 1;
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (o == 'f')
			fix = 1;
		else if (o == 'h')
			return fputs(check_usage, stdout) < 0;
		else
			return cl_cli_usage("check", "bad option");
	}
	if (optind != argc)
		return cl_cli_usage("check", "no arguments expected");
	if (fix)
		bad = apply_fixes();
	for (i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		cl_error_clear();
		bad |= checks[i](&c);
	}
	cl_host_close(c.h);
	if (bad)
		fprintf(stderr, "cloudlet: this host is not fit for cloudlet: see the FAIL lines "
		                "above and their fix lines\n");
	return bad;
}
