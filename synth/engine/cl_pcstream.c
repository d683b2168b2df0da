/* SPDX-License-Identifier: GPL-2.0-only */
/* The postcopy source stream and its return path (see cl_pcstream.h). */
#include "cl_pcstream.h"
#include "cl_bitmap.h"
#include "cl_error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FILE_MAGIC   0x5145564du /* "QEVM" */
#define FILE_VERSION 3u
#define RAM_VERSION  4u

/* QEMU_VM_COMMAND numbers (savevm.c) */
#define CMD_OPEN_RETURN_PATH 1
#define CMD_PING             2
#define CMD_POSTCOPY_ADVISE  3
#define CMD_POSTCOPY_LISTEN  4
#define CMD_POSTCOPY_RUN     5
#define CMD_RAM_DISCARD      6
#define CMD_PACKAGED         7
#define CMD_LEN              5 /* u8 8, be16 command, be16 length */

/* Return-path message types past the ones cl_pcstream.h names. */
#define RP_RECV_BITMAP 5
#define RP_LAST_KNOWN  7 /* RESUME_ACK 6, SWITCHOVER_ACK 7 (QEMU 8.1) */

/* ---- sent-page bitmap ---- */

int cl_pcmap_init(struct cl_pcmap *m, uint64_t npages)
{
	if (!m)
		return -EINVAL;
	memset(m, 0, sizeof(*m));
	m->sent = cl_bitmap_new(npages);
	m->zero = cl_bitmap_new(npages);
	if (!m->sent || !m->zero) {
		cl_pcmap_destroy(m);
		return -ENOMEM;
	}
	m->npages = npages;
	return 0;
}

void cl_pcmap_destroy(struct cl_pcmap *m)
{
	if (!m)
		return;
	free(m->sent);
	free(m->zero);
	memset(m, 0, sizeof(*m));
}

int cl_pcmap_claim(struct cl_pcmap *m, uint64_t k)
{
	if (!m || k >= m->npages)
		return -ERANGE;
	if (cl_bit_get(m->sent, k))
		return -EALREADY;
	cl_bit_set(m->sent, k);
	m->done += !cl_bit_get(m->zero, k);
	return 0;
}

void cl_pcmap_unclaim(struct cl_pcmap *m, uint64_t k)
{
	if (!m || k >= m->npages || !cl_bit_get(m->sent, k))
		return;
	cl_bit_clear(m->sent, k);
	m->done -= !cl_bit_get(m->zero, k);
	if (k < m->next)
		m->next = k;
}

int cl_pcmap_set_zero(struct cl_pcmap *m, uint64_t k)
{
	if (!m || k >= m->npages)
		return -ERANGE;
	if (!cl_bit_get(m->zero, k)) {
		cl_bit_set(m->zero, k);
		m->done += !cl_bit_get(m->sent, k);
	}
	return 0;
}

int cl_pcmap_is_sent(const struct cl_pcmap *m, uint64_t k)
{
	return m && k < m->npages && cl_bit_get(m->sent, k);
}

/* The first page at or after from that is neither sent nor zero. */
static int scan(const struct cl_pcmap *m, uint64_t from, uint64_t *k)
{
	uint64_t i;

	for (i = from; i < m->npages;) {
		if (i % 8 == 0 && (m->sent[i / 8] | m->zero[i / 8]) == 0xff) {
			i += 8;
			continue;
		}
		if (!cl_bit_get(m->sent, i) && !cl_bit_get(m->zero, i)) {
			*k = i;
			return 0;
		}
		i++;
	}
	return -ENOENT;
}

int cl_pcmap_next(struct cl_pcmap *m, uint64_t *k)
{
	if (!m || !k)
		return -EINVAL;
	if (scan(m, m->next, k) && (!m->next || scan(m, 0, k)))
		return -ENOENT;
	m->next = *k + 1;
	return 0;
}

uint64_t cl_pcmap_left(const struct cl_pcmap *m)
{
	return m ? m->npages - m->done : 0;
}

/* ---- output buffer ---- */

struct out {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void put(struct out *o, const void *data, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (o->err)
		return;
	if (o->cap - o->len < n) {
		cap = o->cap ? o->cap : 4096;
		while (cap - o->len < n)
			cap *= 2;
		p = realloc(o->p, cap);
		if (!p) {
			o->err = -ENOMEM;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, data, n);
	o->len += n;
}

static void put_be(struct out *o, uint64_t v, unsigned n)
{
	uint8_t b[8];
	unsigned i;

	for (i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	put(o, b, n);
}

static void put_u8(struct out *o, uint8_t v)
{
	put(o, &v, 1);
}

static void put_name(struct out *o, const char *name)
{
	put_u8(o, (uint8_t)strlen(name));
	put(o, name, strlen(name));
}

static void put_cmd(struct out *o, unsigned cmd, size_t len)
{
	put_u8(o, CL_VM_COMMAND);
	put_be(o, cmd, 2);
	put_be(o, len, 2);
}

/* ---- the stream ---- */

struct cl_pcstream {
	const struct cl_vmstate *vs;
	cl_pcstream_write_fn write;
	void *ctx;
	struct cl_pcmap *maps; /* one per block; only shared blocks have pages */
	size_t nblocks;
	uint32_t first_shared;
	size_t cursor;   /* block cl_pcstream_next() looks in first */
	long last_block; /* of the record before in this section, or -1 */
	int started, finished, broken;
	struct out out;
};

int cl_pcstream_write_fd(void *ctx, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int fd = ctx ? *(int *)ctx : -1, sock = 1;
	ssize_t n;

	if (fd < 0 || (!buf && len))
		return -EINVAL;
	while (len) {
		n = sock ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
		if (n < 0 && errno == ENOTSOCK && sock) {
			sock = 0;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return cl_errorf(-ETIMEDOUT,
			                 "postcopy stream: the destination stopped reading");
		if (n <= 0)
			return cl_errorf(n < 0 ? -errno : -EIO, "postcopy stream: write: %s",
			                 n < 0 ? strerror(errno) : "nothing written");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int cl_pcstream_new(const struct cl_vmstate *vs, cl_pcstream_write_fn write, void *ctx,
                    struct cl_pcstream **out)
{
	struct cl_pcstream *ps;
	const struct cl_vmstate_block *b;
	size_t i;
	int r = 0, shared = 0;

	if (!vs || !write || !out)
		return -EINVAL;
	ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -ENOMEM;
	ps->vs = vs;
	ps->write = write;
	ps->ctx = ctx;
	ps->last_block = -1;
	ps->nblocks = cl_vmstate_nblocks(vs);
	ps->maps = calloc(ps->nblocks + 1, sizeof(*ps->maps));
	if (!ps->maps)
		r = -ENOMEM;
	for (i = 0; !r && i < ps->nblocks; i++) {
		b = cl_vmstate_block(vs, i);
		if (b->shared && !shared++)
			ps->first_shared = (uint32_t)i;
		if (b->shared && b->length > CL_PCSTREAM_MAX_BLOCK)
			r = cl_errorf(-EFBIG, "RAM block %s of %llu bytes: too large to serve",
			              b->name, (unsigned long long)b->length);
		else
			r = cl_pcmap_init(&ps->maps[i],
			                  b->shared ? b->length / CL_VMSTATE_PAGE : 0);
	}
	if (!r && !shared)
		r = cl_errorf(-ENOTSUP, "no RAM block to serve: not saved with x-ignore-shared");
	if (r) {
		cl_pcstream_free(ps);
		return r;
	}
	*out = ps;
	return 0;
}

void cl_pcstream_free(struct cl_pcstream *ps)
{
	size_t i;

	if (!ps)
		return;
	for (i = 0; ps->maps && i < ps->nblocks; i++)
		cl_pcmap_destroy(&ps->maps[i]);
	free(ps->maps);
	free(ps->out.p);
	free(ps);
}

/* Writes the buffer out; a failed write leaves the stream broken. */
static int flush(struct cl_pcstream *ps)
{
	int r = ps->out.err;

	if (!r)
		r = ps->write(ps->ctx, ps->out.p, ps->out.len);
	ps->out.len = 0;
	ps->out.err = 0;
	if (r)
		ps->broken = 1;
	return r;
}

static int usable(const struct cl_pcstream *ps)
{
	if (!ps)
		return -EINVAL;
	if (ps->broken)
		return cl_errorf(-EPIPE, "postcopy stream: broken by an earlier error");
	if (ps->finished)
		return cl_errorf(-EINVAL, "postcopy stream: already ended");
	return 0;
}

static void page_record(struct cl_pcstream *ps, uint32_t block, uint64_t offset, const void *data,
                        uint8_t fill)
{
	const struct cl_vmstate_block *b = cl_vmstate_block(ps->vs, block);
	uint64_t flags = data ? CL_RAM_PAGE : CL_RAM_ZERO;

	if (ps->last_block == (long)block)
		flags |= CL_RAM_CONTINUE;
	put_be(&ps->out, offset | flags, 8);
	if (!(flags & CL_RAM_CONTINUE))
		put_name(&ps->out, b->name);
	if (data)
		put(&ps->out, data, CL_VMSTATE_PAGE);
	else
		put_u8(&ps->out, fill);
	ps->last_block = block;
}

/* Opens a RAM section of type t; names the first block of every section
 * rather than relying on the destination's memory of the last one. */
static void section_open(struct cl_pcstream *ps, uint8_t t)
{
	put_u8(&ps->out, t);
	put_be(&ps->out, cl_vmstate_ram_section(ps->vs), 4);
	ps->last_block = -1;
}

static void section_close(struct cl_pcstream *ps)
{
	put_be(&ps->out, CL_RAM_EOS, 8);
	put_u8(&ps->out, CL_VM_FOOTER);
	put_be(&ps->out, cl_vmstate_ram_section(ps->vs), 4);
}

/* Header, configuration (machine type only), return path, ping, advise. */
static void prelude(struct cl_pcstream *ps)
{
	const char *machine = cl_vmstate_machine(ps->vs);
	struct out *o = &ps->out;

	put_be(o, FILE_MAGIC, 4);
	put_be(o, FILE_VERSION, 4);
	put_u8(o, CL_VM_CONFIGURATION);
	put_be(o, strlen(machine), 4);
	put(o, machine, strlen(machine));
	put_cmd(o, CMD_OPEN_RETURN_PATH, 0);
	put_cmd(o, CMD_PING, 4);
	put_be(o, CL_PCSTREAM_PING_OPEN, 4);
	/* the summary of the blocks' page sizes, then the target's */
	put_cmd(o, CMD_POSTCOPY_ADVISE, 16);
	put_be(o, CL_VMSTATE_PAGE, 8);
	put_be(o, CL_VMSTATE_PAGE, 8);
}

/* RAM START: the block list without page sizes (4 KiB pages) and without
 * addresses (the destination does not ignore shared RAM). */
static void block_list(struct cl_pcstream *ps)
{
	const struct cl_vmstate_block *b;
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < ps->nblocks; i++)
		total += cl_vmstate_block(ps->vs, i)->length;
	put_u8(&ps->out, CL_VM_SECTION_START);
	put_be(&ps->out, cl_vmstate_ram_section(ps->vs), 4);
	put_name(&ps->out, "ram");
	put_be(&ps->out, 0, 4);
	put_be(&ps->out, RAM_VERSION, 4);
	put_be(&ps->out, total | CL_RAM_MEM_SIZE, 8);
	for (i = 0; i < ps->nblocks; i++) {
		b = cl_vmstate_block(ps->vs, i);
		put_name(&ps->out, b->name);
		put_be(&ps->out, b->length, 8);
	}
	section_close(ps);
}

/* The pages of the save file, loaded before LISTEN (precopy mode). */
static void file_pages(struct cl_pcstream *ps)
{
	const struct cl_vmstate_page *pg;
	size_t i, n = cl_vmstate_npages(ps->vs);

	if (!n)
		return;
	section_open(ps, CL_VM_SECTION_PART);
	for (i = 0; i < n; i++) {
		pg = cl_vmstate_page(ps->vs, i);
		page_record(ps, pg->block, pg->offset, pg->data, pg->fill);
	}
	section_close(ps);
}

/* One discard of a page nothing was written to yet (the 7.2 quirk). */
static void discard(struct cl_pcstream *ps)
{
	const char *name = cl_vmstate_block(ps->vs, ps->first_shared)->name;
	size_t n = strlen(name);

	put_cmd(&ps->out, CMD_RAM_DISCARD, 1 + 1 + n + 1 + 16);
	put_u8(&ps->out, 0); /* version */
	put_name(&ps->out, name);
	put_u8(&ps->out, 0);
	put_be(&ps->out, 0, 8);
	put_be(&ps->out, CL_VMSTATE_PAGE, 8);
}

static void package(struct cl_pcstream *ps, const uint8_t *dev, size_t dev_len)
{
	size_t len = CMD_LEN + dev_len + CMD_LEN + 4 + CMD_LEN;

	put_cmd(&ps->out, CMD_PACKAGED, 4);
	put_be(&ps->out, len, 4);
	put_cmd(&ps->out, CMD_POSTCOPY_LISTEN, 0);
	put(&ps->out, dev, dev_len);
	put_cmd(&ps->out, CMD_PING, 4);
	put_be(&ps->out, CL_PCSTREAM_PING_RUN, 4);
	put_cmd(&ps->out, CMD_POSTCOPY_RUN, 0);
}

int cl_pcstream_start(struct cl_pcstream *ps)
{
	const uint8_t *dev;
	size_t dev_len;
	int r = usable(ps);

	if (r)
		return r;
	if (ps->started)
		return cl_errorf(-EINVAL, "postcopy stream: already started");
	dev = cl_vmstate_devices(ps->vs, NULL, &dev_len);
	if (dev_len > CL_PCSTREAM_MAX_PACKAGE - 4 * CMD_LEN)
		return cl_errorf(-EFBIG, "device state of %zu bytes: more than a package holds",
		                 dev_len);
	ps->started = 1;
	prelude(ps);
	block_list(ps);
	file_pages(ps);
	discard(ps);
	package(ps, dev, dev_len);
	return flush(ps);
}

static int check_page(const struct cl_pcstream *ps, const struct cl_pcstream_page *pg)
{
	const struct cl_vmstate_block *b = cl_vmstate_block(ps->vs, pg->block);

	if (!b || !b->shared || pg->offset % CL_VMSTATE_PAGE || pg->offset >= b->length)
		return cl_errorf(-EINVAL, "postcopy stream: no page 0x%llx in a shared block %u",
		                 (unsigned long long)pg->offset, pg->block);
	return 0;
}

/* Claims every page of the batch, or none. */
static int claim_all(struct cl_pcstream *ps, const struct cl_pcstream_page *pages, size_t n)
{
	size_t i;
	int r = 0;

	for (i = 0; !r && i < n; i++) {
		r = check_page(ps, &pages[i]);
		if (!r)
			r = cl_pcmap_claim(&ps->maps[pages[i].block],
			                   pages[i].offset / CL_VMSTATE_PAGE);
		if (r == -EALREADY)
			r = cl_errorf(r, "postcopy stream: page 0x%llx of %s sent twice",
			              (unsigned long long)pages[i].offset,
			              cl_vmstate_block(ps->vs, pages[i].block)->name);
	}
	if (!r)
		return 0;
	for (i--; i-- > 0;)
		cl_pcmap_unclaim(&ps->maps[pages[i].block], pages[i].offset / CL_VMSTATE_PAGE);
	return r;
}

int cl_pcstream_send(struct cl_pcstream *ps, const struct cl_pcstream_page *pages, size_t n)
{
	size_t i;
	int r = usable(ps);

	if (r)
		return r;
	if (!ps->started || (n && !pages))
		return cl_errorf(-EINVAL, "postcopy stream: pages before the start");
	if (!n)
		return 0;
	r = claim_all(ps, pages, n);
	if (r)
		return r;
	section_open(ps, CL_VM_SECTION_PART);
	for (i = 0; i < n; i++)
		page_record(ps, pages[i].block, pages[i].offset, pages[i].data, 0);
	section_close(ps);
	return flush(ps);
}

static struct cl_pcmap *shared_map(const struct cl_pcstream *ps, uint32_t block)
{
	const struct cl_vmstate_block *b;

	if (!ps)
		return NULL;
	b = cl_vmstate_block(ps->vs, block);
	return b && b->shared ? &ps->maps[block] : NULL;
}

int cl_pcstream_set_zero(struct cl_pcstream *ps, uint32_t block, uint64_t offset)
{
	struct cl_pcmap *m = shared_map(ps, block);

	if (!m || offset % CL_VMSTATE_PAGE)
		return -EINVAL;
	return cl_pcmap_set_zero(m, offset / CL_VMSTATE_PAGE);
}

int cl_pcstream_is_sent(const struct cl_pcstream *ps, uint32_t block, uint64_t offset)
{
	const struct cl_pcmap *m = shared_map(ps, block);

	if (!m || offset % CL_VMSTATE_PAGE || offset / CL_VMSTATE_PAGE >= m->npages)
		return -EINVAL;
	return cl_pcmap_is_sent(m, offset / CL_VMSTATE_PAGE);
}

int cl_pcstream_next(struct cl_pcstream *ps, uint32_t *block, uint64_t *offset)
{
	struct cl_pcmap *m;
	uint64_t k;
	size_t i, b;
	int pass;

	if (!ps || !block || !offset)
		return -EINVAL;
	/* on from where the last one was; then a new round from the start */
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < ps->nblocks; i++) {
			b = pass ? i : (ps->cursor + i) % ps->nblocks;
			m = &ps->maps[b];
			if (scan(m, pass ? 0 : m->next, &k))
				continue;
			m->next = k + 1;
			ps->cursor = b;
			*block = (uint32_t)b;
			*offset = k * CL_VMSTATE_PAGE;
			return 0;
		}
	return -ENOENT;
}

uint64_t cl_pcstream_left(const struct cl_pcstream *ps)
{
	uint64_t n = 0;
	size_t i;

	for (i = 0; ps && i < ps->nblocks; i++)
		n += cl_pcmap_left(&ps->maps[i]);
	return n;
}

const struct cl_pcmap *cl_pcstream_map(const struct cl_pcstream *ps, uint32_t block)
{
	return shared_map(ps, block);
}

int cl_pcstream_finish(struct cl_pcstream *ps)
{
	uint64_t left = cl_pcstream_left(ps), k;
	size_t b;
	int r = usable(ps);

	if (r)
		return r;
	if (!ps->started)
		return cl_errorf(-EINVAL, "postcopy stream: ended before the start");
	for (b = 0; left && b < ps->nblocks; b++)
		if (!scan(&ps->maps[b], 0, &k))
			return cl_errorf(
			    -EBUSY, "postcopy stream: %llu pages not sent, the first 0x%llx of %s",
			    (unsigned long long)left, (unsigned long long)k * CL_VMSTATE_PAGE,
			    cl_vmstate_block(ps->vs, b)->name);
	section_open(ps, CL_VM_SECTION_END);
	section_close(ps);
	put_u8(&ps->out, CL_VM_EOF);
	ps->finished = 1;
	return flush(ps);
}

/* ---- the return path: be16 type, be16 length, body ---- */

void cl_pcrp_init(struct cl_pcrp *rp, const struct cl_vmstate *vs)
{
	if (!rp)
		return;
	memset(rp, 0, sizeof(*rp));
	rp->vs = vs;
}

static uint64_t be_at(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* The length a message of this type must have (REQ_ID: at least). */
static int body_len_ok(unsigned type, size_t len)
{
	switch (type) {
	case CL_PCRP_SHUT:
	case CL_PCRP_PONG:
		return len == 4;
	case CL_PCRP_REQ:
		return len == 12;
	case CL_PCRP_REQ_ID:
		return len >= 14 && len <= CL_PCRP_MAX_BODY;
	}
	return 0;
}

static int request(struct cl_pcrp *rp, const uint8_t *body, size_t len, struct cl_pcrp_msg *msg)
{
	const struct cl_vmstate_block *b;

	if (msg->type == CL_PCRP_REQ_ID) {
		if ((size_t)body[12] + 13 != len ||
		    cl_vmstate_find_block(rp->vs, (const char *)body + 13, body[12], &rp->block))
			return cl_errorf(-EPROTO,
			                 "return path: a request for an unknown RAM block");
		rp->have_block = 1;
	} else if (!rp->have_block) {
		return cl_errorf(-EPROTO, "return path: a request before any block was named");
	}
	b = cl_vmstate_block(rp->vs, rp->block);
	msg->block = rp->block;
	msg->offset = be_at(body, 8);
	msg->length = be_at(body + 8, 4);
	if (!msg->length || msg->offset % CL_VMSTATE_PAGE || msg->length % CL_VMSTATE_PAGE ||
	    msg->offset >= b->length || msg->length > b->length - msg->offset)
		return cl_errorf(-EPROTO, "return path: request 0x%llx+0x%llx outside RAM block %s",
		                 (unsigned long long)msg->offset, (unsigned long long)msg->length,
		                 b->name);
	return 0;
}

int cl_pcrp_parse(struct cl_pcrp *rp, const void *buf, size_t len, struct cl_pcrp_msg *msg,
                  size_t *used)
{
	const uint8_t *p = buf;
	unsigned type;
	size_t blen;

	if (!rp || !rp->vs || (!buf && len) || !msg || !used)
		return -EINVAL;
	*used = 0;
	memset(msg, 0, sizeof(*msg));
	if (len < 4)
		return 0;
	type = (unsigned)be_at(p, 2);
	blen = (size_t)be_at(p + 2, 2);
	if (type >= RP_RECV_BITMAP && type <= RP_LAST_KNOWN)
		return cl_errorf(-ENOTSUP, "return path: message %u (postcopy recovery?)", type);
	if (!body_len_ok(type, blen))
		return cl_errorf(-EPROTO, "return path: message %u of %zu bytes", type, blen);
	if (len - 4 < blen)
		return 0;
	msg->type = (int)type;
	if (type == CL_PCRP_SHUT || type == CL_PCRP_PONG)
		msg->value = (uint32_t)be_at(p + 4, 4);
	else if (request(rp, p + 4, blen, msg))
		return -EPROTO;
	*used = 4 + blen;
	return 0;
}
