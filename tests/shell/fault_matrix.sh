#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The fault matrix of cloudletfs over HTTP (issue 5): the real daemon, real
# FUSE mounts, a real nginx on 127.0.0.1 as the origin, and for the faults
# nginx cannot make a small proxy in front of it (tests/tools/faultproxy.py).
# A small generated overlay (8 MiB disk, 4 MiB memory, segments of 64 KiB).
# Each case checks: no byte served differs from `cloudlet apply`'s output,
# every read ends within its bound (measured), the daemon stays up and its
# status and stats answer within 1 s, and the cause shows in `status`.
#  1. server unreachable at mount time: `cloudlet mount` fails in bounded
#     time with one line naming the connection failure; nothing mounted.
#  2. server stopped mid-stream, started again: waiting reads resume (also
#     with no_stream: a failed demand fetch is fetched again); nothing lost.
#  3. server stopped for good: disk reads fail with EIO after timeout=,
#     memory reads after memory_timeout=; umount still works.
#  4. 500 and 503 answers (more than the retries), then success.
#  5. truncated bodies (Content-Length as promised, half the body, closed).
#  6. one flipped byte in a segment: its reads fail with EIO after two bad
#     fetches (also without the stream), state failed with SHA-256; every
#     other byte is right. Segment 0 bad: `cloudlet mount` fails.
#  7. the pack replaced under the same URL (same size, one byte changed, new
#     mtime: nginx's ETag changes): reads of data not yet fetched fail with
#     EIO in bounded time, the cause names the change (the pinned ETag, not
#     a SHA-256 mismatch); data fetched before still reads right.
#  8. a server that ignores Range: status says so; the stream serves all.
#  9. a stalled connection (headers and some bytes, then silence, socket
#     open): the transfer is abandoned and retried; forever stalled: EIO.
# 10. the cache directory full (a 1 MiB tmpfs) and read-only (a read-only
#     bind mount; root ignores permission bits): reads still served right.
# 11. the daemon SIGKILLed while a reader waits: the reader gets an error at
#     once, `fusermount3 -uz` clears the dead mount, a new mount over the
#     same cache works and serves the right bytes (cache not poisoned); the
#     dead daemon's private store is removed by the next daemon's sweep.
# 12. a base that does not match: an overlay of another base, and the base
#     disk changed after registration: `cloudlet mount` fails with one line.
# 13. a disk and a memory chunk of one segment, the server stalled: the disk
#     read fails at its short timeout=, and a memory read of the same segment
#     right after still waits (memory_timeout=) and is served once the server
#     answers again; the disk's fail-fast never shortens the memory's bound.
# Exit 77 only if /dev/fuse or nginx is missing.
CL_SOURCE_DIR=${CL_SOURCE_DIR:?CL_SOURCE_DIR is not set (run through ctest)}
# shellcheck source=tests/lib/clfs.sh
source "$CL_SOURCE_DIR/tests/lib/clfs.sh"
CLEANUP_HOOK=stop_proxy
cl_fs_init fault-matrix
PROXY_PID=
stop_proxy() { [ -z "$PROXY_PID" ] || kill "$PROXY_PID" 2>/dev/null; PROXY_PID=; }
t_start=$SECONDS

# --- setup -------------------------------------------------------------------------
mkdir -p "$T/ov" "$T/mnt" "$T/www"
py gen "$T" 8 4 || fail "image generation"
cl base "$T/base.disk" --memory "$T/base.mem" || fail "cloudlet base"
cl overlay "$T/base.disk" --disk "$T/new.disk" --memory "$T/new.mem" --state "$T/state" \
	--domain "$T/domain.xml" -o "$T/ov" --segment-size 64K || fail "cloudlet overlay"
cl apply "$T/base.disk" "$T/ov" -o "$T/apply" || fail "cloudlet apply"
cmp -s "$T/apply/disk.img" "$T/new.disk" && cmp -s "$T/apply/memory.img" "$T/new.mem" ||
	fail "apply output differs from the customized images"
cl base "$T/other.disk" --memory "$T/other.mem" || fail "cloudlet base (other)"
cl overlay "$T/other.disk" --disk "$T/other.new.disk" --memory "$T/other.mem" -o "$T/www/other" ||
	fail "cloudlet overlay (other)"
META=$T/ov/overlay-meta
NSEG=$(py pick "$META" nseg) || fail "reading the meta"
PACK=$(stat -c %s "$T/ov/overlay-blob")
publish fast slow norange
mkdir -p "$T/www/c7"
cp "$T/ov/overlay-meta" "$T/ov/overlay-blob" "$T/www/c7/" || fail "cp"
BADSEG=$(py corrupt "$T/ov" "$T/www/bad") || fail "corrupt copy"
py corrupt "$T/ov" "$T/www/bad0" first >/dev/null || fail "corrupt copy"
# The stream uses 3 connections (a 4th is kept for demand fetches): ~5 s
# for the pack at RATE. Without ranges it is one connection: ~2 s.
RATE=$((PACK / 15))
cl_nginx_start "$T/nginx" "$T/www" "
		location /slow/ { limit_rate $RATE; }
		location /norange/ { max_ranges 0; limit_rate $((PACK / 2)); }" ||
	fail "nginx did not start"
U=http://127.0.0.1:$NGINX_PORT
python3 "$SRC/tests/tools/faultproxy.py" "$NGINX_PORT" "$T/proxy.port" "$T/proxy.log" \
	2>"$T/proxy.err" &
PROXY_PID=$!
for i in $(seq 100); do [ -s "$T/proxy.port" ] && break; sleep 0.05; done
[ -s "$T/proxy.port" ] || fail "the fault proxy did not start: $(cat "$T/proxy.err")"
P=http://127.0.0.1:$(cat "$T/proxy.port")
mapfile -t END_D < <(py pick "$META" last disk 3)
mapfile -t END_M < <(py pick "$META" last memory 3)
[ ${#END_D[@]} = 3 ] && [ ${#END_M[@]} = 3 ] || fail "pick: ${END_D[*]} / ${END_M[*]}"
# faults hit pack requests from here on: not the first segments (state and
# domain XML), which a mount fetches
OFF=$(py pick "$META" offof "${END_M[2]}") || fail "pick"
ok "8 MiB disk, 4 MiB memory; pack $PACK bytes in $NSEG segments; nginx on port" \
	"$NGINX_PORT, slow link $RATE B/s per connection; fault proxy $P"

# watch_start NAME / watch_stop: record the status causes seen meanwhile.
WATCH_PID=
watch_start() {
	rm -f "$T/watch.$1"
	timeout 70 python3 "$PYLIB" watch "$MP" "$T/watch.$1" 60 &
	WATCH_PID=$!
	WATCH=$T/watch.$1
}
watch_stop() { kill "$WATCH_PID" 2>/dev/null; wait "$WATCH_PID" 2>/dev/null; WATCH_PID=; }
# seen REGEX: a cause matching REGEX showed in status; prints it. (In $(),
# fail ends only the subshell: callers add `|| exit 1`.)
seen() {
	grep -m1 -E "$1" "$WATCH" || fail "status never showed /$1/; it showed: $(cut -c1-200 "$WATCH")"
}
# faulted FAULT MIN: the proxy injected FAULT at least MIN times.
faulted() {
	local n
	n=$(awk -v f="$1" '$5 == f' "$T/proxy.log" | wc -l)
	[ "$n" -ge "$2" ] || fail "the proxy injected $1 $n times, expected >= $2"
	echo "$n"
}

# --- 1. server unreachable at mount time ---------------------------------------------------
CASE=1-unreachable
DEAD=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MP=$T/mnt/c1
mkdir -p "$MP"
ms
t0=$REPLY
cl mount "$T/base.disk" "http://127.0.0.1:$DEAD/x/overlay-meta" "$MP" -o fetch_timeout=2,retries=1
rc=$?
ms
[ $rc = 1 ] || fail "cloudlet mount exited $rc"
[ $((REPLY - t0)) -lt 10000 ] || fail "took $((REPLY - t0)) ms"
[ "$(wc -l <"$T/err")" = 1 ] && grep -qi "connect" "$T/err" || fail "not one line naming the connection"
mounted "$MP" && fail "mounted"
ok "exit 1 after $((REPLY - t0)) ms: $(cat "$T/err")"
MP=

# --- 2. server stopped mid-stream, started again ---------------------------------------------
CASE=2-restart
mount_ov c2 "$U/slow/overlay-meta" no_cache
pid=$(st pid)
sleep 1
[ "$(st state)" = streaming ] || fail "not streaming after 1 s: $(st segments)"
cl_nginx_stop
before=$(st segments)
watch_start 2
py readchk "$MP" "$T/apply" ok 1.5 30 "${END_D[@]}" >"$T/r2" 2>&1 &
rpid=$!
sleep 2.5
kill -0 "$rpid" 2>/dev/null || fail "reads did not wait while nginx was down: $(cat "$T/r2")"
w=$(st waiting)
[ "$w" -ge 1 ] || fail "status says $w reads waiting while nginx is down"
alive_and_answering "$pid"
cl_nginx_restart || fail "nginx did not start again on port $NGINX_PORT"
wait "$rpid" || fail "waiting reads after the restart: $(cat "$T/r2")"
wait_state complete 30 || fail "not complete within 30 s of the restart"
watch_stop
cause=$(seen "cannot connect|connection") || exit 1
cmp_all
alive_and_answering "$pid"
ok "stopped at segments $before, $w reads waited, resumed: $(cat "$T/r2"); complete; cmp ok;" \
	"cause shown: $cause"
umount_ov

CASE=2b-restart-no-stream
# Without the stream only the demand fetches a segment again after a failed
# fetch: the read must complete once the server is back.
mount_ov c2b "$U/fast/overlay-meta" no_cache,no_stream,retries=1,timeout=15
pid=$(st pid)
cl_nginx_stop
py readchk "$MP" "$T/apply" ok 1.5 12 "${END_D[2]}" >"$T/r2b" 2>&1 &
rpid=$!
sleep 2
alive_and_answering "$pid"
cause=$(st reason)
grep -qiE "cannot connect|connection" <<<"$cause" || fail "status reason '$cause'"
cl_nginx_restart || fail "nginx did not start again"
wait "$rpid" || fail "the waiting read after the restart: $(cat "$T/r2b")"
cmp_all
ok "$(cat "$T/r2b"); cause while down: $cause; cmp ok"
umount_ov

# --- 3. server stopped for good ---------------------------------------------------------------
CASE=3-gone
# no_stream: memory (early in the pack) is not fetched before nginx stops.
mount_ov c3 "$U/fast/overlay-meta" no_cache,no_stream,timeout=3,memory_timeout=5
pid=$(st pid)
cl_nginx_stop
py readchk "$MP" "$T/apply" EIO 2.5 6 "${END_D[2]}" >"$T/r3d" 2>&1 &
p1=$!
py readchk "$MP" "$T/apply" EIO 4.5 8 "${END_M[2]}" >"$T/r3m" 2>&1 &
p2=$!
sleep 1
alive_and_answering "$pid"
wait "$p1" || fail "disk read (timeout=3): $(cat "$T/r3d")"
wait "$p2" || fail "memory read (memory_timeout=5): $(cat "$T/r3m")"
reason=$(st reason)
grep -q "overlay-blob" <<<"$reason" && grep -qiE "connect" <<<"$reason" ||
	fail "status does not name the pack's failure: '$reason'"
[ "$(st io_errors)" -ge 2 ] || fail "status io_errors $(st io_errors)"
alive_and_answering "$pid"
umount_ov
for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "daemon $pid still runs 5 s after cloudlet umount"
ok "disk $(cat "$T/r3d"); memory $(cat "$T/r3m"); reason: $reason; umount works"
cl_nginx_restart || fail "nginx did not start again"

# fault_then_ok CASE FAULT COUNT REGEX OPTIONS: the first COUNT pack
# requests through the proxy get FAULT (more than retries=1 absorbs, so
# fetches fail and are fetched again); reads of both ends then succeed in
# bounded time, the cause matching REGEX shows in status meanwhile, and
# every byte (fetched on demand through the proxy) equals apply's.
fault_then_ok() {
	local name=$1 fault=$2 count=$3 re=$4 opts=$5 n cause
	CASE=$name
	mount_ov "$name" "$P/$fault/$count/$OFF/fast/overlay-meta" "no_cache,no_stream,retries=1,$opts"
	pid=$(st pid)
	watch_start "$name"
	r=$(py readchk "$MP" "$T/apply" ok 0 20 "${END_D[2]}" "${END_M[2]}" 2>&1) || fail "$r"
	alive_and_answering "$pid"
	watch_stop
	n=$(faulted "$fault" "$count") || exit 1
	cause=$(seen "$re") || exit 1
	[ "$(st io_errors)" = 0 ] || fail "io_errors $(st io_errors)"
	cmp_all
	alive_and_answering "$pid"
	ok "$n requests got $fault; $r; cause shown: $cause; cmp ok"
	umount_ov
}

# --- 4. 500 and 503, then success -------------------------------------------------------------
fault_then_ok 4-5xx s5xx 6 "HTTP 50[03]" timeout=20

# --- 5. truncated bodies -----------------------------------------------------------------------
fault_then_ok 5-truncated trunc 6 "short body|connection|transfer closed|partial" timeout=20

# --- 9. stalled connections (here: next to 4 and 5) ----------------------------------------------
# fetch_timeout=3: a transfer below 1 KiB/s for 1 s is abandoned.
fault_then_ok 9-stalled stall 4 "stall|too slow" timeout=20,fetch_timeout=3

CASE=9b-stalled-for-good
# timeout=6: a fetch (2 attempts of ~1.5 s) has failed before the bound.
mount_ov 9b "$P/stall/all/$OFF/fast/overlay-meta" no_cache,no_stream,retries=1,fetch_timeout=3,timeout=6
pid=$(st pid)
r=$(py readchk "$MP" "$T/apply" EIO 5.5 9 "${END_D[2]}" 2>&1) || fail "$r"
alive_and_answering "$pid"
reason=$(st reason)
grep -qiE "stall|too slow" <<<"$reason" || fail "reason '$reason'"
ok "$r; reason: $reason"
umount_ov

# --- 13. a disk timeout next to a memory read of the same segment -------------------------------
CASE=13-disk-timeout-memory-waits
mapfile -t SH < <(py pick "$META" shared)
[ ${#SH[@]} = 3 ] || fail "no segment with both disk and memory chunks: ${SH[*]}"
# 5 stalled requests (a fetch is 2 attempts of ~1.5 s): the disk read's 4 s
# pass with the server silent, the memory read's fetch gets through after.
mount_ov c13 "$P/stall/5/${SH[2]}/fast/overlay-meta" \
	no_cache,no_stream,retries=1,fetch_timeout=3,timeout=4,memory_timeout=60
pid=$(st pid)
rd=$(py readchk "$MP" "$T/apply" EIO 3.5 8 "${SH[0]}" 2>&1) || fail "disk read: $rd"
rm=$(py readchk "$MP" "$T/apply" ok 0.5 40 "${SH[1]}" 2>&1) || fail "memory read of the same segment right after: $rm"
alive_and_answering "$pid"
n=$(faulted stall 5) || exit 1
cmp_all
ok "segment at $((SH[2])): disk ${SH[0]} $rd; memory ${SH[1]} then $rm; $n stalled requests; cmp ok"
umount_ov

# --- 6. a flipped byte in a segment -------------------------------------------------------------
CASE=6-corrupt
mapfile -t BAD < <(py pick "$META" seg "$BADSEG")
[ "${#BAD[@]}" -ge 4 ] || fail "segment $BADSEG has ${#BAD[@]} chunks"
mount_ov c6 "$U/bad/overlay-meta" no_cache
pid=$(st pid)
r=$(py readchk "$MP" "$T/apply" EIO 0 20 "${BAD[@]}" 2>&1) || fail "reads in segment $BADSEG: $r"
wait_state failed 20 || fail "state not failed"
reason=$(st reason)
grep -q "SHA-256" <<<"$reason" || fail "reason does not mention SHA-256: $reason"
n=$(($(stat_of disk io_errors) + $(stat_of memory io_errors)))
[ "$n" -ge "${#BAD[@]}" ] || fail "io_errors $n after ${#BAD[@]} failed reads"
g=$(py goodrest "$MP" "$T/apply" "$META" "$BADSEG" 2>&1) || fail "reads outside segment $BADSEG: $g"
cmp_all state:state domain.xml:domain.xml
alive_and_answering "$pid"
ok "segment $BADSEG: ${#BAD[@]} chunks, $r; io_errors $n; state failed: $reason; all else: $g"
umount_ov

CASE=6b-corrupt-no-stream
mount_ov c6b "$U/bad/overlay-meta" no_cache,no_stream,timeout=15
r=$(py readchk "$MP" "$T/apply" EIO 0 10 "${BAD[@]:0:4}" 2>&1) || fail "$r"
[ "$(st state)" = failed ] || fail "state $(st state): $(st reason)"
alive_and_answering "$(st pid)"
ok "$r (well before timeout=15); state failed: $(st reason)"
umount_ov

CASE=6c-corrupt-segment-0
MP=$T/mnt/c6c
mkdir -p "$MP"
cl mount "$T/base.disk" "$U/bad0/overlay-meta" "$MP" -o no_cache
rc=$?
[ $rc = 1 ] || fail "cloudlet mount exited $rc"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q "SHA-256" "$T/err" || fail "not one line naming SHA-256"
mounted "$MP" && fail "mounted with a corrupt segment 0"
ok "state and domain XML corrupt: cloudlet mount exits 1: $(cat "$T/err")"
MP=

# --- 7. the pack replaced under the same URL ---------------------------------------------------
CASE=7-replaced
S7=$(py pick "$META" segof "${END_D[2]}") || fail "pick"
S0=$(py pick "$META" segof "${END_D[0]}") || fail "pick"
[ "$S7" != "$S0" ] || S0=$(py pick "$META" segof "${END_M[0]}")
py corrupt "$T/ov" "$T/new7" "$S7" >/dev/null || fail "corrupt copy"
touch -d '2001-02-03 04:05:06' "$T/new7/overlay-blob"
mount_ov c7 "$U/c7/overlay-meta" no_cache,no_stream,timeout=4
pid=$(st pid)
r0=$(py readchk "$MP" "$T/apply" ok 0 3 "${END_D[0]}" 2>&1) || fail "before the change: $r0"
etag0=$(curl -sI "$U/c7/overlay-blob" | tr -d '\r' | sed -n 's/^ETag: //Ip')
mv "$T/new7/overlay-blob" "$T/www/c7/overlay-blob" || fail "mv"
etag1=$(curl -sI "$U/c7/overlay-blob" | tr -d '\r' | sed -n 's/^ETag: //Ip')
[ "$etag0" != "$etag1" ] && [ "$(stat -c %s "$T/www/c7/overlay-blob")" = "$PACK" ] ||
	fail "ETag $etag0 -> $etag1, size $(stat -c %s "$T/www/c7/overlay-blob")"
# A changed pack is final: the read fails at once, not at its timeout (4 s).
r=$(py readchk "$MP" "$T/apply" EIO 0 2 "${END_D[2]}" 2>&1) || fail "after the change: $r"
alive_and_answering "$pid"
[ "$(st state)" = failed ] || fail "state $(st state) after the pack changed"
reason=$(st reason)
grep -qiE "changed|ETag|stale" <<<"$reason" || fail "reason does not name the change: '$reason'"
grep -q "SHA-256" <<<"$reason" && fail "the changed pack reached the SHA-256 check: $reason"
r1=$(py readchk "$MP" "$T/apply" ok 0 1 "${END_D[0]}" 2>&1) || fail "data fetched before: $r1"
ok "same size, ETag $etag0 -> $etag1: $r; reason: $reason; fetched before: $r1"
umount_ov

# --- 8. a server that ignores Range ------------------------------------------------------------
CASE=8-no-ranges
mount_ov c8 "$U/norange/overlay-meta" no_cache
pid=$(st pid)
[ "$(st ranges)" = off ] && [ "$(st demand_fetch)" = off ] ||
	fail "status: ranges $(st ranges), demand_fetch $(st demand_fetch)"
r=$(py readchk "$MP" "$T/apply" ok 0 20 "${END_D[2]}" 2>&1) || fail "read near the end: $r"
for im in disk memory; do
	[ "$(stat_of $im demand_fetches)" = 0 ] || fail "$im: demand_fetches $(stat_of $im demand_fetches)"
done
wait_state complete 30 || fail "not complete within 30 s"
cmp_all
alive_and_answering "$pid"
ok "status: ranges off, demand_fetch off; a read near the end waited for the stream: $r; cmp ok"
umount_ov

# --- 10. cache directory full, and read-only ------------------------------------------------------
CASE=10-cache-full
mkdir -p "$T/small"
if mount -t tmpfs -o size=1m tmpfs "$T/small" 2>"$T/err"; then
	mount_ov c10 "$U/fast/overlay-meta" "cache_dir=$T/small"
	pid=$(st pid)
	wait_state complete 30 || fail "not complete within 30 s"
	reason=$(st reason)
	grep -q "cannot write the cache" <<<"$reason" || fail "reason '$reason'"
	[ "$(st io_errors)" = 0 ] || fail "io_errors $(st io_errors)"
	cmp_all
	alive_and_answering "$pid"
	ok "1 MiB tmpfs, $(df -k --output=used "$T/small" | tail -1) KiB used; reason: $reason; cmp ok"
	umount_ov
else
	echo "skip [$CASE]: cannot mount a tmpfs here: $(cat "$T/err")"
fi

CASE=10b-cache-read-only
mkdir -p "$T/rosrc" "$T/ro"
if mount --bind "$T/rosrc" "$T/ro" 2>"$T/err" && mount -o remount,bind,ro "$T/ro" 2>"$T/err"; then
	touch "$T/ro/probe" 2>/dev/null && fail "the read-only bind mount is writable"
	mount_ov c10b "$U/fast/overlay-meta" "cache_dir=$T/ro"
	pid=$(st pid)
	wait_state complete 30 || fail "not complete within 30 s"
	reason=$(st reason)
	[ "$(st io_errors)" = 0 ] || fail "io_errors $(st io_errors)"
	cmp_all
	alive_and_answering "$pid"
	[ -z "$(ls -A "$T/rosrc")" ] || fail "something was written under the read-only cache dir"
	grep -q "cache $T/ro/[0-9a-f]\{64\} unusable (.*Read-only" <<<"$reason" ||
		fail "status does not say why the cache is private (reason: $reason)"
	ok "served from a private cache; reason: $reason; cmp ok"
	umount_ov
else
	echo "skip [$CASE]: cannot make a read-only bind mount here: $(cat "$T/err")"
fi

# --- 11. the daemon SIGKILLed while a reader waits ------------------------------------------------
CASE=11-sigkill
# TMPDIR: the killed daemon's private store stays behind until the next
# daemon that makes one in the same place removes it (its lock is free).
mkdir -p "$T/tmp11"
TMPDIR=$T/tmp11 mount_ov c11 "$U/slow/overlay-meta" "cache_dir=$T/cache11"
pid=$(st pid)
dead=$(echo "$T"/tmp11/cloudlet-store-*)
[ -f "$dead/lock" ] || fail "no private store with a lock file: $dead"
sleep 1 # part of the pack is in the cache by now
cl_nginx_stop
timeout 30 python3 "$PYLIB" blocked "$MP" "${END_D[2]}" "$T/r11" &
rpid=$!
for i in $(seq 50); do [ "$(st waiting)" -ge 1 ] && break; sleep 0.1; done
[ "$(st waiting)" -ge 1 ] || fail "the read is not waiting"
present=$(st segments)
ms
t0=$REPLY
kill -KILL "$pid"
wait "$rpid"
read -r res tend <"$T/r11" || fail "the reader left no outcome"
case $res in ENOTCONN | EIO | ECONNABORTED) ;; *) fail "the waiting read got $res" ;; esac
[ $((tend - t0)) -lt 3000 ] || fail "the waiting read ended $((tend - t0)) ms after SIGKILL"
mounted "$MP" || fail "the dead mount vanished by itself"
timeout 10 fusermount3 -uz "$MP" || fail "fusermount3 -uz"
mounted "$MP" && fail "still mounted after fusermount3 -uz"
cl_nginx_restart || fail "nginx did not start again"
M11=$MP
[ -d "$dead" ] || fail "the killed daemon's store went before another daemon started"
TMPDIR=$T/tmp11 mount_ov c11 "$U/slow/overlay-meta" "cache_dir=$T/cache11"
[ "$MP" = "$M11" ] || fail "not the same mount point"
pid=$(st pid)
[ -e "$dead" ] && fail "the killed daemon's private store is still there after a new mount"
live=$(echo "$T"/tmp11/cloudlet-store-*)
[ -d "$live" ] && ! flock -n "$live/lock" true || fail "the new daemon's store is not locked: $live"
wait_state complete 30 || fail "not complete within 30 s"
hits=$(st cache_hits)
cmp_all
alive_and_answering "$pid"
ok "at segments $present: the reader got $res $((tend - t0)) ms after SIGKILL; fusermount3 -uz" \
	"cleared it; mounted again over the same cache: cache_hits $hits, bytes $(st bytes); cmp ok;" \
	"the dead daemon's private store removed by the new one"
umount_ov
[ -z "$(ls -A "$T/tmp11")" ] || fail "left in TMPDIR after umount: $(ls -A "$T/tmp11")"

# --- 12. a base that does not match --------------------------------------------------------------
CASE=12-other-base
MP=$T/mnt/c12
mkdir -p "$MP"
cl mount "$T/base.disk" "$U/other/overlay-meta" "$MP" -o no_cache
rc=$?
[ $rc = 1 ] || fail "exit $rc"
[ "$(wc -l <"$T/err")" = 1 ] && grep -qi "base" "$T/err" || fail "not one line naming the base"
mounted "$MP" && fail "mounted"
ok "exit $rc: $(cat "$T/err")"

CASE=12b-base-changed
# Last case: this breaks the base for good.
printf 'X' | dd of="$T/base.disk" bs=1 seek=12345 conv=notrunc status=none
touch -d '2001-02-03' "$T/base.disk"
cl mount "$T/base.disk" "$U/fast/overlay-meta" "$MP" -o no_cache
rc=$?
[ $rc = 1 ] || fail "mounted over a changed base (exit $rc)"
grep -qiE "changed|register" "$T/err" || fail "the error does not say the base changed"
mounted "$MP" && fail "mounted"
ok "exit $rc: $(head -1 "$T/err")"
MP=

echo "fault matrix: $((SECONDS - t_start)) s"
echo "PASS"
