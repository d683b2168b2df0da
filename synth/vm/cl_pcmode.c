/* SPDX-License-Identifier: GPL-2.0-only */
/* Postcopy memory, the session's side (see cl_pcmode.h). */
#include "cl_pcmode.h"
#include "cl_error.h"
#include "cl_migrate.h"
#include "cl_mount.h"
#include "cl_qmp.h"
#include "cl_util.h"
#include "cl_vm.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cl_pcmode_state(const char *mnt, char *out, size_t cap)
{
	char *text = NULL;
	int r;

	if (!mnt || !out || !cap)
		return -EINVAL;
	r = cl_mount_status(mnt, &text);
	if (r == 0)
		r = cl_mount_status_value(text, "postcopy", out, cap);
	free(text);
	return r;
}

/* 0 once QEMU left "inmigrate" (the package's RUN came: it waits paused),
 * 1 while it loads, or -errno. */
static int loaded(virDomainPtr d, const char *mnt)
{
	char st[512], rs[64];
	int r;

	if (cl_pcmode_state(mnt, st, sizeof(st)) == 0 && !strncmp(st, "failed", 6))
		return cl_errorf(-EIO, "%s: the postcopy source %s", mnt, st);
	/* A QEMU whose incoming migration fails exits: this fails then. */
	r = cl_qmp_runstate(d, rs, sizeof(rs));
	if (r < 0)
		return r;
	if (!strcmp(rs, "inmigrate"))
		return 1;
	if (strcmp(rs, "paused"))
		return cl_errorf(-EPROTO,
		                 "domain %s: QEMU is %s after loading the device state, not paused",
		                 virDomainGetName(d), rs);
	return 0;
}

int cl_pcmode_load(virDomainPtr d, const char *sock, const char *mnt, double timeout,
                   const atomic_int *stop)
{
	double t0 = cl_now();
	long pid;
	int r;

	if (!d || !sock || !mnt)
		return -EINVAL;
	r = cl_vm_qemu_pid(d, &pid);
	if (r == 0)
		r = cl_migrate_incoming(d, sock);
	if (r == 0)
		r = cl_mount_postcopy_start(mnt, sock, pid);
	while (r >= 0 && (r = loaded(d, mnt)) == 1) {
		if (stop && *stop)
			return cl_errorf(-EINTR, "interrupted while the device state was loading");
		if (cl_now() - t0 > timeout)
			return cl_errorf(
			    -ETIMEDOUT,
			    "device state not loaded within %.0f s (postcopy; see %s/status)",
			    timeout, mnt);
		cl_sleep_ms(CL_QMP_POLL_MS);
	}
	return r;
}

/* --- faults --------------------------------------------------------------- */

/* The pause runs on a thread of its own: it may never return while a vCPU
 * waits on a page. Whichever of the two sides ends last frees it. */
struct pauser {
	virDomainPtr d; /* a reference of its own */
	atomic_int refs;
	atomic_int done;
	int r;
};

static void pauser_put(struct pauser *p)
{
	if (atomic_fetch_sub(&p->refs, 1) == 1) {
		virDomainFree(p->d);
		free(p);
	}
}

static void *pause_run(void *arg)
{
	struct pauser *p = arg;

	p->r = virDomainSuspend(p->d) < 0 ? -EIO : 0;
	atomic_store(&p->done, 1);
	pauser_put(p);
	return NULL;
}

int cl_pcmode_fault(virDomainPtr d, int *destroyed)
{
	struct pauser *p;
	pthread_t th;
	double t0 = cl_now();
	int r, paused;

	if (!d || !destroyed)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p || virDomainRef(d) < 0) {
		free(p);
		return -ENOMEM;
	}
	p->d = d;
	atomic_init(&p->refs, 2);
	r = -pthread_create(&th, NULL, pause_run, p);
	if (r < 0) {
		atomic_store(&p->refs, 1);
		pauser_put(p);
		return cl_errorf(r, "pthread_create: %s", strerror(-r));
	}
	pthread_detach(th);
	while (!atomic_load(&p->done) && cl_now() - t0 < CL_PCMODE_PAUSE_S)
		cl_sleep_ms(20);
	paused = atomic_load(&p->done) && p->r == 0;
	pauser_put(p);
	*destroyed = !paused;
	if (paused)
		return 0;
	return cl_vm_kill(d);
}
