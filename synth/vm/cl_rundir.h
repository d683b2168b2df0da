/* SPDX-License-Identifier: GPL-2.0-only */
/* A VM's run directory (CL_VM_RUN_DIR/NAME: sockets, logs, its domain
 * XML) and the kernel and initrd a base boots with. */
#ifndef CL_RUNDIR_H
#define CL_RUNDIR_H

#include <stddef.h>
#include <sys/types.h>

struct cl_base;

/* CL_VM_RUN_DIR/name, created for this run (refused if it exists): root
 * and QEMU's group gid may write there (sockets, logs). */
int cl_rundir_make(const char *name, gid_t gid, char *out, size_t cap);
/* Removes the files in dir (never subdirectories: no walking into a
 * mount) and dir itself if then empty. */
void cl_rundir_remove(const char *dir);

/* The kernel and initrd (malloc'd, NULL when the VM boots from its disk)
 * of the base's own domain XML if it has one, else of xml: each a path
 * that exists, else the same file name next to the base's disk image (a
 * base directory copied to another cloudlet). */
int cl_rundir_boot_files(const struct cl_base *b, const char *xml, size_t len, char **kernel,
                         char **initrd);

#endif
