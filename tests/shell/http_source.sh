#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# cl_source over HTTP against a real nginx on 127.0.0.1: byte-exact range
# reads, parallel reads with a concurrent stream, servers that ignore Range,
# errors (404, 403, 503, redirects), a server that goes away and comes back,
# an object replaced mid-way (-ESTALE), a slow link and a stalled server.
# Every wait is bounded; nothing leaves 127.0.0.1.
set -u
# shellcheck source=tests/lib/skip.sh
source "$(dirname "$0")/../lib/skip.sh"

tool=${CL_BUILD_DIR:?CL_BUILD_DIR not set}/tests/tools/source_tool
nginx_bin=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; })
if [ -z "$nginx_bin" ]; then
	cl_skip_test "nginx is not installed (apt-get install nginx-light)"
fi
[ -x "$tool" ] || { echo "FAIL: $tool is not built"; exit 1; }

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export no_proxy='*' NO_PROXY='*'

T=$(mktemp -d /tmp/cl-http-source.XXXXXX)
nginx_pid=
stall_pid=
cleanup() {
	[ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
	[ -n "$stall_pid" ] && kill "$stall_pid" 2>/dev/null && wait "$stall_pid" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	[ -s "$T/out.err" ] && sed 's/^/  stderr: /' "$T/out.err"
	[ -s "$T/error.log" ] && tail -5 "$T/error.log" | sed 's/^/  nginx: /'
	exit 1
}
ok() { echo "ok: $*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The object: 3 MiB and a bit, random.
mkdir -p "$T/www/norange" "$T/www/slow" "$T/www/slownorange" "$T/www/denied" "$T/body"
head -c $((3 * 1048576 + 4321)) /dev/urandom >"$T/blob"
size=$(stat -c %s "$T/blob")
for d in . norange slow slownorange; do ln "$T/blob" "$T/www/$d/blob"; done
cp "$T/blob" "$T/www/stale.bin"
cp "$T/blob" "$T/www/denied/blob"

pick_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' \
		2>/dev/null || echo $((20000 + RANDOM % 30000))
}

write_conf() {
	cat >"$T/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $T/nginx.pid;
error_log $T/error.log warn;
events { worker_connections 128; }
http {
	log_format ranges '\$status \$request_uri "\$http_range" \$body_bytes_sent';
	access_log $T/access.log ranges;
	client_body_temp_path $T/body;
	proxy_temp_path $T/body;
	fastcgi_temp_path $T/body;
	uwsgi_temp_path $T/body;
	scgi_temp_path $T/body;
	default_type application/octet-stream;
	keepalive_requests 10000;
	server {
		listen 127.0.0.1:$port;
		root $T/www;
		location /norange/ { max_ranges 0; }
		location /slow/ { limit_rate 1m; }
		location /slownorange/ { limit_rate 1m; max_ranges 0; }
		location /denied/ { return 403; }
		location /busy { return 503; }
		location = /redirect { return 302 /blob; }
		location = /loop { return 302 /loop; }
		location = /ftp { return 302 ftp://127.0.0.1/blob; }
	}
}
EOF
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_nginx() {
	local i
	"$nginx_bin" -p "$T" -e "$T/error.log" -c "$T/nginx.conf" 2>>"$T/error.log" &
	nginx_pid=$!
	for i in $(seq 100); do
		port_open "$port" && return 0
		kill -0 "$nginx_pid" 2>/dev/null || break
		sleep 0.05
	done
	wait "$nginx_pid" 2>/dev/null
	nginx_pid=
	return 1
}

stop_nginx() {
	kill "$nginx_pid" 2>/dev/null
	wait "$nginx_pid" 2>/dev/null
	nginx_pid=
}

for try in 1 2 3 4 5; do
	port=$(pick_port)
	write_conf
	start_nginx && break
done
[ -n "$nginx_pid" ] || fail "nginx did not start"
url=http://127.0.0.1:$port

# Runs the tool with a hard bound; stdout to $T/out, stderr to $T/out.err.
run() { timeout 60 "$tool" "$@" >"$T/out" 2>"$T/out.err"; }
expect_fail() { # errno-name message-regex -- args
	local name=$1 re=$2
	shift 3
	run "$@" && fail "$* succeeded"
	grep -q "\[$name\]" "$T/out.err" || fail "$*: expected $name"
	grep -Eq "$re" "$T/out.err" || fail "$*: message does not match '$re'"
}
slice() { tail -c +$(($2 + 1)) "$1" | head -c "$3"; }

# --- probing and range reads ------------------------------------------------
run info "$url/blob" || fail info
[ "$(cat "$T/out")" = "size $size ranges 1" ] || fail "info: $(cat "$T/out")"
ok "probe: size $size, ranges"

for r in "0 1" "$((size - 1)) 1" "0 $size" "1000 1048576" "12345 300001" "$((size - 70000)) 70000"; do
	set -- $r
	run cat "$url/blob" "$1" "$2" || fail "cat $r"
	slice "$T/blob" "$1" "$2" | cmp -s - "$T/out" || fail "cat $r differs"
done
ok "range reads byte-exact"

expect_fail EIO "past its end" -- cat "$url/blob" $((size - 10)) 11
ok "read past the end refused"

run readall "$url/blob" && cmp -s "$T/blob" "$T/out" || fail readall
ok "read_all exact"

run stream "$url/blob" && cmp -s "$T/blob" "$T/out" || fail stream
run stream "$url/blob" 1234567 || fail "stream from 1234567"
slice "$T/blob" 1234567 $size | cmp -s - "$T/out" || fail "stream from 1234567 differs"
ok "stream exact (from 0 and from an offset)"

run -c 4 parallel "$url/blob" "$T/blob" 8 40 || fail parallel
ok "$(cat "$T/out")"

# --- a server that ignores Range --------------------------------------------
run info "$url/norange/blob" || fail "info norange"
[ "$(cat "$T/out")" = "size $size ranges 0" ] || fail "info norange: $(cat "$T/out")"
expect_fail EOPNOTSUPP "ignores Range" -- cat "$url/norange/blob" 100 10
run stream "$url/norange/blob" && cmp -s "$T/blob" "$T/out" || fail "stream norange"
run stream "$url/norange/blob" 2000000 || fail "stream norange from 2000000"
slice "$T/blob" 2000000 $size | cmp -s - "$T/out" || fail "stream norange from 2000000 differs"
run readall "$url/norange/blob" && cmp -s "$T/blob" "$T/out" || fail "readall norange"
ok "no ranges: detected, partial reads refused clearly, stream and whole reads exact"

# --- errors -------------------------------------------------------------------
expect_fail ENOENT "not found \(HTTP 404\)" -- info "$url/missing"
expect_fail EACCES "access denied \(HTTP 403\)" -- info "$url/denied/blob"
t0=$(now_ms)
expect_fail EIO "HTTP 503.*gave up after 3 attempts" -- -r 2 info "$url/busy"
ok "404 -> ENOENT, 403 -> EACCES, 503 retried then EIO ($(($(now_ms) - t0)) ms)"

run info "$url/redirect" || fail "redirect"
[ "$(cat "$T/out")" = "size $size ranges 1" ] || fail "redirect: $(cat "$T/out")"
expect_fail ELOOP "redirects" -- info "$url/loop"
expect_fail EPROTONOSUPPORT "scheme|protocol" -- info "$url/ftp"
ok "redirects: followed, loops and other schemes refused"

# --- the object is replaced mid-way --------------------------------------------
rm -f "$T/sync".*
timeout 60 "$tool" twice "$url/stale.bin" 0 4096 "$T/sync" >"$T/out" 2>"$T/out.err" &
pid=$!
for i in $(seq 200); do [ -e "$T/sync.ready" ] && break; sleep 0.05; done
[ -e "$T/sync.ready" ] || fail "twice did not get ready"
head -c $((size + 512)) /dev/urandom >"$T/www/stale.new"
touch -d '2001-01-01' "$T/www/stale.new"
mv "$T/www/stale.new" "$T/www/stale.bin"
touch "$T/sync.go"
wait $pid && fail "read of a replaced object succeeded"
grep -q "\[ESTALE\]" "$T/out.err" && grep -q "changed mid-synthesis" "$T/out.err" ||
	fail "replaced object: expected ESTALE"
ok "object replaced mid-way -> ESTALE: $(grep -o 'changed mid-synthesis.*' "$T/out.err" | head -1)"

# --- the server goes away ---------------------------------------------------------
rm -f "$T/sync".*
timeout 60 "$tool" -r 3 twice "$url/blob" 4096 65536 "$T/sync" >"$T/out" 2>"$T/out.err" &
pid=$!
for i in $(seq 200); do [ -e "$T/sync.ready" ] && break; sleep 0.05; done
[ -e "$T/sync.ready" ] || fail "twice did not get ready"
stop_nginx
t0=$(now_ms)
touch "$T/sync.go"
wait $pid && fail "read from a stopped server succeeded"
dt=$(($(now_ms) - t0))
grep -q "\[ECONNREFUSED\]" "$T/out.err" && grep -q "gave up after 4 attempts" "$T/out.err" ||
	fail "stopped server: expected ECONNREFUSED after 4 attempts"
[ $dt -lt 10000 ] || fail "stopped server: took $dt ms"
ok "server stopped -> ECONNREFUSED after retries in $dt ms"

rm -f "$T/sync".*
timeout 60 "$tool" -r 8 twice "$url/blob" 4096 65536 "$T/sync" >"$T/out" 2>"$T/out.err" &
pid=$!
start_nginx || fail "nginx did not restart"
for i in $(seq 200); do [ -e "$T/sync.ready" ] && break; sleep 0.05; done
[ -e "$T/sync.ready" ] || fail "twice did not get ready"
stop_nginx
touch "$T/sync.go"
sleep 1
start_nginx || fail "nginx did not restart"
wait $pid || fail "read did not recover when the server came back"
slice "$T/blob" 4096 65536 | cmp -s - "$T/out" || fail "recovered read differs"
ok "server back within the retry window -> read succeeds ($(grep -o 'took.*' "$T/out.err"))"

# --- slow link, and a stream cut off mid-way ------------------------------------------
run cat "$url/slow/blob" 100 1048576 || fail "slow cat"
slice "$T/blob" 100 1048576 | cmp -s - "$T/out" || fail "slow cat differs"
ok "slow link (limit_rate 1m) read exact"

for loc in slow slownorange; do
	: >"$T/access.log"
	timeout 60 "$tool" -r 8 stream "$url/$loc/blob" >"$T/out" 2>"$T/out.err" &
	pid=$!
	sleep 1
	stop_nginx
	sleep 0.5
	start_nginx || fail "nginx did not restart"
	wait $pid || fail "stream ($loc) did not resume"
	cmp -s "$T/blob" "$T/out" || fail "resumed stream ($loc) differs"
	if [ $loc = slow ]; then
		grep -Eq "^206 /slow/blob \"bytes=[1-9][0-9]*-\"" "$T/access.log" ||
			fail "stream ($loc) did not resume with a Range request"
	else
		# (nginx does not log the request it was stopped in)
		grep -Eq "^200 /slownorange/blob \"-\" $size\$" "$T/access.log" ||
			fail "stream ($loc) did not restart"
	fi
done
ok "stream cut mid-way resumes exact (with Range, and by skipping without)"

# --- a server that accepts and never answers, and one that never accepts ----------------
# (a full accept queue drops further SYNs: a host that cannot be reached)
stall_server() {
	python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
held = []
if sys.argv[1] == "stall":
    s.listen(16)
else:
    s.listen(0)
    for i in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(s.getsockname())
        except BlockingIOError:
            pass
        held.append(c)
print(s.getsockname()[1], flush=True)
s.settimeout(0.2)
deadline = time.time() + 30
while time.time() < deadline:
    try:
        if sys.argv[1] == "stall":
            held.append(s.accept()[0])
        else:
            time.sleep(0.2)
    except socket.timeout:
        pass
' "$1" >"$T/stall.port" &
	stall_pid=$!
	for i in $(seq 100); do [ -s "$T/stall.port" ] && break; sleep 0.05; done
	sport=$(cat "$T/stall.port")
	[ -n "$sport" ] || fail "python3 test server did not start"
}
stop_stall_server() {
	kill "$stall_pid" 2>/dev/null
	wait "$stall_pid" 2>/dev/null
	stall_pid=
}

if command -v python3 >/dev/null; then
	stall_server stall
	t0=$(now_ms)
	expect_fail ETIMEDOUT "stalled" -- -t 2000 -r 1 info "http://127.0.0.1:$sport/blob"
	dt=$(($(now_ms) - t0))
	[ $dt -lt 8000 ] || fail "stalled server: took $dt ms"
	stop_stall_server
	ok "stalled server -> ETIMEDOUT in $dt ms"

	if [ "$(cat /proc/sys/net/ipv4/tcp_abort_on_overflow 2>/dev/null)" = 0 ]; then
		stall_server noaccept
		t0=$(now_ms)
		expect_fail EHOSTUNREACH "unreachable" -- -t 1500 -r 1 info "http://127.0.0.1:$sport/blob"
		dt=$(($(now_ms) - t0))
		[ $dt -lt 8000 ] || fail "unreachable server: took $dt ms"
		stop_stall_server
		ok "unreachable server (SYNs dropped) -> EHOSTUNREACH in $dt ms"
	fi
else
	echo "skip: stalled and unreachable servers (no python3)"
fi

echo "PASS"
