/* SPDX-License-Identifier: GPL-2.0-only */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "cl_accel.h"
#include "cl_domxml.h"
#include "cl_xml.h"
#include "cl_error.h"
#include "cl_qcow.h"
#include "cl_vm.h"

/* The shape of the XML the real-guest fixtures run with (guestctl.py). */
static const char guest_xml[] =
    "<domain xmlns:qemu=\"http://libvirt.org/schemas/domain/qemu/1.0\" type=\"qemu\">\n"
    "  <name>cl-test-1-custom</name>\n"
    "  <uuid>1b4e28ba-2fa1-11d2-883f-0016d3cca427</uuid>\n"
    "  <memory unit=\"MiB\">256</memory>\n"
    "  <vcpu>1</vcpu>\n"
    "  <os>\n"
    "    <type arch=\"x86_64\" machine=\"pc-i440fx-7.2\">hvm</type>\n"
    "    <kernel>/old/guest/vmlinuz</kernel>\n"
    "    <initrd>/old/guest/initrd.img</initrd>\n"
    "    <cmdline>console=ttyS0 panic=-1 loglevel=4</cmdline>\n"
    "  </os>\n"
    "  <devices>\n"
    "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
    "    <disk type=\"file\" device=\"cdrom\"><source file=\"/old/cd.iso\"/>"
    "<target dev=\"hdc\" bus=\"ide\"/></disk>\n"
    "    <disk type=\"file\" device=\"disk\">\n"
    "      <driver name=\"qemu\" type=\"qcow2\" discard=\"unmap\"/>\n"
    "      <source file=\"/old/custom/disk.img\"/>\n"
    "      <backingStore type=\"file\"><format type=\"raw\"/><source file=\"/old/b\"/>"
    "</backingStore>\n"
    "      <target dev=\"vda\" bus=\"virtio\"/>\n"
    "    </disk>\n"
    "    <serial type=\"unix\">\n"
    "      <source mode=\"bind\" path=\"/run/cloudlet-test/old/console.sock\"/>\n"
    "      <target port=\"0\"/>\n"
    "      <log file=\"/old/custom/console.log\" append=\"off\"/>\n"
    "    </serial>\n"
    "    <console type=\"unix\">\n"
    "      <source mode=\"bind\" path=\"/run/cloudlet-test/old/console.sock\"/>\n"
    "      <target type=\"serial\" port=\"0\"/>\n"
    "    </console>\n"
    "    <graphics type=\"vnc\" port=\"5907\" listen=\"0.0.0.0\"/>\n"
    "    <memballoon model=\"virtio\" freePageReporting=\"on\"/>\n"
    "  </devices>\n"
    "  <qemu:commandline>\n"
    "    <qemu:arg value=\"-object\"/>\n"
    "    <qemu:arg value=\"memory-backend-file,id=cl-ram,size=256M,"
    "mem-path=/old/custom/memory.img,share=on\"/>\n"
    "    <qemu:arg value=\"-machine\"/>\n"
    "    <qemu:arg value=\"memory-backend=cl-ram\"/>\n"
    "    <qemu:arg value=\"-incoming\"/>\n"
    "    <qemu:arg value=\"tcp:0:4444\"/>\n"
    "  </qemu:commandline>\n"
    "</domain>\n";

static char *get(const char *xml, const char *field)
{
	char *v = NULL;
	int r = cl_domxml_get(xml, strlen(xml), field, &v);

	return r == 0 ? v : NULL;
}

static void assert_field(const char *xml, const char *field, const char *want)
{
	char *v = get(xml, field);

	assert_non_null(v);
	assert_string_equal(v, want);
	free(v);
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static struct cl_domxml_edit synthesis_edit(void)
{
	struct cl_domxml_edit e = {
	    .name = "cloudlet-1234abcd",
	    .uuid = "0f8fad5b-d9cb-469f-a165-70867728950e",
	    .type = "kvm",
	    .disk = "/run/cloudlet/x/mnt/disk/image",
	    .disk_norelabel = 1,
	    .memory = "/run/cloudlet/x/mnt/memory/image",
	    .share = "off",
	    .incoming = 1,
	    .console = "/run/cloudlet/x/console.sock",
	    .kernel = "/new/vmlinuz",
	    .initrd = "/new/initrd.img",
	    .vnc_local = 1,
	};
	return e;
}

static void test_get(void **state)
{
	(void)state;
	assert_field(guest_xml, "name", "cl-test-1-custom");
	assert_field(guest_xml, "type", "qemu");
	assert_field(guest_xml, "machine", "pc-i440fx-7.2");
	assert_field(guest_xml, "kernel", "/old/guest/vmlinuz");
	assert_field(guest_xml, "disk", "/old/custom/disk.img"); /* not the cdrom */
	assert_field(guest_xml, "console", "/run/cloudlet-test/old/console.sock");
	assert_field(guest_xml, "log", "/old/custom/console.log");
	assert_field(guest_xml, "mem", "/old/custom/memory.img");
	assert_field(guest_xml, "share", "on");
	assert_field(guest_xml, "size", "256M");
	assert_field(guest_xml, "vnc", "0.0.0.0:5907");
	assert_null(get(guest_xml, "uuidx"));
	assert_null(get("<domain><name>x</name></domain>", "kernel"));
}

static void test_rewrite(void **state)
{
	struct cl_domxml_edit e = synthesis_edit();
	char *out = NULL;

	(void)state;
	assert_int_equal(cl_domxml_rewrite(guest_xml, strlen(guest_xml), &e, &out), 0);
	assert_field(out, "name", e.name);
	assert_field(out, "uuid", e.uuid);
	assert_field(out, "type", "kvm");
	assert_field(out, "kernel", "/new/vmlinuz");
	assert_field(out, "initrd", "/new/initrd.img");
	assert_field(out, "cmdline", "console=ttyS0 panic=-1 loglevel=4");
	assert_field(out, "disk", e.disk);
	assert_field(out, "console", e.console);
	assert_field(out, "mem", e.memory);
	assert_field(out, "share", "off");
	assert_field(out, "size", "256M");
	assert_null(get(out, "log")); /* the old run's log is gone */
	assert_null(get(out, "vnc")); /* autoport: no port until it runs */
	assert_int_equal(count(out, "<uuid>"), 1);
	assert_int_equal(count(out, "1b4e28ba"), 0);
	assert_int_equal(count(out, "/old/custom"), 0);
	assert_int_equal(count(out, "/run/cloudlet-test"), 0);
	assert_int_equal(count(out, "/old/cd.iso"), 1); /* other disks stay */
	assert_int_equal(count(out, "backingStore"), 0);
	assert_int_equal(count(out, "type=\"qcow2\""), 0);
	assert_int_equal(count(out, "<seclabel model=\"dac\" relabel=\"no\"/>"), 1);
	assert_int_equal(count(out, "value=\"-incoming\""), 1);
	assert_int_equal(count(out, "value=\"defer\""), 1);
	assert_int_equal(count(out, "tcp:0:4444"), 0);
	assert_int_equal(count(out, "autoport=\"yes\""), 1);
	assert_int_equal(count(out, "0.0.0.0"), 0);
	assert_int_equal(count(out, "<?xml"), 0);
	free(out);

	/* Back to a snapshot-taking XML: no -incoming, share=on, with a log. */
	e.incoming = 0;
	e.share = "on";
	e.console_log = "/run/cloudlet/x/console.log";
	assert_int_equal(cl_domxml_rewrite(guest_xml, strlen(guest_xml), &e, &out), 0);
	assert_int_equal(count(out, "-incoming"), 0);
	assert_field(out, "share", "on");
	assert_field(out, "log", "/run/cloudlet/x/console.log");
	free(out);
}

static void test_escaping(void **state)
{
	struct cl_domxml_edit e = synthesis_edit();
	char *out = NULL;

	(void)state;
	/* Commas are doubled inside QEMU options; & and < survive XML. */
	e.memory = "/srv/a,b&c<d/memory/image";
	e.disk = "/srv/a,b&c<d/disk/image";
	assert_int_equal(cl_domxml_rewrite(guest_xml, strlen(guest_xml), &e, &out), 0);
	assert_field(out, "mem", e.memory);
	assert_field(out, "disk", e.disk);
	assert_field(out, "share", "off");
	assert_int_equal(count(out, "mem-path=/srv/a,,b&amp;c&lt;d/memory/image,share=off"), 1);
	free(out);
}

static void test_adds_memory_backend(void **state)
{
	static const char plain[] = "<domain type='kvm'><name>p</name>"
	                            "<memory unit='KiB'>1048576</memory>"
	                            "<currentMemory unit='KiB'>524288</currentMemory>"
	                            "<os><type>hvm</type></os><devices><disk type='file'>"
	                            "<source file='/x.img'/><target dev='vda'/></disk>"
	                            "</devices></domain>";
	struct cl_domxml_edit e = synthesis_edit();
	char *out = NULL;

	(void)state;
	e.memory_size = 1u << 30;
	e.kernel = e.initrd = NULL;
	assert_int_equal(cl_domxml_rewrite(plain, strlen(plain), &e, &out), 0);
	assert_field(out, "mem", e.memory);
	assert_field(out, "size", "1073741824");
	assert_field(out, "share", "off");
	assert_int_equal(count(out, "memory-backend=cl-ram"), 1);
	assert_int_equal(count(out, "currentMemory"), 0);
	assert_int_equal(count(out, "xmlns:qemu=\"" CL_QEMU_NS "\""), 1);
	assert_null(get(out, "kernel"));
	free(out);

	e.memory_size = 0; /* nothing says how large */
	assert_int_equal(cl_domxml_rewrite(plain, strlen(plain), &e, &out), -EINVAL);
}

static void test_bad_input(void **state)
{
	struct cl_domxml_edit e = synthesis_edit();
	char *out = NULL;

	(void)state;
	assert_int_equal(cl_domxml_rewrite("<domain><name>x", 15, &e, &out), -EBADMSG);
	assert_int_equal(cl_domxml_rewrite("<dom/>", 6, &e, &out), -EBADMSG);
	assert_int_equal(cl_domxml_rewrite("<domain><name>x</name><os/></domain>", 36, &e, &out),
	                 -EINVAL); /* no disk */
	e.name = NULL;
	assert_int_equal(cl_domxml_rewrite(guest_xml, strlen(guest_xml), &e, &out), -EINVAL);
	assert_int_equal(cl_domxml_get(guest_xml, strlen(guest_xml), "nonsense", &out), -EINVAL);
}

/* The XML an overlay carries is outside input. */
static void replace(char *buf, size_t cap, const char *src, const char *from, const char *to)
{
	const char *p = strstr(src, from);

	assert_non_null(p);
	assert_true(strlen(src) - strlen(from) + strlen(to) < cap);
	snprintf(buf, cap, "%.*s%s%s", (int)(p - src), src, to, p + strlen(from));
}

static void test_outside_input(void **state)
{
	struct cl_domxml_edit e = synthesis_edit();
	static char xml[sizeof(guest_xml) + 512];
	char *out = NULL;

	(void)state;
	/* An undeclared qemu: prefix (libxml2 would recover) is refused:
	 * the element would escape the rewrite. */
	replace(xml, sizeof(xml), guest_xml, "xmlns:qemu=", "xmlns:qemx=");
	assert_int_equal(cl_domxml_rewrite(xml, strlen(xml), &e, &out), -EBADMSG);
	assert_int_equal(cl_domxml_get(xml, strlen(xml), "mem", &out), -EBADMSG);

	/* Extra QEMU arguments (a host file mapped into the guest) go; only
	 * the RAM object and its selection stay. */
	replace(xml, sizeof(xml), guest_xml, "<qemu:commandline>\n",
	        "<qemu:commandline>\n<qemu:arg value=\"-object\"/><qemu:arg value=\""
	        "memory-backend-file,id=x,size=4096,mem-path=/etc/shadow,share=on\"/>"
	        "<qemu:arg value=\"-device\"/><qemu:arg value=\"pc-dimm,memdev=x\"/>"
	        "<qemu:env name=\"LD_PRELOAD\" value=\"/tmp/x.so\"/>\n");
	assert_int_equal(cl_domxml_rewrite(xml, strlen(xml), &e, &out), 0);
	assert_int_equal(count(out, "/etc/shadow"), 0);
	assert_int_equal(count(out, "pc-dimm"), 0);
	assert_int_equal(count(out, "LD_PRELOAD"), 0);
	assert_int_equal(count(out, "<qemu:arg "),
	                 6); /* -object, RAM, -machine, sel, -incoming, defer */
	assert_int_equal(count(out, "memory-backend-file,"), 1);
	assert_int_equal(count(out, "value=\"memory-backend="), 1);
	assert_field(out, "mem", e.memory);
	free(out);

	/* "qemu" bound to another namespace: that command line is not QEMU's;
	 * ours is added under another prefix (with the RAM size given). */
	replace(xml, sizeof(xml), guest_xml, "http://libvirt.org/schemas/domain/qemu/1.0",
	        "urn:other");
	assert_int_equal(cl_domxml_rewrite(xml, strlen(xml), &e, &out), -EINVAL);
	e.memory_size = 256u << 20;
	assert_int_equal(cl_domxml_rewrite(xml, strlen(xml), &e, &out), 0);
	assert_field(out, "mem", e.memory);
	assert_int_equal(
	    count(out, "xmlns:cloudlet-qemu=\"http://libvirt.org/schemas/domain/qemu/1.0\""), 1);
	assert_int_equal(count(out, "<cloudlet-qemu:arg value=\"-incoming\"/>"), 1);
	free(out);
	e.memory_size = 0;

	/* The console is a unix socket's path, not another serial's file. */
	replace(xml, sizeof(xml), guest_xml, "<serial type=\"unix\">", "<serial type=\"file\">");
	assert_int_equal(cl_domxml_get(xml, strlen(xml), "console", &out), -ENOENT);
}

static void quiet(void *ctx, virErrorPtr err)
{
	(void)ctx;
	(void)err;
}

/* libvirt itself takes the rewritten XML (its test driver parses domain
 * XML like the QEMU driver, without running anything). */
static void test_libvirt_parses(void **state)
{
	struct cl_domxml_edit e = synthesis_edit();
	virConnectPtr c;
	virDomainPtr d;
	char *out = NULL, *back;

	(void)state;
	e.type = "test";
	assert_int_equal(cl_domxml_rewrite(guest_xml, strlen(guest_xml), &e, &out), 0);
	virSetErrorFunc(NULL, quiet);
	c = virConnectOpen("test:///default");
	assert_non_null(c);
	d = virDomainDefineXML(c, out);
	if (!d)
		fail_msg("libvirt refused the XML: %s\n%s", virGetLastErrorMessage(), out);
	back = virDomainGetXMLDesc(d, 0);
	assert_non_null(back);
	assert_field(back, "name", e.name);
	assert_field(back, "uuid", e.uuid);
	assert_field(back, "disk", e.disk);
	assert_field(back, "console", e.console);
	assert_int_equal(count(back, "relabel='no'"), 1);
	free(back);
	virDomainUndefine(d);
	virDomainFree(d);
	virConnectClose(c);
	free(out);
}

static void test_uuid(void **state)
{
	char a[37], b[37];

	(void)state;
	assert_int_equal(cl_domxml_uuid(a), 0);
	assert_int_equal(cl_domxml_uuid(b), 0);
	assert_int_equal(strlen(a), 36);
	assert_int_equal(a[14], '4');
	assert_true(strchr("89ab", a[19]) != NULL);
	assert_string_not_equal(a, b);
}

/* The accelerator a saved VM resumes under: the saved one, or a refusal. */
static void test_resume_choose(void **state)
{
	const char *t = NULL;

	(void)state;
	/* Saved under TCG: TCG, even where KVM works. */
	assert_int_equal(cl_accel_resume_choose("qemu", 1, "", NULL, &t), 0);
	assert_string_equal(t, "qemu");
	assert_int_equal(cl_accel_resume_choose(NULL, 0, "", "", &t), 0);
	assert_string_equal(t, "qemu");
	assert_int_equal(cl_accel_resume_choose("qemu", 0, "", "tcg", &t), 0);
	assert_string_equal(t, "qemu");
	/* Saved under KVM: KVM where it works, else refused (no TCG fallback). */
	assert_int_equal(cl_accel_resume_choose("kvm", 1, "", NULL, &t), 0);
	assert_string_equal(t, "kvm");
	t = NULL;
	assert_int_equal(cl_accel_resume_choose("kvm", 0, "/dev/kvm: No such file", NULL, &t),
	                 -ENODEV);
	assert_null(t);
	assert_non_null(strstr(cl_error_msg(), "saved under KVM, which does not work here "
	                                       "(/dev/kvm: No such file)"));
	assert_int_equal(cl_accel_resume_choose("kvm", 1, "", "kvm", &t), 0);
	assert_string_equal(t, "kvm");
	/* CLOUDLET_ACCEL asking for the other one. */
	assert_int_equal(cl_accel_resume_choose("kvm", 1, "", "tcg", &t), -ENODEV);
	assert_non_null(strstr(cl_error_msg(), "saved under KVM, and CLOUDLET_ACCEL=tcg"));
	assert_int_equal(cl_accel_resume_choose("qemu", 1, "", "kvm", &t), -ENODEV);
	assert_int_equal(cl_accel_resume_choose("qemu", 1, "", "xen", &t), -EINVAL);
}

static void test_cpu_and_balloon(void **state)
{
	struct cl_domxml_spec sp = {.name = "n",
	                            .type = "qemu",
	                            .ram_mib = 64,
	                            .vcpus = 1,
	                            .disk = "/d.img",
	                            .memory = "/d.mem",
	                            .console = "/c.sock"};
	char *xml = NULL, *v = NULL;
	virConnectPtr c;
	virDomainPtr d;

	(void)state;
	/* No <cpu>: QEMU's default model. */
	assert_int_equal(cl_domxml_get(guest_xml, strlen(guest_xml), "cpu", &v), 0);
	assert_string_equal(v, "qemu64");
	free(v);
	assert_int_equal(cl_domxml_new(&sp, &xml), 0);
	assert_int_equal(cl_domxml_get(xml, strlen(xml), "cpu", &v), 0);
	assert_string_equal(v, CL_DOMXML_CPU);
	free(v);
	assert_int_equal(count(xml, "freePageReporting=\"on\""), 1);
	/* libvirt's test driver takes it and keeps the model and the balloon. */
	virSetErrorFunc(NULL, quiet);
	c = virConnectOpen("test:///default");
	assert_non_null(c);
	free(xml);
	sp.type = "test";
	sp.cpu = "Westmere";
	sp.no_free_page_reporting = 1;
	assert_int_equal(cl_domxml_new(&sp, &xml), 0);
	d = virDomainDefineXML(c, xml);
	if (!d)
		fail_msg("libvirt refused the XML: %s\n%s", virGetLastErrorMessage(), xml);
	free(xml);
	xml = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE);
	assert_non_null(xml);
	assert_int_equal(cl_domxml_get(xml, strlen(xml), "cpu", &v), 0);
	assert_string_equal(v, "Westmere");
	free(v);
	assert_int_equal(count(xml, "freePageReporting='off'"), 1);
	virDomainUndefine(d);
	virDomainFree(d);
	virConnectClose(c);
	free(xml);
	/* Host CPUs are named by their mode. */
	static const char host[] = "<domain type='kvm'><name>h</name>"
	                           "<cpu mode='host-passthrough'/></domain>";
	assert_int_equal(cl_domxml_get(host, strlen(host), "cpu", &v), 0);
	assert_string_equal(v, "host-passthrough");
	free(v);
}

static void test_discard_edit(void **state)
{
	struct cl_domxml_edit e = {.name = "x", .disk = "/w/disk.qcow2", .disk_format = "qcow2"};
	static const char plain[] =
	    "<domain type='qemu'><name>a</name><devices>"
	    "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
	    "<source file='/b.img'/><target dev='vda'/></disk></devices>"
	    "</domain>";
	char *out = NULL;

	(void)state;
	assert_int_equal(cl_domxml_rewrite(plain, strlen(plain), &e, &out), 0);
	assert_int_equal(count(out, "discard"), 0);
	free(out);
	e.disk_discard = 1;
	assert_int_equal(cl_domxml_rewrite(plain, strlen(plain), &e, &out), 0);
	assert_int_equal(count(out, "discard=\"unmap\""), 1);
	assert_int_equal(count(out, "type=\"qcow2\""), 1);
	free(out);
}

/* qemu-img map --output=json of a qcow2 on a raw backing file (QEMU 7.2). */
static void test_qcow_map(void **state)
{
	static const char map[] =
	    "[{ \"start\": 0, \"length\": 65536, \"depth\": 0, \"present\": true, \"zero\": "
	    "false, \"data\": true, \"offset\": 327680},\n"
	    "{ \"start\": 65536, \"length\": 65536, \"depth\": 0, \"present\": true, "
	    "\"zero\": false, \"data\": true, \"offset\": 393216},\n"
	    "{ \"start\": 131072, \"length\": 65536, \"depth\": 0, \"present\": true, "
	    "\"zero\": true, \"data\": false},\n"
	    "{ \"start\": 196608, \"length\": 851968, \"depth\": 1, \"present\": true, "
	    "\"zero\": false, \"data\": true, \"offset\": 196608},\n"
	    "{ \"start\": 1048576, \"length\": 131072, \"depth\": 0, \"present\": true, "
	    "\"zero\": true, \"data\": false},\n"
	    "{ \"start\": 1179648, \"length\": 65536, \"depth\": 0, \"present\": true, "
	    "\"zero\": true, \"data\": false},\n"
	    "{ \"start\": 1245184, \"length\": 3948544, \"depth\": 1, \"present\": false, "
	    "\"zero\": true, \"data\": false},\n"
	    "{ \"start\": 5193728, \"length\": 65536, \"depth\": 0, \"present\": false, "
	    "\"zero\": true, \"data\": false}]\n";
	static const char compressed[] = "[{ \"start\": 0, \"length\": 65536, \"depth\": 0, "
	                                 "\"zero\": false, \"data\": true}]";
	static const char gap[] = "[{ \"start\": 0, \"length\": 512, \"depth\": 0, \"zero\": "
	                          "true, \"data\": false},{ \"start\": 1024, \"length\": 512, "
	                          "\"depth\": 0, \"zero\": true, \"data\": false}]";
	struct cl_extent *x = NULL;
	uint64_t size = 0;
	size_t n = 0;

	(void)state;
	assert_int_equal(cl_qcow_parse_map(map, strlen(map), "m", &x, &n, &size), 0);
	assert_int_equal(size, 5259264);
	/* Contiguous data merged, depth 1 left out, adjacent zeros merged. */
	assert_int_equal(n, 3);
	assert_int_equal(x[0].start, 0);
	assert_int_equal(x[0].length, 131072);
	assert_int_equal(x[0].offset, 327680);
	assert_false(x[0].zero);
	assert_int_equal(x[1].start, 131072);
	assert_true(x[1].zero);
	assert_int_equal(x[2].start, 1048576);
	assert_int_equal(x[2].length, 196608);
	assert_true(x[2].zero);
	free(x);
	assert_int_equal(cl_qcow_parse_map("[]", 2, "m", &x, &n, &size), 0);
	assert_int_equal(n, 0);
	assert_int_equal(size, 0);
	free(x);
	assert_int_equal(cl_qcow_parse_map(compressed, strlen(compressed), "m", &x, &n, &size),
	                 -ENOTSUP);
	assert_int_equal(cl_qcow_parse_map(gap, strlen(gap), "m", &x, &n, &size), -EBADMSG);
	assert_int_equal(cl_qcow_parse_map(map, 100, "m", &x, &n, &size), -EBADMSG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_get),
	    cmocka_unit_test(test_rewrite),
	    cmocka_unit_test(test_escaping),
	    cmocka_unit_test(test_adds_memory_backend),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_outside_input),
	    cmocka_unit_test(test_libvirt_parses),
	    cmocka_unit_test(test_uuid),
	    cmocka_unit_test(test_resume_choose),
	    cmocka_unit_test(test_cpu_and_balloon),
	    cmocka_unit_test(test_discard_edit),
	    cmocka_unit_test(test_qcow_map),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
