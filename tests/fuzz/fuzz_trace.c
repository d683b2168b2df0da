/* SPDX-License-Identifier: GPL-2.0-only */
/* TRACE files (cl_trace_parse).
 *
 * Input: the chunk counts of the disk and the memory image (2 bytes LE
 * each), then the text. What parses must list each chunk once, in bounds,
 * no more entries than lines. */
#include "cl_error.h"
#include "cl_trace.h"
#include "fuzz_common.h"

#include <errno.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t nchunks[CL_NIMAGES];
	struct cl_trace_entry *e = NULL;
	size_t n = 0, i, lines = 1;
	uint8_t *seen[CL_NIMAGES];
	char *text;
	int r;

	nchunks[CL_DISK] = fuzz_take(&data, &size, 2);
	nchunks[CL_MEMORY] = fuzz_take(&data, &size, 2);
	text = (char *)fuzz_dup(data, size);
	FUZZ_CHECK(text);
	r = cl_trace_parse(text, size, "fuzz", nchunks, &e, &n);
	FUZZ_CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
	if (r == 0) {
		for (i = 0; i < size; i++)
			lines += text[i] == '\n';
		FUZZ_CHECK(n <= lines);
		seen[0] = calloc(nchunks[0] + 1, 1);
		seen[1] = calloc(nchunks[1] + 1, 1);
		FUZZ_CHECK(seen[0] && seen[1]);
		for (i = 0; i < n; i++) {
			FUZZ_CHECK(e[i].image < CL_NIMAGES);
			FUZZ_CHECK(e[i].index < nchunks[e[i].image]);
			FUZZ_CHECK(!seen[e[i].image][e[i].index]);
			seen[e[i].image][e[i].index] = 1;
		}
		free(seen[0]);
		free(seen[1]);
	} else {
		FUZZ_CHECK(*cl_error_msg());
	}
	cl_error_clear();
	free(e);
	free(text);
	return 0;
}
