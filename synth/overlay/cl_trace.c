/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_trace.h"
#include "cl_bitmap.h"
#include "cl_error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TRACE_MAX_SIZE (1024u << 20)

static int parse_line(const char *s, size_t len, uint8_t *image, uint64_t *index)
{
	const char *names[CL_NIMAGES] = {"disk", "memory"};
	size_t i, nl, k;
	uint64_t v = 0;

	/* Tolerate a trailing CR and spaces. */
	while (len && (s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	for (i = 0; i < CL_NIMAGES; i++) {
		nl = strlen(names[i]);
		if (len > nl + 1 && !memcmp(s, names[i], nl) && (s[nl] == ' ' || s[nl] == '\t'))
			break;
	}
	if (i == CL_NIMAGES)
		return -EINVAL;
	k = nl + 1;
	while (k < len && (s[k] == ' ' || s[k] == '\t'))
		k++;
	if (k == len)
		return -EINVAL;
	for (; k < len; k++) {
		if (s[k] < '0' || s[k] > '9' || v > (UINT64_MAX - 9) / 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(s[k] - '0');
	}
	*image = (uint8_t)i;
	*index = v;
	return 0;
}

int cl_trace_parse(const char *text, size_t len, const char *name,
                   const uint64_t nchunks[CL_NIMAGES], struct cl_trace_entry **out, size_t *n)
{
	struct cl_trace_entry *e = NULL, *tmp;
	uint8_t *seen[CL_NIMAGES] = {NULL, NULL};
	size_t cap = 0, count = 0, pos = 0, lineno = 0, end;
	uint64_t index;
	uint8_t image;
	int r = 0, i;

	if ((!text && len) || !name || !nchunks || !out || !n)
		return -EINVAL;
	for (i = 0; i < CL_NIMAGES; i++) {
		seen[i] = cl_bitmap_new(nchunks[i]);
		if (!seen[i]) {
			r = -ENOMEM;
			goto fail;
		}
	}
	while (pos < len) {
		const char *nlp = memchr(text + pos, '\n', len - pos);
		end = nlp ? (size_t)(nlp - text) : len;
		lineno++;
		if (end > pos && text[pos] != '#' && !(end - pos == 1 && text[pos] == '\r')) {
			if (parse_line(text + pos, end - pos, &image, &index) < 0) {
				r = cl_errorf(-EINVAL, "%s:%zu: expected `disk N` or `memory N`",
				              name, lineno);
				goto fail;
			}
			if (index >= nchunks[image]) {
				r = cl_errorf(-ERANGE, "%s:%zu: %s has only %llu chunks", name,
				              lineno, cl_image_name(image),
				              (unsigned long long)nchunks[image]);
				goto fail;
			}
			if (!cl_bit_get(seen[image], index)) {
				cl_bit_set(seen[image], index);
				if (count == cap) {
					cap = cap ? 2 * cap : 1024;
					tmp = realloc(e, cap * sizeof(*e));
					if (!tmp) {
						r = -ENOMEM;
						goto fail;
					}
					e = tmp;
				}
				e[count].image = image;
				e[count].index = index;
				count++;
			}
		}
		pos = end + 1;
	}
	free(seen[0]);
	free(seen[1]);
	*out = e;
	*n = count;
	return 0;
fail:
	free(seen[0]);
	free(seen[1]);
	free(e);
	return r;
}

int cl_trace_load(const char *path, const uint64_t nchunks[CL_NIMAGES], struct cl_trace_entry **out,
                  size_t *n)
{
	size_t len;
	void *buf;
	int r;

	r = cl_read_file(path, TRACE_MAX_SIZE, &buf, &len);
	if (r < 0)
		return r;
	r = cl_trace_parse(buf, len, path, nchunks, out, n);
	free(buf);
	return r;
}
