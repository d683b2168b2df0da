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
#include "cl_net.h"

struct cl_session;

enum cl_session_event_kind {
	CL_SESSION_MOUNTED,         /* the overlay's mount serves */
	CL_SESSION_COMPLETE,        /* every byte of the overlay is in */
	CL_SESSION_DOMAIN_STARTED,  /* the domain runs paused; secs: the start took that long */
	CL_SESSION_RESUMED,         /* the VM runs from its device state */
	CL_SESSION_PAUSED,          /* the VM is paused to be saved */
	CL_SESSION_FAILED,          /* the overlay stopped arriving (the VM runs on) */
	CL_SESSION_STOPPING,        /* the end of a session that ran: teardown begins */
	CL_SESSION_STOPPED,         /* domain removed, unmounted, files removed */
	CL_SESSION_NOTICE,          /* text (and hint): a warning, or a teardown step failed */
	CL_SESSION_ENDPOINT,        /* endpoint: a host port forwarded into the guest (text: URL) */
	CL_SESSION_MEMORY_COMPLETE, /* postcopy: every page of guest RAM is in QEMU */
	CL_SESSION_MEMORY_FAILED,   /* postcopy: guest memory cannot be served (text: why); the VM
	                             * was paused, or destroyed when it would not pause (it ends) */
};

/* Where a synthesized VM's guest RAM comes from. */
enum cl_memory_mode {
	CL_MEMORY_AUTO,     /* postcopy where this host allows it, else mmap after a NOTICE */
	CL_MEMORY_POSTCOPY, /* page by page through QEMU's postcopy protocol, from the mount's
	                     * daemon, into a tmpfs of the VM's own (fails where not possible) */
	CL_MEMORY_MMAP,     /* QEMU maps the memory image of the mount */
};

struct cl_session_event {
	enum cl_session_event_kind kind;
	double t;                          /* seconds since cl_session_new() */
	int progress;                      /* the fields below were read from the mount */
	uint64_t fetched, pack;            /* pack bytes fetched of all */
	uint64_t accessed[CL_NIMAGES];     /* chunks the VM accessed so far */
	double secs;                       /* CL_SESSION_DOMAIN_STARTED */
	const char *text, *hint;           /* CL_SESSION_NOTICE; text: CL_SESSION_ENDPOINT's URL */
	const struct cl_publish *endpoint; /* CL_SESSION_ENDPOINT */
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
	CL_SESSION_END_MEMORY,  /* postcopy: guest memory failed and the VM was killed */
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
	const struct cl_publish *publish; /* host ports forwarded into the guest, */
	size_t npublish;                  /* before it resumes (ENDPOINT events) */
	enum cl_memory_mode memory;       /* guest RAM */
};

/* Mounts the overlay, starts its VM paused and resumes it from its device
 * state (events MOUNTED, DOMAIN_STARTED, ENDPOINT, RESUMED; COMPLETE when the overlay
 * is in; a NOTICE first when this host makes libvirt slow, cl_host.h). Returns once the VM runs, or
 * fails with -errno (a one-line message; cl_session_hint() may add advice); the caller then closes
 * the session, which removes what was made. */
int cl_session_synthesis(struct cl_session *s, const struct cl_synthesis_opts *o);

/* "postcopy" or "mmap": where the synthesized VM's guest RAM comes from
 * (known once cl_session_synthesis() has mounted). */
const char *cl_session_memory(const struct cl_session *s);

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

/* --- boot and customize (cloudlet base, cloudlet overlay) ------------------ */

/* Connects to libvirt (uri: NULL for $CLOUDLET_LIBVIRT_URI, else
 * qemu:///system) ahead of a start call, which otherwise connects itself;
 * -ECONNREFUSED when libvirt does not answer. */
int cl_session_connect(struct cl_session *s, const char *uri);

struct cl_boot_opts {
	const char *image; /* raw disk; RAM goes to IMAGE.memory (made, or zeroed) */
	const char *name;  /* domain name (required) */
	unsigned ram_mib, vcpus;
	const char *kernel, *initrd, *cmdline; /* direct kernel boot; NULL: the disk */
	int no_free_memory;                    /* a balloon without free page reporting */
	struct cl_net net;                     /* the NIC (CL_NET_NONE: none) */
};

/* Boots image under libvirt (KVM if it works here, else TCG after a
 * NOTICE saying why), to be set up and then saved with cl_session_save()
 * into IMAGE.state and IMAGE.domain.xml. */
int cl_session_boot(struct cl_session *s, const struct cl_boot_opts *o);

/* After the boot session's base is registered: copies its kernel and
 * initrd into the registry directory (into dir[cap]), names them there in
 * its domain XML and seals the registration (cl_base_seal). */
int cl_session_keep_boot_files(const char *image, const char *kernel, const char *initrd, char *dir,
                               size_t cap);

struct cl_customize_opts {
	const char *image;  /* a base registered with its device state and XML */
	const char *outdir; /* the overlay's directory, absolute (QEMU must reach it) */
	const char *name;   /* domain name (required) */
	const struct cl_publish *publish; /* as for synthesis */
	size_t npublish;
};

/* Resumes the base on a copy-on-write disk (qemu-img, in PATH) and a
 * sparse copy of its RAM file, in the work directory
 * OUTDIR/.cloudlet-overlay-PID, to be customized and saved there. */
int cl_session_customize(struct cl_session *s, const struct cl_customize_opts *o);

/* Whether cl_session_viewer() would find a viewer: DISPLAY is set and
 * remote-viewer or gvncviewer is in PATH. */
int cl_session_can_view(void);
/* Opens that viewer on the VM's VNC display; *which gets its name (NULL
 * when none was opened). cl_session_close() ends it. */
int cl_session_viewer(struct cl_session *s, const char **which);

/* Types the shell script at path (at most 1 MiB; empty and # lines
 * skipped) into the guest's serial console, each line once the previous
 * one has run; *lines gets how many were typed. */
int cl_session_type_script(struct cl_session *s, const char *path, size_t *lines);

/* What ended cl_session_await(). */
enum cl_session_trigger {
	CL_SESSION_TRIGGER_TEXT,   /* the guest printed the text */
	CL_SESSION_TRIGGER_VIEWER, /* the viewer was closed */
	CL_SESSION_TRIGGER_LINE,   /* a line arrived on fd */
};

/* Waits until the guest prints text (if any) on its console, the viewer
 * closes, or a line arrives on fd (>= 0), for at most timeout seconds.
 * -EINTR after cl_session_stop(), -ECHILD when the guest shut down. */
int cl_session_await(struct cl_session *s, const char *text, int fd, double timeout,
                     enum cl_session_trigger *why);

/* Free page reporting turns what the guest freed into holes in its RAM
 * file a few seconds later: waits (at most 60 s) until the file's
 * allocation stays the same for 4 s. */
struct cl_session_settle {
	const char *ram;        /* the RAM file */
	uint64_t before, after; /* its allocated bytes */
	double secs;            /* the wait */
};
int cl_session_settle(struct cl_session *s, struct cl_session_settle *out);

/* Pauses the VM (a PAUSED event), saves its device state (RAM stays in its
 * file) and its domain XML (without -incoming), and removes the domain. */
int cl_session_save(struct cl_session *s);

/* After cl_session_save() of a customize session: writes OVERLAY/overlay-
 * meta and overlay-blob from the saved VM (only what the copy-on-write
 * disk holds is read); trace (optional) puts its chunks first. */
struct cl_overlay_stats;
int cl_session_overlay(struct cl_session *s, const char *trace, struct cl_overlay_stats *st);

/* The overlay's directory, and the work directory of a customize
 * session. */
const char *cl_session_outdir(const struct cl_session *s);
const char *cl_session_workdir(const struct cl_session *s);
/* Moves what the overlay was made of (disk.qcow2, memory.img, state,
 * domain.xml) to OUTDIR/snapshot (into dir[cap]), replacing an earlier
 * one; else cl_session_close() removes it. */
int cl_session_keep_snapshot(struct cl_session *s, char *dir, size_t cap);

/* --- any session ---------------------------------------------------------- */

#define CL_SESSION_RUN_DIR "/run/cloudlet"

/* cl_session_hint() when libvirt does not answer. */
#define CL_SESSION_LIBVIRTD_HINT                                                                   \
	"is libvirtd running? start it (`systemctl start libvirtd`, or `libvirtd -d` without "     \
	"systemd)"

/* Ends every wait of s (the current one returns CL_SESSION_END_STOP or
 * -EINTR): the session's own waits at once (a pipe wakes them), the VM
 * layer's polling loops within their tick (at most 200 ms). An atomic
 * store and a write(2): async-signal-safe, thread-safe, idempotent. */
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
