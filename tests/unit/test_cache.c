/* SPDX-License-Identifier: GPL-2.0-only */
/* Unit tests for cl_cache: per-overlay cache directories, their lock,
 * eviction, and that nothing outside them is ever removed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include <cmocka.h>

#include "cl_cache.h"
#include "cl_util.h"

static char root[PATH_MAX];

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/cl-test-cache-XXXXXX");
	return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	unsetenv("TMPDIR");
	return cl_cache_rm_rf(root);
}

static void id_of(uint8_t id[CL_SHA256_LEN], int k)
{
	memset(id, k, CL_SHA256_LEN);
}

/* A file of size bytes (allocated, so that eviction counts it). */
static void fill(const char *path, size_t size)
{
	char *buf = calloc(1, size);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_non_null(buf);
	assert_true(fd >= 0);
	memset(buf, 1, size);
	assert_int_equal(write(fd, buf, size), (ssize_t)size);
	close(fd);
	free(buf);
}

static int exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

static void test_open_reuse_and_lock(void **state)
{
	struct cl_cache a, b, c;
	uint8_t id[CL_SHA256_LEN];
	char path[PATH_MAX + 100];

	(void)state;
	id_of(id, 0xab);
	assert_int_equal(cl_cache_open(&a, root, id, 1ull << 30, 0), 0);
	assert_false(a.is_private);
	assert_string_equal(a.note, "");
	snprintf(path, sizeof(path), "%s/%s", root,
	         "abababababababababababababababababababababababababababababababab");
	assert_string_equal(a.dir, path);
	/* A second daemon on the same overlay gets a private directory and
	 * says why. */
	assert_int_equal(cl_cache_open(&b, root, id, 1ull << 30, 0), 0);
	assert_true(b.is_private);
	assert_non_null(strstr(b.note, "in use by another cloudletfs"));
	snprintf(path, sizeof(path), "%s", b.dir);
	cl_cache_close(&b);
	assert_false(exists(path));
	cl_cache_close(&a);
	/* Closed, it is kept and can be had again. */
	assert_int_equal(cl_cache_open(&c, root, id, 1ull << 30, 0), 0);
	assert_false(c.is_private);
	cl_cache_close(&c);
}

static void test_no_root_is_private(void **state)
{
	struct cl_cache c;
	uint8_t id[CL_SHA256_LEN];
	char path[PATH_MAX];

	(void)state;
	id_of(id, 1);
	assert_int_equal(cl_cache_open(&c, NULL, id, 0, 0), 0);
	assert_true(c.is_private);
	assert_string_equal(c.note, "");
	snprintf(path, sizeof(path), "%s", c.dir);
	assert_true(exists(path));
	cl_cache_close(&c);
	assert_false(exists(path));
}

static void test_unwritable_root(void **state)
{
	struct cl_cache c;
	uint8_t id[CL_SHA256_LEN];
	char path[PATH_MAX + 16];

	(void)state;
	id_of(id, 2);
	/* A regular file where the root should be: cannot be created. */
	snprintf(path, sizeof(path), "%s/file", root);
	fill(path, 1);
	assert_int_equal(cl_cache_open(&c, path, id, 0, 0), 0);
	assert_true(c.is_private);
	assert_non_null(strstr(c.note, "unusable"));
	cl_cache_close(&c);
}

/* Eviction: least recently used first, only directories named by an id,
 * never through a symbolic link, never one in use. */
static void test_evict(void **state)
{
	struct cl_cache keep, mine;
	uint8_t id[CL_SHA256_LEN];
	char old[PATH_MAX + 80], newer[PATH_MAX + 80], other[PATH_MAX + 80], link[PATH_MAX + 80],
	    victim[PATH_MAX + 100], f[PATH_MAX + 100], notid[PATH_MAX + 80];
	struct utimbuf t = {.actime = 1000, .modtime = 1000};

	(void)state;
	/* old: least recently used, 1 MiB; newer: 1 MiB; keep: in use. */
	snprintf(old, sizeof(old), "%s/%064d", root, 1);
	snprintf(newer, sizeof(newer), "%s/%064d", root, 2);
	snprintf(notid, sizeof(notid), "%s/%064d-x", root, 3);
	snprintf(other, sizeof(other), "%s-elsewhere", root);
	snprintf(victim, sizeof(victim), "%s/precious", other);
	snprintf(link, sizeof(link), "%s/%064d", root, 4);
	assert_int_equal(mkdir(old, 0700), 0);
	assert_int_equal(mkdir(newer, 0700), 0);
	assert_int_equal(mkdir(notid, 0700), 0);
	assert_int_equal(mkdir(other, 0700), 0);
	snprintf(f, sizeof(f), "%s/data", old);
	fill(f, 1 << 20);
	snprintf(f, sizeof(f), "%s/data", newer);
	fill(f, 1 << 20);
	snprintf(f, sizeof(f), "%s/data", notid);
	fill(f, 1 << 20);
	/* Eviction takes only caches whose lock it can take. */
	snprintf(f, sizeof(f), "%s/lock", old);
	fill(f, 1);
	snprintf(f, sizeof(f), "%s/lock", newer);
	fill(f, 1);
	/* Inside old, a link out of the cache: removing old must not follow it. */
	snprintf(f, sizeof(f), "%s/lock", other);
	fill(f, 1);
	fill(victim, 4096);
	snprintf(f, sizeof(f), "%s/escape", old);
	assert_int_equal(symlink(other, f), 0);
	/* A link named like an id, pointing out of the cache, oldest of all. */
	assert_int_equal(symlink(other, link), 0);
	assert_int_equal(utime(old, &t), 0);
	t.modtime = t.actime = 2000;
	assert_int_equal(utime(newer, &t), 0);
	id_of(id, 0x11);
	assert_int_equal(cl_cache_open(&keep, root, id, 1ull << 40, 0), 0);
	snprintf(f, sizeof(f), "%s/data", keep.dir);
	fill(f, 1 << 20);

	/* Limit 3 MiB with 0.5 MiB to come, 3.5 MiB held: old goes, newer and
	 * keep stay. */
	id_of(id, 0x22);
	assert_int_equal(cl_cache_open(&mine, root, id, 3u << 20, 1u << 19), 0);
	assert_false(mine.is_private);
	assert_false(exists(old));
	assert_true(exists(newer));
	assert_true(exists(keep.dir));
	assert_true(exists(notid));
	assert_true(exists(link));
	assert_true(exists(victim));
	cl_cache_close(&mine);
	cl_cache_close(&keep);
	assert_int_equal(cl_cache_rm_rf(other), 0);
	assert_false(exists(other));
}

/* root/name, a directory holding a file "lock" if lock, and data. */
static void temp_like(char *path, size_t size, const char *name, int lock)
{
	char f[PATH_MAX + 200];

	snprintf(path, size, "%s/%s", root, name);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(f, sizeof(f), "%s/data", path);
	fill(f, 4096);
	if (lock) {
		snprintf(f, sizeof(f), "%s/lock", path);
		fill(f, 1);
	}
}

static int held(const char *dir)
{
	char f[PATH_MAX + 8];
	int fd, r;

	snprintf(f, sizeof(f), "%s/lock", dir);
	fd = open(f, O_RDWR);
	assert_true(fd >= 0);
	r = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return r;
}

/* A private directory is locked while in use; making one removes the
 * user's directories of its prefix whose lock nobody holds, and nothing
 * else: not a held one, one without a lock, another prefix, another name,
 * a link, another user's. */
static void test_temp_sweep(void **state)
{
	char dead[PATH_MAX + 100], live[PATH_MAX + 100], nolock[PATH_MAX + 100],
	    store[PATH_MAX + 100], longer[PATH_MAX + 100], link[PATH_MAX + 100],
	    other[PATH_MAX + 100], foreign[PATH_MAX + 100], f[PATH_MAX + 200], *p;
	struct cl_cache c;
	uint8_t id[CL_SHA256_LEN];
	int fd, lock;

	(void)state;
	assert_int_equal(setenv("TMPDIR", root, 1), 0);
	temp_like(dead, sizeof(dead), "cloudlet-cache-dead01", 1);
	temp_like(live, sizeof(live), "cloudlet-cache-live01", 1);
	temp_like(nolock, sizeof(nolock), "cloudlet-cache-nolck1", 0);
	temp_like(store, sizeof(store), "cloudlet-store-dead02", 1);
	temp_like(longer, sizeof(longer), "cloudlet-cache-dead003", 1);
	temp_like(foreign, sizeof(foreign), "cloudlet-cache-other1", 1);
	/* Another user's: only root can make one (the suite runs as root);
	 * otherwise it is one more dead directory of ours. */
	if (geteuid() == 0)
		assert_int_equal(chown(foreign, 65534, 65534), 0);
	snprintf(other, sizeof(other), "%s-elsewhere", root);
	assert_int_equal(mkdir(other, 0700), 0);
	snprintf(f, sizeof(f), "%s/lock", other);
	fill(f, 1);
	snprintf(link, sizeof(link), "%s/cloudlet-cache-link01", root);
	assert_int_equal(symlink(other, link), 0);
	snprintf(f, sizeof(f), "%s/lock", live);
	lock = open(f, O_RDWR);
	assert_true(lock >= 0);
	assert_int_equal(flock(lock, LOCK_EX), 0);

	id_of(id, 3);
	assert_int_equal(cl_cache_open(&c, NULL, id, 0, 0), 0);
	assert_true(c.is_private);
	assert_int_equal(strncmp(c.dir, root, strlen(root)), 0);
	assert_true(held(c.dir));
	snprintf(f, sizeof(f), "%s/lock.new", c.dir);
	assert_false(exists(f));
	assert_false(exists(dead));
	assert_true(exists(live) && exists(nolock) && exists(store) && exists(longer));
	assert_true(exists(link) && exists(other));
	assert_int_equal(exists(foreign), geteuid() == 0);
	p = strdup(c.dir);
	assert_non_null(p);
	cl_cache_close(&c);
	assert_false(exists(p));
	free(p);

	/* Another prefix sweeps its own only. */
	assert_int_equal(cl_cache_temp_dir("cloudlet-store", &p, &fd), 0);
	assert_false(exists(store));
	assert_true(exists(nolock));
	assert_true(held(p));
	assert_int_equal(cl_cache_rm_rf(p), 0);
	close(fd);
	free(p);
	close(lock);
	assert_int_equal(cl_cache_rm_rf(other), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_open_reuse_and_lock, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_root_is_private, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unwritable_root, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_evict, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_temp_sweep, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
