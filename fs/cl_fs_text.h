/* SPDX-License-Identifier: GPL-2.0-only */
/* The text cloudletfs shows: stats files, the status file, stream lines. */
#ifndef CL_FS_TEXT_H
#define CL_FS_TEXT_H

#include <stddef.h>

#include "cl_lazy.h"

#define CL_FS_NSTATS 13

/* Names of the files under {disk,memory}/stats/, in inode order. */
extern const char *const cl_fs_stat_names[CL_FS_NSTATS];

/* Names of the files under {disk,memory}/streams/, indexed by event kind. */
extern const char *const cl_fs_stream_names[CL_EV_KINDS];

/* What status shows besides the engine's figures. */
#define CL_FS_NOTE_MAX 1024

struct cl_fs_status_info {
	const char *overlay;
	const char *base;
	const char *mountpoint;
	long pid;
	char note[CL_FS_NOTE_MAX]; /* a session's `key: value` line, "" if none */
};

/* Each writes at most cap bytes (always terminated) and returns the length
 * of the text. */
size_t cl_fs_stat_text(const struct cl_lazy_stats *st, int image, int which, char *buf, size_t cap);
size_t cl_fs_status_text(const struct cl_lazy_stats *st, const struct cl_fs_status_info *info,
                         char *buf, size_t cap);

/* One stream line, "SECONDS.MICROS\tCHUNK\n" with microseconds zero-padded
 * to 6 digits; buf must hold CL_FS_EVENT_LINE_MAX bytes. */
#define CL_FS_EVENT_LINE_MAX 48
size_t cl_fs_event_line(const struct cl_lazy_event *ev, char *buf);

#endif
