/* SPDX-License-Identifier: GPL-2.0-only */
/* A postcopy migration *source* for a stock QEMU 7.2 destination (started
 * with -incoming defer and the capability postcopy-ram), built from a save
 * file (cl_vmstate.h): the device state resumes at once while the pages of
 * guest RAM are sent as the destination asks for them (internal to the
 * engine). What is written, in order:
 *
 *   header; configuration without the capabilities subsection (the saved
 *   one lists x-ignore-shared, which the destination would check);
 *   OPEN_RETURN_PATH; PING 1; POSTCOPY_ADVISE (4 KiB pages);
 *   RAM START with the block list; a PART with every page the save file
 *   carries (ROMs, ACPI tables, VGA); one RAM_DISCARD of the first page of
 *   the guest RAM, because QEMU 7.2 loads the package in precopy mode (and
 *   hangs) when LISTEN comes with no discard before it;
 *   PACKAGED { LISTEN, the device block verbatim, PING 3, RUN };
 *   then PART sections of guest pages, each ending with EOS;
 *   END (EOS only) and EOF, after which the destination answers SHUT.
 *
 * Requests come back on the same connection (the return path, parsed by
 * cl_pcrp_parse()); they arrive while the package still loads, so the
 * caller reads them concurrently with writing. Writing is not thread-safe:
 * one thread writes, or the caller serializes. No page is ever sent twice
 * (QEMU ends the migration on a duplicate); cl_pcstream_finish() refuses
 * EOF while a page neither sent nor known to be zero remains. */
#ifndef CL_PCSTREAM_H
#define CL_PCSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "cl_vmstate.h"

/* PING values of the stream: the second one follows the device state in
 * the package, so its PONG tells that the guest is about to run. */
#define CL_PCSTREAM_PING_OPEN 1u
#define CL_PCSTREAM_PING_RUN  3u
/* The package's limit in QEMU 7.2 (MAX_VM_CMD_PACKAGED_SIZE). */
#define CL_PCSTREAM_MAX_PACKAGE (1u << 24)
/* The largest shared block served: bounds the sent-page maps (2 x 32 MiB). */
#define CL_PCSTREAM_MAX_BLOCK (1ull << 40)

/* ---- sent-page bitmap of one block ---- */

/* Which pages of a block were sent and which are known to be all zero
 * (those may be left out: the destination maps zeros where nothing came). */
struct cl_pcmap {
	uint64_t npages;
	uint8_t *sent; /* owned */
	uint8_t *zero; /* owned */
	uint64_t done; /* pages sent or known zero */
	uint64_t next; /* where cl_pcmap_next() looks first */
};

int cl_pcmap_init(struct cl_pcmap *m, uint64_t npages);
void cl_pcmap_destroy(struct cl_pcmap *m);
/* Marks page k sent: 0, -EALREADY if it was sent before, -ERANGE. */
int cl_pcmap_claim(struct cl_pcmap *m, uint64_t k);
/* Undoes a claim that was not written after all. */
void cl_pcmap_unclaim(struct cl_pcmap *m, uint64_t k);
/* Page k is all zero: it need not be sent (it still may be, once). */
int cl_pcmap_set_zero(struct cl_pcmap *m, uint64_t k);
int cl_pcmap_is_sent(const struct cl_pcmap *m, uint64_t k);
/* The pages neither sent nor known zero, in order: the first one after
 * the page returned last, starting again from page 0 past the end (a page
 * returned but not sent since comes again in the next round). 0, or
 * -ENOENT when none remains. */
int cl_pcmap_next(struct cl_pcmap *m, uint64_t *k);
/* Pages neither sent nor known zero. */
uint64_t cl_pcmap_left(const struct cl_pcmap *m);

/* ---- the stream ---- */

/* Writes all of buf or fails (-errno). */
typedef int (*cl_pcstream_write_fn)(void *ctx, const void *buf, size_t len);

/* A write function for a file descriptor: ctx points to the int fd. A
 * socket gets MSG_NOSIGNAL (a closed peer is -EPIPE, not a signal). */
int cl_pcstream_write_fd(void *ctx, const void *buf, size_t len);

struct cl_pcstream;

/* One page to send: a page of a shared block (cl_vmstate_block.shared). */
struct cl_pcstream_page {
	uint32_t block;   /* index in the save file's block list */
	uint64_t offset;  /* in the block, page-aligned */
	const void *data; /* CL_VMSTATE_PAGE bytes, read during the call; NULL: all zero */
};

/* A stream for the state vs (which must outlive it), written through
 * write(ctx, ...). Free it with cl_pcstream_free(). -ENOTSUP when no block
 * is shared, -EFBIG for a shared block over CL_PCSTREAM_MAX_BLOCK. */
int cl_pcstream_new(const struct cl_vmstate *vs, cl_pcstream_write_fn write, void *ctx,
                    struct cl_pcstream **out);
void cl_pcstream_free(struct cl_pcstream *ps);

/* Writes everything up to and including the package (once, first).
 * -EFBIG when the device state does not fit in a package. */
int cl_pcstream_start(struct cl_pcstream *ps);

/* Sends n pages as one RAM PART section, in one write. All or nothing:
 * -EALREADY (nothing written) if any page was sent before or is listed
 * twice, -EINVAL for a page outside a shared block. */
int cl_pcstream_send(struct cl_pcstream *ps, const struct cl_pcstream_page *pages, size_t n);

/* Page offset of block is all zero (need not be sent). */
int cl_pcstream_set_zero(struct cl_pcstream *ps, uint32_t block, uint64_t offset);
/* 1 if sent, 0 if not, -EINVAL outside a shared block. */
int cl_pcstream_is_sent(const struct cl_pcstream *ps, uint32_t block, uint64_t offset);
/* The next page that must still be sent (neither sent nor known zero), in
 * the order of cl_pcmap_next() over the shared blocks: 0, or -ENOENT when
 * none remains. */
int cl_pcstream_next(struct cl_pcstream *ps, uint32_t *block, uint64_t *offset);
/* Pages that must still be sent, in all shared blocks. */
uint64_t cl_pcstream_left(const struct cl_pcstream *ps);
/* The sent-page map of a shared block, or NULL (read it; do not change it). */
const struct cl_pcmap *cl_pcstream_map(const struct cl_pcstream *ps, uint32_t block);

/* Ends the stream: RAM END and EOF. -EBUSY (nothing written) while pages
 * must still be sent, naming the first. */
int cl_pcstream_finish(struct cl_pcstream *ps);

/* ---- the return path ---- */

#define CL_PCRP_SHUT     1   /* value: 0 if the destination loaded everything */
#define CL_PCRP_PONG     2   /* value: the PING's */
#define CL_PCRP_REQ_ID   3   /* a page request naming its block */
#define CL_PCRP_REQ      4   /* a page request in the block of the one before */
#define CL_PCRP_MAX_BODY 268 /* the longest message this source accepts */

struct cl_pcrp_msg {
	int type;        /* CL_PCRP_* */
	uint32_t value;  /* SHUT, PONG */
	uint32_t block;  /* requests: index in the block list */
	uint64_t offset; /* requests: in the block, page-aligned */
	uint64_t length; /* requests: a multiple of the page, inside the block */
};

/* The reader's state: the block of the last request. */
struct cl_pcrp {
	const struct cl_vmstate *vs;
	int have_block;
	uint32_t block;
};

void cl_pcrp_init(struct cl_pcrp *rp, const struct cl_vmstate *vs);

/* Parses the message at the start of buf[0..len): 0 with *used its size
 * and *msg filled, or 0 with *used = 0 when buf holds only part of it.
 * -EPROTO for a malformed message (bad length, unknown block, a range
 * outside its block, a request with no block named yet), -ENOTSUP for a
 * message of postcopy recovery or a later QEMU. */
int cl_pcrp_parse(struct cl_pcrp *rp, const void *buf, size_t len, struct cl_pcrp_msg *msg,
                  size_t *used);

#endif
