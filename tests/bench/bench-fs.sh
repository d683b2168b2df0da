#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# cloudletfs benchmarks of issue 3, side by side in one run, on the
# real-guest reference workload (plus generated images for memory use):
#   1. throughput of a fully present disk/image (sequential 1 MiB, random
#      4 KiB with 1 and 4 threads; fio, psync) and of memory/image
#      (sequential 1 MiB) against squashfuse reading the same bytes from an
#      uncompressed squashfs, and against the raw file. Base checks on: a
#      base chunk is checked against the base's index on its first read of a
#      mount, a cache chunk hashed on its first read of a session; so each
#      sequential run of cloudletfs is the first read of a fresh mount (the
#      cache complete), followed by a later read on that mount (nothing left
#      to check); the random runs are later reads. The sequential runs are
#      made twice: page cache dropped for everything, and dropped then the
#      files behind each mount read back (the goal's condition);
#   2. latency of one 4 KiB read of a chunk whose segment is missing (HTTP on
#      loopback, no_stream, no_cache, POSIX_FADV_RANDOM), xz and zstd packs:
#      median, 90th and 99th percentiles, max, and the daemon's CPU time per
#      read across the timed reads;
#   3. time from `cloudlet mount` until every chunk of a recorded trace has
#      been read, over a 40 Mbit/s link (an HTB class on lo for nginx's port,
#      tests/lib/link.sh: shared by every connection, as a real link is),
#      overlay in plain and in trace order, against downloading the whole
#      overlay with curl at the same rate (and then `cloudlet apply`);
#   4. the daemon's peak RSS (VmHWM) for an 8 GiB disk + 2 GiB memory VM with
#      a ~500 MiB zstd overlay: after the stream completes and after reading
#      both images once; BENCH_MEMORY=0 skips this part (a few minutes).
# Page cache dropped before every timed run; timed figures are the median of
# three runs (BENCH_RUNS). Prints progress on stderr and a markdown report on stdout.
# Needs root (drop_caches, loop and FUSE mounts), fio, squashfuse,
# squashfs-tools, nginx-light, curl.
# Usage: tests/bench/bench-fs.sh [--only PARTS] [BUILD_DIR]
#   (makes the workload if needed: make-workload.sh --cached BUILD_DIR/guest). BENCH_WORKLOAD=DIR
#   takes a complete workload made elsewhere as it is, never rebuilding it
#   (make-workload.sh of another version would), read under its lock.
#   --only runs some parts: a comma list of throughput, latency, trace,
#   memory (e.g. --only latency, a minute or so).
#   Part 2's size: BENCH_NLAT chunks per mount (default 20), BENCH_LAT_RUNS
#   mounts per codec (default 3). BENCH_RUNS: runs per timed figure of parts
#   1 and 3 (default 3).
set -euo pipefail
# One block, read whole before it runs: bash reads a script as it goes, and
# this one runs for minutes while the tree may change.
{
src=$(cd "$(dirname "$0")/../.." && pwd)
only=
if [ "${1:-}" = --only ]; then
	only=${2:?--only needs a list of parts}
	shift 2
fi
build=$(cd "${1:-$src/build}" && pwd)
cloudlet=$build/cloudlet
tools=$build/tests/tools
W=${BENCH_WORKLOAD:-$build/guest}
cmdline="tests/bench/bench-fs.sh${only:+ --only $only}${1:+ $1}"
for v in BENCH_RUNS BENCH_LAT_RUNS BENCH_NLAT BENCH_MEMORY BENCH_WORKLOAD; do
	[ -z "${!v:-}" ] || cmdline="$v=${!v} $cmdline"
done
BENCH_MEMORY=${BENCH_MEMORY:-1}
RUNS=${BENCH_RUNS:-3}
LINK_RATE=40mbit
NLAT=${BENCH_NLAT:-20}         # chunks timed per latency run
LAT_RUNS=${BENCH_LAT_RUNS:-$RUNS} # latency runs (mounts) per codec
[ -n "$only" ] || only=throughput,latency,trace$([ "$BENCH_MEMORY" = 0 ] || echo ,memory)
for p in ${only//,/ }; do
	case $p in throughput | latency | trace | memory) ;;
	*) echo "bench-fs.sh: unknown part $p (throughput, latency, trace, memory)" >&2; exit 2 ;;
	esac
done
# part NAME: whether this run includes that part.
part() { [[ ",$only," == *",$1,"* ]]; }

for x in "$cloudlet" "$build/cloudletfs" "$tools/overlay_chunks" "$tools/chunk_read"; do
	[ -x "$x" ] || { echo "build first: cmake --build $build ($x missing)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench-fs.sh: needs root (drop_caches, mounts)" >&2; exit 1; }
[ -e /dev/fuse ] || { echo "bench-fs.sh: no /dev/fuse" >&2; exit 1; }
missing=
for p in fio:fio squashfuse:squashfuse mksquashfs:squashfs-tools curl:curl fusermount3:fuse3 bc:bc; do
	command -v "${p%%:*}" >/dev/null || missing="$missing ${p#*:}"
done
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing="$missing nginx-light"
[ -z "$missing" ] || { echo "bench-fs.sh: missing; apt-get install$missing" >&2; exit 1; }
# shellcheck source=../lib/nginx.sh
source "$src/tests/lib/nginx.sh"
# shellcheck source=../lib/link.sh
source "$src/tests/lib/link.sh"

log() { echo "bench-fs: $*" >&2; }
load0=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "${BENCH_WORKLOAD:-}" ]; then
	# Used as it is, held shared as the tests do: no rebuild meanwhile.
	if [ -e "$W/.lock" ]; then
		exec 8<"$W/.lock"
		flock -s -w 1200 8 || { echo "bench-fs.sh: $W/.lock held for 20 min" >&2; exit 1; }
	fi
	for f in base/disk.img base/memory.img base/state base/domain.xml custom/disk.img \
		custom/memory.img custom/state custom/domain.xml custom/checksums.txt; do
		[ -s "$W/$f" ] || { echo "bench-fs.sh: $W/$f missing (BENCH_WORKLOAD)" >&2; exit 1; }
	done
else
	bash "$src/tests/guest/make-workload.sh" --cached "$W" >/dev/null
	source "$src/tests/guest/lib.sh"
	cl_use_workload "$W" # held shared: no eviction or rebuild meanwhile
fi

T=$(mktemp -d /var/tmp/cl-bench-fs.XXXXXX)
export CLOUDLET_HOME=$T/home
FS_MOUNTS=()    # cloudletfs mountpoints
OTHER_MOUNTS=() # loop and squashfuse mountpoints
cleanup() {
	local rc=$? m
	set +e
	for m in "${OTHER_MOUNTS[@]}"; do
		mountpoint -q "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }
	done
	for m in "${FS_MOUNTS[@]}"; do
		mountpoint -q "$m" && { "$cloudlet" -q umount "$m" 2>/dev/null || umount -l "$m"; }
	done
	[ -z "${NGINX_PORT:-}" ] || cl_link_unshape "$NGINX_PORT"
	cl_nginx_stop
	if grep -q " $T/" /proc/mounts; then
		echo "bench-fs: still mounted under $T, not removed:" >&2
		grep " $T/" /proc/mounts >&2
	else
		rm -rf "$T"
	fi
	[ $rc = 0 ] || echo "bench-fs: FAILED (exit $rc)" >&2
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
fmt() { printf "%.${2:-2}f" "$1"; }
calc() { echo "$*" | bc -l; }
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
mib() { fmt "$(calc "$1 / 1048576")" "${2:-1}"; }
sz() { stat -c %s "$@" | paste -sd+ | bc; }

# fs_mount IMAGE OVERLAY MNT OPTIONS: cloudlet mount, remembered for cleanup.
fs_mount() {
	mkdir -p "$3"
	FS_MOUNTS+=("$3")
	"$cloudlet" -q mount "$1" "$2" "$3" ${4:+-o "$4"}
}
fs_umount() { "$cloudlet" -q umount "$1"; }
status() { sed -n "s/^$2: //p" "$1/status"; }
# wait_complete MNT: until status says complete (fails on failed, or after 30 min).
wait_complete() {
	local i s
	for i in $(seq 18000); do
		s=$(status "$1" state)
		[ "$s" = complete ] && return 0
		[ "$s" = failed ] && { log "stream failed: $(status "$1" reason)"; return 1; }
		sleep 0.1
	done
	log "stream not complete after 30 min"; return 1
}

# fio_run FILE ARGS...: prints "MB/s IOPS" of a read job (all jobs summed).
fio_run() {
	local f=$1
	shift
	fio --name=bench --filename="$f" --readonly --ioengine=psync --group_reporting \
		--output-format=json "$@" |
		python3 -c 'import json, sys
s = sys.stdin.read(); r = json.loads(s[s.index("{"):])["jobs"][0]["read"]
print("%.1f %.0f" % (r["bw_bytes"] / 1e6, r["iops"]))'
}
# CPU time (user + system, ms) a process has used so far.
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$1/stat"; }
# fio_cmp NAME ARGS...: one fio job on each of ${files[@]} (keys in $targets),
# the three of a run interleaved so that the machine's load hits them alike;
# sets RES[target,NAME] to the medians "MB/s IOPS", and CPU[target,NAME] to
# the median CPU ms the serving daemon (pids[target], if any) spent on a run.
fio_cmp() {
	local name=$1 i k out c0
	shift
	declare -A mb io cpu
	for i in $(seq $RUNS); do
		for k in $targets; do
			[ "$k" != cloudletfs ] || [ -z "${FRESH:-}" ] || fresh_mount
			drop
			[ -z "${WARM:-}" ] || warm "$k"
			c0=0
			[ -z "${pids[$k]:-}" ] || c0=$(cpu_ms "${pids[$k]}")
			out=$(fio_run "${files[$k]}" "$@")
			[ -z "${pids[$k]:-}" ] || cpu[$k]="${cpu[$k]:-} $(calc "$(cpu_ms "${pids[$k]}") - $c0")"
			mb[$k]="${mb[$k]:-} ${out% *}" io[$k]="${io[$k]:-} ${out#* }"
		done
	done
	for k in $targets; do
		# shellcheck disable=SC2086 # word splitting wanted
		RES[$k,$name]="$(med ${mb[$k]}) $(med ${io[$k]})"
		# shellcheck disable=SC2086
		[ -z "${cpu[$k]:-}" ] || CPU[$k,$name]=$(med ${cpu[$k]})
	done
}

# warm TARGET: reads TARGET's backing files back into the page cache (the
# goal's condition: a cloudlet keeps its bases and cache hot): squashfuse's
# image file; cloudletfs's base images, registered base and cache.
warm() {
	case $1 in
	squashfuse) cat "$T/sq/img.sqfs" >/dev/null ;;
	cloudletfs*) find "$base_d" "$base_m" "$CLOUDLET_HOME/bases" "$T/cache" -type f \
		-exec cat {} + >/dev/null ;;
	esac
}

# fresh_mount: cloudletfs mounted again on the complete cache of part 1 (no
# chunk checked yet this mount or session); pids follow.
fresh_mount() {
	fs_umount "$M"
	fs_mount "$base_d" "$OV" "$M" "cache_dir=$T/cache"
	wait_complete "$M"
	pids[cloudletfs]=$(status "$M" pid) pids[cloudletfs_later]=$(status "$M" pid)
}

base_d=$W/base/disk.img base_m=$W/base/memory.img
new_d=$W/custom/disk.img new_m=$W/custom/memory.img
mkdir -p "$T/www"
log "registering the base, making the overlays (xz, zstd)"
"$cloudlet" -q base "$base_d" --memory "$base_m" --state "$W/base/state" --domain "$W/base/domain.xml" >/dev/null
for codec in xz zstd; do
	"$cloudlet" -q overlay "$base_d" --disk "$new_d" --memory "$new_m" --state "$W/custom/state" \
		--domain "$W/custom/domain.xml" -o "$T/www/ov-$codec" --codec "$codec" >/dev/null
done
OV=$T/www/ov-xz
ov_size=$(sz "$OV/overlay-meta" "$OV/overlay-blob")
disk_size=$(stat -c %s "$new_d")
read -r _ ov_records _ _ _ ov_segments _ _ _ _ <<<"$("$tools/overlay_chunks" -s "$OV")"

M=$T/mnt
declare -A RES CPU pids
# --- 1. throughput of a complete image -------------------------------------
if part throughput; then
	log "1. throughput: cloudletfs (complete), squashfuse, raw file"
	fs_mount "$base_d" "$OV" "$M" "cache_dir=$T/cache"
	wait_complete "$M"
	cmp "$M/disk/image" "$new_d" || { log "disk/image differs from the customized disk"; exit 1; }
	mkdir -p "$T/sq/in" "$T/sq/mnt"
	cp --sparse=always "$new_d" "$T/sq/in/disk.img"
	cp --sparse=always "$new_m" "$T/sq/in/memory.img"
	mksquashfs "$T/sq/in" "$T/sq/img.sqfs" -noI -noD -noF -noX -quiet -no-progress >/dev/null
	rm -f "$T/sq/in/disk.img" "$T/sq/in/memory.img"
	OTHER_MOUNTS+=("$T/sq/mnt")
	squashfuse "$T/sq/img.sqfs" "$T/sq/mnt"
	cmp "$T/sq/mnt/disk.img" "$new_d"
	declare -A files
	files=([raw]="$new_d" [squashfuse]="$T/sq/mnt/disk.img" [cloudletfs]="$M/disk/image"
		[cloudletfs_later]="$M/disk/image")
	pids=([squashfuse]="$(pgrep -nf "^squashfuse $T/sq/img.sqfs")" [cloudletfs]="$(status "$M" pid)")
	# Sequential: cloudletfs's first read of a fresh mount, then a later one.
	targets="raw squashfuse cloudletfs cloudletfs_later"
	FRESH=1 fio_cmp seq --rw=read --bs=1M
	targets="raw squashfuse cloudletfs"
	fio_cmp rnd1 --rw=randread --bs=4k --number_ios=20000
	fio_cmp rnd4 --rw=randread --bs=4k --number_ios=10000 --numjobs=4
	cmp "$M/memory/image" "$new_m" || { log "memory/image differs from the customized memory"; exit 1; }
	files=([raw]="$new_m" [squashfuse]="$T/sq/mnt/memory.img" [cloudletfs]="$M/memory/image"
		[cloudletfs_later]="$M/memory/image")
	targets="raw squashfuse cloudletfs cloudletfs_later"
	FRESH=1 fio_cmp seqm --rw=read --bs=1M
	targets="squashfuse cloudletfs cloudletfs_later"
	FRESH=1 WARM=1 fio_cmp seqmw --rw=read --bs=1M
	files=([squashfuse]="$T/sq/mnt/disk.img" [cloudletfs]="$M/disk/image"
		[cloudletfs_later]="$M/disk/image")
	FRESH=1 WARM=1 fio_cmp seqw --rw=read --bs=1M
	fs_umount "$M"
	fusermount3 -u "$T/sq/mnt"
	rm -rf "$T/sq" "$T/cache"
fi

# --- 2. latency of a missing chunk, loopback --------------------------------
if part latency; then
	cl_nginx_start "$T/nginx" "$T/www" >/dev/null
	URL=http://127.0.0.1:$NGINX_PORT
	# pick_chunks OVERLAY: NLAT chunks (disk first), each in a different segment
	# that holds no device state or domain XML, spread over the pack:
	# `IMAGE INDEX SEGMENT` lines.
	pick_chunks() {
		local blob
		blob=$("$tools/overlay_chunks" -s "$1" | awk '{print $NF}')
		"$tools/overlay_chunks" -a "$1" | awk -v blob="$blob" -v n="$NLAT" '
			BEGIN { split(blob, b, ","); for (i in b) skip[b[i]] = 1 }
			!($3 in skip) { k = $1 " " $3; c[k]++; if (c[k] == 1) { key[++nk] = k } line[k, c[k]] = $1 " " $2 " " $3 }
			END {
				for (pass = 0; pass < 2; pass++)   # disk segments first, then memory
					for (i = 1; i <= nk; i++) {
						split(key[i], f, " "); s = f[2]
						if ((f[1] == "disk") != (pass == 0) || (s in used)) continue
						used[s] = 1; pick[++np] = line[key[i], int((c[key[i]] + 1) / 2)]
					}
				# spread: every (np/n)-th of them, in an interleaved order
				step = np > n ? np / n : 1
				for (i = 0; i < n && i * step < np; i++) out[i] = pick[int(i * step) + 1]
				for (i = 0; i < n && i * step < np; i += 2) print out[i]
				for (i = 1; i < n && i * step < np; i += 2) print out[i]
			}'
	}
	# pct P VALUES...: the P-th percentile (nearest rank).
	pct() {
		local p=$1
		shift
		printf '%s\n' "$@" | sort -g | awk -v p="$p" '{v[NR] = $1} END {i = int((p * NR + 99) / 100); print v[i < 1 ? 1 : i]}'
	}
	# The daemon's CPU time so far (microseconds, all its threads; schedstat
	# counts nanoseconds where stat counts ticks of 10 ms). A thread that exits
	# takes its time along: the FUSE loop keeps its idle workers.
	daemon_cpu_us() { cat /proc/"$1"/task/*/schedstat | awk '{ns += $1} END {printf "%.0f\n", ns / 1e3}'; }
	declare -A lat_med lat_p90 lat_p99 lat_max lat_n lat_demand lat_seg lat_cpu
	for codec in xz zstd; do
		log "2. latency of a missing chunk ($codec)"
		pick_chunks "$T/www/ov-$codec" >"$T/lat-$codec.list"
		: >"$T/lat-$codec.ms"
		demand=() lcpu=()
		for i in $(seq "$LAT_RUNS"); do
			drop
			fs_mount "$base_d" "$URL/ov-$codec/overlay-meta" "$M" no_stream,no_cache
			d0=$(cat "$M/disk/stats/demand_fetches") m0=$(cat "$M/memory/stats/demand_fetches")
			pid=$(status "$M" pid) s0=$(status "$M" segments)
			c0=$(daemon_cpu_us "$pid")
			"$tools/chunk_read" -l "$M" "$T/lat-$codec.list" | awk 'NF == 3 {print $3}' >"$T/lat.run"
			# The CPU time counts each segment's decoding to its end, also
			# where that goes on after the read was answered.
			for _ in $(seq 500); do
				[ "$(status "$M" segments | cut -d/ -f1)" -lt $((${s0%/*} + $(wc -l <"$T/lat.run"))) ] || break
				sleep 0.02
			done
			c1=$(daemon_cpu_us "$pid")
			paste -d' ' "$T/lat.run" "$T/lat-$codec.list" >>"$T/lat-$codec.ms" # MS IMAGE INDEX SEGMENT
			d1=$(cat "$M/disk/stats/demand_fetches") m1=$(cat "$M/memory/stats/demand_fetches")
			demand+=($((d1 - d0 + m1 - m0)))
			lcpu+=("$(calc "($c1 - $c0) / $(wc -l <"$T/lat.run") / 1000")") # ms per read
			fs_umount "$M"
		done
		mapfile -t ms < <(cut -d' ' -f1 "$T/lat-$codec.ms")
		# The slowest and fastest segments, with what they hold (records to decode
		# and write into the cache when they arrive).
		lat_seg[$codec]=$("$tools/overlay_chunks" -a "$T/www/ov-$codec" | awk '
			NR == FNR { n[$3]++; d[$3] += $4 == "delta"; next }
			{ s = $4; t[s] = t[s] " " $1; if (!(s in seen)) { seen[s] = 1; order[++k] = s } }
			END { for (i = 1; i <= k; i++) { s = order[i]; split(substr(t[s], 2), v, " "); m = 0
				for (j in v) if (v[j] + 0 > m) m = v[j] + 0
				printf "%s %d %d %d\n", m, s, n[s], d[s] } }' - "$T/lat-$codec.ms" | sort -g |
			awk '{ l[NR] = sprintf("%.1f ms: segment %d, %d records (%d delta)", $1, $2, $3, $4) }
			END { printf "fastest %s; slowest %s, %s", l[1], l[NR], l[NR - 1] }')
		lat_med[$codec]=$(fmt "$(med "${ms[@]}")" 1)
		lat_p90[$codec]=$(fmt "$(pct 90 "${ms[@]}")" 1)
		lat_p99[$codec]=$(fmt "$(pct 99 "${ms[@]}")" 1)
		lat_max[$codec]=$(fmt "$(pct 100 "${ms[@]}")" 1)
		lat_n[$codec]=${#ms[@]}
		lat_demand[$codec]=$(IFS=+; echo "$((${demand[*]}))")
		lat_cpu[$codec]=$(fmt "$(med "${lcpu[@]}")" 2)
	done
	cl_nginx_stop
fi

# --- 3. time until a recorded trace is readable over 40 Mbit/s ---------------
if part trace; then
	log "3. recording a trace (loop-mounted ext4, reading customized files)"
	fs_mount "$base_d" "$OV" "$M" no_cache
	mkdir -p "$T/lo"
	OTHER_MOUNTS+=("$T/lo")
	# ro needs noload: the snapshot's journal needs recovery, which ro cannot write.
	mount -o loop,ro,noload "$M/disk/image" "$T/lo"
	trace_files=(data/text/doc-1.txt data/rand/r2.bin data/dup/inplace-orig.bin data/text/manifest.txt)
	for i in 1 3 5 7 9; do trace_files+=("data/text/small-$i.txt" "data/rand/small-$i.bin"); done
	trace_bytes=$( (cd "$T/lo" && cat "${trace_files[@]}") | wc -c)
	# Check what was read against what the guest wrote.
	(cd "$T/lo" && for f in "${trace_files[@]}"; do grep "  /mnt/$f\$" "$W/custom/checksums.txt" | sed "s#/mnt/##"; done | md5sum -c --quiet)
	umount "$T/lo"
	"$cloudlet" trace "$M" >"$T/trace"
	fs_umount "$M"
	"$cloudlet" -q overlay "$base_d" --disk "$new_d" --memory "$new_m" --state "$W/custom/state" \
		--domain "$W/custom/domain.xml" -o "$T/www/ov-trace" --order "$T/trace" >/dev/null
	trace_chunks=$(wc -l <"$T/trace")
	# Traced chunks with a payload in the overlay, and the segments they need.
	trace_segs() {
		"$tools/overlay_chunks" -a "$1" | awk 'NR == FNR { t[$1 " " $2] = 1; next }
			(($1 " " $2) in t) { n++; s[$3] = 1 } END { k = 0; for (x in s) k++; print n + 0, k }' "$T/trace" -
	}
	read -r trace_payload segs_plain <<<"$(trace_segs "$OV")"
	read -r _ segs_trace <<<"$(trace_segs "$T/www/ov-trace")"

	# A server of its own whose port is shaped: every connection shares the link.
	cl_nginx_start "$T/nginx3" "$T/www" >/dev/null
	URL=http://127.0.0.1:$NGINX_PORT
	cl_link_shape "$NGINX_PORT" "$LINK_RATE" || { log "cannot shape lo (needs root, tc, HTB)"; exit 1; }
	declare -A tt tb
	for ov in xz trace; do
		log "3. trace readable over 40 Mbit/s (overlay order: $ov)"
		times=() bytes=()
		for i in $(seq $RUNS); do
			drop
			s=$(now)
			fs_mount "$base_d" "$URL/ov-$ov/overlay-meta" "$M" no_cache
			"$tools/chunk_read" "$M" "$T/trace" >/dev/null
			e=$(now)
			b=$(status "$M" bytes)
			fs_umount "$M"
			times+=("$(calc "$e - $s")") bytes+=("${b%/*}")
		done
		tt[$ov]=$(fmt "$(med "${times[@]}")")
		tb[$ov]=$(med "${bytes[@]}")
	done
	log "3. baseline: curl the whole overlay at 40 Mbit/s, then cloudlet apply"
	dl=() ap=()
	for i in $(seq $RUNS); do
		rm -rf "$T/dl" "$T/out"
		mkdir -p "$T/dl"
		drop
		s=$(now)
		curl -sSf "$URL/ov-xz/overlay-meta" -o "$T/dl/overlay-meta" \
			"$URL/ov-xz/overlay-blob" -o "$T/dl/overlay-blob"
		e=$(now)
		"$cloudlet" -q apply "$base_d" "$T/dl" -o "$T/out" >/dev/null
		f=$(now)
		cmp -s "$T/dl/overlay-blob" "$OV/overlay-blob"
		dl+=("$(calc "$e - $s")") ap+=("$(calc "$f - $e")")
	done
	rm -rf "$T/dl" "$T/out"
	t_dl=$(fmt "$(med "${dl[@]}")") t_ap=$(fmt "$(med "${ap[@]}")")
	cl_link_unshape "$NGINX_PORT"
	cl_nginx_stop
fi

# --- 4. memory use of the daemon ---------------------------------------------
if part memory; then
	log "4. memory: generating an 8 GiB disk + 2 GiB memory VM with ~600 MiB of changes"
	G=$T/gen
	mkdir -p "$G"
	truncate -s 8G "$G/base-disk.img"
	truncate -s 2G "$G/base-mem.img"
	truncate -s 8G "$G/disk.img"
	truncate -s 2G "$G/mem.img"
	# Scattered extents of 4 KiB to 1 MiB, three quarters random bytes,
	# a quarter text; 480 MiB into the disk, 120 MiB into the memory.
	python3 - "$G/disk.img" 480 "$G/mem.img" 120 <<'PY'
import os, random, sys
random.seed(3)
words = [("%x" % random.getrandbits(random.randint(8, 40))).encode() for _ in range(4096)]
pool = b" ".join(random.choice(words) for _ in range(3_000_000))
for path, mib in zip(sys.argv[1::2], sys.argv[2::2]):
    size, left = os.path.getsize(path), int(mib) << 20
    with open(path, "r+b") as f:
        while left > 0:
            n = min(left, random.choice([4096, 16384, 65536, 262144, 1048576]))
            f.seek(random.randrange(0, (size - n) // 4096) * 4096)
            if random.random() < 0.75:
                f.write(os.urandom(n))
            else:
                s = random.randrange(0, len(pool) - n)
                f.write(pool[s:s + n])
            left -= n
PY
	"$cloudlet" -q base "$G/base-disk.img" --memory "$G/base-mem.img" >/dev/null
	gen_index=$(stat -c %s "$(ls -t "$CLOUDLET_HOME"/bases/*/index | head -1)")
	s=$(now)
	"$cloudlet" -q overlay "$G/base-disk.img" --disk "$G/disk.img" --memory "$G/mem.img" \
		-o "$T/www/ov-gen" --codec zstd --level 3 >/dev/null
	gen_create=$(fmt "$(calc "$(now) - $s")" 0)
	gen_pack=$(sz "$T/www/ov-gen/overlay-blob")
	gen_meta=$(sz "$T/www/ov-gen/overlay-meta")
	read -r _ gen_records _ rec_size _ gen_segments _ seg_size _ _ <<<"$("$tools/overlay_chunks" -s "$T/www/ov-gen")"
	meta_est=$((gen_records * rec_size + gen_segments * seg_size))
	cl_nginx_start "$T/nginx" "$T/www" >/dev/null
	URL=http://127.0.0.1:$NGINX_PORT
	# What the daemon holds before any data: mounted with no_stream, nothing read.
	fs_mount "$G/base-disk.img" "$T/www/ov-gen" "$M" no_stream,no_cache
	rss0=$(awk '/^VmRSS/ {print $2}' "/proc/$(status "$M" pid)/status")
	fs_umount "$M"
	declare -A hwm1 hwm2 rss2 anon2 tcomp
	for via in local http; do
		log "4. memory: mount ($via), stream to completion, read both images"
		ovl=$T/www/ov-gen
		[ $via = local ] || ovl=$URL/ov-gen/overlay-meta
		drop
		s=$(now)
		fs_mount "$G/base-disk.img" "$ovl" "$M" no_cache
		pid=$(status "$M" pid)
		wait_complete "$M"
		tcomp[$via]=$(fmt "$(calc "$(now) - $s")" 1)
		hwm1[$via]=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
		# Read both images once, checked against the generated ones.
		if ! cmp "$M/disk/image" "$G/disk.img" || ! cmp "$M/memory/image" "$G/mem.img"; then
			log "the images read through the mount differ"
			exit 1
		fi
		hwm2[$via]=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
		rss2[$via]=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
		anon2[$via]=$(awk '/^RssAnon/ {print $2}' "/proc/$pid/status")
		[ "$(status "$M" io_errors)" = 0 ] || { log "io errors on the generated overlay"; exit 1; }
		fs_umount "$M"
	done
	cl_nginx_stop
	rm -rf "$G"
fi

# --- report ---------------------------------------------------------------
ratio() { fmt "$(calc "$1 / $2")"; }
kmib() { fmt "$(calc "$1 / 1024")" 1; } # KiB -> MiB
cat <<MD
Command: \`$cmdline\`, commit $(git -C "$src" describe --always --dirty 2>/dev/null || echo unknown), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores
($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(free -g | awk '/^Mem/ {print $2}') GiB RAM, kernel $(uname -r),
$(fio --version), squashfuse $(dpkg-query -W -f='${Version}' squashfuse 2>/dev/null || echo '?'), nginx $(/usr/sbin/nginx -v 2>&1 | sed 's#.*/##').
Workload: the real-guest reference workload ($(mib "$(stat -c %s "$new_d")" 0) MiB disk, $(mib "$(stat -c %s "$new_m")" 0) MiB memory);
overlay (xz) $(mib "$ov_size") MiB, $ov_segments segments, $ov_records records. Timed figures: median of $RUNS runs,
page cache dropped before each. Load average at start $load0, at the end $(cut -d' ' -f1-3 /proc/loadavg)
(other work shares the machine: figures vary between runs).
MD
if part throughput; then
	cat <<MD

### 1. Throughput of a complete image (disk/image, $(mib "$(stat -c %s "$new_d")" 0) MiB, fio psync)

| | sequential 1 MiB (MB/s) | random 4 KiB, 1 thread (IOPS) | random 4 KiB, 4 threads (IOPS) |
|---|---|---|---|
| raw file (local ext4) | ${RES[raw,seq]% *} | ${RES[raw,rnd1]#* } | ${RES[raw,rnd4]#* } |
| squashfuse, uncompressed squashfs | ${RES[squashfuse,seq]% *} | ${RES[squashfuse,rnd1]#* } | ${RES[squashfuse,rnd4]#* } |
| cloudletfs, overlay complete: first read of a fresh mount | ${RES[cloudletfs,seq]% *} | | |
| cloudletfs, overlay complete: later read | ${RES[cloudletfs_later,seq]% *} | ${RES[cloudletfs,rnd1]#* } | ${RES[cloudletfs,rnd4]#* } |
| cloudletfs / squashfuse (goal >= 1): first read | $(ratio "${RES[cloudletfs,seq]% *}" "${RES[squashfuse,seq]% *}") | | |
| cloudletfs / squashfuse (goal >= 1): later read | $(ratio "${RES[cloudletfs_later,seq]% *}" "${RES[squashfuse,seq]% *}") | $(ratio "${RES[cloudletfs,rnd1]#* }" "${RES[squashfuse,rnd1]#* }") | $(ratio "${RES[cloudletfs,rnd4]#* }" "${RES[squashfuse,rnd4]#* }") |

First read: each run mounts cloudletfs afresh on the complete cache, so that every base chunk it serves is
checked against the base's index and every cache chunk hashed (base verification on); later read: the same
mount read again, page cache dropped, nothing left to check. The random runs are later reads.

memory/image ($(mib "$(stat -c %s "$new_m")" 0) MiB), sequential 1 MiB (MB/s): raw file ${RES[raw,seqm]% *},
squashfuse ${RES[squashfuse,seqm]% *}, cloudletfs ${RES[cloudletfs,seqm]% *} (first read of a fresh mount),
${RES[cloudletfs_later,seqm]% *} (later read); cloudletfs / squashfuse (goal >= 1):
$(ratio "${RES[cloudletfs,seqm]% *}" "${RES[squashfuse,seqm]% *}") (first read), $(ratio "${RES[cloudletfs_later,seqm]% *}" "${RES[squashfuse,seqm]% *}") (later read).

Backing files warm (the goal's condition: page cache dropped, then the files behind each mount read back:
squashfuse's image; cloudletfs's base images, registered base and cache), sequential 1 MiB (MB/s),
squashfuse / cloudletfs first read / later read, and cloudletfs / squashfuse (goal >= 1):
disk/image ${RES[squashfuse,seqw]% *} / ${RES[cloudletfs,seqw]% *} / ${RES[cloudletfs_later,seqw]% *}:
$(ratio "${RES[cloudletfs,seqw]% *}" "${RES[squashfuse,seqw]% *}") first, $(ratio "${RES[cloudletfs_later,seqw]% *}" "${RES[squashfuse,seqw]% *}") later;
memory/image ${RES[squashfuse,seqmw]% *} / ${RES[cloudletfs,seqmw]% *} / ${RES[cloudletfs_later,seqmw]% *}:
$(ratio "${RES[cloudletfs,seqmw]% *}" "${RES[squashfuse,seqmw]% *}") first, $(ratio "${RES[cloudletfs_later,seqmw]% *}" "${RES[squashfuse,seqmw]% *}") later.

CPU time of the daemon (user + system), median per run: the cost of serving, less sensitive to the
machine's load than the rates above.

| | sequential (ms per GiB) | random 4 KiB, 1 thread (µs per read) | random 4 KiB, 4 threads (µs per read) |
|---|---|---|---|
| squashfuse | $(fmt "$(calc "${CPU[squashfuse,seq]} * 1073741824 / $disk_size")" 0) | $(fmt "$(calc "${CPU[squashfuse,rnd1]} * 1000 / 20000")" 1) | $(fmt "$(calc "${CPU[squashfuse,rnd4]} * 1000 / 40000")" 1) |
| cloudletfs, first read | $(fmt "$(calc "${CPU[cloudletfs,seq]} * 1073741824 / $disk_size")" 0) | | |
| cloudletfs, later read | $(fmt "$(calc "${CPU[cloudletfs_later,seq]} * 1073741824 / $disk_size")" 0) | $(fmt "$(calc "${CPU[cloudletfs,rnd1]} * 1000 / 20000")" 1) | $(fmt "$(calc "${CPU[cloudletfs,rnd4]} * 1000 / 40000")" 1) |

memory/image, sequential (ms per GiB): squashfuse $(fmt "$(calc "${CPU[squashfuse,seqm]} * 1073741824 / $(stat -c %s "$new_m")")" 0),
cloudletfs $(fmt "$(calc "${CPU[cloudletfs,seqm]} * 1073741824 / $(stat -c %s "$new_m")")" 0) (first read), $(fmt "$(calc "${CPU[cloudletfs_later,seqm]} * 1073741824 / $(stat -c %s "$new_m")")" 0) (later read).

Random reads: 20000 reads (4 threads: 10000 each) at fio's seeded offsets over the whole file
(fio advises POSIX_FADV_RANDOM). The image is sparse like the guest's: $(du -m "$new_d" | cut -f1) MiB allocated.
MD
fi
if part latency; then
	cat <<MD

### 2. Latency of a 4 KiB read whose segment is missing (HTTP, loopback, no limit)

\`-o no_stream,no_cache\`, one pread per chunk, POSIX_FADV_RANDOM, each chunk in a different segment not yet
fetched; $NLAT chunks per mount, $LAT_RUNS mounts. Percentiles by nearest rank over all reads. Daemon CPU:
user + system time of all the daemon's threads (/proc/PID/task/*/schedstat) across the timed reads of a
mount, divided by its reads; the median over the mounts (it includes fetching, checking and decoding the
segment and writing the cache).

| pack codec | reads | demand fetches | median (ms) | 90th pct (ms) | 99th pct (ms) | max (ms) | daemon CPU per read (ms) | goal |
|---|---|---|---|---|---|---|---|---|
| xz (default) | ${lat_n[xz]} | ${lat_demand[xz]} | ${lat_med[xz]} | ${lat_p90[xz]} | ${lat_p99[xz]} | ${lat_max[xz]} | ${lat_cpu[xz]} | p90 < 20 ms, p99 < 40 ms |
| zstd | ${lat_n[zstd]} | ${lat_demand[zstd]} | ${lat_med[zstd]} | ${lat_p90[zstd]} | ${lat_p99[zstd]} | ${lat_max[zstd]} | ${lat_cpu[zstd]} | p90 < 20 ms, p99 < 40 ms |

Per segment, the worst of its $LAT_RUNS reads: xz: ${lat_seg[xz]}. zstd: ${lat_seg[zstd]}.
MD
fi
if part trace; then
	cat <<MD

### 3. Time until a recorded trace is readable over 40 Mbit/s

Trace: a fresh local mount, its disk/image loop-mounted read-only (ext4, \`noload\`), $(mib "$trace_bytes") MiB of
customized files read (${#trace_files[@]} files); \`cloudlet trace\`: $trace_chunks disk chunks, $trace_payload of them with
a payload in the overlay, in $segs_plain of $ov_segments segments in plain order, $segs_trace in trace order.
Link: nginx on 127.0.0.1 behind an HTB class of $LINK_RATE on its port on \`lo\` (tests/lib/link.sh), shared
by all of the daemon's connections as on a real link; the daemon mounted with \`-o no_cache\`. Time from the start of \`cloudlet mount\` (by URL) until a program has read
every traced chunk through the mount, in trace order (POSIX_FADV_RANDOM, one pread each).

| | time (s) | fetched by then (MiB) | of the overlay |
|---|---|---|---|
| cloudletfs, plain order | ${tt[xz]} | $(mib "${tb[xz]}") | $(fmt "$(calc "100 * ${tb[xz]} / $ov_size")" 0) % |
| cloudletfs, trace order (\`--order TRACE\`) | ${tt[trace]} | $(mib "${tb[trace]}") | $(fmt "$(calc "100 * ${tb[trace]} / $ov_size")" 0) % |
| curl overlay-meta + overlay-blob (same rate) | $t_dl | $(mib "$ov_size") | 100 % |
| curl, then \`cloudlet apply\` | $(fmt "$(calc "$t_dl + $t_ap")") | $(mib "$ov_size") | 100 % |
MD
fi
if part memory; then
	cat <<MD

### 4. Daemon memory, 8 GiB disk + 2 GiB memory, ~500 MiB overlay

Generated sparse images, 600 MiB written at scattered offsets (3/4 random bytes, 1/4 text); overlay
\`--codec zstd --level 3\` (created in $gen_create s): pack $(mib "$gen_pack") MiB in $gen_segments segments, meta $(mib "$gen_meta") MiB,
$gen_records records. Parsed meta in memory, estimated: $gen_records × sizeof(struct cl_chunk) ($rec_size B) +
$gen_segments × sizeof(struct cl_segment) ($seg_size B) = $(mib "$meta_est") MiB. Goal: VmHWM < 64 MiB + that = $(mib "$((meta_est + (64 << 20)))") MiB.
Just mounted with \`no_stream\`, nothing fetched or read: VmRSS $(kmib "$rss0") MiB (the base's index file: $(mib "$gen_index") MiB).

| overlay from | stream complete after (s) | VmHWM when complete (MiB) | VmHWM after reading both images (MiB) | VmRSS then (MiB) | of it RssAnon (MiB) |
|---|---|---|---|---|---|
| local file | ${tcomp[local]} | $(kmib "${hwm1[local]}") | $(kmib "${hwm2[local]}") | $(kmib "${rss2[local]}") | $(kmib "${anon2[local]}") |
| HTTP (loopback, 4 connections) | ${tcomp[http]} | $(kmib "${hwm1[http]}") | $(kmib "${hwm2[http]}") | $(kmib "${rss2[http]}") | $(kmib "${anon2[http]}") |
MD
fi
log "done in $SECONDS s"
exit
}
