/* SPDX-License-Identifier: GPL-2.0-only */
/* The FUSE operations of cloudletfs (see cl_fs.h) over the tree of
 * cl_fs_tree.c: attributes, opens, the images' reads, writes and hole
 * punches handed to the engine, the status and stats text, listings. */
#include "cl_fs.h"
#include "cl_fs_answer.h"
#include "cl_fs_postcopy.h"
#include "cl_fs_stream.h"
#include "cl_fs_text.h"
#include "cl_fs_tree.h"
#include "cl_mount.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Nothing in the tree changes behind the kernel's back: the names are
 * fixed and the images change only through writes that pass the kernel. */
#define ENTRY_TIMEOUT 3600.0
#define ATTR_TIMEOUT  3600.0

#define NOTE_MAX CL_FS_NOTE_MAX /* the session's line in status, NUL included */
/* the status file, three paths included */
#define TEXT_MAX (3 * PATH_MAX + 1024 + NOTE_MAX + CL_FS_POSTCOPY_TEXT_MAX)

/* An open status or stats file: its text is taken at the first read and
 * again at every read from offset 0, so that one cat sees one snapshot. */
struct text_file {
	pthread_mutex_t lock;
	int valid;          /* lock */
	size_t len;         /* lock */
	char buf[TEXT_MAX]; /* lock */
};

/* fi->fh of a status, stats or stream file. Listed so that files whose
 * release never came (the loop ends first at unmount) are freed too. */
struct handle {
	struct handle *prev, *next; /* fs->lock: fs->handles */
	struct text_file *text;     /* or */
	struct cl_fs_stream *stream;
};

struct cl_fs {
	struct cl_lazy *l;
	struct cl_fs_config cfg; /* its strings point to the copies below */
	char *overlay, *base, *mountpoint;
	struct cl_fs_tree tree;
	uint64_t size[CL_NIMAGES];
	uint32_t chunk_size;
	const void *blob[2];
	size_t blob_len[2];
	struct timespec mount_time;

	pthread_mutex_t lock;
	struct timespec atime[CL_NIMAGES], mtime[CL_NIMAGES]; /* lock: of the images */
	unsigned inflight;                                    /* lock: requests answered later */
	pthread_cond_t drained;                               /* inflight reached 0 */
	int splice;                /* set at init: answers with file pages are spliced */
	struct handle handles;     /* lock: open files' list head */
	char note[NOTE_MAX];       /* lock: CL_MOUNT_VM_XATTR */
	struct cl_fs_postcopy *pc; /* CL_MOUNT_POSTCOPY_XATTR */
};

/* An image read, write or hole punch handed to the engine. */
struct io_req {
	struct cl_fs *fs;
	fuse_req_t req;
	enum cl_image_id image;
	struct cl_fs_answer ans; /* reads */
	char data[];             /* read buffer, or a copy of the bytes to write */
};

static struct cl_fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static const struct cl_fs_node *node_of(const struct cl_fs *fs, fuse_ino_t ino)
{
	return cl_fs_tree_node(&fs->tree, ino);
}

int cl_fs_new(struct cl_lazy *l, const struct cl_fs_config *cfg, struct cl_fs **out)
{
	struct cl_fs *fs;
	int has_blob[2];
	int i, r;

	if (!l || !cfg || !out)
		return -EINVAL;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->l = l;
	fs->cfg = *cfg;
	fs->overlay = strdup(cfg->overlay ? cfg->overlay : "");
	fs->base = strdup(cfg->base ? cfg->base : "");
	fs->mountpoint = strdup(cfg->mountpoint ? cfg->mountpoint : "");
	if (!fs->overlay || !fs->base || !fs->mountpoint) {
		r = -ENOMEM;
		goto fail_strings;
	}
	fs->cfg.overlay = fs->overlay;
	fs->cfg.base = fs->base;
	fs->cfg.mountpoint = fs->mountpoint;
	r = cl_fs_postcopy_new(l, &fs->pc);
	if (r < 0)
		goto fail_strings;
	r = -pthread_mutex_init(&fs->lock, NULL);
	if (r < 0)
		goto fail_postcopy;
	/* Drain waits are bounded on the monotonic clock. */
	r = cl_cond_init_monotonic(&fs->drained);
	if (r < 0)
		goto fail_mutex;
	fs->chunk_size = cl_lazy_meta(l)->chunk_size;
	for (i = 0; i < CL_NIMAGES; i++)
		fs->size[i] = cl_lazy_size(l, i);
	for (i = 0; i < 2; i++)
		cl_lazy_blob(l, i, &fs->blob[i], &fs->blob_len[i]);
	fs->handles.prev = fs->handles.next = &fs->handles;
	clock_gettime(CLOCK_REALTIME, &fs->mount_time);
	for (i = 0; i < CL_NIMAGES; i++)
		fs->atime[i] = fs->mtime[i] = fs->mount_time;
	for (i = 0; i < 2; i++)
		has_blob[i] = fs->blob_len[i] != 0;
	cl_fs_tree_build(&fs->tree, has_blob);
	*out = fs;
	return 0;

fail_mutex:
	pthread_mutex_destroy(&fs->lock);
fail_postcopy:
	cl_fs_postcopy_free(fs->pc);
fail_strings:
	free(fs->mountpoint);
	free(fs->base);
	free(fs->overlay);
	free(fs);
	return r;
}

static void handle_free(struct cl_fs *fs, struct handle *h);

void cl_fs_free(struct cl_fs *fs)
{
	if (!fs)
		return;
	while (fs->handles.next != &fs->handles)
		handle_free(fs, fs->handles.next);
	cl_fs_postcopy_free(fs->pc);
	pthread_cond_destroy(&fs->drained);
	pthread_mutex_destroy(&fs->lock);
	free(fs->mountpoint);
	free(fs->base);
	free(fs->overlay);
	free(fs);
}

void cl_fs_stop(struct cl_fs *fs)
{
	cl_fs_postcopy_stop(fs->pc);
}

void cl_fs_hold(struct cl_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	fs->inflight++;
	pthread_mutex_unlock(&fs->lock);
}

void cl_fs_release(struct cl_fs *fs)
{
	pthread_mutex_lock(&fs->lock);
	if (--fs->inflight == 0)
		pthread_cond_broadcast(&fs->drained);
	pthread_mutex_unlock(&fs->lock);
}

int cl_fs_drain(struct cl_fs *fs, unsigned timeout_ms)
{
	double until = cl_now() + (double)timeout_ms / 1000;
	int r = 0;

	pthread_mutex_lock(&fs->lock);
	while (fs->inflight && r == 0)
		r = cl_cond_wait_until(&fs->drained, &fs->lock, until);
	r = fs->inflight ? -ETIMEDOUT : 0;
	pthread_mutex_unlock(&fs->lock);
	return r;
}

/* --- attributes ------------------------------------------------------- */

static void node_attr(struct cl_fs *fs, fuse_ino_t ino, struct stat *st)
{
	const struct cl_fs_node *n = &fs->tree.nodes[ino];

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_mode = cl_fs_node_mode(n);
	st->st_nlink = n->kind == CL_FS_NODE_DIR ? 2 + n->nsubdirs : 1;
	st->st_uid = fs->cfg.uid;
	st->st_gid = fs->cfg.gid;
	st->st_blksize = fs->chunk_size;
	st->st_atim = st->st_mtim = st->st_ctim = fs->mount_time;
	switch (n->kind) {
	case CL_FS_NODE_IMAGE:
		st->st_size = (off_t)fs->size[n->image];
		pthread_mutex_lock(&fs->lock);
		st->st_atim = fs->atime[n->image];
		st->st_mtim = st->st_ctim = fs->mtime[n->image];
		pthread_mutex_unlock(&fs->lock);
		break;
	case CL_FS_NODE_BLOB:
		st->st_size = (off_t)fs->blob_len[n->which];
		break;
	default:
		/* Stats, status and streams: size 0, read with direct I/O. */
		break;
	}
	st->st_blocks = (st->st_size + 511) / 512;
}

static void touch_image(struct cl_fs *fs, enum cl_image_id image)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&fs->lock);
	fs->mtime[image] = now;
	pthread_mutex_unlock(&fs->lock);
}

/* --- operations ---------------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct cl_fs *fs = userdata;

	/* Every change of the images passes through this mount: cached pages
	 * must not be dropped because a write moved the mtime. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	/* O_TRUNC as a separate truncation, which the fixed-size images
	 * refuse, never as an open flag the kernel acts upon by itself. */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	/* Chunks already checked are moved from the cache or base file's pages
	 * to the kernel (splice), not read into a buffer and copied again. */
	if (conn->capable & FUSE_CAP_SPLICE_WRITE) {
		conn->want |= FUSE_CAP_SPLICE_WRITE;
		fs->splice = 1;
	}
	/* Readahead and page-fault reads are background requests, and parked
	 * ones count against the kernel's limit (12 by default): past it the
	 * kernel holds back every further background read, even of present
	 * chunks. Room for many parked reads keeps those flowing; each holds
	 * a buffer of at most one read (128 KiB to 1 MiB) meanwhile. */
	conn->max_background = 128;
	conn->congestion_threshold = 96;
	if (fs->cfg.ready)
		fs->cfg.ready(fs->cfg.ready_ctx);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct cl_fs *fs = fs_of(req);
	const struct cl_fs_node *p = node_of(fs, parent);
	struct fuse_entry_param e;
	fuse_ino_t ino;

	if (!p || p->kind != CL_FS_NODE_DIR) {
		fuse_reply_err(req, p ? ENOTDIR : ENOENT);
		return;
	}
	if (cl_fs_tree_lookup(&fs->tree, parent, name, &ino) < 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = ino;
	e.attr_timeout = ATTR_TIMEOUT;
	e.entry_timeout = ENTRY_TIMEOUT;
	node_attr(fs, ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	/* Inodes are static: nothing to count. */
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cl_fs *fs = fs_of(req);
	struct stat st;

	if (!node_of(fs, ino)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	node_attr(fs, ino, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	struct cl_fs *fs = fs_of(req);
	const struct cl_fs_node *n = node_of(fs, ino);
	struct timespec now;
	struct stat st;
	int r;

	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	              FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW)) {
		if (n->kind != CL_FS_NODE_IMAGE) {
			fuse_reply_err(req, n->kind == CL_FS_NODE_DIR ? EPERM : EACCES);
			return;
		}
		r = fi ? 0 : cl_fs_may_access(req, fs->cfg.uid, fs->cfg.gid, n, W_OK);
		if (r < 0) {
			fuse_reply_err(req, -r);
			return;
		}
	}
	/* The images have a fixed size: truncation to their size is a no-op,
	 * to anything else refused. */
	if ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size != fs->size[n->image]) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
	              FUSE_SET_ATTR_MTIME_NOW)) {
		clock_gettime(CLOCK_REALTIME, &now);
		pthread_mutex_lock(&fs->lock);
		if (to_set & FUSE_SET_ATTR_ATIME_NOW)
			fs->atime[n->image] = now;
		else if (to_set & FUSE_SET_ATTR_ATIME)
			fs->atime[n->image] = attr->st_atim;
		if (to_set & FUSE_SET_ATTR_MTIME_NOW)
			fs->mtime[n->image] = now;
		else if (to_set & FUSE_SET_ATTR_MTIME)
			fs->mtime[n->image] = attr->st_mtim;
		pthread_mutex_unlock(&fs->lock);
	}
	node_attr(fs, ino, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct cl_fs *fs = fs_of(req);
	const struct cl_fs_node *n = node_of(fs, ino);

	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fuse_reply_err(req, -cl_fs_may_access(req, fs->cfg.uid, fs->cfg.gid, n, mask));
}

static struct text_file *text_new(void)
{
	struct text_file *t = malloc(sizeof(*t));

	if (!t)
		return NULL;
	if (pthread_mutex_init(&t->lock, NULL)) {
		free(t);
		return NULL;
	}
	t->valid = 0;
	t->len = 0;
	return t;
}

static void text_free(struct text_file *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static struct handle *handle_new(struct cl_fs *fs, const struct cl_fs_node *n)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	if (n->kind == CL_FS_NODE_STREAM) {
		if (cl_fs_stream_open(fs, fs->l, n->image, n->which, &h->stream) < 0) {
			free(h);
			return NULL;
		}
	} else {
		h->text = text_new();
		if (!h->text) {
			free(h);
			return NULL;
		}
	}
	pthread_mutex_lock(&fs->lock);
	h->next = fs->handles.next;
	h->prev = &fs->handles;
	h->next->prev = h;
	fs->handles.next = h;
	pthread_mutex_unlock(&fs->lock);
	return h;
}

static void handle_free(struct cl_fs *fs, struct handle *h)
{
	pthread_mutex_lock(&fs->lock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->lock);
	text_free(h->text);
	cl_fs_stream_close(h->stream);
	free(h);
}

static struct handle *handle_of(const struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cl_fs *fs = fs_of(req);
	const struct cl_fs_node *n = node_of(fs, ino);
	struct handle *h = NULL;
	int r;

	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (n->kind == CL_FS_NODE_DIR) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	r = cl_fs_may_access(req, fs->cfg.uid, fs->cfg.gid, n, cl_fs_open_mask(fi->flags));
	if (r == 0 && (fi->flags & O_TRUNC))
		r = n->kind == CL_FS_NODE_IMAGE ? -EPERM : -EACCES; /* fixed size */
	if (r < 0) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = 0;
	if (n->kind == CL_FS_NODE_IMAGE || n->kind == CL_FS_NODE_BLOB) {
		/* Through the page cache (QEMU maps memory/image), and what
		 * is cached stays valid: only our own writes change it. */
		fi->direct_io = 0;
		fi->keep_cache = 1;
	} else {
		/* Generated text: size 0, read directly; streams follow. */
		h = handle_new(fs, n);
		if (!h) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		fi->fh = (uintptr_t)h;
		fi->direct_io = 1;
		fi->nonseekable = n->kind == CL_FS_NODE_STREAM;
	}
	/* -ENOENT: the open was interrupted and no release will follow. */
	if (fuse_reply_open(req, fi) == -ENOENT && h)
		handle_free(fs, h);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cl_fs *fs = fs_of(req);

	if (fi->fh)
		handle_free(fs, handle_of(fi));
	fuse_reply_err(req, 0);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct cl_fs *fs = fuse_req_userdata(req);
	const struct cl_fs_node *n = node_of(fs, ino);

	/* Only images take writes; a kept store records them for good. */
	fuse_reply_err(req, n && n->kind == CL_FS_NODE_IMAGE ? -cl_lazy_sync(fs->l) : 0);
}

static void read_done(void *ctx, ssize_t r)
{
	struct io_req *io = ctx;
	struct cl_fs *fs = io->fs;

	cl_fs_answer_send(&io->ans, io->req, io->data, r);
	free(io);
	cl_fs_release(fs);
}

static void read_image(struct cl_fs *fs, fuse_req_t req, enum cl_image_id image, size_t size,
                       off_t off)
{
	struct io_req *io;
	size_t len;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((uint64_t)off >= fs->size[image] || !size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* Whole requests only, up to the end of the image: a short answer
	 * through the page cache would read as zeros. */
	len = fs->size[image] - (uint64_t)off < size ? (size_t)(fs->size[image] - (uint64_t)off)
	                                             : size;
	io = malloc(sizeof(*io) + len);
	if (!io) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	io->fs = fs;
	io->req = req;
	io->image = image;
	if (cl_fs_answer_init(&io->ans, fs->l, len, fs->splice) < 0) {
		free(io);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	cl_fs_hold(fs);
	cl_fs_answer_read(&io->ans, fs->l, image, (uint64_t)off, len, io->data, read_done, io);
}

static void read_text(struct cl_fs *fs, fuse_req_t req, const struct cl_fs_node *n,
                      struct text_file *t, size_t size, off_t off)
{
	struct cl_fs_status_info info;
	struct cl_lazy_stats st;
	char out[TEXT_MAX];
	size_t len = 0;

	pthread_mutex_lock(&t->lock);
	if (!t->valid || off == 0) {
		cl_lazy_stats(fs->l, &st);
		if (n->kind == CL_FS_NODE_STATUS) {
			info.overlay = fs->cfg.overlay;
			info.base = fs->cfg.base;
			info.mountpoint = fs->cfg.mountpoint;
			info.pid = (long)getpid();
			pthread_mutex_lock(&fs->lock);
			memcpy(info.note, fs->note, sizeof(info.note));
			pthread_mutex_unlock(&fs->lock);
			t->len = cl_fs_status_text(&st, &info, t->buf, sizeof(t->buf));
			t->len +=
			    cl_fs_postcopy_text(fs->pc, t->buf + t->len, sizeof(t->buf) - t->len);
		} else {
			t->len = cl_fs_stat_text(&st, n->image, n->which, t->buf, sizeof(t->buf));
		}
		t->valid = 1;
	}
	if (off >= 0 && (uint64_t)off < t->len) {
		len = t->len - (size_t)off < size ? t->len - (size_t)off : size;
		memcpy(out, t->buf + off, len);
	}
	pthread_mutex_unlock(&t->lock);
	/* Not from t: once answered, the reader may close and t be freed. */
	fuse_reply_buf(req, out, len);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct cl_fs *fs = fs_of(req);
	const struct cl_fs_node *n = node_of(fs, ino);
	size_t len;

	if (!n) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	switch (n->kind) {
	case CL_FS_NODE_IMAGE:
		read_image(fs, req, n->image, size, off);
		break;
	case CL_FS_NODE_BLOB:
		if (off < 0 || (uint64_t)off >= fs->blob_len[n->which]) {
			fuse_reply_buf(req, NULL, 0);
			break;
		}
		len = fs->blob_len[n->which] - (size_t)off;
		fuse_reply_buf(req, (const char *)fs->blob[n->which] + off,
		               len < size ? len : size);
		break;
	case CL_FS_NODE_STATUS:
	case CL_FS_NODE_STAT:
		read_text(fs, req, n, handle_of(fi)->text, size, off);
		break;
	case CL_FS_NODE_STREAM:
		cl_fs_stream_read(handle_of(fi)->stream, req, size, !!(fi->flags & O_NONBLOCK));
		break;
	default:
		fuse_reply_err(req, EISDIR);
		break;
	}
}

static void write_done(void *ctx, ssize_t r)
{
	struct io_req *io = ctx;
	struct cl_fs *fs = io->fs;

	if (r < 0) {
		fuse_reply_err(io->req, (int)-r);
	} else {
		touch_image(fs, io->image);
		fuse_reply_write(io->req, (size_t)r);
	}
	free(io);
	cl_fs_release(fs);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	struct cl_fs *fs = fs_of(req);
	const struct cl_fs_node *n = node_of(fs, ino);
	struct io_req *io;
	uint64_t isize;
	size_t len;

	if (!n || n->kind != CL_FS_NODE_IMAGE) {
		fuse_reply_err(req, n ? EBADF : ENOENT);
		return;
	}
	isize = fs->size[n->image];
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (!size) {
		fuse_reply_write(req, 0);
		return;
	}
	/* Fixed size: a write is cut at the end, one past it refused. */
	if ((uint64_t)off >= isize) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	len = isize - (uint64_t)off < size ? (size_t)(isize - (uint64_t)off) : size;
	/* buf is only valid during this call; the write may wait. */
	io = malloc(sizeof(*io) + len);
	if (!io) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(io->data, buf, len);
	io->fs = fs;
	io->req = req;
	io->image = n->image;
	cl_fs_hold(fs);
	cl_lazy_write(fs->l, n->image, (uint64_t)off, len, io->data, write_done, io);
}

static void fallocate_done(void *ctx, ssize_t r)
{
	struct io_req *io = ctx;
	struct cl_fs *fs = io->fs;

	if (r >= 0)
		touch_image(fs, io->image);
	fuse_reply_err(io->req, r < 0 ? (int)-r : 0);
	free(io);
	cl_fs_release(fs);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                         struct fuse_file_info *fi)
{
	struct cl_fs *fs = fs_of(req);
	const struct cl_fs_node *n = node_of(fs, ino);
	struct io_req *io;
	uint64_t isize, end;

	if (!n || n->kind != CL_FS_NODE_IMAGE) {
		fuse_reply_err(req, n ? EBADF : ENOENT);
		return;
	}
	if (off < 0 || len <= 0 || (uint64_t)off > UINT64_MAX - (uint64_t)len) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	isize = fs->size[n->image];
	end = (uint64_t)off + (uint64_t)len;
	if (!(mode & FALLOC_FL_KEEP_SIZE) && end > isize) {
		fuse_reply_err(req, EFBIG);
		return;
	}
	/* Plain allocation inside the image has nothing to do; punching a
	 * hole or zeroing is a copy-on-write write of zeros. */
	if (!(mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) || (uint64_t)off >= isize) {
		fuse_reply_err(req, 0);
		return;
	}
	if (end > isize)
		end = isize;
	io = malloc(sizeof(*io));
	if (!io) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	io->fs = fs;
	io->req = req;
	io->image = n->image;
	cl_fs_hold(fs);
	cl_lazy_write(fs->l, n->image, (uint64_t)off, (size_t)(end - (uint64_t)off), NULL,
	              fallocate_done, io);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct cl_fs *fs = fs_of(req);
	const struct cl_fs_node *n = node_of(fs, ino);

	if (!n || n->kind != CL_FS_NODE_DIR) {
		fuse_reply_err(req, n ? ENOTDIR : ENOENT);
		return;
	}
	/* The listing never changes. */
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	struct cl_fs *fs = fs_of(req);
	const struct cl_fs_node *n = node_of(fs, ino);
	fuse_ino_t kids[CL_FS_INO_COUNT];
	size_t nkids, used = 0, len, i;
	const char *name;
	struct stat st;
	char *buf;

	if (!n || n->kind != CL_FS_NODE_DIR) {
		fuse_reply_err(req, n ? ENOTDIR : ENOENT);
		return;
	}
	nkids = cl_fs_tree_list(&fs->tree, ino, kids);
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memset(&st, 0, sizeof(st));
	/* An entry's offset is the index of the next one. */
	for (i = off < 0 ? 0 : (size_t)off; i < nkids; i++) {
		name = i == 0 ? "." : i == 1 ? ".." : fs->tree.nodes[kids[i]].name;
		st.st_ino = kids[i];
		st.st_mode = cl_fs_node_mode(&fs->tree.nodes[kids[i]]);
		len = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)(i + 1));
		if (len > size - used)
			break;
		used += len;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct cl_fs *fs = fs_of(req);
	struct statvfs sv;
	int k;

	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = fs->chunk_size;
	sv.f_frsize = fs->chunk_size;
	for (k = 0; k < CL_NIMAGES; k++)
		sv.f_blocks += (fs->size[k] + fs->chunk_size - 1) / fs->chunk_size;
	sv.f_files = cl_fs_tree_count(&fs->tree);
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

/* Attributes of status, set by root or the daemon's user: the session's
 * note, one printable `key: value` line that the text shows, and the
 * postcopy source's socket. Set only: a getxattr operation would be asked
 * for security.capability before every write to the images (FUSE never
 * marks a file free of it). */
static int note_check(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	const struct cl_fs_node *n = node_of(fs_of(req), ino);
	const struct fuse_ctx *c = fuse_req_ctx(req);

	if (!n || n->kind != CL_FS_NODE_STATUS ||
	    (strcmp(name, CL_MOUNT_VM_XATTR) && strcmp(name, CL_MOUNT_POSTCOPY_XATTR)))
		return ENOTSUP;
	return c->uid != 0 && c->uid != getuid() ? EPERM : 0;
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
	struct cl_fs *fs = fs_of(req);
	int e = note_check(req, ino, name);
	size_t i;

	(void)flags;
	if (!e && !strcmp(name, CL_MOUNT_POSTCOPY_XATTR)) {
		/* connects, bounded: this worker waits, the others serve */
		fuse_reply_err(req, -cl_fs_postcopy_start(fs->pc, value, size));
		return;
	}
	if (!e && (size >= NOTE_MAX || !memchr(value, ':', size)))
		e = EINVAL;
	for (i = 0; !e && i < size; i++)
		if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f)
			e = EINVAL;
	if (!e) {
		pthread_mutex_lock(&fs->lock);
		memcpy(fs->note, value, size);
		fs->note[size] = '\0';
		pthread_mutex_unlock(&fs->lock);
	}
	fuse_reply_err(req, e);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .access = op_access,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .statfs = op_statfs,
    .fallocate = op_fallocate,
    .setxattr = op_setxattr,
};

const struct fuse_lowlevel_ops *cl_fs_ops(void)
{
	return &ops;
}
