/* SPDX-License-Identifier: GPL-2.0-only */
/* Helper programs such as qemu-img (see cl_tool.h). */
#include "cl_tool.h"
#include "cl_error.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOOL_OUT_MAX (256u << 20)

/* Appends what the pipe has to *buf; 1 at its end. */
static int drain(int fd, char **buf, size_t *len, size_t *cap)
{
	size_t want;
	ssize_t n;
	char *p;

	for (;;) {
		if (*cap - *len < 65536) {
			want = *cap ? 2 * *cap : 65536 + 1; /* + 1: room for the NUL */
			if (want > TOOL_OUT_MAX)
				return -EFBIG;
			p = realloc(*buf, want);
			if (!p)
				return -ENOMEM;
			*buf = p;
			*cap = want;
		}
		n = read(fd, *buf + *len, *cap - *len - 1);
		if (n == 0)
			return 1;
		if (n < 0)
			return errno == EINTR || errno == EAGAIN ? 0 : -errno;
		*len += (size_t)n;
	}
}

int cl_tool_run(char *const argv[], double timeout, const atomic_int *stop, char **out, size_t *len)
{
	int pfd[2] = {-1, -1}, st, r = 0, eof = !out;
	size_t n = 0, cap = 0;
	char *buf = NULL;
	double t0 = cl_now();
	pid_t pid, w = 0;

	if (out && pipe2(pfd, O_CLOEXEC | O_NONBLOCK) < 0)
		return cl_errorf(-errno, "pipe: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		r = cl_errorf(-errno, "fork: %s", strerror(errno));
		goto out;
	}
	if (pid == 0) {
		if (out && dup2(pfd[1], 1) < 0)
			_exit(127);
		execvp(argv[0], argv);
		fprintf(stderr, "cloudlet: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	if (out) {
		close(pfd[1]);
		pfd[1] = -1;
	}
	/* Reading as it comes: a full pipe would stall the tool. */
	while (!eof || (w = waitpid(pid, &st, WNOHANG)) == 0) {
		if (!eof) {
			struct pollfd p = {.fd = pfd[0], .events = POLLIN};

			poll(&p, 1, 50);
			r = drain(pfd[0], &buf, &n, &cap);
			if (r < 0) {
				r = cl_errorf(r, "%s %s: reading its output: %s", argv[0], argv[1],
				              strerror(-r));
				break;
			}
			eof = r;
			r = 0;
		} else {
			cl_sleep_ms(50);
		}
		if ((stop && *stop) || cl_now() - t0 > timeout) {
			r = cl_errorf(stop && *stop ? -EINTR : -ETIMEDOUT, "%s %s: %s", argv[0],
			              argv[1], stop && *stop ? "interrupted" : "still running");
			break;
		}
	}
	if (r < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		goto out;
	}
	if (w < 0) {
		r = cl_errorf(-errno, "waitpid: %s", strerror(errno));
		goto out;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		r = cl_errorf(-EIO, "%s %s failed (exit status %d)", argv[0], argv[1],
		              WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		goto out;
	}
	if (out) {
		if (!buf && !(buf = malloc(1))) {
			r = -ENOMEM;
			goto out;
		}
		buf[n] = '\0';
		*out = buf;
		*len = n;
		buf = NULL;
	}
out:
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	free(buf);
	return r;
}
