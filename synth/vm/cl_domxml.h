/* SPDX-License-Identifier: GPL-2.0-only */
/* Domain XML handling for the VM commands (libxml2).
 *
 * An overlay carries the libvirt domain XML its VM ran with. To run the
 * synthesized VM the XML is rewritten: a new name and UUID, the disk on the
 * synthesized image without DAC relabelling, guest RAM mapped from the
 * synthesized memory image (QEMU file-backed RAM in <qemu:commandline>), an
 * incoming migration, and the per-run paths the XML froze (console socket,
 * serial log, kernel and initrd) replaced. */
#ifndef CL_DOMXML_H
#define CL_DOMXML_H

#include <stddef.h>
#include <stdint.h>

#include "cl_net.h"

#define CL_DOMXML_CPU "qemu64" /* QEMU's default x86 CPU, TCG and KVM alike */

struct cl_domxml_edit {
	const char *name;        /* new domain name (required) */
	const char *uuid;        /* new UUID; NULL removes it (libvirt makes one) */
	const char *type;        /* domain type, "kvm" or "qemu"; NULL keeps it */
	const char *disk;        /* source file of the first disk device; NULL keeps it */
	int disk_norelabel;      /* that source gets <seclabel model='dac' relabel='no'/> */
	const char *disk_format; /* its driver type; NULL: "raw" */
	int disk_discard;        /* its driver passes discards on (discard='unmap') */
	const char *memory;      /* mem-path of the file-backed RAM; NULL keeps it */
	uint64_t memory_size;    /* bytes, when the XML has no memory-backend-file yet */
	const char *share;       /* "on" or "off"; NULL keeps it */
	int incoming;            /* 1: `-incoming defer`; 0: any -incoming removed */
	const char *console;     /* path of unix serial and console sockets; NULL keeps */
	const char *console_log; /* the serial's <log file=...>; NULL removes it */
	const char *kernel;      /* NULL keeps */
	const char *initrd;      /* NULL keeps */
	const char *cmdline;     /* NULL keeps */
	int vnc_local;           /* VNC graphics listen on 127.0.0.1 with autoport */
	/* Networking (cl_domnet.h): net_from (net_from_len bytes), a domain
	 * XML whose interfaces and cloudlet metadata replace this one's; then
	 * net_run: user-mode interfaces become cloudlet's QEMU arguments,
	 * confined unless the XML's metadata allows outbound connections (the
	 * XML is a registered base's: an overlay's is never run). */
	const char *net_from;
	size_t net_from_len;
	int net_run;
};

/* Rewrites the domain XML xml (len bytes) as e says into *out, a
 * NUL-terminated malloc'd string the caller frees. */
int cl_domxml_rewrite(const char *xml, size_t len, const struct cl_domxml_edit *e, char **out);

/* One value of a domain XML into *out (malloc'd): `name`, `uuid`, `type`,
 * `machine`, `kernel`, `initrd`, `cmdline`, `disk` (first disk's source
 * file), `console` (serial unix socket), `log` (serial log file), `mem`,
 * `share`, `size` (of the memory-backend-file), `vnc` (host:port of
 * VNC graphics with a port), `cpu` (the model of a custom CPU, the mode
 * of a host-model/host-passthrough one, qemu64 when there is no <cpu>),
 * `net` (the first NIC's kind: none, user, nat, bridge or libvirt), `mac`
 * (its MAC), `macs` (every NIC's MAC, space-separated) or `bridge` (the
 * host bridge of the first NIC). -ENOENT if the
 * XML has none, -EINVAL for an unknown field. */
int cl_domxml_get(const char *xml, size_t len, const char *field, char **out);

/* A new domain: file-backed guest RAM (share=on) in <qemu:commandline>, a
 * raw virtio disk (discard passed on), a serial console on a unix socket,
 * optionally VNC on 127.0.0.1, a virtio balloon with free page reporting
 * (freed guest pages become holes in the RAM file), a virtio NIC as net
 * says. The balloon's features and the NIC are part of the device state:
 * a VM resumes with those it was saved with, so rewriting never changes
 * them. PCI devices get fixed addresses (NIC 3, disk 4, balloon 5): a
 * user-mode NIC is given to QEMU by cloudlet at a run, and libvirt must
 * not place another device in its slot. The XML holds the NIC in
 * libvirt's form: rewrite it with net_run to run it. */
struct cl_domxml_spec {
	const char *name;
	const char *type;    /* "kvm" or "qemu" */
	const char *machine; /* NULL: "pc" */
	const char *cpu;     /* CPU model, NULL: CL_DOMXML_CPU */
	unsigned ram_mib;
	unsigned vcpus;
	const char *kernel;         /* NULL: boot from the disk */
	const char *initrd;         /* optional */
	const char *cmdline;        /* optional */
	const char *disk;           /* raw disk image */
	const char *disk_format;    /* NULL: "raw" */
	const char *memory;         /* guest RAM file */
	const char *console;        /* serial console socket */
	int vnc;                    /* VNC graphics on 127.0.0.1, autoport */
	int no_free_page_reporting; /* the balloon without free page reporting */
	struct cl_net net;          /* the NIC (kind CL_NET_NONE: none) */
};

int cl_domxml_new(const struct cl_domxml_spec *s, char **out);

/* A random (version 4) UUID in its 36-character text form into out[37]. */
int cl_domxml_uuid(char out[37]);

#endif
