/* SPDX-License-Identifier: GPL-2.0-only */
/* A synthesis session's postcopy memory: the mode, the VM's RAM file, and
 * watching the source while the VM runs (see cl_session_priv.h). */
#include "cl_error.h"
#include "cl_hostcheck.h"
#include "cl_pcmode.h"
#include "cl_pcram.h"
#include "cl_session_priv.h"
#include "cl_util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

/* Says that guest memory comes from the mapped image after all, and why. */
static void fall_back(struct cl_session *s, const char *why)
{
	s->postcopy = 0;
	cl_errorf(0, "notice: guest memory mapped from the mount (mmap mode): %s", why);
	cl_session_notice(s, NULL);
}

int cl_session_pc_pick(struct cl_session *s, enum cl_memory_mode want)
{
	unsigned long version = 0;
	char why[512];
	int r;

	s->postcopy = 0;
	if (want == CL_MEMORY_MMAP)
		return 0;
	if (virConnectGetVersion(s->conn, &version) < 0)
		snprintf(why, sizeof(why), "libvirt does not tell QEMU's version: %s",
		         cl_vm_error());
	r = version ? cl_host_postcopy_ok(version, why, sizeof(why)) : -ENOTSUP;
	if (r == 0) {
		s->postcopy = 1;
		return 0;
	}
	if (want == CL_MEMORY_AUTO) {
		fall_back(s, why);
		return 0;
	}
	s->hint = "`cloudlet check` tells what this host lacks for postcopy memory";
	return cl_errorf(r, "postcopy memory is not possible here: %s", why);
}

int cl_session_pc_ram(struct cl_session *s, enum cl_memory_mode want, uint64_t memsize)
{
	int r;

	if (!s->postcopy)
		return 0;
	r = cl_pcram_fits(memsize);
	if (r < 0 && want == CL_MEMORY_AUTO) {
		char why[512];

		snprintf(why, sizeof(why), "%s", cl_error_msg());
		fall_back(s, why);
		return 0;
	}
	if (r == 0)
		r = cl_pcram_make(s->name, memsize, s->uid, s->gid, s->pcram, sizeof(s->pcram));
	s->made_pcram = r == 0;
	return r;
}

static void memory_failed(struct cl_session *s, const char *why)
{
	struct cl_session_event ev = {.kind = CL_SESSION_MEMORY_FAILED};
	char text[PATH_MAX + 800];
	int destroyed = 0, r;

	s->said_pc_failed = 1;
	r = cl_pcmode_fault(s->dom, &destroyed);
	s->pc_killed = r < 0 || destroyed;
	snprintf(text, sizeof(text), "%s; the VM %s", why,
	         r < 0       ? "could be neither paused nor destroyed"
	         : destroyed ? "did not pause (a vCPU waits on a missing page) and was destroyed"
	                     : "is paused");
	ev.t = cl_now() - s->t0;
	ev.text = text;
	if (s->cb)
		s->cb(s, s->ctx, &ev);
}

void cl_session_pc_watch(struct cl_session *s)
{
	char st[512], why[PATH_MAX + 600];
	int r;

	if (!s->postcopy || !s->running || !s->mounted || s->said_pc_failed || s->said_pc_complete)
		return;
	r = cl_pcmode_state(s->mnt, st, sizeof(st));
	if (r == 0 && !strcmp(st, "complete")) {
		s->said_pc_complete = 1;
		cl_session_emit(s, CL_SESSION_MEMORY_COMPLETE, 0);
		return;
	}
	if (r == 0 && strncmp(st, "failed", 6))
		return;
	if (cl_vm_alive(s->dom) == 0)
		return; /* the guest ended: its stream with it */
	if (r == -ENOENT)
		snprintf(why, sizeof(why), "guest memory: %s/status shows no postcopy source",
		         s->mnt);
	else if (r < 0)
		snprintf(why, sizeof(why),
		         "guest memory: the mount's daemon is gone (%s/status: %s)", s->mnt,
		         strerror(-r));
	else
		snprintf(why, sizeof(why), "guest memory: the postcopy source %s", st);
	memory_failed(s, why);
}
