#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# test_workload.sh OUTDIR: the reference workload (make-workload.sh OUTDIR) is a real,
# resumable pair of VM snapshots: sane files, plausible differences, and the custom snapshot
# resumes (on copies) with every file the guest wrote, on disk and in RAM, intact.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

[ $# -eq 1 ] || cl_die "usage: $0 OUTDIR"
cl_use_workload "$1"
OUT=$W
B=$OUT/base
C=$OUT/custom
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

# --- files -------------------------------------------------------------------
MEM_BYTES=$((CL_MEM_MIB << 20))
for s in base custom; do
  for f in disk.img memory.img state domain.xml; do
    check "$s/$f exists and is not empty" test -s "$OUT/$s/$f"
  done
  [ -s "$OUT/$s/memory.img" ] || continue
  sz=$(stat -L -c %s "$OUT/$s/memory.img")
  check "$s/memory.img is $CL_MEM_MIB MiB ($sz)" test "$sz" -eq "$MEM_BYTES"
  st=$(stat -L -c %s "$OUT/$s/state")
  check "$s/state is under 1 MiB ($st bytes)" test "$st" -gt 0 -a "$st" -lt $((1 << 20))
  dz=$(stat -L -c %s "$OUT/$s/disk.img")
  check "$s/disk.img is a 4 KiB multiple ($dz)" test $((dz % 4096)) -eq 0 -a "$dz" -gt 0
  check "$s/domain.xml is a domain with file-backed RAM" \
    test -n "$($CL_GUESTCTL xml-get "$OUT/$s/domain.xml" mem)"
done
check "custom/checksums.txt has entries" test "$(grep -c -E '^[0-9a-f]{32}  /' "$C/checksums.txt" 2>/dev/null || echo 0)" -ge 70
[ "$CL_FAILS" = 0 ] || cl_die "$CL_FAILS file checks failed"

# --- differences ---------------------------------------------------------------
v=$($CL_GUESTCTL page-diff "$B/memory.img" "$C/memory.img" | sed 's/[a-z_]*=//g')
read -r _ mdiff mnz_a mnz_b <<<"$v"
echo "memory: $mdiff of $((MEM_BYTES / 4096)) 4 KiB pages differ (non-zero pages: base $mnz_a, custom $mnz_b)"
# the customization keeps 16 MiB in tmpfs (4096 pages) and ~47 MiB of new disk data in the page cache
check "memory images differ in a plausible number of pages" test "$mdiff" -ge 4096 -a "$mdiff" -lt 60000
check "custom RAM has more non-zero pages than base" test "$mnz_b" -gt "$mnz_a"
v=$($CL_GUESTCTL page-diff "$B/disk.img" "$C/disk.img" | sed 's/[a-z_]*=//g')
read -r dtotal ddiff _ <<<"$v"
echo "disk: $ddiff of $dtotal 4 KiB blocks differ"
check "disk images differ in a plausible number of blocks" test "$ddiff" -ge 8192 -a "$ddiff" -lt "$dtotal"
[ "$CL_FAILS" = 0 ] || cl_die "$CL_FAILS difference checks failed"

# --- resume both snapshots on copies -------------------------------------------
cl_init
QDIR=$(cl_qdir "$OUT")
cl_scratch S "$QDIR" test-workload

T=$SECONDS
NB=${CL_PREFIX}base
mkdir -p "$S/base"
cp --sparse=always "$B/disk.img" "$S/base/disk.img"
cp --sparse=always "$B/memory.img" "$S/base/memory.img"
cl_own_ram "$S/base/memory.img"
cl_vm_xml "$B/domain.xml" "$S/base/domain.xml" "$NB" "$S/base/disk.img" "$S/base/memory.img"
cl_resume "$S/base/domain.xml" "$NB" "$B/state" || cl_die "the base snapshot does not resume"
out=$(cl_console "$NB" 60 'ls /mnt/data | wc -l; ls /ram | wc -l; cat /mnt/README') || cl_die "resumed base does not answer"
echo "$out"
check "base resumes with an empty /mnt/data and /ram" test "$(echo "$out" | head -2 | tr '\n' ' ')" = "0 0 "
cl_destroy "$NB"
echo "base resumed and checked in $((SECONDS - T)) s"

T=$SECONDS
NC=${CL_PREFIX}custom
mkdir -p "$S/custom"
cp --sparse=always "$C/disk.img" "$S/custom/disk.img"
cp --sparse=always "$C/memory.img" "$S/custom/memory.img"
cl_own_ram "$S/custom/memory.img"
cl_vm_xml "$C/domain.xml" "$S/custom/domain.xml" "$NC" "$S/custom/disk.img" "$S/custom/memory.img"
cl_resume "$S/custom/domain.xml" "$NC" "$C/state" || cl_die "the custom snapshot does not resume"
echo "custom resumed in $((SECONDS - T)) s"
cl_console "$NC" 60 'uptime; cat /ram/marker.txt' || cl_die "resumed custom does not answer"

# md5sums as the guest sees them now (disk data largely from its page cache, RAM data from tmpfs)
cl_console "$NC" 600 "$CL_WORKLOAD_SUMS_CMD" >"$S/sums.1" || cl_die "checksumming in the resumed guest failed"
if diff -u "$C/checksums.txt" "$S/sums.1"; then
  ok "all $(wc -l <"$S/sums.1") checksums match after resume"
else
  bad "checksums differ after resume"
fi
# again after dropping the guest's page cache: disk data now comes from the disk image
cl_console "$NC" 60 'sync; echo 3 >/proc/sys/vm/drop_caches; free | head -2' || cl_die "drop_caches failed"
cl_console "$NC" 600 "$CL_WORKLOAD_SUMS_CMD" >"$S/sums.2" || cl_die "checksumming in the resumed guest failed"
if diff -u "$C/checksums.txt" "$S/sums.2"; then
  ok "all checksums match after dropping the guest page cache"
else
  bad "checksums differ after dropping the guest page cache"
fi
if [ -s "$C/deleted.txt" ]; then
  del=$(head -1 "$C/deleted.txt")
  check "deleted base directory $del is gone" cl_console "$NC" 60 "test ! -e '$del'"
fi
cl_destroy "$NC"
echo "custom checked in $((SECONDS - T)) s"

[ "$CL_FAILS" = 0 ] || cl_die "test_workload: $CL_FAILS checks failed"
echo "test_workload: all checks passed"
