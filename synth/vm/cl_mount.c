/* SPDX-License-Identifier: GPL-2.0-only */
/* The cloudletfs daemon seen from a program: start it, stop it, read the
 * TRACE of what a mounted VM touched (see cl_mount.h). */
#include "cl_mount.h"
#include "cl_error.h"
#include "cl_meta.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define STATUS_MAX (64u << 10) /* larger than any status cloudletfs writes */

#define FSTYPE "fuse.cloudletfs"

/* --- finding the mount and its daemon ----------------------------------- */

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

/* The file system type of the mount at path (the topmost one), or -ENOENT
 * if path is not a mount point. */
static int mount_type(const char *path, char *type, size_t cap)
{
	char *line = NULL, *mnt, *sep, *fstype, *save;
	size_t n = 0;
	int r = -ENOENT;
	FILE *f;
	int i;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return cl_errorf(-errno, "/proc/self/mountinfo: %s", strerror(errno));
	while (getline(&line, &n, f) > 0) {
		/* id parent major:minor root MOUNTPOINT options... - FSTYPE SOURCE ... */
		mnt = strtok_r(line, " ", &save);
		for (i = 0; mnt && i < 4; i++)
			mnt = strtok_r(NULL, " ", &save);
		sep = mnt ? strstr(save, " - ") : NULL;
		if (!sep)
			continue;
		fstype = strtok_r(sep + 3, " ", &save);
		unescape(mnt);
		if (fstype && !strcmp(mnt, path)) {
			snprintf(type, cap, "%s", fstype);
			r = 0;
		}
	}
	free(line);
	fclose(f);
	return r;
}

/* Absolute form of a mount point; works when its daemon is gone (where
 * realpath() fails with ENOTCONN). */
static int mount_path(const char *arg, char *out)
{
	char tmp[PATH_MAX], *slash, *dir;
	const char *base;

	if (realpath(arg, out))
		return 0;
	if (errno != ENOTCONN && errno != ECONNABORTED && errno != EIO)
		return cl_errorf(-errno, "%s: %s", arg, strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s", arg);
	while ((slash = strrchr(tmp, '/')) && slash != tmp && !slash[1])
		*slash = '\0'; /* trailing slashes */
	slash = strrchr(tmp, '/');
	if (!slash) {
		dir = ".";
		base = tmp;
	} else {
		*slash = '\0';
		dir = slash == tmp ? "/" : tmp;
		base = slash + 1;
	}
	if (!realpath(dir, out))
		return cl_errorf(-errno, "%s: %s", dir, strerror(errno));
	if (strlen(out) + strlen(base) + 2 > PATH_MAX)
		return cl_errorf(-ENAMETOOLONG, "%s: %s", arg, strerror(ENAMETOOLONG));
	if (strcmp(out, "/"))
		strcat(out, "/");
	strcat(out, base);
	return 0;
}

int cl_mount_status(const char *mnt, char **text)
{
	char path[PATH_MAX + 16], *buf;
	size_t len = 0;
	ssize_t n;
	int fd, r = 0;

	if (!mnt || !text)
		return -EINVAL;
	snprintf(path, sizeof(path), "%s/status", mnt);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(STATUS_MAX);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (len < STATUS_MAX - 1) {
		n = read(fd, buf + len, STATUS_MAX - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : 0;
			break;
		}
		len += (size_t)n;
	}
	close(fd);
	if (r < 0) {
		free(buf);
		return r;
	}
	buf[len] = '\0';
	*text = buf;
	return 0;
}

int cl_mount_status_value(const char *text, const char *key, char *out, size_t cap)
{
	size_t k;
	const char *p, *e;

	if (!text || !key || !out || !cap)
		return -EINVAL;
	k = strlen(key);
	for (p = text; p; p = (e = strchr(p, '\n')) ? e + 1 : NULL)
		if (!strncmp(p, key, k) && p[k] == ':' && p[k + 1] == ' ') {
			p += k + 2;
			e = strchr(p, '\n');
			snprintf(out, cap, "%.*s", e ? (int)(e - p) : (int)strlen(p), p);
			return 0;
		}
	return -ENOENT;
}

/* The daemon's pid, from the `pid:` line of MOUNT/status. */
static int daemon_pid(const char *mnt, pid_t *pid)
{
	char *text = NULL, v[32];
	long n = 0;
	int r;

	r = cl_mount_status(mnt, &text);
	if (r < 0)
		return r;
	if (cl_mount_status_value(text, "pid", v, sizeof(v)) == 0)
		n = strtol(v, NULL, 10);
	free(text);
	if (n <= 1)
		return cl_errorf(-EPROTO, "%s/status: no pid line", mnt);
	*pid = (pid_t)n;
	return 0;
}

/* Whether pid is a live cloudletfs (not exited, not a zombie). */
static int daemon_alive(pid_t pid)
{
	char path[64], buf[512], *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* pid (comm) state ... */
	p = strrchr(buf, ')');
	return strstr(buf, "(cloudletfs)") && p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* Detaches a mount whose daemon is gone. */
static int detach(const char *mnt)
{
	pid_t pid;
	int st;

	if (umount2(mnt, MNT_DETACH) == 0)
		return 0;
	if (errno != EPERM)
		return cl_errorf(-errno, "%s: cannot unmount: %s", mnt, strerror(errno));
	/* Not root: fusermount3 may unmount the caller's own FUSE mounts. */
	pid = fork();
	if (pid < 0)
		return cl_errorf(-errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", "-q", "--", mnt, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return cl_errorf(-EPERM, "%s: fusermount3 -u -z failed", mnt);
	return 0;
}

/* --- starting --------------------------------------------------------- */

/* cloudletfs next to this program (the build tree and an installation
 * keep them together), else from PATH. */
static int find_daemon(char *out, size_t cap)
{
	char self[PATH_MAX], *slash, *path, *dir, *save;
	ssize_t n;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			if ((size_t)snprintf(out, cap, "%s/cloudletfs", self) < cap &&
			    access(out, X_OK) == 0)
				return 0;
		}
	}
	path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/local/bin:/usr/bin:/bin");
	if (!path)
		return -ENOMEM;
	for (dir = strtok_r(path, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		if ((size_t)snprintf(out, cap, "%s/cloudletfs", *dir ? dir : ".") < cap &&
		    access(out, X_OK) == 0) {
			free(path);
			return 0;
		}
	}
	free(path);
	return cl_errorf(-ENOENT, "cloudletfs: not found next to cloudlet nor in PATH");
}

/* base=IMAGE for -o: commas and backslashes in the path are escaped. */
static char *base_option(const char *image)
{
	char *out = malloc(5 + 2 * strlen(image) + 1), *w;

	if (!out)
		return NULL;
	w = out + sprintf(out, "base=");
	for (; *image; image++) {
		if (*image == ',' || *image == '\\')
			*w++ = '\\';
		*w++ = *image;
	}
	*w = '\0';
	return out;
}

int cl_mount_start(const struct cl_mount_opts *o, int *status)
{
	char daemon[PATH_MAX], **args = NULL, *base = NULL;
	int r, st, n = 0;
	size_t i;
	pid_t pid;

	if (!o || !o->image || !o->overlay || !o->mnt || (!status && !o->foreground))
		return -EINVAL;
	r = find_daemon(daemon, sizeof(daemon));
	if (r < 0)
		return r;
	base = base_option(o->image);
	/* cloudletfs OVERLAY MOUNTPOINT -o base=IMAGE [-o OPTS]... [-f] [-d] */
	args = calloc(6 + 2 * o->nopts + 2, sizeof(char *));
	if (!base || !args) {
		r = -ENOMEM;
		goto out;
	}
	args[n++] = daemon;
	args[n++] = (char *)o->overlay;
	args[n++] = (char *)o->mnt;
	args[n++] = "-o";
	args[n++] = base;
	for (i = 0; i < o->nopts; i++) {
		args[n++] = "-o";
		args[n++] = (char *)o->opts[i];
	}
	if (o->foreground || o->debug)
		args[n++] = "-f";
	if (o->debug)
		args[n++] = "-d";
	args[n] = NULL;
	fflush(NULL);
	if (o->foreground || o->debug) {
		/* The daemon is this process from here on. */
		execv(daemon, args);
		r = cl_errorf(-errno, "%s: %s", daemon, strerror(errno));
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		r = cl_errorf(-errno, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		execv(daemon, args);
		fprintf(stderr, "cloudlet: %s: %s\n", daemon, strerror(errno));
		_exit(127);
	}
	/* cloudletfs returns once the mount serves, or has said why not. */
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (WIFSIGNALED(st)) {
		r = cl_errorf(-EIO, "cloudletfs killed by signal %d", WTERMSIG(st));
		goto out;
	}
	/* Its status: 0 mounted, 1 failed, 2 bad options. */
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
out:
	free(args);
	free(base);
	return r;
}

/* --- stopping ------------------------------------------------------------- */
int cl_mount_stop(const char *arg, double timeout, int *detached, const char **hint)
{
	char mnt[PATH_MAX], type[256];
	int r, mounted, alive;
	pid_t pid = 0;
	double t0;

	if (!arg || !hint)
		return -EINVAL;
	r = mount_path(arg, mnt);
	if (r < 0)
		return r;
	r = mount_type(mnt, type, sizeof(type));
	if (r == -ENOENT)
		return cl_errorf(-EINVAL, "%s: not a mount point", mnt);
	if (r < 0)
		return r;
	if (strcmp(type, FSTYPE))
		return cl_errorf(-EINVAL, "%s: not a cloudletfs mount (it is %s)", mnt, type);
	r = daemon_pid(mnt, &pid);
	if (r == -ENOTCONN || r == -ECONNABORTED) {
		/* The daemon died: nothing answers, nothing to stop. */
		r = detach(mnt);
		if (r == 0 && detached) {
			*detached = 1;
			cl_errorf(0, "%s: its daemon was gone; detached the mount", mnt);
		}
		return r;
	}
	if (r == -EPROTO)
		return r;
	if (r < 0)
		return cl_errorf(r, "%s/status: %s", mnt, strerror(-r));
	if (!daemon_alive(pid))
		return cl_errorf(-ESRCH, "%s: pid %ld from its status is no cloudletfs", mnt,
		                 (long)pid);
	/* The daemon fails waiting reads, detaches the mount and exits. */
	if (kill(pid, SIGTERM) < 0) {
		if (errno == EPERM)
			*hint = "run as the user who mounted it, or as root";
		return cl_errorf(-errno, "%s: cannot signal cloudletfs (pid %ld): %s", mnt,
		                 (long)pid, strerror(errno));
	}
	t0 = cl_now();
	do {
		/* Alive first: once it has exited, the mount's state is final. */
		alive = daemon_alive(pid);
		mounted = mount_type(mnt, type, sizeof(type)) == 0 && !strcmp(type, FSTYPE);
		if (!mounted && !alive)
			return 0;
		if (mounted && !alive) {
			r = detach(mnt);
			if (r < 0)
				return r;
			return cl_errorf(-ECONNABORTED,
			                 "%s: cloudletfs (pid %ld) exited without unmounting; "
			                 "detached the mount",
			                 mnt, (long)pid);
		}
		cl_sleep_ms(20);
	} while (cl_now() - t0 < timeout);
	if (mounted)
		return cl_errorf(-ETIMEDOUT, "%s: still mounted after %g s", mnt, timeout);
	return cl_errorf(-ETIMEDOUT, "%s: unmounted, but cloudletfs (pid %ld) runs on after %g s",
	                 mnt, (long)pid, timeout);
}

/* --- the TRACE ------------------------------------------------------------ */

struct access {
	uint64_t usec;
	uint64_t chunk;
};

struct stream {
	int fd;
	char path[PATH_MAX + 64];
	char part[64]; /* a line cut between two reads */
	size_t npart;
	struct access *v;
	size_t n, cap;
	int ended;
};

/* Digits of [p, end) as a number; -1 if none or not all digits. */
static int parse_digits(const char *p, const char *end, uint64_t *out)
{
	uint64_t v = 0;

	if (p == end || end - p > 19)
		return -1;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	*out = v;
	return 0;
}

/* "SECONDS.MICROS\tCHUNK", microseconds six digits. */
static int parse_line(struct stream *s, const char *line, size_t len)
{
	const char *end = line + len, *dot, *tab;
	uint64_t sec, us, chunk;
	struct access *v;

	dot = memchr(line, '.', len);
	tab = memchr(line, '\t', len);
	if (!dot || !tab || tab - dot != 7 || parse_digits(line, dot, &sec) ||
	    parse_digits(dot + 1, tab, &us) || parse_digits(tab + 1, end, &chunk))
		return cl_errorf(-EPROTO, "%s: unexpected line '%.*s'", s->path,
		                 (int)(len < 60 ? len : 60), line);
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 4096;
		v = realloc(s->v, s->cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->v = v;
	}
	s->v[s->n].usec = sec * 1000000 + us;
	s->v[s->n].chunk = chunk;
	s->n++;
	return 0;
}

/* Reads what the stream has now (EAGAIN ends it). */
static int drain(struct stream *s)
{
	char buf[65536];
	size_t i, start, k;
	ssize_t n;
	int r;

	while (!s->ended) {
		n = read(s->fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n < 0)
			return cl_errorf(-errno, "%s: %s", s->path, strerror(errno));
		if (n == 0) {
			s->ended = 1; /* unmounted */
			break;
		}
		for (start = 0, i = 0; i < (size_t)n; i++) {
			if (buf[i] != '\n')
				continue;
			if (s->npart) {
				k = i - start;
				if (s->npart + k >= sizeof(s->part))
					return parse_line(s, s->part, sizeof(s->part) - 1);
				memcpy(s->part + s->npart, buf + start, k);
				r = parse_line(s, s->part, s->npart + k);
				s->npart = 0;
			} else {
				r = parse_line(s, buf + start, i - start);
			}
			if (r < 0)
				return r;
			start = i + 1;
		}
		k = (size_t)n - start;
		if (s->npart + k >= sizeof(s->part))
			return parse_line(s, buf + start, k);
		memcpy(s->part + s->npart, buf + start, k);
		s->npart += k;
	}
	return 0;
}

/* Both first-access lists merged by time: the TRACE text. */
static char *merge(struct stream s[CL_NIMAGES], size_t *len)
{
	size_t i[CL_NIMAGES] = {0, 0}, cap, n = 0;
	char *out, *p;
	int im, k;

	cap = (s[0].n + s[1].n) * 32 + 1;
	out = malloc(cap);
	if (!out)
		return NULL;
	while (i[0] < s[0].n || i[1] < s[1].n) {
		/* Ties go to the disk: it is listed first in overlays too. */
		if (i[0] < s[0].n && (i[1] == s[1].n || s[0].v[i[0]].usec <= s[1].v[i[1]].usec))
			im = CL_DISK;
		else
			im = CL_MEMORY;
		p = out + n;
		k = snprintf(p, cap - n, "%s %" PRIu64 "\n", cl_image_name(im),
		             s[im].v[i[im]].chunk);
		n += (size_t)k;
		i[im]++;
	}
	out[n] = '\0';
	*len = n;
	return out;
}

int cl_mount_trace(const char *mnt, double seconds, const atomic_int *stop,
                   struct cl_mount_trace *t)
{
	struct stream s[CL_NIMAGES];
	double t0;
	int i, r = 0;

	if (!mnt || !t)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	memset(s, 0, sizeof(s));
	s[0].fd = s[1].fd = -1;
	for (i = 0; i < CL_NIMAGES; i++) {
		snprintf(s[i].path, sizeof(s[i].path), "%s/%s/streams/chunks_accessed", mnt,
		         cl_image_name(i));
		s[i].fd = open(s[i].path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (s[i].fd < 0) {
			r = cl_errorf(-errno, "%s: %s", s[i].path, strerror(errno));
			if (errno == ENOENT)
				cl_errorf(r, "%s: not a cloudletfs mount (no %s)", mnt, s[i].path);
			goto out;
		}
	}
	t0 = cl_now();
	for (;;) {
		for (i = 0; i < CL_NIMAGES && r == 0; i++)
			r = drain(&s[i]);
		if (r < 0 || (stop && *stop) || s[0].ended || s[1].ended ||
		    cl_now() - t0 >= seconds)
			break;
		cl_sleep_ms(50);
	}
	if (r < 0)
		goto out;
	t->text = merge(s, &t->len);
	if (!t->text) {
		r = -ENOMEM;
		goto out;
	}
	for (i = 0; i < CL_NIMAGES; i++)
		t->n[i] = s[i].n;
out:
	for (i = 0; i < CL_NIMAGES; i++) {
		if (s[i].fd >= 0)
			close(s[i].fd);
		free(s[i].v);
	}
	return r;
}

/* --- the postcopy source ------------------------------------------------ */

int cl_mount_postcopy_start(const char *mnt, const char *socket_path, long pid)
{
	char path[PATH_MAX], type[64], value[160];
	int r, n;

	if (!mnt || !socket_path || pid < 0)
		return -EINVAL;
	if (socket_path[0] != '/')
		return cl_errorf(-EINVAL, "postcopy: the socket path must be absolute");
	r = mount_type(mnt, type, sizeof(type));
	if (r == 0 && strcmp(type, FSTYPE))
		r = -ENOENT;
	if (r < 0)
		return cl_errorf(r, "%s: not a cloudletfs mount", mnt);
	if ((size_t)snprintf(path, sizeof(path), "%s/status", mnt) >= sizeof(path))
		return cl_errorf(-ENAMETOOLONG, "%s: path too long", mnt);
	n = pid ? snprintf(value, sizeof(value), "%ld %s", pid, socket_path)
	        : snprintf(value, sizeof(value), "%s", socket_path);
	if ((size_t)n >= sizeof(value))
		return cl_errorf(-ENAMETOOLONG, "%s: socket path too long", socket_path);
	if (setxattr(path, CL_MOUNT_POSTCOPY_XATTR, value, strlen(value), 0) == 0)
		return 0;
	r = -errno;
	return cl_errorf(r, "%s: postcopy source for %s: %s%s", mnt, socket_path, strerror(-r),
	                 r == -EINVAL ? " (the mount's status says why)" : "");
}
