/* SPDX-License-Identifier: GPL-2.0-only */
/* Test driver for cl_source (local files and HTTP URLs).
 *
 *   source_tool [-t MS] [-r N] [-c N] info URL
 *   source_tool [...] cat URL OFF LEN          bytes to stdout (one read)
 *   source_tool [...] readall URL              cl_source_read_all to stdout
 *   source_tool [...] stream URL [OFF]         cl_source_stream to stdout
 *   source_tool [...] parallel URL LOCAL THREADS READS
 *       THREADS threads of READS random reads each, plus one whole stream,
 *       all compared with LOCAL (a copy of the object)
 *   source_tool [...] twice URL OFF LEN SYNC
 *       opens and reads once, creates SYNC.ready, waits (at most 60 s) for
 *       SYNC.go, reads again to stdout and reports the time it took
 *
 * -t/-r/-c set cl_source_opts timeout_ms/retries/connections. Errors print
 * "source_tool: MESSAGE [ERRNO-NAME]" and exit 1. */
#include "cl_error.h"
#include "cl_source.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static struct cl_source_opts opts;

static int fail(int r)
{
	const char *name = strerrorname_np(r < 0 ? -r : r);

	fprintf(stderr, "source_tool: %s [%s]\n", *cl_error_msg() ? cl_error_msg() : strerror(-r),
	        name ? name : "?");
	return 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: source_tool [-t MS] [-r N] [-c N] info|cat|readall|stream|"
	                "parallel|twice URL ...\n");
	return 2;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int to_stdout(void *ctx, uint64_t off, const void *data, size_t len)
{
	uint64_t *next = ctx;

	if (off != *next) {
		fprintf(stderr, "source_tool: stream piece at %" PRIu64 ", expected %" PRIu64 "\n",
		        off, *next);
		return -EPROTO;
	}
	*next += len;
	return write_all(1, data, len);
}

static int cmd_cat(struct cl_source *src, uint64_t off, size_t len)
{
	char *buf = malloc(len ? len : 1);
	int r;

	if (!buf)
		return -ENOMEM;
	r = cl_source_read(src, off, len, buf);
	if (r == 0)
		r = write_all(1, buf, len);
	free(buf);
	return r;
}

/* ---- parallel --------------------------------------------------------- */

struct par {
	struct cl_source *src;
	const unsigned char *ref;
	uint64_t size;
	unsigned reads;
	unsigned seed;
	int result;
	char msg[512];
	uint64_t next; /* stream thread */
};

static void *par_reader(void *arg)
{
	struct par *p = arg;
	unsigned char *buf = malloc(256 * 1024);
	uint64_t off;
	size_t len;
	unsigned i;
	int r = 0;

	if (!buf) {
		p->result = -ENOMEM;
		return NULL;
	}
	for (i = 0; i < p->reads && !r; i++) {
		len = 1 + (size_t)(rand_r(&p->seed) % (256 * 1024));
		if (len > p->size)
			len = (size_t)p->size;
		if (i == 0)
			off = 0;
		else if (i == 1)
			off = p->size - len; /* the tail */
		else
			off = ((uint64_t)rand_r(&p->seed) << 16 ^ (uint64_t)rand_r(&p->seed)) %
			      (p->size - len + 1);
		r = cl_source_read(p->src, off, len, buf);
		if (r < 0) {
			snprintf(p->msg, sizeof(p->msg), "%s", cl_error_msg());
			break;
		}
		if (memcmp(buf, p->ref + off, len)) {
			snprintf(p->msg, sizeof(p->msg), "read of %zu at %" PRIu64 " differs", len,
			         off);
			r = -EIO;
		}
	}
	free(buf);
	p->result = r;
	return NULL;
}

static int par_check(void *ctx, uint64_t off, const void *data, size_t len)
{
	struct par *p = ctx;

	if (off != p->next || off + len > p->size || memcmp(data, p->ref + off, len)) {
		snprintf(p->msg, sizeof(p->msg), "stream piece of %zu at %" PRIu64 " is wrong", len,
		         off);
		return -EIO;
	}
	p->next += len;
	return 0;
}

static void *par_streamer(void *arg)
{
	struct par *p = arg;

	p->result = cl_source_stream(p->src, 0, par_check, p);
	if (p->result < 0 && !p->msg[0])
		snprintf(p->msg, sizeof(p->msg), "%s", cl_error_msg());
	if (!p->result && p->next != p->size) {
		snprintf(p->msg, sizeof(p->msg), "stream ended at %" PRIu64, p->next);
		p->result = -EIO;
	}
	return NULL;
}

static int load(const char *path, unsigned char **out, uint64_t *size)
{
	size_t len;
	int r;

	r = cl_read_file(path, SIZE_MAX, (void **)out, &len);
	if (r == 0)
		*size = len;
	return r;
}

static int cmd_parallel(struct cl_source *src, const char *local, unsigned nthreads, unsigned reads)
{
	struct par *p;
	pthread_t *tid;
	unsigned char *ref = NULL;
	uint64_t size = 0;
	unsigned i, created;
	int r;

	r = load(local, &ref, &size);
	if (r < 0)
		return r;
	if (size != cl_source_size(src)) {
		r = cl_errorf(-EIO, "size %" PRIu64 " of the source, %" PRIu64 " of %s",
		              cl_source_size(src), size, local);
		goto out_ref;
	}
	p = calloc(nthreads + 1, sizeof(*p));
	tid = calloc(nthreads + 1, sizeof(*tid));
	if (!p || !tid) {
		r = -ENOMEM;
		goto out_mem;
	}
	for (created = 0; created <= nthreads; created++) {
		i = created;
		p[i].src = src;
		p[i].ref = ref;
		p[i].size = size;
		p[i].reads = reads;
		p[i].seed = 12345u + i * 7919u;
		if (pthread_create(&tid[i], NULL, i < nthreads ? par_reader : par_streamer,
		                   &p[i])) {
			r = cl_errorf(-EAGAIN, "cannot start thread %u", i);
			break;
		}
	}
	for (i = 0; i < created; i++) {
		pthread_join(tid[i], NULL);
		if (p[i].result && !r)
			r = cl_errorf(p[i].result < 0 ? p[i].result : -EIO, "%s %u: %s",
			              i < nthreads ? "reader" : "stream", i, p[i].msg);
	}
	if (!r)
		printf("parallel: %u threads x %u reads and a stream of %" PRIu64 " bytes ok\n",
		       nthreads, reads, size);
out_mem:
	free(tid);
	free(p);
out_ref:
	free(ref);
	return r;
}

/* ---- twice ------------------------------------------------------------ */

static int cmd_twice(struct cl_source *src, uint64_t off, size_t len, const char *sync)
{
	char ready[4096], go[4096];
	uint64_t t0;
	char *buf;
	int fd, r;

	snprintf(ready, sizeof(ready), "%s.ready", sync);
	snprintf(go, sizeof(go), "%s.go", sync);
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	r = cl_source_read(src, off, len, buf);
	if (r < 0)
		goto out;
	fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = cl_errorf(-errno, "%s: %s", ready, strerror(errno));
		goto out;
	}
	close(fd);
	t0 = now_ms();
	while (access(go, F_OK) < 0) {
		if (now_ms() - t0 > 60000) {
			r = cl_errorf(-ETIMEDOUT, "%s never appeared", go);
			goto out;
		}
		usleep(20000);
	}
	t0 = now_ms();
	r = cl_source_read(src, off, len, buf);
	fprintf(stderr, "source_tool: second read took %" PRIu64 " ms\n", now_ms() - t0);
	if (r == 0)
		r = write_all(1, buf, len);
out:
	free(buf);
	return r;
}

int main(int argc, char **argv)
{
	struct cl_source *src;
	const char *cmd, *url;
	uint64_t next;
	void *all;
	size_t len;
	int c, r;

	while ((c = getopt(argc, argv, "+t:r:c:")) != -1) {
		switch (c) {
		case 't':
			opts.timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			opts.retries = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'c':
			opts.connections = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			return usage();
		}
	}
	if (argc - optind < 2)
		return usage();
	cmd = argv[optind];
	url = argv[optind + 1];
	argv += optind + 2;
	argc -= optind + 2;

	if (!strcmp(cmd, "readall")) {
		r = cl_source_read_all(url, &opts, (size_t)1 << 30, &all, &len);
		if (r < 0)
			return fail(r);
		r = write_all(1, all, len);
		free(all);
		return r < 0 ? fail(r) : 0;
	}

	r = cl_source_open(url, &opts, &src);
	if (r < 0)
		return fail(r);
	if (!strcmp(cmd, "info") && argc == 0) {
		printf("size %" PRIu64 " ranges %d\n", cl_source_size(src),
		       cl_source_has_ranges(src));
	} else if (!strcmp(cmd, "cat") && argc == 2) {
		r = cmd_cat(src, strtoull(argv[0], NULL, 10), (size_t)strtoull(argv[1], NULL, 10));
	} else if (!strcmp(cmd, "stream") && argc <= 1) {
		next = argc ? strtoull(argv[0], NULL, 10) : 0;
		r = cl_source_stream(src, next, to_stdout, &next);
		if (r == 0 && next != cl_source_size(src))
			r = cl_errorf(-EIO, "stream ended at %" PRIu64, next);
	} else if (!strcmp(cmd, "parallel") && argc == 3) {
		r = cmd_parallel(src, argv[0], (unsigned)strtoul(argv[1], NULL, 10),
		                 (unsigned)strtoul(argv[2], NULL, 10));
	} else if (!strcmp(cmd, "twice") && argc == 3) {
		r = cmd_twice(src, strtoull(argv[0], NULL, 10), (size_t)strtoull(argv[1], NULL, 10),
		              argv[2]);
	} else {
		cl_source_close(src);
		return usage();
	}
	cl_source_close(src);
	return r ? fail(r) : 0;
}
