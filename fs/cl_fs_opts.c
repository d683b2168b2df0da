/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_fs_opts.h"
#include "cl_error.h"
#include "cl_util.h"
#include "cl_source.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char cl_fs_usage[] =
    "Usage: cloudletfs OVERLAY MOUNTPOINT -o base=IMAGE[,OPTION...] [-f] [-d]\n"
    "\n"
    "Serves the customized VM synthesized from the registered base IMAGE and\n"
    "OVERLAY (its overlay-meta, the directory holding it, or an http(s) URL of it)\n"
    "at MOUNTPOINT, lazily: the files are usable while the overlay is arriving.\n"
    "\n"
    "  disk/image, memory/image     the VM's disk and memory, read-write (writes\n"
    "                               go to a local store; base, overlay and cache\n"
    "                               are never written)\n"
    "  state, domain.xml            device state and domain XML, if carried\n"
    "  status                       progress, `key: value` lines (state, segments,\n"
    "                               bytes, ranges, pid, ...)\n"
    "  {disk,memory}/stats/NAME     counters, one number per file\n"
    "  {disk,memory}/streams/NAME   chunks_accessed, chunks_present, chunks_modified:\n"
    "                               the chunks so far, then live, one per line\n"
    "                               `SECONDS.MICROS<TAB>CHUNK`\n"
    "\n"
    "A read of data not yet arrived waits for it; its segment is fetched at once.\n"
    "cloudletfs returns once the mount serves (unless -f). `cloudlet umount\n"
    "MOUNTPOINT` or SIGTERM stops it: waiting reads fail with EIO, then the mount\n"
    "goes away, even while a VM holds its files open.\n"
    "\n"
    "Options (-o, comma-separated; write a comma inside a value as \\,):\n"
    "  base=IMAGE             the registered base's disk image, or its id (required)\n"
    "  cache_dir=DIR          persistent cache of decoded chunks, kept per overlay\n"
    "                         (default $CLOUDLET_HOME/cache)\n"
    "  cache_limit=SIZE       size limit of that cache, with K, M or G; least\n"
    "                         recently used overlays are evicted (default 10G)\n"
    "  no_cache               decoded chunks go to a temporary cache, dropped at exit\n"
    "                         ($TMPDIR/cloudlet-cache-XXXXXX, default /var/tmp)\n"
    "  store_dir=DIR          where writes to the images go (default: a temporary\n"
    "                         directory, $TMPDIR/cloudlet-store-XXXXXX)\n"
    "  keep_store             keep the store at unmount (default: removed); fsync\n"
    "                         makes writes durable: the same overlay mounted again\n"
    "                         over store_dir with keep_store serves them (needs\n"
    "                         store_dir)\n"
    "  connections=N          segments fetched at once, 1 to 64 (default 4)\n"
    "  timeout=SECONDS        how long a disk read waits for missing data before\n"
    "                         failing with EIO (default 60)\n"
    "  memory_timeout=SECONDS the same for memory/image (default 300): an EIO there\n"
    "                         kills the VM (SIGBUS in QEMU), so it waits longer\n"
    "  fetch_timeout=SECONDS  bound on one HTTP request (default 30)\n"
    "  retries=N              HTTP retries per request, with backoff, 1 to 100\n"
    "                         (default 5)\n"
    "  no_stream              fetch on demand only: no background stream (and, as\n"
    "                         the postcopy source, no push of pages not asked for)\n"
    "  allow_other            let other users use the mount (QEMU runs as\n"
    "                         libvirt-qemu); the mode bits below still apply\n"
    "  default_permissions    let the kernel check the mode bits\n"
    "  uid=USER, gid=GROUP    owner and group of the files (default: the mounting\n"
    "                         user's); images are mode 0660, other files 0444\n"
    "  log=FILE               append the daemon's messages to FILE (in the\n"
    "                         background they go to syslog otherwise, facility\n"
    "                         daemon, tag cloudletfs)\n"
    "  ro                     read-only mount\n"
    "  Accepted and ignored (mount(8), fstab and mount.fuse3 pass them): rw,\n"
    "  defaults, auto, noauto, user, user=NAME, users, nouser, owner, nofail,\n"
    "  _netdev, dev, nodev, suid, nosuid, exec, noexec, sync, async, dirsync,\n"
    "  [no]atime, [no]diratime, [no]relatime, [no]strictatime, [no]lazytime,\n"
    "  x-*, comment=*.\n"
    "\n"
    "Other options:\n"
    "  -f              stay in the foreground\n"
    "  -d, --debug     print every FUSE request (implies -f)\n"
    "  -h, --help      this help\n"
    "  -V, --version   print the version\n"
    "\n"
    "mount(8) and /etc/fstab (mount.fuse3 runs cloudletfs from PATH):\n"
    "  mount -t fuse.cloudletfs OVERLAY MOUNTPOINT -o base=IMAGE[,allow_other]\n"
    "  OVERLAY  MOUNTPOINT  fuse.cloudletfs  base=IMAGE,noauto  0  0\n"
    "\n"
    "Exit status: 0 once mounted (with -f: after a clean unmount), 1 on failure,\n"
    "2 on a usage error.\n";

/* Options mount(8), fstab and mount.fuse3 may pass that mean nothing here. */
static const char *const ignored[] = {
    "rw",         "defaults", "auto",       "noauto",      "user",          "users",
    "nouser",     "owner",    "nofail",     "_netdev",     "dev",           "nodev",
    "suid",       "nosuid",   "exec",       "noexec",      "sync",          "async",
    "dirsync",    "atime",    "noatime",    "diratime",    "nodiratime",    "relatime",
    "norelatime", "lazytime", "nolazytime", "strictatime", "nostrictatime", "",
    NULL,
};

/* Absolute form of a path that may not exist yet. */
static int absolute(const char *path, char **out)
{
	char cwd[PATH_MAX], *s;

	if (path[0] == '/') {
		s = strdup(path);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return cl_errorf(-errno, "current directory: %s", strerror(errno));
		if (asprintf(&s, "%s/%s", cwd, path) < 0)
			s = NULL;
	}
	if (!s)
		return -ENOMEM;
	*out = s;
	return 0;
}

/* The daemon leaves its working directory: every path is made absolute
 * while the caller's still means something. */
static int resolve(const char *path, int must_exist, char **out)
{
	char *s;

	s = realpath(path, NULL);
	if (s) {
		*out = s;
		return 0;
	}
	if (must_exist)
		return cl_errorf(-errno, "%s: %s", path, strerror(errno));
	return absolute(path, out);
}

static int set_path(char **dst, const char *key, const char *val)
{
	if (!*val)
		return cl_errorf(-EINVAL, "option %s= needs a value", key);
	free(*dst);
	*dst = NULL;
	return resolve(val, 0, dst);
}

static int parse_uint(const char *key, const char *val, unsigned long lo, unsigned long hi,
                      unsigned *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(val, &end, 10);
	if (errno || end == val || *end || *val == '-' || v < lo || v > hi)
		return cl_errorf(-EINVAL, "option %s=%s: expected a whole number from %lu to %lu",
		                 key, val, lo, hi);
	*out = (unsigned)v;
	return 0;
}

/* Seconds, fractions allowed, into milliseconds (0 would mean "default"
 * to the engine, so at least 1 ms). */
static int parse_seconds(const char *key, const char *val, unsigned *ms)
{
	double v;
	char *end;

	errno = 0;
	v = strtod(val, &end);
	if (errno || end == val || *end || !(v >= 0.001) || v > 7 * 86400.0)
		return cl_errorf(-EINVAL, "option %s=%s: expected seconds, from 0.001 to 604800",
		                 key, val);
	*ms = (unsigned)(v * 1000 + 0.5);
	return 0;
}

static int parse_size(const char *key, const char *val, uint64_t *out)
{
	if (cl_parse_size(val, out) < 0 || *out == 0)
		return cl_errorf(-EINVAL, "option %s=%s: expected a size above 0, like 500M or 20G",
		                 key, val);
	return 0;
}

static int parse_user(const char *val, uid_t *uid)
{
	struct passwd *pw;
	unsigned n;

	pw = getpwnam(val);
	if (pw) {
		*uid = pw->pw_uid;
		return 0;
	}
	if (parse_uint("uid", val, 0, 0xfffffffe, &n) < 0)
		return cl_errorf(-EINVAL, "option uid=%s: no such user", val);
	*uid = (uid_t)n;
	return 0;
}

static int parse_group(const char *val, gid_t *gid)
{
	struct group *gr;
	unsigned n;

	gr = getgrnam(val);
	if (gr) {
		*gid = gr->gr_gid;
		return 0;
	}
	if (parse_uint("gid", val, 0, 0xfffffffe, &n) < 0)
		return cl_errorf(-EINVAL, "option gid=%s: no such group", val);
	*gid = (gid_t)n;
	return 0;
}

static int is_ignored(const char *key, const char *val)
{
	int i;

	if (!strncmp(key, "x-", 2) || (val && (!strcmp(key, "comment") || !strcmp(key, "user"))))
		return 1;
	if (val)
		return 0;
	for (i = 0; ignored[i]; i++)
		if (!strcmp(key, ignored[i]))
			return 1;
	return 0;
}

/* One `key` or `key=value` of -o. */
static int apply_option(struct cl_fs_args *a, const char *key, const char *val)
{
	struct cl_lazy_opts *o = &a->lazy;

#define FLAG(name, field)                                                                          \
	if (!strcmp(key, name)) {                                                                  \
		if (val)                                                                           \
			return cl_errorf(-EINVAL, "option %s takes no value", key);                \
		field = 1;                                                                         \
		return 0;                                                                          \
	}
	FLAG("no_cache", o->no_cache)
	FLAG("keep_store", o->keep_store)
	FLAG("no_stream", o->no_stream)
	FLAG("allow_other", a->allow_other)
	FLAG("default_permissions", a->default_permissions)
	FLAG("ro", a->read_only)
#undef FLAG
	if (is_ignored(key, val))
		return 0;
	if (!val)
		return cl_errorf(-EINVAL, "unknown option '%s'", key);
	if (!strcmp(key, "base")) {
		if (!*val)
			return cl_errorf(-EINVAL, "option base= needs a value");
		free(a->base);
		/* A file is made absolute; anything else may be a base id. */
		a->base = access(val, F_OK) == 0 ? realpath(val, NULL) : strdup(val);
		return a->base ? 0 : -ENOMEM;
	}
	if (!strcmp(key, "cache_dir"))
		return set_path(&a->cache_dir, key, val);
	if (!strcmp(key, "store_dir"))
		return set_path(&a->store_dir, key, val);
	if (!strcmp(key, "log"))
		return set_path(&a->log, key, val);
	if (!strcmp(key, "cache_limit"))
		return parse_size(key, val, &o->cache_limit);
	if (!strcmp(key, "connections"))
		return parse_uint(key, val, 1, 64, &o->connections);
	if (!strcmp(key, "retries"))
		return parse_uint(key, val, 1, 100, &o->retries);
	if (!strcmp(key, "timeout"))
		return parse_seconds(key, val, &o->timeout_ms);
	if (!strcmp(key, "memory_timeout"))
		return parse_seconds(key, val, &o->memory_timeout_ms);
	if (!strcmp(key, "fetch_timeout"))
		return parse_seconds(key, val, &o->fetch_timeout_ms);
	if (!strcmp(key, "uid"))
		return parse_user(val, &a->uid);
	if (!strcmp(key, "gid"))
		return parse_group(val, &a->gid);
	return cl_errorf(-EINVAL, "unknown option '%s'", key);
}

/* Splits one -o argument at commas; a backslash escapes the next character
 * (as libfuse and mount.fuse3 write them). */
static int parse_o(struct cl_fs_args *a, const char *s)
{
	char *buf, *w, *val;
	int r = 0;

	buf = malloc(strlen(s) + 1);
	if (!buf)
		return -ENOMEM;
	while (r == 0) {
		w = buf;
		val = NULL;
		for (; *s && *s != ','; s++) {
			if (*s == '\\' && s[1])
				s++;
			else if (*s == '=' && !val) {
				*w++ = '\0';
				val = w;
				continue;
			}
			*w++ = *s;
		}
		*w = '\0';
		r = apply_option(a, buf, val);
		if (!*s)
			break;
		s++;
	}
	free(buf);
	return r;
}

int cl_fs_args_parse(int argc, char **argv, struct cl_fs_args *a)
{
	const char *pos[2];
	int i, npos = 0, r, opts_done = 0;

	if (!argv || !a)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	a->uid = getuid();
	a->gid = getgid();
	for (i = 1; i < argc; i++) {
		const char *s = argv[i];

		if (opts_done || s[0] != '-' || !s[1]) {
			if (npos == 2)
				return cl_errorf(-EINVAL, "unexpected argument '%s'", s);
			pos[npos++] = s;
		} else if (!strcmp(s, "--")) {
			opts_done = 1;
		} else if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
			a->help = 1;
			return 0;
		} else if (!strcmp(s, "-V") || !strcmp(s, "--version")) {
			a->version = 1;
			return 0;
		} else if (!strcmp(s, "-f")) {
			a->foreground = 1;
		} else if (!strcmp(s, "-d") || !strcmp(s, "--debug")) {
			a->debug = a->foreground = 1;
		} else if (!strcmp(s, "-o")) {
			if (++i == argc)
				return cl_errorf(-EINVAL, "-o needs options");
			r = parse_o(a, argv[i]);
			if (r < 0)
				return r;
		} else if (!strncmp(s, "-o", 2)) {
			r = parse_o(a, s + 2);
			if (r < 0)
				return r;
		} else {
			return cl_errorf(-EINVAL, "unknown option '%s'", s);
		}
	}
	if (npos < 2)
		return cl_errorf(-EINVAL, "expected OVERLAY and MOUNTPOINT");
	if (!a->base)
		return cl_errorf(-EINVAL, "-o base=IMAGE is required");
	if (cl_source_is_url(pos[0]))
		a->overlay = strdup(pos[0]);
	else if ((r = resolve(pos[0], 1, &a->overlay)) < 0)
		return r;
	if (!a->overlay)
		return -ENOMEM;
	r = resolve(pos[1], 1, &a->mountpoint);
	if (r < 0)
		return r;
	if (a->lazy.keep_store && !a->store_dir)
		return cl_errorf(-EINVAL, "keep_store needs store_dir=DIR, where the kept store is "
		                          "found again");
	a->lazy.cache_dir = a->cache_dir;
	a->lazy.store_dir = a->store_dir;
	return 0;
}

void cl_fs_args_free(struct cl_fs_args *a)
{
	if (!a)
		return;
	free(a->overlay);
	free(a->mountpoint);
	free(a->base);
	free(a->cache_dir);
	free(a->store_dir);
	free(a->log);
	memset(a, 0, sizeof(*a));
}
