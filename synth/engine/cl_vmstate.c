/* SPDX-License-Identifier: GPL-2.0-only */
/* The parser of QEMU save files taken with x-ignore-shared (see
 * cl_vmstate.h). Only the framing is parsed: the configuration, the RAM
 * section's records and the section headers; device payloads stay opaque. */
#include "cl_vmstate.h"
#include "cl_bitmap.h"
#include "cl_json.h"
#include "cl_error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_MAGIC   0x5145564du /* "QEVM" */
#define FILE_VERSION 3u
#define MACHINE_MAX  256u
#define MAX_CAPS     64u
#define MAX_BLOCKS   1024u
#define MAX_VMDESC   (64u << 20)
#define RAM_VERSION  4u
#define FLAG_MASK    0xfffu /* flags live below the 4 KiB page */
#define KNOWN_FLAGS  (CL_RAM_ZERO | CL_RAM_MEM_SIZE | CL_RAM_PAGE | CL_RAM_EOS | CL_RAM_CONTINUE)

struct cl_vmstate {
	char machine[MACHINE_MAX + 1];
	char **caps;
	size_t ncaps;
	uint32_t ram_sid;
	struct cl_vmstate_block *blocks;
	size_t nblocks;
	struct cl_vmstate_page *pages; /* by block, then offset */
	size_t npages;
	const uint8_t *base; /* the parsed buffer (not ours) */
	size_t dev_off, dev_len;
	const char *vmdesc;
	size_t vmdesc_len;
};

/* Parse-time state of one block carried in the file. */
struct blk_pages {
	struct cl_vmstate_page *pages; /* indexed by page; NULL: none seen yet */
	uint8_t *seen;
};

struct parse {
	const uint8_t *p;
	size_t len, pos;
	const char *name;
	struct cl_vmstate *vs;
	struct blk_pages *bp; /* one per block */
	int ignore_shared;
	int have_blocks;
	int ram; /* 0: not started, 1: started, 2: ended */
	long last_block;
	uint64_t page_budget; /* pages the file can still hold: bounds allocations */
};

static int fail(const struct parse *ps, int err, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(const struct parse *ps, int err, size_t at, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return cl_errorf(err, "%s: offset %zu: %s", ps->name, at, msg);
}

static int need(struct parse *ps, size_t n)
{
	if (ps->len - ps->pos < n)
		return fail(ps, -EBADMSG, ps->pos, "truncated (%zu more bytes expected, %zu left)",
		            n, ps->len - ps->pos);
	return 0;
}

static uint64_t be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static int get(struct parse *ps, unsigned n, uint64_t *v)
{
	int r = need(ps, n);

	*v = 0;
	if (r)
		return r;
	*v = be(ps->p + ps->pos, n);
	ps->pos += n;
	return 0;
}

static int get_u8(struct parse *ps, uint8_t *v)
{
	uint64_t x = 0;
	int r = get(ps, 1, &x);

	*v = (uint8_t)x;
	return r;
}

static int get_u32(struct parse *ps, uint32_t *v)
{
	uint64_t x = 0;
	int r = get(ps, 4, &x);

	*v = (uint32_t)x;
	return r;
}

/* A u8-length name into out (CL_VMSTATE_NAME_MAX + 1 bytes): at least one
 * byte, no NUL in it. */
static int get_name(struct parse *ps, char *out, const char *what)
{
	size_t at = ps->pos;
	uint8_t n;
	int r = get_u8(ps, &n);

	if (!r)
		r = need(ps, n);
	if (r)
		return r;
	if (!n || memchr(ps->p + ps->pos, 0, n))
		return fail(ps, -EBADMSG, at, "bad %s name", what);
	memcpy(out, ps->p + ps->pos, n);
	out[n] = '\0';
	ps->pos += n;
	return 0;
}

/* ---- configuration ---- */

static int machine_name(struct parse *ps)
{
	size_t at = ps->pos, i;
	uint32_t n;
	int r = get_u32(ps, &n);

	if (r)
		return r;
	if (!n || n > MACHINE_MAX)
		return fail(ps, -EBADMSG, at, "machine type of %u bytes", n);
	r = need(ps, n);
	if (r)
		return r;
	for (i = 0; i < n; i++)
		if (ps->p[ps->pos + i] < 0x21 || ps->p[ps->pos + i] > 0x7e)
			return fail(ps, -EBADMSG, at, "machine type is not printable");
	memcpy(ps->vs->machine, ps->p + ps->pos, n);
	ps->vs->machine[n] = '\0';
	ps->pos += n;
	return 0;
}

static int capabilities(struct parse *ps)
{
	struct cl_vmstate *vs = ps->vs;
	size_t at = ps->pos;
	char name[CL_VMSTATE_NAME_MAX + 1];
	uint32_t n, i;
	int r = get_u32(ps, &n);

	if (r)
		return r;
	if (vs->caps || n > MAX_CAPS)
		return fail(ps, -EBADMSG, at, "capability list (%u entries)", n);
	vs->caps = calloc(n + 1, sizeof(*vs->caps));
	if (!vs->caps)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		r = get_name(ps, name, "capability");
		if (r)
			return r;
		vs->caps[i] = strdup(name);
		if (!vs->caps[i])
			return -ENOMEM;
		vs->ncaps++;
		if (!strcmp(name, "x-ignore-shared"))
			ps->ignore_shared = 1;
	}
	return 0;
}

static int subsection(struct parse *ps)
{
	char name[CL_VMSTATE_NAME_MAX + 1];
	size_t at = ps->pos;
	uint32_t ver, v;
	uint8_t tag;
	int r = get_u8(ps, &tag);

	if (!r)
		r = get_name(ps, name, "subsection");
	if (!r)
		r = get_u32(ps, &ver);
	if (r)
		return r;
	if (ver != 1)
		return fail(ps, -ENOTSUP, at, "subsection %s version %u", name, ver);
	if (!strcmp(name, "configuration/capabilities"))
		return capabilities(ps);
	if (!strcmp(name, "configuration/uuid")) {
		r = need(ps, 16);
		ps->pos += r ? 0 : 16;
		return r;
	}
	if (!strcmp(name, "configuration/target-page-bits")) {
		r = get_u32(ps, &v);
		if (!r && v != 12)
			return fail(ps, -ENOTSUP, at, "target pages of 2^%u bytes", v);
		return r;
	}
	return fail(ps, -ENOTSUP, at, "unknown configuration subsection %s", name);
}

static int header(struct parse *ps)
{
	uint32_t magic, version;
	uint8_t t;
	int r = get_u32(ps, &magic);

	if (!r)
		r = get_u32(ps, &version);
	if (r)
		return r;
	if (magic != FILE_MAGIC)
		return fail(ps, -EBADMSG, 0, "not a QEMU migration stream (no QEVM magic)");
	if (version != FILE_VERSION)
		return fail(ps, -ENOTSUP, 4, "stream version %u (3 expected)", version);
	r = get_u8(ps, &t);
	if (!r && t != CL_VM_CONFIGURATION)
		return fail(ps, -EBADMSG, 8, "no configuration section");
	if (!r)
		r = machine_name(ps);
	while (!r && ps->pos < ps->len && ps->p[ps->pos] == CL_VM_SUBSECTION)
		r = subsection(ps);
	return r;
}

/* ---- RAM ---- */

static int add_block(struct parse *ps, const char *name, uint64_t length, uint64_t addr)
{
	struct cl_vmstate *vs = ps->vs;
	struct cl_vmstate_block *b;
	struct blk_pages *bp;

	if (vs->nblocks % 16 == 0) {
		b = realloc(vs->blocks, (vs->nblocks + 16) * sizeof(*b));
		if (!b)
			return -ENOMEM;
		vs->blocks = b;
		bp = realloc(ps->bp, (vs->nblocks + 16) * sizeof(*bp));
		if (!bp)
			return -ENOMEM;
		ps->bp = bp;
	}
	b = &vs->blocks[vs->nblocks];
	memset(b, 0, sizeof(*b));
	memcpy(b->name, name, strlen(name) + 1);
	b->length = length;
	b->addr = addr;
	memset(&ps->bp[vs->nblocks], 0, sizeof(*ps->bp));
	vs->nblocks++;
	return 0;
}

static int one_block(struct parse *ps, uint64_t *total)
{
	char name[CL_VMSTATE_NAME_MAX + 1];
	uint64_t length, addr = 0;
	uint32_t dup;
	size_t at = ps->pos;
	int r = get_name(ps, name, "RAM block");

	if (!r)
		r = get(ps, 8, &length);
	if (!r && ps->ignore_shared)
		r = get(ps, 8, &addr);
	if (r)
		return r;
	if (!length || length % CL_VMSTATE_PAGE || length > *total)
		return fail(ps, -EBADMSG, at, "RAM block %s of 0x%llx bytes", name,
		            (unsigned long long)length);
	if (!cl_vmstate_find_block(ps->vs, name, strlen(name), &dup))
		return fail(ps, -EBADMSG, at, "RAM block %s listed twice", name);
	if (ps->vs->nblocks >= MAX_BLOCKS)
		return fail(ps, -EBADMSG, at, "more than %u RAM blocks", MAX_BLOCKS);
	*total -= length;
	return add_block(ps, name, length, addr);
}

static int block_list(struct parse *ps, size_t at, uint64_t total)
{
	int r = 0;

	if (ps->have_blocks || !total)
		return fail(ps, -EBADMSG, at, "a second or empty RAM block list");
	ps->have_blocks = 1;
	while (!r && total)
		r = one_block(ps, &total);
	return r;
}

/* The page table of block b, made on its first page: bounded by the pages
 * the rest of the file can hold, as each page needs a record. */
static int block_pages(struct parse *ps, size_t at, uint32_t b)
{
	const struct cl_vmstate_block *blk = &ps->vs->blocks[b];
	struct blk_pages *bp = &ps->bp[b];
	uint64_t n = blk->length / CL_VMSTATE_PAGE;

	if (bp->pages)
		return 0;
	if (n > ps->page_budget)
		return fail(ps, -EBADMSG, at, "RAM block %s: %llu pages, more than the file holds",
		            blk->name, (unsigned long long)n);
	ps->page_budget -= n;
	bp->pages = calloc(n, sizeof(*bp->pages));
	bp->seen = cl_bitmap_new(n);
	return bp->pages && bp->seen ? 0 : -ENOMEM;
}

static int record_block(struct parse *ps, size_t at, uint32_t flags, uint32_t *b)
{
	char name[CL_VMSTATE_NAME_MAX + 1];
	int r;

	if (!ps->have_blocks)
		return fail(ps, -EBADMSG, at, "a page before the RAM block list");
	if (flags & CL_RAM_CONTINUE) {
		if (ps->last_block < 0)
			return fail(ps, -EBADMSG, at, "CONTINUE record with no block before");
		*b = (uint32_t)ps->last_block;
		return 0;
	}
	r = get_name(ps, name, "RAM block");
	if (r)
		return r;
	if (cl_vmstate_find_block(ps->vs, name, strlen(name), b))
		return fail(ps, -EBADMSG, at, "page of RAM block %s, which is not listed", name);
	ps->last_block = *b;
	return 0;
}

static int page_record(struct parse *ps, size_t at, uint32_t flags, uint64_t addr)
{
	struct cl_vmstate_page pg = {0};
	uint32_t b;
	uint64_t k;
	int r = record_block(ps, at, flags, &b);

	if (r)
		return r;
	if (addr >= ps->vs->blocks[b].length)
		return fail(ps, -EBADMSG, at, "page 0x%llx past the end of RAM block %s",
		            (unsigned long long)addr, ps->vs->blocks[b].name);
	pg.block = b;
	pg.offset = addr;
	if (flags & CL_RAM_ZERO) {
		r = get_u8(ps, &pg.fill);
	} else {
		r = need(ps, CL_VMSTATE_PAGE);
		pg.data = ps->p + ps->pos;
		ps->pos += r ? 0 : CL_VMSTATE_PAGE;
	}
	if (!r)
		r = block_pages(ps, at, b);
	if (r)
		return r;
	k = addr / CL_VMSTATE_PAGE;
	ps->bp[b].pages[k] = pg;
	cl_bit_set(ps->bp[b].seen, k);
	return 0;
}

static int check_flags(struct parse *ps, size_t at, uint32_t flags)
{
	uint32_t kind = flags & ~CL_RAM_CONTINUE;

	if (flags & (CL_RAM_XBZRLE | CL_RAM_COMPRESS))
		return fail(ps, -ENOTSUP, at,
		            "compressed page (flags 0x%x): save without xbzrle and compress",
		            flags);
	if (flags & CL_RAM_HOOK)
		return fail(ps, -ENOTSUP, at, "RDMA hook record (flags 0x%x)", flags);
	if (flags & ~KNOWN_FLAGS)
		return fail(ps, -ENOTSUP, at, "unknown RAM flags 0x%x", flags);
	if (kind != CL_RAM_ZERO && kind != CL_RAM_PAGE && kind != CL_RAM_MEM_SIZE &&
	    kind != CL_RAM_EOS)
		return fail(ps, -EBADMSG, at, "invalid RAM flags 0x%x", flags);
	if (kind != CL_RAM_ZERO && kind != CL_RAM_PAGE && (flags & CL_RAM_CONTINUE))
		return fail(ps, -EBADMSG, at, "invalid RAM flags 0x%x", flags);
	return 0;
}

/* The records of one RAM section, up to its EOS; each takes 8 bytes or
 * more, so the loop ends. */
static int ram_records(struct parse *ps)
{
	uint64_t v, addr;
	uint32_t flags;
	size_t at;
	int r;

	for (;;) {
		at = ps->pos;
		r = get(ps, 8, &v);
		if (r)
			return r;
		flags = (uint32_t)(v & FLAG_MASK);
		addr = v & ~(uint64_t)FLAG_MASK;
		r = check_flags(ps, at, flags);
		if (r)
			return r;
		if (flags == CL_RAM_EOS)
			return addr ? fail(ps, -EBADMSG, at, "EOS with an offset") : 0;
		if (flags == CL_RAM_MEM_SIZE)
			r = block_list(ps, at, addr);
		else
			r = page_record(ps, at, flags, addr);
		if (r)
			return r;
	}
}

static int footer(struct parse *ps, uint32_t sid)
{
	size_t at = ps->pos;
	uint32_t id;
	uint8_t t;
	int r = get_u8(ps, &t);

	if (!r)
		r = get_u32(ps, &id);
	if (!r && (t != CL_VM_FOOTER || id != sid))
		return fail(ps, -EBADMSG, at, "no footer of section %u", sid);
	return r;
}

/* START and FULL headers: be32 id, name, be32 instance, be32 version. */
static int section_header(struct parse *ps, uint32_t *sid, char *name, uint32_t *inst,
                          uint32_t *ver)
{
	int r = get_u32(ps, sid);

	if (!r)
		r = get_name(ps, name, "section");
	if (!r)
		r = get_u32(ps, inst);
	if (!r)
		r = get_u32(ps, ver);
	return r;
}

static int ram_start(struct parse *ps, size_t at)
{
	char name[CL_VMSTATE_NAME_MAX + 1];
	uint32_t sid, inst, ver;
	int r = section_header(ps, &sid, name, &inst, &ver);

	if (r)
		return r;
	if (strcmp(name, "ram"))
		return fail(ps, -ENOTSUP, at, "iterable section %s (only ram is handled)", name);
	if (ps->ram)
		return fail(ps, -EBADMSG, at, "a second start of the RAM section");
	if (inst || ver != RAM_VERSION)
		return fail(ps, -ENOTSUP, at, "RAM section instance %u version %u", inst, ver);
	ps->vs->ram_sid = sid;
	ps->ram = 1;
	r = ram_records(ps);
	return r ? r : footer(ps, sid);
}

static int ram_part(struct parse *ps, size_t at, int end)
{
	uint32_t sid;
	int r = get_u32(ps, &sid);

	if (r)
		return r;
	if (ps->ram != 1 || sid != ps->vs->ram_sid)
		return fail(ps, -EBADMSG, at, "section %u part outside the RAM section", sid);
	r = ram_records(ps);
	if (!r)
		r = footer(ps, sid);
	if (!r && end)
		ps->ram = 2;
	return r;
}

/* Header, configuration and RAM: leaves ps->pos at the first device
 * section (or at EOF). */
static int sections(struct parse *ps)
{
	size_t at;
	uint8_t t;
	int r = header(ps);

	while (!r) {
		at = ps->pos;
		r = get_u8(ps, &t);
		if (r)
			return r;
		if (t == CL_VM_SECTION_START)
			r = ram_start(ps, at);
		else if (t == CL_VM_SECTION_PART || t == CL_VM_SECTION_END)
			r = ram_part(ps, at, t == CL_VM_SECTION_END);
		else if (t == CL_VM_SECTION_FULL || t == CL_VM_EOF) {
			ps->pos = at;
			return ps->ram == 2
			           ? 0
			           : fail(ps, -EBADMSG, at, "device state before the RAM ended");
		} else if (t == CL_VM_COMMAND)
			return fail(ps, -ENOTSUP, at, "a command: a live stream, not a save file");
		else
			return fail(ps, -EBADMSG, at, "unexpected byte 0x%02x", t);
	}
	return r;
}

/* ---- the end: EOF byte, vmdesc trailer ---- */

/* Finds the EOF byte and the vmdesc trailer after it, from the end of the
 * file: "00 06 be32 len JSON" with len reaching the end exactly. */
static int find_end(struct parse *ps, size_t *eof)
{
	size_t q, stop, n;

	if (ps->len - ps->pos < 6 || ps->p[ps->len - 1] == 0)
		return fail(ps, ps->p[ps->len - 1] ? -EBADMSG : -ENOTSUP, ps->len - 1,
		            "no vmdesc trailer after the device state");
	stop = ps->len - 6 > MAX_VMDESC ? ps->len - 6 - MAX_VMDESC : 0;
	stop = stop > ps->pos ? stop : ps->pos;
	for (q = ps->len - 6; q >= stop; q--) {
		n = (size_t)be(ps->p + q + 2, 4);
		if (ps->p[q] == CL_VM_EOF && ps->p[q + 1] == CL_VM_VMDESCRIPTION &&
		    n == ps->len - q - 6) {
			*eof = q;
			return 0;
		}
		if (q == stop)
			break;
	}
	return fail(ps, -EBADMSG, ps->pos, "no EOF byte and vmdesc trailer at the end");
}

static int devices(struct parse *ps)
{
	struct cl_vmstate *vs = ps->vs;
	char name[CL_VMSTATE_NAME_MAX + 1];
	uint32_t sid, inst, ver;
	size_t eof = 0, len = ps->len, at = ps->pos;
	int r = find_end(ps, &eof);

	if (r)
		return r;
	vs->dev_off = at;
	vs->dev_len = eof - at;
	vs->vmdesc = (const char *)ps->p + eof + 6;
	vs->vmdesc_len = len - eof - 6;
	if (cl_json_check(vs->vmdesc, vs->vmdesc_len))
		return fail(ps, -EBADMSG, eof + 6, "the vmdesc trailer is not JSON");
	if (!vs->dev_len)
		return 0;
	/* the first section's header and the last one's footer, in bounds */
	ps->len = eof;
	ps->pos = at + 1;
	r = section_header(ps, &sid, name, &inst, &ver);
	ps->len = len;
	if (!r && (vs->dev_len < 5 || ps->p[eof - 5] != CL_VM_FOOTER))
		return fail(ps, -EBADMSG, eof - 1, "the device state does not end with a footer");
	return r;
}

/* ---- whole file ---- */

/* Every page of each carried block must be in the file (the destination
 * discards its copy when postcopy is advised); the flat page list. */
static int finish_pages(struct parse *ps)
{
	struct cl_vmstate *vs = ps->vs;
	size_t b, total = 0, k, n;

	for (b = 0; b < vs->nblocks; b++)
		if (ps->bp[b].pages)
			total += vs->blocks[b].length / CL_VMSTATE_PAGE;
	vs->pages = calloc(total + 1, sizeof(*vs->pages));
	if (!vs->pages)
		return -ENOMEM;
	for (b = 0; b < vs->nblocks; b++) {
		struct cl_vmstate_block *blk = &vs->blocks[b];
		blk->shared = !ps->bp[b].pages;
		blk->first_page = vs->npages;
		n = blk->shared ? 0 : blk->length / CL_VMSTATE_PAGE;
		for (k = 0; k < n; k++)
			if (!cl_bit_get(ps->bp[b].seen, k))
				return fail(ps, -EBADMSG, vs->dev_off,
				            "RAM block %s: page 0x%llx is not in the file",
				            blk->name, (unsigned long long)k * CL_VMSTATE_PAGE);
		if (n)
			memcpy(vs->pages + vs->npages, ps->bp[b].pages, n * sizeof(*vs->pages));
		blk->npages = n;
		vs->npages += n;
	}
	return 0;
}

int cl_vmstate_parse(const void *buf, size_t len, const char *name, struct cl_vmstate **out)
{
	struct parse ps = {.p = buf, .len = len, .name = name ? name : "save file"};
	size_t b;
	int r;

	if (!buf || !out)
		return -EINVAL;
	*out = NULL;
	ps.vs = calloc(1, sizeof(*ps.vs));
	if (!ps.vs)
		return -ENOMEM;
	ps.vs->base = buf;
	ps.last_block = -1;
	ps.page_budget = len / 9 + 1; /* a record takes 9 bytes or more */
	r = sections(&ps);
	if (!r)
		r = devices(&ps);
	if (!r)
		r = finish_pages(&ps);
	for (b = 0; b < ps.vs->nblocks; b++) {
		free(ps.bp[b].pages);
		free(ps.bp[b].seen);
	}
	free(ps.bp);
	if (r) {
		cl_vmstate_free(ps.vs);
		return r;
	}
	*out = ps.vs;
	return 0;
}

void cl_vmstate_free(struct cl_vmstate *vs)
{
	size_t i;

	if (!vs)
		return;
	for (i = 0; i < vs->ncaps; i++)
		free(vs->caps[i]);
	free(vs->caps);
	free(vs->blocks);
	free(vs->pages);
	free(vs);
}

/* ---- accessors ---- */

const char *cl_vmstate_machine(const struct cl_vmstate *vs)
{
	return vs ? vs->machine : "";
}

size_t cl_vmstate_ncaps(const struct cl_vmstate *vs)
{
	return vs ? vs->ncaps : 0;
}

const char *cl_vmstate_cap(const struct cl_vmstate *vs, size_t i)
{
	return vs && i < vs->ncaps ? vs->caps[i] : NULL;
}

uint32_t cl_vmstate_ram_section(const struct cl_vmstate *vs)
{
	return vs ? vs->ram_sid : 0;
}

size_t cl_vmstate_nblocks(const struct cl_vmstate *vs)
{
	return vs ? vs->nblocks : 0;
}

const struct cl_vmstate_block *cl_vmstate_block(const struct cl_vmstate *vs, size_t i)
{
	return vs && i < vs->nblocks ? &vs->blocks[i] : NULL;
}

int cl_vmstate_find_block(const struct cl_vmstate *vs, const char *name, size_t len,
                          uint32_t *index)
{
	size_t i;

	if (!vs || !name || !index)
		return -EINVAL;
	for (i = 0; i < vs->nblocks; i++)
		if (strlen(vs->blocks[i].name) == len && !memcmp(vs->blocks[i].name, name, len)) {
			*index = (uint32_t)i;
			return 0;
		}
	return -ENOENT;
}

int cl_vmstate_main_block(const struct cl_vmstate *vs, uint32_t *index)
{
	size_t i, n = 0;

	if (!vs || !index)
		return -EINVAL;
	for (i = 0; i < vs->nblocks; i++)
		if (vs->blocks[i].shared && n++ == 0)
			*index = (uint32_t)i;
	if (n == 1)
		return 0;
	return n ? cl_errorf(-ENOTSUP, "%zu RAM blocks are shared; one guest RAM expected", n)
	         : cl_errorf(-ENOENT, "no RAM block is shared: not saved with x-ignore-shared");
}

size_t cl_vmstate_npages(const struct cl_vmstate *vs)
{
	return vs ? vs->npages : 0;
}

const struct cl_vmstate_page *cl_vmstate_page(const struct cl_vmstate *vs, size_t i)
{
	return vs && i < vs->npages ? &vs->pages[i] : NULL;
}

const uint8_t *cl_vmstate_devices(const struct cl_vmstate *vs, size_t *offset, size_t *len)
{
	if (!vs)
		return NULL;
	if (offset)
		*offset = vs->dev_off;
	if (len)
		*len = vs->dev_len;
	return vs->base + vs->dev_off;
}

const char *cl_vmstate_vmdesc(const struct cl_vmstate *vs, size_t *len)
{
	if (len)
		*len = vs ? vs->vmdesc_len : 0;
	return vs && vs->vmdesc_len ? vs->vmdesc : NULL;
}
