/* SPDX-License-Identifier: GPL-2.0-only */
/* The cloudlet program: one function per subcommand, shared helpers. */
#ifndef CL_CLI_H
#define CL_CLI_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cl_util.h"

/* Each returns the process exit status. */
int cl_cmd_base(int argc, char **argv);
int cl_cmd_list_base(int argc, char **argv);
int cl_cmd_overlay(int argc, char **argv);
int cl_cmd_apply(int argc, char **argv);
int cl_cmd_info(int argc, char **argv);
int cl_cmd_verify(int argc, char **argv);
int cl_cmd_mount(int argc, char **argv);
int cl_cmd_umount(int argc, char **argv);
int cl_cmd_trace(int argc, char **argv);
int cl_cmd_synthesis(int argc, char **argv);
int cl_cmd_check(int argc, char **argv);
/* The forms of base and overlay that run a VM (cl_cmd_base and
 * cl_cmd_overlay pick them), and their help texts. */
int cl_cli_base_boot(int argc, char **argv);
int cl_cli_overlay_vm(int argc, char **argv);
extern const char cl_cli_base_boot_usage[];
extern const char cl_cli_overlay_vm_usage[];
/* Whether argv has option shrt or lng (before a "--"). */
int cl_cli_has_opt(int argc, char **argv, const char *shrt, const char *lng);
/* --chunk-size: -1 when arg is good (into *out), else the usage status. */
int cl_cli_chunk_size(const char *arg, uint32_t *out);
/* Runs OVERLAY once as `cloudlet synthesis` does, for seconds after the
 * resume, and writes the TRACE of what the VM touched to trace_out. */
int cl_synthesis_profile(const char *image, const char *overlay, const char *name, double seconds,
                         const char *trace_out);

struct cl_session;
struct cl_session_event;

/* SIGINT, SIGTERM and SIGHUP become cl_session_stop(s) (s NULL: none; a
 * signal that came before s is passed on at once). No SA_RESTART: waits
 * see it. Returns the session that had them before. */
struct cl_session *cl_cli_signals(struct cl_session *s);

/* cl_session_close(s, keep), after taking s from the signal handler. Every
 * command closes its sessions through it. */
int cl_cli_close(struct cl_session *s, int keep);
/* The last such signal, 0 if none. */
int cl_cli_signal(void);
/* Prints a NOTICE event: "cloudlet: TEXT" and "hint: HINT". */
void cl_cli_notice(const struct cl_session_event *ev);
/* Takes the TRACE of the mount at mnt (following it seconds first, or
 * until *stop) into output, or to stdout when output is NULL; says how many
 * chunks on stderr. */
int cl_cli_trace_to(const char *mnt, double seconds, const atomic_int *stop, const char *output);

/* Registers a base as `cloudlet base IMAGE --memory` does and prints it;
 * returns the exit status. */
int cl_cli_register_base(const char *image, const char *memory, const char *state,
                         const char *domain, uint32_t chunk);
struct cl_overlay_stats;
/* The overlay's size and chunks per recipe, as `cloudlet overlay` prints. */
void cl_cli_overlay_stats(const char *outdir, const struct cl_overlay_stats *st);

/* --help's lines for the environment every command that runs a VM reads. */
#define CL_CLI_HELP_ENV_VM                                                                         \
	"  CLOUDLET_LIBVIRT_URI  libvirt connection (default qemu:///system)\n"                    \
	"  CLOUDLET_ACCEL        kvm or tcg: skip the check of whether KVM really runs a\n"        \
	"                        guest here\n"

/* Warns (two lines on stderr) when this host makes libvirt slow to start
 * domains, for commands about to start one; never fails. */
void cl_cli_host_warn(void);
struct cl_publish;
/* --publish arg into pub[*n] (at most CL_PUBLISH_MAX): -1 when it is good
 * (*n grows), else the usage status. */
int cl_cli_publish(const char *cmd, const char *arg, struct cl_publish *pub, size_t *n);
/* Prints "cloudlet: <msg>" and, if hint is given, "hint: <hint>" for a
 * failure r (-errno) of the core; returns 1. */
int cl_cli_fail(int r, const char *hint);
/* Prints "cloudlet CMD: <fmt>" and a pointer to --help; returns 2. */
int cl_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "12.3 MiB" into a static buffer per call site slot (0..3). */
const char *cl_fmt_size(uint64_t bytes, int slot);

#endif
