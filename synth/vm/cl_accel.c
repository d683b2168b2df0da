/* SPDX-License-Identifier: GPL-2.0-only */
/* Which accelerator runs a VM here (see cl_accel.h). */
#include "cl_accel.h"
#include "cl_base.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_util.h"
#include "cl_vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxml/entities.h>

#define PROBE_TIMEOUT 20.0 /* seconds a KVM guest gets to reach its init */
#define PROBE_MEM_MIB 256
#define ACCEL_CACHE   CL_VM_RUN_DIR "/accel" /* the probe's answer for this boot */

/* /dev/kvm opens and speaks the stable API. */
static int kvm_device(char *why, size_t cap)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), v;

	if (fd < 0) {
		snprintf(why, cap, "/dev/kvm: %s", strerror(errno));
		return 0;
	}
	v = ioctl(fd, KVM_GET_API_VERSION, 0);
	close(fd);
	if (v != KVM_API_VERSION) {
		snprintf(why, cap, "/dev/kvm: API version %d, expected %d", v, KVM_API_VERSION);
		return 0;
	}
	return 1;
}

/* Whether the log file holds a line showing the kernel got past early boot
 * (where KVM guests hang on some hosts). */
static int kernel_progressed(const char *log)
{
	static const char *const marks[] = {"Freeing unused kernel", "Run /init", "Kernel panic",
	                                    NULL};
	size_t len = 0, i;
	void *buf = NULL;
	int hit = 0;

	if (cl_read_file(log, 16u << 20, &buf, &len) < 0)
		return 0;
	for (i = 0; marks[i] && !hit; i++)
		hit = memmem(buf, len, marks[i], strlen(marks[i])) != NULL;
	free(buf);
	return hit;
}

/* Boots kernel (+ initrd) under KVM with no disk and waits, bounded, until
 * it gets past early boot. 1 yes, 0 no (why says), -errno on failure. */
static atomic_uint probes; /* names each probe domain apart */

static int kvm_boot_probe(virConnectPtr c, const char *kernel, const char *initrd, char *why,
                          size_t cap)
{
	char dir[] = CL_VM_RUN_DIR "/kvmprobe.XXXXXX", log[64], group[64], name[64];
	char *xml = NULL, *initrd_el = NULL;
	xmlChar *k = NULL, *i = NULL;
	virDomainPtr d = NULL;
	uid_t uid;
	gid_t gid;
	double t0;
	int ok = 0, r;

	r = cl_vm_qemu_user(&uid, &gid, group, sizeof(group), NULL, 0);
	if (r < 0)
		return r;
	if (cl_mkdir_p(CL_VM_RUN_DIR, 0755) < 0 || !mkdtemp(dir))
		return cl_errorf(-errno, "%s: %s", CL_VM_RUN_DIR, strerror(errno));
	/* QEMU writes the serial log there. */
	if (chown(dir, 0, gid) < 0 || chmod(dir, 0770) < 0) {
		r = cl_errorf(-errno, "%s: %s", dir, strerror(errno));
		goto out;
	}
	snprintf(log, sizeof(log), "%s/console.log", dir);
	/* Unique per probe: sessions of one process may probe at once. */
	snprintf(name, sizeof(name), "cloudlet-kvmprobe-%ld-%u", (long)getpid(),
	         atomic_fetch_add(&probes, 1));
	/* Paths go into element content: libxml2 escapes what needs it. */
	k = xmlEncodeSpecialChars(NULL, (const xmlChar *)kernel);
	i = xmlEncodeSpecialChars(NULL, (const xmlChar *)(initrd ? initrd : ""));
	if (!k || !i || asprintf(&initrd_el, initrd ? "<initrd>%s</initrd>" : "%s", i) < 0 ||
	    asprintf(&xml,
	             "<domain type='kvm'><name>%s</name><memory unit='MiB'>%d</memory>"
	             "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type><kernel>%s</kernel>%s"
	             "<cmdline>console=ttyS0 loglevel=7 panic=-1</cmdline></os>"
	             "<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>"
	             "<on_crash>destroy</on_crash><devices>"
	             "<serial type='file'><source path='%s'/><target port='0'/></serial>"
	             "<memballoon model='none'/></devices></domain>",
	             name, PROBE_MEM_MIB, k, initrd_el, log) < 0) {
		r = -ENOMEM;
		goto out;
	}
	d = virDomainCreateXML(c, xml, 0);
	if (!d) {
		snprintf(why, cap, "libvirt refused a kvm domain: %s", cl_vm_error());
		r = 0;
		goto out;
	}
	t0 = cl_now();
	while (!(ok = kernel_progressed(log)) && cl_now() - t0 < PROBE_TIMEOUT &&
	       virDomainIsActive(d) == 1)
		cl_sleep_ms(250);
	if (!ok)
		snprintf(why, cap, "a KVM guest did not get through its boot within %.0f s",
		         PROBE_TIMEOUT);
	r = ok;
out:
	if (d) {
		virDomainDestroy(d);
		virDomainFree(d);
	}
	unlink(log);
	rmdir(dir);
	free(xml);
	free(initrd_el);
	xmlFree(i);
	xmlFree(k);
	return r;
}

/* This host boot's id into boot[cap] ("" if unknown). */
static void boot_id(char *boot, size_t cap)
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = -1;

	if (fd >= 0) {
		n = read(fd, boot, cap - 1);
		close(fd);
	}
	boot[n > 0 ? n : 0] = '\0';
	boot[strcspn(boot, "\n")] = '\0';
}

/* The boot probe's answer kept for this host boot: 1 KVM, 0 not (why
 * says), -ENOENT when not probed since boot. */
static int cached(const char *boot, char *why, size_t cap)
{
	char line[512], *t;
	size_t n = strlen(boot);
	FILE *f;
	int hit;

	f = fopen(ACCEL_CACHE, "re");
	if (!f)
		return -ENOENT;
	/* "BOOT_ID kvm|qemu WHY" */
	hit = fgets(line, sizeof(line), f) && n && !strncmp(line, boot, n) && line[n] == ' ';
	fclose(f);
	if (!hit)
		return -ENOENT;
	line[strcspn(line, "\n")] = '\0';
	t = line + n + 1;
	if (!strncmp(t, "kvm", 3))
		return 1;
	snprintf(why, cap, "%s (cached in %s)", t + (strlen(t) > 5 ? 5 : 0), ACCEL_CACHE);
	return 0;
}

/* KVM usable here? The answer of the boot probe is kept per host boot. */
static int kvm_usable(virConnectPtr c, const char *kernel, const char *initrd, char *why,
                      size_t cap)
{
	char boot[64], line[512];
	int r;

	if (!kvm_device(why, cap))
		return 0;
	if (!kernel)
		return 1; /* nothing to boot: trust the device */
	boot_id(boot, sizeof(boot));
	r = cached(boot, why, cap);
	if (r >= 0)
		return r;
	r = kvm_boot_probe(c, kernel, initrd, why, cap);
	if (r < 0)
		return r;
	/* Whole or not at all: sessions of one process may write it at once. */
	snprintf(line, sizeof(line), "%s %s %s\n", boot, r ? "kvm" : "qemu", r ? "" : why);
	cl_write_file_atomic(ACCEL_CACHE, line, strlen(line), 0644);
	return r;
}

int cl_accel_known(const char **type, char *why, size_t cap)
{
	const char *env = getenv("CLOUDLET_ACCEL");
	char boot[64];
	int r;

	if (!type || !why || !cap)
		return -EINVAL;
	why[0] = '\0';
	*type = NULL;
	if (env && *env) {
		if (strcmp(env, "kvm") && strcmp(env, "tcg") && strcmp(env, "qemu"))
			return cl_errorf(-EINVAL, "CLOUDLET_ACCEL=%s: expected kvm or tcg", env);
		*type = !strcmp(env, "kvm") ? "kvm" : "qemu";
		snprintf(why, cap, "CLOUDLET_ACCEL=%s", env);
		return 0;
	}
	if (!kvm_device(why, cap)) {
		*type = "qemu";
		return 0;
	}
	boot_id(boot, sizeof(boot));
	r = cached(boot, why, cap);
	if (r >= 0)
		*type = r ? "kvm" : "qemu";
	return 0;
}

int cl_accel_pick(virConnectPtr c, const char *xml_type, const char *kernel, const char *initrd,
                  const char **type, char *why, size_t cap)
{
	const char *env = getenv("CLOUDLET_ACCEL");
	int r;

	if (!type || !why)
		return -EINVAL;
	why[0] = '\0';
	if (env && *env) {
		if (!strcmp(env, "kvm"))
			*type = "kvm";
		else if (!strcmp(env, "tcg") || !strcmp(env, "qemu"))
			*type = "qemu";
		else
			return cl_errorf(-EINVAL, "CLOUDLET_ACCEL=%s: expected kvm or tcg", env);
		return 0;
	}
	if (!xml_type || strcmp(xml_type, "kvm")) {
		*type = "qemu";
		return 0;
	}
	r = kvm_usable(c, kernel, initrd, why, cap);
	if (r < 0)
		return r;
	*type = r ? "kvm" : "qemu";
	return 0;
}

static const char *accel_name(const char *type)
{
	return !strcmp(type, "kvm") ? "KVM" : "TCG";
}

int cl_accel_resume_choose(const char *saved_type, int kvm_ok, const char *why, const char *env,
                           const char **type)
{
	const char *saved = saved_type && !strcmp(saved_type, "kvm") ? "kvm" : "qemu", *want;

	if (!type)
		return -EINVAL;
	if (env && *env) {
		if (!strcmp(env, "kvm"))
			want = "kvm";
		else if (!strcmp(env, "tcg") || !strcmp(env, "qemu"))
			want = "qemu";
		else
			return cl_errorf(-EINVAL, "CLOUDLET_ACCEL=%s: expected kvm or tcg", env);
		if (strcmp(want, saved))
			return cl_errorf(-ENODEV,
			                 "the VM was saved under %s, and CLOUDLET_ACCEL=%s asks "
			                 "for %s: its device state would not load",
			                 accel_name(saved), env, accel_name(want));
	} else if (!strcmp(saved, "kvm") && !kvm_ok) {
		return cl_errorf(-ENODEV,
		                 "the VM was saved under KVM, which does not work here (%s): its "
		                 "device state would not load under TCG",
		                 why && *why ? why : "no reason given");
	}
	*type = saved;
	return 0;
}

int cl_accel_resume_type(virConnectPtr c, const struct cl_base *b, const char *xml, size_t len,
                         const char *kernel, const char *initrd, const char **type,
                         const char **hint)
{
	char *saved = NULL, *cpu = NULL, *base_cpu = NULL, *bx = NULL, why[512] = "";
	const char *env = getenv("CLOUDLET_ACCEL");
	size_t blen = 0;
	int r, kvm_ok = 0;

	r = cl_domxml_get(xml, len, "cpu", &cpu);
	if (r == 0 && b->domain_path) {
		r = cl_read_file(b->domain_path, 16u << 20, (void **)&bx, &blen);
		if (r == 0)
			r = cl_domxml_get(bx, blen, "cpu", &base_cpu);
		if (r == 0 && strcmp(cpu, base_cpu)) {
			r = cl_errorf(-ENODEV,
			              "the VM was saved with CPU model %s, its base %s with %s",
			              cpu, b->path[0], base_cpu);
			*hint = "make the overlay again from this base (`cloudlet overlay IMAGE`)";
		}
	}
	if (r < 0)
		goto out;
	if (cl_domxml_get(xml, len, "type", &saved) == -ENOENT)
		saved = NULL;
	if (saved && !strcmp(saved, "kvm") && !(env && *env)) {
		r = kvm_usable(c, kernel, initrd, why, sizeof(why));
		if (r < 0)
			goto out;
		kvm_ok = r;
	}
	r = cl_accel_resume_choose(saved, kvm_ok, why, env, type);
	if (r == -ENODEV)
		*hint = saved && !strcmp(saved, "kvm")
		            ? "resume it where KVM works, or make the base under TCG "
		              "(CLOUDLET_ACCEL=tcg cloudlet base ...)"
		            : "unset CLOUDLET_ACCEL: a VM saved under TCG resumes under TCG";
out:
	free(saved);
	free(cpu);
	free(base_cpu);
	free(bx);
	return r;
}
