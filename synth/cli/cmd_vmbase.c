/* SPDX-License-Identifier: GPL-2.0-only */
/* cloudlet base and cloudlet overlay, the forms that run a VM: boot a raw
 * disk to make a base, or resume a base on a copy-on-write disk to make an
 * overlay. Both let the user (or a console script) customize the VM, then
 * save it (the VM layer's boot and customize sessions, cl_session.h) and
 * register the base or write the overlay. */
#include "cl_base.h"
#include "cl_cli.h"
#include "cl_error.h"
#include "cl_overlay.h"
#include "cl_session.h"
#include "cl_util.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_DEFAULT 3600.0 /* seconds for the customization, unless --timeout */
#define OPT_NETWORK  1000   /* long options without a short form */
#define OPT_PUBLISH  1001

const char cl_cli_base_boot_usage[] =
    "Usage: cloudlet base IMAGE [--ram MiB] [--vcpus N] [--kernel K [--initrd I]\n"
    "                     [--cmdline C]] [--snapshot-on TEXT] [--name NAME]\n"
    "                     [--timeout SECONDS] [--chunk-size BYTES] [--no-free-memory]\n"
    "                     [--network user|nat|none|bridge=BR|libvirt=NAME]\n"
    "\n"
    "Boots the raw disk IMAGE under libvirt (file-backed RAM in IMAGE.memory, VNC on\n"
    "127.0.0.1, serial console on a unix socket) so that it can be set up. When\n"
    "Enter is pressed, the VNC viewer is closed, or the guest prints TEXT on its\n"
    "serial console, the VM is paused, its device state saved (IMAGE.state, RAM\n"
    "stays in IMAGE.memory), its domain XML kept (IMAGE.domain.xml), and all is\n"
    "registered as a base. The kernel and initrd are copied into the base's registry\n"
    "directory and its domain XML names them there, so that the directory can be\n"
    "copied to another cloudlet. Before the snapshot it waits (at most 60 s) until\n"
    "the pages the guest freed have become holes in IMAGE.memory (virtio balloon free\n"
    "page reporting; the guest needs the virtio_balloon module, Linux 5.7 or later).\n"
    "\n"
    "Options:\n"
    "  -r, --ram MiB           guest RAM (default 256)\n"
    "  -p, --vcpus N           virtual CPUs (default 1)\n"
    "  -k, --kernel K          boot this kernel (direct kernel boot; default: the\n"
    "                          disk's boot loader)\n"
    "  -i, --initrd I          its initrd\n"
    "  -a, --cmdline C         its command line (default console=ttyS0)\n"
    "  -w, --snapshot-on TEXT  snapshot once the guest prints TEXT on its console\n"
    "  -n, --name NAME         domain name (default cloudlet-base-<pid>)\n"
    "  -t, --timeout SECONDS   give up waiting after that long (default 3600)\n"
    "  -c, --chunk-size BYTES  as for the registering form\n"
    "  -F, --no-free-memory    a balloon without free page reporting, and no wait:\n"
    "                          freed guest memory stays in the RAM file (this base\n"
    "                          and every overlay of it keep that balloon)\n"
    "      --network MODE      the VM's virtio NIC, kept by every VM of the base (the\n"
    "                          network backend is part of the saved device state):\n"
    "                          user   QEMU's user-mode networking, confined: the\n"
    "                                 guest gets an address by DHCP and reaches\n"
    "                                 nothing outside; `synthesis --publish`\n"
    "                                 forwards host ports in (default)\n"
    "                          nat    the same, and the guest may open connections\n"
    "                                 to the outside, the host included\n"
    "                          none   no NIC\n"
    "                          bridge=BR     a tap on the host bridge BR\n"
    "                          libvirt=NAME  the libvirt network NAME\n"
    "  -h, --help              this help\n"
    "\n"
    "Environment:\n" CL_CLI_HELP_ENV_VM "\n"
    "With --memory, `cloudlet base` registers an existing VM instead:\n\n";

const char cl_cli_overlay_vm_usage[] =
    "Usage: cloudlet overlay IMAGE [-o DIR] [--console-script FILE]\n"
    "                        [--snapshot-on TEXT] [--name NAME] [--timeout SECONDS]\n"
    "                        [--profile SECONDS] [--no-free-memory] [--keep-snapshot]\n"
    "                        [--publish [ADDR:]HOSTPORT:GUESTPORT]...\n"
    "\n"
    "Resumes the registered base IMAGE (it must have been registered with its\n"
    "device state and domain XML) on a copy-on-write disk (a qcow2 file backed by\n"
    "IMAGE) and a sparse copy of its RAM file, lets the VM be customized, then saves\n"
    "it and writes DIR/overlay-meta and DIR/overlay-blob. The customization ends\n"
    "when Enter is pressed, the VNC viewer is closed, the guest prints TEXT on its\n"
    "serial console, or, without --snapshot-on, when the console script is done.\n"
    "The disk passes the guest's discards to the qcow2 file and the base's balloon\n"
    "reports freed pages: ask the guest to trim (`fstrim -a`, or `fstrim /mnt` in\n"
    "the script) and drop its caches before the snapshot, and what it freed or\n"
    "discarded costs nothing in the overlay. The snapshot waits (at most 60 s) until\n"
    "the RAM file's allocation settles.\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR          where the overlay goes (default: the base disk's\n"
    "                            directory)\n"
    "  -x, --console-script FILE type FILE into the guest's serial console shell,\n"
    "                            line by line, each once the previous one has run\n"
    "                            (empty lines and lines starting with # skipped)\n"
    "  -w, --snapshot-on TEXT    snapshot once the guest prints TEXT (write it as\n"
    "                            e.g. DO\"\"NE in the script, so that the echo of\n"
    "                            the typed line does not match)\n"
    "  -n, --name NAME           domain name (default cloudlet-overlay-<pid>)\n"
    "  -t, --timeout SECONDS     give up waiting after that long (default 3600)\n"
    "  -P, --profile SECONDS     then synthesize the new overlay once, locally, let\n"
    "                            it run SECONDS (and answer one console command),\n"
    "                            and rewrite the overlay with what it touched first\n"
    "  -F, --no-free-memory      do not wait for freed pages to settle before the\n"
    "                            snapshot (the balloon itself is the base's: a base\n"
    "                            made with --no-free-memory reports nothing)\n"
    "  -K, --keep-snapshot       keep what the overlay was made of (disk.qcow2,\n"
    "                            memory.img, state, domain.xml) in DIR/snapshot/\n"
    "      --publish [ADDR:]HOSTPORT:GUESTPORT\n"
    "                            forward a host TCP port into the VM while it is\n"
    "                            customized, as `cloudlet synthesis --publish` does;\n"
    "                            repeatable\n"
    "  -h, --help                this help\n"
    "\n"
    "Environment:\n" CL_CLI_HELP_ENV_VM "\n"
    "With --disk and --memory, `cloudlet overlay` works offline instead:\n\n";

/* What base and overlay share: how the customization ends. */
struct custom {
	const char *snapshot_on, *script;
	double timeout;
	char name[64];
};

static int parse_seconds(const char *cmd, const char *arg, double *out)
{
	char *end;
	double v = strtod(arg, &end);

	if (*end || end == arg || !(v > 0) || v > 7 * 86400)
		return cl_cli_usage(cmd, "bad timeout '%s'", arg);
	*out = v;
	return -1;
}

static int check_name(const char *cmd, const char *name, char *out, size_t cap)
{
	const char *p;

	if (!*name || strlen(name) >= cap || name[0] == '.')
		return cl_cli_usage(cmd, "bad NAME '%s'", name);
	for (p = name; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+",
		            *p))
			return cl_cli_usage(cmd, "NAME: letters, digits and -_.+ only");
	strcpy(out, name);
	return -1;
}

/* -w, -n and -t, which base and overlay share: 0 if c is none of them, -1
 * if it is and its argument is good, else the usage exit status. */
static int custom_opt(const char *cmd, int c, const char *arg, struct custom *cu)
{
	switch (c) {
	case 'w':
		cu->snapshot_on = arg;
		return -1;
	case 'n':
		return check_name(cmd, arg, cu->name, sizeof(cu->name));
	case 't':
		return parse_seconds(cmd, arg, &cu->timeout);
	}
	return 0;
}

/* Enter means a person at a terminal (a pipe from a script or a test
 * harness should use --snapshot-on). */
static int watchable_stdin(void)
{
	return isatty(0);
}

/* Something must end the customization; said before a VM is started. */
static int check_trigger(const char *cmd, const struct custom *cu)
{
	if (cu->snapshot_on || cu->script || watchable_stdin() || cl_session_can_view())
		return -1;
	return cl_cli_usage(cmd,
	                    "nothing would end the customization: give --snapshot-on TEXT%s, "
	                    "or run it from a terminal",
	                    strcmp(cmd, "overlay") ? "" : " or --console-script FILE");
}

static void on_event(struct cl_session *s, void *ctx, const struct cl_session_event *ev)
{
	if (ev->kind == CL_SESSION_NOTICE)
		cl_cli_notice(ev);
	else if (ev->kind == CL_SESSION_ENDPOINT)
		printf("published: %s (guest port %u)\n", ev->text, ev->endpoint->guest_port);
}

/* A new session, connected to libvirt, signals turned into its stop. */
static int open_session(struct cl_session **s)
{
	int r;

	r = cl_session_new(on_event, NULL, s);
	if (r < 0)
		return cl_cli_fail(r, NULL);
	cl_cli_signals(*s);
	r = cl_session_connect(*s, NULL);
	if (r < 0) {
		cl_cli_fail(r, CL_SESSION_LIBVIRTD_HINT);
		cl_cli_close(*s, 0);
		return 1;
	}
	cl_cli_host_warn();
	return 0;
}

/* Prints how to reach the VM and opens a viewer if there is a display;
 * 1 if one was opened. */
static int show_display(struct cl_session *s)
{
	const char *viewer = NULL;
	char vnc[128];

	if (cl_session_vnc(s, vnc, sizeof(vnc)) < 0)
		return 0;
	printf("VNC display: %s\n", vnc);
	if (cl_session_viewer(s, &viewer) < 0 || !viewer)
		return 0;
	printf("opened %s; closing it takes the snapshot\n", viewer);
	return 1;
}

/* Until the snapshot is due: the script is done (without --snapshot-on),
 * TEXT on the console, Enter, the viewer closed. Bounded by cu->timeout. */
static int until_snapshot(struct cl_session *s, const struct custom *cu, int viewer)
{
	static const char *const said[] = {NULL, "viewer closed", NULL};
	enum cl_session_trigger why;
	double t0 = cl_now();
	size_t lines;
	int r;

	if (cu->script) {
		r = cl_session_type_script(s, cu->script, &lines);
		if (r < 0)
			return r;
		printf("typed %zu lines of %s into the guest console\n", lines, cu->script);
		if (!cu->snapshot_on)
			return 0;
	}
	if (!cu->snapshot_on && !watchable_stdin() && !viewer)
		return cl_errorf(-EINVAL, "nothing would end the customization here (no terminal, "
		                          "no viewer, no --snapshot-on TEXT)");
	if (!cu->snapshot_on)
		printf("press Enter to take the snapshot\n");
	r = cl_session_await(s, cu->snapshot_on, watchable_stdin() ? 0 : -1,
	                     cu->timeout - (cl_now() - t0), &why);
	if (r < 0)
		return r;
	if (why == CL_SESSION_TRIGGER_TEXT)
		printf("the guest printed %s\n", cu->snapshot_on);
	else if (said[why])
		printf("%s\n", said[why]);
	return 0;
}

/* Shows how to reach the VM, waits for the end of the customization, lets
 * the pages the guest freed settle out of its RAM file (if settle) and
 * saves it. */
static int customize(struct cl_session *s, const struct custom *cu, int settle)
{
	struct cl_session_settle st;
	int r, viewer;

	viewer = show_display(s);
	r = until_snapshot(s, cu, viewer);
	if (r == 0 && settle) {
		r = cl_session_settle(s, &st);
		if (r == 0)
			printf("free memory: %s holds %s (%s before the wait; %.0f s)\n", st.ram,
			       cl_fmt_size(st.after, 0), cl_fmt_size(st.before, 1), st.secs);
	}
	if (r == 0)
		r = cl_session_save(s);
	return r;
}

/* A failure after the session started: its message, then its teardown. */
static int session_fail(struct cl_session *s, int r)
{
	cl_cli_fail(r, cl_session_hint(s, NULL));
	cl_cli_close(s, 0);
	return 1;
}

/* --- cloudlet base IMAGE (boot form) ------------------------------------- */

struct boot {
	struct custom cu;
	struct cl_boot_opts o;
	uint32_t chunk;
	char image[PATH_MAX];
};

/* The options; -1 when they are good, else the exit status. */
static int parse_boot(struct boot *bt, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"ram", required_argument, NULL, 'r'},
	    {"vcpus", required_argument, NULL, 'p'},
	    {"kernel", required_argument, NULL, 'k'},
	    {"initrd", required_argument, NULL, 'i'},
	    {"cmdline", required_argument, NULL, 'a'},
	    {"snapshot-on", required_argument, NULL, 'w'},
	    {"name", required_argument, NULL, 'n'},
	    {"timeout", required_argument, NULL, 't'},
	    {"chunk-size", required_argument, NULL, 'c'},
	    {"no-free-memory", no_argument, NULL, 'F'},
	    {"network", required_argument, NULL, OPT_NETWORK},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	int c, r, n;

	optind = 1;
	while ((c = getopt_long(argc, argv, "r:p:k:i:a:w:n:t:c:Fh", opts, NULL)) != -1) {
		if ((r = custom_opt("base", c, optarg, &bt->cu)) != 0) {
			if (r >= 0)
				return r;
			continue;
		}
		switch (c) {
		case 'r':
		case 'p':
			n = (int)strtol(optarg, &end, 10);
			if (*end || n < 1 || n > (c == 'r' ? 1 << 20 : 256))
				return cl_cli_usage("base", "bad --%s '%s'",
				                    c == 'r' ? "ram" : "vcpus", optarg);
			*(c == 'r' ? &bt->o.ram_mib : &bt->o.vcpus) = (unsigned)n;
			break;
		case 'k':
			bt->o.kernel = optarg;
			break;
		case 'i':
			bt->o.initrd = optarg;
			break;
		case 'a':
			bt->o.cmdline = optarg;
			break;
		case 'c':
			/* Checked now: a typo must not cost the customized VM. */
			if ((n = cl_cli_chunk_size(optarg, &bt->chunk)) >= 0)
				return n;
			break;
		case 'F':
			bt->o.no_free_memory = 1;
			break;
		case OPT_NETWORK:
			if (cl_net_parse(optarg, &bt->o.net) < 0)
				return cl_cli_usage("base", "%s", cl_error_msg());
			break;
		default:
			return cl_cli_usage("base", "bad option");
		}
	}
	return -1;
}

/* The base's files once the session saved them: registered, with the
 * kernel and initrd copied into the registry. */
static int register_boot(const struct boot *bt)
{
	char mem[PATH_MAX + 16], state[PATH_MAX + 16], xml[PATH_MAX + 16], dir[PATH_MAX];
	int st, r;

	snprintf(mem, sizeof(mem), "%s.memory", bt->image);
	snprintf(state, sizeof(state), "%s.state", bt->image);
	snprintf(xml, sizeof(xml), "%s.domain.xml", bt->image);
	printf("saved %s and %s\n", state, xml);
	st = cl_cli_register_base(bt->image, mem, state, xml, bt->chunk);
	if (st != 0 || !bt->o.kernel)
		return st;
	r = cl_session_keep_boot_files(bt->image, bt->o.kernel, bt->o.initrd, dir, sizeof(dir));
	if (r < 0)
		return cl_cli_fail(r, "the base is registered; copy its kernel and initrd next to "
		                      "IMAGE by hand");
	printf("kernel%s copied into %s\n", bt->o.initrd ? " and initrd" : "", dir);
	return 0;
}

int cl_cli_base_boot(int argc, char **argv)
{
	struct boot bt = {.cu.timeout = WAIT_DEFAULT,
	                  .chunk = 4096,
	                  .o = {.ram_mib = 256, .vcpus = 1, .net = {.kind = CL_NET_USER}}};
	struct cl_session *s;
	int r;

	snprintf(bt.cu.name, sizeof(bt.cu.name), "cloudlet-base-%ld", (long)getpid());
	if ((r = parse_boot(&bt, argc, argv)) >= 0)
		return r;
	if (optind != argc - 1)
		return cl_cli_usage("base", "expected one IMAGE");
	if ((bt.o.initrd || bt.o.cmdline) && !bt.o.kernel)
		return cl_cli_usage("base", "--initrd and --cmdline go with --kernel");
	if ((r = check_trigger("base", &bt.cu)) >= 0)
		return r;
	if (!realpath(argv[optind], bt.image))
		return cl_cli_fail(cl_errorf(-errno, "%s: %s", argv[optind], strerror(errno)),
		                   NULL);
	bt.o.image = bt.image;
	bt.o.name = bt.cu.name;
	if (open_session(&s))
		return 1;
	r = cl_session_boot(s, &bt.o);
	if (r == 0) {
		printf("booted %s as domain %s (%s); serial console %s/console.sock\n", bt.image,
		       bt.cu.name, cl_session_accel(s), cl_session_rundir(s));
		r = customize(s, &bt.cu, !bt.o.no_free_memory);
	}
	if (r < 0)
		return session_fail(s, r);
	cl_cli_close(s, 0);
	return register_boot(&bt);
}

/* --- cloudlet overlay IMAGE (interactive form) ---------------------------- */

struct custom_overlay {
	struct custom cu;
	const char *odir;
	double profile;
	int no_free, keep;
	char image[PATH_MAX], outdir[PATH_MAX];
	struct cl_publish pub[CL_PUBLISH_MAX];
	size_t npub;
};

/* The options; -1 when they are good, else the exit status. */
static int parse_overlay(struct custom_overlay *co, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"console-script", required_argument, NULL, 'x'},
	    {"snapshot-on", required_argument, NULL, 'w'},
	    {"name", required_argument, NULL, 'n'},
	    {"timeout", required_argument, NULL, 't'},
	    {"profile", required_argument, NULL, 'P'},
	    {"no-free-memory", no_argument, NULL, 'F'},
	    {"keep-snapshot", no_argument, NULL, 'K'},
	    {"publish", required_argument, NULL, OPT_PUBLISH},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int c, r;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:x:w:n:t:P:FKh", opts, NULL)) != -1) {
		if ((r = custom_opt("overlay", c, optarg, &co->cu)) != 0) {
			if (r >= 0)
				return r;
			continue;
		}
		switch (c) {
		case 'o':
			co->odir = optarg;
			break;
		case 'x':
			co->cu.script = optarg;
			break;
		case 'P':
			if ((r = parse_seconds("overlay", optarg, &co->profile)) >= 0)
				return r;
			break;
		case 'F':
			co->no_free = 1;
			break;
		case 'K':
			co->keep = 1;
			break;
		case OPT_PUBLISH:
			if ((r = cl_cli_publish("overlay", optarg, co->pub, &co->npub)) >= 0)
				return r;
			break;
		default:
			return cl_cli_usage("overlay", "bad option");
		}
	}
	if (optind != argc - 1)
		return cl_cli_usage("overlay", "expected one IMAGE (or --disk and --memory)");
	return check_trigger("overlay", &co->cu);
}

/* The base must be resumable; the overlay goes to -o DIR (made) or next
 * to the base's disk. -1 when all is well, else the exit status. */
static int check_base(struct custom_overlay *co, const char *image)
{
	struct cl_base *b = NULL;
	int r;

	r = cl_base_find(image, &b);
	if (r < 0)
		return cl_cli_fail(r, NULL);
	snprintf(co->image, sizeof(co->image), "%s", b->path[CL_DISK]);
	if (!b->state_path || !b->domain_path)
		r = cl_errorf(-EINVAL,
		              "%s: registered without its device state and domain XML: it cannot "
		              "be resumed",
		              b->path[CL_DISK]);
	cl_base_free(b);
	if (r < 0)
		return cl_cli_fail(r, "register it with --state and --domain, or boot it with "
		                      "`cloudlet base IMAGE --kernel ...`");
	if (!co->odir) {
		snprintf(co->outdir, sizeof(co->outdir), "%s", co->image);
		*strrchr(co->outdir, '/') = '\0';
	} else if (cl_mkdir_p(co->odir, 0755) < 0 || !realpath(co->odir, co->outdir)) {
		return cl_cli_fail(cl_errorf(-errno, "%s: %s", co->odir, strerror(errno)), NULL);
	}
	return -1;
}

/* The overlay of the saved VM, then with --profile again in the order the
 * VM touched its chunks, and with --keep-snapshot its files kept. */
static int write_overlay(struct custom_overlay *co, struct cl_session *s)
{
	struct cl_overlay_stats st;
	char trace[PATH_MAX + 96], pname[80], kept[PATH_MAX + 16];
	int r;

	r = cl_session_overlay(s, NULL, &st);
	if (r < 0)
		return cl_cli_fail(r, NULL);
	cl_cli_overlay_stats(co->outdir, &st);
	if (co->profile > 0) {
		/* Run the new overlay once, then put what it touched first. */
		snprintf(trace, sizeof(trace), "%s/trace", cl_session_workdir(s));
		snprintf(pname, sizeof(pname), "%.50s-profile", co->cu.name);
		printf("profiling: synthesizing the overlay for %.0f s\n", co->profile);
		if (cl_synthesis_profile(co->image, co->outdir, pname, co->profile, trace))
			return 1;
		r = cl_session_overlay(s, trace, &st);
		if (r < 0)
			return cl_cli_fail(r, NULL);
		cl_cli_overlay_stats(co->outdir, &st);
	}
	if (!co->keep)
		return 0;
	r = cl_session_keep_snapshot(s, kept, sizeof(kept));
	if (r < 0)
		return cl_cli_fail(r, NULL);
	printf("kept the snapshot in %s\n", kept);
	return 0;
}

int cl_cli_overlay_vm(int argc, char **argv)
{
	struct custom_overlay co = {.cu.timeout = WAIT_DEFAULT};
	struct cl_customize_opts o = {0};
	struct cl_session *s;
	int r;

	snprintf(co.cu.name, sizeof(co.cu.name), "cloudlet-overlay-%ld", (long)getpid());
	if ((r = parse_overlay(&co, argc, argv)) >= 0)
		return r;
	if ((r = check_base(&co, argv[optind])) >= 0)
		return r;
	o.image = co.image;
	o.outdir = co.outdir;
	o.name = co.cu.name;
	o.publish = co.pub;
	o.npublish = co.npub;
	if (open_session(&s))
		return 1;
	r = cl_session_customize(s, &o);
	if (r == 0) {
		printf("resumed base %s as domain %s (%s); serial console %s/console.sock\n",
		       co.image, co.cu.name, cl_session_accel(s), cl_session_rundir(s));
		r = customize(s, &co.cu, !co.no_free);
	}
	if (r < 0)
		return session_fail(s, r);
	r = write_overlay(&co, s);
	cl_cli_close(s, 0);
	return r;
}
