/* SPDX-License-Identifier: GPL-2.0-only */
/* The lazy engine's life cycle (open, start in cl_lazy_sched.c, shutdown,
 * close) and its stats; see cl_lazy_int.h for the engine's files and its
 * lock rule. */
#include "cl_lazy_int.h"
#include "cl_bitmap.h"
#include "cl_error.h"
#include "cl_source.h"
#include "cl_synth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_CONNECTIONS 4
#define DEFAULT_TIMEOUT_MS  60000
#define DEFAULT_MEM_TIMEOUT 300000
#define DEFAULT_CACHE_LIMIT (10ull << 30)

#ifdef CL_LAZY_LOCK_CHECK
void lazy_check_locked(const struct cl_lazy *l, const char *fn)
{
	/* Read without the lock only when the rule is already broken. */
	if (l->lock_held && pthread_equal(l->lock_owner, pthread_self()))
		return;
	fprintf(stderr, "cloudlet: %s called without the engine lock held\n", fn);
	abort();
}
#endif

static void free_all(struct cl_lazy *l)
{
	uint32_t s;
	int i, k;

	for (i = 0; i < CL_NIMAGES; i++) {
		struct image *img = &l->img[i];
		if (img->cache_fd >= 0)
			close(img->cache_fd);
		if (img->store_fd >= 0)
			close(img->store_fd);
		if (!l->o.keep_store && img->store_path)
			unlink(img->store_path);
		free(img->cache_path);
		free(img->store_path);
		free(img->modified);
		free(img->verified);
		for (k = 0; k < CL_EV_KINDS; k++) {
			free(img->log[k].tail);
			free(img->log[k].seen);
			if (img->log[k].fd >= 0)
				close(img->log[k].fd);
		}
		free(l->base_data[i]);
		free(l->base_ok[i]);
		free(l->base_izero[i]);
	}
	if (l->seg) {
		for (s = 0; s < l->m->nsegments; s++) {
			free(l->seg[s].w);
			free(l->seg[s].raw);
		}
	}
	if (l->store_created && l->store_dir)
		cl_cache_rm_rf(l->store_dir);
	if (l->store_lock_fd >= 0)
		close(l->store_lock_fd);
	cl_cache_close(&l->cache);
	free(l->seg);
	cl_recindex_free(&l->ix);
	free(l->blob[0]);
	free(l->blob[1]);
	free(l->store_dir);
	free(l->meta_location);
	free(l->pack_location);
	cl_source_close(l->pack);
	cl_meta_free(l->m);
	cl_base_free(l->base);
	pthread_mutex_destroy(&l->lock);
	pthread_mutex_destroy(&l->store_lock);
	pthread_cond_destroy(&l->work);
	pthread_cond_destroy(&l->tick);
	free(l);
}

static int init_images(struct cl_lazy *l)
{
	int i, k;

	for (i = 0; i < CL_NIMAGES; i++) {
		struct image *img = &l->img[i];
		img->size = l->m->image_size[i];
		img->nchunks = cl_chunk_count(img->size, l->cs);
		img->modified = cl_bitmap_new(img->nchunks);
		img->verified = cl_bitmap_new(img->nchunks);
		if (!img->modified || !img->verified)
			return -ENOMEM;
		for (k = 0; k < CL_EV_KINDS; k++) {
			img->log[k].seen = cl_bitmap_new(img->nchunks);
			if (!img->log[k].seen)
				return -ENOMEM;
		}
		img->missing = l->ix.npayload[i];
		img->st.chunk_size = l->cs;
		img->st.chunks = img->nchunks;
		img->st.chunks_overlay = l->ix.nrecs[i];
		img->timeout_ms = i == CL_MEMORY ? l->o.memory_timeout_ms : l->o.timeout_ms;
	}
	return 0;
}

int cl_lazy_open(const char *base, const char *overlay, const struct cl_lazy_opts *opts,
                 struct cl_lazy **out)
{
	struct cl_source_opts so = {0};
	struct cl_lazy *l;
	char *packloc;
	int r, i, k;

	if (!base || !overlay || !out)
		return -EINVAL;
	/* A kept store in a temporary directory could not be found again. */
	if (opts && opts->keep_store && !opts->store_dir)
		return cl_errorf(-EINVAL, "keep_store needs store_dir=DIR");
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	if (opts)
		l->o = *opts;
	if (!l->o.connections)
		l->o.connections = DEFAULT_CONNECTIONS;
	if (!l->o.timeout_ms)
		l->o.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (!l->o.memory_timeout_ms)
		l->o.memory_timeout_ms = DEFAULT_MEM_TIMEOUT;
	if (!l->o.cache_limit)
		l->o.cache_limit = DEFAULT_CACHE_LIMIT;
	l->t0 = cl_now();
	l->cache.lock_fd = l->store_lock_fd = -1;
	for (i = 0; i < CL_NIMAGES; i++) {
		l->img[i].cache_fd = l->img[i].store_fd = -1;
		for (k = 0; k < CL_EV_KINDS; k++)
			l->img[i].log[k].fd = -1;
	}
	l->waiters.next = l->waiters.prev = &l->waiters;
	pthread_mutex_init(&l->lock, NULL);
	pthread_mutex_init(&l->store_lock, NULL);
	cl_cond_init_monotonic(&l->work);
	cl_cond_init_monotonic(&l->tick);

	r = cl_meta_load(overlay, &l->m, &l->meta_location);
	if (r < 0)
		goto fail;
	r = cl_base_find(base, &l->base);
	if (r < 0)
		goto fail;
	r = cl_synth_check_base(l->m, l->base, l->meta_location);
	if (r == 0)
		r = cl_base_open_index(l->base); /* every base byte served is checked */
	if (r < 0)
		goto fail;
	l->cs = l->m->chunk_size;
	so.timeout_ms = l->o.fetch_timeout_ms;
	so.retries = l->o.retries;
	so.connections = l->o.connections;
	r = cl_source_sibling(l->meta_location, l->m->pack, &l->pack_location);
	if (r < 0)
		goto fail;
	packloc = l->pack_location;
	r = cl_source_open(packloc, &so, &l->pack);
	if (r < 0)
		goto fail;
	if (cl_source_size(l->pack) != l->m->pack_size) {
		r = cl_errorf(-EBADMSG, "%s: pack is %llu bytes, the meta says %llu", packloc,
		              (unsigned long long)cl_source_size(l->pack),
		              (unsigned long long)l->m->pack_size);
		goto fail;
	}
	l->ranges = cl_source_has_ranges(l->pack);
	l->seg = calloc((size_t)l->m->nsegments + 1, sizeof(*l->seg));
	if (!l->seg) {
		r = -ENOMEM;
		goto fail;
	}
	r = cl_recindex_build(l->m, &l->ix);
	if (r == 0)
		r = init_images(l);
	if (r == 0)
		r = lazy_map_base_data(l);
	if (r == 0)
		r = lazy_setup_files(l);
	if (r < 0)
		goto fail;
	lazy_ahead_setup(l);
	lazy_lock(l);
	lazy_load_map_locked(l);
	lazy_unlock(l);
	r = lazy_load_blobs(l);
	if (r < 0)
		goto fail;
	*out = l;
	return 0;

fail:
	free_all(l);
	return r;
}

void cl_lazy_shutdown(struct cl_lazy *l)
{
	struct waiter *done = NULL, *w;
	struct evwait *ready;

	if (!l)
		return;
	lazy_lock(l);
	l->shutdown = 1;
	while ((w = l->waiters.next) != &l->waiters) {
		lazy_drop_waiter_locked(l, w);
		w->result = -EIO;
		w->cnext = done;
		done = w;
	}
	ready = lazy_ready_evwaits_locked(l);
	pthread_cond_broadcast(&l->work);
	pthread_cond_broadcast(&l->tick);
	lazy_unlock(l);
	/* Transfers under way on a slow link would hold up close. */
	cl_source_abort(l->pack);
	lazy_run_evwaits(ready);
	for (; done; done = w) {
		w = done->cnext;
		lazy_finish(l, done, -EIO);
	}
}

void cl_lazy_close(struct cl_lazy *l)
{
	unsigned i;

	if (!l)
		return;
	cl_lazy_shutdown(l);
	for (i = 0; i < l->nthreads; i++)
		pthread_join(l->threads[i], NULL);
	if (l->timer_started)
		pthread_join(l->timer, NULL);
	free(l->threads);
	if (!l->cache.is_private)
		lazy_save_map(l);
	free_all(l);
}

const struct cl_meta *cl_lazy_meta(const struct cl_lazy *l)
{
	return l->m;
}

uint64_t cl_lazy_size(const struct cl_lazy *l, enum cl_image_id image)
{
	return (unsigned)image < CL_NIMAGES ? l->img[image].size : 0;
}

void cl_lazy_blob(const struct cl_lazy *l, int which, const void **data, size_t *len)
{
	which = which ? 1 : 0;
	*data = l->blob[which];
	*len = l->blob[which] ? l->blob_len[which] : 0;
}

void cl_lazy_stats(struct cl_lazy *l, struct cl_lazy_stats *st)
{
	int i;

	memset(st, 0, sizeof(*st));
	lazy_lock(l);
	for (i = 0; i < CL_NIMAGES; i++) {
		st->image[i] = l->img[i].st;
		st->image[i].chunks_present = l->img[i].nchunks - l->img[i].missing;
		st->image[i].chunks_fetched = l->img[i].log[CL_EV_PRESENT].n;
	}
	st->state = l->state;
	if (l->reason[0])
		snprintf(st->reason, sizeof(st->reason), "%s", l->reason);
	else if (l->cache_note[0])
		snprintf(st->reason, sizeof(st->reason), "%s", l->cache_note);
	else if (l->segs_done < l->m->nsegments)
		snprintf(st->reason, sizeof(st->reason), "%s", l->last_error);
	st->ranges = l->ranges;
	st->segments = l->m->nsegments;
	st->segments_present = l->segs_done;
	st->pack_bytes = l->m->pack_size;
	st->bytes_fetched = l->bytes_fetched;
	st->cache_hits = l->cache_hits;
	st->base_checked = l->base_checked;
	st->decodes = l->decodes;
	st->seconds = cl_now() - l->t0;
	lazy_unlock(l);
}
