/* SPDX-License-Identifier: GPL-2.0-only */
/* Unit tests for the VCDIFF codec: round trips over generated chunk pairs,
 * hand-built streams for every decoder feature, and malformed input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cl_vcdiff.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* Low-entropy content: words, zero runs and pointers, like memory pages. */
static void fill_structured(uint8_t *p, size_t n)
{
	static const char *words[] = {"kernel", "alpha", "page", "\0\0\0\0\0\0\0\0", "\xff\xff"};
	size_t i = 0;

	while (i < n) {
		const char *w = words[rnd_below(5)];
		size_t l = w[0] ? strlen(w) : 8;

		for (size_t k = 0; k < l && i < n; k++)
			p[i++] = (uint8_t)w[k];
		if (i < n)
			p[i++] = (uint8_t)rnd();
	}
}

static void sparse_edit(uint8_t *p, size_t n, unsigned edits)
{
	for (unsigned e = 0; e < edits && n; e++) {
		size_t off = rnd_below(n), len = 1 + rnd_below(16);

		for (size_t k = 0; k < len && off + k < n; k++)
			p[off + k] = (uint8_t)rnd();
	}
}

static uint32_t ref_adler32(const uint8_t *p, size_t n)
{
	uint32_t a = 1, b = 0;

	for (size_t i = 0; i < n; i++) {
		a = (a + p[i]) % 65521;
		b = (b + a) % 65521;
	}
	return b << 16 | a;
}

/* Encodes, checks the bound, decodes and compares; returns the delta size. */
static size_t roundtrip(const uint8_t *src, size_t slen, const uint8_t *tgt, size_t tlen)
{
	size_t cap = cl_vcdiff_bound(tlen), dlen = 0, olen = 0;
	uint8_t *delta = malloc(cap), *out = malloc(tlen + 1);

	assert_non_null(delta);
	assert_non_null(out);
	assert_int_equal(cl_vcdiff_encode(src, slen, tgt, tlen, delta, cap, &dlen), 0);
	assert_true(dlen <= cap);
	assert_int_equal(cl_vcdiff_decode(src, slen, delta, dlen, out, tlen, &olen), 0);
	assert_int_equal(olen, tlen);
	assert_memory_equal(out, tgt, tlen);
	if (tlen)
		assert_int_equal(cl_vcdiff_decode(src, slen, delta, dlen, out, tlen - 1, &olen),
		                 -ENOSPC);
	free(delta);
	free(out);
	return dlen;
}

enum pair_kind {
	PAIR_RANDOM,
	PAIR_SPARSE,
	PAIR_SPARSE_STRUCT,
	PAIR_INSERT,
	PAIR_DELETE,
	PAIR_ZERO,
	PAIR_IDENTICAL,
	PAIR_RUNS,
	PAIR_EMPTY_SRC,
	PAIR_EMPTY_TGT,
	PAIR_KINDS
};

/* Makes a pair of the given kind; returns the target length. */
static size_t make_pair(enum pair_kind kind, uint8_t *src, size_t *slen, uint8_t *tgt, size_t n)
{
	size_t off, k;

	*slen = n;
	if (kind == PAIR_SPARSE_STRUCT || kind == PAIR_RUNS)
		fill_structured(src, n);
	else
		fill_random(src, n);
	switch (kind) {
	case PAIR_RANDOM:
		fill_random(tgt, n);
		return n;
	case PAIR_SPARSE:
	case PAIR_SPARSE_STRUCT:
		memcpy(tgt, src, n);
		sparse_edit(tgt, n, 1 + (unsigned)rnd_below(8));
		return n;
	case PAIR_INSERT:
		off = rnd_below(n + 1);
		k = 1 + rnd_below(64);
		memcpy(tgt, src, off);
		fill_random(tgt + off, k);
		memcpy(tgt + off + k, src + off, n - off);
		return n + k;
	case PAIR_DELETE:
		off = rnd_below(n + 1);
		k = rnd_below(n - off + 1) % 65;
		memcpy(tgt, src, off);
		memcpy(tgt + off, src + off + k, n - off - k);
		return n - k;
	case PAIR_ZERO:
		memset(tgt, 0, n);
		return n;
	case PAIR_IDENTICAL:
		memcpy(tgt, src, n);
		return n;
	case PAIR_RUNS:
		for (size_t i = 0; i < n;) {
			size_t l = 1 + rnd_below(300);
			uint8_t b = (uint8_t)rnd();

			for (; l && i < n; l--)
				tgt[i++] = b;
		}
		if (n > 64)
			memcpy(tgt + n / 2, src, 32);
		return n;
	case PAIR_EMPTY_SRC:
		*slen = 0;
		fill_structured(tgt, n);
		return n;
	case PAIR_EMPTY_TGT:
	default:
		return 0;
	}
}

static void test_roundtrip_pairs(void **state)
{
	uint8_t *src = malloc(20000), *tgt = malloc(20000);
	size_t sparse_total = 0, sparse_pairs = 0;

	(void)state;
	for (unsigned i = 0; i < 6000; i++) {
		enum pair_kind kind = (enum pair_kind)(i % PAIR_KINDS);
		size_t n = i % 7 == 3 ? rnd_below(10000) : 4096, slen, tlen;

		tlen = make_pair(kind, src, &slen, tgt, n);
		size_t d = roundtrip(slen ? src : NULL, slen, tgt, tlen);

		if (kind == PAIR_IDENTICAL && n == 4096)
			assert_true(d < 24);
		if (kind == PAIR_ZERO && n == 4096)
			assert_true(d < 24);
		if (kind == PAIR_SPARSE && n == 4096) {
			sparse_total += d;
			sparse_pairs++;
		}
	}
	/* At most 8 edits of at most 16 bytes each. */
	assert_true(sparse_total / sparse_pairs < 200);
	free(src);
	free(tgt);
}

static void test_tiny_sizes(void **state)
{
	uint8_t src[64], tgt[64];

	(void)state;
	for (size_t s = 0; s < 40; s++) {
		for (size_t t = 0; t < 40; t++) {
			for (int k = 0; k < 4; k++) {
				fill_random(src, s);
				if (k == 0)
					fill_random(tgt, t);
				else if (k == 1)
					memset(tgt, 'a', t);
				else
					for (size_t i = 0; i < t; i++)
						tgt[i] = s ? src[(i + (size_t)k) % s] : 0;
				roundtrip(s ? src : NULL, s, t ? tgt : NULL, t);
			}
		}
	}
}

static void test_large(void **state)
{
	size_t n = 3u << 20;
	uint8_t *src = malloc(n), *tgt = malloc(n + 100);

	(void)state;
	fill_structured(src, n);
	memcpy(tgt, src, n);
	sparse_edit(tgt, n, 200);
	assert_true(roundtrip(src, n, tgt, n) < 20000);
	/* Shifted halves: the second half moved to the front. */
	memcpy(tgt, src + n / 2, n / 2);
	memcpy(tgt + n / 2, src, n / 2);
	assert_true(roundtrip(src, n, tgt, n) < 100);
	fill_random(tgt, n);
	roundtrip(src, n, tgt, n);
	free(src);
	free(tgt);
}

static void test_enospc(void **state)
{
	uint8_t src[4096], tgt[4096], out[8192];
	size_t len = 0, full;

	(void)state;
	fill_random(src, sizeof(src));
	fill_random(tgt, sizeof(tgt));
	assert_int_equal(cl_vcdiff_encode(src, 4096, tgt, 4096, out, 4096, &len), -ENOSPC);
	assert_int_equal(cl_vcdiff_encode(src, 4096, tgt, 4096, NULL, 0, &len), -ENOSPC);
	assert_int_equal(cl_vcdiff_encode(src, 4096, tgt, 4096, out, sizeof(out), &len), 0);
	assert_true(len <= cl_vcdiff_bound(4096));

	for (int i = 0; i < 200; i++) {
		fill_random(src, sizeof(src));
		memcpy(tgt, src, sizeof(tgt));
		sparse_edit(tgt, sizeof(tgt), 1 + (unsigned)rnd_below(40));
		assert_int_equal(cl_vcdiff_encode(src, 4096, tgt, 4096, out, 4096, &full), 0);
		assert_true(full < 4096);
		assert_int_equal(cl_vcdiff_encode(src, 4096, tgt, 4096, out, full, &len), 0);
		assert_int_equal(len, full);
		assert_int_equal(cl_vcdiff_encode(src, 4096, tgt, 4096, out, full - 1, &len),
		                 -ENOSPC);
	}
	/* Nearly random: whatever the outcome, never more than out_cap. */
	for (int i = 0; i < 200; i++) {
		fill_random(tgt, sizeof(tgt));
		memcpy(tgt, src, rnd_below(200));
		int r = cl_vcdiff_encode(src, 4096, tgt, 4096, out, 4096, &len);

		assert_true(r == -ENOSPC || (r == 0 && len <= 4096));
	}
}

/* ------------------------------------------------- hand-built streams */

struct buf {
	uint8_t b[4096];
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	assert_true(b->n + n <= sizeof(b->b));
	memcpy(b->b + b->n, p, n);
	b->n += n;
}

static void put_byte(struct buf *b, uint8_t v)
{
	put(b, &v, 1);
}

static void put_var(struct buf *b, uint64_t v)
{
	uint8_t tmp[10];
	int n = 0;

	do {
		tmp[n++] = v & 0x7f;
		v >>= 7;
	} while (v);
	while (n-- > 0)
		put_byte(b, (uint8_t)(tmp[n] | (n ? 0x80 : 0)));
}

static void put_header(struct buf *b, uint8_t ind)
{
	b->n = 0;
	put(b, "\xd6\xc3\xc4\x00", 4);
	put_byte(b, ind);
}

struct win {
	uint8_t ind;
	uint64_t seg_len, seg_pos, tlen;
	const struct buf *data, *inst, *addr;
	uint32_t adler;
};

static void put_window(struct buf *b, const struct win *w)
{
	struct buf body = {.n = 0};

	put_byte(b, w->ind);
	if (w->ind & 3) {
		put_var(b, w->seg_len);
		put_var(b, w->seg_pos);
	}
	put_var(&body, w->tlen);
	put_byte(&body, 0);
	put_var(&body, w->data->n);
	put_var(&body, w->inst->n);
	put_var(&body, w->addr->n);
	if (w->ind & 4) {
		uint8_t a[4] = {w->adler >> 24, w->adler >> 16, w->adler >> 8, w->adler};

		put(&body, a, 4);
	}
	put(&body, w->data->b, w->data->n);
	put(&body, w->inst->b, w->inst->n);
	put(&body, w->addr->b, w->addr->n);
	put_var(b, body.n);
	put(b, body.b, body.n);
}

static int dec(const uint8_t *src, size_t slen, const struct buf *d, uint8_t *out, size_t cap,
               size_t *len)
{
	return cl_vcdiff_decode(src, slen, d->b, d->n, out, cap, len);
}

static const uint8_t hello_src[] = "0123456789abcdefghijklmnopqrstuvwxyz";

static void test_decode_features(void **state)
{
	struct buf d, data = {.n = 0}, inst = {.n = 0}, addr = {.n = 0};
	struct buf data2 = {.n = 0}, inst2 = {.n = 0}, addr2 = {.n = 0};
	uint8_t out[256];
	size_t len = 99;

	(void)state;
	/* Header only: zero windows, empty target. */
	put_header(&d, 0);
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), 0);
	assert_int_equal(len, 0);

	/* Window 1 (VCD_SOURCE at offset 10): ADD "XY", COPY 6 from "abcdef",
	 * RUN 3 of 'z', then an overlapping target copy of 5 (HERE mode). */
	put(&data, "XY", 2);
	put_byte(&inst, 1 + 2);        /* ADD 2 */
	put_byte(&inst, 19 + (6 - 3)); /* COPY 6, mode 0 */
	put_var(&addr, 0);             /* "a", at source offset 10 */
	put_byte(&inst, 0);            /* RUN */
	put_var(&inst, 3);
	put_byte(&data, 'z');
	put_byte(&inst, 19 + 16 * 1 + (5 - 3)); /* COPY 5, mode HERE */
	put_var(&addr, 2);                      /* two bytes back: "zz" repeated */
	struct win w1 = {.ind = 1 | 4,
	                 .seg_len = 26,
	                 .seg_pos = 10,
	                 .tlen = 16,
	                 .data = &data,
	                 .inst = &inst,
	                 .addr = &addr,
	                 .adler = ref_adler32((const uint8_t *)"XYabcdefzzzzzzzz", 16)};

	/* Window 2 (VCD_TARGET, segment = window 1's "abcdef"): COPY 4 from seg
	 * addr 1 followed by ADD 1 (double opcode 247), then a copy that runs
	 * from the segment end into the new target (addr 4, size 4). */
	put_byte(&inst2, 247);
	put_var(&addr2, 1);
	put_byte(&data2, '!');
	put_byte(&inst2, 19 + (4 - 3)); /* COPY 4, mode 0 */
	put_var(&addr2, 4);
	struct win w2 = {.ind = 2,
	                 .seg_len = 6,
	                 .seg_pos = 2,
	                 .tlen = 9,
	                 .data = &data2,
	                 .inst = &inst2,
	                 .addr = &addr2};

	put_header(&d, 0);
	put_window(&d, &w1);
	put_window(&d, &w2);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), 0);
	assert_int_equal(len, 25);
	assert_memory_equal(out, "XYabcdefzzzzzzzzbcde!efbc", 25);
	assert_int_equal(dec(hello_src, 36, &d, out, 24, &len), -ENOSPC);

	/* The same behind an application header. */
	put_header(&d, 4);
	put_var(&d, 5);
	put(&d, "name\0", 5);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), 0);
	assert_int_equal(len, 16);

	/* Checksum mismatch. */
	w1.adler ^= 1;
	put_header(&d, 0);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	w1.adler ^= 1;

	/* Segment beyond the source, VCD_TARGET beyond the output so far. */
	w1.seg_pos = 11;
	put_header(&d, 0);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	w1.seg_pos = 10;
	put_header(&d, 0);
	put_window(&d, &w2);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	w1.ind = 3;
	put_header(&d, 0);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	w1.ind = 1 | 8;
	put_header(&d, 0);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	w1.ind = 1;
	/* Declared target longer or shorter than the instructions. */
	w1.tlen = 17;
	put_header(&d, 0);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	w1.tlen = 15;
	put_header(&d, 0);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	w1.tlen = 1ull << 62;
	put_header(&d, 0);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -ENOSPC);
	w1.tlen = 16;
	/* Leftover data byte. */
	put_byte(&data, 'q');
	put_header(&d, 0);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	data.n--;
	put_header(&d, 0);
	put_window(&d, &w1);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), 0);

	/* Unsupported and unknown header bits. */
	put_header(&d, 1);
	put_byte(&d, 2);
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), -ENOTSUP);
	put_header(&d, 2);
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), -ENOTSUP);
	put_header(&d, 8);
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), -EINVAL);
	put_header(&d, 0);
	d.b[3] = 1; /* version */
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), -EINVAL);
	put_header(&d, 0);
	d.b[0] = 'x';
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), -EINVAL);
	assert_int_equal(cl_vcdiff_decode(NULL, 0, d.b, 4, out, sizeof(out), &len), -EINVAL);
	assert_int_equal(cl_vcdiff_decode(NULL, 0, NULL, 0, out, sizeof(out), &len), -EINVAL);
	/* Application header longer than the stream. */
	put_header(&d, 4);
	put_var(&d, 10);
	put(&d, "abc", 3);
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), -EINVAL);
}

/* Builds a one-window stream of one instruction byte plus explicit sizes. */
static void one_op(struct buf *d, const struct buf *data, const struct buf *inst,
                   const struct buf *addr, uint64_t tlen)
{
	struct win w = {.ind = 1,
	                .seg_len = 36,
	                .seg_pos = 0,
	                .tlen = tlen,
	                .data = data,
	                .inst = inst,
	                .addr = addr};

	put_header(d, 0);
	put_window(d, &w);
}

static void test_decode_bad_addresses(void **state)
{
	struct buf d, data = {.n = 0}, inst = {.n = 0}, addr = {.n = 0};
	uint8_t out[64];
	size_t len;

	(void)state;
	/* COPY 4 mode 0 at 32 ("wxyz"), then at 36 = here, which is too far. */
	put_byte(&inst, 20);
	put_var(&addr, 32);
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), 0);
	assert_memory_equal(out, "wxyz", 4);
	addr.n = 0;
	put_var(&addr, 36);
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	/* HERE mode with offset 0 and with offset beyond the start. */
	inst.b[0] = 19 + 16 + 1;
	addr.n = 0;
	put_var(&addr, 0);
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	addr.n = 0;
	put_var(&addr, 37);
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	/* NEAR mode: near[0] = 0, offset huge. */
	inst.b[0] = 19 + 32 + 1;
	addr.n = 0;
	put_var(&addr, UINT64_MAX);
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	/* Varint longer than 64 bits. */
	addr.n = 0;
	for (int i = 0; i < 11; i++)
		put_byte(&addr, 0xff);
	put_byte(&addr, 1);
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	/* Missing address byte for a SAME copy. */
	inst.b[0] = 19 + 16 * 6 + 1;
	addr.n = 0;
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	put_byte(&addr, 0); /* same[0] = 0: copies "0123" */
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), 0);
	assert_memory_equal(out, "0123", 4);
	/* ADD with an explicit size past the data section. */
	inst.n = 0;
	put_byte(&inst, 1);
	put_var(&inst, 5);
	addr.n = 0;
	put(&data, "abcd", 4);
	one_op(&d, &data, &inst, &addr, 5);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	/* Truncated size varint in the instruction section. */
	inst.n = 0;
	put_byte(&inst, 1);
	put_byte(&inst, 0x80);
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	/* RUN without its byte. */
	inst.n = 0;
	data.n = 0;
	put_byte(&inst, 0);
	put_var(&inst, 4);
	one_op(&d, &data, &inst, &addr, 4);
	assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), -EINVAL);
	/* Section lengths larger than the window. */
	put_header(&d, 0);
	put_byte(&d, 0);
	put_var(&d, 5);
	put_var(&d, 0);
	put_byte(&d, 0);
	put_var(&d, 1000);
	put_var(&d, 0);
	put_var(&d, 0);
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), -EINVAL);
	/* Nonzero delta indicator without secondary compression. */
	d.n = 0;
	put_header(&d, 0);
	put_byte(&d, 0);
	put_var(&d, 5);
	put_var(&d, 0);
	put_byte(&d, 1);
	put_var(&d, 0);
	put_var(&d, 0);
	put_var(&d, 0);
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), -EINVAL);
	d.b[d.n - 4] = 0;
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), 0);
	/* Delta encoding length past the end. */
	d.b[6] = 6;
	assert_int_equal(dec(NULL, 0, &d, out, sizeof(out), &len), -EINVAL);
}

/* The default code table rebuilt by the loops of RFC 3284 section 5.6. */
struct code {
	int t1, s1, m1, t2, s2, m2;
};

static void rfc_code_table(struct code *c)
{
	int i = 0;

	c[i++] = (struct code){2, 0, 0, 0, 0, 0};
	for (int s = 0; s <= 17; s++)
		c[i++] = (struct code){1, s, 0, 0, 0, 0};
	for (int m = 0; m < 9; m++) {
		c[i++] = (struct code){3, 0, m, 0, 0, 0};
		for (int s = 4; s <= 18; s++)
			c[i++] = (struct code){3, s, m, 0, 0, 0};
	}
	for (int m = 0; m < 6; m++)
		for (int a = 1; a <= 4; a++)
			for (int s = 4; s <= 6; s++)
				c[i++] = (struct code){1, a, 0, 3, s, m};
	for (int m = 6; m < 9; m++)
		for (int a = 1; a <= 4; a++)
			c[i++] = (struct code){1, a, 0, 3, 4, m};
	for (int m = 0; m < 9; m++)
		c[i++] = (struct code){3, 4, m, 1, 1, 0};
	assert_int_equal(i, 256);
}

/* Appends one half-instruction's data/address and its expected output. */
static void exercise(int type, int size, int mode, size_t *pos, struct buf *data, struct buf *addr,
                     uint8_t *want)
{
	size_t here = 36 + *pos, a = mode >= 6 ? 0 : 10;

	switch (type) {
	case 1:
		for (int k = 0; k < size; k++) {
			put_byte(data, (uint8_t)(0xc0 + k));
			want[(*pos)++] = (uint8_t)(0xc0 + k);
		}
		break;
	case 2:
		put_byte(data, 0xab);
		for (int k = 0; k < size; k++)
			want[(*pos)++] = 0xab;
		break;
	case 3:
		if (mode == 1)
			put_var(addr, here - a);
		else if (mode >= 6)
			put_byte(addr, 0);
		else
			put_var(addr, a); /* SELF, or NEAR from an empty cache */
		for (int k = 0; k < size; k++)
			want[(*pos)++] = hello_src[a + (size_t)k];
		break;
	}
}

static void test_code_table(void **state)
{
	struct code table[256];
	uint8_t want[64], out[64];
	size_t len;

	(void)state;
	rfc_code_table(table);
	for (int op = 0; op < 256; op++) {
		struct buf d, data = {.n = 0}, inst = {.n = 0}, addr = {.n = 0};
		const struct code *c = &table[op];
		int s1 = c->s1 ? c->s1 : 7, s2 = c->s2 ? c->s2 : 7;
		size_t pos = 0;

		put_byte(&inst, (uint8_t)op);
		if (c->t1 && !c->s1)
			put_var(&inst, 7);
		if (c->t2 && !c->s2)
			put_var(&inst, 7);
		exercise(c->t1, s1, c->m1, &pos, &data, &addr, want);
		exercise(c->t2, s2, c->m2, &pos, &data, &addr, want);
		one_op(&d, &data, &inst, &addr, pos);
		assert_int_equal(dec(hello_src, 36, &d, out, sizeof(out), &len), 0);
		assert_int_equal(len, pos);
		assert_memory_equal(out, want, pos);
	}
}

static size_t make_delta(uint8_t *delta, size_t cap, uint8_t *src, uint8_t *tgt, size_t *tlen)
{
	size_t slen, len;

	*tlen =
	    make_pair((enum pair_kind)rnd_below(PAIR_KINDS), src, &slen, tgt, 1 + rnd_below(4096));
	assert_int_equal(cl_vcdiff_encode(src, slen, tgt, *tlen, delta, cap, &len), 0);
	return len;
}

static void test_truncated(void **state)
{
	static uint8_t src[8192], tgt[8192], delta[9000], out[8192];
	size_t len, tlen;

	(void)state;
	for (int i = 0; i < 100; i++) {
		size_t dlen = make_delta(delta, sizeof(delta), src, tgt, &tlen);

		for (size_t k = 0; k < dlen; k++) {
			int r =
			    cl_vcdiff_decode(src, sizeof(src), delta, k, out, sizeof(out), &len);

			/* Cutting right after the header leaves a valid empty stream. */
			if (k == 5) {
				assert_int_equal(r, 0);
				assert_int_equal(len, 0);
			} else {
				assert_int_equal(r, -EINVAL);
			}
		}
	}
}

static void test_mutated(void **state)
{
	static uint8_t src[8192], tgt[8192], delta[9000], out[8192];
	size_t len, tlen;

	(void)state;
	for (int i = 0; i < 20000; i++) {
		size_t dlen = make_delta(delta, sizeof(delta) - 16, src, tgt, &tlen);
		unsigned flips = 1 + (unsigned)rnd_below(4);

		for (unsigned f = 0; f < flips; f++) {
			size_t at = rnd_below(dlen);

			switch (rnd_below(3)) {
			case 0:
				delta[at] ^= (uint8_t)(1u << rnd_below(8));
				break;
			case 1:
				delta[at] = (uint8_t)rnd();
				break;
			default:
				memmove(delta + at + 1, delta + at, dlen - at);
				delta[at] = (uint8_t)rnd();
				dlen++;
				break;
			}
		}
		size_t cap = rnd_below(2) ? sizeof(out) : rnd_below(sizeof(out));
		int r = cl_vcdiff_decode(src, sizeof(src), delta, dlen, out, cap, &len);

		assert_true(r == 0 || r == -EINVAL || r == -ENOSPC || r == -ENOTSUP);
		if (r == 0)
			assert_true(len <= cap);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip_pairs), cmocka_unit_test(test_tiny_sizes),
	    cmocka_unit_test(test_large),           cmocka_unit_test(test_enospc),
	    cmocka_unit_test(test_decode_features), cmocka_unit_test(test_decode_bad_addresses),
	    cmocka_unit_test(test_code_table),      cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_mutated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
