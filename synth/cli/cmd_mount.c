/* SPDX-License-Identifier: GPL-2.0-only */
/* cloudlet mount, umount and trace: front ends of the cloudletfs daemon. */
#include "cl_cli.h"
#include "cl_error.h"
#include "cl_mount.h"
#include "cl_util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UMOUNT_TIMEOUT 30 /* seconds */

static const char mount_usage[] =
    "Usage: cloudlet mount IMAGE OVERLAY MOUNTPOINT [-o OPTIONS] [-f] [-d]\n"
    "\n"
    "Mounts the customized VM synthesized lazily from the registered base IMAGE and\n"
    "OVERLAY (its overlay-meta, the directory holding it, or an http(s) URL of it)\n"
    "at MOUNTPOINT, by starting the cloudletfs daemon, and returns once the mount\n"
    "serves. MOUNTPOINT/disk/image and MOUNTPOINT/memory/image are the VM's disk\n"
    "and memory, readable and writable while the overlay is still arriving (a read\n"
    "of data not there yet waits for it); MOUNTPOINT/status shows the progress.\n"
    "\n"
    "Options:\n"
    "  -o, --options OPTIONS\n"
    "                    cloudletfs options, comma-separated, repeatable: e.g.\n"
    "                    allow_other, uid=USER, gid=GROUP, cache_dir=DIR,\n"
    "                    timeout=SECONDS, memory_timeout=SECONDS, connections=N,\n"
    "                    no_stream, keep_store (`cloudletfs --help` lists them all)\n"
    "  -f, --foreground  stay in the foreground until unmounted\n"
    "  -d, --debug       print every FUSE request (implies -f)\n"
    "  -h, --help        this help\n"
    "\n"
    "cloudletfs is looked for next to the cloudlet program, then in PATH.\n"
    "Stop it with `cloudlet umount MOUNTPOINT`.\n";

static const char umount_usage[] =
    "Usage: cloudlet umount MOUNTPOINT [-t SECONDS]\n"
    "\n"
    "Stops the cloudletfs daemon serving MOUNTPOINT: reads still waiting for data\n"
    "fail with EIO, then the mount goes away, even while a VM or another process\n"
    "holds its files open (those see errors from then on). Returns once the mount\n"
    "is gone and the daemon has exited. A mount whose daemon died is detached.\n"
    "\n"
    "Options:\n"
    "  -t, --timeout SECONDS  how long to wait for that (default 30)\n"
    "  -h, --help             this help\n";

static const char trace_usage[] =
    "Usage: cloudlet trace MOUNTPOINT [SECONDS] [-o FILE]\n"
    "\n"
    "Writes the TRACE of the VM mounted at MOUNTPOINT: every chunk of its disk and\n"
    "memory read or written so far, in first-access order across both images, one\n"
    "line each, `disk N` or `memory N` (the format `cloudlet overlay --order`\n"
    "takes). With SECONDS, first follows new accesses for that long (or until\n"
    "interrupted).\n"
    "\n"
    "Options:\n"
    "  -o, --output FILE   write to FILE (replaced once complete) instead of stdout\n"
    "  -h, --help          this help\n";

int cl_cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"options", required_argument, NULL, 'o'},
	    {"foreground", no_argument, NULL, 'f'},
	    {"debug", no_argument, NULL, 'd'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct cl_mount_opts mo = {0};
	const char **o;
	int c, r, st = 1;

	o = calloc((size_t)argc + 1, sizeof(char *));
	if (!o)
		return cl_cli_fail(-ENOMEM, NULL);
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:fdh", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o[mo.nopts++] = optarg;
			break;
		case 'f':
			mo.foreground = 1;
			break;
		case 'd':
			mo.debug = mo.foreground = 1;
			break;
		case 'h':
			fputs(mount_usage, stdout);
			free(o);
			return 0;
		default:
			free(o);
			return cl_cli_usage("mount", "bad option");
		}
	}
	if (optind != argc - 3) {
		free(o);
		return cl_cli_usage("mount", "expected IMAGE, OVERLAY and MOUNTPOINT");
	}
	mo.image = argv[optind];
	mo.overlay = argv[optind + 1];
	mo.mnt = argv[optind + 2];
	mo.opts = o;
	r = cl_mount_start(&mo, &st);
	free(o);
	if (r < 0)
		return cl_cli_fail(r, r == -ENOENT ? "build it, or install it in PATH" : NULL);
	return st;
}

/* --- cloudlet umount -------------------------------------------------- */

int cl_cmd_umount(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	double timeout = UMOUNT_TIMEOUT;
	const char *hint = NULL;
	int c, r, detached = 0;
	char *end;

	optind = 1;
	while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			timeout = strtod(optarg, &end);
			if (*end || end == optarg || !(timeout > 0) || timeout > 86400)
				return cl_cli_usage("umount", "bad timeout '%s'", optarg);
			break;
		case 'h':
			fputs(umount_usage, stdout);
			return 0;
		default:
			return cl_cli_usage("umount", "bad option");
		}
	}
	if (optind != argc - 1)
		return cl_cli_usage("umount", "expected one MOUNTPOINT");
	r = cl_mount_stop(argv[optind], timeout, &detached, &hint);
	if (r == 0 && detached)
		fprintf(stderr, "cloudlet: %s\n", cl_error_msg());
	return r < 0 ? cl_cli_fail(r, hint) : 0;
}

/* --- cloudlet trace ------------------------------------------------------ */

static atomic_int trace_stop; /* lock-free: a handler may store it */

static void on_stop(int sig)
{
	(void)sig;
	trace_stop = 1;
}

int cl_cli_trace_to(const char *mnt, double seconds, const atomic_int *stop, const char *output)
{
	struct cl_mount_trace t;
	int r;

	r = cl_mount_trace(mnt, seconds, stop, &t);
	if (r < 0)
		return cl_cli_fail(r, NULL), r;
	if (output) {
		r = cl_write_file_atomic(output, t.text, t.len, 0644);
		if (r == 0)
			fprintf(stderr, "%s: %zu chunks (%zu disk, %zu memory)\n", output,
			        t.n[CL_DISK] + t.n[CL_MEMORY], t.n[CL_DISK], t.n[CL_MEMORY]);
	} else if (fwrite(t.text, 1, t.len, stdout) != t.len || fflush(stdout)) {
		r = cl_errorf(-EIO, "stdout: %s", strerror(errno));
	}
	free(t.text);
	if (r < 0)
		cl_cli_fail(r, NULL);
	return r;
}

int cl_cmd_trace(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *output = NULL;
	double seconds = 0;
	struct sigaction sa;
	char *end;
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			output = optarg;
			break;
		case 'h':
			fputs(trace_usage, stdout);
			return 0;
		default:
			return cl_cli_usage("trace", "bad option");
		}
	}
	if (optind != argc - 1 && optind != argc - 2)
		return cl_cli_usage("trace", "expected MOUNTPOINT [SECONDS]");
	if (optind == argc - 2) {
		seconds = strtod(argv[optind + 1], &end);
		if (*end || end == argv[optind + 1] || !(seconds >= 0) || seconds > 1e7)
			return cl_cli_usage("trace", "bad SECONDS '%s'", argv[optind + 1]);
	}
	if (seconds > 0) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_stop;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	r = cl_cli_trace_to(argv[optind], seconds, &trace_stop, output);
	return r < 0 ? 1 : 0;
}
