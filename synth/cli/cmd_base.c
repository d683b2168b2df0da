/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_base.h"
#include "cl_cli.h"
#include "cl_error.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char base_usage[] =
    "Usage: cloudlet base IMAGE --memory RAMFILE [--state FILE] [--domain XML]\n"
    "                     [--chunk-size BYTES]\n"
    "\n"
    "Registers an existing VM as a base: IMAGE is its raw disk image, RAMFILE its\n"
    "memory image (the guest's RAM as a raw page-aligned file). Every chunk of both\n"
    "is hashed once; the index, a copy of the device state and of the domain XML are\n"
    "kept in the registry, CLOUDLET_HOME/bases/<id>/ (CLOUDLET_HOME defaults to\n"
    "/var/lib/cloudlet for root, $XDG_DATA_HOME/cloudlet or ~/.local/share/cloudlet\n"
    "otherwise). The images themselves stay where they are and must not change\n"
    "afterwards: a changed size or mtime is refused at once, and every base chunk\n"
    "that apply, cloudletfs and synthesis use is checked against the index first\n"
    "(`cloudlet verify` checks them all). The copies of the device state and domain\n"
    "XML are hashed into base.conf and checked before use.\n"
    "\n"
    "Options:\n"
    "  -m, --memory RAMFILE     the base's memory image (required)\n"
    "  -s, --state FILE         the base's device state (QEMU migration stream)\n"
    "  -d, --domain XML         the base's libvirt domain XML\n"
    "  -c, --chunk-size BYTES   chunk size, a power of two from 512 to 1M (default\n"
    "                           4096)\n"
    "  -h, --help               this help\n"
    "\n"
    "Prints the base id and the registry directory.\n";

int cl_cli_chunk_size(const char *arg, uint32_t *out)
{
	uint64_t v;

	if (cl_parse_size(arg, &v) < 0 || v < 512 || v > (1u << 20) || (v & (v - 1)))
		return cl_cli_usage("base", "bad chunk size '%s'", arg);
	*out = (uint32_t)v;
	return -1;
}

int cl_cli_register_base(const char *image, const char *memory, const char *state,
                         const char *domain, uint32_t chunk)
{
	char id[2 * CL_SHA256_LEN + 1];
	struct cl_base *b;
	int r;

	r = cl_base_index(image, memory, chunk, &b);
	if (r < 0)
		return cl_cli_fail(r, NULL);
	r = cl_base_register(b, state, domain);
	if (r < 0) {
		cl_base_free(b);
		return cl_cli_fail(r, "set CLOUDLET_HOME to a writable directory");
	}
	cl_hex(b->id, CL_SHA256_LEN, id);
	printf("base %s\n", id);
	printf("  disk    %s (%s)\n", b->path[CL_DISK], cl_fmt_size(b->size[CL_DISK], 0));
	printf("  memory  %s (%s)\n", b->path[CL_MEMORY], cl_fmt_size(b->size[CL_MEMORY], 0));
	printf("  registered in %s\n", b->dir);
	cl_base_free(b);
	return 0;
}

int cl_cmd_base(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"memory", required_argument, NULL, 'm'}, {"state", required_argument, NULL, 's'},
	    {"domain", required_argument, NULL, 'd'}, {"chunk-size", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *memory = NULL, *state = NULL, *domain = NULL;
	uint32_t chunk = 4096;
	int c, r;

	/* The boot form runs a VM (cmd_vmbase.c); its help comes first. */
	if (!cl_cli_has_opt(argc, argv, "-m", "--memory")) {
		if (!cl_cli_has_opt(argc, argv, "-h", "--help"))
			return cl_cli_base_boot(argc, argv);
		fputs(cl_cli_base_boot_usage, stdout);
	}
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:s:d:c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			memory = optarg;
			break;
		case 's':
			state = optarg;
			break;
		case 'd':
			domain = optarg;
			break;
		case 'c':
			if ((r = cl_cli_chunk_size(optarg, &chunk)) >= 0)
				return r;
			break;
		case 'h':
			fputs(base_usage, stdout);
			return 0;
		default:
			return cl_cli_usage("base", "bad option");
		}
	}
	if (optind != argc - 1)
		return cl_cli_usage("base", "expected one IMAGE");
	if (!memory)
		return cl_cli_usage("base",
		                    "--memory RAMFILE is required to register a VM (without "
		                    "it, `cloudlet base IMAGE` boots IMAGE)");
	return cl_cli_register_base(argv[optind], memory, state, domain, chunk);
}

static int print_base(void *ctx, const struct cl_base *b)
{
	char id[2 * CL_SHA256_LEN + 1];

	(void)ctx;
	cl_hex(b->id, CL_SHA256_LEN, id);
	id[16] = '\0';
	printf("%s  %-9s %-9s %s\n", id, cl_fmt_size(b->size[CL_DISK], 0),
	       cl_fmt_size(b->size[CL_MEMORY], 1), b->path[CL_DISK]);
	return 0;
}

int cl_cmd_list_base(int argc, char **argv)
{
	int r;

	if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
		printf("Usage: cloudlet list-base\n\nLists the registered bases: id, disk size, "
		       "memory size, disk image.\nRegistry: %s/bases\n",
		       cl_home());
		return 0;
	}
	if (argc > 1)
		return cl_cli_usage("list-base", "takes no arguments");
	printf("%-16s  %-9s %-9s %s\n", "ID", "DISK", "MEMORY", "IMAGE");
	r = cl_base_list(print_base, NULL);
	return r < 0 ? cl_cli_fail(r, NULL) : 0;
}
