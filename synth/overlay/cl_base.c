/* SPDX-License-Identifier: GPL-2.0-only */
/* Base VMs: chunk index, registry (see cl_base.h). */
#include "cl_base.h"
#include "cl_base_index.h"
#include "cl_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cl_home(void)
{
	static char buf[PATH_MAX];
	const char *env = getenv("CLOUDLET_HOME"), *xdg, *home;

	if (env && *env)
		return env;
	if (geteuid() == 0)
		return "/var/lib/cloudlet";
	xdg = getenv("XDG_DATA_HOME");
	home = getenv("HOME");
	if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "%s/cloudlet", xdg);
	else
		snprintf(buf, sizeof(buf), "%s/.local/share/cloudlet", home ? home : "/tmp");
	return buf;
}

static void base_compute_id(struct cl_base *b)
{
	uint8_t hdr[14 + 4 + 16];
	EVP_MD_CTX *ctx;
	unsigned n = CL_SHA256_LEN;
	int i;

	memcpy(hdr, "cloudlet-base", 14);
	put_le(hdr + 14, b->chunk_size, 4);
	put_le(hdr + 18, b->size[CL_DISK], 8);
	put_le(hdr + 26, b->size[CL_MEMORY], 8);
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		abort();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, hdr, sizeof(hdr));
	for (i = 0; i < CL_NIMAGES; i++)
		EVP_DigestUpdate(ctx, b->hash[i], b->nchunks[i] * CL_SHA256_LEN);
	EVP_DigestFinal_ex(ctx, b->id, &n);
	EVP_MD_CTX_free(ctx);
}

static struct cl_base *base_new(void)
{
	struct cl_base *b = calloc(1, sizeof(*b));

	if (b)
		b->fd[CL_DISK] = b->fd[CL_MEMORY] = b->index_fd = -1;
	return b;
}

static int base_open_images(struct cl_base *b, const char *const paths[CL_NIMAGES])
{
	struct stat st;
	int i;

	for (i = 0; i < CL_NIMAGES; i++) {
		b->path[i] = realpath(paths[i], NULL);
		if (!b->path[i])
			return cl_errorf(-errno, "%s: %s", paths[i], strerror(errno));
		b->fd[i] = open(b->path[i], O_RDONLY | O_CLOEXEC);
		if (b->fd[i] < 0)
			return cl_errorf(-errno, "%s: %s", paths[i], strerror(errno));
		if (fstat(b->fd[i], &st) < 0)
			return cl_errorf(-errno, "%s: %s", paths[i], strerror(errno));
		if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
			return cl_errorf(-EINVAL, "%s: not a regular file", paths[i]);
		b->size[i] = (uint64_t)st.st_size;
		b->nchunks[i] = cl_chunk_count(b->size[i], b->chunk_size);
	}
	return 0;
}

static int base_alloc_hashes(struct cl_base *b)
{
	int i;

	for (i = 0; i < CL_NIMAGES; i++) {
		b->hash[i] = malloc(b->nchunks[i] ? b->nchunks[i] * CL_SHA256_LEN : 1);
		if (!b->hash[i])
			return -ENOMEM;
	}
	return 0;
}

int cl_base_index(const char *disk, const char *memory, uint32_t chunk_size, struct cl_base **out)
{
	const char *paths[CL_NIMAGES] = {disk, memory};
	struct cl_progress prog;
	struct cl_base *b;
	int r, i;

	if (!disk || !memory || !out || chunk_size < 512 || chunk_size > (1u << 20) ||
	    (chunk_size & (chunk_size - 1)))
		return -EINVAL;
	b = base_new();
	if (!b)
		return -ENOMEM;
	b->chunk_size = chunk_size;
	r = base_open_images(b, paths);
	if (r < 0)
		goto fail;
	r = base_alloc_hashes(b);
	if (r < 0)
		goto fail;
	cl_progress_start(&prog, "indexing base", b->size[CL_DISK] + b->size[CL_MEMORY]);
	for (i = 0; i < CL_NIMAGES && r == 0; i++)
		r = cl_hash_image(b->fd[i], b->path[i], b->size[i], chunk_size, b->hash[i], &prog);
	cl_progress_end(&prog);
	if (r < 0)
		goto fail;
	base_compute_id(b);
	*out = b;
	return 0;

fail:
	cl_base_free(b);
	return r;
}

/* ---- index file ---- */

static int index_write(const struct cl_base *b, const char *path)
{
	uint8_t hdr[8 + 4 + 4 + 8 + 8 + CL_SHA256_LEN], digest[CL_SHA256_LEN];
	unsigned n = CL_SHA256_LEN;
	struct cl_out o;
	EVP_MD_CTX *ctx;
	uint64_t off;
	int r, i;

	memcpy(hdr, INDEX_MAGIC, 8);
	put_le(hdr + 8, INDEX_VERSION, 4);
	put_le(hdr + 12, b->chunk_size, 4);
	put_le(hdr + 16, b->size[CL_DISK], 8);
	put_le(hdr + 24, b->size[CL_MEMORY], 8);
	memcpy(hdr + 32, b->id, CL_SHA256_LEN);
	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	r = cl_out_open(&o, path, 0644);
	if (r < 0)
		goto out_ctx;
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, hdr, sizeof(hdr));
	r = cl_pwrite_full(o.fd, hdr, sizeof(hdr), 0, path);
	off = sizeof(hdr);
	for (i = 0; i < CL_NIMAGES && r == 0; i++) {
		EVP_DigestUpdate(ctx, b->hash[i], b->nchunks[i] * CL_SHA256_LEN);
		r = cl_pwrite_full(o.fd, b->hash[i], b->nchunks[i] * CL_SHA256_LEN, off, path);
		off += b->nchunks[i] * CL_SHA256_LEN;
	}
	EVP_DigestFinal_ex(ctx, digest, &n);
	if (r == 0)
		r = cl_pwrite_full(o.fd, digest, CL_SHA256_LEN, off, path);
	if (r < 0)
		cl_out_abort(&o);
	else
		r = cl_out_commit(&o);
out_ctx:
	EVP_MD_CTX_free(ctx);
	return r;
}

static int index_read(struct cl_base *b, const char *path)
{
	uint8_t hdr[INDEX_HDR], digest[CL_SHA256_LEN], stored[CL_SHA256_LEN], id[CL_SHA256_LEN];
	unsigned n = CL_SHA256_LEN;
	EVP_MD_CTX *ctx;
	uint64_t off;
	int fd, r, i;

	r = cl_base_index_open_file(b, path, hdr, &fd);
	if (r < 0)
		return r;
	ctx = EVP_MD_CTX_new();
	if (!ctx) {
		r = -ENOMEM;
		goto out_fd;
	}
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, hdr, sizeof(hdr));
	off = sizeof(hdr);
	for (i = 0; i < CL_NIMAGES && r == 0; i++) {
		r = cl_pread_full(fd, b->hash[i], b->nchunks[i] * CL_SHA256_LEN, off, path);
		EVP_DigestUpdate(ctx, b->hash[i], b->nchunks[i] * CL_SHA256_LEN);
		off += b->nchunks[i] * CL_SHA256_LEN;
	}
	if (r == 0)
		r = cl_pread_full(fd, stored, CL_SHA256_LEN, off, path);
	if (r < 0)
		goto out;
	EVP_DigestFinal_ex(ctx, digest, &n);
	memcpy(id, b->id, CL_SHA256_LEN);
	base_compute_id(b);
	if (memcmp(digest, stored, CL_SHA256_LEN) || memcmp(b->id, hdr + 32, CL_SHA256_LEN) ||
	    memcmp(b->id, id, CL_SHA256_LEN))
		r = cl_errorf(-EBADMSG, "%s: index is corrupt (checksum mismatch)", path);
out:
	EVP_MD_CTX_free(ctx);
out_fd:
	close(fd);
	return r;
}

/* ---- registry ---- */

static int copy_into(const char *src, const char *dir, const char *name, char **out)
{
	char *dst;
	size_t len;
	void *buf;
	int r;

	r = cl_read_file(src, 64u << 20, &buf, &len);
	if (r < 0)
		return r;
	if (asprintf(&dst, "%s/%s", dir, name) < 0) {
		free(buf);
		return -ENOMEM;
	}
	r = cl_write_file_atomic(dst, buf, len, 0644);
	free(buf);
	if (r < 0) {
		free(dst);
		return r;
	}
	free(*out);
	*out = dst;
	return 0;
}

/* SHA-256 of a whole file, read block by block. */
static int hash_file(const char *path, uint8_t out[CL_SHA256_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *buf = malloc(INDEX_BLOCK);
	unsigned n = CL_SHA256_LEN;
	ssize_t got;
	int fd = -1, r = 0;

	if (!ctx || !buf) {
		r = -ENOMEM;
		goto out;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = cl_errorf(-errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	while ((got = read(fd, buf, INDEX_BLOCK)) != 0) {
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			r = cl_errorf(-errno, "%s: %s", path, strerror(errno));
			goto out;
		}
		EVP_DigestUpdate(ctx, buf, (size_t)got);
	}
	EVP_DigestFinal_ex(ctx, out, &n);
out:
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(ctx);
	free(buf);
	return r;
}

static int conf_write(const struct cl_base *b, const char *path)
{
	char id[2 * CL_SHA256_LEN + 1], hex[2 * CL_SHA256_LEN + 1], *text = NULL, *more;
	struct stat st[CL_NIMAGES];
	unsigned f;
	int r, i;

	for (i = 0; i < CL_NIMAGES; i++) {
		if (strchr(b->path[i], '\n'))
			return cl_errorf(-EINVAL, "%s: image path has a newline", b->path[i]);
		if (fstat(b->fd[i], &st[i]) < 0)
			return cl_errorf(-errno, "%s: %s", b->path[i], strerror(errno));
	}
	cl_hex(b->id, CL_SHA256_LEN, id);
	r = asprintf(&text,
	             "# cloudlet base, written by `cloudlet base`\n"
	             "id=%s\nchunk_size=%u\n"
	             "disk=%s\ndisk_size=%llu\ndisk_mtime=%lld.%09ld\n"
	             "memory=%s\nmemory_size=%llu\nmemory_mtime=%lld.%09ld\n",
	             id, b->chunk_size, b->path[CL_DISK], (unsigned long long)b->size[CL_DISK],
	             (long long)st[CL_DISK].st_mtim.tv_sec, st[CL_DISK].st_mtim.tv_nsec,
	             b->path[CL_MEMORY], (unsigned long long)b->size[CL_MEMORY],
	             (long long)st[CL_MEMORY].st_mtim.tv_sec, st[CL_MEMORY].st_mtim.tv_nsec);
	/* The registry's other files, checked against these before use. */
	for (f = 0; f < b->nfiles && r >= 0; f++) {
		cl_hex(b->files[f].sha256, CL_SHA256_LEN, hex);
		r = asprintf(&more, "%ssha256.%s=%s\n", text, b->files[f].name, hex);
		free(text);
		text = r < 0 ? NULL : more;
	}
	if (r < 0)
		return -ENOMEM;
	r = cl_write_file_atomic(path, text, strlen(text), 0644);
	free(text);
	return r;
}

static void files_free(struct cl_base_file *files, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		free(files[i].name);
	free(files);
}

static int files_add(struct cl_base_file **files, unsigned *n, const char *name,
                     const uint8_t sha256[CL_SHA256_LEN])
{
	struct cl_base_file *nf = realloc(*files, (*n + 1) * sizeof(**files));

	if (!nf)
		return -ENOMEM;
	*files = nf;
	nf[*n].name = strdup(name);
	if (!nf[*n].name)
		return -ENOMEM;
	memcpy(nf[*n].sha256, sha256, CL_SHA256_LEN);
	(*n)++;
	return 0;
}

/* Hashes the files of registry directory dir (all of them, or the device
 * state only) into b->files: everything but base.conf, the index (checked
 * on its own) and temporary files. */
static int seal_files(struct cl_base *b, const char *dir, int all)
{
	struct cl_base_file *files = NULL;
	uint8_t h[CL_SHA256_LEN];
	unsigned n = 0;
	struct dirent *de;
	struct stat st;
	char *p;
	DIR *d;
	int r = 0;

	d = opendir(dir);
	if (!d)
		return cl_errorf(-errno, "%s: %s", dir, strerror(errno));
	while (r == 0 && (de = readdir(d))) {
		if (de->d_name[0] == '.' || !strcmp(de->d_name, "base.conf") ||
		    !strcmp(de->d_name, "index") || strpbrk(de->d_name, "=\n") ||
		    (!all && strcmp(de->d_name, CL_BLOB_STATE)))
			continue;
		if (asprintf(&p, "%s/%s", dir, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
			r = hash_file(p, h);
			if (r == 0)
				r = files_add(&files, &n, de->d_name, h);
		}
		free(p);
	}
	closedir(d);
	if (r < 0) {
		files_free(files, n);
		return r;
	}
	files_free(b->files, b->nfiles);
	b->files = files;
	b->nfiles = n;
	return 0;
}

/* A domain XML that boots a kernel is completed after registration (`cloudlet
 * base --kernel` copies the kernel and initrd in and renames them in the
 * XML), and sealed by cl_base_seal then. */
static int boots_kernel(const char *domain_path)
{
	size_t len;
	char *xml;
	int r;

	if (!domain_path || cl_read_file(domain_path, 16u << 20, (void **)&xml, &len) < 0)
		return 0;
	r = memmem(xml, len, "<kernel", 7) != NULL;
	free(xml);
	return r;
}

int cl_base_seal(struct cl_base *b)
{
	char *path;
	int r;

	if (!b || !b->dir || b->fd[CL_DISK] < 0)
		return -EINVAL;
	r = seal_files(b, b->dir, 1);
	if (r < 0)
		return r;
	if (asprintf(&path, "%s/base.conf", b->dir) < 0)
		return -ENOMEM;
	r = conf_write(b, path);
	free(path);
	return r;
}

int cl_base_check_file(const struct cl_base *b, const char *path)
{
	uint8_t h[CL_SHA256_LEN];
	const char *name;
	unsigned i;
	size_t dl;
	int r;

	if (!b || !path)
		return -EINVAL;
	name = strrchr(path, '/');
	dl = b->dir ? strlen(b->dir) : 0;
	if (!name || !dl || (size_t)(name - path) != dl || strncmp(path, b->dir, dl))
		return 0; /* not a registry file */
	for (i = 0; i < b->nfiles && strcmp(b->files[i].name, name + 1); i++)
		;
	if (i == b->nfiles)
		return 0; /* not recorded (an older registration) */
	r = hash_file(path, h);
	if (r == 0 && memcmp(h, b->files[i].sha256, CL_SHA256_LEN))
		r = cl_errorf(-EBADMSG,
		              "%s: SHA-256 mismatch (the base's file changed since it was "
		              "registered)",
		              path);
	return r;
}

int cl_base_register(struct cl_base *b, const char *state, const char *domain)
{
	char hex[2 * CL_SHA256_LEN + 1], *dir = NULL, *path = NULL;
	int r;

	if (!b)
		return -EINVAL;
	cl_hex(b->id, CL_SHA256_LEN, hex);
	hex[16] = '\0';
	if (asprintf(&dir, "%s/bases/%s", cl_home(), hex) < 0)
		return -ENOMEM;
	r = cl_mkdir_p(dir, 0755);
	if (r < 0)
		goto out;
	if (state && (r = copy_into(state, dir, CL_BLOB_STATE, &b->state_path)) < 0)
		goto out;
	if (domain && (r = copy_into(domain, dir, CL_BLOB_DOMAIN, &b->domain_path)) < 0)
		goto out;
	if (asprintf(&path, "%s/index", dir) < 0) {
		r = -ENOMEM;
		goto out;
	}
	r = index_write(b, path);
	if (r < 0)
		goto out;
	free(path);
	if (asprintf(&path, "%s/base.conf", dir) < 0) {
		path = NULL;
		r = -ENOMEM;
		goto out;
	}
	r = seal_files(b, dir, !boots_kernel(b->domain_path));
	if (r < 0)
		goto out;
	/* base.conf last: a base without it is not registered. */
	r = conf_write(b, path);
	if (r < 0)
		goto out;
	free(b->dir);
	b->dir = dir;
	dir = NULL;
out:
	free(path);
	free(dir);
	return r;
}

struct conf {
	char id[2 * CL_SHA256_LEN + 1];
	uint32_t chunk_size;
	char *path[CL_NIMAGES];
	uint64_t size[CL_NIMAGES];
	char mtime[CL_NIMAGES][32];
	struct cl_base_file *files; /* sha256.NAME lines; none in older registrations */
	unsigned nfiles;
};

static void conf_free(struct conf *c)
{
	free(c->path[0]);
	free(c->path[1]);
	files_free(c->files, c->nfiles);
	c->files = NULL;
	c->nfiles = 0;
}

static int conf_read(const char *dir, struct conf *c)
{
	char *path, *line = NULL, *eq;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	int i, r = 0;

	memset(c, 0, sizeof(*c));
	if (asprintf(&path, "%s/base.conf", dir) < 0)
		return -ENOMEM;
	f = fopen(path, "re");
	if (!f) {
		r = -errno;
		free(path);
		return r;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		eq = strchr(line, '=');
		if (line[0] == '#' || !eq)
			continue;
		*eq++ = '\0';
		for (i = 0; i < CL_NIMAGES; i++) {
			const char *name = cl_image_name(i);
			size_t nl = strlen(name);
			if (!strcmp(line, name)) {
				free(c->path[i]);
				c->path[i] = strdup(eq);
			} else if (!strncmp(line, name, nl) && !strcmp(line + nl, "_size")) {
				c->size[i] = strtoull(eq, NULL, 10);
			} else if (!strncmp(line, name, nl) && !strcmp(line + nl, "_mtime")) {
				snprintf(c->mtime[i], sizeof(c->mtime[i]), "%s", eq);
			}
		}
		if (!strcmp(line, "id"))
			snprintf(c->id, sizeof(c->id), "%s", eq);
		else if (!strncmp(line, "sha256.", 7) && line[7]) {
			uint8_t h[CL_SHA256_LEN];
			if (cl_unhex(eq, h, CL_SHA256_LEN) < 0 ||
			    files_add(&c->files, &c->nfiles, line + 7, h) < 0)
				r = cl_errorf(-EBADMSG, "%s: bad line sha256.%s", path, line + 7);
		} else if (!strcmp(line, "chunk_size"))
			c->chunk_size = (uint32_t)strtoul(eq, NULL, 10);
	}
	free(line);
	fclose(f);
	if (!c->path[0] || !c->path[1] || strlen(c->id) != 2 * CL_SHA256_LEN || !c->chunk_size)
		r = cl_errorf(-EBADMSG, "%s: incomplete base registration", path);
	free(path);
	if (r < 0)
		conf_free(c);
	return r;
}

static char *optional_file(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	if (access(p, R_OK) == 0)
		return p;
	free(p);
	return NULL;
}

/* The device state and domain XML in the registry are the ones hashed at
 * registration (where that was recorded: older base.conf files do not say);
 * the kernel and initrd are checked where they are used (cl_rundir_boot_files). */
static int check_files(const struct cl_base *b)
{
	const char *names[2] = CL_BLOB_NAMES, *have[2] = {b->state_path, b->domain_path};
	unsigned i, k;
	int r = 0;

	for (k = 0; k < 2 && r == 0; k++) {
		for (i = 0; i < b->nfiles && strcmp(b->files[i].name, names[k]); i++)
			;
		if (i == b->nfiles)
			continue;
		if (!have[k])
			return cl_errorf(-ENOENT, "%s/%s: missing (the base's %s was registered)",
			                 b->dir, names[k], k ? "domain XML" : "device state");
		r = cl_base_check_file(b, have[k]);
	}
	return r;
}

/* Opens a registered base from its registry directory: its images
 * (checked against what was registered) or, with open_images 0, only
 * base.conf (for listing). The index is loaded apart: synthesis needs only
 * the images, and the index is 32 bytes per chunk. */
static int base_open_dir(const char *dir, int open_images, struct cl_base **out)
{
	const char *paths[CL_NIMAGES];
	struct cl_base *b;
	struct conf c;
	struct stat st;
	char mt[32];
	int r, i;

	r = conf_read(dir, &c);
	if (r < 0)
		return r;
	b = base_new();
	if (!b) {
		conf_free(&c);
		return -ENOMEM;
	}
	b->chunk_size = c.chunk_size;
	b->dir = strdup(dir);
	if (!b->dir || cl_unhex(c.id, b->id, CL_SHA256_LEN) < 0) {
		r = -EBADMSG;
		goto fail;
	}
	b->state_path = optional_file(dir, CL_BLOB_STATE);
	b->domain_path = optional_file(dir, CL_BLOB_DOMAIN);
	if (!open_images) {
		for (i = 0; i < CL_NIMAGES; i++) {
			b->path[i] = c.path[i];
			c.path[i] = NULL;
			b->size[i] = c.size[i];
		}
		goto done;
	}
	paths[0] = c.path[0];
	paths[1] = c.path[1];
	r = base_open_images(b, paths);
	if (r < 0)
		goto fail;
	for (i = 0; i < CL_NIMAGES; i++) {
		fstat(b->fd[i], &st);
		snprintf(mt, sizeof(mt), "%lld.%09ld", (long long)st.st_mtim.tv_sec,
		         st.st_mtim.tv_nsec);
		if (b->size[i] != c.size[i] || strcmp(mt, c.mtime[i])) {
			r = cl_errorf(-ESTALE,
			              "%s: base %s image changed since it was registered; "
			              "register it again with `cloudlet base`",
			              b->path[i], cl_image_name(i));
			goto fail;
		}
	}
	b->files = c.files;
	b->nfiles = c.nfiles;
	c.files = NULL;
	c.nfiles = 0;
	r = check_files(b);
	if (r < 0)
		goto fail;
done:
	conf_free(&c);
	*out = b;
	return 0;
fail:
	conf_free(&c);
	cl_base_free(b);
	return r;
}

int cl_base_load_index(struct cl_base *b)
{
	char *idx;
	int r;

	if (!b || !b->dir || b->fd[CL_DISK] < 0)
		return -EINVAL;
	if (b->hash[CL_DISK])
		return 0;
	r = base_alloc_hashes(b);
	if (r < 0)
		return r;
	if (asprintf(&idx, "%s/index", b->dir) < 0)
		return -ENOMEM;
	r = index_read(b, idx);
	free(idx);
	if (r < 0) {
		free(b->hash[CL_DISK]);
		free(b->hash[CL_MEMORY]);
		b->hash[CL_DISK] = b->hash[CL_MEMORY] = NULL;
	}
	return r;
}

int cl_base_list(int (*fn)(void *ctx, const struct cl_base *b), void *ctx)
{
	struct dirent *de;
	struct cl_base *b;
	char *root, *dir;
	DIR *d;
	int r = 0;

	if (!fn)
		return -EINVAL;
	if (asprintf(&root, "%s/bases", cl_home()) < 0)
		return -ENOMEM;
	d = opendir(root);
	if (!d) {
		r = errno == ENOENT ? 0 : cl_errorf(-errno, "%s: %s", root, strerror(errno));
		free(root);
		return r;
	}
	while (!r && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (asprintf(&dir, "%s/%s", root, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		if (base_open_dir(dir, 0, &b) == 0) {
			r = fn(ctx, b);
			cl_base_free(b);
		}
		free(dir);
	}
	closedir(d);
	free(root);
	return r;
}

struct find_ctx {
	const char *want_path; /* realpath of the image asked for, or NULL */
	const char *want;      /* as given */
	char *dir;             /* found */
	int matches;
};

static int find_one(void *ctx, const struct cl_base *b)
{
	struct find_ctx *f = ctx;
	char hex[2 * CL_SHA256_LEN + 1];

	cl_hex(b->id, CL_SHA256_LEN, hex);
	if ((f->want_path && !strcmp(b->path[CL_DISK], f->want_path)) ||
	    (strlen(f->want) >= 8 && !strncmp(hex, f->want, strlen(f->want))) ||
	    (f->want_path && !strcmp(b->dir, f->want_path))) {
		f->matches++;
		free(f->dir);
		f->dir = strdup(b->dir);
	}
	return 0;
}

int cl_base_find(const char *image, struct cl_base **out)
{
	struct find_ctx f = {0};
	char *real;
	int r;

	if (!image || !out)
		return -EINVAL;
	real = realpath(image, NULL);
	f.want_path = real;
	f.want = image;
	r = cl_base_list(find_one, &f);
	free(real);
	if (r < 0)
		goto out;
	if (f.matches == 0) {
		/* The hint in the message: cloudletfs and the session API print it too. */
		r = cl_errorf(-ENOENT,
		              "%s: not a registered base (hint: register it with "
		              "`cloudlet base %s --memory RAMFILE`; registry: %s/bases)",
		              image, image, cl_home());
		goto out;
	}
	if (f.matches > 1) {
		r = cl_errorf(-EEXIST, "%s: matches %d registered bases; give a longer id", image,
		              f.matches);
		goto out;
	}
	r = base_open_dir(f.dir, 1, out);
out:
	free(f.dir);
	return r;
}

int cl_base_read(const struct cl_base *b, enum cl_image_id image, uint64_t idx, uint32_t len,
                 void *buf)
{
	uint64_t off = idx * b->chunk_size, have = 0;
	int r;

	if (!b || (unsigned)image >= CL_NIMAGES || len > b->chunk_size || !buf)
		return -EINVAL;
	if (off < b->size[image])
		have = b->size[image] - off < len ? b->size[image] - off : len;
	r = cl_pread_full(b->fd[image], buf, (size_t)have, off, b->path[image]);
	if (r < 0)
		return r;
	memset((uint8_t *)buf + have, 0, len - have);
	return 0;
}

void cl_base_free(struct cl_base *b)
{
	int i;

	if (!b)
		return;
	for (i = 0; i < CL_NIMAGES; i++) {
		if (b->fd[i] >= 0)
			close(b->fd[i]);
		free(b->path[i]);
		free(b->hash[i]);
	}
	if (b->index_fd >= 0)
		close(b->index_fd);
	files_free(b->files, b->nfiles);
	free(b->table);
	free(b->state_path);
	free(b->domain_path);
	free(b->dir);
	free(b);
}
