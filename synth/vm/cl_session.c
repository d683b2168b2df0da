/* SPDX-License-Identifier: GPL-2.0-only */
/* The session handle: events, stop, the run until the VM's end, teardown
 * and re-attach (see cl_session.h). */
#include "cl_session_priv.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_mount.h"
#include "cl_pcram.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UMOUNT_TIMEOUT 30.0 /* as `cloudlet umount` */

int cl_session_new(cl_session_cb cb, void *ctx, struct cl_session **out)
{
	struct cl_session *s;

	if (!out)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		free(s);
		return cl_errorf(-errno, "pipe: %s", strerror(errno));
	}
	s->cb = cb;
	s->ctx = ctx;
	s->t0 = cl_now();
	s->type = "qemu";
	s->con.fd = -1;
	*out = s;
	return 0;
}

/* A lock-free atomic is what makes the stop safe in a signal handler. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "cl_session_stop needs a lock-free atomic_int");

void cl_session_stop(struct cl_session *s)
{
	int saved = errno;

	if (!s)
		return;
	s->stop = 1;
	/* A full pipe already wakes every poll. */
	if (write(s->wake[1], "", 1) < 0) {
	}
	errno = saved;
}

int cl_session_nap(struct cl_session *s, int ms)
{
	struct pollfd p = {.fd = s->wake[0], .events = POLLIN};

	if (!s->stop)
		poll(&p, 1, ms);
	return s->stop != 0;
}

/* --- events ---------------------------------------------------------------- */

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

int cl_session_progress(const struct cl_session *s, struct cl_session_event *ev, char *state)
{
	char path[PATH_MAX + 64], buf[64], *text = NULL;
	unsigned long long a, b;
	int i, r;

	state[0] = '\0';
	if (!s->mnt[0])
		return -ENOENT;
	r = cl_mount_status(s->mnt, &text);
	if (r < 0)
		return r;
	if (cl_mount_status_value(text, "state", buf, sizeof(buf)) == 0)
		sscanf(buf, "%31s", state);
	if (cl_mount_status_value(text, "bytes", buf, sizeof(buf)) == 0 &&
	    sscanf(buf, "%llu/%llu", &a, &b) == 2) {
		ev->fetched = a;
		ev->pack = b;
	}
	free(text);
	for (i = 0; i < CL_NIMAGES; i++) {
		snprintf(path, sizeof(path), "%s/%s/stats/chunks_accessed", s->mnt,
		         cl_image_name(i));
		if (read_small(path, buf, sizeof(buf)) == 0)
			ev->accessed[i] = strtoull(buf, NULL, 10);
	}
	ev->progress = 1;
	return 0;
}

void cl_session_emit(struct cl_session *s, enum cl_session_event_kind kind, double secs)
{
	struct cl_session_event ev = {.kind = kind, .secs = secs};
	char state[32];

	if (s->mounted && kind != CL_SESSION_STOPPED)
		cl_session_progress(s, &ev, state);
	ev.t = cl_now() - s->t0;
	if (s->cb)
		s->cb(s, s->ctx, &ev);
}

void cl_session_emit_endpoint(struct cl_session *s, const struct cl_publish *p)
{
	struct cl_session_event ev = {.kind = CL_SESSION_ENDPOINT, .endpoint = p};
	char url[40];

	cl_publish_url(p, url, sizeof(url));
	ev.t = cl_now() - s->t0;
	ev.text = url;
	if (s->cb)
		s->cb(s, s->ctx, &ev);
}

void cl_session_notice(struct cl_session *s, const char *hint)
{
	struct cl_session_event ev = {.kind = CL_SESSION_NOTICE, .hint = hint};

	ev.t = cl_now() - s->t0;
	ev.text = cl_error_msg();
	if (s->cb)
		s->cb(s, s->ctx, &ev);
}

/* --- starting ---------------------------------------------------------------- */

int cl_session_record(struct cl_session *s)
{
	char path[sizeof(s->rundir) + 16], *text = NULL;
	int n, r;

	n = asprintf(&text, "mount %s\nmade_mount %d\ntype %s\nmemory %s\noverlay %s\n", s->mnt,
	             s->made_mnt, s->type, cl_session_memory(s), s->overlay ? s->overlay : "");

	if (n < 0)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/%s", s->rundir, CL_SESSION_FILE);
	r = cl_write_file_atomic(path, text, (size_t)n, 0640);
	free(text);
	return r;
}

int cl_session_connect(struct cl_session *s, const char *uri)
{
	if (!s || s->conn)
		return -EINVAL;
	return cl_vm_connect(uri, &s->conn);
}

int cl_session_prepare(struct cl_session *s, const char *uri, int synth)
{
	virDomainPtr other;
	int r;

	if (!s->conn && (r = cl_vm_connect(uri, &s->conn)) < 0) {
		s->hint = CL_SESSION_LIBVIRTD_HINT;
		return r;
	}
	other = virDomainLookupByName(s->conn, s->name);
	if (other) {
		virDomainFree(other);
		s->hint = synth ? "choose another with --name, or remove it (`virsh destroy NAME; "
		                  "virsh undefine NAME`)"
		                : "choose another with --name";
		return cl_errorf(-EEXIST, "domain %s: the name is in use", s->name);
	}
	r = cl_vm_qemu_user(&s->uid, &s->gid, s->group, sizeof(s->group), NULL, 0);
	if (r < 0)
		return r;
	r = cl_rundir_make(s->name, s->gid, s->rundir, sizeof(s->rundir));
	s->made_rundir = r == 0;
	if (r == -EEXIST && synth)
		s->hint = "choose another --name, or remove that directory";
	if (r < 0)
		s->rundir[0] = '\0';
	return r;
}

/* --- running ------------------------------------------------------------------- */

int cl_session_wait(struct cl_session *s, double seconds, int fd, enum cl_session_end *end)
{
	struct pollfd p[2] = {{.fd = s ? s->wake[0] : -1, .events = POLLIN},
	                      {.fd = fd, .events = POLLIN}};
	struct cl_session_event ev = {0};
	double t0 = cl_now();
	char buf[256], state[32];
	int alive;
	ssize_t n;

	if (!s || !end || !s->dom)
		return -EINVAL;
	for (;;) {
		if (s->stop)
			return *end = CL_SESSION_END_STOP, 0;
		if (seconds > 0 && cl_now() - t0 >= seconds)
			return *end = CL_SESSION_END_TIME, 0;
		/* A guest that ended closes the postcopy stream too: not a fault. */
		alive = cl_vm_alive(s->dom);
		if (alive == 0)
			return *end = CL_SESSION_END_GUEST, 0;
		if (alive < 0)
			return *end = CL_SESSION_END_LIBVIRT, 0;
		cl_session_pc_watch(s);
		if (s->pc_killed)
			return *end = CL_SESSION_END_MEMORY, 0;
		if (s->mounted && cl_session_progress(s, &ev, state) == 0) {
			if (!s->said_complete && !strcmp(state, "complete")) {
				cl_session_emit(s, CL_SESSION_COMPLETE, 0);
				s->said_complete = 1;
			}
			if (!s->said_failed && !strcmp(state, "failed")) {
				cl_session_emit(s, CL_SESSION_FAILED, 0);
				s->said_failed = 1;
			}
		}
		if (poll(p, fd >= 0 ? 2 : 1, CL_SESSION_TICK_MS) > 0 && fd >= 0 && p[1].revents) {
			n = read(fd, buf, sizeof(buf));
			if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
				return *end = CL_SESSION_END_FD, 0;
		}
	}
}

int cl_session_console_run(struct cl_session *s, const char *line, double timeout)
{
	struct cl_console con;
	char sock[sizeof(s->rundir) + 16];
	int r;

	if (!s || !line || !s->rundir[0])
		return -EINVAL;
	snprintf(sock, sizeof(sock), "%s/console.sock", s->rundir);
	if (cl_console_open(&con, sock, 10) < 0)
		return -ENOTCONN;
	r = cl_console_run(&con, line, timeout, &s->stop);
	cl_console_close(&con);
	return r;
}

/* --- re-attaching ------------------------------------------------------------ */

/* The value of "key VALUE" in the session file text into out[cap]. */
static int session_value(const char *text, const char *key, char *out, size_t cap)
{
	size_t k = strlen(key);
	const char *p;

	for (p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, key, k) && p[k] == ' ') {
			snprintf(out, cap, "%.*s", (int)strcspn(p + k + 1, "\n"), p + k + 1);
			return 0;
		}
	return cl_errorf(-EPROTO, "%s: no %s", CL_SESSION_FILE, key);
}

int cl_session_attach(struct cl_session *s, const char *rundir)
{
	char path[PATH_MAX], val[PATH_MAX], *text = NULL;
	const char *name;
	size_t len;
	int r;

	if (!s || !rundir || s->conn || strlen(rundir) >= sizeof(s->rundir))
		return -EINVAL;
	name = strrchr(rundir, '/') ? strrchr(rundir, '/') + 1 : rundir;
	if (!*name || strlen(name) >= sizeof(s->name))
		return cl_errorf(-EINVAL, "%s: not a run directory", rundir);
	snprintf(path, sizeof(path), "%s/%s", rundir, CL_SESSION_FILE);
	r = cl_read_file(path, 1u << 16, (void **)&text, &len);
	if (r < 0)
		return r;
	strcpy(s->name, name);
	strcpy(s->rundir, rundir);
	r = session_value(text, "mount", s->mnt, sizeof(s->mnt));
	if (r == 0 && (r = session_value(text, "made_mount", val, sizeof(val))) == 0)
		s->made_mnt = atoi(val);
	if (r == 0 && (r = session_value(text, "type", val, sizeof(val))) == 0)
		s->type = !strcmp(val, "kvm") ? "kvm" : "qemu";
	/* A VM still streaming its memory is watched by whoever attaches. */
	if (r == 0 && session_value(text, "memory", val, sizeof(val)) == 0)
		s->postcopy = s->made_pcram = !strcmp(val, "postcopy");
	if (r == 0 && session_value(text, "overlay", val, sizeof(val)) == 0 &&
	    !(s->overlay = strdup(val)))
		r = -ENOMEM;
	free(text);
	if (r == 0)
		r = cl_vm_connect(NULL, &s->conn);
	if (r < 0)
		return r;
	s->dom = virDomainLookupByName(s->conn, s->name);
	if (!s->dom)
		return cl_errorf(-ENOENT, "domain %s: %s", s->name, cl_vm_error());
	s->made_rundir = s->running = s->synth = 1;
	s->mounted = s->mnt[0] != '\0';
	s->said_complete = 1; /* said by the program that started it */
	return 0;
}

/* --- the end ----------------------------------------------------------------- */

/* Removes the domain, the mount and the run directory; each failure is a
 * NOTICE. */
static int teardown(struct cl_session *s)
{
	const char *hint = NULL;
	int r = 0, detached = 0;

	if (s->dom && cl_vm_remove(s->dom) < 0) {
		cl_session_notice(s, NULL);
		r = -EIO;
	}
	s->dom = NULL;
	/* QEMU is gone: its RAM's tmpfs may go (postcopy mode). */
	if (s->made_pcram && cl_pcram_remove(s->name) < 0) {
		cl_session_notice(s, NULL);
		r = -EIO;
	}
	if (s->mounted && cl_mount_stop(s->mnt, UMOUNT_TIMEOUT, &detached, &hint) < 0) {
		cl_session_notice(s, hint);
		r = -EIO;
	} else {
		if (detached)
			cl_session_notice(s, NULL);
		s->mounted = 0;
	}
	if (s->made_mnt && !s->mounted)
		rmdir(s->mnt);
	if (s->made_rundir) {
		cl_rundir_remove(s->rundir);
		if (s->synth && access(s->rundir, F_OK) == 0) {
			cl_errorf(-EIO, "%s: could not be removed", s->rundir);
			cl_session_notice(s, NULL);
			r = -EIO;
		}
	}
	return r;
}

int cl_session_close(struct cl_session *s, int keep)
{
	int r = 0;

	if (!s)
		return 0;
	cl_session_snap_end(s);
	if (!keep) {
		if (s->running)
			cl_session_emit(s, CL_SESSION_STOPPING, 0);
		r = teardown(s);
		if (r == 0 && s->running)
			cl_session_emit(s, CL_SESSION_STOPPED, 0);
	}
	cl_session_custom_end(s);
	if (s->dom)
		virDomainFree(s->dom);
	if (s->conn)
		virConnectClose(s->conn);
	close(s->wake[0]);
	close(s->wake[1]);
	free(s->overlay);
	free(s->tmpl);
	free(s);
	return r;
}

/* --- what a program shows ------------------------------------------------------ */

const char *cl_session_hint(const struct cl_session *s, int *said)
{
	if (said)
		*said = s ? s->said : 0;
	return s ? s->hint : NULL;
}

const char *cl_session_memory(const struct cl_session *s)
{
	return s && s->postcopy ? "postcopy" : "mmap";
}

const char *cl_session_name(const struct cl_session *s)
{
	return s->name;
}

const char *cl_session_rundir(const struct cl_session *s)
{
	return s->rundir;
}

const char *cl_session_mount(const struct cl_session *s)
{
	return s->mnt;
}

const char *cl_session_accel(const struct cl_session *s)
{
	return !strcmp(s->type, "kvm") ? "KVM" : "TCG";
}

double cl_session_elapsed(const struct cl_session *s)
{
	return cl_now() - s->t0;
}

int cl_session_vnc(struct cl_session *s, char *out, size_t cap)
{
	char *live, *vnc = NULL;
	int r;

	if (!s || !out || !s->dom)
		return -EINVAL;
	live = virDomainGetXMLDesc(s->dom, 0);
	if (!live)
		return cl_errorf(-EIO, "domain %s: %s", s->name, cl_vm_error());
	r = cl_domxml_get(live, strlen(live), "vnc", &vnc);
	free(live);
	if (r == 0 && (size_t)snprintf(out, cap, "%s", vnc) >= cap)
		r = -ENAMETOOLONG;
	free(vnc);
	return r;
}
