/* SPDX-License-Identifier: GPL-2.0-only */
/* VM life cycle through libvirt: connect, define a domain, start it
 * paused for an incoming device state, watch it, and tear it down. The
 * other VM modules: cl_accel (which accelerator), cl_qmp (QEMU's monitor),
 * cl_migrate (device states in and out), cl_console (serial console),
 * cl_rundir (run directories, boot files), cl_tool (helper programs). */
#ifndef CL_VM_H
#define CL_VM_H

#include <stddef.h>
#include <sys/types.h>

#include <libvirt/libvirt.h>

#include "cl_session.h"

#define CL_VM_DEFAULT_URI "qemu:///system"
#define CL_VM_RUN_DIR     CL_SESSION_RUN_DIR

/* Opens uri (NULL: $CLOUDLET_LIBVIRT_URI, else qemu:///system). libvirt's
 * own error printing is turned off; failures are one cl_errorf line. */
int cl_vm_connect(const char *uri, virConnectPtr *out);

/* libvirt's last error message on this thread, or "unknown libvirt error". */
const char *cl_vm_error(void);

/* libvirt's QEMU driver configuration. */
#define CL_VM_QEMU_CONF "/etc/libvirt/qemu.conf"

/* The value of the last uncommented `key = value` line of text (a libvirt
 * configuration file) into out[cap], quotes removed; -ENOENT if none. */
int cl_vm_conf_value(const char *text, const char *key, char *out, size_t cap);

/* The same from CL_VM_QEMU_CONF: -ENOENT also when the file is missing,
 * -EACCES (no message) when this user may not read it. */
int cl_vm_qemu_conf(const char *key, char *out, size_t cap);

/* The user QEMU runs as and its primary group (name into group[cap]; the
 * user's name into user[ucap] unless user is NULL), as libvirt picks it:
 * `user =` in CL_VM_QEMU_CONF, else libvirt-qemu, else root (libvirt's
 * default where the package made no libvirt-qemu). A CL_VM_QEMU_CONF that
 * this user may not read counts as setting none. */
int cl_vm_qemu_user(uid_t *uid, gid_t *gid, char *group, size_t cap, char *user, size_t ucap);

/* "domain NAME: WHAT: libvirt's message" as the error (-EIO). */
int cl_vm_dom_error(virDomainPtr d, const char *what);

/* Defines the domain of xml (refusing a name in use) into *out. */
int cl_vm_define(virConnectPtr c, const char *xml, virDomainPtr *out);

/* Starts the defined domain d (whose XML has `-incoming defer`) paused and
 * turns on x-ignore-shared, or postcopy-ram when postcopy (-ENOTSUP for a
 * QEMU without it). */
int cl_vm_start_paused(virDomainPtr d, int postcopy);

/* 1 while the domain runs (or is paused), 0 once it shut down or crashed,
 * -errno if libvirt does not answer. */
int cl_vm_alive(virDomainPtr d);

/* Resumes the paused domain d. */
int cl_vm_resume(virDomainPtr d);

/* Whether a running domain other than self has a NIC with MAC mac (1,
 * its name into name[cap]), or none (0). */
int cl_vm_mac_user(virConnectPtr c, const char *mac, const char *self, char *name, size_t cap);

/* The pid of domain d's QEMU: libvirt's pid file of the system driver,
 * checked against the process's command line; without that file, the one
 * process whose command line names the domain as QEMU's does. 0, or
 * -ESRCH. */
int cl_vm_qemu_pid(virDomainPtr d, long *pid);

/* Ends the domain d at once: SIGKILL to its QEMU (libvirt's pid file of
 * the system driver), then libvirt's destroy. libvirt's destroy alone sends
 * SIGTERM and waits 10 s before SIGKILL, and a QEMU whose vCPU waits on a
 * page that never comes does not act on SIGTERM. */
int cl_vm_kill(virDomainPtr d);

/* Destroys (if running) and undefines d, and frees it. */
int cl_vm_remove(virDomainPtr d);

#endif
