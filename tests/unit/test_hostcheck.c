/* SPDX-License-Identifier: GPL-2.0-only */
/* The pure parts of `cloudlet check` (cl_hostcheck, cl_vm's qemu.conf
 * reader): QEMU's --version line, the postcopy version rule, libvirt's
 * `key = value` lines, and finding a program that is not installed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cl_hostcheck.h"
#include "cl_util.h"
#include "cl_vm.h"

static void test_parse_version(void **state)
{
	unsigned long v = 0;

	(void)state;
	/* Debian 12's, with the copyright line after it */
	assert_int_equal(cl_host_qemu_parse_version(
	                     "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"
	                     "Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project "
	                     "developers\n",
	                     &v),
	                 0);
	assert_int_equal(v, 7002022);
	/* upstream builds: no suffix; a .0 release may say only X.Y */
	assert_int_equal(cl_host_qemu_parse_version("QEMU emulator version 8.2.0\n", &v), 0);
	assert_int_equal(v, 8002000);
	assert_int_equal(cl_host_qemu_parse_version("QEMU emulator version 9.1", &v), 0);
	assert_int_equal(v, 9001000);
	assert_int_equal(cl_host_qemu_parse_version("QEMU emulator version 7.2.0-rc4", &v), 0);
	assert_int_equal(v, 7002000);
}

static void test_parse_version_refuses(void **state)
{
	static const char *const bad[] = {
	    "",
	    "qemu-img version 7.2.22",
	    "QEMU emulator version ",
	    "QEMU emulator version 7",
	    "QEMU emulator version 7.",
	    "QEMU emulator version -7.2.0",
	    "QEMU emulator version  7.2.0",
	    "QEMU emulator version 7.x",
	    "QEMU emulator version 1000.2.0",
	    "QEMU emulator version 7.2.1000",
	};
	unsigned long v = 42;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(cl_host_qemu_parse_version(bad[i], &v), -EINVAL);
		assert_int_equal(v, 42);
	}
	assert_int_equal(cl_host_qemu_parse_version(NULL, &v), -EINVAL);
	assert_int_equal(cl_host_qemu_parse_version("QEMU emulator version 7.2.0", NULL), -EINVAL);
}

static void test_postcopy_versions(void **state)
{
	char why[256];

	(void)state;
	assert_int_equal(cl_host_postcopy_version_ok(7002000, why, sizeof(why)), 0);
	assert_int_equal(cl_host_postcopy_version_ok(7002022, why, sizeof(why)), 0);
	assert_int_equal(cl_host_postcopy_version_ok(7002999, NULL, 0), 0);
	/* its neighbours, either side */
	assert_int_equal(cl_host_postcopy_version_ok(7001000, why, sizeof(why)), -ENOTSUP);
	assert_string_equal(why, "QEMU 7.1.0: postcopy memory runs on QEMU 7.2 only, the stream "
	                         "format the tests cover");
	assert_int_equal(cl_host_postcopy_version_ok(8000000, why, sizeof(why)), -ENOTSUP);
	assert_non_null(strstr(why, "QEMU 8.0.0:"));
	assert_int_equal(cl_host_postcopy_version_ok(6002000, NULL, 0), -ENOTSUP);
	assert_int_equal(cl_host_postcopy_version_ok(0, why, sizeof(why)), -ENOTSUP);
}

static void test_conf_value(void **state)
{
	/* as Debian ships it, then a set value, a later one, a bare word */
	static const char conf[] = "# user = \"root\"\n"
	                           "#user = \"libvirt-qemu\"\n"
	                           "   #group = \"libvirt-qemu\"\n"
	                           "user = \"qemu\"\n"
	                           "username = \"nobody\"\n"
	                           "  user=\"+64055\"   # libvirt-qemu by uid\n"
	                           "clear_emulator_capabilities = 0  # keep them\n";
	char out[64];

	(void)state;
	assert_int_equal(cl_vm_conf_value(conf, "user", out, sizeof(out)), 0);
	assert_string_equal(out, "+64055");
	assert_int_equal(cl_vm_conf_value(conf, "clear_emulator_capabilities", out, sizeof(out)),
	                 0);
	assert_string_equal(out, "0");
	assert_int_equal(cl_vm_conf_value(conf, "group", out, sizeof(out)), -ENOENT);
	assert_int_equal(cl_vm_conf_value(conf, "use", out, sizeof(out)), -ENOENT);
	assert_int_equal(cl_vm_conf_value("", "user", out, sizeof(out)), -ENOENT);
	assert_int_equal(cl_vm_conf_value("user\n= \"x\"", "user", out, sizeof(out)), -ENOENT);
	assert_int_equal(cl_vm_conf_value(conf, "user", out, 4), -ENAMETOOLONG);
	assert_int_equal(cl_vm_conf_value(NULL, "user", out, sizeof(out)), -EINVAL);
}

/* A configuration file as cl_vm_qemu_conf reads it: its last line without
 * a newline is parsed within the buffer (ASan read past it before
 * cl_read_file ended its buffer with a NUL). */
static void test_conf_file(void **state)
{
	static const char conf[] = "group = \"kvm\"\nuser = qemu";
	char path[] = "/tmp/cl-test-conf-XXXXXX", out[64];
	size_t len = 0;
	char *text = NULL;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, conf, sizeof(conf) - 1), (ssize_t)sizeof(conf) - 1);
	close(fd);
	assert_int_equal(cl_read_file(path, 1u << 20, (void **)&text, &len), 0);
	unlink(path);
	assert_int_equal(len, sizeof(conf) - 1);
	assert_int_equal(text[len], '\0');
	assert_int_equal(cl_vm_conf_value(text, "user", out, sizeof(out)), 0);
	assert_string_equal(out, "qemu");
	free(text);
}

/* A PATH of one directory that holds only `qemu-fake`, a script that
 * prints a version line. */
static void test_which(void **state)
{
	char dir[] = "/tmp/cl-which.XXXXXX", prog[64], out[256];
	const char *old = getenv("PATH");
	char *saved = old ? strdup(old) : NULL;
	unsigned long v = 0;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(prog, sizeof(prog), "%s/qemu-fake", dir);
	f = fopen(prog, "w");
	assert_non_null(f);
	fputs("#!/bin/sh\necho 'QEMU emulator version 7.2.5 (fake)'\necho Copyright\n", f);
	fclose(f);
	assert_int_equal(setenv("PATH", dir, 1), 0);
	/* not executable yet: not found */
	assert_int_equal(cl_host_which("qemu-fake", out, sizeof(out)), -ENOENT);
	assert_string_equal(out, "");
	assert_int_equal(chmod(prog, 0755), 0);
	assert_int_equal(cl_host_which("qemu-fake", out, sizeof(out)), 0);
	assert_string_equal(out, prog);
	/* a program in neither PATH nor sbin */
	assert_int_equal(cl_host_which("cl-no-such-tool", out, sizeof(out)), -ENOENT);
	assert_int_equal(cl_host_which("a/b", out, sizeof(out)), -EINVAL);
	assert_int_equal(cl_host_qemu_version("qemu-fake", &v, out, sizeof(out)), 0);
	assert_int_equal(v, 7002005);
	assert_string_equal(out, "QEMU emulator version 7.2.5 (fake)");
	assert_int_equal(cl_host_qemu_version("cl-no-such-tool", &v, out, sizeof(out)), -ENOENT);
	unlink(prog);
	rmdir(dir);
	if (saved)
		setenv("PATH", saved, 1);
	free(saved);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_version),     cmocka_unit_test(test_parse_version_refuses),
	    cmocka_unit_test(test_postcopy_versions), cmocka_unit_test(test_conf_value),
	    cmocka_unit_test(test_conf_file),         cmocka_unit_test(test_which),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
