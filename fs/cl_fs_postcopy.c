/* SPDX-License-Identifier: GPL-2.0-only */
/* The mount's postcopy source slot (cl_fs_postcopy.h). */
#include "cl_fs_postcopy.h"
#include "cl_error.h"
#include "cl_pcsource.h"
#include "cl_util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define CONNECT_S 10.0       /* bound on the connection to QEMU's listener */
#define PID_MAX   (1L << 22) /* the kernel's PID_MAX_LIMIT */

struct cl_fs_postcopy {
	struct cl_lazy *l;
	pthread_mutex_t lock;
	pthread_cond_t idle;     /* lock: starting went to 0 */
	int starting;            /* lock: a start is connecting */
	int closed;              /* lock: stopped for good */
	struct cl_pcsource *src; /* lock: the last one started, or NULL */
	char refused[256];       /* lock: why the last start was refused, or "" */
};

int cl_fs_postcopy_new(struct cl_lazy *l, struct cl_fs_postcopy **out)
{
	struct cl_fs_postcopy *p;

	if (!l || !out)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->l = l;
	if (pthread_mutex_init(&p->lock, NULL))
		goto fail_alloc;
	if (cl_cond_init_monotonic(&p->idle))
		goto fail_lock;
	*out = p;
	return 0;

fail_lock:
	pthread_mutex_destroy(&p->lock);
fail_alloc:
	free(p);
	return -ENOMEM;
}

void cl_fs_postcopy_free(struct cl_fs_postcopy *p)
{
	if (!p)
		return;
	cl_fs_postcopy_stop(p);
	cl_pcsource_free(p->src);
	pthread_cond_destroy(&p->idle);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* "[PID ]PATH": an absolute path that fits a unix socket address,
 * printable, after the listener's pid if one is named (*pid 0 if not). */
static int parse_value(const char *value, size_t size, char *path, pid_t *pid)
{
	size_t i = 0;
	long n = 0;

	/* Seven digits hold every pid (PID_MAX_LIMIT is 2^22). */
	for (; i < size && i < 8 && value[i] >= '0' && value[i] <= '9'; i++)
		n = n * 10 + (value[i] - '0');
	if (i && (i == size || value[i] != ' ' || n <= 1 || n > PID_MAX))
		return -EINVAL;
	*pid = (pid_t)n;
	value += i + !!i;
	size -= i + !!i;
	if (!size || size >= sizeof(((struct sockaddr_un *)0)->sun_path) || value[0] != '/')
		return -EINVAL;
	for (i = 0; i < size; i++)
		if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
			return -EINVAL;
	memcpy(path, value, size);
	path[size] = '\0';
	return 0;
}

/* Takes the slot for a start: 0, or -EBUSY while a source streams or
 * another start connects, -ESHUTDOWN once stopped. */
static int claim_locked(struct cl_fs_postcopy *p)
{
	struct cl_pcsource_stats st;

	if (p->closed)
		return -ESHUTDOWN;
	if (p->starting)
		return -EBUSY;
	cl_pcsource_stats(p->src, &st);
	if (p->src && st.state == CL_PCSOURCE_STREAMING)
		return -EBUSY;
	p->starting = 1;
	return 0;
}

static int connect_and_start(struct cl_fs_postcopy *p, const char *path, pid_t pid,
                             struct cl_pcsource **src)
{
	int fd, r;

	cl_error_clear();
	r = cl_unix_connect(path, CONNECT_S, NULL, &fd);
	if (r)
		return r;
	if (pid && (r = cl_unix_peer_is(fd, path, pid))) {
		close(fd);
		return r;
	}
	return cl_pcsource_start(p->l, fd, src);
}

int cl_fs_postcopy_start(struct cl_fs_postcopy *p, const char *value, size_t size)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct cl_pcsource *src = NULL, *old = NULL;
	pid_t pid;
	int r;

	if (!p || !value || parse_value(value, size, path, &pid))
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	r = claim_locked(p);
	pthread_mutex_unlock(&p->lock);
	if (r)
		return r;
	r = connect_and_start(p, path, pid, &src);
	pthread_mutex_lock(&p->lock);
	p->starting = 0;
	pthread_cond_broadcast(&p->idle);
	if (!r && p->closed)
		r = -ESHUTDOWN;
	if (r) {
		snprintf(p->refused, sizeof(p->refused), "%s",
		         *cl_error_msg() ? cl_error_msg() : strerror(-r));
	} else {
		old = p->src;
		p->src = src;
		src = NULL;
		p->refused[0] = '\0';
	}
	pthread_mutex_unlock(&p->lock);
	cl_pcsource_free(old);
	cl_pcsource_free(src);
	return r;
}

void cl_fs_postcopy_stop(struct cl_fs_postcopy *p)
{
	double until = cl_now() + CONNECT_S + 5;
	struct cl_pcsource *src;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->closed = 1;
	/* a start in progress sees closed and frees what it made */
	while (p->starting && cl_now() < until)
		cl_cond_wait_until(&p->idle, &p->lock, until);
	src = p->src; /* no start replaces it once closed */
	pthread_mutex_unlock(&p->lock);
	cl_pcsource_stop(src);
}

/* The reason on one line. */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20)
			*s = ' ';
}

size_t cl_fs_postcopy_text(struct cl_fs_postcopy *p, char *buf, size_t cap)
{
	static const char *const names[] = {"streaming", "complete", "failed"};
	struct cl_pcsource_stats st;
	char refused[256];
	int n, have;

	if (!cap)
		return 0;
	pthread_mutex_lock(&p->lock);
	cl_pcsource_stats(p->src, &st);
	memcpy(refused, p->refused, sizeof(refused));
	have = p->src != NULL;
	pthread_mutex_unlock(&p->lock);
	one_line(st.reason);
	one_line(refused);
	if (!have)
		n = snprintf(buf, cap, refused[0] ? "postcopy: failed: %s\n" : "postcopy: off\n%s",
		             refused);
	else
		n = snprintf(buf, cap,
		             "postcopy: %s%s%s\n"
		             "postcopy_pages: %" PRIu64 "\n"
		             "postcopy_requested: %" PRIu64 "\n"
		             "postcopy_demand: %" PRIu64 "\n"
		             "postcopy_pushed: %" PRIu64 "\n"
		             "postcopy_zero: %" PRIu64 "\n"
		             "postcopy_latency_ms: p50 %.3f p99 %.3f\n",
		             names[st.state], st.reason[0] ? ": " : "", st.reason, st.pages,
		             st.requested, st.demand, st.pushed, st.zero_skipped, st.latency_p50_ms,
		             st.latency_p99_ms);
	/* a refused start does not hide the state of the source before it */
	if (n >= 0 && (size_t)n < cap && have && refused[0])
		n += snprintf(buf + n, cap - (size_t)n, "postcopy_refused: %s\n", refused);
	if (n < 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}
