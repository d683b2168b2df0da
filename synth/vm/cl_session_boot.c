/* SPDX-License-Identifier: GPL-2.0-only */
/* The boot session of cloudlet base: a raw disk booted under libvirt with
 * its RAM in a file, to be set up and saved as a base (see cl_session.h). */
#include "cl_session_priv.h"
#include "cl_base.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int make_ram_file(const char *path, uint64_t size, uid_t uid, gid_t gid)
{
	int fd, r = 0;

	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0660);
	if (fd < 0)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)size) < 0 || fchown(fd, uid, gid) < 0 || fchmod(fd, 0660) < 0)
		r = cl_errorf(-errno, "%s: %s", path, strerror(errno));
	close(fd);
	return r;
}

/* KVM if it works here, else TCG, said in a NOTICE. */
static int boot_accel(struct cl_session *s, const struct cl_boot_opts *o)
{
	char why[512], msg[700];
	int r;

	r = cl_accel_pick(s->conn, "kvm", o->kernel, o->initrd, &s->type, why, sizeof(why));
	if (r < 0 || strcmp(s->type, "qemu"))
		return r;
	snprintf(msg, sizeof(msg), "notice: %s; using TCG (domain type qemu)",
	         *why ? why : "CLOUDLET_ACCEL says so");
	cl_errorf(0, "%s", msg);
	cl_session_notice(s, NULL);
	return 0;
}

/* The XML to define: the template with its NIC given to QEMU by cloudlet. */
static int run_xml(struct cl_session *s, char **out)
{
	struct cl_domxml_edit e = {.name = s->name, .net_run = 1};

	return cl_domxml_rewrite(s->tmpl, s->tmpl_len, &e, out);
}

int cl_session_boot(struct cl_session *s, const struct cl_boot_opts *o)
{
	struct cl_domxml_spec spec = {0};
	char con[sizeof(s->rundir) + 16], *xml = NULL;
	int r;

	if (!s || !o || !o->image || !o->name || strlen(o->name) >= sizeof(s->name) ||
	    strchr(o->name, '/') || s->dom)
		return -EINVAL;
	strcpy(s->name, o->name);
	snprintf(s->ram, sizeof(s->ram), "%s.memory", o->image);
	snprintf(s->state, sizeof(s->state), "%s.state", o->image);
	snprintf(s->xml, sizeof(s->xml), "%s.domain.xml", o->image);
	r = cl_session_prepare(s, NULL, 0);
	if (r == 0)
		r = boot_accel(s, o);
	if (r == 0)
		r = make_ram_file(s->ram, (uint64_t)o->ram_mib << 20, s->uid, s->gid);
	if (r < 0)
		return r;
	snprintf(con, sizeof(con), "%s/console.sock", s->rundir);
	spec.name = s->name;
	spec.type = s->type;
	spec.ram_mib = o->ram_mib;
	spec.vcpus = o->vcpus;
	spec.kernel = o->kernel;
	spec.initrd = o->initrd;
	spec.cmdline = o->kernel && !o->cmdline ? "console=ttyS0" : o->cmdline;
	spec.disk = o->image;
	spec.memory = s->ram;
	spec.console = con;
	spec.vnc = 1;
	spec.no_free_page_reporting = o->no_free_memory;
	spec.net = o->net;
	r = cl_domxml_new(&spec, &s->tmpl);
	if (r == 0) {
		s->tmpl_len = strlen(s->tmpl);
		r = cl_session_net_check(s, s->tmpl, s->tmpl_len, o->image, NULL, 0);
	}
	if (r == 0)
		r = run_xml(s, &xml);
	if (r == 0)
		r = cl_vm_define(s->conn, xml, &s->dom);
	free(xml);
	if (r == 0 && virDomainCreate(s->dom) < 0) {
		r = cl_errorf(-EIO, "domain %s: cannot start: %s", s->name, cl_vm_error());
		s->hint = "QEMU runs as libvirt-qemu: it must be able to reach IMAGE's directory";
	}
	return r;
}

/* Kernel and initrd go into the base's registry directory, and its domain
 * XML names them by file name: the directory then travels whole to
 * another cloudlet (cl_rundir_boot_files looks there first). */
static int copy_boot_files(const struct cl_base *b, const char *files[2], const char *names[2])
{
	char *to = NULL, group[64];
	uid_t uid;
	gid_t gid;
	int i, r;

	r = cl_vm_qemu_user(&uid, &gid, group, sizeof(group), NULL, 0);
	for (i = 0; i < 2 && files[i] && r == 0; i++) {
		names[i] = strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : files[i];
		if (asprintf(&to, "%s/%s", b->dir, names[i]) < 0)
			return -ENOMEM;
		r = cl_session_copy_sparse(files[i], to, 0, gid); /* QEMU's group reads it */
		free(to);
	}
	return r;
}

int cl_session_keep_boot_files(const char *image, const char *kernel, const char *initrd, char *dir,
                               size_t cap)
{
	const char *files[2] = {kernel, initrd}, *names[2] = {NULL, NULL};
	struct cl_domxml_edit e = {0};
	char *xml = NULL, *out = NULL, *name = NULL, *uuid = NULL;
	struct cl_base *b = NULL;
	size_t len;
	int r;

	if (!image || !kernel || !dir)
		return -EINVAL;
	r = cl_base_find(image, &b);
	if (r < 0)
		return r;
	r = copy_boot_files(b, files, names);
	if (r == 0)
		r = cl_read_file(b->domain_path, 16u << 20, (void **)&xml, &len);
	if (r == 0 && (r = cl_domxml_get(xml, len, "name", &name)) == 0) {
		cl_domxml_get(xml, len, "uuid", &uuid);
		e.name = name;
		e.uuid = uuid;
		e.kernel = names[0];
		e.initrd = names[1];
		r = cl_domxml_rewrite(xml, len, &e, &out);
	}
	if (r == 0)
		r = cl_write_file_atomic(b->domain_path, out, strlen(out), 0644);
	/* The registration is complete: hash the XML, kernel and initrd into
	 * base.conf, checked before use from now on. */
	if (r == 0)
		r = cl_base_seal(b);
	if (r == 0)
		snprintf(dir, cap, "%s", b->dir);
	free(xml);
	free(out);
	free(name);
	free(uuid);
	cl_base_free(b);
	return r;
}
