#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# A stock QEMU 7.2 resumes a saved guest from a postcopy stream written by
# tests/tools/postcopy_source (synth/engine/cl_pcstream.c) while guest RAM
# pages are served on request over the return path (issue 15):
#  - QEMU (no libvirt) is started like the saved machine, with -incoming
#    defer, guest RAM in a fresh tmpfs file (share=on), the capability
#    postcopy-ram set over QMP and migrate-incoming unix:SOCK;
#  - the source answers page requests while the device state loads, pushes
#    the rest 1 s after the guest runs (zero pages skipped, none twice), ends
#    the stream and waits for SHUT 0;
#  - the guest answers on its console, /ram/marker.txt and the md5 of
#    /ram/blob.bin are those of the save, QEMU reports the migration completed.
# The save: the guest workload's custom/ (CL_GUEST_DIR, default
# $CL_BUILD_DIR/guest, read under its lock) when it is complete; otherwise
# one made here: the guest of tests/guest/build-guest.sh (built once per
# machine into /var/cache/cloudlet-test, or CL_POSTCOPY_GUEST_DIR) booted
# without libvirt, a marker and a random blob written to its RAM, saved with
# x-ignore-shared. CL_POSTCOPY_OWN_SAVE=1 makes one even when the workload
# exists. One VM at a time; every wait bounded; QEMU killed on exit.
# Exit 77 only where it cannot run: not root (userfaultfd), no QEMU 7.2, no
# guest kernel to be had.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/lib/skip.sh
source "$HERE/../lib/skip.sh"
SRC=${CL_SOURCE_DIR:-$(cd "$HERE/../.." && pwd)}
BUILD=${CL_BUILD_DIR:?CL_BUILD_DIR not set}
TOOL=$BUILD/tests/tools/postcopy_source
# shellcheck source=tests/lib/pcqemu.sh
source "$SRC/tests/lib/pcqemu.sh"
T0=$SECONDS

fail() {
	echo "FAIL: $*"
	for f in "$T"/*.log "$T"/*.err; do
		[ -s "$f" ] && tail -15 "$f" | sed "s|^|  $(basename "$f"): |"
	done
	exit 1
}
ok() { echo "ok: $*"; }
# ms_since NS: milliseconds since date +%s%N said NS, as seconds with 3 decimals.
ms_since() { local d=$((($(date +%s%N) - $1) / 1000000)); printf '%d.%03d' $((d / 1000)) $((d % 1000)); }

[ "$(id -u)" = 0 ] || cl_skip_test "not root: QEMU needs userfaultfd (vm.unprivileged_userfaultfd=$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null))"
QEMU=$(command -v qemu-system-x86_64) || cl_skip_test "qemu-system-x86_64 is not installed"
ver=$("$QEMU" --version | sed -n '1s/.*version \([0-9]*\.[0-9]*\).*/\1/p')
[ "$ver" = 7.2 ] || cl_skip_test "QEMU $ver: the postcopy stream is tested against 7.2 only"
command -v python3 >/dev/null || cl_skip_test "python3 is not installed"
[ -x "$TOOL" ] || { echo "FAIL: $TOOL is not built"; exit 1; }

T=$(mktemp -d /tmp/cl-postcopy.XXXXXX)
# destination RAM: a tmpfs file, where userfaultfd works
RAMF=$(mktemp /dev/shm/cl-postcopy.XXXXXX) || fail "cannot make a file in /dev/shm"
QPID=
SPID=
cleanup() {
	[ -n "$SPID" ] && kill "$SPID" 2>/dev/null
	if [ -n "$QPID" ]; then
		kill "$QPID" 2>/dev/null
		wait "$QPID" 2>/dev/null
	fi
	rm -rf "$T" "$RAMF"
}
trap cleanup EXIT

# The guest of build-guest.sh: CL_POSTCOPY_GUEST_DIR as it is, or built
# once per machine and version of the script into the cache (the same for
# every build tree; read under a shared lock).
guest_kernel() {
	local key rc
	if [ -n "${CL_POSTCOPY_GUEST_DIR:-}" ]; then
		G=$CL_POSTCOPY_GUEST_DIR
		[ -f "$G/.done" ] || fail "CL_POSTCOPY_GUEST_DIR=$G holds no guest of build-guest.sh"
		return 0
	fi
	key=$(sha256sum "$SRC/tests/guest/build-guest.sh" | cut -c1-12)
	G=${CL_GUEST_CACHE:-/var/cache/cloudlet-test}/postcopy-guest-$key
	mkdir -p "$(dirname "$G")" || fail "cannot make $(dirname "$G")"
	exec 8>"$G.lock"
	flock -w 900 8 || fail "$G.lock stays locked"
	bash "$SRC/tests/guest/build-guest.sh" "$G" >"$T/build-guest.log" 2>&1
	rc=$?
	[ $rc = 77 ] && cl_skip_test "no guest kernel: $(tail -1 "$T/build-guest.log")"
	[ $rc = 0 ] || fail "build-guest.sh failed ($rc)"
	flock -s 8
}

# A save of our own: boot, write to /ram, save with x-ignore-shared.
make_save() {
	local g out
	guest_kernel
	g=$G
	KERNEL=$g/vmlinuz
	INITRD=$g/initrd.img
	CMDLINE="console=ttyS0 panic=-1 loglevel=4"
	ACCEL=tcg
	DISK=$T/disk.img
	RAMIMG=$T/memory.img
	STATE=$T/state
	cp --sparse=always "$g/disk.img" "$DISK" || fail "cannot copy the guest disk"
	truncate -s 256M "$RAMIMG"
	pc_qemu src "$RAMIMG" "$DISK"
	$GCTL console-wait "$T/src.con" 120 >"$T/src-wait.err" 2>&1 || fail "the guest did not boot"
	out=$($GCTL console-cmd "$T/src.con" 120 'echo cloudlet-ram-marker >/ram/marker.txt && head -c 16777216 /dev/urandom >/ram/blob.bin && md5sum /ram/blob.bin' 2>"$T/src-cmd.err") ||
		fail "writing to the guest's RAM failed"
	BLOB_MD5=$(echo "$out" | awk '$2 == "/ram/blob.bin" { print $1 }')
	[ -n "$BLOB_MD5" ] || fail "no md5 from the guest: $out"
	$QMP "$T/src.qmp" run '{"execute":"stop"}' \
		'{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true}]}}' \
		"{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat >$STATE\"}}" >/dev/null 2>"$T/src-qmp.err" ||
		fail "saving the guest failed"
	$QMP "$T/src.qmp" wait-migration 60 >/dev/null 2>>"$T/src-qmp.err" || fail "the save did not complete"
	pc_stop_qemu
	echo "save: made here in $((SECONDS - T0)) s (guest of $g)"
}

W=${CL_GUEST_DIR:-$BUILD/guest}
if [ -z "${CL_POSTCOPY_OWN_SAVE:-}" ] && pc_workload_complete "$W"; then
	pc_use_workload "$W"
else
	make_save
fi

# --- the destination and the source ------------------------------------------
need=$(stat -c %s "$RAMIMG")
[ "$(($(df --output=avail -k /dev/shm | tail -1) * 1024))" -gt "$need" ] ||
	fail "/dev/shm has less than the guest's $((need >> 20)) MiB free"
T1=$SECONDS
t1=$(date +%s%N)
: >"$RAMF"
pc_qemu dst "$RAMF" "$DISK" -incoming defer
$QMP "$T/dst.qmp" run \
	'{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"postcopy-ram","state":true}]}}' \
	"{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"unix:$T/mig.sock\"}}" >/dev/null \
	2>"$T/qmp.err" || fail "QEMU does not take the incoming postcopy migration"
"$TOOL" "$STATE" "$RAMIMG" "$T/mig.sock" --timeout 90 --bg-delay 1 >"$T/source.out" 2>"$T/source.err" &
SPID=$!
$QMP "$T/dst.qmp" wait-status running 60 2>>"$T/qmp.err" || fail "the guest did not resume"
t_run=$(ms_since "$t1")
ts=$(date +%s%N)
out=$($GCTL console-cmd "$T/dst.con" 30 'cat /ram/marker.txt' 2>"$T/console.err") ||
	fail "the resumed guest does not answer on its console"
t_con=$(ms_since "$ts")
[ "$out" = cloudlet-ram-marker ] || fail "/ram/marker.txt says '$out'"
ok "the guest runs and answers on its console ${t_con} s after RUNNING: /ram/marker.txt = $out"

wait "$SPID"
rc=$?
SPID=
cat "$T/source.out"
[ $rc = 0 ] || fail "the source failed ($rc): $(cat "$T/source.err")"
grep -q ' shut=0$' "$T/source.out" || fail "no SHUT 0 from the destination"
ok "the source sent every page and the destination said SHUT 0"
st=$($QMP "$T/dst.qmp" wait-migration 30 2>>"$T/qmp.err") || fail "migration status '$st'"
ok "QEMU reports the migration $st"

md5=$($GCTL console-cmd "$T/dst.con" 60 'md5sum /ram/blob.bin' 2>>"$T/console.err" | awk '{ print $1 }')
[ "$md5" = "$BLOB_MD5" ] || fail "md5 of /ram/blob.bin: '$md5', the save had $BLOB_MD5"
ok "md5 of /ram/blob.bin is the save's ($md5)"
$QMP "$T/dst.qmp" wait-status running 5 2>>"$T/qmp.err" || fail "the guest is not running at the end"
pc_stop_qemu
echo "postcopy_qemu: ok in $((SECONDS - T0)) s (resume and checks $((SECONDS - T1)) s, RUNNING after ${t_run} s)"
