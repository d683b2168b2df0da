/* cloudlet synthesis: mount the overlay lazily, resume its VM early under
 * libvirt, and tear everything down when it ends. */
#include "cl_base.h"
#include "cl_cli.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_meta.h"
#include "cl_source.h"
#include "cl_synth.h"
#include "cl_util.h"
#include "cl_vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESUME_TIMEOUT   300.0  /* seconds for the device state to load */
#define COMPLETE_TIMEOUT 3600.0 /* --no-early-start: for the whole overlay */
#define TICK_MS          200
#define MAX_MOUNT_OPTS   32

static const char synthesis_usage[] =
    "Usage: cloudlet synthesis IMAGE OVERLAY [--no-early-start] [--name NAME] [--keep]\n"
    "                          [--mount DIR] [-o OPTIONS]\n"
    "\n"
    "Synthesizes the customized VM of OVERLAY (its overlay-meta, the directory\n"
    "holding it, or an http(s) URL of it) from the registered base IMAGE and runs it\n"
    "under libvirt (qemu:///system): mounts cloudletfs, starts the VM paused on the\n"
    "mounted disk and memory images, loads its device state and resumes it while\n"
    "the rest of the overlay streams in; the pages and disk blocks it touches first\n"
    "are fetched on demand. Prints a timeline (mounted, domain started in N s, VM\n"
    "resumed, overlay complete, with the bytes fetched at each point) and the VNC\n"
    "address, if the VM has one. A domain start of seconds means a slow host\n"
    "(`cloudlet check`).\n"
    "Runs until Ctrl-C, SIGTERM, the guest shutting down, or (when it is a terminal\n"
    "or a pipe) stdin closing; then destroys and undefines the domain, unmounts,\n"
    "and removes its files in " CL_VM_RUN_DIR "/NAME.\n"
    "\n"
    "Options:\n"
    "  -n, --name NAME       domain name (default cloudlet-<8 hex digits>)\n"
    "  -E, --no-early-start  fetch the whole overlay before starting the VM (the\n"
    "                        classic path, for comparison)\n"
    "  -k, --keep            leave the VM and the mount in place on exit\n"
    "  -m, --mount DIR       mount point (default " CL_VM_RUN_DIR "/NAME/mnt); QEMU's\n"
    "                        user must be able to reach it\n"
    "  -o, --options OPTS    more cloudletfs options, e.g. connections=8,no_cache\n"
    "                        (`cloudletfs --help`); repeatable\n"
    "  -h, --help            this help\n"
    "\n"
    "Environment:\n"
    "  CLOUDLET_LIBVIRT_URI  libvirt connection (default qemu:///system)\n"
    "  CLOUDLET_ACCEL        kvm or tcg: skip the check of whether KVM really runs a\n"
    "                        guest here\n"
    "\n"
    "A VM resumes only under the accelerator and CPU model its state was saved\n"
    "under (its domain XML says which): saved under TCG, it runs under TCG; saved\n"
    "under KVM, it is refused where KVM does not work or CLOUDLET_ACCEL says tcg.\n";

static volatile sig_atomic_t stop_sig;

static void on_signal(int sig)
{
	stop_sig = sig;
}

struct synth {
	const char *image, *overlay;
	const char *mount_opts[MAX_MOUNT_OPTS];
	int nmount_opts;
	int early, keep;
	double run_for;        /* profiling: stop this long after the resume */
	const char *trace_out; /* profiling: the TRACE of the run goes there */
	char name[64], uuid[37];
	char rundir[128], mnt[PATH_MAX], path[PATH_MAX + 64];
	int made_rundir, made_mnt, mounted;
	virConnectPtr conn;
	virDomainPtr dom;
	double t0;
};

/* --- MOUNT/status and stats ---------------------------------------------- */

struct progress {
	char state[32];
	uint64_t fetched, pack;
	uint64_t accessed[CL_NIMAGES];
};

static int read_small(const char *path, char *buf, size_t cap)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	do
		n = read(fd, buf, cap - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int read_progress(const struct synth *s, struct progress *p)
{
	char path[PATH_MAX + 64], buf[8192], *q;
	unsigned long long a, b;
	int i, r;

	memset(p, 0, sizeof(*p));
	snprintf(path, sizeof(path), "%s/status", s->mnt);
	r = read_small(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	q = strstr(buf, "state: ");
	if (q)
		sscanf(q + 7, "%31s", p->state);
	q = strstr(buf, "\nbytes: ");
	if (q && sscanf(q + 8, "%llu/%llu", &a, &b) == 2) {
		p->fetched = a;
		p->pack = b;
	}
	for (i = 0; i < CL_NIMAGES; i++) {
		snprintf(path, sizeof(path), "%s/%s/stats/chunks_accessed", s->mnt,
		         cl_image_name(i));
		if (read_small(path, buf, sizeof(buf)) == 0)
			p->accessed[i] = strtoull(buf, NULL, 10);
	}
	return 0;
}

/* One timeline line: seconds since start, the event, bytes fetched. */
static void timeline(const struct synth *s, const char *event)
{
	struct progress p;

	if (read_progress(s, &p) < 0) {
		printf("[%8.2f s] %s\n", cl_now() - s->t0, event);
		return;
	}
	printf("[%8.2f s] %s: fetched %" PRIu64 " of %" PRIu64 " bytes (%.1f%%); chunks "
	       "accessed: memory %" PRIu64 ", disk %" PRIu64 "\n",
	       cl_now() - s->t0, event, p.fetched, p.pack,
	       p.pack ? 100.0 * (double)p.fetched / (double)p.pack : 100.0, p.accessed[CL_MEMORY],
	       p.accessed[CL_DISK]);
}

/* --- preparing ----------------------------------------------------------- */

/* Why a mount failed, for the hint: the daemon said what failed, this
 * says what to do. The meta is loaded only now, so that a synthesis that
 * works fetches it once (over a slow link that counts). */
static const char *diagnose(const struct synth *s, const struct cl_base *b, char *buf, size_t cap)
{
	struct cl_meta *m = NULL;
	char want[2 * CL_SHA256_LEN + 1];
	char *loc = NULL;

	if (cl_meta_load(s->overlay, &m, &loc) < 0)
		return cl_source_is_url(s->overlay)
		           ? "is the server up and the URL right? (`cloudlet info URL` "
		             "fetches only the meta)"
		           : "OVERLAY is an overlay-meta file or the directory holding it";
	if (cl_synth_check_base(m, b, loc) < 0) {
		cl_hex(m->base_id, CL_SHA256_LEN, want);
		want[16] = '\0';
		snprintf(buf, cap,
		         "this overlay needs base %s, not %s; `cloudlet list-base` lists the "
		         "registered bases",
		         want, b->path[CL_DISK]);
	} else {
		snprintf(buf, cap, "try `cloudlet mount %s %s DIR -f -d` to see more", s->image,
		         s->overlay);
	}
	cl_meta_free(m);
	free(loc);
	return buf;
}

/* The overlay must carry what resuming needs. */
static int check_mount(struct synth *s, uint64_t *memsize)
{
	static const char *const need[] = {"state", "domain.xml", "memory/image"};
	struct stat st;
	size_t i;

	for (i = 0; i < 3; i++) {
		snprintf(s->path, sizeof(s->path), "%s/%s", s->mnt, need[i]);
		if (stat(s->path, &st) < 0)
			return cl_errorf(-ENOENT,
			                 "%s: the overlay carries no %s: it cannot resume a VM",
			                 s->overlay,
			                 i == 0   ? "device state"
			                 : i == 1 ? "domain XML"
			                          : "memory image");
	}
	*memsize = (uint64_t)st.st_size;
	return 0;
}

static int do_mount(struct synth *s, const char *group)
{
	char own[128];
	char *argv[8 + 2 * MAX_MOUNT_OPTS];
	int argc = 0, i, st;

	if (!s->mnt[0]) {
		snprintf(s->mnt, sizeof(s->mnt), "%s/mnt", s->rundir);
		if (mkdir(s->mnt, 0750) < 0)
			return cl_errorf(-errno, "%s: %s", s->mnt, strerror(errno));
		s->made_mnt = 1;
	}
	/* QEMU (in that group) may open the images, nobody else. */
	snprintf(own, sizeof(own), "allow_other,default_permissions,gid=%s", group);
	argv[argc++] = "mount";
	argv[argc++] = (char *)s->image;
	argv[argc++] = (char *)s->overlay;
	argv[argc++] = s->mnt;
	argv[argc++] = "-o";
	argv[argc++] = own;
	for (i = 0; i < s->nmount_opts; i++) {
		argv[argc++] = "-o";
		argv[argc++] = (char *)s->mount_opts[i];
	}
	argv[argc] = NULL;
	st = cl_cmd_mount(argc, argv);
	if (st != 0)
		return cl_errorf(-EIO, "%s: cloudletfs did not mount (see above)", s->mnt);
	s->mounted = 1;
	return 0;
}

/* --- teardown ------------------------------------------------------------ */

static int teardown(struct synth *s)
{
	char *argv[3] = {"umount", s->mnt, NULL};
	int r = 0;

	if (s->dom && cl_vm_remove(s->dom) < 0) {
		fprintf(stderr, "cloudlet: %s\n", cl_error_msg());
		r = -EIO;
	}
	s->dom = NULL;
	if (s->mounted && cl_cmd_umount(2, argv) != 0)
		r = -EIO;
	else
		s->mounted = 0;
	if (s->made_mnt && !s->mounted)
		rmdir(s->mnt);
	if (s->made_rundir) {
		cl_vm_rundir_remove(s->rundir);
		if (access(s->rundir, F_OK) == 0) {
			fprintf(stderr, "cloudlet: %s: could not be removed\n", s->rundir);
			r = -EIO;
		}
	}
	if (s->conn)
		virConnectClose(s->conn);
	s->conn = NULL;
	return r;
}

/* --- running ------------------------------------------------------------- */

/* --no-early-start: every segment in before the VM starts. */
static int wait_complete(struct synth *s)
{
	struct progress p;
	double t = cl_now();
	int r;

	for (;;) {
		r = read_progress(s, &p);
		if (r < 0)
			return cl_errorf(r, "%s/status: %s", s->mnt, strerror(-r));
		if (!strcmp(p.state, "complete"))
			return 0;
		if (!strcmp(p.state, "failed"))
			return cl_errorf(-EIO, "%s: the overlay cannot be fetched (see %s/status)",
			                 s->overlay, s->mnt);
		if (stop_sig)
			return cl_errorf(-EINTR, "interrupted while fetching the overlay");
		if (cl_now() - t > COMPLETE_TIMEOUT)
			return cl_errorf(-ETIMEDOUT, "overlay not complete within %.0f s",
			                 COMPLETE_TIMEOUT);
		poll(NULL, 0, TICK_MS);
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

static const char *run_until_end(struct synth *s)
{
	struct pollfd in = {.fd = 0, .events = POLLIN};
	int watch = watch_stdin(), said_complete = !s->early, said_failed = 0, alive;
	struct progress p;
	char buf[256];
	ssize_t n;

	double t_resume = cl_now();

	for (;;) {
		if (stop_sig)
			return stop_sig == SIGINT ? "interrupted (SIGINT)" : "terminated (signal)";
		if (s->run_for > 0 && cl_now() - t_resume >= s->run_for)
			return "profiling time over";
		alive = cl_vm_alive(s->dom);
		if (alive == 0)
			return "the guest shut down";
		if (alive < 0)
			return "libvirt stopped answering";
		if (read_progress(s, &p) == 0) {
			if (!said_complete && !strcmp(p.state, "complete")) {
				timeline(s, "overlay complete");
				said_complete = 1;
			}
			if (!said_failed && !strcmp(p.state, "failed")) {
				fprintf(stderr,
				        "cloudlet: warning: the overlay stopped arriving (see "
				        "%s/status); the VM fails reads of what is missing\n",
				        s->mnt);
				said_failed = 1;
			}
		}
		if (!watch) {
			poll(NULL, 0, TICK_MS);
			continue;
		}
		if (poll(&in, 1, TICK_MS) > 0) {
			n = read(0, buf, sizeof(buf));
			if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
				return "stdin closed";
		}
	}
}

static int parse_args(struct synth *s, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"no-early-start", no_argument, NULL, 'E'},
	    {"keep", no_argument, NULL, 'k'},
	    {"mount", required_argument, NULL, 'm'},
	    {"options", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *p;
	int c;

	s->early = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:Ekm:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (strlen(optarg) >= sizeof(s->name) || !*optarg)
				return cl_cli_usage("synthesis", "NAME: 1 to %zu characters",
				                    sizeof(s->name) - 1);
			for (p = optarg; *p; p++)
				if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
				    !(*p >= '0' && *p <= '9') && !strchr("-_.+", *p))
					return cl_cli_usage("synthesis",
					                    "NAME: letters, digits and -_.+ only");
			if (optarg[0] == '.')
				return cl_cli_usage("synthesis", "NAME may not start with '.'");
			strcpy(s->name, optarg);
			break;
		case 'E':
			s->early = 0;
			break;
		case 'k':
			s->keep = 1;
			break;
		case 'm':
			if (!realpath(optarg, s->mnt))
				return cl_cli_usage("synthesis", "--mount %s: %s", optarg,
				                    strerror(errno));
			break;
		case 'o':
			if (s->nmount_opts == MAX_MOUNT_OPTS)
				return cl_cli_usage("synthesis", "too many -o options");
			s->mount_opts[s->nmount_opts++] = optarg;
			break;
		case 'h':
			fputs(synthesis_usage, stdout);
			return 0;
		default:
			return cl_cli_usage("synthesis", "bad option");
		}
	}
	if (optind != argc - 2)
		return cl_cli_usage("synthesis", "expected IMAGE and OVERLAY");
	s->image = argv[optind];
	s->overlay = argv[optind + 1];
	return -1;
}

/* --- the domain -------------------------------------------------------------- */

/* The overlay's domain XML, and its device state read once to the end so
 * that QEMU finds it in the cache: a thread does both while the domain
 * starts, since both may come over the network. */
struct prefetch {
	pthread_t th;
	int started;
	char xml_path[PATH_MAX + 16], state_path[PATH_MAX + 16];
	char *xml; /* the caller's after prefetch_join */
	size_t len;
	int r;
	char msg[512];
};

static int read_through(const char *path)
{
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno != EINTR) {
			r = cl_errorf(-errno, "%s: %s", path, strerror(errno));
			break;
		}
	}
	close(fd);
	return r;
}

static void *prefetch_run(void *arg)
{
	struct prefetch *p = arg;

	p->r = cl_read_file(p->xml_path, 16u << 20, (void **)&p->xml, &p->len);
	if (p->r == 0)
		p->r = read_through(p->state_path);
	if (p->r < 0)
		snprintf(p->msg, sizeof(p->msg), "%s", cl_error_msg());
	return NULL;
}

/* Without a thread the join reads both itself. */
static void prefetch_start(struct prefetch *p, const char *mnt)
{
	snprintf(p->xml_path, sizeof(p->xml_path), "%s/domain.xml", mnt);
	snprintf(p->state_path, sizeof(p->state_path), "%s/state", mnt);
	p->started = pthread_create(&p->th, NULL, prefetch_run, p) == 0;
}

/* Hands over the overlay's XML (*xml, the caller frees it). Once the mount
 * is gone a read still running fails at once, so joining after the
 * teardown never waits long. */
static int prefetch_join(struct prefetch *p, char **xml, size_t *len)
{
	if (p->started) {
		pthread_join(p->th, NULL);
		p->started = 0;
		if (p->r < 0)
			cl_errorf(p->r, "%s", p->msg);
	} else if (!p->xml && !p->r) {
		prefetch_run(p);
	}
	if (xml) {
		*xml = p->xml;
		*len = p->len;
		p->xml = NULL;
	}
	return p->r;
}

/* Defines the domain of template tmpl (len bytes): the VM on the mounted
 * disk and memory images, resumed under the type it was saved under. */
static int define_domain(struct synth *s, const struct cl_base *b, const char *tmpl, size_t len,
                         uint64_t memsize, const char **type, const char **hint)
{
	struct cl_domxml_edit e = {0};
	char disk[PATH_MAX + 16], mem[PATH_MAX + 16], con[sizeof(s->rundir) + 16];
	char *kernel = NULL, *initrd = NULL, *newxml = NULL;
	int r;

	r = cl_vm_boot_files(b, tmpl, len, &kernel, &initrd);
	if (r < 0) {
		*hint = "put the base's kernel and initrd into its registry directory or next "
		        "to its disk image";
		return r;
	}
	/* The device state loads only under what it was saved under. */
	r = cl_vm_resume_type(s->conn, b, tmpl, len, kernel, initrd, type, hint);
	if (r < 0)
		goto out;
	snprintf(disk, sizeof(disk), "%s/disk/image", s->mnt);
	snprintf(mem, sizeof(mem), "%s/memory/image", s->mnt);
	snprintf(con, sizeof(con), "%s/console.sock", s->rundir);
	e.name = s->name;
	e.uuid = s->uuid;
	e.type = *type;
	e.disk = disk;
	e.disk_norelabel = 1;
	e.memory = mem;
	e.memory_size = memsize;
	e.share = "off"; /* private mapping: guest writes never reach the file */
	e.incoming = 1;
	e.console = con;
	e.console_log = NULL;
	e.kernel = kernel;
	e.initrd = initrd;
	e.vnc_local = 1;
	r = cl_domxml_rewrite(tmpl, len, &e, &newxml);
	if (r < 0)
		goto out;
	snprintf(s->path, sizeof(s->path), "%s/domain.xml", s->rundir);
	r = cl_write_file_atomic(s->path, newxml, strlen(newxml), 0640);
	if (r < 0)
		goto out;
	r = cl_vm_define(s->conn, newxml, &s->dom);
	if (r == -EEXIST)
		*hint = "choose another with --name";
out:
	free(newxml);
	free(initrd);
	free(kernel);
	return r;
}

/* The overlay's own XML (len bytes) must resume under the type the domain
 * was started with, and with its base's CPU model. */
static int same_type(struct synth *s, const struct cl_base *b, const char *xml, size_t len,
                     const char *type, const char **hint)
{
	const char *otype;
	int r;

	r = cl_vm_resume_type(s->conn, b, xml, len, NULL, NULL, &otype, hint);
	if (r < 0)
		return r;
	if (strcmp(otype, type))
		return cl_errorf(-EINVAL,
		                 "%s: the VM was saved under %s, its base %s under %s: its device "
		                 "state would not load",
		                 s->overlay, !strcmp(otype, "kvm") ? "KVM" : "TCG", s->image,
		                 !strcmp(type, "kvm") ? "KVM" : "TCG");
	return 0;
}

/* Everything after the arguments; returns the exit status. */
static int synthesize(struct synth *sp)
{
	struct synth s = *sp;
	struct prefetch pf = {0};
	struct cl_base *b = NULL;
	uint64_t memsize = 0;
	struct sigaction sa;
	int quiet = 0;
	char group[64], why[512], state[PATH_MAX + 16], event[64];
	char *xml = NULL, *tmpl = NULL, *vnc = NULL, *live;
	const char *type = "qemu", *hint = NULL, *end = NULL;
	size_t len = 0, tlen = 0;
	double t_start;
	uid_t uid;
	gid_t gid;
	virDomainPtr other;
	int r;

	s.t0 = cl_now();
	setvbuf(stdout, NULL, _IOLBF, 0);
	r = cl_base_find(s.image, &b);
	if (r < 0)
		return cl_cli_fail(r, NULL);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: waits see it */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);

	cl_cli_host_warn();
	r = cl_vm_connect(NULL, &s.conn);
	if (r < 0) {
		hint = CL_CLI_LIBVIRTD_HINT;
		goto out;
	}
	r = cl_domxml_uuid(s.uuid);
	if (r < 0)
		goto out;
	if (!s.name[0])
		snprintf(s.name, sizeof(s.name), "cloudlet-%.8s", s.uuid);
	other = virDomainLookupByName(s.conn, s.name);
	if (other) {
		virDomainFree(other);
		r = cl_errorf(-EEXIST, "domain %s: the name is in use", s.name);
		hint = "choose another with --name, or remove it (`virsh destroy NAME; virsh "
		       "undefine NAME`)";
		goto out;
	}
	r = cl_vm_qemu_user(&uid, &gid, group, sizeof(group));
	if (r < 0)
		goto out;
	r = cl_vm_rundir(s.name, gid, s.rundir, sizeof(s.rundir));
	s.made_rundir = r == 0;
	if (r < 0) {
		if (r == -EEXIST)
			hint = "choose another --name, or remove that directory";
		goto out;
	}
	r = do_mount(&s, group);
	if (r < 0) {
		/* cloudletfs said why; this adds what to do. */
		fprintf(stderr, "hint: %s\n", diagnose(&s, b, why, sizeof(why)));
		quiet = 1;
		goto out;
	}
	timeline(&s, "mounted");
	r = check_mount(&s, &memsize);
	if (r < 0)
		goto out;

	/* The overlay's XML and state come over the network: fetch them while
	 * the domain starts. The base's own XML, when registered, is the
	 * template and says what the VM was saved under; the overlay's must
	 * agree before its state is loaded. */
	prefetch_start(&pf, s.mnt);
	if (b->domain_path &&
	    (r = cl_read_file(b->domain_path, 16u << 20, (void **)&tmpl, &tlen)) < 0)
		goto out;
	if (!tmpl || !s.early) {
		r = prefetch_join(&pf, &xml, &len);
		if (r < 0)
			goto out;
	}
	r = define_domain(&s, b, tmpl ? tmpl : xml, tmpl ? tlen : len, memsize, &type, &hint);
	if (r < 0)
		goto out;
	if (!s.early) {
		r = wait_complete(&s);
		if (r < 0)
			goto out;
		timeline(&s, "overlay complete");
	}
	t_start = cl_now();
	r = cl_vm_start_paused(s.dom);
	if (r == -ENOTSUP)
		hint = "resuming needs QEMU 4.0 or later (migration capability x-ignore-shared)";
	if (r < 0)
		goto out;
	snprintf(event, sizeof(event), "domain started in %.2f s", cl_now() - t_start);
	timeline(&s, event);
	if (!xml) {
		r = prefetch_join(&pf, &xml, &len);
		if (r < 0)
			goto out;
	}
	r = same_type(&s, b, xml, len, type, &hint);
	if (r < 0)
		goto out;
	snprintf(state, sizeof(state), "%s/state", s.mnt);
	snprintf(s.path, sizeof(s.path), "%s/mig-in.sock", s.rundir);
	r = cl_vm_load_state(s.dom, s.path, state, RESUME_TIMEOUT, &stop_sig);
	unlink(s.path);
	if (r < 0)
		goto out;
	timeline(&s, "VM resumed");

	live = virDomainGetXMLDesc(s.dom, 0);
	if (live && cl_domxml_get(live, strlen(live), "vnc", &vnc) == 0)
		printf("VNC display: %s\n", vnc);
	else
		printf("no VNC display\n");
	free(live);
	printf("domain %s (%s); serial console %s/console.sock; Ctrl-C or SIGTERM ends it\n",
	       s.name, !strcmp(type, "kvm") ? "KVM" : "TCG", s.rundir);
	if (s.run_for > 0) {
		/* What the guest needs to answer on its console belongs in the
		 * profile too. */
		struct cl_vm_console con;

		snprintf(s.path, sizeof(s.path), "%s/console.sock", s.rundir);
		if (cl_vm_console_open(&con, s.path, 10) == 0) {
			if (cl_vm_console_run(&con, "cat /proc/uptime >/dev/null", 120, &stop_sig) <
			    0)
				fprintf(stderr, "cloudlet: warning: %s\n", cl_error_msg());
			cl_vm_console_close(&con);
		}
	}
	end = run_until_end(&s);
	printf("[%8.2f s] %s\n", cl_now() - s.t0, end);
	r = 0;
out:
	if (r < 0 && !quiet)
		cl_cli_fail(r, hint);
	if (s.keep && r == 0) {
		printf("kept: domain %s and the mount %s; remove them with\n"
		       "  virsh destroy %s; virsh undefine %s; cloudlet umount %s; rm -r %s\n",
		       s.name, s.mnt, s.name, s.name, s.mnt, s.rundir);
		if (s.dom)
			virDomainFree(s.dom);
		virConnectClose(s.conn);
	} else {
		if (end && s.trace_out) {
			char *targv[] = {"trace", s.mnt, "-o", (char *)s.trace_out, NULL};

			if (cl_cmd_trace(4, targv) != 0)
				r = -EIO;
		}
		if (end)
			timeline(&s, "stopping");
		if (teardown(&s) < 0)
			r = -EIO;
		else if (end)
			printf("[%8.2f s] stopped: domain removed, unmounted, files removed\n",
			       cl_now() - s.t0);
	}
	if (pf.started)
		prefetch_join(&pf, NULL, NULL);
	free(pf.xml);
	free(vnc);
	free(xml);
	free(tmpl);
	cl_base_free(b);
	return r < 0 ? 1 : 0;
}

int cl_cmd_synthesis(int argc, char **argv)
{
	struct synth s;
	int r;

	memset(&s, 0, sizeof(s));
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
	s.image = image;
	s.overlay = overlay;
	s.early = 1;
	s.run_for = seconds;
	s.trace_out = trace_out;
	/* The overlay is rewritten right after: keep nothing of it. */
	s.mount_opts[s.nmount_opts++] = "no_cache";
	snprintf(s.name, sizeof(s.name), "%s", name);
	return synthesize(&s);
}
