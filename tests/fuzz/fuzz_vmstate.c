/* SPDX-License-Identifier: GPL-2.0-only */
/* QEMU save files (cl_vmstate_parse), and the postcopy stream made from
 * what parses (cl_pcstream).
 *
 * Input: the file. What parses must describe only bytes of the input:
 * pages inside their blocks and pointing into the input, the device block
 * and the vmdesc trailer in bounds, the trailer ending the input; a stream
 * made from it must start, take every page of a small shared block once
 * (none twice) and end. */
#include "cl_error.h"
#include "cl_pcstream.h"
#include "cl_vmstate.h"
#include "fuzz_common.h"

#include <errno.h>
#include <string.h>

#define SMALL_RAM (64u << 20) /* streams are made for guests this small */

static int count_write(void *ctx, const void *buf, size_t len)
{
	(void)buf;
	*(size_t *)ctx += len;
	return 0;
}

static void check_parsed(const struct cl_vmstate *vs, const uint8_t *buf, size_t size)
{
	const struct cl_vmstate_block *b;
	const struct cl_vmstate_page *pg;
	const uint8_t *dev;
	size_t i, off, len, pages = 0;
	const char *j;

	FUZZ_CHECK(strlen(cl_vmstate_machine(vs)) > 0);
	for (i = 0; i < cl_vmstate_nblocks(vs); i++) {
		b = cl_vmstate_block(vs, i);
		FUZZ_CHECK(b->length && b->length % CL_VMSTATE_PAGE == 0 && b->name[0]);
		FUZZ_CHECK(b->npages == (b->shared ? 0 : b->length / CL_VMSTATE_PAGE));
		FUZZ_CHECK(b->first_page == pages);
		pages += b->npages;
	}
	FUZZ_CHECK(pages == cl_vmstate_npages(vs));
	for (i = 0; i < pages; i++) {
		pg = cl_vmstate_page(vs, i);
		b = cl_vmstate_block(vs, pg->block);
		FUZZ_CHECK(b && !b->shared && pg->offset < b->length);
		FUZZ_CHECK(pg->offset == (i - b->first_page) * CL_VMSTATE_PAGE);
		FUZZ_CHECK(!pg->data ||
		           (pg->data >= buf && pg->data + CL_VMSTATE_PAGE <= buf + size));
	}
	dev = cl_vmstate_devices(vs, &off, &len);
	FUZZ_CHECK(dev == buf + off && off <= size && len <= size - off);
	j = cl_vmstate_vmdesc(vs, &len);
	FUZZ_CHECK(j && j > (const char *)dev && j + len == (const char *)buf + size);
}

/* Every page of the shared blocks once: data, zero or known zero. */
static void check_stream(const struct cl_vmstate *vs)
{
	struct cl_pcstream *ps;
	struct cl_pcstream_page pg;
	uint8_t page[CL_VMSTATE_PAGE] = {1};
	uint64_t total = 0, off, n = 0;
	size_t out = 0, i;
	uint32_t b;

	for (i = 0; i < cl_vmstate_nblocks(vs); i++)
		if (cl_vmstate_block(vs, i)->shared)
			total += cl_vmstate_block(vs, i)->length;
	if (!total || total > SMALL_RAM)
		return;
	FUZZ_CHECK(cl_pcstream_new(vs, count_write, &out, &ps) == 0);
	if (cl_pcstream_start(ps) == 0) {
		FUZZ_CHECK(out > 0);
		while (cl_pcstream_next(ps, &b, &off) == 0) {
			pg.block = b;
			pg.offset = off;
			pg.data = n % 3 ? page : NULL;
			if (n % 5 == 4) {
				FUZZ_CHECK(cl_pcstream_set_zero(ps, b, off) == 0);
			} else {
				FUZZ_CHECK(cl_pcstream_send(ps, &pg, 1) == 0);
				if (n % 7 == 0)
					FUZZ_CHECK(cl_pcstream_send(ps, &pg, 1) == -EALREADY);
			}
			n++;
		}
		FUZZ_CHECK(cl_pcstream_left(ps) == 0);
		FUZZ_CHECK(n == total / CL_VMSTATE_PAGE);
		FUZZ_CHECK(cl_pcstream_finish(ps) == 0);
	}
	cl_pcstream_free(ps);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cl_vmstate *vs = NULL;
	uint8_t *buf = fuzz_dup(data, size);
	int r;

	FUZZ_CHECK(buf);
	r = cl_vmstate_parse(buf, size, "fuzz", &vs);
	FUZZ_CHECK(r == 0 || r == -EBADMSG || r == -ENOTSUP);
	if (r == 0) {
		check_parsed(vs, buf, size);
		check_stream(vs);
	} else {
		FUZZ_CHECK(vs == NULL);
		FUZZ_CHECK(!strncmp(cl_error_msg(), "fuzz: offset ", 13));
	}
	cl_error_clear();
	cl_vmstate_free(vs);
	free(buf);
	return 0;
}
