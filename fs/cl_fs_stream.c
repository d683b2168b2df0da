/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_fs_stream.h"
#include "cl_fs_text.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 256 /* events copied from the engine per call */

struct cl_fs_stream {
	struct cl_fs *fs;
	struct cl_lazy *l;
	enum cl_image_id image;
	enum cl_lazy_event_kind kind;
	pthread_mutex_t lock;
	uint64_t cursor;                 /* events consumed (lock) */
	char pend[CL_FS_EVENT_LINE_MAX]; /* the rest of a line a short read cut (lock) */
	size_t pend_off, pend_len;       /* (lock) */
};

/* A parked read. Three parties use it: the thread that arms a wait, the
 * engine thread that completes it, and libfuse's interrupt callback; refs
 * counts them. The lock is recursive: a cancel is issued holding it (so the
 * wait cannot complete and its handle be freed and reused meanwhile), and
 * the cancelled wait's completion runs inside that call. */
struct stream_wait {
	pthread_mutex_t lock;
	struct cl_fs_stream *s; /* valid until the reply (release follows it) */
	struct cl_lazy *l;
	fuse_req_t req;
	size_t size;
	void *handle;        /* of the armed wait, once known (lock) */
	unsigned gen;        /* arming count: matches a handle to its wait (lock) */
	int armed;           /* a wait is outstanding (lock) */
	int interrupted;     /* FUSE interrupt received (lock) */
	int cancelling;      /* canceller is inside cl_lazy_events_cancel() (lock) */
	int cancel_in_intr;  /* ... called from the interrupt callback (lock) */
	int cancel_deferred; /* the completion left the reply to the canceller (lock) */
	pthread_t canceller; /* (lock) */
	int refs;            /* (lock) */
};

int cl_fs_stream_open(struct cl_fs *fs, struct cl_lazy *l, enum cl_image_id image,
                      enum cl_lazy_event_kind kind, struct cl_fs_stream **out)
{
	struct cl_fs_stream *s;
	int r;

	if (!fs || !l || image >= CL_NIMAGES || kind >= CL_EV_KINDS || !out)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	r = -pthread_mutex_init(&s->lock, NULL);
	if (r < 0) {
		free(s);
		return r;
	}
	s->fs = fs;
	s->l = l;
	s->image = image;
	s->kind = kind;
	*out = s;
	return 0;
}

void cl_fs_stream_close(struct cl_fs_stream *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Formats as many events as fit in size bytes, from the cursor on; a line
 * cut short is finished by the next read. Returns the bytes written. */
static size_t produce(struct cl_fs_stream *s, char *buf, size_t size)
{
	struct cl_lazy_event ev[BATCH];
	char line[CL_FS_EVENT_LINE_MAX];
	size_t n = 0, got, i, len, k;

	pthread_mutex_lock(&s->lock);
	k = s->pend_len - s->pend_off < size ? s->pend_len - s->pend_off : size;
	memcpy(buf, s->pend + s->pend_off, k);
	s->pend_off += k;
	if (s->pend_off == s->pend_len)
		s->pend_off = s->pend_len = 0;
	n = k;
	while (n < size) {
		got = cl_lazy_events(s->l, s->image, s->kind, s->cursor, ev, BATCH);
		if (!got)
			break;
		for (i = 0; i < got && n < size; i++) {
			len = cl_fs_event_line(&ev[i], line);
			k = len < size - n ? len : size - n;
			memcpy(buf + n, line, k);
			n += k;
			s->cursor++;
			if (k < len) {
				memcpy(s->pend, line + k, len - k);
				s->pend_off = 0;
				s->pend_len = len - k;
			}
		}
	}
	pthread_mutex_unlock(&s->lock);
	return n;
}

static int init_recursive(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int r;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	r = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return r;
}

static uint64_t cursor(struct cl_fs_stream *s)
{
	uint64_t c;

	pthread_mutex_lock(&s->lock);
	c = s->cursor;
	pthread_mutex_unlock(&s->lock);
	return c;
}

static void wait_put(struct stream_wait *w)
{
	int last;

	pthread_mutex_lock(&w->lock);
	last = --w->refs == 0;
	pthread_mutex_unlock(&w->lock);
	if (last) {
		pthread_mutex_destroy(&w->lock);
		free(w);
	}
}

/* Whether this thread is inside a cancel issued under w->lock. */
static int _cancelling_here(const struct stream_wait *w)
{
	return w->cancelling && pthread_equal(w->canceller, pthread_self());
}

/* Sends the one reply (bytes, or -errno), holding no lock of ours.
 * libfuse calls the interrupt callback holding the request's lock, and
 * unregistering it takes that lock: so it is unregistered first (waiting
 * out a callback running on another thread; none runs after), except from
 * inside the callback itself. */
static void wait_reply(struct stream_wait *w, const char *buf, ssize_t r)
{
	struct cl_fs *fs = w->s->fs;
	int in_intr;

	pthread_mutex_lock(&w->lock);
	in_intr = _cancelling_here(w) && w->cancel_in_intr;
	pthread_mutex_unlock(&w->lock);
	if (!in_intr)
		fuse_req_interrupt_func(w->req, NULL, NULL);
	if (r < 0)
		fuse_reply_err(w->req, (int)-r);
	else
		fuse_reply_buf(w->req, buf, (size_t)r);
	cl_fs_release(fs);
}

static void stream_woken(void *ctx, ssize_t r);

/* Parks w until the stream has more events than its cursor. The wait may
 * complete before cl_lazy_events_wait() returns. The caller holds a
 * reference. */
static void wait_arm(struct stream_wait *w)
{
	uint64_t from = cursor(w->s);
	int deferred = 0;
	unsigned gen;
	void *h;

	pthread_mutex_lock(&w->lock);
	gen = ++w->gen;
	w->armed = 1;
	w->handle = NULL;
	w->refs++; /* the wait's, dropped by stream_woken */
	pthread_mutex_unlock(&w->lock);
	h = cl_lazy_events_wait(w->l, w->s->image, w->s->kind, from, stream_woken, w);
	pthread_mutex_lock(&w->lock);
	if (w->armed && w->gen == gen) {
		w->handle = h;
		/* An interrupt came before the handle was known. Replying
		 * here would take the request's lock under ours, so the
		 * completion leaves the reply to us. */
		if (w->interrupted) {
			w->cancelling = 1;
			w->cancel_in_intr = 0;
			w->canceller = pthread_self();
			cl_lazy_events_cancel(w->l, h);
			w->cancelling = 0;
			deferred = w->cancel_deferred;
			w->cancel_deferred = 0;
		}
	}
	pthread_mutex_unlock(&w->lock);
	if (deferred)
		wait_reply(w, NULL, -EINTR);
}

static void stream_woken(void *ctx, ssize_t r)
{
	struct stream_wait *w = ctx;
	int interrupted, defer;
	size_t n;
	char *buf;

	pthread_mutex_lock(&w->lock);
	w->armed = 0;
	w->handle = NULL;
	interrupted = w->interrupted;
	defer = _cancelling_here(w) && !w->cancel_in_intr;
	if (defer)
		w->cancel_deferred = 1;
	pthread_mutex_unlock(&w->lock);
	if (defer) {
		/* wait_arm() replies once its cancel returns. */
	} else if (r == 0 && !interrupted) {
		buf = malloc(w->size);
		if (!buf) {
			wait_reply(w, NULL, -ENOMEM);
		} else {
			n = produce(w->s, buf, w->size);
			if (n)
				wait_reply(w, buf, (ssize_t)n);
			else /* another read of this file took the events */
				wait_arm(w);
			free(buf);
		}
	} else if (r == 0 || r == -ECANCELED) {
		wait_reply(w, NULL, -EINTR);
	} else if (r == -ESHUTDOWN) {
		wait_reply(w, NULL, 0); /* the stream ends with the mount */
	} else {
		wait_reply(w, NULL, r < 0 ? r : -EIO);
	}
	wait_put(w);
}

/* libfuse's interrupt callback (the reader got a signal), called holding
 * the request's lock. */
static void stream_interrupt(fuse_req_t req, void *data)
{
	struct stream_wait *w = data;

	(void)req;
	pthread_mutex_lock(&w->lock);
	w->interrupted = 1;
	/* Without a handle yet, the arming thread cancels once it has one. */
	if (w->armed && w->handle) {
		w->refs++; /* the reply, from inside the cancel, may drop the last */
		w->cancelling = 1;
		w->cancel_in_intr = 1;
		w->canceller = pthread_self();
		cl_lazy_events_cancel(w->l, w->handle);
		w->cancelling = 0;
		pthread_mutex_unlock(&w->lock);
		wait_put(w);
		return;
	}
	pthread_mutex_unlock(&w->lock);
}

void cl_fs_stream_read(struct cl_fs_stream *s, fuse_req_t req, size_t size, int nonblock)
{
	struct stream_wait *w;
	int interrupted;
	char *buf;
	size_t n;

	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = produce(s, buf, size);
	if (n || !size) {
		fuse_reply_buf(req, buf, n);
		free(buf);
		return;
	}
	free(buf);
	if (nonblock) {
		fuse_reply_err(req, EAGAIN);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (!w || init_recursive(&w->lock)) {
		free(w);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	w->s = s;
	w->l = s->l;
	w->req = req;
	w->size = size;
	w->refs = 1; /* this function's */
	cl_fs_hold(s->fs);
	/* Registered before arming, so that no interrupt is missed; if one
	 * already came the callback runs at once (and only marks w). */
	fuse_req_interrupt_func(req, stream_interrupt, w);
	pthread_mutex_lock(&w->lock);
	interrupted = w->interrupted;
	pthread_mutex_unlock(&w->lock);
	if (interrupted)
		wait_reply(w, NULL, -EINTR);
	else
		wait_arm(w);
	wait_put(w);
}
