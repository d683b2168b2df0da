/* SPDX-License-Identifier: GPL-2.0-only */
/* Domain XML rewriting (see cl_domxml.h). */
#include "cl_domxml.h"
#include "cl_domnet.h"
#include "cl_error.h"
#include "cl_xml.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <libxml/tree.h>

#define MEMOBJ_ID "cl-ram"
/* PCI slots of a new domain (slot 2 is the video card's, if any). */
#define NIC_SLOT     3
#define DISK_SLOT    4
#define BALLOON_SLOT 5

static xmlNode *disk_node(xmlNode *root)
{
	xmlNode *d;

	for (d = cl_xml_child(cl_xml_child(root, "devices"), "disk"); d;
	     d = cl_xml_next(d, "disk")) {
		xmlChar *dev = xmlGetProp(d, BAD_CAST "device");
		int is_disk = !dev || !strcmp((const char *)dev, "disk");

		xmlFree(dev);
		if (is_disk)
			return d;
	}
	return NULL;
}

/* The <qemu:arg> whose value starts with memory-backend-file. */
static xmlNode *memobj_arg(xmlNode *cl)
{
	xmlNode *n;

	for (n = cl ? cl->children : NULL; n; n = n->next) {
		xmlChar *v;
		int hit;

		if (!cl_xml_is_arg(n))
			continue;
		v = xmlGetProp(n, BAD_CAST "value");
		hit = v && !strncmp((const char *)v, "memory-backend-file,", 20);
		xmlFree(v);
		if (hit)
			return n;
	}
	return NULL;
}

static int memobj_set(xmlNode *arg, const char *key, const char *value)
{
	xmlChar *v = xmlGetProp(arg, BAD_CAST "value");
	char *nv;
	int r;

	if (!v)
		return -ENOMEM;
	nv = cl_xml_opt_set((const char *)v, key, value);
	xmlFree(v);
	if (!nv)
		return -ENOMEM;
	r = cl_xml_set_prop(arg, "value", nv);
	free(nv);
	return r;
}

/* Removes every `-incoming X` pair. */
static void drop_incoming(xmlNode *cl)
{
	xmlNode *n, *next, *val;

	for (n = cl ? cl->children : NULL; n; n = next) {
		next = n->next;
		if (!cl_xml_is_arg(n) || !cl_xml_prop_is(n, "value", "-incoming"))
			continue;
		for (val = next; val && !cl_xml_is_arg(val); val = val->next)
			;
		if (val) {
			next = val->next;
			cl_xml_drop(val);
		}
		cl_xml_drop(n);
	}
}

/* Leaves in the command line cl only cloudlet's own arguments: the RAM
 * object arg and what selects it. Anything else an overlay's XML carries
 * (another memory-backend-file on a host file, a -device, an environment
 * variable) is outside input that QEMU would act on, and goes. */
static int own_cmdline(xmlNode *cl, xmlNode *arg)
{
	xmlChar *v = xmlGetProp(arg, BAD_CAST "value");
	char *id = v ? cl_xml_opt_get((const char *)v, "id") : NULL, *sel = NULL;
	xmlNode *n, *next;
	int r = -ENOMEM;

	if (!id) {
		r = cl_errorf(-EINVAL, "domain XML: a memory-backend-file without an id");
		goto out;
	}
	for (n = cl->children; n; n = next) {
		next = n->next;
		if (n != arg)
			cl_xml_drop(n);
	}
	if (asprintf(&sel, "memory-backend=%s", id) < 0) {
		sel = NULL;
		goto out;
	}
	xmlUnlinkNode(arg);
	if (!cl_xml_add_arg(cl, "-object") || !xmlAddChild(cl, arg) ||
	    !cl_xml_add_arg(cl, "-machine") || !cl_xml_add_arg(cl, sel)) {
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

	cl = cl_xml_qemu_cmdline(root, e->memory || e->incoming);
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
		if (!cl || !cl_xml_add_arg(cl, "-object") || !(arg = cl_xml_add_arg(cl, opts)) ||
		    !cl_xml_add_arg(cl, "-machine") ||
		    !cl_xml_add_arg(cl, "memory-backend=" MEMOBJ_ID)) {
			free(opts);
			return -ENOMEM;
		}
		free(opts);
		snprintf(size, sizeof(size), "%" PRIu64, e->memory_size);
		mem = cl_xml_ensure(root, "memory");
		if (cl_xml_set_text(mem, size) < 0 || cl_xml_set_prop(mem, "unit", "b") < 0)
			return -ENOMEM;
		cl_xml_drop_children(root, "currentMemory");
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
	if (e->incoming && (!cl_xml_add_arg(cl, "-incoming") || !cl_xml_add_arg(cl, "defer")))
		return -ENOMEM;
	return 0;
}

/* --- the other parts ----------------------------------------------------- */

static int edit_disk(xmlNode *root, const struct cl_domxml_edit *e)
{
	xmlNode *d = disk_node(root), *src, *drv, *sl;

	if (!d)
		return cl_errorf(-EINVAL, "domain XML: no disk device");
	src = cl_xml_ensure(d, "source");
	drv = cl_xml_ensure(d, "driver");
	/* The synthesized image is a raw file; nothing of the old chain holds. */
	if (!src || !drv || cl_xml_set_prop(d, "type", "file") < 0 ||
	    cl_xml_set_prop(drv, "name", "qemu") < 0 ||
	    cl_xml_set_prop(drv, "type", e->disk_format ? e->disk_format : "raw") < 0)
		return -ENOMEM;
	if (e->disk_discard && cl_xml_set_prop(drv, "discard", "unmap") < 0)
		return -ENOMEM;
	xmlUnsetProp(src, BAD_CAST "dev");
	xmlUnsetProp(src, BAD_CAST "pool");
	xmlUnsetProp(src, BAD_CAST "volume");
	if (cl_xml_set_prop(src, "file", e->disk) < 0)
		return -ENOMEM;
	cl_xml_drop_children(d, "backingStore");
	if (e->disk_norelabel) {
		cl_xml_drop_children(src, "seclabel");
		sl = xmlNewChild(src, NULL, BAD_CAST "seclabel", NULL);
		if (cl_xml_set_prop(sl, "model", "dac") < 0 ||
		    cl_xml_set_prop(sl, "relabel", "no") < 0)
			return -ENOMEM;
	}
	return 0;
}

static int edit_chardevs(xmlNode *root, const struct cl_domxml_edit *e)
{
	static const char *const kinds[] = {"serial", "console"};
	xmlNode *dev = cl_xml_child(root, "devices"), *n, *src, *log;
	size_t k;

	for (k = 0; k < 2; k++) {
		for (n = cl_xml_child(dev, kinds[k]); n; n = cl_xml_next(n, kinds[k])) {
			src = cl_xml_child(n, "source");
			if (e->console && src && cl_xml_prop_is(n, "type", "unix") &&
			    (cl_xml_set_prop(src, "path", e->console) < 0 ||
			     cl_xml_set_prop(src, "mode", "bind") < 0))
				return -ENOMEM;
			/* One log per serial port: the first serial's, if asked. */
			cl_xml_drop_children(n, "log");
			if (k == 0 && e->console_log && n == cl_xml_child(dev, "serial")) {
				log = xmlNewChild(n, NULL, BAD_CAST "log", NULL);
				if (cl_xml_set_prop(log, "file", e->console_log) < 0 ||
				    cl_xml_set_prop(log, "append", "off") < 0)
					return -ENOMEM;
			}
		}
	}
	/* Channel sockets of another run: libvirt picks new paths without them. */
	for (n = cl_xml_child(dev, "channel"); n; n = cl_xml_next(n, "channel"))
		if (cl_xml_prop_is(n, "type", "unix") && (src = cl_xml_child(n, "source")))
			xmlUnsetProp(src, BAD_CAST "path");
	return 0;
}

static int edit_vnc(xmlNode *root)
{
	xmlNode *g, *l;

	for (g = cl_xml_child(cl_xml_child(root, "devices"), "graphics"); g;
	     g = cl_xml_next(g, "graphics")) {
		if (!cl_xml_prop_is(g, "type", "vnc"))
			continue;
		xmlUnsetProp(g, BAD_CAST "port");
		xmlUnsetProp(g, BAD_CAST "websocket");
		cl_xml_drop_children(g, "listen");
		l = xmlNewChild(g, NULL, BAD_CAST "listen", NULL);
		if (cl_xml_set_prop(g, "autoport", "yes") < 0 ||
		    cl_xml_set_prop(g, "listen", "127.0.0.1") < 0 ||
		    cl_xml_set_prop(l, "type", "address") < 0 ||
		    cl_xml_set_prop(l, "address", "127.0.0.1") < 0)
			return -ENOMEM;
	}
	return 0;
}

static int edit_os(xmlNode *root, const struct cl_domxml_edit *e)
{
	xmlNode *os = cl_xml_child(root, "os");

	if (!os && (e->kernel || e->initrd || e->cmdline))
		return cl_errorf(-EINVAL, "domain XML: no <os> element");
	if (e->kernel && cl_xml_set_text(cl_xml_ensure(os, "kernel"), e->kernel) < 0)
		return -ENOMEM;
	if (e->initrd && cl_xml_set_text(cl_xml_ensure(os, "initrd"), e->initrd) < 0)
		return -ENOMEM;
	if (e->cmdline && cl_xml_set_text(cl_xml_ensure(os, "cmdline"), e->cmdline) < 0)
		return -ENOMEM;
	return 0;
}

/* Interfaces from e->net_from first, so that a saved domain keeps its NIC
 * in libvirt's form; then a run's own arguments for user-mode NICs. */
static int edit_net(xmlNode *root, const struct cl_domxml_edit *e)
{
	xmlDoc *from = NULL;
	int r = 0;

	if (e->net_from) {
		r = cl_xml_parse_domain(e->net_from, e->net_from_len, &from);
		if (r == 0)
			r = cl_domnet_copy(root, xmlDocGetRootElement(from));
		xmlFreeDoc(from);
	}
	if (r == 0 && e->net_run)
		r = cl_domnet_run(root, cl_xml_qemu_cmdline(root, 1));
	return r;
}

int cl_domxml_rewrite(const char *xml, size_t len, const struct cl_domxml_edit *e, char **out)
{
	xmlNode *root;
	xmlDoc *doc;
	int r;

	if (!xml || !e || !e->name || !*e->name || !out)
		return -EINVAL;
	r = cl_xml_parse_domain(xml, len, &doc);
	if (r < 0)
		return r;
	root = xmlDocGetRootElement(doc);
	r = -ENOMEM;
	if (cl_xml_set_text(cl_xml_ensure(root, "name"), e->name) < 0)
		goto out;
	cl_xml_drop_children(root, "uuid");
	if (e->uuid && cl_xml_set_text(xmlNewChild(root, NULL, BAD_CAST "uuid", NULL), e->uuid) < 0)
		goto out;
	if (e->type && cl_xml_set_prop(root, "type", e->type) < 0)
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
	if ((r = edit_net(root, e)) < 0)
		goto out;
	r = cl_xml_serialize(doc, out);
out:
	xmlFreeDoc(doc);
	return r;
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
	cl_xml_init();
	doc = xmlNewDoc(BAD_CAST "1.0");
	root = doc ? xmlNewNode(NULL, BAD_CAST "domain") : NULL;
	if (!root)
		goto out;
	xmlDocSetRootElement(doc, root);
	snprintf(num, sizeof(num), "%u", s->ram_mib);
	if (cl_xml_set_prop(root, "type", s->type) < 0 || !cl_xml_add(root, "name", s->name) ||
	    !(n = cl_xml_add(root, "memory", num)) || cl_xml_set_prop(n, "unit", "MiB") < 0)
		goto out;
	snprintf(num, sizeof(num), "%u", s->vcpus);
	if (!cl_xml_add(root, "vcpu", num) || !(os = cl_xml_add(root, "os", NULL)) ||
	    !(n = cl_xml_add_attrs(os, "type", "arch", "x86_64", "machine",
	                           s->machine ? s->machine : "pc")) ||
	    cl_xml_set_text(n, "hvm") < 0)
		goto out;
	if (s->kernel) {
		if (!cl_xml_add(os, "kernel", s->kernel) ||
		    (s->initrd && !cl_xml_add(os, "initrd", s->initrd)) ||
		    (s->cmdline && !cl_xml_add(os, "cmdline", s->cmdline)))
			goto out;
	} else if (!cl_xml_add_attrs(os, "boot", "dev", "hd", NULL, NULL)) {
		goto out;
	}
	/* The CPU model is part of the saved state: name it, so that a base
	 * says what it was saved under on any host. */
	if (!(n = cl_xml_add_attrs(root, "cpu", "mode", "custom", "match", "exact")) ||
	    !(n = cl_xml_add(n, "model", s->cpu ? s->cpu : CL_DOMXML_CPU)) ||
	    cl_xml_set_prop(n, "fallback", "forbid") < 0)
		goto out;
	if (!(n = cl_xml_add(root, "features", NULL)) || !cl_xml_add(n, "acpi", NULL) ||
	    !cl_xml_add_attrs(root, "clock", "offset", "utc", NULL, NULL) ||
	    !cl_xml_add(root, "on_poweroff", "destroy") ||
	    !cl_xml_add(root, "on_reboot", "restart") || !cl_xml_add(root, "on_crash", "destroy") ||
	    !(dev = cl_xml_add(root, "devices", NULL)))
		goto out;
	if (!(n = cl_xml_add_attrs(dev, "disk", "type", "file", "device", "disk")) ||
	    !cl_xml_add_attrs(n, "driver", "name", "qemu", "type",
	                      s->disk_format ? s->disk_format : "raw") ||
	    cl_xml_set_prop(cl_xml_child(n, "driver"), "discard", "unmap") < 0 ||
	    !cl_xml_add_attrs(n, "source", "file", s->disk, NULL, NULL) ||
	    !cl_xml_add_attrs(n, "target", "dev", "vda", "bus", "virtio") ||
	    !cl_xml_add_pci(n, DISK_SLOT))
		goto out;
	if (!cl_xml_add_attrs(dev, "controller", "type", "usb", "model", "none"))
		goto out;
	if (!(n = cl_xml_add_attrs(dev, "serial", "type", "unix", NULL, NULL)) ||
	    !cl_xml_add_attrs(n, "source", "mode", "bind", "path", s->console) ||
	    !cl_xml_add_attrs(n, "target", "port", "0", NULL, NULL) ||
	    !(n = cl_xml_add_attrs(dev, "console", "type", "unix", NULL, NULL)) ||
	    !cl_xml_add_attrs(n, "source", "mode", "bind", "path", s->console) ||
	    !cl_xml_add_attrs(n, "target", "type", "serial", "port", "0"))
		goto out;
	if (s->vnc && (!(n = cl_xml_add_attrs(dev, "graphics", "type", "vnc", "autoport", "yes")) ||
	               cl_xml_set_prop(n, "listen", "127.0.0.1") < 0 ||
	               !cl_xml_add_attrs(n, "listen", "type", "address", "address", "127.0.0.1")))
		goto out;
	if (!(n = cl_xml_add_attrs(dev, "memballoon", "model", "virtio", "freePageReporting",
	                           s->no_free_page_reporting ? "off" : "on")) ||
	    !cl_xml_add_pci(n, BALLOON_SLOT))
		goto out;
	if ((r = cl_domnet_add(root, &s->net, NIC_SLOT)) < 0)
		goto out;
	r = -ENOMEM;
	cl = cl_xml_qemu_cmdline(root, 1);
	if (!cl || asprintf(&opts, "memory-backend-file,id=" MEMOBJ_ID ",size=%uM,share=on",
	                    s->ram_mib) < 0) {
		opts = NULL;
		goto out;
	}
	if (!cl_xml_add_arg(cl, "-object") || !(n = cl_xml_add_arg(cl, opts)) ||
	    !cl_xml_add_arg(cl, "-machine") || !cl_xml_add_arg(cl, "memory-backend=" MEMOBJ_ID))
		goto out;
	r = memobj_set(n, "mem-path", s->memory);
	if (r == 0)
		r = cl_xml_serialize(doc, out);
out:
	free(opts);
	xmlFreeDoc(doc);
	return r;
}

/* The CPU the guest sees, as one comparable string: the model of a custom
 * CPU, the mode of host-model/host-passthrough/maximum, or QEMU's default
 * for x86 (qemu64) when the XML names none. */
static char *cpu_model(xmlNode *root)
{
	xmlNode *cpu = cl_xml_child(root, "cpu");
	char *mode = cl_xml_prop_dup(cpu, "mode"),
	     *model = cl_xml_text_dup(cl_xml_child(cpu, "model")), *s = NULL;

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

	for (g = cl_xml_child(cl_xml_child(root, "devices"), "graphics"); g;
	     g = cl_xml_next(g, "graphics")) {
		if (!cl_xml_prop_is(g, "type", "vnc"))
			continue;
		port = cl_xml_prop_dup(g, "port");
		listen = cl_xml_prop_dup(g, "listen");
		if (!listen)
			listen = cl_xml_prop_dup(cl_xml_child(g, "listen"), "address");
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

static char *net_field(xmlNode *root, const char *field)
{
	enum cl_net_kind kind;
	char mac[18], *macs = NULL;

	if (cl_domnet_info(root, &kind, mac, !strcmp(field, "macs") ? &macs : NULL) < 0)
		return NULL;
	if (macs)
		return macs;
	if (!strcmp(field, "net"))
		return strdup(cl_net_kind_name(kind));
	return mac[0] ? strdup(mac) : NULL;
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
	r = cl_xml_parse_domain(xml, len, &doc);
	if (r < 0)
		return r;
	root = xmlDocGetRootElement(doc);
	os = cl_xml_child(root, "os");
	if (!strcmp(field, "name") || !strcmp(field, "uuid")) {
		s = cl_xml_text_dup(cl_xml_child(root, field));
	} else if (!strcmp(field, "type")) {
		s = cl_xml_prop_dup(root, "type");
	} else if (!strcmp(field, "machine")) {
		s = cl_xml_prop_dup(cl_xml_child(os, "type"), "machine");
	} else if (!strcmp(field, "kernel") || !strcmp(field, "initrd") ||
	           !strcmp(field, "cmdline")) {
		s = cl_xml_text_dup(cl_xml_child(os, field));
	} else if (!strcmp(field, "disk")) {
		s = cl_xml_prop_dup(cl_xml_child(disk_node(root), "source"), "file");
	} else if (!strcmp(field, "console")) {
		xmlNode *serial = cl_xml_child(cl_xml_child(root, "devices"), "serial");
		if (cl_xml_prop_is(serial, "type", "unix"))
			s = cl_xml_prop_dup(cl_xml_child(serial, "source"), "path");
	} else if (!strcmp(field, "log")) {
		s = cl_xml_prop_dup(
		    cl_xml_child(cl_xml_child(cl_xml_child(root, "devices"), "serial"), "log"),
		    "file");
	} else if (!strcmp(field, "mem") || !strcmp(field, "share") || !strcmp(field, "size")) {
		arg = memobj_arg(cl_xml_qemu_cmdline(root, 0));
		v = arg ? xmlGetProp(arg, BAD_CAST "value") : NULL;
		if (v)
			s = cl_xml_opt_get((const char *)v,
			                   !strcmp(field, "mem") ? "mem-path" : field);
		xmlFree(v);
	} else if (!strcmp(field, "vnc")) {
		s = vnc_address(root);
	} else if (!strcmp(field, "cpu")) {
		s = cpu_model(root);
	} else if (!strcmp(field, "net") || !strcmp(field, "mac") || !strcmp(field, "macs")) {
		s = net_field(root, field);
	} else if (!strcmp(field, "bridge")) {
		s = cl_xml_prop_dup(
		    cl_xml_child(cl_xml_child(cl_xml_child(root, "devices"), "interface"),
		                 "source"),
		    "bridge");
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
