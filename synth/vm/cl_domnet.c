/* SPDX-License-Identifier: GPL-2.0-only */
/* The network interface of a domain XML (see cl_domnet.h). */
#include "cl_domnet.h"
#include "cl_error.h"
#include "cl_xml.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define MAX_NICS 8

/* xx:xx:xx:xx:xx:xx, hex digits and colons only (it goes into mac=). */
static int valid_mac(const char *m)
{
	int i;

	for (i = 0; i < 17; i++)
		if (i % 3 == 2 ? m[i] != ':' : !isxdigit((unsigned char)m[i]))
			return 0;
	return m[17] == '\0';
}

/* QEMU's and libvirt's locally administered prefix, random below it. */
static int random_mac(char mac[18])
{
	uint8_t u[3];

	if (getrandom(u, sizeof(u), 0) != (ssize_t)sizeof(u))
		return cl_errorf(-EIO, "getrandom: cannot make a MAC address");
	snprintf(mac, 18, "52:54:00:%02x:%02x:%02x", u[0], u[1], u[2]);
	return 0;
}

/* --- cloudlet's metadata --------------------------------------------------- */

static xmlNode *net_meta(xmlNode *root)
{
	xmlNode *n;

	for (n = cl_xml_child(root, "metadata"); n; n = cl_xml_next(n, "metadata"))
		for (xmlNode *m = n->children; m; m = m->next)
			if (m->type == XML_ELEMENT_NODE && m->ns && m->ns->href &&
			    !strcmp((const char *)m->ns->href, CL_DOMNET_NS) &&
			    !strcmp((const char *)m->name, "network"))
				return m;
	return NULL;
}

/* Every cloudlet metadata element (an outside XML may hold several). */
static void drop_meta(xmlNode *root)
{
	xmlNode *m;

	while ((m = net_meta(root)))
		cl_xml_drop(m);
}

static int outbound_allowed(xmlNode *root)
{
	return cl_xml_prop_is(net_meta(root), "outbound", "on");
}

static int add_meta(xmlNode *root)
{
	xmlNode *meta = cl_xml_ensure(root, "metadata"), *m;
	xmlNs *ns;

	m = meta ? xmlNewChild(meta, NULL, BAD_CAST "network", NULL) : NULL;
	ns = m ? xmlNewNs(m, BAD_CAST CL_DOMNET_NS, BAD_CAST "cloudlet") : NULL;
	if (!ns)
		return -ENOMEM;
	xmlSetNs(m, ns);
	return cl_xml_set_prop(m, "outbound", "on");
}

/* --- new domains ------------------------------------------------------------ */

int cl_domnet_add(xmlNode *root, const struct cl_net *n, unsigned slot)
{
	static const char *const types[] = {NULL, "user", "user", "bridge", "network"};
	xmlNode *dev = cl_xml_child(root, "devices"), *i;
	char mac[18];
	int r;

	if (!n || (unsigned)n->kind > CL_NET_LIBVIRT || slot > 0x1f || !dev)
		return -EINVAL;
	if (n->kind == CL_NET_NONE)
		return 0;
	if ((r = random_mac(mac)) < 0)
		return r;
	if (!(i = cl_xml_add_attrs(dev, "interface", "type", types[n->kind], NULL, NULL)) ||
	    !cl_xml_add_attrs(i, "mac", "address", mac, NULL, NULL) ||
	    (n->kind == CL_NET_BRIDGE &&
	     !cl_xml_add_attrs(i, "source", "bridge", n->source, NULL, NULL)) ||
	    (n->kind == CL_NET_LIBVIRT &&
	     !cl_xml_add_attrs(i, "source", "network", n->source, NULL, NULL)) ||
	    !cl_xml_add_attrs(i, "model", "type", "virtio", NULL, NULL) || !cl_xml_add_pci(i, slot))
		return -ENOMEM;
	return n->kind == CL_NET_NAT ? add_meta(root) : 0;
}

/* --- runs ---------------------------------------------------------------------- */

/* The QEMU device of a libvirt NIC model (those that need no more than
 * netdev, mac and a PCI address); libvirt's default on x86 is rtl8139. */
static const char *device_of(const char *model)
{
	if (!model)
		return "rtl8139";
	if (!strcmp(model, "virtio"))
		return "virtio-net-pci";
	if (!strcmp(model, "e1000") || !strcmp(model, "e1000e") || !strcmp(model, "rtl8139"))
		return model;
	return NULL;
}

/* QEMU's bus= and addr= ("pci.0" and "0x3" or "0x3.0x1") from an
 * <address type='pci'> of domain 0: libvirt names bus N "pci.N", and the
 * root bus of a q35 machine "pcie.0". */
static int pci_addr(xmlNode *a, int q35, char bus[16], char out[16])
{
	char *v[4] = {cl_xml_prop_dup(a, "domain"), cl_xml_prop_dup(a, "bus"),
	              cl_xml_prop_dup(a, "slot"), cl_xml_prop_dup(a, "function")};
	unsigned long x[4] = {0, 0, 0, 0};
	int i, ok = cl_xml_prop_is(a, "type", "pci") && v[2];

	for (i = 0; i < 4 && ok; i++) {
		char *end = NULL;

		if (v[i])
			x[i] = strtoul(v[i], &end, 0);
		ok = !v[i] || (*v[i] && end && !*end);
	}
	for (i = 0; i < 4; i++)
		free(v[i]);
	if (!ok || x[0] || x[1] > 0xff || x[2] > 0x1f || x[3] > 7)
		return cl_errorf(-EINVAL, "domain XML: a user-mode interface needs a PCI address "
		                          "(the <address> libvirt writes)");
	if (x[1] || !q35)
		snprintf(bus, 16, "pci.%lu", x[1]);
	else
		snprintf(bus, 16, "pcie.0");
	if (x[3])
		snprintf(out, 16, "0x%lx.0x%lx", x[2], x[3]);
	else
		snprintf(out, 16, "0x%lx", x[2]);
	return 0;
}

/* Whether interface i holds only what cloudlet writes again: anything
 * else would be dropped silently (and some of it, like <mtu>, changes
 * what the device state needs). */
static int plain_user(xmlNode *i)
{
	static const char *const ok[] = {"mac", "model", "address", "alias"};

	for (xmlNode *c = i->children; c; c = c->next) {
		size_t k = 0;

		while (c->type == XML_ELEMENT_NODE && k < 4 && !cl_xml_is(c, ok[k]))
			k++;
		if (k == 4)
			return 0;
	}
	return 1;
}

/* The -netdev and -device arguments of user interface i, the n-th; ids of
 * cloudlet's own (not libvirt's hostnetN/netN: those name the NICs it
 * still manages). */
static int user_args(xmlNode *i, xmlNode *cl, int n, int outbound, int q35)
{
	char *mac = cl_xml_prop_dup(cl_xml_child(i, "mac"), "address");
	char *model = cl_xml_prop_dup(cl_xml_child(i, "model"), "type");
	const char *dev = device_of(model);
	char bus[16], addr[16], netdev[96], device[192];
	int r = 0;

	if (!mac || !valid_mac(mac))
		r = cl_errorf(-EINVAL, "domain XML: a user-mode interface without a valid <mac>");
	else if (!dev)
		r = cl_errorf(-EINVAL,
		              "domain XML: NIC model %s is not supported (virtio, e1000, "
		              "e1000e, rtl8139 are)",
		              model);
	else if (!plain_user(i))
		r = cl_errorf(-EINVAL, "domain XML: a user-mode interface may hold only <mac>, "
		                       "<model>, <address> and <alias>");
	if (r == 0)
		r = pci_addr(cl_xml_child(i, "address"), q35, bus, addr);
	if (r == 0) {
		snprintf(netdev, sizeof(netdev),
		         "user,id=" CL_DOMNET_NETDEV_PREFIX "%d,restrict=%s", n,
		         outbound ? "off" : "on");
		snprintf(device, sizeof(device),
		         "%s,netdev=" CL_DOMNET_NETDEV_PREFIX
		         "%d,id=cl-net%d,mac=%s,bus=%s,addr=%s",
		         dev, n, n, mac, bus, addr);
		if (!cl_xml_add_arg(cl, "-netdev") || !cl_xml_add_arg(cl, netdev) ||
		    !cl_xml_add_arg(cl, "-device") || !cl_xml_add_arg(cl, device))
			r = -ENOMEM;
	}
	free(mac);
	free(model);
	return r;
}

int cl_domnet_run(xmlNode *root, xmlNode *cl)
{
	xmlNode *i, *next;
	int outbound = outbound_allowed(root), n = 0, r, q35;
	char *machine;

	if (!root || !cl)
		return -EINVAL;
	machine = cl_xml_prop_dup(cl_xml_child(cl_xml_child(root, "os"), "type"), "machine");
	q35 = machine && strstr(machine, "q35");
	free(machine);
	for (i = cl_xml_child(cl_xml_child(root, "devices"), "interface"); i; i = next) {
		next = cl_xml_next(i, "interface");
		if (cl_xml_prop_is(i, "type", "user")) {
			if (n == MAX_NICS)
				return cl_errorf(-EINVAL, "domain XML: more than %d NICs",
				                 MAX_NICS);
			if ((r = user_args(i, cl, n++, outbound, q35)) < 0)
				return r;
			cl_xml_drop(i);
		} else if (!cl_xml_prop_is(i, "type", "bridge") &&
		           !cl_xml_prop_is(i, "type", "network")) {
			return cl_errorf(-EINVAL, "domain XML: only user, bridge and network "
			                          "interfaces are supported");
		}
	}
	return 0;
}

int cl_domnet_copy(xmlNode *root, xmlNode *from)
{
	xmlNode *dev = cl_xml_child(root, "devices"), *i, *c, *meta;

	if (!dev || !from)
		return -EINVAL;
	cl_xml_drop_children(dev, "interface");
	drop_meta(root);
	for (i = cl_xml_child(cl_xml_child(from, "devices"), "interface"); i;
	     i = cl_xml_next(i, "interface")) {
		c = xmlDocCopyNode(i, root->doc, 1);
		if (!c || !xmlAddChild(dev, c)) {
			xmlFreeNode(c);
			return -ENOMEM;
		}
	}
	if (outbound_allowed(from)) {
		meta = cl_xml_ensure(root, "metadata");
		c = meta ? xmlDocCopyNode(net_meta(from), root->doc, 1) : NULL;
		if (!c || !xmlAddChild(meta, c)) {
			xmlFreeNode(c);
			return -ENOMEM;
		}
		xmlReconciliateNs(root->doc, c);
	}
	return 0;
}

int cl_domnet_info(xmlNode *root, enum cl_net_kind *kind, char mac[18], char **macs)
{
	xmlNode *i = cl_xml_child(cl_xml_child(root, "devices"), "interface");
	size_t len = 0, cap = 1;
	char *m, *all = NULL;

	*kind = CL_NET_NONE;
	mac[0] = '\0';
	if (i) {
		*kind = cl_xml_prop_is(i, "type", "bridge")    ? CL_NET_BRIDGE
		        : cl_xml_prop_is(i, "type", "network") ? CL_NET_LIBVIRT
		        : outbound_allowed(root)               ? CL_NET_NAT
		                                               : CL_NET_USER;
		m = cl_xml_prop_dup(cl_xml_child(i, "mac"), "address");
		snprintf(mac, 18, "%s", m ? m : "");
		free(m);
	}
	if (!macs)
		return 0;
	all = calloc(1, 1);
	for (; i && all; i = cl_xml_next(i, "interface")) {
		m = cl_xml_prop_dup(cl_xml_child(i, "mac"), "address");
		if (m && valid_mac(m)) {
			char *grown = realloc(all, cap += 18);

			if (!grown) {
				free(m);
				free(all);
				return -ENOMEM;
			}
			all = grown;
			len += (size_t)sprintf(all + len, "%s%s", len ? " " : "", m);
		}
		free(m);
	}
	if (!all)
		return -ENOMEM;
	*macs = all;
	return 0;
}
