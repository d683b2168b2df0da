#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# cloudletfs over HTTP: a real nginx on 127.0.0.1, the real daemon, real FUSE
# mounts, generated images (64 MiB disk, 32 MiB memory, ~8 MiB pack in ~33
# segments of 256 KiB, every recipe). Expected bytes are `cloudlet apply`'s.
#  1. slow link (limit_rate, the stream takes ~6 s): chunks near the end of
#     both images, read right after the mount, arrive by demand fetch, well
#     ahead of the stream; then the stream completes and both images, state
#     and domain.xml equal apply's.
#  2. 64 concurrent readers (fs_stress: pread, then MAP_PRIVATE page faults,
#     then 4 processes of 16 threads, half of each kind) at random offsets
#     of both images during the slow stream: no error, no wrong byte; status,
#     stats and an O_DIRECT read of a chunk that needs no fetch answer within
#     1 s while the readers wait; then cmp of everything with apply's.
#  8. a waiting read is woken (b) by a demand fetch (no_stream), (c) by
#     `cloudlet umount` (EIO at once, the mount gone); (a) by the stream's
#     arrival and (d) by its timeout: fault_matrix.sh cases 8 and 3.
#  9. persistent cache: mounting case 1's overlay again with the same
#     cache_dir fetches nothing (status bytes 0; nginx's log: no request for
#     pack data, only probes of at most 1 byte) and serves the same bytes.
# Faults (server down, gone, without Range, corrupt pack, another base, ...)
# are tests/shell/fault_matrix.sh's.
# Every wait is bounded; mounts, daemons, nginx and files are cleaned up on
# any exit. Exit 77 only if /dev/fuse or nginx is missing.
CL_SOURCE_DIR=${CL_SOURCE_DIR:?CL_SOURCE_DIR is not set (run through ctest)}
# shellcheck source=tests/lib/clfs.sh
source "$CL_SOURCE_DIR/tests/lib/clfs.sh"
cl_fs_init fs-http
STRESS=$BUILD/tests/tools/fs_stress
[ -x "$STRESS" ] || { echo "FAIL: $STRESS is not built"; exit 1; }

# --- setup -------------------------------------------------------------------------
mkdir -p "$T/ov" "$T/mnt" "$T/www"
py gen "$T" || fail "image generation"
cl base "$T/base.disk" --memory "$T/base.mem" || fail "cloudlet base"
cl overlay "$T/base.disk" --disk "$T/new.disk" --memory "$T/new.mem" --state "$T/state" \
	--domain "$T/domain.xml" -o "$T/ov" --segment-size 256K || fail "cloudlet overlay"
cl apply "$T/base.disk" "$T/ov" -o "$T/apply" || fail "cloudlet apply"
cmp -s "$T/apply/disk.img" "$T/new.disk" && cmp -s "$T/apply/memory.img" "$T/new.mem" ||
	fail "apply output differs from the customized images"
META=$T/ov/overlay-meta
NSEG=$(py pick "$META" nseg) || fail "reading the meta"
PACK=$(stat -c %s "$T/ov/overlay-blob")
publish fast slow slow2
# The stream runs on 3 connections (the 4th is kept for demand fetches):
# ~6 s for the pack.
RATE=$((PACK / 18))
cl_nginx_start "$T/nginx" "$T/www" "
		access_log $T/nginx/ranges.log cl_ranges;
		location /slow/ { limit_rate $RATE; }
		location /slow2/ { limit_rate $RATE; }" || fail "nginx did not start"
U=http://127.0.0.1:$NGINX_PORT
mapfile -t END_D < <(py pick "$META" last disk 3)
mapfile -t END_M < <(py pick "$META" last memory 3)
UNCH=$(py pick "$META" unchanged disk) || fail "pick"
ok "64 MiB disk, 32 MiB memory; pack $PACK bytes in $NSEG segments; nginx on port $NGINX_PORT, slow link $RATE B/s per connection"

# --- 1. slow link: demand fetch ahead of the stream ---------------------------------------
CASE=1-slow-link
ms
t0=$REPLY
mount_ov c1 "$U/slow/overlay-meta" "cache_dir=$T/cache1"
ms
tmount=$((REPLY - t0))
r=$(py endreads "$MP" "$T/apply" "$META" 3 4 2>&1) || fail "reads near the end: $r"
read -r tread segs pres ahead <<<"$r"
for im in disk memory; do
	[ "$(stat_of $im demand_fetches)" -gt 0 ] || fail "$im/stats/demand_fetches is 0"
done
wait_state complete 60 || fail "not complete within 60 s"
ms
tdone=$(printf %d.%03d $(((REPLY - t0) / 1000)) $(((REPLY - t0) % 1000)))
# the last segment came by demand at least 3 times sooner than the stream
# brought the rest
python3 -c "import sys; sys.exit(not $tread * 3 < $tdone)" ||
	fail "reads near the end took $tread s, the whole stream $tdone s"
[ "$(st state)" = complete ] && [ "$(st segments)" = "$NSEG/$NSEG" ] || fail "status: $(st segments)"
cmp_all
ok "mounted in $tmount ms; 6 chunks near both ends (segments $segs) read in $tread s with $pres" \
	"present ($ahead ahead of the stream); demand_fetches disk $(stat_of disk demand_fetches)," \
	"memory $(stat_of memory demand_fetches); complete after $tdone s; images, state, domain.xml = apply"
umount_ov

# --- 2. 64 concurrent readers while the stream runs -------------------------------------------
# monitor PID: while PID runs, times reads of status, of stats files and an
# O_DIRECT read of a chunk that needs no fetch; sets MON_ST, MON_STATS,
# MON_DIO (slowest of each, ms), MON_WAIT (most requests seen waiting) and
# MON_N (rounds).
monitor() {
	local pid=$1 f t end w d
	MON_ST=0 MON_STATS=0 MON_DIO=0 MON_WAIT=0 MON_N=0
	ms
	end=$((REPLY + 60000))
	while kill -0 "$pid" 2>/dev/null; do
		ms
		t=$REPLY
		timeout 5 cat "$MP/status" >"$T/mon" || fail "cat status while readers wait"
		ms
		d=$((REPLY - t))
		((d > MON_ST)) && MON_ST=$d
		w=$(sed -n 's/^waiting: //p' "$T/mon")
		((w > MON_WAIT)) && MON_WAIT=$w
		for f in disk/stats/demand_fetches memory/stats/waiting memory/stats/chunks_present; do
			ms
			t=$REPLY
			timeout 5 cat "$MP/$f" >/dev/null || fail "cat $f while readers wait"
			ms
			d=$((REPLY - t))
			((d > MON_STATS)) && MON_STATS=$d
		done
		ms
		t=$REPLY
		timeout 5 dd if="$MP/disk/image" of=/dev/null bs=4096 skip="$UNCH" count=1 iflag=direct \
			status=none || fail "O_DIRECT read of unchanged disk chunk $UNCH"
		ms
		d=$((REPLY - t))
		((d > MON_DIO)) && MON_DIO=$d
		MON_N=$((MON_N + 1))
		[ "$REPLY" -lt "$end" ] || fail "fs_stress still running after 60 s"
		sleep 0.2
	done
}
CASE=2-concurrency
for mode in pread mmap procs; do
	mount_ov "c2$mode" "$U/slow/overlay-meta" no_cache
	case $mode in
	pread) flag=(-t 64) ;;
	mmap) flag=(-t 64 -m) ;;
	procs) flag=(-t 16 -p 4 -x) ;; # 4 processes, half the threads mmap
	esac
	timeout 90 "$STRESS" "${flag[@]}" -s 5 "$MP/disk/image" "$T/apply/disk.img" \
		"$MP/memory/image" "$T/apply/memory.img" >"$T/stress" 2>"$T/err" &
	spid=$!
	monitor "$spid"
	wait "$spid" || fail "fs_stress ($mode): $(cat "$T/stress")"
	segs=$(st segments)
	[ "$MON_ST" -lt 1000 ] && [ "$MON_STATS" -lt 1000 ] && [ "$MON_DIO" -lt 1000 ] ||
		fail "while readers waited: status took $MON_ST ms, stats $MON_STATS ms, a present chunk $MON_DIO ms"
	[ "$MON_WAIT" -ge 32 ] || fail "at most $MON_WAIT requests seen waiting: the readers never waited"
	wait_state complete 60 || fail "not complete within 60 s"
	cmp_all
	ok "$mode: $(sed 's/^fs_stress: //' "$T/stress"); up to $MON_WAIT requests waiting;" \
		"slowest of $MON_N rounds: status $MON_ST ms, stats $MON_STATS ms, a present chunk" \
		"(O_DIRECT) $MON_DIO ms; segments $segs when the readers stopped; cmp ok"
	umount_ov
done

# --- 8. waiting reads woken (b) by demand fetch, (c) by cloudlet umount ------------------------------
CASE=8b-woken-by-demand-fetch
mount_ov c8b "$U/slow2/overlay-meta" no_cache,no_stream
p0=$(st segments)
r=$(py readchk "$MP" "$T/apply" ok 0 10 "${END_D[2]}" "${END_M[2]}" 2>&1) || fail "$r"
for im in disk memory; do
	[ "$(stat_of $im demand_fetches)" -ge 1 ] || fail "$im: demand_fetches $(stat_of $im demand_fetches)"
done
sleep 1
p1=$(st segments)
[ "${p1%/*}" -le $((${p0%/*} + 2)) ] && [ "$(st state)" = streaming ] ||
	fail "segments $p0 -> $p1 without a stream"
ok "no_stream: $r; segments $p0 -> $p1 (only what the reads needed)"
umount_ov

CASE=8c-woken-by-umount
mount_ov c8c "$U/fast/overlay-meta" no_cache,no_stream,timeout=120,memory_timeout=120
cl_nginx_stop
timeout 60 python3 "$PYLIB" blocked "$MP" "${END_D[2]}" "$T/r8c" &
rpid=$!
for i in $(seq 50); do [ "$(st waiting)" -ge 1 ] && break; sleep 0.1; done
[ "$(st waiting)" -ge 1 ] || fail "the read is not waiting"
sleep 0.5
kill -0 "$rpid" 2>/dev/null || fail "the read ended before the umount: $(cat "$T/r8c")"
ms
t0=$REPLY
M=$MP
umount_ov
ms
tu=$((REPLY - t0))
wait "$rpid"
read -r res tend <"$T/r8c" || fail "the reader left no outcome"
[ "$res" = EIO ] || fail "the waiting read got $res, not EIO"
[ $((tend - t0)) -lt 3000 ] || fail "the waiting read ended $((tend - t0)) ms after the umount began"
mounted "$M" && fail "still mounted"
ok "the blocked read got $res $((tend - t0)) ms after cloudlet umount began; umount took $tu ms; mount gone"
cl_nginx_restart || fail "nginx did not start again"

# --- 9. persistent cache: the same overlay again ----------------------------------------------------
CASE=9-cache
before=$(wc -l <"$T/nginx/ranges.log")
mount_ov c9 "$U/slow/overlay-meta" "cache_dir=$T/cache1"
wait_state complete 5 || fail "not complete from the cache"
[ "$(st bytes)" = "0/$PACK" ] || fail "bytes fetched: $(st bytes)"
hits=$(st cache_hits)
cmp_all
# Requests for the pack since this mount: at most probes (HEAD, 1 byte).
tail -n +$((before + 1)) "$T/nginx/ranges.log" | awk '$2 ~ /overlay-blob$/' >"$T/r9"
awk '$NF > 1' "$T/r9" | grep -q . && fail "pack data requested again: $(awk '$NF > 1' "$T/r9" | head -3)"
ok "complete at once, cache_hits $hits, bytes 0/$PACK, no pack data from nginx" \
	"($(wc -l <"$T/r9") probe requests of <= 1 byte); cmp ok"
umount_ov

echo "PASS"
