/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_util.h"
#include "cl_error.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Fetched once: EVP_sha256() makes every digest look the algorithm up in
 * the provider store again, under a lock all hashing threads share. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void cl_sha256(const void *data, size_t len, uint8_t out[CL_SHA256_LEN])
{
	unsigned int n = CL_SHA256_LEN;

	pthread_once(&sha256_once, sha256_fetch);
	/* EVP_Digest cannot fail for SHA-256 on memory input short of OOM in
	 * context allocation. */
	EVP_Digest(data, len, out, &n, sha256_md ? sha256_md : EVP_sha256(), NULL);
}

int cl_is_zero(const void *data, size_t len)
{
	const uint8_t *p = data;

	/* memcmp runs vectorized: each byte equals the one before it and the
	 * first is zero. Most data chunks differ from zero in their first bytes. */
	return !len || (p[0] == 0 && !memcmp(p, p + 1, len - 1));
}

void cl_hex(const uint8_t *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < len; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 15];
	}
	out[2 * len] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int cl_unhex(const char *hex, uint8_t *out, size_t len)
{
	size_t i;
	int hi, lo;

	if (strlen(hex) != 2 * len)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		hi = hexval(hex[2 * i]);
		lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int cl_pread_full(int fd, void *buf, size_t len, uint64_t off, const char *path)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return cl_errorf(-errno, "%s: read failed: %s", path, strerror(errno));
		}
		if (n == 0)
			return cl_errorf(-EIO, "%s: unexpected end of file at byte %llu", path,
			                 (unsigned long long)(off + done));
		done += (size_t)n;
	}
	return 0;
}

int cl_pwrite_full(int fd, const void *buf, size_t len, uint64_t off, const char *path)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return cl_errorf(-errno, "%s: write failed: %s", path, strerror(errno));
		}
		done += (size_t)n;
	}
	return 0;
}

#define COPY_BUF (4u << 20)

int cl_copy_range(int src, const char *src_path, int dst, const char *dst_path, uint64_t start,
                  uint64_t end, char **buf)
{
	ssize_t n;
	int r;

	while (start < end) {
		loff_t in = (loff_t)start, outp = (loff_t)start;
		n = copy_file_range(src, &in, dst, &outp, (size_t)(end - start), 0);
		if (n < 0 &&
		    (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
			/* Different filesystems on older kernels: plain copy. */
			size_t len = end - start < COPY_BUF ? (size_t)(end - start) : COPY_BUF;
			if (!*buf && !(*buf = malloc(COPY_BUF)))
				return -ENOMEM;
			r = cl_pread_full(src, *buf, len, start, src_path);
			if (r == 0)
				r = cl_pwrite_full(dst, *buf, len, start, dst_path);
			if (r < 0)
				return r;
			n = (ssize_t)len;
		} else if (n <= 0) {
			return cl_errorf(n < 0 ? -errno : -EIO, "%s: copy from %s failed: %s",
			                 dst_path, src_path, n < 0 ? strerror(errno) : "short");
		}
		start += (uint64_t)n;
	}
	return 0;
}

int cl_copy_sparse(int src, const char *src_path, int dst, const char *dst_path, uint64_t size)
{
	off_t data, hole;
	char *buf = NULL;
	int r = 0;

	if (ftruncate(dst, (off_t)size) < 0)
		return cl_errorf(-errno, "%s: %s", dst_path, strerror(errno));
	for (data = 0; (uint64_t)data < size && r == 0; data = hole) {
		data = lseek(src, data, SEEK_DATA);
		if (data < 0 || (uint64_t)data >= size)
			break; /* only a hole is left */
		hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		r = cl_copy_range(src, src_path, dst, dst_path, (uint64_t)data, (uint64_t)hole,
		                  &buf);
	}
	free(buf);
	return r;
}

int cl_out_open(struct cl_out *o, const char *path, mode_t mode)
{
	char *copy, *dir, *base;
	int r;

	if (!o || !path)
		return -EINVAL;
	memset(o, 0, sizeof(*o));
	o->fd = -1;
	copy = strdup(path);
	o->path = strdup(path);
	if (!copy || !o->path) {
		r = -ENOMEM;
		goto fail;
	}
	base = strdup(basename(copy));
	strcpy(copy, path);
	dir = dirname(copy);
	if (!base || asprintf(&o->tmp, "%s/.%s.XXXXXX", dir, base) < 0) {
		free(base);
		o->tmp = NULL;
		r = -ENOMEM;
		goto fail;
	}
	free(base);
	o->fd = mkostemp(o->tmp, O_CLOEXEC);
	if (o->fd < 0) {
		r = cl_errorf(-errno, "%s: cannot create: %s", path, strerror(errno));
		goto fail;
	}
	if (fchmod(o->fd, mode) < 0) {
		r = cl_errorf(-errno, "%s: %s", o->tmp, strerror(errno));
		goto fail_unlink;
	}
	free(copy);
	return 0;

fail_unlink:
	close(o->fd);
	unlink(o->tmp);
fail:
	free(copy);
	free(o->tmp);
	free(o->path);
	memset(o, 0, sizeof(*o));
	o->fd = -1;
	return r;
}

int cl_out_flush(struct cl_out *o)
{
	if (fsync(o->fd) < 0)
		return cl_errorf(-errno, "%s: %s", o->path, strerror(errno));
	return 0;
}

int cl_out_commit(struct cl_out *o)
{
	int r = 0;

	if (fsync(o->fd) < 0)
		r = cl_errorf(-errno, "%s: %s", o->path, strerror(errno));
	if (close(o->fd) < 0 && !r)
		r = cl_errorf(-errno, "%s: %s", o->path, strerror(errno));
	o->fd = -1;
	if (!r && rename(o->tmp, o->path) < 0)
		r = cl_errorf(-errno, "%s: cannot replace: %s", o->path, strerror(errno));
	if (r)
		unlink(o->tmp);
	free(o->tmp);
	free(o->path);
	o->tmp = o->path = NULL;
	return r;
}

void cl_out_abort(struct cl_out *o)
{
	if (o->fd >= 0)
		close(o->fd);
	if (o->tmp)
		unlink(o->tmp);
	free(o->tmp);
	free(o->path);
	o->tmp = o->path = NULL;
	o->fd = -1;
}

int cl_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	struct cl_out o;
	int r;

	r = cl_out_open(&o, path, mode);
	if (r < 0)
		return r;
	r = cl_pwrite_full(o.fd, data, len, 0, path);
	if (r < 0) {
		cl_out_abort(&o);
		return r;
	}
	return cl_out_commit(&o);
}

int cl_read_file(const char *path, size_t max, void **buf, size_t *len)
{
	struct stat st;
	void *data;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = cl_errorf(-errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = cl_errorf(-EINVAL, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		r = cl_errorf(-EFBIG, "%s: too large (%lld bytes, at most %zu accepted)", path,
		              (long long)st.st_size, max);
		goto out;
	}
	/* One byte more: the text readers parse it as a string. */
	data = malloc((size_t)st.st_size + 1);
	if (!data) {
		r = -ENOMEM;
		goto out;
	}
	((char *)data)[st.st_size] = '\0';
	r = cl_pread_full(fd, data, (size_t)st.st_size, 0, path);
	if (r < 0) {
		free(data);
		goto out;
	}
	*buf = data;
	*len = (size_t)st.st_size;
out:
	close(fd);
	return r;
}

int cl_mkdir_p(const char *path, mode_t mode)
{
	return cl_mkdir_p_made(path, mode, NULL);
}

int cl_std_fds_open(void)
{
	int fd;

	do {
		fd = open("/dev/null", O_RDWR);
		if (fd < 0)
			return -errno;
	} while (fd <= STDERR_FILENO);
	close(fd);
	return 0;
}

int cl_mkdir_p_made(const char *path, mode_t mode, int *made)
{
	char *tmp, *p, c;
	struct stat st;
	int r = 0, ok;
	size_t len;

	if (made)
		*made = 0;
	if (!path || !*path)
		return -EINVAL;
	tmp = strdup(path);
	if (!tmp)
		return -ENOMEM;
	/* "a/b/" and "a/b/." make "a/b" last: that is the one *made is about. */
	for (len = strlen(tmp); len > 1;) {
		if (tmp[len - 1] == '/')
			tmp[--len] = '\0';
		else if (len > 2 && tmp[len - 1] == '.' && tmp[len - 2] == '/')
			tmp[len -= 2] = '\0';
		else
			break;
	}
	for (p = tmp + 1;; p++) {
		if (*p && *p != '/')
			continue;
		c = *p;
		*p = '\0';
		ok = mkdir(tmp, mode) == 0;
		if (!ok && errno == EEXIST && !c && (stat(tmp, &st) < 0 || !S_ISDIR(st.st_mode)))
			errno = ENOTDIR; /* the last one must be a directory */
		if (!ok && errno != EEXIST)
			r = cl_errorf(-errno, "%s: cannot create directory: %s", tmp,
			              strerror(errno));
		else if (made && !c)
			*made = ok;
		*p = c;
		if (r || !c)
			break;
	}
	free(tmp);
	return r;
}

int cl_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGT";
	unsigned long long v;
	const char *u;
	char *end;
	int shift = 0;

	/* strtoull would take " -5" as a huge number. */
	if (!s || !out || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		u = strchr(units, end[0] & ~0x20);
		if (!u || !end[0])
			return -EINVAL;
		shift = 10 * (int)(u - units + 1);
		if (end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))
			return -EINVAL;
	}
	if (v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

unsigned cl_nthreads(void)
{
	const char *env = getenv("CLOUDLET_THREADS");
	long n;

	if (env && (n = strtol(env, NULL, 10)) > 0 && n <= 1024)
		return (unsigned)n;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

struct pfor {
	cl_pfor_fn fn;
	void *ctx;
	size_t n;
	atomic_size_t next;
	atomic_int err;
	char msg[1024]; /* written once, by the thread that set err */
};

static void *pfor_worker(void *arg)
{
	struct pfor *p = arg;
	size_t i;
	int r;

	while (!atomic_load(&p->err)) {
		i = atomic_fetch_add(&p->next, 1);
		if (i >= p->n)
			break;
		r = p->fn(p->ctx, i);
		if (r < 0) {
			int zero = 0;
			/* Messages are per thread: keep the first failure's so
			 * that the caller's thread can report it. */
			if (atomic_compare_exchange_strong(&p->err, &zero, r))
				snprintf(p->msg, sizeof(p->msg), "%s", cl_error_msg());
		}
	}
	return NULL;
}

int cl_pfor(unsigned nthreads, size_t n, cl_pfor_fn fn, void *ctx)
{
	struct pfor p = {.fn = fn, .ctx = ctx, .n = n};
	pthread_t tids[64];
	unsigned i, started = 0;
	int r;

	if (!fn)
		return -EINVAL;
	if (!nthreads)
		nthreads = cl_nthreads();
	if (nthreads > 64)
		nthreads = 64;
	if (nthreads > n)
		nthreads = (unsigned)n;
	atomic_init(&p.next, 0);
	atomic_init(&p.err, 0);
	p.msg[0] = '\0';
	if (nthreads <= 1) {
		pfor_worker(&p);
		return atomic_load(&p.err);
	}
	for (i = 1; i < nthreads; i++)
		if (pthread_create(&tids[started], NULL, pfor_worker, &p) == 0)
			started++;
	pfor_worker(&p);
	for (i = 0; i < started; i++)
		pthread_join(tids[i], NULL);
	r = atomic_load(&p.err);
	if (r < 0)
		cl_errorf(r, "%s", p.msg);
	return r;
}

double cl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int cl_cond_init_monotonic(pthread_cond_t *c)
{
	pthread_condattr_t ca;
	int r;

	r = pthread_condattr_init(&ca);
	if (r)
		return -r;
	r = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (r == 0)
		r = pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
	return -r;
}

int cl_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, double until)
{
	struct timespec ts;

	if (until <= cl_now())
		return ETIMEDOUT;
	ts.tv_sec = (time_t)until;
	ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
	if (ts.tv_nsec >= 1000000000L)
		ts.tv_nsec = 999999999L;
	return pthread_cond_timedwait(c, m, &ts);
}

void cl_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	/* A signal does not cut it short: callers check their stop flag after. */
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

int cl_unix_peer_is(int fd, const char *path, long pid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (fd < 0 || !path || pid <= 0)
		return -EINVAL;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return cl_errorf(-errno, "%s: SO_PEERCRED: %s", path, strerror(errno));
	if ((long)cr.pid != pid)
		return cl_errorf(-EPERM, "%s: the other end is process %ld, not QEMU (%ld)", path,
		                 (long)cr.pid, pid);
	return 0;
}

int cl_unix_connect(const char *path, double timeout, const atomic_int *stop, int *fd)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	double until = cl_now() + timeout;
	int s, r;

	if (!path || !*path || !fd || timeout < 0)
		return -EINVAL;
	if (strlen(path) >= sizeof(a.sun_path))
		return cl_errorf(-ENAMETOOLONG, "%s: socket path too long", path);
	memcpy(a.sun_path, path, strlen(path));
	for (;;) {
		s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s < 0)
			return cl_errorf(-errno, "socket: %s", strerror(errno));
		if (!connect(s, (struct sockaddr *)&a, sizeof(a)))
			break;
		r = -errno;
		close(s);
		if ((r != -ENOENT && r != -ECONNREFUSED && r != -EAGAIN) || cl_now() >= until)
			return cl_errorf(r, "%s: %s", path, strerror(-r));
		if (stop && atomic_load(stop))
			return cl_errorf(-ECANCELED, "%s: connecting was stopped", path);
		cl_sleep_ms(20);
	}
	*fd = s;
	return 0;
}
