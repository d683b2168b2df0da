/* SPDX-License-Identifier: GPL-2.0-only */
/* VM life cycle through libvirt (see cl_vm.h). */
#include "cl_vm.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_qmp.h"
#include "cl_util.h"

#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/virterror.h>

#define QEMU_USER    "libvirt-qemu"
#define QEMU_PID_DIR "/run/libvirt/qemu" /* libvirt's system driver */

static void quiet(void *ctx, virErrorPtr err)
{
	(void)ctx;
	(void)err;
}

const char *cl_vm_error(void)
{
	const char *m = virGetLastErrorMessage();

	return m && *m ? m : "unknown libvirt error";
}

/* "domain NAME: WHAT: libvirt's message" as the error. The message is
 * copied first: virDomainGetName() resets libvirt's last error. */
int cl_vm_dom_error(virDomainPtr d, const char *what)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "%s", cl_vm_error());
	return cl_errorf(-EIO, "domain %s: %s%s%s", virDomainGetName(d), what, *what ? ": " : "",
	                 msg);
}

/* libvirt asks multithreaded programs to initialize it explicitly. */
static void init_libvirt(void)
{
	virInitialize();
}

int cl_vm_connect(const char *uri, virConnectPtr *out)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	virConnectPtr c;

	if (!out)
		return -EINVAL;
	pthread_once(&once, init_libvirt);
	if (!uri)
		uri = getenv("CLOUDLET_LIBVIRT_URI");
	if (!uri || !*uri)
		uri = CL_VM_DEFAULT_URI;
	virSetErrorFunc(NULL, quiet);
	c = virConnectOpen(uri);
	if (!c)
		return cl_errorf(-ECONNREFUSED, "%s: cannot connect to libvirt: %s", uri,
		                 cl_vm_error());
	*out = c;
	return 0;
}

int cl_vm_conf_value(const char *text, const char *key, char *out, size_t cap)
{
	const char *p, *v, *end;
	size_t klen, vlen;
	int r = -ENOENT;

	if (!text || !key || !out || !cap)
		return -EINVAL;
	klen = strlen(key);
	for (p = text; *p; p = *end ? end + 1 : end) {
		end = p + strcspn(p, "\n");
		v = p + strspn(p, " \t");
		if (strncmp(v, key, klen) || !strchr(" \t=", v[klen]))
			continue;
		v += klen + strspn(v + klen, " \t");
		if (*v++ != '=')
			continue;
		v += strspn(v, " \t");
		/* "quoted" or a bare word up to a comment; the last one counts */
		if (*v == '"')
			vlen = strcspn(++v, "\"\n");
		else
			vlen = strcspn(v, " \t#\n");
		if (vlen >= cap)
			return -ENAMETOOLONG;
		snprintf(out, cap, "%.*s", (int)vlen, v);
		r = 0;
	}
	return r;
}

int cl_vm_qemu_conf(const char *key, char *out, size_t cap)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	r = cl_read_file(CL_VM_QEMU_CONF, 1u << 20, (void **)&text, &len);
	if (r == -ENOENT || r == -EACCES)
		return r; /* Debian's is 0600 root: other users assume the default */
	if (r < 0)
		return cl_errorf(r, "%s: %s", CL_VM_QEMU_CONF, strerror(-r));
	r = cl_vm_conf_value(text, key, out, cap);
	free(text);
	return r;
}

/* The password entry of libvirt's `user =` ("+UID" is a uid), else of
 * QEMU_USER, else of root. */
static int qemu_passwd(struct passwd *pwbuf, char *buf, size_t cap, struct passwd **pw)
{
	char name[64];
	int r;

	*pw = NULL;
	r = cl_vm_qemu_conf("user", name, sizeof(name));
	if (r < 0 && r != -ENOENT && r != -EACCES)
		return r;
	if (r == 0 && name[0] == '+')
		getpwuid_r((uid_t)strtoul(name + 1, NULL, 10), pwbuf, buf, cap, pw);
	else if (r == 0)
		getpwnam_r(name, pwbuf, buf, cap, pw);
	if (r == 0 && !*pw)
		return cl_errorf(-ENOENT, "%s: user = \"%s\": no such user", CL_VM_QEMU_CONF, name);
	if (!*pw && (getpwnam_r(QEMU_USER, pwbuf, buf, cap, pw) != 0 || !*pw))
		getpwuid_r(0, pwbuf, buf, cap, pw);
	if (!*pw)
		return cl_errorf(-ENOENT, "no user %s nor root in the password database",
		                 QEMU_USER);
	return 0;
}

int cl_vm_qemu_user(uid_t *uid, gid_t *gid, char *group, size_t cap, char *user, size_t ucap)
{
	struct passwd pwbuf, *pw = NULL;
	struct group grbuf, *gr = NULL;
	char buf[16384]; /* the _r forms: sessions look this up on several threads */
	int r;

	if (!uid || !gid || !group)
		return -EINVAL;
	r = qemu_passwd(&pwbuf, buf, sizeof(buf), &pw);
	if (r < 0)
		return r;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (user && (size_t)snprintf(user, ucap, "%s", pw->pw_name) >= ucap)
		return -ENAMETOOLONG;
	if (getgrgid_r(*gid, &grbuf, buf, sizeof(buf), &gr) != 0 || !gr)
		return cl_errorf(-ENOENT, "user %ld: no group %ld", (long)*uid, (long)*gid);
	if ((size_t)snprintf(group, cap, "%s", gr->gr_name) >= cap)
		return -ENAMETOOLONG;
	return 0;
}

/* --- domains ------------------------------------------------------------- */

int cl_vm_define(virConnectPtr c, const char *xml, virDomainPtr *out)
{
	char name[256] = "";
	virDomainPtr d;
	const char *p, *q;

	if (!c || !xml || !out)
		return -EINVAL;
	p = strstr(xml, "<name>");
	q = p ? strstr(p, "</name>") : NULL;
	if (p && q && q - p - 6 < (long)sizeof(name))
		snprintf(name, sizeof(name), "%.*s", (int)(q - p - 6), p + 6);
	if (*name && (d = virDomainLookupByName(c, name))) {
		virDomainFree(d);
		return cl_errorf(-EEXIST, "domain %s: the name is in use", name);
	}
	d = virDomainDefineXML(c, xml);
	if (!d)
		return cl_errorf(-EINVAL, "domain %s: libvirt refused it: %s", name, cl_vm_error());
	*out = d;
	return 0;
}

int cl_vm_start_paused(virDomainPtr d, int postcopy)
{
	if (!d)
		return -EINVAL;
	if (virDomainCreateWithFlags(d, VIR_DOMAIN_START_PAUSED) < 0)
		return cl_vm_dom_error(d, "cannot start");
	return postcopy ? cl_qmp_postcopy_ram(d) : cl_qmp_ignore_shared(d);
}

int cl_vm_alive(virDomainPtr d)
{
	int state, reason;

	if (virDomainGetState(d, &state, &reason, 0) < 0)
		return cl_vm_dom_error(d, "");
	return state != VIR_DOMAIN_SHUTOFF && state != VIR_DOMAIN_CRASHED &&
	       state != VIR_DOMAIN_NOSTATE;
}

int cl_vm_resume(virDomainPtr d)
{
	return virDomainResume(d) < 0 ? cl_vm_dom_error(d, "cannot resume") : 0;
}

int cl_vm_mac_user(virConnectPtr c, const char *mac, const char *self, char *name, size_t cap)
{
	virDomainPtr *doms = NULL;
	char *xml, *macs;
	int n, i, found = 0;

	n = virConnectListAllDomains(c, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
	if (n < 0)
		return cl_errorf(-EIO, "cannot list the running domains: %s", cl_vm_error());
	for (i = 0; i < n; i++) {
		const char *dn = virDomainGetName(doms[i]);

		if (!found && dn && strcmp(dn, self) && (xml = virDomainGetXMLDesc(doms[i], 0))) {
			macs = NULL;
			if (cl_domxml_get(xml, strlen(xml), "macs", &macs) == 0 &&
			    strcasestr(macs, mac)) {
				snprintf(name, cap, "%s", dn);
				found = 1;
			}
			free(macs);
			free(xml);
		}
		virDomainFree(doms[i]);
	}
	free(doms);
	return found;
}

/* Whether process pid is the QEMU of domain name: libvirt names the domain
 * early on its command line (-name guest=NAME,...), so a pid file left by a
 * QEMU that is gone never gets another process killed. */
static int is_qemu_of(long pid, const char *name)
{
	char path[64], buf[4096], want[300];
	size_t n, i, k;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	k = (size_t)snprintf(want, sizeof(want), "guest=%s,", name);
	for (i = 0; i < n; i += strlen(buf + i) + 1)
		if (!strncmp(buf + i, want, k))
			return 1;
	return 0;
}

/* The QEMU of domain name from libvirt's pid file of the system driver
 * (written by root: the trusted source); where there is none (another
 * driver keeps its files elsewhere), the one process whose command line
 * names the domain as QEMU's does. 0 if none (or several) is found. */
static long find_qemu(const char *name)
{
	char path[256], buf[32], *end;
	long pid = 0, p;
	struct dirent *e;
	FILE *f;
	DIR *d;

	snprintf(path, sizeof(path), "%s/%s.pid", QEMU_PID_DIR, name);
	f = fopen(path, "re");
	if (f) {
		if (fgets(buf, sizeof(buf), f))
			pid = strtol(buf, NULL, 10);
		fclose(f);
		return pid > 1 && is_qemu_of(pid, name) ? pid : 0;
	}
	d = opendir("/proc");
	while (d && (e = readdir(d))) {
		p = strtol(e->d_name, &end, 10);
		if (*end || p <= 1 || !is_qemu_of(p, name))
			continue;
		if (pid) {
			pid = 0; /* two: neither is known to be it */
			break;
		}
		pid = p;
	}
	if (d)
		closedir(d);
	return pid;
}

int cl_vm_qemu_pid(virDomainPtr d, long *pid)
{
	const char *name;

	if (!d || !pid || !(name = virDomainGetName(d)))
		return -EINVAL;
	*pid = find_qemu(name);
	if (*pid)
		return 0;
	return cl_errorf(-ESRCH, "domain %s: no QEMU process of it (%s/%s.pid, /proc)", name,
	                 QEMU_PID_DIR, name);
}

int cl_vm_kill(virDomainPtr d)
{
	const char *name;
	long pid;

	if (!d || !(name = virDomainGetName(d)))
		return -EINVAL;
	pid = find_qemu(name); /* quiet: a QEMU already gone is no error here */
	if (pid)
		kill((pid_t)pid, SIGKILL);
	if (virDomainDestroy(d) < 0 && cl_vm_alive(d) != 0)
		return cl_vm_dom_error(d, "cannot destroy");
	return 0;
}

int cl_vm_remove(virDomainPtr d)
{
	int r = 0;

	if (!d)
		return 0;
	if (virDomainIsActive(d) == 1 && virDomainDestroy(d) < 0)
		r = cl_vm_dom_error(d, "cannot destroy");
	if (virDomainUndefine(d) < 0 && r == 0)
		r = cl_vm_dom_error(d, "cannot undefine");
	virDomainFree(d);
	return r;
}
