/* SPDX-License-Identifier: GPL-2.0-only */
/* QMP through libvirt, and the one query-migrate poll loop (see cl_qmp.h). */
#include "cl_qmp.h"
#include "cl_error.h"
#include "cl_util.h"
#include "cl_vm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt-qemu.h>

int cl_qmp_json_str(const char *json, const char *key, char *out, size_t cap)
{
	char pat[64];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\"", key);
	p = json ? strstr(json, pat) : NULL;
	if (!p)
		return -ENOENT;
	p += strlen(pat);
	while (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n')
		p++;
	if (*p != '"')
		return -ENOENT;
	e = strchr(++p, '"');
	if (!e)
		return -ENOENT;
	snprintf(out, cap, "%.*s", (int)(e - p), p);
	return 0;
}

int cl_qmp_run(virDomainPtr d, const char *cmd, char **reply)
{
	char desc[512];
	char *ans = NULL;

	if (!d || !cmd)
		return -EINVAL;
	if (virDomainQemuMonitorCommand(d, cmd, &ans, 0) < 0)
		return cl_errorf(-EIO, "QMP %s: %s", cmd, cl_vm_error());
	if (strstr(ans, "\"error\"")) {
		if (cl_qmp_json_str(ans, "desc", desc, sizeof(desc)) < 0)
			snprintf(desc, sizeof(desc), "%.400s", ans);
		free(ans);
		return cl_errorf(-EPROTO, "%s", desc);
	}
	if (reply)
		*reply = ans;
	else
		free(ans);
	return 0;
}

int cl_qmp_hmp(virDomainPtr d, const char *line, char **out)
{
	char *ans = NULL;

	if (!d || !line || !out)
		return -EINVAL;
	if (virDomainQemuMonitorCommand(d, line, &ans, VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP) < 0)
		return cl_errorf(-EIO, "QEMU monitor `%s`: %s", line, cl_vm_error());
	*out = ans;
	return 0;
}

static int capability_on(virDomainPtr d, const char *cap)
{
	char cmd[256];
	int r;

	snprintf(cmd, sizeof(cmd),
	         "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
	         "[{\"capability\":\"%s\",\"state\":true}]}}",
	         cap);
	r = cl_qmp_run(d, cmd, NULL);
	if (r == -EPROTO)
		return cl_errorf(-ENOTSUP, "QEMU refuses the %s capability: %s", cap,
		                 cl_error_msg());
	return r;
}

int cl_qmp_ignore_shared(virDomainPtr d)
{
	return capability_on(d, "x-ignore-shared");
}

int cl_qmp_postcopy_ram(virDomainPtr d)
{
	return capability_on(d, "postcopy-ram");
}

int cl_qmp_runstate(virDomainPtr d, char *out, size_t cap)
{
	char *ans = NULL;
	int r;

	if (!d || !out || cap < 2)
		return -EINVAL;
	r = cl_qmp_run(d, "{\"execute\":\"query-status\"}", &ans);
	if (r < 0)
		return r;
	r = cl_qmp_json_str(ans, "status", out, cap);
	free(ans);
	return r < 0 ? cl_errorf(-EPROTO, "QEMU's query-status has no status") : 0;
}

int cl_qmp_migration_wait(virDomainPtr d, const struct cl_qmp_wait *w, char *status, size_t cap)
{
	double t0 = cl_now();
	char *ans;
	int r;

	if (!d || !w || !status || cap < 2)
		return -EINVAL;
	snprintf(status, cap, "none");
	for (;;) {
		if (w->stop && *w->stop)
			return -EINTR;
		/* The other side of the stream may give up first. */
		if (w->check && (r = w->check(w->ctx)) < 0)
			return r;
		r = cl_qmp_run(d, "{\"execute\":\"query-migrate\"}", &ans);
		if (r < 0)
			return r;
		if (cl_qmp_json_str(ans, "status", status, cap) < 0)
			snprintf(status, cap, "none");
		free(ans);
		if (!strcmp(status, "completed"))
			return 0;
		if (!strcmp(status, "failed") || !strcmp(status, "cancelled"))
			return -ECONNABORTED;
		if (cl_now() - t0 > w->timeout)
			return -ETIMEDOUT;
		cl_sleep_ms(CL_QMP_POLL_MS);
	}
}
