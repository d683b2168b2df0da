#include "cl_error.h"

#include <stdio.h>

static _Thread_local char cl_last_error[1024];

int cl_errorf(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cl_last_error, sizeof(cl_last_error), fmt, ap);
	va_end(ap);
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
