#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# The core on the real-guest reference workload: register the base, make
# overlays (xz and zstd), synthesize them back (from a file and from nginx
# on 127.0.0.1) and compare every file with the customized VM's.
set -euo pipefail
W=${1:?usage: $0 WORKLOAD_DIR}
cloudlet=${CLOUDLET:?CLOUDLET not set}
src=${CL_SOURCE_DIR:?CL_SOURCE_DIR not set}
source "$src/tests/lib/nginx.sh"

T=$(mktemp -d /tmp/cl-guest-roundtrip.XXXXXX)
trap 'cl_nginx_stop; rm -rf "$T"' EXIT
export CLOUDLET_HOME=$T/home
fail() { echo "FAIL: $*"; exit 1; }

same_as_custom() {
	local dir=$1 f
	for f in disk.img memory.img state domain.xml; do
		cmp "$dir/$f" "$W/custom/$f" || fail "$dir/$f differs from the customized VM's"
	done
}

"$cloudlet" -q base "$W/base/disk.img" --memory "$W/base/memory.img" \
	--state "$W/base/state" --domain "$W/base/domain.xml"
for codec in xz zstd; do
	"$cloudlet" -q overlay "$W/base/disk.img" --disk "$W/custom/disk.img" \
		--memory "$W/custom/memory.img" --state "$W/custom/state" \
		--domain "$W/custom/domain.xml" -o "$T/ov-$codec" --codec "$codec" | tee "$T/ov-$codec.txt"
	"$cloudlet" -q apply "$W/base/disk.img" "$T/ov-$codec" -o "$T/out-$codec"
	same_as_custom "$T/out-$codec"
	"$cloudlet" -q verify "$W/base/disk.img" "$T/ov-$codec"
	echo "ok: $codec round trip"
done

# The guest wrote tens of MiB: the overlay must hold real changes in both
# images, and the page cache must show up as memory<->disk sharing.
"$cloudlet" info --json "$T/ov-xz" >"$T/info.json"
python3 - "$T/info.json" <<'PY'
import json, sys
i = json.load(open(sys.argv[1]))
m, d = i["images"]["memory"]["chunks"], i["images"]["disk"]["chunks"]
assert sum(m.values()) > 1000, m
assert sum(d.values()) > 1000, d
shared = m["dedup"] + d["dedup"] + m["base-disk"] + d["base-memory"]
assert shared > 100, ("no memory/disk sharing found", m, d)
print("ok: memory chunks", m, "disk chunks", d)
PY

# The same overlay applied from a URL.
cl_nginx_start "$T/nginx" "$T" || { rc=$?; [ $rc = 77 ] && cl_skip "nginx missing"; fail "nginx"; }
"$cloudlet" -q apply "$W/base/disk.img" "http://127.0.0.1:$NGINX_PORT/ov-xz/overlay-meta" -o "$T/out-http"
same_as_custom "$T/out-http"
"$cloudlet" -q verify "$W/base/disk.img" "http://127.0.0.1:$NGINX_PORT/ov-xz/"overlay-meta
echo "ok: apply and verify over HTTP"
