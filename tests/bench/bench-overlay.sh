#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Overlay size, creation time and apply time of cloudlet on the real-guest
# reference workload, side by side with the baselines of issue 2:
#   size:  per image `xdelta3 -9 -B <image size> -s BASE NEW | xz -9` (Elijah 2009)
#   apply: decoding the same pack's segments with the xz (zstd) program plus
#          `cp --sparse=always` of the resulting images, plus sync (cloudlet
#          apply fsyncs its outputs, so the baseline pays for writeback too).
# Page cache dropped before every timed step; apply times are the median of
# three runs. Prints a markdown report.
# Usage: tests/bench/bench-overlay.sh [BUILD_DIR]   (builds the workload if needed)
set -euo pipefail
# One block, read whole before it runs: bash reads a script as it goes, and
# this one runs for minutes while the tree may change.
{
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
cloudlet=$build/cloudlet
W=$build/guest
[ -x "$cloudlet" ] || { echo "build first: cmake --build $build" >&2; exit 1; }
bash "$src/tests/guest/make-workload.sh" --cached "$W" >/dev/null
source "$src/tests/guest/lib.sh"
cl_use_workload "$W" # held shared: no eviction or rebuild meanwhile

T=$(mktemp -d /var/tmp/cl-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
export CLOUDLET_HOME=$T/home

drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
# t CMD...: runs CMD with a cold cache, prints its wall time in seconds.
t() {
	local s e
	drop
	s=$(date +%s.%N)
	"$@" >/dev/null
	e=$(date +%s.%N)
	echo "$e - $s" | bc -l | xargs printf '%.2f'
}
# tm CMD...: the median of three cold-cache runs (single runs vary by 50%).
tm() {
	local a b c
	a=$(t "$@") b=$(t "$@") c=$(t "$@")
	printf '%s\n%s\n%s\n' "$a" "$b" "$c" | sort -n | sed -n 2p
}
sz() { stat -c %s "$@" | paste -sd+ | bc; }
mib() { echo "$1 / 1048576" | bc -l | xargs printf '%.1f'; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }

base_d=$W/base/disk.img base_m=$W/base/memory.img
new_d=$W/custom/disk.img new_m=$W/custom/memory.img
"$cloudlet" -q base "$base_d" --memory "$base_m" --state "$W/base/state" --domain "$W/base/domain.xml" >/dev/null

declare -A create size apply base_apply
for codec in xz zstd; do
	create[$codec]=$(t "$cloudlet" -q overlay "$base_d" --disk "$new_d" --memory "$new_m" \
		--state "$W/custom/state" --domain "$W/custom/domain.xml" -o "$T/ov-$codec" --codec "$codec")
	size[$codec]=$(sz "$T/ov-$codec/overlay-meta" "$T/ov-$codec/overlay-blob")
	apply[$codec]=$(tm "$cloudlet" -q apply "$base_d" "$T/ov-$codec" -o "$T/out-$codec")
	cmp "$T/out-$codec/disk.img" "$new_d" && cmp "$T/out-$codec/memory.img" "$new_m"
	rm -rf "$T/out-$codec"
	# Concatenated .xz streams and zstd frames decode as one input.
	base_apply[$codec]=$(tm bash -c "$codec -dc '$T/ov-$codec/overlay-blob' >/dev/null &&
		cp --sparse=always '$new_d' '$T/cp-disk' && cp --sparse=always '$new_m' '$T/cp-mem' && sync")
	rm -f "$T/cp-disk" "$T/cp-mem"
done

xd() { # image base new -> bytes of xdelta3 -9 | xz -9
	local s
	s=$(stat -c %s "$1")
	xdelta3 -e -9 -c -B "$s" -s "$1" "$2" | xz -9 -T1 >"$T/xd.$3"
}
xd_time=$( { t xd "$base_d" "$new_d" disk; } )
xm_time=$( { t xd "$base_m" "$new_m" mem; } )
xd_size=$(sz "$T/xd.disk") xm_size=$(sz "$T/xd.mem")
xtotal=$((xd_size + xm_size))

cat <<MD
Workload: $(mib "$(stat -c %s "$new_d")") MiB disk + $(mib "$(stat -c %s "$new_m")") MiB memory (the real-guest
reference workload of tests/guest/make-workload.sh), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC'),
commit $(git -C "$src" describe --always --dirty 2>/dev/null || echo unknown), kernel $(uname -r).

| | overlay size | vs baseline | create (s) | apply (s) | baseline apply (s) | apply / baseline |
|---|---|---|---|---|---|---|
| xdelta3 -9 + xz -9 (baseline) | $(mib $xtotal) MiB (disk $(mib $xd_size), memory $(mib $xm_size)) | 1.00 | $(echo "$xd_time + $xm_time" | bc) | | | |
| cloudlet, xz | $(mib ${size[xz]}) MiB | $(ratio ${size[xz]} $xtotal) | ${create[xz]} | ${apply[xz]} | ${base_apply[xz]} | $(ratio ${apply[xz]} ${base_apply[xz]}) |
| cloudlet, zstd | $(mib ${size[zstd]}) MiB | $(ratio ${size[zstd]} $xtotal) | ${create[zstd]} | ${apply[zstd]} | ${base_apply[zstd]} | $(ratio ${apply[zstd]} ${base_apply[zstd]}) |

Recipes (xz overlay):
\`\`\`
$("$cloudlet" info "$T/ov-xz" | sed -n '/^recipe/,$p')
\`\`\`
MD
exit
}
