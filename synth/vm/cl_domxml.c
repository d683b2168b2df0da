/* SPDX-License-Identifier: GPL-2.0-only */
/* Domain XML rewriting (see cl_domxml.h). */
#include "cl_domxml.h"
#include "cl_error.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>

#define MEMOBJ_ID "cl-ram"

/* --- small tree helpers -------------------------------------------------- */

static int is_elem(const xmlNode *n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && !n->ns && !strcmp((const char *)n->name, name);
}

static xmlNode *child(xmlNode *parent, const char *name)
{
	xmlNode *n;

	for (n = parent ? parent->children : NULL; n; n = n->next)
		if (is_elem(n, name))
			return n;
	return NULL;
}

static xmlNode *next_sibling(xmlNode *n, const char *name)
{
	for (n = n ? n->next : NULL; n; n = n->next)
		if (is_elem(n, name))
			return n;
	return NULL;
}

static xmlNode *ensure_child(xmlNode *parent, const char *name)
{
	xmlNode *n = child(parent, name);

	return n ? n : xmlNewChild(parent, NULL, BAD_CAST name, NULL);
}

static int prop_is(xmlNode *n, const char *name, const char *value)
{
	xmlChar *v = xmlGetProp(n, BAD_CAST name);
	int eq = v && !strcmp((const char *)v, value);

	xmlFree(v);
	return eq;
}

/* Replaces the content of n by the literal text (escaped on output). */
static int set_text(xmlNode *n, const char *text)
{
	xmlNode *t;

	if (!n)
		return -ENOMEM;
	xmlNodeSetContent(n, NULL);
	t = xmlNewText(BAD_CAST text);
	if (!t)
		return -ENOMEM;
	xmlAddChild(n, t);
	return 0;
}

static int set_prop(xmlNode *n, const char *name, const char *value)
{
	return n && xmlSetProp(n, BAD_CAST name, BAD_CAST value) ? 0 : -ENOMEM;
}

static void drop(xmlNode *n)
{
	if (n) {
		xmlUnlinkNode(n);
		xmlFreeNode(n);
	}
}

static void drop_children(xmlNode *parent, const char *name)
{
	xmlNode *n, *next;

	for (n = parent ? parent->children : NULL; n; n = next) {
		next = n->next;
		if (is_elem(n, name))
			drop(n);
	}
}

static xmlNode *disk_node(xmlNode *root)
{
	xmlNode *d;

	for (d = child(child(root, "devices"), "disk"); d; d = next_sibling(d, "disk")) {
		xmlChar *dev = xmlGetProp(d, BAD_CAST "device");
		int is_disk = !dev || !strcmp((const char *)dev, "disk");

		xmlFree(dev);
		if (is_disk)
			return d;
	}
	return NULL;
}

/* --- <qemu:commandline> and QEMU option strings -------------------------- */

static xmlNode *qemu_cmdline(xmlNode *root, int create)
{
	xmlNode *n;
	xmlNs *ns;

	for (n = root->children; n; n = n->next)
		if (n->type == XML_ELEMENT_NODE && n->ns && n->ns->href &&
		    !strcmp((const char *)n->ns->href, CL_QEMU_NS) &&
		    !strcmp((const char *)n->name, "commandline"))
			return n;
	if (!create)
		return NULL;
	ns = xmlSearchNsByHref(root->doc, root, BAD_CAST CL_QEMU_NS);
	/* "qemu" may be bound to another URI already: then another prefix. */
	if (!ns)
		ns = xmlNewNs(root, BAD_CAST CL_QEMU_NS, BAD_CAST "qemu");
	if (!ns)
		ns = xmlNewNs(root, BAD_CAST CL_QEMU_NS, BAD_CAST "cloudlet-qemu");
	return ns ? xmlNewChild(root, ns, BAD_CAST "commandline", NULL) : NULL;
}

static xmlNode *add_arg(xmlNode *cl, const char *value)
{
	xmlNode *a = xmlNewChild(cl, cl->ns, BAD_CAST "arg", NULL);

	if (a && set_prop(a, "value", value) < 0)
		return NULL;
	return a;
}

static int is_arg(const xmlNode *n)
{
	return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, "arg");
}

/* The <qemu:arg> whose value starts with memory-backend-file. */
static xmlNode *memobj_arg(xmlNode *cl)
{
	xmlNode *n;

	for (n = cl ? cl->children : NULL; n; n = n->next) {
		xmlChar *v;
		int hit;

		if (!is_arg(n))
			continue;
		v = xmlGetProp(n, BAD_CAST "value");
		hit = v && !strncmp((const char *)v, "memory-backend-file,", 20);
		xmlFree(v);
		if (hit)
			return n;
	}
	return NULL;
}

/* In QEMU option strings a comma inside a value is written twice. Finds
 * key=... in opts and returns its unescaped value (malloc'd), or NULL. */
static char *opt_get(const char *opts, const char *key)
{
	size_t klen = strlen(key);
	const char *p = opts;
	char *out, *w;

	while (*p) {
		int match = !strncmp(p, key, klen) && p[klen] == '=';
		const char *v = p + klen + 1;

		if (match) {
			out = malloc(strlen(v) + 1);
			if (!out)
				return NULL;
			for (w = out; *v && !(v[0] == ',' && v[1] != ','); v++) {
				if (v[0] == ',')
					v++;
				*w++ = *v;
			}
			*w = '\0';
			return out;
		}
		/* skip to the next single comma */
		for (; *p && !(p[0] == ',' && p[1] != ','); p++)
			if (p[0] == ',')
				p++;
		if (*p)
			p++;
	}
	return NULL;
}

/* opts with key set to value (appended if absent), commas escaped. */
static char *opt_set(const char *opts, const char *key, const char *value)
{
	size_t klen = strlen(key), cap = strlen(opts) + klen + 2 * strlen(value) + 3;
	const char *p = opts, *start;
	char *out = malloc(cap), *w = out;
	int done = 0;

	if (!out)
		return NULL;
	while (*p) {
		start = p;
		for (; *p && !(p[0] == ',' && p[1] != ','); p++)
			if (p[0] == ',')
				p++;
		if (w != out)
			*w++ = ',';
		if (!strncmp(start, key, klen) && start[klen] == '=' && !done) {
			w += sprintf(w, "%s=", key);
			for (const char *v = value; *v; v++) {
				if (*v == ',')
					*w++ = ',';
				*w++ = *v;
			}
			done = 1;
		} else {
			memcpy(w, start, (size_t)(p - start));
			w += p - start;
		}
		if (*p)
			p++;
	}
	if (!done) {
		w += sprintf(w, "%s%s=", w != out ? "," : "", key);
		for (const char *v = value; *v; v++) {
			if (*v == ',')
				*w++ = ',';
			*w++ = *v;
		}
	}
	*w = '\0';
	return out;
}

static int memobj_set(xmlNode *arg, const char *key, const char *value)
{
	xmlChar *v = xmlGetProp(arg, BAD_CAST "value");
	char *nv;
	int r;

	if (!v)
		return -ENOMEM;
	nv = opt_set((const char *)v, key, value);
	xmlFree(v);
	if (!nv)
		return -ENOMEM;
	r = set_prop(arg, "value", nv);
	free(nv);
	return r;
}

/* Removes every `-incoming X` pair. */
static void drop_incoming(xmlNode *cl)
{
	xmlNode *n, *next, *val;

	for (n = cl ? cl->children : NULL; n; n = next) {
		next = n->next;
		if (!is_arg(n) || !prop_is(n, "value", "-incoming"))
			continue;
		for (val = next; val && !is_arg(val); val = val->next)
			;
		if (val) {
			next = val->next;
			drop(val);
		}
		drop(n);
	}
}

/* Leaves in the command line cl only cloudlet's own arguments: the RAM
 * object arg and what selects it. Anything else an overlay's XML carries
 * (another memory-backend-file on a host file, a -device, an environment
 * variable) is outside input that QEMU would act on, and goes. */
static int own_cmdline(xmlNode *cl, xmlNode *arg)
{
	xmlChar *v = xmlGetProp(arg, BAD_CAST "value");
	char *id = v ? opt_get((const char *)v, "id") : NULL, *sel = NULL;
	xmlNode *n, *next;
	int r = -ENOMEM;

	if (!id) {
		r = cl_errorf(-EINVAL, "domain XML: a memory-backend-file without an id");
		goto out;
	}
	for (n = cl->children; n; n = next) {
		next = n->next;
		if (n != arg)
			drop(n);
	}
	if (asprintf(&sel, "memory-backend=%s", id) < 0) {
		sel = NULL;
		goto out;
	}
	xmlUnlinkNode(arg);
	if (!add_arg(cl, "-object") || !xmlAddChild(cl, arg) || !add_arg(cl, "-machine") ||
	    !add_arg(cl, sel)) {
		xmlFreeNode(arg);
		goto out;
	}
	r = 0;
out:
	free(sel);
	free(id);
	xmlFree(v);
	return r;
}

static int edit_memory(xmlNode *root, const struct cl_domxml_edit *e)
{
	char size[32], *opts = NULL;
	xmlNode *cl, *arg, *mem;
	int r;

	cl = qemu_cmdline(root, e->memory || e->incoming);
	if (!cl && (e->memory || e->incoming))
		return cl_errorf(-EINVAL, "domain XML: cannot add a QEMU command line");
	arg = memobj_arg(cl);
	if (!arg && e->memory) {
		/* No file-backed RAM yet: add it, the size from the image. */
		if (!e->memory_size)
			return cl_errorf(-EINVAL,
			                 "domain XML: no memory-backend-file and no RAM size");
		if (asprintf(&opts,
		             "memory-backend-file,id=" MEMOBJ_ID ",size=%" PRIu64 ",share=on",
		             e->memory_size) < 0)
			return -ENOMEM;
		if (!cl || !add_arg(cl, "-object") || !(arg = add_arg(cl, opts)) ||
		    !add_arg(cl, "-machine") || !add_arg(cl, "memory-backend=" MEMOBJ_ID)) {
			free(opts);
			return -ENOMEM;
		}
		free(opts);
		snprintf(size, sizeof(size), "%" PRIu64, e->memory_size);
		mem = ensure_child(root, "memory");
		if (set_text(mem, size) < 0 || set_prop(mem, "unit", "b") < 0)
			return -ENOMEM;
		drop_children(root, "currentMemory");
	}
	if (e->memory && (r = memobj_set(arg, "mem-path", e->memory)) < 0)
		return r;
	if (e->share) {
		if (!arg)
			return cl_errorf(-EINVAL,
			                 "domain XML: share= without a memory-backend-file");
		if ((r = memobj_set(arg, "share", e->share)) < 0)
			return r;
	}
	if (arg && (r = own_cmdline(cl, arg)) < 0)
		return r;
	drop_incoming(cl);
	if (e->incoming && (!add_arg(cl, "-incoming") || !add_arg(cl, "defer")))
		return -ENOMEM;
	return 0;
}

/* --- the other parts ----------------------------------------------------- */

static int edit_disk(xmlNode *root, const struct cl_domxml_edit *e)
{
	xmlNode *d = disk_node(root), *src, *drv, *sl;

	if (!d)
		return cl_errorf(-EINVAL, "domain XML: no disk device");
	src = ensure_child(d, "source");
	drv = ensure_child(d, "driver");
	/* The synthesized image is a raw file; nothing of the old chain holds. */
	if (!src || !drv || set_prop(d, "type", "file") < 0 || set_prop(drv, "name", "qemu") < 0 ||
	    set_prop(drv, "type", e->disk_format ? e->disk_format : "raw") < 0)
		return -ENOMEM;
	if (e->disk_discard && set_prop(drv, "discard", "unmap") < 0)
		return -ENOMEM;
	xmlUnsetProp(src, BAD_CAST "dev");
	xmlUnsetProp(src, BAD_CAST "pool");
	xmlUnsetProp(src, BAD_CAST "volume");
	if (set_prop(src, "file", e->disk) < 0)
		return -ENOMEM;
	drop_children(d, "backingStore");
	if (e->disk_norelabel) {
		drop_children(src, "seclabel");
		sl = xmlNewChild(src, NULL, BAD_CAST "seclabel", NULL);
		if (set_prop(sl, "model", "dac") < 0 || set_prop(sl, "relabel", "no") < 0)
			return -ENOMEM;
	}
	return 0;
}

static int edit_chardevs(xmlNode *root, const struct cl_domxml_edit *e)
{
	static const char *const kinds[] = {"serial", "console"};
	xmlNode *dev = child(root, "devices"), *n, *src, *log;
	size_t k;

	for (k = 0; k < 2; k++) {
		for (n = child(dev, kinds[k]); n; n = next_sibling(n, kinds[k])) {
			src = child(n, "source");
			if (e->console && src && prop_is(n, "type", "unix") &&
			    (set_prop(src, "path", e->console) < 0 ||
			     set_prop(src, "mode", "bind") < 0))
				return -ENOMEM;
			/* One log per serial port: the first serial's, if asked. */
			drop_children(n, "log");
			if (k == 0 && e->console_log && n == child(dev, "serial")) {
				log = xmlNewChild(n, NULL, BAD_CAST "log", NULL);
				if (set_prop(log, "file", e->console_log) < 0 ||
				    set_prop(log, "append", "off") < 0)
					return -ENOMEM;
			}
		}
	}
	/* Channel sockets of another run: libvirt picks new paths without them. */
	for (n = child(dev, "channel"); n; n = next_sibling(n, "channel"))
		if (prop_is(n, "type", "unix") && (src = child(n, "source")))
			xmlUnsetProp(src, BAD_CAST "path");
	return 0;
}

static int edit_vnc(xmlNode *root)
{
	xmlNode *g, *l;

	for (g = child(child(root, "devices"), "graphics"); g; g = next_sibling(g, "graphics")) {
		if (!prop_is(g, "type", "vnc"))
			continue;
		xmlUnsetProp(g, BAD_CAST "port");
		xmlUnsetProp(g, BAD_CAST "websocket");
		drop_children(g, "listen");
		l = xmlNewChild(g, NULL, BAD_CAST "listen", NULL);
		if (set_prop(g, "autoport", "yes") < 0 || set_prop(g, "listen", "127.0.0.1") < 0 ||
		    set_prop(l, "type", "address") < 0 || set_prop(l, "address", "127.0.0.1") < 0)
			return -ENOMEM;
	}
	return 0;
}

static int edit_os(xmlNode *root, const struct cl_domxml_edit *e)
{
	xmlNode *os = child(root, "os");

	if (!os && (e->kernel || e->initrd || e->cmdline))
		return cl_errorf(-EINVAL, "domain XML: no <os> element");
	if (e->kernel && set_text(ensure_child(os, "kernel"), e->kernel) < 0)
		return -ENOMEM;
	if (e->initrd && set_text(ensure_child(os, "initrd"), e->initrd) < 0)
		return -ENOMEM;
	if (e->cmdline && set_text(ensure_child(os, "cmdline"), e->cmdline) < 0)
		return -ENOMEM;
	return 0;
}

/* --- parse and serialize ------------------------------------------------- */

/* libxml2 wants its global state set up once, before threads use it. */
static void init_libxml_once(void)
{
	xmlInitParser();
}

static void init_libxml(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, init_libxml_once);
}

static int parse(const char *xml, size_t len, xmlDoc **out)
{
	xmlParserCtxt *ctxt;
	const xmlError *err;
	xmlDoc *doc;
	xmlNode *root;
	int r;

	init_libxml();
	if (len > INT32_MAX)
		return cl_errorf(-EFBIG, "domain XML: too large");
	ctxt = xmlNewParserCtxt();
	if (!ctxt)
		return -ENOMEM;
	doc = xmlCtxtReadMemory(ctxt, xml, (int)len, "domain.xml", NULL,
	                        XML_PARSE_NONET | XML_PARSE_NOBLANKS | XML_PARSE_NOERROR |
	                            XML_PARSE_NOWARNING);
	/* libxml2 recovers from namespace errors; a prefix left undeclared
	 * would hide an element from the rewrite, which looks by namespace. */
	if (!doc || !ctxt->nsWellFormed) {
		err = xmlCtxtGetLastError(ctxt);
		r = cl_errorf(-EBADMSG, "domain XML: not well-formed (line %d: %.*s)",
		              err ? err->line : 0,
		              err && err->message ? (int)strcspn(err->message, "\n") : 1,
		              err && err->message ? err->message : "?");
		xmlFreeDoc(doc);
		xmlFreeParserCtxt(ctxt);
		return r;
	}
	xmlFreeParserCtxt(ctxt);
	root = xmlDocGetRootElement(doc);
	if (!is_elem(root, "domain")) {
		xmlFreeDoc(doc);
		return cl_errorf(-EBADMSG, "domain XML: the root element is not <domain>");
	}
	*out = doc;
	return 0;
}

static int serialize(xmlDoc *doc, char **out)
{
	xmlBuffer *buf = xmlBufferCreate();
	xmlSaveCtxt *s;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	s = xmlSaveToBuffer(buf, "UTF-8", XML_SAVE_FORMAT | XML_SAVE_NO_DECL);
	if (!s || xmlSaveDoc(s, doc) < 0)
		r = -ENOMEM;
	if (s)
		xmlSaveClose(s);
	if (r == 0 && !(*out = strdup((const char *)xmlBufferContent(buf))))
		r = -ENOMEM;
	xmlBufferFree(buf);
	return r;
}

int cl_domxml_rewrite(const char *xml, size_t len, const struct cl_domxml_edit *e, char **out)
{
	xmlNode *root;
	xmlDoc *doc;
	int r;

	if (!xml || !e || !e->name || !*e->name || !out)
		return -EINVAL;
	r = parse(xml, len, &doc);
	if (r < 0)
		return r;
	root = xmlDocGetRootElement(doc);
	r = -ENOMEM;
	if (set_text(ensure_child(root, "name"), e->name) < 0)
		goto out;
	drop_children(root, "uuid");
	if (e->uuid && set_text(xmlNewChild(root, NULL, BAD_CAST "uuid", NULL), e->uuid) < 0)
		goto out;
	if (e->type && set_prop(root, "type", e->type) < 0)
		goto out;
	if ((r = edit_os(root, e)) < 0)
		goto out;
	if (e->disk && (r = edit_disk(root, e)) < 0)
		goto out;
	if ((r = edit_chardevs(root, e)) < 0)
		goto out;
	if (e->vnc_local && (r = edit_vnc(root)) < 0)
		goto out;
	if ((r = edit_memory(root, e)) < 0)
		goto out;
	r = serialize(doc, out);
out:
	xmlFreeDoc(doc);
	return r;
}

/* --- new domains ---------------------------------------------------------- */

static xmlNode *add(xmlNode *parent, const char *name, const char *text)
{
	xmlNode *n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);

	if (n && text && set_text(n, text) < 0)
		return NULL;
	return n;
}

static xmlNode *add_attrs(xmlNode *parent, const char *name, const char *k1, const char *v1,
                          const char *k2, const char *v2)
{
	xmlNode *n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);

	if (!n || (k1 && set_prop(n, k1, v1) < 0) || (k2 && set_prop(n, k2, v2) < 0))
		return NULL;
	return n;
}

int cl_domxml_new(const struct cl_domxml_spec *s, char **out)
{
	char num[32], *opts = NULL;
	xmlNode *root, *os, *dev, *n, *cl;
	xmlDoc *doc;
	int r = -ENOMEM;

	if (!s || !s->name || !s->type || !s->disk || !s->memory || !s->console || !out ||
	    !s->ram_mib || !s->vcpus)
		return -EINVAL;
	init_libxml();
	doc = xmlNewDoc(BAD_CAST "1.0");
	root = doc ? xmlNewNode(NULL, BAD_CAST "domain") : NULL;
	if (!root)
		goto out;
	xmlDocSetRootElement(doc, root);
	snprintf(num, sizeof(num), "%u", s->ram_mib);
	if (set_prop(root, "type", s->type) < 0 || !add(root, "name", s->name) ||
	    !(n = add(root, "memory", num)) || set_prop(n, "unit", "MiB") < 0)
		goto out;
	snprintf(num, sizeof(num), "%u", s->vcpus);
	if (!add(root, "vcpu", num) || !(os = add(root, "os", NULL)) ||
	    !(n = add_attrs(os, "type", "arch", "x86_64", "machine",
	                    s->machine ? s->machine : "pc")) ||
	    set_text(n, "hvm") < 0)
		goto out;
	if (s->kernel) {
		if (!add(os, "kernel", s->kernel) || (s->initrd && !add(os, "initrd", s->initrd)) ||
		    (s->cmdline && !add(os, "cmdline", s->cmdline)))
			goto out;
	} else if (!add_attrs(os, "boot", "dev", "hd", NULL, NULL)) {
		goto out;
	}
	/* The CPU model is part of the saved state: name it, so that a base
	 * says what it was saved under on any host. */
	if (!(n = add_attrs(root, "cpu", "mode", "custom", "match", "exact")) ||
	    !(n = add(n, "model", s->cpu ? s->cpu : CL_DOMXML_CPU)) ||
	    set_prop(n, "fallback", "forbid") < 0)
		goto out;
	if (!(n = add(root, "features", NULL)) || !add(n, "acpi", NULL) ||
	    !add_attrs(root, "clock", "offset", "utc", NULL, NULL) ||
	    !add(root, "on_poweroff", "destroy") || !add(root, "on_reboot", "restart") ||
	    !add(root, "on_crash", "destroy") || !(dev = add(root, "devices", NULL)))
		goto out;
	if (!(n = add_attrs(dev, "disk", "type", "file", "device", "disk")) ||
	    !add_attrs(n, "driver", "name", "qemu", "type",
	               s->disk_format ? s->disk_format : "raw") ||
	    set_prop(child(n, "driver"), "discard", "unmap") < 0 ||
	    !add_attrs(n, "source", "file", s->disk, NULL, NULL) ||
	    !add_attrs(n, "target", "dev", "vda", "bus", "virtio"))
		goto out;
	if (!add_attrs(dev, "controller", "type", "usb", "model", "none"))
		goto out;
	if (!(n = add_attrs(dev, "serial", "type", "unix", NULL, NULL)) ||
	    !add_attrs(n, "source", "mode", "bind", "path", s->console) ||
	    !add_attrs(n, "target", "port", "0", NULL, NULL) ||
	    !(n = add_attrs(dev, "console", "type", "unix", NULL, NULL)) ||
	    !add_attrs(n, "source", "mode", "bind", "path", s->console) ||
	    !add_attrs(n, "target", "type", "serial", "port", "0"))
		goto out;
	if (s->vnc && (!(n = add_attrs(dev, "graphics", "type", "vnc", "autoport", "yes")) ||
	               set_prop(n, "listen", "127.0.0.1") < 0 ||
	               !add_attrs(n, "listen", "type", "address", "address", "127.0.0.1")))
		goto out;
	if (!add_attrs(dev, "memballoon", "model", "virtio", "freePageReporting",
	               s->no_free_page_reporting ? "off" : "on"))
		goto out;
	cl = qemu_cmdline(root, 1);
	if (!cl || asprintf(&opts, "memory-backend-file,id=" MEMOBJ_ID ",size=%uM,share=on",
	                    s->ram_mib) < 0) {
		opts = NULL;
		goto out;
	}
	if (!add_arg(cl, "-object") || !(n = add_arg(cl, opts)) || !add_arg(cl, "-machine") ||
	    !add_arg(cl, "memory-backend=" MEMOBJ_ID))
		goto out;
	r = memobj_set(n, "mem-path", s->memory);
	if (r == 0)
		r = serialize(doc, out);
out:
	free(opts);
	xmlFreeDoc(doc);
	return r;
}

/* --- reading values ------------------------------------------------------ */

static char *prop_dup(xmlNode *n, const char *name)
{
	xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
	char *s = v ? strdup((const char *)v) : NULL;

	xmlFree(v);
	return s;
}

static char *text_dup(xmlNode *n)
{
	xmlChar *v = n ? xmlNodeGetContent(n) : NULL;
	char *s = v ? strdup((const char *)v) : NULL;

	xmlFree(v);
	return s;
}

/* The CPU the guest sees, as one comparable string: the model of a custom
 * CPU, the mode of host-model/host-passthrough/maximum, or QEMU's default
 * for x86 (qemu64) when the XML names none. */
static char *cpu_model(xmlNode *root)
{
	xmlNode *cpu = child(root, "cpu");
	char *mode = prop_dup(cpu, "mode"), *model = text_dup(child(cpu, "model")), *s = NULL;

	if (mode && strcmp(mode, "custom"))
		s = strdup(mode);
	else if (model && *model)
		s = strdup(model);
	else
		s = strdup("qemu64");
	free(mode);
	free(model);
	return s;
}

static char *vnc_address(xmlNode *root)
{
	xmlNode *g;
	char *port, *listen, *s = NULL;

	for (g = child(child(root, "devices"), "graphics"); g; g = next_sibling(g, "graphics")) {
		if (!prop_is(g, "type", "vnc"))
			continue;
		port = prop_dup(g, "port");
		listen = prop_dup(g, "listen");
		if (!listen)
			listen = prop_dup(child(g, "listen"), "address");
		if (port && atoi(port) > 0 &&
		    asprintf(&s, "%s:%s", listen ? listen : "127.0.0.1", port) < 0)
			s = NULL;
		free(port);
		free(listen);
		if (s)
			return s;
	}
	return NULL;
}

int cl_domxml_get(const char *xml, size_t len, const char *field, char **out)
{
	xmlNode *root, *os, *arg;
	xmlChar *v;
	xmlDoc *doc;
	char *s = NULL;
	int r;

	if (!xml || !field || !out)
		return -EINVAL;
	r = parse(xml, len, &doc);
	if (r < 0)
		return r;
	root = xmlDocGetRootElement(doc);
	os = child(root, "os");
	if (!strcmp(field, "name") || !strcmp(field, "uuid")) {
		s = text_dup(child(root, field));
	} else if (!strcmp(field, "type")) {
		s = prop_dup(root, "type");
	} else if (!strcmp(field, "machine")) {
		s = prop_dup(child(os, "type"), "machine");
	} else if (!strcmp(field, "kernel") || !strcmp(field, "initrd") ||
	           !strcmp(field, "cmdline")) {
		s = text_dup(child(os, field));
	} else if (!strcmp(field, "disk")) {
		s = prop_dup(child(disk_node(root), "source"), "file");
	} else if (!strcmp(field, "console")) {
		xmlNode *serial = child(child(root, "devices"), "serial");
		if (prop_is(serial, "type", "unix"))
			s = prop_dup(child(serial, "source"), "path");
	} else if (!strcmp(field, "log")) {
		s = prop_dup(child(child(child(root, "devices"), "serial"), "log"), "file");
	} else if (!strcmp(field, "mem") || !strcmp(field, "share") || !strcmp(field, "size")) {
		arg = memobj_arg(qemu_cmdline(root, 0));
		v = arg ? xmlGetProp(arg, BAD_CAST "value") : NULL;
		if (v)
			s = opt_get((const char *)v, !strcmp(field, "mem") ? "mem-path" : field);
		xmlFree(v);
	} else if (!strcmp(field, "vnc")) {
		s = vnc_address(root);
	} else if (!strcmp(field, "cpu")) {
		s = cpu_model(root);
	} else {
		xmlFreeDoc(doc);
		return cl_errorf(-EINVAL, "domain XML: unknown field '%s'", field);
	}
	xmlFreeDoc(doc);
	if (!s)
		return -ENOENT;
	*out = s;
	return 0;
}

int cl_domxml_uuid(char out[37])
{
	uint8_t u[16];
	ssize_t n;

	do
		n = getrandom(u, sizeof(u), 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(u))
		return cl_errorf(n < 0 ? -errno : -EIO, "getrandom: cannot make a UUID");
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	         u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
	         u[13], u[14], u[15]);
	return 0;
}
