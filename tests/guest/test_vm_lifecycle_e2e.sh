#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# End to end, the whole story with the VM commands: `cloudlet base` boots the
# test guest and makes it a base, `cloudlet overlay --console-script` resumes
# it, customizes it (files on the disk, data in RAM) and makes the overlay,
# nginx serves the overlay slowly on 127.0.0.1, `cloudlet synthesis IMAGE URL`
# resumes the customized VM while most of the overlay has not arrived, the
# guest shows the customized files and RAM data with the checksums the host
# computed (from seeds it put on the base disk), and SIGTERM leaves no domain,
# mount or file behind.
# ctest guest.test_vm_lifecycle_e2e (labels guest, e2e); $1 = the workload dir
# (only its guest/: kernel, initrd, disk template).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/../lib/nginx.sh"
source "$HERE/../lib/link.sh"

[ $# -eq 1 ] || cl_die "usage: $0 WORKLOAD_DIR"
cl_use_workload "$1"
cloudlet=${CLOUDLET:?CLOUDLET not set (the cloudlet program)}
RATE=${CL_E2E_RATE:-16mbit} # the whole link, shared by cloudletfs's connections
RUN_ROOT=/run/cloudlet

cl_init
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || cl_skip "no nginx"
QDIR=$(cl_qdir "$W")
cl_scratch S "$QDIR" vm-lifecycle # QEMU must reach the base's directory
cl_at_exit cl_nginx_stop
export CLOUDLET_HOME=$S/home
G=$W/guest
cp --sparse=always "$G/disk.img" "$S/disk.img"
# QEMU (libvirt-qemu) opens the kernel: from the scratch directory it can reach, not
# through the checkout (which may be under /root).
mkdir -p "$S/k"
cp "$G/vmlinuz" "$G/initrd.img" "$S/k/"
# The customization's data comes from seeds the host makes and puts on the base disk; the
# guest shifts each by a few bytes (so nothing dedups against the base), and the host
# knows every checksum the synthesized guest must show.
head -c $((12 << 20)) /dev/urandom >"$S/seed1.bin"
head -c $((777 * 4096)) /dev/urandom >"$S/seed2.bin"
head -c $((16 << 20)) /dev/urandom >"$S/seed3.bin"
for i in 1 2 3; do
	debugfs -w -R "write $S/seed$i.bin seed$i.bin" "$S/disk.img" >/dev/null 2>&1 ||
		cl_die "debugfs could not put seed$i.bin on the disk image"
done
{
	echo "$(tail -c +2 "$S/seed1.bin" | md5sum | cut -d' ' -f1)  /mnt/data/r1.bin"
	echo "$(tail -c +3 "$S/seed2.bin" | md5sum | cut -d' ' -f1)  /mnt/data/r2.bin"
	echo "$(md5sum </bin/busybox | cut -d' ' -f1)  /mnt/data/busybox.copy"
	echo "$(tail -c +4 "$S/seed3.bin" | md5sum | cut -d' ' -f1)  /ram/blob.bin"
	echo "$(echo cloudlet-e2e-marker | md5sum | cut -d' ' -f1)  /ram/marker.txt"
} >"$S/sums.host"

cl_log "cloudlet base: boot the test guest, snapshot it once ready"
t=$SECONDS
"$cloudlet" base "$S/disk.img" --kernel "$S/k/vmlinuz" --initrd "$S/k/initrd.img" \
	--cmdline "console=ttyS0 panic=-1 loglevel=4" --snapshot-on CLOUDLET-GUEST-READY \
	--name "${CL_PREFIX}base" --timeout 300 </dev/null || cl_die "cloudlet base failed"
echo "base made in $((SECONDS - t)) s"
for f in memory state domain.xml; do
	[ -s "$S/disk.img.$f" ] && ok "base has disk.img.$f" || bad "no $S/disk.img.$f"
done
"$cloudlet" list-base | grep -q "$S/disk.img" && ok "base registered" || bad "base not listed"

# One command per line; the quotes keep the typed line's echo from matching.
cat >"$S/script.sh" <<'SCRIPT'
# customization, typed into the guest's serial console
mkdir -p /mnt/data && tail -c +2 /mnt/seed1.bin >/mnt/data/r1.bin
tail -c +3 /mnt/seed2.bin >/mnt/data/r2.bin && cp /bin/busybox /mnt/data/busybox.copy
tail -c +4 /mnt/seed3.bin >/ram/blob.bin
echo cloudlet-e2e-marker >/ram/marker.txt
rm /mnt/seed1.bin /mnt/seed2.bin /mnt/seed3.bin && sync
fstrim /mnt
echo 3 >/proc/sys/vm/drop_caches
echo CUSTOM""-DONE
SCRIPT
cl_log "cloudlet overlay: resume the base, type the script, make the overlay"
t=$SECONDS
mkdir -p "$S/www"
"$cloudlet" overlay "$S/disk.img" -o "$S/www/ov" --console-script "$S/script.sh" \
	--snapshot-on CUSTOM-DONE --name "${CL_PREFIX}ov" --timeout 300 --profile 5 </dev/null |
	tee "$S/overlay.txt" || cl_die "cloudlet overlay failed"
grep -q "traced .* chunks first" "$S/overlay.txt" && ok "overlay rewritten in profiled order" ||
	bad "no profiled order in the overlay"
echo "overlay made in $((SECONDS - t)) s"
[ "$(stat -c %U "$S/disk.img")" = root ] && ok "the base image kept its owner" ||
	bad "the base image now belongs to $(stat -c %U "$S/disk.img")"
ls "$S/www/ov" | grep -q '^\.cloudlet-overlay' && bad "work files left in $S/www/ov" ||
	ok "no work files left next to the overlay"

cl_nginx_start "$S/nginx" "$S/www" || cl_die "nginx did not start"
cl_at_exit "cl_link_unshape $NGINX_PORT"
cl_link_require "$NGINX_PORT" "$RATE"
URL=http://127.0.0.1:$NGINX_PORT/ov/overlay-meta
NAME=${CL_PREFIX}synth
MNT=$RUN_ROOT/$NAME/mnt

cl_log "cloudlet synthesis $URL (a $RATE link)"
cl_synthesis "$NAME" "$S/out" "$S/err" "$S/disk.img" "$URL"
SPID=$CL_SYNTH_PID
STATUS_AT_RESUME=$(cat "$MNT/status")
DAEMON=$(sed -n 's/^pid: //p' <<<"$STATUS_AT_RESUME")
cat "$S/out"
read -r got total < <(sed -n 's/.*VM resumed: fetched \([0-9]*\) of \([0-9]*\) bytes.*/\1 \2/p' "$S/out")
echo "at resume: $got of $total bytes fetched ($((100 * got / total))%)"
[ "$((2 * got))" -lt "$total" ] && ok "resumed with less than half of the overlay fetched" ||
	bad "resumed only after $got of $total bytes"
grep -q '^state: streaming' <<<"$STATUS_AT_RESUME" && ok "overlay still streaming at resume" ||
	bad "overlay not streaming at resume"

SOCK=$RUN_ROOT/$NAME/console.sock
t=$SECONDS
marker=$($CL_GUESTCTL console-cmd "$SOCK" 120 'cat /ram/marker.txt') || bad "the guest does not answer"
echo "first answer $((SECONDS - t)) s after resume: $marker"
[ "$marker" = cloudlet-e2e-marker ] && ok "RAM marker intact" || bad "RAM marker is '$marker'"
$CL_GUESTCTL console-cmd "$SOCK" 600 \
	'cd / && md5sum /mnt/data/r1.bin /mnt/data/r2.bin /mnt/data/busybox.copy /ram/blob.bin /ram/marker.txt' \
	>"$S/sums.after" || bad "checksumming in the guest failed"
# Only the checksum lines: a kernel message may be printed amid the output.
grep -E '^[0-9a-f]{32}  /' "$S/sums.after" >"$S/sums.guest" || true
if diff -u "$S/sums.host" "$S/sums.guest"; then
	ok "all 5 checksums (disk files read from the disk, RAM data) are the ones the host computed"
else
	bad "the synthesized guest's checksums differ from the host's"
fi
echo "disk chunks accessed: $(cat "$MNT/disk/stats/chunks_accessed"); $(grep -E '^(state|bytes):' "$MNT/status" | tr '\n' ' ')"

cl_log "stopping synthesis (SIGTERM)"
kill -TERM "$SPID"
rc=0
for _ in $(seq 600); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SPID" 2>/dev/null && { bad "synthesis still runs 60 s after SIGTERM"; kill -KILL "$SPID"; }
cl_wait_helper "$SPID" || rc=$?
tail -n 3 "$S/out"
[ -s "$S/err" ] && { echo "--- stderr"; cat "$S/err"; }
[ "$rc" = 0 ] && ok "synthesis exited 0" || bad "synthesis exited $rc"
for d in base ov ov-profile synth; do
	cl_domain_exists "${CL_PREFIX}$d" && bad "domain ${CL_PREFIX}$d left" || ok "no domain ${CL_PREFIX}$d"
	[ -e "$RUN_ROOT/${CL_PREFIX}$d" ] && bad "$RUN_ROOT/${CL_PREFIX}$d left" ||
		ok "no files left in $RUN_ROOT/${CL_PREFIX}$d"
done
grep -q " $MNT fuse" /proc/mounts && bad "$MNT still mounted" || ok "no mount left"
live() { [ -n "$1" ] && [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^[ZX]'; }
live "$DAEMON" && bad "cloudletfs $DAEMON still runs" || ok "cloudletfs exited"

cl_checks_done
