/* SPDX-License-Identifier: GPL-2.0-only */
/* cloudletfs: mounts a lazily synthesized VM (see cl_fs.h for the tree).
 *
 * Sequence: parse options, cl_lazy_open() (so that a wrong base or an
 * unreachable overlay is reported on the terminal), mount, fork into the
 * background (the parent exits only once the kernel's INIT is answered, so
 * that the mount serves when the command returns), cl_lazy_start(), loop.
 *
 * Threads: libfuse's workers only dispatch; nothing they run waits for the
 * network (cl_lazy_* complete later from the engine's threads and reply
 * from there). A control thread notes progress in the log and turns
 * SIGTERM/SIGINT/SIGHUP into the shutdown: cl_lazy_shutdown() fails every
 * waiting read with EIO, the replies drain, the loop ends, then the mount
 * is detached lazily (it goes away even while a VM holds files open;
 * closing /dev/fuse aborts the connection for those), and the engine is
 * closed. */
#include "cl_fs.h"
#include "cl_fs_opts.h"
#include "cl_error.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define CL_FS_VERSION "0.1.0"

/* libfuse's loop: workers never block on the network, so few are needed;
 * each holds a request buffer of max_write (1 MiB), so their number bounds
 * memory. Workers are kept once started (creating them per burst costs
 * more than it saves). One /dev/fuse descriptor is enough for 8 threads:
 * clone_fd pays off with many threads on many cores, and replies sent from
 * engine threads go through the session's descriptor anyway. */
#define LOOP_MAX_THREADS  8
#define LOOP_IDLE_THREADS 8
#define LOOP_CLONE_FD     0

#define DRAIN_MS 10000 /* bound on waiting for the last replies at shutdown */
#define READY_MS 60000 /* bound on the parent's wait for the mount to serve */
/* After shutdown the loop still answers a while: the kernel retries a failed
 * readahead with a plain read at once, which should get its EIO too, not an
 * aborted connection. */
#define GRACE_MS 250

struct daemon {
	int ready_fd; /* write end of the pipe the waiting parent reads; -1 when told */
	int log_fd;   /* log=FILE, or -1 */
	int detached; /* in the background: stdio go to the log or /dev/null once ready */
	const struct cl_fs_args *a;
};

/* The control thread: signals, and progress notes for the log. */
struct control {
	sigset_t set; /* SIGTERM, SIGINT, SIGHUP */
	struct daemon *d;
	struct fuse_session *se;
	struct cl_lazy *l;
	struct cl_fs *fs;
	pthread_t main;
	int loop_done; /* the loop returned (atomic) */
	int signo;     /* the signal that stopped us, or 0 (atomic) */
	/* What the log last said (control thread only): */
	int noted;
	enum cl_lazy_state state;
	char reason[256];
};

/* One line in the log: log=FILE, else syslog in the background, else the
 * terminal. */
static void note(const struct daemon *d, int prio, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(const struct daemon *d, int prio, const char *fmt, ...)
{
	char msg[512], when[32];
	struct tm tm;
	va_list ap;
	time_t now;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (d->detached && d->log_fd < 0) {
		syslog(prio, "%s", msg);
		return;
	}
	now = time(NULL);
	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s cloudletfs[%ld]: %s\n", when, (long)getpid(), msg);
}

static void tell_parent(struct daemon *d, char status)
{
	int fd = __atomic_exchange_n(&d->ready_fd, -1, __ATOMIC_SEQ_CST);

	if (fd < 0)
		return;
	while (write(fd, &status, 1) < 0 && errno == EINTR)
		;
	close(fd);
}

/* From the INIT request's worker: the mount serves. */
static void on_ready(void *ctx)
{
	struct daemon *d = ctx;
	int fd;

	if (d->detached) {
		/* Nobody reads the terminal any more. */
		fd = d->log_fd >= 0 ? d->log_fd : open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
			if (fd != d->log_fd)
				close(fd);
		}
	} else if (d->log_fd >= 0) {
		dup2(d->log_fd, STDERR_FILENO);
	}
	note(d, LOG_INFO, "serving %s at %s (base %s)", d->a->overlay, d->a->mountpoint,
	     d->a->base);
	tell_parent(d, 0);
}

/* Forks; the parent waits for the child's word and exits with it (1 if
 * the child dies first). The mount was made before: the parent must not
 * unmount it. set: the signals blocked for the child's sake. */
static int daemonize(struct daemon *d, const sigset_t *set)
{
	struct pollfd pfd;
	int fds[2], fd;
	ssize_t n;
	pid_t pid;
	char c;

	if (pipe2(fds, O_CLOEXEC) < 0)
		return cl_errorf(-errno, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return cl_errorf(-errno, "fork: %s", strerror(errno));
	}
	if (pid > 0) {
		/* The caller may interrupt the wait; the child goes on. */
		pthread_sigmask(SIG_UNBLOCK, set, NULL);
		close(fds[1]);
		pfd.fd = fds[0];
		pfd.events = POLLIN;
		while ((n = poll(&pfd, 1, READY_MS)) < 0 && errno == EINTR)
			;
		if (n == 0) {
			fprintf(stderr, "cloudletfs: the mount did not serve within %d s\n",
			        READY_MS / 1000);
			_exit(1);
		}
		do
			n = read(fds[0], &c, 1);
		while (n < 0 && errno == EINTR);
		_exit(n == 1 ? c : 1);
	}
	close(fds[0]);
	d->ready_fd = fds[1];
	d->detached = 1;
	if (d->log_fd < 0)
		openlog("cloudletfs", LOG_PID, LOG_DAEMON);
	if (setsid() < 0 || chdir("/") < 0)
		return cl_errorf(-errno, "detaching: %s", strerror(errno));
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		close(fd);
	}
	return 0;
}

static void wake_handler(int sig)
{
	(void)sig; /* only there to interrupt the loop's sem_wait() */
}

/* Notes what changed in the engine's state since the last call. */
static void monitor(struct control *c)
{
	struct cl_lazy_stats st;

	cl_lazy_stats(c->l, &st);
	if (!c->noted && !st.ranges)
		note(c->d, LOG_WARNING,
		     "the server ignores Range requests: the pack comes as one stream, "
		     "demand fetch is off");
	if (st.state != c->state || !c->noted) {
		if (st.state == CL_LAZY_COMPLETE)
			note(c->d, LOG_INFO,
			     "complete: %u segments, %llu of %llu pack bytes fetched (%.0f s "
			     "after start at most)",
			     st.segments, (unsigned long long)st.bytes_fetched,
			     (unsigned long long)st.pack_bytes, st.seconds);
		else if (st.state == CL_LAZY_FAILED)
			note(c->d, LOG_ERR, "failed: %s", st.reason);
	} else if (st.reason[0] && strcmp(st.reason, c->reason)) {
		note(c->d, LOG_WARNING, "%s", st.reason);
	}
	c->noted = 1;
	c->state = st.state;
	snprintf(c->reason, sizeof(c->reason), "%s", st.reason);
}

static void *control_thread(void *arg)
{
	struct control *c = arg;
	struct timespec tick = {0, 50 * 1000000};
	struct timespec grace = {0, GRACE_MS * 1000000};
	struct timespec second = {1, 0};
	int sig;

	/* Cancelled (at the end, by main) only while waiting for a signal. */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	for (;;) {
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		sig = sigtimedwait(&c->set, NULL, &second);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (sig > 0)
			break;
		monitor(c);
	}
	__atomic_store_n(&c->signo, sig, __ATOMIC_SEQ_CST);
	note(c->d, LOG_INFO, "%s: failing waiting reads, unmounting", strsignal(sig));
	/* Waiting reads fail with EIO now, while the loop still answers;
	 * new waits fail at once. */
	cl_lazy_shutdown(c->l);
	cl_fs_stop(c->fs);
	cl_fs_drain(c->fs, DRAIN_MS);
	nanosleep(&grace, NULL);
	fuse_session_exit(c->se);
	/* The loop's main thread sleeps in sem_wait(), which only a signal
	 * interrupts; repeat in case one lands just before it sleeps. */
	while (!__atomic_load_n(&c->loop_done, __ATOMIC_SEQ_CST)) {
		pthread_kill(c->main, SIGUSR1);
		nanosleep(&tick, NULL);
	}
	return NULL;
}

/* fuse_opt treats commas and backslashes in -o values specially. */
static char *escape_opt(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *w = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		if (*s == ',' || *s == '\\')
			*w++ = '\\';
		*w++ = *s;
	}
	*w = '\0';
	return out;
}

static struct fuse_session *new_session(const struct cl_fs_args *a, struct cl_fs *fs)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_session *se = NULL;
	char *fsname, *opts = NULL;

	fsname = escape_opt(a->overlay);
	if (!fsname)
		return NULL;
	/* fstype fuse.cloudletfs is how `cloudlet umount` knows its mounts. */
	if (asprintf(&opts, "fsname=%s,subtype=cloudletfs%s%s%s", fsname,
	             a->allow_other ? ",allow_other" : "",
	             a->default_permissions ? ",default_permissions" : "",
	             a->read_only ? ",ro" : "") < 0)
		opts = NULL;
	if (opts && fuse_opt_add_arg(&args, "cloudletfs") == 0 &&
	    fuse_opt_add_arg(&args, "-o") == 0 && fuse_opt_add_arg(&args, opts) == 0 &&
	    (!a->debug || fuse_opt_add_arg(&args, "-d") == 0))
		se = fuse_session_new(&args, cl_fs_ops(), sizeof(struct fuse_lowlevel_ops), fs);
	fuse_opt_free_args(&args);
	free(opts);
	free(fsname);
	return se;
}

static int run_loop(struct fuse_session *se)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	int r;

	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_clone_fd(cfg, LOOP_CLONE_FD);
	fuse_loop_cfg_set_max_threads(cfg, LOOP_MAX_THREADS);
	fuse_loop_cfg_set_idle_threads(cfg, LOOP_IDLE_THREADS);
	r = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return r;
}

static int fail(const char *what)
{
	const char *msg = cl_error_msg();

	fprintf(stderr, "cloudletfs: %s\n", *msg ? msg : what);
	return 1;
}

int main(int argc, char **argv)
{
	struct daemon d = {.ready_fd = -1, .log_fd = -1};
	struct control s = {0};
	struct cl_fs_config cfg = {0};
	struct sigaction sa;
	struct cl_fs_args a;
	struct fuse_session *se;
	sigset_t usr1;
	pthread_t ctlthr;
	struct cl_lazy *l;
	struct cl_fs *fs;
	int r, stopped, status = 1;

	if (cl_std_fds_open() < 0)
		return 1;
	d.a = &a;
	r = cl_fs_args_parse(argc, argv, &a);
	if (r < 0) {
		fprintf(stderr, "cloudletfs: %s\nTry `cloudletfs --help`.\n", cl_error_msg());
		cl_fs_args_free(&a);
		return 2;
	}
	if (a.help || a.version) {
		if (a.help)
			fputs(cl_fs_usage, stdout);
		else
			printf("cloudletfs %s (libfuse %s)\n", CL_FS_VERSION, fuse_pkgversion());
		cl_fs_args_free(&a);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if (a.log) {
		d.log_fd = open(a.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (d.log_fd < 0) {
			fprintf(stderr, "cloudletfs: %s: %s\n", a.log, strerror(errno));
			goto out_args;
		}
	}
	cl_error_clear();
	r = cl_lazy_open(a.base, a.overlay, &a.lazy, &l);
	if (r < 0) {
		fail(strerror(-r));
		goto out_log;
	}
	cfg.uid = a.uid;
	cfg.gid = a.gid;
	cfg.overlay = a.overlay;
	cfg.base = a.base;
	cfg.mountpoint = a.mountpoint;
	cfg.ready = on_ready;
	cfg.ready_ctx = &d;
	r = cl_fs_new(l, &cfg, &fs);
	if (r < 0) {
		fail(strerror(-r));
		goto out_lazy;
	}
	se = new_session(&a, fs);
	if (!se) {
		fprintf(stderr, "cloudletfs: cannot set up the FUSE session (see above)\n");
		goto out_fs;
	}
	/* From the mount on, these signals mean "unmount cleanly": they are
	 * blocked here (every later thread inherits that) and taken by the
	 * control thread. */
	sigemptyset(&s.set);
	sigaddset(&s.set, SIGTERM);
	sigaddset(&s.set, SIGINT);
	sigaddset(&s.set, SIGHUP);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &s.set, NULL);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	if (fuse_session_mount(se, a.mountpoint) != 0) {
		fprintf(stderr, "cloudletfs: %s: cannot mount (see above)\n", a.mountpoint);
		goto out_session;
	}
	if (!a.foreground) {
		r = daemonize(&d, &s.set);
		if (r < 0) {
			fail(strerror(-r));
			goto out_unmount;
		}
	}
	r = cl_lazy_start(l);
	if (r < 0) {
		fail(strerror(-r));
		goto out_unmount;
	}
	s.d = &d;
	s.se = se;
	s.l = l;
	s.fs = fs;
	s.main = pthread_self();
	r = pthread_create(&ctlthr, NULL, control_thread, &s);
	if (r) {
		fprintf(stderr, "cloudletfs: control thread: %s\n", strerror(r));
		cl_lazy_shutdown(l);
		goto out_unmount;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = wake_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART: sem_wait() must return */
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	r = run_loop(se);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	__atomic_store_n(&s.loop_done, 1, __ATOMIC_SEQ_CST);
	/* Without our signal the loop ended because the mount went away
	 * (umount(8), fusermount3 -u) or the connection was aborted. */
	stopped = __atomic_load_n(&s.signo, __ATOMIC_SEQ_CST) != 0;
	status = r < 0 && !stopped ? 1 : 0;
	cl_lazy_shutdown(l);
	cl_fs_stop(fs);
	if (cl_fs_drain(fs, DRAIN_MS) < 0)
		note(&d, LOG_WARNING, "some requests were still unanswered at unmount");
	fuse_session_unmount(se);
	pthread_cancel(ctlthr);
	pthread_join(ctlthr, NULL);
	note(&d, LOG_INFO, "%s", stopped ? "unmounted" : "the mount went away; stopped");
	tell_parent(&d, 1); /* if INIT never came */
	if (cl_lazy_sync(l) < 0)
		note(&d, LOG_ERR, "the kept store was not saved: %s", cl_error_msg());
	cl_lazy_close(l);
	fuse_session_destroy(se);
	cl_fs_free(fs);
	goto out_log;

out_unmount:
	tell_parent(&d, 1);
	fuse_session_unmount(se);
out_session:
	fuse_session_destroy(se);
out_fs:
	cl_fs_free(fs);
out_lazy:
	cl_lazy_close(l);
out_log:
	if (d.log_fd >= 0)
		close(d.log_fd);
out_args:
	cl_fs_args_free(&a);
	return status;
}
