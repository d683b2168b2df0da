/* fs_stress: concurrent readers of synthesized images compared with the
 * expected files. Used by the filesystem tests and reliability runs.
 *
 *   fs_stress [-t THREADS] [-s SECONDS] [-n READS] [-m] [-b MAXBYTES]
 *             IMAGE EXPECTED [IMAGE EXPECTED ...]
 *
 * Each thread picks a pair and a random range and compares pread() (or,
 * with -m, bytes touched through a MAP_PRIVATE mapping: page faults) with
 * the expected file. Runs until SECONDS pass or each thread made READS
 * reads. Prints reads, bytes, errors, mismatches and the longest wait;
 * exits 1 on any mismatch or error. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct pair {
	const char *image, *expected;
	int fd, efd;
	uint64_t size;
	uint8_t *map; /* -m: MAP_PRIVATE of image */
};

static struct pair *pairs;
static int npairs, use_mmap;
static double deadline;
static long max_reads = -1;
static size_t max_bytes = 1 << 20;
static atomic_long reads, errors, mismatches;
static atomic_ullong bytes;
static pthread_mutex_t worst_lock = PTHREAD_MUTEX_INITIALIZER;
static double worst;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *reader(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u;
	uint8_t *buf = malloc(max_bytes), *want = malloc(max_bytes);
	long n;

	for (n = 0; (max_reads < 0 || n < max_reads) && now() < deadline; n++) {
		struct pair *p = &pairs[rand_r(&seed) % npairs];
		uint64_t off = ((uint64_t)rand_r(&seed) << 31 | (uint64_t)rand_r(&seed)) % p->size;
		size_t len = 1 + (size_t)rand_r(&seed) % max_bytes;
		ssize_t got, exp;
		double t0, t;

		if (len > p->size - off)
			len = (size_t)(p->size - off);
		t0 = now();
		if (use_mmap) {
			memcpy(buf, p->map + off, len);
			got = (ssize_t)len;
		} else {
			got = pread(p->fd, buf, len, (off_t)off);
		}
		t = now() - t0;
		exp = pread(p->efd, want, len, (off_t)off);
		atomic_fetch_add(&reads, 1);
		pthread_mutex_lock(&worst_lock);
		if (t > worst)
			worst = t;
		pthread_mutex_unlock(&worst_lock);
		if (got < 0) {
			if (atomic_fetch_add(&errors, 1) < 5)
				fprintf(stderr, "fs_stress: %s: read of %zu at %llu: %s\n", p->image,
					len, (unsigned long long)off, strerror(errno));
			continue;
		}
		atomic_fetch_add(&bytes, (unsigned long long)got);
		if (got != exp || memcmp(buf, want, (size_t)got)) {
			if (atomic_fetch_add(&mismatches, 1) < 5)
				fprintf(stderr,
					"fs_stress: %s: WRONG BYTES in %zu at %llu (got %zd, want %zd)\n",
					p->image, len, (unsigned long long)off, got, exp);
		}
	}
	free(buf);
	free(want);
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = 64, i, c;
	double seconds = 30, t0;
	pthread_t *tids;
	struct stat st;

	while ((c = getopt(argc, argv, "t:s:n:mb:")) != -1) {
		switch (c) {
		case 't':
			threads = atoi(optarg);
			break;
		case 's':
			seconds = atof(optarg);
			break;
		case 'n':
			max_reads = atol(optarg);
			break;
		case 'm':
			use_mmap = 1;
			break;
		case 'b':
			max_bytes = (size_t)atol(optarg);
			break;
		default:
			return 2;
		}
	}
	if ((argc - optind) < 2 || (argc - optind) % 2 || threads < 1 || !max_bytes) {
		fprintf(stderr, "usage: fs_stress [-t N] [-s S] [-n R] [-m] [-b B] IMAGE EXPECTED...\n");
		return 2;
	}
	npairs = (argc - optind) / 2;
	pairs = calloc((size_t)npairs, sizeof(*pairs));
	for (i = 0; i < npairs; i++) {
		struct pair *p = &pairs[i];
		p->image = argv[optind + 2 * i];
		p->expected = argv[optind + 2 * i + 1];
		p->fd = open(p->image, O_RDONLY);
		p->efd = open(p->expected, O_RDONLY);
		if (p->fd < 0 || p->efd < 0 || fstat(p->efd, &st) < 0) {
			fprintf(stderr, "fs_stress: cannot open %s or %s: %s\n", p->image, p->expected,
				strerror(errno));
			return 2;
		}
		p->size = (uint64_t)st.st_size;
		if (use_mmap) {
			p->map = mmap(NULL, p->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, p->fd, 0);
			if (p->map == MAP_FAILED) {
				fprintf(stderr, "fs_stress: mmap %s: %s\n", p->image, strerror(errno));
				return 2;
			}
		}
	}
	tids = calloc((size_t)threads, sizeof(*tids));
	t0 = now();
	deadline = t0 + seconds;
	for (i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, reader, (void *)(uintptr_t)(i + 1));
	for (i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	t0 = now() - t0;
	printf("fs_stress: %d threads%s, %.1f s: %ld reads, %.1f MiB (%.1f MiB/s), %ld errors, "
	       "%ld mismatches, longest wait %.3f s\n",
	       threads, use_mmap ? " (mmap)" : "", t0, atomic_load(&reads),
	       (double)atomic_load(&bytes) / 1048576, (double)atomic_load(&bytes) / 1048576 / t0,
	       atomic_load(&errors), atomic_load(&mismatches), worst);
	free(tids);
	free(pairs);
	return atomic_load(&errors) || atomic_load(&mismatches) ? 1 : 0;
}
