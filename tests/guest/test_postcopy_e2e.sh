#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Postcopy memory end to end on the reference workload (`cloudlet synthesis
# --memory-mode postcopy` of an overlay served by nginx on 127.0.0.1 behind a
# slow link), its faults and its RAM file:
#  1. the server goes away mid-stream: the mount's status says `postcopy:
#     failed: ...`, and within 10 s of that libvirt no longer runs the VM
#     (paused, or killed when a vCPU waits on a missing page and it will not
#     pause); the timeline has memory_failed with the reason; a killed VM
#     ends the command with exit 1 and nothing left behind;
#  2. the overlay's pack goes corrupt on the server after the resume (a copy
#     with bytes flipped, size and mtime kept, renamed over it, so the ETag
#     never changes and only the segments' SHA-256 can tell): status names the mismatch,
#     says `postcopy: failed: ...`, and the same as in 1 follows;
#  3. the mount's daemon is killed: the same within 10 s of the kill;
#  4. once every page is in, the VM is saved as any cloudlet VM is (device
#     state with x-ignore-shared, RAM the VM's own file) and resumed again
#     from those two files in a QEMU of its own: a marker the guest wrote into
#     its RAM before the save is there.
# ctest guest.test_postcopy_e2e (labels guest, e2e); $1 = the workload dir.
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
		if cl_domain_exists "$1"; then st=$(cl_domstate "$1"); else st=gone; fi
		[ "$st" = running ] || [ -z "$st" ] || { echo "$st after $((SECONDS - t0)) s"; return 0; }
		[ $((SECONDS - t0)) -lt "$2" ] || { echo "still running after $2 s"; return 1; }
		sleep 0.2
	done
}

# after_fault NAME: the checks once guest memory failed.
after_fault() {
	local name=$1 rc=0 want=1 end=$((SECONDS + 30))
	for _ in $(seq 50); do grep -q '"event":"memory_failed"' "$T/out" && break; sleep 0.2; done
	grep -q '"event":"memory_failed"' "$T/out" && ok "timeline: $(grep -o '"event":"memory_failed".*' "$T/out" | cut -c1-200)" ||
		bad "no memory_failed event within 10 s: $(cat "$T/out")"
	if [ "$(cl_domstate "$name")" = paused ]; then
		ok "the VM is paused"
		want=0
		kill -INT "$CL_SYNTH_PID"
	fi
	while kill -0 "$CL_SYNTH_PID" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
	kill -0 "$CL_SYNTH_PID" 2>/dev/null && { bad "synthesis still runs 30 s after the fault"; kill -KILL "$CL_SYNTH_PID"; }
	cl_wait_helper "$CL_SYNTH_PID" || rc=$?
	[ "$rc" = "$want" ] && ok "synthesis exited $rc" || bad "synthesis exited $rc, not $want"
	cl_domain_exists "$name" && bad "domain $name left" || ok "no domain left"
	grep -q " $RUN_ROOT/$name/" /proc/mounts && bad "mounts left under $RUN_ROOT/$name" || ok "no mount left"
	[ -e "$RUN_ROOT/$name" ] && bad "$RUN_ROOT/$name left" || ok "no files left"
}

# read_ram_until_failed WHAT: the guest reads its RAM data (pages that can
# no longer come); the mount's status must say `postcopy: failed` within 60 s.
read_ram_until_failed() {
	local t0=$SECONDS
	$CL_GUESTCTL console-cmd "$RUN_ROOT/$NAME/console.sock" 60 'md5sum /ram/*' >/dev/null 2>&1 &
	CL_HELPER_PIDS+=($!)
	until grep -q '^postcopy: failed' "$MNT/status" 2>/dev/null; do
		[ $((SECONDS - t0)) -lt 60 ] || cl_die "no 'postcopy: failed' within 60 s of $1"
		sleep 0.1
	done
	ok "status: $(grep '^postcopy: failed' "$MNT/status" | cut -c1-160) ($((SECONDS - t0)) s after)"
}

cl_log "1. the server goes away mid-stream"
NAME=${CL_PREFIX}pcgone
cl_synthesis "$NAME" "$T/out" "$T/err" "$W/base/disk.img" "$URL" --json -o "$OPTS"
MNT=$RUN_ROOT/$NAME/mnt
grep -q '"memory":"postcopy"' "$T/out" && ok "resumed in postcopy mode" || bad "not postcopy: $(grep resumed "$T/out")"
grep -q '^postcopy: streaming' "$MNT/status" && ok "postcopy streaming at resume" ||
	bad "postcopy at resume: $(grep '^postcopy' "$MNT/status")"
cl_nginx_stop
read_ram_until_failed "the server's end"
r=$(gone_within "$NAME" 10) && ok "libvirt: $r of the failure" || bad "libvirt: $r"
after_fault "$NAME"

cl_log "2. the pack goes corrupt on the server after the resume"
mkdir -p "$T/www/bad"
cp -p "$T/www/ov/overlay-meta" "$T/www/ov/overlay-blob" "$T/www/bad/"
cl_nginx_start "$T/nginx" "$T/www" || cl_die "nginx did not start again"
NAME=${CL_PREFIX}pcbad
cl_synthesis "$NAME" "$T/out" "$T/err" "$W/base/disk.img" \
	"http://127.0.0.1:$NGINX_PORT/bad/overlay-meta" --json -o "$OPTS"
MNT=$RUN_ROOT/$NAME/mnt
grep -q '^postcopy: streaming' "$MNT/status" || bad "postcopy at resume: $(grep '^postcopy' "$MNT/status")"
# One byte in every 512 flipped: every segment not fetched yet is damaged.
# Damaged in a copy that gets the old mtime before it replaces the pack: in
# place, a fetch between the write and the mtime's reset saw a new ETag (the
# server's object changed, not a corrupt one).
cp "$T/www/bad/overlay-blob" "$T/www/bad/overlay-blob.new"
python3 -c 'import mmap, os, sys
f = os.open(sys.argv[1], os.O_RDWR); m = mmap.mmap(f, 0)
for i in range(0, len(m), 512): m[i] ^= 0xff
m.flush(); m.close(); os.close(f)' "$T/www/bad/overlay-blob.new"
touch -r "$T/www/ov/overlay-blob" "$T/www/bad/overlay-blob.new"
mv -f "$T/www/bad/overlay-blob.new" "$T/www/bad/overlay-blob"
read_ram_until_failed "the damage"
grep -q 'SHA-256 mismatch (corrupt pack)' "$MNT/status" 2>/dev/null &&
	ok "status names the damage: $(grep -m1 -o 'segment [0-9]*: SHA-256 mismatch (corrupt pack)' "$MNT/status")" ||
	bad "status does not name the corrupt segment: $(grep -E '^(reason|last_error|postcopy):' "$MNT/status")"
r=$(gone_within "$NAME" 10) && ok "libvirt: $r of the failure" || bad "libvirt: $r"
after_fault "$NAME"

cl_log "3. the mount's daemon is killed"
NAME=${CL_PREFIX}pcdaemon
# TMPDIR: the private cache and store of the daemon killed here stay behind
# (no one removes them); they go with the test's own directory.
TMPDIR=$T cl_synthesis "$NAME" "$T/out" "$T/err" "$W/base/disk.img" "$URL" --json -o "$OPTS"
MNT=$RUN_ROOT/$NAME/mnt
DAEMON=$(sed -n 's/^pid: //p' "$MNT/status" 2>/dev/null || true)
[ -n "$DAEMON" ] || { cat "$T/out" "$T/err" >&2; cl_die "no daemon pid in $MNT/status"; }
kill -KILL "$DAEMON"
r=$(gone_within "$NAME" 10) && ok "libvirt: $r of the daemon's kill" || bad "libvirt: $r"
after_fault "$NAME"

cl_log "4. saved with x-ignore-shared once every page is in, resumed again"
NAME=${CL_PREFIX}pcsave
RD=$RUN_ROOT/$NAME
cl_synthesis "$NAME" "$T/out" "$T/err" "$W/base/disk.img" "$T/www/ov" --json
MNT=$RD/mnt
for _ in $(seq 300); do grep -q '^postcopy: complete' "$MNT/status" && break; sleep 0.2; done
grep -q '^postcopy: complete' "$MNT/status" || cl_die "postcopy not complete in 60 s"
MARK=resaved-$$-$RANDOM
$CL_GUESTCTL console-cmd "$RD/console.sock" 60 "echo $MARK >/ram/resave.txt; sync" >/dev/null ||
	cl_die "the guest does not answer"
cl_virsh suspend "$NAME" >/dev/null || cl_die "virsh suspend failed"
# The device state into a file through a unix socket QEMU's user may reach.
$CL_GUESTCTL mig-recv "$RD/save.sock" "$T/saved.state" 60 &
SAVER=$!
CL_HELPER_PIDS+=("$SAVER")
for _ in $(seq 50); do [ -S "$RD/save.sock" ] && break; sleep 0.1; done
qmp() { cl_virsh qemu-monitor-command "$NAME" "$1"; }
# The incoming migration's postcopy-ram is still set: an outgoing one with
# x-ignore-shared needs it off.
qmp '{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"postcopy-ram","state":false},{"capability":"x-ignore-shared","state":true}]}}' >/dev/null ||
	cl_die "x-ignore-shared refused"
qmp "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"unix:$RD/save.sock\"}}" >/dev/null ||
	cl_die "migrate refused"
for _ in $(seq 300); do
	st=$(qmp '{"execute":"query-migrate"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["return"].get("status",""))')
	[ "$st" = completed ] || [ "$st" = failed ] && break
	sleep 0.2
done
[ "$st" = completed ] || cl_die "saving: migration $st: $(qmp '{"execute":"query-migrate"}')"
cl_wait_helper "$SAVER" || cl_die "the saver failed"
ok "saved with x-ignore-shared: $(stat -c %s "$T/saved.state") bytes of device state"
cp --sparse=always "/run/cloudlet-ram/$NAME/memory" "$T/saved.ram"
cp --sparse=always "$MNT/disk/image" "$T/saved.disk"
kill -INT "$CL_SYNTH_PID"
cl_wait_helper "$CL_SYNTH_PID" || bad "synthesis exited non-zero"

SRC=$CL_SOURCE_DIR
QEMU=$(command -v qemu-system-x86_64)
fail() { cl_die "$*"; }
source "$SRC/tests/lib/pcqemu.sh"
pc_use_workload "$W" >/dev/null
RAMIMG=$T/saved.ram
cl_at_exit pc_stop_qemu
pc_qemu resave "$T/saved.ram" "$T/saved.disk" -incoming defer
$QMP "$T/resave.qmp" run \
	'{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true}]}}' \
	"{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"unix:$T/load.sock\"}}" >/dev/null ||
	cl_die "QEMU refused the incoming migration"
$CL_GUESTCTL mig-send "$T/load.sock" "$T/saved.state" 60 || cl_die "feeding the saved state failed"
st=$($QMP "$T/resave.qmp" wait-migration 60) && ok "loaded again (migration $st)" || cl_die "loading: migration $st"
# Saved paused, loaded paused: resumed as cloudlet resumes its VMs.
$QMP "$T/resave.qmp" run '{"execute":"cont"}' >/dev/null || cl_die "cont refused"
$QMP "$T/resave.qmp" wait-status running 60 >/dev/null || cl_die "the VM does not run again"
got=$($GCTL console-cmd "$T/resave.con" 60 'cat /ram/resave.txt') || got="no answer"
[ "$got" = "$MARK" ] && ok "resumed again: /ram/resave.txt = $got" || bad "/ram/resave.txt: '$got', not $MARK"

cl_checks_done
