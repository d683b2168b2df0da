#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# bench-verify.sh: what checking every base byte costs (issue 12): this build
# against a baseline, side by side in one run, on the real-guest reference
# workload. The baseline by default is this source built with
# CL_BENCH_NO_BASE_HASH (base chunks read the same way, not hashed: the
# hashing's own cost, nothing else); --ref REF makes it a build of commit REF
# instead (85cc6b4 is the commit before base checks; changes since then are
# then in the figure too). Measured:
#   seq     fio sequential 1 MiB reads of disk/image and of memory/image
#           through a complete mount (MB/s; the base chunks the overlay
#           leaves unchanged are checked on their first read of each mount),
#   rnd     fio random 4 KiB reads of disk/image, 1 thread (IOPS),
#   apply   `cloudlet apply` of the xz overlay (seconds: wall, and CPU time
#           of the process, user + system, all threads).
# Two page-cache modes, each its own table:
#   cold  the page cache dropped before each mount and each apply (every
#         base, cache and index byte comes from the disk; the new mount
#         streams the whole index for its check, so the index is cached
#         when the reads come, as in use);
#   warm  dropped, then the base images, the registered base files and the
#         mount's cache read back in: the hashing's own cost, without the
#         disk's noise (a cloudlet keeps its bases hot).
# Each read runs on a fresh mount over a filled cache (nothing fetched,
# every base chunk unchecked again); the mount's own time is reported apart.
# A sequential sample is SEQ_READS (default 5) such reads, each on a fresh
# mount, taken together (their bytes over their summed time): one read of
# the memory image takes about 0.2 s here, too short to measure alone.
# Also the daemon's CPU time (user + system, from /proc) per GiB of the
# sequential reads and per random read. Baseline and build alternate, RUNS
# pairs (default 3); each row gives the medians and the cost as the median of
# the pairs' costs with their range (a pair ran back to back, so a slow
# minute of a shared machine moves both). Goal: at most GOAL% (default 10)
# slower; with --ref and --goal the same table compares any two commits
# (issue 13: the layout change, --ref 5db45dc --goal 5).
# Needs root, fio, git.
# Usage: tests/bench/bench-verify.sh [-r RUNS] [--ref REF] [--goal PCT] BUILD_DIR
set -euo pipefail
# One block, read whole before it runs: bash reads a script as it goes, and
# this one runs for minutes while the tree may change.
{
src=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=3
SEQ_READS=${SEQ_READS:-5}
REF=
GOAL=10
while [ $# -gt 1 ]; do
	case $1 in
	-r) RUNS=$2; shift 2 ;;
	--ref) REF=$2; shift 2 ;;
	--goal) GOAL=$2; shift 2 ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || { echo "usage: $0 [-r RUNS] [--ref REF] [--goal PCT] BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
[ "$(id -u)" = 0 ] || { echo "bench-verify.sh: needs root (drop_caches, mounts)" >&2; exit 1; }
command -v fio >/dev/null || { echo "bench-verify.sh: apt-get install fio" >&2; exit 1; }
[ -x "$build/cloudlet" ] && [ -x "$build/cloudletfs" ] || { echo "build $build first" >&2; exit 1; }
log() { echo "bench-verify: $*" >&2; }
MODE=cold
# Drops the page cache; in warm mode reads build V's base and cache back.
drop() {
	local v=${1:-}
	sync
	echo 3 >/proc/sys/vm/drop_caches
	[ "$MODE" = warm ] && [ -n "$v" ] || return 0
	find "$W/base" "$T/$v/home/bases" "$T/$v/cache" -type f -exec cat {} + >/dev/null
}
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

W=$build/guest
bash "$src/tests/guest/make-workload.sh" --cached "$W" >/dev/null
source "$src/tests/guest/lib.sh"
cl_use_workload "$W" # held shared: no eviction or rebuild meanwhile
T=$(mktemp -d /var/tmp/cl-bench-verify.XXXXXX)
MOUNTS=()
cleanup() {
	local m
	for m in "${MOUNTS[@]}"; do
		grep -q " $m fuse" /proc/mounts && { "$build/cloudlet" -q umount "$m" || umount -l "$m"; }
	done
	rm -rf "$T"
}
trap cleanup EXIT

if [ -n "$REF" ]; then
	refc=$(git -C "$src" rev-parse --short "$REF")
	base_name=$refc
	log "building $REF ($refc) in $T/old"
	mkdir -p "$T/old/src"
	git -C "$src" archive "$refc" | tar -x -C "$T/old/src"
	cmake -S "$T/old/src" -B "$T/old/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
else
	base_name="no hashing"
	log "building this source with CL_BENCH_NO_BASE_HASH in $T/old"
	cmake -S "$src" -B "$T/old/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCL_BENCH_NO_BASE_HASH=ON \
		>/dev/null 2>&1
fi
cmake --build "$T/old/build" -j"$(nproc)" --target cloudlet cloudletfs >/dev/null
declare -A BIN=([old]=$T/old/build [new]=$build)

# Each build registers the base and makes the overlay in a home of its own.
for v in old new; do
	export CLOUDLET_HOME=$T/$v/home
	"${BIN[$v]}/cloudlet" -q base "$W/base/disk.img" --memory "$W/base/memory.img" \
		--state "$W/base/state" --domain "$W/base/domain.xml" >/dev/null
	"${BIN[$v]}/cloudlet" -q overlay "$W/base/disk.img" --disk "$W/custom/disk.img" \
		--memory "$W/custom/memory.img" --state "$W/custom/state" \
		--domain "$W/custom/domain.xml" -o "$T/$v/ov" >/dev/null
	# Fill the cache once.
	M=$T/$v/mnt
	mkdir -p "$M"
	MOUNTS+=("$M")
	"${BIN[$v]}/cloudlet" -q mount "$W/base/disk.img" "$T/$v/ov" "$M" -o cache_dir="$T/$v/cache"
	for i in $(seq 600); do grep -q '^state: complete' "$M/status" && break; sleep 0.1; done
	grep -q '^state: complete' "$M/status" || { log "$v: not complete"; exit 1; }
	cmp "$M/disk/image" "$W/custom/disk.img" && cmp "$M/memory/image" "$W/custom/memory.img" ||
		{ log "$v: the mount serves wrong bytes"; exit 1; }
	"${BIN[$v]}/cloudlet" -q umount "$M"
done

# The daemon's CPU time so far (seconds, all its threads; schedstat counts
# nanoseconds where stat counts ticks of 10 ms).
daemon_cpu() {
	cat /proc/"$1"/task/*/schedstat | awk '{ns += $1} END {printf "%.6f\n", ns / 1e9}'
}

# fio_read V IMAGE ARGS...: one fio job through a new mount of build V; prints
# MB/s or IOPS, and the daemon's CPU seconds during the job.
fio_read() {
	local v=$1 im=$2 what=$3 M t0 pid c0 res
	shift 3
	M=$T/$v/mnt
	export CLOUDLET_HOME=$T/$v/home
	drop "$v"
	t0=$(date +%s.%N)
	"${BIN[$v]}/cloudlet" -q mount "$W/base/disk.img" "$T/$v/ov" "$M" -o cache_dir="$T/$v/cache"
	echo "$(date +%s.%N) - $t0" | bc >>"$T/$v/mount_s.$MODE"
	pid=$(pgrep -n -x cloudletfs)
	c0=$(daemon_cpu "$pid")
	res=$(fio --name=b --filename="$M/$im/image" --readonly --ioengine=psync --output-format=json "$@" |
		python3 -c 'import json, sys
s = sys.stdin.read(); r = json.loads(s[s.index("{"):])["jobs"][0]["read"]
print("%.1f" % (r["bw_bytes"] / 1e6) if sys.argv[1] == "mb" else "%.0f" % r["iops"])' "$what")
	echo "$res $(echo "$(daemon_cpu "$pid") - $c0" | bc -l)"
	"${BIN[$v]}/cloudlet" -q umount "$M"
}
# seq_read V IMAGE: SEQ_READS sequential reads of IMAGE, each on a fresh
# mount; prints their MB/s taken together and the daemon's CPU seconds per
# read.
seq_read() {
	local i x inv=0 cpu=0
	for i in $(seq "$SEQ_READS"); do
		x=$(fio_read "$1" "$2" mb --rw=read --bs=1M)
		inv=$(echo "$inv + 1 / ${x% *}" | bc -l)
		cpu=$(echo "$cpu + ${x#* }" | bc -l)
	done
	echo "$(echo "$SEQ_READS / $inv" | bc -l) $(echo "$cpu / $SEQ_READS" | bc -l)"
}
# apply_s V: wall and CPU (user + system) seconds of one `cloudlet apply`.
# The CPU time is the steadier figure: the wall time of writing ~1 GiB into
# the page cache swings by tens of percent between runs of one binary here.
apply_s() {
	local v=$1 t TIMEFORMAT='%R %U %S'
	export CLOUDLET_HOME=$T/$v/home
	rm -rf "$T/$v/out"
	drop "$v"
	t=$({ time "${BIN[$v]}/cloudlet" -q apply "$W/base/disk.img" "$T/$v/ov" -o "$T/$v/out" \
		>/dev/null 2>"$T/$v/apply.err"; } 2>&1) || { cat "$T/$v/apply.err" >&2; return 1; }
	awk '{printf "%s %.3f\n", $1, $2 + $3}' <<<"$t"
}

DISK_BYTES=$(stat -c %s "$W/custom/disk.img")
MEM_BYTES=$(stat -c %s "$W/custom/memory.img")
declare -A R
run_mode() {
	local i v x
	for i in $(seq "$RUNS"); do
		for v in old new; do
			log "$MODE run $i: $v"
			x=$(seq_read $v disk)
			R[$v,seqd]="${R[$v,seqd]:-} ${x% *}"
			R[$v,cpud]="${R[$v,cpud]:-} $(echo "${x#* } * 2^30 / $DISK_BYTES" | bc -l)"
			x=$(seq_read $v memory)
			R[$v,seqm]="${R[$v,seqm]:-} ${x% *}"
			R[$v,cpum]="${R[$v,cpum]:-} $(echo "${x#* } * 2^30 / $MEM_BYTES" | bc -l)"
			x=$(fio_read $v disk io --rw=randread --bs=4k --number_ios=20000)
			R[$v,rnd]="${R[$v,rnd]:-} ${x% *}"
			R[$v,cpur]="${R[$v,cpur]:-} $(echo "${x#* } * 1000000 / 20000" | bc -l)"
			x=$(apply_s $v)
			R[$v,apply]="${R[$v,apply]:-} ${x% *}"
			R[$v,applycpu]="${R[$v,applycpu]:-} ${x#* }"
		done
	done
}

# pair_costs KEY HIGHER_IS_BETTER: the cost (%) of each run pair, one per line.
pair_costs() {
	paste <(tr ' ' '\n' <<<"${R[old,$1]}" | sed '/^$/d') <(tr ' ' '\n' <<<"${R[new,$1]}" | sed '/^$/d') |
		awk -v h="$2" '{ printf "%.4f\n", h == 1 ? 100 * ($1 - $2) / $1 : 100 * ($2 - $1) / $1 }'
}
row() { # NAME KEY HIGHER_IS_BETTER
	local o n c lo hi
	# shellcheck disable=SC2086 # word splitting wanted
	o=$(med ${R[old,$2]})
	# shellcheck disable=SC2086
	n=$(med ${R[new,$2]})
	# shellcheck disable=SC2046
	c=$(med $(pair_costs "$2" "$3"))
	lo=$(pair_costs "$2" "$3" | sort -g | head -1)
	hi=$(pair_costs "$2" "$3" | sort -g | tail -1)
	printf '| %s | %.4g | %.4g | %+.1f%% (%+.1f .. %+.1f) | %s |\n' "$1" "$o" "$n" "$c" "$lo" "$hi" \
		"$([ "$(echo "$c <= $GOAL" | bc)" = 1 ] && echo met || echo '**not met**')"
}

echo "commit $(git -C "$src" describe --always --dirty) against ${REF:-this source without base hashing} ($base_name), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC'), $RUNS pairs, $SEQ_READS reads per sequential sample"
for MODE in cold warm; do
	R=()
	run_mode
	R[old,mount]=$(cat "$T/old/mount_s.$MODE")
	R[new,mount]=$(cat "$T/new/mount_s.$MODE")
	echo
	echo "Page cache $MODE:"
	echo
	echo "| | $base_name | this build | cost: median of pairs (range) | goal: cost <= $GOAL% |"
	echo "|---|---|---|---|---|"
	row "disk/image sequential 1 MiB (MB/s)" seqd 1
	row "memory/image sequential 1 MiB (MB/s)" seqm 1
	row "disk/image random 4 KiB, 1 thread (IOPS)" rnd 1
	row "cloudlet apply, xz (s)" apply 0
	row "cloudlet apply, xz, CPU user + system (s)" applycpu 0
	row "cloudlet mount, cache filled (s)" mount 0
	row "daemon CPU per GiB read, disk/image sequential (s)" cpud 0
	row "daemon CPU per GiB read, memory/image sequential (s)" cpum 0
	row "daemon CPU per 4 KiB random read (µs)" cpur 0
done
exit
}
