/* SPDX-License-Identifier: GPL-2.0-only */
/* Unit tests for the base's chunk index as a check on the base's bytes: the
 * index is tied to the base id when opened, looked up without loading it,
 * and `cloudlet apply` refuses a base changed in place with its mtime kept,
 * naming the chunk and leaving no output. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cl_base.h"
#include "cl_error.h"
#include "cl_overlay.h"
#include "cl_synth.h"
#include "cl_testimg.h"

static char dir[4096];

static const char *path(const char *name)
{
	return cl_test_path(dir, name);
}

static int setup(void **state)
{
	struct cl_overlay_opts o = {.level = 1};
	struct cl_base *b;

	(void)state;
	if (cl_test_images(dir))
		return -1;
	if (cl_base_index(path("bd"), path("bm"), CL_TEST_CS, &b) ||
	    cl_base_register(b, NULL, NULL) ||
	    cl_overlay_create(b, path("nd"), path("nm"), path("ov"), &o, NULL))
		return -1;
	cl_base_free(b);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	cl_test_cleanup(dir);
	return 0;
}

/* Writes len bytes at off of file and puts its mtime back (`touch -r`). */
static void change_keep_mtime(const char *file, uint64_t off, size_t len, const void *data)
{
	struct timespec ts[2];
	struct stat st;
	int fd = open(file, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(pwrite(fd, data, len, (off_t)off), (ssize_t)len);
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	assert_int_equal(futimens(fd, ts), 0);
	close(fd);
}

static char *index_path(const struct cl_base *b)
{
	static char p[4200];

	snprintf(p, sizeof(p), "%s/index", b->dir);
	return p;
}

/* The opened index answers as the in-memory one, without loading it. */
static void test_open_index(void **state)
{
	struct cl_base *fresh, *b;
	uint8_t h[CL_SHA256_LEN];
	uint64_t k;
	int im;

	(void)state;
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CL_TEST_CS, &fresh), 0);
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	assert_int_equal(cl_base_chunk_hash(b, CL_DISK, 0, h), -EINVAL); /* not opened */
	assert_int_equal(cl_base_open_index(b), 0);
	assert_null(b->hash[CL_DISK]);
	assert_null(b->hash[CL_MEMORY]);
	assert_true(b->index_fd >= 0);
	for (im = 0; im < CL_NIMAGES; im++) {
		for (k = 0; k < b->nchunks[im]; k++) {
			assert_int_equal(cl_base_chunk_hash(b, im, k, h), 0);
			assert_memory_equal(h, fresh->hash[im][k], CL_SHA256_LEN);
		}
		assert_int_equal(cl_base_chunk_hash(b, im, k, h), -EINVAL);
	}
	cl_base_free(b);
	cl_base_free(fresh);
}

/* An index whose stream does not hash to the base id is refused, even with
 * a consistent checksum of its own; so is a flipped byte. */
static void test_index_tampered(void **state)
{
	struct cl_base *b;
	uint8_t *idx, digest[CL_SHA256_LEN];
	size_t len;
	char *p;

	(void)state;
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	p = strdup(index_path(b));
	idx = cl_test_read(p, &len);
	assert_non_null(idx);
	/* Chunk 3's hash changed, the file's checksum made to match. */
	idx[64 + 3 * CL_SHA256_LEN] ^= 1;
	cl_sha256(idx, len - CL_SHA256_LEN, digest);
	memcpy(idx + len - CL_SHA256_LEN, digest, CL_SHA256_LEN);
	change_keep_mtime(p, 0, len, idx);
	assert_int_equal(cl_base_open_index(b), -EBADMSG);
	assert_non_null(strstr(cl_error_msg(), "base id mismatch"));
	assert_int_equal(b->index_fd, -1);
	/* A byte flipped without fixing the checksum. */
	idx[64 + 3 * CL_SHA256_LEN] ^= 1;
	idx[64 + 9 * CL_SHA256_LEN] ^= 1;
	change_keep_mtime(p, 0, len, idx);
	assert_int_equal(cl_base_open_index(b), -EBADMSG);
	/* Put back: accepted again. */
	idx[64 + 9 * CL_SHA256_LEN] ^= 1;
	cl_sha256(idx, len - CL_SHA256_LEN, digest);
	memcpy(idx + len - CL_SHA256_LEN, digest, CL_SHA256_LEN);
	change_keep_mtime(p, 0, len, idx);
	assert_int_equal(cl_base_open_index(b), 0);
	free(idx);
	free(p);
	cl_base_free(b);
}

/* One base chunk that the overlay keeps unchanged (disk 60) or copies
 * (disk 7 -> memory 10) changed in place: apply fails naming the base file
 * and chunk and leaves no output; a full base check finds it too. */
static void damage_and_apply(uint64_t chunk, const char *out)
{
	const uint64_t cs = CL_TEST_CS;
	struct cl_base *b;
	struct cl_meta *m;
	uint8_t *orig, *bad;
	uint64_t nbad = 0;
	char want[600], *loc;
	size_t len;

	orig = cl_test_read(path("bd"), &len);
	assert_non_null(orig);
	bad = malloc(cs);
	memcpy(bad, orig + chunk * cs, cs);
	bad[cs - 1] ^= 0x80;
	change_keep_mtime(path("bd"), chunk * cs, cs, bad);

	assert_int_equal(cl_meta_load(path("ov"), &m, &loc), 0);
	assert_int_equal(cl_base_find(path("bd"), &b), 0); /* size and mtime agree */
	assert_int_equal(cl_apply(b, m, loc, path(out), NULL), -EIO);
	snprintf(want, sizeof(want), "base %s chunk %llu: SHA-256 mismatch", path("bd"),
	         (unsigned long long)chunk);
	assert_non_null(strstr(cl_error_msg(), want));
	assert_null(strchr(cl_error_msg(), '\n'));
	assert_int_equal(access(path(out), F_OK), 0); /* made, but left empty */
	snprintf(want, sizeof(want), "%s/disk.img", out);
	assert_int_equal(access(path(want), F_OK), -1);
	snprintf(want, sizeof(want), "%s/memory.img", out);
	assert_int_equal(access(path(want), F_OK), -1);
	assert_int_equal(rmdir(path(out)), 0);

	assert_int_equal(cl_base_check_all(b, 0, &nbad), -EIO);
	assert_int_equal(nbad, 1);
	cl_base_free(b);

	/* Put back: apply and the base check pass. */
	change_keep_mtime(path("bd"), chunk * cs, cs, orig + chunk * cs);
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	assert_int_equal(cl_apply(b, m, loc, path(out), NULL), 0);
	assert_int_equal(cl_base_check_all(b, 0, &nbad), 0);
	assert_int_equal(nbad, 0);
	cl_base_free(b);
	cl_meta_free(m);
	free(loc);
	free(orig);
	free(bad);
}

static void test_apply_unchanged(void **state)
{
	(void)state;
	damage_and_apply(60, "out-unchanged");
}

static void test_apply_base_copy(void **state)
{
	(void)state;
	damage_and_apply(7, "out-copy");
}

/* The registered device state is hashed into base.conf and checked when the
 * base is opened; a base.conf from before that (no state_sha256) loads. */
static void test_state_hash(void **state)
{
	struct cl_base *b;
	char conf[4200], *text, *line;
	size_t len;

	(void)state;
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CL_TEST_CS, &b), 0);
	assert_int_equal(cl_base_register(b, path("state"), NULL), 0);
	snprintf(conf, sizeof(conf), "%s/base.conf", b->dir);
	change_keep_mtime(b->state_path, 3, 1, "X");
	cl_base_free(b);
	assert_int_equal(cl_base_find(path("bd"), &b), -EBADMSG);
	assert_non_null(strstr(cl_error_msg(), "/state: SHA-256 mismatch"));
	/* An older base.conf: no hash recorded, nothing checked. */
	text = (char *)cl_test_read(conf, &len);
	assert_non_null(text);
	text = realloc(text, len + 1);
	text[len] = '\0';
	line = strstr(text, "state_sha256=");
	assert_non_null(line);
	memmove(line, strchr(line, '\n') + 1, strlen(strchr(line, '\n') + 1) + 1);
	assert_int_equal(truncate(conf, 0), 0);
	change_keep_mtime(conf, 0, strlen(text), text);
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	cl_base_free(b);
	free(text);
	/* Registered again: recorded and good. */
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CL_TEST_CS, &b), 0);
	assert_int_equal(cl_base_register(b, path("state"), NULL), 0);
	cl_base_free(b);
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	assert_non_null(b->state_path);
	cl_base_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_index),      cmocka_unit_test(test_index_tampered),
	    cmocka_unit_test(test_apply_unchanged), cmocka_unit_test(test_apply_base_copy),
	    cmocka_unit_test(test_state_hash),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
