#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# `cloudlet check` against the real libvirt: with /dev/kvm as hosts without
# udev leave it (0600 root:root), libvirt re-probes QEMU at every domain start,
# and check must time a slow start, name /dev/kvm as the cause and exit 1;
# `cloudlet check --fix` must give /dev/kvm group kvm and mode 0660, say so,
# and then time a start under 3 s. /dev/kvm's mode is restored at exit.
# ctest guest.test_host_check (label guest); $1 = the workload dir (unused).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"

cloudlet=${CLOUDLET:?CLOUDLET not set (the cloudlet program)}
cl_init
[ -c /dev/kvm ] || cl_skip "no /dev/kvm on this host: libvirt probes TCG only, nothing to check"
getent group kvm >/dev/null || cl_die "no group kvm (qemu-system-x86 makes it)"
T=$(mktemp -d /var/tmp/cl-check.XXXXXX)
cl_at_exit "rm -rf '$T'"
SAVED=$(stat -c '%a %u %g' /dev/kvm)
cl_at_exit "set -- $SAVED; chmod \$1 /dev/kvm; chown \$2:\$3 /dev/kvm"
# start_s FILE: the seconds of "domain start: N s" in FILE.
start_s() { sed -n 's/^domain start: \([0-9.]*\) s.*/\1/p' "$1"; }

cl_log "/dev/kvm as without udev: 0600 root:root (a start takes 30-50 s)"
chown root:root /dev/kvm
chmod 0600 /dev/kvm
rc=0
"$cloudlet" check >"$T/out" 2>"$T/err" || rc=$?
cat "$T/out" "$T/err"
[ "$rc" = 1 ] && ok "check exits 1" || bad "check exited $rc"
grep -q "^cloudlet: this host starts domains slowly: /dev/kvm is 0600 root:root, which libvirt-qemu may not read and write" "$T/err" &&
	ok "the cause is named" || bad "no line naming /dev/kvm as the cause"
grep -q '^hint: run `cloudlet check --fix` as root' "$T/err" && ok "the fix is named" || bad "no hint"
s=$(start_s "$T/out")
[ -n "$s" ] && [ "$(echo "$s >= 3" | bc)" = 1 ] && ok "the start is slow as predicted: $s s" ||
	bad "domain start '$s' s: expected 3 s or more with /dev/kvm 0600 root:root"

cl_log "cloudlet check --fix"
rc=0
"$cloudlet" check --fix >"$T/out" 2>"$T/err" || rc=$?
cat "$T/out" "$T/err"
[ "$rc" = 0 ] && ok "check --fix exits 0" || bad "check --fix exited $rc"
grep -q '^fixed: /dev/kvm was 0600 root:root, now 0660 root:kvm$' "$T/out" && ok "the change is said" ||
	bad "no 'fixed:' line"
[ "$(stat -c '%a %G' /dev/kvm)" = "660 kvm" ] && ok "/dev/kvm is 0660 group kvm" ||
	bad "/dev/kvm is $(stat -c '%a %U:%G' /dev/kvm)"
s=$(start_s "$T/out")
[ -n "$s" ] && [ "$(echo "$s < 3" | bc)" = 1 ] && ok "the start is fast: $s s" ||
	bad "domain start '$s' s after the fix: expected under 3 s"
rc=0
"$cloudlet" check --fix >"$T/out" 2>&1 || rc=$?
[ "$rc" = 0 ] && ! grep -q '^fixed:' "$T/out" && ok "a second --fix changes nothing" ||
	bad "a second --fix: exit $rc, $(cat "$T/out")"

cl_checks_done
