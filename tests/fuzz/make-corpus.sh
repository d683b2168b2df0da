#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Generates the seed corpora of the fuzz targets into BUILD_DIR/fuzz-seeds/
# (never committed): real overlays made by the cloudlet CLI on small
# generated images (both codecs, several chunk and segment sizes, with a
# TRACE order, device state and domain XML), then cut by fuzz_seeds into each
# target's input format; VCDIFF deltas of generated pairs from
# tests/tools/vcdiff_tool; TRACE files, cloudletfs command lines, HTTP
# exchanges and small QEMU save files written here; the test guest's save
# files and domain XML when a build made them (CL_GUEST_DIR).
# Usage: tests/fuzz/make-corpus.sh BUILD_DIR   (a -DCL_FUZZ=ON build)
set -euo pipefail
build=$(cd "${1:?usage: make-corpus.sh BUILD_DIR}" && pwd)
C=$build/cloudlet
SEEDS=$build/tests/fuzz/fuzz_seeds
VT=$build/tests/tools/vcdiff_tool
for p in "$C" "$SEEDS" "$VT"; do
	[ -x "$p" ] || { echo "make-corpus: $p is not built" >&2; exit 1; }
done
out=$build/fuzz-seeds
T=$(mktemp -d "${TMPDIR:-/tmp}/cl-fuzz-corpus.XXXXXX")
trap 'rm -rf "$T"' EXIT
export CLOUDLET_HOME=$T/home
# The CLI is built with ASan here; its leak report is not what this is for.
export ASAN_OPTIONS=detect_leaks=0
rm -rf "$out"
mkdir -p "$out"

# Small images from a seeded PRNG (the same every run): a base, and a
# customized VM whose chunks cover every recipe.
python3 - "$T" <<'EOF'
import os, random, sys
d = sys.argv[1]
rnd = random.Random(5)
def rb(n):
    return bytes(rnd.getrandbits(8) for _ in range(n))
C = 4096
disk = bytearray(rb(40 * C) + bytes(8 * C) + b"cloudlet base disk text " * 300)
mem = bytearray(rb(24 * C) + bytes(8 * C))
nd, nm = bytearray(disk), bytearray(mem)
for k in range(0, 40, 3):             # sparse edits: deltas
    o = k * C + rnd.randrange(C - 16)
    nd[o:o + 8] = rb(8)
nd[41 * C:43 * C] = rb(2 * C)         # new data: raw
nd[44 * C:45 * C] = nd[41 * C:42 * C] # a duplicate: dedup
nd[2 * C:3 * C] = bytes(C)            # zero
nd[5 * C:6 * C] = mem[3 * C:4 * C]    # a base memory chunk
nm[1 * C:2 * C] = disk[7 * C:8 * C]   # a base disk chunk
for k in range(4, 20, 2):
    o = k * C + rnd.randrange(C - 64)
    nm[o:o + 40] = rb(40)
nm += rb(3 * C + 100)                 # larger, not a multiple of C
open(f"{d}/disk.img", "wb").write(disk)
open(f"{d}/mem.img", "wb").write(mem)
open(f"{d}/new-disk.img", "wb").write(nd)
open(f"{d}/new-mem.img", "wb").write(nm)
open(f"{d}/state", "wb").write(b"QEVM" + rb(700))
open(f"{d}/domain.xml", "w").write("<domain type='kvm'><name>fuzz</name><memory unit='KiB'>"
                                   "131072</memory><devices><disk type='file'/></devices></domain>\n")
open(f"{d}/trace", "w").write("# first accesses\nmemory 3\ndisk 41\n\ndisk 0\nmemory 1\r\ndisk 44\n")
EOF

n=0
for cs in 4096 1024; do
	mkdir -p "$T/b$cs"
	cp "$T/disk.img" "$T/mem.img" "$T/b$cs/"
	"$C" -q base "$T/b$cs/disk.img" --memory "$T/b$cs/mem.img" --chunk-size $cs >/dev/null
	for variant in "xz 16K" "zstd 16K" "xz 1M --order $T/trace" "zstd 4K --order $T/trace"; do
		set -- $variant
		o=$T/o$n
		mkdir -p "$o"
		"$C" -q overlay "$T/b$cs/disk.img" --disk "$T/new-disk.img" --memory "$T/new-mem.img" \
			--state "$T/state" --domain "$T/domain.xml" -o "$o" --codec "$1" --level 1 \
			--segment-size "$2" "${@:3}" >/dev/null
		"$SEEDS" "$o/overlay-meta" "$T/b$cs/disk.img" "$T/b$cs/mem.img" "$out" "ov$n"
		n=$((n + 1))
	done
	# An overlay with nothing in it.
	o=$T/o$n
	mkdir -p "$o"
	"$C" -q overlay "$T/b$cs/disk.img" --disk "$T/b$cs/disk.img" --memory "$T/b$cs/mem.img" \
		-o "$o" --codec zstd >/dev/null
	"$SEEDS" "$o/overlay-meta" "$T/b$cs/disk.img" "$T/b$cs/mem.img" "$out" "ov$n"
	n=$((n + 1))
done

# VCDIFF deltas of generated pairs (every kind vcdiff_tool makes), with the
# input layout of fuzz_vcdiff: source length (2 bytes), capacity (3), source,
# delta; and of fuzz_vcdiff_roundtrip: source length, source, target.
mkdir -p "$T/vc" "$out/fuzz_vcdiff" "$out/fuzz_vcdiff_roundtrip"
"$VT" gen "$T/vc" 2 7 >/dev/null
for s in "$T"/vc/*.src; do
	b=${s%.src}
	t=$b.tgt
	[ "$(stat -c %s "$s")" -lt 65536 ] && [ "$(stat -c %s "$t")" -lt 65536 ] || continue
	"$VT" encode "$s" "$t" "$b.delta" >/dev/null
	python3 - "$s" "$t" "$b.delta" "$out" "$(basename "$b")" <<'EOF'
import sys
s, t, dl = (open(p, "rb").read() for p in sys.argv[1:4])
out, name = sys.argv[4], sys.argv[5]
open(f"{out}/fuzz_vcdiff/tool-{name}", "wb").write(
    len(s).to_bytes(2, "little") + len(t).to_bytes(3, "little") + s + dl)
open(f"{out}/fuzz_vcdiff_roundtrip/tool-{name}", "wb").write(len(s).to_bytes(2, "little") + s + t)
EOF
done
if command -v xdelta3 >/dev/null; then
	# xdelta3's own streams: application header and Adler-32 checksums.
	for s in "$T"/vc/*.src; do
		b=${s%.src}
		[ "$(stat -c %s "$s")" -lt 65536 ] || continue
		xdelta3 -e -f -S none -s "$s" "$b.tgt" "$b.xd3" 2>/dev/null || continue
		python3 - "$s" "$b.tgt" "$b.xd3" "$out/fuzz_vcdiff/xdelta3-$(basename "$b")" <<'EOF'
import sys
s, t, d = (open(p, "rb").read() for p in sys.argv[1:4])
open(sys.argv[4], "wb").write(len(s).to_bytes(2, "little") + len(t).to_bytes(3, "little") + s + d)
EOF
	done
fi

# TRACE files: chunk counts of disk and memory (2 bytes each), then text.
mkdir -p "$out/fuzz_trace"
python3 - "$out/fuzz_trace" "$T/trace" <<'EOF'
import sys
d = sys.argv[1]
texts = [open(sys.argv[2], "rb").read(),
         b"disk 0\ndisk 1\nmemory 0\n",
         b"memory 7\n# comment\n\ndisk\t3\r\ndisk 3\nmemory  12\n",
         b"".join(b"disk %d\n" % (i * 7 % 100) for i in range(100)),
         b"disk 99999999999999999999\n", b"memory -1\n", b"disk 1 2\n", b"\n\n#\n"]
for i, t in enumerate(texts):
    open(f"{d}/trace-{i}", "wb").write((100).to_bytes(2, "little") + (64).to_bytes(2, "little") + t)
EOF

# cloudletfs command lines, arguments separated by NUL bytes.
mkdir -p "$out/fuzz_fs_opts"
i=0
for args in \
	"/tmp|/tmp|-o|base=/tmp" \
	"http://127.0.0.1:8080/o/overlay-meta|/mnt|-o|base=0123456789abcdef,allow_other,default_permissions,uid=root,gid=0" \
	"-f|-d|/|/tmp|-obase=/tmp,cache_dir=/var/cache/x,cache_limit=10G,no_cache,keep_store,store_dir=rel/dir" \
	"/tmp|/tmp|-o|base=/tmp,connections=64,timeout=0.5,memory_timeout=300,fetch_timeout=30,retries=100,no_stream,ro,log=l" \
	"/tmp|/tmp|-o|base=/tmp,rw,defaults,noauto,user=bob,users,nofail,_netdev,x-systemd.automount,comment=a\\,b,noatime" \
	"--help" "-V" "--|-o|/tmp" "/tmp|/tmp|-o|base=/tmp,cache_limit=500MiB,bogus" ; do
	printf '%s' "$args" | tr '|' '\0' >"$out/fuzz_fs_opts/args-$i"
	i=$((i + 1))
done

# HTTP exchanges: 8 parameter bytes, then responses separated by "\n@@\n"
# (open: HEAD and a bytes=0-0 probe; then a ranged read; then a stream).
mkdir -p "$out/fuzz_http"
python3 - "$out/fuzz_http" <<'EOF'
import sys
d = sys.argv[1]
body = bytes(range(40))
def params(roff, rlen, soff, give_up=0, flags=1):
    return bytes([flags]) + roff.to_bytes(4, "little") + rlen.to_bytes(2, "little") + \
        bytes([soff | (give_up << 4)])
def resp(status, headers, data=b""):
    h = "HTTP/1.1 %s\r\n" % status + "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
    return h.encode() + data
v = [("ETag", '"5f-28"'), ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")]
n = len(body)
nginx = [resp("200 OK", v + [("Content-Length", n), ("Accept-Ranges", "bytes")]),
         resp("206 Partial Content", v + [("Content-Range", "bytes 0-0/%d" % n),
                                          ("Content-Length", 1)], body[:1]),
         resp("206 Partial Content", v + [("Content-Range", "bytes 4-13/%d" % n),
                                          ("Content-Length", 10)], body[4:14]),
         resp("206 Partial Content", v + [("Content-Range", "bytes 2-%d/%d" % (n - 1, n))],
              body[2:])]
seeds = {
    "nginx": params(4, 10, 2) + b"\n@@\n".join(nginx),
    "no-ranges": params(0, n, 0) + b"\n@@\n".join(
        [resp("200 OK", v + [("Content-Length", n)]), resp("200 OK", v + [("Content-Length", n)], body),
         resp("200 OK", v + [("Content-Length", n)], body), resp("200 OK", v, body)]),
    "retry": params(4, 10, 2, flags=2) + b"\n@@\n".join(
        nginx[:2] + [resp("503 Service Unavailable", [("Retry-After", 1)]), b"!0" + nginx[2][:40],
                     nginx[2], b"!2" + nginx[3][:60], nginx[3]]),
    "stale": params(4, 10, 2) + b"\n@@\n".join(
        nginx[:2] + [resp("206 Partial Content", [("ETag", '"other"'),
                                                  ("Content-Range", "bytes 4-13/%d" % n)], body[4:14]),
                     resp("206 Partial Content", v + [("Content-Range", "bytes 2-%d/99" % (n - 1))])]),
    "redirect-head-refused": params(1, 3, 0, give_up=2) + b"\n@@\n".join(
        [resp("405 Method Not Allowed", []),
         b"HTTP/1.1 301 Moved\r\nLocation: /x\r\n\r\n" +
         resp("206 Partial Content", [("Content-Range", "bytes 0-0/%d" % n)], body[:1]),
         resp("206 Partial Content", [("Content-Range", "bytes 1-3/*")], body[1:4]),
         resp("200 OK", [("Content-Length", n)], body)]),
    "empty": params(0, 0, 0) + resp("200 OK", [("Content-Length", 0)]),
    "416": params(0, 0, 0) + b"\n@@\n".join(
        [resp("404 Not Found", []), resp("416 Range Not Satisfiable", [("Content-Range", "bytes */0")])]),
}
for name, data in seeds.items():
    open(f"{d}/{name}", "wb").write(data)
EOF

# Domain XMLs as overlays carry them: a flags byte (which edits), a RAM
# size byte, then the XML. The small one above, a libvirt-shaped one with
# file-backed RAM, and the real test guest's if a build made one
# (CL_GUEST_DIR, default: BUILD_DIR/../build/guest).
mkdir -p "$out/fuzz_domxml"
cat >"$T/libvirt.xml" <<'XML'
<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>web-1</name>
  <uuid>7d0c4a1e-95a8-4f53-bb0e-0c5f5d1f2e3a</uuid>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <cpu mode='host-model' check='partial'/>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='block' device='cdrom'><source dev='/dev/sr0'/><target dev='sda' bus='sata'/></disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='/srv/vm/web-1.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='unix'><source mode='bind' path='/run/vm/web-1/ttyS0'/><target port='0'/>
      <log file='/var/log/vm/web-1.log' append='on'/></serial>
    <serial type='pty'><target port='1'/></serial>
    <console type='unix'><source mode='bind' path='/run/vm/web-1/ttyS0'/><target type='serial' port='0'/></console>
    <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/x.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <graphics type='vnc' port='5901' autoport='no' websocket='5701' listen='0.0.0.0'>
      <listen type='address' address='0.0.0.0'/></graphics>
    <memballoon model='virtio' freePageReporting='on'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-object'/>
    <qemu:arg value='memory-backend-file,id=ram0,size=512M,mem-path=/srv/vm/a,,b.mem,share=off'/>
    <qemu:arg value='-machine'/>
    <qemu:arg value='memory-backend=ram0'/>
    <qemu:arg value='-incoming'/>
    <qemu:arg value='tcp:0:4444'/>
  </qemu:commandline>
</domain>
XML
guest=${CL_GUEST_DIR:-$build/../build/guest}
i=0
for x in "$T/domain.xml" "$T/libvirt.xml" "$guest"/base/domain.xml "$guest"/custom/domain.xml; do
	[ -s "$x" ] || continue
	for flags in 255 0 1 76 200; do
		{ printf "\\$(printf %03o $flags)\\200"; cat "$x"; } >"$out/fuzz_domxml/xml-$i-$flags"
	done
	i=$((i + 1))
done

# QEMU save files (fuzz_vmstate): small ones written here, with and without
# x-ignore-shared, and the real guest's if a build made them (as above).
mkdir -p "$out/fuzz_vmstate"
python3 - "$out/fuzz_vmstate" <<'EOF'
import sys
d = sys.argv[1]
P = 4096
be = lambda n, v: v.to_bytes(n, "big")
name = lambda s: bytes([len(s)]) + s.encode()
def save(ignore_shared, uuid):
    o = b"QEVM" + be(4, 3) + b"\x07" + be(4, 13) + b"pc-i440fx-7.2"
    if ignore_shared:
        o += b"\x05" + name("configuration/capabilities") + be(4, 1) + be(4, 1) + name("x-ignore-shared")
    if uuid:
        o += b"\x05" + name("configuration/uuid") + be(4, 1) + bytes(range(16))
    blocks = [("pc.ram", 16 * P), ("/rom@etc/acpi/tables", 2 * P), ("pc.bios", P)]
    foot = be(8, 0x10) + b"\x7e" + be(4, 3)
    o += b"\x01" + be(4, 3) + name("ram") + be(4, 0) + be(4, 4) + be(8, sum(l for _, l in blocks) | 4)
    for n, l in blocks:
        o += name(n) + be(8, l) + (be(8, 0xfffc0000) if ignore_shared else b"")
    o += foot + b"\x02" + be(4, 3)
    o += be(8, 0x08) + name("/rom@etc/acpi/tables") + bytes([0xa1]) * P
    o += be(8, P | 0x22) + b"\x00" + be(8, 0x08) + name("pc.bios") + bytes(range(256)) * 16
    if not ignore_shared:
        for k in range(16):
            o += be(8, k * P | 0x02 | (0x20 if k else 0)) + (b"" if k else name("pc.ram")) + b"\x00"
    o += foot + b"\x03" + be(4, 3) + foot
    for sid, n, ln in ((5, "timer", 24), (6, "cpu", 90)):
        o += b"\x04" + be(4, sid) + name(n) + be(4, 0) + be(4, 1) + bytes(ln) + b"\x7e" + be(4, sid)
    j = b'{"page_size": 4096, "devices": [{"name": "timer", "instance_id": 0}, {"name": "cpu"}]}'
    return o + b"\x00\x06" + be(4, len(j)) + j
open(f"{d}/small-shared", "wb").write(save(True, False))
open(f"{d}/small-uuid", "wb").write(save(True, True))
open(f"{d}/small-whole", "wb").write(save(False, False))
EOF
for st in "$guest"/base/state "$guest"/custom/state; do
	[ -s "$st" ] || continue
	cp "$st" "$out/fuzz_vmstate/guest-$(basename "$(dirname "$st")")"
done

for dir in "$out"/*/; do
	echo "make-corpus: $(basename "$dir"): $(find "$dir" -type f | wc -l) seeds"
done
