#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Byte-exact round trips through `cloudlet overlay` -> `cloudlet apply` (and
# `cloudlet verify` ok) on generated images:
#  (a) small images mixing every recipe: zero chunks, copies of base disk and
#      base memory chunks (memory <-> disk both ways), duplicated new chunks,
#      sparse edits (delta), random data (raw), sizes that are not a multiple
#      of the chunk size, new images larger and smaller than the base's;
#  (b) both codecs, non-default --segment-size, --level and --chunk-size, and
#      a second apply over an earlier output;
#  (c) an --order TRACE: same records, traced ones first in the meta and in
#      the pack, round trip intact;
#  (d) sparse images of several GiB (4 GiB disk, 1 GiB memory, a few MiB of
#      data): fast, exact, and the output stays sparse;
#  (e) an empty overlay (new == base);
#  (f) device state and domain XML carried byte-exact.
# Data comes from python3's seeded PRNG, so every run sees the same images.
set -euo pipefail
# shellcheck source=tests/lib/skip.sh
source "$(dirname "$0")/../lib/skip.sh"

C=${CLOUDLET:?CLOUDLET is not set (run through ctest)}
[ -x "$C" ] || { echo "FAIL: $C is not executable"; exit 1; }
command -v python3 >/dev/null || cl_skip_test "python3 is not installed (needed to generate images)"

T=$(mktemp -d "${TMPDIR:-/tmp}/cl-roundtrip.XXXXXX")
T=$(cd "$T" && pwd -P) # cloudlet shows real paths
trap 'rm -rf "$T"' EXIT
trap 'exit 143' TERM INT HUP # run the EXIT trap on ctest's timeout too
export CLOUDLET_HOME=$T/home
unset CLOUDLET_THREADS

CASE=setup
fail() {
	echo "FAIL [$CASE]: $*" >&2
	if [ -s "$T/err" ]; then sed 's/^/  stderr: /' "$T/err" >&2; fi
	exit 1
}
ok() { echo "ok [$CASE]${1:+ $1}"; }

# Runs cloudlet quietly: stdout in $T/out, stderr in $T/err.
cl() { "$C" -q "$@" >"$T/out" 2>"$T/err"; }

cat >"$T/h.py" <<'PYEOF'
import json, os, random, sys


def mp_load(buf):
    """Decodes the msgpack subset overlay-meta uses."""
    def rd(pos):
        t = buf[pos]
        pos += 1
        def be(n):
            return int.from_bytes(buf[pos:pos + n], "big")
        if t <= 0x7f:
            return t, pos
        if 0x80 <= t <= 0x8f or t in (0xde, 0xdf):
            w = 0 if t <= 0x8f else (2 if t == 0xde else 4)
            n = t & 0x0f if not w else be(w)
            pos += w
            v = {}
            for _ in range(n):
                k, pos = rd(pos)
                v[k], pos = rd(pos)
            return v, pos
        if 0x90 <= t <= 0x9f or t in (0xdc, 0xdd):
            w = 0 if t <= 0x9f else (2 if t == 0xdc else 4)
            n = t & 0x0f if not w else be(w)
            pos += w
            v = []
            for _ in range(n):
                x, pos = rd(pos)
                v.append(x)
            return v, pos
        if 0xa0 <= t <= 0xbf or t in (0xd9, 0xda, 0xdb):
            w = {0xd9: 1, 0xda: 2, 0xdb: 4}.get(t, 0)
            n = t & 0x1f if not w else be(w)
            pos += w
            return buf[pos:pos + n].decode("utf-8", "replace"), pos + n
        if t in (0xc4, 0xc5, 0xc6):
            w = {0xc4: 1, 0xc5: 2, 0xc6: 4}[t]
            n = be(w)
            pos += w
            return bytes(buf[pos:pos + n]), pos + n
        if t in (0xcc, 0xcd, 0xce, 0xcf):
            w = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8}[t]
            return be(w), pos + w
        if t == 0xc0:
            return None, pos
        raise ValueError("msgpack type 0x%02x at byte %d" % (t, pos - 1))
    v, end = rd(0)
    if end != len(buf):
        raise ValueError("trailing bytes")
    return v


def load_meta(path):
    """The fields of an overlay-meta (its body, compressed with the codec)."""
    with open(path, "rb") as f:
        outer = mp_load(f.read())
    body = outer["body"]
    if outer["body_codec"] == "xz":
        import lzma
        body = lzma.decompress(body)
    else:
        import subprocess
        body = subprocess.run(["zstd", "-dc"], input=body, capture_output=True,
                              check=True).stdout
    return mp_load(body)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def base_sizes(cs):
    return 48 * cs + 1234 % cs + 1, 32 * cs


def gen_base(d, cs, seed):
    r = random.Random(seed)
    nd, nm = base_sizes(cs)
    disk = bytearray(r.randbytes(nd))
    disk[10 * cs:12 * cs] = bytes(2 * cs)  # zero chunks in the base
    write(d + "/base.disk", disk)
    write(d + "/base.mem", r.randbytes(nm))


def gen_new(d, cs, seed, variant):
    """New images from the base: every recipe, odd sizes. grow: disk larger,
    memory smaller than the base's; shrink: the other way round."""
    r = random.Random(seed)
    bd = open(d + "/base.disk", "rb").read()
    bm = open(d + "/base.mem", "rb").read()
    if variant == "grow":
        dsize, msize = 56 * cs + 2500 % cs + 3, 24 * cs + 700 % cs + 5
    else:
        dsize, msize = 30 * cs + 100 % cs + 7, 40 * cs

    def ch(buf, i):
        return buf[i * cs:(i + 1) * cs]

    R1, R2 = r.randbytes(cs), r.randbytes(cs)

    def resize(b, n):
        out = bytearray(b[:n])
        if n > len(b):
            first = len(out) // cs + 1  # first chunk wholly past the old end
            out += r.randbytes(n - len(b))  # raw, or delta at the seam
            for k in range(first, n // cs):
                kind = k % 4
                if kind == 0:
                    out[k * cs:(k + 1) * cs] = bytes(cs)
                elif kind == 2:
                    out[k * cs:(k + 1) * cs] = ch(bm, k % (len(bm) // cs))
                elif kind == 3:
                    out[k * cs:(k + 1) * cs] = R2
        return out

    def edit(buf, i):  # a few small changes: a delta
        for off in (17, cs // 2, cs - 9):
            buf[i * cs + off:i * cs + off + 8] = r.randbytes(8)

    nd, nm = resize(bd, dsize), resize(bm, msize)
    nd[0:cs] = bytes(cs)            # zero
    nd[1 * cs:2 * cs] = ch(bd, 20)  # base disk chunk, elsewhere
    nd[2 * cs:3 * cs] = ch(bm, 5)   # base memory -> disk
    edit(nd, 3)                     # delta
    nd[4 * cs:5 * cs] = R1          # raw
    nd[5 * cs:6 * cs] = R1          # dedup
    nd[6 * cs:7 * cs] = R2          # dedup (across images)
    edit(nd, 7)
    nd[10 * cs:11 * cs] = r.randbytes(cs)  # was a zero chunk
    nm[0:cs] = ch(bd, 9)            # base disk -> memory
    nm[1 * cs:2 * cs] = ch(bm, 15)  # base memory chunk, elsewhere
    nm[2 * cs:3 * cs] = bytes(cs)   # zero
    edit(nm, 3)
    nm[7 * cs:8 * cs] = R2
    nm[8 * cs:9 * cs] = R1
    for buf in (nd, nm):            # the partial last chunks change too
        if len(buf) % cs:
            buf[-1] ^= 0x5a
    write("%s/%s.disk" % (d, variant), nd)
    write("%s/%s.mem" % (d, variant), nm)


def gen_sparse(d):
    """4 GiB disk, 1 GiB memory, a few MiB of data; the new images are the
    base with moved, new, zeroed and edited blocks, the disk 1536 bytes
    longer."""
    r = random.Random(4242)
    G = 1 << 30
    B = 1 << 16
    for name, size in (("base.disk", 4 * G), ("base.mem", G)):
        with open(d + "/" + name, "wb") as f:
            f.truncate(size)
    fd = os.open(d + "/base.disk", os.O_WRONLY)
    dblocks = sorted(r.randrange(0, 4 * G // B) * B for _ in range(24))
    for off in dblocks:
        os.pwrite(fd, r.randbytes(B), off)
    os.close(fd)
    fm = os.open(d + "/base.mem", os.O_WRONLY)
    mblocks = sorted(r.randrange(0, G // B) * B for _ in range(12))
    for off in mblocks:
        os.pwrite(fm, r.randbytes(B), off)
    os.close(fm)
    # The new images: sparse copies of the base, then changes.
    for src, dst in (("base.disk", "new.disk"), ("base.mem", "new.mem")):
        fi = os.open(d + "/" + src, os.O_RDONLY)
        size = os.fstat(fi).st_size
        with open(d + "/" + dst, "wb") as f:
            f.truncate(size)
        fo = os.open(d + "/" + dst, os.O_WRONLY)
        for s, e in extents(fi, size):
            os.pwrite(fo, os.pread(fi, e - s, s), s)
        os.close(fi)
        os.close(fo)
    fb = os.open(d + "/base.mem", os.O_RDONLY)
    memblock = os.pread(fb, B, mblocks[3])
    os.close(fb)
    fb = os.open(d + "/base.disk", os.O_RDONLY)
    diskblock = os.pread(fb, B, dblocks[5])
    os.close(fb)
    fd = os.open(d + "/new.disk", os.O_WRONLY)
    for _ in range(24):  # new data
        os.pwrite(fd, r.randbytes(B), r.randrange(0, 4 * G // B) * B)
    os.pwrite(fd, memblock, 3 * G + 7 * B)   # base memory -> disk, far away
    os.pwrite(fd, bytes(B), dblocks[1])        # zeroed base data
    os.pwrite(fd, r.randbytes(16), dblocks[2] + 100)  # small edit
    os.ftruncate(fd, 4 * G + 1536)
    os.pwrite(fd, r.randbytes(1536), 4 * G)    # partial last chunk
    os.close(fd)
    fm = os.open(d + "/new.mem", os.O_WRONLY)
    for _ in range(8):
        os.pwrite(fm, r.randbytes(B), r.randrange(0, G // B) * B)
    os.pwrite(fm, diskblock, G - 5 * B)        # base disk -> memory
    os.close(fm)


def extents(fd, size):
    out, pos = [], 0
    while pos < size:
        try:
            s = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:
            break
        e = min(os.lseek(fd, s, os.SEEK_HOLE), size)
        out.append((s, e))
        pos = e
    return out


def scmp(a, b):
    """cmp for sparse files: compares every byte of either file's data
    extents; what is a hole in both is zero in both."""
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    sa, sb = os.fstat(fa).st_size, os.fstat(fb).st_size
    if sa != sb:
        sys.exit("%s: %d bytes, %s: %d bytes" % (a, sa, b, sb))
    merged = []
    for s, e in sorted(extents(fa, sa) + extents(fb, sb)):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    for s, e in merged:
        while s < e:
            n = min(e - s, 1 << 22)
            x, y = os.pread(fa, n, s), os.pread(fb, n, s)
            if x != y:
                i = next(i for i in range(n) if x[i] != y[i])
                sys.exit("%s %s differ: byte %d" % (a, b, s + i + 1))
            s += n


def check(path, expr, other=None):
    """Evaluates expr with j = the JSON in path (and k = the one in other);
    prints it if false."""
    j = json.load(open(path))
    k = json.load(open(other)) if other else None
    if not eval(expr, {"j": j, "k": k}):
        sys.exit("expected %s in %s" % (expr, json.dumps(j)))


def recipes_cover(path, every_recipe):
    """The info JSON shows every recipe (and copies both ways)."""
    j = json.load(open(path))["images"]
    d, m = j["disk"]["chunks"], j["memory"]["chunks"]
    need = {"disk base-memory": d["base-memory"], "memory base-disk": m["base-disk"],
            "disk base-disk": d["base-disk"], "memory base-memory": m["base-memory"]}
    for r in ("zero", "dedup", "delta", "raw"):
        need[r] = d[r] + m[r]
    if not every_recipe:
        need = {k: v for k, v in need.items() if k in ("raw", "delta", "zero")}
    missing = [k for k, v in need.items() if not v]
    if missing:
        sys.exit("no %s records: %s" % (", ".join(missing), json.dumps(j)))


def check_trace(plain, traced, trace, reported):
    """The traced meta has the same records as the plain one, the TRACE's
    changed chunks first in TRACE order (repeats dropped), and their
    payloads before every other payload in the pack."""
    p, t = load_meta(plain), load_meta(traced)
    key = lambda c: (c[0], c[1])
    if sorted(map(key, p["chunks"])) != sorted(map(key, t["chunks"])):
        sys.exit("traced meta lists other chunks than the plain one")
    changed = set(map(key, p["chunks"]))
    want, seen = [], set()
    for line in open(trace):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        img, idx = line.split()
        k = (0 if img == "disk" else 1, int(idx))
        if k in changed and k not in seen:
            want.append(k)
        seen.add(k)
    got = [key(c) for c in t["chunks"][:len(want)]]
    if got != want:
        sys.exit("traced records come first: want %s, got %s" % (want, got))
    if int(reported) != len(want):
        sys.exit("overlay reported %s traced chunks, expected %d" % (reported, len(want)))
    payload = lambda c: (c[4], c[5])  # segment, offset
    first = [payload(c) for c in t["chunks"][:len(want)] if c[2] in (4, 5)]
    rest = [payload(c) for c in t["chunks"][len(want):] if c[2] in (4, 5)]
    if not first or not rest or max(first) >= min(rest):
        sys.exit("traced payloads are not first in the pack: %s / %s" % (first, rest))


cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "gen-base":
    gen_base(args[0], int(args[1]), int(args[2]))
elif cmd == "gen-new":
    gen_new(args[0], int(args[1]), int(args[2]), args[3])
elif cmd == "gen-sparse":
    gen_sparse(args[0])
elif cmd == "scmp":
    scmp(args[0], args[1])
elif cmd == "check":
    check(*args)
elif cmd == "recipes":
    recipes_cover(args[0], args[1] == "all")
elif cmd == "trace":
    check_trace(*args)
else:
    sys.exit("h.py: unknown command " + cmd)
PYEOF
py() { python3 "$T/h.py" "$@"; }

# Files in DIR other than the expected ones (temp files left behind).
only_files() { # DIR NAME...
	local dir=$1 f name extra=
	shift
	for f in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		name=${f##*/}
		case " $* " in
		*" $name "*) ;;
		*) extra="$extra $name" ;;
		esac
	done
	[ -z "$extra" ] || fail "unexpected files in $dir:$extra"
}

# overlay IMAGE OV NEWDISK NEWMEM [overlay options], then verify and apply
# into OV.out and compare; meta, stderr and info JSON stay for checks.
roundtrip() {
	local img=$1 ov=$2 disk=$3 mem=$4
	shift 4
	cl overlay "$img" --disk "$disk" --memory "$mem" -o "$ov" "$@" || fail "overlay $*"
	cp "$T/out" "$ov.stats"
	only_files "$ov" overlay-meta overlay-blob
	cl info --json "$ov" || fail "info --json"
	cp "$T/out" "$ov.json"
	cl verify "$img" "$ov/overlay-meta" || fail "verify"
	grep -q ': ok' "$T/out" || fail "verify did not say ok: $(cat "$T/out")"
	cl apply "$img" "$ov" -o "$ov.out" || fail "apply"
	cmp "$disk" "$ov.out/disk.img" || fail "disk.img differs from $disk"
	cmp "$mem" "$ov.out/memory.img" || fail "memory.img differs from $mem"
}

# ---- (a) + (b): small images, every recipe, codecs, segment and chunk sizes
t0=$SECONDS
for cs in 4096 512 65536; do
	CASE="base cs=$cs"
	d=$T/cs$cs
	mkdir -p "$d"
	py gen-base "$d" $cs $cs || fail "generating the base"
	py gen-new "$d" $cs $((cs + 1)) grow || fail "generating grow images"
	py gen-new "$d" $cs $((cs + 2)) shrink || fail "generating shrink images"
	export CLOUDLET_HOME=$T/home$cs
	if [ $cs = 4096 ]; then
		cl base "$d/base.disk" --memory "$d/base.mem" || fail "base"
	else
		cl base "$d/base.disk" --memory "$d/base.mem" --chunk-size $cs || fail "base"
	fi
	cl list-base || fail "list-base"
	grep -qF "$d/base.disk" "$T/out" || fail "list-base does not list $d/base.disk"

	for variant in grow shrink; do
		n=0
		# Segments of 2 and 3 chunks' worth: several per overlay.
		for opts in "" "--codec zstd" "--codec zstd --level 3 --segment-size $((2 * cs))" \
			"--codec xz --level 1 --segment-size $((3 * cs))"; do
			CASE="cs=$cs $variant ${opts:-defaults}"
			ov=$d/ov-$variant-$n
			# shellcheck disable=SC2086
			roundtrip "$d/base.disk" "$ov" "$d/$variant.disk" "$d/$variant.mem" $opts
			py check "$ov.json" "j['chunk_size'] == $cs and j['version'] == 1" || fail "info"
			case $opts in
			*zstd*) py check "$ov.json" "j['codec'] == 'zstd'" || fail "codec" ;;
			*) py check "$ov.json" "j['codec'] == 'xz'" || fail "codec" ;;
			esac
			case $opts in
			*segment-size*) py check "$ov.json" "j['segments'] > 1" || fail "segments" ;;
			esac
			# Every recipe shows up (512-byte chunks: deltas and copies too).
			py recipes "$ov.json" all || fail "recipes"
			only_files "$ov.out" disk.img memory.img
			n=$((n + 1))
			ok
		done
	done

	# A second apply over an earlier output replaces it cleanly.
	CASE="cs=$cs apply over an earlier output"
	cl apply "$d/base.disk" "$d/ov-shrink-1" -o "$d/ov-grow-0.out" || fail "apply"
	cmp "$d/shrink.disk" "$d/ov-grow-0.out/disk.img" || fail "disk.img differs"
	cmp "$d/shrink.mem" "$d/ov-grow-0.out/memory.img" || fail "memory.img differs"
	only_files "$d/ov-grow-0.out" disk.img memory.img
	ok
done
export CLOUDLET_HOME=$T/home4096
d=$T/cs4096
echo "small images: $((SECONDS - t0)) s"

# ---- (c) TRACE order
CASE="trace"
cat >"$T/trace" <<'EOF'
# first touches of the customized VM
memory 3
disk 7

disk 4
disk 7
disk 30
memory 0
disk 11
disk 0
memory 8
disk 5
EOF
# disk 30 and 11 are unchanged; the second `disk 7` is a repeat.
roundtrip "$d/base.disk" "$d/ov-trace" "$d/grow.disk" "$d/grow.mem" --order "$T/trace" \
	--segment-size 16K
traced=$(sed -n 's/^ *traced *\([0-9]*\) chunks first.*/\1/p' "$d/ov-trace.stats")
[ -n "$traced" ] || fail "overlay did not report traced chunks: $(cat "$d/ov-trace.stats")"
# Same sizes and recipe totals as without the TRACE (only which copy of a
# duplicate is the raw one may move between the images).
py check "$d/ov-trace.json" "j['segments'] > 1 and all(j['images'][i]['size'] == \
k['images'][i]['size'] for i in j['images']) and [sum(j['images'][i]['chunks'][r] for i in j['images']) \
for r in j['images']['disk']['chunks']] == [sum(k['images'][i]['chunks'][r] for i in k['images']) \
for r in k['images']['disk']['chunks']]" "$d/ov-grow-2.json" ||
	fail "info --json of the traced overlay does not match the plain one's"
py trace "$d/ov-grow-2/overlay-meta" "$d/ov-trace/overlay-meta" "$T/trace" "$traced" ||
	fail "order in the meta"
ok "($traced chunks first)"

# ---- (e) empty overlay: new == base
CASE="empty overlay"
cp "$d/base.disk" "$T/same.disk"
cp "$d/base.mem" "$T/same.mem"
roundtrip "$d/base.disk" "$T/ov-empty" "$T/same.disk" "$T/same.mem"
py check "$T/ov-empty.json" "j['segments'] == 0 and j['pack_size'] == 0 and \
sum(n for i in j['images'].values() for n in i['chunks'].values()) == 0" ||
	fail "not empty"
ok

# ---- (f) device state and domain XML
CASE="state and domain XML"
python3 -c '
import random, sys
r = random.Random(99)
open(sys.argv[1], "wb").write(b"QEVM\0\0\0\3" + bytes(5000) + r.randbytes(200000) + b"\0\n\r")
open(sys.argv[2], "wb").write("<domain type=\"kvm\">\r\n  <name>caf\u00e9-\u2603</name>\n  <memory unit=\"KiB\">524288</memory>\n</domain>".encode())
' "$T/state" "$T/domain.xml"
roundtrip "$d/base.disk" "$d/ov-state" "$d/grow.disk" "$d/grow.mem" --state "$T/state" \
	--domain "$T/domain.xml" --segment-size 16K --codec zstd
cmp "$T/state" "$d/ov-state.out/state" || fail "state differs"
cmp "$T/domain.xml" "$d/ov-state.out/domain.xml" || fail "domain.xml differs"
only_files "$d/ov-state.out" disk.img memory.img state domain.xml
py check "$d/ov-state.json" "j['state_size'] == $(stat -c %s "$T/state") and \
j['domain_xml_size'] == $(stat -c %s "$T/domain.xml")" || fail "info sizes"
# Domain XML alone; an empty state file.
: >"$T/empty-state"
roundtrip "$d/base.disk" "$d/ov-dom" "$d/grow.disk" "$d/grow.mem" --domain "$T/domain.xml"
cmp "$T/domain.xml" "$d/ov-dom.out/domain.xml" || fail "domain.xml alone differs"
only_files "$d/ov-dom.out" disk.img memory.img domain.xml
roundtrip "$d/base.disk" "$d/ov-st0" "$d/grow.disk" "$d/grow.mem" --state "$T/empty-state"
cmp "$T/empty-state" "$d/ov-st0.out/state" || fail "empty state differs"
only_files "$d/ov-st0.out" disk.img memory.img state
ok

# ---- (d) sparse images of several GiB
CASE="sparse 4 GiB + 1 GiB"
t0=$SECONDS
s=$T/sparse
mkdir -p "$s"
export CLOUDLET_HOME=$T/home-sparse
py gen-sparse "$s" || fail "generating sparse images"
cl base "$s/base.disk" --memory "$s/base.mem" || fail "base"
cl overlay "$s/base.disk" --disk "$s/new.disk" --memory "$s/new.mem" -o "$s/ov" --codec zstd ||
	fail "overlay"
cl info --json "$s/ov" || fail "info"
cp "$T/out" "$s/ov.json"
py check "$s/ov.json" "j['images']['disk']['size'] == 4 * 2**30 + 1536 and \
j['images']['memory']['size'] == 2**30" || fail "sizes"
py recipes "$s/ov.json" some || fail "recipes"
cl verify "$s/base.disk" "$s/ov" || fail "verify"
cl apply "$s/base.disk" "$s/ov" -o "$s/out" || fail "apply"
# cmp would read 5 GiB of holes (~30 s); compare every data extent instead.
py scmp "$s/new.disk" "$s/out/disk.img" || fail "disk.img differs"
py scmp "$s/new.mem" "$s/out/memory.img" || fail "memory.img differs"
for f in disk.img memory.img; do
	used=$(du -k "$s/out/$f" | cut -f1)
	[ "$used" -lt 32768 ] || fail "$f is not sparse: $used KiB used"
done
only_files "$s/out" disk.img memory.img
# Seconds on any machine unless holes get read or written as data.
[ $((SECONDS - t0)) -lt 60 ] || fail "took $((SECONDS - t0)) s"
ok "($(du -k "$s/out/disk.img" | cut -f1) KiB + $(du -k "$s/out/memory.img" | cut -f1) KiB used, $((SECONDS - t0)) s)"

echo "roundtrip: all cases passed in $SECONDS s"
