/* SPDX-License-Identifier: GPL-2.0-only */
/* Helper programs (qemu-img): bounded, stoppable, output collected. */
#ifndef CL_TOOL_H
#define CL_TOOL_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

/* Runs argv (a tool such as qemu-img), bounded by timeout seconds and
 * ended early when *stop (optional) becomes non-zero. With out, its stdout
 * (at most 256 MiB) is collected into *out (malloc'd, NUL-terminated, *len
 * bytes); without, it goes to ours. A tool that fails is -EIO naming it. */
int cl_tool_run(char *const argv[], double timeout, const atomic_int *stop, char **out,
                size_t *len);

#endif
