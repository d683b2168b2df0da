/* SPDX-License-Identifier: GPL-2.0-only */
/* The guest's serial console: a unix socket QEMU listens on; a line of
 * shell typed in and waited for. */
#ifndef CL_CONSOLE_H
#define CL_CONSOLE_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

/* The guest's serial console (a unix socket QEMU listens on). */
struct cl_console {
	int fd;
	char buf[65536]; /* the latest output */
	size_t len;
};

int cl_console_open(struct cl_console *c, const char *sock, double timeout);
/* Reads what has arrived (never blocks); -EPIPE once QEMU closed it. */
int cl_console_read(struct cl_console *c);
/* Whether text is in the output read so far; a match found is removed. */
int cl_console_seen(struct cl_console *c, const char *text);
/* Types one line of shell into the guest and waits (bounded) until the
 * guest shell has run it. */
int cl_console_run(struct cl_console *c, const char *line, double timeout, const atomic_int *stop);
void cl_console_close(struct cl_console *c);

#endif
