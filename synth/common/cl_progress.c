/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_progress.h"
#include "cl_util.h"

#include <stdio.h>
#include <unistd.h>

int cl_progress_enabled = 1;

void cl_progress_start(struct cl_progress *p, const char *label, uint64_t total)
{
	if (!p)
		return;
	p->label = label;
	p->total = total;
	atomic_init(&p->done, 0);
	p->start = p->last = cl_now();
	pthread_mutex_init(&p->lock, NULL);
	p->tty = isatty(STDERR_FILENO);
	p->drawn = 0;
}

static void _draw(struct cl_progress *p, uint64_t done, double now)
{
	double frac = p->total ? (double)done / (double)p->total : 1.0;
	char bar[31];
	int i, fill;

	if (frac > 1.0)
		frac = 1.0;
	if (!p->tty) {
		fprintf(stderr, "%s: %.0f%% after %.0f s\n", p->label, frac * 100, now - p->start);
		return;
	}
	fill = (int)(frac * 30);
	for (i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[30] = '\0';
	fprintf(stderr, "\r%-24s [%s] %3.0f%% %5.1f s", p->label, bar, frac * 100, now - p->start);
	p->drawn = 1;
}

void cl_progress_add(struct cl_progress *p, uint64_t n)
{
	uint64_t done;
	double now;

	if (!p)
		return;
	done = atomic_fetch_add(&p->done, n) + n;
	if (!cl_progress_enabled)
		return;
	now = cl_now();
	if (now - p->start < 1.0 || now - p->last < (p->tty ? 0.1 : 10.0))
		return;
	/* Whoever holds the lock draws; the others need not wait for it. */
	if (pthread_mutex_trylock(&p->lock))
		return;
	if (now - p->last >= (p->tty ? 0.1 : 10.0)) {
		p->last = now;
		_draw(p, done, now);
	}
	pthread_mutex_unlock(&p->lock);
}

void cl_progress_end(struct cl_progress *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	if (cl_progress_enabled && p->drawn) {
		_draw(p, p->total, cl_now());
		fputc('\n', stderr);
	}
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_destroy(&p->lock);
}
