#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Runs every fuzz target for SECONDS each, one after the other, and exits
# non-zero on any finding (a sanitizer report, a crash, a leak, a broken
# invariant, an input taking over 25 s, or more than 2 GiB of memory).
# Builds the targets first (CC=clang, -DCL_FUZZ=ON) and generates the seed
# corpora once (make-corpus.sh). Per target it prints executions, coverage
# (edges: cov, features: ft) and corpus size; the corpus grows in
# BUILD_DIR/fuzz-corpus/TARGET across runs, findings land in
# BUILD_DIR/fuzz-findings/TARGET/ and logs in BUILD_DIR/fuzz-logs/.
# Usage: tests/fuzz/run.sh SECONDS [BUILD_DIR [TARGET...]]
#   (default BUILD_DIR: build-fuzz/; default: every target of CMakeLists.txt)
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:?usage: run.sh SECONDS [BUILD_DIR]}
build=${2:-$src/build-fuzz}

if ! grep -qs '^CL_FUZZ:BOOL=ON' "$build/CMakeCache.txt"; then
	CC=clang cmake -S "$src" -B "$build" -DCL_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target fuzz >"$build/fuzz-build.log" 2>&1 ||
	{ tail -40 "$build/fuzz-build.log" >&2; echo "fuzz: build failed" >&2; exit 1; }
if [ ! -d "$build/fuzz-seeds" ] || [ "$src/tests/fuzz/make-corpus.sh" -nt "$build/fuzz-seeds" ]; then
	bash "$src/tests/fuzz/make-corpus.sh" "$build" >/dev/null
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$build/fuzz-logs"
targets=$(sed -n 's/^  \(fuzz_[a-z_]*\) .*/\1/p' "$src/tests/fuzz/CMakeLists.txt")
if [ $# -gt 2 ]; then
	targets="${*:3}"
fi
failed=()
printf '%-22s %6s %12s %8s %8s %8s  %s\n' target seconds executions cov ft corpus result
for t in $targets; do
	corpus=$build/fuzz-corpus/$t
	findings=$build/fuzz-findings/$t
	log=$build/fuzz-logs/$t.log
	mkdir -p "$corpus" "$findings"
	seeds=()
	[ -d "$build/fuzz-seeds/$t" ] && seeds=("$build/fuzz-seeds/$t")
	rc=0
	start=$SECONDS
	"$build/tests/fuzz/$t" -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$findings/" "$corpus" "${seeds[@]}" \
		>"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
	result=ok
	if [ "$rc" -ne 0 ] || grep -qE '^(==[0-9]+==ERROR|SUMMARY: |.*runtime error:)' "$log"; then
		result="FINDING (exit $rc): $log"
		failed+=("$t")
	fi
	printf '%-22s %6s %12s %8s %8s %8s  %s\n' "$t" $((SECONDS - start)) "${execs:-?}" \
		"${cov:-?}" "${ft:-?}" "$(find "$corpus" -type f | wc -l)" "$result"
done
if ((${#failed[@]})); then
	for t in "${failed[@]}"; do
		echo "---- $t: $build/fuzz-logs/$t.log"
		grep -m1 -A30 -E '==ERROR|runtime error|invariant broken|deadly signal|timeout|out-of-memory' \
			"$build/fuzz-logs/$t.log" || tail -30 "$build/fuzz-logs/$t.log"
		ls "$build/fuzz-findings/$t" | sed 's/^/  reproducer: /'
	done
	echo "fuzz: findings in ${failed[*]}" >&2
	exit 1
fi
