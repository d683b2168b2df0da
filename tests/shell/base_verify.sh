#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Base bytes are checked (issue 12, part 2), with the real programs and a
# real FUSE mount, on a generated base whose images change in place with
# their mtime kept (`touch -r`), which the base's size-and-mtime check
# cannot see:
#  - one base disk chunk U that the overlay leaves unchanged, one byte
#    flipped: reads of U through the mount fail with EIO, `status` names the
#    base file and the chunk, io_errors counts them, every other byte is
#    identical to a good `cloudlet apply`, and the daemon stays up;
#    `cloudlet apply` fails with one line naming the base file and chunk
#    and leaves nothing in its output directory; `cloudlet verify IMAGE
#    OVERLAY` fails naming it, `--quick` (which skips the base) passes,
#    `cloudlet verify IMAGE` (the base alone) fails naming it;
#  - the same with a hole punched (fallocate --punch-hole) at chunk H, where
#    the index says data;
#  - a damaged chunk that a delta is made against (byte flipped, mtime
#    kept): `cloudlet overlay` fails with one line naming it, nothing left,
#    an earlier overlay in its output directory unchanged;
#  - the base put back (mtime kept): apply and verify pass again;
#  - a large sparse base (an 80 MiB index): the daemon's RssAnon and VmHWM
#    stay under 32 MiB (the index is looked up in its file, never loaded).
# Exit 77 only where /dev/fuse is missing.
set -u
# shellcheck source=tests/lib/skip.sh
source "$(dirname "$0")/../lib/skip.sh"
[ -c /dev/fuse ] || cl_skip_test "/dev/fuse is missing"

C=${CLOUDLET:?CLOUDLET is not set (run through ctest)}
SRC=${CL_SOURCE_DIR:?CL_SOURCE_DIR is not set (run through ctest)}
# shellcheck source=tests/lib/clfs.sh
source "$SRC/tests/lib/clfs.sh"
# shellcheck source=tests/lib/nginx.sh
source "$SRC/tests/lib/nginx.sh" # cleanup stops an nginx; none is started here
FS=$(dirname "$C")/cloudletfs
PYLIB=$SRC/tests/lib/clfs.py
[ -x "$FS" ] || { echo "FAIL: $FS is not built"; exit 1; }
for p in python3 fallocate touch dd cmp; do
	command -v $p >/dev/null || { echo "FAIL: $p is needed"; exit 1; }
done
T=$(mktemp -d "${TMPDIR:-/tmp}/cl-base-verify.XXXXXX")
T=$(cd "$T" && pwd -P)
export CLOUDLET_HOME=$T/home
unset CLOUDLET_THREADS
DAEMONS=()
MP=
LOG=
CASE=setup
CLEANUP_HOOK=
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
CS=4096
B=$T/base.disk
META=$T/ov/overlay-meta

py gen "$T" 16 8 || fail "image generation"
cl base "$B" --memory "$T/base.mem" || fail "cloudlet base"
cl overlay "$B" --disk "$T/new.disk" --memory "$T/new.mem" --state "$T/state" -o "$T/ov" ||
	fail "cloudlet overlay"
cl apply "$B" "$T/ov" -o "$T/apply" || fail "cloudlet apply"
read -r U H < <(py basepick "$META" "$B") || fail "picking base chunks"
{ [ -n "$U" ] && [ -n "$H" ]; } || fail "no unchanged base chunks with data"
touch -r "$B" "$T/mtime" || fail "touch -r"
dd if="$B" of="$T/orig" bs=$CS skip="$U" count=1 status=none || fail "saving chunk $U"
dd if="$B" of="$T/orig.h" bs=$CS skip="$H" count=1 status=none || fail "saving chunk $H"
ok "base chunks U=$U H=$H"

# put_back: the saved chunks written back, the mtime as registered.
put_back() {
	dd if="$T/orig" of="$B" bs=$CS seek="$U" conv=notrunc status=none ||
		fail "putting chunk $U back"
	dd if="$T/orig.h" of="$B" bs=$CS seek="$H" conv=notrunc status=none ||
		fail "putting chunk $H back"
	touch -r "$T/mtime" "$B" || fail "putting the mtime back"
}

# damaged K WHAT: the base, changed at chunk K, mounted and applied.
damaged() {
	local k=$1 what=$2 name=${1} pid err
	CASE="$what: mount"
	mount_ov "c$k" "$META" no_cache
	pid=$(st pid)
	[ "$(stat_of disk io_errors)" = 0 ] || fail "io_errors before any read"
	py readchk "$MP" "$T/apply" EIO 0 10 "disk:$k" || fail "reads of base chunk $k"
	py readchk "$MP" "$T/apply" EIO 0 10 "disk:$k" || fail "second read of base chunk $k"
	# A read that starts at the chunk's last byte fails.
	timeout 10 python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    os.pread(fd, 2, int(sys.argv[2]))
except OSError as e:
    sys.exit(0 if e.errno == 5 else 1)
sys.exit(1)' "$MP/disk/image" $(((k + 1) * CS - 1)) || fail "a read from the last byte of chunk $k"
	grep -qF "reason: base $B chunk $name: $3" "$MP/status" ||
		fail "status does not name base $B chunk $k: $(grep reason "$MP/status")"
	err=$(stat_of disk io_errors)
	[ "$err" -ge 3 ] || fail "io_errors $err after 3 failed reads"
	alive_and_answering "$pid"
	py goodexcept "$MP" "$T/apply" "$META" "disk:$k" >"$T/out" 2>"$T/err" ||
		fail "other chunks: $(cat "$T/err")"
	ok "reads of chunk $k: EIO, named in status; $(cat "$T/out") identical to apply"
	cmp "$MP/memory/image" "$T/apply/memory.img" >/dev/null || fail "memory image differs"
	cmp "$MP/state" "$T/apply/state" >/dev/null || fail "state differs"
	alive_and_answering "$pid"
	umount_ov
	ok "daemon stayed up"

	CASE="$what: apply"
	mkdir -p "$T/out.$k"
	cl apply "$B" "$T/ov" -o "$T/out.$k" && fail "apply succeeded"
	[ "$(wc -l <"$T/err")" = 1 ] || fail "apply printed $(wc -l <"$T/err") lines"
	grep -qF "base $B chunk $name: $3" "$T/err" || fail "apply does not name base chunk $k"
	[ -z "$(ls -A "$T/out.$k")" ] || fail "apply left $(ls -A "$T/out.$k")"
	ok "$(cat "$T/err")"
	cl apply "$B" "$T/ov" -o "$T/new.$k" && fail "apply into a new directory succeeded"
	[ -e "$T/new.$k" ] && fail "apply left the directory it made"
	ok "no directory left by apply"

	CASE="$what: verify"
	cl verify "$B" "$T/ov" && fail "verify succeeded"
	grep -qF "base $B chunk $name: $3" "$T/err" || fail "verify does not name base chunk $k"
	ok "$(head -1 "$T/err")"
	cl verify --quick "$B" "$T/ov" || fail "verify --quick (it skips the base)"
	ok "--quick: $(cat "$T/out")"
	cl verify "$B" && fail "verify IMAGE succeeded"
	grep -qF "base $B chunk $name: $3" "$T/err" || fail "verify IMAGE does not name base chunk $k"
	ok "verify IMAGE: $(head -1 "$T/err")"
}

# A byte flipped in chunk U, the mtime kept.
printf '\x5a' | dd of="$B" bs=1 seek=$((U * CS + 1234)) conv=notrunc status=none
touch -r "$T/mtime" "$B"
dd if="$B" bs=1 skip=$((U * CS + 1234)) count=1 status=none | cmp -s - <(printf '\x5a') ||
	fail "byte not written"
cmp -s <(dd if="$B" bs=$CS skip="$U" count=1 status=none) "$T/orig" && fail "chunk not changed"
damaged "$U" "changed chunk" "SHA-256 mismatch"
put_back

# A hole punched where the index says data, the mtime kept.
fallocate --punch-hole --offset $((H * CS)) --length $CS "$B" || fail "punching a hole"
touch -r "$T/mtime" "$B"
damaged "$H" "punched hole" "a hole where the index says data"
put_back

# A damaged chunk that a delta of the customized disk is made against, the
# mtime kept: making the overlay again fails, naming it, and leaves nothing.
CASE="damaged delta source: overlay"
read -r D < <(py deltapick "$META" "$B") || fail "picking a delta source"
dd if="$B" of="$T/orig.d" bs=$CS skip="$D" count=1 status=none || fail "saving chunk $D"
printf '\x5a' | dd of="$B" bs=1 seek=$((D * CS + 99)) conv=notrunc status=none
touch -r "$T/mtime" "$B"
cmp -s <(dd if="$B" bs=$CS skip="$D" count=1 status=none) "$T/orig.d" && fail "chunk not changed"
cl overlay "$B" --disk "$T/new.disk" --memory "$T/new.mem" --state "$T/state" -o "$T/ov-bad" &&
	fail "overlay succeeded"
[ "$(wc -l <"$T/err")" = 1 ] || fail "overlay printed $(wc -l <"$T/err") lines"
grep -qF "base $B chunk $D: SHA-256 mismatch" "$T/err" || fail "overlay does not name chunk $D"
[ -e "$T/ov-bad" ] && fail "overlay left $T/ov-bad"
ok "$(cat "$T/err")"
cp -a "$T/ov" "$T/ov.good" || fail "saving the overlay"
cl overlay "$B" --disk "$T/new.disk" --memory "$T/new.mem" --state "$T/state" -o "$T/ov" &&
	fail "overlay over an earlier one succeeded"
grep -qF "base $B chunk $D: SHA-256 mismatch" "$T/err" || fail "overlay over an earlier one: $(cat "$T/err")"
cmp "$T/ov/overlay-meta" "$T/ov.good/overlay-meta" || fail "the earlier overlay-meta changed"
cmp "$T/ov/overlay-blob" "$T/ov.good/overlay-blob" || fail "the earlier overlay-blob changed"
[ "$(ls -A "$T/ov")" = "$(ls -A "$T/ov.good")" ] || fail "overlay left $(ls -A "$T/ov")"
ok "the earlier overlay in the output directory stays as it was"
dd if="$T/orig.d" of="$B" bs=$CS seek="$D" conv=notrunc status=none || fail "putting $D back"
touch -r "$T/mtime" "$B"

CASE="put back"
cl apply "$B" "$T/ov" -o "$T/apply2" || fail "apply after putting the base back"
cmp "$T/apply/disk.img" "$T/apply2/disk.img" || fail "disk.img differs"
cmp "$T/apply/memory.img" "$T/apply2/memory.img" || fail "memory.img differs"
cl verify "$B" "$T/ov" || fail "verify after putting the base back"
ok "$(cat "$T/out")"
cl verify "$B" || fail "verify IMAGE after putting the base back"
ok "$(cat "$T/out")"
# A large sparse base (8 GiB disk + 2 GiB memory, an 80 MiB index) against
# a small one (64 + 16 MiB) with the same data: the daemon looks the index
# up in its file, so the same reads leave its anonymous memory and peak RSS
# within a few MiB of the small base's (a loaded index would add 80 MiB).
# Measured against a baseline so that it holds under sanitizers too.
CASE="large base"
# sparse_base NAME DISK MEM: generated, registered, with an overlay.
sparse_base() {
	local d=$T/$1
	mkdir -p "$d"
	{ truncate -s "$2" "$d/bd" && truncate -s "$3" "$d/bm"; } || fail "truncate"
	dd if="$T/seed" of="$d/bd" bs=1M count=16 conv=notrunc status=none || fail "dd"
	dd if="$T/seed" of="$d/bm" bs=1M skip=16 count=8 conv=notrunc status=none || fail "dd"
	{ cp --sparse=always "$d/bd" "$d/nd" && cp --sparse=always "$d/bm" "$d/nm"; } || fail "cp"
	dd if="$T/seed" of="$d/nd" bs=1M skip=24 seek=40 count=1 conv=notrunc status=none
	cl base "$d/bd" --memory "$d/bm" || fail "cloudlet base ($1)"
	cl overlay "$d/bd" --disk "$d/nd" --memory "$d/nm" -o "$d/ov" || fail "cloudlet overlay ($1)"
}
# rss NAME: mounts it, reads 64 MiB of disk and 16 of memory, sets ANON and
# HWM (kB) of its daemon.
rss() {
	local pid f
	MP=$T/mnt/$1
	LOG=$T/log.$1
	mkdir -p "$MP"
	cl mount "$T/$1/bd" "$T/$1/ov" "$MP" -o "log=$LOG,no_cache" || fail "cloudlet mount ($1)"
	pid=$(st pid)
	DAEMONS+=("$pid")
	for f in disk/image:64 memory/image:16; do
		timeout 60 dd if="$MP/${f%%:*}" of=/dev/null bs=1M count="${f#*:}" status=none ||
			fail "reading ${f%%:*} ($1)"
	done
	[ "$(stat_of disk io_errors)" = 0 ] || fail "io_errors on a good base ($1)"
	ANON=$(awk '$1 == "RssAnon:" { print $2 }' "/proc/$pid/status")
	HWM=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")
	{ [ -n "$ANON" ] && [ -n "$HWM" ]; } || fail "no RssAnon/VmHWM for daemon $pid"
	umount_ov
}
head -c 25M /dev/urandom >"$T/seed" || fail "seed"
sparse_base small 64M 16M
sparse_base large 8G 2G
rss small
anon0=$ANON hwm0=$HWM
rss large
index=$(($(stat -c %s "$CLOUDLET_HOME"/bases/*/index | sort -n | tail -1) / 1024))
[ "$index" -gt 80000 ] || fail "the large base's index is only $index kB"
{ [ $((ANON - anon0)) -lt 16384 ] && [ $((HWM - hwm0)) -lt 16384 ]; } ||
	fail "RssAnon $anon0 -> $ANON kB, VmHWM $hwm0 -> $HWM kB (index $index kB): grew by 16 MiB or more"
ok "RssAnon $anon0 -> $ANON kB, VmHWM $hwm0 -> $HWM kB with an index of $index kB"
echo "base_verify: all cases passed in $SECONDS s"
