/* SPDX-License-Identifier: GPL-2.0-only */
/* A synthesis session: mount the overlay lazily and resume its VM early
 * under libvirt (see cl_session.h). */
#include "cl_session_priv.h"
#include "cl_base.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_host.h"
#include "cl_pcmode.h"
#include "cl_mount.h"
#include "cl_source.h"
#include "cl_synth.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESUME_TIMEOUT   300.0  /* seconds for the device state to load */
#define COMPLETE_TIMEOUT 3600.0 /* no early start: for the whole overlay */
#define MAX_MOUNT_OPTS   32

/* Why a mount failed, for the hint: the daemon said what failed, this
 * says what to do. The meta is loaded only now, so that a synthesis that
 * works fetches it once (over a slow link that counts). */
static const char *diagnose(struct cl_session *s, const struct cl_synthesis_opts *o,
                            const struct cl_base *b)
{
	struct cl_meta *m = NULL;
	char want[2 * CL_SHA256_LEN + 1];
	char *loc = NULL;

	if (cl_meta_load(o->overlay, &m, &loc) < 0)
		return cl_source_is_url(o->overlay)
		           ? "is the server up and the URL right? (`cloudlet info URL` "
		             "fetches only the meta)"
		           : "OVERLAY is an overlay-meta file or the directory holding it";
	if (cl_synth_check_base(m, b, loc) < 0) {
		cl_hex(m->base_id, CL_SHA256_LEN, want);
		want[16] = '\0';
		snprintf(s->hint_buf, sizeof(s->hint_buf),
		         "this overlay needs base %s, not %s; `cloudlet list-base` lists the "
		         "registered bases",
		         want, b->path[CL_DISK]);
	} else {
		snprintf(s->hint_buf, sizeof(s->hint_buf),
		         "try `cloudlet mount %s %s DIR -f -d` to see more", o->image, o->overlay);
	}
	cl_meta_free(m);
	free(loc);
	return s->hint_buf;
}

/* The overlay must carry what resuming needs. */
static int check_mount(struct cl_session *s, uint64_t *memsize)
{
	static const char *const need[] = {CL_BLOB_STATE, CL_BLOB_DOMAIN, "memory/image"};
	char path[PATH_MAX + 16];
	struct stat st;
	size_t i;

	for (i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", s->mnt, need[i]);
		if (stat(path, &st) < 0)
			return cl_errorf(-ENOENT,
			                 "%s: the overlay carries no %s: it cannot resume a VM",
			                 s->overlay,
			                 i == 0   ? "device state"
			                 : i == 1 ? "domain XML"
			                          : "memory image");
	}
	*memsize = (uint64_t)st.st_size;
	return 0;
}

static int do_mount(struct cl_session *s, const struct cl_synthesis_opts *o,
                    const struct cl_base *b)
{
	const char *opts[1 + MAX_MOUNT_OPTS];
	struct cl_mount_opts mo = {.image = o->image, .overlay = o->overlay, .opts = opts};
	char own[128];
	size_t i;
	int r, st = 1;

	if (o->nmount_opts > MAX_MOUNT_OPTS)
		return cl_errorf(-E2BIG, "more than %d mount option lists", MAX_MOUNT_OPTS);
	if (!s->mnt[0]) {
		snprintf(s->mnt, sizeof(s->mnt), "%s/mnt", s->rundir);
		if (mkdir(s->mnt, 0750) < 0)
			return cl_errorf(-errno, "%s: %s", s->mnt, strerror(errno));
		s->made_mnt = 1;
	}
	/* QEMU (in that group) may open the images, nobody else. */
	snprintf(own, sizeof(own), "allow_other,default_permissions,gid=%s", s->group);
	mo.mnt = s->mnt;
	opts[mo.nopts++] = own;
	for (i = 0; i < o->nmount_opts; i++)
		opts[mo.nopts++] = o->mount_opts[i];
	r = cl_mount_start(&mo, &st);
	if (r < 0)
		cl_session_notice(s, r == -ENOENT ? "build it, or install it in PATH" : NULL);
	if (r < 0 || st != 0) {
		/* cloudletfs said why; the hint adds what to do. */
		s->hint = diagnose(s, o, b);
		s->said = 1;
		return cl_errorf(-EIO, "%s: cloudletfs did not mount (see above)", s->mnt);
	}
	s->mounted = 1;
	return 0;
}

/* --- the overlay's XML and state, read while the domain starts ------------ */

/* The overlay's domain XML, and its device state read once to the end so
 * that QEMU finds it in the cache: a thread does both while the domain
 * starts, since both may come over the network. */
struct prefetch {
	pthread_t th;
	int started;
	char xml_path[PATH_MAX + 16], state_path[PATH_MAX + 16];
	char *xml; /* the caller's after prefetch_join */
	size_t len;
	int r;
	char msg[512];
};

static int read_through(const char *path)
{
	char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno != EINTR) {
			r = cl_errorf(-errno, "%s: %s", path, strerror(errno));
			break;
		}
	}
	close(fd);
	return r;
}

static void *prefetch_run(void *arg)
{
	struct prefetch *p = arg;

	p->r = cl_read_file(p->xml_path, 16u << 20, (void **)&p->xml, &p->len);
	if (p->r == 0)
		p->r = read_through(p->state_path);
	if (p->r < 0)
		snprintf(p->msg, sizeof(p->msg), "%s", cl_error_msg());
	return NULL;
}

/* Without a thread the join reads both itself. */
static void prefetch_start(struct prefetch *p, const char *mnt)
{
	snprintf(p->xml_path, sizeof(p->xml_path), "%s/domain.xml", mnt);
	snprintf(p->state_path, sizeof(p->state_path), "%s/state", mnt);
	p->started = pthread_create(&p->th, NULL, prefetch_run, p) == 0;
}

/* Hands over the overlay's XML (*xml, the caller frees it). Once the mount
 * is gone a read still running fails at once, so joining after the
 * teardown never waits long. */
static int prefetch_join(struct prefetch *p, char **xml, size_t *len)
{
	if (p->started) {
		pthread_join(p->th, NULL);
		p->started = 0;
		if (p->r < 0)
			cl_errorf(p->r, "%s", p->msg);
	} else if (!p->xml && !p->r) {
		prefetch_run(p);
	}
	if (xml) {
		*xml = p->xml;
		*len = p->len;
		p->xml = NULL;
	}
	return p->r;
}

/* --- the domain ------------------------------------------------------------- */

/* Defines the domain of template tmpl (len bytes): the VM on the mounted
 * disk and memory images, resumed under the type it was saved under. */
static int define_domain(struct cl_session *s, const struct cl_base *b, const char *tmpl,
                         size_t len, uint64_t memsize)
{
	struct cl_domxml_edit e = {0};
	char disk[PATH_MAX + 16], mem[PATH_MAX + 16], con[sizeof(s->rundir) + 16];
	char path[sizeof(s->rundir) + 16];
	char *kernel = NULL, *initrd = NULL, *newxml = NULL;
	int r;

	r = cl_rundir_boot_files(b, tmpl, len, &kernel, &initrd);
	if (r < 0) {
		s->hint = "put the base's kernel and initrd into its registry directory or next "
		          "to its disk image";
		return r;
	}
	/* The device state loads only under what it was saved under. */
	r = cl_accel_resume_type(s->conn, b, tmpl, len, kernel, initrd, &s->type, &s->hint);
	if (r < 0)
		goto out;
	snprintf(disk, sizeof(disk), "%s/disk/image", s->mnt);
	snprintf(mem, sizeof(mem), "%s/memory/image", s->mnt);
	snprintf(con, sizeof(con), "%s/console.sock", s->rundir);
	e.name = s->name;
	e.uuid = s->uuid;
	e.type = s->type;
	e.disk = disk;
	e.disk_norelabel = 1;
	e.memory = s->postcopy ? s->pcram : mem;
	e.memory_size = memsize;
	/* mmap: a private mapping, guest writes never reach the file;
	 * postcopy: the VM's own file, into which the pages arrive */
	e.share = s->postcopy ? "on" : "off";
	e.incoming = 1;
	e.console = con;
	e.console_log = NULL;
	e.kernel = kernel;
	e.initrd = initrd;
	e.vnc_local = 1;
	e.net_run = 1;
	r = cl_domxml_rewrite(tmpl, len, &e, &newxml);
	if (r < 0)
		goto out;
	snprintf(path, sizeof(path), "%s/domain.xml", s->rundir);
	r = cl_write_file_atomic(path, newxml, strlen(newxml), 0640);
	if (r < 0)
		goto out;
	r = cl_vm_define(s->conn, newxml, &s->dom);
	if (r == -EEXIST)
		s->hint = "choose another with --name";
out:
	free(newxml);
	free(initrd);
	free(kernel);
	return r;
}

/* The overlay's own XML (len bytes) must resume under the type the domain
 * was started with, and with its base's CPU model. */
static int same_type(struct cl_session *s, const struct cl_base *b, const char *xml, size_t len,
                     const char *image)
{
	const char *otype;
	int r;

	r = cl_accel_resume_type(s->conn, b, xml, len, NULL, NULL, &otype, &s->hint);
	if (r < 0)
		return r;
	if (strcmp(otype, s->type))
		return cl_errorf(-EINVAL,
		                 "%s: the VM was saved under %s, its base %s under %s: its device "
		                 "state would not load",
		                 s->overlay, !strcmp(otype, "kvm") ? "KVM" : "TCG", image,
		                 !strcmp(s->type, "kvm") ? "KVM" : "TCG");
	return 0;
}

/* --no-early-start: every segment in before the VM starts. */
static int wait_complete(struct cl_session *s)
{
	struct cl_session_event ev = {0};
	double t = cl_now();
	char state[32];
	int r;

	for (;;) {
		r = cl_session_progress(s, &ev, state);
		if (r < 0)
			return cl_errorf(r, "%s/status: %s", s->mnt, strerror(-r));
		if (!strcmp(state, "complete"))
			return 0;
		if (!strcmp(state, "failed"))
			return cl_errorf(-EIO, "%s: the overlay cannot be fetched (see %s/status)",
			                 s->overlay, s->mnt);
		if (s->stop)
			return cl_errorf(-EINTR, "interrupted while fetching the overlay");
		if (cl_now() - t > COMPLETE_TIMEOUT)
			return cl_errorf(-ETIMEDOUT, "overlay not complete within %.0f s",
			                 COMPLETE_TIMEOUT);
		cl_session_nap(s, CL_SESSION_TICK_MS);
	}
}

/* Starts the defined domain paused and loads the overlay's device state
 * into it; xml is the overlay's XML when already read. */
static int resume(struct cl_session *s, const struct cl_base *b, const char *image,
                  struct prefetch *pf, char **xml, size_t *len)
{
	char state[PATH_MAX + 16], sock[sizeof(s->rundir) + 16];
	double t_start = cl_now();
	int r;

	r = cl_vm_start_paused(s->dom, s->postcopy);
	if (r == -ENOTSUP)
		s->hint = "resuming needs QEMU 4.0 or later (migration capability x-ignore-shared)";
	if (r < 0)
		return r;
	cl_session_emit(s, CL_SESSION_DOMAIN_STARTED, cl_now() - t_start);
	if (!*xml && (r = prefetch_join(pf, xml, len)) < 0)
		return r;
	r = same_type(s, b, *xml, *len, image);
	if (r < 0)
		return r;
	snprintf(state, sizeof(state), "%s/state", s->mnt);
	snprintf(sock, sizeof(sock), "%s/mig-in.sock", s->rundir);
	if (s->postcopy)
		r = cl_pcmode_load(s->dom, sock, s->mnt, RESUME_TIMEOUT, &s->stop);
	else
		r = cl_migrate_load(s->dom, sock, state, RESUME_TIMEOUT, &s->stop);
	unlink(sock);
	/* Two sessions may have checked the MAC at once: now one of them runs. */
	if (r == 0)
		r = cl_session_mac_free(s);
	if (r == 0)
		r = cl_session_publish(s);
	return r == 0 ? cl_vm_resume(s->dom) : r;
}

/* Mounted: defines the domain from the base's registered XML and resumes
 * it. The overlay's XML and state come over the network: they are
 * fetched while the domain starts, and the overlay's XML must agree with
 * the base's before its state is loaded. */
static int run_vm(struct cl_session *s, const struct cl_synthesis_opts *o, const struct cl_base *b,
                  uint64_t memsize)
{
	struct prefetch pf = {0};
	char *xml = NULL;
	size_t len = 0;
	int r = 0;

	prefetch_start(&pf, s->mnt);
	if (o->no_early_start)
		r = prefetch_join(&pf, &xml, &len);
	if (r == 0)
		r = define_domain(s, b, s->tmpl, s->tmpl_len, memsize);
	if (r == 0 && o->no_early_start) {
		r = wait_complete(s);
		if (r == 0) {
			cl_session_emit(s, CL_SESSION_COMPLETE, 0);
			s->said_complete = 1;
		}
	}
	if (r == 0)
		r = resume(s, b, o->image, &pf, &xml, &len);
	if (pf.started) {
		/* A failure: the mount goes first, so that the join never waits
		 * long; the failure's message stays the one to report. */
		char msg[1024];
		const char *hint = NULL;

		snprintf(msg, sizeof(msg), "%s", cl_error_msg());
		if (r < 0 && cl_mount_stop(s->mnt, 30, NULL, &hint) == 0)
			s->mounted = 0;
		prefetch_join(&pf, NULL, NULL);
		cl_errorf(r, "%s", msg);
	}
	free(pf.xml);
	free(xml);
	return r;
}

/* The VM runs as its base's registered XML says: an overlay's XML is
 * outside input (its hardware is the base's anyway) and is only compared. */
static int base_xml(struct cl_session *s, const struct cl_base *b)
{
	if (!b->domain_path) {
		s->hint = "register the base with --state and --domain, or boot it with `cloudlet "
		          "base IMAGE --kernel ...`";
		return cl_errorf(
		    -EINVAL,
		    "%s: registered without its domain XML: an overlay's own is outside "
		    "input and is not run",
		    b->path[CL_DISK]);
	}
	return cl_read_file(b->domain_path, 16u << 20, (void **)&s->tmpl, &s->tmpl_len);
}

/* A host that makes libvirt slow shows in the domain start: said first. */
static void host_warning(struct cl_session *s)
{
	char line[512];

	if (!cl_host_warning(line, sizeof(line)))
		return;
	cl_errorf(0, "%s", line);
	cl_session_notice(s, CL_HOST_KVM_HINT);
}

int cl_session_synthesis(struct cl_session *s, const struct cl_synthesis_opts *o)
{
	struct cl_base *b = NULL;
	uint64_t memsize = 0;
	int r;

	if (!s || !o || !o->image || !o->overlay || s->conn)
		return -EINVAL;
	if (o->name && (!*o->name || strlen(o->name) >= sizeof(s->name) || o->name[0] == '.' ||
	                strchr(o->name, '/')))
		return cl_errorf(-EINVAL, "%s: not a domain name", o->name);
	if (o->mount && !realpath(o->mount, s->mnt))
		return cl_errorf(-errno, "%s: %s", o->mount, strerror(errno));
	s->overlay = strdup(o->overlay);
	if (!s->overlay)
		return -ENOMEM;
	s->synth = 1;
	r = cl_base_find(o->image, &b);
	if (r == 0)
		r = base_xml(s, b);
	if (r == 0)
		r = cl_domxml_uuid(s->uuid);
	if (r < 0)
		goto out;
	snprintf(s->name, sizeof(s->name), o->name ? "%s" : "cloudlet-%.8s",
	         o->name ? o->name : s->uuid);
	host_warning(s);
	r = cl_session_prepare(s, o->uri, 1);
	if (r == 0)
		r = cl_session_net_check(s, s->tmpl, s->tmpl_len, o->image, o->publish,
		                         o->npublish);
	if (r == 0)
		r = cl_session_pc_pick(s, o->memory);
	if (r == 0)
		r = do_mount(s, o, b);
	if (r < 0)
		goto out;
	cl_session_emit(s, CL_SESSION_MOUNTED, 0);
	r = check_mount(s, &memsize);
	if (r == 0)
		r = cl_session_pc_ram(s, o->memory, memsize);
	if (r == 0)
		r = run_vm(s, o, b, memsize);
	if (r < 0)
		goto out;
	s->running = 1;
	cl_session_emit(s, CL_SESSION_RESUMED, 0);
	/* Re-attaching needs it; a VM that runs without it still runs. */
	if (cl_session_record(s) < 0)
		cl_session_notice(s, NULL);
out:
	cl_base_free(b);
	return r;
}
