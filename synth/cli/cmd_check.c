/* SPDX-License-Identifier: GPL-2.0-only */
/* cloudlet check: can this host start cloudlet's VMs quickly? */
#include "cl_cli.h"
#include "cl_error.h"
#include "cl_host.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char check_usage[] =
    "Usage: cloudlet check [--fix]\n"
    "\n"
    "Checks that this host starts libvirt domains quickly, as early start needs:\n"
    "that libvirt answers, that QEMU's user may read and write /dev/kvm (where it\n"
    "may not, libvirt 9.0 probes QEMU's capabilities again at every domain start,\n"
    "30-50 s), and times the start of a minimal paused domain (goal: under 3 s).\n"
    "Exit status 0 if the host is fit, 1 if not (with the cause and the fix).\n"
    "\n"
    "Options:\n"
    "  --fix       as root, first give /dev/kvm group kvm and mode 0660, as Debian's\n"
    "              udev rule does on hosts that run udev (says what it changed)\n"
    "  -h, --help  this help\n"
    "\n"
    "Environment:\n"
    "  CLOUDLET_LIBVIRT_URI  libvirt connection (default qemu:///system)\n";

void cl_cli_host_warn(void)
{
	char line[512];

	if (cl_host_warning(line, sizeof(line)))
		fprintf(stderr, "cloudlet: %s\nhint: %s\n", line, CL_HOST_KVM_HINT);
}

static int check_kvm(int fix)
{
	struct cl_host_kvm k;
	char done[256], line[512];
	int r;

	r = cl_host_kvm_check(&k);
	if (r < 0)
		return r;
	if (k.reprobe && fix) {
		r = cl_host_kvm_fix(&k, done, sizeof(done));
		if (r < 0)
			return r;
		printf("fixed: %s\n", done);
		r = cl_host_kvm_check(&k);
		if (r < 0)
			return r;
	}
	if (!k.present)
		printf("%s: none (libvirt probes TCG only)\n", CL_HOST_KVM_DEV);
	else
		printf("%s: %04o %s, %s for %s\n", CL_HOST_KVM_DEV, (unsigned)k.mode, k.owner,
		       k.qemu_rw ? "read-write" : "NOT read-write", k.user);
	if (k.reprobe) {
		cl_host_kvm_cause(&k, "this host starts domains slowly", line, sizeof(line));
		fprintf(stderr, "cloudlet: %s\nhint: %s\n", line, CL_HOST_KVM_HINT);
		return 1;
	}
	return 0;
}

int cl_cmd_check(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"fix", no_argument, NULL, 'f'}, {"help", no_argument, NULL, 'h'}, {0}};
	struct cl_host *h = NULL;
	double secs;
	int fix = 0, o, r, bad;

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
	bad = check_kvm(fix);
	if (bad < 0)
		return cl_cli_fail(bad, NULL);
	r = cl_host_open(NULL, &h);
	if (r < 0)
		return cl_cli_fail(r, CL_CLI_LIBVIRTD_HINT);
	if (bad)
		printf("timing a domain start (this host takes 30-50 s)\n");
	r = cl_host_time_start(h, &secs);
	cl_host_close(h);
	if (r < 0)
		return cl_cli_fail(r, NULL);
	printf("domain start: %.2f s (goal under %.0f s)\n", secs, CL_HOST_START_GOAL);
	if (secs >= CL_HOST_START_GOAL && !bad) {
		fprintf(stderr,
		        "cloudlet: this host starts domains slowly (%.2f s) for a reason cloudlet "
		        "does not know\nhint: libvirt's debug log (log_filters=\"1:qemu\" in "
		        "libvirtd.conf) says what it does meanwhile\n",
		        secs);
		return 1;
	}
	return bad;
}
