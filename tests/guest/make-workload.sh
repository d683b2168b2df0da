#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# make-workload.sh OUTDIR: the reference real-guest workload (cached in OUTDIR).
# make-workload.sh --cached LINK: the same, cached for the whole machine in
#   ${CL_WORKLOAD_CACHE:-/var/cache/cloudlet-test}/workload-<12 hex of the key>, and LINK made
#   a symbolic link to it (a directory at LINK holding an older workload is removed); of the
#   cached workloads of other keys, the two used last stay (tests/guest/lib.sh,
#   cl_evict_fixtures). Key: this script, build-guest.sh, lib.sh, guestctl.py and the
#   settings CL_GUEST_DISK_MIB, CL_ACCEL, CL_SETTLE_SECONDS. Use it under cl_use_workload's
#   shared lock (tests and benchmarks do).
#
#   OUTDIR/guest/   vmlinuz initrd.img disk.img(base disk template) kernel-version (build-guest.sh)
#   OUTDIR/base/    disk.img memory.img state domain.xml   the freshly booted guest, snapshotted
#   OUTDIR/custom/  disk.img memory.img state domain.xml   base resumed, customized, snapshotted
#                   checksums.txt  md5sums the guest computed of what it wrote (disk and RAM)
#                   deleted.txt    base paths the customization deleted
#   OUTDIR/qemu-dir where the files really are (OUTDIR itself unless the QEMU user cannot reach
#                   OUTDIR: then /var/lib/cloudlet-test/<hash>, and guest/ base/ custom/ are symlinks)
#   OUTDIR/times.txt, OUTDIR/.done
#
# memory.img: guest RAM (256 MiB, raw, page-aligned guest-physical), state: QEMU migration
# stream taken with x-ignore-shared (RAM not in it). domain.xml: the XML the VM ran with,
# without "-incoming defer" (cl_resume adds it). Resume one with lib.sh:
#   cl_vm_xml custom/domain.xml x.xml NAME COPY_OF_DISK COPY_OF_RAM; cl_resume x.xml NAME custom/state
# Never resume on the files themselves: a resumed guest writes its disk and RAM file.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$HERE/lib.sh"

# The key: whatever makes the workload's bytes (the settings included).
KEY=$({ cat "$HERE/make-workload.sh" "$HERE/build-guest.sh" "$HERE/lib.sh" "$HERE/guestctl.py"
  echo "${CL_GUEST_DISK_MIB:-} ${CL_ACCEL:-} ${CL_SETTLE_SECONDS:-}"; } | sha256sum | cut -c1-64)
STAMP="key=$KEY"
LINK=
CACHE_ROOT=${CL_WORKLOAD_CACHE:-/var/cache/cloudlet-test}
case "$#:${1:-}" in
2:--cached)
  LINK=$2
  if [ -d "$LINK" ] && [ ! -L "$LINK" ]; then
    # An older build tree's own workload (or what a run of it left): anything else stays.
    for f in "$LINK"/* "$LINK"/.[!.]*; do
      case ${f##*/} in
      .done | .lock | times.txt | times.txt.part | qemu-dir | guest | base | custom | '*' | '.[!.]*') ;;
      *) cl_die "$LINK holds $f, which is no part of a workload; not replacing it" ;;
      esac
    done
    cl_remove_fixture "$(cd "$LINK" && pwd -P)"
  fi
  mkdir -p "$CACHE_ROOT/workload-${KEY:0:12}"
  chmod 0755 "$CACHE_ROOT" "$CACHE_ROOT/workload-${KEY:0:12}" # QEMU's user reads it
  OUT=$(cd "$CACHE_ROOT/workload-${KEY:0:12}" && pwd -P)
  ;;
1:-*) cl_die "usage: $0 OUTDIR | --cached LINK" ;;
1:*)
  [ ! -L "$1" ] || cl_die "$1 is a symbolic link (to a machine-wide workload?): use --cached $1"
  mkdir -p "$1"
  OUT=$(cd "$1" && pwd -P)
  ;;
*) cl_die "usage: $0 OUTDIR | --cached LINK" ;;
esac
# finish: LINK pointed at the cached workload, other keys' workloads evicted.
finish() {
  [ -n "$LINK" ] || return 0
  ln -sfn "$OUT" "$LINK"
  cl_evict_fixtures "$CACHE_ROOT" workload "$OUT"
}
# Tests read it under a shared lock, so a complete one is checked under a shared lock too;
# one builder at a time takes it exclusively (flock drops the shared lock first).
exec 9>"$OUT/.lock"

workload_complete() {
  local f
  [ -f "$OUT/.done" ] && [ "$(cat "$OUT/.done")" = "$STAMP" ] || return 1
  for f in guest/vmlinuz guest/initrd.img base/disk.img base/memory.img base/state base/domain.xml \
           custom/disk.img custom/memory.img custom/state custom/domain.xml custom/checksums.txt; do
    [ -s "$OUT/$f" ] || return 1
  done
}
for mode in -s -x; do
  flock "$mode" -w 1200 9 || cl_die "$OUT/.lock has been held for 20 min"
  cl_lock_current 9 "$OUT/.lock" || cl_die "$OUT was removed meanwhile (evicted); run again"
  if workload_complete; then
    echo "make-workload: cached in $OUT ($STAMP)"
    finish
    exit 0
  fi
done
rm -f "$OUT/.done"

T0=$SECONDS
phase() { echo "$1 $((SECONDS - T0))" >>"$OUT/times.txt.part"; cl_log "== $1 (t=$((SECONDS - T0))s)"; }
: >"$OUT/times.txt.part"

cl_init
rm -f "$OUT/qemu-dir"
QDIR=$(cl_qdir "$OUT")
echo "$QDIR" >"$OUT/qemu-dir"
[ "$QDIR" = "$OUT" ] || cl_log "NOTICE: $(cl_qemu_user) cannot reach $OUT; the VM files live in $QDIR (symlinked)"

# --- guest -------------------------------------------------------------------
phase build-guest
bash "$HERE/build-guest.sh" "$QDIR/guest" || { rc=$?; [ $rc = 77 ] && cl_skip "build-guest.sh cannot build the guest here (above)"; cl_die "build-guest.sh failed ($rc)"; }
KERNEL=$QDIR/guest/vmlinuz
INITRD=$QDIR/guest/initrd.img
TYPE=$(cl_accel "$KERNEL" "$INITRD")
cl_log "domain type: $TYPE"

rm -rf "$QDIR/base" "$QDIR/custom"
mkdir -p "$QDIR/base" "$QDIR/custom"
chmod 0755 "$QDIR" "$QDIR/base" "$QDIR/custom"
if [ "$QDIR" != "$OUT" ]; then
  for d in guest base custom; do rm -rf "${OUT:?}/$d"; ln -s "$QDIR/$d" "$OUT/$d"; done
fi
B=$QDIR/base
C=$QDIR/custom

# --- base: cold boot, settle, snapshot ---------------------------------------
phase boot-base
NB=${CL_PREFIX}base
cp --sparse=always "$QDIR/guest/disk.img" "$B/disk.img"
truncate -s "${CL_MEM_MIB}M" "$B/memory.img"
cl_own_ram "$B/memory.img"
cl_new_xml "$B/domain.xml" "$NB" "$TYPE" "$KERNEL" "$INITRD" "$B/disk.img" "$B/memory.img" "$B/console.log"
cl_boot "$B/domain.xml" "$NB" 300 || cl_die "base guest did not boot"
cl_console "$NB" 30 'uname -r; cat /proc/meminfo | head -3; df -k /mnt | tail -1' ||
  cl_die "guest shell does not work"
sleep "${CL_SETTLE_SECONDS:-5}"
phase snapshot-base
cl_snapshot "$NB" "$B/state" || cl_die "snapshot of the base failed"
cl_destroy "$NB"

# --- custom: resume a copy of base, write data, snapshot ---------------------
phase resume-base
NC=${CL_PREFIX}custom
cp --sparse=always "$B/disk.img" "$C/disk.img"
cp --sparse=always "$B/memory.img" "$C/memory.img"
cl_own_ram "$C/memory.img"
cl_vm_xml "$B/domain.xml" "$C/domain.xml" "$NC" "$C/disk.img" "$C/memory.img" on "$C/console.log"
cl_resume "$C/domain.xml" "$NC" "$B/state" || cl_die "resuming the base snapshot failed"
cl_console "$NC" 30 'echo resumed; uptime' || cl_die "resumed guest does not answer"

phase customize
g() { # g TIMEOUT CMD: run in the guest or die
  cl_console "$NC" "$1" "$2" || cl_die "guest command failed: $2"
}
g 60 'mkdir -p /mnt/data/text /mnt/data/rand /mnt/data/dup && find /mnt/base/doc -type f ! -name "*.gz" | sort >/tmp/docs && wc -l </tmp/docs'
# text: modified concatenations of the base documentation (6 x 3 MiB) and odd-sized pieces
g 600 'for i in 1 2 3 4 5 6; do sed -n "$((i*37)),\$p" /tmp/docs | xargs cat 2>/dev/null | sed "s/e/E$i/g" | head -c 3145728 >/mnt/data/text/doc-$i.txt; done; ls -l /mnt/data/text | wc -l'
g 120 'i=1; while [ $i -le 20 ]; do tail -c $((i*7919)) /mnt/data/text/doc-$(( (i%6)+1 )).txt >/mnt/data/text/small-$i.txt; i=$((i+1)); done; cp /tmp/docs /mnt/data/text/manifest.txt'
# random: 15 MiB in big files, ~0.8 MB in small ones
g 600 'for n in 8 4 2 1; do dd if=/dev/urandom of=/mnt/data/rand/r$n.bin bs=1M count=$n 2>/dev/null; done; i=0; while [ $i -lt 40 ]; do dd if=/dev/urandom of=/mnt/data/rand/small-$i.bin bs=1000 count=$((i+1)) 2>/dev/null; i=$((i+1)); done'
# duplicates: of new data and of base data
g 120 'cp /mnt/data/rand/r4.bin /mnt/data/dup/r4-copy.bin && cp /mnt/data/text/doc-2.txt /mnt/data/dup/doc-2-copy.txt && cp /mnt/base/inplace.bin /mnt/data/dup/inplace-orig.bin'
# a base file modified in place (3 blocks rewritten, 100000 bytes appended), a base dir deleted
g 60 'dd if=/dev/urandom of=/mnt/base/inplace.bin bs=4096 count=3 seek=100 conv=notrunc 2>/dev/null && head -c 100000 /dev/urandom >>/mnt/base/inplace.bin'
cl_console "$NC" 60 'd=$(ls -d /mnt/base/doc/usr/share/doc/*/ | sed -n 3p); d=${d%/}; echo "$d"; rm -rf "$d"' >"$C/deleted.txt" ||
  cl_die "deleting a base directory failed"
[ -s "$C/deleted.txt" ] || cl_die "no base directory was deleted"
g 300 'sync && df -k /mnt | tail -1 && du -sk /mnt/data'
# RAM: a 16 MiB file in tmpfs, half random, half text
g 300 '{ head -c 8388608 /dev/urandom; cat /mnt/data/text/doc-3.txt /mnt/data/text/doc-5.txt /mnt/data/text/doc-1.txt | sed "s/a/RAM/g" | head -c 8388608; } >/ram/blob.bin && echo cloudlet-ram-marker >/ram/marker.txt && ls -l /ram'
cl_console "$NC" 600 "$CL_WORKLOAD_SUMS_CMD" >"$C/checksums.txt.part" || cl_die "checksumming in the guest failed"
n=$(grep -c -E '^[0-9a-f]{32}  /' "$C/checksums.txt.part" || true)
[ "$n" -ge 70 ] && [ "$n" = "$(wc -l <"$C/checksums.txt.part")" ] ||
  { cat "$C/checksums.txt.part" >&2; cl_die "unexpected checksum output ($n lines)"; }
mv "$C/checksums.txt.part" "$C/checksums.txt"
cl_log "guest recorded $n checksums"
sleep "${CL_SETTLE_SECONDS:-5}"   # let free page reporting catch up

phase snapshot-custom
cl_snapshot "$NC" "$C/state" || cl_die "snapshot of the customized guest failed"
cl_destroy "$NC"

# --- finish --------------------------------------------------------------------
chown root:root "$B/memory.img" "$C/memory.img"
chmod 0644 "$B/memory.img" "$C/memory.img" "$B/disk.img" "$C/disk.img"
phase finished
mv "$OUT/times.txt.part" "$OUT/times.txt"
echo "$STAMP" >"$OUT/.done"
ls -ls "$B" "$C" >&2
finish
cl_log "make-workload: done in $((SECONDS - T0)) s; domain type $TYPE; output in $OUT"
