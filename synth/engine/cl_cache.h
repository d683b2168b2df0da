/* SPDX-License-Identifier: GPL-2.0-only */
/* The persistent cache of the lazy engine (internal to the core): one
 * directory per overlay, ROOT/<overlay id in hex>, locked by the daemon
 * that uses it; the least recently used ones are evicted past a size
 * limit. Names under ROOT are never taken from the overlay: only the hex
 * of its id, and eviction removes nothing else and follows no link. */
#ifndef CL_CACHE_H
#define CL_CACHE_H

#include <stdint.h>

struct cl_cache {
	char *dir;      /* the directory in use; owned */
	int lock_fd;    /* flock held on dir/lock, or -1 */
	int is_private; /* a temporary directory of ours: cl_cache_close removes it */
	char note[256]; /* why the shared directory is not used, or "" */
};

/* Opens the cache directory of the overlay whose id is id[0..31] under
 * root (NULL: none, use a private one), evicting other overlays' caches
 * until root holds at most limit bytes besides need. When it cannot be had
 * (not writable, in use by another daemon) a private temporary directory
 * serves instead and c->note says why. -errno only if not even that can be
 * made; cl_cache_close is then still safe. */
int cl_cache_open(struct cl_cache *c, const char *root, const uint8_t *id, uint64_t limit,
                  uint64_t need);

/* Unlocks; removes a private directory; frees c->dir. */
void cl_cache_close(struct cl_cache *c);

/* A fresh private directory $TMPDIR/PREFIX-XXXXXX (default /var/tmp) into
 * *out, which the caller frees (NULL after an error). It holds a file
 * "lock", flocked through *lock_fd for as long as that stays open: the
 * caller removes the directory, then closes *lock_fd (-1 where flock does
 * not work: no lock then, and no sweep takes the directory). Making one first
 * removes the caller's directories of the same prefix holding a lock that
 * nobody holds, left by a daemon killed before it could remove its own. */
int cl_cache_temp_dir(const char *prefix, char **out, int *lock_fd);

/* dir/name, created if missing, opened read-write into *fd and sized to
 * size; *path (the caller frees it, also after an error) names it. */
int cl_cache_file(const char *dir, const char *name, uint64_t size, char **path, int *fd);

/* Removes path and, if it is a directory, all in it, never following a
 * symbolic link: a link is removed, not its target. */
int cl_cache_rm_rf(const char *path);

#endif
