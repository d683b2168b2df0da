/* SPDX-License-Identifier: GPL-2.0-only */
/* A small QEMU save file made in memory for the unit tests of
 * cl_vmstate and cl_pcstream, shaped like the ones x-ignore-shared gives:
 *
 *   configuration "pc-i440fx-7.2" with the capability x-ignore-shared;
 *   RAM blocks "pc.ram" (16 pages, shared: none in the file),
 *   "/rom@etc/acpi/tables" (2 pages) and "pc.bios" (1 page), with addresses;
 *   PART 1: acpi page 0 (data, first version), acpi page 1 (ZERO, CONTINUE);
 *   PART 2: bios page 0 (data), acpi page 0 again (data, the one that counts);
 *   END (EOS only); FULL sections "timer" and "cpu"; EOF; a vmdesc trailer.
 *
 * Each knob breaks the file in one place. */
#ifndef CL_TESTVM_H
#define CL_TESTVM_H

#include <stddef.h>
#include <stdint.h>

#define CL_TESTVM_RAM_SID    3u
#define CL_TESTVM_MAIN       0u /* block index of pc.ram */
#define CL_TESTVM_ACPI       1u /* block index of the ACPI tables */
#define CL_TESTVM_BIOS       2u /* block index of pc.bios */
#define CL_TESTVM_MAIN_PAGES 16u

struct cl_testvm_opts {
	uint32_t version;      /* stream version (0: 3) */
	uint32_t extra_flags;  /* or'ed into the flags of the ZERO record */
	int omit_page;         /* leave out acpi page 1 */
	int bad_json;          /* a trailer that is not JSON */
	int no_trailer;        /* stop after the EOF byte */
	int command;           /* a QEMU_VM_COMMAND after the RAM END section */
	uint64_t acpi_length;  /* the ACPI block's length (0: 2 pages) */
	uint64_t page_offset;  /* the bios page's offset (0: 0) */
	const char *main_name; /* the shared block's name (NULL: "pc.ram") */
	uint64_t main_pages;   /* its pages (0: CL_TESTVM_MAIN_PAGES) */
};

struct cl_testvm {
	uint8_t *buf; /* malloc'd; the caller frees it */
	size_t len;
	size_t dev_off, dev_len;       /* the FULL sections */
	size_t vmdesc_off, vmdesc_len; /* the JSON */
};

/* Builds the file (opts NULL: a valid one). 0 or -ENOMEM. */
int cl_testvm_build(const struct cl_testvm_opts *opts, struct cl_testvm *vm);

/* Calls fn for each real save file listed in $CL_VMSTATE_FILE (paths
 * separated by ':', as the ctests guest.test_*_files set it); says so
 * and calls nothing when it is unset. */
void cl_testvm_each_file(void (*fn)(const char *path));

/* The byte every data page of the file repeats: acpi page 0 (the last
 * version), bios page 0. */
#define CL_TESTVM_ACPI_FILL 0xc3
#define CL_TESTVM_BIOS_FILL 0xb2

#endif
