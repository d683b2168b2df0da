/* SPDX-License-Identifier: GPL-2.0-only */
/* libxml2 helpers for the domain XML modules (see cl_xml.h). */
#include "cl_xml.h"
#include "cl_error.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/xmlsave.h>

/* --- small tree helpers -------------------------------------------------- */

int cl_xml_is(const xmlNode *n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && !n->ns && !strcmp((const char *)n->name, name);
}

xmlNode *cl_xml_child(xmlNode *parent, const char *name)
{
	xmlNode *n;

	for (n = parent ? parent->children : NULL; n; n = n->next)
		if (cl_xml_is(n, name))
			return n;
	return NULL;
}

xmlNode *cl_xml_next(xmlNode *n, const char *name)
{
	for (n = n ? n->next : NULL; n; n = n->next)
		if (cl_xml_is(n, name))
			return n;
	return NULL;
}

xmlNode *cl_xml_ensure(xmlNode *parent, const char *name)
{
	xmlNode *n = cl_xml_child(parent, name);

	return n ? n : xmlNewChild(parent, NULL, BAD_CAST name, NULL);
}

int cl_xml_prop_is(xmlNode *n, const char *name, const char *value)
{
	xmlChar *v = xmlGetProp(n, BAD_CAST name);
	int eq = v && !strcmp((const char *)v, value);

	xmlFree(v);
	return eq;
}

/* Replaces the content of n by the literal text (escaped on output). */
int cl_xml_set_text(xmlNode *n, const char *text)
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

int cl_xml_set_prop(xmlNode *n, const char *name, const char *value)
{
	return n && xmlSetProp(n, BAD_CAST name, BAD_CAST value) ? 0 : -ENOMEM;
}

void cl_xml_drop(xmlNode *n)
{
	if (n) {
		xmlUnlinkNode(n);
		xmlFreeNode(n);
	}
}

void cl_xml_drop_children(xmlNode *parent, const char *name)
{
	xmlNode *n, *next;

	for (n = parent ? parent->children : NULL; n; n = next) {
		next = n->next;
		if (cl_xml_is(n, name))
			cl_xml_drop(n);
	}
}

/* --- <qemu:commandline> and QEMU option strings -------------------------- */

xmlNode *cl_xml_qemu_cmdline(xmlNode *root, int create)
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

xmlNode *cl_xml_add_arg(xmlNode *cl, const char *value)
{
	xmlNode *a = xmlNewChild(cl, cl->ns, BAD_CAST "arg", NULL);

	if (a && cl_xml_set_prop(a, "value", value) < 0)
		return NULL;
	return a;
}

int cl_xml_is_arg(const xmlNode *n)
{
	return n->type == XML_ELEMENT_NODE && !strcmp((const char *)n->name, "arg");
}

/* In QEMU option strings a comma inside a value is written twice. Finds
 * key=... in opts and returns its unescaped value (malloc'd), or NULL. */
char *cl_xml_opt_get(const char *opts, const char *key)
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
char *cl_xml_opt_set(const char *opts, const char *key, const char *value)
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

/* --- parse and serialize ------------------------------------------------- */

/* libxml2 wants its global state set up once, before threads use it. */
static void xml_init_once(void)
{
	xmlInitParser();
}

void cl_xml_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, xml_init_once);
}

/* Top-level elements the rewrite edits: libvirt reads every one of a
 * name (all <devices>, all <qemu:commandline>), the rewrite the first, so
 * a second would pass unedited. */
static int single_parts(xmlNode *root)
{
	static const char *const parts[] = {
	    "name",    "uuid",     "memory",      "currentMemory", "os",          "cpu",
	    "devices", "metadata", "commandline", "override",      "capabilities"};
	size_t i, n, first_qemu = 8; /* from here on, parts of QEMU's namespace */

	for (i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		n = 0;
		for (xmlNode *c = root->children; c; c = c->next) {
			int qemu =
			    c->ns && c->ns->href && !strcmp((const char *)c->ns->href, CL_QEMU_NS);

			n += c->type == XML_ELEMENT_NODE &&
			     !strcmp((const char *)c->name, parts[i]) &&
			     (i >= first_qemu ? qemu : !c->ns);
		}
		if (n > 1)
			return cl_errorf(-EBADMSG, "domain XML: more than one <%s>", parts[i]);
	}
	return 0;
}

int cl_xml_parse_domain(const char *xml, size_t len, xmlDoc **out)
{
	xmlParserCtxt *ctxt;
	const xmlError *err;
	xmlDoc *doc;
	xmlNode *root;
	int r;

	cl_xml_init();
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
	if (!cl_xml_is(root, "domain")) {
		xmlFreeDoc(doc);
		return cl_errorf(-EBADMSG, "domain XML: the root element is not <domain>");
	}
	if ((r = single_parts(root)) < 0) {
		xmlFreeDoc(doc);
		return r;
	}
	*out = doc;
	return 0;
}

int cl_xml_serialize(xmlDoc *doc, char **out)
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

/* --- new domains ---------------------------------------------------------- */

xmlNode *cl_xml_add(xmlNode *parent, const char *name, const char *text)
{
	xmlNode *n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);

	if (n && text && cl_xml_set_text(n, text) < 0)
		return NULL;
	return n;
}

xmlNode *cl_xml_add_attrs(xmlNode *parent, const char *name, const char *k1, const char *v1,
                          const char *k2, const char *v2)
{
	xmlNode *n = xmlNewChild(parent, NULL, BAD_CAST name, NULL);

	if (!n || (k1 && cl_xml_set_prop(n, k1, v1) < 0) || (k2 && cl_xml_set_prop(n, k2, v2) < 0))
		return NULL;
	return n;
}

/* --- reading values ------------------------------------------------------ */

xmlNode *cl_xml_add_pci(xmlNode *parent, unsigned slot)
{
	xmlNode *a = cl_xml_add_attrs(parent, "address", "type", "pci", "domain", "0x0000");
	char v[8];

	snprintf(v, sizeof(v), "0x%02x", slot);
	if (!a || cl_xml_set_prop(a, "bus", "0x00") < 0 || cl_xml_set_prop(a, "slot", v) < 0 ||
	    cl_xml_set_prop(a, "function", "0x0") < 0)
		return NULL;
	return a;
}

char *cl_xml_prop_dup(xmlNode *n, const char *name)
{
	xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
	char *s = v ? strdup((const char *)v) : NULL;

	xmlFree(v);
	return s;
}

char *cl_xml_text_dup(xmlNode *n)
{
	xmlChar *v = n ? xmlNodeGetContent(n) : NULL;
	char *s = v ? strdup((const char *)v) : NULL;

	xmlFree(v);
	return s;
}
