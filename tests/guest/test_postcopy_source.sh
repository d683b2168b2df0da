#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_postcopy_source.sh WORKLOAD: the cloudletfs daemon that serves an
# overlay is the postcopy source of a stock QEMU 7.2 (issue 15). The
# workload's customized VM is made an overlay of its base; the real daemon
# mounts it; QEMU (no libvirt, as tests/shell/postcopy_qemu.sh starts it:
# -incoming defer, postcopy-ram, guest RAM a /dev/shm file share=on with id
# cl-ram, the disk read through the mount) listens on a unix socket; the
# setxattr user.cloudlet.postcopy on the mount's status makes the daemon
# connect and stream. Cases:
#  1. local overlay: the guest resumes and answers on its console, status
#     says `postcopy: complete` with pages requested, answered and pushed,
#     QEMU says the migration completed, /ram/blob.bin has the save's md5;
#     requested pages are accesses in memory/streams, pushed ones are not;
#     a second start is refused with EBUSY-or-done, a bad value with EINVAL,
#     a listener that is not the process the value names with EPERM.
#  2. over HTTP (nginx, a cache of its own), the guest kept paused (-S):
#     once complete, the RAM file equals `cloudlet apply`'s memory.img byte
#     for byte; then it runs and answers.
#  3. fault: over a slow HTTP link nginx stops mid-stream: status says
#     `postcopy: failed: ...` within 30 s, QEMU goes postcopy-paused (or its
#     monitor stops answering while a thread waits on a missing page), and
#     `cloudlet umount` returns within 20 s.
# Every wait is bounded; QEMU, mounts, nginx and the RAM files are cleaned
# up on any exit. Exit 77 where it cannot run (not root, no QEMU 7.2, no
# /dev/fuse or nginx).
CL_SOURCE_DIR=${CL_SOURCE_DIR:?CL_SOURCE_DIR is not set (run through ctest)}
# shellcheck source=tests/lib/clfs.sh
source "$CL_SOURCE_DIR/tests/lib/clfs.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: not root: QEMU needs userfaultfd"; exit 77; }
QEMU=$(command -v qemu-system-x86_64) || { echo "SKIP: no qemu-system-x86_64"; exit 77; }
[ "$("$QEMU" --version | sed -n '1s/.*version \([0-9]*\.[0-9]*\).*/\1/p')" = 7.2 ] ||
	{ echo "SKIP: the postcopy stream is tested against QEMU 7.2 only"; exit 77; }
# A postcopy-paused QEMU does not end on SIGTERM (a vCPU waits on a page).
stop_dst() {
	[ -n "${QPID:-}" ] && kill -9 "$QPID" 2>/dev/null
	pc_stop_qemu
	rm -f /dev/shm/cl-pcsrc.$$.*
}
CLEANUP_HOOK=stop_dst
cl_fs_init postcopy-src
# shellcheck source=tests/lib/pcqemu.sh
source "$SRC/tests/lib/pcqemu.sh"
W=${1:-$BUILD/guest}
pc_workload_complete "$W" || fail "no complete workload in $W"
pc_use_workload "$W"
XATTR=user.cloudlet.postcopy
long() { timeout 900 "$C" -q "$@" >"$T/out" 2>"$T/err"; }
# mnt NAME OVERLAY [OPTIONS]: mounts at $T/mnt/NAME over the workload's base; sets MP, LOG.
mnt() {
	MP=$T/mnt/$1
	LOG=$T/log.$1
	mkdir -p "$MP"
	cl mount "$W/base/disk.img" "$2" "$MP" -o "log=$LOG${3:+,$3}" || fail "cloudlet mount $2"
	DAEMONS+=("$(st pid)")
}

# become_source MOUNT SOCKET: the setxattr the session makes; prints the errno name on failure.
become_source() {
	python3 - "$1/status" "$2" <<'EOF'
import errno, os, sys
try:
    os.setxattr(sys.argv[1], "user.cloudlet.postcopy", sys.argv[2].encode())
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
    sys.exit(1)
EOF
}

# dst NAME [QEMU ARGS...]: QEMU waiting for a postcopy migration on $T/NAME.sock,
# its RAM in /dev/shm ($RAMF), its disk the mount's.
dst() {
	local name=$1
	shift
	RAMF=/dev/shm/cl-pcsrc.$$.$name
	: >"$RAMF" || fail "cannot make $RAMF"
	pc_qemu "$name" "$RAMF" "$MP/disk/image" -incoming defer "$@"
	$QMP "$T/$name.qmp" run \
		'{"execute":"migrate-set-capabilities","arguments":{"capabilities":[{"capability":"postcopy-ram","state":true}]}}' \
		"{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"unix:$T/$name.sock\"}}" \
		>/dev/null 2>"$T/err" || fail "QEMU does not take the incoming postcopy migration"
}

# wait_postcopy STATE SECONDS: until status says `postcopy: STATE...`.
wait_postcopy() {
	local i
	for i in $(seq $(($2 * 10 + 1))); do
		timeout 5 grep -q "^postcopy: $1" "$MP/status" && return 0
		sleep 0.1
	done
	return 1
}

CASE=setup
[ "$(($(df --output=avail -k /dev/shm | tail -1) * 1024))" -gt $((2 * $(stat -c %s "$RAMIMG"))) ] ||
	fail "/dev/shm has not room for two guest RAMs"
long base "$W/base/disk.img" --memory "$W/base/memory.img" --state "$W/base/state" \
	--domain "$W/base/domain.xml" || fail "cloudlet base"
long overlay "$W/base/disk.img" --disk "$W/custom/disk.img" --memory "$W/custom/memory.img" \
	--state "$STATE" --domain "$W/custom/domain.xml" -o "$T/ov" || fail "cloudlet overlay"
long apply "$W/base/disk.img" "$T/ov" -o "$T/apply" || fail "cloudlet apply"
cmp -s "$T/apply/memory.img" "$RAMIMG" || fail "apply's memory.img is not the workload's"
mkdir -p "$T/www/ov" "$T/mnt"
ln "$T/ov/overlay-meta" "$T/ov/overlay-blob" "$T/www/ov/" || fail "publishing the overlay"
PACK=$(stat -c %s "$T/ov/overlay-blob")
RATE=$((PACK / 60 + 1))
cl_nginx_start "$T/nginx" "$T/www" "location /slow/ { alias $T/www/ov/; limit_rate $RATE; }" ||
	fail "nginx did not start"
U=http://127.0.0.1:$NGINX_PORT
ok "overlay of the workload: pack $PACK bytes; nginx on $NGINX_PORT"

# --- 1. local overlay, the guest runs ------------------------------------------------
CASE=1-local
mnt local "$T/ov"
[ "$(st postcopy)" = off ] || fail "status says postcopy: $(st postcopy) before any start"
r=$(become_source "$MP" "relative/path") && fail "a relative socket path was taken"
[ "$r" = EINVAL ] || fail "a relative socket path: $r, not EINVAL"
# With a pid, the listener must be that process (SO_PEERCRED): a listener
# of another process is refused, and status says which.
python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1); time.sleep(60)' "$T/other.sock" &
OTHER=$!
for _ in $(seq 50); do [ -S "$T/other.sock" ] && break; sleep 0.1; done
r=$(become_source "$MP" "$$ $T/other.sock") && fail "a listener that is not the named process was taken"
kill "$OTHER"
[ "$r" = EPERM ] || fail "a listener that is not the named process: $r, not EPERM"
st postcopy | grep -q "is process $OTHER, not QEMU ($$)" || fail "status does not say whose listener: $(st postcopy)"
ok "a listener that is not the named process: EPERM ($(st postcopy | cut -c1-100))"
dst local
ms
t0=$REPLY
r=$(become_source "$MP" "$QPID $T/local.sock") || fail "setxattr $XATTR: $r"
ms
ok "the daemon connected and streams ($((REPLY - t0)) ms for the setxattr)"
$QMP "$T/local.qmp" wait-status running 60 2>"$T/err" || fail "the guest did not resume"
out=$($GCTL console-cmd "$T/local.con" 60 'cat /ram/marker.txt' 2>"$T/err") ||
	fail "the resumed guest does not answer on its console"
[ "$out" = cloudlet-ram-marker ] || fail "/ram/marker.txt says '$out'"
ok "the guest resumed and answers on its console: /ram/marker.txt = $out"
wait_postcopy complete 120 || fail "no 'postcopy: complete' in 120 s: $(st postcopy)"
st=$($QMP "$T/local.qmp" wait-migration 30 2>"$T/err") || fail "migration status '$st'"
req=$(st postcopy_requested)
dem=$(st postcopy_demand)
push=$(st postcopy_pushed)
acc=$(stat_of memory chunks_accessed)
[ "$req" -gt 0 ] && [ "$dem" -gt 0 ] && [ "$push" -gt 0 ] ||
	fail "pages requested $req, answered $dem, pushed $push"
[ "$acc" -gt 0 ] && [ "$acc" -le $((req + 16)) ] ||
	fail "memory chunks accessed: $acc for $req pages requested (pushed pages are not accesses)"
ok "postcopy complete, migration $st: pages requested $req, answered $dem, pushed $push," \
	"zero $(st postcopy_zero); memory chunks accessed $acc; latency $(st postcopy_latency_ms)"
md5=$($GCTL console-cmd "$T/local.con" 60 'md5sum /ram/blob.bin' 2>"$T/err" | awk '{ print $1 }')
[ "$md5" = "$BLOB_MD5" ] || fail "md5 of /ram/blob.bin: '$md5', the save had $BLOB_MD5"
ok "md5 of /ram/blob.bin is the save's ($md5)"
stop_dst
umount_ov

# --- 2. over HTTP, paused: guest RAM = apply's memory.img -----------------------------
CASE=2-http-paused
mnt http "$U/ov/overlay-meta" "cache_dir=$T/cache2"
dst http -S
r=$(become_source "$MP" "$T/http.sock") || fail "setxattr $XATTR: $r"
r=$(become_source "$MP" "$T/http.sock") && fail "a second start while streaming was taken"
[ "$r" = EBUSY ] || wait_postcopy complete 0 || fail "a second start while streaming: $r, not EBUSY"
wait_postcopy complete 120 || fail "no 'postcopy: complete' in 120 s: $(st postcopy)"
st=$($QMP "$T/http.qmp" wait-migration 30 2>"$T/err") || fail "migration status '$st'"
cmp "$RAMF" "$T/apply/memory.img" >"$T/err" 2>&1 ||
	fail "guest RAM differs from cloudlet apply's memory.img"
[ "$(st bytes | cut -d/ -f1)" -gt 0 ] || fail "nothing came over HTTP: bytes $(st bytes)"
ok "paused guest's RAM equals apply's memory.img byte for byte (requested" \
	"$(st postcopy_requested), pushed $(st postcopy_pushed), zero $(st postcopy_zero))"
$QMP "$T/http.qmp" run '{"execute":"cont"}' >/dev/null 2>"$T/err" || fail "cont"
out=$($GCTL console-cmd "$T/http.con" 60 'cat /ram/marker.txt' 2>"$T/err") ||
	fail "the guest does not answer on its console after cont"
[ "$out" = cloudlet-ram-marker ] || fail "/ram/marker.txt says '$out'"
ok "after cont the guest answers: $out"
stop_dst
umount_ov

# --- 3. the server goes away mid-stream ------------------------------------------------
CASE=3-server-gone
mnt gone "$U/slow/overlay-meta" "no_cache,memory_timeout=5,fetch_timeout=3,retries=1"
dst gone
r=$(become_source "$MP" "$T/gone.sock") || fail "setxattr $XATTR: $r"
$QMP "$T/gone.qmp" wait-status running 60 2>"$T/err" || fail "the guest did not resume"
[ "$(st state)" = streaming ] || fail "the overlay came whole before the fault: $(st state)"
cl_nginx_stop
ms
t0=$REPLY
wait_postcopy failed 30 || fail "no 'postcopy: failed' within 30 s of the fault: $(st postcopy)"
ms
ok "$(st postcopy | cut -c1-160) ($((REPLY - t0)) ms after nginx stopped)"
# QEMU notices the source is gone: its migration goes postcopy-paused. Its
# monitor may stop answering instead, when the thread that waits on a missing
# page holds QEMU's global lock (seen in CI); then that thread must be found
# waiting in the kernel's userfaultfd handler (the session kills such a VM:
# test_postcopy_e2e). Silent means three queries in a row unanswered.
s=
quiet=0
for i in $(seq 50); do
	if ! a=$(timeout 3 $QMP "$T/gone.qmp" run '{"execute":"query-migrate"}' 2>/dev/null); then
		quiet=$((quiet + 1))
		[ "$quiet" -lt 3 ] && continue
		s=silent
		break
	fi
	quiet=0
	s=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.readline()).get("status",""))' <<<"$a")
	[ "$s" = postcopy-paused ] && break
	sleep 0.2
done
case $s in
postcopy-paused) ok "QEMU's migration is postcopy-paused" ;;
silent)
	grep -qx handle_userfault /proc/"$QPID"/task/*/wchan 2>/dev/null ||
		fail "QEMU's monitor does not answer and no QEMU thread waits on a missing page"
	ok "QEMU's monitor does not answer: a thread waits on a missing page ($(grep -lx handle_userfault /proc/"$QPID"/task/*/wchan | wc -l) in handle_userfault)"
	;;
*) fail "QEMU's migration is '$s', not postcopy-paused, 10 s after" ;;
esac
ms
t0=$REPLY
timeout 20 "$C" -q umount "$MP" >"$T/out" 2>"$T/err" || fail "cloudlet umount did not return in 20 s"
ms
ok "cloudlet umount returned in $((REPLY - t0)) ms"
MP=
stop_dst
echo "test_postcopy_source: ok"
