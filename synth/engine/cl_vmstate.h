/* SPDX-License-Identifier: GPL-2.0-only */
/* A QEMU 7.2 migration stream saved to a file with x-ignore-shared, as
 * cloudlet takes them (synth/vm/cl_migrate.c): what a postcopy source needs
 * from it, without parsing any device's state (internal to the engine).
 *
 *   "QEVM" be32 3                  magic, version
 *   07 be32 len MACHINE {05 ...}   configuration and its subsections
 *   01 sid "ram" 0 4 ... 7e sid    RAM: START (block list), PART*, END;
 *   02/03 sid ... 7e sid           page records, each part ended by EOS
 *   04 ... 7e sid                  the device sections (FULL), copied verbatim
 *   00                             EOF
 *   06 be32 len JSON               the vmdesc trailer (absent with suppress-vmdesc)
 *
 * All numbers big-endian. The parser reads outside input: every length is
 * bounded, and a malformed file is refused with a one-line message naming
 * it and the offset (cl_error_msg()). */
#ifndef CL_VMSTATE_H
#define CL_VMSTATE_H

#include <stddef.h>
#include <stdint.h>

#define CL_VMSTATE_PAGE     4096u /* target page size of x86; nothing else is accepted */
#define CL_VMSTATE_NAME_MAX 255   /* RAM block names and section names: u8 length */

/* The stream's RAM flags (low bits of a page record's offset). */
#define CL_RAM_ZERO     0x02u  /* a page of one repeated byte */
#define CL_RAM_MEM_SIZE 0x04u  /* the block list */
#define CL_RAM_PAGE     0x08u  /* a page of data */
#define CL_RAM_EOS      0x10u  /* end of this section's records */
#define CL_RAM_CONTINUE 0x20u  /* same block as the record before: no name */
#define CL_RAM_XBZRLE   0x40u  /* refused: a delta against a cached page */
#define CL_RAM_HOOK     0x80u  /* refused: RDMA */
#define CL_RAM_COMPRESS 0x100u /* refused: a zlib page */

/* Section types of the stream (QEMU_VM_*). */
#define CL_VM_EOF           0x00
#define CL_VM_SECTION_START 0x01
#define CL_VM_SECTION_PART  0x02
#define CL_VM_SECTION_END   0x03
#define CL_VM_SECTION_FULL  0x04
#define CL_VM_SUBSECTION    0x05
#define CL_VM_VMDESCRIPTION 0x06
#define CL_VM_CONFIGURATION 0x07
#define CL_VM_COMMAND       0x08
#define CL_VM_FOOTER        0x7e

struct cl_vmstate;

/* One RAM block of the block list, in the file's order. */
struct cl_vmstate_block {
	char name[CL_VMSTATE_NAME_MAX + 1]; /* QEMU's idstr, e.g. "pc.ram", "pc.bios" */
	uint64_t length;                    /* used length in bytes, a multiple of the page */
	uint64_t addr;                      /* guest address (x-ignore-shared only), else 0 */
	/* No page of it is in the file: x-ignore-shared skipped it, its
	 * content is the RAM image. Postcopy serves these blocks; the
	 * others (ROMs, ACPI tables, VGA) are in the file, every page. */
	int shared;
	size_t first_page; /* its pages in cl_vmstate_page() (shared: none) */
	size_t npages;
};

/* One page of a block that the file carries (the last record of it wins). */
struct cl_vmstate_page {
	uint32_t block;      /* index in the block list */
	uint64_t offset;     /* in the block, page-aligned */
	const uint8_t *data; /* CL_VMSTATE_PAGE bytes inside the parsed buffer, or NULL */
	uint8_t fill;        /* data == NULL: every byte of the page is this */
};

/* Parses the save file in buf[0..len). name only names it in messages.
 * *out points into buf (page data, device block, trailer): the caller
 * keeps buf unchanged until cl_vmstate_free(*out). 0, -EBADMSG for a
 * malformed file, -ENOTSUP for a valid one this parser does not handle
 * (another QEMU feature), -EFBIG, -ENOMEM. */
int cl_vmstate_parse(const void *buf, size_t len, const char *name, struct cl_vmstate **out);

/* Frees what cl_vmstate_parse() allocated (not buf). NULL is fine. */
void cl_vmstate_free(struct cl_vmstate *vs);

/* The machine type of the configuration section, e.g. "pc-i440fx-7.2". */
const char *cl_vmstate_machine(const struct cl_vmstate *vs);

/* The capabilities the configuration lists (e.g. "x-ignore-shared"). */
size_t cl_vmstate_ncaps(const struct cl_vmstate *vs);
const char *cl_vmstate_cap(const struct cl_vmstate *vs, size_t i);

/* The section id the file gave the "ram" section (a postcopy stream uses
 * the same one). */
uint32_t cl_vmstate_ram_section(const struct cl_vmstate *vs);

size_t cl_vmstate_nblocks(const struct cl_vmstate *vs);
/* Block i, or NULL past the end. */
const struct cl_vmstate_block *cl_vmstate_block(const struct cl_vmstate *vs, size_t i);
/* The index of the block named name[0..len) (not NUL-terminated), or
 * -ENOENT. */
int cl_vmstate_find_block(const struct cl_vmstate *vs, const char *name, size_t len,
                          uint32_t *index);
/* The guest's RAM: the one shared block. -ENOENT when no block is shared
 * (saved without x-ignore-shared), -ENOTSUP when several are. */
int cl_vmstate_main_block(const struct cl_vmstate *vs, uint32_t *index);

/* The pages the file carries, by block and offset (each once). */
size_t cl_vmstate_npages(const struct cl_vmstate *vs);
const struct cl_vmstate_page *cl_vmstate_page(const struct cl_vmstate *vs, size_t i);

/* The device block: every FULL section after the RAM END section, up to
 * the EOF byte, as bytes of buf (offset from its start, and length). */
const uint8_t *cl_vmstate_devices(const struct cl_vmstate *vs, size_t *offset, size_t *len);

/* The vmdesc trailer's JSON (not NUL-terminated; checked to be one JSON
 * value), or NULL with *len = 0 when the file has none. */
const char *cl_vmstate_vmdesc(const struct cl_vmstate *vs, size_t *len);

#endif
