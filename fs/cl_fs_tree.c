/* SPDX-License-Identifier: GPL-2.0-only */
/* The tree of cloudletfs: its fixed inodes, lookups and listings, modes and
 * the mode-bit check (see cl_fs_tree.h). */
#include "cl_fs_tree.h"
#include "cl_fs_text.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fixed inode numbers: the tree never changes while mounted. */
#define INO_STATUS          2
#define INO_STATE           3
#define INO_DOMAIN          4
#define INO_IMAGE_DIR(i)    CL_FS_INO_IMAGE_DIR(i)
#define INO_IMAGE(i)        (INO_IMAGE_DIR(i) + 1)
#define INO_STATS_DIR(i)    (INO_IMAGE_DIR(i) + 2)
#define INO_STREAMS_DIR(i)  (INO_IMAGE_DIR(i) + 3)
#define INO_STAT(i, k)      (INO_IMAGE_DIR(i) + 4 + (k))
#define INO_STREAM(i, kind) (INO_IMAGE_DIR(i) + 20 + (kind))

static void add_node(struct cl_fs_tree *t, fuse_ino_t ino, fuse_ino_t parent, const char *name,
                     enum cl_fs_node_kind kind, int image, int which)
{
	struct cl_fs_node *n = &t->nodes[ino];

	n->name = name;
	n->parent = parent;
	n->kind = (uint8_t)kind;
	n->image = (uint8_t)image;
	n->which = (uint8_t)which;
	if (kind == CL_FS_NODE_DIR && ino != CL_FS_INO_ROOT)
		t->nodes[parent].nsubdirs++;
}

void cl_fs_tree_build(struct cl_fs_tree *t, const int has_blob[2])
{
	static const char *const blob_names[2] = CL_BLOB_NAMES;
	int i, k;

	add_node(t, CL_FS_INO_ROOT, CL_FS_INO_ROOT, "", CL_FS_NODE_DIR, 0, 0);
	add_node(t, INO_STATUS, CL_FS_INO_ROOT, "status", CL_FS_NODE_STATUS, 0, 0);
	for (k = 0; k < 2; k++)
		if (has_blob[k])
			add_node(t, k ? INO_DOMAIN : INO_STATE, CL_FS_INO_ROOT, blob_names[k],
			         CL_FS_NODE_BLOB, 0, k);
	for (i = 0; i < CL_NIMAGES; i++) {
		add_node(t, INO_IMAGE_DIR(i), CL_FS_INO_ROOT, cl_image_name(i), CL_FS_NODE_DIR, i,
		         0);
		add_node(t, INO_IMAGE(i), INO_IMAGE_DIR(i), "image", CL_FS_NODE_IMAGE, i, 0);
		add_node(t, INO_STATS_DIR(i), INO_IMAGE_DIR(i), "stats", CL_FS_NODE_DIR, i, 0);
		add_node(t, INO_STREAMS_DIR(i), INO_IMAGE_DIR(i), "streams", CL_FS_NODE_DIR, i, 0);
		for (k = 0; k < CL_FS_NSTATS; k++)
			add_node(t, INO_STAT(i, k), INO_STATS_DIR(i), cl_fs_stat_names[k],
			         CL_FS_NODE_STAT, i, k);
		for (k = 0; k < CL_EV_KINDS; k++)
			add_node(t, INO_STREAM(i, k), INO_STREAMS_DIR(i), cl_fs_stream_names[k],
			         CL_FS_NODE_STREAM, i, k);
	}
}

const struct cl_fs_node *cl_fs_tree_node(const struct cl_fs_tree *t, fuse_ino_t ino)
{
	if (ino >= CL_FS_INO_COUNT || t->nodes[ino].kind == CL_FS_NODE_NONE)
		return NULL;
	return &t->nodes[ino];
}

int cl_fs_tree_lookup(const struct cl_fs_tree *t, fuse_ino_t parent, const char *name,
                      fuse_ino_t *ino)
{
	fuse_ino_t i;

	for (i = 1; i < CL_FS_INO_COUNT; i++)
		if (i != CL_FS_INO_ROOT && t->nodes[i].kind != CL_FS_NODE_NONE &&
		    t->nodes[i].parent == parent && !strcmp(t->nodes[i].name, name)) {
			*ino = i;
			return 0;
		}
	return -ENOENT;
}

size_t cl_fs_tree_list(const struct cl_fs_tree *t, fuse_ino_t dir, fuse_ino_t kids[CL_FS_INO_COUNT])
{
	size_t n = 0;
	fuse_ino_t i;

	kids[n++] = dir;
	kids[n++] = t->nodes[dir].parent;
	for (i = 2; i < CL_FS_INO_COUNT; i++)
		if (t->nodes[i].kind != CL_FS_NODE_NONE && t->nodes[i].parent == dir)
			kids[n++] = i;
	return n;
}

uint64_t cl_fs_tree_count(const struct cl_fs_tree *t)
{
	uint64_t n = 0;
	fuse_ino_t i;

	for (i = 1; i < CL_FS_INO_COUNT; i++)
		if (t->nodes[i].kind != CL_FS_NODE_NONE)
			n++;
	return n;
}

mode_t cl_fs_node_mode(const struct cl_fs_node *n)
{
	switch (n->kind) {
	case CL_FS_NODE_DIR:
		return S_IFDIR | 0555;
	case CL_FS_NODE_IMAGE:
		return S_IFREG | 0660;
	default:
		return S_IFREG | 0444;
	}
}

static int in_group(fuse_req_t req, gid_t want, gid_t gid)
{
	gid_t groups[64];
	int n, i;

	if (gid == want)
		return 1;
	n = fuse_req_getgroups(req, 64, groups);
	for (i = 0; i < n && i < 64; i++)
		if (groups[i] == want)
			return 1;
	return 0;
}

int cl_fs_may_access(fuse_req_t req, uid_t uid, gid_t gid, const struct cl_fs_node *n, int mask)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	mode_t mode = cl_fs_node_mode(n);
	unsigned bits;

	mask &= R_OK | W_OK | X_OK;
	if ((mask & W_OK) && !(mode & 0222))
		return -EACCES;
	if (c->uid == 0)
		return (mask & X_OK) && !(mode & 0111) ? -EACCES : 0;
	if (c->uid == uid)
		bits = (mode >> 6) & 7;
	else if (in_group(req, gid, c->gid))
		bits = (mode >> 3) & 7;
	else
		bits = mode & 7;
	return (unsigned)mask & ~bits ? -EACCES : 0;
}

int cl_fs_open_mask(int flags)
{
	switch (flags & O_ACCMODE) {
	case O_WRONLY:
		return W_OK;
	case O_RDWR:
		return R_OK | W_OK;
	default:
		return R_OK;
	}
}
