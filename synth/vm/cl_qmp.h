/* SPDX-License-Identifier: GPL-2.0-only */
/* QEMU's monitor (QMP) through libvirt's passthrough: one command, the
 * migration capability x-ignore-shared, and the query-migrate poll loop
 * that loading and saving a device state share. */
#ifndef CL_QMP_H
#define CL_QMP_H

#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>

#include <libvirt/libvirt.h>

#define CL_QMP_POLL_MS 50 /* between two query-migrate */

/* The string value of the first "key" in a JSON text, into out[cap]
 * (truncated to fit); naive (no escapes) but enough for QMP's and
 * qemu-img's flat answers. -ENOENT if there is none. */
int cl_qmp_json_str(const char *json, const char *key, char *out, size_t cap);

/* One QMP command through libvirt; *reply (optional) is the answer, which
 * the caller frees. A QMP error is -EPROTO with its description. */
int cl_qmp_run(virDomainPtr d, const char *cmd, char **reply);

/* One human monitor command (HMP, through QMP); *out is its text output,
 * which the caller frees. HMP commands report their failures as text. */
int cl_qmp_hmp(virDomainPtr d, const char *line, char **out);

/* Turns on the migration capability x-ignore-shared: the RAM, a shared
 * file, stays out of the stream. -ENOTSUP for a QEMU without it. */
int cl_qmp_ignore_shared(virDomainPtr d);
/* Turns on the migration capability postcopy-ram (an incoming migration:
 * pages arrive as the guest asks for them). -ENOTSUP without it. */
int cl_qmp_postcopy_ram(virDomainPtr d);
/* QEMU's run state (query-status: "inmigrate", "paused", "running", ...)
 * into out[cap]. */
int cl_qmp_runstate(virDomainPtr d, char *out, size_t cap);

/* Polls query-migrate until the migration completed (0), failed or was
 * cancelled (-ECONNABORTED), timeout seconds passed (-ETIMEDOUT), *stop became
 * non-zero (-EINTR), or check (optional) returned -errno, which is
 * returned as it is. status[cap] gets the last status. Only a QMP failure
 * and check set the error message: the caller words the others. */
struct cl_qmp_wait {
	double timeout;
	const atomic_int *stop;
	int (*check)(void *ctx);
	void *ctx;
};
int cl_qmp_migration_wait(virDomainPtr d, const struct cl_qmp_wait *w, char *status, size_t cap);

#endif
