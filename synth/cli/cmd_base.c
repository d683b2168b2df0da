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
    "/var/lib/cloudlet for root, ~/.local/share/cloudlet otherwise). The images\n"
    "themselves stay where they are and must not change afterwards: a changed size\n"
    "or mtime is refused at once, and every base chunk that apply, cloudletfs and\n"
    "synthesis use is checked against the index first (`cloudlet verify` checks them\n"
    "all). The copies of the device state and domain XML are hashed into base.conf\n"
    "and checked before use.\n"
    "\n"
    "Options:\n"
    "  -m, --memory RAMFILE     the base's memory image (required)\n"
    "  -s, --state FILE         the base's device state (QEMU migration stream)\n"
    "  -d, --domain XML         the base's libvirt domain XML\n"
    "  -c, --chunk-size BYTES   chunk size, a power of two from 512 to 1M (default 4096)\n"
    "  -h, --help               this help\n"
    "\n"
    "Prints the base id and the registry directory.\n";

int cl_cmd_base(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"memory", required_argument, NULL, 'm'}, {"state", required_argument, NULL, 's'},
	    {"domain", required_argument, NULL, 'd'}, {"chunk-size", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *memory = NULL, *state = NULL, *domain = NULL;
	char id[2 * CL_SHA256_LEN + 1];
	uint64_t chunk = 4096;
	struct cl_base *b;
	int c, r;

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
			if (cl_parse_size(optarg, &chunk) < 0 || chunk < 512 ||
			    chunk > (1u << 20) || (chunk & (chunk - 1)))
				return cl_cli_usage("base", "bad chunk size '%s'", optarg);
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
		                    "--memory RAMFILE is required (booting a VM to make a base "
		                    "is not available in this version)");
	r = cl_base_index(argv[optind], memory, (uint32_t)chunk, &b);
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
