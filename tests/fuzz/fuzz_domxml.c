/* SPDX-License-Identifier: GPL-2.0-only */
/* fuzz_domxml: the domain XML an overlay carries, as the VM commands take it
 * (synth/vm/cl_domxml.c): cl_domxml_get of every field, then
 * cl_domxml_rewrite with the edits `cloudlet synthesis` makes.
 *
 * Input: one byte choosing which edits are set, one byte for the RAM size
 * (MiB) used when the XML has no file-backed RAM yet, then the XML.
 *
 * Invariants: every get returns 0 with a string or a negative errno; a
 * rewrite that succeeds gives XML that parses again and carries every edit
 * made (read back with cl_domxml_get: name, uuid, type, disk, mem-path with
 * its commas, share, kernel, initrd, cmdline, the serial log where there is
 * a serial port, its socket where it is a unix one); rewriting that output
 * again succeeds and carries them too. The edit values hold XML metacharacters and commas
 * (a comma in a QEMU option value must be doubled and undoubled).
 *
 * XML that is not namespace-well-formed (a prefix used without its xmlns
 * declaration, which libxml2 recovers from) must be refused: the rewrite
 * could otherwise change what an element means (finding 4 of
 * docs/RELIABILITY.md). */
#include "cl_domxml.h"
#include "fuzz_common.h"

#include <errno.h>
#include <libxml/parser.h>
#include <string.h>

/* The first element child of n named name, or NULL. */
static xmlNodePtr first(xmlNodePtr n, const char *name)
{
	for (n = n ? n->children : NULL; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, name))
			return n;
	return NULL;
}

/* Parses xml on its own: returns whether every namespace prefix is
 * declared, and says whether <devices> has a <serial> (the rewrite gives
 * the first one the new log) and whether that one is a unix socket with a
 * <source> (the rewrite gives it the new path). */
static int inspect(const char *xml, size_t len, int *serial, int *serial_unix)
{
	xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
	xmlNodePtr ser;
	xmlDocPtr doc;
	xmlChar *type;
	int ok;

	*serial = *serial_unix = 0;
	if (!ctxt)
		return 0;
	doc = xmlCtxtReadMemory(ctxt, xml, (int)len, "domain.xml", NULL,
	                        XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |
	                            XML_PARSE_NOWARNING);
	ok = doc && ctxt->nsWellFormed;
	if (doc) {
		ser = first(first(xmlDocGetRootElement(doc), "devices"), "serial");
		type = ser ? xmlGetProp(ser, BAD_CAST "type") : NULL;
		*serial = ser != NULL;
		*serial_unix = type && !strcmp((const char *)type, "unix") && first(ser, "source");
		xmlFree(type);
	}
	xmlFreeDoc(doc);
	xmlFreeParserCtxt(ctxt);
	return ok;
}

static const char *const fields[] = {"name",   "uuid",    "type", "machine", "kernel",
                                     "initrd", "cmdline", "disk", "console", "log",
                                     "mem",    "share",   "size", "vnc",     "cpu"};

/* Reads field of xml; *v is NULL unless it returns 0. */
static int get(const char *xml, const char *field, char **v)
{
	int r;

	*v = NULL;
	r = cl_domxml_get(xml, strlen(xml), field, v);
	FUZZ_CHECK(r <= 0);
	FUZZ_CHECK((r == 0) == (*v != NULL));
	return r;
}

/* field of xml equals want. */
static void expect(const char *xml, const char *field, const char *want)
{
	char *v;

	if (get(xml, field, &v) < 0 || strcmp(v, want))
		fprintf(stderr, "%s: \"%s\", expected \"%s\"\n", field, v ? v : "(none)", want);
	FUZZ_CHECK(v && !strcmp(v, want));
	free(v);
}

/* The rewritten XML out carries the edits e. */
static void check_edits(const char *out, const struct cl_domxml_edit *e, int serial,
                        int serial_unix)
{
	char *v;

	expect(out, "name", e->name);
	if (e->uuid)
		expect(out, "uuid", e->uuid);
	else
		FUZZ_CHECK(get(out, "uuid", &v) == -ENOENT);
	if (e->type)
		expect(out, "type", e->type);
	if (e->disk)
		expect(out, "disk", e->disk);
	if (e->memory)
		expect(out, "mem", e->memory);
	if (e->share)
		expect(out, "share", e->share);
	if (e->kernel) {
		expect(out, "kernel", e->kernel);
		expect(out, "initrd", e->initrd);
		expect(out, "cmdline", e->cmdline);
	}
	if (e->console && serial_unix)
		expect(out, "console", e->console);
	if (e->console_log && serial)
		expect(out, "log", e->console_log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned flags = (unsigned)fuzz_take(&data, &size, 1);
	unsigned ram_mib = (unsigned)fuzz_take(&data, &size, 1);
	struct cl_domxml_edit e = {
	    .name = "cl-fuzz&<vm>",
	    .uuid = flags & 1 ? "0f8e1d2c-3b4a-4596-8877-66554433aabb" : NULL,
	    .type = flags & 2 ? "kvm" : NULL,
	    .disk = flags & 4 ? "/run/cl,fuzz/mnt/disk/image" : NULL,
	    .disk_norelabel = !!(flags & 4),
	    .disk_discard = !!(flags & 8),
	    .memory = flags & 8 ? "/run/cl,fuzz/m,,nt/\"memory\"/image," : NULL,
	    .memory_size = (uint64_t)ram_mib << 20,
	    .share = flags & 16 ? (flags & 32 ? "on" : "off") : NULL,
	    .kernel = flags & 32 ? "/k/vmlinuz 'a'" : NULL,
	    .initrd = flags & 32 ? "/k/initrd&.img" : NULL,
	    .cmdline = flags & 32 ? "console=ttyS0 x=\"<y>\"" : NULL,
	    .console = flags & 64 ? "/run/cl-fuzz/console.sock" : NULL,
	    .console_log = flags & 64 ? "/run/cl-fuzz/console.log" : NULL,
	    .incoming = !!(flags & 128),
	    .vnc_local = !!(flags & 128),
	};
	char *xml, *out = NULL, *again = NULL, *v;
	int serial, serial_unix;
	size_t i;
	int r;

	/* A NUL-terminated copy, exactly sized, for strlen-based checks. */
	xml = malloc(size + 1);
	if (!xml)
		return 0;
	memcpy(xml, data, size);
	xml[size] = '\0';
	if (strlen(xml) != size)
		goto out; /* an embedded NUL: not what an overlay's text holds */

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		get(xml, fields[i], &v);
		if (v)
			FUZZ_CHECK(strlen(v) < size + 64);
		free(v);
	}
	FUZZ_CHECK(get(xml, "no-such-field", &v) < 0);

	r = cl_domxml_rewrite(xml, size, &e, &out);
	if (!inspect(xml, size, &serial, &serial_unix)) {
		FUZZ_CHECK(r < 0 && out == NULL);
		goto out;
	}
	FUZZ_CHECK(r <= 0);
	if (r < 0) {
		FUZZ_CHECK(out == NULL);
		goto out;
	}
	FUZZ_CHECK(out != NULL);
	check_edits(out, &e, serial, serial_unix);
	/* The output is an input to the same code (an overlay made from a
	 * synthesized VM): it must rewrite again, with the same result. */
	r = cl_domxml_rewrite(out, strlen(out), &e, &again);
	FUZZ_CHECK(r == 0);
	check_edits(again, &e, serial, serial_unix);
out:
	free(again);
	free(out);
	free(xml);
	return 0;
}
