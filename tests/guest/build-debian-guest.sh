#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# build-debian-guest.sh [DIR]       build (or find cached) the Debian 12 test guest in DIR
# build-debian-guest.sh --print-key  print the cache key (see below)
# build-debian-guest.sh --print-dir  print the default DIR
#
# The "real guest" of issue 14, from Debian packages only (the host's apt sources; run as root):
#   debootstrap --variant=minbase bookworm + systemd, systemd-sysv, udev, dbus, iproute2,
#   procps, initramfs-tools and linux-image-cloud-amd64 (initrd by initramfs-tools in the chroot:
#   MODULES=list with the virtio modules for /dev/vda, virtio_net, virtio_balloon and ext4;
#   the other modules load from the root), security updates applied.
#   Boot: systemd; serial getty on ttyS0 with root autologin (bash; no pager, no colours, no
#   history file, debconf noninteractive: tests/guest/guestctl.py console-cmd drives it);
#   cloudlet-guest-ready.service prints CLOUDLET-GUEST-READY on the console once
#   `systemctl is-system-running --wait` returns (preceded by CLOUDLET-GUEST-DEGRADED: ...
#   naming the failed units if any). systemd-networkd does DHCP (IPv4 only) on en*/eth*;
#   nothing waits for the network: no NTP, wait-online and every timer masked, no resolver
#   (empty resolv.conf); the guest also boots without any NIC. Journal in RAM only.
#   Local apt repository, like install media, at /srv/cloudlet-repo (the only apt source,
#   `deb [trusted=yes] file:/srv/cloudlet-repo ./`, its index already fetched): lighttpd and
#   the dependencies the guest lacks (chosen over nginx: smaller closure), plus two packages
#   built here with dpkg-deb: cloudlet-answer (tests/guest/debian/cloudlet-answer.c compiled
#   with the host's gcc, a systemd unit, a lighttpd config proxying GET /answer on port 80 to
#   it) and cloudlet-answer-data (a 16 MiB model the service loads into RAM, 8 data files of
#   4 MiB its answer reads from disk, and a zoo of five 32 MiB models served on request, all
#   generated from a fixed seed by `cloudlet-answer --generate`). Neither lighttpd nor the app is installed: in the
#   guest, `apt-get install -y cloudlet-answer` installs them from the disk and starts them.
# Outputs (DIR and its files readable by QEMU's user):
#   DIR/disk.img        raw ext4 (4 KiB blocks), sparse, 2 GiB (CL_DEBIAN_DISK_MIB), root=/dev/vda
#   DIR/vmlinuz DIR/initrd.img DIR/cmdline   direct kernel boot (cmdline: one line)
#   DIR/ram-mib         RAM to give it (768)
#   DIR/answer.sha256   exactly what `curl http://GUEST/answer` returns once the app is installed
#   DIR/models.sha256   one line per zoo model: what `curl http://GUEST/model/zoo-N` returns
#   DIR/packages.txt    the repository's packages (name version architecture .deb-bytes)
#   DIR/kernel-version  DIR/.done (the key)
# Cache: key = sha256 of the output of `sha256sum build-debian-guest.sh debian/*` run in
# tests/guest (every file under tests/guest/debian/, C-locale order). If DIR/.done holds the
# key and the outputs exist, nothing is done ("cached in DIR"). The default DIR is
# /var/cache/cloudlet-test/debian-guest-<first 12 hex digits of the key> (CL_DEBIAN_GUEST_CACHE
# replaces /var/cache/cloudlet-test); `--print-dir` prints it, so a test can do
#   D=$(tests/guest/build-debian-guest.sh --print-dir) && tests/guest/build-debian-guest.sh "$D"
# tests/guest/check-debian-guest.sh DIR boots the result under QEMU (TCG) and checks it.
# Exit 77 (skip) only when it cannot be done here: not root, no apt, no bookworm source.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd -P)
SUITE=bookworm
RAM_MIB=768
DISK_MIB=${CL_DEBIAN_DISK_MIB:-2048}
CMDLINE="console=ttyS0 root=/dev/vda rootfstype=ext4 rw quiet loglevel=3 panic=-1"
MACHINE_ID=c10d1e7000000000000000000000000d
APP_VERSION=1.0
INITRD_MODULES=(virtio_pci virtio_blk virtio_net virtio_balloon ext4 crc32c_generic)
# (e2scrub_reap: removes e2scrub's LVM snapshots, there are none; ~5 s of a TCG boot)
MASK_UNITS=(systemd-networkd-wait-online.service systemd-timesyncd.service
  apt-daily.service apt-daily-upgrade.service e2scrub_reap.service)

die() { echo "build-debian-guest: ERROR: $*" >&2; exit 1; }
skip() { echo "build-debian-guest: SKIP: $*" >&2; exit 77; }
log() { echo "build-debian-guest: [$(date +%H:%M:%S)] $*" >&2; }

cache_key() {
  (cd "$HERE" && find debian -type f -print0 | LC_ALL=C sort -z |
     xargs -0 sha256sum build-debian-guest.sh) | sha256sum | cut -c1-64
}
KEY=$(cache_key)
DEFAULT_DIR=${CL_DEBIAN_GUEST_CACHE:-/var/cache/cloudlet-test}/debian-guest-${KEY:0:12}
case "${1:-}" in
  --print-key) echo "$KEY"; exit 0 ;;
  --print-dir) echo "$DEFAULT_DIR"; exit 0 ;;
  -h | --help) sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) die "unknown option $1" ;;
esac
[ $# -le 1 ] || die "usage: $0 [DIR] | --print-key | --print-dir"
OUT=${1:-$DEFAULT_DIR}
OUTPUTS=(disk.img vmlinuz initrd.img cmdline ram-mib answer.sha256 models.sha256 packages.txt kernel-version)

is_cached() {
  local f
  [ -f "$OUT/.done" ] && [ "$(cat "$OUT/.done")" = "$KEY" ] || return 1
  for f in "${OUTPUTS[@]}"; do [ -s "$OUT/$f" ] || return 1; done
}
if [ -d "$OUT" ] && is_cached; then
  log "cached in $OUT"
  exit 0
fi
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot)"
command -v apt-get >/dev/null || skip "no apt-get"
if [ "$OUT" = "$DEFAULT_DIR" ]; then
  mkdir -p "${DEFAULT_DIR%/*}"
  chmod 0755 "${DEFAULT_DIR%/*}"   # QEMU's user must reach it
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
exec 9>"$OUT/.lock"
flock -w 1800 9 || die "another build holds $OUT/.lock for 30 min"
if is_cached; then log "cached in $OUT (built by another process)"; exit 0; fi
rm -f "$OUT/.done"
T0=$SECONDS

# --- host tools -----------------------------------------------------------------------
APT_UPDATED=0
apt_install() { # apt_install PKG... : installs only what is missing
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ $APT_UPDATED = 0 ]; then
    timeout 300 apt-get update -q >&2 || log "apt-get update failed (continuing)"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2 || die "cannot install ${missing[*]}"
}
apt_install debootstrap e2fsprogs apt-utils dpkg-dev gcc libc6-dev debian-archive-keyring
HOST_SUITE=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null || true)
[ "$HOST_SUITE" = "$SUITE" ] ||
  log "WARNING: the host is ${HOST_SUITE:-unknown}, not $SUITE: cloudlet-answer is built against its glibc"

# The Debian sources of the host (deb822 or one-line format, as apt reads them): debootstrap
# uses the one for $SUITE, the chroot all of $SUITE, $SUITE-updates and $SUITE-security.
sources() {
  # shellcheck disable=SC2016 # apt's format fields
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' 2>/dev/null |
    awk -v s="$SUITE" '$3 == "main" && ($2 == s || $2 == s "-updates" || $2 == s "-security")' | sort -u
}
SOURCES=$(sources)
MIRROR=$(awk -v s="$SUITE" '$2 == s {print $1; exit}' <<<"$SOURCES")
[ -n "$MIRROR" ] || skip "no apt source for Debian $SUITE main on this host"
log "Debian archive: $MIRROR (from the host's apt sources)"

# --- work area and clean-up --------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/cl-debian-guest.XXXXXX")
ROOT=$WORK/root
mounts_under() { awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r; }
cleanup() {
  local rc=$? m
  set +e
  for m in $(mounts_under); do umount "$m" 2>/dev/null || umount -l "$m"; done
  if [ -n "$(mounts_under)" ]; then
    echo "build-debian-guest: ERROR: still mounted under $WORK, not removed: $(mounts_under)" >&2
  else
    rm -rf --one-file-system "$WORK"
  fi
  rm -f "$OUT"/*.tmp
  return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
in_root() { # in_root TIMEOUT CMD...: run CMD in the chroot, bounded, with a clean environment
  local t=$1
  shift
  timeout "$t" chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
}
APT_OPTS=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

# --- debootstrap -------------------------------------------------------------------------
log "debootstrap $SUITE (minbase + systemd) into $ROOT"
if ! timeout 900 debootstrap --variant=minbase --include=systemd,systemd-sysv,udev,dbus,iproute2,procps,initramfs-tools \
    "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -n 30 "$WORK/debootstrap.log" >&2
  tail -n 30 "$ROOT/debootstrap/debootstrap.log" >&2 2>/dev/null || true
  die "debootstrap failed (above)"
fi
log "debootstrap done ($((SECONDS - T0)) s)"
mount -t proc proc "$ROOT/proc"
mount -t sysfs -o ro sysfs "$ROOT/sys"

# --- packages: updates, kernel -----------------------------------------------------------
awk '{print "deb " $1 " " $2 " " $3}' <<<"$SOURCES" >"$ROOT/etc/apt/sources.list"
cat >"$ROOT/etc/apt/apt.conf.d/99cloudlet-build" <<'EOF'
Acquire::Check-Valid-Until "false";
Acquire::Languages "none";
EOF
echo force-unsafe-io >"$ROOT/etc/dpkg/dpkg.cfg.d/99cloudlet-build"
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
# Small image: no man pages, docs (but copyrights) or translations, now and in the guest.
cat >"$ROOT/etc/dpkg/dpkg.cfg.d/01cloudlet-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
find "$ROOT/usr/share/doc" -type f ! -name copyright -delete
find "$ROOT/usr/share/doc" -type l -delete
rm -rf "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

# initramfs-tools (installed by debootstrap) is configured before the kernel comes, so that
# the initrd is made once, with these modules.
printf '%s\n' "${INITRD_MODULES[@]}" >>"$ROOT/etc/initramfs-tools/modules"
cat >"$ROOT/etc/initramfs-tools/conf.d/cloudlet.conf" <<'EOF'
# cloudlet test guest: only the listed modules (+ their dependencies); gzip; no resume device
MODULES=list
COMPRESS=gzip
RESUME=none
EOF
log "apt-get update, upgrade, install linux-image-cloud-amd64 in the chroot"
in_root 300 apt-get update -q >"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log" >&2; die "apt-get update in the chroot failed"; }
in_root 900 apt-get "${APT_OPTS[@]}" upgrade >>"$WORK/apt.log" 2>&1 ||
  { tail -n 30 "$WORK/apt.log" >&2; die "apt-get upgrade in the chroot failed"; }
in_root 900 apt-get "${APT_OPTS[@]}" install linux-image-cloud-amd64 >>"$WORK/apt.log" 2>&1 ||
  { tail -n 30 "$WORK/apt.log" >&2; die "installing linux-image-cloud-amd64 in the chroot failed"; }
KVER=$(find "$ROOT/boot" -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -1)
if [ -z "$KVER" ] || [ ! -s "$ROOT/boot/initrd.img-$KVER" ]; then die "no kernel or initrd in $ROOT/boot"; fi
# Each listed module is in the initrd or built into the kernel.
in_root 120 lsinitramfs "/boot/initrd.img-$KVER" | sed -n 's|.*/\([^/]*\)\.ko$|\1|p' >"$WORK/initrd-modules"
sed 's|.*/||; s|\.ko$||' "$ROOT/lib/modules/$KVER/modules.builtin" >>"$WORK/initrd-modules"
for m in "${INITRD_MODULES[@]}"; do
  grep -qx "$m" "$WORK/initrd-modules" || die "module $m is neither in the initrd nor built into $KVER"
done
log "kernel $KVER, initrd $(stat -c %s "$ROOT/boot/initrd.img-$KVER") bytes ($((SECONDS - T0)) s)"

# --- system configuration ----------------------------------------------------------------
echo cloudlet-guest >"$ROOT/etc/hostname"
echo "$MACHINE_ID" >"$ROOT/etc/machine-id"   # fixed: not a first boot (no firstboot prompts)
printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t0\n' >"$ROOT/etc/fstab"
mkdir -p "$ROOT/etc/sysctl.d" "$ROOT/etc/systemd/journald.conf.d" "$ROOT/etc/systemd/network" \
  "$ROOT/etc/systemd/system/serial-getty@ttyS0.service.d" "$ROOT/etc/systemd/system/getty.target.wants"
# Kernel messages would mix into what the console shell prints.
echo 'kernel.printk = 1 4 1 3' >"$ROOT/etc/sysctl.d/10-cloudlet-console.conf"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' >"$ROOT/etc/systemd/journald.conf.d/cloudlet.conf"
cat >"$ROOT/etc/systemd/network/20-cloudlet-wired.network" <<'EOF'
# cloudlet test guest: DHCPv4 on the virtio NIC (QEMU user-mode networking gives 10.0.2.15)
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseDNS=no
UseNTP=no
UseHostname=no
EOF
cat >"$ROOT/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
# cloudlet test guest: root shell on the serial console; a line when it ends (guestctl.py)
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
ExecStopPost=-/bin/sh -c 'echo CLOUDLET-SHELL-RESPAWN >/dev/ttyS0'
EOF
ln -sf /lib/systemd/system/serial-getty@.service "$ROOT/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
cat >"$ROOT/etc/profile.d/cloudlet-console.sh" <<'EOF'
# cloudlet test guest: the console shell is driven by programs (guestctl.py console-cmd,
# cloudlet overlay --console-script): no pagers, colours, history file or debconf questions.
export PAGER=cat SYSTEMD_PAGER= SYSTEMD_COLORS=0 DEBIAN_FRONTEND=noninteractive
unset HISTFILE
EOF
printf 'set enable-bracketed-paste off\n' >"$ROOT/root/.inputrc"
echo LANG=C.UTF-8 >"$ROOT/etc/default/locale"   # built into glibc: no locales package
: >"$ROOT/root/.hushlogin"
echo 'debconf debconf/frontend select Noninteractive' | in_root 60 debconf-set-selections
install -m 0755 "$HERE/debian/cloudlet-guest-ready" "$ROOT/usr/local/sbin/cloudlet-guest-ready"
install -m 0644 "$HERE/debian/cloudlet-guest-ready.service" "$ROOT/etc/systemd/system/"
in_root 60 systemctl enable cloudlet-guest-ready.service systemd-networkd.service >>"$WORK/apt.log" 2>&1 ||
  die "systemctl enable in the chroot failed"
mapfile -t timers < <(cd "$ROOT" && find lib/systemd/system etc/systemd/system -name '*.timer' -printf '%f\n' | sort -u)
for u in "${MASK_UNITS[@]}" "${timers[@]}"; do ln -sf /dev/null "$ROOT/etc/systemd/system/$u"; done
log "masked: ${MASK_UNITS[*]} ${timers[*]}"

# --- the two packages ----------------------------------------------------------------------
P=$WORK/pkg
mkdir -p "$P/bin" "$P/answer/DEBIAN" "$P/data/DEBIAN" "$P/debs"
gcc -O2 -Wall -Wextra -Werror -o "$P/bin/cloudlet-answer" "$HERE/debian/cloudlet-answer.c" ||
  die "cannot compile cloudlet-answer.c"
DATA=$P/data/usr/share/cloudlet-answer
mkdir -p "$DATA"
"$P/bin/cloudlet-answer" --generate "$DATA" || die "cloudlet-answer --generate failed"
# The expected answer: what the app prints, computed here with coreutils.
(cd "$P/data" && sha256sum usr/share/cloudlet-answer/model.bin &&
   find usr/share/cloudlet-answer/data -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
  sed 's|  usr/|  /usr/|' >"$P/answer.sha256"
(cd "$P/data" && sha256sum usr/share/cloudlet-answer/models/zoo-*.bin) | sed 's|  usr/|  /usr/|' >"$P/models.sha256"
A=$P/answer
install -D -m 0755 "$P/bin/cloudlet-answer" "$A/usr/sbin/cloudlet-answer"
install -D -m 0644 "$HERE/debian/cloudlet-answer.service" "$A/lib/systemd/system/cloudlet-answer.service"
install -D -m 0644 "$HERE/debian/cloudlet-answer.lighttpd.conf" "$A/etc/lighttpd/conf-available/50-cloudlet-answer.conf"
install -m 0755 "$HERE/debian/cloudlet-answer.postinst" "$A/DEBIAN/postinst"
install -m 0755 "$HERE/debian/cloudlet-answer.prerm" "$A/DEBIAN/prerm"
echo /etc/lighttpd/conf-available/50-cloudlet-answer.conf >"$A/DEBIAN/conffiles"
control() { # control DIR NAME ARCH DEPENDS DESCRIPTION
  cat >"$1/DEBIAN/control" <<EOF
Package: $2
Version: $APP_VERSION
Architecture: $3
Maintainer: cloudlet developers <cloudlet@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$1" | cut -f1)
Depends: $4
Section: misc
Priority: optional
Description: $5
 Test application of the cloudlet Debian test guest (tests/guest/build-debian-guest.sh).
EOF
}
control "$A" cloudlet-answer amd64 "libc6 (>= 2.34), lighttpd, cloudlet-answer-data (= $APP_VERSION)" \
  "cloudlet test service: SHA-256 of a model kept in RAM, over HTTP"
control "$P/data" cloudlet-answer-data all "" "cloudlet test data: a 16 MiB model, 8 data files and a zoo of 5 models"
sed -i '/^Depends: $/d' "$P/data/DEBIAN/control"
dpkg-deb --root-owner-group -Zgzip -z1 --build "$A" "$P/debs/cloudlet-answer_${APP_VERSION}_amd64.deb" >&2 ||
  die "dpkg-deb cloudlet-answer failed"
dpkg-deb --root-owner-group -Zgzip -z1 --build "$P/data" "$P/debs/cloudlet-answer-data_${APP_VERSION}_all.deb" >&2 ||
  die "dpkg-deb cloudlet-answer-data failed"

# --- the local repository ------------------------------------------------------------------
# The web server and every dependency the guest lacks, computed against the chroot's dpkg
# status: apt in the chroot downloads exactly what `apt-get install lighttpd` would install.
log "local repository: lighttpd's closure + the two packages"
in_root 120 apt-get clean
in_root 600 apt-get "${APT_OPTS[@]}" --download-only install lighttpd >>"$WORK/apt.log" 2>&1 ||
  { tail -n 20 "$WORK/apt.log" >&2; die "downloading lighttpd and its dependencies failed"; }
REPO=$ROOT/srv/cloudlet-repo
mkdir -p "$REPO"
find "$ROOT/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec mv {} "$REPO/" \;
ls "$REPO"/lighttpd_*.deb >/dev/null 2>&1 || die "lighttpd was not downloaded"
cp "$P"/debs/*.deb "$REPO/"
(cd "$REPO" && apt-ftparchive packages . >Packages && gzip -9nk Packages &&
   apt-ftparchive -o APT::FTPArchive::Release::Origin=cloudlet -o APT::FTPArchive::Release::Label=cloudlet-repo \
     release . >Release) || die "apt-ftparchive failed"
chmod -R a+rX "$ROOT/srv"
rm -f "$ROOT/etc/apt/sources.list"
rm -f "$ROOT"/etc/apt/sources.list.d/*
echo 'deb [trusted=yes] file:/srv/cloudlet-repo ./' >"$ROOT/etc/apt/sources.list.d/cloudlet-repo.list"
# apt discards the terminal's pending input before it runs dpkg (DPkg::FlushSTDIN, and a
# TCSAFLUSH when it sets up its pty, Dpkg::Use-Pty): that would eat the lines typed on the
# console behind `apt-get install` (cloudlet's --console-script types a line and, at once, the
# echo of a marker), and the console would wait for that marker forever.
cat >"$ROOT/etc/apt/apt.conf.d/90cloudlet" <<'EOF'
APT::Install-Recommends "false";
Acquire::Languages "none";
DPkg::FlushSTDIN "false";
DPkg::Use-Pty "false";
EOF
rm -f "$ROOT/etc/apt/apt.conf.d/99cloudlet-build"
rm -rf "$ROOT"/var/lib/apt/lists/*
in_root 120 apt-get update -q >>"$WORK/apt.log" 2>&1 || { tail -n 20 "$WORK/apt.log" >&2; die "apt-get update from the local repository failed"; }
# The repository alone must install the app.
in_root 120 apt-get -s install cloudlet-answer >"$WORK/sim.txt" 2>&1 || { cat "$WORK/sim.txt" >&2; die "the local repository cannot install cloudlet-answer"; }
if in_root 60 dpkg-query -W -f="\${Status}\n" lighttpd 2>/dev/null | grep -q ' installed$'; then
  die "lighttpd is installed in the base"
fi
(cd "$REPO" && for f in *.deb; do
   # shellcheck disable=SC2016 # dpkg-deb's format fields
   printf '%s %s\n' "$(dpkg-deb -W --showformat='${Package} ${Version} ${Architecture}' "$f")" "$(stat -c %s "$f")"
 done | sort) >"$P/packages.txt"
# Every package the simulated install would unpack is in the repository, and the reverse.
diff <(sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1 \2/p' "$WORK/sim.txt" | sort) \
     <(awk '{print $1, $2}' "$P/packages.txt") >&2 || die "the repository is not exactly the closure"
log "repository: $(wc -l <"$P/packages.txt") packages, $(du -sh "$REPO" | cut -f1)"

# --- clean the root, make the disk ---------------------------------------------------------
# (Until now the chroot resolved names as the host does: debootstrap copies its resolv.conf.)
printf '127.0.0.1\tlocalhost\n127.0.1.1\tcloudlet-guest\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
printf '# cloudlet test guest: no resolver (glibc tries 127.0.0.1 and fails at once)\n' >"$ROOT/etc/resolv.conf"
in_root 120 apt-get clean
rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/dpkg/dpkg.cfg.d/99cloudlet-build"
rm -f "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/lib/dpkg/*-old "$ROOT"/var/cache/debconf/*-old
rm -rf "$ROOT"/var/log/apt/* "$ROOT"/tmp/* "$ROOT"/var/tmp/* "$ROOT/debootstrap"
find "$ROOT/var/log" -type f -exec truncate -s 0 {} +
for m in $(mounts_under); do umount "$m"; done
[ -z "$(mounts_under)" ] || die "cannot unmount $(mounts_under)"
chmod 0755 "$ROOT"
log "root file system: $(du -sh "$ROOT" | cut -f1); making the $DISK_MIB MiB ext4 image"
truncate -s "${DISK_MIB}M" "$WORK/disk.img"
# 4 KiB blocks (file data page-aligned, as in the guest's page cache); fixed UUID and hash seed;
# inode tables and journal written now (no ext4lazyinit writes in the guest).
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -b 4096 -L cloudlet-debian \
  -U 6c6f7564-6c65-7400-0000-0000000000d1 \
  -E lazy_itable_init=0,lazy_journal_init=0,hash_seed=6c6f7564-6c65-7400-0000-0000000000d2 \
  -d "$ROOT" "$WORK/disk.img" >&2 || die "mkfs.ext4 -d failed"
e2fsck -fn "$WORK/disk.img" >"$WORK/fsck.log" 2>&1 || { cat "$WORK/fsck.log" >&2; die "the new image does not pass e2fsck"; }

# --- publish ---------------------------------------------------------------------------------
pub() { cp --sparse=always "$1" "$OUT/$2.tmp" && chmod 0644 "$OUT/$2.tmp" && mv "$OUT/$2.tmp" "$OUT/$2"; }
pub "$ROOT/boot/vmlinuz-$KVER" vmlinuz
pub "$ROOT/boot/initrd.img-$KVER" initrd.img
pub "$WORK/disk.img" disk.img
pub "$P/answer.sha256" answer.sha256
pub "$P/models.sha256" models.sha256
pub "$P/packages.txt" packages.txt
echo "$CMDLINE" >"$WORK/cmdline" && pub "$WORK/cmdline" cmdline
echo "$RAM_MIB" >"$WORK/ram-mib" && pub "$WORK/ram-mib" ram-mib
echo "$KVER" >"$WORK/kernel-version" && pub "$WORK/kernel-version" kernel-version
chmod 0755 "$OUT"
u=$(getent passwd libvirt-qemu | cut -d: -f1 || true)
if [ -n "$u" ] && ! runuser -u "$u" -- test -r "$OUT/disk.img" 2>/dev/null; then
  log "WARNING: $u cannot reach $OUT (a parent directory is not searchable): QEMU under libvirt cannot open it"
fi
echo "$KEY" >"$OUT/.done"
log "built in $OUT in $((SECONDS - T0)) s: kernel $KVER; disk $(du -h --apparent-size "$OUT/disk.img" | cut -f1) apparent, $(du -h "$OUT/disk.img" | cut -f1) allocated"
