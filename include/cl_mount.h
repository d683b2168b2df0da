/* SPDX-License-Identifier: GPL-2.0-only */
/* The cloudletfs daemon from a program: mount an overlay (the daemon is
 * found next to the running program, else in PATH), stop a mount, and take
 * the TRACE of what its VM touched. Every function may be called from any
 * thread; none prints (errors are one cl_errorf line) and none installs a
 * signal handler. */
#ifndef CL_MOUNT_H
#define CL_MOUNT_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

#include "cl_meta.h"

/* An extended attribute of a mount's status file: one line of text,
 * `key: value`, that cloudletfs shows at the end of status (a session
 * notes the VM's endpoints there). Only the mount's owner may set it. */
#define CL_MOUNT_VM_XATTR "user.cloudlet.vm"

/* The extended attribute of status that makes the mount's daemon the
 * postcopy migration source of its VM (include/cl_pcsource.h): its value
 * is the unix socket QEMU listens on (migrate-incoming unix:PATH). */
#define CL_MOUNT_POSTCOPY_XATTR "user.cloudlet.postcopy"

struct cl_mount_opts {
	const char *image;       /* the registered base (path or id) */
	const char *overlay;     /* overlay-meta, its directory or a URL */
	const char *mnt;         /* the mount point */
	const char *const *opts; /* cloudletfs option lists, each for one -o */
	size_t nopts;
	int foreground; /* the daemon replaces this process */
	int debug;      /* FUSE debug output (implies foreground) */
};

/* Starts cloudletfs and returns once the mount serves or the daemon said
 * why not: *status is then its exit status (0 mounted, 1 failed, 2 bad
 * options; it printed its own message). -ENOENT when there is no daemon to
 * run; -EIO when it was killed. In the foreground form it returns only
 * when the daemon could not be started. */
int cl_mount_start(const struct cl_mount_opts *o, int *status);

/* Signals the daemon of the cloudletfs mount at mnt and waits (at most
 * timeout seconds) for the mount to go and the daemon to exit. A mount
 * whose daemon is gone is detached (*detached, optional, becomes 1, and
 * cl_error_msg() says so). On a
 * failure *hint may get advice. */
int cl_mount_stop(const char *mnt, double timeout, int *detached, const char **hint);

/* Makes the daemon of the cloudletfs mount at mnt the postcopy source of
 * the QEMU listening on the unix socket socket_path (pid: that QEMU's pid,
 * which the daemon checks its peer against, or 0 not to; an absolute path;
 * QEMU started with -incoming defer, the capability postcopy-ram set,
 * then migrate-incoming unix:socket_path). Returns once the daemon is
 * connected and streams (at most about 10 s): 0, or -errno with a
 * cl_errorf message: -EINVAL (bad path, or a device state the source
 * refuses: the mount's status says why), -EBUSY (a source streams),
 * -ENOENT/-ECONNREFUSED (nobody listens), -EPERM. Progress and the end
 * (complete, or failed with a reason) show in the mount's status as
 * `postcopy: ...` lines. */
int cl_mount_postcopy_start(const char *mnt, const char *socket_path, long pid);

/* The status file of the cloudletfs mount at mnt, whole (its postcopy lines
 * come last), into *text: NUL-terminated, malloc'd, the caller frees it.
 * 0 or -errno. */
int cl_mount_status(const char *mnt, char **text);

/* The value of the line `key: value` of a status text into out[cap]
 * (truncated to fit); -ENOENT if there is none. */
int cl_mount_status_value(const char *text, const char *key, char *out, size_t cap);

/* The chunks the VM on the mount at mnt accessed so far, in first-access
 * order across both images, as TRACE text (`disk N` / `memory N` lines);
 * with seconds > 0 new accesses are followed that long first, or until
 * *stop (optional) becomes non-zero or the mount goes. */
struct cl_mount_trace {
	char *text; /* malloc'd, NUL-terminated: the caller frees it */
	size_t len;
	size_t n[CL_NIMAGES]; /* entries per image */
};
int cl_mount_trace(const char *mnt, double seconds, const atomic_int *stop,
                   struct cl_mount_trace *t);

#endif
