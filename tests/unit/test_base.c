/* SPDX-License-Identifier: GPL-2.0-only */
/* Unit tests for the base's chunk index as a check on the base's bytes: the
 * index is tied to the base id when opened, looked up without loading it,
 * and `cloudlet apply` refuses a base changed in place with its mtime kept,
 * naming the chunk and leaving no output. */
#include <errno.h>
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

static void change_keep_mtime(const char *file, uint64_t off, size_t len, const void *data)
{
	assert_int_equal(cl_test_change_keep_mtime(file, off, len, data), 0);
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

/* A cl_report_fn keeping the last message. */
static void remember(void *ctx, const char *msg)
{
	snprintf(ctx, 600, "%s", msg);
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
	assert_non_null(strstr(cl_error_msg(), "base id mismatch"));
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

/* A failed assert in a test that damages bd must not leave the damage to
 * the tests after it. */
static int restore_base(void **state)
{
	(void)state;
	return cl_test_restore_base(dir);
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
	char want[600], reported[600], *loc;
	size_t len;

	orig = cl_test_read(path("bd"), &len);
	assert_non_null(orig);
	bad = malloc(cs);
	memcpy(bad, orig + chunk * cs, cs);
	bad[cs - 1] ^= 0x80;
	change_keep_mtime(path("bd"), chunk * cs, cs, bad);

	assert_int_equal(cl_meta_load(path("ov"), &m, &loc), 0);
	assert_int_equal(cl_base_find(path("bd"), &b), 0); /* size and mtime agree */
	assert_int_equal(cl_apply(b, m, loc, path(out), NULL), -EBADMSG);
	snprintf(want, sizeof(want), "base %s chunk %llu: SHA-256 mismatch", path("bd"),
	         (unsigned long long)chunk);
	assert_non_null(strstr(cl_error_msg(), want));
	assert_null(strchr(cl_error_msg(), '\n'));
	assert_int_equal(access(path(out), F_OK), -1); /* the directory it made is gone */
	/* Into a directory that exists: nothing left in it. */
	assert_int_equal(mkdir(path(out), 0755), 0);
	assert_int_equal(cl_apply(b, m, loc, path(out), NULL), -EBADMSG);
	assert_int_equal(rmdir(path(out)), 0); /* fails unless empty */

	reported[0] = '\0';
	assert_int_equal(cl_base_check_all(b, remember, reported, &nbad), -EBADMSG);
	assert_int_equal(nbad, 1);
	assert_non_null(strstr(reported, want));
	cl_base_free(b);

	/* Put back: apply and the base check pass. */
	change_keep_mtime(path("bd"), chunk * cs, cs, orig + chunk * cs);
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	assert_int_equal(cl_apply(b, m, loc, path(out), NULL), 0);
	assert_int_equal(cl_base_check_all(b, NULL, NULL, &nbad), 0);
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

static void write_text(const char *file, const char *text)
{
	FILE *f = fopen(file, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/* Drops every sha256.* line of a base.conf, as written before them. */
static void strip_hashes(const char *conf)
{
	char *text, *line;
	size_t len;

	text = (char *)cl_test_read(conf, &len);
	assert_non_null(text);
	text = realloc(text, len + 1);
	text[len] = '\0';
	while ((line = strstr(text, "sha256.")))
		memmove(line, strchr(line, '\n') + 1, strlen(strchr(line, '\n') + 1) + 1);
	write_text(conf, text);
	free(text);
}

/* The registry's device state and domain XML are hashed into base.conf and
 * checked when the base is opened; a base.conf from before (no hashes)
 * loads. */
static void test_file_hashes(void **state)
{
	struct cl_base *b;
	char conf[4200];

	(void)state;
	write_text(path("dom.xml"), "<domain type='kvm'><name>b</name></domain>\n");
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CL_TEST_CS, &b), 0);
	assert_int_equal(cl_base_register(b, path("state"), path("dom.xml")), 0);
	snprintf(conf, sizeof(conf), "%s/base.conf", b->dir);
	assert_int_equal(b->nfiles, 2);
	cl_base_free(b);
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	assert_int_equal(b->nfiles, 2);
	change_keep_mtime(b->state_path, 3, 1, "X");
	cl_base_free(b);
	assert_int_equal(cl_base_find(path("bd"), &b), -EBADMSG);
	assert_non_null(strstr(cl_error_msg(), "/state: SHA-256 mismatch"));
	/* An older base.conf: nothing recorded, nothing checked. */
	strip_hashes(conf);
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	assert_int_equal(b->nfiles, 0);
	/* Sealed again: the domain XML, changed in place, is refused. */
	assert_int_equal(cl_base_seal(b), 0);
	change_keep_mtime(b->domain_path, 1, 1, "D");
	cl_base_free(b);
	assert_int_equal(cl_base_find(path("bd"), &b), -EBADMSG);
	assert_non_null(strstr(cl_error_msg(), "/domain.xml: SHA-256 mismatch"));
	/* Registered again: recorded and good. */
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CL_TEST_CS, &b), 0);
	assert_int_equal(cl_base_register(b, path("state"), path("dom.xml")), 0);
	cl_base_free(b);
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	cl_base_free(b);
}

/* A domain XML that boots a kernel: registration records the state only
 * (`cloudlet base --kernel` completes the directory afterwards); sealing
 * then records the kernel, which cl_base_check_file checks. */
static void test_kernel_seal(void **state)
{
	struct cl_base *b;
	char kernel[4200];

	(void)state;
	write_text(path("domk.xml"), "<domain type='kvm'><name>k</name><os>"
	                             "<kernel>/boot/vmlinuz</kernel></os></domain>\n");
	assert_int_equal(cl_base_index(path("bd"), path("bm"), CL_TEST_CS, &b), 0);
	assert_int_equal(cl_base_register(b, path("state"), path("domk.xml")), 0);
	assert_int_equal(b->nfiles, 1);
	assert_string_equal(b->files[0].name, "state");
	cl_base_free(b);
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", b->dir);
	write_text(kernel, "a kernel");
	assert_int_equal(cl_base_check_file(b, kernel), 0); /* not recorded yet */
	assert_int_equal(cl_base_seal(b), 0);
	assert_int_equal(b->nfiles, 3);
	assert_int_equal(cl_base_check_file(b, kernel), 0);
	assert_int_equal(cl_base_check_file(b, path("bd")), 0); /* not a registry file */
	change_keep_mtime(kernel, 0, 1, "A");
	assert_int_equal(cl_base_check_file(b, kernel), -EBADMSG);
	assert_non_null(strstr(cl_error_msg(), "/vmlinuz: SHA-256 mismatch"));
	cl_base_free(b);
	/* The seal is in base.conf: a fresh open knows it too. */
	assert_int_equal(cl_base_find(path("bd"), &b), 0);
	assert_int_equal(b->nfiles, 3);
	assert_int_equal(cl_base_check_file(b, kernel), -EBADMSG);
	assert_int_equal(unlink(kernel), 0);
	cl_base_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_open_index),
	    cmocka_unit_test(test_index_tampered),
	    cmocka_unit_test_teardown(test_apply_unchanged, restore_base),
	    cmocka_unit_test_teardown(test_apply_base_copy, restore_base),
	    cmocka_unit_test(test_file_hashes),
	    cmocka_unit_test(test_kernel_seal),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
