/* SPDX-License-Identifier: GPL-2.0-only */
/* A session's guest networking: what the run's NIC allows (--publish
 * needs user-mode networking; a MAC on a bridge is one VM's), the host
 * ports forwarded into the guest, and their endpoints. */
#include "cl_session_priv.h"
#include "cl_domnet.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_mount.h"
#include "cl_qmp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#define MAX_FORWARDS 64

static int check_publish(struct cl_session *s, enum cl_net_kind kind, const char *what,
                         const struct cl_publish *pub, size_t npub)
{
	size_t i, j;

	if (npub > CL_PUBLISH_MAX)
		return cl_errorf(-E2BIG, "at most %d --publish", CL_PUBLISH_MAX);
	if (npub && kind == CL_NET_NONE) {
		s->hint = "make the base with --network user (the default) to publish ports";
		return cl_errorf(
		    -EINVAL, "%s: the VM has no network interface: nothing to publish to", what);
	}
	if (npub && kind != CL_NET_USER && kind != CL_NET_NAT) {
		s->hint = "a VM on a bridge or libvirt network is reached at its own address";
		return cl_errorf(
		    -EINVAL,
		    "%s: --publish forwards host ports into user-mode networking; this "
		    "VM is on a %s",
		    what, kind == CL_NET_BRIDGE ? "bridge" : "libvirt network");
	}
	for (i = 0; i < npub; i++)
		for (j = 0; j < i; j++)
			if (pub[i].host_port && pub[i].host_port == pub[j].host_port &&
			    !strcmp(pub[i].addr, pub[j].addr))
				return cl_errorf(-EINVAL, "--publish: %s:%u is given twice",
				                 pub[i].addr, pub[i].host_port);
	memcpy(s->pub, pub, npub * sizeof(*pub));
	s->npub = npub;
	return 0;
}

/* libvirt would fail later, with less to say. */
static int check_bridge(struct cl_session *s, const char *xml, size_t len)
{
	char *br = NULL, path[PATH_MAX];
	int r = cl_domxml_get(xml, len, "bridge", &br);

	if (r < 0)
		return r == -ENOENT ? 0 : r;
	snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", br);
	if (access(path, F_OK) < 0) {
		s->hint =
		    "make it (`ip link add NAME type bridge; ip link set NAME up`), or choose "
		    "another with --network";
		r = cl_errorf(-ENODEV, "bridge %s: no such bridge on this host", br);
	}
	free(br);
	return r;
}

int cl_session_net_check(struct cl_session *s, const char *xml, size_t len, const char *what,
                         const struct cl_publish *pub, size_t npub)
{
	char *net = NULL, *mac = NULL;
	enum cl_net_kind kind = CL_NET_NONE;
	int r;

	r = cl_domxml_get(xml, len, "net", &net);
	if (r < 0 && r != -ENOENT)
		return r;
	for (int k = CL_NET_NONE; net && k <= CL_NET_LIBVIRT; k++)
		if (!strcmp(net, cl_net_kind_name((enum cl_net_kind)k)))
			kind = (enum cl_net_kind)k;
	free(net);
	r = check_publish(s, kind, what, pub, npub);
	if (r == 0 && kind == CL_NET_BRIDGE)
		r = check_bridge(s, xml, len);
	if (r < 0 || (kind != CL_NET_BRIDGE && kind != CL_NET_LIBVIRT))
		return r;
	r = cl_domxml_get(xml, len, "mac", &mac);
	if (r == 0) {
		snprintf(s->mac, sizeof(s->mac), "%s", mac);
		r = cl_session_mac_free(s);
	}
	free(mac);
	return r == -ENOENT ? 0 : r;
}

int cl_session_mac_free(struct cl_session *s)
{
	char other[128];
	int r;

	if (!s->mac[0])
		return 0;
	r = cl_vm_mac_user(s->conn, s->mac, s->name, other, sizeof(other));
	if (r <= 0)
		return r;
	s->hint = "stop that VM first: two VMs of one base on one bridge would share the address";
	return cl_errorf(-EBUSY, "MAC address %s is in use by the running domain %s", s->mac,
	                 other);
}

/* --- forwards ----------------------------------------------------------------- */

/* The host ports of the user-mode forwards to guest port gport, from
 * `info usernet` (lines `TCP[HOST_FORWARD] FD SRC SPORT DST DPORT ...`). */
static size_t forwards(struct cl_session *s, unsigned gport, unsigned *ports, size_t cap)
{
	char *text = NULL, *line, *save = NULL;
	unsigned sport, dport;
	size_t n = 0;

	if (cl_qmp_hmp(s->dom, "info usernet", &text) < 0)
		return 0;
	for (line = strtok_r(text, "\n", &save); line && n < cap;
	     line = strtok_r(NULL, "\n", &save))
		if (strstr(line, "TCP[HOST_FORWARD]") &&
		    sscanf(line, " %*s %*d %*s %u %*s %u", &sport, &dport) == 2 && dport == gport)
			ports[n++] = sport;
	free(text);
	return n;
}

static int known(const unsigned *ports, size_t n, unsigned p)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == p)
			return 1;
	return 0;
}

/* One forward; a host port of 0 becomes the one QEMU bound (the forward
 * that was not there before). */
static int forward(struct cl_session *s, struct cl_publish *p)
{
	unsigned before[MAX_FORWARDS], after[MAX_FORWARDS];
	/* Only a port QEMU picks must be told apart from the others. */
	size_t nb = p->host_port ? 0 : forwards(s, p->guest_port, before, MAX_FORWARDS), na, i;
	char line[128], *out = NULL;
	int r;

	snprintf(line, sizeof(line), "hostfwd_add " CL_DOMNET_NETDEV " tcp:%s:%u-:%u", p->addr,
	         p->host_port, p->guest_port);
	r = cl_qmp_hmp(s->dom, line, &out);
	if (r == 0 && out[strspn(out, " \r\n")]) {
		s->hint = "is the port in use? (`ss -ltn`); 0 takes any free port";
		r = cl_errorf(-EADDRINUSE, "--publish %s:%u:%u: QEMU cannot listen there: %.*s",
		              p->addr, p->host_port, p->guest_port, (int)strcspn(out, "\r\n"), out);
	}
	free(out);
	if (r < 0 || p->host_port)
		return r;
	na = forwards(s, p->guest_port, after, MAX_FORWARDS);
	for (i = 0; i < na; i++)
		if (!known(before, nb, after[i]))
			p->host_port = after[i];
	return p->host_port ? 0
	                    : cl_errorf(-EIO,
	                                "--publish %s:0:%u: the port QEMU bound is "
	                                "not in `info usernet`",
	                                p->addr, p->guest_port);
}

/* The mount's status lists the endpoints (cloudletfs keeps the text of
 * this attribute and shows it there). */
static void note_status(struct cl_session *s)
{
	char text[CL_PUBLISH_MAX * 40 + 16], url[40], path[PATH_MAX + 16];
	size_t i, n;

	if (!s->mounted)
		return;
	n = (size_t)snprintf(text, sizeof(text), "endpoints:");
	for (i = 0; i < s->npub; i++) {
		cl_publish_url(&s->pub[i], url, sizeof(url));
		n += (size_t)snprintf(text + n, sizeof(text) - n, " %s", url);
	}
	if (!s->npub)
		n += (size_t)snprintf(text + n, sizeof(text) - n, " none");
	snprintf(path, sizeof(path), "%s/status", s->mnt);
	if (setxattr(path, CL_MOUNT_VM_XATTR, text, n, 0) < 0) {
		cl_errorf(-errno, "%s: cannot note the endpoints there: %s", path, strerror(errno));
		cl_session_notice(s, NULL);
	}
}

int cl_session_publish(struct cl_session *s)
{
	size_t i;
	int r;

	for (i = 0; i < s->npub; i++) {
		r = forward(s, &s->pub[i]);
		if (r < 0)
			return r;
		cl_session_emit_endpoint(s, &s->pub[i]);
	}
	note_status(s);
	return 0;
}
