/* SPDX-License-Identifier: GPL-2.0-only */
/* The session's side of postcopy memory: the domain, started with
 * `-incoming defer` and the capability postcopy-ram, takes its device state
 * and then its guest pages, as the guest asks for them, from the daemon of
 * the overlay's mount (cl_mount_postcopy_start), the engine that also
 * serves its disk. Every wait is bounded and ends early on *stop. */
#ifndef CL_PCMODE_H
#define CL_PCMODE_H
#include <stdatomic.h>
#include <stddef.h>
#include <libvirt/libvirt.h>

/* How long a domain may take to pause when guest memory fails before it is
 * destroyed instead: a vCPU that waits on a page that never comes does not
 * stop (under TCG it sleeps in the kernel's userfault handler). */
#define CL_PCMODE_PAUSE_S 3.0

/* Makes the daemon of the mount at mnt stream into d through a unix socket
 * at sock and returns once QEMU has loaded the device state and waits,
 * paused, for cl_vm_resume() (guest pages keep arriving). -EIO when the
 * source failed, -ETIMEDOUT after timeout seconds, -EINTR on *stop. */
int cl_pcmode_load(virDomainPtr d, const char *sock, const char *mnt, double timeout,
                   const atomic_int *stop);

/* The postcopy source's state from the status of the mount at mnt into
 * out[cap]: "off", "streaming", "complete" or "failed: REASON"; -ENOENT
 * when the daemon shows none. */
int cl_pcmode_state(const char *mnt, char *out, size_t cap);

/* Guest memory cannot be served any more: pauses d, or kills it
 * (cl_vm_kill) when it does not pause within CL_PCMODE_PAUSE_S; *destroyed
 * says which. */
int cl_pcmode_fault(virDomainPtr d, int *destroyed);

#endif
