#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# `cloudlet overlay --disk X.qcow2` reads the qcow2's allocation map (qemu-img
# map) instead of a converted raw disk, and must give the same overlay:
#  (a) guest-like writes through qemu-io (aligned, unaligned, across chunks,
#      copies of base chunks, past the base's end): meta and pack are
#      byte-identical to those made from `qemu-img convert` output;
#  (b) a qcow2 with nothing written: the same (empty) overlay;
#  (c) discards and zero writes, RAM holes where the base has data: the pack
#      and the records are identical to the convert path's, `cloudlet apply`
#      gives the converted disk byte for byte, and the meta counts the chunks
#      left out (`cloudlet info`);
#  (d) refusals: a qcow2 backed by another file, a qcow2 without a backing
#      file; one line naming the file, exit 1.
# No guest needed; needs qemu-img and qemu-io (package qemu-utils).
set -euo pipefail
# shellcheck source=tests/lib/skip.sh
source "$(dirname "$0")/../lib/skip.sh"

C=${CLOUDLET:?CLOUDLET is not set (run through ctest)}
command -v qemu-img >/dev/null && command -v qemu-io >/dev/null ||
	cl_skip_test "qemu-img and qemu-io are needed (apt-get install qemu-utils)"
command -v python3 >/dev/null || cl_skip_test "python3 is not installed"

T=$(mktemp -d "${TMPDIR:-/tmp}/cl-qcow2.XXXXXX")
T=$(cd "$T" && pwd -P)
trap 'rm -rf "$T"' EXIT
trap 'exit 143' TERM INT HUP
export CLOUDLET_HOME=$T/home
CASE=setup
fail() {
	echo "FAIL [$CASE]: $*" >&2
	[ -s "$T/err" ] && sed 's/^/  stderr: /' "$T/err" >&2
	exit 1
}
ok() { echo "ok [$CASE] $*"; }
cl() { "$C" -q "$@" >"$T/out" 2>"$T/err"; }
qio() { qemu-io -f qcow2 "$@" >/dev/null || fail "qemu-io $*"; }

# Base: 8 MiB disk (6 MiB seeded random data, a 2 MiB hole), 4 MiB RAM.
python3 - "$T" <<'PY'
import random, sys
t = sys.argv[1]
r = random.Random(6)
with open(t + "/base.img", "wb") as f:
    f.write(r.randbytes(6 << 20)); f.truncate(8 << 20)
with open(t + "/base.mem", "wb") as f:
    f.write(r.randbytes(3 << 20)); f.truncate(4 << 20)
with open(t + "/chunk.bin", "wb") as f:   # a copy of base disk chunk 5
    f.write(open(t + "/base.img", "rb").read()[5 * 4096:6 * 4096])
PY
cl base "$T/base.img" --memory "$T/base.mem" || fail "cloudlet base"

# Makes overlays from $1 (qcow2) both ways: $T/q (map) and $T/c (convert).
both() {
	rm -rf "$T/q" "$T/c" "$T/conv.img"
	cl overlay "$T/base.img" --disk "$1" --memory "$2" -o "$T/q" || fail "overlay from qcow2"
	cp "$T/out" "$T/q.txt"
	qemu-img convert -f qcow2 -O raw "$1" "$T/conv.img"
	cl overlay "$T/base.img" --disk "$T/conv.img" --memory "$2" -o "$T/c" ||
		fail "overlay from the converted disk"
	cmp "$T/q/overlay-blob" "$T/c/overlay-blob" || fail "packs differ"
	cl apply "$T/base.img" "$T/q" -o "$T/out.q" || fail "apply"
	cmp "$T/out.q/disk.img" "$T/conv.img" || fail "synthesized disk differs from the qcow2's"
	cmp "$T/out.q/memory.img" "$2" || fail "synthesized memory differs"
	cl verify "$T/base.img" "$T/q" || fail "verify"
}

CASE=writes
cp "$T/base.mem" "$T/a.mem"
printf 'ram' | dd of="$T/a.mem" bs=1 seek=12345 conv=notrunc status=none
qemu-img create -q -f qcow2 -F raw -b "$T/base.img" "$T/a.qcow2" 16M
qio -c 'write -P 0x22 8k 4k' -c 'write -P 0x33 3M 100k' -c 'write -P 0x44 5000 1000' \
	-c 'write -P 0x55 126k 8k' -c 'write -s '"$T/chunk.bin"' 7M 4k' \
	-c 'write -P 0x66 12M 12k' "$T/a.qcow2"
both "$T/a.qcow2" "$T/a.mem"
cmp "$T/q/overlay-meta" "$T/c/overlay-meta" || fail "metas differ"
ok "16 MiB qcow2 on an 8 MiB base: meta and pack identical to the convert path, apply exact"
grep -q "left out" "$T/q.txt" && fail "chunks counted as left out with nothing discarded"
"$C" info --json "$T/q" | grep -q '"base-disk":[1-9]' || fail "no base-disk record (the copied chunk)"
ok "copied base chunk found, nothing left out"

CASE=unchanged
qemu-img create -q -f qcow2 -F raw -b "$T/base.img" "$T/u.qcow2"
both "$T/u.qcow2" "$T/base.mem"
cmp "$T/q/overlay-meta" "$T/c/overlay-meta" || fail "metas differ"
ok "a qcow2 with nothing written: the same empty overlay"

CASE=discard
cp "$T/base.mem" "$T/b.mem"
fallocate --punch-hole --offset 1M --length 256K "$T/b.mem" # freed RAM: 64 chunks
fallocate --punch-hole --offset 3584K --length 64K "$T/b.mem" # a hole in the base's zeros
qemu-img create -q -f qcow2 -F raw -b "$T/base.img" "$T/b.qcow2"
qio -c 'write -P 0x22 0 256k' -c 'discard 0 128k' -c 'write -z 1M 64k' -c 'discard 2M 128k' \
	-c 'discard 6M 64k' -c 'write -P 0x77 4M 64k' "$T/b.qcow2"
both "$T/b.qcow2" "$T/b.mem"
ok "pack identical to the convert path, apply exact"
"$C" info --json "$T/q" >"$T/q.json"
"$C" info --json "$T/c" >"$T/c.json"
strip() { sed -e 's/"overlay_id":"[0-9a-f]*",//' -e 's/,"left_out":[0-9]*//g' -e 's/"meta":"[^"]*",//' "$1"; }
[ "$(strip "$T/q.json")" = "$(strip "$T/c.json")" ] || { diff <(strip "$T/q.json") <(strip "$T/c.json"); fail "records differ"; }
ok "same records per recipe as the convert path"
# Discarded: 0-128k (32), 1M+64k (16), 2M+128k (32), 6M+64k (16, in the
# base's hole: no record, still counted). Freed RAM where the base has data:
# 64 (the hole at 3584K lies in the base's zeros).
[ "$(grep -o '"left_out":[0-9]*' "$T/q.json" | cut -d: -f2 | tr '\n' ' ')" = "96 64 " ] || fail "left_out: $(cat "$T/q.json")"
cl info "$T/q" || fail "info"
grep -q "^left out    memory 64 chunks freed, disk 96 chunks discarded" "$T/out" || fail "info does not show the chunks left out: $(cat "$T/out")"
ok "96 discarded disk chunks and 64 freed memory chunks counted"

CASE=refusals
python3 -c "open('$T/other.img','wb').truncate(8<<20)"
qemu-img create -q -f qcow2 -F raw -b "$T/other.img" "$T/o.qcow2"
cl overlay "$T/base.img" --disk "$T/o.qcow2" --memory "$T/b.mem" -o "$T/x" && fail "accepted a foreign backing file"
grep -q "o.qcow2: its backing file is .*other.img, not the base's disk" "$T/err" || fail "message: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" = 1 ] || fail "not one line: $(cat "$T/err")"
qemu-img create -q -f qcow2 "$T/n.qcow2" 8M
cl overlay "$T/base.img" --disk "$T/n.qcow2" --memory "$T/b.mem" -o "$T/x" && fail "accepted a qcow2 without backing"
grep -q "n.qcow2: a qcow2 file without a backing file" "$T/err" || fail "message: $(cat "$T/err")"
[ ! -e "$T/x/overlay-meta" ] || fail "an overlay was written"
ok "foreign backing and no backing refused"
echo PASS
