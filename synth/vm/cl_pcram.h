/* SPDX-License-Identifier: GPL-2.0-only */
/* Guest RAM of a VM resumed in postcopy mode: one file on a tmpfs that
 * cloudlet mounts for that VM alone (CL_PCRAM_ROOT/NAME), sized to the VM's
 * RAM, which QEMU maps share=on. The pages the postcopy source sends land
 * there once, so the VM can be saved again with x-ignore-shared and its RAM
 * compared with its base; the mount goes away with the VM. The mount points
 * live in a directory only root may change (the run directory is writable
 * by QEMU's group: a mount point there could be swapped for a symlink). */
#ifndef CL_PCRAM_H
#define CL_PCRAM_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CL_PCRAM_ROOT "/run/cloudlet-ram" /* root's, mode 0711 */
#define CL_PCRAM_FILE "memory"            /* in a VM's mount */

/* Memory the host can give a tmpfs of bytes without pushing other programs
 * out: 0, or -ENOSPC with a message naming what is missing (MemAvailable
 * of /proc/meminfo against bytes plus a margin). */
int cl_pcram_fits(uint64_t bytes);

/* Mounts a tmpfs of bytes at CL_PCRAM_ROOT/name (QEMU's user uid:gid owns
 * it) and makes the RAM file there, bytes long and sparse; its path into
 * path[cap]. -EEXIST if name has one. On failure nothing is left mounted. */
int cl_pcram_make(const char *name, uint64_t bytes, uid_t uid, gid_t gid, char *path, size_t cap);

/* Unmounts CL_PCRAM_ROOT/name (lazily when busy: a QEMU still exiting) and
 * removes the directory; 0 when there was none. */
int cl_pcram_remove(const char *name);

#endif
