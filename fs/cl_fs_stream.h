/* SPDX-License-Identifier: GPL-2.0-only */
/* Stream files, {disk,memory}/streams/NAME: reading one prints the events of
 * its kind already recorded, then follows new ones live, one line each
 * ("SECONDS.MICROS\tCHUNK"). Each open file has its own cursor.
 *
 * A read with nothing new is parked on cl_lazy_events_wait() and answered
 * from the engine's thread when an event arrives; a FUSE interrupt (the
 * reader got a signal) cancels it with EINTR; at shutdown it ends the stream
 * (a read of 0 bytes). A read on a non-blocking descriptor answers EAGAIN
 * instead of waiting. */
#ifndef CL_FS_STREAM_H
#define CL_FS_STREAM_H

#include "cl_fs.h"

struct cl_fs_stream;

int cl_fs_stream_open(struct cl_fs *fs, struct cl_lazy *l, enum cl_image_id image,
                      enum cl_lazy_event_kind kind, struct cl_fs_stream **out);
/* Only once no read of it is pending (FUSE sends release after the last). */
void cl_fs_stream_close(struct cl_fs_stream *s);

/* Answers req, now or later; never blocks. */
void cl_fs_stream_read(struct cl_fs_stream *s, fuse_req_t req, size_t size, int nonblock);

#endif
