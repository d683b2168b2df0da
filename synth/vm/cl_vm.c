/* VM life cycle through libvirt (see cl_vm.h). */
#include "cl_vm.h"
#include "cl_base.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/kvm.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt-qemu.h>
#include <libxml/entities.h>
#include <libvirt/virterror.h>

#define QEMU_USER      "libvirt-qemu"
#define POLL_MS        100
#define PROBE_TIMEOUT  20.0 /* seconds a KVM guest gets to reach its init */
#define PROBE_MEM_MIB  256
#define FEED_CONNECT_S 10.0 /* QEMU listens right after migrate-incoming */

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static void quiet(void *ctx, virErrorPtr err)
{
	(void)ctx;
	(void)err;
}

const char *cl_vm_error(void)
{
	const char *m = virGetLastErrorMessage();

	return m && *m ? m : "unknown libvirt error";
}

/* "domain NAME: WHAT: libvirt's message" as the error. The message is
 * copied first: virDomainGetName() resets libvirt's last error. */
static int dom_error(virDomainPtr d, const char *what)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", cl_vm_error());
	return cl_errorf(-EIO, "domain %s: %s%s%s", virDomainGetName(d), what, *what ? ": " : "",
	                 msg);
}

int cl_vm_connect(const char *uri, virConnectPtr *out)
{
	virConnectPtr c;

	if (!out)
		return -EINVAL;
	if (!uri)
		uri = getenv("CLOUDLET_LIBVIRT_URI");
	if (!uri || !*uri)
		uri = CL_VM_DEFAULT_URI;
	virSetErrorFunc(NULL, quiet);
	c = virConnectOpen(uri);
	if (!c)
		return cl_errorf(-ECONNREFUSED, "%s: cannot connect to libvirt: %s", uri,
		                 cl_vm_error());
	*out = c;
	return 0;
}

int cl_vm_qemu_user(uid_t *uid, gid_t *gid, char *group, size_t cap)
{
	struct passwd *pw = getpwnam(QEMU_USER);
	struct group *gr;

	if (!pw)
		pw = getpwuid(0);
	if (!pw)
		return cl_errorf(-ENOENT, "no user %s nor root in the password database",
		                 QEMU_USER);
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	gr = getgrgid(pw->pw_gid);
	if (!gr)
		return cl_errorf(-ENOENT, "user %s: no group %ld", pw->pw_name, (long)pw->pw_gid);
	if ((size_t)snprintf(group, cap, "%s", gr->gr_name) >= cap)
		return -ENAMETOOLONG;
	return 0;
}

/* --- accelerator ----------------------------------------------------------- */

/* /dev/kvm opens and speaks the stable API. */
static int kvm_device(char *why, size_t cap)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), v;

	if (fd < 0) {
		snprintf(why, cap, "/dev/kvm: %s", strerror(errno));
		return 0;
	}
	v = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	if (v != KVM_API_VERSION) {
		snprintf(why, cap, "/dev/kvm: API version %d, expected %d", v, KVM_API_VERSION);
		return 0;
	}
	return 1;
}

/* Whether the log file holds a line showing the kernel got past early boot
 * (where KVM guests hang on some hosts). */
static int kernel_progressed(const char *log)
{
	static const char *const marks[] = {"Freeing unused kernel", "Run /init", "Kernel panic",
	                                    NULL};
	size_t len = 0, i;
	void *buf = NULL;
	int hit = 0;

	if (cl_read_file(log, 16u << 20, &buf, &len) < 0)
		return 0;
	for (i = 0; marks[i] && !hit; i++)
		hit = memmem(buf, len, marks[i], strlen(marks[i])) != NULL;
	free(buf);
	return hit;
}

/* Boots kernel (+ initrd) under KVM with no disk and waits, bounded, until
 * it gets past early boot. 1 yes, 0 no (why says), -errno on failure. */
static int kvm_boot_probe(virConnectPtr c, const char *kernel, const char *initrd, char *why,
                          size_t cap)
{
	char dir[] = CL_VM_RUN_DIR "/kvmprobe.XXXXXX", log[64], group[64], name[64];
	char *xml = NULL, *initrd_el = NULL;
	xmlChar *k = NULL, *i = NULL;
	virDomainPtr d = NULL;
	uid_t uid;
	gid_t gid;
	double t0;
	int ok = 0, r;

	r = cl_vm_qemu_user(&uid, &gid, group, sizeof(group));
	if (r < 0)
		return r;
	if (cl_mkdir_p(CL_VM_RUN_DIR, 0755) < 0 || !mkdtemp(dir))
		return cl_errorf(-errno, "%s: %s", CL_VM_RUN_DIR, strerror(errno));
	/* QEMU writes the serial log there. */
	if (chown(dir, 0, gid) < 0 || chmod(dir, 0770) < 0) {
		r = cl_errorf(-errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	snprintf(log, sizeof(log), "%s/console.log", dir);
	snprintf(name, sizeof(name), "cloudlet-kvmprobe-%ld", (long)getpid());
	/* Paths go into element content: libxml2 escapes what needs it. */
	k = xmlEncodeSpecialChars(NULL, (const xmlChar *)kernel);
	i = xmlEncodeSpecialChars(NULL, (const xmlChar *)(initrd ? initrd : ""));
	if (!k || !i || asprintf(&initrd_el, initrd ? "<initrd>%s</initrd>" : "%s", i) < 0 ||
	    asprintf(&xml,
	             "<domain type='kvm'><name>%s</name><memory unit='MiB'>%d</memory>"
	             "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type><kernel>%s</kernel>%s"
	             "<cmdline>console=ttyS0 loglevel=7 panic=-1</cmdline></os>"
	             "<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>"
	             "<on_crash>destroy</on_crash><devices>"
	             "<serial type='file'><source path='%s'/><target port='0'/></serial>"
	             "<memballoon model='none'/></devices></domain>",
	             name, PROBE_MEM_MIB, k, initrd_el, log) < 0) {
		r = -ENOMEM;
		goto out;
	}
	d = virDomainCreateXML(c, xml, 0);
	if (!d) {
		snprintf(why, cap, "libvirt refused a kvm domain: %s", cl_vm_error());
		r = 0;
		goto out;
	}
	t0 = cl_now();
	while (!(ok = kernel_progressed(log)) && cl_now() - t0 < PROBE_TIMEOUT &&
	       virDomainIsActive(d) == 1)
		sleep_ms(250);
	if (!ok)
		snprintf(why, cap, "a KVM guest did not get through its boot within %.0f s",
		         PROBE_TIMEOUT);
	r = ok;
out:
	if (d) {
		virDomainDestroy(d);
		virDomainFree(d);
	}
	unlink(log);
	rmdir(dir);
	free(xml);
	free(initrd_el);
	xmlFree(i);
	xmlFree(k);
	return r;
}

/* KVM usable here? The answer of the boot probe is kept per host boot. */
static int kvm_usable(virConnectPtr c, const char *kernel, const char *initrd, char *why,
                      size_t cap)
{
	char boot[64] = "", line[512], path[] = CL_VM_RUN_DIR "/accel";
	int fd, r;
	FILE *f;

	if (!kvm_device(why, cap))
		return 0;
	if (!kernel)
		return 1; /* nothing to boot: trust the device */
	fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, boot, sizeof(boot) - 1);

		boot[n > 0 ? n : 0] = '\0';
		boot[strcspn(boot, "\n")] = '\0';
		close(fd);
	}
	f = fopen(path, "re");
	if (f) {
		/* "BOOT_ID kvm|qemu WHY" */
		if (fgets(line, sizeof(line), f) && *boot && !strncmp(line, boot, strlen(boot)) &&
		    line[strlen(boot)] == ' ') {
			char *t = line + strlen(boot) + 1;

			fclose(f);
			line[strcspn(line, "\n")] = '\0';
			if (!strncmp(t, "kvm", 3))
				return 1;
			snprintf(why, cap, "%s (cached in %s)", t + (strlen(t) > 5 ? 5 : 0), path);
			return 0;
		}
		fclose(f);
	}
	r = kvm_boot_probe(c, kernel, initrd, why, cap);
	if (r < 0)
		return r;
	f = fopen(path, "we");
	if (f) {
		fprintf(f, "%s %s %s\n", boot, r ? "kvm" : "qemu", r ? "" : why);
		fclose(f);
	}
	return r;
}

int cl_vm_accel(virConnectPtr c, const char *xml_type, const char *kernel, const char *initrd,
                const char **type, char *why, size_t cap)
{
	const char *env = getenv("CLOUDLET_ACCEL");
	int r;

	if (!type || !why)
		return -EINVAL;
	why[0] = '\0';
	if (env && *env) {
		if (!strcmp(env, "kvm"))
			*type = "kvm";
		else if (!strcmp(env, "tcg") || !strcmp(env, "qemu"))
			*type = "qemu";
		else
			return cl_errorf(-EINVAL, "CLOUDLET_ACCEL=%s: expected kvm or tcg", env);
		return 0;
	}
	if (!xml_type || strcmp(xml_type, "kvm")) {
		*type = "qemu";
		return 0;
	}
	r = kvm_usable(c, kernel, initrd, why, cap);
	if (r < 0)
		return r;
	*type = r ? "kvm" : "qemu";
	return 0;
}

static const char *accel_name(const char *type)
{
	return !strcmp(type, "kvm") ? "KVM" : "TCG";
}

int cl_vm_resume_choose(const char *saved_type, int kvm_ok, const char *why, const char *env,
                        const char **type)
{
	const char *saved = saved_type && !strcmp(saved_type, "kvm") ? "kvm" : "qemu", *want;

	if (!type)
		return -EINVAL;
	if (env && *env) {
		if (!strcmp(env, "kvm"))
			want = "kvm";
		else if (!strcmp(env, "tcg") || !strcmp(env, "qemu"))
			want = "qemu";
		else
			return cl_errorf(-EINVAL, "CLOUDLET_ACCEL=%s: expected kvm or tcg", env);
		if (strcmp(want, saved))
			return cl_errorf(-ENODEV,
			                 "the VM was saved under %s, and CLOUDLET_ACCEL=%s asks "
			                 "for %s: its device state would not load",
			                 accel_name(saved), env, accel_name(want));
	} else if (!strcmp(saved, "kvm") && !kvm_ok) {
		return cl_errorf(-ENODEV,
		                 "the VM was saved under KVM, which does not work here (%s): its "
		                 "device state would not load under TCG",
		                 why && *why ? why : "no reason given");
	}
	*type = saved;
	return 0;
}

int cl_vm_resume_type(virConnectPtr c, const struct cl_base *b, const char *xml, size_t len,
                      const char *kernel, const char *initrd, const char **type, const char **hint)
{
	char *saved = NULL, *cpu = NULL, *base_cpu = NULL, *bx = NULL, why[512] = "";
	const char *env = getenv("CLOUDLET_ACCEL");
	size_t blen = 0;
	int r, kvm_ok = 0;

	r = cl_domxml_get(xml, len, "cpu", &cpu);
	if (r == 0 && b->domain_path) {
		r = cl_read_file(b->domain_path, 16u << 20, (void **)&bx, &blen);
		if (r == 0)
			r = cl_domxml_get(bx, blen, "cpu", &base_cpu);
		if (r == 0 && strcmp(cpu, base_cpu)) {
			r = cl_errorf(-ENODEV,
			              "the VM was saved with CPU model %s, its base %s with %s",
			              cpu, b->path[0], base_cpu);
			*hint = "make the overlay again from this base (`cloudlet overlay IMAGE`)";
		}
	}
	if (r < 0)
		goto out;
	if (cl_domxml_get(xml, len, "type", &saved) == -ENOENT)
		saved = NULL;
	if (saved && !strcmp(saved, "kvm") && !(env && *env)) {
		r = kvm_usable(c, kernel, initrd, why, sizeof(why));
		if (r < 0)
			goto out;
		kvm_ok = r;
	}
	r = cl_vm_resume_choose(saved, kvm_ok, why, env, type);
	if (r == -ENODEV)
		*hint = saved && !strcmp(saved, "kvm")
		            ? "resume it where KVM works, or make the base under TCG "
		              "(CLOUDLET_ACCEL=tcg cloudlet base ...)"
		            : "unset CLOUDLET_ACCEL: a VM saved under TCG resumes under TCG";
out:
	free(saved);
	free(cpu);
	free(base_cpu);
	free(bx);
	return r;
}

/* --- domains ------------------------------------------------------------- */

int cl_vm_define(virConnectPtr c, const char *xml, virDomainPtr *out)
{
	char name[256] = "";
	virDomainPtr d;
	const char *p, *q;

	if (!c || !xml || !out)
		return -EINVAL;
	p = strstr(xml, "<name>");
	q = p ? strstr(p, "</name>") : NULL;
	if (p && q && q - p - 6 < (long)sizeof(name))
		snprintf(name, sizeof(name), "%.*s", (int)(q - p - 6), p + 6);
	if (*name && (d = virDomainLookupByName(c, name))) {
		virDomainFree(d);
		return cl_errorf(-EEXIST, "domain %s: the name is in use", name);
	}
	d = virDomainDefineXML(c, xml);
	if (!d)
		return cl_errorf(-EINVAL, "domain %s: libvirt refused it: %s", name, cl_vm_error());
	*out = d;
	return 0;
}

int cl_vm_json_str(const char *json, const char *key, char *out, size_t cap)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\"", key);
	p = json ? strstr(json, pat) : NULL;
	if (!p)
		return -ENOENT;
	p += strlen(pat);
	while (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n')
		p++;
	if (*p != '"')
		return -ENOENT;
	e = strchr(++p, '"');
	if (!e)
		return -ENOENT;
	snprintf(out, cap, "%.*s", (int)(e - p), p);
	return 0;
}

int cl_vm_qmp(virDomainPtr d, const char *cmd, char **reply)
{
	char desc[512];
	char *ans = NULL;

	if (!d || !cmd)
		return -EINVAL;
	if (virDomainQemuMonitorCommand(d, cmd, &ans, 0) < 0)
		return cl_errorf(-EIO, "QMP %s: %s", cmd, cl_vm_error());
	if (strstr(ans, "\"error\"")) {
		if (cl_vm_json_str(ans, "desc", desc, sizeof(desc)) < 0)
			snprintf(desc, sizeof(desc), "%.400s", ans);
		free(ans);
		return cl_errorf(-EPROTO, "%s", desc);
	}
	if (reply)
		*reply = ans;
	else
		free(ans);
	return 0;
}

struct feeder {
	const char *sock;
	const char *state;
	atomic_int stop;
	atomic_int finished;
	int result;
	char msg[512]; /* error messages are per thread */
	size_t sent;
};

static int feed_connect(struct feeder *f, int *out)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	double t0 = cl_now();
	int fd;

	if (strlen(f->sock) >= sizeof(a.sun_path))
		return cl_errorf(-ENAMETOOLONG, "%s: socket path too long", f->sock);
	strcpy(a.sun_path, f->sock);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return cl_errorf(-errno, "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(fd);
		if (errno != ENOENT && errno != ECONNREFUSED)
			return cl_errorf(-errno, "%s: %s", f->sock, strerror(errno));
		if (atomic_load(&f->stop) || cl_now() - t0 > FEED_CONNECT_S)
			return cl_errorf(-ETIMEDOUT, "%s: QEMU does not listen", f->sock);
		sleep_ms(20);
	}
	*out = fd;
	return 0;
}

/* Waits (bounded, in short steps so that stop is seen) for fd to be ready. */
static int feed_poll(struct feeder *f, int fd, short ev)
{
	struct pollfd p = {.fd = fd, .events = ev};
	double t0 = cl_now();
	int n;

	while (!atomic_load(&f->stop)) {
		n = poll(&p, 1, POLL_MS);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
		if (cl_now() - t0 > 120)
			return -ETIMEDOUT;
	}
	return -ECANCELED;
}

/* Thread: writes the device state into QEMU's incoming socket, then waits
 * for QEMU to close it (it has read everything). */
static void *feed(void *arg)
{
	struct feeder *f = arg;
	char buf[65536];
	int sfd = -1, fd, r;
	ssize_t n, w;

	fd = open(f->state, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		f->result = cl_errorf(-errno, "%s: %s", f->state, strerror(errno));
		return NULL;
	}
	r = feed_connect(f, &sfd);
	if (r < 0)
		goto out;
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = cl_errorf(-errno, "%s: %s", f->state, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n; off += w) {
			r = feed_poll(f, sfd, POLLOUT);
			if (r < 0) {
				r = cl_errorf(r, "%s: sending the device state: %s", f->sock,
				              strerror(-r));
				goto out;
			}
			w = send(sfd, buf + off, (size_t)(n - off), MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
				w = 0;
				continue;
			}
			if (w < 0) {
				r = cl_errorf(-errno, "%s: sending the device state: %s", f->sock,
				              strerror(errno));
				goto out;
			}
			f->sent += (size_t)w;
		}
	}
	shutdown(sfd, SHUT_WR);
	for (;;) {
		r = feed_poll(f, sfd, POLLIN);
		if (r < 0)
			break; /* the migration status decides */
		n = recv(sfd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			break;
	}
	r = 0;
out:
	if (sfd >= 0)
		close(sfd);
	close(fd);
	f->result = r;
	if (r < 0)
		snprintf(f->msg, sizeof(f->msg), "%s", cl_error_msg());
	atomic_store(&f->finished, 1);
	return NULL;
}

/* Polls query-migrate until completed (0), failed, or the bound. */
static int wait_migration(virDomainPtr d, struct feeder *f, double timeout,
                          volatile sig_atomic_t *stop)
{
	char status[64] = "none", *ans;
	double t0 = cl_now();
	int r;

	for (;;) {
		if (stop && *stop)
			return cl_errorf(-EINTR, "interrupted while the device state was loading");
		/* A feeder that gave up leaves QEMU waiting forever. */
		if (atomic_load(&f->finished) && f->result < 0)
			return cl_errorf(f->result, "%s", f->msg);
		r = cl_vm_qmp(d, "{\"execute\":\"query-migrate\"}", &ans);
		if (r < 0)
			return r;
		if (cl_vm_json_str(ans, "status", status, sizeof(status)) < 0)
			snprintf(status, sizeof(status), "none");
		free(ans);
		if (!strcmp(status, "completed"))
			return 0;
		if (!strcmp(status, "failed") || !strcmp(status, "cancelled"))
			return cl_errorf(-EPROTO,
			                 "QEMU could not load the device state (migration %s; "
			                 "see /var/log/libvirt/qemu/%s.log)",
			                 status, virDomainGetName(d));
		if (cl_now() - t0 > timeout)
			return cl_errorf(-ETIMEDOUT,
			                 "device state not loaded within %.0f s (migration %s)",
			                 timeout, status);
		sleep_ms(POLL_MS / 2);
	}
}

/* Turns on the migration capability x-ignore-shared: the RAM, a shared
 * file, stays out of the stream. -ENOTSUP for a QEMU without it. */
static int ignore_shared(virDomainPtr d)
{
	int r =
	    cl_vm_qmp(d,
	              "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
	              "[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}",
	              NULL);

	if (r == -EPROTO)
		return cl_errorf(-ENOTSUP, "QEMU refuses the x-ignore-shared capability: %s",
		                 cl_error_msg());
	return r;
}

int cl_vm_start_paused(virDomainPtr d)
{
	if (!d)
		return -EINVAL;
	if (virDomainCreateWithFlags(d, VIR_DOMAIN_START_PAUSED) < 0)
		return dom_error(d, "cannot start");
	return ignore_shared(d);
}

int cl_vm_load_state(virDomainPtr d, const char *sock, const char *state_path, double timeout,
                     volatile sig_atomic_t *stop)
{
	struct feeder f = {.sock = sock, .state = state_path};
	char *cmd = NULL;
	pthread_t th;
	int r;

	if (!d || !sock || !state_path)
		return -EINVAL;
	unlink(sock);
	if (asprintf(&cmd, "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"unix:%s\"}}",
	             sock) < 0)
		return -ENOMEM;
	r = cl_vm_qmp(d, cmd, NULL);
	free(cmd);
	if (r < 0)
		return r;
	r = -pthread_create(&th, NULL, feed, &f);
	if (r < 0)
		return cl_errorf(r, "pthread_create: %s", strerror(-r));
	r = wait_migration(d, &f, timeout, stop);
	atomic_store(&f.stop, r < 0);
	pthread_join(th, NULL);
	if (r == 0 && f.result < 0)
		r = cl_errorf(f.result, "%s", f.msg);
	if (r == 0 && virDomainResume(d) < 0)
		r = dom_error(d, "cannot resume");
	return r;
}

/* --- saving the device state ------------------------------------------ */

struct reader {
	int lfd;
	const char *path;
	atomic_int stop;
	atomic_int finished;
	int result;
	char msg[512];
};

/* Thread: accepts QEMU's connection and writes the stream to path.part. */
static void *reader(void *arg)
{
	struct reader *rd = arg;
	struct pollfd p = {.fd = rd->lfd, .events = POLLIN};
	char part[4200], buf[65536];
	int cfd = -1, ofd = -1, r = 0, n;
	double t0 = cl_now();
	uint64_t total = 0;
	ssize_t got;

	snprintf(part, sizeof(part), "%s.part", rd->path);
	while (!atomic_load(&rd->stop) && (n = poll(&p, 1, POLL_MS)) <= 0)
		if ((n < 0 && errno != EINTR) || cl_now() - t0 > 120) {
			r = cl_errorf(-ETIMEDOUT, "QEMU did not connect to save its state");
			goto out;
		}
	if (atomic_load(&rd->stop)) {
		r = -ECANCELED;
		goto out;
	}
	cfd = accept4(rd->lfd, NULL, NULL, SOCK_CLOEXEC);
	ofd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (cfd < 0 || ofd < 0) {
		r = cl_errorf(-errno, "%s: %s", cfd < 0 ? "accept" : part, strerror(errno));
		goto out;
	}
	p.fd = cfd;
	for (;;) {
		n = poll(&p, 1, POLL_MS);
		if (atomic_load(&rd->stop)) {
			r = -ECANCELED;
			goto out;
		}
		if (n <= 0)
			continue;
		got = read(cfd, buf, sizeof(buf));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = cl_errorf(-errno, "reading the migration stream: %s", strerror(errno));
			goto out;
		}
		if (got == 0) {
			if (total == 0)
				r = cl_errorf(-EPROTO, "QEMU sent an empty device state");
			break;
		}
		r = cl_pwrite_full(ofd, buf, (size_t)got, total, part);
		if (r < 0)
			goto out;
		total += (uint64_t)got;
	}
	if (r == 0 && (fsync(ofd) < 0 || rename(part, rd->path) < 0))
		r = cl_errorf(-errno, "%s: %s", rd->path, strerror(errno));
out:
	if (ofd >= 0)
		close(ofd);
	if (cfd >= 0)
		close(cfd);
	if (r < 0)
		unlink(part);
	rd->result = r;
	if (r < 0)
		snprintf(rd->msg, sizeof(rd->msg), "%s", cl_error_msg());
	atomic_store(&rd->finished, 1);
	return NULL;
}

static int listen_unix(const char *path, int *out)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(a.sun_path))
		return cl_errorf(-ENAMETOOLONG, "%s: socket path too long", path);
	strcpy(a.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return cl_errorf(-errno, "socket: %s", strerror(errno));
	/* QEMU connects as its own user. */
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || chmod(path, 0666) < 0 ||
	    listen(fd, 1) < 0) {
		close(fd);
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	}
	*out = fd;
	return 0;
}

int cl_vm_save_state(virDomainPtr d, const char *sock, const char *path, double timeout,
                     volatile sig_atomic_t *stop)
{
	struct reader rd = {.path = path};
	char status[64] = "none", *cmd = NULL, *ans;
	pthread_t th;
	double t0;
	int r;

	if (!d || !sock || !path)
		return -EINVAL;
	r = ignore_shared(d);
	if (r < 0)
		return r;
	if (virDomainSuspend(d) < 0)
		return dom_error(d, "cannot pause");
	r = listen_unix(sock, &rd.lfd);
	if (r < 0)
		return r;
	r = -pthread_create(&th, NULL, reader, &rd);
	if (r < 0) {
		close(rd.lfd);
		return cl_errorf(r, "pthread_create: %s", strerror(-r));
	}
	if (asprintf(&cmd, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:%s\"}}", sock) <
	    0) {
		r = -ENOMEM;
		goto out;
	}
	r = cl_vm_qmp(d, cmd, NULL);
	free(cmd);
	t0 = cl_now();
	while (r == 0) {
		if (stop && *stop) {
			r = cl_errorf(-EINTR, "interrupted while saving the device state");
			break;
		}
		r = cl_vm_qmp(d, "{\"execute\":\"query-migrate\"}", &ans);
		if (r < 0)
			break;
		if (cl_vm_json_str(ans, "status", status, sizeof(status)) < 0)
			snprintf(status, sizeof(status), "none");
		free(ans);
		if (!strcmp(status, "completed"))
			break;
		if (!strcmp(status, "failed") || !strcmp(status, "cancelled"))
			r = cl_errorf(-EPROTO, "saving the device state: migration %s", status);
		else if (cl_now() - t0 > timeout)
			r = cl_errorf(-ETIMEDOUT, "device state not saved within %.0f s", timeout);
		else
			sleep_ms(POLL_MS / 2);
	}
out:
	if (r < 0)
		atomic_store(&rd.stop, 1);
	pthread_join(th, NULL);
	close(rd.lfd);
	unlink(sock);
	if (r == 0 && rd.result < 0)
		r = cl_errorf(rd.result, "%s", rd.msg);
	return r;
}

/* --- run directories ----------------------------------------------------- */

int cl_vm_rundir(const char *name, gid_t gid, char *out, size_t cap)
{
	int r;

	r = cl_mkdir_p(CL_VM_RUN_DIR, 0755);
	if (r < 0)
		return r;
	if ((size_t)snprintf(out, cap, "%s/%s", CL_VM_RUN_DIR, name) >= cap)
		return cl_errorf(-ENAMETOOLONG, "%s: name too long", name);
	if (mkdir(out, 0770) < 0) {
		if (errno == EEXIST)
			return cl_errorf(-EEXIST,
			                 "%s exists: a VM named %s runs, or one did not clean up",
			                 out, name);
		return cl_errorf(-errno, "%s: %s", out, strerror(errno));
	}
	if (chown(out, 0, gid) < 0 || chmod(out, 0770) < 0) {
		r = cl_errorf(-errno, "%s: %s", out, strerror(errno));
		rmdir(out);
		return r;
	}
	return 0;
}

void cl_vm_rundir_remove(const char *dir)
{
	char p[PATH_MAX + 256];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((e = readdir(d)))
		if (e->d_type != DT_DIR) {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	closedir(d);
	rmdir(dir);
}

/* --- serial console -------------------------------------------------------- */

int cl_vm_console_open(struct cl_vm_console *c, const char *sock, double timeout)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	double t0 = cl_now();
	int fd;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (strlen(sock) >= sizeof(a.sun_path))
		return cl_errorf(-ENAMETOOLONG, "%s: socket path too long", sock);
	strcpy(a.sun_path, sock);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return cl_errorf(-errno, "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(fd);
		if (cl_now() - t0 > timeout)
			return cl_errorf(-ETIMEDOUT, "%s: cannot connect to the console: %s", sock,
			                 strerror(errno));
		sleep_ms(100);
	}
	c->fd = fd;
	return 0;
}

int cl_vm_console_read(struct cl_vm_console *c)
{
	ssize_t n;
	size_t keep;

	for (;;) {
		if (c->len == sizeof(c->buf)) {
			/* keep the latest half */
			keep = sizeof(c->buf) / 2;
			memmove(c->buf, c->buf + c->len - keep, keep);
			c->len = keep;
		}
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : -errno;
	}
}

int cl_vm_console_seen(struct cl_vm_console *c, const char *text)
{
	char *p = memmem(c->buf, c->len, text, strlen(text));
	size_t end;

	if (!p)
		return 0;
	/* Only the match goes: output around it may hold other awaited text. */
	end = (size_t)(p - c->buf) + strlen(text);
	memmove(p, c->buf + end, c->len - end);
	c->len -= strlen(text);
	return 1;
}

int cl_vm_console_run(struct cl_vm_console *c, const char *line, double timeout,
                      volatile sig_atomic_t *stop)
{
	static unsigned seq;
	char tag[64], *cmd = NULL;
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	size_t off = 0, len;
	double t0 = cl_now();
	ssize_t w;
	int r;

	/* The tty echoes the line: the quotes keep the echo from matching. */
	snprintf(tag, sizeof(tag), "CL-DONE-%ld-%u", (long)getpid(), ++seq);
	if (asprintf(&cmd, "%s\necho CL\"\"-DONE-%ld-%u\n", line, (long)getpid(), seq) < 0)
		return -ENOMEM;
	len = strlen(cmd);
	r = 0;
	while (off < len) {
		w = write(c->fd, cmd + off, len - off);
		if (w > 0) {
			off += (size_t)w;
		} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
			r = cl_errorf(-errno, "console: %s", strerror(errno));
			break;
		} else {
			p.events = POLLOUT;
			poll(&p, 1, POLL_MS);
		}
		if (cl_now() - t0 > timeout) {
			r = cl_errorf(-ETIMEDOUT, "console: the guest does not take input");
			break;
		}
	}
	free(cmd);
	p.events = POLLIN;
	while (r == 0) {
		r = cl_vm_console_read(c);
		if (r < 0) {
			r = cl_errorf(r, "console closed while the guest ran: %.200s", line);
			break;
		}
		if (cl_vm_console_seen(c, tag))
			break;
		if (stop && *stop)
			r = cl_errorf(-EINTR, "interrupted");
		else if (cl_now() - t0 > timeout)
			r = cl_errorf(-ETIMEDOUT, "the guest did not run `%.200s` within %.0f s",
			              line, timeout);
		else
			poll(&p, 1, POLL_MS);
	}
	return r;
}

void cl_vm_console_close(struct cl_vm_console *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* --- boot files ------------------------------------------------------------ */

/* Kernel and initrd as the base recorded them: a path that exists; else
 * the same name in the base's registry directory (where `cloudlet base`
 * keeps them), then next to the base's disk image (a base copied to
 * another cloudlet). */
/* A kernel or initrd in the registry must be the file hashed into base.conf
 * (when one was: see cl_base_seal); on a mismatch *out is freed. */
static int boot_file_check(const struct cl_base *b, char **out)
{
	int r = cl_base_check_file(b, *out);

	if (r < 0) {
		free(*out);
		*out = NULL;
	}
	return r;
}

static int boot_file(const struct cl_base *b, const char *recorded, const char *what, char **out)
{
	char *disk_dir = strdup(b->path[CL_DISK]), *p = NULL;
	const char *dirs[2] = {b->dir, disk_dir}, *name;
	int i;

	if (!disk_dir)
		return -ENOMEM;
	if (strrchr(disk_dir, '/'))
		*strrchr(disk_dir, '/') = '\0';
	if (recorded[0] == '/' && access(recorded, R_OK) == 0) {
		free(disk_dir);
		*out = strdup(recorded);
		return *out ? boot_file_check(b, out) : -ENOMEM;
	}
	name = strrchr(recorded, '/') ? strrchr(recorded, '/') + 1 : recorded;
	for (i = 0; i < 2; i++) {
		if (!dirs[i] || asprintf(&p, "%s/%s", dirs[i], name) < 0)
			continue;
		if (access(p, R_OK) == 0) {
			free(disk_dir);
			*out = p;
			return boot_file_check(b, out);
		}
		free(p);
	}
	free(disk_dir);
	return cl_errorf(-ENOENT, "%s %s (from the domain XML) not found in %s nor next to %s",
	                 what, recorded, b->dir ? b->dir : "the registry", b->path[CL_DISK]);
}

/* The boot files of the base's own domain XML if it has one, else of the
 * overlay's; NULL when the VM boots from its disk. */
int cl_vm_boot_files(const struct cl_base *b, const char *xml, size_t len, char **kernel,
                     char **initrd)
{
	char *rk = NULL, *ri = NULL, *bx = NULL;
	size_t blen = 0;
	int r;

	*kernel = *initrd = NULL;
	if (b->domain_path && cl_read_file(b->domain_path, 16u << 20, (void **)&bx, &blen) == 0) {
		cl_domxml_get(bx, blen, "kernel", &rk);
		cl_domxml_get(bx, blen, "initrd", &ri);
		free(bx);
	}
	if (!rk) {
		cl_domxml_get(xml, len, "kernel", &rk);
		cl_domxml_get(xml, len, "initrd", &ri);
	}
	r = 0;
	if (rk)
		r = boot_file(b, rk, "kernel", kernel);
	if (r == 0 && ri)
		r = boot_file(b, ri, "initrd", initrd);
	free(rk);
	free(ri);
	return r;
}

/* --- helper programs ------------------------------------------------------ */

#define TOOL_OUT_MAX (256u << 20)

/* Appends what the pipe has to *buf; 1 at its end. */
static int drain(int fd, char **buf, size_t *len, size_t *cap)
{
	size_t want;
	ssize_t n;
	char *p;

	for (;;) {
		if (*cap - *len < 65536) {
			want = *cap ? 2 * *cap : 65536 + 1; /* + 1: room for the NUL */
			if (want > TOOL_OUT_MAX)
				return -EFBIG;
			p = realloc(*buf, want);
			if (!p)
				return -ENOMEM;
			*buf = p;
			*cap = want;
		}
		n = read(fd, *buf + *len, *cap - *len - 1);
		if (n == 0)
			return 1;
		if (n < 0)
			return errno == EINTR || errno == EAGAIN ? 0 : -errno;
		*len += (size_t)n;
	}
}

int cl_vm_run_tool(char *const argv[], double timeout, volatile sig_atomic_t *stop, char **out,
                   size_t *len)
{
	int pfd[2] = {-1, -1}, st, r = 0, eof = !out;
	size_t n = 0, cap = 0;
	char *buf = NULL;
	double t0 = cl_now();
	pid_t pid, w = 0;

	if (out && pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0)
		return cl_errorf(-errno, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		r = cl_errorf(-errno, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		if (out && dup2(pfd[1], 1) < 0)
			_exit(127);
		execvp(argv[0], argv);
		fprintf(stderr, "cloudlet: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (out) {
		close(pfd[1]);
		pfd[1] = -1;
	}
	/* Reading as it comes: a full pipe would stall the tool. */
	while (!eof || (w = waitpid(pid, &st, WNOHANG)) == 0) {
		if (!eof) {
			struct pollfd p = {.fd = pfd[0], .events = POLLIN};

			poll(&p, 1, 50);
			r = drain(pfd[0], &buf, &n, &cap);
			if (r < 0) {
				r = cl_errorf(r, "%s %s: reading its output: %s", argv[0], argv[1],
				              strerror(-r));
				break;
			}
			eof = r;
			r = 0;
		} else {
			sleep_ms(50);
		}
		if ((stop && *stop) || cl_now() - t0 > timeout) {
			r = cl_errorf(stop && *stop ? -EINTR : -ETIMEDOUT, "%s %s: %s", argv[0],
			              argv[1], stop && *stop ? "interrupted" : "still running");
			break;
		}
	}
	if (r < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		goto out;
	}
	if (w < 0) {
		r = cl_errorf(-errno, "waitpid: %s", strerror(errno));
		goto out;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		r = cl_errorf(-EIO, "%s %s failed (exit status %d)", argv[0], argv[1],
		              WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		goto out;
	}
	if (out) {
		if (!buf && !(buf = malloc(1))) {
			r = -ENOMEM;
			goto out;
		}
		buf[n] = '\0';
		*out = buf;
		*len = n;
		buf = NULL;
	}
out:
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	free(buf);
	return r;
}

int cl_vm_alive(virDomainPtr d)
{
	int state, reason;

	if (virDomainGetState(d, &state, &reason, 0) < 0)
		return dom_error(d, "");
	return state != VIR_DOMAIN_SHUTOFF && state != VIR_DOMAIN_CRASHED &&
	       state != VIR_DOMAIN_NOSTATE;
}

int cl_vm_remove(virDomainPtr d)
{
	int r = 0;

	if (!d)
		return 0;
	if (virDomainIsActive(d) == 1 && virDomainDestroy(d) < 0)
		r = dom_error(d, "cannot destroy");
	if (virDomainUndefine(d) < 0 && r == 0)
		r = dom_error(d, "cannot undefine");
	virDomainFree(d);
	return r;
}
