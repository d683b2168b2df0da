#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# VCDIFF interoperability with xdelta3, both ways, and the delta-size target:
# on sparse-edit chunks our deltas total at most 1.1x those of
# `xdelta3 -9 -A -n -S none` (no app header, no checksum, no secondary
# compression: the same feature set our encoder writes).
set -euo pipefail
# shellcheck source=tests/lib/skip.sh
source "$(dirname "$0")/../lib/skip.sh"

if ! command -v xdelta3 >/dev/null; then
	cl_skip_test "xdelta3 is not installed (apt-get install xdelta3)"
fi
tool=${CL_BUILD_DIR:?}/tests/tools/vcdiff_tool
if [ ! -x "$tool" ]; then
	echo "FAIL: $tool not built"
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pairs=${VCDIFF_PAIRS:-400} # per kind; 5 kinds plus a few large pairs

"$tool" gen "$tmp" "$pairs" "${VCDIFF_SEED:-1}"
(cd "$tmp" && ls -- *.src | sed 's/\.src$//') >"$tmp/names"
echo "$(wc -l <"$tmp/names") pairs"

# 1. Encode every pair with the project, in one process.
sed 's|.*|encode '"$tmp"'/&.src '"$tmp"'/&.tgt '"$tmp"'/&.ours|' "$tmp/names" | "$tool" batch

# 2. Per pair, with xdelta3: decode our delta, and encode twice: -9 without
# app header/checksum (the size baseline) and the default level with its app
# header and Adler-32. -B/-W shrink xdelta3's buffers (it faults in megabytes
# per run otherwise, ~100 ms); for 4 KiB pairs the deltas are byte-identical
# to the defaults. The large pairs get one window per 16 KiB of target, which
# exercises multi-window decoding. Two workers.
xdelta_pairs() {
	local n xd=(xdelta3 -q -f -B 524288 -W 16384)
	for n in "$@"; do
		"${xd[@]}" -d -s "$n.src" "$n.ours" "$n.ours.out" ||
			{ echo "FAIL: xdelta3 -d rejects our delta for pair $n"; exit 255; }
		"${xd[@]}" -e -9 -A -n -S none -s "$n.src" "$n.tgt" "$n.x9" ||
			{ echo "FAIL: xdelta3 -e -9 on pair $n"; exit 255; }
		"${xd[@]}" -e -S none -s "$n.src" "$n.tgt" "$n.xd" ||
			{ echo "FAIL: xdelta3 -e on pair $n"; exit 255; }
	done
}
export -f xdelta_pairs
(cd "$tmp" && xargs -P 2 -n 100 bash -c 'set -euo pipefail; xdelta_pairs "$@"' _ <names)

# 3. Decode both xdelta3 deltas with the project, in one process.
sed 's|.*|decode '"$tmp"'/&.src '"$tmp"'/&.x9 '"$tmp"'/&.x9.out\ndecode '"$tmp"'/&.src '"$tmp"'/&.xd '"$tmp"'/&.xd.out|' \
	"$tmp/names" | "$tool" batch

# 4. Every output must equal its target.
(cd "$tmp" && md5sum -- *.tgt *.out) | awk '
	{ f = $2; h = $1 }
	f ~ /\.tgt$/ { sub(/\.tgt$/, "", f); want[f] = h; next }
	{ out[f] = h }
	END {
		bad = 0
		for (f in out) {
			n = f; sub(/\.(ours|x9|xd)\.out$/, "", n)
			if (out[f] != want[n]) { print "FAIL: pair " n ": " f " differs from the target"; bad = 1 }
		}
		exit bad
	}'
for n in $(cat "$tmp/names"); do
	for s in ours.out x9.out xd.out; do
		[ -e "$tmp/$n.$s" ] || { echo "FAIL: pair $n: no $s"; exit 1; }
	done
done

# 5. xdelta3's default output uses secondary compression: if the header says
# so the project must refuse it cleanly, otherwise decode it exactly.
for n in $(grep '^sparse-' "$tmp/names" | head -n 10); do
	xdelta3 -q -f -B 524288 -W 16384 -e -9 -s "$tmp/$n.src" "$tmp/$n.tgt" "$tmp/$n.xs"
	hdr=$(od -An -tu1 -j4 -N1 "$tmp/$n.xs" | tr -d ' ')
	if ((hdr & 1)); then
		if "$tool" decode "$tmp/$n.src" "$tmp/$n.xs" "$tmp/$n.xs.out" 2>"$tmp/err"; then
			echo "FAIL: pair $n: secondary-compressed delta accepted"
			exit 1
		fi
		grep -q 'not supported' "$tmp/err" ||
			{ echo "FAIL: pair $n: $(cat "$tmp/err")"; exit 1; }
	else
		"$tool" decode "$tmp/$n.src" "$tmp/$n.xs" "$tmp/$n.xs.out"
		cmp "$tmp/$n.xs.out" "$tmp/$n.tgt" || { echo "FAIL: pair $n: default xdelta3 delta"; exit 1; }
	fi
done

# 6. Sizes of the 4 KiB pairs (the large pairs' baseline is split by -W).
total() { (cd "$tmp" && find . -maxdepth 1 -name "$1" -printf '%s\n') | awk '{ s += $1 } END { print s + 0 }'; }
fail=0
for kind in sparse sparsetext shifted random unrelated; do
	o=$(total "$kind-*.ours")
	x=$(total "$kind-*.x9")
	printf '%-11s ours %8d  xdelta3 -9 %8d  ratio %s\n' "$kind" "$o" "$x" \
		"$(awk -v o="$o" -v x="$x" 'BEGIN { printf "%.4f", o / x }')"
done
o=$(($(total 'sparse-*.ours') + $(total 'sparsetext-*.ours')))
x=$(($(total 'sparse-*.x9') + $(total 'sparsetext-*.x9')))
ratio=$(awk -v o="$o" -v x="$x" 'BEGIN { printf "%.4f", o / x }')
echo "sparse-edit total: ours $o, xdelta3 -9 -A -n -S none $x, ratio $ratio"
if ((o * 10 > x * 11)); then
	echo "FAIL: sparse-edit deltas exceed 1.1x xdelta3 -9"
	fail=1
fi
exit $fail
