#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# make-debian-workload.sh [OUTDIR]: the Debian guest's base and overlay, made with cloudlet
# itself (cached; OUTDIR defaults to `--print-dir`; `--is-cached` exits 0 when that holds
# a complete one):
#   OUTDIR/guest -> the guest of build-debian-guest.sh (cached apart)
#   OUTDIR/disk.img, disk.img.memory, .state, .domain.xml   the base: booted by
#                  `cloudlet base --network user` until systemd reports the system running,
#                  snapshotted with free page reporting on, registered in OUTDIR/home
#   OUTDIR/ov/     the overlay: `cloudlet overlay` ran apt-get install cloudlet-answer in the
#                  guest (from the local repository on its disk), waited for GET /answer,
#                  trimmed the disk and dropped the guest's caches
#   OUTDIR/answer.sha256  what GET /answer must return (the host generated the data)
#   OUTDIR/models.sha256  what GET /model/zoo-N must return, one line per model
#   OUTDIR/times.txt, OUTDIR/.done (the key)
# Use it with CLOUDLET_HOME=OUTDIR/home; never run a VM on its files (synthesis does not).
# Key: the guest's key, this script and docs/FORMAT.md (the registry and overlay format).
# Of the workloads and guests of other keys in the cache, the two used last stay, and every
# guest such a workload links to (lib.sh, cl_evict_fixtures).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd -P)
source "$HERE/lib.sh"

KEY=$({ bash "$HERE/build-debian-guest.sh" --print-key; sha256sum "$HERE/make-debian-workload.sh" \
	"$HERE/../../docs/FORMAT.md" | cut -d' ' -f1; } | sha256sum | cut -c1-64)
CACHE_ROOT=${CL_DEBIAN_GUEST_CACHE:-/var/cache/cloudlet-test}
DEFAULT=$CACHE_ROOT/debian-workload-${KEY:0:12}
cached() { [ -f "$1/.done" ] && [ "$(cat "$1/.done")" = "$KEY" ] && [ -s "$1/ov/overlay-meta" ]; }
case "${1:-}" in
--print-dir) echo "$DEFAULT"; exit 0 ;;
--is-cached) cached "$DEFAULT"; exit ;;
esac
cloudlet=${CLOUDLET:?CLOUDLET not set (the cloudlet program)}
OUT=${1:-$DEFAULT}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd -P)
exec 9>"$OUT/.lock"
flock -w 3600 9 || cl_die "another make-debian-workload.sh holds $OUT/.lock"
# evict: of the cached workloads and guests of other keys, the two used last
# stay, and every guest a workload left links to.
evict() {
	local w keep=()
	cl_evict_fixtures "$CACHE_ROOT" debian-workload "$OUT"
	for w in "$OUT" "$CACHE_ROOT"/debian-workload-*; do
		[ ! -L "$w/guest" ] || keep+=("$(readlink -f "$w/guest")")
	done
	cl_evict_fixtures "$CACHE_ROOT" debian-guest "${keep[@]}"
}
if cached "$OUT"; then
	echo "make-debian-workload: cached in $OUT"
	evict
	exit 0
fi
rm -f "$OUT/.done"
T0=$SECONDS
phase() { echo "$1 $((SECONDS - T0))" >>"$OUT/times.txt.part"; cl_log "== $1 (t=$((SECONDS - T0))s)"; }
: >"$OUT/times.txt.part"

cl_init
[ "$(cl_qdir "$OUT")" = "$OUT" ] || cl_die "$(cl_qemu_user) cannot reach $OUT"
chmod 0755 "$OUT"
phase build-guest
GD=$(bash "$HERE/build-debian-guest.sh" --print-dir)
bash "$HERE/build-debian-guest.sh" "$GD" || {
	rc=$?
	[ $rc = 77 ] && cl_skip "build-debian-guest.sh cannot build the guest here (above)"
	cl_die "build-debian-guest.sh failed ($rc)"
}
ln -sfn "$GD" "$OUT/guest"
export CLOUDLET_HOME=$OUT/home
rm -rf "$CLOUDLET_HOME" "$OUT/ov" "$OUT"/disk.img*

phase boot-base
cp --sparse=always "$GD/disk.img" "$OUT/disk.img"
"$cloudlet" -q base "$OUT/disk.img" --network user --ram "$(cat "$GD/ram-mib")" \
	--kernel "$GD/vmlinuz" --initrd "$GD/initrd.img" --cmdline "$(cat "$GD/cmdline")" \
	--snapshot-on "$CL_READY_MARKER" --name "${CL_PREFIX}deb-base" --timeout 600 </dev/null ||
	cl_die "cloudlet base of the Debian guest failed"

phase customize
# apt from the disk's own repository; the app answers once its model is in RAM.
cat >"$OUT/customize.sh" <<'EOF'
apt-get install -y -q cloudlet-answer >/tmp/apt.log 2>&1 || { tail -5 /tmp/apt.log; echo APT-FAILED; }
for i in $(seq 300); do exec 3<>/dev/tcp/127.0.0.1/80 && printf 'GET /answer HTTP/1.0\r\n\r\n' >&3 && grep -q '200 OK' <&3 && break; exec 3>&-; sleep 1; done; exec 3>&-; echo "answered after $i tries"
fstrim -av
sync; echo 3 >/proc/sys/vm/drop_caches
echo DO""NE
EOF
"$cloudlet" -q overlay "$OUT/disk.img" -o "$OUT/ov" --console-script "$OUT/customize.sh" \
	--snapshot-on DONE --name "${CL_PREFIX}deb-ov" --timeout 1200 </dev/null ||
	cl_die "cloudlet overlay of the Debian guest failed"
cp "$GD/answer.sha256" "$GD/models.sha256" "$OUT/"
chmod -R a+rX "$OUT"

phase finished
mv "$OUT/times.txt.part" "$OUT/times.txt"
echo "$KEY" >"$OUT/.done"
evict
cl_log "make-debian-workload: done in $((SECONDS - T0)) s in $OUT"
