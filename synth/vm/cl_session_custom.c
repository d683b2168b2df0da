/* SPDX-License-Identifier: GPL-2.0-only */
/* The customize session of cloudlet overlay: a registered base resumed on
 * a copy-on-write disk and a copy of its RAM, saved, and made into an
 * overlay (see cl_session.h). */
#include "cl_session_priv.h"
#include "cl_base.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_qcow.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESUME_TIMEOUT 300.0
#define TOOL_TIMEOUT   600.0 /* qemu-img */

int cl_session_copy_sparse(const char *from, const char *to, uid_t uid, gid_t gid)
{
	struct stat st;
	int in, out, r;

	in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return cl_errorf(-errno, "%s: %s", from, strerror(errno));
	out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0660);
	if (out < 0 || fstat(in, &st) < 0) {
		r = cl_errorf(-errno, "%s: %s", out < 0 ? to : from, strerror(errno));
		goto out;
	}
	r = cl_copy_sparse(in, from, out, to, (uint64_t)st.st_size);
	if (r == 0 && (fchown(out, uid, gid) < 0 || fchmod(out, 0660) < 0))
		r = cl_errorf(-errno, "%s: %s", to, strerror(errno));
out:
	if (out >= 0)
		close(out);
	close(in);
	return r;
}

/* The work directory: the VM's copy-on-write disk and RAM copy, next to
 * the overlay (QEMU must reach that directory). */
static int make_work(struct cl_session *s)
{
	const struct cl_base *b = s->base;
	char *qargv[] = {"qemu-img", "create",         "-q",    "-f", "qcow2", "-F", "raw",
	                 "-b",       b->path[CL_DISK], s->qcow, NULL};
	int r;

	if (mkdir(s->work, 0750) < 0 || chown(s->work, 0, s->gid) < 0)
		return cl_errorf(-errno, "%s: %s", s->work, strerror(errno));
	s->made_work = 1;
	r = cl_tool_run(qargv, TOOL_TIMEOUT, &s->stop, NULL, NULL);
	if (r < 0)
		return r;
	if (chown(s->qcow, s->uid, s->gid) < 0 || chmod(s->qcow, 0660) < 0)
		return cl_errorf(-errno, "%s: %s", s->qcow, strerror(errno));
	return cl_session_copy_sparse(b->path[CL_MEMORY], s->ram, s->uid, s->gid);
}

/* Defines the base's domain on the work directory's disk and RAM. */
static int define_custom(struct cl_session *s, const char *xml, size_t len)
{
	const struct cl_base *b = s->base;
	struct cl_domxml_edit e = {0};
	char *newxml = NULL, *kernel = NULL, *initrd = NULL, con[sizeof(s->rundir) + 16];
	int r;

	r = cl_rundir_boot_files(b, xml, len, &kernel, &initrd);
	/* The device state loads only under what it was saved under. */
	if (r == 0)
		r = cl_accel_resume_type(s->conn, b, xml, len, kernel, initrd, &s->type, &s->hint);
	if (r == 0)
		r = cl_domxml_uuid(s->uuid);
	if (r < 0)
		goto out;
	snprintf(con, sizeof(con), "%s/console.sock", s->rundir);
	e.name = s->name;
	e.uuid = s->uuid;
	e.type = s->type;
	e.disk = s->qcow;
	e.disk_format = "qcow2";
	e.disk_discard = 1; /* TRIM in the guest: discarded ranges cost nothing */
	/* No DAC relabelling: libvirt would chown the base image (the backing
	 * file) to QEMU's user and leave it so. The qcow2 file is QEMU's. */
	e.disk_norelabel = 1;
	e.memory = s->ram;
	e.memory_size = b->size[CL_MEMORY];
	e.share = "on"; /* the customized RAM lands in the copy */
	e.incoming = 1;
	e.console = con;
	e.kernel = kernel;
	e.initrd = initrd;
	e.vnc_local = 1;
	e.net_run = 1;
	r = cl_domxml_rewrite(xml, len, &e, &newxml);
	if (r == 0)
		r = cl_vm_define(s->conn, newxml, &s->dom);
out:
	free(newxml);
	free(kernel);
	free(initrd);
	return r;
}

static int paths(struct cl_session *s, const struct cl_customize_opts *o)
{
	int n;

	if (strlen(o->name) >= sizeof(s->name) || strchr(o->name, '/'))
		return cl_errorf(-EINVAL, "%s: not a domain name", o->name);
	strcpy(s->name, o->name);
	snprintf(s->outdir, sizeof(s->outdir), "%s", o->outdir);
	n = snprintf(s->work, sizeof(s->work), "%s/.cloudlet-overlay-%ld", o->outdir,
	             (long)getpid());
	if (n < 0 || (size_t)n + 16 >= sizeof(s->work))
		return cl_errorf(-ENAMETOOLONG, "%s: path too long", o->outdir);
	snprintf(s->qcow, sizeof(s->qcow), "%s/disk.qcow2", s->work);
	snprintf(s->ram, sizeof(s->ram), "%s/memory.img", s->work);
	snprintf(s->state, sizeof(s->state), "%s/state", s->work);
	snprintf(s->xml, sizeof(s->xml), "%s/domain.xml", s->work);
	return 0;
}

int cl_session_customize(struct cl_session *s, const struct cl_customize_opts *o)
{
	char sock[sizeof(s->rundir) + 16], *xml = NULL;
	size_t len = 0;
	int r;

	if (!s || !o || !o->image || !o->outdir || !o->name || s->dom || s->base)
		return -EINVAL;
	r = paths(s, o);
	if (r == 0)
		r = cl_base_find(o->image, &s->base);
	if (r == 0 && (!s->base->state_path || !s->base->domain_path))
		r = cl_errorf(-EINVAL, "%s: registered without its device state and domain XML",
		              s->base->path[CL_DISK]);
	if (r == 0)
		r = cl_session_prepare(s, NULL, 0);
	if (r == 0)
		r = make_work(s);
	if (r == 0)
		r = cl_read_file(s->base->domain_path, 16u << 20, (void **)&xml, &len);
	/* The saved overlay keeps the base's NIC in libvirt's form. */
	s->tmpl = xml;
	s->tmpl_len = len;
	if (r == 0)
		r = cl_session_net_check(s, xml, len, o->image, o->publish, o->npublish);
	if (r == 0)
		r = define_custom(s, xml, len);
	if (r < 0)
		return r;
	snprintf(sock, sizeof(sock), "%s/mig-in.sock", s->rundir);
	r = cl_vm_start_paused(s->dom, 0);
	if (r == 0)
		r = cl_migrate_load(s->dom, sock, s->base->state_path, RESUME_TIMEOUT, &s->stop);
	if (r == -ENOTSUP)
		s->hint = "resuming needs QEMU 4.0 or later (migration capability x-ignore-shared)";
	if (r == 0)
		r = cl_session_mac_free(s);
	if (r == 0)
		r = cl_session_publish(s);
	return r == 0 ? cl_vm_resume(s->dom) : r;
}

int cl_session_overlay(struct cl_session *s, const char *trace, struct cl_overlay_stats *st)
{
	struct cl_overlay_opts o = {.level = -1};

	if (!s || !s->base || !st || s->dom)
		return -EINVAL;
	o.state = s->state;
	o.domain = s->xml;
	o.trace = trace;
	/* The offline form, on what the qcow2 holds only. */
	return cl_qcow_overlay_create(s->base, s->qcow, s->ram, s->outdir, &o, st);
}

const char *cl_session_outdir(const struct cl_session *s)
{
	return s->outdir;
}

const char *cl_session_workdir(const struct cl_session *s)
{
	return s->work;
}

int cl_session_keep_snapshot(struct cl_session *s, char *dir, size_t cap)
{
	if (!s || !dir || !s->made_work)
		return -EINVAL;
	/* For inspection: what the overlay was made of. */
	if ((size_t)snprintf(dir, cap, "%s/snapshot", s->outdir) >= cap)
		return -ENAMETOOLONG;
	cl_rundir_remove(dir);
	if (rename(s->work, dir) < 0)
		return cl_errorf(-errno, "%s: %s", dir, strerror(errno));
	s->made_work = 0;
	return 0;
}

void cl_session_custom_end(struct cl_session *s)
{
	if (s->made_work)
		cl_rundir_remove(s->work);
	s->made_work = 0;
	cl_base_free(s->base);
	s->base = NULL;
}
