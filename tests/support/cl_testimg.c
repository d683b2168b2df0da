/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_testimg.h"
#include "cl_base.h"
#include "cl_overlay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cl_test_path(const char *dir, const char *name)
{
	static char buf[8][512];
	static int slot;

	slot = (slot + 1) & 7;
	snprintf(buf[slot], sizeof(buf[slot]), "%s/%s", dir, name);
	return buf[slot];
}

/* xorshift64*: an LCG's low bits repeat within a few chunks, which would
 * turn "random" chunks into duplicates. */
static uint8_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return (uint8_t)((*s * 2685821657736338717ull) >> 56);
}

static int write_file(const char *dir, const char *name, const uint8_t *data, size_t len)
{
	FILE *f = fopen(cl_test_path(dir, name), "wb");
	int ok;

	if (!f)
		return -1;
	ok = fwrite(data, 1, len, f) == len;
	return fclose(f) == 0 && ok ? 0 : -1;
}

int cl_test_images(char *dir)
{
	const size_t cs = CL_TEST_CS, dsz = 300 * cs + 100, msz = 200 * cs;
	uint8_t *bd, *bm, *nd, *nm;
	uint64_t s = 42;
	size_t i;
	int r = -1;

	strcpy(dir, "/tmp/cl-test-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	setenv("CLOUDLET_HOME", cl_test_path(dir, "home"), 1);
	bd = calloc(1, dsz);
	bm = calloc(1, msz);
	nd = malloc(dsz + 2 * cs);
	nm = malloc(msz);
	if (!bd || !bm || !nd || !nm)
		goto out;
	for (i = 0; i < dsz / 2; i++)
		bd[i] = rnd(&s);
	for (i = 0; i < msz; i++)
		bm[i] = (uint8_t)(i / cs);
	memcpy(nd, bd, dsz);
	memset(nd + dsz, 0xee, 2 * cs);
	memcpy(nm, bm, msz);
	memset(nd, 0, cs);
	memcpy(nd + 200 * cs, bm + 5 * cs, cs);
	memcpy(nm + 10 * cs, bd + 7 * cs, cs);
	for (i = 0; i < 20; i++)
		nd[(20 + i) * cs + 99] ^= 0xff;
	for (i = 0; i < 30 * cs; i++)
		nm[100 * cs + i] = rnd(&s);
	memcpy(nd + 250 * cs, nm + 100 * cs, 3 * cs);
	nd[dsz + 2 * cs - 1] = 1;
	if (write_file(dir, "bd", bd, dsz) || write_file(dir, "bd.orig", bd, dsz) ||
	    write_file(dir, "bm", bm, msz) || write_file(dir, "nd", nd, dsz + 2 * cs) ||
	    write_file(dir, "nm", nm, msz) ||
	    write_file(dir, "state", (const uint8_t *)"device state", 12))
		goto out;
	r = 0;
out:
	free(bd);
	free(bm);
	free(nd);
	free(nm);
	return r;
}

uint8_t *cl_test_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

void cl_test_cleanup(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

int cl_test_want(const char *dir, uint8_t *want[2], size_t len[2])
{
	want[0] = cl_test_read(cl_test_path(dir, "nd"), &len[0]);
	want[1] = cl_test_read(cl_test_path(dir, "nm"), &len[1]);
	return want[0] && want[1] ? 0 : -1;
}

int cl_test_izero_disk(const char *dir, const char *name)
{
	uint8_t *nd;
	size_t len, i;
	int r;

	nd = cl_test_read(cl_test_path(dir, "nd"), &len);
	if (!nd || len < 161 * CL_TEST_CS) {
		free(nd);
		return -1;
	}
	for (i = 0; i < 16; i++)
		nd[160 * CL_TEST_CS + 200 * i] = (uint8_t)(i + 1);
	r = write_file(dir, name, nd, len);
	free(nd);
	return r;
}

int cl_test_recipe_of(const struct cl_meta *m, uint8_t image, uint64_t index)
{
	uint64_t i;

	for (i = 0; i < m->nchunks; i++)
		if (m->chunks[i].image == image && m->chunks[i].index == index)
			return m->chunks[i].recipe;
	return -1;
}

int cl_test_overlay(const char *dir, const char *out, uint32_t segsize)
{
	return cl_test_overlay_disk(dir, out, segsize, "nd");
}

int cl_test_overlay_disk(const char *dir, const char *out, uint32_t segsize, const char *disk)
{
	struct cl_overlay_opts o = {.level = 1, .segment_size = segsize};
	struct cl_base *b;
	char od[512];
	int r;

	o.state = cl_test_path(dir, "state");
	snprintf(od, sizeof(od), "%s/%s", dir, out);
	r = cl_base_index(cl_test_path(dir, "bd"), cl_test_path(dir, "bm"), CL_TEST_CS, &b);
	if (r < 0)
		return r;
	r = cl_base_register(b, NULL, NULL);
	if (r == 0)
		r = cl_overlay_create(b, cl_test_path(dir, disk), cl_test_path(dir, "nm"), od, &o,
		                      NULL);
	cl_base_free(b);
	return r;
}

int cl_test_change_keep_mtime(const char *file, uint64_t off, size_t len, const void *data)
{
	struct timespec ts[2];
	struct stat st;
	int fd = open(file, O_RDWR), r = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (data && pwrite(fd, data, len, (off_t)off) != (ssize_t)len)
		r = -EIO;
	else if (!data && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
	                            (off_t)len) < 0)
		r = -errno;
	ts[0] = st.st_atim;
	ts[1] = st.st_mtim;
	if (r == 0 && futimens(fd, ts) < 0)
		r = -errno;
	close(fd);
	return r;
}

int cl_test_restore_base(const char *dir)
{
	uint8_t *orig;
	size_t len;
	int r;

	orig = cl_test_read(cl_test_path(dir, "bd.orig"), &len);
	if (!orig)
		return -EIO;
	r = cl_test_change_keep_mtime(cl_test_path(dir, "bd"), 0, len, orig);
	free(orig);
	return r;
}
