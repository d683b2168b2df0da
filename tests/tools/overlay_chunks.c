/* SPDX-License-Identifier: GPL-2.0-only */
/* Lists an overlay's payload chunks and the segment that holds each
 * (benchmarks pick chunks whose segment has not been fetched yet).
 *
 *   overlay_chunks [-a] OVERLAY
 *   overlay_chunks -s OVERLAY
 *
 * OVERLAY: the overlay-meta, its directory or an http(s) URL of it. Prints
 * one line per DELTA or RAW record, in overlay order:
 *   IMAGE INDEX SEGMENT RECIPE        e.g. "disk 1234 7 delta"
 * -a also lists DEDUP records (with the segment of the payload they copy).
 * -s prints instead one line of figures of the parsed meta:
 *   records N record_size B segments S segment_size B blob_segments LIST
 * (record_size: sizeof(struct cl_chunk); LIST: the segments holding the
 * device state and domain XML, comma-separated, or "-").  * Errors print "overlay_chunks: MESSAGE"
 * and exit 1; usage errors exit 2. */
#include "cl_error.h"
#include "cl_meta.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct cl_meta *m = NULL;
	const struct cl_chunk *c;
	int all = 0, summary = 0, opt, r;
	uint64_t i;

	while ((opt = getopt(argc, argv, "as")) != -1) {
		if (opt == 'a')
			all = 1;
		else if (opt == 's')
			summary = 1;
		else
			goto usage;
	}
	if (optind != argc - 1)
		goto usage;
	r = cl_meta_load(argv[optind], &m, NULL);
	if (r < 0) {
		fprintf(stderr, "overlay_chunks: %s\n",
		        *cl_error_msg() ? cl_error_msg() : strerror(-r));
		return 1;
	}
	if (summary) {
		const struct cl_blob *b[2] = {&m->state, &m->domain};
		int k, any = 0;

		printf("records %" PRIu64 " record_size %zu segments %" PRIu32 " segment_size %zu "
		       "blob_segments ",
		       m->nchunks, sizeof(struct cl_chunk), m->nsegments,
		       sizeof(struct cl_segment));
		for (k = 0; k < 2; k++)
			if (b[k]->present && b[k]->p.len)
				printf("%s%" PRIu32, any++ ? "," : "", b[k]->p.seg);
		printf("%s\n", any ? "" : "-");
	}
	for (i = 0; i < m->nchunks && !summary; i++) {
		c = &m->chunks[i];
		if (c->recipe != CL_R_DELTA && c->recipe != CL_R_RAW &&
		    !(all && c->recipe == CL_R_DEDUP))
			continue;
		printf("%s %" PRIu64 " %" PRIu32 " %s\n", cl_image_name(c->image), c->index,
		       c->p.seg, cl_recipe_name(c->recipe));
	}
	cl_meta_free(m);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		perror("overlay_chunks: stdout");
		return 1;
	}
	return 0;

usage:
	fprintf(stderr, "usage: overlay_chunks [-a] OVERLAY | -s OVERLAY\n");
	return 2;
}
