#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# shellcheck disable=SC2016 # guest commands are single-quoted on purpose: they expand in the guest
# check-debian-guest.sh DIR: boot the Debian test guest that build-debian-guest.sh made in DIR
# directly under QEMU (TCG, no libvirt), on a sparse copy of its disk, and check it:
#   1. with a virtio NIC (user-mode networking, restrict=on: the guest reaches nothing outside;
#      host port forward 127.0.0.1:PORT -> guest:80) and a virtio balloon with free page
#      reporting: time to CLOUDLET-GUEST-READY (fails on CLOUDLET-GUEST-DEGRADED); in the guest,
#      through guestctl.py console-cmd: system "running", no failed unit, 10.0.2.15 by DHCP,
#      virtio_balloon bound with free page reporting (feature bit 5), lighttpd and the app not
#      installed, the local repository the only apt source; then `apt-get install -y
#      cloudlet-answer` typed as cloudlet's --console-script types a line (the line, then at
#      once an echo of a marker), and `curl http://127.0.0.1:PORT/answer` == DIR/answer.sha256;
#      then fstrim; still no failed unit.
#   2. without any NIC (-nic none): time to ready, only lo, no failed unit.
# Every wait is bounded (CL_BOOT_TIMEOUT, default 300 s, per boot); QEMU is killed on exit.
# Prints the measured times and "check-debian-guest: OK" at the end; exit 1 on failure,
# 77 if QEMU or python3 is missing and cannot be installed.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd -P)
GUESTCTL=(python3 "$HERE/guestctl.py")
BOOT_TIMEOUT=${CL_BOOT_TIMEOUT:-300}

die() { echo "check-debian-guest: ERROR: $*" >&2; exit 1; }
skip() { echo "check-debian-guest: SKIP: $*" >&2; exit 77; }
log() { echo "check-debian-guest: [$(date +%H:%M:%S)] $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 DIR (made by build-debian-guest.sh)"
D=$(cd "$1" && pwd -P)
for f in disk.img vmlinuz initrd.img cmdline ram-mib answer.sha256 models.sha256; do
  [ -s "$D/$f" ] || die "no $D/$f (run tests/guest/build-debian-guest.sh $D first)"
done
for t in qemu-system-x86_64:qemu-system-x86 python3:python3 curl:curl; do
  command -v "${t%%:*}" >/dev/null && continue
  [ "$(id -u)" = 0 ] || skip "no ${t%%:*} and not root to install ${t#*:}"
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends "${t#*:}" >&2 ||
    skip "cannot install ${t#*:}"
done
RAM=$(cat "$D/ram-mib")
CMDLINE=$(cat "$D/cmdline")

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/cl-check-debian.XXXXXX")
QEMU_PID=""
stop_qemu() {
  if [ -n "$QEMU_PID" ]; then
    kill "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=""
  fi
}
cleanup() {
  local rc=$?
  set +e
  stop_qemu
  rm -rf "$WORK"
  return $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# boot NAME NETDEV-ARGS...: start QEMU on a fresh copy of the disk; serial console on
# $WORK/NAME.sock, logged to $WORK/NAME.log; wait for the ready line; READY_S := seconds.
boot() {
  local name=$1 t0 end
  shift
  cp --sparse=always "$D/disk.img" "$WORK/disk.img"
  rm -f "$WORK/$name.sock" "$WORK/$name.log"
  t0=$EPOCHREALTIME
  end=$((SECONDS + BOOT_TIMEOUT))
  qemu-system-x86_64 -machine pc -accel tcg -smp 1 -m "$RAM" -nographic -monitor none -no-reboot \
    -kernel "$D/vmlinuz" -initrd "$D/initrd.img" -append "$CMDLINE" \
    -drive "file=$WORK/disk.img,format=raw,if=virtio,discard=unmap" \
    -device virtio-balloon-pci,free-page-reporting=on \
    -chardev "socket,id=con0,path=$WORK/$name.sock,server=on,wait=off,logfile=$WORK/$name.log" \
    -serial chardev:con0 "$@" </dev/null >"$WORK/$name.qemu.out" 2>&1 &
  QEMU_PID=$!
  while :; do
    if [ -f "$WORK/$name.log" ] && grep -aq CLOUDLET-GUEST-READY "$WORK/$name.log"; then break; fi
    if ! kill -0 "$QEMU_PID" 2>/dev/null; then
      cat "$WORK/$name.qemu.out" >&2
      tail -c 3000 "$WORK/$name.log" >&2 2>/dev/null
      die "QEMU ($name) exited before the guest was ready"
    fi
    if [ $SECONDS -ge $end ]; then
      tail -c 3000 "$WORK/$name.log" >&2 2>/dev/null
      die "guest ($name) not ready within $BOOT_TIMEOUT s"
    fi
    sleep 0.2
  done
  READY_S=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  if grep -aq CLOUDLET-GUEST-DEGRADED "$WORK/$name.log"; then
    grep -a CLOUDLET-GUEST-DEGRADED "$WORK/$name.log" >&2
    die "guest ($name) booted degraded"
  fi
  "${GUESTCTL[@]}" console-wait "$WORK/$name.sock" 60 || die "no shell on the console ($name)"
  SOCK=$WORK/$name.sock
}

# g TIMEOUT CMD: run CMD in the guest shell; its output on stdout; die if it fails.
g() { "${GUESTCTL[@]}" console-cmd "$SOCK" "$1" "$2" || die "guest command failed ($?): $2"; }

# type_line TIMEOUT LINE: type LINE and, right behind it, an echo of a marker, as
# `cloudlet overlay --console-script` does (synth/vm/cl_console.c); wait for the marker.
type_line() { "${GUESTCTL[@]}" console-type "$SOCK" "$1" "$2"; }

# --- 1. with a NIC -----------------------------------------------------------------------
PORT=$(free_port)
log "boot 1: virtio NIC (user-mode, restrict=on, 127.0.0.1:$PORT -> guest:80), ${RAM} MiB, TCG"
boot nic -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$PORT-:80" -device virtio-net-pci,netdev=n0
READY_NIC=$READY_S
log "ready in $READY_NIC s"
[ "$(g 60 'systemctl is-system-running' | tr -d '\r\n')" = running ] || die "system not running"
failed=$(g 60 'systemctl list-units --failed --plain --no-legend')
[ -z "$failed" ] || die "failed units: $failed"
addr=$(g 60 'ip -4 -o addr show scope global')
grep -q 'inet 10\.0\.2\.15/' <<<"$addr" || die "no 10.0.2.15 on the NIC: $addr"
log "DHCP: $(awk '{print $2, $4}' <<<"$addr")"
g 30 'test -d /sys/bus/virtio/drivers/virtio_balloon' >/dev/null || die "virtio_balloon is not bound"
feat=$(g 30 'cat /sys/bus/virtio/drivers/virtio_balloon/virtio*/features')
[ "${feat:5:1}" = 1 ] || die "virtio_balloon without free page reporting (features $feat)"
log "virtio_balloon bound, free page reporting on"
g 30 '! dpkg-query -W -f="\${Status}\n" lighttpd cloudlet-answer 2>/dev/null | grep -q " installed$"' >/dev/null ||
  die "lighttpd or cloudlet-answer is already installed in the base"
srcs=$(g 30 'cat /etc/apt/sources.list.d/* /etc/apt/sources.list 2>/dev/null | grep -v "^#" | grep .')
[ "$srcs" = 'deb [trusted=yes] file:/srv/cloudlet-repo ./' ] || die "unexpected apt sources: $srcs"
g 30 'free -m; df -h /' >&2
t=$SECONDS
type_line 900 'apt-get install -y cloudlet-answer' >"$WORK/install.log" || { tail -c 3000 "$WORK/install.log" >&2; die "apt-get install -y cloudlet-answer did not finish"; }
g 30 'dpkg-query -W -f="\${Status}\n" cloudlet-answer lighttpd | grep -c " installed$"' | grep -qx 2 ||
  { tail -c 3000 "$WORK/install.log" >&2; die "cloudlet-answer is not installed"; }
g 30 'systemctl is-active cloudlet-answer lighttpd' >/dev/null || die "cloudlet-answer or lighttpd not active"
INSTALL_S=$((SECONDS - t))
log "apt-get install -y cloudlet-answer: $INSTALL_S s"
t=$SECONDS
curl -sS --max-time 300 -o "$WORK/answer" "http://127.0.0.1:$PORT/answer" || die "curl http://127.0.0.1:$PORT/answer failed"
ANSWER_S=$((SECONDS - t))
cmp -s "$WORK/answer" "$D/answer.sha256" || { diff "$D/answer.sha256" "$WORK/answer" >&2; die "the answer differs from $D/answer.sha256"; }
log "GET /answer from the host: matches answer.sha256 ($(wc -l <"$WORK/answer") lines, $ANSWER_S s)"
curl -sS --max-time 300 -o "$WORK/zoo" "http://127.0.0.1:$PORT/model/zoo-5" || die "curl http://127.0.0.1:$PORT/model/zoo-5 failed"
grep -qxF -f "$WORK/zoo" "$D/models.sha256" || die "GET /model/zoo-5 returned $(head -c 200 "$WORK/zoo"), not a line of $D/models.sha256"
log "GET /model/zoo-5 from the host: matches models.sha256"
g 120 'fstrim -v /' >&2 || die "fstrim failed"
failed=$(g 60 'systemctl list-units --failed --plain --no-legend')
[ -z "$failed" ] || die "failed units after the install: $failed"
stop_qemu

# --- 2. without a NIC --------------------------------------------------------------------
log "boot 2: no NIC"
boot nonic -nic none
READY_NONIC=$READY_S
log "ready in $READY_NONIC s"
[ "$(g 60 'systemctl is-system-running' | tr -d '\r\n')" = running ] || die "system not running (no NIC)"
links=$(g 30 'ip -o link show | cut -d: -f2 | tr -d " " | paste -sd" "')
[ "$links" = lo ] || die "links without a NIC: $links"
stop_qemu

echo "check-debian-guest: ready in $READY_NIC s (NIC) and $READY_NONIC s (no NIC) under TCG with $RAM MiB;" \
  "apt-get install -y cloudlet-answer $INSTALL_S s; GET /answer $ANSWER_S s, as expected"
echo "check-debian-guest: OK"
