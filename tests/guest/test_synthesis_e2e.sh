#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# End to end: `cloudlet synthesis IMAGE URL` on the reference workload.
# Registers the base, makes the overlay offline, serves it with nginx on
# 127.0.0.1 at a slow rate, runs synthesis in the background and checks that
#  - the VM was resumed while most of the overlay had not arrived,
#  - the guest shows, over its serial console, the customized files and RAM
#    data with the checksums the customized VM computed,
#  - SIGTERM tears everything down: no domain, no mount, no daemon, no files.
# ctest guest.test_synthesis_e2e (labels guest, e2e); $1 = the workload dir.
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
T=$(mktemp -d /var/tmp/cl-synth-e2e.XXXXXX)
cl_at_exit "rm -rf '$T'"
cl_at_exit cl_nginx_stop
export CLOUDLET_HOME=$T/home

cl_log "registering the base and making the overlay"
cl_workload_base >/dev/null
mkdir -p "$T/www"
cl_workload_overlay "$T/www/ov" >"$T/overlay.txt"
head -1 "$T/overlay.txt"

cl_nginx_start "$T/nginx" "$T/www" || cl_die "nginx did not start"
cl_at_exit "cl_link_unshape $NGINX_PORT"
cl_link_require "$NGINX_PORT" "$RATE"
URL=http://127.0.0.1:$NGINX_PORT/ov/overlay-meta
NAME=${CL_PREFIX}synth
MNT=$RUN_ROOT/$NAME/mnt

cl_log "cloudlet synthesis $URL (a $RATE link)"
cl_synthesis "$NAME" "$T/out" "$T/err" "$W/base/disk.img" "$URL"
SPID=$CL_SYNTH_PID
STATUS_AT_RESUME=$(cat "$MNT/status")
DAEMON=$(sed -n 's/^pid: //p' <<<"$STATUS_AT_RESUME")
cat "$T/out"
read -r got total < <(sed -n 's/.*VM resumed: fetched \([0-9]*\) of \([0-9]*\) bytes.*/\1 \2/p' "$T/out")
echo "at resume: $got of $total bytes fetched ($((100 * got / total))%); status: $(grep -E '^(state|segments):' <<<"$STATUS_AT_RESUME" | tr '\n' ' ')"
if [ "$((2 * got))" -lt "$total" ]; then
	ok "resumed with less than half of the overlay fetched"
else
	bad "resumed only after $got of $total bytes"
fi
# The domain start is its own step, between the mount and the resume.
if sed -n '/mounted:/,/VM resumed:/p' "$T/out" | grep -q 'domain started in [0-9.]* s:'; then
	ok "timeline: $(grep -o 'domain started in [0-9.]* s' "$T/out") between mounted and VM resumed"
else
	bad "no 'domain started in N s' step between mounted and VM resumed"
fi
grep -q '^state: streaming' <<<"$STATUS_AT_RESUME" && ok "overlay still streaming at resume" ||
	bad "overlay not streaming at resume"
[ "$(cl_domstate "$NAME")" = running ] && ok "domain $NAME running" || bad "domain $NAME is $(cl_domstate "$NAME")"

SOCK=$RUN_ROOT/$NAME/console.sock
t=$SECONDS
$CL_GUESTCTL console-cmd "$SOCK" 120 'cat /ram/marker.txt' >"$T/marker" || bad "the guest does not answer"
echo "first answer $((SECONDS - t)) s after resume: $(head -c 200 "$T/marker")"
if $CL_GUESTCTL console-cmd "$SOCK" 600 "$CL_WORKLOAD_SUMS_CMD" >"$T/sums"; then
	if diff -u "$W/custom/checksums.txt" "$T/sums"; then
		ok "all $(wc -l <"$T/sums") checksums (disk files and RAM data) match"
	else
		bad "checksums differ"
	fi
else
	bad "checksumming in the guest failed"
fi
echo "after the checksums: $(grep -E '^(state|bytes):' "$MNT/status" | tr '\n' ' ')"

cl_log "stopping synthesis (SIGTERM)"
kill -TERM "$SPID"
rc=0
for _ in $(seq 600); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$SPID" 2>/dev/null && { bad "synthesis still runs 60 s after SIGTERM"; kill -KILL "$SPID"; }
cl_wait_helper "$SPID" || rc=$?
tail -n 3 "$T/out"
[ -s "$T/err" ] && { echo "--- stderr"; cat "$T/err"; }
[ "$rc" = 0 ] && ok "synthesis exited 0" || bad "synthesis exited $rc"
cl_domain_exists "$NAME" && bad "domain $NAME left" || ok "no domain left"
grep -q " $MNT fuse" /proc/mounts && bad "$MNT still mounted" || ok "no mount left"
# A live process, not a zombie its new parent (init) has yet to reap.
live() { [ -n "$1" ] && [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^[ZX]'; }
live "$DAEMON" && bad "cloudletfs $DAEMON still runs" || ok "cloudletfs exited"
[ -e "$RUN_ROOT/$NAME" ] && bad "$RUN_ROOT/$NAME left: $(ls -A "$RUN_ROOT/$NAME")" ||
	ok "no files left in $RUN_ROOT/$NAME"

cl_checks_done
