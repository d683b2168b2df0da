#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# End to end: a base made elsewhere, by libvirt alone, with its standard
# <interface type='user'> and a virtio model (no restrict, no forwards): the
# reference guest booted from such a domain XML, snapshotted by QMP, and
# registered from its files (`cloudlet base --memory --state --domain`, the
# XML as `virsh dumpxml` writes it). Then `cloudlet overlay` resumes that
# state under cloudlet's own confined netdev (customizing: a web server),
# and `cloudlet synthesis --publish 0:80` answers from the guest, while the
# guest cannot reach the host's loopback: a state libvirt saved loads under
# cloudlet's netdev, and is confined and published the same way.
# ctest guest.test_libvirt_nic_e2e (labels guest, e2e); $1 = the workload dir.
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
cl_state_dir T libvirt-nic
export CLOUDLET_HOME=$T/home

TYPE=$(cl_accel "$G/vmlinuz" "$G/initrd.img")
NB=${CL_PREFIX}lv-base
cp --sparse=always "$G/disk.img" "$T/disk.img"
truncate -s "${CL_MEM_MIB}M" "$T/memory.img"
cl_own_ram "$T/memory.img"
cl_new_xml "$T/new.xml" "$NB" "$TYPE" "$G/vmlinuz" "$G/initrd.img" "$T/disk.img" "$T/memory.img"
sed -i "s|</devices>|<interface type='user'><mac address='52:54:00:c1:0e:01'/><model type='virtio'/></interface></devices>|" \
	"$T/new.xml"
cl_log "booting the guest with libvirt's own user-mode NIC"
cl_boot "$T/new.xml" "$NB" 300 || cl_die "the guest did not boot"
cl_virsh qemu-monitor-command "$NB" --hmp 'info network' | grep -q "hostnet0:.*restrict=off" &&
	ok "libvirt's own netdev (hostnet0, restrict=off)" || bad "not libvirt's netdev: $(cl_virsh qemu-monitor-command "$NB" --hmp 'info network')"
cl_virsh dumpxml --inactive "$NB" | sed '/<qemu:arg value=.-incoming.\/>/,+1d' >"$T/domain.xml"
grep -q "<interface type='user'>" "$T/domain.xml" && grep -q "<address type='pci'" "$T/domain.xml" ||
	cl_die "dumpxml has no user interface with an address"
sleep "${CL_SETTLE_SECONDS:-5}"
cl_snapshot "$NB" "$T/state" || cl_die "snapshot failed"
cl_destroy "$NB"
chown root:root "$T/memory.img"
"$cloudlet" -q base "$T/disk.img" --memory "$T/memory.img" --state "$T/state" --domain "$T/domain.xml" \
	>/dev/null || cl_die "registering failed"
grep -q "<interface type=.user.>" "$CLOUDLET_HOME"/bases/*/domain.xml && ok "registered with its libvirt NIC" ||
	bad "the registered XML lost the NIC"

cat >"$T/script" <<'EOF'
mkdir -p /www && echo libvirt-made-base >/www/index.html && httpd -p 80 -h /www
echo DO""NE
EOF
"$cloudlet" -q overlay "$T/disk.img" -o "$T/ov" --console-script "$T/script" --snapshot-on DONE \
	--name "${CL_PREFIX}lv-ov" --timeout 300 </dev/null >"$T/ov.out" 2>&1 ||
	{ cat "$T/ov.out" >&2; cl_die "cloudlet overlay of the libvirt-made base failed"; }
ok "libvirt's saved state resumed under cloudlet's netdev (overlay made)"

NAME=${CL_PREFIX}lv
cl_synthesis "$NAME" "$T/out" "$T/err" "$T/disk.img" "$T/ov" --publish 0:80
cat "$T/out"
EP=$(sed -n 's/.*endpoint \(http:[^ ]*\) .*/\1/p' "$T/out")
[ "$(curl -s -m 20 "$EP/")" = libvirt-made-base ] && ok "$EP answers from the guest" ||
	bad "$EP did not answer"
cl_virsh qemu-monitor-command "$NAME" --hmp 'info network' | grep -q "cl-hostnet0:.*restrict=on" &&
	ok "cloudlet's confined netdev (cl-hostnet0, restrict=on)" || bad "netdev: $(cl_virsh qemu-monitor-command "$NAME" --hmp 'info network')"
# A host service on the loopback that answers: the guest must not get to it.
SVC_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
echo host-service >"$T/svc.txt"
python3 -m http.server --bind 127.0.0.1 --directory "$T" "$SVC_PORT" >"$T/svc.log" 2>&1 &
CL_HELPER_PIDS+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$SVC_PORT/svc.txt" && break; sleep 0.1; done
: >"$T/svc.log"
rc=0
$CL_GUESTCTL console-cmd "$RUN_ROOT/$NAME/console.sock" 30 \
	"printf 'GET /svc.txt HTTP/1.0\\r\\n\\r\\n' | nc -w 5 10.0.2.2 $SVC_PORT" >"$T/nc.out" 2>&1 || rc=$?
[ "$rc" != 0 ] && ! grep -q host-service "$T/nc.out" && ! grep -q svc.txt "$T/svc.log" &&
	ok "the guest cannot reach the host's loopback" || bad "the guest reached the host: $(cat "$T/nc.out")"
rc=0
cl_stop_synthesis "$CL_SYNTH_PID" || rc=$?
[ "$rc" = 0 ] && ok "synthesis exited 0" || bad "synthesis exited $rc"
cl_domain_exists "$NAME" && bad "domain left" || ok "no domain left"

cl_checks_done
