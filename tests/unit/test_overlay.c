/* Overlay creation and synthesis through the library, on generated images. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl_overlay.h"
#include "cl_synth.h"

#define CS 4096

static char dir[] = "/tmp/cl-test-overlay-XXXXXX";

static char *path(const char *name)
{
	static char buf[8][256];
	static int slot;

	slot = (slot + 1) & 7;
	snprintf(buf[slot], sizeof(buf[slot]), "%s/%s", dir, name);
	return buf[slot];
}

/* xorshift64*: an LCG's low bits repeat within a few chunks, which would
 * turn "random" chunks into duplicates. */
static uint32_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return (uint32_t)((*s * 2685821657736338717ull) >> 32);
}

static void write_file(const char *name, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path(name), "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static uint8_t *read_all(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	uint8_t *buf;
	long n;

	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* Base: disk of 300 chunks + 100 bytes, memory of 200 chunks. The new VM
 * exercises every recipe. */
static void make_images(void)
{
	size_t dsz = 300 * CS + 100, msz = 200 * CS, i;
	uint8_t *bd = calloc(1, dsz), *bm = calloc(1, msz), *nd, *nm;
	uint64_t s = 42;

	for (i = 0; i < dsz / 2; i++)
		bd[i] = (uint8_t)rnd(&s);
	for (i = 0; i < msz; i++)
		bm[i] = (uint8_t)(i / CS);
	nd = malloc(dsz + 2 * CS);
	nm = malloc(msz);
	memcpy(nd, bd, dsz);
	memset(nd + dsz, 0xee, 2 * CS); /* grown by two chunks */
	memcpy(nm, bm, msz);
	memset(nd, 0, CS);                      /* zero */
	memcpy(nd + 200 * CS, bm + 5 * CS, CS); /* base memory copy */
	memcpy(nm + 10 * CS, bd + 7 * CS, CS);  /* base disk copy */
	for (i = 0; i < 20; i++)                /* sparse edits: delta */
		nd[(20 + i) * CS + 99] ^= 0xff;
	for (i = 0; i < 30 * CS; i++)           /* new data: raw */
		nm[100 * CS + i] = (uint8_t)rnd(&s);
	memcpy(nd + 250 * CS, nm + 100 * CS, 3 * CS); /* dedup across images */
	nd[dsz + 2 * CS - 1] = 1;                     /* partial last chunk */
	write_file("bd", bd, dsz);
	write_file("bm", bm, msz);
	write_file("nd", nd, dsz + 2 * CS);
	write_file("nm", nm, msz);
	write_file("state", (const uint8_t *)"device state", 12);
	free(bd);
	free(bm);
	free(nd);
	free(nm);
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	setenv("CLOUDLET_HOME", path("home"), 1);
	make_images();
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd);
}

static void assert_same_file(const char *a, const char *b)
{
	size_t la, lb;
	uint8_t *da = read_all(a, &la), *db = read_all(b, &lb);

	assert_int_equal(la, lb);
	assert_memory_equal(da, db, la);
	free(da);
	free(db);
}

static void roundtrip(enum cl_codec codec, uint32_t segsize, const char *trace)
{
	struct cl_overlay_opts o = {.codec = codec, .level = 1, .segment_size = segsize};
	struct cl_overlay_stats st;
	struct cl_apply_stats as;
	struct cl_base *b, *found;
	struct cl_meta *m;
	char *loc;

	o.state = path("state");
	o.trace = trace;
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CS, &b), 0);
	assert_int_equal(cl_base_register(b, NULL, NULL), 0);
	assert_int_equal(cl_base_find(path("bd"), &found), 0);
	assert_memory_equal(found->id, b->id, CL_SHA256_LEN);
	assert_int_equal(cl_overlay_create(found, path("nd"), path("nm"), path("ov"), &o, &st), 0);
	assert_int_equal(st.chunks[CL_DISK][CL_R_ZERO], 1);
	assert_int_equal(st.chunks[CL_DISK][CL_R_BASE_MEMORY], 1);
	assert_int_equal(st.chunks[CL_MEMORY][CL_R_BASE_DISK], 1);
	/* 20 edits, plus the three chunks past the base's end: runs of 0xee
	 * delta-encode against the zero-filled base view. */
	assert_int_equal(st.chunks[CL_DISK][CL_R_DELTA], 23);
	assert_int_equal(st.chunks[CL_MEMORY][CL_R_RAW], 30);
	assert_int_equal(st.chunks[CL_DISK][CL_R_DEDUP] + st.chunks[CL_MEMORY][CL_R_DEDUP], 3);
	assert_int_equal(cl_meta_load(path("ov"), &m, &loc), 0);
	assert_int_equal(cl_apply(found, m, loc, path("out"), &as), 0);
	assert_same_file(path("nd"), path("out/disk.img"));
	assert_same_file(path("nm"), path("out/memory.img"));
	assert_same_file(path("state"), path("out/state"));
	assert_int_equal(access(path("out/domain.xml"), F_OK), -1);
	assert_int_equal(cl_verify(found, m, loc, &as), 0);
	assert_int_equal(as.chunks_bad, 0);
	assert_int_equal(as.chunks_ok, m->nchunks);
	if (trace) {
		assert_int_equal(st.traced, 2);
		assert_int_equal(m->chunks[0].image, CL_DISK);
		assert_int_equal(m->chunks[0].index, 25);
		assert_int_equal(m->chunks[1].image, CL_MEMORY);
		assert_int_equal(m->chunks[1].index, 105);
	}
	cl_meta_free(m);
	free(loc);
	cl_base_free(found);
	cl_base_free(b);
}

static void test_roundtrip_xz(void **state)
{
	(void)state;
	roundtrip(CL_CODEC_XZ, 0, NULL);
}

static void test_roundtrip_zstd_small_segments(void **state)
{
	(void)state;
	roundtrip(CL_CODEC_ZSTD, CS, NULL);
}

static void test_trace_order(void **state)
{
	/* Unchanged chunks in a trace are ignored; changed ones come first. */
	const char *t = "disk 1\ndisk 25\nmemory 105\ndisk 25\n";

	(void)state;
	write_file("trace", (const uint8_t *)t, strlen(t));
	roundtrip(CL_CODEC_XZ, 0, path("trace"));
}

/* A corrupted segment or a wrong base never yields bytes. */
static void test_faults(void **state)
{
	struct cl_overlay_opts o = {.level = 1};
	struct cl_apply_stats as;
	struct cl_base *b, *other;
	struct cl_meta *m;
	size_t len;
	uint8_t *pack;
	char *loc;
	int fd;

	(void)state;
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CS, &b), 0);
	assert_int_equal(cl_overlay_create(b, path("nd"), path("nm"), path("ov2"), &o, NULL), 0);
	assert_int_equal(cl_meta_load(path("ov2/overlay-meta"), &m, &loc), 0);

	/* The new VM as a base: a different base id. */
	assert_int_equal(cl_base_index(path("nd"), path("nm"), CS, &other), 0);
	assert_int_equal(cl_apply(other, m, loc, path("out2"), NULL), -EXDEV);
	assert_int_equal(access(path("out2/disk.img"), F_OK), -1);
	cl_base_free(other);

	pack = read_all(path("ov2/overlay-blob"), &len);
	fd = open(path("ov2/overlay-blob"), O_WRONLY);
	pack[len / 2] ^= 1;
	assert_int_equal(pwrite(fd, pack + len / 2, 1, (off_t)(len / 2)), 1);
	close(fd);
	free(pack);
	assert_int_equal(cl_verify(b, m, loc, &as), -EBADMSG);
	assert_int_equal(as.segments_bad, 1);
	assert_true(as.chunks_bad > 0);
	assert_int_equal(cl_apply(b, m, loc, path("out2"), NULL), -EBADMSG);
	assert_int_equal(access(path("out2/disk.img"), F_OK), -1);
	assert_int_equal(access(path("out2/memory.img"), F_OK), -1);
	cl_meta_free(m);
	free(loc);
	cl_base_free(b);
}

/* A chunk whose base bytes changed under it fails its hash check. */
static void test_chunk_hash(void **state)
{
	struct cl_overlay_opts o = {.level = 1};
	struct cl_base *b;
	struct cl_meta *m;
	uint8_t out[CS];
	uint64_t i;
	char *loc;

	(void)state;
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CS, &b), 0);
	assert_int_equal(cl_overlay_create(b, path("nd"), path("nm"), path("ov3"), &o, NULL), 0);
	assert_int_equal(cl_meta_load(path("ov3"), &m, &loc), 0);
	for (i = 0; i < m->nchunks; i++) {
		if (m->chunks[i].recipe != CL_R_BASE_DISK)
			continue;
		assert_int_equal(cl_chunk_synthesize(m, b, &m->chunks[i], NULL, out), 0);
		m->chunks[i].sha256[0] ^= 1;
		assert_int_equal(cl_chunk_synthesize(m, b, &m->chunks[i], NULL, out), -EBADMSG);
		m->chunks[i].sha256[0] ^= 1;
	}
	cl_meta_free(m);
	free(loc);
	cl_base_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_xz),
		cmocka_unit_test(test_roundtrip_zstd_small_segments),
		cmocka_unit_test(test_trace_order),
		cmocka_unit_test(test_faults),
		cmocka_unit_test(test_chunk_hash),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
