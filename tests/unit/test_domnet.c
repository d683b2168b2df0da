/* SPDX-License-Identifier: GPL-2.0-only */
/* Guest networking in domain XML (cl_domnet, through cl_domxml) and the
 * parsing of --network and --publish (cl_net). */
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

#include "cl_domxml.h"
#include "cl_net.h"

/* A base registered from files: libvirt's own user interface, as
 * `virsh dumpxml` writes it (no restrict, no forwards). */
static const char libvirt_xml[] =
    "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
    "<name>elsewhere</name><memory unit='MiB'>64</memory>"
    "<os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os><devices>"
    "<disk type='file' device='disk'><source file='/d.img'/><target dev='vda' bus='virtio'/>"
    "<address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>"
    "<interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/>"
    "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/></interface>"
    "</devices><qemu:commandline><qemu:arg value='-object'/>"
    "<qemu:arg value='memory-backend-file,id=cl-ram,size=64M,mem-path=/m,share=on'/>"
    "<qemu:arg value='-machine'/><qemu:arg value='memory-backend=cl-ram'/>"
    "<qemu:arg value='-netdev'/><qemu:arg value='user,id=x,hostfwd=tcp::22-:22'/>"
    "</qemu:commandline></domain>";

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static char *field(const char *xml, const char *name)
{
	char *v = NULL;

	return cl_domxml_get(xml, strlen(xml), name, &v) == 0 ? v : NULL;
}

static void assert_field(const char *xml, const char *name, const char *want)
{
	char *v = field(xml, name);

	if (!v || strcmp(v, want))
		fail_msg("%s: want %s, got %s\n%s", name, want, v ? v : "(none)", xml);
	free(v);
}

static char *run_xml(const char *xml)
{
	struct cl_domxml_edit e = {.name = "run", .net_run = 1};
	char *out = NULL;

	assert_int_equal(cl_domxml_rewrite(xml, strlen(xml), &e, &out), 0);
	return out;
}

static char *new_xml(const char *net)
{
	struct cl_domxml_spec sp = {.name = "n",
	                            .type = "qemu",
	                            .ram_mib = 64,
	                            .vcpus = 1,
	                            .disk = "/d.img",
	                            .memory = "/d.mem",
	                            .console = "/c.sock"};
	char *xml = NULL;

	assert_int_equal(cl_net_parse(net, &sp.net), 0);
	assert_int_equal(cl_domxml_new(&sp, &xml), 0);
	return xml;
}

/* A new base's NIC is in libvirt's form, at fixed PCI slots. */
static void test_new(void **state)
{
	char *xml = new_xml("user"), *mac = field(xml, "mac");

	(void)state;
	assert_field(xml, "net", "user");
	assert_non_null(mac);
	assert_int_equal(strncmp(mac, "52:54:00:", 9), 0);
	assert_int_equal(count(xml, "<interface type=\"user\">"), 1);
	assert_int_equal(count(xml, "slot=\"0x03\""), 1);
	assert_int_equal(count(xml, "slot=\"0x04\""), 1);
	assert_int_equal(count(xml, "slot=\"0x05\""), 1);
	assert_int_equal(count(xml, "restrict"), 0);
	free(mac);
	free(xml);
	xml = new_xml("none");
	assert_field(xml, "net", "none");
	assert_int_equal(count(xml, "<interface"), 0);
	free(xml);
	xml = new_xml("nat");
	assert_field(xml, "net", "nat");
	free(xml);
	xml = new_xml("bridge=clbr0");
	assert_field(xml, "net", "bridge");
	assert_int_equal(count(xml, "bridge=\"clbr0\""), 1);
	free(xml);
	xml = new_xml("libvirt=default");
	assert_field(xml, "net", "libvirt");
	assert_int_equal(count(xml, "network=\"default\""), 1);
	free(xml);
}

/* A run confines a user NIC with cloudlet's own arguments, same device,
 * same MAC, same slot; an overlay's own netdev arguments are gone. */
static void test_run_confined(void **state)
{
	char *out = run_xml(libvirt_xml);

	(void)state;
	assert_int_equal(count(out, "<interface"), 0);
	assert_int_equal(count(out, "value=\"user,id=cl-hostnet0,restrict=on\""), 1);
	assert_int_equal(count(out, "value=\"virtio-net-pci,netdev=cl-hostnet0,id=cl-net0,"
	                            "mac=52:54:00:aa:bb:cc,bus=pci.0,addr=0x7\""),
	                 1);
	assert_int_equal(count(out, "hostfwd"), 0);
	assert_int_equal(count(out, "restrict=off"), 0);
	free(out);
}

/* nat: the base's metadata opens outbound connections. */
static void test_run_nat(void **state)
{
	char *xml = new_xml("nat"), *out;

	(void)state;
	out = run_xml(xml);
	assert_int_equal(count(out, "restrict=off"), 1);
	assert_int_equal(count(out, "restrict=on"), 0);
	free(out);
	free(xml);
}

/* A bridge stays libvirt's. */
static void test_run_bridge(void **state)
{
	char *xml = new_xml("bridge=clbr0"), *out = run_xml(xml);

	(void)state;
	assert_int_equal(count(out, "<interface type=\"bridge\">"), 1);
	assert_int_equal(count(out, "-netdev"), 0);
	free(out);
	free(xml);
}

/* What a run cannot express is refused, not dropped. */
static void test_run_refuses(void **state)
{
	static const char *const bad[] = {
	    "<interface type='user'><model type='virtio'/><address type='pci' domain='0x0000' "
	    "bus='0x00' slot='0x07' function='0x0'/></interface>", /* no MAC */
	    "<interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/>"
	    "</interface>", /* no address */
	    "<interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='ne2k_isa'/>"
	    "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>"
	    "</interface>", /* a model it cannot write */
	    "<interface type='user'><mac address='52:54:00:aa:bb:cc,x=y'/><model type='virtio'/>"
	    "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>"
	    "</interface>", /* an argument smuggled in the MAC */
	    "<interface type='ethernet'><mac address='52:54:00:aa:bb:cc'/></interface>",
	    "<interface type='user'><mac address=' 2:54:00:aa:bb:cc'/><model type='virtio'/>"
	    "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>"
	    "</interface>", /* sscanf would take it */
	    "<interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/>"
	    "<ip address='192.168.7.0' prefix='24'/>"
	    "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>"
	    "</interface>", /* slirp's network moved: dropped silently, the lease would lie */
	    "<interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/>"
	    "<mtu size='9000'/>"
	    "<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>"
	    "</interface>", /* a device feature the state needs */
	};
	char xml[1024], *out;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct cl_domxml_edit e = {.name = "run", .net_run = 1};

		snprintf(xml, sizeof(xml),
		         "<domain type='qemu'><name>x</name><devices>%s</devices></domain>",
		         bad[i]);
		out = NULL;
		if (cl_domxml_rewrite(xml, strlen(xml), &e, &out) != -EINVAL)
			fail_msg("accepted: %s\n%s", bad[i], out ? out : "");
	}
}

/* Saving: libvirt's view of a run has no interface (cloudlet gave it to
 * QEMU); the saved XML gets the template's back, and no -netdev. */
static void test_save_keeps_nic(void **state)
{
	char *tmpl = new_xml("nat"), *live = run_xml(tmpl), *saved = NULL;
	struct cl_domxml_edit e = {.name = "n", .net_from = tmpl};

	(void)state;
	e.net_from_len = strlen(tmpl);
	assert_int_equal(count(live, "<interface"), 0);
	assert_int_equal(cl_domxml_rewrite(live, strlen(live), &e, &saved), 0);
	assert_int_equal(count(saved, "<interface type=\"user\">"), 1);
	assert_int_equal(count(saved, "-netdev"), 0);
	assert_field(saved, "net", "nat");
	{
		char *a = field(tmpl, "mac"), *b = field(saved, "mac");

		assert_string_equal(a, b);
		free(a);
		free(b);
	}
	free(saved);
	free(live);
	free(tmpl);
}

/* libvirt reads every <devices> and <qemu:commandline>; the rewrite edits
 * the first: a second would slip an unconfined NIC or arguments past it
 * (an overlay's XML is parsed too, to compare it with its base's). */
static void test_duplicate_parts(void **state)
{
	static const char *const dup[] = {
	    "<devices/><devices><interface type='bridge'><source bridge='br0'/></interface>"
	    "</devices>",
	    "<qemu:commandline/><qemu:commandline><qemu:arg value='-netdev'/>"
	    "<qemu:arg value='user,id=x'/></qemu:commandline>",
	    "<metadata/><metadata><cloudlet:network xmlns:cloudlet='urn:x-cloudlet:domain:1' "
	    "outbound='on'/></metadata>",
	    "<os/><os/>",
	};
	char xml[1024], *out;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(dup) / sizeof(dup[0]); i++) {
		struct cl_domxml_edit e = {.name = "run", .net_run = 1};

		snprintf(
		    xml, sizeof(xml),
		    "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"
		    "<name>x</name>%s</domain>",
		    dup[i]);
		out = NULL;
		if (cl_domxml_rewrite(xml, strlen(xml), &e, &out) != -EBADMSG)
			fail_msg("accepted: %s\n%s", dup[i], out ? out : "");
	}
}

/* Several NICs: cloudlet's ids count its own; a bridge beside them keeps
 * libvirt's; no model is libvirt's x86 default; buses are libvirt's names. */
static void test_shapes(void **state)
{
	static const char xml[] =
	    "<domain type='qemu'><name>x</name>"
	    "<os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os><devices>"
	    "<interface type='user'><mac address='52:54:00:00:00:01'/>"
	    "<address type='pci' domain='0x0000' bus='0x00' slot='0x03' "
	    "function='0x0'/></interface>"
	    "<interface type='bridge'><mac address='52:54:00:00:00:02'/><source bridge='br0'/>"
	    "</interface>"
	    "<interface type='user'><mac address='52:54:00:00:00:03'/><model type='e1000'/>"
	    "<address type='pci' domain='0x0000' bus='0x02' slot='0x00' "
	    "function='0x1'/></interface>"
	    "</devices></domain>";
	char *out = run_xml(xml);

	(void)state;
	assert_int_equal(count(out, "rtl8139,netdev=cl-hostnet0,id=cl-net0,mac=52:54:00:00:00:01,"
	                            "bus=pcie.0,addr=0x3\""),
	                 1);
	assert_int_equal(count(out, "e1000,netdev=cl-hostnet1,id=cl-net1,mac=52:54:00:00:00:03,"
	                            "bus=pci.2,addr=0x0.0x1\""),
	                 1);
	assert_int_equal(count(out, "<interface type=\"bridge\">"), 1);
	free(out);
}

static void quiet(void *ctx, virErrorPtr err)
{
	(void)ctx;
	(void)err;
}

/* libvirt takes a new base with each kind of NIC and the run's XML. */
static void test_libvirt_parses(void **state)
{
	static const char *const nets[] = {"user", "nat", "bridge=clbr0", "none"};
	virConnectPtr c;
	virDomainPtr d;
	size_t i;

	(void)state;
	virSetErrorFunc(NULL, quiet);
	c = virConnectOpen("test:///default");
	assert_non_null(c);
	for (i = 0; i < 4; i++) {
		char *xml = new_xml(nets[i]), *out = run_xml(xml), *back;
		const char *both[2] = {xml, out};

		for (int k = 0; k < 2; k++) {
			char *x = strdup(both[k]), *p = strstr(x, "type=\"qemu\"");

			memcpy(p, "type=\"test\"", 11);
			d = virDomainDefineXML(c, x);
			if (!d)
				fail_msg("libvirt refused: %s\n%s", virGetLastErrorMessage(), x);
			back = virDomainGetXMLDesc(d, VIR_DOMAIN_XML_INACTIVE);
			assert_non_null(back);
			if (k == 0 && i == 1)
				assert_field(back, "net", "nat"); /* libvirt keeps the metadata */
			free(back);
			virDomainUndefine(d);
			virDomainFree(d);
			free(x);
		}
		free(out);
		free(xml);
	}
	virConnectClose(c);
}

static void test_macs(void **state)
{
	static const char two[] =
	    "<domain type='qemu'><name>x</name><devices>"
	    "<interface type='bridge'><mac address='52:54:00:00:00:01'/></interface>"
	    "<interface type='network'><mac address='52:54:00:00:00:02'/></interface>"
	    "</devices></domain>";

	(void)state;
	assert_field(two, "macs", "52:54:00:00:00:01 52:54:00:00:00:02");
	assert_field(two, "net", "bridge");
	assert_field(libvirt_xml, "net", "user");
	assert_field(libvirt_xml, "mac", "52:54:00:aa:bb:cc");
}

static void test_net_parse(void **state)
{
	static const char *const bad[] = {
	    "", "usr", "bridge=", "bridge=a/b", "bridge=waytoolongbridgename", "libvirt="};
	struct cl_net n;
	size_t i;

	(void)state;
	assert_int_equal(cl_net_parse("bridge=br0", &n), 0);
	assert_int_equal(n.kind, CL_NET_BRIDGE);
	assert_string_equal(n.source, "br0");
	assert_int_equal(cl_net_parse("libvirt=default", &n), 0);
	assert_int_equal(n.kind, CL_NET_LIBVIRT);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(cl_net_parse(bad[i], &n), -EINVAL);
}

static void test_publish_parse(void **state)
{
	static const char *const bad[] = {
	    "80",       "a:80:80",  "1.2.3.4:80", "8080:0",    "8080:x",
	    ":8080:80", "70000:80", "8080:80:",   "::8080:80", "1.2.3.4.5:8080:80"};
	struct cl_publish p;
	char url[64];
	size_t i;

	(void)state;
	assert_int_equal(cl_publish_parse("8080:80", &p), 0);
	assert_string_equal(p.addr, "127.0.0.1");
	assert_int_equal(p.host_port, 8080);
	assert_int_equal(p.guest_port, 80);
	cl_publish_url(&p, url, sizeof(url));
	assert_string_equal(url, "http://127.0.0.1:8080");
	assert_int_equal(cl_publish_parse("0.0.0.0:0:22", &p), 0);
	assert_string_equal(p.addr, "0.0.0.0");
	assert_int_equal(p.host_port, 0);
	p.host_port = 40000;
	cl_publish_url(&p, url, sizeof(url));
	assert_string_equal(url, "tcp://0.0.0.0:40000");
	assert_int_equal(cl_publish_parse("80:80", &p), -EACCES);
	assert_int_equal(cl_publish_parse("1023:80", &p), -EACCES);
	assert_int_equal(cl_publish_parse("1024:80", &p), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (cl_publish_parse(bad[i], &p) == 0)
			fail_msg("accepted --publish %s", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_new),
	    cmocka_unit_test(test_run_confined),
	    cmocka_unit_test(test_run_nat),
	    cmocka_unit_test(test_run_bridge),
	    cmocka_unit_test(test_run_refuses),
	    cmocka_unit_test(test_save_keeps_nic),
	    cmocka_unit_test(test_libvirt_parses),
	    cmocka_unit_test(test_macs),
	    cmocka_unit_test(test_net_parse),
	    cmocka_unit_test(test_publish_parse),
	    cmocka_unit_test(test_duplicate_parts),
	    cmocka_unit_test(test_shapes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
