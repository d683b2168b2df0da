#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The demo: installs dependencies, builds, builds the real test guest and its
# base/customized snapshot pair, then makes an overlay of the customized VM,
# synthesizes it back and shows the figures. Usage: tests/demo.sh [BUILD_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}

bash "$src/tests/install-deps.sh"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
cloudlet=$build/cloudlet
export CLOUDLET=$cloudlet # lib.sh checks the host with it

echo "== building the test guest and its snapshots (a few minutes the first time)"
bash "$src/tests/guest/make-workload.sh" --cached "$build/guest"
w=$build/guest
export CLOUDLET_HOME=$build/demo/home
out=$build/demo
rm -rf "$out/overlay" "$out/synthesized"

echo "== cloudlet base"
"$cloudlet" base "$w/base/disk.img" --memory "$w/base/memory.img" \
	--state "$w/base/state" --domain "$w/base/domain.xml"
echo "== cloudlet overlay"
"$cloudlet" overlay "$w/base/disk.img" --disk "$w/custom/disk.img" \
	--memory "$w/custom/memory.img" --state "$w/custom/state" \
	--domain "$w/custom/domain.xml" -o "$out/overlay"
echo "== cloudlet apply"
"$cloudlet" apply "$w/base/disk.img" "$out/overlay" -o "$out/synthesized"
for f in disk.img memory.img state domain.xml; do
	cmp "$out/synthesized/$f" "$w/custom/$f"
done
echo "synthesized files are byte-identical to the customized VM's"
echo "== cloudlet info"
"$cloudlet" info "$out/overlay"
total=$(($(stat -c %s "$w/custom/disk.img") + $(stat -c %s "$w/custom/memory.img")))
ov=$(($(stat -c %s "$out/overlay/overlay-meta") + $(stat -c %s "$out/overlay/overlay-blob")))
echo "overlay: $ov bytes for a VM of $total bytes ($(awk "BEGIN{printf \"%.2f\", 100*$ov/$total}")%)"
