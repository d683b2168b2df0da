#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# `cloudlet check` against the real libvirt and this host's settings:
#  - with /dev/kvm as hosts without udev leave it (0600 root:root), libvirt
#    re-probes QEMU at every domain start: check must time a slow start, name
#    /dev/kvm as the cause with its fix, and exit 1;
#  - with vm.unprivileged_userfaultfd = 0 it must report postcopy memory
#    unavailable (a note: exit status unchanged) with the fix;
#  - `cloudlet check --fix` must say each fix first, give /dev/kvm group kvm
#    and mode 0660, write /etc/sysctl.d/60-cloudlet-userfaultfd.conf and set
#    the sysctl to 1, say what it changed, then time a start under 3 s and
#    report postcopy available; a second --fix changes nothing;
#  - in a mount namespace of its own (the host keeps its files): a host
#    without tc gets a note and its fix, and a QEMU other than 7.2 gets
#    postcopy unavailable naming its version.
# /dev/kvm's mode, the sysctl and the drop-in are restored exactly at exit.
# ctest guest.test_host_check (label guest, no fixture: it needs no guest).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"

cloudlet=${CLOUDLET:?CLOUDLET not set (the cloudlet program)}
cl_init
[ -c /dev/kvm ] || cl_skip "no /dev/kvm on this host: libvirt probes TCG only, nothing to check"
getent group kvm >/dev/null || cl_die "no group kvm (qemu-system-x86 makes it)"
UFFD=/proc/sys/vm/unprivileged_userfaultfd
DROPIN=/etc/sysctl.d/60-cloudlet-userfaultfd.conf
[ -w "$UFFD" ] || cl_skip "no writable $UFFD: this kernel has no userfaultfd"
T=$(mktemp -d /var/tmp/cl-check.XXXXXX)
cl_at_exit "rm -rf '$T'"
SAVED=$(stat -c '%a %u %g' /dev/kvm)
cl_at_exit "set -- $SAVED; chmod \$1 /dev/kvm; chown \$2:\$3 /dev/kvm"
# The sysctl's value, and the drop-in as it was (mode, owner, contents) or none.
cl_at_exit "echo $(cat "$UFFD") >$UFFD"
if [ -e "$DROPIN" ]; then
	cp -p "$DROPIN" "$T/dropin"
	cl_at_exit "cp -p '$T/dropin' '$DROPIN'"
else
	cl_at_exit "rm -f '$DROPIN'"
fi
# start_s FILE: the seconds of "ok|FAIL domain-start: N s" in FILE.
start_s() { sed -n 's/^\(ok\|FAIL\)  *domain-start: \([0-9.]*\) s.*/\2/p' "$1"; }
# has FILE REGEX WHAT: one check that a line of FILE matches REGEX.
has() { grep -q -- "$2" "$1" && ok "$3" || bad "$3: no line matching '$2'"; }
# line_no FILE REGEX: the number of the first line matching REGEX.
line_no() { grep -n -m1 -- "$2" "$1" | cut -d: -f1; }

cl_log "/dev/kvm as without udev (0600 root:root), vm.unprivileged_userfaultfd = 0, no drop-in"
chown root:root /dev/kvm
chmod 0600 /dev/kvm
echo 0 >"$UFFD"
rm -f "$DROPIN"
rc=0
"$cloudlet" check >"$T/out" 2>"$T/err" || rc=$?
cat "$T/out" "$T/err"
[ "$rc" = 1 ] && ok "check exits 1" || bad "check exited $rc"
has "$T/out" "^FAIL  kvm: libvirt starts domains slowly: /dev/kvm is 0600 root:root, which libvirt-qemu may not read and write" \
	"the cause is named"
has "$T/out" '^fix   kvm: run `cloudlet check --fix` as root' "the kvm fix is named"
has "$T/out" "^note  userfaultfd: vm.unprivileged_userfaultfd = 0: QEMU (as libvirt-qemu, without capabilities) may not call userfaultfd(2)" \
	"userfaultfd: a note naming the sysctl"
has "$T/out" "^fix   userfaultfd: run \`cloudlet check --fix\` as root: it writes $DROPIN (vm.unprivileged_userfaultfd = 1) and sets it now" \
	"userfaultfd: the fix is named"
has "$T/out" "^note  postcopy: unavailable, guest memory is mapped from cloudletfs (mmap) instead: .*vm.unprivileged_userfaultfd is 0" \
	"postcopy unavailable, with the reason"
has "$T/out" "^ok    qemu: $(qemu-system-x86_64 --version | head -1)\$" "QEMU's version line"
has "$T/out" "^\(ok\|note\)  accel: " "the accelerator is reported (KVM or TCG, never a failure)"
has "$T/err" "^cloudlet: this host is not fit for cloudlet" "the summary on stderr"
[ "$(grep -c '^FAIL' "$T/out")" = 2 ] && ok "two FAIL lines (kvm, domain-start)" ||
	bad "FAIL lines: $(grep '^FAIL' "$T/out" | cut -c1-40 | tr '\n' '|')"
s=$(start_s "$T/out")
[ -n "$s" ] && [ "$(echo "$s >= 3" | bc)" = 1 ] && ok "the start is slow as predicted: $s s" ||
	bad "domain start '$s' s: expected 3 s or more with /dev/kvm 0600 root:root"
[ "$(cat "$UFFD")" = 0 ] && [ ! -e "$DROPIN" ] && ok "check alone changes nothing" ||
	bad "check without --fix changed the sysctl or wrote $DROPIN"

cl_log "cloudlet check --fix"
rc=0
"$cloudlet" check --fix >"$T/out" 2>"$T/err" || rc=$?
cat "$T/out" "$T/err"
[ "$rc" = 0 ] && ok "check --fix exits 0" || bad "check --fix exited $rc"
has "$T/out" '^fixed kvm: /dev/kvm was 0600 root:root, now 0660 root:kvm$' "the kvm change is said"
has "$T/out" "^fixed userfaultfd: wrote $DROPIN; vm.unprivileged_userfaultfd was 0, now 1\$" \
	"the userfaultfd change is said"
a=$(line_no "$T/out" "^fix   userfaultfd: writing $DROPIN")
b=$(line_no "$T/out" "^fixed userfaultfd:")
[ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ] && ok "the fix is printed before it is applied" ||
	bad "no 'fix userfaultfd: writing' line before 'fixed userfaultfd:'"
[ "$(stat -c '%a %G' /dev/kvm)" = "660 kvm" ] && ok "/dev/kvm is 0660 group kvm" ||
	bad "/dev/kvm is $(stat -c '%a %U:%G' /dev/kvm)"
[ "$(cat "$UFFD")" = 1 ] && ok "vm.unprivileged_userfaultfd is 1" || bad "it is $(cat "$UFFD")"
grep -qx 'vm.unprivileged_userfaultfd = 1' "$DROPIN" && [ "$(stat -c %a "$DROPIN")" = 644 ] &&
	ok "$DROPIN sets it at boot" || bad "$DROPIN: $(cat "$DROPIN" 2>&1)"
has "$T/out" "^ok    userfaultfd: vm.unprivileged_userfaultfd = 1" "the re-check: userfaultfd ok"
has "$T/out" "^ok    postcopy: available" "the re-check: postcopy available"
s=$(start_s "$T/out")
[ -n "$s" ] && [ "$(echo "$s < 3" | bc)" = 1 ] && ok "the start is fast: $s s" ||
	bad "domain start '$s' s after the fix: expected under 3 s"
rc=0
"$cloudlet" check --fix >"$T/out" 2>&1 || rc=$?
[ "$rc" = 0 ] && ! grep -q '^fix' "$T/out" && ok "a second --fix changes nothing" ||
	bad "a second --fix: exit $rc, $(cat "$T/out")"

# In a mount namespace of this test's own, tc is hidden (a device node over
# it is no program) and QEMU's --version line is a script's; libvirt, in the
# host's namespace, still starts its real QEMU.
cl_log "a host without tc, with a QEMU other than 7.2"
printf '#!/bin/sh\necho "QEMU emulator version 8.2.0 (cloudlet test)"\n' >"$T/qemu"
chmod 0755 "$T/qemu"
rc=0
unshare -m sh -c 'mount --bind /dev/null "$(command -v tc || echo /usr/sbin/tc)" 2>/dev/null || true
	mount --bind "$1" "$(command -v qemu-system-x86_64)" && exec "$2" check' sh "$T/qemu" \
	"$cloudlet" >"$T/out" 2>"$T/err" || rc=$?
cat "$T/out" "$T/err"
[ "$rc" = 0 ] && ok "notes only: exit 0" || bad "exit $rc with tc missing and QEMU 8.2"
has "$T/out" '^note  tc: not installed: only the benchmarks need it' "a missing tc is a note"
has "$T/out" '^fix   tc: apt-get install iproute2$' "the tc fix is named"
has "$T/out" '^ok    qemu: QEMU emulator version 8.2.0 (cloudlet test)$' "the version line is QEMU's"
has "$T/out" "^note  postcopy: unavailable, .*: QEMU 8.2.0: postcopy memory runs on QEMU 7.2 only" \
	"postcopy unavailable on QEMU 8.2, saying why"

cl_checks_done
