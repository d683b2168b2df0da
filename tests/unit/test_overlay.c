/* SPDX-License-Identifier: GPL-2.0-only */
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

#include "cl_error.h"
#include "cl_overlay.h"
#include "cl_synth.h"
#include "cl_util.h"

#include "cl_testimg.h"

#define CS CL_TEST_CS

static char dir[4096];

static const char *path(const char *name)
{
	return cl_test_path(dir, name);
}

static int setup(void **state)
{
	(void)state;
	return cl_test_images(dir);
}

static int teardown(void **state)
{
	(void)state;
	cl_test_cleanup(dir);
	return 0;
}

static void write_file(const char *name, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path(name), "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void assert_same_file(const char *a, const char *b)
{
	size_t la, lb;
	uint8_t *da = cl_test_read(a, &la), *db = cl_test_read(b, &lb);

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
	assert_int_equal(cl_verify(found, m, loc, NULL, NULL, &as), 0);
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

/* With the default segment size, runs of incompressible payloads close
 * their segment at 64 KiB; compressible ones fill 256 KiB; an explicit size
 * is exact. Chunks 0-99 of the new disk are random, 100-299 text. */
static void dense_overlay(uint32_t segsize, const char *out, struct cl_meta **m)
{
	struct cl_overlay_opts o = {.level = 1, .segment_size = segsize};
	struct cl_apply_stats as;
	struct cl_base *b;
	char *loc;

	assert_int_equal(cl_base_index(path("bd"), path("bm"), CS, &b), 0);
	assert_int_equal(cl_overlay_create(b, path("dn"), path("bm"), path(out), &o, NULL), 0);
	assert_int_equal(cl_meta_load(path(out), m, &loc), 0);
	assert_int_equal(cl_verify(b, *m, loc, NULL, NULL, &as), 0);
	assert_int_equal(as.chunks_bad, 0);
	free(loc);
	cl_base_free(b);
}

static void test_dense_segments(void **state)
{
	size_t len = 300 * CS + 100, i;
	uint8_t *d = malloc(len);
	struct cl_meta *m;
	uint32_t x = 12345;

	(void)state;
	assert_non_null(d);
	for (i = 0; i < 100 * CS; i++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		d[i] = (uint8_t)(x >> 11);
	}
	for (; i < len; i += 16)
		snprintf((char *)d + i, len - i, "line %09zu ", i);
	write_file("dn", d, len);
	free(d);

	dense_overlay(0, "dense", &m);
	assert_int_equal(m->nsegments, 7); /* six of random data, one of the rest */
	for (i = 0; i < 6; i++)
		assert_int_equal(m->segments[i].rlen, 64u << 10);
	assert_true(m->segments[6].rlen > (64u << 10) && m->segments[6].rlen < CL_SEGMENT_TARGET);
	cl_meta_free(m);

	dense_overlay(1u << 20, "exact", &m);
	assert_true(m->segments[0].rlen > (64u << 10));
	cl_meta_free(m);
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

	pack = cl_test_read(path("ov2/overlay-blob"), &len);
	fd = open(path("ov2/overlay-blob"), O_WRONLY);
	pack[len / 2] ^= 1;
	assert_int_equal(pwrite(fd, pack + len / 2, 1, (off_t)(len / 2)), 1);
	close(fd);
	free(pack);
	assert_int_equal(cl_verify(b, m, loc, NULL, NULL, &as), -EBADMSG);
	assert_int_equal(as.segments_bad, 1);
	assert_true(as.chunks_bad > 0);
	assert_int_equal(cl_apply(b, m, loc, path("out2"), NULL), -EBADMSG);
	assert_int_equal(access(path("out2/disk.img"), F_OK), -1);
	assert_int_equal(access(path("out2/memory.img"), F_OK), -1);
	cl_meta_free(m);
	free(loc);
	cl_base_free(b);
}

static int restore_base(void **state)
{
	(void)state;
	return cl_test_restore_base(dir);
}

/* Base chunks the index records as zero are zeros to apply, neither read
 * nor hashed, whatever the base holds there now: disk 170, unchanged, and
 * disk 160, the source of a delta (the customized disk gets a few bytes
 * there). */
static void test_apply_index_zero(void **state)
{
	struct cl_overlay_opts o = {.level = 1};
	uint8_t junk[CS];
	struct cl_base *b;
	struct cl_meta *m;
	char *loc;

	(void)state;
	assert_int_equal(cl_test_izero_disk(dir, "nd-izero"), 0);
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CS, &b), 0);
	assert_int_equal(
	    cl_overlay_create(b, path("nd-izero"), path("nm"), path("ov-izero"), &o, NULL), 0);
	assert_int_equal(cl_meta_load(path("ov-izero"), &m, &loc), 0);
	assert_int_equal(cl_test_recipe_of(m, CL_DISK, 160), CL_R_DELTA);
	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(cl_test_change_keep_mtime(path("bd"), 160 * CS, CS, junk), 0);
	assert_int_equal(cl_test_change_keep_mtime(path("bd"), 170 * CS, CS, junk), 0);
	assert_int_equal(cl_apply(b, m, loc, path("out-izero"), NULL), 0);
	assert_same_file(path("nd-izero"), path("out-izero/disk.img"));
	cl_meta_free(m);
	free(loc);
	cl_base_free(b);
}

/* Deltas are made against the base as its index has it: a chunk the index
 * records as zero is zeros (disk 160, which holds junk when the overlay is
 * made), so the overlay applies once the base is intact again; a damaged
 * chunk with data (the source of the first delta) fails the creation,
 * naming the base file and chunk, with no overlay left behind. */
static void test_create_damaged_base(void **state)
{
	struct cl_overlay_opts o = {.level = 1};
	uint8_t junk[CS];
	struct cl_base *b;
	struct cl_meta *m;
	uint64_t k = 0, i;
	char *loc, want[64];

	(void)state;
	assert_int_equal(cl_test_izero_disk(dir, "nd-dmg"), 0);
	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CS, &b), 0);
	assert_int_equal(cl_test_change_keep_mtime(path("bd"), 160 * CS, CS, junk), 0);
	assert_int_equal(cl_overlay_create(b, path("nd-dmg"), path("nm"), path("ov-dmg"), &o, NULL),
	                 0);
	assert_int_equal(cl_test_restore_base(dir), 0);
	assert_int_equal(cl_meta_load(path("ov-dmg"), &m, &loc), 0);
	assert_int_equal(cl_test_recipe_of(m, CL_DISK, 160), CL_R_DELTA);
	assert_int_equal(cl_apply(b, m, loc, path("out-dmg"), NULL), 0);
	assert_same_file(path("nd-dmg"), path("out-dmg/disk.img"));
	for (i = 0; i < m->nchunks && !k; i++)
		if (m->chunks[i].recipe == CL_R_DELTA && m->chunks[i].image == CL_DISK &&
		    m->chunks[i].index != 160 && m->chunks[i].index < b->nchunks[CL_DISK])
			k = m->chunks[i].index;
	assert_true(k > 0);
	cl_meta_free(m);
	free(loc);
	assert_int_equal(cl_test_change_keep_mtime(path("bd"), k * CS, CS, junk), 0);
	assert_int_equal(
	    cl_overlay_create(b, path("nd-dmg"), path("nm"), path("ov-dmg2"), &o, NULL), -EBADMSG);
	snprintf(want, sizeof(want), "chunk %llu: SHA-256 mismatch", (unsigned long long)k);
	assert_non_null(strstr(cl_error_msg(), want));
	assert_non_null(strstr(cl_error_msg(), "/bd"));
	assert_int_equal(access(path("ov-dmg2"), F_OK), -1);
	cl_base_free(b);
}

/* cl_mkdir_p_made tells a directory this call made (with its parents, or
 * named with a trailing "/" or "/.") from one that was there. */
static void test_mkdir_made(void **state)
{
	static const char *const names[] = {"mk/a/b", "mk/c/", "mk/d/.", "mk/e//"};
	char p[sizeof(dir) + 32];
	size_t i;
	int made;

	(void)state;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		made = -1;
		assert_int_equal(cl_mkdir_p_made(p, 0755, &made), 0);
		assert_int_equal(made, 1);
		assert_int_equal(cl_mkdir_p_made(p, 0755, &made), 0);
		assert_int_equal(made, 0);
	}
	assert_int_equal(cl_mkdir_p_made("/", 0755, &made), 0);
	assert_int_equal(made, 0);
	write_file("mk-file", (const uint8_t *)"x", 1);
	snprintf(p, sizeof(p), "%s/mk-file/sub", dir);
	assert_int_equal(cl_mkdir_p_made(p, 0755, &made), -ENOTDIR);
	assert_int_equal(made, 0);
	assert_int_equal(cl_mkdir_p_made(path("mk-file"), 0755, &made), -ENOTDIR);
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
	    cmocka_unit_test(test_dense_segments),
	    cmocka_unit_test(test_faults),
	    cmocka_unit_test(test_chunk_hash),
	    cmocka_unit_test_teardown(test_apply_index_zero, restore_base),
	    cmocka_unit_test_teardown(test_create_damaged_base, restore_base),
	    cmocka_unit_test(test_mkdir_made),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
