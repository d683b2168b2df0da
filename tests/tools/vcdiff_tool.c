/* SPDX-License-Identifier: GPL-2.0-only */
/* Test driver for the VCDIFF codec, used by tests/shell/vcdiff_interop.sh.
 *
 *   vcdiff_tool encode SRC TGT OUT      write the delta of TGT against SRC
 *   vcdiff_tool decode SRC DELTA OUT    apply DELTA to SRC
 *   vcdiff_tool batch                   read "encode|decode A B OUT" lines on stdin
 *   vcdiff_tool gen DIR N SEED          write N test pairs of each kind to DIR
 *
 * Batch mode saves a process per pair; it stops at the first failure. gen
 * writes DIR/KIND-I.src and DIR/KIND-I.tgt, deterministic for a seed. */
#include "cl_vcdiff.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_file(const char *path, uint8_t **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	size_t cap = 1 << 16, n = 0, got;
	uint8_t *p = NULL, *np;

	if (!f) {
		fprintf(stderr, "vcdiff_tool: %s: %s\n", path, strerror(errno));
		return -1;
	}
	do {
		np = realloc(p, cap);
		if (!np) {
			free(p);
			fclose(f);
			return -1;
		}
		p = np;
		got = fread(p + n, 1, cap - n, f);
		n += got;
		if (n == cap)
			cap *= 2;
	} while (got);
	if (ferror(f)) {
		fprintf(stderr, "vcdiff_tool: %s: read error\n", path);
		free(p);
		fclose(f);
		return -1;
	}
	fclose(f);
	*buf = p;
	*len = n;
	return 0;
}

static int write_file(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(buf, 1, len, f) != len || fclose(f)) {
		fprintf(stderr, "vcdiff_tool: %s: write error\n", path);
		return -1;
	}
	return 0;
}

static int run(const char *cmd, const char *a, const char *b, const char *outp)
{
	uint8_t *x = NULL, *y = NULL, *out = NULL;
	size_t xl, yl, cap, len = 0;
	int ret = -1, err;

	if (read_file(a, &x, &xl) || read_file(b, &y, &yl))
		goto done;
	if (!strcmp(cmd, "encode")) {
		cap = cl_vcdiff_bound(yl);
		out = malloc(cap);
		err = out ? cl_vcdiff_encode(x, xl, y, yl, out, cap, &len) : -ENOMEM;
	} else if (!strcmp(cmd, "decode")) {
		/* The tests use targets of at most a few MiB. */
		cap = 64u << 20;
		out = malloc(cap);
		err = out ? cl_vcdiff_decode(x, xl, y, yl, out, cap, &len) : -ENOMEM;
	} else {
		fprintf(stderr, "vcdiff_tool: unknown command %s\n", cmd);
		goto done;
	}
	if (err) {
		fprintf(stderr, "vcdiff_tool: %s %s %s: %s\n", cmd, a, b, strerror(-err));
		goto done;
	}
	ret = write_file(outp, out, len);
done:
	free(x);
	free(y);
	free(out);
	return ret;
}

static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static size_t below(size_t n)
{
	return (size_t)(rnd() % n);
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* Page-like content: zero runs, small integers, pointers and text. */
static void fill_structured(uint8_t *p, size_t n)
{
	static const char *words[] = {"kernel", "task_struct", "GLIBC_2.2", "/usr/lib"};
	size_t i = 0, l;

	while (i < n) {
		switch (below(4)) {
		case 0:
			l = 8 * (1 + below(16));
			memset(p + i, 0, i + l < n ? l : n - i);
			i += l;
			break;
		case 1:
			for (l = 0; l < 8 && i < n; l++)
				p[i++] = l < 6 ? (uint8_t)rnd() : l == 6 ? 0x7f : 0xff;
			break;
		case 2:
			for (const char *w = words[below(4)]; *w && i < n; w++)
				p[i++] = (uint8_t)*w;
			break;
		default:
			for (l = 0; l < 4 && i < n; l++)
				p[i++] = l ? 0 : (uint8_t)below(16);
			break;
		}
	}
}

static void edit(uint8_t *p, size_t n, unsigned edits)
{
	for (unsigned e = 0; e < edits; e++) {
		size_t off = below(n), len = 1 + below(16);

		for (size_t k = 0; k < len && off + k < n; k++)
			p[off + k] = (uint8_t)rnd();
	}
}

static int gen_pair(const char *dir, const char *kind, unsigned i, size_t n)
{
	uint8_t *s = malloc(n), *t = malloc(n + 64);
	size_t tl = n, off, k;
	char path[4096];
	int ret = -1;

	if (!s || !t)
		goto done;
	if (!strcmp(kind, "sparse") || !strcmp(kind, "random"))
		fill_random(s, n);
	else
		fill_structured(s, n);
	if (!strcmp(kind, "random")) {
		fill_random(t, n);
	} else if (!strcmp(kind, "unrelated")) {
		fill_structured(t, n);
	} else if (!strcmp(kind, "shifted") || !strcmp(kind, "big")) {
		off = below(n);
		k = 1 + below(64);
		memcpy(t, s, off);
		if (i % 2) {
			fill_random(t + off, k);
			memcpy(t + off + k, s + off, n - off);
			tl = n + k;
		} else {
			k = k < n - off ? k : n - off;
			memcpy(t + off, s + off + k, n - off - k);
			tl = n - k;
		}
		edit(t, tl, (unsigned)below(3) * (unsigned)(n / 4096));
	} else {
		memcpy(t, s, n);
		edit(t, n, 1 + (unsigned)below(8));
	}
	snprintf(path, sizeof(path), "%s/%s-%u.src", dir, kind, i);
	if (write_file(path, s, n))
		goto done;
	snprintf(path, sizeof(path), "%s/%s-%u.tgt", dir, kind, i);
	ret = write_file(path, t, tl);
done:
	free(s);
	free(t);
	return ret;
}

/* Sparse edits of random and of page-like chunks, shifted chunks, unrelated
 * chunks and a few large shifted pairs that xdelta3 splits into windows. */
static int gen(const char *dir, unsigned n, unsigned long seed)
{
	static const char *kinds[] = {"sparse", "sparsetext", "shifted", "random", "unrelated"};

	rng = 0x9e3779b97f4a7c15ull ^ seed;
	for (unsigned i = 0; i < n; i++)
		for (unsigned k = 0; k < 5; k++)
			if (gen_pair(dir, kinds[k], i, 4096))
				return 1;
	for (unsigned i = 0; i < n / 50 + 1; i++)
		if (gen_pair(dir, "big", i, 200 * 1024 + below(4096)))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	char line[4 * 4096 + 64], cmd[16], a[4096], b[4096], o[4096];

	if (argc == 5 && !strcmp(argv[1], "gen"))
		return gen(argv[2], (unsigned)strtoul(argv[3], NULL, 0), strtoul(argv[4], NULL, 0));
	if (argc == 5)
		return run(argv[1], argv[2], argv[3], argv[4]) ? 1 : 0;
	if (argc != 2 || strcmp(argv[1], "batch")) {
		fprintf(stderr,
		        "usage: vcdiff_tool encode SRC TGT OUT | decode SRC DELTA OUT | batch | "
		        "gen DIR N SEED\n");
		return 2;
	}
	while (fgets(line, sizeof(line), stdin)) {
		if (sscanf(line, "%15s %4095s %4095s %4095s", cmd, a, b, o) != 4) {
			fprintf(stderr, "vcdiff_tool: bad batch line: %s", line);
			return 2;
		}
		if (run(cmd, a, b, o))
			return 1;
	}
	return 0;
}
