#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# bench-free.sh: overlay size with and without free-memory and TRIM awareness
# on the reference workload (issue 6; the 2013 Elijah paper measured 55% of
# the baseline for these two).
#
#   tests/bench/bench-free.sh [BUILD_DIR]
#
# Two bases are booted with `cloudlet base` from copies of the reference
# guest's disk (tests/guest/make-workload.sh, BUILD_DIR/guest): one with free
# page reporting (the default), one with --no-free-memory. On each,
# `cloudlet overlay --console-script` runs a customization and drops the
# guest's caches; on the first it also runs `fstrim /mnt` and waits for freed
# pages to settle (the default), on the second it does neither
# (--no-free-memory). Two customizations: the reference one (the guest
# commands of make-workload.sh, read from it), and the same plus the garbage
# an application install leaves (archive downloaded, unpacked, deleted; a
# build tree in tmpfs removed). Prints a markdown table and the chunks left out.
set -euo pipefail
# One block, read whole before it runs: bash reads a script as it goes, and
# this one runs for minutes while the tree may change.
{
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
cloudlet=$build/cloudlet
export CLOUDLET=$cloudlet # lib.sh checks the host with it
W=$build/guest
[ -x "$cloudlet" ] || { echo "build first: cmake --build $build" >&2; exit 1; }
bash "$src/tests/guest/make-workload.sh" --cached "$W" >/dev/null
source "$src/tests/guest/lib.sh"
cl_use_workload "$W" # held shared: no eviction or rebuild meanwhile
cl_init
QDIR=$(cl_qdir "$W")
cl_scratch S "$QDIR" bench-free # QEMU must reach the bases' directories
export CLOUDLET_HOME=$S/home
G=$W/guest

# The reference customization: every `g TIMEOUT 'CMD'` of make-workload.sh,
# and the deletion of a base documentation directory it does apart.
sed -n "s/^g [0-9]* '\(.*\)'$/\1/p" "$src/tests/guest/make-workload.sh" >"$S/reference.sh"
[ "$(wc -l <"$S/reference.sh")" -ge 8 ] || cl_die "cannot read the customization from make-workload.sh"
echo 'd=$(ls -d /mnt/base/doc/usr/share/doc/*/ | sed -n 3p); rm -rf "${d%/}"; sync' >>"$S/reference.sh"
# The same plus what installing software leaves behind (the 2013 paper's
# workloads were application installs): a downloaded archive unpacked and
# deleted, and a build tree in tmpfs removed.
cp "$S/reference.sh" "$S/install.sh"
cat >>"$S/install.sh" <<'CMDS'
mkdir -p /mnt/dl /mnt/opt && tar -cf - -C /mnt/data rand text | gzip -1 >/mnt/dl/app.tar.gz && head -c 20971520 /dev/urandom >/mnt/dl/assets.bin && sync
tar -xzf /mnt/dl/app.tar.gz -C /mnt/opt && head -c 2097152 /mnt/dl/assets.bin >/mnt/opt/assets.bin && rm -r /mnt/dl && sync
mkdir -p /tmp/build && cp -r /mnt/opt /tmp/build/ && head -c 25165824 /dev/urandom >/tmp/build/objects.bin && rm -r /tmp/build
CMDS
for w in reference install; do
	{ cat "$S/$w.sh"; echo "sync && fstrim /mnt"; echo "echo 3 >/proc/sys/vm/drop_caches"; } >"$S/$w-with.sh"
	{ cat "$S/$w.sh"; echo "echo 3 >/proc/sys/vm/drop_caches"; } >"$S/$w-without.sh"
done

base() { # NAME OPTION...
	local name=$1
	shift
	mkdir -p "$S/$name"
	cp --sparse=always "$G/disk.img" "$S/$name/disk.img"
	"$cloudlet" -q base "$S/$name/disk.img" --kernel "$G/vmlinuz" --initrd "$G/initrd.img" \
		--cmdline "console=ttyS0 panic=-1 loglevel=4" --snapshot-on CLOUDLET-GUEST-READY \
		--name "${CL_PREFIX}b$name" --timeout 300 "$@" </dev/null >/dev/null ||
		cl_die "cloudlet base ($name) failed"
}
overlay() { # BASE WORKLOAD OPTION...
	local name=$1 w=$2 o=$S/$2-$1
	shift 2
	"$cloudlet" overlay "$S/$name/disk.img" -o "$o" --console-script "$S/$w-$name.sh" \
		--name "${CL_PREFIX}o$name" --timeout 1200 "$@" </dev/null >"$o.out" ||
		{ cat "$o.out"; cl_die "cloudlet overlay ($w, $name) failed"; }
	"$cloudlet" info "$o" >"$o.info"
}
t=$SECONDS
cl_log "bases: with free page reporting, and with --no-free-memory"
base with
base without --no-free-memory
size() { echo $(($(stat -c %s "$1/overlay-meta") + $(stat -c %s "$1/overlay-blob"))); }
mib() { echo "$1 / 1048576" | bc -l | xargs printf '%.1f'; }
echo "commit $(git -C "$src" describe --always --dirty 2>/dev/null || echo unknown), kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "| workload | without (--no-free-memory, no TRIM) | with free memory and TRIM | with / without | Elijah 2013 |"
echo "|---|---|---|---|---|"
for w in reference install; do
	cl_log "$w workload: with, then without"
	overlay with "$w"
	overlay without "$w" --no-free-memory
	A=$(size "$S/$w-with")
	B=$(size "$S/$w-without")
	echo "| $w | $(mib "$B") MiB | $(mib "$A") MiB | $((100 * A / B))% | 55% |"
	echo "  $w with: $(grep '^left out' "$S/$w-with.info"); $(grep -h '^free memory:' "$S/$w-with.out" | sed 's/.*holds/RAM file holds/')" >>"$S/notes"
done
echo
cat "$S/notes"
echo "(domain type $(sed -n "s/^<domain [^>]*type=.\([a-z]*\).*/\1/p" "$S"/home/bases/*/domain.xml | head -1); $((SECONDS - t)) s)"
exit
}
