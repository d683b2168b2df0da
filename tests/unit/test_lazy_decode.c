/* SPDX-License-Identifier: GPL-2.0-only */
/* How the lazy engine decodes a fetched segment: the chunks requests wait
 * on first, the requests answered before the rest of the segment is
 * decoded (seen from their completions, which run on the decoding thread),
 * and each payload decoded once for all the chunks that copy it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl_lazy.h"
#include "cl_overlay.h"
#include "cl_testimg.h"

static char dir[4096];
static uint8_t *want[CL_NIMAGES];
static size_t want_len[CL_NIMAGES];

static const char *path(const char *name)
{
	return cl_test_path(dir, name);
}

static int setup(void **state)
{
	(void)state;
	return cl_test_images(dir) || cl_test_want(dir, want, want_len) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	free(want[0]);
	free(want[1]);
	cl_test_cleanup(dir);
	return 0;
}

static void make_overlay(const char *out, uint32_t segsize)
{
	assert_int_equal(cl_test_overlay(dir, out, segsize), 0);
}

/* An asynchronous read that notes the engine's stats when it completes
 * and may submit another read from its completion. */
struct probe {
	struct cl_lazy *l;
	enum cl_image_id im;
	uint64_t off;
	uint8_t buf[100];
	struct cl_lazy_stats st; /* at completion */
	struct probe *then;
	pthread_mutex_t m;
	pthread_cond_t c;
	int done;
	ssize_t r;
};

static void probe_submit(struct probe *p);

static void probe_done(void *ctx, ssize_t r)
{
	struct probe *p = ctx;

	cl_lazy_stats(p->l, &p->st);
	if (p->then)
		probe_submit(p->then);
	pthread_mutex_lock(&p->m);
	p->r = r;
	p->done = 1;
	pthread_cond_signal(&p->c);
	pthread_mutex_unlock(&p->m);
}

static void probe_submit(struct probe *p)
{
	cl_lazy_read(p->l, p->im, p->off, sizeof(p->buf), p->buf, probe_done, p);
}

static void probe_wait(struct probe *p)
{
	pthread_mutex_lock(&p->m);
	while (!p->done)
		pthread_cond_wait(&p->c, &p->m);
	pthread_mutex_unlock(&p->m);
	assert_int_equal(p->r, sizeof(p->buf));
	assert_memory_equal(p->buf, want[p->im] + p->off, sizeof(p->buf));
}

static void probe_init(struct probe *p, struct cl_lazy *l, const struct cl_chunk *c)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->m, NULL);
	pthread_cond_init(&p->c, NULL);
	p->l = l;
	p->im = c->image;
	p->off = c->index * CL_TEST_CS;
}

/* The stats once `present` segments are decoded (the rest of a segment is
 * decoded after its waiters are answered; bounded wait). */
static void stats_when(struct cl_lazy *l, struct cl_lazy_stats *st, uint32_t present)
{
	int i;

	for (i = 0; i < 1000; i++) {
		cl_lazy_stats(l, st);
		if (st->segments_present >= present)
			return;
		usleep(10000);
	}
}

static int has_payload(const struct cl_chunk *c)
{
	return c->recipe == CL_R_DELTA || c->recipe == CL_R_RAW;
}

/* The segment with the most payloads, not the one holding the device
 * state (decoded at open), and how many it holds. */
static uint32_t busiest_segment(const struct cl_meta *m, uint64_t *npayloads)
{
	uint64_t *n = calloc(m->nsegments, sizeof(*n)), i;
	uint32_t s, best = 0;

	assert_non_null(n);
	for (i = 0; i < m->nchunks; i++)
		if (has_payload(&m->chunks[i]))
			n[m->chunks[i].p.seg]++;
	for (s = 0; s < m->nsegments; s++)
		if (s != m->state.p.seg && n[s] > n[best])
			best = s;
	*npayloads = n[best];
	free(n);
	return best;
}

/* A read of the last payload of a segment is answered when its own chunk
 * is decoded: the segment is not done yet and one payload was decoded. A
 * read submitted from that completion, of the segment's first payload, is
 * answered next, still before the rest. Then the segment completes, each
 * payload decoded once. */
static void test_waiters_first(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1, .no_stream = 1, .connections = 2};
	const struct cl_chunk *first = NULL, *last = NULL;
	struct cl_lazy_stats st0, st;
	struct probe px, py;
	const struct cl_meta *m;
	uint64_t npay, i;
	struct cl_lazy *l;
	uint32_t s;

	(void)state;
	make_overlay("ov-first", CL_TEST_CS * 16);
	assert_int_equal(cl_lazy_open(path("bd"), path("ov-first"), &o, &l), 0);
	m = cl_lazy_meta(l);
	s = busiest_segment(m, &npay);
	assert_true(npay >= 3);
	for (i = 0; i < m->nchunks; i++)
		if (has_payload(&m->chunks[i]) && m->chunks[i].p.seg == s) {
			if (!first)
				first = &m->chunks[i];
			last = &m->chunks[i];
		}
	assert_int_equal(cl_lazy_start(l), 0);
	cl_lazy_stats(l, &st0);

	probe_init(&px, l, last);
	probe_init(&py, l, first);
	px.then = &py;
	probe_submit(&px);
	probe_wait(&px);
	probe_wait(&py);
	assert_int_equal(px.st.segments_present, st0.segments_present);
	assert_int_equal(px.st.decodes, st0.decodes + 1);
	assert_int_equal(py.st.segments_present, st0.segments_present);
	assert_int_equal(py.st.decodes, st0.decodes + 2);

	/* The rest follows on the same thread. */
	stats_when(l, &st, st0.segments_present + 1);
	assert_int_equal(st.segments_present, st0.segments_present + 1);
	assert_int_equal(st.decodes, st0.decodes + npay);
	assert_int_equal(st.image[CL_DISK].io_errors + st.image[CL_MEMORY].io_errors, 0);
	cl_lazy_close(l);
}

/* A synchronous read on top of the asynchronous API. */
static ssize_t read_sync(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len,
                         void *buf)
{
	struct probe p = {.l = l};

	pthread_mutex_init(&p.m, NULL);
	pthread_cond_init(&p.c, NULL);
	cl_lazy_read(l, im, off, len, buf, probe_done, &p);
	pthread_mutex_lock(&p.m);
	while (!p.done)
		pthread_cond_wait(&p.c, &p.m);
	pthread_mutex_unlock(&p.m);
	return p.r;
}

/* Every byte read right, and no payload decoded twice: the copies of a
 * payload (disk 250..252 = memory 100..102), read first, and the payloads
 * they copy come from one decode each. */
static void test_decode_once(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1, .no_stream = 1, .connections = 2};
	const size_t step = 3 * CL_TEST_CS + 17;
	uint8_t *buf = malloc(step);
	uint64_t i, npay = 0, ncopies = 0;
	const struct cl_meta *m;
	struct cl_lazy_stats st;
	struct cl_lazy *l;
	size_t off, n;
	int im;

	(void)state;
	assert_non_null(buf);
	make_overlay("ov-once", CL_TEST_CS * 16);
	assert_int_equal(cl_lazy_open(path("bd"), path("ov-once"), &o, &l), 0);
	m = cl_lazy_meta(l);
	for (i = 0; i < m->nchunks; i++) {
		npay += has_payload(&m->chunks[i]);
		ncopies += m->chunks[i].recipe == CL_R_DEDUP;
	}
	assert_true(ncopies >= 3);
	assert_int_equal(cl_lazy_start(l), 0);
	for (i = 0; i < m->nchunks; i++) {
		const struct cl_chunk *c = &m->chunks[i];
		if (c->recipe != CL_R_DEDUP)
			continue;
		assert_int_equal(read_sync(l, c->image, c->index * CL_TEST_CS, CL_TEST_CS, buf),
		                 CL_TEST_CS);
		assert_memory_equal(buf, want[c->image] + c->index * CL_TEST_CS, CL_TEST_CS);
	}
	for (im = 0; im < CL_NIMAGES; im++)
		for (off = 0; off < want_len[im]; off += step) {
			n = want_len[im] - off < step ? want_len[im] - off : step;
			assert_int_equal(read_sync(l, im, off, step, buf), (ssize_t)n);
			assert_memory_equal(buf, want[im] + off, n);
		}
	stats_when(l, &st, m->nsegments);
	assert_int_equal(st.segments_present, st.segments);
	assert_int_equal(st.decodes, npay);
	assert_int_equal(st.image[CL_DISK].io_errors + st.image[CL_MEMORY].io_errors, 0);
	free(buf);
	cl_lazy_close(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_waiters_first),
	    cmocka_unit_test(test_decode_once),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
