/* SPDX-License-Identifier: GPL-2.0-only */
/* The lazy synthesis engine on generated images: every byte equals the
 * eager result, waits end (arrival, timeout, shutdown), copy-on-write
 * leaves base, pack and cache alone, the cache is reused and checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_lazy.h"
#include "cl_overlay.h"
#include "cl_testimg.h"

#include <sys/time.h>

static char dir[4096];
static uint8_t *want[CL_NIMAGES];
static size_t want_len[CL_NIMAGES];

static const char *path(const char *name)
{
	return cl_test_path(dir, name);
}

/* A synchronous read or write on top of the asynchronous API. */
struct sync {
	pthread_mutex_t m;
	pthread_cond_t c;
	int done;
	ssize_t r;
};

static void sync_done(void *ctx, ssize_t r)
{
	struct sync *s = ctx;

	pthread_mutex_lock(&s->m);
	s->r = r;
	s->done = 1;
	pthread_cond_signal(&s->c);
	pthread_mutex_unlock(&s->m);
}

static ssize_t io(struct cl_lazy *l, int write, enum cl_image_id im, uint64_t off, size_t len,
                  void *buf)
{
	struct sync s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

	if (write)
		cl_lazy_write(l, im, off, len, buf, sync_done, &s);
	else
		cl_lazy_read(l, im, off, len, buf, sync_done, &s);
	pthread_mutex_lock(&s.m);
	while (!s.done)
		pthread_cond_wait(&s.c, &s.m);
	pthread_mutex_unlock(&s.m);
	return s.r;
}

/* A synchronous cl_lazy_read_segs: the answer put together from its parts
 * into out; *in_files counts the bytes that were left in files. */
static ssize_t io_segs(struct cl_lazy *l, enum cl_image_id im, uint64_t off, size_t len,
                       uint8_t *out, size_t *in_files)
{
	struct sync s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	struct cl_lazy_seg *segs = malloc(cl_lazy_max_segs(l, len) * sizeof(*segs));
	uint8_t *buf = malloc(len);
	size_t n = 0, i, at = 0;

	assert_non_null(segs);
	assert_non_null(buf);
	cl_lazy_read_segs(l, im, off, len, buf, segs, &n, sync_done, &s);
	pthread_mutex_lock(&s.m);
	while (!s.done)
		pthread_cond_wait(&s.c, &s.m);
	pthread_mutex_unlock(&s.m);
	assert_true(n <= cl_lazy_max_segs(l, len));
	for (i = 0; s.r > 0 && i < n; at += segs[i++].len) {
		assert_true(at + segs[i].len <= (size_t)s.r);
		if (segs[i].fd < 0) {
			assert_ptr_equal(segs[i].mem, buf + at); /* in place */
			memcpy(out + at, segs[i].mem, segs[i].len);
			continue;
		}
		assert_int_equal(pread(segs[i].fd, out + at, segs[i].len, (off_t)segs[i].off),
		                 (ssize_t)segs[i].len);
		*in_files += segs[i].len;
	}
	if (s.r > 0)
		assert_int_equal(at, s.r);
	free(segs);
	free(buf);
	return s.r;
}

static void make_overlay(const char *out, uint32_t segsize)
{
	assert_int_equal(cl_test_overlay(dir, out, segsize), 0);
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

static int restore_base(void **state)
{
	(void)state;
	return cl_test_restore_base(dir);
}

static struct cl_lazy *open_lazy(const char *ov, struct cl_lazy_opts *o)
{
	struct cl_lazy *l;

	o->cache_dir = path("cache");
	assert_int_equal(cl_lazy_open(path("bd"), path(ov), o, &l), 0);
	return l;
}

static void check_all(struct cl_lazy *l, size_t step)
{
	uint8_t *buf = malloc(step);
	int im;
	size_t off, n;

	for (im = 0; im < CL_NIMAGES; im++) {
		assert_int_equal(cl_lazy_size(l, im), want_len[im]);
		for (off = 0; off < want_len[im]; off += step) {
			n = want_len[im] - off < step ? want_len[im] - off : step;
			assert_int_equal(io(l, 0, im, off, step, buf), (ssize_t)n);
			assert_memory_equal(buf, want[im] + off, n);
		}
		/* At and past the end: EOF. */
		assert_int_equal(io(l, 0, im, want_len[im], 10, buf), 0);
	}
	free(buf);
}

/* The accessed stream lists every chunk once, in time order, read in
 * pieces of odd sizes (across the in-memory tail and the file). */
static void check_events(struct cl_lazy *l, enum cl_image_id im, uint64_t nchunks)
{
	struct cl_lazy_event ev[37];
	uint8_t *seen = calloc(nchunks, 1);
	uint64_t from = 0, last = 0;
	size_t n, i;

	while ((n = cl_lazy_events(l, im, CL_EV_ACCESSED, from, ev, 37)) > 0) {
		for (i = 0; i < n; i++) {
			assert_true(ev[i].chunk < nchunks);
			assert_false(seen[ev[i].chunk]);
			seen[ev[i].chunk] = 1;
			assert_true(ev[i].usec >= last);
			last = ev[i].usec;
		}
		from += n;
	}
	assert_int_equal(from, nchunks);
	free(seen);
}

/* The stats once every segment is decoded: a read is answered as soon as
 * its own chunks are in the cache, and the rest of its segment follows on
 * the fetch thread (bounded wait). */
static void stats_complete(struct cl_lazy *l, struct cl_lazy_stats *st)
{
	int i;

	for (i = 0; i < 1000; i++) {
		cl_lazy_stats(l, st);
		if (st->segments_present == st->segments)
			return;
		usleep(10000);
	}
}

/* Demand fetch only: every read waits for its own segments. */
static void test_demand_reads(void **state)
{
	struct cl_lazy_opts o = {.no_stream = 1, .connections = 2};
	struct cl_lazy_stats st;
	struct cl_lazy *l;
	const void *blob;
	size_t len;

	(void)state;
	make_overlay("ov", CL_TEST_CS * 4);
	l = open_lazy("ov", &o);
	cl_lazy_blob(l, 0, &blob, &len);
	assert_int_equal(len, 12);
	assert_memory_equal(blob, "device state", 12);
	assert_int_equal(cl_lazy_start(l), 0);
	check_all(l, 4096 * 3 + 17);
	stats_complete(l, &st);
	assert_true(st.image[CL_DISK].demand_fetches > 0);
	assert_int_equal(st.image[CL_DISK].io_errors, 0);
	assert_int_equal(st.segments_present, st.segments);
	assert_int_equal(st.state, CL_LAZY_COMPLETE);
	assert_int_equal(st.image[CL_DISK].chunks_accessed, st.image[CL_DISK].chunks);
	check_events(l, CL_DISK, st.image[CL_DISK].chunks);
	check_events(l, CL_MEMORY, st.image[CL_MEMORY].chunks);
	cl_lazy_close(l);
}

struct reader {
	struct cl_lazy *l;
	unsigned seed;
	int bad;
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	uint8_t buf[70000];
	int i;

	for (i = 0; i < 200; i++) {
		int im = rand_r(&rd->seed) & 1;
		size_t off = (size_t)rand_r(&rd->seed) % want_len[im];
		size_t len = 1 + (size_t)rand_r(&rd->seed) % sizeof(buf);
		size_t n = want_len[im] - off < len ? want_len[im] - off : len;
		if (io(rd->l, 0, im, off, len, buf) != (ssize_t)n || memcmp(buf, want[im] + off, n))
			rd->bad++;
	}
	return NULL;
}

/* 16 threads of random reads while the background stream runs. */
static void test_concurrent(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1, .connections = 3};
	struct reader rd[16];
	pthread_t t[16];
	struct cl_lazy *l;
	int i;

	(void)state;
	make_overlay("ov-small", CL_TEST_CS);
	l = open_lazy("ov-small", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	for (i = 0; i < 16; i++) {
		rd[i] = (struct reader){l, (unsigned)i * 7919u, 0};
		pthread_create(&t[i], NULL, reader_main, &rd[i]);
	}
	for (i = 0; i < 16; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(rd[i].bad, 0);
	}
	cl_lazy_close(l);
}

static void test_copy_on_write(void **state)
{
	struct cl_lazy_opts o = {.connections = 2};
	uint8_t buf[3 * CL_TEST_CS], back[3 * CL_TEST_CS], zero[CL_TEST_CS] = {0};
	size_t blen, plen;
	uint8_t *base_before = cl_test_read(path("bd"), &blen), *pack_before, *after;
	struct cl_lazy_stats st;
	struct cl_lazy *l;

	(void)state;
	make_overlay("ov-cow", 0);
	pack_before = cl_test_read(path("ov-cow/overlay-blob"), &plen);
	l = open_lazy("ov-cow", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	/* Partial writes over chunks of every kind, spanning three chunks. */
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(io(l, 1, CL_DISK, 19 * CL_TEST_CS + 100, sizeof(buf), buf), sizeof(buf));
	assert_int_equal(io(l, 0, CL_DISK, 19 * CL_TEST_CS, sizeof(back), back), sizeof(back));
	assert_memory_equal(back, want[CL_DISK] + 19 * CL_TEST_CS, 100);
	assert_memory_equal(back + 100, buf, sizeof(back) - 100);
	/* The last chunk: the write's 100 bytes, then what it held before. */
	assert_int_equal(io(l, 0, CL_DISK, 22 * CL_TEST_CS, 200, back), 200);
	assert_memory_equal(back, buf, 100);
	assert_memory_equal(back + 100, want[CL_DISK] + 22 * CL_TEST_CS + 100, 100);
	/* Zeros (hole punching) over a memory chunk with data. */
	assert_int_equal(io(l, 1, CL_MEMORY, 101 * CL_TEST_CS, CL_TEST_CS, NULL), CL_TEST_CS);
	assert_int_equal(io(l, 0, CL_MEMORY, 101 * CL_TEST_CS, CL_TEST_CS, back), CL_TEST_CS);
	assert_memory_equal(back, zero, CL_TEST_CS);
	/* Writes past the end are refused. */
	assert_int_equal(io(l, 1, CL_MEMORY, want_len[CL_MEMORY], 1, buf), -ENOSPC);
	cl_lazy_stats(l, &st);
	assert_int_equal(st.image[CL_DISK].chunks_modified, 4);
	assert_int_equal(st.image[CL_MEMORY].chunks_modified, 1);
	cl_lazy_close(l);
	after = cl_test_read(path("bd"), &blen);
	assert_memory_equal(after, base_before, blen);
	free(after);
	after = cl_test_read(path("ov-cow/overlay-blob"), &plen);
	assert_memory_equal(after, pack_before, plen);
	free(after);
	free(pack_before);
	free(base_before);
	/* The store is gone; a new instance sees the overlay's bytes. */
	l = open_lazy("ov-cow", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	check_all(l, 65536);
	cl_lazy_close(l);
}

/* The second mount of an overlay fetches nothing; a damaged cache chunk is
 * noticed and fetched again. */
static void test_cache_reuse(void **state)
{
	struct cl_lazy_opts o = {.connections = 2};
	struct cl_lazy_stats st;
	struct cl_lazy *l;
	char id[65], cache[1024];
	struct cl_meta *m;
	uint8_t junk[64];
	int fd;

	(void)state;
	make_overlay("ov-cache", 0);
	l = open_lazy("ov-cache", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	check_all(l, 1 << 20);
	cl_lazy_close(l);

	l = open_lazy("ov-cache", &o);
	cl_lazy_stats(l, &st);
	assert_int_equal(st.cache_hits, st.segments);
	assert_int_equal(st.bytes_fetched, 0);
	cl_lazy_close(l);

	assert_int_equal(cl_meta_load(path("ov-cache"), &m, NULL), 0);
	cl_hex(m->id, 32, id);
	cl_meta_free(m);
	snprintf(cache, sizeof(cache), "%s/%s/memory.cache", path("cache"), id);
	fd = open(cache, O_WRONLY);
	assert_true(fd >= 0);
	memset(junk, 0x33, sizeof(junk));
	/* Memory chunk 100 is a raw chunk of the overlay. */
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 100 * CL_TEST_CS + 8), sizeof(junk));
	close(fd);
	l = open_lazy("ov-cache", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	check_all(l, 8192);
	cl_lazy_stats(l, &st);
	assert_true(st.bytes_fetched > 0);
	cl_lazy_close(l);

	/* A damaged chunk inside a run of unchecked chunks read in one go
	 * (memory 96..111): the run is not served, the segment is fetched. */
	fd = open(cache, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, junk, sizeof(junk), 105 * CL_TEST_CS + 8), sizeof(junk));
	close(fd);
	l = open_lazy("ov-cache", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	check_all(l, 16 * CL_TEST_CS);
	cl_lazy_stats(l, &st);
	assert_true(st.bytes_fetched > 0);
	cl_lazy_close(l);
}

/* A pack that cannot be read: waits end at their bound, or at shutdown. */
static void test_bounded_waits(void **state)
{
	struct cl_lazy_opts o = {
	    .no_cache = 1, .no_stream = 1, .timeout_ms = 700, .memory_timeout_ms = 60000};
	struct cl_lazy_stats st;
	struct cl_lazy *l;
	uint8_t buf[4096];
	double t;

	(void)state;
	make_overlay("ov-gone", CL_TEST_CS * 4); /* segment 0, fetched at open, holds the state */
	l = open_lazy("ov-gone", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	/* The pack shrinks under the open instance: every fetch now fails. */
	assert_int_equal(truncate(path("ov-gone/overlay-blob"), 100), 0);
	t = cl_now();
	assert_int_equal(io(l, 0, CL_DISK, 20 * CL_TEST_CS, 4096, buf), -EIO);
	t = cl_now() - t;
	assert_true(t >= 0.6 && t < 3.0);
	cl_lazy_stats(l, &st);
	assert_int_equal(st.image[CL_DISK].io_errors, 1);
	assert_true(strstr(st.reason, "waited") != NULL);
	/* Unchanged and base chunks are served regardless. */
	assert_int_equal(io(l, 0, CL_DISK, 2 * CL_TEST_CS, 4096, buf), 4096);
	cl_lazy_close(l);
}

struct shut {
	struct cl_lazy *l;
	ssize_t r;
};

static void *shut_reader(void *arg)
{
	struct shut *s = arg;
	uint8_t buf[4096];

	s->r = io(s->l, 0, CL_MEMORY, 120 * CL_TEST_CS, sizeof(buf), buf);
	return NULL;
}

static void test_shutdown_wakes(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1, .no_stream = 1, .memory_timeout_ms = 600000};
	struct cl_lazy_stats st;
	struct shut s = {0};
	pthread_t t;
	double t0;

	(void)state;
	make_overlay("ov-shut", CL_TEST_CS * 4);
	s.l = open_lazy("ov-shut", &o);
	assert_int_equal(cl_lazy_start(s.l), 0);
	assert_int_equal(truncate(path("ov-shut/overlay-blob"), 100), 0);
	pthread_create(&t, NULL, shut_reader, &s);
	do {
		usleep(10000);
		cl_lazy_stats(s.l, &st);
	} while (!st.image[CL_MEMORY].waiting);
	t0 = cl_now();
	cl_lazy_shutdown(s.l);
	pthread_join(t, NULL);
	assert_int_equal(s.r, -EIO);
	assert_true(cl_now() - t0 < 1.0);
	cl_lazy_close(s.l);
}

/* A flipped byte in the pack: fetched twice, then EIO, state failed. */
static void test_corrupt_pack(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1, .connections = 2};
	struct cl_lazy_stats st;
	struct cl_lazy *l;
	struct cl_meta *m;
	const struct cl_chunk *victim = NULL;
	uint8_t buf[4096], b;
	uint64_t i;
	int fd;

	(void)state;
	make_overlay("ov-bad", CL_TEST_CS * 8);
	assert_int_equal(cl_meta_load(path("ov-bad"), &m, NULL), 0);
	fd = open(path("ov-bad/overlay-blob"), O_RDWR);
	/* The last segment holds disk payloads only. */
	assert_int_equal(pread(fd, &b, 1, (off_t)m->segments[m->nsegments - 1].offset + 3), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)m->segments[m->nsegments - 1].offset + 3), 1);
	close(fd);
	for (i = 0; i < m->nchunks; i++)
		if (m->chunks[i].recipe >= CL_R_DEDUP && m->chunks[i].p.seg == m->nsegments - 1)
			victim = &m->chunks[i];
	assert_non_null(victim);
	l = open_lazy("ov-bad", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	assert_int_equal(io(l, 0, victim->image, victim->index * CL_TEST_CS, 10, buf), -EIO);
	cl_lazy_stats(l, &st);
	assert_int_equal(st.state, CL_LAZY_FAILED);
	assert_true(strstr(st.reason, "SHA-256") != NULL);
	assert_true(st.image[CL_DISK].io_errors >= 1);
	cl_meta_free(m);
	cl_lazy_close(l);
}

struct evctx {
	int calls;
	ssize_t r;
};

static void ev_done(void *ctx, ssize_t r)
{
	struct evctx *e = ctx;

	e->calls++;
	e->r = r;
}

static void test_events(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1, .no_stream = 1};
	struct cl_lazy_event ev[8];
	struct evctx e = {0};
	struct cl_lazy *l;
	uint8_t buf[8192];
	void *h;

	(void)state;
	make_overlay("ov-ev", 0);
	l = open_lazy("ov-ev", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	h = cl_lazy_events_wait(l, CL_DISK, CL_EV_ACCESSED, 0, ev_done, &e);
	assert_non_null(h);
	assert_int_equal(e.calls, 0);
	assert_int_equal(io(l, 0, CL_DISK, 5 * CL_TEST_CS, 8192, buf), 8192);
	assert_int_equal(e.calls, 1);
	assert_int_equal(e.r, 0);
	assert_int_equal(cl_lazy_events(l, CL_DISK, CL_EV_ACCESSED, 0, ev, 8), 2);
	assert_int_equal(ev[0].chunk, 5);
	assert_int_equal(ev[1].chunk, 6);
	assert_true(ev[1].usec >= ev[0].usec);
	/* Already seen chunks are not repeated. */
	assert_int_equal(io(l, 0, CL_DISK, 5 * CL_TEST_CS, 10, buf), 10);
	assert_int_equal(cl_lazy_events(l, CL_DISK, CL_EV_ACCESSED, 2, ev, 8), 0);
	h = cl_lazy_events_wait(l, CL_DISK, CL_EV_MODIFIED, 0, ev_done, &e);
	cl_lazy_events_cancel(l, h);
	assert_int_equal(e.calls, 2);
	assert_int_equal(e.r, -ECANCELED);
	h = cl_lazy_events_wait(l, CL_DISK, CL_EV_MODIFIED, 0, ev_done, &e);
	cl_lazy_shutdown(l);
	assert_int_equal(e.calls, 3);
	assert_int_equal(e.r, -ESHUTDOWN);
	cl_lazy_close(l);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void change_keep_mtime(const char *file, uint64_t off, size_t len, const void *data)
{
	assert_int_equal(cl_test_change_keep_mtime(file, off, len, data), 0);
}

/* Base chunks changed in place, mtime kept: an unchanged disk chunk (3), the
 * source of a base-copy record (disk 7 = memory 10) and a punched hole where
 * the index says data (disk 5). Reads that need them fail with EIO, counted
 * and named in the reason; every other byte is still right. */
static void test_base_damage(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1};
	const uint64_t cs = CL_TEST_CS;
	size_t orig_len;
	uint8_t *orig = cl_test_read(path("bd"), &orig_len), bad[16], buf[3 * CL_TEST_CS];
	struct cl_lazy_stats st;
	struct cl_lazy *l;
	char want_reason[600];

	(void)state;
	assert_non_null(orig);
	make_overlay("ov-base", 0);
	memcpy(bad, orig + 3 * cs + 100, sizeof(bad));
	bad[0] ^= 0x55;
	change_keep_mtime(path("bd"), 3 * cs + 100, sizeof(bad), bad);
	memcpy(bad, orig + 7 * cs, sizeof(bad));
	bad[5] ^= 1;
	change_keep_mtime(path("bd"), 7 * cs, sizeof(bad), bad);
	change_keep_mtime(path("bd"), 5 * cs, cs, NULL);

	l = open_lazy("ov-base", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	/* One read over chunks 1..4 (checked in one go) fails whole. */
	assert_int_equal(io(l, 0, CL_DISK, 1 * cs + 7, 3 * cs, buf), -EIO);
	/* Neighbours: their bytes come out right. */
	assert_int_equal(io(l, 0, CL_DISK, 2 * cs, cs, buf), (ssize_t)cs);
	assert_memory_equal(buf, want[CL_DISK] + 2 * cs, cs);
	assert_int_equal(io(l, 0, CL_DISK, 4 * cs + 1, cs - 2, buf), (ssize_t)cs - 2);
	assert_memory_equal(buf, want[CL_DISK] + 4 * cs + 1, cs - 2);
	assert_int_equal(io(l, 0, CL_DISK, 160 * cs, cs, buf), (ssize_t)cs);
	assert_memory_equal(buf, want[CL_DISK] + 160 * cs, cs);
	/* A read that touches chunk 3 only in its first byte fails whole. */
	assert_int_equal(io(l, 0, CL_DISK, 2 * cs, cs + 1, buf), -EIO);
	cl_lazy_stats(l, &st);
	snprintf(want_reason, sizeof(want_reason), "base %s chunk 3: SHA-256 mismatch", path("bd"));
	assert_non_null(strstr(st.reason, want_reason));
	assert_int_equal(st.image[CL_DISK].io_errors, 2);
	/* Checked once per mount, but a bad chunk never becomes good. */
	assert_int_equal(io(l, 0, CL_DISK, 3 * cs + 100, 1, buf), -EIO);
	assert_int_equal(io(l, 0, CL_DISK, 5 * cs, 10, buf), -EIO);
	cl_lazy_stats(l, &st);
	snprintf(want_reason, sizeof(want_reason), "base %s chunk 5: a hole where the index",
	         path("bd"));
	assert_non_null(strstr(st.reason, want_reason));
	assert_int_equal(io(l, 0, CL_MEMORY, 10 * cs, 8, buf), -EIO);
	cl_lazy_stats(l, &st);
	snprintf(want_reason, sizeof(want_reason), "base %s chunk 7:", path("bd"));
	assert_non_null(strstr(st.reason, want_reason));
	assert_int_equal(st.image[CL_DISK].io_errors, 4);
	assert_int_equal(st.image[CL_MEMORY].io_errors, 1);
	/* The rest of both images is untouched. */
	assert_int_equal(io(l, 0, CL_MEMORY, 9 * cs, cs, buf), (ssize_t)cs);
	assert_memory_equal(buf, want[CL_MEMORY] + 9 * cs, cs);
	assert_int_equal(io(l, 0, CL_DISK, 6 * cs, cs, buf), (ssize_t)cs);
	assert_memory_equal(buf, want[CL_DISK] + 6 * cs, cs);
	assert_int_equal(io(l, 0, CL_DISK, 200 * cs, 3 * cs, buf), (ssize_t)(3 * cs));
	assert_memory_equal(buf, want[CL_DISK] + 200 * cs, 3 * cs);
	cl_lazy_close(l);

	/* Put the base back (mtime kept): the same overlay is served whole. */
	change_keep_mtime(path("bd"), 3 * cs, 5 * cs, orig + 3 * cs);
	l = open_lazy("ov-base", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	check_all(l, 3 * cs);
	cl_lazy_close(l);
	free(orig);
}

/* A base chunk that a delta decodes against (disk 25, one of the edits of
 * disk 20..39), changed in place: the delta's segment cannot be made, so
 * reads that need it fail with EIO at once (not at their timeout), named. */
static void test_base_delta_source(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1, .timeout_ms = 20000};
	const uint64_t cs = CL_TEST_CS;
	size_t orig_len;
	uint8_t *orig = cl_test_read(path("bd"), &orig_len), bad[1], buf[CL_TEST_CS];
	struct cl_lazy_stats st;
	struct cl_lazy *l;
	char want_reason[600];
	double t0;

	(void)state;
	assert_non_null(orig);
	make_overlay("ov-delta", 0);
	bad[0] = orig[25 * cs + 3000] ^ 0x20;
	change_keep_mtime(path("bd"), 25 * cs + 3000, 1, bad);
	l = open_lazy("ov-delta", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	t0 = now_s();
	assert_int_equal(io(l, 0, CL_DISK, 25 * cs, cs, buf), -EIO);
	assert_true(now_s() - t0 < 10);
	cl_lazy_stats(l, &st);
	snprintf(want_reason, sizeof(want_reason), "base %s chunk 25: SHA-256 mismatch",
	         path("bd"));
	assert_non_null(strstr(st.reason, want_reason));
	/* Chunks of other segments are served. */
	assert_int_equal(io(l, 0, CL_MEMORY, 100 * cs, cs, buf), (ssize_t)cs);
	assert_memory_equal(buf, want[CL_MEMORY] + 100 * cs, cs);
	cl_lazy_close(l);
	free(orig);
}

/* Sequential reads of a long run of unchanged base chunks (disk 40..143),
 * each chunk checked once: a chunk changed in place in the middle (disk
 * 100) fails the read that needs it, named, and the reads after it are
 * right; put back, every chunk of the run is checked and served. */
static void test_base_sequential(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1};
	const uint64_t cs = CL_TEST_CS, step = 8 * cs;
	size_t orig_len;
	uint8_t *orig = cl_test_read(path("bd"), &orig_len), bad[1], *buf = malloc(step);
	struct cl_lazy_stats st;
	struct cl_lazy *l;
	char want_reason[600];
	uint64_t off;
	int pass;

	(void)state;
	assert_non_null(orig);
	assert_non_null(buf);
	make_overlay("ov-seq", 0);
	for (pass = 0; pass < 2; pass++) {
		if (pass == 0) {
			bad[0] = orig[100 * cs + 17] ^ 0x80;
			change_keep_mtime(path("bd"), 100 * cs + 17, 1, bad);
		}
		l = open_lazy("ov-seq", &o);
		assert_int_equal(cl_lazy_start(l), 0);
		for (off = 40 * cs; off < 144 * cs; off += step) {
			if (pass == 0 && off <= 100 * cs && 100 * cs < off + step) {
				assert_int_equal(io(l, 0, CL_DISK, off, step, buf), -EIO);
				continue;
			}
			assert_int_equal(io(l, 0, CL_DISK, off, step, buf), (ssize_t)step);
			assert_memory_equal(buf, want[CL_DISK] + off, step);
		}
		cl_lazy_stats(l, &st);
		if (pass == 0) {
			snprintf(want_reason, sizeof(want_reason),
			         "base %s chunk 100: SHA-256 mismatch", path("bd"));
			assert_non_null(strstr(st.reason, want_reason));
			assert_int_equal(st.image[CL_DISK].io_errors, 1);
			assert_int_equal(st.base_checked, 100); /* 40..99, 104..143 */
			change_keep_mtime(path("bd"), 100 * cs + 17, 1, orig + 100 * cs + 17);
		} else {
			assert_int_equal(st.image[CL_DISK].io_errors, 0);
			assert_int_equal(st.base_checked, 104);
		}
		cl_lazy_close(l);
	}
	free(buf);
	free(orig);
}

/* Unchanged base chunks the index records as zero (disk 151..199) are zeros
 * without a read: one now holding other bytes (170) and one punched to a
 * hole (171) still read as zeros, the first time (with their data
 * neighbours, 148..150, checked in the same run) and later; a hole where the
 * index says data (140) is still EIO. */
static void test_base_index_zero(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1};
	const uint64_t cs = CL_TEST_CS;
	uint8_t junk[CL_TEST_CS], buf[30 * CL_TEST_CS];
	struct cl_lazy_stats st;
	struct cl_lazy *l;
	int pass;

	(void)state;
	make_overlay("ov-izero", 0);
	memset(junk, 0x5a, sizeof(junk));
	change_keep_mtime(path("bd"), 170 * cs, cs, junk);
	change_keep_mtime(path("bd"), 171 * cs, cs, NULL);
	change_keep_mtime(path("bd"), 140 * cs, cs, NULL);
	l = open_lazy("ov-izero", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	for (pass = 0; pass < 2; pass++) {
		assert_int_equal(io(l, 0, CL_DISK, 148 * cs, 30 * cs, buf), (ssize_t)(30 * cs));
		assert_memory_equal(buf, want[CL_DISK] + 148 * cs, 30 * cs);
		assert_int_equal(io(l, 0, CL_DISK, 170 * cs + 7, 100, buf), 100);
		assert_memory_equal(buf, want[CL_DISK] + 170 * cs + 7, 100);
	}
	cl_lazy_stats(l, &st);
	assert_int_equal(st.base_checked, 3); /* the data chunks 148..150 only */
	assert_int_equal(io(l, 0, CL_DISK, 140 * cs, cs, buf), -EIO);
	cl_lazy_stats(l, &st);
	assert_non_null(strstr(st.reason, "chunk 140: a hole where the index says data"));
	cl_lazy_close(l);
}

/* A delta against a base chunk the index records as zero (disk 160 of a
 * customized disk that gets a few bytes there) decodes against zeros, as
 * apply does, whatever the base holds there now. */
static void test_delta_index_zero(void **state)
{
	struct cl_lazy_opts o = {.no_cache = 1};
	const uint64_t cs = CL_TEST_CS;
	uint8_t junk[CL_TEST_CS], buf[CL_TEST_CS], *nd;
	struct cl_meta *m;
	struct cl_lazy *l;
	size_t len;

	(void)state;
	assert_int_equal(cl_test_izero_disk(dir, "nd-dizero"), 0);
	assert_int_equal(cl_test_overlay_disk(dir, "ov-dizero", 0, "nd-dizero"), 0);
	assert_int_equal(cl_meta_load(path("ov-dizero"), &m, NULL), 0);
	assert_int_equal(cl_test_recipe_of(m, CL_DISK, 160), CL_R_DELTA);
	cl_meta_free(m);
	memset(junk, 0x5a, sizeof(junk));
	change_keep_mtime(path("bd"), 160 * cs, cs, junk);
	nd = cl_test_read(path("nd-dizero"), &len);
	assert_non_null(nd);
	l = open_lazy("ov-dizero", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	assert_int_equal(io(l, 0, CL_DISK, 160 * cs, cs, buf), (ssize_t)cs);
	assert_memory_equal(buf, nd + 160 * cs, cs);
	cl_lazy_close(l);
	free(nd);
}

/* cl_lazy_read_segs: the parts put together are the image, at odd offsets
 * and sizes; a first use (base chunks checked, cache chunks hashed) is
 * answered from the buffer, later reads leave checked bytes in the files. */
static void test_read_segs(void **state)
{
	struct cl_lazy_opts o = {0};
	struct cl_lazy_stats st;
	const size_t step = 5 * CL_TEST_CS + 123;
	uint8_t *out = malloc(step);
	size_t in_files[2] = {0, 0}, off, n;
	struct cl_lazy *l;
	int im, pass;

	(void)state;
	assert_non_null(out);
	make_overlay("ov-segs", 0);
	l = open_lazy("ov-segs", &o);
	assert_int_equal(cl_lazy_start(l), 0);
	stats_complete(l, &st);
	cl_lazy_close(l);
	l = open_lazy("ov-segs", &o); /* the cache complete, nothing checked yet */
	for (pass = 0; pass < 2; pass++)
		for (im = 0; im < CL_NIMAGES; im++)
			for (off = 0; off < want_len[im]; off += step) {
				n = want_len[im] - off < step ? want_len[im] - off : step;
				assert_int_equal(io_segs(l, im, off, step, out, &in_files[pass]),
				                 (ssize_t)n);
				assert_memory_equal(out, want[im] + off, n);
			}
	/* First pass: only what the pieces straddling two reads checked. */
	assert_true(in_files[0] < in_files[1] / 4);
	assert_true(in_files[1] > want_len[CL_DISK] / 2);
	cl_lazy_close(l);
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_demand_reads),
	    cmocka_unit_test(test_concurrent),
	    cmocka_unit_test(test_copy_on_write),
	    cmocka_unit_test(test_cache_reuse),
	    cmocka_unit_test(test_bounded_waits),
	    cmocka_unit_test(test_shutdown_wakes),
	    cmocka_unit_test(test_corrupt_pack),
	    cmocka_unit_test(test_events),
	    cmocka_unit_test_teardown(test_base_damage, restore_base),
	    cmocka_unit_test_teardown(test_base_delta_source, restore_base),
	    cmocka_unit_test_teardown(test_base_sequential, restore_base),
	    cmocka_unit_test_teardown(test_base_index_zero, restore_base),
	    cmocka_unit_test_teardown(test_delta_index_zero, restore_base),
	    cmocka_unit_test(test_read_segs),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
