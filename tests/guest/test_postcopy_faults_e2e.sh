#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Faults of postcopy memory, end to end on the reference workload
# (`cloudlet synthesis --memory-mode postcopy` of an overlay served by nginx
# on 127.0.0.1 behind a slow link):
#  1. the server goes away mid-stream: the mount's status says `postcopy:
#     failed: ...`, and within 10 s of that libvirt no longer runs the VM
#     (paused, or killed when a vCPU waits on a missing page and it will not
#     pause); the timeline has memory_failed with the reason; a killed VM
#     ends the command with exit 1 and nothing left behind;
#  2. the mount's daemon is killed: the same within 10 s of the kill.
# ctest guest.test_postcopy_faults_e2e (labels guest, e2e); $1 = the workload dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/../lib/nginx.sh"
source "$HERE/../lib/link.sh"

[ $# -eq 1 ] || cl_die "usage: $0 WORKLOAD_DIR"
cl_use_workload "$1"
cloudlet=${CLOUDLET:?CLOUDLET not set (the cloudlet program)}
RUN_ROOT=/run/cloudlet
export CLOUDLET_MEMORY_MODE=postcopy

cl_init
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || cl_skip "no nginx"
T=$(mktemp -d /var/tmp/cl-pcfault-e2e.XXXXXX)
cl_at_exit "rm -rf '$T'"
cl_at_exit cl_nginx_stop
export CLOUDLET_HOME=$T/home
cl_workload_base >/dev/null
mkdir -p "$T/www"
cl_workload_overlay "$T/www/ov" >/dev/null
cl_nginx_start "$T/nginx" "$T/www" || cl_die "nginx did not start"
cl_at_exit "cl_link_unshape $NGINX_PORT"
cl_link_require "$NGINX_PORT" 8mbit
URL=http://127.0.0.1:$NGINX_PORT/ov/overlay-meta
OPTS=no_cache,memory_timeout=5,fetch_timeout=3,retries=1

# gone_within NAME SECONDS: libvirt no longer runs domain NAME within SECONDS
# (paused, shut off or gone); prints the state and the seconds it took.
gone_within() {
	local t0=$SECONDS st
	while :; do
		st=$(cl_domstate "$1")
		[ "$st" = running ] || { echo "${st:-gone} after $((SECONDS - t0)) s"; return 0; }
		[ $((SECONDS - t0)) -lt "$2" ] || { echo "still running after $2 s"; return 1; }
		sleep 0.2
	done
}

# after_fault NAME: the checks once guest memory failed.
after_fault() {
	local name=$1 rc=0 end=$((SECONDS + 30))
	grep -q '"event":"memory_failed"' "$T/out" && ok "timeline: $(grep -o '"event":"memory_failed".*' "$T/out" | cut -c1-200)" ||
		bad "no memory_failed event: $(cat "$T/out")"
	if [ "$(cl_domstate "$name")" = paused ]; then
		ok "the VM is paused"
		kill -INT "$CL_SYNTH_PID"
	fi
	while kill -0 "$CL_SYNTH_PID" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
	kill -0 "$CL_SYNTH_PID" 2>/dev/null && { bad "synthesis still runs 30 s after the fault"; kill -KILL "$CL_SYNTH_PID"; }
	wait "$CL_SYNTH_PID" || rc=$?
	grep -q '"reason":"guest memory failed' "$T/out" && { [ "$rc" = 1 ] && ok "synthesis exited 1" || bad "synthesis exited $rc after killing the VM"; }
	cl_domain_exists "$name" && bad "domain $name left" || ok "no domain left"
	grep -q " $RUN_ROOT/$name/" /proc/mounts && bad "mounts left under $RUN_ROOT/$name" || ok "no mount left"
	[ -e "$RUN_ROOT/$name" ] && bad "$RUN_ROOT/$name left" || ok "no files left"
}

cl_log "1. the server goes away mid-stream"
NAME=${CL_PREFIX}pcgone
cl_synthesis "$NAME" "$T/out" "$T/err" "$W/base/disk.img" "$URL" --json -o "$OPTS"
MNT=$RUN_ROOT/$NAME/mnt
grep -q '"memory":"postcopy"' "$T/out" && ok "resumed in postcopy mode" || bad "not postcopy: $(grep resumed "$T/out")"
grep -q '^postcopy: streaming' "$MNT/status" && ok "postcopy streaming at resume" ||
	bad "postcopy at resume: $(grep '^postcopy' "$MNT/status")"
cl_nginx_stop
# The guest reads its RAM data: pages that can no longer come.
$CL_GUESTCTL console-cmd "$RUN_ROOT/$NAME/console.sock" 60 'md5sum /ram/*' >/dev/null 2>&1 &
CL_HELPER_PIDS+=($!)
t0=$SECONDS
until grep -q '^postcopy: failed' "$MNT/status" 2>/dev/null; do
	[ $((SECONDS - t0)) -lt 60 ] || cl_die "no 'postcopy: failed' within 60 s of the server's end"
	sleep 0.1
done
ok "status: $(grep '^postcopy: failed' "$MNT/status" | cut -c1-160) ($((SECONDS - t0)) s after)"
r=$(gone_within "$NAME" 10) && ok "libvirt: $r of the failure" || bad "libvirt: $r"
after_fault "$NAME"

cl_log "2. the mount's daemon is killed"
cl_nginx_start "$T/nginx" "$T/www" || cl_die "nginx did not start again"
NAME=${CL_PREFIX}pcdaemon
cl_synthesis "$NAME" "$T/out" "$T/err" "$W/base/disk.img" "$URL" --json -o "$OPTS"
MNT=$RUN_ROOT/$NAME/mnt
DAEMON=$(sed -n 's/^pid: //p' "$MNT/status")
[ -n "$DAEMON" ] || cl_die "no daemon pid in $MNT/status"
kill -KILL "$DAEMON"
r=$(gone_within "$NAME" 10) && ok "libvirt: $r of the daemon's kill" || bad "libvirt: $r"
after_fault "$NAME"

cl_checks_done
