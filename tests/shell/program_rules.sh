#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The rules of the cloudlet program (synth/cli/) and of the VM layer's
# session API, read from the sources (no build needed):
#  - no function in synth/cli/ is over 80 lines;
#  - synth/cli/ includes no libvirt header and names no libvirt type, and
#    neither do the public headers (include/) it reaches;
#  - no command calls another: cl_cmd_* is named only where it is defined
#    and in main.c's table, and never in the libraries;
#  - the files of synth/cli/ and synth/vm/ are under 900 lines.
set -euo pipefail
# shellcheck source=tests/lib/skip.sh
source "$(dirname "$0")/../lib/skip.sh"
SRC=${CL_SOURCE_DIR:?CL_SOURCE_DIR is not set (run through ctest)}
command -v python3 >/dev/null || cl_skip_test "python3 is not installed"
FAILS=0
bad() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }

# Function bodies: from a "{" alone at the start of a line to the next "}"
# alone there (the committed .clang-format puts them so).
long=$(python3 - "$SRC"/synth/cli/*.c <<'PY'
import re, sys
for f in sys.argv[1:]:
    lines = open(f).read().split('\n')
    start = None
    for i, l in enumerate(lines):
        if l == '{':
            start = i
        elif l == '}' and start is not None:
            if i - start + 1 > 80:
                j = start - 1
                while j > 0 and not re.match(r'[A-Za-z]', lines[j]):
                    j -= 1
                print(f"{f}:{j + 1}: {i - start + 1} lines: {lines[j]}")
            start = None
PY
)
[ -z "$long" ] && ok "no function in synth/cli/ is over 80 lines" || bad "over 80 lines:
$long"

hits=$(grep -nE '#include <libvirt/|\bvir[A-Z][A-Za-z]*(Ptr)?\b' "$SRC"/synth/cli/*.[ch] "$SRC"/include/*.h |
	grep -vE ':[0-9]+:\s*(/\*|\*)' || true)
[ -z "$hits" ] && ok "no libvirt header or type in synth/cli/ and include/" ||
	bad "libvirt in the program or the public headers:
$hits"

calls=$(grep -nE '\bcl_cmd_[a-z_]+\(' "$SRC"/synth/*/*.c | grep -vE '^[^:]+:[0-9]+:int cl_cmd_' || true)
[ -z "$calls" ] && ok "no command calls another" || bad "cl_cmd_* called:
$calls"
grep -q 'cl_cmd_' "$SRC"/synth/vm/*.c "$SRC"/include/*.h &&
	bad "the libraries name cl_cmd_*" || ok "the libraries name no command"

big=$(wc -l "$SRC"/synth/cli/*.[ch] "$SRC"/synth/vm/*.[ch] |
	awk '$2 != "total" && $1 >= 900')
[ -z "$big" ] && ok "synth/cli/ and synth/vm/ files under 900 lines" || bad "900 lines or more:
$big"

[ "$FAILS" = 0 ] || { echo "$FAILS checks failed" >&2; exit 1; }
echo PASS
