# SPDX-License-Identifier: GPL-2.0-only
# Sourced by every test script that may not be able to run on some machine.
#   cl_skip_test REASON   the test cannot run here: prints "SKIP: REASON", records
#                         "SUITE<TAB>TEST<TAB>REASON" in $CL_SKIP_LOG when set (tests/run-all.sh
#                         lists every skip at the end and, under CI, fails unless
#                         tests/skip-allow.txt allows it) and exits 77 (ctest: skipped).
# TEST is $CL_TEST_NAME (ctest sets it), else the script's name; SUITE is $CL_SUITE.
cl_skip_test() {
	echo "SKIP: $*" >&2
	if [ -n "${CL_SKIP_LOG:-}" ]; then
		printf '%s\t%s\t%s\n' "${CL_SUITE:-}" "${CL_TEST_NAME:-$(basename "$0" .sh)}" "$*" \
			>>"$CL_SKIP_LOG"
	fi
	exit 77
}
