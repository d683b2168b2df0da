/* SPDX-License-Identifier: GPL-2.0-only */
/* The mount's postcopy source (include/cl_pcsource.h): started when the
 * session sets CL_MOUNT_POSTCOPY_XATTR on status (its value: the unix
 * socket QEMU listens on), shown in status, stopped at unmount. One at a
 * time per mount; another may start once the last one has ended. */
#ifndef CL_FS_POSTCOPY_H
#define CL_FS_POSTCOPY_H

#include <stddef.h>

#include "cl_lazy.h"

/* The most the status lines of cl_fs_postcopy_text() take. */
#define CL_FS_POSTCOPY_TEXT_MAX 512

struct cl_fs_postcopy;

/* l must outlive *out. Free with cl_fs_postcopy_free(). */
int cl_fs_postcopy_new(struct cl_lazy *l, struct cl_fs_postcopy **out);
/* Stops first. NULL is fine. */
void cl_fs_postcopy_free(struct cl_fs_postcopy *p);

/* Connects to the socket named by value[0..size), "[PID ]PATH" (an
 * absolute path, bounded wait; with PID, the listener must be that
 * process, SO_PEERCRED) and starts the source; returns once its threads
 * run. 0 or -errno: -EINVAL (bad value, or a state the source refuses),
 * -EBUSY (one runs), -ESHUTDOWN (the mount is going away), -EPERM (another
 * process listens), or the connection's (-ENOENT, -ECONNREFUSED,
 * -ETIMEDOUT...). The reason of
 * a refusal shows in status as "postcopy: failed: ...". Blocks the calling
 * FUSE worker while it connects. */
int cl_fs_postcopy_start(struct cl_fs_postcopy *p, const char *value, size_t size);

/* Stops the source (and waits for a start in progress): before
 * cl_lazy_close(). Idempotent; no start succeeds afterwards. */
void cl_fs_postcopy_stop(struct cl_fs_postcopy *p);

/* The status lines, `key: value` each: postcopy (off, streaming, complete
 * [: NOTE], failed: REASON), and once a source ran its page counts and the p50/p99
 * of its request-to-answer latency. Returns the length written (at most
 * cap - 1, terminated). */
size_t cl_fs_postcopy_text(struct cl_fs_postcopy *p, char *buf, size_t cap);

#endif
