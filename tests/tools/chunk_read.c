/* SPDX-License-Identifier: GPL-2.0-only */
/* Reads listed chunks of a mounted VM's images, one pread each, in order,
 * with readahead out of the way, and times them (filesystem benchmarks).
 *
 *   chunk_read [-l] [-d] [-b BYTES] MOUNTPOINT [LIST]
 *
 * LIST (default stdin): one chunk per line, `disk N` or `memory N` (the
 * TRACE format; further fields on a line are ignored). Each is read with
 * one pread of BYTES (default: the image's st_blksize, the chunk size) at
 * N * chunk size of MOUNTPOINT/disk/image or MOUNTPOINT/memory/image, opened
 * once with POSIX_FADV_RANDOM (or O_DIRECT with -d).
 * -l prints `IMAGE N MILLISECONDS` per read. Always prints, last,
 * `reads N bytes B seconds S` (S: first read's start to last read's end).
 * A failed or short read is an error: exit 1. Usage errors exit 2. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct image {
	const char *name;
	int fd;
	uint64_t size;
	uint32_t chunk;
};

static int open_image(const char *mnt, struct image *im, int direct)
{
	char path[4096];
	struct stat st;
	int r;

	snprintf(path, sizeof(path), "%s/%s/image", mnt, im->name);
	im->fd = open(path, O_RDONLY | (direct ? O_DIRECT : 0));
	if (im->fd < 0 || fstat(im->fd, &st) < 0) {
		fprintf(stderr, "chunk_read: %s: %s\n", path, strerror(errno));
		return -1;
	}
	im->size = (uint64_t)st.st_size;
	im->chunk = st.st_blksize > 0 ? (uint32_t)st.st_blksize : 4096;
	r = posix_fadvise(im->fd, 0, 0, POSIX_FADV_RANDOM);
	if (r) {
		fprintf(stderr, "chunk_read: %s: posix_fadvise: %s\n", path, strerror(r));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct image img[2] = {{"disk", -1, 0, 0}, {"memory", -1, 0, 0}};
	int list_each = 0, direct = 0, opt, k;
	size_t bytes = 0, len;
	uint64_t idx, off, nreads = 0, nbytes = 0;
	double t_first = 0, t0, t1;
	char line[256], name[16];
	FILE *in = stdin;
	void *buf;
	ssize_t n;

	while ((opt = getopt(argc, argv, "ldb:")) != -1) {
		switch (opt) {
		case 'l':
			list_each = 1;
			break;
		case 'd':
			direct = 1;
			break;
		case 'b':
			bytes = strtoul(optarg, NULL, 0);
			if (!bytes)
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 && optind != argc - 2)
		goto usage;
	if (optind == argc - 2 && !(in = fopen(argv[optind + 1], "r"))) {
		fprintf(stderr, "chunk_read: %s: %s\n", argv[optind + 1], strerror(errno));
		return 1;
	}
	for (k = 0; k < 2; k++)
		if (open_image(argv[optind], &img[k], direct) < 0)
			return 1;
	if (posix_memalign(&buf, 4096, (bytes ? bytes : 1u << 20) + 4096))
		return 1;
	while (fgets(line, sizeof(line), in)) {
		if (sscanf(line, "%15s %" SCNu64, name, &idx) != 2)
			continue;
		k = !strcmp(name, "disk") ? 0 : !strcmp(name, "memory") ? 1 : -1;
		if (k < 0) {
			fprintf(stderr, "chunk_read: bad line: %s", line);
			return 1;
		}
		len = bytes ? bytes : img[k].chunk;
		off = idx * img[k].chunk;
		if (len > (1u << 20) && !bytes) {
			fprintf(stderr, "chunk_read: chunk size %zu too large\n", len);
			return 1;
		}
		if (off >= img[k].size) {
			fprintf(stderr, "chunk_read: %s chunk %" PRIu64 " past the end\n", name,
			        idx);
			return 1;
		}
		if (off + len > img[k].size)
			len = (size_t)(img[k].size - off);
		t0 = now();
		if (!nreads)
			t_first = t0;
		n = pread(img[k].fd, buf, len, (off_t)off);
		t1 = now();
		if (n != (ssize_t)len) {
			fprintf(stderr, "chunk_read: %s chunk %" PRIu64 ": %s\n", name, idx,
			        n < 0 ? strerror(errno) : "short read");
			return 1;
		}
		nreads++;
		nbytes += len;
		if (list_each)
			printf("%s %" PRIu64 " %.3f\n", name, idx, (t1 - t0) * 1e3);
	}
	printf("reads %" PRIu64 " bytes %" PRIu64 " seconds %.6f\n", nreads, nbytes,
	       nreads ? now() - t_first : 0.0);
	return fflush(stdout) == EOF ? 1 : 0;

usage:
	fprintf(stderr, "usage: chunk_read [-l] [-d] [-b BYTES] MOUNTPOINT [LIST]\n");
	return 2;
}
