/* SPDX-License-Identifier: GPL-2.0-only */
/* The engine's files: the cache directory and its presence map of
 * segments (segments.map), the copy-on-write store and its kept map
 * (cl_store.h), and the map of base chunks that hold data. */
#include "cl_lazy_int.h"
#include "cl_bitmap.h"
#include "cl_error.h"
#include "cl_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void lazy_save_map(struct cl_lazy *l)
{
	uint8_t *map;
	char *path;
	uint32_t s, n = l->m->nsegments;

	map = cl_bitmap_new(n);
	if (!map)
		return;
	lazy_lock(l);
	for (s = 0; s < n; s++)
		if (l->seg[s].state == SEG_DONE)
			cl_bit_set(map, s);
	l->map_dirty = 0;
	l->map_saved = cl_now();
	lazy_unlock(l);
	/* Best effort: a lost map only costs a refetch. The data it vouches
	 * for was written before, and every chunk is rechecked on first use. */
	if (asprintf(&path, "%s/segments.map", l->cache.dir) >= 0) {
		cl_write_file_atomic(path, map, cl_bitmap_bytes(n), 0644);
		free(path);
	}
	free(map);
}

void lazy_load_map_locked(struct cl_lazy *l)
{
	struct waiter *none = NULL;
	uint8_t *map;
	size_t len;
	char *path;
	uint32_t s;

	lazy_assert_locked(l);
	if (asprintf(&path, "%s/segments.map", l->cache.dir) < 0)
		return;
	if (cl_read_file(path, cl_bitmap_bytes(l->m->nsegments), (void **)&map, &len) == 0) {
		if (len == cl_bitmap_bytes(l->m->nsegments)) {
			for (s = 0; s < l->m->nsegments; s++)
				if (cl_bit_get(map, s)) {
					lazy_segment_done_locked(l, s, &none);
					l->cache_hits++;
				}
			/* Chunks of a reused cache are checked on first use. */
			for (s = 0; s < CL_NIMAGES; s++) {
				memset(l->img[s].verified, 0, cl_bitmap_bytes(l->img[s].nchunks));
				l->img[s].st.chunk_fetches = 0;
			}
		}
		free(map);
	}
	cl_error_clear();
	free(path);
}

/* The cache directory of this overlay (see cl_cache.h); its note, if the
 * shared one cannot be used, shows in status. */
static int setup_cache(struct cl_lazy *l)
{
	uint64_t need = 0;
	char *root = NULL;
	int r, i;

	for (i = 0; i < CL_NIMAGES; i++)
		need += (uint64_t)l->ix.npayload[i] * l->cs;
	if (!l->o.no_cache) {
		if (l->o.cache_dir)
			root = strdup(l->o.cache_dir);
		else if (asprintf(&root, "%s/cache", cl_home()) < 0)
			root = NULL;
		if (!root)
			return -ENOMEM;
	}
	r = cl_cache_open(&l->cache, root, l->m->id, l->o.cache_limit, need);
	free(root);
	if (r == 0 && l->cache.note[0])
		snprintf(l->cache_note, sizeof(l->cache_note), "%s", l->cache.note);
	return r;
}

/* The copy-on-write store: a kept store of this overlay comes back with
 * its map (cl_store.h); any other is started afresh, but not a kept store
 * that this mount would lose (no keep_store), nor one of another overlay. */
static int open_store(struct cl_lazy *l)
{
	static const char *names[CL_NIMAGES] = {"disk.store", "memory.store"};
	uint64_t n[CL_NIMAGES];
	uint8_t *maps[CL_NIMAGES];
	int i, r, kept;

	for (i = 0; i < CL_NIMAGES; i++) {
		n[i] = l->img[i].nchunks;
		maps[i] = l->img[i].modified;
	}
	r = cl_store_map_load(l->store_dir, l->m->id, n, maps);
	if (r < 0 && r != -ENOENT)
		return r;
	kept = r == 0;
	if (kept && !l->o.keep_store)
		return cl_errorf(-EEXIST,
		                 "%s holds a kept store: mount with keep_store to use its writes, "
		                 "or remove it",
		                 l->store_dir);
	for (i = 0; i < CL_NIMAGES; i++) {
		struct image *img = &l->img[i];

		/* Afresh: emptied first, so no old write shows through. */
		r = cl_cache_file(l->store_dir, names[i], kept ? img->size : 0, &img->store_path,
		                  &img->store_fd);
		if (r == 0 && ftruncate(img->store_fd, (off_t)img->size) < 0)
			r = cl_errorf(-errno, "%s: %s", img->store_path, strerror(errno));
		if (r < 0)
			return r;
		img->st.chunks_modified = kept ? cl_bit_count(img->modified, img->nchunks) : 0;
	}
	return 0;
}

int cl_lazy_sync(struct cl_lazy *l)
{
	uint64_t n[CL_NIMAGES];
	uint8_t *maps[CL_NIMAGES] = {NULL};
	int i, r = 0;

	if (!l)
		return -EINVAL;
	if (!l->o.keep_store)
		return 0; /* scratch space that dies with the mount */
	/* The maps first: every chunk they name was written before, so the
	 * data sync that follows covers it. */
	lazy_lock(l);
	for (i = 0; i < CL_NIMAGES; i++) {
		n[i] = l->img[i].nchunks;
		maps[i] = malloc(cl_bitmap_bytes(n[i]));
		if (maps[i])
			memcpy(maps[i], l->img[i].modified, cl_bitmap_bytes(n[i]));
		else
			r = -ENOMEM;
	}
	lazy_unlock(l);
	for (i = 0; i < CL_NIMAGES && r == 0; i++)
		if (fdatasync(l->img[i].store_fd) < 0)
			r = cl_errorf(-errno, "%s: %s", l->img[i].store_path, strerror(errno));
	if (r == 0)
		r = cl_store_map_save(l->store_dir, l->m->id, n, (const uint8_t *const *)maps);
	for (i = 0; i < CL_NIMAGES; i++)
		free(maps[i]);
	return r;
}

int lazy_setup_files(struct cl_lazy *l)
{
	static const char *cache_names[CL_NIMAGES] = {"disk.cache", "memory.cache"};
	int r, i;

	r = setup_cache(l);
	if (r < 0)
		return r;
	if (l->o.store_dir) {
		l->store_dir = strdup(l->o.store_dir);
		if (!l->store_dir)
			return -ENOMEM;
		r = cl_mkdir_p(l->store_dir, 0700);
	} else {
		r = cl_cache_temp_dir("cloudlet-store", &l->store_dir, &l->store_lock_fd);
		l->store_created = 1;
	}
	if (r < 0)
		return r;
	for (i = 0; i < CL_NIMAGES; i++) {
		struct image *img = &l->img[i];
		r = cl_cache_file(l->cache.dir, cache_names[i], img->size, &img->cache_path,
		                  &img->cache_fd);
		if (r < 0)
			return r;
	}
	return open_store(l);
}

/* Marks the base chunks that hold data, from the base images' extents. */
int lazy_map_base_data(struct cl_lazy *l)
{
	uint64_t n, k, end;
	off_t data, hole;
	int i;

	for (i = 0; i < CL_NIMAGES; i++) {
		n = cl_chunk_count(l->base->size[i], l->cs);
		l->base_data[i] = cl_bitmap_new(n);
		l->base_ok[i] = cl_bitmap_new(n);
		l->base_izero[i] = cl_bitmap_new(n);
		if (!l->base_data[i] || !l->base_ok[i] || !l->base_izero[i])
			return -ENOMEM;
		for (data = 0; (uint64_t)data < l->base->size[i]; data = hole) {
			data = lseek(l->base->fd[i], data, SEEK_DATA);
			if (data < 0)
				break; /* ENXIO: no more data */
			hole = lseek(l->base->fd[i], data, SEEK_HOLE);
			if (hole < 0)
				hole = (off_t)l->base->size[i];
			end = ((uint64_t)hole + l->cs - 1) / l->cs;
			for (k = (uint64_t)data / l->cs; k < end && k < n; k++)
				cl_bit_set(l->base_data[i], k);
		}
	}
	return 0;
}
