# SPDX-License-Identifier: GPL-2.0-only
# Sourced by the cloudletfs shell tests (fs_http.sh, fault_matrix.sh): the
# environment checks, a temporary directory T cleaned up on any exit (mounts,
# daemons, nginx, background jobs), and helpers to mount, read status and
# stats and compare with `cloudlet apply`'s output in $T/apply.
#   cl_fs_init NAME   checks, sets C BUILD SRC FS T PYLIB; exit 77 without
#                     /dev/fuse or nginx
#   CLEANUP_HOOK      a command cleanup runs first (e.g. a proxy's kill)
set -u
export LC_ALL=C

cl_fs_init() {
	C=${CLOUDLET:?CLOUDLET is not set (run through ctest)}
	BUILD=${CL_BUILD_DIR:?CL_BUILD_DIR is not set (run through ctest)}
	SRC=${CL_SOURCE_DIR:?CL_SOURCE_DIR is not set (run through ctest)}
	# shellcheck source=tests/lib/skip.sh
	source "$SRC/tests/lib/skip.sh"
	[ -c /dev/fuse ] || cl_skip_test "/dev/fuse is missing"
	# shellcheck source=tests/lib/nginx.sh
	source "$SRC/tests/lib/nginx.sh"
	[ -n "$(cl_nginx_bin)" ] || cl_skip_test "nginx is missing (apt-get install nginx-light)"
	FS=$(dirname "$C")/cloudletfs
	PYLIB=$SRC/tests/lib/clfs.py
	[ -x "$FS" ] || { echo "FAIL: $FS is not built"; exit 1; }
	command -v python3 >/dev/null || { echo "FAIL: python3 is needed"; exit 1; }
	unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
	export no_proxy='*' NO_PROXY='*'
	T=$(mktemp -d "${TMPDIR:-/tmp}/cl-$1.XXXXXX")
	T=$(cd "$T" && pwd -P)
	export CLOUDLET_HOME=$T/home
	unset CLOUDLET_THREADS
	DAEMONS=() # cloudletfs pids (from status) to kill if still running on exit
	MP=
	LOG=
	CASE=setup
	CLEANUP_HOOK=${CLEANUP_HOOK:-}
	trap cleanup EXIT
	trap 'exit 143' TERM INT HUP
}

mounts_under() { awk -v p="$1" '$3 == "fuse.cloudletfs" && index($2, p) == 1 { print $2 }' /proc/mounts; }
mounted() { awk -v m="$1" '$2 == m && $3 == "fuse.cloudletfs" { f = 1 } END { exit !f }' /proc/mounts; }
cleanup() {
	local p m
	[ -z "$CLEANUP_HOOK" ] || $CLEANUP_HOOK
	for m in $(mounts_under "$T/"); do
		timeout 20 "$C" -q umount "$m" >/dev/null 2>&1 || fusermount3 -uz "$m" 2>/dev/null ||
			umount -l "$m" 2>/dev/null
	done
	for p in "${DAEMONS[@]}"; do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = cloudletfs ] && kill "$p" 2>/dev/null
	done
	cl_nginx_stop
	for p in $(jobs -p); do kill "$p" 2>/dev/null; done # readers, fs_stress, proxy
	wait
	# other (non-FUSE) mounts a test made under T: tmpfs, bind mounts
	for m in $(awk -v p="$T/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r); do
		umount -l "$m" 2>/dev/null
	done
	[ -z "$(mounts_under "$T/")" ] && rm -rf "$T"
}

fail() {
	echo "FAIL [$CASE]: $*" >&2
	[ -s "$T/err" ] && sed 's/^/  stderr: /' "$T/err" >&2
	if [ -n "$MP" ] && mounted "$MP"; then
		timeout 2 cat "$MP/status" 2>/dev/null | sed 's/^/  status: /' >&2
	fi
	[ -n "$LOG" ] && [ -s "$LOG" ] && tail -5 "$LOG" | sed 's/^/  daemon: /' >&2
	[ -s "$T/nginx/error.log" ] && tail -3 "$T/nginx/error.log" | sed 's/^/  nginx: /' >&2
	exit 1
}
ok() { echo "ok [$CASE] $*"; }
cl() { timeout 60 "$C" -q "$@" >"$T/out" 2>"$T/err"; }
py() { timeout 120 python3 "$PYLIB" "$@"; }
ms() { local t=${EPOCHREALTIME/./}; REPLY=$((t / 1000)); } # now, in ms, in $REPLY

# mount_ov NAME URL OPTIONS: mounts at $T/mnt/NAME, sets MP and LOG.
mount_ov() {
	MP=$T/mnt/$1
	LOG=$T/log.$1
	mkdir -p "$MP"
	cl mount "$T/base.disk" "$2" "$MP" -o "log=$LOG,$3" || fail "cloudlet mount $2 -o $3"
	mounted "$MP" || fail "cloudlet mount returned but $MP is not mounted"
	DAEMONS+=("$(st pid)")
}
umount_ov() {
	cl umount "$MP" || fail "cloudlet umount $MP"
	mounted "$MP" && fail "$MP still mounted after cloudlet umount"
	MP=
}
# st KEY: a status field of $MP (bounded).
# publish NAME...: the overlay of $T/ov served by nginx as $T/www/NAME/ too (hard links).
publish() {
	local d
	for d in "$@"; do
		mkdir -p "$T/www/$d" && ln "$T/ov/overlay-meta" "$T/ov/overlay-blob" "$T/www/$d/" ||
			fail "publishing the overlay as $d"
	done
}
st() { timeout 5 cat "$MP/status" | sed -n "s/^$1: //p"; }
stat_of() { timeout 5 cat "$MP/$1/stats/$2"; }
# wait_state STATE SECONDS
wait_state() {
	local end
	ms
	end=$((REPLY + $2 * 1000))
	while ! timeout 5 grep -q "^state: $1\$" "$MP/status"; do
		ms
		[ "$REPLY" -lt "$end" ] || return 1
		sleep 0.1
	done
}
# cmp_all [FILE:APPLY_FILE...]: the mount's files against apply's output.
cmp_all() {
	local f
	[ $# -gt 0 ] || set -- disk/image:disk.img memory/image:memory.img state:state domain.xml:domain.xml
	for f in "$@"; do
		timeout 60 cmp "$MP/${f%%:*}" "$T/apply/${f#*:}" >"$T/err" 2>&1 ||
			fail "${f%%:*} differs from cloudlet apply's ${f#*:}"
	done
}
# alive_and_answering PID: the daemon runs and its status and stats answer
# within a second each (also while reads wait).
alive_and_answering() {
	local t f
	kill -0 "$1" 2>/dev/null || fail "daemon $1 is gone"
	for f in status disk/stats/io_errors memory/stats/waiting; do
		ms
		t=$REPLY
		timeout 5 cat "$MP/$f" >/dev/null || fail "cat $f"
		ms
		[ $((REPLY - t)) -lt 1000 ] || fail "$f took $((REPLY - t)) ms"
	done
}
