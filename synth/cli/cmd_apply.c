/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_cli.h"
#include "cl_error.h"
#include "cl_synth.h"

#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char apply_usage[] =
    "Usage: cloudlet apply IMAGE OVERLAY -o DIR\n"
    "\n"
    "Eager synthesis: rebuilds the customized VM from the registered base IMAGE and\n"
    "OVERLAY (its overlay-meta, the directory holding it, or an http(s) URL of it)\n"
    "into DIR/disk.img, DIR/memory.img, DIR/state and DIR/domain.xml (the last two\n"
    "when the overlay carries them). Every segment and chunk is checked against its\n"
    "SHA-256; the files appear only once complete and correct.\n"
    "\n"
    "Options:\n"
    "  -o, --output DIR   output directory (required; created if missing)\n"
    "  -h, --help         this help\n";

static const char verify_usage[] =
    "Usage: cloudlet verify [--quick] IMAGE [OVERLAY]\n"
    "\n"
    "Checks that OVERLAY was made for the registered base IMAGE, that every segment\n"
    "of its pack matches its SHA-256, that every synthesized chunk matches its\n"
    "SHA-256, and that every chunk of the base's disk and memory images matches the\n"
    "base's index (the hashes taken when it was registered; holes are checked\n"
    "without reading them), without writing anything. With IMAGE alone, checks only\n"
    "the registered base against its index. Lists every fault (of base chunks, the\n"
    "first 20 by name, then how many); exits 0 only if all hold.\n"
    "\n"
    "Options:\n"
    "      --quick  skip the check of every base chunk (the base chunks that\n"
    "               OVERLAY copies or deltas against are still checked)\n"
    "  -h, --help   this help\n";

static const char info_usage[] =
    "Usage: cloudlet info [--json] OVERLAY\n"
    "\n"
    "Describes an overlay: its id (SHA-256 of the overlay-meta), the base id it\n"
    "needs, image sizes, chunk size, codec, pack and segments, the number of chunks\n"
    "per recipe for each image, and how many chunks were left out (zero records,\n"
    "which cost no payload) because the guest freed them (memory: holes free page\n"
    "reporting punched in the RAM file where the base has data) or discarded them\n"
    "(disk: TRIM or zero writes on the copy-on-write disk).\n"
    "\n"
    "Options:\n"
    "  -j, --json   print one JSON object\n"
    "  -h, --help   this help\n";

/* Loads the meta and the base both commands need: 0, or the exit status
 * after printing why not. */
static int open_pair(const char *image, const char *overlay, struct cl_base **b, struct cl_meta **m,
                     char **loc)
{
	int r;

	r = cl_meta_load(overlay, m, loc);
	if (r < 0)
		return cl_cli_fail(r, NULL);
	r = cl_base_find(image, b);
	if (r < 0) {
		cl_meta_free(*m);
		free(*loc);
		return cl_cli_fail(r, NULL);
	}
	return 0;
}

static int only_help(int argc, char **argv, const char *cmd, const char *text,
                     const char *shortopts, const struct option *opts, const char **outdir)
{
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(text, stdout);
			return 0;
		}
		if (c == 'o' && outdir) {
			*outdir = optarg;
			continue;
		}
		return cl_cli_usage(cmd, "bad option");
	}
	return -1;
}

int cl_cmd_apply(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *outdir = NULL;
	struct cl_apply_stats st = {0};
	struct cl_base *b;
	struct cl_meta *m;
	char *loc;
	double t0;
	int r;

	r = only_help(argc, argv, "apply", apply_usage, "o:h", opts, &outdir);
	if (r >= 0)
		return r;
	if (optind != argc - 2)
		return cl_cli_usage("apply", "expected IMAGE and OVERLAY");
	if (!outdir)
		return cl_cli_usage("apply", "-o DIR is required");
	t0 = cl_now();
	r = open_pair(argv[optind], argv[optind + 1], &b, &m, &loc);
	if (r)
		return r;
	r = cl_apply(b, m, loc, outdir, &st);
	if (r == 0)
		printf("synthesized %s/disk.img (%s) and %s/memory.img (%s)%s%s in %.2f s\n",
		       outdir, cl_fmt_size(m->image_size[CL_DISK], 0), outdir,
		       cl_fmt_size(m->image_size[CL_MEMORY], 1), m->state.present ? ", state" : "",
		       m->domain.present ? ", domain.xml" : "", cl_now() - t0);
	cl_base_free(b);
	cl_meta_free(m);
	free(loc);
	return r < 0 ? cl_cli_fail(r, NULL) : 0;
}

#define MAX_REPORT 20 /* bad base chunks named, one line each */

/* Faults told by a checking call: the first `max` printed. */
struct report {
	unsigned told, max;
};

static void report_fault(void *ctx, const char *msg)
{
	struct report *rep = ctx;

	if (rep->told++ < rep->max)
		fprintf(stderr, "cloudlet: %s\n", msg);
}

/* Checks every chunk of a registered base against its index; says how
 * many differ (the first ones named on their own line). */
static int verify_base(struct cl_base *b)
{
	struct report rep = {0, MAX_REPORT};
	uint64_t bad = 0;
	int r;

	r = cl_base_check_all(b, report_fault, &rep, &bad);
	if (r == 0)
		printf("base %s: ok (%llu disk and %llu memory chunks match its index)\n",
		       b->path[CL_DISK], (unsigned long long)b->nchunks[CL_DISK],
		       (unsigned long long)b->nchunks[CL_MEMORY]);
	return r;
}

int cl_cmd_verify(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"quick", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct report all = {0, UINT_MAX}; /* verify lists every fault */
	struct cl_apply_stats st = {0};
	struct cl_base *b;
	struct cl_meta *m;
	int r, rb = 0, c, quick = 0;
	char *loc;

	optind = 1;
	/* --quick is a long option only: "-q" elsewhere means quiet. */
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(verify_usage, stdout);
			return 0;
		}
		if (c != 'q')
			return cl_cli_usage("verify", "bad option");
		quick = 1;
	}
	if (optind == argc - 1) {
		if (quick)
			return cl_cli_usage("verify",
			                    "--quick needs an OVERLAY (IMAGE alone checks "
			                    "the base, which --quick would skip)");
		r = cl_base_find(argv[optind], &b);
		if (r < 0)
			return cl_cli_fail(r, NULL);
		r = verify_base(b);
		cl_base_free(b);
		return r < 0 ? cl_cli_fail(r, NULL) : 0;
	}
	if (optind != argc - 2)
		return cl_cli_usage("verify", "expected IMAGE [OVERLAY]");
	r = open_pair(argv[optind], argv[optind + 1], &b, &m, &loc);
	if (r)
		return r;
	r = cl_verify(b, m, loc, report_fault, &all, &st);
	if (r == 0)
		printf("%s: ok (base id, %u segments, %llu chunks)\n", loc, m->nsegments,
		       (unsigned long long)st.chunks_ok);
	else
		cl_cli_fail(r, NULL);
	if (!quick && r != -EXDEV)
		rb = verify_base(b);
	cl_base_free(b);
	cl_meta_free(m);
	free(loc);
	if (rb < 0)
		return cl_cli_fail(rb, NULL);
	return r < 0 ? 1 : 0;
}

/* Records per image and recipe, payload bytes per recipe, and the pack's
 * uncompressed size (returned). */
static uint64_t count_recipes(const struct cl_meta *m, uint64_t n[CL_NIMAGES][CL_R_COUNT],
                              uint64_t payload[CL_R_COUNT])
{
	uint64_t i, raw = 0;

	memset(n, 0, sizeof(uint64_t) * CL_NIMAGES * CL_R_COUNT);
	memset(payload, 0, sizeof(uint64_t) * CL_R_COUNT);
	for (i = 0; i < m->nchunks; i++) {
		n[m->chunks[i].image][m->chunks[i].recipe]++;
		if (m->chunks[i].recipe >= CL_R_DELTA)
			payload[m->chunks[i].recipe] += m->chunks[i].p.len;
	}
	for (i = 0; i < m->nsegments; i++)
		raw += m->segments[i].rlen;
	return raw;
}

static void info_json(const struct cl_meta *m, const char *loc, const char *id, const char *base)
{
	uint64_t n[CL_NIMAGES][CL_R_COUNT], payload[CL_R_COUNT], raw;
	int i, r;

	raw = count_recipes(m, n, payload);
	/* Locations are the only strings that may need escaping. */
	printf("{\"meta\":\"");
	for (; *loc; loc++)
		if (*loc == '"' || *loc == '\\')
			printf("\\%c", *loc);
		else if ((unsigned char)*loc < 0x20)
			printf("\\u%04x", *loc);
		else
			putchar(*loc);
	printf("\",\"overlay_id\":\"%s\",\"base_id\":\"%s\",\"version\":%u,"
	       "\"chunk_size\":%u,\"codec\":\"%s\",\"pack\":\"%s\",\"pack_size\":%llu,"
	       "\"segments\":%u,\"segments_raw_size\":%llu,\"state_size\":%u,"
	       "\"domain_xml_size\":%u,\"images\":{",
	       id, base, m->version, m->chunk_size, cl_codec_name(m->codec), m->pack,
	       (unsigned long long)m->pack_size, m->nsegments, (unsigned long long)raw,
	       m->state.present ? m->state.p.len : 0, m->domain.present ? m->domain.p.len : 0);
	for (i = 0; i < CL_NIMAGES; i++) {
		printf("%s\"%s\":{\"size\":%llu,\"base_size\":%llu,\"chunks\":{", i ? "," : "",
		       cl_image_name(i), (unsigned long long)m->image_size[i],
		       (unsigned long long)m->base_image_size[i]);
		for (r = 0; r < CL_R_COUNT; r++)
			printf("%s\"%s\":%llu", r ? "," : "", cl_recipe_name(r),
			       (unsigned long long)n[i][r]);
		printf("},\"left_out\":%llu}", (unsigned long long)m->left_out[i]);
	}
	printf("},\"payload_bytes\":{\"delta\":%llu,\"raw\":%llu}}\n",
	       (unsigned long long)payload[CL_R_DELTA], (unsigned long long)payload[CL_R_RAW]);
}

static void info_text(const struct cl_meta *m, const char *loc, const char *id, const char *base)
{
	uint64_t n[CL_NIMAGES][CL_R_COUNT], payload[CL_R_COUNT], raw;
	int i, r;

	raw = count_recipes(m, n, payload);
	printf("overlay     %s\n", loc);
	printf("id          %s\n", id);
	printf("base id     %s\n", base);
	printf("format      version %u, %u-byte chunks, %s\n", m->version, m->chunk_size,
	       cl_codec_name(m->codec));
	printf("pack        %s, %s in %u segments (%s uncompressed)\n", m->pack,
	       cl_fmt_size(m->pack_size, 0), m->nsegments, cl_fmt_size(raw, 1));
	printf("state       %s\n", m->state.present ? cl_fmt_size(m->state.p.len, 0) : "none");
	printf("domain xml  %s\n", m->domain.present ? cl_fmt_size(m->domain.p.len, 0) : "none");
	for (i = 0; i < CL_NIMAGES; i++)
		printf("%-11s %s (base %s)\n", cl_image_name(i), cl_fmt_size(m->image_size[i], 0),
		       cl_fmt_size(m->base_image_size[i], 1));
	printf("%-12s %10s %10s\n", "recipe", "memory", "disk");
	for (r = 0; r < CL_R_COUNT; r++)
		printf("%-12s %10llu %10llu\n", cl_recipe_name(r),
		       (unsigned long long)n[CL_MEMORY][r], (unsigned long long)n[CL_DISK][r]);
	printf("payload     delta %s, raw %s\n", cl_fmt_size(payload[CL_R_DELTA], 0),
	       cl_fmt_size(payload[CL_R_RAW], 1));
	printf("left out    memory %llu chunks freed, disk %llu chunks discarded\n",
	       (unsigned long long)m->left_out[CL_MEMORY],
	       (unsigned long long)m->left_out[CL_DISK]);
}

int cl_cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char id[2 * CL_SHA256_LEN + 1], base[2 * CL_SHA256_LEN + 1], *loc;
	struct cl_meta *m;
	int c, r, json = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		if (c == 'j') {
			json = 1;
		} else if (c == 'h') {
			fputs(info_usage, stdout);
			return 0;
		} else {
			return cl_cli_usage("info", "bad option");
		}
	}
	if (optind != argc - 1)
		return cl_cli_usage("info", "expected one OVERLAY");
	r = cl_meta_load(argv[optind], &m, &loc);
	if (r < 0)
		return cl_cli_fail(r, NULL);
	cl_hex(m->id, CL_SHA256_LEN, id);
	cl_hex(m->base_id, CL_SHA256_LEN, base);
	if (json)
		info_json(m, loc, id, base);
	else
		info_text(m, loc, id, base);
	cl_meta_free(m);
	free(loc);
	return 0;
}
