/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_cli.h"
#include "cl_error.h"
#include "cl_overlay.h"
#include "cl_qcow.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char overlay_usage[] =
    "Usage: cloudlet overlay IMAGE --disk NEW_DISK --memory NEW_RAM [options]\n"
    "\n"
    "Makes an overlay of a customized VM (NEW_DISK, NEW_RAM) against the registered\n"
    "base whose disk is IMAGE. Each changed chunk becomes, cheapest first: zero, a\n"
    "copy of a base disk or memory chunk, a copy of an earlier overlay chunk, a\n"
    "VCDIFF delta against the base chunk at the same place, or raw bytes. Payloads\n"
    "are packed into independently compressed segments in DIR/overlay-blob,\n"
    "described by DIR/overlay-meta. Prints the overlay's size and a breakdown by\n"
    "recipe.\n"
    "\n"
    "Options:\n"
    "  -D, --disk FILE          the customized VM's disk (required): a raw image, or\n"
    "                           a qcow2 file backed by IMAGE, of which only the\n"
    "                           clusters it holds are read (`qemu-img map`; its\n"
    "                           discarded clusters cost nothing)\n"
    "  -m, --memory FILE        the customized VM's memory image (required)\n"
    "  -s, --state FILE         its device state, carried as is\n"
    "  -d, --domain XML         its libvirt domain XML, carried as is\n"
    "  -o, --output DIR         where to write the overlay (default: the directory of\n"
    "                           the base's disk image)\n"
    "  -c, --codec xz|zstd      segment compression (default xz; zstd decodes faster)\n"
    "  -l, --level N            compression level: 0-9 for xz (default 9), 0-22 for\n"
    "                           zstd (default 19)\n"
    "  -S, --segment-size BYTES uncompressed bytes per segment, exactly (default:\n"
    "                           256K, runs of incompressible data cut at 64K for\n"
    "                           cheaper demand fetches)\n"
    "  -t, --order TRACE        put the chunks listed in TRACE first, in its order\n"
    "                           (lines `disk N` / `memory N`)\n"
    "  -h, --help               this help\n";

void cl_cli_overlay_stats(const char *outdir, const struct cl_overlay_stats *st)
{
	int r;

	printf("overlay %s/%s (+ %s)\n", outdir, CL_META_NAME, CL_PACK_NAME);
	printf("  size      %s: pack %s in %u segments, meta %s\n",
	       cl_fmt_size(st->pack_size + st->meta_size, 0), cl_fmt_size(st->pack_size, 1),
	       st->nsegments, cl_fmt_size(st->meta_size, 2));
	printf("  changed   memory %s, disk %s\n", cl_fmt_size(st->changed_bytes[CL_MEMORY], 0),
	       cl_fmt_size(st->changed_bytes[CL_DISK], 1));
	if (st->traced)
		printf("  traced    %llu chunks first\n", (unsigned long long)st->traced);
	if (st->left_out[CL_MEMORY] || st->left_out[CL_DISK])
		printf("  left out  %llu freed memory chunks, %llu discarded disk chunks\n",
		       (unsigned long long)st->left_out[CL_MEMORY],
		       (unsigned long long)st->left_out[CL_DISK]);
	printf("  %-12s %10s %10s %12s\n", "recipe", "memory", "disk", "payload");
	for (r = 0; r < CL_R_COUNT; r++) {
		printf("  %-12s %10llu %10llu %12s\n", cl_recipe_name(r),
		       (unsigned long long)st->chunks[CL_MEMORY][r],
		       (unsigned long long)st->chunks[CL_DISK][r],
		       r >= CL_R_DELTA ? cl_fmt_size(st->payload[r], 0) : "-");
	}
}

struct offline {
	struct cl_overlay_opts o;
	const char *disk, *memory;
	char *outdir;
};

/* The options; -1 when they are good, else the exit status. */
static int parse_offline(struct offline *f, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"disk", required_argument, NULL, 'D'},
	    {"memory", required_argument, NULL, 'm'},
	    {"state", required_argument, NULL, 's'},
	    {"domain", required_argument, NULL, 'd'},
	    {"output", required_argument, NULL, 'o'},
	    {"codec", required_argument, NULL, 'c'},
	    {"level", required_argument, NULL, 'l'},
	    {"segment-size", required_argument, NULL, 'S'},
	    {"order", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	uint64_t v;
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "D:m:s:d:o:c:l:S:t:h", opts, NULL)) != -1) {
		switch (c) {
		case 'D':
			f->disk = optarg;
			break;
		case 'm':
			f->memory = optarg;
			break;
		case 's':
			f->o.state = optarg;
			break;
		case 'd':
			f->o.domain = optarg;
			break;
		case 'o':
			free(f->outdir);
			f->outdir = strdup(optarg);
			break;
		case 'c':
			if (cl_codec_parse(optarg, &f->o.codec) < 0)
				return cl_cli_usage("overlay", "unknown codec '%s' (xz or zstd)",
				                    optarg);
			break;
		case 'l':
			if (optarg[0] < '0' || optarg[0] > '9' ||
			    (v = strtoul(optarg, &end, 10)) > 22 || *end)
				return cl_cli_usage("overlay", "bad level '%s'", optarg);
			f->o.level = (int)v;
			break;
		case 'S':
			if (cl_parse_size(optarg, &v) < 0 || v > (32u << 20))
				return cl_cli_usage("overlay", "bad segment size '%s'", optarg);
			f->o.segment_size = (uint32_t)v;
			break;
		case 't':
			f->o.trace = optarg;
			break;
		case 'h':
			fputs(overlay_usage, stdout);
			return 0;
		default:
			return cl_cli_usage("overlay", "bad option");
		}
	}
	if (optind != argc - 1)
		return cl_cli_usage("overlay", "expected the base IMAGE");
	if (f->o.codec != CL_CODEC_ZSTD && f->o.level > 9)
		return cl_cli_usage("overlay", "xz's levels are 0 to 9 (zstd's 0 to 22)");
	if (!f->disk || !f->memory)
		return cl_cli_usage("overlay",
		                    "--disk and --memory go together (without both, `cloudlet "
		                    "overlay IMAGE` resumes the base to customize it)");
	return -1;
}

int cl_cmd_overlay(int argc, char **argv)
{
	struct offline f = {.o = {.level = -1}};
	struct cl_overlay_stats st;
	struct cl_base *b;
	char *tmp;
	int r;

	/* The interactive form runs a VM (cmd_vmbase.c); its help comes first. */
	if (!cl_cli_has_opt(argc, argv, "-D", "--disk") &&
	    !cl_cli_has_opt(argc, argv, "-m", "--memory")) {
		if (!cl_cli_has_opt(argc, argv, "-h", "--help"))
			return cl_cli_overlay_vm(argc, argv);
		fputs(cl_cli_overlay_vm_usage, stdout);
	}
	r = parse_offline(&f, argc, argv);
	if (r >= 0) {
		free(f.outdir);
		return r;
	}
	r = cl_base_find(argv[optind], &b);
	if (r < 0) {
		free(f.outdir);
		return cl_cli_fail(r, NULL);
	}
	/* IMAGE may be an id or a registry directory: the disk's own directory. */
	if (!f.outdir) {
		tmp = strdup(b->path[CL_DISK]);
		f.outdir = tmp ? strdup(dirname(tmp)) : NULL;
		free(tmp);
	}
	r = f.outdir ? cl_qcow_overlay_create(b, f.disk, f.memory, f.outdir, &f.o, &st) : -ENOMEM;
	cl_base_free(b);
	if (r == 0)
		cl_cli_overlay_stats(f.outdir, &st);
	free(f.outdir);
	return r < 0 ? cl_cli_fail(r, NULL) : 0;
}
