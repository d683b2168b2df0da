/* SPDX-License-Identifier: GPL-2.0-only */
/* The session handle, shared by the session modules of the VM layer. */
#ifndef CL_SESSION_PRIV_H
#define CL_SESSION_PRIV_H

#include "cl_accel.h"
#include "cl_console.h"
#include "cl_migrate.h"
#include "cl_net.h"
#include "cl_rundir.h"
#include "cl_session.h"
#include "cl_tool.h"
#include "cl_vm.h"

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define CL_SESSION_TICK_MS 200       /* how often waits look at the VM and the mount */
#define CL_SESSION_FILE    "session" /* in the run directory: what attach needs */

struct cl_session {
	cl_session_cb cb;
	void *ctx;
	atomic_int stop; /* cl_session_stop() (lock-free: signal-safe); the VM layer polls it */
	int wake[2];     /* a pipe: cl_session_stop() writes, waits poll */
	double t0;
	char name[64], uuid[37], rundir[128], mnt[PATH_MAX], group[64];
	char *overlay; /* for messages */
	uid_t uid;
	gid_t gid;
	int made_rundir, made_mnt, mounted;
	int running; /* the VM was resumed: its end is reported */
	int synth;   /* a synthesis: a run directory left behind is a failure */
	int said_complete, said_failed;
	const char *type; /* "kvm" or "qemu" */
	const char *hint;
	int said;
	char hint_buf[512];
	virConnectPtr conn;
	virDomainPtr dom;
	/* boot and customize */
	struct cl_base *base; /* customize: the base resumed */
	char outdir[PATH_MAX], work[PATH_MAX + 64];
	char ram[PATH_MAX + 96], state[PATH_MAX + 96], xml[PATH_MAX + 96], qcow[PATH_MAX + 96];
	int made_work;
	struct cl_console con; /* fd -1 until opened: kept, output and all */
	pid_t viewer;
	/* networking */
	char *tmpl; /* boot and customize: the XML defined from, NIC in libvirt's form */
	size_t tmpl_len;
	struct cl_publish pub[CL_PUBLISH_MAX]; /* host ports filled in once bound */
	size_t npub;
	char mac[18]; /* of a NIC on a bridge or libvirt network, else "" */
	/* postcopy memory (cl_session_pc.c) */
	int postcopy;         /* guest RAM comes from the mount's daemon, page by page */
	char pcram[PATH_MAX]; /* the RAM file on the VM's own tmpfs */
	int made_pcram;       /* this session mounted its RAM's tmpfs (cl_pcram.h) */
	int said_pc_complete, said_pc_failed;
	int pc_killed; /* the VM would not pause on a memory fault */
};

/* Reports an event of kind; with the mount's progress when it serves. */
void cl_session_emit(struct cl_session *s, enum cl_session_event_kind kind, double secs);
/* A NOTICE of this thread's last error message (and hint). */
void cl_session_notice(struct cl_session *s, const char *hint);
/* Sleeps ms, or less when cl_session_stop() is called (1 then). */
int cl_session_nap(struct cl_session *s, int ms);
/* Connects to libvirt (unless connected), refuses a domain name in use,
 * finds QEMU's user and makes the run directory CL_SESSION_RUN_DIR/name;
 * synth: the hints of cloudlet synthesis. */
int cl_session_prepare(struct cl_session *s, const char *uri, int synth);
/* Ends the viewer and closes the console. */
void cl_session_snap_end(struct cl_session *s);
/* Removes the work directory of a customize session, and frees its base. */
void cl_session_custom_end(struct cl_session *s);
/* Sparse copy: holes stay holes; to is owned by uid:gid, mode 0660. */
int cl_session_copy_sparse(const char *from, const char *to, uid_t uid, gid_t gid);
/* Writes what re-attaching needs into the run directory. */
int cl_session_record(struct cl_session *s);
/* Checks the NIC of the domain XML xml (len bytes) for the run: --publish
 * (pub, npub; copied into s) needs user-mode networking, a MAC on a bridge
 * or libvirt network must be free (cl_session_mac_free). what names the
 * VM in messages. */
int cl_session_net_check(struct cl_session *s, const char *xml, size_t len, const char *what,
                         const struct cl_publish *pub, size_t npub);
/* -EBUSY when a running domain other than s has s->mac. */
int cl_session_mac_free(struct cl_session *s);
/* Adds the forwards of s->pub to the loaded, still paused VM (ENDPOINT
 * events) and notes them in the mount's status. */
int cl_session_publish(struct cl_session *s);
/* Reports an ENDPOINT event for p. */
void cl_session_emit_endpoint(struct cl_session *s, const struct cl_publish *p);
/* Decides the memory mode of a synthesis (s->postcopy) as want asks, from
 * QEMU's version and the host (a NOTICE when AUTO falls back to mmap). */
int cl_session_pc_pick(struct cl_session *s, enum cl_memory_mode want);
/* Postcopy: the RAM file of memsize bytes on the VM's own tmpfs (into
 * s->pcram); AUTO falls back to mmap when the host lacks the memory. */
int cl_session_pc_ram(struct cl_session *s, enum cl_memory_mode want, uint64_t memsize);
/* While the VM runs in postcopy mode: reports MEMORY_COMPLETE, or on the
 * source's failure pauses (or destroys) the VM and reports MEMORY_FAILED. */
void cl_session_pc_watch(struct cl_session *s);
/* Reads the mount's status: 0, or -errno; state[32] gets its state. */
int cl_session_progress(const struct cl_session *s, struct cl_session_event *ev, char *state);

#endif
