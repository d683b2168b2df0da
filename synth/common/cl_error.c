/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_error.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char cl_last_error[1024];

int cl_errorf(int err, const char *fmt, ...)
{
	char buf[sizeof(cl_last_error)];
	va_list ap;

	/* Through a copy, so that callers may add context to the last
	 * message: cl_errorf(r, "%s: %s", path, cl_error_msg()). */
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	memcpy(cl_last_error, buf, sizeof(buf));
	return err;
}

const char *cl_error_msg(void)
{
	return cl_last_error;
}

void cl_error_clear(void)
{
	cl_last_error[0] = '\0';
}
