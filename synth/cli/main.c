/* SPDX-License-Identifier: GPL-2.0-only */
#include "cl_cli.h"
#include "cl_net.h"
#include "cl_error.h"
#include "cl_progress.h"
#include "cl_session.h"
#include "cl_util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_VERSION "0.1.0"

static const char usage[] =
    "Usage: cloudlet [--quiet] COMMAND [ARGS...]\n"
    "\n"
    "VM synthesis for edge computing: keep base VMs on a cloudlet, ship a customized\n"
    "VM as a small overlay, and rebuild (synthesize) it from base + overlay.\n"
    "\n"
    "Commands:\n"
    "  base IMAGE --memory RAMFILE   register a raw disk + memory image as a base VM\n"
    "  base IMAGE [--kernel K ...]   boot a raw disk under libvirt, make it a base VM\n"
    "  list-base                     list the registered base VMs\n"
    "  overlay IMAGE --disk D --memory M\n"
    "                                make an overlay of a customized VM against IMAGE\n"
    "  overlay IMAGE [-o DIR]        resume base IMAGE, customize it, make an overlay\n"
    "  apply IMAGE OVERLAY -o DIR    synthesize the customized VM's files into DIR\n"
    "  info OVERLAY                  describe an overlay (--json for machines)\n"
    "  verify IMAGE [OVERLAY]        check base id, every segment and every chunk\n"
    "  mount IMAGE OVERLAY MOUNTPOINT\n"
    "                                serve the customized VM lazily (cloudletfs)\n"
    "  umount MOUNTPOINT             stop it (waiting reads fail, open files too)\n"
    "  trace MOUNTPOINT [SECONDS]    write the chunks the VM accessed, as a TRACE\n"
    "  synthesis IMAGE OVERLAY       run the customized VM under libvirt, resumed\n"
    "                                while the overlay still streams in\n"
    "  check [--fix]                 what this host has and lacks for cloudlet\n"
    "\n"
    "OVERLAY is the overlay-meta file or the directory that holds it; apply, info,\n"
    "verify, mount and synthesis also take an http:// or https:// URL of the\n"
    "overlay-meta.\n"
    "\n"
    "Options:\n"
    "  -q, --quiet    no progress bars\n"
    "  -h, --help     this help; `cloudlet COMMAND --help` for a command's options\n"
    "  -V, --version  print the version\n"
    "\n"
    "Environment:\n"
    "  CLOUDLET_HOME     registry of bases (default /var/lib/cloudlet for root,\n"
    "                    $XDG_DATA_HOME/cloudlet or ~/.local/share/cloudlet\n"
    "                    otherwise)\n"
    "  CLOUDLET_THREADS  worker threads (default: all cores)\n"
    "\n"
    "Exit status: 0 on success, 1 on failure, 2 on a usage error.\n";

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
};

static const struct command commands[] = {
    {"base", cl_cmd_base},           {"list-base", cl_cmd_list_base}, {"overlay", cl_cmd_overlay},
    {"apply", cl_cmd_apply},         {"info", cl_cmd_info},           {"verify", cl_cmd_verify},
    {"mount", cl_cmd_mount},         {"umount", cl_cmd_umount},       {"trace", cl_cmd_trace},
    {"synthesis", cl_cmd_synthesis}, {"check", cl_cmd_check},
};

static volatile sig_atomic_t cli_sig;
static struct cl_session *volatile cli_session;

static void on_signal(int sig)
{
	struct cl_session *s = cli_session;

	cli_sig = sig;
	if (s)
		cl_session_stop(s);
}

struct cl_session *cl_cli_signals(struct cl_session *s)
{
	struct cl_session *before = cli_session;
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: waits see it */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	cli_session = s;
	if (s && cli_sig)
		cl_session_stop(s);
	return before;
}

int cl_cli_close(struct cl_session *s, int keep)
{
	/* A signal from here on finds no session to stop (cli_sig still
	 * records it): the handler must not reach a session being freed. */
	if (cli_session == s)
		cli_session = NULL;
	return cl_session_close(s, keep);
}

int cl_cli_has_opt(int argc, char **argv, const char *shrt, const char *lng)
{
	size_t n = strlen(lng);
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], lng) || (!strncmp(argv[i], lng, n) && argv[i][n] == '=') ||
		    !strncmp(argv[i], shrt, 2))
			return 1;
	}
	return 0;
}

int cl_cli_signal(void)
{
	return cli_sig;
}

void cl_cli_notice(const struct cl_session_event *ev)
{
	fprintf(stderr, "cloudlet: %s\n", ev->text);
	if (ev->hint)
		fprintf(stderr, "hint: %s\n", ev->hint);
}

int cl_cli_publish(const char *cmd, const char *arg, struct cl_publish *pub, size_t *n)
{
	if (*n == CL_PUBLISH_MAX)
		return cl_cli_usage(cmd, "at most %d --publish", CL_PUBLISH_MAX);
	if (cl_publish_parse(arg, &pub[*n]) < 0)
		return cl_cli_usage(cmd, "%s", cl_error_msg());
	(*n)++;
	return -1;
}

int cl_cli_fail(int r, const char *hint)
{
	const char *msg = cl_error_msg();

	if (*msg)
		fprintf(stderr, "cloudlet: %s\n", msg);
	else
		fprintf(stderr, "cloudlet: %s\n", strerror(-r));
	if (hint)
		fprintf(stderr, "hint: %s\n", hint);
	return 1;
}

int cl_cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cloudlet %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry `cloudlet %s --help`.\n", cmd);
	return 2;
}

const char *cl_fmt_size(uint64_t bytes, int slot)
{
	static char buf[4][32];
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)bytes;
	int u = 0;

	slot &= 3;
	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf[slot], sizeof(buf[slot]), "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf[slot], sizeof(buf[slot]), "%.1f %s", v, units[u]);
	return buf[slot];
}

int main(int argc, char **argv)
{
	int i;

	if (cl_std_fds_open() < 0)
		return 1;
	while (argc > 1 && argv[1][0] == '-') {
		if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
			fputs(usage, stdout);
			return 0;
		} else if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
#ifdef CL_BENCH_NO_BASE_HASH
			printf("cloudlet %s (benchmark build: base bytes NOT checked)\n",
			       CL_VERSION);
#else
			printf("cloudlet %s\n", CL_VERSION);
#endif
			return 0;
		} else if (!strcmp(argv[1], "-q") || !strcmp(argv[1], "--quiet")) {
			cl_progress_enabled = 0;
		} else {
			fprintf(stderr, "cloudlet: unknown option '%s'\n%s", argv[1], usage);
			return 2;
		}
		argc--;
		argv++;
	}
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	for (i = 0; i < (int)(sizeof(commands) / sizeof(commands[0])); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	if (!strcmp(argv[1], "help")) {
		fputs(usage, stdout);
		return 0;
	}
	fprintf(stderr, "cloudlet: unknown command '%s'\nTry `cloudlet --help`.\n", argv[1]);
	return 2;
}
