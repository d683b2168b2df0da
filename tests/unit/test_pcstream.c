/* SPDX-License-Identifier: GPL-2.0-only */
/* Unit tests for cl_pcstream: the postcopy source stream, read back by a
 * minimal reader that expects what a QEMU 7.2 destination parses; the
 * sent-page bitmap (no page twice, no EOF while pages are due); the
 * return-path parser. Real save files too when CL_VMSTATE_FILE names
 * them (see test_vmstate.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cl_error.h"
#include "cl_pcstream.h"
#include "cl_testimg.h"
#include "cl_testvm.h"

#define PAGE 4096u

/* ---- output into memory ---- */

struct sink {
	uint8_t *p;
	size_t len, cap;
	int fail; /* the error every write returns, or 0 */
	unsigned writes;
};

static int sink_write(void *ctx, const void *buf, size_t len)
{
	struct sink *s = ctx;

	if (s->fail)
		return s->fail;
	if (s->cap - s->len < len) {
		s->cap = (s->cap + len) * 2;
		s->p = realloc(s->p, s->cap);
		assert_non_null(s->p);
	}
	memcpy(s->p + s->len, buf, len);
	s->len += len;
	s->writes++;
	return 0;
}

/* ---- the minimal reader ---- */

struct rd {
	const uint8_t *p;
	size_t len, pos;
	long last_block; /* the block of the record before, as QEMU keeps it */
};

static uint64_t rd_be(struct rd *r, unsigned n)
{
	uint64_t v = 0;

	assert_true(r->len - r->pos >= n);
	while (n--)
		v = v << 8 | r->p[r->pos++];
	return v;
}

static const uint8_t *rd_bytes(struct rd *r, size_t n)
{
	const uint8_t *p = r->p + r->pos;

	assert_true(r->len - r->pos >= n);
	r->pos += n;
	return p;
}

static void rd_name(struct rd *r, const char *want)
{
	size_t n = rd_be(r, 1);

	assert_int_equal(n, strlen(want));
	assert_memory_equal(rd_bytes(r, n), want, n);
}

static void rd_cmd(struct rd *r, unsigned cmd, size_t len)
{
	assert_int_equal(rd_be(r, 1), 0x08);
	assert_int_equal(rd_be(r, 2), cmd);
	assert_int_equal(rd_be(r, 2), len);
}

static void rd_footer(struct rd *r, const struct cl_vmstate *vs)
{
	assert_int_equal(rd_be(r, 8), 0x10); /* EOS */
	assert_int_equal(rd_be(r, 1), 0x7e);
	assert_int_equal(rd_be(r, 4), cl_vmstate_ram_section(vs));
}

/* One page record: the block it names or continues, the data or fill. */
static void rd_record(struct rd *r, const struct cl_vmstate *vs, int first, uint32_t *block,
                      uint64_t *offset, const uint8_t **data, uint8_t *fill)
{
	uint64_t v = rd_be(r, 8);
	unsigned flags = v & 0xfff;
	uint32_t b;
	size_t n;

	*offset = v & ~0xfffull;
	if (first) /* the writer names the block in each section's first record */
		assert_false(flags & 0x20);
	if (flags & 0x20) {
		assert_true(r->last_block >= 0);
		b = (uint32_t)r->last_block;
	} else {
		n = rd_be(r, 1);
		assert_int_equal(cl_vmstate_find_block(vs, (const char *)rd_bytes(r, n), n, &b), 0);
		if (!first) /* and continues it while it does not change */
			assert_int_not_equal(b, r->last_block);
	}
	r->last_block = b;
	*block = b;
	*data = NULL;
	*fill = 0;
	flags &= ~0x20u;
	assert_true(flags == 0x08 || flags == 0x02);
	if (flags == 0x08)
		*data = rd_bytes(r, PAGE);
	else
		*fill = (uint8_t)rd_be(r, 1);
}

/* Everything cl_pcstream_start() writes, checked against vs. */
static void rd_prelude(struct rd *r, const struct cl_vmstate *vs)
{
	const struct cl_vmstate_page *pg;
	const uint8_t *data, *dev;
	uint64_t total = 0, off;
	size_t i, dlen, nb = cl_vmstate_nblocks(vs);
	uint32_t b, main;
	uint8_t fill;

	assert_int_equal(rd_be(r, 4), 0x5145564d);
	assert_int_equal(rd_be(r, 4), 3);
	assert_int_equal(rd_be(r, 1), 0x07);
	assert_int_equal(rd_be(r, 4), strlen(cl_vmstate_machine(vs)));
	assert_memory_equal(rd_bytes(r, strlen(cl_vmstate_machine(vs))), cl_vmstate_machine(vs),
	                    strlen(cl_vmstate_machine(vs)));
	rd_cmd(r, 1, 0); /* OPEN_RETURN_PATH: no capabilities subsection before it */
	rd_cmd(r, 2, 4);
	assert_int_equal(rd_be(r, 4), CL_PCSTREAM_PING_OPEN);
	rd_cmd(r, 3, 16);
	assert_int_equal(rd_be(r, 8), PAGE);
	assert_int_equal(rd_be(r, 8), PAGE);
	/* RAM START: the block list, names and lengths only */
	assert_int_equal(rd_be(r, 1), 0x01);
	assert_int_equal(rd_be(r, 4), cl_vmstate_ram_section(vs));
	rd_name(r, "ram");
	assert_int_equal(rd_be(r, 4), 0);
	assert_int_equal(rd_be(r, 4), 4);
	for (i = 0; i < nb; i++)
		total += cl_vmstate_block(vs, i)->length;
	assert_int_equal(rd_be(r, 8), total | 0x04);
	for (i = 0; i < nb; i++) {
		rd_name(r, cl_vmstate_block(vs, i)->name);
		assert_int_equal(rd_be(r, 8), cl_vmstate_block(vs, i)->length);
	}
	rd_footer(r, vs);
	/* the file's pages, each once, in one PART */
	assert_int_equal(rd_be(r, 1), 0x02);
	assert_int_equal(rd_be(r, 4), cl_vmstate_ram_section(vs));
	for (i = 0; i < cl_vmstate_npages(vs); i++) {
		pg = cl_vmstate_page(vs, i);
		rd_record(r, vs, i == 0, &b, &off, &data, &fill);
		assert_int_equal(b, pg->block);
		assert_int_equal(off, pg->offset);
		if (pg->data)
			assert_memory_equal(data, pg->data, PAGE);
		else
			assert_true(!data && fill == pg->fill);
	}
	rd_footer(r, vs);
	/* one discard of the first page of the guest RAM */
	assert_int_equal(cl_vmstate_main_block(vs, &main), 0);
	rd_cmd(r, 6, 1 + 1 + strlen(cl_vmstate_block(vs, main)->name) + 1 + 16);
	assert_int_equal(rd_be(r, 1), 0);
	rd_name(r, cl_vmstate_block(vs, main)->name);
	assert_int_equal(rd_be(r, 1), 0);
	assert_int_equal(rd_be(r, 8), 0);
	assert_int_equal(rd_be(r, 8), PAGE);
	/* the package: LISTEN, the device block verbatim, PING, RUN */
	dev = cl_vmstate_devices(vs, NULL, &dlen);
	rd_cmd(r, 7, 4);
	assert_int_equal(rd_be(r, 4), 5 + dlen + 9 + 5);
	rd_cmd(r, 4, 0);
	assert_memory_equal(rd_bytes(r, dlen), dev, dlen);
	rd_cmd(r, 2, 4);
	assert_int_equal(rd_be(r, 4), CL_PCSTREAM_PING_RUN);
	rd_cmd(r, 5, 0);
}

/* A PART section of guest pages: each page's data (or NULL) into got[],
 * counting sends in times[]. Returns the records read. */
static size_t rd_part(struct rd *r, const struct cl_vmstate *vs, const uint8_t **got,
                      unsigned *times)
{
	const uint8_t *data;
	uint64_t off;
	uint32_t b;
	uint8_t fill;
	size_t n = 0;

	assert_int_equal(rd_be(r, 1), 0x02);
	assert_int_equal(rd_be(r, 4), cl_vmstate_ram_section(vs));
	while (rd_be(r, 8) != 0x10) {
		r->pos -= 8;
		rd_record(r, vs, n == 0, &b, &off, &data, &fill);
		assert_int_equal(b, CL_TESTVM_MAIN);
		assert_true(off / PAGE < CL_TESTVM_MAIN_PAGES);
		got[off / PAGE] = data;
		times[off / PAGE]++;
		n++;
	}
	r->pos -= 8;
	rd_footer(r, vs);
	return n;
}

/* ---- tests ---- */

static uint8_t ram[CL_TESTVM_MAIN_PAGES][PAGE];

static struct cl_pcstream_page page(uint64_t k, int zero)
{
	struct cl_pcstream_page p = {CL_TESTVM_MAIN, k * PAGE, zero ? NULL : ram[k]};
	return p;
}

static void setup_ram(void)
{
	size_t k;

	for (k = 0; k < CL_TESTVM_MAIN_PAGES; k++)
		memset(ram[k], k < 8 ? (int)(0x40 + k) : 0, PAGE);
}

/* Sends every page the map still wants, one at a time. */
static void send_rest(struct cl_pcstream *ps, struct rd *r, const struct cl_vmstate *vs,
                      const uint8_t **got, unsigned *times, struct sink *s)
{
	struct cl_pcstream_page p;
	uint32_t b;
	uint64_t off;

	while (!cl_pcstream_next(ps, &b, &off)) {
		assert_int_equal(b, CL_TESTVM_MAIN);
		p = page(off / PAGE, 0);
		assert_int_equal(cl_pcstream_send(ps, &p, 1), 0);
		r->p = s->p;
		r->len = s->len;
		assert_int_equal(rd_part(r, vs, got, times), 1);
	}
	assert_int_equal(cl_pcstream_left(ps), 0);
}

static void test_roundtrip(void **state)
{
	const uint8_t *got[CL_TESTVM_MAIN_PAGES] = {0};
	unsigned times[CL_TESTVM_MAIN_PAGES] = {0};
	struct cl_pcstream_page batch[3] = {page(3, 0), page(4, 0), page(5, 1)};
	struct cl_pcstream_page twice[2] = {page(7, 0), page(7, 0)};
	struct cl_pcstream_page bad = {CL_TESTVM_ACPI, 0, ram[0]};
	struct cl_testvm vm;
	struct cl_vmstate *vs;
	struct cl_pcstream *ps;
	struct sink s = {0};
	struct rd r = {0};
	size_t k, before;

	(void)state;
	setup_ram();
	assert_int_equal(cl_testvm_build(NULL, &vm), 0);
	assert_int_equal(cl_vmstate_parse(vm.buf, vm.len, "small", &vs), 0);
	assert_int_equal(cl_pcstream_new(vs, sink_write, &s, &ps), 0);
	assert_int_equal(cl_pcstream_send(ps, batch, 1), -EINVAL); /* not started */
	assert_int_equal(cl_pcstream_start(ps), 0);
	assert_int_equal(s.writes, 1);
	assert_int_equal(cl_pcstream_start(ps), -EINVAL);
	r.p = s.p;
	r.len = s.len;
	r.last_block = -1;
	rd_prelude(&r, vs);
	assert_int_equal(r.pos, s.len);

	assert_int_equal(cl_pcstream_left(ps), CL_TESTVM_MAIN_PAGES);
	assert_int_equal(cl_pcstream_send(ps, batch, 3), 0);
	r.p = s.p;
	r.len = s.len;
	assert_int_equal(rd_part(&r, vs, got, times), 3);
	assert_null(got[5]);
	assert_int_equal(cl_pcstream_left(ps), CL_TESTVM_MAIN_PAGES - 3);

	/* refusals write nothing */
	before = s.len;
	assert_int_equal(cl_pcstream_send(ps, &batch[1], 1), -EALREADY);
	assert_non_null(strstr(cl_error_msg(), "sent twice"));
	assert_int_equal(cl_pcstream_send(ps, twice, 2), -EALREADY);
	assert_int_equal(cl_pcstream_is_sent(ps, CL_TESTVM_MAIN, 7 * PAGE), 0);
	assert_int_equal(cl_pcstream_send(ps, &bad, 1), -EINVAL);
	bad.block = CL_TESTVM_MAIN;
	bad.offset = 100;
	assert_int_equal(cl_pcstream_send(ps, &bad, 1), -EINVAL);
	bad.offset = CL_TESTVM_MAIN_PAGES * PAGE;
	assert_int_equal(cl_pcstream_send(ps, &bad, 1), -EINVAL);
	assert_int_equal(cl_pcstream_is_sent(ps, CL_TESTVM_ACPI, 0), -EINVAL);
	assert_int_equal(cl_pcstream_finish(ps), -EBUSY);
	assert_non_null(strstr(cl_error_msg(), "13 pages not sent, the first 0x0 of pc.ram"));
	assert_int_equal(s.len, before);

	/* zero pages may stay unsent, or be sent once */
	for (k = 8; k < CL_TESTVM_MAIN_PAGES; k++)
		assert_int_equal(cl_pcstream_set_zero(ps, CL_TESTVM_MAIN, k * PAGE), 0);
	assert_int_equal(cl_pcstream_left(ps), 5);
	send_rest(ps, &r, vs, got, times, &s);
	batch[0] = page(9, 1);
	assert_int_equal(cl_pcstream_send(ps, batch, 1), 0);
	r.len = s.len;
	r.p = s.p;
	assert_int_equal(rd_part(&r, vs, got, times), 1);
	assert_int_equal(cl_pcstream_send(ps, batch, 1), -EALREADY);

	assert_int_equal(cl_pcstream_finish(ps), 0);
	r.p = s.p;
	r.len = s.len;
	assert_int_equal(rd_be(&r, 1), 0x03);
	assert_int_equal(rd_be(&r, 4), CL_TESTVM_RAM_SID);
	rd_footer(&r, vs);
	assert_int_equal(rd_be(&r, 1), 0x00);
	assert_int_equal(r.pos, s.len);
	assert_int_equal(cl_pcstream_finish(ps), -EINVAL);
	assert_int_equal(cl_pcstream_send(ps, batch, 1), -EINVAL);

	/* each non-zero page came once, with its bytes */
	for (k = 0; k < CL_TESTVM_MAIN_PAGES; k++) {
		assert_int_equal(times[k], k < 8 || k == 9);
		if (k < 8 && k != 5)
			assert_memory_equal(got[k], ram[k], PAGE);
	}
	cl_pcstream_free(ps);
	cl_vmstate_free(vs);
	free(vm.buf);
	free(s.p);
}

static void test_write_error(void **state)
{
	struct cl_pcstream_page p = page(0, 0);
	struct cl_testvm vm;
	struct cl_vmstate *vs;
	struct cl_pcstream *ps;
	struct sink s = {.fail = -EPIPE};

	(void)state;
	assert_int_equal(cl_testvm_build(NULL, &vm), 0);
	assert_int_equal(cl_vmstate_parse(vm.buf, vm.len, "small", &vs), 0);
	assert_int_equal(cl_pcstream_new(vs, sink_write, &s, &ps), 0);
	assert_int_equal(cl_pcstream_start(ps), -EPIPE);
	s.fail = 0;
	assert_int_equal(cl_pcstream_send(ps, &p, 1), -EPIPE);
	assert_non_null(strstr(cl_error_msg(), "broken"));
	assert_int_equal(s.len, 0);
	cl_pcstream_free(ps);
	cl_vmstate_free(vs);
	free(vm.buf);
}

static void test_pcmap(void **state)
{
	struct cl_pcmap m;
	uint64_t k;

	(void)state;
	assert_int_equal(cl_pcmap_init(&m, 20), 0);
	assert_int_equal(cl_pcmap_left(&m), 20);
	assert_int_equal(cl_pcmap_claim(&m, 3), 0);
	assert_int_equal(cl_pcmap_claim(&m, 3), -EALREADY);
	assert_int_equal(cl_pcmap_claim(&m, 20), -ERANGE);
	assert_int_equal(cl_pcmap_set_zero(&m, 3), 0); /* sent already: counted once */
	assert_int_equal(cl_pcmap_set_zero(&m, 0), 0);
	assert_int_equal(cl_pcmap_left(&m), 18);
	for (k = 8; k < 16; k++)
		assert_int_equal(cl_pcmap_claim(&m, k), 0);
	assert_int_equal(cl_pcmap_next(&m, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(cl_pcmap_claim(&m, 0), 0); /* a zero page, sent on request */
	assert_int_equal(cl_pcmap_left(&m), 10);
	for (k = 1; k < 8; k++)
		if (k != 3)
			assert_int_equal(cl_pcmap_claim(&m, k), 0);
	assert_int_equal(cl_pcmap_next(&m, &k), 0);
	assert_int_equal(k, 16); /* bytes of claimed pages skipped */
	cl_pcmap_unclaim(&m, 5);
	assert_true(cl_pcmap_is_sent(&m, 4));
	assert_false(cl_pcmap_is_sent(&m, 5));
	assert_int_equal(cl_pcmap_left(&m), 5);
	assert_int_equal(cl_pcmap_next(&m, &k), 0);
	assert_int_equal(k, 5);
	for (k = 16; k < 20; k++)
		assert_int_equal(cl_pcmap_claim(&m, k), 0);
	assert_int_equal(cl_pcmap_claim(&m, 5), 0);
	assert_int_equal(cl_pcmap_left(&m), 0);
	assert_int_equal(cl_pcmap_next(&m, &k), -ENOENT);
	cl_pcmap_destroy(&m);

	/* rounds: each due page once, then again from the start */
	assert_int_equal(cl_pcmap_init(&m, 4), 0);
	assert_int_equal(cl_pcmap_next(&m, &k), 0);
	assert_int_equal(k, 0);
	assert_int_equal(cl_pcmap_next(&m, &k), 0);
	assert_int_equal(k, 1);
	assert_int_equal(cl_pcmap_claim(&m, 1), 0);
	assert_int_equal(cl_pcmap_set_zero(&m, 3), 0);
	assert_int_equal(cl_pcmap_next(&m, &k), 0);
	assert_int_equal(k, 2);
	assert_int_equal(cl_pcmap_next(&m, &k), 0);
	assert_int_equal(k, 0);
	assert_int_equal(cl_pcmap_claim(&m, 0), 0);
	assert_int_equal(cl_pcmap_next(&m, &k), 0);
	assert_int_equal(k, 2);
	assert_int_equal(cl_pcmap_next(&m, &k), 0);
	assert_int_equal(k, 2);
	assert_int_equal(cl_pcmap_claim(&m, 2), 0);
	assert_int_equal(cl_pcmap_next(&m, &k), -ENOENT);
	cl_pcmap_destroy(&m);
}

/* ---- return path ---- */

static size_t msg(uint8_t *p, unsigned type, const void *body, size_t n)
{
	p[0] = (uint8_t)(type >> 8);
	p[1] = (uint8_t)type;
	p[2] = (uint8_t)(n >> 8);
	p[3] = (uint8_t)n;
	memcpy(p + 4, body, n);
	return 4 + n;
}

static size_t req(uint8_t *p, const char *block, uint64_t off, uint32_t len)
{
	uint8_t b[12 + 256];
	size_t n = 12, i;

	for (i = 0; i < 8; i++)
		b[i] = (uint8_t)(off >> (56 - 8 * i));
	for (i = 0; i < 4; i++)
		b[8 + i] = (uint8_t)(len >> (24 - 8 * i));
	if (block) {
		b[n++] = (uint8_t)strlen(block);
		memcpy(b + n, block, strlen(block));
		n += strlen(block);
	}
	return msg(p, block ? CL_PCRP_REQ_ID : CL_PCRP_REQ, b, n);
}

static int parse1(struct cl_pcrp *rp, const uint8_t *p, size_t n, struct cl_pcrp_msg *m)
{
	size_t used;
	int r = cl_pcrp_parse(rp, p, n, m, &used);

	if (!r)
		assert_int_equal(used, n);
	return r;
}

static void test_return_path(void **state)
{
	struct cl_testvm vm;
	struct cl_vmstate *vs;
	struct cl_pcrp rp;
	struct cl_pcrp_msg m;
	uint8_t b[600];
	size_t n, k, used;

	(void)state;
	assert_int_equal(cl_testvm_build(NULL, &vm), 0);
	assert_int_equal(cl_vmstate_parse(vm.buf, vm.len, "small", &vs), 0);
	cl_pcrp_init(&rp, vs);
	n = msg(b, CL_PCRP_PONG, "\0\0\0\3", 4);
	assert_int_equal(parse1(&rp, b, n, &m), 0);
	assert_true(m.type == CL_PCRP_PONG && m.value == 3);
	n = req(b, NULL, 0, PAGE);
	assert_int_equal(parse1(&rp, b, n, &m), -EPROTO); /* no block named yet */
	n = req(b, "pc.ram", 3 * PAGE, PAGE);
	for (k = 0; k < n; k++) { /* a part of a message is not one yet */
		assert_int_equal(cl_pcrp_parse(&rp, b, k, &m, &used), 0);
		assert_int_equal(used, 0);
	}
	assert_int_equal(parse1(&rp, b, n, &m), 0);
	assert_true(m.type == CL_PCRP_REQ_ID && m.block == CL_TESTVM_MAIN);
	assert_true(m.offset == 3 * PAGE && m.length == PAGE);
	n = req(b, NULL, 14 * PAGE, 2 * PAGE);
	assert_int_equal(parse1(&rp, b, n, &m), 0);
	assert_true(m.type == CL_PCRP_REQ && m.block == CL_TESTVM_MAIN && m.length == 2 * PAGE);
	n = req(b, NULL, 15 * PAGE, 2 * PAGE);
	assert_int_equal(parse1(&rp, b, n, &m), -EPROTO); /* past the block */
	n = req(b, NULL, 100, PAGE);
	assert_int_equal(parse1(&rp, b, n, &m), -EPROTO);
	n = req(b, NULL, 0, 0);
	assert_int_equal(parse1(&rp, b, n, &m), -EPROTO);
	n = req(b, "pc.rom", 0, PAGE);
	assert_int_equal(parse1(&rp, b, n, &m), -EPROTO);
	n = req(b, "pc.bios", 0, PAGE); /* a carried block: the caller decides */
	assert_int_equal(parse1(&rp, b, n, &m), 0);
	assert_int_equal(m.block, CL_TESTVM_BIOS);
	n = msg(b, CL_PCRP_SHUT, "\0\0\0\0", 4);
	n += msg(b + n, CL_PCRP_PONG, "\0\0\0\1", 4);
	assert_int_equal(cl_pcrp_parse(&rp, b, n, &m, &used), 0);
	assert_true(used == 8 && m.type == CL_PCRP_SHUT && m.value == 0);
	assert_int_equal(cl_pcrp_parse(&rp, b + used, n - used, &m, &used), 0);
	assert_true(used == 8 && m.type == CL_PCRP_PONG && m.value == 1);
	/* bad lengths and types are known from the header alone */
	n = msg(b, CL_PCRP_PONG, "\0\0\0\0\0", 5);
	assert_int_equal(cl_pcrp_parse(&rp, b, 4, &m, &used), -EPROTO);
	n = msg(b, 5, "", 0);
	assert_int_equal(cl_pcrp_parse(&rp, b, n, &m, &used), -ENOTSUP);
	n = msg(b, 0, "", 0);
	assert_int_equal(cl_pcrp_parse(&rp, b, n, &m, &used), -EPROTO);
	n = msg(b, 99, "", 0);
	assert_int_equal(cl_pcrp_parse(&rp, b, n, &m, &used), -EPROTO);
	memset(b, 0xff, sizeof(b));
	assert_int_equal(cl_pcrp_parse(&rp, b, sizeof(b), &m, &used), -EPROTO);
	cl_vmstate_free(vs);
	free(vm.buf);
}

/* ---- real save files ---- */

static void check_real(const char *path)
{
	const struct cl_vmstate_block *b;
	struct cl_pcstream_page p;
	struct cl_vmstate *vs;
	struct cl_pcstream *ps;
	struct sink s = {0};
	struct rd r = {.last_block = -1};
	size_t len;
	uint64_t k;
	uint32_t main;
	uint8_t *buf = cl_test_read(path, &len);

	assert_non_null(buf);
	if (cl_vmstate_parse(buf, len, path, &vs))
		fail_msg("%s", cl_error_msg());
	assert_int_equal(cl_vmstate_main_block(vs, &main), 0);
	b = cl_vmstate_block(vs, main);
	assert_int_equal(cl_pcstream_new(vs, sink_write, &s, &ps), 0);
	assert_int_equal(cl_pcstream_start(ps), 0);
	r.p = s.p;
	r.len = s.len;
	rd_prelude(&r, vs);
	assert_int_equal(r.pos, s.len);
	printf("%s: prelude and package %zu bytes\n", path, s.len);
	memset(ram[0], 0x5a, PAGE);
	for (k = 0; k < b->length / PAGE; k++) {
		p.block = main;
		p.offset = k * PAGE;
		p.data = ram[0];
		if (k % 1000 == 7)
			assert_int_equal(cl_pcstream_send(ps, &p, 1), 0);
		else
			assert_int_equal(cl_pcstream_set_zero(ps, main, k * PAGE), 0);
	}
	assert_int_equal(cl_pcstream_finish(ps), 0);
	cl_pcstream_free(ps);
	cl_vmstate_free(vs);
	free(buf);
	free(s.p);
}

static void test_real_files(void **state)
{
	(void)state;
	cl_testvm_each_file(check_real);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_roundtrip),  cmocka_unit_test(test_write_error),
	    cmocka_unit_test(test_pcmap),      cmocka_unit_test(test_return_path),
	    cmocka_unit_test(test_real_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
