#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# End to end: guest networking on user-mode networking, confined and nat.
# For each of `cloudlet base --network user` and `--network nat` (the
# reference guest, booted for real): a base, an overlay whose customization
# starts a web server in the guest (its page a token the host made), then
# `cloudlet synthesis --publish 0:80 --json`, and checks that
#  - the endpoint printed (JSON) answers from the guest with the token, and
#    the mount's status lists it,
#  - a host service on the loopback, reached by the guest through the
#    user-mode gateway 10.0.2.2 and never published: refused within 5 s when
#    confined (and it saw no request), answered with --network nat,
#  - Ctrl-C leaves no domain, mount or files, and the old port refuses.
# Only this machine is involved: the client and the service are on
# 127.0.0.1; the guest's only peer is QEMU's user-mode stack.
# ctest guest.test_network_e2e (labels guest, e2e); $1 = the workload dir.
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
cl_state_dir T net-e2e
export CLOUDLET_HOME=$T/home

# The host service the guest must not reach when confined: it logs requests.
SVC_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$T" "$SVC_PORT" >"$T/svc.log" 2>&1 &
CL_HELPER_PIDS+=($!)
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$SVC_PORT/" && break; sleep 0.1; done
echo "host-service" >"$T/svc.txt"
: >"$T/svc.log"

# run_mode MODE: base, overlay, synthesis, checks.
run_mode() {
	local mode=$1 d=$T/$1 token name out url port t0 dt rc
	token="cloudlet-net-$mode-$RANDOM$RANDOM"
	mkdir -p "$d"
	cp --sparse=always "$G/disk.img" "$d/disk.img"
	cl_log "[$mode] cloudlet base --network $mode (a real boot)"
	"$cloudlet" -q base "$d/disk.img" --network "$mode" --kernel "$G/vmlinuz" --initrd "$G/initrd.img" \
		--snapshot-on "$CL_READY_MARKER" --name "${CL_PREFIX}$mode-base" --timeout 300 \
		</dev/null >"$d/base.out" 2>&1 || { cat "$d/base.out" >&2; cl_die "[$mode] cloudlet base failed"; }
	cat >"$d/script" <<EOF
mkdir -p /www && echo $token >/www/index.html && httpd -p 80 -h /www
echo DO""NE
EOF
	cl_log "[$mode] cloudlet overlay (starts a web server in the guest)"
	"$cloudlet" -q overlay "$d/disk.img" -o "$d/ov" --console-script "$d/script" --snapshot-on DONE \
		--name "${CL_PREFIX}$mode-ov" --timeout 300 --publish 0:80 </dev/null >"$d/ov.out" 2>&1 ||
		{ cat "$d/ov.out" >&2; cl_die "[$mode] cloudlet overlay failed"; }
	grep -E '^published: http://127\.0\.0\.1:[0-9]+ \(guest port 80\)$' "$d/ov.out" &&
		ok "[$mode] cloudlet overlay --publish" || bad "[$mode] overlay printed no endpoint"

	if [ "$mode" = user ]; then
		# A host port in use: refused, nothing left.
		rc=0
		"$cloudlet" synthesis "$d/disk.img" "$d/ov" --name "${CL_PREFIX}busy" \
			--publish "$SVC_PORT:80" </dev/null >"$d/busy.out" 2>"$d/busy.err" || rc=$?
		cat "$d/busy.err"
		[ "$rc" = 1 ] && grep -q "QEMU cannot listen there" "$d/busy.err" &&
			ok "a host port in use is refused" || bad "--publish on a busy port: exit $rc"
		cl_domain_exists "${CL_PREFIX}busy" || [ -e "$RUN_ROOT/${CL_PREFIX}busy" ] &&
			bad "the refused synthesis left something" || ok "the refused synthesis left nothing"
	fi

	name=${CL_PREFIX}$mode
	out=$d/syn.out
	cl_log "[$mode] cloudlet synthesis --publish 0:80 --json"
	cl_synthesis "$name" "$out" "$d/syn.err" "$d/disk.img" "$d/ov" --publish 0:80 --json
	cat "$out"
	python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$out" &&
		ok "[$mode] every line of --json is a JSON object" || bad "[$mode] --json printed other text"
	url=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "endpoint" and e["guest_port"] == 80: print(e["url"])' "$out")
	port=${url##*:}
	[[ $url =~ ^http://127\.0\.0\.1:[0-9]+$ ]] && [ "$port" -ge 1024 ] &&
		ok "[$mode] endpoint $url" || bad "[$mode] no http endpoint in the timeline ($url)"
	[ "$(curl -s -m 20 "$url/")" = "$token" ] && ok "[$mode] $url answers from the guest" ||
		bad "[$mode] $url did not answer with the guest's page"
	grep -qx "endpoints: $url" "$RUN_ROOT/$name/mnt/status" && ok "[$mode] status lists $url" ||
		bad "[$mode] status: $(grep endpoints "$RUN_ROOT/$name/mnt/status" || echo none)"

	# The host's loopback through the gateway, never published.
	t0=$(date +%s.%N)
	rc=0
	$CL_GUESTCTL console-cmd "$RUN_ROOT/$name/console.sock" 30 \
		"printf 'GET /svc.txt HTTP/1.0\\r\\n\\r\\n' | nc -w 5 10.0.2.2 $SVC_PORT" >"$d/nc.out" 2>&1 || rc=$?
	dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
	echo "[$mode] guest -> 10.0.2.2:$SVC_PORT: exit $rc in $dt s: $(tr '\r\n' '  ' <"$d/nc.out" | head -c 200)"
	if [ "$mode" = user ]; then
		[ "$rc" != 0 ] && ! grep -q host-service "$d/nc.out" && awk -v t="$dt" 'BEGIN { exit !(t < 5) }'  &&
			ok "[user] confined: the connection failed within 5 s" ||
			bad "[user] the guest reached the host service (or took $dt s)"
		grep -q svc.txt "$T/svc.log" && bad "[user] the host service saw a request" ||
			ok "[user] the host service saw no request"
	else
		grep -q host-service "$d/nc.out" && ok "[nat] the guest reached the host service" ||
			bad "[nat] the guest did not reach the host service"
	fi

	cl_log "[$mode] Ctrl-C"
	rc=0
	cl_stop_synthesis "$CL_SYNTH_PID" || rc=$?
	[ "$rc" = 0 ] && ok "[$mode] synthesis exited 0" || bad "[$mode] synthesis exited $rc"
	python3 -c 'import json,sys
ev = [json.loads(l)["event"] for l in open(sys.argv[1])]
sys.exit(ev[-3:] != ["ended", "stopping", "stopped"])' "$out" &&
		ok "[$mode] --json to the end: ended, stopping, stopped" || bad "[$mode] --json: $(tail -3 "$out")"
	cl_domain_exists "$name" && bad "[$mode] domain left" || ok "[$mode] no domain left"
	grep -q " $RUN_ROOT/$name/mnt fuse" /proc/mounts && bad "[$mode] mount left" || ok "[$mode] no mount left"
	[ -e "$RUN_ROOT/$name" ] && bad "[$mode] $RUN_ROOT/$name left" || ok "[$mode] no files left"
	rc=0
	curl -s -m 5 -o /dev/null "$url/" || rc=$?
	[ "$rc" = 7 ] && ok "[$mode] $url refuses connections" || bad "[$mode] $url: curl exit $rc, not 7 (refused)"
}

run_mode user
run_mode nat

cl_checks_done
