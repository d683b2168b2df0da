#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# bench-http.sh: time to first response as Elijah measured it, on the Debian
# guest (tests/guest/make-debian-workload.sh: lighttpd and a service whose
# answer reads a model it holds in RAM and files on its disk): from the start
# of `cloudlet synthesis IMAGE URL --publish 0:80` to the client's right HTTP
# answer from the application, early start against --no-early-start,
# interleaved, medians of RUNS.
#
#   tests/bench/bench-http.sh [-r RUNS] [--rate RATE] BUILD_DIR
#
# Link: nginx on 127.0.0.1 behind an HTB class of RATE (default 40mbit) on
# its port on lo. Each run starts with an empty cache. Per run: the time to
# resume (the JSON timeline's "resumed" event) and to the first right
# answer, and the bytes that crossed the link before each (read when the
# event is seen), from the shaping class's counters (`tc -s class show dev
# lo`), which count what nginx sent, headers included. Each run has an empty
# cache of its own (the fixture's registry is shared). The client asks from the moment the endpoint is printed
# (curl, 300 s per request) until the answer is right.
set -euo pipefail
# One block, read whole before it runs: bash reads a script as it goes, and
# this one runs for minutes while the tree may change.
{
src=$(cd "$(dirname "$0")/../.." && pwd)
RUNS=3
RATE=40mbit
while [ $# -gt 1 ]; do
	case $1 in
	-r) RUNS=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	*) break ;;
	esac
done
[ $# -eq 1 ] || { echo "usage: $0 [-r RUNS] [--rate RATE] BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
cloudlet=$build/cloudlet
export CLOUDLET=$cloudlet
[ -x "$cloudlet" ] || { echo "no $cloudlet: build first" >&2; exit 2; }
source "$src/tests/guest/lib.sh"
source "$src/tests/lib/nginx.sh"
source "$src/tests/lib/link.sh"

D=$(bash "$src/tests/guest/make-debian-workload.sh" --print-dir)
bash "$src/tests/guest/make-debian-workload.sh" "$D" >&2
cl_init
export CLOUDLET_HOME=$D/home
WANT=$(cat "$D/answer.sha256")
BW=$(mktemp -d /var/tmp/cl-bench-http.XXXXXX)
cl_at_exit "rm -rf '$BW'"
cl_at_exit cl_nginx_stop
mkdir -p "$BW/www"
ln -s "$D/ov" "$BW/www/ov"
cl_nginx_start "$BW/nginx" "$BW/www" || cl_die "nginx did not start"
cl_at_exit "cl_link_unshape $NGINX_PORT"
cl_link_require "$NGINX_PORT" "$RATE"
URL=http://127.0.0.1:$NGINX_PORT/ov/overlay-meta

now() { date +%s.%N; }
link_bytes() { cl_link_bytes "$NGINX_PORT"; }
ev_value() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e["event"] == sys.argv[2]: print(e.get(sys.argv[3], "")); break' "$1" "$2" "$3"; }

# client EP OUT: asks until the answer is right; writes the time then.
client() {
	until [ "$(curl -s -m 300 "$1/answer" || true)" = "$WANT" ]; do sleep 0.05; done
	now >"$2"
}

# run MODE: prints "MODE resume_s resume_link_bytes first_s first_link_bytes".
run() {
	local mode=$1 name=${CL_PREFIX}http out=$BW/run.out t0 b0 tr br tf bf ep pid cpid opt=()
	[ "$mode" = eager ] && opt=(--no-early-start)
	rm -rf "$BW/cache" "$BW/first"
	: >"$out"
	b0=$(link_bytes)
	t0=$(now)
	"$cloudlet" synthesis "$D/disk.img" "$URL" --name "$name" --publish 0:80 --json "${opt[@]}" \
		-o "cache_dir=$BW/cache" \
		>"$out" 2>"$BW/run.err" </dev/null &
	pid=$!
	CL_HELPER_PIDS+=("$pid")
	until grep -q '"event":"endpoint"' "$out"; do
		kill -0 "$pid" 2>/dev/null || { cat "$out" "$BW/run.err" >&2; cl_die "synthesis ended early"; }
		sleep 0.01
	done
	ep=$(ev_value "$out" endpoint url)
	client "$ep" "$BW/first" &
	cpid=$!
	CL_HELPER_PIDS+=("$cpid")
	until grep -q '"event":"resumed"' "$out"; do
		kill -0 "$pid" 2>/dev/null || { cat "$out" "$BW/run.err" >&2; cl_die "synthesis ended early"; }
		sleep 0.01
	done
	br=$(($(link_bytes) - b0))
	tr=$(ev_value "$out" resumed t)
	for _ in $(seq 9000); do [ -s "$BW/first" ] && break; sleep 0.02; done
	[ -s "$BW/first" ] || cl_die "$mode: no right answer within 180 s"
	bf=$(($(link_bytes) - b0))
	tf=$(cat "$BW/first")
	cl_wait_helper "$cpid" || true
	kill -INT "$pid"
	cl_wait_helper "$pid" || cl_die "synthesis exited non-zero: $(cat "$BW/run.err")"
	echo "$mode $tr $br $(awk -v a="$t0" -v b="$tf" 'BEGIN { printf "%.2f", b - a }') $bf"
}

# Whole numbers stay whole (awk's default print of 1e8 is 1e+08).
median() { sort -g | awk '{a[NR]=$1} END {v = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf (v == int(v) ? "%d\n" : "%.4f\n"), v}'; }
pack=$(stat -c %s "$D/ov/overlay-blob")
commit=$(git -C "$src" describe --always --dirty 2>/dev/null || echo unknown)
echo "commit $commit, kernel $(uname -r), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "Debian guest overlay: $pack bytes of pack, link $RATE (HTB on lo), $RUNS runs per mode"
printf '%-6s %9s %14s %9s %14s\n' mode resume_s link_bytes first_s link_bytes
: >"$BW/all"
for _ in $(seq "$RUNS"); do
	for mode in early eager; do
		line=$(run "$mode")
		echo "$line" >>"$BW/all"
		# shellcheck disable=SC2086
		printf '%-6s %9s %14s %9s %14s\n' $line
	done
done
echo "medians:"
for mode in early eager; do
	printf '%-6s %9s %14s %9s %14s\n' "$mode" \
		"$(awk -v m=$mode '$1 == m { print $2 }' "$BW/all" | median)" \
		"$(awk -v m=$mode '$1 == m { print $3 }' "$BW/all" | median)" \
		"$(awk -v m=$mode '$1 == m { print $4 }' "$BW/all" | median)" \
		"$(awk -v m=$mode '$1 == m { print $5 }' "$BW/all" | median)"
done
e=$(awk '$1 == "early" { print $4 }' "$BW/all" | median)
g=$(awk '$1 == "eager" { print $4 }' "$BW/all" | median)
awk -v e="$e" -v g="$g" 'BEGIN { r = e / g; printf "first response, early/eager: %.3f (goal <= 0.2: %s)\n", r, r <= 0.2 ? "met" : "not met" }'
exit
}
