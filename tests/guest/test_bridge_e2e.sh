#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# End to end: a VM on a host bridge, and what --publish refuses.
#  - A bridge with no uplink and no port (made here, removed at exit): a base
#    booted on it with `cloudlet base --network bridge=BR`, an overlay, and a
#    synthesis whose VM resumes with its tap attached to the bridge, with the
#    base's MAC.
#  - A second synthesis of the same overlay on the same bridge while the
#    first runs is refused (the two would share the MAC), and leaves nothing.
#  - --publish is refused for that bridge VM and for a base without a NIC
#    (the reference workload's), each with a clear message.
# Packets stay on this machine: the bridge has no uplink.
# ctest guest.test_bridge_e2e (labels guest, e2e); $1 = the workload dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"

[ $# -eq 1 ] || cl_die "usage: $0 WORKLOAD_DIR"
cl_use_workload "$1"
cloudlet=${CLOUDLET:?CLOUDLET not set (the cloudlet program)}
RUN_ROOT=/run/cloudlet

cl_init
QDIR=$(cat "$W/qemu-dir")
G=$QDIR/guest
cl_state_dir T bridge-e2e
export CLOUDLET_HOME=$T/home

BR=clbr$$
BR=${BR:0:15}
ip link add "$BR" type bridge || cl_die "cannot make bridge $BR"
cl_at_exit "ip link del '$BR' 2>/dev/null || true"
ip link set "$BR" up
ports() { ip -o link show master "$BR" 2>/dev/null | awk -F': ' '{ print $2 }' | cut -d@ -f1; }
[ -z "$(ports)" ] || cl_die "new bridge $BR has ports"

cp --sparse=always "$G/disk.img" "$T/disk.img"
cl_log "cloudlet base --network bridge=$BR (a real boot)"
"$cloudlet" -q base "$T/disk.img" --network "bridge=$BR" --kernel "$G/vmlinuz" --initrd "$G/initrd.img" \
	--snapshot-on "$CL_READY_MARKER" --name "${CL_PREFIX}br-base" --timeout 300 </dev/null \
	>"$T/base.out" 2>&1 || { cat "$T/base.out" >&2; cl_die "cloudlet base failed"; }
MAC=$(sed -n 's/.*<mac address="\([^"]*\)".*/\1/p' "$T/disk.img.domain.xml")
[ -n "$MAC" ] && ok "the base has a NIC, MAC $MAC" || bad "no MAC in the base's domain XML"
echo 'echo DO""NE' >"$T/script"
"$cloudlet" -q overlay "$T/disk.img" -o "$T/ov" --console-script "$T/script" --snapshot-on DONE \
	--name "${CL_PREFIX}br-ov" --timeout 300 </dev/null >"$T/ov.out" 2>&1 ||
	{ cat "$T/ov.out" >&2; cl_die "cloudlet overlay failed"; }

N1=${CL_PREFIX}br1
cl_synthesis "$N1" "$T/s1.out" "$T/s1.err" "$T/disk.img" "$T/ov"
p=$(ports)
if [ -n "$p" ] && [ "$(wc -w <<<"$p")" = 1 ]; then
	ok "the resumed VM's tap $p is attached to $BR"
	[ "$(cat "/sys/class/net/$p/address")" = "fe${MAC:2}" ] && ok "tap $p carries the base's MAC" ||
		bad "tap $p: $(cat "/sys/class/net/$p/address"), base MAC $MAC"
else
	bad "ports on $BR: '${p}'"
fi
$CL_GUESTCTL console-cmd "$RUN_ROOT/$N1/console.sock" 30 'cat /sys/class/net/eth0/address' >"$T/mac" &&
	[ "$(tr -d '\r\n' <"$T/mac")" = "$MAC" ] && ok "the guest's eth0 has MAC $MAC" ||
	bad "guest eth0: $(cat "$T/mac")"

N2=${CL_PREFIX}br2
rc=0
"$cloudlet" synthesis "$T/disk.img" "$T/ov" --name "$N2" </dev/null >"$T/s2.out" 2>"$T/s2.err" || rc=$?
cat "$T/s2.err"
[ "$rc" = 1 ] && grep -q "MAC address $MAC is in use by the running domain $N1" "$T/s2.err" &&
	ok "a second VM of the overlay on $BR is refused" || bad "second synthesis: exit $rc"
cl_domain_exists "$N2" && bad "domain $N2 left" || ok "the refused synthesis left no domain"
[ -e "$RUN_ROOT/$N2" ] && bad "$RUN_ROOT/$N2 left" || ok "the refused synthesis left no files"
[ "$(ports | wc -w)" = 1 ] && ok "still one port on $BR" || bad "ports on $BR: $(ports)"

rc=0
"$cloudlet" synthesis "$T/disk.img" "$T/ov" --name "${CL_PREFIX}br3" --publish 0:80 </dev/null \
	>/dev/null 2>"$T/s3.err" || rc=$?
cat "$T/s3.err"
[ "$rc" = 1 ] && grep -q "forwards host ports into user-mode networking; this VM is on a bridge" \
	"$T/s3.err" && ok "--publish refused on a bridge" || bad "--publish on a bridge: exit $rc"

rc=0
cl_stop_synthesis "$CL_SYNTH_PID" || rc=$?
[ "$rc" = 0 ] && ok "synthesis exited 0" || bad "synthesis exited $rc"
[ -z "$(ports)" ] && ok "no port left on $BR" || bad "ports left on $BR: $(ports)"

# A base without a NIC: the reference workload's.
cl_workload_base >/dev/null
cl_workload_overlay "$T/wov" >/dev/null
rc=0
"$cloudlet" synthesis "$W/base/disk.img" "$T/wov" --name "${CL_PREFIX}nonic" --publish 8080:80 \
	</dev/null >/dev/null 2>"$T/s4.err" || rc=$?
cat "$T/s4.err"
[ "$rc" = 1 ] && grep -q "the VM has no network interface: nothing to publish to" "$T/s4.err" &&
	ok "--publish refused without a NIC" || bad "--publish without a NIC: exit $rc"
cl_domain_exists "${CL_PREFIX}nonic" && bad "domain left" || ok "nothing left"

cl_checks_done
