/* SPDX-License-Identifier: GPL-2.0-only */
/* Two synthesis sessions at once in one process (tests/guest/
 * test_two_sessions_e2e.sh): each on its own thread synthesizes the same
 * overlay under its own domain name, runs one command at its guest's
 * console and waits; the main thread stops both (cl_session_stop from
 * another thread). Session A is then closed with keep and found again from
 * its run directory by a new handle (cl_session_attach), which watches it
 * for a second and tears it down.
 *
 *   session_tool IMAGE OVERLAY NAME_A NAME_B
 *
 * Prints one line per event and step; exit status 0 when every step went
 * as expected. */
#include "cl_error.h"
#include "cl_session.h"
#include "cl_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READY_TIMEOUT 300.0 /* s for both VMs to resume and answer */

struct run {
	const char *label, *image, *overlay, *name;
	int keep; /* closed with keep, to be re-attached */
	struct cl_session *s;
	atomic_int ready; /* resumed and its console answered */
	atomic_int done;  /* the thread ended */
	int r;            /* its result */
	enum cl_session_end end;
	char rundir[256];
};

static const char *const kinds[] = {
    [CL_SESSION_MOUNTED] = "mounted",
    [CL_SESSION_COMPLETE] = "complete",
    [CL_SESSION_DOMAIN_STARTED] = "domain started",
    [CL_SESSION_RESUMED] = "resumed",
    [CL_SESSION_PAUSED] = "paused",
    [CL_SESSION_FAILED] = "failed",
    [CL_SESSION_STOPPING] = "stopping",
    [CL_SESSION_STOPPED] = "stopped",
    [CL_SESSION_NOTICE] = "notice",
    [CL_SESSION_ENDPOINT] = "endpoint",
    [CL_SESSION_MEMORY_COMPLETE] = "memory complete",
    [CL_SESSION_MEMORY_FAILED] = "memory failed",
};

static void on_event(struct cl_session *s, void *ctx, const struct cl_session_event *ev)
{
	const struct run *run = ctx;

	printf("%s: %s at %.2f s, %llu of %llu bytes%s%s\n", run->label, kinds[ev->kind], ev->t,
	       (unsigned long long)ev->fetched, (unsigned long long)ev->pack, ev->text ? ": " : "",
	       ev->text ? ev->text : "");
	fflush(stdout);
}

static void *session_thread(void *arg)
{
	struct run *run = arg;
	struct cl_synthesis_opts o = {
	    .image = run->image, .overlay = run->overlay, .name = run->name};
	const char *mode = getenv("CLOUDLET_MEMORY_MODE"); /* as the program takes it */
	int r;

	if (mode && !strcmp(mode, "postcopy"))
		o.memory = CL_MEMORY_POSTCOPY;
	else if (mode && !strcmp(mode, "mmap"))
		o.memory = CL_MEMORY_MMAP;
	r = cl_session_synthesis(run->s, &o);
	if (r == 0) {
		snprintf(run->rundir, sizeof(run->rundir), "%s", cl_session_rundir(run->s));
		r = cl_session_console_run(run->s, "cat /proc/uptime >/dev/null", 120);
	}
	if (r == 0) {
		printf("%s: console answered (domain %s, %s)\n", run->label,
		       cl_session_name(run->s), cl_session_accel(run->s));
		atomic_store(&run->ready, 1);
		r = cl_session_wait(run->s, 0, -1, &run->end);
	}
	if (r < 0)
		printf("%s: failed: %s\n", run->label, cl_error_msg());
	run->r = r;
	atomic_store(&run->done, 1);
	return NULL;
}

/* Both ready, or one ended: 0 when both are ready. */
static int wait_ready(struct run runs[2])
{
	double t0 = cl_now();

	while (!(atomic_load(&runs[0].ready) && atomic_load(&runs[1].ready))) {
		if (atomic_load(&runs[0].done) || atomic_load(&runs[1].done))
			return -ECHILD;
		if (cl_now() - t0 > READY_TIMEOUT)
			return -ETIMEDOUT;
		cl_sleep_ms(100);
	}
	return 0;
}

/* A's VM still runs after its handle was closed with keep: a new handle
 * finds it from its run directory, watches it and tears it down. */
static int reattach(const char *rundir)
{
	struct run run = {.label = "A'"};
	enum cl_session_end end;
	struct cl_session *s;
	int r;

	r = cl_session_new(on_event, &run, &s);
	if (r < 0)
		return r;
	r = cl_session_attach(s, rundir);
	if (r == 0)
		r = cl_session_wait(s, 1.0, -1, &end);
	if (r == 0 && end != CL_SESSION_END_TIME)
		r = cl_errorf(-EPROTO, "the re-attached VM ended (%d) instead of running on", end);
	if (r == 0)
		printf("A': re-attached to %s, the VM runs\n", rundir);
	if (cl_session_close(s, 0) < 0 && r == 0)
		r = -EIO;
	return r;
}

int main(int argc, char **argv)
{
	struct run runs[2] = {{.label = "A", .keep = 1}, {.label = "B"}};
	pthread_t th[2];
	int i, r = 0, started = 0;

	if (argc != 5) {
		fprintf(stderr, "usage: session_tool IMAGE OVERLAY NAME_A NAME_B\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < 2; i++) {
		runs[i].image = argv[1];
		runs[i].overlay = argv[2];
		runs[i].name = argv[3 + i];
		if (cl_session_new(on_event, &runs[i], &runs[i].s) < 0) {
			r = -ENOMEM;
			break;
		}
		if (pthread_create(&th[i], NULL, session_thread, &runs[i]) != 0) {
			cl_session_close(runs[i].s, 0);
			r = -ENOMEM;
			break;
		}
		started++;
	}
	if (r == 0)
		r = wait_ready(runs);
	if (r == 0)
		printf("both running\n");
	/* From this thread, while each session waits on its own; the
	 * sessions are closed only after their threads are joined. */
	for (i = 0; i < started; i++)
		if (!atomic_load(&runs[i].done))
			cl_session_stop(runs[i].s);
	for (i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		if (cl_session_close(runs[i].s, runs[i].r == 0 && runs[i].keep) < 0)
			runs[i].r = -EIO;
		if (runs[i].r < 0 || runs[i].end != CL_SESSION_END_STOP)
			r = r ? r : -EIO;
		printf("%s: ended (%s)\n", runs[i].label,
		       runs[i].r == 0 && runs[i].end == CL_SESSION_END_STOP ? "stopped"
		                                                            : "not by the stop");
	}
	if (r == 0 && (r = reattach(runs[0].rundir)) < 0)
		printf("A': failed: %s\n", cl_error_msg());
	printf("%s\n", r == 0 ? "PASS" : "FAIL");
	return r == 0 ? 0 : 1;
}
