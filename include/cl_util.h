/* SPDX-License-Identifier: GPL-2.0-only */
/* Small helpers every module uses: SHA-256, whole-buffer I/O, atomic output
 * files, hex, and a parallel for-loop over all cores. */
#ifndef CL_UTIL_H
#define CL_UTIL_H

#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define CL_SHA256_LEN 32

void cl_sha256(const void *data, size_t len, uint8_t out[CL_SHA256_LEN]);

/* Whether the len bytes at data are all zero. */
int cl_is_zero(const void *data, size_t len);

/* Lower-case hex of len bytes into out (2 * len + 1 bytes). */
void cl_hex(const uint8_t *data, size_t len, char *out);
/* Parses exactly 2 * len hex digits; 0 or -EINVAL. */
int cl_unhex(const char *hex, uint8_t *out, size_t len);

/* Read or write exactly len bytes at off; EINTR is retried, a short file is
 * -EIO. path only names the file in error messages. */
int cl_pread_full(int fd, void *buf, size_t len, uint64_t off, const char *path);
int cl_pwrite_full(int fd, const void *buf, size_t len, uint64_t off, const char *path);

/* Copies bytes [start, end) of src to the same place in dst with
 * copy_file_range, or read and write where the kernel cannot. *buf is a
 * bounce buffer allocated on first need; the caller frees it. */
int cl_copy_range(int src, const char *src_path, int dst, const char *dst_path, uint64_t start,
                  uint64_t end, char **buf);
/* Copies the first size bytes of src into dst, which becomes size bytes
 * long; holes of src stay holes. */
int cl_copy_sparse(int src, const char *src_path, int dst, const char *dst_path, uint64_t size);

/* Output that replaces path only when complete: data goes to a temporary
 * name in the same directory, cl_out_commit() fsyncs and renames it over
 * path, cl_out_abort() removes it. Either must be called exactly once. */
struct cl_out {
	int fd;
	char *path;
	char *tmp;
};
int cl_out_open(struct cl_out *o, const char *path, mode_t mode);
/* Forces the data to disk (where a full disk shows up) without renaming:
 * lets several outputs be checked before any of them replaces a file. */
int cl_out_flush(struct cl_out *o);
int cl_out_commit(struct cl_out *o);
void cl_out_abort(struct cl_out *o);
/* Writes a whole buffer to path through cl_out. */
int cl_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole regular file of at most max bytes into *buf, which the
 * caller frees; a NUL follows the *len bytes read (not counted). */
int cl_read_file(const char *path, size_t max, void **buf, size_t *len);

/* mkdir -p: creates path and its missing parents. */
int cl_mkdir_p(const char *path, mode_t mode);

/* The same; *made (if not NULL) tells whether this call made path itself,
 * so that a failed command removes only a directory that is its own. */
int cl_mkdir_p_made(const char *path, mode_t mode, int *made);

/* Parses a size: digits with an optional K, M, G or T suffix (powers of
 * 1024; "KiB" and "KB" spellings too): 4096, 4K, 1M, 20GiB. 0 or -EINVAL. */
int cl_parse_size(const char *s, uint64_t *out);

/* Makes sure descriptors 0, 1 and 2 are open (on /dev/null if they were
 * closed), so that no file of ours gets one: a lock there would be lost to
 * a later dup2, output written into it. Programs call it first. */
int cl_std_fds_open(void);

/* Number of worker threads to use: the online CPUs, or CLOUDLET_THREADS. */
unsigned cl_nthreads(void);

/* Calls fn(ctx, i) for i in [0, n) on up to nthreads threads (0 = all
 * cores). Returns 0, or the first negative value an fn returned; after a
 * failure no new items start. */
typedef int (*cl_pfor_fn)(void *ctx, size_t i);
int cl_pfor(unsigned nthreads, size_t n, cl_pfor_fn fn, void *ctx);

/* Monotonic clock in seconds. */
double cl_now(void);
/* Sleeps ms milliseconds (a signal may end it early). */
void cl_sleep_ms(long ms);

/* Connects to the unix stream socket at path (its peer listens once it is
 * told to: QEMU after migrate-incoming), trying again every 20 ms while
 * nobody listens there yet (ENOENT, ECONNREFUSED, EAGAIN), for at most
 * timeout seconds and until *stop (optional) becomes non-zero. 0 and the
 * socket (close-on-exec) in *fd; else -errno with a message: the last
 * attempt's error once the time is over, -ECANCELED on *stop. */
int cl_unix_connect(const char *path, double timeout, const atomic_int *stop, int *fd);

/* Whether the process at the other end of the unix socket fd (the
 * listener for a connected socket, the connecting process for an accepted
 * one: SO_PEERCRED) is pid; path names the socket in the message. 0, or
 * -EPERM with a message naming both processes. A socket in a directory
 * that QEMU's user may write could be any of that user's processes. */
int cl_unix_peer_is(int fd, const char *path, long pid);

/* Initializes c to time its waits on the monotonic clock, so that bounds
 * hold across changes of the wall clock. */
int cl_cond_init_monotonic(pthread_cond_t *c);

/* Waits on c (m held) until signalled or until the monotonic time `until`
 * (cl_now() seconds) has passed. Returns ETIMEDOUT after the bound. */
int cl_cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, double until);

#endif
