/* SPDX-License-Identifier: GPL-2.0-only */
/* A small QEMU save file for unit tests (see cl_testvm.h). */
#include "cl_testvm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096u

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void w(struct wbuf *b, const void *data, size_t n)
{
	uint8_t *p;

	if (b->err)
		return;
	if (b->cap - b->len < n) {
		size_t cap = (b->cap + n) * 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void wbe(struct wbuf *b, uint64_t v, unsigned n)
{
	uint8_t x[8];
	unsigned i;

	for (i = 0; i < n; i++)
		x[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	w(b, x, n);
}

static void wname(struct wbuf *b, const char *s)
{
	wbe(b, strlen(s), 1);
	w(b, s, strlen(s));
}

static void wfill(struct wbuf *b, uint8_t c)
{
	uint8_t page[PAGE];

	memset(page, c, sizeof(page));
	w(b, page, sizeof(page));
}

static void header(struct wbuf *b, const struct cl_testvm_opts *o)
{
	wbe(b, 0x5145564d, 4);
	wbe(b, o->version ? o->version : 3, 4);
	wbe(b, 0x07, 1);
	wbe(b, 13, 4);
	w(b, "pc-i440fx-7.2", 13);
	wbe(b, 0x05, 1);
	wname(b, "configuration/capabilities");
	wbe(b, 1, 4);
	wbe(b, 1, 4);
	wname(b, "x-ignore-shared");
}

static void footer(struct wbuf *b)
{
	wbe(b, 0x10, 8); /* EOS */
	wbe(b, 0x7e, 1);
	wbe(b, CL_TESTVM_RAM_SID, 4);
}

static void ram(struct wbuf *b, const struct cl_testvm_opts *o)
{
	uint64_t acpi = o->acpi_length ? o->acpi_length : 2 * PAGE;
	uint64_t guest = (o->main_pages ? o->main_pages : CL_TESTVM_MAIN_PAGES) * PAGE;

	wbe(b, 0x01, 1);
	wbe(b, CL_TESTVM_RAM_SID, 4);
	wname(b, "ram");
	wbe(b, 0, 4);
	wbe(b, 4, 4);
	wbe(b, (guest + acpi + PAGE) | 0x04, 8);
	wname(b, o->main_name ? o->main_name : "pc.ram");
	wbe(b, guest, 8);
	wbe(b, 0, 8);
	wname(b, "/rom@etc/acpi/tables");
	wbe(b, acpi, 8);
	wbe(b, 0, 8);
	wname(b, "pc.bios");
	wbe(b, PAGE, 8);
	wbe(b, 0xfffff000, 8);
	footer(b);
	/* part 1 */
	wbe(b, 0x02, 1);
	wbe(b, CL_TESTVM_RAM_SID, 4);
	wbe(b, 0x08, 8);
	wname(b, "/rom@etc/acpi/tables");
	wfill(b, 0xa1);
	if (!o->omit_page) {
		wbe(b, PAGE | 0x02 | 0x20 | o->extra_flags, 8);
		wbe(b, 0, 1);
	}
	footer(b);
	/* part 2 */
	wbe(b, 0x02, 1);
	wbe(b, CL_TESTVM_RAM_SID, 4);
	wbe(b, o->page_offset | 0x08, 8);
	wname(b, "pc.bios");
	wfill(b, CL_TESTVM_BIOS_FILL);
	wbe(b, 0x08, 8);
	wname(b, "/rom@etc/acpi/tables");
	wfill(b, CL_TESTVM_ACPI_FILL);
	footer(b);
	/* end */
	wbe(b, 0x03, 1);
	wbe(b, CL_TESTVM_RAM_SID, 4);
	footer(b);
}

static void full(struct wbuf *b, uint32_t sid, const char *name, uint32_t ver, size_t n)
{
	wbe(b, 0x04, 1);
	wbe(b, sid, 4);
	wname(b, name);
	wbe(b, 0, 4);
	wbe(b, ver, 4);
	while (n--)
		wbe(b, (uint8_t)(n * 7 + sid), 1);
	wbe(b, 0x7e, 1);
	wbe(b, sid, 4);
}

int cl_testvm_build(const struct cl_testvm_opts *opts, struct cl_testvm *vm)
{
	static const char json[] =
	    "{\"page_size\": 4096, \"devices\": [{\"name\": \"timer\", "
	    "\"instance_id\": 0, \"fields\": []}, {\"name\": \"cpu\", "
	    "\"instance_id\": 0, \"version\": 1.5e0, \"s\": \"a\\\"\\u00e9\"}]}";
	struct cl_testvm_opts none = {0};
	const struct cl_testvm_opts *o = opts ? opts : &none;
	struct wbuf b = {0};
	const char *j = o->bad_json ? "{\"devices\": [1, 2,]}" : json;

	memset(vm, 0, sizeof(*vm));
	header(&b, o);
	ram(&b, o);
	if (o->command)
		w(&b, "\x08\x00\x02\x00\x04\x00\x00\x00\x01", 9);
	vm->dev_off = b.len;
	full(&b, 5, "timer", 2, 24);
	full(&b, 6, "cpu", 1, 300);
	vm->dev_len = b.len - vm->dev_off;
	wbe(&b, 0x00, 1);
	if (!o->no_trailer) {
		wbe(&b, 0x06, 1);
		wbe(&b, strlen(j), 4);
		vm->vmdesc_off = b.len;
		vm->vmdesc_len = strlen(j);
		w(&b, j, strlen(j));
	}
	if (b.err) {
		free(b.p);
		return b.err;
	}
	vm->buf = b.p;
	vm->len = b.len;
	return 0;
}

void cl_testvm_each_file(void (*fn)(const char *path))
{
	const char *env = getenv("CL_VMSTATE_FILE");
	char *list, *p, *save = NULL;

	if (!env || !*env) {
		printf("CL_VMSTATE_FILE not set: no real save file checked\n");
		return;
	}
	list = strdup(env);
	if (!list)
		abort();
	for (p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save))
		fn(p);
	free(list);
}
