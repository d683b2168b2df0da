/* SPDX-License-Identifier: GPL-2.0-only */
/* Guest networking choices (see cl_net.h). */
#include "cl_net.h"
#include "cl_error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"none", "user", "nat", "bridge", "libvirt"};

const char *cl_net_kind_name(enum cl_net_kind k)
{
	return (unsigned)k < sizeof(kind_names) / sizeof(kind_names[0]) ? kind_names[k] : "?";
}

/* A bridge or network name goes into XML and QEMU never sees it; still,
 * only what an interface name may hold. */
static int valid_source(const char *s, size_t max)
{
	size_t n = strlen(s);

	return n && n <= max && !strpbrk(s, "/ \t\n,:=");
}

int cl_net_parse(const char *spec, struct cl_net *out)
{
	if (!spec || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	if (!strcmp(spec, "user"))
		out->kind = CL_NET_USER;
	else if (!strcmp(spec, "nat"))
		out->kind = CL_NET_NAT;
	else if (!strcmp(spec, "none"))
		out->kind = CL_NET_NONE;
	else if (!strncmp(spec, "bridge=", 7) && valid_source(spec + 7, 15))
		out->kind = CL_NET_BRIDGE, out->source = spec + 7;
	else if (!strncmp(spec, "libvirt=", 8) && valid_source(spec + 8, 255))
		out->kind = CL_NET_LIBVIRT, out->source = spec + 8;
	else
		return cl_errorf(-EINVAL,
		                 "--network %s: expected user, nat, none, bridge=BRIDGE or "
		                 "libvirt=NETWORK",
		                 spec);
	return 0;
}

/* A port number of 0-65535, all digits. */
static int port_of(const char *s, size_t len, unsigned *out)
{
	unsigned long v = 0;
	size_t i;

	if (!len || len > 5)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*out = (unsigned)v;
	return 0;
}

int cl_publish_parse(const char *spec, struct cl_publish *out)
{
	const char *last, *mid;
	struct in_addr a;
	size_t alen;

	if (!spec || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	last = strrchr(spec, ':');
	if (!last)
		goto bad;
	mid = last;
	while (mid > spec && mid[-1] != ':')
		mid--;
	alen = mid > spec ? (size_t)(mid - 1 - spec) : 0;
	if (port_of(mid, (size_t)(last - mid), &out->host_port) < 0 ||
	    port_of(last + 1, strlen(last + 1), &out->guest_port) < 0 || !out->guest_port)
		goto bad;
	if (mid == spec) {
		strcpy(out->addr, "127.0.0.1");
	} else {
		if (alen >= sizeof(out->addr))
			goto bad;
		memcpy(out->addr, spec, alen);
		out->addr[alen] = '\0';
		if (inet_pton(AF_INET, out->addr, &a) != 1)
			return cl_errorf(-EINVAL, "--publish %s: %s is not an IPv4 address", spec,
			                 out->addr);
	}
	if (out->host_port && out->host_port < 1024)
		return cl_errorf(-EACCES,
		                 "--publish %s: host port %u is below 1024, which QEMU (it runs "
		                 "as an unprivileged user) cannot bind; use 1024 or more, or 0 "
		                 "for any free port",
		                 spec, out->host_port);
	return 0;
bad:
	return cl_errorf(-EINVAL,
	                 "--publish %s: expected [ADDR:]HOSTPORT:GUESTPORT (TCP; HOSTPORT 0 for "
	                 "any free port, GUESTPORT 1-65535)",
	                 spec);
}

void cl_publish_url(const struct cl_publish *p, char *out, size_t cap)
{
	snprintf(out, cap, "%s://%s:%u", p->guest_port == 80 ? "http" : "tcp", p->addr,
	         p->host_port);
}
