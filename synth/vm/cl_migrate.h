/* SPDX-License-Identifier: GPL-2.0-only */
/* A device state into and out of a domain, with x-ignore-shared (guest
 * RAM stays in its file): QEMU may not spawn programs (seccomp), so the
 * streams go through unix sockets in a directory QEMU's user may write.
 * Every wait is bounded and ends early when *stop becomes non-zero. */
#ifndef CL_MIGRATE_H
#define CL_MIGRATE_H

#include <signal.h>
#include <stdatomic.h>

#include <libvirt/libvirt.h>

/* Tells the domain d, started with `-incoming defer`, to take its incoming
 * stream from a unix socket at sock; QEMU listens there once this returns. */
int cl_migrate_incoming(virDomainPtr d, const char *sock);
/* Feeds the domain d that cl_vm_start_paused started the device state in
 * state_path through a unix socket at sock (in a directory QEMU may
 * write), waits for the migration to complete (bounded by timeout
 * seconds); the domain stays paused (cl_vm_resume). */
int cl_migrate_load(virDomainPtr d, const char *sock, const char *state_path, double timeout,
                    const atomic_int *stop);

/* Pauses the running domain d and saves its device state to path (RAM
 * stays in its share=on file): x-ignore-shared outgoing migration to a unix
 * socket at sock that this process listens on. The domain is left paused. */
int cl_migrate_save(virDomainPtr d, const char *sock, const char *path, double timeout,
                    const atomic_int *stop);

#endif
