/* SPDX-License-Identifier: GPL-2.0-only */
/* fs_stress: concurrent readers of synthesized images compared with the
 * expected files. Used by the filesystem tests and reliability runs.
 *
 *   fs_stress [-t THREADS] [-p PROCS] [-s SECONDS] [-n READS] [-m | -x]
 *             [-b MAXBYTES] IMAGE EXPECTED [IMAGE EXPECTED ...]
 *
 * Each thread picks a pair and a random range and compares pread() (or,
 * with -m, bytes touched through a MAP_PRIVATE mapping: page faults; with
 * -x, every other thread does that) with the expected file. With -p, PROCS
 * processes (forked, each with its own descriptors and mappings) run
 * THREADS threads each. Runs until SECONDS pass or each thread made READS
 * reads. Prints reads, bytes, errors, mismatches and the longest wait;
 * exits 1 on any mismatch or error, or if a process dies (SIGBUS). */
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct pair {
	const char *image, *expected;
	int fd, efd;
	uint64_t size;
	uint8_t *map; /* -m: MAP_PRIVATE of image */
};

#define MAX_PROCS 64

/* Totals of every process: in shared memory. */
struct totals {
	atomic_long reads, errors, mismatches;
	atomic_ullong bytes;
	double worst[MAX_PROCS]; /* each process writes its own */
};

static struct pair *pairs;
static int npairs, use_mmap, mixed, proc;
static double deadline;
static long max_reads = -1;
static size_t max_bytes = 1 << 20;
static struct totals *tot;
static pthread_mutex_t worst_lock = PTHREAD_MUTEX_INITIALIZER;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *reader(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	unsigned seed = (id + 1000u * (unsigned)proc) * 2654435761u;
	int mapped = use_mmap || (mixed && id % 2);
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
		if (mapped) {
			memcpy(buf, p->map + off, len);
			got = (ssize_t)len;
		} else {
			got = pread(p->fd, buf, len, (off_t)off);
		}
		t = now() - t0;
		exp = pread(p->efd, want, len, (off_t)off);
		atomic_fetch_add(&tot->reads, 1);
		pthread_mutex_lock(&worst_lock);
		if (t > tot->worst[proc])
			tot->worst[proc] = t;
		pthread_mutex_unlock(&worst_lock);
		if (got < 0) {
			if (atomic_fetch_add(&tot->errors, 1) < 5)
				fprintf(stderr, "fs_stress: %s: read of %zu at %llu: %s\n",
				        p->image, len, (unsigned long long)off, strerror(errno));
			continue;
		}
		atomic_fetch_add(&tot->bytes, (unsigned long long)got);
		if (got != exp || memcmp(buf, want, (size_t)got)) {
			if (atomic_fetch_add(&tot->mismatches, 1) < 5)
				fprintf(stderr,
				        "fs_stress: %s: WRONG BYTES in %zu at %llu (got %zd, want "
				        "%zd)\n",
				        p->image, len, (unsigned long long)off, got, exp);
		}
	}
	free(buf);
	free(want);
	return NULL;
}

static int report(int threads, int procs, double secs, double worst, int died)
{
	double mib = (double)atomic_load(&tot->bytes) / 1048576;
	const char *kind = use_mmap ? " (mmap)" : mixed ? " (half mmap)" : "";

	printf("fs_stress: %d threads", threads * procs);
	if (procs > 1)
		printf(" in %d processes", procs);
	printf("%s, %.1f s: %ld reads, %.1f MiB (%.1f MiB/s), %ld errors, "
	       "%ld mismatches, longest wait %.3f s\n",
	       kind, secs, atomic_load(&tot->reads), mib, mib / secs, atomic_load(&tot->errors),
	       atomic_load(&tot->mismatches), worst);
	return atomic_load(&tot->errors) || atomic_load(&tot->mismatches) || died ? 1 : 0;
}

/* One process's share: opens (and maps) every pair, runs the threads. */
static int run(int threads)
{
	pthread_t *tids;
	struct stat st;
	int i;

	for (i = 0; i < npairs; i++) {
		struct pair *p = &pairs[i];
		p->fd = open(p->image, O_RDONLY);
		p->efd = open(p->expected, O_RDONLY);
		if (p->fd < 0 || p->efd < 0 || fstat(p->efd, &st) < 0) {
			fprintf(stderr, "fs_stress: cannot open %s or %s: %s\n", p->image,
			        p->expected, strerror(errno));
			return 2;
		}
		p->size = (uint64_t)st.st_size;
		if (use_mmap || mixed) {
			p->map = mmap(NULL, p->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, p->fd, 0);
			if (p->map == MAP_FAILED) {
				fprintf(stderr, "fs_stress: mmap %s: %s\n", p->image,
				        strerror(errno));
				return 2;
			}
		}
	}
	tids = calloc((size_t)threads, sizeof(*tids));
	if (!tids)
		return 2;
	for (i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, reader, (void *)(uintptr_t)(i + 1));
	for (i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	free(tids);
	return 0;
}

int main(int argc, char **argv)
{
	int threads = 64, procs = 1, died = 0, i, c, status;
	double seconds = 30, t0, worst = 0;
	pid_t pid;

	while ((c = getopt(argc, argv, "t:p:s:n:mxb:")) != -1) {
		switch (c) {
		case 't':
			threads = atoi(optarg);
			break;
		case 'p':
			procs = atoi(optarg);
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
		case 'x':
			mixed = 1;
			break;
		case 'b':
			max_bytes = (size_t)atol(optarg);
			break;
		default:
			return 2;
		}
	}
	if ((argc - optind) < 2 || (argc - optind) % 2 || threads < 1 || !max_bytes || procs < 1 ||
	    procs > MAX_PROCS) {
		fprintf(stderr, "usage: fs_stress [-t N] [-p P] [-s S] [-n R] [-m | -x] [-b B] "
		                "IMAGE EXPECTED...\n");
		return 2;
	}
	npairs = (argc - optind) / 2;
	pairs = calloc((size_t)npairs, sizeof(*pairs));
	tot = mmap(NULL, sizeof(*tot), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!pairs || tot == MAP_FAILED)
		return 2;
	for (i = 0; i < npairs; i++) {
		pairs[i].image = argv[optind + 2 * i];
		pairs[i].expected = argv[optind + 2 * i + 1];
	}
	t0 = now();
	deadline = t0 + seconds;
	if (procs == 1)
		return run(threads) ? 2 : report(threads, 1, now() - t0, tot->worst[0], 0);
	for (i = 0; i < procs; i++) {
		pid = fork();
		if (pid < 0) {
			perror("fs_stress: fork");
			return 2;
		}
		if (pid == 0) {
			proc = i;
			_exit(run(threads));
		}
	}
	for (i = 0; i < procs; i++) {
		if (wait(&status) < 0)
			break;
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			died++;
			if (WIFSIGNALED(status))
				fprintf(stderr, "fs_stress: a reader process died: %s\n",
				        strsignal(WTERMSIG(status)));
		}
	}
	for (i = 0; i < procs; i++)
		if (tot->worst[i] > worst)
			worst = tot->worst[i];
	return report(threads, procs, now() - t0, worst, died);
}
