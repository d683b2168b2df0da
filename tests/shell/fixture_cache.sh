#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The machine-wide cache of the guest test fixtures (tests/guest/lib.sh):
# cl_evict_fixtures keeps the fixtures it is told to keep, the two used last
# besides them, and any that somebody holds; it removes every other one of
# its prefix with the directory cl_qdir made for it, never follows a link and
# never touches another prefix; cl_lock_current tells a waiter that its
# fixture was moved away. On directories of its own, no VM.
set -u
SRC=${CL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
T=$(mktemp -d /tmp/cl-fixture-cache.XXXXXX)
trap 'rm -rf "$T"' EXIT
CL_STATE_ROOT=$T/state
# shellcheck source=tests/guest/lib.sh
source "$SRC/tests/guest/lib.sh"
FAILS=0
fail() {
	echo "FAIL: $*" >&2
	FAILS=$((FAILS + 1))
}

R=$T/cache
mkdir -p "$R" "$CL_STATE_ROOT/h-e" "$CL_STATE_ROOT/h-f"
# Used last first: d, c, b, a, f, e (the .lock's mtime is the last use).
age=1
for k in d c b a f e; do
	mkdir "$R/workload-$k"
	echo data >"$R/workload-$k/data"
	touch -d "$age min ago" "$R/workload-$k/.lock"
	age=$((age + 1))
done
mkdir "$R/other-x"
touch -d '1 day ago' "$R/other-x/.lock"
ln -s "$R/workload-a" "$R/workload-lnk"
# e and f had their files put elsewhere by cl_qdir: e's own, f's names another.
echo "$CL_STATE_ROOT/h-e" >"$R/workload-e/qemu-dir"
echo "$R/workload-e" >"$CL_STATE_ROOT/h-e/owner"
echo "$CL_STATE_ROOT/h-f" >"$R/workload-f/qemu-dir"
echo "$T/elsewhere" >"$CL_STATE_ROOT/h-f/owner"
# b is in use: a reader (this shell, on its own open file) holds its lock shared.
exec 8<"$R/workload-b/.lock"
flock -s 8

cl_evict_fixtures "$R" workload "$R/workload-a" 2>/dev/null
exec 8<&-
for k in a b c d; do
	[ -f "$R/workload-$k/data" ] || fail "workload-$k was removed"
done
for k in e f; do
	[ ! -e "$R/workload-$k" ] || fail "workload-$k was kept"
done
[ ! -e "$CL_STATE_ROOT/h-e" ] || fail "the qemu-dir workload-e owned was kept"
[ -d "$CL_STATE_ROOT/h-f" ] || fail "a qemu-dir another directory owns was removed"
[ -L "$R/workload-lnk" ] || fail "the link was removed"
[ -d "$R/other-x" ] || fail "a fixture of another prefix was removed"
[ -z "$(find "$R" -maxdepth 1 -name '.evicted.*')" ] || fail "an evicted directory was left aside"

# A waiter whose fixture is moved away while it waits sees that its lock is
# no longer the one at the fixture's path.
exec 7>"$R/workload-c/.lock"
cl_lock_current 7 "$R/workload-c/.lock" || fail "cl_lock_current: a current lock judged gone"
mv "$R/workload-c" "$R/.evicted.test"
cl_lock_current 7 "$R/workload-c/.lock" && fail "cl_lock_current: a moved fixture judged current"
exec 7>&-

[ "$FAILS" = 0 ] || exit 1
echo "fixture_cache: ok"
