/* SPDX-License-Identifier: GPL-2.0-only */
/* Unit tests for cl_vmstate, the parser of QEMU save files: a small file
 * made in memory (tests/support/cl_testvm.c) and, when CL_VMSTATE_FILE
 * names them (paths separated by ':'), real save files: the ctest
 * guest.test_vmstate_files runs this program on the guest workload's
 * base/state and custom/state. Truncated and corrupted files are refused,
 * never crash. */
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
#include "cl_json.h"
#include "cl_testimg.h"
#include "cl_testvm.h"
#include "cl_vmstate.h"

static uint64_t be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | *p++;
	return v;
}

/* A parse that must fail with one of the refusals, a message naming the
 * file, and nothing allocated. */
static int refused(const uint8_t *buf, size_t len)
{
	struct cl_vmstate *vs = (struct cl_vmstate *)1;
	int r;

	cl_error_clear();
	r = cl_vmstate_parse(buf, len, "bad.state", &vs);
	assert_true(r == -EBADMSG || r == -ENOTSUP);
	assert_null(vs);
	assert_non_null(strstr(cl_error_msg(), "bad.state: offset "));
	return r;
}

static void test_small_file(void **state)
{
	const struct cl_vmstate_block *b;
	const struct cl_vmstate_page *pg;
	struct cl_vmstate *vs;
	struct cl_testvm vm;
	size_t off, len;
	uint32_t i;
	const char *j;

	(void)state;
	assert_int_equal(cl_testvm_build(NULL, &vm), 0);
	assert_int_equal(cl_vmstate_parse(vm.buf, vm.len, "small", &vs), 0);
	assert_string_equal(cl_vmstate_machine(vs), "pc-i440fx-7.2");
	assert_int_equal(cl_vmstate_ncaps(vs), 1);
	assert_string_equal(cl_vmstate_cap(vs, 0), "x-ignore-shared");
	assert_null(cl_vmstate_cap(vs, 1));
	assert_int_equal(cl_vmstate_ram_section(vs), CL_TESTVM_RAM_SID);
	assert_int_equal(cl_vmstate_nblocks(vs), 3);
	b = cl_vmstate_block(vs, CL_TESTVM_MAIN);
	assert_string_equal(b->name, "pc.ram");
	assert_true(b->shared);
	assert_int_equal(b->length, CL_TESTVM_MAIN_PAGES * 4096);
	assert_int_equal(b->npages, 0);
	b = cl_vmstate_block(vs, CL_TESTVM_BIOS);
	assert_string_equal(b->name, "pc.bios");
	assert_false(b->shared);
	assert_int_equal(b->addr, 0xfffff000);
	assert_null(cl_vmstate_block(vs, 3));
	assert_int_equal(cl_vmstate_main_block(vs, &i), 0);
	assert_int_equal(i, CL_TESTVM_MAIN);
	assert_int_equal(cl_vmstate_find_block(vs, "pc.biosX", 7, &i), 0);
	assert_int_equal(i, CL_TESTVM_BIOS);
	assert_int_equal(cl_vmstate_find_block(vs, "pc.bio", 6, &i), -ENOENT);

	/* pages by block and offset; the later record of acpi page 0 wins */
	assert_int_equal(cl_vmstate_npages(vs), 3);
	pg = cl_vmstate_page(vs, 0);
	assert_int_equal(pg->block, CL_TESTVM_ACPI);
	assert_int_equal(pg->offset, 0);
	assert_non_null(pg->data);
	assert_int_equal(pg->data[0], CL_TESTVM_ACPI_FILL);
	assert_int_equal(pg->data[4095], CL_TESTVM_ACPI_FILL);
	pg = cl_vmstate_page(vs, 1);
	assert_int_equal(pg->offset, 4096);
	assert_null(pg->data);
	assert_int_equal(pg->fill, 0);
	pg = cl_vmstate_page(vs, 2);
	assert_int_equal(pg->block, CL_TESTVM_BIOS);
	assert_int_equal(pg->data[17], CL_TESTVM_BIOS_FILL);
	assert_null(cl_vmstate_page(vs, 3));
	assert_int_equal(cl_vmstate_block(vs, CL_TESTVM_ACPI)->first_page, 0);
	assert_int_equal(cl_vmstate_block(vs, CL_TESTVM_BIOS)->first_page, 2);

	assert_ptr_equal(cl_vmstate_devices(vs, &off, &len), vm.buf + vm.dev_off);
	assert_int_equal(off, vm.dev_off);
	assert_int_equal(len, vm.dev_len);
	j = cl_vmstate_vmdesc(vs, &len);
	assert_ptr_equal(j, (const char *)vm.buf + vm.vmdesc_off);
	assert_int_equal(len, vm.vmdesc_len);
	cl_vmstate_free(vs);
	free(vm.buf);
}

/* Every proper prefix is refused. */
static void test_truncated(void **state)
{
	struct cl_testvm vm;
	size_t n;

	(void)state;
	assert_int_equal(cl_testvm_build(NULL, &vm), 0);
	for (n = 0; n < vm.len; n++)
		refused(vm.buf, n);
	free(vm.buf);
}

/* Each byte changed in turn: parsed or refused, never a crash (the fuzz
 * target does this at scale, under sanitizers). */
static void test_corrupted(void **state)
{
	struct cl_vmstate *vs;
	struct cl_testvm vm;
	size_t i;
	int r;

	(void)state;
	assert_int_equal(cl_testvm_build(NULL, &vm), 0);
	for (i = 0; i < vm.len; i++) {
		vm.buf[i] ^= 0x5a;
		r = cl_vmstate_parse(vm.buf, vm.len, "bad.state", &vs);
		assert_true(r == 0 || r == -EBADMSG || r == -ENOTSUP);
		cl_vmstate_free(vs);
		vm.buf[i] ^= 0x5a;
	}
	free(vm.buf);
}

static int build_refused(const struct cl_testvm_opts *o, const char *words)
{
	struct cl_testvm vm;
	int r;

	assert_int_equal(cl_testvm_build(o, &vm), 0);
	r = refused(vm.buf, vm.len);
	if (!strstr(cl_error_msg(), words))
		fail_msg("message \"%s\" lacks \"%s\"", cl_error_msg(), words);
	free(vm.buf);
	return r;
}

static void test_refusals(void **state)
{
	struct cl_testvm_opts o;

	(void)state;
	memset(&o, 0, sizeof(o));
	o.version = 4;
	assert_int_equal(build_refused(&o, "version 4"), -ENOTSUP);
	memset(&o, 0, sizeof(o));
	o.extra_flags = 0x40;
	assert_int_equal(build_refused(&o, "xbzrle"), -ENOTSUP);
	o.extra_flags = 0x100;
	assert_int_equal(build_refused(&o, "compress"), -ENOTSUP);
	o.extra_flags = 0x200;
	assert_int_equal(build_refused(&o, "unknown RAM flags 0x222"), -ENOTSUP);
	o.extra_flags = 0x08;
	assert_int_equal(build_refused(&o, "invalid RAM flags"), -EBADMSG);
	memset(&o, 0, sizeof(o));
	o.omit_page = 1;
	assert_int_equal(build_refused(&o, "page 0x1000 is not in the file"), -EBADMSG);
	memset(&o, 0, sizeof(o));
	o.bad_json = 1;
	assert_int_equal(build_refused(&o, "not JSON"), -EBADMSG);
	memset(&o, 0, sizeof(o));
	o.no_trailer = 1;
	assert_int_equal(build_refused(&o, "no vmdesc trailer"), -ENOTSUP);
	memset(&o, 0, sizeof(o));
	o.command = 1;
	assert_int_equal(build_refused(&o, "a command"), -ENOTSUP);
	memset(&o, 0, sizeof(o));
	o.acpi_length = 1ull << 40; /* more pages than the file could hold */
	assert_int_equal(build_refused(&o, "more than the file holds"), -EBADMSG);
	memset(&o, 0, sizeof(o));
	o.page_offset = 4096; /* past the one-page bios block */
	assert_int_equal(build_refused(&o, "past the end of RAM block pc.bios"), -EBADMSG);
}

static void test_json(void **state)
{
	static const char *const good[] = {"{}",
	                                   "[]",
	                                   " 1 ",
	                                   "\"a\\u0041\\n\"",
	                                   "{\"a\": [1, 2, {\"b\": null}], \"c\": {}}",
	                                   "-0.5e+3",
	                                   "true",
	                                   "[false, \"\", 0, 1E9]\r\n"};
	static const char *const bad[] = {
	    "",      "{",     "}",        "[1,]",    "{\"a\"}",   "{\"a\": 1,}",
	    "01",    "1.",    "\"\x01\"", "\"\\q\"", "{} {}",     "nul",
	    "\"abc", "[1 2]", "{1: 2}",   "-",       "\"\\u12\"", "[\"a\",]"};
	char deep[200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(*good); i++)
		if (cl_json_check(good[i], strlen(good[i])))
			fail_msg("refused: %s", good[i]);
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		if (!cl_json_check(bad[i], strlen(bad[i])))
			fail_msg("taken: %s", bad[i]);
	assert_int_equal(cl_json_check("[1]\0", 4), -1);
	memset(deep, '[', 64);
	memset(deep + 64, ']', 64);
	assert_int_equal(cl_json_check(deep, 128), 0);
	memset(deep, '[', 65);
	memset(deep + 65, ']', 65);
	assert_int_equal(cl_json_check(deep, 130), -1);
}

/* ---- real save files ---- */

static void check_real(const char *path)
{
	const struct cl_vmstate_block *b;
	const uint8_t *dev;
	struct cl_vmstate *vs;
	size_t len, off, dlen, jlen, n, i, shared = 0;
	uint32_t main;
	uint8_t *buf = cl_test_read(path, &len);
	const char *j;
	char first[64];

	assert_non_null(buf);
	if (cl_vmstate_parse(buf, len, path, &vs))
		fail_msg("%s", cl_error_msg());
	assert_int_equal(strncmp(cl_vmstate_machine(vs), "pc-", 3), 0);
	assert_int_equal(cl_vmstate_main_block(vs, &main), 0);
	assert_true(cl_vmstate_block(vs, main)->length >= (64u << 20));
	for (i = 0; i < cl_vmstate_nblocks(vs); i++) {
		b = cl_vmstate_block(vs, i);
		shared += b->shared;
		assert_int_equal(b->npages, b->shared ? 0 : b->length / 4096);
	}
	assert_int_equal(shared, 1);
	/* the trailer: the JSON QEMU writes, after the EOF byte */
	j = cl_vmstate_vmdesc(vs, &jlen);
	assert_non_null(j);
	assert_int_equal(j + jlen, (const char *)buf + len);
	assert_int_equal(j[-6], 0x00);
	assert_int_equal(j[-5], 0x06);
	assert_int_equal(be((const uint8_t *)j - 4, 4), jlen);
	assert_true(j[0] == '{' && j[jlen - 1] == '}');
	assert_non_null(memmem(j, jlen, "\"devices\": [{\"name\": \"", 22));
	/* the device block: right after the RAM END section, up to EOF */
	dev = cl_vmstate_devices(vs, &off, &dlen);
	assert_int_equal(be(dev - 13, 8), 0x10); /* EOS */
	assert_int_equal(dev[-5], 0x7e);
	assert_int_equal(be(dev - 4, 4), cl_vmstate_ram_section(vs));
	assert_int_equal(dev[0], 0x04);
	assert_ptr_equal(dev + dlen, (const uint8_t *)j - 6);
	assert_int_equal(dev[dlen - 5], 0x7e);
	/* its first section is the first device the vmdesc lists */
	n = dev[5];
	assert_true(n > 0 && n < sizeof(first));
	memcpy(first, dev + 6, n);
	first[n] = '\0';
	j = memmem(j, jlen, "\"devices\": [{\"name\": \"", 22);
	assert_int_equal(strncmp(j + 22, first, n), 0);
	assert_int_equal(j[22 + n], '"');
	printf("%s: machine %s, %zu blocks, main %s %llu MiB, %zu pages in the file, "
	       "device block %zu bytes at %zu (first %s), vmdesc %zu bytes\n",
	       path, cl_vmstate_machine(vs), cl_vmstate_nblocks(vs),
	       cl_vmstate_block(vs, main)->name,
	       (unsigned long long)(cl_vmstate_block(vs, main)->length >> 20),
	       cl_vmstate_npages(vs), dlen, off, first, jlen);
	cl_vmstate_free(vs);
	/* some truncations, around each boundary too */
	for (n = 0; n < len; n += n < 64 ? 1 : 4093)
		refused(buf, n);
	refused(buf, off);
	refused(buf, off + dlen);
	refused(buf, off + dlen + 1);
	refused(buf, len - 1);
	free(buf);
}

static void test_real_files(void **state)
{
	(void)state;
	cl_testvm_each_file(check_real);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_small_file), cmocka_unit_test(test_truncated),
	    cmocka_unit_test(test_corrupted),  cmocka_unit_test(test_refusals),
	    cmocka_unit_test(test_json),       cmocka_unit_test(test_real_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
