/* SPDX-License-Identifier: GPL-2.0-only */
/* Guest networking choices: the NIC a base is made with (cloudlet base
 * --network) and the host ports a run forwards into the guest (--publish).
 *
 * The network backend is part of the saved device state (user-mode
 * networking saves a slirp section), so it is chosen when a base is made
 * and every VM of the base keeps it: its MAC and PCI address too. */
#ifndef CL_NET_H
#define CL_NET_H

#include <stddef.h>

enum cl_net_kind {
	CL_NET_NONE,    /* no NIC */
	CL_NET_USER,    /* QEMU's user-mode networking, confined (restrict=on) */
	CL_NET_NAT,     /* user-mode networking, outbound connections allowed */
	CL_NET_BRIDGE,  /* a host bridge */
	CL_NET_LIBVIRT, /* a libvirt network */
};

/* A NIC: kind, and the bridge or network name (source). Its MAC is made
 * at random, of QEMU's locally administered prefix. */
struct cl_net {
	enum cl_net_kind kind;
	const char *source;
};

/* Parses `user`, `nat`, `none`, `bridge=BR` or `libvirt=NAME` (source
 * points into spec). */
int cl_net_parse(const char *spec, struct cl_net *out);
const char *cl_net_kind_name(enum cl_net_kind k);

/* A TCP port forward from the host into a guest on user-mode networking:
 * [ADDR:]HOSTPORT:GUESTPORT, ADDR an IPv4 address (default 127.0.0.1),
 * HOSTPORT 0 for any free port (the one bound is filled in once it is). */
struct cl_publish {
	char addr[16];
	unsigned host_port, guest_port;
};

#define CL_PUBLISH_MAX 16

int cl_publish_parse(const char *spec, struct cl_publish *out);

/* The endpoint as a client would name it: http://ADDR:PORT for guest port
 * 80, tcp://ADDR:PORT otherwise. */
void cl_publish_url(const struct cl_publish *p, char *out, size_t cap);

#endif
