/* SPDX-License-Identifier: GPL-2.0-only */
/* libxml2 helpers shared by the domain XML modules (cl_domxml, cl_domnet):
 * elements without a namespace by name, attributes, QEMU's command line
 * in <qemu:commandline> and its option strings.
 *
 * Memory: nodes belong to their document; strings returned as char * are
 * malloc'd and the caller frees them. */
#ifndef CL_XML_H
#define CL_XML_H

#include <stddef.h>

#include <libxml/tree.h>

#define CL_QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"

/* n is an element called name, without a namespace. */
int cl_xml_is(const xmlNode *n, const char *name);
/* The first child element of parent called name, the next sibling element
 * of n called name; NULL if none (parent or n may be NULL). */
xmlNode *cl_xml_child(xmlNode *parent, const char *name);
xmlNode *cl_xml_next(xmlNode *n, const char *name);
/* That child, added when missing (NULL only on OOM). */
xmlNode *cl_xml_ensure(xmlNode *parent, const char *name);
int cl_xml_prop_is(xmlNode *n, const char *name, const char *value);
/* Replaces the content of n by the literal text (escaped on output). */
int cl_xml_set_text(xmlNode *n, const char *text);
int cl_xml_set_prop(xmlNode *n, const char *name, const char *value);
/* Unlinks and frees n (or every child element of parent called name). */
void cl_xml_drop(xmlNode *n);
void cl_xml_drop_children(xmlNode *parent, const char *name);
/* A new child element (with text, or attributes k1=v1 k2=v2 where kN is
 * not NULL); NULL on OOM. */
xmlNode *cl_xml_add(xmlNode *parent, const char *name, const char *text);
xmlNode *cl_xml_add_attrs(xmlNode *parent, const char *name, const char *k1, const char *v1,
                          const char *k2, const char *v2);
/* An <address> of PCI slot slot on bus 0 of domain 0. */
xmlNode *cl_xml_add_pci(xmlNode *parent, unsigned slot);
char *cl_xml_prop_dup(xmlNode *n, const char *name);
char *cl_xml_text_dup(xmlNode *n);

/* The root's <qemu:commandline> (made when create is set and it is
 * missing), an <qemu:arg value=...> added to it, and whether n is one. */
xmlNode *cl_xml_qemu_cmdline(xmlNode *root, int create);
xmlNode *cl_xml_add_arg(xmlNode *cl, const char *value);
int cl_xml_is_arg(const xmlNode *n);

/* QEMU option strings (key=value,...; a comma inside a value is written
 * twice): key's unescaped value, or NULL; opts with key set to value. */
char *cl_xml_opt_get(const char *opts, const char *key);
char *cl_xml_opt_set(const char *opts, const char *key, const char *value);

/* libxml2's global state, set up once before threads use it. */
void cl_xml_init(void);
/* Parses a domain XML (no network access; namespaces must be declared;
 * the root must be <domain>, with at most one of each part the rewrite
 * edits: name, memory, os, cpu, devices, metadata, QEMU's commandline...)
 * into *out, which the caller frees with
 * xmlFreeDoc. */
int cl_xml_parse_domain(const char *xml, size_t len, xmlDoc **out);
/* The document as NUL-terminated text, without XML declaration. */
int cl_xml_serialize(xmlDoc *doc, char **out);

#endif
