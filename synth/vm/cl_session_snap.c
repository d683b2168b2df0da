/* SPDX-License-Identifier: GPL-2.0-only */
/* The customization of a booted or resumed VM and its snapshot: viewer,
 * console script, the trigger, the free-memory settle and the save (see
 * cl_session.h). */
#include "cl_session_priv.h"
#include "cl_domxml.h"
#include "cl_error.h"
#include "cl_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SCRIPT_LINE_S 600.0 /* bound on one line of a console script */
#define SAVE_TIMEOUT  300.0
#define SETTLE_QUIET  4.0  /* s without change in the RAM file's allocation */
#define SETTLE_MAX    60.0 /* s at most spent waiting for it */
#define CONSOLE_S     30.0 /* for QEMU's console socket to answer */

static const char *const viewers[] = {"remote-viewer", "gvncviewer", NULL};

static int in_path(const char *prog)
{
	char *path = strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin"), *dir, *save;
	char buf[PATH_MAX];
	int found = 0;

	for (dir = path ? strtok_r(path, ":", &save) : NULL; dir && !found;
	     dir = strtok_r(NULL, ":", &save))
		found = (size_t)snprintf(buf, sizeof(buf), "%s/%s", dir, prog) < sizeof(buf) &&
		        access(buf, X_OK) == 0;
	free(path);
	return found;
}

int cl_session_can_view(void)
{
	return getenv("DISPLAY") && (in_path(viewers[0]) || in_path(viewers[1]));
}

int cl_session_viewer(struct cl_session *s, const char **which)
{
	char vnc[128], url[160];
	int i, fd;

	if (!s || !which)
		return -EINVAL;
	*which = NULL;
	if (cl_session_vnc(s, vnc, sizeof(vnc)) < 0)
		return 0;
	for (i = 0; getenv("DISPLAY") && viewers[i]; i++) {
		if (!in_path(viewers[i]))
			continue;
		/* remote-viewer takes a URL, gvncviewer host:display */
		if (i == 0)
			snprintf(url, sizeof(url), "vnc://%s", vnc);
		else
			snprintf(url, sizeof(url), "%.*s:%d", (int)strcspn(vnc, ":"), vnc,
			         atoi(strrchr(vnc, ':') + 1) - 5900);
		fflush(NULL);
		s->viewer = fork();
		if (s->viewer == 0) {
			fd = open("/dev/null", O_RDWR);
			if (fd >= 0) {
				dup2(fd, 0);
				dup2(fd, 1);
			}
			execlp(viewers[i], viewers[i], url, (char *)NULL);
			_exit(127);
		}
		if (s->viewer > 0)
			*which = viewers[i];
		break;
	}
	return 0;
}

void cl_session_snap_end(struct cl_session *s)
{
	if (s->viewer > 0) {
		kill(s->viewer, SIGTERM);
		waitpid(s->viewer, NULL, 0);
	}
	s->viewer = 0;
	cl_console_close(&s->con);
}

/* The console, opened once: output that arrives while a script runs may
 * hold the text awaited after it. */
static int console(struct cl_session *s)
{
	char sock[sizeof(s->rundir) + 16];

	if (s->con.fd >= 0)
		return 0;
	snprintf(sock, sizeof(sock), "%s/console.sock", s->rundir);
	return cl_console_open(&s->con, sock, CONSOLE_S);
}

int cl_session_type_script(struct cl_session *s, const char *path, size_t *lines)
{
	char *text = NULL, *line, *save;
	size_t len = 0, n = 0;
	int r;

	if (!s || !path || !lines || !s->dom)
		return -EINVAL;
	r = console(s);
	if (r == 0)
		r = cl_read_file(path, 1u << 20, (void **)&text, &len);
	if (r < 0)
		return r;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		line[strcspn(line, "\r")] = '\0';
		if (!line[strspn(line, " \t")] || line[strspn(line, " \t")] == '#')
			continue;
		if (strlen(line) > 3800) {
			r = cl_errorf(-E2BIG, "%s: a line longer than the guest tty takes (3800)",
			              path);
			break;
		}
		r = cl_console_run(&s->con, line, SCRIPT_LINE_S, &s->stop);
		if (r < 0)
			break;
		n++;
	}
	free(text);
	*lines = n;
	return r;
}

/* One look at the trigger other than time: 1 when it came (*why), 0 not
 * yet, -errno. */
static int trigger(struct cl_session *s, const char *text, int *fd, enum cl_session_trigger *why)
{
	struct pollfd in = {.fd = *fd, .events = POLLIN};
	char buf[256];
	ssize_t n;
	int r;

	if (text) {
		r = cl_console_read(&s->con);
		if (r < 0)
			return cl_errorf(r, "%s/console.sock: the console closed", s->rundir);
		if (cl_console_seen(&s->con, text))
			return *why = CL_SESSION_TRIGGER_TEXT, 1;
	}
	if (s->stop)
		return cl_errorf(-EINTR, "interrupted: no snapshot taken");
	if (cl_vm_alive(s->dom) <= 0)
		return cl_errorf(-ECHILD, "the guest shut down before the snapshot");
	if (s->viewer > 0 && waitpid(s->viewer, NULL, WNOHANG) == s->viewer) {
		s->viewer = 0;
		return *why = CL_SESSION_TRIGGER_VIEWER, 1;
	}
	if (*fd < 0 || poll(&in, 1, 0) <= 0)
		return 0;
	n = read(*fd, buf, sizeof(buf));
	if (n > 0 && memchr(buf, '\n', (size_t)n))
		return *why = CL_SESSION_TRIGGER_LINE, 1;
	if (n == 0)
		*fd = -1; /* closed: no line will come */
	return 0;
}

int cl_session_await(struct cl_session *s, const char *text, int fd, double timeout,
                     enum cl_session_trigger *why)
{
	struct pollfd p[2] = {{.fd = s ? s->wake[0] : -1, .events = POLLIN}, {.events = POLLIN}};
	double t0 = cl_now();
	int r;

	if (!s || !why || !s->dom)
		return -EINVAL;
	if (text && (r = console(s)) < 0)
		return r;
	for (;;) {
		r = trigger(s, text, &fd, why);
		if (r != 0)
			return r < 0 ? r : 0;
		if (cl_now() - t0 > timeout)
			return cl_errorf(-ETIMEDOUT, "no snapshot trigger within %.0f s", timeout);
		p[1].fd = fd;
		poll(p, fd >= 0 ? 2 : 1, CL_SESSION_TICK_MS);
	}
}

int cl_session_settle(struct cl_session *s, struct cl_session_settle *out)
{
	double t0 = cl_now(), quiet_since = t0;
	struct stat st;
	blkcnt_t first, last;

	if (!s || !out || !s->ram[0])
		return -EINVAL;
	if (stat(s->ram, &st) < 0)
		return cl_errorf(-errno, "%s: %s", s->ram, strerror(errno));
	first = last = st.st_blocks;
	while (cl_now() - quiet_since < SETTLE_QUIET && cl_now() - t0 < SETTLE_MAX) {
		if (cl_session_nap(s, 500))
			return cl_errorf(-EINTR, "interrupted: no snapshot taken");
		if (stat(s->ram, &st) < 0)
			return cl_errorf(-errno, "%s: %s", s->ram, strerror(errno));
		if (st.st_blocks != last)
			quiet_since = cl_now();
		last = st.st_blocks;
	}
	out->ram = s->ram;
	out->before = (uint64_t)first * 512;
	out->after = (uint64_t)last * 512;
	out->secs = cl_now() - t0;
	return 0;
}

int cl_session_save(struct cl_session *s)
{
	struct cl_domxml_edit e = {0};
	char sock[sizeof(s->rundir) + 16], *xml, *out = NULL, *name = NULL;
	int r;

	if (!s || !s->dom || !s->state[0])
		return -EINVAL;
	snprintf(sock, sizeof(sock), "%s/mig-out.sock", s->rundir);
	r = cl_migrate_save(s->dom, sock, s->state, SAVE_TIMEOUT, &s->stop);
	if (r < 0)
		return r;
	cl_session_emit(s, CL_SESSION_PAUSED, 0);
	xml = virDomainGetXMLDesc(s->dom, VIR_DOMAIN_XML_INACTIVE);
	if (!xml)
		return cl_errorf(-EIO, "domain %s: %s", s->name, cl_vm_error());
	r = cl_domxml_get(xml, strlen(xml), "name", &name);
	e.name = name;
	e.incoming = 0;
	e.net_from = s->tmpl;
	e.net_from_len = s->tmpl_len;
	if (r == 0)
		r = cl_domxml_rewrite(xml, strlen(xml), &e, &out);
	free(xml);
	free(name);
	if (r == 0)
		r = cl_write_file_atomic(s->xml, out, strlen(out), 0644);
	free(out);
	if (r == 0) {
		r = cl_vm_remove(s->dom);
		s->dom = NULL;
	}
	/* Nothing left to show or type into. */
	if (r == 0)
		cl_session_snap_end(s);
	return r;
}
