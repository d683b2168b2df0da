/* SPDX-License-Identifier: GPL-2.0-only */
/* Progress reporting for long operations: a bar on a terminal (drawn only
 * once the work has taken more than a second), a plain line every 10 s
 * otherwise. All functions accept NULL and then do nothing. */
#ifndef CL_PROGRESS_H
#define CL_PROGRESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct cl_progress {
	const char *label;
	uint64_t total;
	atomic_uint_fast64_t done;
	double start;
	double last; /* lock */
	pthread_mutex_t lock;
	int tty;
	int drawn; /* lock */
};

/* Global switch: 0 silences every bar (cloudlet --quiet). */
extern int cl_progress_enabled;

void cl_progress_start(struct cl_progress *p, const char *label, uint64_t total);
/* Thread-safe. */
void cl_progress_add(struct cl_progress *p, uint64_t n);
void cl_progress_end(struct cl_progress *p);

#endif
