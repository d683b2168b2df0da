/* cloudlet base and cloudlet overlay, the forms that run a VM: boot a raw
 * disk to make a base, or resume a base on a copy-on-write disk to make an
 * overlay. Both let the user (or a console script) customize the VM, then
 * save its device state with x-ignore-shared (RAM stays in its file) and
 * hand the files to the registering and offline forms. */
#include "cl_base.h"
#include "cl_cli.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_util.h"
#include "cl_vm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_DEFAULT  3600.0 /* seconds for the customization, unless --timeout */
#define SCRIPT_LINE_S 600.0  /* bound on one line of a console script */
#define SAVE_TIMEOUT  300.0
#define TOOL_TIMEOUT  600.0 /* qemu-img */
#define TICK_MS       200
#define SETTLE_QUIET  4.0  /* s without change in the RAM file's allocation */
#define SETTLE_MAX    60.0 /* s at most spent waiting for it */

static const char base_boot_usage[] =
    "Usage: cloudlet base IMAGE [--ram MiB] [--vcpus N] [--kernel K [--initrd I]\n"
    "                     [--cmdline C]] [--snapshot-on TEXT] [--name NAME]\n"
    "                     [--timeout SECONDS] [--chunk-size BYTES] [--no-free-memory]\n"
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
    "  -k, --kernel K          boot this kernel (direct kernel boot; default: the disk)\n"
    "  -i, --initrd I          its initrd\n"
    "  -a, --cmdline C         its command line (default console=ttyS0)\n"
    "  -w, --snapshot-on TEXT  snapshot once the guest prints TEXT on its console\n"
    "  -n, --name NAME         domain name (default cloudlet-base-<pid>)\n"
    "  -t, --timeout SECONDS   give up waiting after that long (default 3600)\n"
    "  -c, --chunk-size BYTES  as for the registering form\n"
    "  -F, --no-free-memory    a balloon without free page reporting, and no wait:\n"
    "                          freed guest memory stays in the RAM file (this base\n"
    "                          and every overlay of it keep that balloon)\n"
    "  -h, --help              this help\n"
    "\n"
    "With --memory, `cloudlet base` registers an existing VM instead:\n\n";

static const char overlay_vm_usage[] =
    "Usage: cloudlet overlay IMAGE [-o DIR] [--console-script FILE]\n"
    "                        [--snapshot-on TEXT] [--name NAME] [--timeout SECONDS]\n"
    "                        [--profile SECONDS] [--no-free-memory] [--keep-snapshot]\n"
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
    "  -o, --output DIR          where the overlay goes (default: IMAGE's directory)\n"
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
    "  -h, --help                this help\n"
    "\n"
    "With --disk and --memory, `cloudlet overlay` works offline instead:\n\n";

static volatile sig_atomic_t stop_sig;

static void on_signal(int sig)
{
	stop_sig = sig;
}

struct session {
	const char *snapshot_on, *script;
	double timeout;
	char name[64], rundir[128], sock[256];
	uid_t uid;
	gid_t gid;
	char group[64];
	virConnectPtr conn;
	virDomainPtr dom;
	pid_t viewer;
};

static int has_opt(int argc, char **argv, const char *shrt, const char *lng)
{
	size_t n = strlen(lng);
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], lng) || (!strncmp(argv[i], lng, n) && argv[i][n] == '=') ||
		    !strncmp(argv[i], shrt, 2))
			return 1;
	}
	return 0;
}

static int wants_help(int argc, char **argv)
{
	return has_opt(argc, argv, "-h", "--help");
}

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

/* --- the session: a running VM being customized ------------------------- */

/* -w, -n and -t, which base and overlay share: 0 if c is none of them, -1
 * if it is and its argument is good, else the usage exit status. */
static int session_opt(const char *cmd, int c, const char *arg, struct session *s)
{
	switch (c) {
	case 'w':
		s->snapshot_on = arg;
		return -1;
	case 'n':
		return check_name(cmd, arg, s->name, sizeof(s->name));
	case 't':
		return parse_seconds(cmd, arg, &s->timeout);
	}
	return 0;
}

static int watchable_stdin(void);
static int in_path(const char *prog);

/* Something must end the customization; said before a VM is started. */
static int check_trigger(const char *cmd, const struct session *s)
{
	if (s->snapshot_on || s->script || watchable_stdin() ||
	    (getenv("DISPLAY") && (in_path("remote-viewer") || in_path("gvncviewer"))))
		return -1;
	return cl_cli_usage(cmd,
	                    "nothing would end the customization: give --snapshot-on TEXT%s, "
	                    "or run it from a terminal",
	                    strcmp(cmd, "overlay") ? "" : " or --console-script FILE");
}

static int session_start(struct session *s, const char **hint)
{
	virDomainPtr other;
	struct sigaction sa;
	int r;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	r = cl_vm_connect(NULL, &s->conn);
	if (r < 0) {
		*hint = CL_CLI_LIBVIRTD_HINT;
		return r;
	}
	cl_cli_host_warn();
	other = virDomainLookupByName(s->conn, s->name);
	if (other) {
		virDomainFree(other);
		*hint = "choose another with --name";
		return cl_errorf(-EEXIST, "domain %s: the name is in use", s->name);
	}
	r = cl_vm_qemu_user(&s->uid, &s->gid, s->group, sizeof(s->group));
	if (r < 0)
		return r;
	r = cl_vm_rundir(s->name, s->gid, s->rundir, sizeof(s->rundir));
	if (r < 0) {
		s->rundir[0] = '\0';
		return r;
	}
	snprintf(s->sock, sizeof(s->sock), "%s/console.sock", s->rundir);
	return 0;
}

static void session_end(struct session *s)
{
	if (s->viewer > 0) {
		kill(s->viewer, SIGTERM);
		waitpid(s->viewer, NULL, 0);
	}
	if (s->dom && cl_vm_remove(s->dom) < 0)
		fprintf(stderr, "cloudlet: %s\n", cl_error_msg());
	s->dom = NULL;
	if (s->rundir[0])
		cl_vm_rundir_remove(s->rundir);
	if (s->conn)
		virConnectClose(s->conn);
	s->conn = NULL;
}

static int in_path(const char *prog)
{
	char *path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin"), *dir, *save;
	char buf[PATH_MAX];
	int found = 0;

	for (dir = path ? strtok_r(path, ":", &save) : NULL; dir && !found;
	     dir = strtok_r(NULL, ":", &save))
		found = (size_t)snprintf(buf, sizeof(buf), "%s/%s", dir, prog) < sizeof(buf) &&
		        access(buf, X_OK) == 0;
	free(path);
	return found;
}

/* Prints the VNC address and opens a viewer if there is a display and one. */
static void show_display(struct session *s)
{
	static const char *const viewers[] = {"remote-viewer", "gvncviewer", NULL};
	char *live = virDomainGetXMLDesc(s->dom, 0), *vnc = NULL, url[128];
	int i;

	if (!live || cl_domxml_get(live, strlen(live), "vnc", &vnc) < 0) {
		free(live);
		return;
	}
	free(live);
	printf("VNC display: %s\n", vnc);
	for (i = 0; getenv("DISPLAY") && viewers[i]; i++) {
		if (!in_path(viewers[i]))
			continue;
		/* remote-viewer takes a URL, gvncviewer host:display */
		if (i == 0)
			snprintf(url, sizeof(url), "vnc://%s", vnc);
		else
			snprintf(url, sizeof(url), "%.*s:%d", (int)strcspn(vnc, ":"), vnc,
			         atoi(strrchr(vnc, ':') + 1) - 5900);
		fflush(NULL);
		s->viewer = fork();
		if (s->viewer == 0) {
			int fd = open("/dev/null", O_RDWR);

			if (fd >= 0) {
				dup2(fd, 0);
				dup2(fd, 1);
			}
			execlp(viewers[i], viewers[i], url, (char *)NULL);
			_exit(127);
		}
		if (s->viewer > 0)
			printf("opened %s; closing it takes the snapshot\n", viewers[i]);
		break;
	}
	free(vnc);
}

/* Enter means a person at a terminal (a pipe from a script or a test
 * harness should use --snapshot-on). */
static int watchable_stdin(void)
{
	return isatty(0);
}

static int type_script(struct session *s, struct cl_vm_console *con)
{
	char *text = NULL, *line, *save;
	size_t len = 0, n = 0;
	int r;

	r = cl_read_file(s->script, 1u << 20, (void **)&text, &len);
	if (r < 0)
		return r;
	text = realloc(text, len + 1);
	if (!text)
		return -ENOMEM;
	text[len] = '\0';
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		line[strcspn(line, "\r")] = '\0';
		if (!line[strspn(line, " \t")] || line[strspn(line, " \t")] == '#')
			continue;
		if (strlen(line) > 3800) {
			r = cl_errorf(-E2BIG, "%s: a line longer than the guest tty takes (3800)",
			              s->script);
			break;
		}
		r = cl_vm_console_run(con, line, SCRIPT_LINE_S, &stop_sig);
		if (r < 0)
			break;
		n++;
	}
	free(text);
	if (r == 0)
		printf("typed %zu lines of %s into the guest console\n", n, s->script);
	return r;
}

/* Until the snapshot is due: the script is done (without --snapshot-on),
 * TEXT on the console, Enter, the viewer closed. Bounded by s->timeout. */
static int session_wait(struct session *s)
{
	struct cl_vm_console con = {.fd = -1};
	struct pollfd in = {.fd = 0, .events = POLLIN};
	int stdin_ok = watchable_stdin(), r = 0, alive;
	double t0 = cl_now();
	char buf[256];
	ssize_t n;

	if (s->script || s->snapshot_on) {
		r = cl_vm_console_open(&con, s->sock, 30);
		if (r < 0)
			return r;
	}
	if (s->script) {
		r = type_script(s, &con);
		if (r < 0 || !s->snapshot_on)
			goto out;
	}
	if (!s->snapshot_on && !stdin_ok && s->viewer <= 0) {
		r = cl_errorf(-EINVAL, "nothing would end the customization here (no terminal, no "
		                       "viewer, no --snapshot-on TEXT)");
		goto out;
	}
	if (!s->snapshot_on)
		printf("press Enter to take the snapshot\n");
	for (;;) {
		if (s->snapshot_on) {
			r = cl_vm_console_read(&con);
			if (r < 0) {
				r = cl_errorf(r, "%s: the console closed", s->sock);
				break;
			}
			if (cl_vm_console_seen(&con, s->snapshot_on)) {
				printf("the guest printed %s\n", s->snapshot_on);
				break;
			}
		}
		if (stop_sig) {
			r = cl_errorf(-EINTR, "interrupted: no snapshot taken");
			break;
		}
		alive = cl_vm_alive(s->dom);
		if (alive <= 0) {
			r = cl_errorf(-ECHILD, "the guest shut down before the snapshot");
			break;
		}
		if (s->viewer > 0 && waitpid(s->viewer, NULL, WNOHANG) == s->viewer) {
			s->viewer = 0;
			printf("viewer closed\n");
			break;
		}
		if (cl_now() - t0 > s->timeout) {
			r = cl_errorf(-ETIMEDOUT, "no snapshot trigger within %.0f s", s->timeout);
			break;
		}
		if (stdin_ok && poll(&in, 1, TICK_MS) > 0) {
			n = read(0, buf, sizeof(buf));
			if (n > 0 && memchr(buf, '\n', (size_t)n))
				break;
			if (n == 0)
				stdin_ok = 0; /* closed: no Enter will come */
		} else if (!stdin_ok) {
			poll(NULL, 0, TICK_MS);
		}
	}
out:
	cl_vm_console_close(&con);
	return r;
}

/* Saves the device state to state and the domain XML (as defined, without
 * -incoming) to xmlpath; the domain is removed. */
static int session_save(struct session *s, const char *state, const char *xmlpath)
{
	struct cl_domxml_edit e = {0};
	char sock[300], *xml, *out = NULL, *name = NULL;
	int r;

	snprintf(sock, sizeof(sock), "%s/mig-out.sock", s->rundir);
	r = cl_vm_save_state(s->dom, sock, state, SAVE_TIMEOUT, &stop_sig);
	if (r < 0)
		return r;
	xml = virDomainGetXMLDesc(s->dom, VIR_DOMAIN_XML_INACTIVE);
	if (!xml)
		return cl_errorf(-EIO, "domain %s: %s", s->name, cl_vm_error());
	r = cl_domxml_get(xml, strlen(xml), "name", &name);
	e.name = name;
	e.incoming = 0;
	if (r == 0)
		r = cl_domxml_rewrite(xml, strlen(xml), &e, &out);
	free(xml);
	free(name);
	if (r == 0)
		r = cl_write_file_atomic(xmlpath, out, strlen(out), 0644);
	free(out);
	if (r == 0) {
		r = cl_vm_remove(s->dom);
		s->dom = NULL;
	}
	return r;
}

/* Free page reporting turns what the guest freed into holes in the RAM
 * file a few seconds later (in 2 MiB blocks): wait, bounded, until the
 * file's allocation has not changed for a while. */
static int settle_free_memory(const char *ram)
{
	double t0 = cl_now(), quiet_since = t0;
	struct stat st;
	blkcnt_t first, last;

	if (stat(ram, &st) < 0)
		return cl_errorf(-errno, "%s: %s", ram, strerror(errno));
	first = last = st.st_blocks;
	while (cl_now() - quiet_since < SETTLE_QUIET && cl_now() - t0 < SETTLE_MAX) {
		if (stop_sig)
			return cl_errorf(-EINTR, "interrupted: no snapshot taken");
		poll(NULL, 0, 500);
		if (stat(ram, &st) < 0)
			return cl_errorf(-errno, "%s: %s", ram, strerror(errno));
		if (st.st_blocks != last)
			quiet_since = cl_now();
		last = st.st_blocks;
	}
	printf("free memory: %s holds %s (%s before the wait; %.0f s)\n", ram,
	       cl_fmt_size((uint64_t)last * 512, 0), cl_fmt_size((uint64_t)first * 512, 1),
	       cl_now() - t0);
	return 0;
}

/* --- cloudlet base IMAGE (boot form) ------------------------------------- */

static int make_ram_file(const char *path, uint64_t size, uid_t uid, gid_t gid)
{
	int fd, r = 0;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0660);
	if (fd < 0)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)size) < 0 || fchown(fd, uid, gid) < 0 || fchmod(fd, 0660) < 0)
		r = cl_errorf(-errno, "%s: %s", path, strerror(errno));
	close(fd);
	return r;
}

static int copy_sparse(const char *from, const char *to, uid_t uid, gid_t gid);

/* Kernel and initrd go into the base's registry directory, and its domain
 * XML names them by file name: the directory then travels whole to
 * another cloudlet (cl_vm_boot_files looks there first). */
static int keep_boot_files(const char *image, const struct cl_domxml_spec *spec)
{
	const char *files[2] = {spec->kernel, spec->initrd}, *names[2] = {NULL, NULL};
	struct cl_domxml_edit e = {0};
	char *xml = NULL, *out = NULL, *name = NULL, *uuid = NULL, *to = NULL, group[64];
	struct cl_base *b = NULL;
	size_t len;
	uid_t uid;
	gid_t gid;
	int i, r;

	r = cl_vm_qemu_user(&uid, &gid, group, sizeof(group));
	if (r == 0)
		r = cl_base_find(image, &b);
	if (r < 0)
		return r;
	for (i = 0; i < 2 && files[i] && r == 0; i++) {
		names[i] = strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : files[i];
		free(to);
		if (asprintf(&to, "%s/%s", b->dir, names[i]) < 0) {
			to = NULL;
			r = -ENOMEM;
		} else {
			r = copy_sparse(files[i], to, 0, gid); /* QEMU's group reads it */
		}
	}
	if (r == 0)
		r = cl_read_file(b->domain_path, 16u << 20, (void **)&xml, &len);
	if (r == 0 && (r = cl_domxml_get(xml, len, "name", &name)) == 0) {
		cl_domxml_get(xml, len, "uuid", &uuid);
		e.name = name;
		e.uuid = uuid;
		e.kernel = names[0];
		e.initrd = names[1];
		r = cl_domxml_rewrite(xml, len, &e, &out);
	}
	if (r == 0)
		r = cl_write_file_atomic(b->domain_path, out, strlen(out), 0644);
	/* The registration is complete: hash the XML, kernel and initrd into
	 * base.conf, checked before use from now on. */
	if (r == 0)
		r = cl_base_seal(b);
	if (r == 0)
		printf("kernel%s copied into %s\n", names[1] ? " and initrd" : "", b->dir);
	free(to);
	free(xml);
	free(out);
	free(name);
	free(uuid);
	cl_base_free(b);
	return r;
}

/* Shows how to reach the VM, waits for the end of the customization, lets
 * the pages the guest freed settle out of the RAM file mem (if settle) and
 * saves the device state and domain XML. */
static int session_finish(struct session *s, const char *mem, int settle, const char *state,
                          const char *xmlp)
{
	int r;

	show_display(s);
	r = session_wait(s);
	if (r == 0 && settle)
		r = settle_free_memory(mem);
	if (r == 0)
		r = session_save(s, state, xmlp);
	return r;
}

int cl_cmd_base_vm(int argc, char **argv)
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
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct session s = {.timeout = WAIT_DEFAULT};
	struct cl_domxml_spec spec = {.ram_mib = 256, .vcpus = 1};
	char image[PATH_MAX], mem[PATH_MAX + 16], state[PATH_MAX + 16], xmlp[PATH_MAX + 16];
	char *xml = NULL, why[512], *chunk = NULL, *bargv[12];
	const char *hint = NULL, *type;
	char *end;
	int c, r, n;

	if (has_opt(argc, argv, "-m", "--memory"))
		return cl_cmd_base(argc, argv);
	if (wants_help(argc, argv)) {
		fputs(base_boot_usage, stdout);
		return cl_cmd_base(argc, argv);
	}
	snprintf(s.name, sizeof(s.name), "cloudlet-base-%ld", (long)getpid());
	optind = 1;
	while ((c = getopt_long(argc, argv, "r:p:k:i:a:w:n:t:c:Fh", opts, NULL)) != -1) {
		if ((r = session_opt("base", c, optarg, &s)) != 0) {
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
			if (c == 'r')
				spec.ram_mib = (unsigned)n;
			else
				spec.vcpus = (unsigned)n;
			break;
		case 'k':
			spec.kernel = optarg;
			break;
		case 'i':
			spec.initrd = optarg;
			break;
		case 'a':
			spec.cmdline = optarg;
			break;
		case 'c':
			chunk = optarg;
			break;
		case 'F':
			spec.no_free_page_reporting = 1;
			break;
		default:
			return cl_cli_usage("base", "bad option");
		}
	}
	if (optind != argc - 1)
		return cl_cli_usage("base", "expected one IMAGE");
	if ((spec.initrd || spec.cmdline) && !spec.kernel)
		return cl_cli_usage("base", "--initrd and --cmdline go with --kernel");
	if ((r = check_trigger("base", &s)) >= 0)
		return r;
	if (!realpath(argv[optind], image))
		return cl_cli_fail(cl_errorf(-errno, "%s: %s", argv[optind], strerror(errno)),
		                   NULL);
	snprintf(mem, sizeof(mem), "%s.memory", image);
	snprintf(state, sizeof(state), "%s.state", image);
	snprintf(xmlp, sizeof(xmlp), "%s.domain.xml", image);
	if (spec.kernel && !spec.cmdline)
		spec.cmdline = "console=ttyS0";

	r = session_start(&s, &hint);
	if (r < 0)
		goto out;
	r = cl_vm_accel(s.conn, "kvm", spec.kernel, spec.initrd, &type, why, sizeof(why));
	if (r < 0)
		goto out;
	if (!strcmp(type, "qemu"))
		fprintf(stderr, "cloudlet: notice: %s; using TCG (domain type qemu)\n",
		        *why ? why : "CLOUDLET_ACCEL says so");
	r = make_ram_file(mem, (uint64_t)spec.ram_mib << 20, s.uid, s.gid);
	if (r < 0)
		goto out;
	spec.name = s.name;
	spec.type = type;
	spec.disk = image;
	spec.memory = mem;
	spec.console = s.sock;
	spec.vnc = 1;
	r = cl_domxml_new(&spec, &xml);
	if (r < 0)
		goto out;
	r = cl_vm_define(s.conn, xml, &s.dom);
	if (r < 0)
		goto out;
	if (virDomainCreate(s.dom) < 0) {
		r = cl_errorf(-EIO, "domain %s: cannot start: %s", s.name, cl_vm_error());
		hint = "QEMU runs as libvirt-qemu: it must be able to reach IMAGE's directory";
		goto out;
	}
	printf("booted %s as domain %s (%s); serial console %s\n", image, s.name,
	       !strcmp(type, "kvm") ? "KVM" : "TCG", s.sock);
	r = session_finish(&s, mem, !spec.no_free_page_reporting, state, xmlp);
	if (r < 0)
		goto out;
	session_end(&s);
	printf("saved %s and %s\n", state, xmlp);
	n = 0;
	bargv[n++] = "base";
	bargv[n++] = image;
	bargv[n++] = "--memory";
	bargv[n++] = mem;
	bargv[n++] = "--state";
	bargv[n++] = state;
	bargv[n++] = "--domain";
	bargv[n++] = xmlp;
	if (chunk) {
		bargv[n++] = "--chunk-size";
		bargv[n++] = chunk;
	}
	bargv[n] = NULL;
	free(xml);
	n = cl_cmd_base(n, bargv);
	if (n == 0 && spec.kernel && (r = keep_boot_files(image, &spec)) < 0)
		return cl_cli_fail(r, "the base is registered; copy its kernel and initrd next to "
		                      "IMAGE by hand");
	return n;
out:
	cl_cli_fail(r, hint);
	session_end(&s);
	free(xml);
	return 1;
}

/* --- cloudlet overlay IMAGE (interactive form) ---------------------------- */

/* Sparse copy: holes stay holes. */
static int copy_sparse(const char *from, const char *to, uid_t uid, gid_t gid)
{
	struct stat st;
	int in, out, r;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return cl_errorf(-errno, "%s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0660);
	if (out < 0 || fstat(in, &st) < 0) {
		r = cl_errorf(-errno, "%s: %s", out < 0 ? to : from, strerror(errno));
		goto out;
	}
	r = cl_copy_sparse(in, from, out, to, (uint64_t)st.st_size);
	if (r == 0 && (fchown(out, uid, gid) < 0 || fchmod(out, 0660) < 0))
		r = cl_errorf(-errno, "%s: %s", to, strerror(errno));
out:
	if (out >= 0)
		close(out);
	close(in);
	return r;
}

int cl_cmd_overlay_vm(int argc, char **argv)
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
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct session s = {.timeout = WAIT_DEFAULT};
	struct cl_domxml_edit e = {0};
	struct cl_base *b = NULL;
	char trace[PATH_MAX + 96], pname[80];
	double profile = 0;
	int no_free = 0, keep = 0;
	char kept[PATH_MAX + 16];
	char work[PATH_MAX + 64], outdir[PATH_MAX], qcow[PATH_MAX + 96];
	char mem[PATH_MAX + 96], state[PATH_MAX + 96], xmlp[PATH_MAX + 96], sock[300];
	char uuid[37], *xml = NULL, *newxml = NULL, *kernel = NULL, *initrd = NULL;
	char *oargv[18];
	const char *hint = NULL, *type, *odir = NULL;
	size_t len = 0;
	int c, r, n;

	if (has_opt(argc, argv, "-D", "--disk") || has_opt(argc, argv, "-m", "--memory"))
		return cl_cmd_overlay(argc, argv);
	if (wants_help(argc, argv)) {
		fputs(overlay_vm_usage, stdout);
		return cl_cmd_overlay(argc, argv);
	}
	snprintf(s.name, sizeof(s.name), "cloudlet-overlay-%ld", (long)getpid());
	optind = 1;
	while ((c = getopt_long(argc, argv, "o:x:w:n:t:P:FKh", opts, NULL)) != -1) {
		if ((r = session_opt("overlay", c, optarg, &s)) != 0) {
			if (r >= 0)
				return r;
			continue;
		}
		switch (c) {
		case 'o':
			odir = optarg;
			break;
		case 'x':
			s.script = optarg;
			break;
		case 'P':
			if ((r = parse_seconds("overlay", optarg, &profile)) >= 0)
				return r;
			break;
		case 'F':
			no_free = 1;
			break;
		case 'K':
			keep = 1;
			break;
		default:
			return cl_cli_usage("overlay", "bad option");
		}
	}
	if (optind != argc - 1)
		return cl_cli_usage("overlay", "expected one IMAGE (or --disk and --memory)");
	if ((r = check_trigger("overlay", &s)) >= 0)
		return r;
	r = cl_base_find(argv[optind], &b);
	if (r < 0)
		return cl_cli_fail(r, NULL);
	if (!b->state_path || !b->domain_path) {
		cl_base_free(b);
		return cl_cli_fail(cl_errorf(-EINVAL,
		                             "%s: registered without its device state and domain "
		                             "XML: it cannot be resumed",
		                             b->path[CL_DISK]),
		                   "register it with --state and --domain, or boot it with "
		                   "`cloudlet base IMAGE --kernel ...`");
	}
	if (odir) {
		if (cl_mkdir_p(odir, 0755) < 0 || !realpath(odir, outdir)) {
			cl_base_free(b);
			return cl_cli_fail(cl_errorf(-errno, "%s: %s", odir, strerror(errno)),
			                   NULL);
		}
	} else {
		snprintf(outdir, sizeof(outdir), "%s", b->path[CL_DISK]);
		*strrchr(outdir, '/') = '\0';
	}
	/* The VM's files sit next to the overlay: QEMU must reach that directory. */
	snprintf(work, sizeof(work), "%s/.cloudlet-overlay-%ld", outdir, (long)getpid());
	snprintf(qcow, sizeof(qcow), "%s/disk.qcow2", work);
	snprintf(mem, sizeof(mem), "%s/memory.img", work);
	snprintf(state, sizeof(state), "%s/state", work);
	snprintf(xmlp, sizeof(xmlp), "%s/domain.xml", work);

	r = session_start(&s, &hint);
	if (r < 0)
		goto out;
	if (mkdir(work, 0750) < 0 || chown(work, 0, s.gid) < 0) {
		r = cl_errorf(-errno, "%s: %s", work, strerror(errno));
		goto out;
	}
	{
		char *qargv[] = {"qemu-img", "create",         "-q", "-f", "qcow2", "-F", "raw",
		                 "-b",       b->path[CL_DISK], qcow, NULL};

		r = cl_vm_run_tool(qargv, TOOL_TIMEOUT, &stop_sig, NULL, NULL);
		if (r < 0)
			goto out;
	}
	if (chown(qcow, s.uid, s.gid) < 0 || chmod(qcow, 0660) < 0) {
		r = cl_errorf(-errno, "%s: %s", qcow, strerror(errno));
		goto out;
	}
	r = copy_sparse(b->path[CL_MEMORY], mem, s.uid, s.gid);
	if (r < 0)
		goto out;
	r = cl_read_file(b->domain_path, 16u << 20, (void **)&xml, &len);
	if (r < 0)
		goto out;
	r = cl_vm_boot_files(b, xml, len, &kernel, &initrd);
	if (r < 0)
		goto out;
	/* The device state loads only under what it was saved under. */
	r = cl_vm_resume_type(s.conn, b, xml, len, kernel, initrd, &type, &hint);
	if (r < 0)
		goto out;
	r = cl_domxml_uuid(uuid);
	if (r < 0)
		goto out;
	e.name = s.name;
	e.uuid = uuid;
	e.type = type;
	e.disk = qcow;
	e.disk_format = "qcow2";
	e.disk_discard = 1; /* TRIM in the guest: discarded ranges cost nothing */
	/* No DAC relabelling: libvirt would chown the base image (the backing
	 * file) to QEMU's user and leave it so. The qcow2 file is QEMU's. */
	e.disk_norelabel = 1;
	e.memory = mem;
	e.memory_size = b->size[CL_MEMORY];
	e.share = "on"; /* the customized RAM lands in mem */
	e.incoming = 1;
	e.console = s.sock;
	e.kernel = kernel;
	e.initrd = initrd;
	e.vnc_local = 1;
	r = cl_domxml_rewrite(xml, len, &e, &newxml);
	if (r < 0)
		goto out;
	r = cl_vm_define(s.conn, newxml, &s.dom);
	if (r < 0)
		goto out;
	snprintf(sock, sizeof(sock), "%s/mig-in.sock", s.rundir);
	r = cl_vm_start_paused(s.dom);
	if (r == 0)
		r = cl_vm_load_state(s.dom, sock, b->state_path, SAVE_TIMEOUT, &stop_sig);
	if (r == -ENOTSUP)
		hint = "resuming needs QEMU 4.0 or later (migration capability x-ignore-shared)";
	if (r < 0)
		goto out;
	printf("resumed base %s as domain %s (%s); serial console %s\n", b->path[CL_DISK], s.name,
	       !strcmp(type, "kvm") ? "KVM" : "TCG", s.sock);
	r = session_finish(&s, mem, !no_free, state, xmlp);
	if (r < 0)
		goto out;
	n = 0;
	oargv[n++] = "overlay";
	oargv[n++] = b->path[CL_DISK];
	oargv[n++] = "--disk";
	oargv[n++] = qcow; /* the offline form reads only what the qcow2 holds */
	oargv[n++] = "--memory";
	oargv[n++] = mem;
	oargv[n++] = "--state";
	oargv[n++] = state;
	oargv[n++] = "--domain";
	oargv[n++] = xmlp;
	oargv[n++] = "-o";
	oargv[n++] = outdir;
	oargv[n] = NULL;
	session_end(&s);
	r = cl_cmd_overlay(n, oargv) ? -EIO : 0;
	if (r == 0 && profile > 0) {
		/* Run the new overlay once, then put what it touched first. */
		snprintf(trace, sizeof(trace), "%s/trace", work);
		snprintf(pname, sizeof(pname), "%.50s-profile", s.name);
		printf("profiling: synthesizing the overlay for %.0f s\n", profile);
		r = cl_synthesis_profile(b->path[CL_DISK], outdir, pname, profile, trace) ? -EIO
		                                                                          : 0;
		if (r == 0) {
			oargv[n++] = "--order";
			oargv[n++] = trace;
			oargv[n] = NULL;
			r = cl_cmd_overlay(n, oargv) ? -EIO : 0;
		}
	}
	if (r == 0 && keep) {
		/* For inspection: what the overlay was made of. */
		snprintf(kept, sizeof(kept), "%s/snapshot", outdir);
		cl_vm_rundir_remove(kept);
		if (rename(work, kept) < 0)
			r = cl_cli_fail(cl_errorf(-errno, "%s: %s", kept, strerror(errno)), NULL);
		else
			printf("kept the snapshot in %s\n", kept);
	}
	cl_vm_rundir_remove(work);
	free(xml);
	free(newxml);
	free(kernel);
	free(initrd);
	cl_base_free(b);
	return r ? 1 : 0;
out:
	cl_cli_fail(r, hint);
	session_end(&s);
	cl_vm_rundir_remove(work);
	free(xml);
	free(newxml);
	free(kernel);
	free(initrd);
	cl_base_free(b);
	return 1;
}
