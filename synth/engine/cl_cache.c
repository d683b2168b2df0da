/* SPDX-License-Identifier: GPL-2.0-only */
/* Persistent cache directories (see cl_cache.h). */
#include "cl_cache.h"
#include "cl_error.h"
#include "cl_util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_rf_at(int at, const char *name)
{
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return unlinkat(at, name, 0) < 0 && errno != ENOENT ? -errno : 0;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rm_rf_at(dirfd(d), de->d_name);
	closedir(d);
	return unlinkat(at, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

int cl_cache_rm_rf(const char *path)
{
	return rm_rf_at(AT_FDCWD, path);
}

/* A cache directory's name: an overlay id in lowercase hex, as cl_hex()
 * writes it; nothing else in the cache root is ever evicted. */
static int cache_name(const char *name)
{
	size_t i;

	for (i = 0; i < 2 * CL_SHA256_LEN; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return 0;
	return name[i] == '\0';
}

struct cache_entry {
	char *path;
	time_t mtime;
	uint64_t bytes;
};

static int cmp_entry(const void *a, const void *b)
{
	const struct cache_entry *x = a, *y = b;

	return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

static uint64_t dir_bytes(const char *dir)
{
	struct dirent *de;
	struct stat st;
	uint64_t total = 0;
	char *p;
	DIR *d = opendir(dir);

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || asprintf(&p, "%s/%s", dir, de->d_name) < 0)
			continue;
		if (lstat(p, &st) == 0)
			total += (uint64_t)st.st_blocks * 512;
		free(p);
	}
	closedir(d);
	return total;
}

/* Opens the lock file at at/path and takes it if nobody holds it: 1 then,
 * held through *fd. The caller closes *fd whenever it is >= 0. */
static int lock_unheld(int at, const char *path, int *fd)
{
	*fd = openat(at, path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	return *fd >= 0 && flock(*fd, LOCK_EX | LOCK_NB) == 0;
}

/* Removes the least recently used overlays' caches (not ours, not in use)
 * until the cache root holds at most limit bytes plus what we will add. */
static void evict(const char *root, const char *mine, uint64_t limit, uint64_t need)
{
	struct cache_entry *e = NULL, *tmp;
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	struct stat st;
	uint64_t total = need;
	char *p;
	DIR *d = opendir(root);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!cache_name(de->d_name) || asprintf(&p, "%s/%s", root, de->d_name) < 0)
			continue;
		if (!strcmp(p, mine) || lstat(p, &st) < 0 || !S_ISDIR(st.st_mode)) {
			free(p);
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			tmp = realloc(e, cap * sizeof(*e));
			if (!tmp) {
				free(p);
				break;
			}
			e = tmp;
		}
		e[n].path = p;
		e[n].mtime = st.st_mtime;
		e[n].bytes = dir_bytes(p);
		total += e[n].bytes;
		n++;
	}
	closedir(d);
	if (n)
		qsort(e, n, sizeof(*e), cmp_entry);
	for (i = 0; i < n && total > limit; i++) {
		char *lock;
		int fd;
		if (asprintf(&lock, "%s/lock", e[i].path) < 0)
			continue;
		/* A cache another daemon holds stays. */
		if (lock_unheld(AT_FDCWD, lock, &fd)) {
			cl_cache_rm_rf(e[i].path);
			total -= e[i].bytes;
		}
		if (fd >= 0)
			close(fd);
		free(lock);
	}
	for (i = 0; i < n; i++)
		free(e[i].path);
	free(e);
}

int cl_cache_file(const char *dir, const char *name, uint64_t size, char **path, int *fd)
{
	if (asprintf(path, "%s/%s", dir, name) < 0) {
		*path = NULL;
		return -ENOMEM;
	}
	*fd = open(*path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (*fd < 0)
		return cl_errorf(-errno, "%s: %s", *path, strerror(errno));
	if (ftruncate(*fd, (off_t)size) < 0)
		return cl_errorf(-errno, "%s: %s", *path, strerror(errno));
	return 0;
}

/* NAME is PREFIX-XXXXXX, as mkdtemp makes it. */
static int temp_name(const char *name, const char *prefix)
{
	size_t n = strlen(prefix), i;

	if (strncmp(name, prefix, n) || name[n] != '-')
		return 0;
	for (i = n + 1; isalnum((unsigned char)name[i]); i++)
		;
	return name[i] == '\0' && i == n + 7;
}

/* Whether the directory open as fd, named name in at, is the euid's and
 * holds a lock file that nobody holds: that lock is then held through
 * *lock until the caller closes it, so that two sweeps do not race. */
static int stale(int at, const char *name, int fd, int *lock)
{
	struct stat st, now, ls;

	if (fstat(fd, &st) < 0 || st.st_uid != geteuid())
		return 0;
	if (!lock_unheld(fd, "lock", lock))
		return 0;
	/* Still the directory checked, and its lock not removed meanwhile by
	 * a daemon closing or another sweep: the name is looked up again. */
	return fstat(*lock, &ls) == 0 && ls.st_nlink > 0 &&
	       fstatat(at, name, &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == st.st_dev &&
	       now.st_ino == st.st_ino;
}

/* Removes the euid's directories PREFIX-XXXXXX under tmp whose lock file
 * nobody holds. One without a lock file is left alone: it is being made
 * (the lock comes in already held), was made where flock does not work,
 * or its daemon was killed before the lock came in (rare; never swept). */
static void sweep(const char *tmp, const char *prefix)
{
	struct dirent *de;
	int fd, lock;
	DIR *d = opendir(tmp);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!temp_name(de->d_name, prefix))
			continue;
		fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		lock = -1;
		if (stale(dirfd(d), de->d_name, fd, &lock))
			rm_rf_at(dirfd(d), de->d_name);
		if (lock >= 0)
			close(lock);
		close(fd);
	}
	closedir(d);
}

/* dir/lock, created aside, flocked, then renamed in: a sweep never sees it
 * unheld. Where flock does not work the directory goes without: safe, as
 * no sweep takes it. */
static int lock_new(const char *dir, int *lock_fd)
{
	int dfd, fd, r = 0;

	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	fd = openat(dfd, "lock.new", O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
	} else if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == ENOLCK || errno == EOPNOTSUPP ? 0 : -errno;
		unlinkat(dfd, "lock.new", 0);
		close(fd);
		fd = -1;
	} else if (renameat(dfd, "lock.new", dfd, "lock") < 0) {
		r = -errno;
		close(fd);
	}
	if (r == 0)
		*lock_fd = fd;
	close(dfd);
	return r;
}

int cl_cache_temp_dir(const char *prefix, char **out, int *lock_fd)
{
	const char *tmp = getenv("TMPDIR");
	int r;

	if (!tmp || !*tmp)
		tmp = "/var/tmp";
	if (asprintf(out, "%s/%s-XXXXXX", tmp, prefix) < 0) {
		*out = NULL;
		return -ENOMEM;
	}
	sweep(tmp, prefix);
	if (!mkdtemp(*out)) {
		r = cl_errorf(-errno, "%s: cannot create: %s", *out, strerror(errno));
		goto fail;
	}
	if ((r = lock_new(*out, lock_fd)) < 0) {
		cl_errorf(r, "%s: cannot make its lock file: %s", *out, strerror(-r));
		cl_cache_rm_rf(*out);
		goto fail;
	}
	return 0;
fail:
	free(*out);
	*out = NULL;
	return r;
}

int cl_cache_open(struct cl_cache *c, const char *root, const uint8_t *id, uint64_t limit,
                  uint64_t need)
{
	char hex[2 * CL_SHA256_LEN + 1], *lock = NULL;
	const char *why = "cannot create it";
	int r, e = 0;

	memset(c, 0, sizeof(*c));
	c->lock_fd = -1;
	if (root) {
		cl_hex(id, CL_SHA256_LEN, hex);
		if (asprintf(&c->dir, "%s/%s", root, hex) < 0) {
			c->dir = NULL;
			return -ENOMEM;
		}
		/* Whatever keeps the cache from being used is said: a remount
		 * would otherwise fetch everything again unexplained. */
		if ((r = cl_mkdir_p(c->dir, 0700)) < 0) {
			e = -r;
		} else if (asprintf(&lock, "%s/lock", c->dir) < 0) {
			lock = NULL;
			e = ENOMEM;
		} else if ((c->lock_fd =
		                open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)) < 0) {
			why = "cannot create its lock file";
			e = errno;
		} else if (flock(c->lock_fd, LOCK_EX | LOCK_NB) == 0) {
			utimensat(AT_FDCWD, c->dir, NULL, 0);
			evict(root, c->dir, limit, need);
			free(lock);
			return 0;
		} else {
			why = "in use by another cloudletfs";
		}
		snprintf(c->note, sizeof(c->note),
		         "cache %s unusable (%s%s%s); using a private temporary cache", c->dir, why,
		         e ? ": " : "", e ? strerror(e) : "");
		if (c->lock_fd >= 0)
			close(c->lock_fd);
		c->lock_fd = -1;
		free(lock);
		free(c->dir);
		c->dir = NULL;
		cl_error_clear();
	}
	r = cl_cache_temp_dir("cloudlet-cache", &c->dir, &c->lock_fd);
	if (r < 0)
		return r;
	c->is_private = 1;
	return 0;
}

void cl_cache_close(struct cl_cache *c)
{
	if (c->is_private && c->dir)
		cl_cache_rm_rf(c->dir);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	c->lock_fd = -1;
	free(c->dir);
	c->dir = NULL;
}
