#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# Faulty input must make cloudlet fail cleanly: exactly one `cloudlet: <file>:
# <cause>` line on stderr (plus an optional `hint:` line) naming the file,
# exit status 1 (2 for bad usage), no crash, and an earlier good output left
# intact with no temp files beside it. Faults: truncated, corrupted and
# future-version overlay-meta (targeted bytes and a sweep over every byte),
# truncated, missing and corrupted packs (verify names the segment), the
# wrong base, an unregistered base, a base changed after registration,
# unreadable files (directories, missing paths), a bad TRACE, a full disk
# (an 8 MiB tmpfs) and bad usage.
#
# Every case runs; each failure is printed as `FAIL [case]: ...` and the test
# fails at the end if any did.
set -euo pipefail
# shellcheck source=tests/lib/skip.sh
source "$(dirname "$0")/../lib/skip.sh"

C=${CLOUDLET:?CLOUDLET is not set (run through ctest)}
[ -x "$C" ] || { echo "FAIL: $C is not executable"; exit 1; }
command -v python3 >/dev/null || cl_skip_test "python3 is not installed (needed to generate images)"

T=$(mktemp -d "${TMPDIR:-/tmp}/cl-bad-input.XXXXXX")
T=$(cd "$T" && pwd -P) # error lines name files by their real path
cleanup() {
	if mountpoint -q "$T/mnt" 2>/dev/null; then umount "$T/mnt" || umount -l "$T/mnt" || true; fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP # unmount and clean up on ctest's timeout too
export CLOUDLET_HOME=$T/home
unset CLOUDLET_THREADS

CASE=setup
NFAIL=0
CASE_BAD=0
die() { # setup failures: nothing after them can run
	echo "FAIL [$CASE]: $*" >&2
	if [ -s "$T/stderr" ]; then sed 's/^/  stderr: /' "$T/stderr" >&2; fi
	exit 1
}
bad() {
	echo "FAIL [$CASE]: $*" >&2
	if [ -s "$T/stderr" ]; then sed 's/^/  stderr: /' "$T/stderr" >&2; fi
	NFAIL=$((NFAIL + 1))
	CASE_BAD=1
}
# Ends a case: "ok" unless it had failures.
ok() {
	[ "$CASE_BAD" = 1 ] || echo "ok [$CASE]${1:+ $1}"
	CASE_BAD=0
}

# Runs cloudlet; stdout, stderr and exit status in $T/stdout, $T/stderr, RC.
run() {
	RC=0
	"$C" -q "$@" >"$T/stdout" 2>"$T/stderr" || RC=$?
}
must() { run "$@" || true; [ "$RC" = 0 ] || die "cloudlet $* failed (exit $RC)"; }

# The last run failed cleanly: exit 1, exactly one `cloudlet:` line and
# nothing else but a `hint:` line, and the line contains every WANT.
expect_error() { # WANT...
	local want n other
	if [ "$RC" = 0 ]; then
		bad "succeeded; expected an error"
		return 0
	fi
	if [ "$RC" -ge 128 ]; then
		bad "crashed (exit $RC)"
		return 0
	fi
	[ "$RC" = 1 ] || bad "exit status $RC, expected 1"
	n=$(grep -c '^cloudlet: ' "$T/stderr" || true)
	other=$(grep -vc -e '^cloudlet: ' -e '^hint: ' "$T/stderr" || true)
	if [ "$n" != 1 ] || [ "$other" != 0 ]; then
		bad "expected exactly one 'cloudlet:' error line (and maybe a hint), got $n error and $other other lines"
		return 0
	fi
	for want; do
		grep '^cloudlet: ' "$T/stderr" | grep -qF -- "$want" ||
			bad "the error line does not mention '$want'"
	done
	return 0
}

# Like expect_error for `verify`, which lists every fault it finds: exit 1,
# only `cloudlet:` lines, and each WANT on one of them.
expect_verify_error() { # WANT...
	local want
	if [ "$RC" = 0 ]; then
		bad "verify succeeded; expected it to fail"
		return 0
	fi
	[ "$RC" -lt 128 ] || { bad "verify crashed (exit $RC)"; return 0; }
	[ "$RC" = 1 ] || bad "verify: exit status $RC, expected 1"
	! grep -qv -e '^cloudlet: ' -e '^hint: ' "$T/stderr" || bad "verify printed lines other than 'cloudlet:' ones"
	for want; do
		grep -qF -- "$want" "$T/stderr" || bad "verify does not mention '$want'"
	done
	return 0
}

# DIR holds exactly the files of GOOD, byte for byte (no temp files).
intact() { # DIR GOOD
	local f name
	for f in "$2"/*; do
		cmp -s "$f" "$1/${f##*/}" || bad "${1#"$T"/}/${f##*/} is no longer the earlier good output"
	done
	for f in "$1"/* "$1"/.[!.]* "$1"/..?*; do
		[ -e "$f" ] || [ -L "$f" ] || continue
		name=${f##*/}
		[ -e "$2/$name" ] || bad "left behind in ${1#"$T"/}: $name"
	done
	return 0
}

cat >"$T/h.py" <<'PYEOF'
import os, random, sys


def mp_spans(buf):
    """Decodes the msgpack subset overlay-meta uses; returns the value and a
    dict path -> (start, end) of every value (("key", k) for map keys)."""
    spans = {}

    def rd(pos, path):
        start = t = buf[pos]
        start = pos
        pos += 1
        def be(n):
            return int.from_bytes(buf[pos:pos + n], "big")
        if t <= 0x7f:
            v = t
        elif 0x80 <= t <= 0x8f or t in (0xde, 0xdf):
            w = 0 if t <= 0x8f else (2 if t == 0xde else 4)
            n = t & 0x0f if not w else be(w)
            pos += w
            v = {}
            for _ in range(n):
                ks = pos
                k, pos = rd(pos, path + ("?",))
                spans[path + (("key", k),)] = (ks, pos)
                v[k], pos = rd(pos, path + (k,))
        elif 0x90 <= t <= 0x9f or t in (0xdc, 0xdd):
            w = 0 if t <= 0x9f else (2 if t == 0xdc else 4)
            n = t & 0x0f if not w else be(w)
            pos += w
            v = []
            for i in range(n):
                x, pos = rd(pos, path + (i,))
                v.append(x)
        elif 0xa0 <= t <= 0xbf or t in (0xd9, 0xda, 0xdb):
            w = {0xd9: 1, 0xda: 2, 0xdb: 4}.get(t, 0)
            n = t & 0x1f if not w else be(w)
            pos += w
            v = buf[pos:pos + n].decode("utf-8", "replace")
            pos += n
        elif t in (0xc4, 0xc5, 0xc6):
            w = {0xc4: 1, 0xc5: 2, 0xc6: 4}[t]
            n = be(w)
            pos += w
            v = bytes(buf[pos:pos + n])
            pos += n
        elif t in (0xcc, 0xcd, 0xce, 0xcf):
            w = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8}[t]
            v = be(w)
            pos += w
        elif t == 0xc0:
            v = None
        else:
            raise ValueError("msgpack type 0x%02x at byte %d" % (t, start))
        spans[path] = (start, pos)
        return v, pos

    v, end = rd(0, ())
    if end != len(buf):
        raise ValueError("trailing bytes")
    return v, spans


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def gen(d):
    r = random.Random(31337)
    cs = 4096
    ch = lambda b, i: b[i * cs:(i + 1) * cs]
    bd, bm = bytearray(r.randbytes(40 * cs + 300)), bytearray(r.randbytes(24 * cs))
    write(d + "/a.disk", bd)
    write(d + "/a.mem", bm)
    write(d + "/b.disk", r.randbytes(20 * cs))
    write(d + "/b.mem", r.randbytes(8 * cs))
    write(d + "/stranger.disk", r.randbytes(8 * cs))
    nd, nm = bytearray(bd), bytearray(bm)
    nd[0:cs] = bytes(cs)
    nd[cs:2 * cs] = ch(bm, 3)
    nm[0:cs] = ch(bd, 7)
    for i in range(2, 12):              # raw: several segments' worth
        nd[i * cs:(i + 1) * cs] = r.randbytes(cs)
    nd[12 * cs + 100:12 * cs + 110] = r.randbytes(10)  # delta
    nm[5 * cs:6 * cs] = ch(nd, 4)       # dedup
    nm[6 * cs + 9:6 * cs + 19] = r.randbytes(10)
    nd += r.randbytes(5000)             # larger, partial last chunk
    write(d + "/new.disk", nd)
    write(d + "/new.mem", nm)
    write(d + "/state", b"QEVM\0\0\0\3" + r.randbytes(6000))
    write(d + "/domain.xml", b"<domain type='kvm'><name>bad-input</name></domain>\n")
    # Big and incompressible, for the full disk: 12 MiB.
    write(d + "/big.disk", r.randbytes(12 << 20))
    # 32 MiB sparse, a few distinct bytes per chunk: a small pack and a big
    # meta (distinct chunk hashes do not compress).
    with open(d + "/dotted.disk", "wb") as f:
        for off in range(0, 32 << 20, cs):
            f.seek(off)
            f.write(off.to_bytes(8, "little"))


def unpack_body(outer):
    """The meta's body map: its bytes are compressed with the overlay's codec."""
    body = outer["body"]
    if outer["body_codec"] == "xz":
        import lzma
        body = lzma.decompress(body)
    else:
        import subprocess
        body = subprocess.run(["zstd", "-dc"], input=body, capture_output=True,
                              check=True).stdout
    return mp_spans(body)[0]


def meta_spans(meta):
    """The meta's fields (the body's) and the spans of the outer map."""
    outer, spans = mp_spans(open(meta, "rb").read())
    return unpack_body(outer), spans


def span(meta, what):
    """Byte offset to corrupt for a named field of the meta. The body's
    fields are compressed, so for them any byte of the body stands in: the
    body's checksum must refuse every one."""
    m, s = meta_spans(meta)
    if what == "map-header":
        return 0
    if what == "format":
        return s[("format",)][0] + 3
    if what == "version":
        return s[("version",)][1] - 1
    if what == "body-size":
        return s[("body_size",)][1] - 1
    if what == "body-sha":
        return s[("body_sha256",)][1] - 3
    start, end = s[("body",)]
    body_len = len(open(meta, "rb").read()[start:end])
    fields = ["base-id", "chunk-size", "memory-size", "disk-size", "pack-size", "state-key",
              "domain-key", "segment-sha", "segment-clen", "chunk-sha", "raw-sha",
              "chunk-index", "chunk-recipe", "payload-offset"]
    if what not in fields:
        raise SystemExit("h.py: unknown field " + what)
    return start + 8 + (fields.index(what) * 7919) % (body_len - 16)


def flip(path, off, xor=0xFF):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ xor]))


cmd, args = sys.argv[1], sys.argv[2:]
if cmd == "gen":
    gen(args[0])
elif cmd == "span":
    print(span(args[0], args[1]))
elif cmd == "flip":
    flip(args[0], int(args[1]), int(args[2], 0) if len(args) > 2 else 0xFF)
elif cmd == "segment":  # offset and length of segment N in the pack
    m, _ = meta_spans(args[0])
    sg = m["segments"][int(args[1])]
    print(sg[0], sg[1])
elif cmd == "nsegments":
    print(len(meta_spans(args[0])[0]["segments"]))
elif cmd == "version2":
    b = bytearray(open(args[0], "rb").read())
    i = b.index(bytes.fromhex("a776657273696f6e01"))
    b[i + 8] = 2
    write(args[0], b)
elif cmd == "sweep":  # DIR/NNNNN/overlay-meta: each byte of META flipped
    meta, pack, out = args
    data = open(meta, "rb").read()
    _, spans = mp_spans(data)
    # Inside a SHA-256 only its first, a middle and its last byte.
    skip = set()
    for s, e in spans.values():
        if e - s == 34 and data[s] == 0xC4 and data[s + 1] == 32:
            skip.update(set(range(s + 2, e)) - {s + 2, s + 17, e - 1})
    for i in range(len(data)):
        if i in skip:
            continue
        d = "%s/%05d" % (out, i)
        os.makedirs(d)
        b = bytearray(data)
        b[i] ^= 0xFF
        write(d + "/overlay-meta", b)
        os.link(pack, d + "/overlay-blob")
else:
    raise SystemExit("h.py: unknown command " + cmd)
PYEOF
py() { python3 "$T/h.py" "$@"; }

# ---- setup: bases A and B, a good overlay of A and a good output --------
g=$T/img
mkdir -p "$g" "$T/a-directory"
py gen "$g" || die "generating images"
must base "$g/a.disk" --memory "$g/a.mem"
must base "$g/b.disk" --memory "$g/b.mem"
ov=$T/ov # state, domain XML, several segments
must overlay "$g/a.disk" --disk "$g/new.disk" --memory "$g/new.mem" --state "$g/state" \
	--domain "$g/domain.xml" --segment-size 8K -o "$ov"
nseg=$(py nsegments "$ov/overlay-meta")
[ "$nseg" -ge 3 ] || die "the overlay has $nseg segments; the cases need 3 or more"
must overlay "$g/b.disk" --disk "$g/b.disk" --memory "$g/new.mem" -o "$T/ov-b"
out=$T/out
must apply "$g/a.disk" "$ov" -o "$out"
for f in disk.img:new.disk memory.img:new.mem state:state domain.xml:domain.xml; do
	cmp -s "$g/${f#*:}" "$out/${f%:*}" || die "the good apply is not exact: ${f%:*}"
done
good=$T/good
cp -a "$out" "$good"
goodov=$T/good-ov
cp -a "$ov" "$goodov"

# A corrupted copy of the overlay (hard to break the original by mistake).
tv=$T/tv
fresh() { rm -rf "$tv"; cp -a "$ov" "$tv"; }

# apply and verify of $tv against base A must fail naming WANT...; the good
# output stays.
apply_fails() {
	run apply "$g/a.disk" "$tv" -o "$out"
	expect_error "$@"
	intact "$out" "$good"
	# A buggy success replaces the good output: put it back for the next case.
	rm -rf "$out"
	cp -a "$good" "$out"
}

# ---- truncated overlay-meta ----------------------------------------------
msize=$(stat -c %s "$ov/overlay-meta")
for len in 0 1 16 $((msize / 2)) $((msize - 1)); do
	CASE="meta truncated to $len of $msize bytes"
	fresh
	head -c "$len" "$ov/overlay-meta" >"$tv/overlay-meta"
	apply_fails "$tv/overlay-meta"
	run verify "$g/a.disk" "$tv"
	expect_error "$tv/overlay-meta"
	run info "$tv"
	expect_error "$tv/overlay-meta"
	ok
done
CASE="meta with a trailing byte"
fresh
printf '\0' >>"$tv/overlay-meta"
apply_fails "$tv/overlay-meta"
ok

# ---- a corrupted byte in the meta: targeted fields -------------------------
# Each one must be refused by apply (a corrupted size or key must not slip
# through as a successful apply of something else).
for field in map-header format version body-size body-sha base-id chunk-size memory-size \
	disk-size pack-size state-key domain-key segment-sha segment-clen chunk-sha raw-sha \
	chunk-index chunk-recipe payload-offset; do
	CASE="meta byte corrupted: $field"
	fresh
	off=$(py span "$ov/overlay-meta" $field) || die "no $field in the meta"
	py flip "$tv/overlay-meta" "$off"
	apply_fails "$tv/"
	ok "(byte $off)"
done

CASE="meta format version 2"
fresh
py version2 "$tv/overlay-meta"
apply_fails "$tv/overlay-meta" "version 2"
run verify "$g/a.disk" "$tv"
expect_error "$tv/overlay-meta" "version 2"
run info --json "$tv"
expect_error "$tv/overlay-meta" "version 2"
ok

# ---- a corrupted byte in the meta: every byte ------------------------------
# A flipped byte either fails cleanly (one line naming a file, exit 1,
# nothing left in the output directory) or is harmless (the output is
# exactly the good one). Failures are summarised per kind.
CASE="meta sweep"
t0=$SECONDS
sw=$T/sweep
mkdir -p "$sw"
py sweep "$ov/overlay-meta" "$ov/overlay-blob" "$sw" || die "making the sweep"
declare -A kinds=()
declare -A example=()
note() { # KIND OFFSET DETAIL
	kinds[$1]="${kinds[$1]:-} $2"
	[ -n "${example[$1]:-}" ] || example[$1]="byte $2: $3"
}
# Few forks per flip: the loop runs some 600 times.
shopt -s nullglob extglob
for d in "$sw"/*; do
	i=$((10#${d##*/}))
	o=$T/sw-out/$i
	run apply "$g/a.disk" "$d" -o "$o"
	left=("$o"/* "$o"/.[!.]* "$o"/..?*)
	if [ "$RC" = 0 ]; then
		same=1
		for f in "$good"/*; do cmp -s "$f" "$o/${f##*/}" || same=0; done
		[ ${#left[@]} = 4 ] || same=0
		[ $same = 1 ] || note "apply succeeded with a wrong output" $i "${left[*]##*/}"
		continue
	fi
	mapfile -t lines <"$T/stderr"
	nerr=0 nother=0 line=
	for l in "${lines[@]}"; do
		case $l in
		"cloudlet: "*)
			nerr=$((nerr + 1))
			line=${line:-$l}
			;;
		"hint: "*) ;;
		*) nother=$((nother + 1)) ;;
		esac
	done
	line=${line//[![:print:]]/?}
	if [ "$RC" -ge 128 ]; then
		note "crash" $i "exit $RC"
	elif [ "$RC" != 1 ]; then
		note "exit status other than 1" $i "exit $RC"
	elif [ $nerr != 1 ] || [ $nother != 0 ]; then
		note "not exactly one error line" $i "${lines[*]:0:3}"
	elif [[ $line != "cloudlet: $T/"* ]]; then
		note "error line names no file: '${line//+([0-9])/N}'" $i "$line"
	fi
	[ ${#left[@]} = 0 ] || note "files left in the output directory" $i "${left[*]##*/}"
done
shopt -u nullglob extglob
nflip=$(find "$sw" -mindepth 1 -maxdepth 1 | wc -l)
for k in "${!kinds[@]}"; do
	bad "$k: $(echo "${kinds[$k]}" | wc -w) of $nflip flipped bytes, e.g. ${example[$k]}; bytes:$(echo "${kinds[$k]}" | cut -c1-120)"
done
ok "($nflip of $msize bytes flipped, $((SECONDS - t0)) s)"

# ---- the pack: truncated, missing, longer, corrupted ------------------------
psize=$(stat -c %s "$ov/overlay-blob")
for len in 0 1 $((psize / 2)) $((psize - 1)); do
	CASE="pack truncated to $len of $psize bytes"
	fresh
	head -c "$len" "$ov/overlay-blob" >"$tv/overlay-blob"
	apply_fails "$tv/overlay-blob"
	run verify "$g/a.disk" "$tv"
	expect_verify_error "$tv/overlay-blob"
	ok
done
CASE="pack with a trailing byte"
fresh
printf 'x' >>"$tv/overlay-blob"
apply_fails "$tv/overlay-blob"
ok
CASE="pack missing"
fresh
rm "$tv/overlay-blob"
apply_fails "$tv/overlay-blob" "No such file"
run verify "$g/a.disk" "$tv"
expect_error "$tv/overlay-blob" "No such file"
ok
CASE="pack is a directory"
fresh
rm "$tv/overlay-blob"
mkdir "$tv/overlay-blob"
apply_fails "$tv/overlay-blob"
ok

for s in 0 1 $((nseg - 1)); do
	CASE="pack byte flipped in segment $s"
	fresh
	read -r soff slen <<<"$(py segment "$ov/overlay-meta" $s)"
	py flip "$tv/overlay-blob" $((soff + slen / 2))
	apply_fails "$tv/overlay-blob" "segment $s"
	run verify "$g/a.disk" "$tv"
	expect_verify_error "segment $s"
	grep -F "segment $s" "$T/stderr" | grep -qF "$tv/overlay-blob" ||
		bad "verify's line about segment $s does not name $tv/overlay-blob"
	[ "$(grep -c 'segment [0-9]' "$T/stderr")" = 1 ] || bad "verify reports other segments than $s"
	ok
done

# ---- bases -----------------------------------------------------------------
CASE="wrong base"
run apply "$g/b.disk" "$ov" -o "$out"
expect_error "$ov/overlay-meta" "base"
intact "$out" "$good"
run verify "$g/b.disk" "$ov"
expect_error "$ov/overlay-meta" "base"
run apply "$g/a.disk" "$T/ov-b" -o "$out"
expect_error "$T/ov-b/overlay-meta" "base"
intact "$out" "$good"
ok

CASE="unregistered base"
run apply "$g/stranger.disk" "$ov" -o "$out"
expect_error "$g/stranger.disk" "not a registered base"
grep -q 'hint: register it with `cloudlet base' "$T/stderr" || bad "no hint to register the base"
intact "$out" "$good"
run verify "$g/stranger.disk" "$ov"
expect_error "$g/stranger.disk"
run overlay "$g/stranger.disk" --disk "$g/new.disk" --memory "$g/new.mem" -o "$ov"
expect_error "$g/stranger.disk"
intact "$ov" "$goodov"
run apply "$T/nonexistent.disk" "$ov" -o "$out"
expect_error "$T/nonexistent.disk"
intact "$out" "$good"
ok

# A changed base disk (same size), then a changed base memory (longer).
for which in disk mem; do
	CASE="base $which changed after registration"
	cp -p "$g/a.$which" "$T/a.$which.orig"
	if [ $which = disk ]; then py flip "$g/a.disk" 5000; else head -c 4096 /dev/zero >>"$g/a.mem"; fi
	run apply "$g/a.disk" "$ov" -o "$out"
	expect_error "$g/a.$which" "changed"
	intact "$out" "$good"
	run verify "$g/a.disk" "$ov"
	expect_error "$g/a.$which" "changed"
	run overlay "$g/a.disk" --disk "$g/new.disk" --memory "$g/new.mem" -o "$ov"
	expect_error "$g/a.$which" "changed"
	intact "$ov" "$goodov"
	# Back as it was and registered again: the overlay applies again.
	cp -p "$T/a.$which.orig" "$g/a.$which"
	must base "$g/a.disk" --memory "$g/a.mem"
	must apply "$g/a.disk" "$ov" -o "$T/again"
	cmp -s "$g/new.disk" "$T/again/disk.img" || bad "apply after registering again is not exact"
	rm -rf "$T/again"
	ok
done

# ---- unreadable files --------------------------------------------------------
CASE="overlay path missing"
run apply "$g/a.disk" "$T/no-such-overlay" -o "$out"
expect_error "$T/no-such-overlay" "No such file"
intact "$out" "$good"
run info "$T/no-such-overlay/overlay-meta"
expect_error "$T/no-such-overlay/overlay-meta"
ok
CASE="overlay-meta is a directory"
fresh
rm "$tv/overlay-meta"
mkdir "$tv/overlay-meta"
apply_fails "$tv/overlay-meta"
run info "$tv/overlay-meta"
expect_error "$tv/overlay-meta"
ok
CASE="output directory is a file"
: >"$T/plain-file"
run apply "$g/a.disk" "$ov" -o "$T/plain-file"
expect_error "$T/plain-file"
[ ! -s "$T/plain-file" ] || bad "$T/plain-file was written to"
run apply "$g/a.disk" "$ov" -o "$T/plain-file/sub"
expect_error "$T/plain-file"
ok
CASE="base image is a directory"
run base "$T/a-directory" --memory "$g/a.mem"
expect_error "$T/a-directory"
run base "$g/a.disk" --memory "$T/no-such-mem"
expect_error "$T/no-such-mem"
ok

# overlay with a bad input file: the earlier overlay in -o stays.
while read -r file args; do
	CASE="overlay ${args//$T/\$T}"
	# shellcheck disable=SC2086
	run overlay "$g/a.disk" $args -o "$ov"
	expect_error "$file"
	intact "$ov" "$goodov"
	ok
done <<EOF
$T/no-such-disk --disk $T/no-such-disk --memory $g/new.mem
$T/a-directory --disk $T/a-directory --memory $g/new.mem
$T/no-such-mem --disk $g/new.disk --memory $T/no-such-mem
$T/no-such-state --disk $g/new.disk --memory $g/new.mem --state $T/no-such-state
$T/a-directory --disk $g/new.disk --memory $g/new.mem --domain $T/a-directory
$T/no-such-trace --disk $g/new.disk --memory $g/new.mem --order $T/no-such-trace
EOF
CASE="overlay with a TRACE out of range"
printf 'disk 1\n# ok so far\ndisk 999999\n' >"$T/trace"
run overlay "$g/a.disk" --disk "$g/new.disk" --memory "$g/new.mem" --order "$T/trace" -o "$ov"
expect_error "$T/trace:3"
intact "$ov" "$goodov"
printf 'disk 1\nfloppy 2\n' >"$T/trace"
run overlay "$g/a.disk" --disk "$g/new.disk" --memory "$g/new.mem" --order "$T/trace" -o "$ov"
expect_error "$T/trace:2"
intact "$ov" "$goodov"
ok

# ---- a full disk -------------------------------------------------------------
CASE="full disk"
mkdir -p "$T/mnt"
if ! mount -t tmpfs -o size=8m cl-test "$T/mnt" 2>"$T/mount.err"; then
	echo "SKIP [$CASE]: cannot mount a tmpfs: $(cat "$T/mount.err")"
else
	# A good small output and overlay first, then ones that do not fit.
	must apply "$g/a.disk" "$ov" -o "$T/mnt/out"
	must overlay "$g/a.disk" --disk "$g/new.disk" --memory "$g/new.mem" -o "$T/mnt/ov"
	cp -a "$T/mnt/out" "$T/mnt-good-out"
	cp -a "$T/mnt/ov" "$T/mnt-good-ov"
	must overlay "$g/a.disk" --disk "$g/big.disk" --memory "$g/new.mem" -o "$T/ov-big" \
		--codec zstd --level 1
	run apply "$g/a.disk" "$T/ov-big" -o "$T/mnt/out"
	expect_error "$T/mnt/out/" "No space left on device"
	intact "$T/mnt/out" "$T/mnt-good-out"
	run overlay "$g/a.disk" --disk "$g/big.disk" --memory "$g/new.mem" -o "$T/mnt/ov" \
		--codec zstd --level 1
	expect_error "$T/mnt/ov/" "No space left on device"
	intact "$T/mnt/ov" "$T/mnt-good-ov"
	# Into a new directory: nothing at all is left.
	run apply "$g/a.disk" "$T/ov-big" -o "$T/mnt/new"
	expect_error "$T/mnt/new/" "No space left on device"
	[ -z "$(ls -A "$T/mnt/new" 2>/dev/null)" ] || bad "left in mnt/new: $(ls -A "$T/mnt/new")"
	# The pack fits but the meta does not: the earlier overlay (an empty
	# one) must stay whole, not get the new pack beside its old meta.
	must overlay "$g/a.disk" --disk "$g/a.disk" --memory "$g/a.mem" -o "$T/mnt/ov0"
	cp -a "$T/mnt/ov0" "$T/mnt-good-ov0"
	avail=$(df -k --output=avail "$T/mnt" | tail -1)
	head -c $(((avail - 100) * 1024)) /dev/zero >"$T/mnt/filler" || true
	run overlay "$g/a.disk" --disk "$g/dotted.disk" --memory "$g/a.mem" -o "$T/mnt/ov0" --codec zstd
	expect_error "$T/mnt/ov0/" "No space left on device"
	intact "$T/mnt/ov0" "$T/mnt-good-ov0"
	rm "$T/mnt/filler"
	used=$(df -k --output=used "$T/mnt" | tail -1)
	umount "$T/mnt"
	ok "(${used// /} KiB used after the failures)"
fi

# ---- bad usage: exit 2 -------------------------------------------------------
CASE="libvirt unreachable"
# synthesis runs only a base registered with its device state and domain XML.
mkdir -p "$T/lv"
truncate -s 1M "$T/lv/d.img" "$T/lv/m.img"
echo state >"$T/lv/state"
echo "<domain type='qemu'><name>lv</name><memory unit='KiB'>1024</memory><devices/></domain>" \
	>"$T/lv/domain.xml"
must base "$T/lv/d.img" --memory "$T/lv/m.img" --state "$T/lv/state" --domain "$T/lv/domain.xml"
must overlay "$T/lv/d.img" --disk "$T/lv/d.img" --memory "$T/lv/m.img" -o "$T/lv/ov"
CLOUDLET_LIBVIRT_URI="qemu:///system?socket=$T/no-libvirt.sock" run synthesis "$T/lv/d.img" "$T/lv/ov"
# A host notice (KVM unusable for QEMU's user) may come first: the last lines count.
[ "$RC" = 1 ] || bad "exit status $RC, expected 1"
grep '^cloudlet: ' "$T/stderr" | tail -1 | grep -q "cannot connect to libvirt" ||
	bad "the error line does not say libvirt cannot be reached"
tail -1 "$T/stderr" | grep -q '^hint: is libvirtd running' || bad "no hint to start libvirtd"
ok

# CLOUDLET_MEMORY_MODE is the default of --memory-mode: a bad value is a usage
# error only where it would be used.
CASE="memory mode from the environment"
export CLOUDLET_LIBVIRT_URI="qemu:///system?socket=$T/no-libvirt.sock"
CLOUDLET_MEMORY_MODE=bogus run synthesis "$T/lv/d.img" "$T/lv/ov"
[ "$RC" = 2 ] && grep -q CLOUDLET_MEMORY_MODE "$T/stderr" || bad "bad CLOUDLET_MEMORY_MODE: exit $RC"
CLOUDLET_MEMORY_MODE=bogus run synthesis --memory-mode mmap "$T/lv/d.img" "$T/lv/ov"
[ "$RC" = 1 ] || bad "CLOUDLET_MEMORY_MODE judged although --memory-mode was given: exit $RC"
CLOUDLET_MEMORY_MODE=bogus run synthesis --help
[ "$RC" = 0 ] || bad "synthesis --help: exit $RC with a bad CLOUDLET_MEMORY_MODE"
unset CLOUDLET_LIBVIRT_URI
ok

# Given by its id, the base's overlay goes next to its disk image by default,
# not into the current directory.
CASE="overlay of a base given by its id"
id=$("$C" list-base | awk -v p="$g/a.disk" '$NF == p { print $1 }')
[ -n "$id" ] || die "no id listed for $g/a.disk"
mkdir -p "$T/cwd"
(cd "$T/cwd" && "$C" -q overlay "$id" --disk "$g/new.disk" --memory "$g/new.mem" >/dev/null) ||
	bad "overlay by id failed"
[ -s "$g/overlay-meta" ] && [ -s "$g/overlay-blob" ] || bad "no overlay next to $g/a.disk"
[ -z "$(ls -A "$T/cwd")" ] || bad "written into the current directory: $(ls -A "$T/cwd")"
rm -f "$g/overlay-meta" "$g/overlay-blob"
ok

CASE="bad usage"
while IFS= read -r args; do
	# shellcheck disable=SC2086
	run $args
	if [ "$RC" != 2 ]; then
		bad "cloudlet $args: exit status $RC, expected 2"
	elif [ ! -s "$T/stderr" ]; then
		bad "cloudlet $args: nothing on stderr"
	fi
done <<EOF

--bogus
bogus
apply
apply $g/a.disk
apply $g/a.disk $ov
apply $g/a.disk $ov -o
apply $g/a.disk $ov -o $out extra
apply --bogus $g/a.disk $ov -o $out
verify
verify --quick $g/a.disk
info
info --bogus $ov
base $g/a.disk --ram lots
base $g/a.disk --memory $g/a.mem --chunk-size 1000
base $g/a.disk --memory $g/a.mem --chunk-size 256
base $g/a.disk --memory $g/a.mem --chunk-size 2M
overlay $g/a.disk --disk $g/new.disk
overlay $g/a.disk --disk $g/new.disk --memory $g/new.mem --codec lz4
overlay $g/a.disk --disk $g/new.disk --memory $g/new.mem --level 99
overlay $g/a.disk --disk $g/new.disk --memory $g/new.mem --level 12
overlay $g/a.disk --disk $g/new.disk --memory $g/new.mem --level 3x
base $g/a.disk --chunk-size 1000 --kernel $T/no-kernel
overlay $g/a.disk --disk $g/new.disk --memory $g/new.mem --segment-size lots
overlay --disk $g/new.disk --memory $g/new.mem
list-base extra
EOF
intact "$out" "$good"
intact "$ov" "$goodov"
ok

if [ "$NFAIL" -gt 0 ]; then
	echo "bad_input: $NFAIL failures (${SECONDS} s)"
	exit 1
fi
echo "bad_input: all cases passed in $SECONDS s"
