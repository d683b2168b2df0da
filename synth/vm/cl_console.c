/* SPDX-License-Identifier: GPL-2.0-only */
/* The guest's serial console (see cl_console.h). */
#include "cl_console.h"
#include "cl_error.h"
#include "cl_util.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define POLL_MS 100

int cl_console_open(struct cl_console *c, const char *sock, double timeout)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	double t0 = cl_now();
	int fd;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (strlen(sock) >= sizeof(a.sun_path))
		return cl_errorf(-ENAMETOOLONG, "%s: socket path too long", sock);
	strcpy(a.sun_path, sock);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return cl_errorf(-errno, "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			break;
		close(fd);
		if (cl_now() - t0 > timeout)
			return cl_errorf(-ETIMEDOUT, "%s: cannot connect to the console: %s", sock,
			                 strerror(errno));
		cl_sleep_ms(100);
	}
	c->fd = fd;
	return 0;
}

int cl_console_read(struct cl_console *c)
{
	ssize_t n;
	size_t keep;

	for (;;) {
		if (c->len == sizeof(c->buf)) {
			/* keep the latest half */
			keep = sizeof(c->buf) / 2;
			memmove(c->buf, c->buf + c->len - keep, keep);
			c->len = keep;
		}
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n > 0) {
			c->len += (size_t)n;
			continue;
		}
		if (n == 0)
			return -EPIPE;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 0 : -errno;
	}
}

int cl_console_seen(struct cl_console *c, const char *text)
{
	char *p = memmem(c->buf, c->len, text, strlen(text));
	size_t end;

	if (!p)
		return 0;
	/* Only the match goes: output around it may hold other awaited text. */
	end = (size_t)(p - c->buf) + strlen(text);
	memmove(p, c->buf + end, c->len - end);
	c->len -= strlen(text);
	return 1;
}

int cl_console_run(struct cl_console *c, const char *line, double timeout, const atomic_int *stop)
{
	static atomic_uint seq; /* sessions on several threads */
	char tag[64], *cmd = NULL;
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	size_t off = 0, len;
	double t0 = cl_now();
	ssize_t w;
	int r;

	/* The tty echoes the line: the quotes keep the echo from matching. */
	unsigned n = atomic_fetch_add(&seq, 1) + 1;

	snprintf(tag, sizeof(tag), "CL-DONE-%ld-%u", (long)getpid(), n);
	if (asprintf(&cmd, "%s\necho CL\"\"-DONE-%ld-%u\n", line, (long)getpid(), n) < 0)
		return -ENOMEM;
	len = strlen(cmd);
	r = 0;
	while (off < len) {
		w = write(c->fd, cmd + off, len - off);
		if (w > 0) {
			off += (size_t)w;
		} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
			r = cl_errorf(-errno, "console: %s", strerror(errno));
			break;
		} else {
			p.events = POLLOUT;
			poll(&p, 1, POLL_MS);
		}
		if (cl_now() - t0 > timeout) {
			r = cl_errorf(-ETIMEDOUT, "console: the guest does not take input");
			break;
		}
	}
	free(cmd);
	p.events = POLLIN;
	while (r == 0) {
		r = cl_console_read(c);
		if (r < 0) {
			r = cl_errorf(r, "console closed while the guest ran: %.200s", line);
			break;
		}
		if (cl_console_seen(c, tag))
			break;
		if (stop && *stop)
			r = cl_errorf(-EINTR, "interrupted");
		else if (cl_now() - t0 > timeout)
			r = cl_errorf(-ETIMEDOUT, "the guest did not run `%.200s` within %.0f s",
			              line, timeout);
		else
			poll(&p, 1, POLL_MS);
	}
	return r;
}

void cl_console_close(struct cl_console *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}
