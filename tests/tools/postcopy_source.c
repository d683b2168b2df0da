/* SPDX-License-Identifier: GPL-2.0-only */
/* A postcopy migration source for a stock QEMU 7.2 destination, made from
 * a save file and its RAM image (tests/shell/postcopy_qemu.sh):
 *
 *   postcopy_source STATE RAM_IMAGE SOCKET [--timeout S] [--bg-delay S] [--batch N]
 *
 * Connects to the unix socket QEMU listens on (migrate-incoming unix:),
 * writes the stream of cl_pcstream.h, answers the page requests of the
 * return path as they come (a thread reads them, the main thread writes),
 * pushes the rest of the RAM --bg-delay seconds after the guest runs
 * (zero pages skipped, no page twice), ends the stream and waits for the
 * destination's SHUT. The guest counts as running when the PING that
 * follows the device state is answered. Prints one line of figures:
 * times in seconds from the connection, request counts in pages. Exit 0
 * when SHUT said 0; every wait is bounded by --timeout. */
#include "cl_error.h"
#include "cl_pcstream.h"
#include "cl_util.h"
#include "cl_vmstate.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PAGE       CL_VMSTATE_PAGE
#define MAX_STATE  (1u << 30)
#define RP_BUF     (64u << 10)
#define MAX_QUEUE  (1u << 22)
#define ZERO_SCAN  4096 /* zero pages skipped per step of the push, at most */
#define SEND_TMO_S 10

struct req {
	uint64_t offset, length;
};

struct src {
	/* inputs */
	uint8_t *state;
	size_t state_len;
	struct cl_vmstate *vs;
	const uint8_t *ram;
	size_t ram_len;
	uint32_t main;
	int fd;
	double t0, deadline, bg_delay;
	size_t batch;
	struct cl_pcstream *ps; /* the main thread's only */
	pthread_t rp;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* lock: requests not served yet */
	struct req *q;
	size_t qn, qcap;
	/* lock: request times (seconds from t0), one per page asked */
	double *times;
	size_t ntimes, times_cap;
	double t_run;  /* lock: the PONG of the package's PING, or -1 */
	double t_shut; /* lock */
	int shut;      /* lock: 1 once SHUT came */
	uint32_t shut_rc;
	int rp_done; /* lock: the return path ended */
	int rp_err;  /* lock */
	char rp_msg[256];
	/* the main thread's figures */
	double t_package, t_eof;
	uint64_t demand, pushed, zero_skipped, dups;
};

static int usage(void)
{
	fprintf(stderr, "usage: postcopy_source STATE RAM_IMAGE SOCKET [--timeout S] "
	                "[--bg-delay S] [--batch N]\n");
	return 2;
}

static int die(const char *what, int r)
{
	fprintf(stderr, "postcopy_source: %s: %s\n", what,
	        *cl_error_msg() ? cl_error_msg() : strerror(-r));
	return 1;
}

/* ---- inputs ---- */

static int load(struct src *s, const char *state, const char *image)
{
	struct stat st;
	void *m;
	int fd, r;

	r = cl_read_file(state, MAX_STATE, (void **)&s->state, &s->state_len);
	if (!r)
		r = cl_vmstate_parse(s->state, s->state_len, state, &s->vs);
	if (!r)
		r = cl_vmstate_main_block(s->vs, &s->main);
	if (r)
		return r;
	fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st))
		return cl_errorf(-errno, "%s: %s", image, strerror(errno));
	if ((uint64_t)st.st_size != cl_vmstate_block(s->vs, s->main)->length) {
		close(fd);
		return cl_errorf(-EINVAL, "%s: %lld bytes, RAM block %s has %llu", image,
		                 (long long)st.st_size, cl_vmstate_block(s->vs, s->main)->name,
		                 (unsigned long long)cl_vmstate_block(s->vs, s->main)->length);
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return cl_errorf(-errno, "%s: mmap: %s", image, strerror(errno));
	s->ram = m;
	s->ram_len = (size_t)st.st_size;
	return 0;
}

static int connect_to(struct src *s, const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = SEND_TMO_S};

	if (strlen(path) >= sizeof(a.sun_path))
		return cl_errorf(-ENAMETOOLONG, "%s: socket path too long", path);
	strcpy(a.sun_path, path);
	for (;;) {
		s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (s->fd < 0)
			return cl_errorf(-errno, "socket: %s", strerror(errno));
		if (!connect(s->fd, (struct sockaddr *)&a, sizeof(a)))
			break;
		close(s->fd);
		s->fd = -1;
		if (cl_now() > s->deadline)
			return cl_errorf(-ETIMEDOUT, "%s: nobody listens", path);
		cl_sleep_ms(50);
	}
	/* a destination that stops reading fails the write, not hangs it */
	setsockopt(s->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	s->t0 = cl_now();
	return 0;
}

/* ---- the return path (its own thread) ---- */

static int queue_request(struct src *s, const struct cl_pcrp_msg *m)
{
	double now = cl_now() - s->t0;
	uint64_t k;
	void *p;

	if (m->block != s->main)
		return cl_errorf(-EPROTO, "a request for RAM block %s, which was sent whole",
		                 cl_vmstate_block(s->vs, m->block)->name);
	if (s->qn == s->qcap) {
		if (s->qcap >= MAX_QUEUE)
			return cl_errorf(-ENOBUFS, "more than %u requests waiting", MAX_QUEUE);
		s->qcap = s->qcap ? 2 * s->qcap : 256;
		p = realloc(s->q, s->qcap * sizeof(*s->q));
		if (!p)
			return -ENOMEM;
		s->q = p;
	}
	s->q[s->qn].offset = m->offset;
	s->q[s->qn++].length = m->length;
	for (k = 0; k < m->length / PAGE; k++) {
		if (s->ntimes == s->times_cap) {
			s->times_cap = s->times_cap ? 2 * s->times_cap : 1024;
			p = realloc(s->times, s->times_cap * sizeof(*s->times));
			if (!p)
				return -ENOMEM;
			s->times = p;
		}
		s->times[s->ntimes++] = now;
	}
	return 0;
}

static int handle(struct src *s, const struct cl_pcrp_msg *m)
{
	int r = 0;

	pthread_mutex_lock(&s->lock);
	if (m->type == CL_PCRP_PONG && m->value == CL_PCSTREAM_PING_RUN)
		s->t_run = cl_now() - s->t0;
	else if (m->type == CL_PCRP_SHUT) {
		s->shut = 1;
		s->shut_rc = m->value;
		s->t_shut = cl_now() - s->t0;
	} else if (m->type == CL_PCRP_REQ || m->type == CL_PCRP_REQ_ID)
		r = queue_request(s, m);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Parses and handles whole messages of buf; moves a partial one to the
 * front. */
static int consume(struct src *s, struct cl_pcrp *rp, uint8_t *buf, size_t *len)
{
	struct cl_pcrp_msg m;
	size_t off = 0, used;
	int r = 0;

	while (!r && !s->shut) {
		r = cl_pcrp_parse(rp, buf + off, *len - off, &m, &used);
		if (r || !used)
			break;
		off += used;
		r = handle(s, &m);
	}
	memmove(buf, buf + off, *len - off);
	*len -= off;
	return r;
}

static int rp_loop(struct src *s)
{
	struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
	struct cl_pcrp rp;
	uint8_t *buf = malloc(RP_BUF);
	size_t len = 0;
	ssize_t n;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	cl_pcrp_init(&rp, s->vs);
	while (!r && !s->shut) {
		if (cl_now() > s->deadline) {
			r = cl_errorf(-ETIMEDOUT, "return path: no SHUT in time");
			break;
		}
		if (poll(&pfd, 1, 200) <= 0)
			continue;
		n = recv(s->fd, buf + len, RP_BUF - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n ? cl_errorf(-errno, "return path: %s", strerror(errno))
			      : cl_errorf(-ECONNRESET, "return path closed before SHUT");
			break;
		}
		len += (size_t)n;
		r = consume(s, &rp, buf, &len);
	}
	free(buf);
	return r;
}

static void *rp_main(void *arg)
{
	struct src *s = arg;
	int r = rp_loop(s);

	pthread_mutex_lock(&s->lock);
	s->rp_done = 1;
	s->rp_err = r;
	if (r)
		snprintf(s->rp_msg, sizeof(s->rp_msg), "%s", cl_error_msg());
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* ---- the stream (main thread) ---- */

static const uint8_t *ram_page(const struct src *s, uint64_t offset)
{
	const uint8_t *p = s->ram + offset;

	return cl_is_zero(p, PAGE) ? NULL : p;
}

static int by_offset(const void *a, const void *b)
{
	const struct cl_pcstream_page *x = a, *y = b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Answers the requests taken off the queue, zero pages too, in one
 * section; a page sent already, or asked twice, goes once. */
static int serve(struct src *s, const struct req *q, size_t n)
{
	struct cl_pcstream_page *pages;
	size_t i, np = 0, k;
	uint64_t off;
	int r;

	for (i = 0, k = 0; i < n; i++)
		k += q[i].length / PAGE;
	pages = calloc(k + 1, sizeof(*pages));
	if (!pages)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		for (off = q[i].offset; off < q[i].offset + q[i].length; off += PAGE)
			pages[np++].offset = off;
	qsort(pages, np, sizeof(*pages), by_offset);
	for (i = 0, k = 0; i < np; i++) {
		off = pages[i].offset;
		if ((k && pages[k - 1].offset == off) || cl_pcstream_is_sent(s->ps, s->main, off)) {
			s->dups++;
			continue;
		}
		pages[k].block = s->main;
		pages[k].offset = off;
		pages[k++].data = ram_page(s, off);
	}
	r = cl_pcstream_send(s->ps, pages, k);
	s->demand += r ? 0 : k;
	free(pages);
	return r;
}

/* One section of the background push: the next pages still due, zero
 * ones marked instead of sent; it stops where the order starts again. */
static int push(struct src *s, struct cl_pcstream_page *pages)
{
	size_t np = 0, zeros = 0;
	uint64_t off, last = 0;
	uint32_t b;
	int r = 0, first = 1;

	while (np < s->batch && zeros < ZERO_SCAN && !cl_pcstream_next(s->ps, &b, &off)) {
		if (!first && off <= last)
			break;
		first = 0;
		last = off;
		pages[np].block = b;
		pages[np].offset = off;
		pages[np].data = ram_page(s, off);
		if (pages[np].data) {
			np++;
			continue;
		}
		r = cl_pcstream_set_zero(s->ps, b, off);
		if (r)
			return r;
		zeros++;
	}
	s->zero_skipped += zeros;
	r = cl_pcstream_send(s->ps, pages, np);
	s->pushed += r ? 0 : np;
	return r;
}

/* Waits for requests (or for the push's turn), takes them off the queue. */
static int take(struct src *s, struct req **q, size_t *n, int *push_now)
{
	int r = 0;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		*push_now = s->t_run >= 0 && cl_now() - s->t0 >= s->t_run + s->bg_delay;
		if (s->qn || *push_now || s->rp_done || cl_now() > s->deadline)
			break;
		cl_cond_wait_until(&s->cond, &s->lock, cl_now() + 0.05);
	}
	*q = s->q;
	*n = s->qn;
	s->q = NULL;
	s->qn = s->qcap = 0;
	if (s->rp_done && !s->shut)
		r = cl_errorf(s->rp_err ? s->rp_err : -ECONNRESET, "%s", s->rp_msg);
	else if (s->shut)
		r = cl_errorf(-EPROTO, "SHUT %u before the end of the stream", s->shut_rc);
	else if (cl_now() > s->deadline)
		r = cl_errorf(-ETIMEDOUT, "pages still due at the time limit");
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int stream(struct src *s)
{
	struct cl_pcstream_page *pages = calloc(s->batch, sizeof(*pages));
	struct req *q = NULL;
	size_t n;
	int r, push_now;

	if (!pages)
		return -ENOMEM;
	r = cl_pcstream_start(s->ps);
	s->t_package = cl_now() - s->t0;
	while (!r && cl_pcstream_left(s->ps)) {
		r = take(s, &q, &n, &push_now);
		if (!r && n)
			r = serve(s, q, n);
		if (!r && push_now)
			r = push(s, pages);
		free(q);
		q = NULL;
	}
	/* requests that came meanwhile are answered before the end */
	if (!r)
		r = take(s, &q, &n, &push_now);
	if (!r && n)
		r = serve(s, q, n);
	free(q);
	free(pages);
	if (!r)
		r = cl_pcstream_finish(s->ps);
	s->t_eof = cl_now() - s->t0;
	return r;
}

static int wait_shut(struct src *s)
{
	int r;

	pthread_mutex_lock(&s->lock);
	while (!s->rp_done && cl_now() < s->deadline)
		cl_cond_wait_until(&s->cond, &s->lock, cl_now() + 0.1);
	if (s->shut)
		r = s->shut_rc ? cl_errorf(-EIO, "the destination failed (SHUT %u)", s->shut_rc)
		               : 0;
	else
		r = cl_errorf(s->rp_err ? s->rp_err : -ETIMEDOUT, "no SHUT: %s", s->rp_msg);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void report(struct src *s)
{
	size_t i, before = 0, first = 0;

	for (i = 0; i < s->ntimes; i++) {
		before += s->t_run < 0 || s->times[i] <= s->t_run;
		first += s->t_run >= 0 && s->times[i] > s->t_run && s->times[i] <= s->t_run + 1;
	}
	printf("postcopy_source: t_package=%.3f t_run=%.3f req_pages=%zu req_before_run=%zu "
	       "req_first_second=%zu demand_pages=%llu pushed_pages=%llu zero_skipped=%llu "
	       "dup_requests=%llu t_eof=%.3f t_shut=%.3f shut=%d\n",
	       s->t_package, s->t_run, s->ntimes, before, first, (unsigned long long)s->demand,
	       (unsigned long long)s->pushed, (unsigned long long)s->zero_skipped,
	       (unsigned long long)s->dups, s->t_eof, s->t_shut, s->shut ? (int)s->shut_rc : -1);
	fflush(stdout);
}

static int run(struct src *s, const char *sock)
{
	int r = connect_to(s, sock);

	if (r)
		return die(sock, r);
	r = cl_pcstream_new(s->vs, cl_pcstream_write_fd, &s->fd, &s->ps);
	if (r)
		return die("stream", r);
	r = -pthread_create(&s->rp, NULL, rp_main, s);
	if (r)
		return die("thread", r);
	r = stream(s);
	if (!r)
		r = wait_shut(s);
	if (r)
		fprintf(stderr, "postcopy_source: %s\n", cl_error_msg());
	shutdown(s->fd, SHUT_RDWR); /* wakes the return path's reader */
	pthread_join(s->rp, NULL);
	report(s);
	return r ? 1 : 0;
}

static int options(struct src *s, int argc, char **argv)
{
	double timeout = 120;
	int i;

	s->batch = 64;
	for (i = 4; i < argc; i += 2) {
		if (i + 1 >= argc)
			return -EINVAL;
		if (!strcmp(argv[i], "--timeout"))
			timeout = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--bg-delay"))
			s->bg_delay = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--batch"))
			s->batch = (size_t)atol(argv[i + 1]);
		else
			return -EINVAL;
	}
	if (timeout <= 0 || s->bg_delay < 0 || !s->batch || s->batch > 4096)
		return -EINVAL;
	s->deadline = cl_now() + timeout;
	return 0;
}

int main(int argc, char **argv)
{
	struct src s = {.fd = -1, .t_run = -1, .t_shut = -1};
	int r;

	if (argc < 4 || options(&s, argc, argv))
		return usage();
	pthread_mutex_init(&s.lock, NULL);
	cl_cond_init_monotonic(&s.cond);
	r = load(&s, argv[1], argv[2]);
	if (r)
		return die("input", r);
	r = run(&s, argv[3]);
	cl_pcstream_free(s.ps);
	if (s.fd >= 0)
		close(s.fd);
	munmap((void *)s.ram, s.ram_len);
	cl_vmstate_free(s.vs);
	free(s.state);
	free(s.times);
	return r;
}
