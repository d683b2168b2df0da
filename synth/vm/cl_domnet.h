/* SPDX-License-Identifier: GPL-2.0-only */
/* The network interface of a domain XML.
 *
 * A registered base's XML holds its NIC in libvirt's own form:
 * <interface type='user'> (QEMU's user-mode networking), 'bridge' or
 * 'network', with its MAC, model and PCI address, all part of what the
 * saved device state needs. libvirt 9.0 cannot confine user-mode
 * networking (QEMU's restrict=on) nor forward ports for it, so for a run
 * a user interface is replaced by QEMU arguments cloudlet writes itself
 * (-netdev user,restrict=on and the same device at the same address),
 * never taken from an overlay (whose XML is never run). Whether a base's
 * guest may open connections to the outside (--network nat) is cloudlet
 * metadata in its XML, <cloudlet:network outbound='on'/>. */
#ifndef CL_DOMNET_H
#define CL_DOMNET_H

#include <libxml/tree.h>

#include "cl_net.h"

#define CL_DOMNET_NS            "urn:x-cloudlet:domain:1"
#define CL_DOMNET_NETDEV_PREFIX "cl-hostnet"
#define CL_DOMNET_NETDEV        "cl-hostnet0" /* the first user-mode NIC's netdev */

/* Adds the NIC of n to the <devices> of a new domain root, at PCI slot
 * slot of bus 0, with metadata for CL_NET_NAT. */
int cl_domnet_add(xmlNode *root, const struct cl_net *n, unsigned slot);

/* For a run of a registered base's XML: every user interface of root
 * becomes cloudlet's -netdev and -device arguments in <qemu:commandline>
 * cl, confined unless its metadata allows outbound connections; bridges
 * and networks stay libvirt's. */
int cl_domnet_run(xmlNode *root, xmlNode *cl);

/* Replaces the interfaces and cloudlet metadata of root by those of from
 * (a saved domain keeps its NIC in libvirt's form). */
int cl_domnet_copy(xmlNode *root, xmlNode *from);

/* The first NIC's kind and MAC (mac[18], "" without a NIC); every MAC of
 * root, space-separated, into *macs (malloc'd, optional). */
int cl_domnet_info(xmlNode *root, enum cl_net_kind *kind, char mac[18], char **macs);

#endif
