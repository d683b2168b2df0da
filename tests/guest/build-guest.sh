#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# build-guest.sh OUTDIR
#
# Builds the tiny real guest every guest test uses, from Debian packages only:
#   OUTDIR/vmlinuz     kernel of linux-image-cloud-amd64 (the versioned package it depends on)
#   OUTDIR/initrd.img  busybox-static initramfs (cpio newc, gzip); its /init loads the virtio
#                      modules, mounts /proc /sys /dev, the ext4 disk /dev/vda at /mnt and a
#                      tmpfs at /ram, configures a NIC if there is one (DHCP, at most 3 s),
#                      prints CLOUDLET-GUEST-READY and runs a shell on ttyS0
#   OUTDIR/disk.img    base disk: 512 MiB sparse raw ext4 (4 KiB blocks) with ~40 MiB of content
#   OUTDIR/kernel-version, OUTDIR/.done (stamp holding the script version)
# Cached: if OUTDIR/.done matches this script's version, nothing is done.
# Exit 77 if the machine lacks something that cannot be installed.
set -euo pipefail

BUILD_GUEST_VERSION=10
MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk virtio_balloon
         failover net_failover virtio_net)
DISK_SIZE_MIB=${CL_GUEST_DISK_MIB:-512}

die() { echo "build-guest: ERROR: $*" >&2; exit 1; }
skip() { echo "build-guest: SKIP: $*" >&2; exit 77; }
log() { echo "build-guest: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 OUTDIR"
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)

if [ -f "$OUT/.done" ] && [ "$(cat "$OUT/.done")" = "$BUILD_GUEST_VERSION" ] &&
   [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] && [ -s "$OUT/disk.img" ]; then
  log "cached in $OUT"
  exit 0
fi

# --- tools -------------------------------------------------------------------
APT_UPDATED=0
apt_install() { # apt_install PKG... ; installs only what is missing
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || skip "packages missing (${missing[*]}) and not root to install them"
  command -v apt-get >/dev/null || skip "packages missing (${missing[*]}) and no apt-get"
  log "installing ${missing[*]}"
  if [ $APT_UPDATED = 0 ]; then
    timeout 300 apt-get update -q >&2 || log "apt-get update failed (continuing)"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    skip "cannot install ${missing[*]}"
}
apt_install busybox-static e2fsprogs cpio gzip xz-utils zstd dpkg
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || skip "no $BUSYBOX after installing busybox-static"
file_is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep INTERP >/dev/null; }
command -v readelf >/dev/null && { file_is_static "$BUSYBOX" || die "$BUSYBOX is not static"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cl-build-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --- kernel ------------------------------------------------------------------
resolve_kernel_pkg() {
  # linux-image-cloud-amd64 is a metapackage: take the versioned linux-image-* it depends on.
  local dep
  dep=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '$1 ~ /Depends:/ && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$dep" ]; then
    dep=$(apt-cache show linux-image-cloud-amd64 2>/dev/null |
          sed -n 's/^Depends: *//p' | head -1 | tr ',' '\n' | sed 's/[ (].*//;s/^ *//' |
          grep -m1 '^linux-image-[0-9]' || true)
  fi
  echo "$dep"
}
KPKG=$(resolve_kernel_pkg)
if [ -z "$KPKG" ]; then
  [ "$(id -u)" = 0 ] && { timeout 300 apt-get update -q >&2 || true; APT_UPDATED=1; }
  KPKG=$(resolve_kernel_pkg)
fi
[ -n "$KPKG" ] || skip "cannot resolve linux-image-cloud-amd64 to a versioned kernel package (no apt index?)"
log "kernel package: $KPKG"
mkdir -p "$WORK/deb" "$WORK/k"
chmod 0777 "$WORK/deb"   # apt-get download may drop to the _apt user
if ! (cd "$WORK/deb" && timeout 600 apt-get download -q "$KPKG" >&2 2>"$WORK/dl.err"); then
  cat "$WORK/dl.err" >&2
  skip "cannot download $KPKG"
fi
DEB=$(find "$WORK/deb" -name '*.deb' -print -quit)
[ -n "$DEB" ] || skip "apt-get download $KPKG produced no .deb"
dpkg -x "$DEB" "$WORK/k"
VMLINUZ=$(find "$WORK/k/boot" -name 'vmlinuz-*' -print -quit 2>/dev/null || true)
[ -n "$VMLINUZ" ] || die "no /boot/vmlinuz-* in $DEB"
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$WORK/k/lib/modules/$KVER
[ -d "$MODDIR" ] || die "no lib/modules/$KVER in $DEB"

# --- initramfs ---------------------------------------------------------------
IR=$WORK/initramfs
mkdir -p "$IR"/{bin,sbin,dev,proc,sys,mnt,ram,tmp,root,etc,lib/modules}
cp "$BUSYBOX" "$IR/bin/busybox"
for m in "${MODULES[@]}"; do
  f=$(find "$MODDIR" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) -print -quit)
  [ -n "$f" ] || die "module $m not found in $KPKG"
  case "$f" in
    *.ko) cp "$f" "$IR/lib/modules/$m.ko" ;;
    *.ko.xz) xz -dc "$f" >"$IR/lib/modules/$m.ko" ;;
    *.ko.zst) zstd -qdc "$f" >"$IR/lib/modules/$m.ko" ;;
    *.ko.gz) gzip -dc "$f" >"$IR/lib/modules/$m.ko" ;;
  esac
done
# devtmpfs provides device nodes; /dev/console is needed before it is mounted.
mknod -m 600 "$IR/dev/console" c 5 1
mknod -m 666 "$IR/dev/null" c 1 3
echo 'root:x:0:0:root:/root:/bin/sh' >"$IR/etc/passwd"
echo 'root:x:0:' >"$IR/etc/group"
mkdir -p "$IR/usr/share/udhcpc"
cat >"$IR/usr/share/udhcpc/default.script" <<'SCRIPT'
#!/bin/sh
# udhcpc's hook: the lease's address and default route on the interface.
case "$1" in
bound | renew)
  ip addr flush dev "$interface"
  ip addr add "$ip/${mask:-24}" dev "$interface"
  [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
  ;;
esac
exit 0
SCRIPT
chmod 755 "$IR/usr/share/udhcpc/default.script"

cat >"$IR/init" <<EOF
#!/bin/busybox sh
# cloudlet test guest init (build-guest.sh v$BUILD_GUEST_VERSION)
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "CLOUDLET-INIT-START"
for m in ${MODULES[*]}; do
  insmod /lib/modules/\$m.ko || echo "CLOUDLET-GUEST-ERROR: insmod \$m failed"
done
i=0
while [ ! -b /dev/vda ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i+1)); done
if [ -b /dev/vda ]; then
  mount -t ext4 /dev/vda /mnt || echo "CLOUDLET-GUEST-ERROR: cannot mount /dev/vda"
else
  echo "CLOUDLET-GUEST-ERROR: no /dev/vda"
fi
mount -t tmpfs -o size=96m,mode=1777 tmpfs /ram
mount -t tmpfs -o mode=1777 tmpfs /tmp
hostname cloudlet-guest
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  udhcpc -i eth0 -n -q -t 3 -T 1 -s /usr/share/udhcpc/default.script >/dev/null 2>&1 || echo "CLOUDLET-GUEST-NOTE: no DHCP lease on eth0"
fi
# Keep kernel messages off the console: tests parse what the shell prints.
echo 1 >/proc/sys/kernel/printk
echo "CLOUDLET-GUEST-READY"
# A shell reading the tty, made non-interactive by piping its output (ash is interactive when
# stdin and stdout are ttys): no prompt, no line editing; the tty stays in canonical mode
# (lines up to 4095 bytes, tty echo on). Own session, ttyS0 its controlling tty (^C ends it);
# respawned when it exits (e.g. on a syntax error).
while true; do
  setsid sh -c 'exec </dev/ttyS0 >/dev/ttyS0 2>&1; sh 2>&1 | cat'
  echo "CLOUDLET-SHELL-RESPAWN" >/dev/ttyS0
  sleep 1
done
EOF
chmod 755 "$IR/init"
(cd "$IR" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner 0:0 --quiet) |
  gzip -9n >"$WORK/initrd.img"

# --- base disk ---------------------------------------------------------------
D=$WORK/disk
mkdir -p "$D/base/doc" "$D/base/bin" "$D/base/licenses"
select_capped() { # select_capped CAP_BYTES < NUL-separated "SIZE<TAB>PATH" : print paths up to CAP
  awk -v RS='\0' -v ORS='\0' -v cap="$1" -F '\t' \
    'NF >= 2 { sz = $1; p = substr($0, length($1) + 2); if (tot + sz <= cap) { tot += sz; print p } }'
}
copy_list() { # copy_list DEST < NUL-separated absolute paths
  tar --null -T - -cf - 2>/dev/null | tar -xf - -C "$1"
}
{ find /usr/share/doc -type f -size -2M ! -name '*.gz' -printf '%s\t%p\0' 2>/dev/null | LC_ALL=C sort -z -t "$(printf '\t')" -k2
  find /usr/share/doc -type f -size -2M -name '*.gz' -printf '%s\t%p\0' 2>/dev/null | LC_ALL=C sort -z -t "$(printf '\t')" -k2
} | select_capped $((20 << 20)) | copy_list "$D/base/doc"
find /usr/share/common-licenses -type f -printf '%s\t%p\0' 2>/dev/null | LC_ALL=C sort -z |
  select_capped $((2 << 20)) | copy_list "$D/base/licenses"
for b in /bin/busybox /usr/bin/python3.11 /usr/bin/perl /usr/bin/qemu-img /usr/bin/gdb /usr/bin/bash \
         /usr/bin/tar /usr/bin/gzip /usr/bin/cpio /sbin/mkfs.ext4 /usr/bin/xz /usr/bin/zstd; do
  [ -f "$b" ] && f=$(readlink -f "$b") && printf '%s\t%s\0' "$(stat -c %s "$f")" "$f"
done | select_capped $((20 << 20)) | copy_list "$D/base/bin"
n=$(du -sb "$D/base" | cut -f1)
# A little deterministic filler so the base never gets too small on a sparse machine.
if [ "$n" -lt $((30 << 20)) ]; then
  head -c $(((30 << 20) - n)) /dev/zero | tr '\0' 'x' >"$D/base/filler.txt"
fi
# A file the workload modifies in place (a few blocks rewritten, some appended).
cat "$BUSYBOX" "$BUSYBOX" "$BUSYBOX" | head -c $((4 << 20)) >"$D/base/inplace.bin" || true
[ "$(stat -c %s "$D/base/inplace.bin")" -eq $((4 << 20)) ] || die "cannot make base/inplace.bin"
mkdir -p "$D/data" "$D/lost+found"
rmdir "$D/lost+found"
echo "cloudlet test guest base disk, build-guest.sh v$BUILD_GUEST_VERSION, kernel $KVER" >"$D/README"
log "base disk content: $(du -sh --apparent-size "$D" | cut -f1)"

rm -f "$WORK/disk.img"
truncate -s "${DISK_SIZE_MIB}M" "$WORK/disk.img"
# 4 KiB blocks: file data is 4 KiB aligned on disk, as pages are in the guest's page cache.
# Fixed UUID/hash seed and eager inode-table/journal init (no ext4lazyinit writes in the guest).
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -b 4096 -L cloudlet-base \
  -U 6c6f7564-6c65-7400-0000-000000000001 \
  -E lazy_itable_init=0,lazy_journal_init=0,hash_seed=6c6f7564-6c65-7400-0000-000000000002 \
  -d "$D" "$WORK/disk.img" >&2 || die "mkfs.ext4 -d failed"

# --- publish -----------------------------------------------------------------
cp "$VMLINUZ" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
cp "$WORK/initrd.img" "$OUT/initrd.img.tmp" && mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
cp --sparse=always "$WORK/disk.img" "$OUT/disk.img.tmp" && mv "$OUT/disk.img.tmp" "$OUT/disk.img"
echo "$KVER" >"$OUT/kernel-version"
echo "$KPKG $(dpkg-deb -f "$DEB" Version)" >"$OUT/kernel-package"
chmod 0644 "$OUT/vmlinuz" "$OUT/initrd.img" "$OUT/disk.img"
echo "$BUILD_GUEST_VERSION" >"$OUT/.done"
log "built in $OUT: kernel $KVER, initrd $(stat -c %s "$OUT/initrd.img") bytes, disk $(du -h "$OUT/disk.img" | cut -f1) used"
