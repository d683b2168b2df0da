#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# bench-vm.sh: early start against --no-early-start, on one overlay, over one
# shaped link (the VM lifecycle benchmark of docs/BENCHMARKS.md).
#
#   tests/bench/bench-vm.sh [-r RUNS] [--rate RATE] [-S SEGMENT_SIZE] [-v] [--ref REF]
#                           [--memory-modes postcopy,mmap] BUILD_DIR
#
# Workload (made once, cached in BUILD_DIR/bench-vm): the reference guest's
# base (tests/guest/make-workload.sh, BUILD_DIR/guest) resumed and given
# 56 MiB of random files on its disk and 48 MiB of random data in RAM (the
# bulk), plus the data the first response reads: 16 files of 64 KiB on the
# disk (1 MiB, page cache dropped so they come from the disk; the freed
# pages are reported by the balloon and left out) and 1 MiB in RAM. The
# overlay (offline form of `cloudlet overlay`) is over 100 MiB.
#
# Link: nginx on 127.0.0.1 behind an HTB class of RATE (default 40mbit) on
# its port on lo: every connection of cloudletfs shares that rate, as on a
# real link. Each run starts with an empty cache and times, from the start
# of `cloudlet synthesis`:
#   start   libvirt's and QEMU's domain start (the timeline's "domain started
#           in N s": a slow host shows here, see `cloudlet check`),
#   resume  the VM resumed (its timeline line),
#   first   the guest's answer to `md5sum` of the first-response data over
#           its serial console (checked against the sums taken at creation),
# with the bytes that crossed the link before each (the HTB class's
# counters: the overlay's ranges, HTTP and TCP/IP headers). Prints one line per run and the
# medians, for early start and --no-early-start alternately. -S makes (and
# caches) the overlay with that segment size; -v prints the mount's status
# and fetch counters after each first response. --ref REF compares builds
# instead: early start of a build of commit REF (made in a scratch
# directory) and of BUILD_DIR alternately, and their first responses.
# --memory-modes LIST (comma-separated postcopy, mmap) runs early start and
# --no-early-start in each memory mode (`cloudlet synthesis --memory-mode`),
# all interleaved, adds the time until the overlay is complete, and compares
# the modes: first response, bytes before it, time to complete
# (postcopy needs vm.unprivileged_userfaultfd=1: set for the run, restored).
# It also measures, in each memory mode, the physical limit of the first
# response: the pack bytes the first response cannot do without (a run over
# the link with `-o no_stream`: no background stream, no push of pages not
# asked for, so only the segments holding what QEMU and the guest asked for,
# the device state and the disk chunks read are fetched; the mount's own
# count, without the overlay's meta and HTTP's overhead) over the link rate,
# plus the local resume time (a run from the overlay's directory, no link),
# as issue 15 defines it: the guest's own work after the resume is not in it.
set -euo pipefail
# One block, read whole before it runs: bash reads a script as it goes, and
# this one runs for minutes while the tree may change.
{
src=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=3
RATE=40mbit
SEG=
VERBOSE=0
REF=
MEMS=
while [ $# -gt 1 ]; do
	case $1 in
	-r) RUNS=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	-S) SEG=$2; shift 2 ;;
	-v) VERBOSE=1; shift ;;
	--ref) REF=$2; shift 2 ;;
	--memory-modes) MEMS=${2//,/ }; shift 2 ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || { echo "usage: $0 [-r RUNS] [--rate RATE] [-S SEGMENT_SIZE] [-v] [--ref REF] [--memory-modes LIST] BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
cloudlet=$build/cloudlet
export CLOUDLET=$cloudlet # lib.sh checks the host with it
[ -x "$cloudlet" ] || { echo "no $cloudlet: build first" >&2; exit 2; }
source "$src/tests/guest/lib.sh"
source "$src/tests/lib/nginx.sh"
source "$src/tests/lib/link.sh"

cl_init
W=$build/guest
bash "$src/tests/guest/make-workload.sh" --cached "$W" >&2
cl_use_workload "$W" # W physical, held shared: no eviction or rebuild meanwhile
BW=$build/bench-vm
mkdir -p "$BW"
BW=$(cd "$BW" && pwd -P) # cl_qdir answers physical paths
HOT_CMD='md5sum /mnt/bench/hot/* /ram/hot.bin'
BENCH_VERSION=2

# --- the workload ---------------------------------------------------------------
make_workload() {
	local q c name=${CL_PREFIX}bench
	q=$(cl_qdir "$BW")
	c=${q:?}/custom
	rm -rf "$c" "${BW:?}/www" "${BW:?}/.done" "${BW:?}/home" # a new base: a new registry
	mkdir -p "$c"
	chmod 0755 "$q" "$c"
	cp --sparse=always "$W/base/disk.img" "$c/disk.img"
	cp --sparse=always "$W/base/memory.img" "$c/memory.img"
	cl_own_ram "$c/memory.img"
	cl_vm_xml "$W/base/domain.xml" "$c/domain.xml" "$name" "$c/disk.img" "$c/memory.img" on
	cl_resume "$c/domain.xml" "$name" "$W/base/state" || cl_die "resuming the base failed"
	g() { cl_console "$name" "$1" "$2" >/dev/null || cl_die "guest command failed: $2"; }
	cl_log "writing 57 MiB to the guest's disk and 49 MiB to its RAM"
	g 600 'mkdir -p /mnt/bench/hot && for i in 1 2 3 4 5 6 7; do dd if=/dev/urandom of=/mnt/bench/bulk-$i.bin bs=1M count=8 2>/dev/null; done'
	g 120 'for i in $(seq 1 16); do dd if=/dev/urandom of=/mnt/bench/hot/h$i.bin bs=64k count=1 2>/dev/null; done'
	g 600 'dd if=/dev/urandom of=/ram/bulk.bin bs=1M count=48 2>/dev/null && dd if=/dev/urandom of=/ram/hot.bin bs=1M count=1 2>/dev/null'
	g 300 'sync && echo 3 >/proc/sys/vm/drop_caches'
	cl_console "$name" 120 "$HOT_CMD" >"$BW/hot.md5" || cl_die "checksums failed"
	[ "$(grep -c '^[0-9a-f]\{32\}  /' "$BW/hot.md5")" = 17 ] || cl_die "unexpected checksums: $(cat "$BW/hot.md5")"
	g 60 'sync && echo 3 >/proc/sys/vm/drop_caches'
	# Free page reporting (the guest's balloon) punches the freed page cache
	# out of the RAM file within seconds: wait until its size holds still,
	# as `cloudlet base` and `cloudlet overlay` do.
	local a b=-1
	for _ in $(seq 30); do
		a=$(stat -c %b "$c/memory.img")
		[ "$a" = "$b" ] && break
		b=$a
		sleep 2
	done
	cl_log "RAM file: $(du -h "$c/memory.img" | cut -f1) allocated"
	cl_snapshot "$name" "$c/state" || cl_die "snapshot failed"
	cl_destroy "$name"
	chown root:root "$c/memory.img"
	chmod 0644 "$c/memory.img" "$c/disk.img"
	[ "$q" = "$BW" ] || { rm -rf "$BW/custom"; ln -s "$c" "$BW/custom"; }
	CLOUDLET_HOME=$BW/home "$cloudlet" -q base "$W/base/disk.img" --memory "$W/base/memory.img" \
		--state "$W/base/state" --domain "$W/base/domain.xml" >/dev/null
	echo "$BENCH_VERSION $(stat -c %Y "$W/.done")" >"$BW/.done"
}
[ "$(cat "$BW/.done" 2>/dev/null)" = "$BENCH_VERSION $(stat -c %Y "$W/.done")" ] || make_workload
OV=ov${SEG:+-$SEG}
# The overlay is made again by every other cloudlet binary (the writer is
# linked into it) and when the format changes: an overlay of an older
# writer would be measured otherwise.
OVKEY=$({ sha256sum <"$cloudlet"; cat "$src/docs/FORMAT.md"; } | sha256sum | cut -c1-16)
if [ ! -s "$BW/www/$OV/overlay-meta" ] || [ "$(cat "$BW/$OV.key" 2>/dev/null)" != "$OVKEY" ]; then
	rm -rf "${BW:?}/www/$OV"
	CLOUDLET_HOME=$BW/home "$cloudlet" overlay "$W/base/disk.img" --disk "$BW/custom/disk.img" \
		--memory "$BW/custom/memory.img" --state "$BW/custom/state" --domain "$BW/custom/domain.xml" \
		${SEG:+-S "$SEG"} -o "$BW/www/$OV" | tee "$BW/$OV.txt"
	echo "$OVKEY" >"$BW/$OV.key"
fi
PACK=$(stat -c %s "$BW/www/$OV/overlay-blob")
[ "$PACK" -ge $((100 << 20)) ] || cl_die "the overlay is only $PACK bytes; the benchmark wants 100 MiB"

# --- the link -----------------------------------------------------------------
export CLOUDLET_HOME=$BW/home
cl_at_exit cl_nginx_stop
cl_nginx_start "$BW/nginx" "$BW/www" || cl_die "nginx did not start"
URL=http://127.0.0.1:$NGINX_PORT/$OV/overlay-meta
cl_at_exit "cl_link_unshape $NGINX_PORT"
cl_link_require "$NGINX_PORT" "$RATE"

# --- runs -----------------------------------------------------------------------
now() { date +%s.%N; }
link_bytes() { cl_link_bytes "$NGINX_PORT"; }
# The link's rate in bytes per second, from tc's units (kbit, mbit, gbit: powers of 1000).
rate_bytes() {
	awk -v r="$RATE" 'BEGIN { if (!match(r, /^[0-9]*\.?[0-9]+/)) exit 1
		n = substr(r, 1, RLENGTH) + 0; u = tolower(substr(r, RLENGTH + 1))
		m = u == "kbit" ? 1e3 : u == "mbit" ? 1e6 : u == "gbit" ? 1e9 : u == "bit" || u == "" ? 1 : -1
		if (m < 0) exit 1; printf "%.0f", n * m / 8 }'
}
RATE_BYTES=$(rate_bytes) || cl_die "--rate $RATE: use a number with kbit, mbit or gbit"

# run MODE [PROGRAM]: one synthesis with PROGRAM (default: this build's);
# MODE is KIND[-MEMORY_MODE], KIND early, eager (--no-early-start), limit
# (-o no_stream) or local (the overlay's directory, no link). Prints "MODE
# resume_s resume_bytes first_s first_bytes start_s complete_s pack_bytes"
# (complete_s 0 unless --memory-modes; pack_bytes: the pack bytes the mount
# had fetched at the first response).
run() {
	local mode=$1 prog=${2:-$cloudlet} name=${CL_PREFIX}run out t0 b0 tr br tf bf bp ds pid opt=() tc=0
	local kind=${mode%%-*} url=$URL
	case $kind in
	eager) opt=(--no-early-start) ;;
	limit) opt=(-o no_stream) ;;
	local) url=$BW/www/$OV ;;
	esac
	[ "$mode" = "${mode#*-}" ] || opt+=(--memory-mode "${mode#*-}")
	rm -rf "$CLOUDLET_HOME/cache"
	out=$BW/run.out
	b0=$(link_bytes)
	t0=$(now)
	"$prog" synthesis "$W/base/disk.img" "$url" --name "$name" "${opt[@]}" >"$out" 2>"$BW/run.err" </dev/null &
	pid=$!
	CL_HELPER_PIDS+=("$pid")
	until grep -q "VM resumed" "$out"; do
		kill -0 "$pid" 2>/dev/null || { cat "$out" "$BW/run.err" >&2; cl_die "synthesis ended early"; }
		sleep 0.02
	done
	tr=$(now)
	br=$(($(link_bytes) - b0))
	ds=$(sed -n 's/.*domain started in \([0-9.]*\) s.*/\1/p' "$out")
	[ -n "$ds" ] || cl_die "no 'domain started' line in the timeline: $(cat "$out")"
	$CL_GUESTCTL console-cmd "/run/cloudlet/$name/console.sock" 600 "$HOT_CMD" >"$BW/answer" ||
		cl_die "the guest did not answer"
	tf=$(now)
	bf=$(($(link_bytes) - b0))
	bp=$(sed -n 's|^bytes: \([0-9]*\)/.*|\1|p' "/run/cloudlet/$name/mnt/status")
	if [ "$VERBOSE" = 1 ]; then
		{ cat "/run/cloudlet/$name/mnt/status"
		  for im in disk memory; do
			for f in demand_fetches chunk_fetches chunks_accessed chunks_fetched; do
				echo "$im $f $(cat "/run/cloudlet/$name/mnt/$im/stats/$f")"
			done
		  done; } >&2
	fi
	# Only the checksum lines: a kernel message may be printed amid the output.
	grep -E '^[0-9a-f]{32}  /' "$BW/answer" >"$BW/answer.md5" || true
	diff -q "$BW/hot.md5" "$BW/answer.md5" >/dev/null ||
		{ diff "$BW/hot.md5" "$BW/answer" >&2; cat "/run/cloudlet/$name/mnt/status" >&2; cl_die "$mode: the guest's checksums differ"; }
	if [ -n "$MEMS" ] && [ "$kind" != limit ]; then
		for _ in $(seq 6000); do grep -q "overlay complete" "$out" && break; sleep 0.1; done
		grep -q "overlay complete" "$out" || cl_die "$mode: the overlay not complete in 600 s"
		tc=$(sed -n 's/^\[ *\([0-9.]*\) s\] overlay complete.*/\1/p' "$out" | head -1)
	fi
	kill -TERM "$pid"
	cl_wait_helper "$pid" || cl_die "synthesis exited non-zero: $(cat "$BW/run.err")"
	echo "$mode $(echo "$tr - $t0" | bc) $br $(echo "$tf - $t0" | bc) $bf $ds $tc $bp"
}

# Whole numbers stay whole (awk's default print of 1e8 is 1e+08).
median() { sort -g | awk '{a[NR]=$1} END {v = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf (v == int(v) ? "%d\n" : "%.4f\n"), v}'; }

modes=(early eager)
if [ -n "$MEMS" ]; then
	modes=()
	for m in $MEMS; do modes+=("early-$m" "eager-$m" "limit-$m" "local-$m"); done
	old_uffd=$(cat /proc/sys/vm/unprivileged_userfaultfd)
	cl_at_exit "echo $old_uffd >/proc/sys/vm/unprivileged_userfaultfd"
	echo 1 >/proc/sys/vm/unprivileged_userfaultfd
fi
declare -A PROG=()
if [ -n "$REF" ]; then
	refc=$(git -C "$src" rev-parse --short "$REF")
	RT=$(mktemp -d /var/tmp/cl-bench-vm-ref.XXXXXX)
	cl_at_exit "rm -rf $RT"
	cl_log "building $REF ($refc) in $RT"
	mkdir -p "$RT/src"
	git -C "$src" archive "$refc" | tar -x -C "$RT/src"
	cmake -S "$RT/src" -B "$RT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$RT/build" -j"$(nproc)" --target cloudlet cloudletfs >/dev/null
	modes=("$refc" new)
	PROG=([$refc]=$RT/build/cloudlet [new]=$cloudlet)
fi
echo "commit $(git -C "$src" describe --always --dirty 2>/dev/null || echo unknown)${REF:+ against $REF}, kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "overlay $OV: $PACK bytes of pack, link $RATE (HTB on lo), $RUNS runs per mode"
printf '%-14s %9s %12s %9s %12s %8s%s\n' mode resume_s resume_bytes first_s first_bytes start_s \
	"${MEMS:+  complete_s   pack_bytes}"
res=$BW/results
: >"$res"
for _ in $(seq 1 "$RUNS"); do
	for mode in "${modes[@]}"; do
		if [ -n "$REF" ]; then
			line="$mode $(run early "${PROG[$mode]}" | cut -d' ' -f2-)"
		else
			line=$(run "$mode")
		fi
		echo "$line" >>"$res"
		read -r -a f <<<"$line"
		printf '%-14s %9.2f %12d %9.2f %12d %8.2f' "${f[@]:0:6}"
		[ -z "$MEMS" ] || printf '  %10.2f %12d' "${f[@]:6:2}"
		echo
	done
done
med_of() { awk -v m="$1" -v c="$2" '$1==m {print $c}' "$res" | median; }
for mode in "${modes[@]}"; do
	printf '%-14s median: domain start %.2f s, resume %.2f s (%.0f bytes), first response %.2f s (%.0f bytes)%s\n' "$mode" \
		"$(med_of "$mode" 6)" "$(med_of "$mode" 2)" "$(med_of "$mode" 3)" "$(med_of "$mode" 4)" \
		"$(med_of "$mode" 5)" "$([ -n "$MEMS" ] && printf ', overlay complete %.2f s' "$(med_of "$mode" 7)")"
done
if [ -n "$MEMS" ]; then
	for m in $MEMS; do
		printf '%s: early/eager time to first response %.3f\n' "$m" \
			"$(echo "$(med_of "early-$m" 4) / $(med_of "eager-$m" 4)" | bc -l)"
		lim=$(echo "$(med_of "limit-$m" 8) / $RATE_BYTES + $(med_of "local-$m" 2)" | bc -l)
		printf '%s: physical limit of the first response %.2f s (%.0f pack bytes without the stream at %d B/s + local resume %.2f s); first response / limit %.3f%s\n' \
			"$m" "$lim" "$(med_of "limit-$m" 8)" "$RATE_BYTES" "$(med_of "local-$m" 2)" \
			"$(echo "$(med_of "early-$m" 4) / $lim" | bc -l)" "$([ "$m" = postcopy ] && echo ' (goal <= 1.5)')"
	done
	if [ "$MEMS" = "postcopy mmap" ]; then
		printf 'postcopy/mmap, early start: first response %.3f, bytes before it %.3f (goal <= 0.35), overlay complete %.3f (goal <= 1.1)\n' \
			"$(echo "$(med_of early-postcopy 4) / $(med_of early-mmap 4)" | bc -l)" \
			"$(echo "$(med_of early-postcopy 5) / $(med_of early-mmap 5)" | bc -l)" \
			"$(echo "$(med_of early-postcopy 7) / $(med_of early-mmap 7)" | bc -l)"
		printf 'postcopy/mmap, no stream (-o no_stream): bytes before the first response %.3f\n' \
			"$(echo "$(med_of limit-postcopy 5) / $(med_of limit-mmap 5)" | bc -l)"
	fi
	exit 0
fi
e=$(awk -v m="${modes[0]}" '$1==m {print $4}' "$res" | median)
l=$(awk -v m="${modes[1]}" '$1==m {print $4}' "$res" | median)
if [ -n "$REF" ]; then
	printf 'first response, this build / %s: %.3f\n' "$refc" "$(echo "$l / $e" | bc -l)"
else
	printf 'early/eager time to first response: %.3f (goal <= 0.2)\n' "$(echo "$e / $l" | bc -l)"
fi
exit
}
