#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# End to end on a real Debian 12 guest (make-debian-workload.sh: systemd, lighttpd and the
# cloudlet-answer service installed with apt in the guest): the overlay served by nginx on
# 127.0.0.1 behind a shaped link, `cloudlet synthesis IMAGE URL --publish 0:80 --json`, and
#  - GET /answer on the printed endpoint returns the checksums the host knows (a model the
#    service holds in RAM, files it reads from disk),
#  - once the overlay is complete, GET /model/zoo-N (models the first answer does not read)
#    too,
#  - a client that keeps asking during the whole stream gets only right answers,
#  - Ctrl-C leaves no domain, mount or files, and the old port refuses.
# ctest guest.test_debian_e2e (labels guest, e2e).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"
source "$HERE/../lib/nginx.sh"
source "$HERE/../lib/link.sh"
cloudlet=${CLOUDLET:?CLOUDLET not set (the cloudlet program)}
RATE=${CL_DEBIAN_RATE:-40mbit}
RUN_ROOT=/run/cloudlet

D=$(bash "$HERE/make-debian-workload.sh" --print-dir)
bash "$HERE/make-debian-workload.sh" "$D" >&2 || {
	rc=$?
	[ $rc = 77 ] && exit 77
	cl_die "make-debian-workload.sh failed ($rc)"
}
exec 8<"$D/.lock"
flock -s -w 1200 8 || cl_die "$D/.lock is held by a builder"
cl_init
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || cl_skip "no nginx"
T=$(mktemp -d /var/tmp/cl-debian-e2e.XXXXXX)
cl_at_exit "rm -rf '$T'"
cl_at_exit cl_nginx_stop
export CLOUDLET_HOME=$D/home
WANT=$(cat "$D/answer.sha256")

mkdir -p "$T/www"
ln -s "$D/ov" "$T/www/ov"
cl_nginx_start "$T/nginx" "$T/www" || cl_die "nginx did not start"
cl_at_exit "cl_link_unshape $NGINX_PORT"
cl_link_require "$NGINX_PORT" "$RATE"
URL=http://127.0.0.1:$NGINX_PORT/ov/overlay-meta
NAME=${CL_PREFIX}debian
MNT=$RUN_ROOT/$NAME/mnt

cl_log "cloudlet synthesis $URL --publish 0:80 (a $RATE link)"
# A cache of its own: the fixture's registry is shared, and a filled cache
# would serve the whole overlay without the link.
cl_synthesis "$NAME" "$T/out" "$T/err" "$D/disk.img" "$URL" --publish 0:80 --json \
	-o "cache_dir=$T/cache"
EP=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "endpoint": print(e["url"])' "$T/out")
cat "$T/out"
[[ $EP =~ ^http://127\.0\.0\.1:[0-9]+$ ]] && ok "endpoint $EP" || cl_die "no endpoint printed"
read -r got total < <(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == "resumed": print(e["fetched"], e["pack"])' "$T/out")
[ $((4 * got)) -lt "$total" ] && ok "resumed with $got of $total bytes fetched (early start)" ||
	bad "resumed only after $got of $total bytes"

# A client asks until the overlay is complete (and at least until one answer came).
n=0 right=0 wrong=0 failed=0
first=
end=$((SECONDS + 900))
while [ $SECONDS -lt $end ]; do
	state=$(sed -n 's/^state: //p' "$MNT/status" 2>/dev/null || echo gone)
	rc=0
	got=$(curl -s -m 120 "$EP/answer") || rc=$?
	n=$((n + 1))
	if [ "$rc" != 0 ]; then
		failed=$((failed + 1))
		echo "request $n: curl exit $rc (state $state)"
	elif [ "$got" = "$WANT" ]; then
		right=$((right + 1))
		[ -n "$first" ] || first=$(date +%s.%N)
	else
		wrong=$((wrong + 1))
		echo "request $n: WRONG answer (state $state): $(head -c 300 <<<"$got")"
	fi
	[ "$state" = complete ] && [ "$right" -gt 0 ] && break
done
echo "requests: $n, right $right, wrong $wrong, failed $failed; at the end: $(grep -E '^(state|bytes):' "$MNT/status" | tr '\n' ' ')"
[ "$right" -gt 0 ] && ok "GET /answer returned the right checksums ($right times)" || bad "no right answer"
[ "$wrong" = 0 ] && ok "no wrong answer during the stream" || bad "$wrong wrong answers"
[ "$failed" = 0 ] && ok "no request failed" || bad "$failed requests failed"
grep -qx "endpoints: $EP" "$MNT/status" && ok "status lists $EP" || bad "status lacks $EP"
# The models the first answer does not read: right once the overlay is complete.
for m in zoo-1 zoo-5; do
	got=$(curl -s -m 120 "$EP/model/$m") || got="curl exit $?"
	grep -qxF -- "$got" "$D/models.sha256" && ok "GET /model/$m is right" ||
		bad "GET /model/$m returned: $(head -c 200 <<<"$got")"
done

cl_log "Ctrl-C"
rc=0
cl_stop_synthesis "$CL_SYNTH_PID" || rc=$?
[ "$rc" = 0 ] && ok "synthesis exited 0" || bad "synthesis exited $rc: $(cat "$T/err")"
cl_domain_exists "$NAME" && bad "domain $NAME left" || ok "no domain left"
grep -q " $MNT fuse" /proc/mounts && bad "$MNT still mounted" || ok "no mount left"
[ -e "$RUN_ROOT/$NAME" ] && bad "$RUN_ROOT/$NAME left" || ok "no files left"
rc=0
curl -s -m 5 -o /dev/null "$EP/" || rc=$?
[ "$rc" = 7 ] && ok "$EP refuses connections" || bad "$EP: curl exit $rc, not 7 (refused)"

cl_checks_done
