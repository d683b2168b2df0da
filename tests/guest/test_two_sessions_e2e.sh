#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Two VM sessions at once in one process (the session API, include/cl_session.h):
# tests/tools/session_tool synthesizes the reference workload's overlay twice, on two
# threads under two domain names, runs a command at each guest's console, stops both
# from its main thread, then re-attaches a new handle to the first one's run directory
# and tears it down. Checks its report and that nothing is left: no domain, no mount,
# no cloudletfs, no run directory.
# ctest guest.test_two_sessions_e2e (labels guest, e2e); $1 = the workload dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"

[ $# -eq 1 ] || cl_die "usage: $0 WORKLOAD_DIR"
cl_use_workload "$1"
BUILD=${CL_BUILD_DIR:?CL_BUILD_DIR not set (the build directory)}
cloudlet=${CLOUDLET:?CLOUDLET not set (the cloudlet program)}
TOOL=$BUILD/tests/tools/session_tool
[ -x "$TOOL" ] || cl_die "$TOOL not built"
RUN_ROOT=/run/cloudlet

cl_init
T=$(mktemp -d /var/tmp/cl-two-sessions.XXXXXX)
cl_at_exit "rm -rf '$T'"
export CLOUDLET_HOME=$T/home

cl_log "registering the base and making the overlay"
cl_workload_base >/dev/null
cl_workload_overlay "$T/ov" >/dev/null

A=${CL_PREFIX}a
B=${CL_PREFIX}b
cl_log "session_tool: $A and $B at once"
rc=0
# cloudletfs is found in PATH (the tool does not sit next to it).
PATH=$(dirname "$cloudlet"):$PATH timeout 600 "$TOOL" "$W/base/disk.img" "$T/ov" "$A" "$B" \
	>"$T/out" 2>"$T/err" || rc=$?
cat "$T/out"
[ -s "$T/err" ] && { echo "--- stderr"; cat "$T/err"; }
[ "$rc" = 0 ] && ok "session_tool exited 0" || bad "session_tool exited $rc"
for s in A B; do
	grep -q "^$s: resumed at" "$T/out" && ok "$s resumed" || bad "$s not resumed"
	grep -q "^$s: console answered" "$T/out" && ok "$s's guest answered at its console" ||
		bad "$s's guest did not answer"
	grep -q "^$s: ended (stopped)" "$T/out" && ok "$s stopped from the main thread" ||
		bad "$s did not end by the stop"
done
# Both ran at once: each resumed before the other was stopped.
grep -q '^both running$' "$T/out" && ok "both VMs ran at once" || bad "never both running"
grep -q "^B: stopped at" "$T/out" && ok "B torn down" || bad "B not torn down"
grep -q "^A': re-attached to $RUN_ROOT/$A, the VM runs" "$T/out" &&
	ok "A found again from its run directory" || bad "re-attaching to A failed"
grep -q "^A': stopped at" "$T/out" && ok "A torn down through the new handle" ||
	bad "A not torn down"
grep -q '^PASS$' "$T/out" && ok "session_tool: PASS" || bad "session_tool did not pass"

for n in "$A" "$B"; do
	cl_domain_exists "$n" && bad "domain $n left" || ok "no domain $n"
	[ -e "$RUN_ROOT/$n" ] && bad "$RUN_ROOT/$n left" || ok "no run directory $n"
	grep -q " $RUN_ROOT/$n/mnt fuse" /proc/mounts && bad "$RUN_ROOT/$n/mnt still mounted" ||
		ok "no mount for $n"
done
pgrep -f "cloudletfs $T/ov" >/dev/null && bad "a cloudletfs of $T/ov still runs" ||
	ok "no cloudletfs left"

cl_checks_done
