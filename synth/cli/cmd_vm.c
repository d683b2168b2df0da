/* SPDX-License-Identifier: GPL-2.0-only */
/* cloudlet synthesis: arguments, the timeline and the end of the run; the
 * session itself is the VM layer's (cl_session.h). */
#include "cl_cli.h"
#include "cl_error.h"
#include "cl_net.h"
#include "cl_session.h"
#include "cl_util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_MOUNT_OPTS 32
#define OPT_PUBLISH    1000 /* long options without a short form */
#define OPT_JSON       1001
#define OPT_MEMORY     1002

static const char synthesis_usage[] =
    "Usage: cloudlet synthesis IMAGE OVERLAY [--no-early-start] [--name NAME]\n"
    "                          [--keep] [--mount DIR] [-o OPTIONS] [--json]\n"
    "                          [--publish [ADDR:]HOSTPORT:GUESTPORT]...\n"
    "                          [--memory-mode postcopy|mmap]\n"
    "\n"
    "Synthesizes the customized VM of OVERLAY (its overlay-meta, the directory\n"
    "holding it, or an http(s) URL of it) from the registered base IMAGE and runs it\n"
    "under libvirt (default qemu:///system): mounts cloudletfs, starts the VM paused\n"
    "on the mounted disk and memory images, loads its device state and resumes it\n"
    "while the rest of the overlay streams in; the pages and disk blocks it touches\n"
    "first are fetched on demand. Prints a timeline (mounted, domain started in N s,\n"
    "VM resumed, overlay complete, with the bytes fetched at each point), the\n"
    "endpoints published into the VM and the VNC address, if the VM has one. A\n"
    "domain start of seconds means a slow host (`cloudlet check`).\n"
    "Runs until Ctrl-C, SIGTERM or SIGHUP, the guest shutting down, or (when it is a\n"
    "terminal, a pipe or a socket) stdin closing; then destroys and undefines the\n"
    "domain, unmounts, and removes its files in " CL_SESSION_RUN_DIR "/NAME.\n"
    "\n"
    "Options:\n"
    "  -n, --name NAME       domain name (default cloudlet-<8 hex digits>)\n"
    "  -E, --no-early-start  fetch the whole overlay before starting the VM (the\n"
    "                        classic path, for comparison)\n"
    "  -k, --keep            leave the VM and the mount in place on exit\n"
    "  -m, --mount DIR       mount point (default " CL_SESSION_RUN_DIR "/NAME/mnt); QEMU's\n"
    "                        user must be able to reach it\n"
    "  -o, --options OPTS    more cloudletfs options, e.g. connections=8,no_cache\n"
    "                        (`cloudletfs --help`); repeatable\n"
    "      --publish [ADDR:]HOSTPORT:GUESTPORT\n"
    "                        forward TCP port HOSTPORT of ADDR (default 127.0.0.1;\n"
    "                        0.0.0.0 serves the LAN) into the VM's GUESTPORT before\n"
    "                        it resumes; HOSTPORT 0 takes any free port. Printed as\n"
    "                        http://ADDR:PORT for guest port 80, tcp://ADDR:PORT\n"
    "                        otherwise, and listed in the mount's status. Needs a\n"
    "                        base on user-mode networking (`cloudlet base\n"
    "                        --network`); host ports below 1024 are refused (QEMU\n"
    "                        runs unprivileged); repeatable, up to 16 times\n"
    "      --memory-mode MODE\n"
    "                        where guest RAM comes from: postcopy (page by page as\n"
    "                        the guest asks, through QEMU's postcopy migration, from\n"
    "                        the daemon that serves the disk, into a tmpfs of the\n"
    "                        VM's own) or mmap (QEMU maps the mounted memory image:\n"
    "                        each fault reads 2-4 MiB). Default: postcopy where this\n"
    "                        host allows it (`cloudlet check`), else mmap after a\n"
    "                        notice saying why\n"
    "      --json            the timeline as one JSON object per line on stdout\n"
    "                        (events mounted, domain_started, endpoint, resumed,\n"
    "                        running, complete, memory_complete, memory_failed,\n"
    "                        failed, ended, kept, stopping, stopped); messages stay\n"
    "                        on stderr\n"
    "  -h, --help            this help\n"
    "\n"
    "Environment:\n" CL_CLI_HELP_ENV_VM
    "  CLOUDLET_MEMORY_MODE  postcopy or mmap: the default of --memory-mode (read\n"
    "                        only when --memory-mode is not given)\n"
    "\n"
    "A VM resumes only under the accelerator and CPU model its state was saved\n"
    "under (its domain XML says which): saved under TCG, it runs under TCG; saved\n"
    "under KVM, it is refused where KVM does not work or CLOUDLET_ACCEL says tcg.\n";

struct synth {
	struct cl_synthesis_opts o;
	const char *mount_opts[MAX_MOUNT_OPTS];
	char mnt[PATH_MAX];
	int keep;
	double run_for;        /* profiling: stop this long after the resume */
	const char *trace_out; /* profiling: the TRACE of the run goes there */
	struct cl_publish pub[CL_PUBLISH_MAX];
	int json;
};

/* The length of the valid UTF-8 sequence at p (0 if it is not one). */
static size_t utf8_len(const unsigned char *p)
{
	size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;

	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/* A JSON string: control characters escaped, bytes that are not UTF-8
 * (a path may hold any) as U+FFFD. */
static void json_str(const char *v)
{
	const unsigned char *p = (const unsigned char *)v;
	size_t n;

	putchar('"');
	while (*p) {
		if (*p == '"' || *p == '\\') {
			printf("\\%c", *p++);
		} else if (*p < 0x20) {
			printf("\\u%04x", *p++);
		} else if (*p < 0x80) {
			putchar(*p++);
		} else if ((n = utf8_len(p))) {
			fwrite(p, 1, n, stdout);
			p += n;
		} else {
			fputs("\\ufffd", stdout);
			p++;
		}
	}
	putchar('"');
}

/* One JSON timeline object; extra (may be NULL) adds `,"key":value...`
 * already formatted, str (may be NULL) one more string field. */
static void json_event(const struct cl_session_event *ev, double t, const char *event,
                       const char *extra, const char *skey, const char *sval)
{
	printf("{\"t\":%.3f,\"event\":", t);
	json_str(event);
	if (ev && ev->progress)
		printf(",\"fetched\":%" PRIu64 ",\"pack\":%" PRIu64 ",\"memory_chunks\":%" PRIu64
		       ",\"disk_chunks\":%" PRIu64,
		       ev->fetched, ev->pack, ev->accessed[CL_MEMORY], ev->accessed[CL_DISK]);
	if (extra)
		fputs(extra, stdout);
	if (skey) {
		printf(",\"%s\":", skey);
		json_str(sval);
	}
	puts("}");
}

/* One timeline line: seconds since start, the event, bytes fetched. */
static void timeline(const struct cl_session_event *ev, const char *event)
{
	if (!ev->progress) {
		printf("[%8.2f s] %s\n", ev->t, event);
		return;
	}
	printf("[%8.2f s] %s: fetched %" PRIu64 " of %" PRIu64 " bytes (%.1f%%); chunks "
	       "accessed: memory %" PRIu64 ", disk %" PRIu64 "\n",
	       ev->t, event, ev->fetched, ev->pack,
	       ev->pack ? 100.0 * (double)ev->fetched / (double)ev->pack : 100.0,
	       ev->accessed[CL_MEMORY], ev->accessed[CL_DISK]);
}

static void on_event_json(struct cl_session *s, const struct cl_session_event *ev)
{
	static const char *const names[] = {[CL_SESSION_MOUNTED] = "mounted",
	                                    [CL_SESSION_COMPLETE] = "complete",
	                                    [CL_SESSION_DOMAIN_STARTED] = "domain_started",
	                                    [CL_SESSION_RESUMED] = "resumed",
	                                    [CL_SESSION_STOPPING] = "stopping",
	                                    [CL_SESSION_STOPPED] = "stopped",
	                                    [CL_SESSION_FAILED] = "failed",
	                                    [CL_SESSION_MEMORY_COMPLETE] = "memory_complete",
	                                    [CL_SESSION_MEMORY_FAILED] = "memory_failed"};
	char extra[128] = "", status[PATH_MAX + 16];

	if (ev->kind == CL_SESSION_NOTICE) {
		cl_cli_notice(ev);
		return;
	}
	if (ev->kind == CL_SESSION_ENDPOINT) {
		snprintf(extra, sizeof(extra),
		         ",\"addr\":\"%s\",\"host_port\":%u,\"guest_port\":%u", ev->endpoint->addr,
		         ev->endpoint->host_port, ev->endpoint->guest_port);
		json_event(ev, ev->t, "endpoint", extra, "url", ev->text);
		return;
	}
	if ((size_t)ev->kind >= sizeof(names) / sizeof(names[0]) || !names[ev->kind])
		return; /* not a timeline event of synthesis */
	if (ev->kind == CL_SESSION_DOMAIN_STARTED)
		snprintf(extra, sizeof(extra), ",\"secs\":%.3f", ev->secs);
	if (ev->kind == CL_SESSION_RESUMED)
		snprintf(extra, sizeof(extra), ",\"memory\":\"%s\"", cl_session_memory(s));
	if (ev->kind == CL_SESSION_MEMORY_FAILED) {
		json_event(ev, ev->t, names[ev->kind], NULL, "reason", ev->text);
		return;
	}
	snprintf(status, sizeof(status), "%s/status", cl_session_mount(s));
	json_event(ev, ev->t, names[ev->kind], extra,
	           ev->kind == CL_SESSION_FAILED ? "status" : NULL, status);
}

static void on_event(struct cl_session *s, void *ctx, const struct cl_session_event *ev)
{
	const struct synth *sy = ctx;
	char what[64];

	if (sy && sy->json) {
		on_event_json(s, ev);
		return;
	}
	switch (ev->kind) {
	case CL_SESSION_MOUNTED:
		timeline(ev, "mounted");
		break;
	case CL_SESSION_COMPLETE:
		timeline(ev, "overlay complete");
		break;
	case CL_SESSION_DOMAIN_STARTED:
		snprintf(what, sizeof(what), "domain started in %.2f s", ev->secs);
		timeline(ev, what);
		break;
	case CL_SESSION_RESUMED:
		timeline(ev, "VM resumed");
		break;
	case CL_SESSION_MEMORY_COMPLETE:
		timeline(ev, "guest memory complete");
		break;
	case CL_SESSION_MEMORY_FAILED:
		printf("[%8.2f s] %s\n", ev->t, ev->text);
		break;
	case CL_SESSION_ENDPOINT:
		printf("[%8.2f s] endpoint %s (guest port %u)\n", ev->t, ev->text,
		       ev->endpoint->guest_port);
		break;
	case CL_SESSION_STOPPING:
		timeline(ev, "stopping");
		break;
	case CL_SESSION_STOPPED:
		printf("[%8.2f s] stopped: domain removed, unmounted, files removed\n", ev->t);
		break;
	case CL_SESSION_FAILED:
		fprintf(stderr,
		        "cloudlet: warning: the overlay stopped arriving (see %s/status); the VM "
		        "fails reads of what is missing\n",
		        cl_session_mount(s));
		break;
	default:
		cl_cli_notice(ev);
	}
}

/* stdin is watched only when its end can be seen: a terminal or a pipe. */
static int watch_stdin(void)
{
	struct stat st;

	if (isatty(0))
		return 1;
	return fstat(0, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

static const char *end_reason(enum cl_session_end end)
{
	switch (end) {
	case CL_SESSION_END_STOP:
		return cl_cli_signal() == SIGINT ? "interrupted (SIGINT)" : "terminated (signal)";
	case CL_SESSION_END_TIME:
		return "profiling time over";
	case CL_SESSION_END_GUEST:
		return "the guest shut down";
	case CL_SESSION_END_LIBVIRT:
		return "libvirt stopped answering";
	case CL_SESSION_END_MEMORY:
		return "guest memory failed: the VM was killed";
	default:
		return "stdin closed";
	}
}

/* After the resume: how to reach the VM, then its run until its end. */
/* How to reach the running VM. */
static void show_running(const struct synth *sy, struct cl_session *s)
{
	char vnc[128], extra[512];
	int has_vnc = cl_session_vnc(s, vnc, sizeof(vnc)) == 0;

	if (sy->json) {
		snprintf(extra, sizeof(extra), ",\"accel\":\"%s\",\"console\":\"%s/console.sock\"",
		         cl_session_accel(s), cl_session_rundir(s));
		if (has_vnc)
			snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
			         ",\"vnc\":\"%s\"", vnc);
		json_event(NULL, cl_session_elapsed(s), "running", extra, "domain",
		           cl_session_name(s));
		return;
	}
	if (has_vnc)
		printf("VNC display: %s\n", vnc);
	else
		printf("no VNC display\n");
	printf("domain %s (%s, memory %s); serial console %s/console.sock; Ctrl-C or SIGTERM "
	       "ends it\n",
	       cl_session_name(s), cl_session_accel(s), cl_session_memory(s), cl_session_rundir(s));
}

static int run(struct synth *sy, struct cl_session *s)
{
	enum cl_session_end end;
	int r;

	show_running(sy, s);
	/* What the guest needs to answer on its console belongs in the
	 * profile too. */
	if (sy->run_for > 0 &&
	    (r = cl_session_console_run(s, "cat /proc/uptime >/dev/null", 120)) < 0 &&
	    r != -ENOTCONN)
		fprintf(stderr, "cloudlet: warning: %s\n", cl_error_msg());
	r = cl_session_wait(s, sy->run_for, watch_stdin() ? 0 : -1, &end);
	if (r < 0)
		return r;
	if (sy->json)
		json_event(NULL, cl_session_elapsed(s), "ended", NULL, "reason", end_reason(end));
	else
		printf("[%8.2f s] %s\n", cl_session_elapsed(s), end_reason(end));
	/* A VM lost to a fault is a failure of the command. */
	if (end == CL_SESSION_END_MEMORY)
		return cl_errorf(
		    -EIO, "guest memory could not be served (see the postcopy lines of %s/status)",
		    cl_session_mount(s));
	return 0;
}

/* The end: kept as it is, or torn down (after taking the profile's TRACE). */
static int finish(struct synth *sy, struct cl_session *s, int r, int ran)
{
	if (sy->keep && r == 0 && sy->json) {
		json_event(NULL, cl_session_elapsed(s), "kept", NULL, "rundir",
		           cl_session_rundir(s));
		return cl_cli_close(s, 1);
	}
	if (sy->keep && r == 0) {
		printf("kept: domain %s and the mount %s; remove them with\n"
		       "  virsh destroy %s; virsh undefine %s; cloudlet umount %s; rm -r %s\n",
		       cl_session_name(s), cl_session_mount(s), cl_session_name(s),
		       cl_session_name(s), cl_session_mount(s), cl_session_rundir(s));
		return cl_cli_close(s, 1);
	}
	if (ran && sy->trace_out &&
	    cl_cli_trace_to(cl_session_mount(s), 0, NULL, sy->trace_out) < 0)
		r = -EIO;
	if (cl_cli_close(s, 0) < 0)
		r = -EIO;
	return r;
}

/* Everything after the arguments; returns the exit status. */
static int synthesize(struct synth *sy)
{
	struct cl_session *s = NULL, *outer;
	const char *hint;
	int r, said = 0, ran = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	r = cl_session_new(on_event, sy, &s);
	if (r < 0)
		return cl_cli_fail(r, NULL);
	outer = cl_cli_signals(s);
	r = cl_session_synthesis(s, &sy->o);
	if (r == 0) {
		ran = 1;
		r = run(sy, s);
	}
	if (r < 0) {
		hint = cl_session_hint(s, &said);
		if (said)
			fprintf(stderr, "hint: %s\n", hint);
		else
			cl_cli_fail(r, hint);
	}
	r = finish(sy, s, r, ran);
	cl_cli_signals(outer);
	return r < 0 ? 1 : 0;
}

static int memory_mode(const char *v, enum cl_memory_mode *out)
{
	if (!strcmp(v, "postcopy"))
		*out = CL_MEMORY_POSTCOPY;
	else if (!strcmp(v, "mmap"))
		*out = CL_MEMORY_MMAP;
	else
		return -EINVAL;
	return 0;
}

static int parse_args(struct synth *s, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"no-early-start", no_argument, NULL, 'E'},
	    {"keep", no_argument, NULL, 'k'},
	    {"mount", required_argument, NULL, 'm'},
	    {"options", required_argument, NULL, 'o'},
	    {"publish", required_argument, NULL, OPT_PUBLISH},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"memory-mode", required_argument, NULL, OPT_MEMORY},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *p;
	int c, mode_given = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "n:Ekm:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (strlen(optarg) >= 64 || !*optarg)
				return cl_cli_usage("synthesis", "NAME: 1 to %zu characters",
				                    (size_t)63);
			for (p = optarg; *p; p++)
				if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
				    !(*p >= '0' && *p <= '9') && !strchr("-_.+", *p))
					return cl_cli_usage("synthesis",
					                    "NAME: letters, digits and -_.+ only");
			if (optarg[0] == '.')
				return cl_cli_usage("synthesis", "NAME may not start with '.'");
			s->o.name = optarg;
			break;
		case 'E':
			s->o.no_early_start = 1;
			break;
		case 'k':
			s->keep = 1;
			break;
		case 'm':
			if (!realpath(optarg, s->mnt))
				return cl_cli_usage("synthesis", "--mount %s: %s", optarg,
				                    strerror(errno));
			s->o.mount = s->mnt;
			break;
		case 'o':
			if (s->o.nmount_opts == MAX_MOUNT_OPTS)
				return cl_cli_usage("synthesis", "too many -o options");
			s->mount_opts[s->o.nmount_opts++] = optarg;
			break;
		case OPT_PUBLISH:
			if ((c = cl_cli_publish("synthesis", optarg, s->pub, &s->o.npublish)) >= 0)
				return c;
			break;
		case OPT_JSON:
			s->json = 1;
			break;
		case OPT_MEMORY:
			if (memory_mode(optarg, &s->o.memory) < 0)
				return cl_cli_usage("synthesis", "--memory-mode: postcopy or mmap");
			mode_given = 1;
			break;
		case 'h':
			fputs(synthesis_usage, stdout);
			return 0;
		default:
			return cl_cli_usage("synthesis", "bad option");
		}
	}
	p = getenv("CLOUDLET_MEMORY_MODE");
	if (!mode_given && p && *p && memory_mode(p, &s->o.memory) < 0)
		return cl_cli_usage("synthesis", "CLOUDLET_MEMORY_MODE: postcopy or mmap");
	if (optind != argc - 2)
		return cl_cli_usage("synthesis", "expected IMAGE and OVERLAY");
	s->o.image = argv[optind];
	s->o.overlay = argv[optind + 1];
	return -1;
}

int cl_cmd_synthesis(int argc, char **argv)
{
	struct synth s;
	int r;

	memset(&s, 0, sizeof(s));
	s.o.mount_opts = s.mount_opts;
	s.o.publish = s.pub;
	r = parse_args(&s, argc, argv);
	if (r >= 0)
		return r;
	return synthesize(&s);
}

int cl_synthesis_profile(const char *image, const char *overlay, const char *name, double seconds,
                         const char *trace_out)
{
	struct synth s;

	memset(&s, 0, sizeof(s));
	s.o.image = image;
	s.o.overlay = overlay;
	s.o.name = name;
	s.o.mount_opts = s.mount_opts;
	s.run_for = seconds;
	s.trace_out = trace_out;
	/* The overlay is rewritten right after: keep nothing of it. */
	s.mount_opts[s.o.nmount_opts++] = "no_cache";
	return synthesize(&s);
}
