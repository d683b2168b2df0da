/* SPDX-License-Identifier: GPL-2.0-only */
/* The tree cloudletfs shows (see cl_fs.h): fixed inode numbers, names and
 * kinds, built once at mount and never changed while mounted; lookups and
 * listings, the mode of each kind of file and the check of those mode bits
 * for a request. */
#ifndef CL_FS_TREE_H
#define CL_FS_TREE_H

#include "cl_fs.h"

#include <stdint.h>
#include <sys/types.h>

#define CL_FS_INO_ROOT         1
#define CL_FS_INO_IMAGE_DIR(i) (16 + 32 * (i)) /* disk/, memory/ and what is below */
#define CL_FS_INO_COUNT        CL_FS_INO_IMAGE_DIR(CL_NIMAGES) /* one past the last */

enum cl_fs_node_kind {
	CL_FS_NODE_NONE = 0,
	CL_FS_NODE_DIR,
	CL_FS_NODE_IMAGE,
	CL_FS_NODE_BLOB,
	CL_FS_NODE_STATUS,
	CL_FS_NODE_STAT,
	CL_FS_NODE_STREAM,
};

struct cl_fs_node {
	const char *name;
	fuse_ino_t parent;
	uint8_t kind;  /* enum cl_fs_node_kind; CL_FS_NODE_NONE: no such inode */
	uint8_t image; /* IMAGE, STAT, STREAM */
	uint8_t which; /* STAT: index in cl_fs_stat_names; STREAM: kind; BLOB: 0 state, 1 XML */
	uint8_t nsubdirs;
};

struct cl_fs_tree {
	struct cl_fs_node nodes[CL_FS_INO_COUNT];
};

/* Fills t (zeroed by the caller); has_blob[0], has_blob[1]: the overlay
 * carries a device state, a domain XML. */
void cl_fs_tree_build(struct cl_fs_tree *t, const int has_blob[2]);
/* The node of ino, or NULL if there is none. */
const struct cl_fs_node *cl_fs_tree_node(const struct cl_fs_tree *t, fuse_ino_t ino);
/* The entry name in directory parent: 0 with *ino, or -ENOENT. */
int cl_fs_tree_lookup(const struct cl_fs_tree *t, fuse_ino_t parent, const char *name,
                      fuse_ino_t *ino);
/* The listing of directory dir: dir itself ("."), its parent (".."), then
 * its entries in inode order. Returns how many kids holds. */
size_t cl_fs_tree_list(const struct cl_fs_tree *t, fuse_ino_t dir,
                       fuse_ino_t kids[CL_FS_INO_COUNT]);
/* How many inodes the tree has. */
uint64_t cl_fs_tree_count(const struct cl_fs_tree *t);

mode_t cl_fs_node_mode(const struct cl_fs_node *n);
/* The mode bits as the kernel's default_permissions would check them for
 * req's caller (R_OK, W_OK, X_OK in mask), every file owned by uid:gid;
 * for mounts without that option (with allow_other anyone may ask).
 * Returns 0 or -EACCES. */
int cl_fs_may_access(fuse_req_t req, uid_t uid, gid_t gid, const struct cl_fs_node *n, int mask);
/* The access mask (R_OK, W_OK) that open flags ask for. */
int cl_fs_open_mask(int flags);

#endif
