/* SPDX-License-Identifier: GPL-2.0-only */
/* Error reporting shared by every module.
 *
 * Functions return 0 (or a count) on success and -errno on failure. The
 * function that detects a fault describes it once with cl_errorf(), naming
 * the file and the cause; callers only propagate the code. The message is
 * per thread; the program prints it as its one error line. */
#ifndef CL_ERROR_H
#define CL_ERROR_H

#include <stdarg.h>

/* Records "fmt ..." as this thread's last error and returns err (a negative
 * errno) so that detection and return are one statement. */
int cl_errorf(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* This thread's last error message, or "" if none. Valid until the next
 * cl_errorf() or cl_error_clear() on this thread. */
const char *cl_error_msg(void);

void cl_error_clear(void);

/* Told of one fault among many that a checking call goes on after: msg
 * is its one-line message. Calls come one at a time. */
typedef void (*cl_report_fn)(void *ctx, const char *msg);

#endif
