/* SPDX-License-Identifier: GPL-2.0-only */
/* VM sessions: a synthesized VM run under libvirt from a base and an
 * overlay (cloudlet synthesis), and the boot and customize sessions that
 * make a base and an overlay (cloudlet base, cloudlet overlay).
 *
 * A session is a handle: cl_session_new() makes it, one start call runs
 * the VM, cl_session_wait() waits for its end, cl_session_close() removes
 * what it made and frees it. Events go to a callback as they happen.
 *
 * Several sessions may run in one process, each on its own thread: the
 * library keeps no global state and installs no signal handler (a program
 * turns its signals into cl_session_stop()).
 *
 * Threads: cl_session_stop() may be called from any thread and from a
 * signal handler, at any time until cl_session_close(). Every other call on
 * one session must come from one thread at a time; the callback runs on the
 * thread inside the call that caused the event.
 *
 * Memory: the session owns everything it returns (strings stay valid until
 * cl_session_close(), which frees the session); event fields are valid
 * during the callback only. Options are copied at the start call. */
#ifndef CL_SESSION_H
#define CL_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "cl_meta.h"

struct cl_session;

enum cl_session_event_kind {
	CL_SESSION_MOUNTED,        /* the overlay's mount serves */
	CL_SESSION_COMPLETE,       /* every byte of the overlay is in */
	CL_SESSION_DOMAIN_STARTED, /* the domain runs paused; secs: the start took that long */
	CL_SESSION_RESUMED,        /* the VM runs from its device state */
	CL_SESSION_PAUSED,         /* the VM is paused to be saved */
	CL_SESSION_FAILED,         /* the overlay stopped arriving (the VM runs on) */
	CL_SESSION_STOPPING,       /* the end of a session that ran: teardown begins */
	CL_SESSION_STOPPED,        /* domain removed, unmounted, files removed */
	CL_SESSION_NOTICE,         /* text (and hint): a warning, or a teardown step failed */
};

struct cl_session_event {
	enum cl_session_event_kind kind;
	double t;                      /* seconds since cl_session_new() */
	int progress;                  /* the fields below were read from the mount */
	uint64_t fetched, pack;        /* pack bytes fetched of all */
	uint64_t accessed[CL_NIMAGES]; /* chunks the VM accessed so far */
	double secs;                   /* CL_SESSION_DOMAIN_STARTED */
	const char *text, *hint;       /* CL_SESSION_NOTICE */
};

typedef void (*cl_session_cb)(struct cl_session *s, void *ctx, const struct cl_session_event *ev);

/* cb (optional) gets every event with ctx. */
int cl_session_new(cl_session_cb cb, void *ctx, struct cl_session **out);

/* What ended cl_session_wait(). */
enum cl_session_end {
	CL_SESSION_END_STOP,    /* cl_session_stop() */
	CL_SESSION_END_TIME,    /* the seconds given are over */
	CL_SESSION_END_GUEST,   /* the guest shut down or crashed */
	CL_SESSION_END_LIBVIRT, /* libvirt stopped answering */
	CL_SESSION_END_FD,      /* the watched descriptor reached its end */
};

/* --- synthesis ------------------------------------------------------------ */

struct cl_synthesis_opts {
	const char *image;             /* the registered base: disk image path or id */
	const char *overlay;           /* overlay-meta, its directory, or an http(s) URL */
	const char *name;              /* domain name; NULL: cloudlet-<8 hex digits> */
	const char *mount;             /* an existing mount point; NULL: RUNDIR/mnt */
	const char *const *mount_opts; /* more cloudletfs option lists */
	size_t nmount_opts;
	int no_early_start; /* the whole overlay in before the VM starts */
	const char *uri;    /* libvirt; NULL: $CLOUDLET_LIBVIRT_URI, else qemu:///system */
};

/* Mounts the overlay, starts its VM paused and resumes it from its device
 * state (events MOUNTED, DOMAIN_STARTED, RESUMED; COMPLETE when the overlay
 * is in). Returns once the VM runs, or fails with -errno (a one-line
 * message; cl_session_hint() may add advice); the caller then closes the
 * session, which removes what was made. */
int cl_session_synthesis(struct cl_session *s, const struct cl_synthesis_opts *o);

/* Finds the synthesis whose run directory is rundir (CL_SESSION_RUN_DIR/NAME)
 * again, e.g. after the program that started it was restarted: the session
 * is then as after cl_session_synthesis(). */
int cl_session_attach(struct cl_session *s, const char *rundir);

/* Runs the VM until cl_session_stop(), seconds (if > 0), the guest's end,
 * libvirt not answering, or (fd >= 0) fd's end of file: *end says which.
 * Meanwhile COMPLETE and FAILED are reported. */
int cl_session_wait(struct cl_session *s, double seconds, int fd, enum cl_session_end *end);

/* Types one shell line at the guest's serial console and waits (bounded
 * by timeout seconds and by cl_session_stop()) until it has run; -ENOTCONN
 * when the console does not answer within 10 s. */
int cl_session_console_run(struct cl_session *s, const char *line, double timeout);

/* --- any session ---------------------------------------------------------- */

#define CL_SESSION_RUN_DIR "/run/cloudlet"

/* Ends every wait of s soon (the current one returns CL_SESSION_END_STOP
 * or -EINTR). Async-signal-safe, thread-safe, idempotent. */
void cl_session_stop(struct cl_session *s);

/* keep: leave the domain, the mount and the run directory in place;
 * else the domain is destroyed and undefined, the overlay unmounted, and
 * the files the session made removed (STOPPING and STOPPED are reported
 * when the VM had run; a step that fails is a NOTICE and the result is
 * -EIO). Frees s either way; s may be NULL. */
int cl_session_close(struct cl_session *s, int keep);

/* Advice for the last failure (NULL if none); *said (optional) becomes 1
 * when a helper program (cloudletfs) already printed the failure itself. */
const char *cl_session_hint(const struct cl_session *s, int *said);

/* The domain name, run directory, mount point ("" before there is one),
 * and the accelerator the VM runs under ("KVM" or "TCG"). */
const char *cl_session_name(const struct cl_session *s);
const char *cl_session_rundir(const struct cl_session *s);
const char *cl_session_mount(const struct cl_session *s);
const char *cl_session_accel(const struct cl_session *s);
/* Seconds since cl_session_new(), the time of its events. */
double cl_session_elapsed(const struct cl_session *s);
/* The VNC display HOST:PORT of the running VM into out[cap]; -ENOENT if it
 * has none. */
int cl_session_vnc(struct cl_session *s, char *out, size_t cap);

#endif
