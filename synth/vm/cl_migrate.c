/* SPDX-License-Identifier: GPL-2.0-only */
/* Device states in and out of QEMU over unix sockets (see cl_migrate.h). */
#include "cl_migrate.h"
#include "cl_error.h"
#include "cl_qmp.h"
#include "cl_util.h"
#include "cl_vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define POLL_MS        100
#define FEED_CONNECT_S 10.0 /* QEMU listens right after migrate-incoming */

struct feeder {
	const char *sock;
	const char *state;
	long pid; /* QEMU's: the listener must be it */
	atomic_int stop;
	atomic_int finished;
	int result;
	char msg[512]; /* error messages are per thread */
	size_t sent;
};

static int feed_connect(struct feeder *f, int *out)
{
	int r = cl_unix_connect(f->sock, FEED_CONNECT_S, &f->stop, out);

	if (r == -ENOENT || r == -ECONNREFUSED || r == -EAGAIN || r == -ECANCELED)
		return cl_errorf(-ETIMEDOUT, "%s: QEMU does not listen", f->sock);
	return r;
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
	if (r == 0)
		r = cl_unix_peer_is(sfd, f->sock, f->pid);
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

/* A feeder that gave up leaves QEMU waiting forever. */
static int feeder_check(void *ctx)
{
	struct feeder *f = ctx;

	if (atomic_load(&f->finished) && f->result < 0)
		return cl_errorf(f->result, "%s", f->msg);
	return 0;
}

/* The caller's words for the ends of cl_qmp_migration_wait other than
 * completion: failed takes the status and the domain name, late the
 * timeout and the status. */
struct wording {
	const char *stopped, *failed, *late;
};

static int migration_wait(virDomainPtr d, const struct cl_qmp_wait *w, const struct wording *say)
{
	char status[64];
	int r;

	r = cl_qmp_migration_wait(d, w, status, sizeof(status));
	if (r == -EINTR)
		return cl_errorf(r, "%s", say->stopped);
	if (r == -ECONNABORTED)
		return cl_errorf(-EPROTO, say->failed, status, virDomainGetName(d));
	if (r == -ETIMEDOUT)
		return cl_errorf(r, say->late, w->timeout, status);
	return r;
}

static int load_wait(virDomainPtr d, struct feeder *f, double timeout, const atomic_int *stop)
{
	static const struct wording say = {
	    "interrupted while the device state was loading",
	    "QEMU could not load the device state (migration %s; see "
	    "/var/log/libvirt/qemu/%s.log)",
	    "device state not loaded within %.0f s (migration %s)",
	};
	struct cl_qmp_wait w = {.timeout = timeout, .stop = stop, .check = feeder_check, .ctx = f};

	return migration_wait(d, &w, &say);
}

int cl_migrate_incoming(virDomainPtr d, const char *sock)
{
	char *cmd = NULL;
	int r;

	unlink(sock);
	if (asprintf(&cmd, "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"unix:%s\"}}",
	             sock) < 0)
		return -ENOMEM;
	r = cl_qmp_run(d, cmd, NULL);
	free(cmd);
	return r;
}

int cl_migrate_load(virDomainPtr d, const char *sock, const char *state_path, double timeout,
                    const atomic_int *stop)
{
	struct feeder f = {.sock = sock, .state = state_path};
	pthread_t th;
	int r;

	if (!d || !sock || !state_path)
		return -EINVAL;
	r = cl_vm_qemu_pid(d, &f.pid);
	if (r == 0)
		r = cl_migrate_incoming(d, sock);
	if (r < 0)
		return r;
	r = -pthread_create(&th, NULL, feed, &f);
	if (r < 0)
		return cl_errorf(r, "pthread_create: %s", strerror(-r));
	r = load_wait(d, &f, timeout, stop);
	atomic_store(&f.stop, r < 0);
	pthread_join(th, NULL);
	if (r == 0 && f.result < 0)
		r = cl_errorf(f.result, "%s", f.msg);
	return r;
}

/* --- saving the device state ------------------------------------------ */

struct reader {
	int lfd;
	const char *sock;
	const char *path;
	long pid; /* QEMU's: the one connection taken must be it */
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
	if (cfd < 0) {
		r = cl_errorf(-errno, "accept: %s", strerror(errno));
		goto out;
	}
	r = cl_unix_peer_is(cfd, rd->sock, rd->pid);
	if (r < 0)
		goto out;
	ofd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (ofd < 0) {
		r = cl_errorf(-errno, "%s: %s", part, strerror(errno));
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

static int save_wait(virDomainPtr d, double timeout, const atomic_int *stop)
{
	static const struct wording say = {
	    "interrupted while saving the device state",
	    "saving the device state: migration %s",
	    "device state not saved within %.0f s",
	};
	struct cl_qmp_wait w = {.timeout = timeout, .stop = stop};

	return migration_wait(d, &w, &say);
}

int cl_migrate_save(virDomainPtr d, const char *sock, const char *path, double timeout,
                    const atomic_int *stop)
{
	struct reader rd = {.sock = sock, .path = path};
	char *cmd = NULL;
	pthread_t th;
	int r;

	if (!d || !sock || !path)
		return -EINVAL;
	r = cl_vm_qemu_pid(d, &rd.pid);
	if (r == 0)
		r = cl_qmp_ignore_shared(d);
	if (r < 0)
		return r;
	if (virDomainSuspend(d) < 0)
		return cl_vm_dom_error(d, "cannot pause");
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
	r = cl_qmp_run(d, cmd, NULL);
	free(cmd);
	if (r == 0)
		r = save_wait(d, timeout, stop);
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
