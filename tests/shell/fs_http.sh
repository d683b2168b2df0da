#!/bin/bash
# cloudletfs over HTTP: a real nginx on 127.0.0.1, the real daemon, real FUSE
# mounts, generated images (64 MiB disk, 32 MiB memory, ~8 MiB pack in ~33
# segments of 256 KiB, every recipe). Expected bytes are `cloudlet apply`'s.
#  1. slow link (limit_rate, the stream takes ~6 s): chunks near the end of
#     both images, read right after the mount, arrive by demand fetch, well
#     ahead of the stream; then the stream completes and both images, state
#     and domain.xml equal apply's.
#  2. 64 concurrent readers (fs_stress: pread, then MAP_PRIVATE page faults)
#     during the slow stream: no error, no wrong byte; status, stats and an
#     O_DIRECT read of a chunk that needs no fetch answer within 1 s while
#     the readers wait.
#  3. nginx stopped mid-stream and started again on the same port: the reads
#     waiting meanwhile resume, everything arrives, the daemon stays up.
#  4. nginx gone for good, timeout=3, memory_timeout=5: a disk read fails
#     with EIO after ~3 s, a memory read after ~5 s (its own, longer bound);
#     status shows the cause; stats still answer; `cloudlet umount` works.
#  5. a server that ignores Range: status says ranges/demand fetch off; a
#     read waits for the sequential stream; everything arrives and matches.
#  6. a flipped byte in one segment of the pack: reads of its chunks (waiting
#     for its demand fetch) fail with EIO (never wrong bytes), io_errors
#     counts them, status says failed with a SHA-256 reason; every other byte
#     still reads correctly. A flipped byte in segment 0 (state, domain XML,
#     fetched at mount): `cloudlet mount` fails with one line.
#  7. an overlay of another registered base: `cloudlet mount` fails with one
#     line, non-zero, nothing mounted.
#  8. a waiting read is woken (a) by the stream's arrival (case 5, where
#     demand fetch is off), (b) by a demand fetch (no_stream), (c) by
#     `cloudlet umount` (EIO at once, the mount gone), (d) by its timeout
#     (case 4).
#  9. persistent cache: mounting case 1's overlay again with the same
#     cache_dir fetches nothing (status bytes 0; nginx's log: no request for
#     pack data, only probes of at most 1 byte) and serves the same bytes.
# 3b/6c (no_stream): a read whose demand fetch failed once (server down,
# then back; a corrupt segment) is fetched again: it resumes, or fails with
# EIO after the second bad fetch, well before its timeout.
# Every wait is bounded; mounts, daemons, nginx and files are cleaned up on
# any exit. Exit 77 only if /dev/fuse or nginx is missing.
set -u
export LC_ALL=C

C=${CLOUDLET:?CLOUDLET is not set (run through ctest)}
BUILD=${CL_BUILD_DIR:?CL_BUILD_DIR is not set (run through ctest)}
SRC=${CL_SOURCE_DIR:?CL_SOURCE_DIR is not set (run through ctest)}
[ -c /dev/fuse ] || { echo "SKIP: /dev/fuse is missing"; exit 77; }
# shellcheck source=tests/lib/nginx.sh
source "$SRC/tests/lib/nginx.sh"
[ -n "$(cl_nginx_bin)" ] || { echo "SKIP: nginx is missing (apt-get install nginx-light)"; exit 77; }
FS=$(dirname "$C")/cloudletfs
STRESS=$BUILD/tests/tools/fs_stress
[ -x "$FS" ] || { echo "FAIL: $FS is not built"; exit 1; }
[ -x "$STRESS" ] || { echo "FAIL: $STRESS is not built"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is needed"; exit 1; }

unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
export no_proxy='*' NO_PROXY='*'

T=$(mktemp -d "${TMPDIR:-/tmp}/cl-fs-http.XXXXXX")
T=$(cd "$T" && pwd -P)
export CLOUDLET_HOME=$T/home
unset CLOUDLET_THREADS
DAEMONS=() # cloudletfs pids (from status) to kill if still running on exit
MP=
LOG=

mounts_under() { awk -v p="$1" '$3 == "fuse.cloudletfs" && index($2, p) == 1 { print $2 }' /proc/mounts; }
mounted() { awk -v m="$1" '$2 == m && $3 == "fuse.cloudletfs" { f = 1 } END { exit !f }' /proc/mounts; }
cleanup() {
	local p m
	for m in $(mounts_under "$T/"); do
		timeout 20 "$C" -q umount "$m" >/dev/null 2>&1 || fusermount3 -uz "$m" 2>/dev/null ||
			umount -l "$m" 2>/dev/null
	done
	for p in "${DAEMONS[@]}"; do
		[ "$(cat "/proc/$p/comm" 2>/dev/null)" = cloudletfs ] && kill "$p" 2>/dev/null
	done
	cl_nginx_stop
	for p in $(jobs -p); do kill "$p" 2>/dev/null; done # readers, fs_stress
	wait
	[ -z "$(mounts_under "$T/")" ] && rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

CASE=setup
fail() {
	echo "FAIL [$CASE]: $*" >&2
	[ -s "$T/err" ] && sed 's/^/  stderr: /' "$T/err" >&2
	if [ -n "$MP" ] && mounted "$MP"; then
		timeout 2 cat "$MP/status" 2>/dev/null | sed 's/^/  status: /' >&2
	fi
	[ -n "$LOG" ] && [ -s "$LOG" ] && tail -5 "$LOG" | sed 's/^/  daemon: /' >&2
	[ -s "$T/nginx/error.log" ] && tail -3 "$T/nginx/error.log" | sed 's/^/  nginx: /' >&2
	exit 1
}
ok() { echo "ok [$CASE] $*"; }
cl() { timeout 60 "$C" -q "$@" >"$T/out" 2>"$T/err"; }
py() { timeout 120 python3 "$T/h.py" "$@"; }
ms() { local t=${EPOCHREALTIME/./}; REPLY=$((t / 1000)); } # now, in ms, in $REPLY

# mount_ov NAME URL OPTIONS: mounts at $T/mnt/NAME, sets MP and LOG.
mount_ov() {
	MP=$T/mnt/$1
	LOG=$T/log.$1
	mkdir -p "$MP"
	cl mount "$T/base.disk" "$2" "$MP" -o "log=$LOG,$3" || fail "cloudlet mount $2 -o $3"
	mounted "$MP" || fail "cloudlet mount returned but $MP is not mounted"
	DAEMONS+=("$(st pid)")
}
umount_ov() {
	cl umount "$MP" || fail "cloudlet umount $MP"
	mounted "$MP" && fail "$MP still mounted after cloudlet umount"
	MP=
}
# st KEY: a status field of $MP (bounded).
st() { timeout 5 cat "$MP/status" | sed -n "s/^$1: //p"; }
stat_of() { timeout 5 cat "$MP/$1/stats/$2"; }
# wait_state STATE SECONDS
wait_state() {
	local end
	ms
	end=$((REPLY + $2 * 1000))
	while ! timeout 5 grep -q "^state: $1\$" "$MP/status"; do
		ms
		[ "$REPLY" -lt "$end" ] || return 1
		sleep 0.1
	done
}
# cmp_all [FILE:APPLY_FILE...]: the mount's files against apply's output.
cmp_all() {
	local f
	[ $# -gt 0 ] || set -- disk/image:disk.img memory/image:memory.img state:state domain.xml:domain.xml
	for f in "$@"; do
		timeout 60 cmp "$MP/${f%%:*}" "$T/apply/${f#*:}" >"$T/err" 2>&1 ||
			fail "${f%%:*} differs from cloudlet apply's ${f#*:}"
	done
}

cat >"$T/h.py" <<'PYEOF'
import errno, lzma, mmap, os, random, struct, sys, threading, time

CS = 4096
IMAGES = ("disk", "memory")


def gen(d):
    """Base (64 MiB disk, 32 MiB memory) and customized images with every
    recipe and ~30 MiB of changed chunks; the disk grows by an odd tail.
    Also a small other base and a customized disk of it."""
    r = random.Random(20240917)
    nbd, nbm = 16384, 8192
    bd = bytearray(r.randbytes(nbd * CS))
    bd[3000 * CS:4000 * CS] = bytes(1000 * CS)
    bm = bytearray(r.randbytes(nbm * CS))
    bm[6000 * CS:6500 * CS] = bytes(500 * CS)
    nd = bytearray(bd) + r.randbytes(2 * CS + 777)
    nm = bytearray(bm)
    shared = [r.randbytes(CS) for _ in range(4)]

    def half(k):
        t = (b"cloudlet chunk %d " % k) * 200
        return r.randbytes(CS // 2) + t[:CS // 2]

    for k in range(3, nbd, 3):
        c = slice(k * CS, (k + 1) * CS)
        kind = (k // 3) % 8
        if kind == 0:
            nd[c] = bytes(CS)                                 # zero
        elif kind == 1:
            j = k * 3 % nbm
            nd[c] = bm[j * CS:(j + 1) * CS]                   # base memory
        elif kind == 2:
            j = (k * 7 + 3) % nbd
            nd[c] = bd[j * CS:(j + 1) * CS]                   # base disk
        elif kind == 3:
            nd[c] = shared[k % 4]                             # dedup
        elif kind == 4:
            for _ in range(4):
                nd[k * CS + r.randrange(CS)] ^= 0x5A          # delta
        elif kind == 5:
            nd[c] = r.randbytes(CS)                           # raw
        else:
            nd[c] = half(k)                                   # raw or delta
    for k in range(2, nbm, 3):
        c = slice(k * CS, (k + 1) * CS)
        kind = (k // 3) % 6
        if kind == 0:
            j = k * 11 % nbd
            nm[c] = bd[j * CS:(j + 1) * CS]                   # base disk
        elif kind == 1:
            nm[c] = shared[k % 4]                             # dedup
        elif kind == 2:
            for _ in range(3):
                nm[k * CS + r.randrange(CS)] ^= 0xA5          # delta
        elif kind == 3:
            nm[c] = r.randbytes(CS)                           # raw
        elif kind == 4:
            nm[c] = half(k)
        else:
            nm[c] = bytes(CS)                                 # zero
    ob, om = bytearray(r.randbytes(64 * CS)), r.randbytes(64 * CS)
    files = [("base.disk", bd), ("base.mem", bm), ("new.disk", nd), ("new.mem", nm),
             ("state", r.randbytes(100000)), ("other.disk", ob), ("other.mem", om)]
    ob2 = bytearray(ob)
    ob2[5 * CS:6 * CS] = r.randbytes(CS)
    files.append(("other.new.disk", ob2))
    for name, data in files:
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    with open(os.path.join(d, "domain.xml"), "w") as f:
        f.write("<domain type='kvm'><name>fs-http</name><memory unit='MiB'>32</memory></domain>\n")


# --- overlay-meta (MessagePack, docs/FORMAT.md), enough to find segments ---
def unpack(b, i=0):
    t = b[i]
    i += 1
    if t <= 0x7f:
        return t, i
    if t >= 0xe0:
        return t - 0x100, i
    if t <= 0x8f:
        return _map(b, i, t & 0x0f)
    if t <= 0x9f:
        return _arr(b, i, t & 0x0f)
    if t <= 0xbf:
        return bytes(b[i:i + (t & 0x1f)]).decode(), i + (t & 0x1f)
    if t == 0xc0:
        return None, i
    if t in (0xc2, 0xc3):
        return t == 0xc3, i
    fixed = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q", 0xd0: ">b", 0xd1: ">h",
             0xd2: ">i", 0xd3: ">q", 0xca: ">f", 0xcb: ">d"}
    if t in fixed:
        return struct.unpack_from(fixed[t], b, i)[0], i + struct.calcsize(fixed[t])
    lens = {0xc4: ">B", 0xc5: ">H", 0xc6: ">I", 0xd9: ">B", 0xda: ">H", 0xdb: ">I",
            0xdc: ">H", 0xdd: ">I", 0xde: ">H", 0xdf: ">I"}
    if t not in lens:
        raise ValueError("msgpack type %#x" % t)
    n = struct.unpack_from(lens[t], b, i)[0]
    i += struct.calcsize(lens[t])
    if t <= 0xc6:
        return bytes(b[i:i + n]), i + n
    if t <= 0xdb:
        return bytes(b[i:i + n]).decode(), i + n
    if t <= 0xdd:
        return _arr(b, i, n)
    return _map(b, i, n)


def _arr(b, i, n):
    out = []
    for _ in range(n):
        v, i = unpack(b, i)
        out.append(v)
    return out, i


def _map(b, i, n):
    out = {}
    for _ in range(n):
        k, i = unpack(b, i)
        out[k], i = unpack(b, i)
    return out, i


def meta(path):
    outer, _ = unpack(open(path, "rb").read())
    if outer["body_codec"] != "xz":
        sys.exit("this helper reads xz metas only")
    body, _ = unpack(lzma.decompress(outer["body"]))
    return body


def payload(body):
    """(image, index) -> segment, for chunks whose bytes come from the pack."""
    return {(c[0], c[1]): c[4] for c in body["chunks"] if c[2] >= 3}


def spec(s):
    im, k = s.split(":")
    return IMAGES.index(im), int(k)


def pick(path, what, *a):
    body = meta(path)
    pl = payload(body)
    if what == "last":           # last N payload chunks of an image
        im, n = IMAGES.index(a[0]), int(a[1])
        ks = sorted(k for (i, k) in pl if i == im)[-n:]
        out = ["%s:%d" % (a[0], k) for k in ks]
    elif what == "seg":          # every payload chunk of segment S
        s = int(a[0])
        out = ["%s:%d" % (IMAGES[i], k) for (i, k), g in sorted(pl.items()) if g == s]
    elif what == "unchanged":    # a chunk the overlay does not carry
        im = IMAGES.index(a[0])
        have = {c[1] for c in body["chunks"] if c[0] == im}
        out = [str(next(k for k in range(1, 1 << 30) if k not in have))]
    elif what == "nseg":
        out = [str(len(body["segments"]))]
    else:
        sys.exit("pick: " + what)
    print("\n".join(out))


def corrupt(src, dst, which="middle"):
    """Copies the overlay to dst with one byte flipped in the middle of a
    segment: the one holding the disk chunk nearest the middle of the disk
    (delta or raw, not a dedup of an earlier chunk), or segment 0."""
    body = meta(os.path.join(src, "overlay-meta"))
    if which == "first":
        s = 0
    else:
        mid = body["images"][0][0] // CS // 2
        c = min((c for c in body["chunks"] if c[0] == 0 and c[2] in (4, 5)),
                key=lambda c: abs(c[1] - mid))
        s = c[4]
    off, clen = body["segments"][s][0], body["segments"][s][1]
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(src, "overlay-meta"), "rb") as f:
        m = f.read()
    with open(os.path.join(dst, "overlay-meta"), "wb") as f:
        f.write(m)
    with open(os.path.join(src, body["pack"]), "rb") as f:
        p = bytearray(f.read())
    p[off + clen // 2] ^= 0x10
    with open(os.path.join(dst, body["pack"]), "wb") as f:
        f.write(p)
    print(s)


def status(mnt):
    out = {}
    with open(os.path.join(mnt, "status")) as f:
        for ln in f:
            k, _, v = ln.rstrip("\n").partition(": ")
            out[k] = v
    return out


def read_chunk(mnt, im, k):
    """One O_DIRECT read of chunk k (no readahead, no page cache)."""
    fd = os.open(os.path.join(mnt, IMAGES[im], "image"), os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, CS)
        n = os.preadv(fd, [buf], k * CS)
        return bytes(buf[:n])
    finally:
        os.close(fd)


def expected(ref, im, off, n):
    with open(os.path.join(ref, ("disk.img", "memory.img")[im]), "rb") as f:
        f.seek(off)
        return f.read(n)


def timed_reads(mnt, ref, specs):
    """Reads every chunk at once, one thread each: [(spec, seconds, outcome)]
    with outcome "ok", "WRONG BYTES" or an errno name."""
    res = {}

    def run(s):
        im, k = spec(s)
        t0 = time.monotonic()
        try:
            got = read_chunk(mnt, im, k)
            out = "ok" if got == expected(ref, im, k * CS, CS) else "WRONG BYTES"
        except OSError as e:
            out = errno.errorcode.get(e.errno, str(e.errno))
        res[s] = (time.monotonic() - t0, out)
    th = [threading.Thread(target=run, args=(s,)) for s in specs]
    for t in th:
        t.start()
    for t in th:
        t.join()
    return [(s,) + res[s] for s in specs]


def readchk(mnt, ref, want, tmin, tmax, *specs):
    """All reads must end with `want` (ok or EIO) within [tmin, tmax] s."""
    tmin, tmax = float(tmin), float(tmax)
    r = timed_reads(mnt, ref, specs)
    bad = [x for x in r if x[2] != want or not tmin <= x[1] <= tmax]
    if bad:
        sys.exit("expected %s within %.1f..%.1f s; got %s" % (
            want, tmin, tmax, ", ".join("%s %s after %.2f s" % (s, o, t) for s, t, o in bad[:6])))
    print("%d reads: %s after %.2f..%.2f s" % (len(r), want, min(x[1] for x in r),
                                               max(x[1] for x in r)))


def endreads(mnt, ref, metapath, n, tmax):
    """Reads the last n overlay chunks of both images at once, right after
    the mount; they must come by demand fetch, ahead of the stream."""
    body = meta(metapath)
    pl = payload(body)
    specs = []
    for im in (0, 1):
        specs += ["%s:%d" % (IMAGES[im], k) for k in sorted(k for (i, k) in pl if i == im)[-int(n):]]
    segs = {pl[spec(s)] for s in specs}
    r = timed_reads(mnt, ref, specs)
    st = status(mnt)
    bad = [x for x in r if x[2] != "ok"]
    if bad:
        sys.exit("end reads: %r" % bad)
    t = max(x[1] for x in r)
    present, total = map(int, st["segments"].split("/"))
    # Present now: the stream's in-order prefix plus the segments these
    # reads needed; so the stream had fetched at most present - len(segs).
    ahead = min(segs) - (present - len(segs))
    if t > float(tmax):
        sys.exit("end reads took %.2f s (bound %s s)" % (t, tmax))
    if ahead < 2:
        sys.exit("segments %s read with %d/%d present: not ahead of the stream" %
                 (sorted(segs), present, total))
    print("%.2f %s %d/%d %d" % (t, ",".join(map(str, sorted(segs))), present, total, ahead))


def goodrest(mnt, ref, metapath, s):
    """Every chunk not in segment s reads correctly (O_DIRECT, runs of up to
    1 MiB that skip the bad chunks)."""
    body = meta(metapath)
    s = int(s)
    bad = {key for key, g in payload(body).items() if g == s}
    nreads = 0
    for im in (0, 1):
        size = body["images"][im][0]
        n = (size + CS - 1) // CS
        fd = os.open(os.path.join(mnt, IMAGES[im], "image"), os.O_RDONLY | os.O_DIRECT)
        with open(os.path.join(ref, ("disk.img", "memory.img")[im]), "rb") as ef:
            buf = mmap.mmap(-1, 256 * CS)
            k = 0
            while k < n:
                if (im, k) in bad:
                    k += 1
                    continue
                e = k
                while e < n and e - k < 256 and (im, e) not in bad:
                    e += 1
                ln = min(e * CS, size) - k * CS
                got = os.preadv(fd, [memoryview(buf)[:(e - k) * CS]], k * CS)
                ef.seek(k * CS)
                if got != ln or buf[:ln] != ef.read(ln):
                    sys.exit("%s chunks %d..%d differ" % (IMAGES[im], k, e - 1))
                nreads += 1
                k = e
        os.close(fd)
    print("%d reads, %d chunks skipped" % (nreads, len(bad)))


def blocked(mnt, s, out):
    """One read that is expected to wait; writes its outcome and the wall
    clock time it ended (ms) to out."""
    im, k = spec(s)
    try:
        read_chunk(mnt, im, k)
        res = "ok"
    except OSError as e:
        res = errno.errorcode.get(e.errno, str(e.errno))
    with open(out, "w") as f:
        f.write("%s %d\n" % (res, time.time() * 1000))


cmd, args = sys.argv[1], sys.argv[2:]
{"gen": gen, "pick": pick, "corrupt": corrupt, "readchk": readchk, "endreads": endreads,
 "goodrest": goodrest, "blocked": blocked}[cmd](*args)
PYEOF

# --- setup -------------------------------------------------------------------------
mkdir -p "$T/ov" "$T/mnt" "$T/www"
py gen "$T" || fail "image generation"
cl base "$T/base.disk" --memory "$T/base.mem" || fail "cloudlet base"
cl overlay "$T/base.disk" --disk "$T/new.disk" --memory "$T/new.mem" --state "$T/state" \
	--domain "$T/domain.xml" -o "$T/ov" --segment-size 256K || fail "cloudlet overlay"
cl apply "$T/base.disk" "$T/ov" -o "$T/apply" || fail "cloudlet apply"
cmp -s "$T/apply/disk.img" "$T/new.disk" && cmp -s "$T/apply/memory.img" "$T/new.mem" ||
	fail "apply output differs from the customized images"
# another base and an overlay made against it
cl base "$T/other.disk" --memory "$T/other.mem" || fail "cloudlet base (other)"
cl overlay "$T/other.disk" --disk "$T/other.new.disk" --memory "$T/other.mem" -o "$T/www/other" ||
	fail "cloudlet overlay (other)"
META=$T/ov/overlay-meta
NSEG=$(py pick "$META" nseg) || fail "reading the meta"
PACK=$(stat -c %s "$T/ov/overlay-blob")
for d in fast slow slow2 norange; do
	mkdir -p "$T/www/$d"
	ln "$T/ov/overlay-meta" "$T/ov/overlay-blob" "$T/www/$d/" || fail "ln"
done
BADSEG=$(py corrupt "$T/ov" "$T/www/slow/bad") || fail "corrupt copy"
py corrupt "$T/ov" "$T/www/bad0" first >/dev/null || fail "corrupt copy"
# The stream runs on 3 connections (the 4th is kept for demand fetches):
# ~6 s for the pack. Without ranges it is one connection: ~3 s.
RATE=$((PACK / 18))
NRRATE=$((PACK / 3))
cl_nginx_start "$T/nginx" "$T/www" "
		access_log $T/nginx/ranges.log cl_ranges;
		location /slow/ { limit_rate $RATE; }
		location /slow2/ { limit_rate $RATE; }
		location /norange/ { max_ranges 0; limit_rate $NRRATE; }" || fail "nginx did not start"
U=http://127.0.0.1:$NGINX_PORT
mapfile -t END_D < <(py pick "$META" last disk 3)
mapfile -t END_M < <(py pick "$META" last memory 3)
UNCH=$(py pick "$META" unchanged disk) || fail "pick"
ok "64 MiB disk, 32 MiB memory; pack $PACK bytes in $NSEG segments; nginx on port $NGINX_PORT, slow link $RATE B/s per connection"

# --- 1. slow link: demand fetch ahead of the stream ---------------------------------------
CASE=1-slow-link
ms
t0=$REPLY
mount_ov c1 "$U/slow/overlay-meta" "cache_dir=$T/cache1"
ms
tmount=$((REPLY - t0))
r=$(py endreads "$MP" "$T/apply" "$META" 3 4 2>&1) || fail "reads near the end: $r"
read -r tread segs pres ahead <<<"$r"
for im in disk memory; do
	[ "$(stat_of $im demand_fetches)" -gt 0 ] || fail "$im/stats/demand_fetches is 0"
done
wait_state complete 60 || fail "not complete within 60 s"
ms
tdone=$(printf %d.%03d $(((REPLY - t0) / 1000)) $(((REPLY - t0) % 1000)))
# the last segment came by demand at least 3 times sooner than the stream
# brought the rest
python3 -c "import sys; sys.exit(not $tread * 3 < $tdone)" ||
	fail "reads near the end took $tread s, the whole stream $tdone s"
[ "$(st state)" = complete ] && [ "$(st segments)" = "$NSEG/$NSEG" ] || fail "status: $(st segments)"
cmp_all
ok "mounted in $tmount ms; 6 chunks near both ends (segments $segs) read in $tread s with $pres" \
	"present ($ahead ahead of the stream); demand_fetches disk $(stat_of disk demand_fetches)," \
	"memory $(stat_of memory demand_fetches); complete after $tdone s; images, state, domain.xml = apply"
umount_ov

# --- 2. 64 concurrent readers while the stream runs -------------------------------------------
# monitor PID: while PID runs, times reads of status, of stats files and an
# O_DIRECT read of a chunk that needs no fetch; sets MON_ST, MON_STATS,
# MON_DIO (slowest of each, ms), MON_WAIT (most requests seen waiting) and
# MON_N (rounds).
monitor() {
	local pid=$1 f t end w d
	MON_ST=0 MON_STATS=0 MON_DIO=0 MON_WAIT=0 MON_N=0
	ms
	end=$((REPLY + 60000))
	while kill -0 "$pid" 2>/dev/null; do
		ms
		t=$REPLY
		timeout 5 cat "$MP/status" >"$T/mon" || fail "cat status while readers wait"
		ms
		d=$((REPLY - t))
		((d > MON_ST)) && MON_ST=$d
		w=$(sed -n 's/^waiting: //p' "$T/mon")
		((w > MON_WAIT)) && MON_WAIT=$w
		for f in disk/stats/demand_fetches memory/stats/waiting memory/stats/chunks_present; do
			ms
			t=$REPLY
			timeout 5 cat "$MP/$f" >/dev/null || fail "cat $f while readers wait"
			ms
			d=$((REPLY - t))
			((d > MON_STATS)) && MON_STATS=$d
		done
		ms
		t=$REPLY
		timeout 5 dd if="$MP/disk/image" of=/dev/null bs=4096 skip="$UNCH" count=1 iflag=direct \
			status=none || fail "O_DIRECT read of unchanged disk chunk $UNCH"
		ms
		d=$((REPLY - t))
		((d > MON_DIO)) && MON_DIO=$d
		MON_N=$((MON_N + 1))
		[ "$REPLY" -lt "$end" ] || fail "fs_stress still running after 60 s"
		sleep 0.2
	done
}
CASE=2-concurrency
for mode in pread mmap; do
	mount_ov "c2$mode" "$U/slow/overlay-meta" no_cache
	flag=
	[ $mode = mmap ] && flag=-m
	timeout 90 "$STRESS" -t 64 -s 5 $flag "$MP/disk/image" "$T/apply/disk.img" \
		"$MP/memory/image" "$T/apply/memory.img" >"$T/stress" 2>"$T/err" &
	spid=$!
	monitor "$spid"
	wait "$spid" || fail "fs_stress ($mode): $(cat "$T/stress")"
	segs=$(st segments)
	[ "$MON_ST" -lt 1000 ] && [ "$MON_STATS" -lt 1000 ] && [ "$MON_DIO" -lt 1000 ] ||
		fail "while readers waited: status took $MON_ST ms, stats $MON_STATS ms, a present chunk $MON_DIO ms"
	[ "$MON_WAIT" -ge 32 ] || fail "at most $MON_WAIT requests seen waiting: the readers never waited"
	wait_state complete 60 || fail "not complete within 60 s"
	cmp_all
	ok "$mode: $(sed 's/^fs_stress: //' "$T/stress"); up to $MON_WAIT requests waiting;" \
		"slowest of $MON_N rounds: status $MON_ST ms, stats $MON_STATS ms, a present chunk" \
		"(O_DIRECT) $MON_DIO ms; segments $segs when the readers stopped; cmp ok"
	umount_ov
done

# --- 3. nginx stopped mid-stream, started again on the same port -------------------------------
CASE=3-restart
mount_ov c3 "$U/slow/overlay-meta" no_cache
sleep 1
[ "$(st state)" = streaming ] || fail "not streaming after 1 s: $(st segments)"
cl_nginx_stop
before=$(st segments)
pid=$(st pid)
py readchk "$MP" "$T/apply" ok 2 45 "${END_D[@]}" "${END_M[@]}" >"$T/r3" 2>&1 &
rpid=$!
sleep 3
kill -0 "$rpid" 2>/dev/null || fail "reads did not wait while nginx was down: $(cat "$T/r3")"
w=$(st waiting)
reason=$(st reason)
[ "$w" -ge 1 ] || fail "status says $w reads waiting while nginx is down"
cl_nginx_restart || fail "nginx did not start again on port $NGINX_PORT"
wait "$rpid" || fail "waiting reads after the restart: $(cat "$T/r3")"
wait_state complete 60 || fail "not complete within 60 s of the restart"
cmp_all
kill -0 "$pid" 2>/dev/null || fail "daemon $pid is gone"
ok "stopped at segments $before, $w reads waited ($reason), resumed after the restart:" \
	"$(cat "$T/r3"); complete; cmp ok; daemon $pid up"
umount_ov

# --- 4. nginx gone for good: bounded waits (also 8d: woken by timeout) --------------------------
CASE=4-timeout
mount_ov c4 "$U/slow/overlay-meta" no_cache,timeout=3,memory_timeout=5
cl_nginx_stop
pid=$(st pid)
py readchk "$MP" "$T/apply" EIO 2.5 6 "${END_D[2]}" >"$T/r4d" 2>&1 &
p1=$!
py readchk "$MP" "$T/apply" EIO 4.5 8 "${END_M[2]}" >"$T/r4m" 2>&1 &
p2=$!
wait "$p1" || fail "disk read (timeout=3): $(cat "$T/r4d")"
wait "$p2" || fail "memory read (memory_timeout=5): $(cat "$T/r4m")"
reason=$(st reason)
grep -q overlay-blob <<<"$reason" || fail "status does not name the pack's failure: reason '$reason'"
[ "$(st io_errors)" -ge 2 ] || fail "status io_errors $(st io_errors)"
ms
t=$REPLY
for im in disk memory; do
	[ "$(stat_of $im io_errors)" -ge 1 ] || fail "$im/stats/io_errors $(stat_of $im io_errors)"
done
ms
[ $((REPLY - t)) -lt 1000 ] || fail "stats took $((REPLY - t)) ms"
kill -0 "$pid" 2>/dev/null || fail "daemon $pid is gone"
state=$(st state)
umount_ov
for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "daemon $pid still runs 5 s after cloudlet umount"
ok "disk $(cat "$T/r4d"); memory $(cat "$T/r4m"); status: state $state," \
	"reason '$reason'; stats answer; cloudlet umount works"
CASE=8d-woken-by-timeout
ok "see case 4"
cl_nginx_restart || fail "nginx did not start again"

# --- 5. a server that ignores Range (also 8a: woken by the stream's arrival) ---------------------
CASE=5-no-ranges
mount_ov c5 "$U/norange/overlay-meta" no_cache
[ "$(st ranges)" = off ] && [ "$(st demand_fetch)" = off ] ||
	fail "status: ranges $(st ranges), demand_fetch $(st demand_fetch)"
r=$(py readchk "$MP" "$T/apply" ok 0.5 30 "${END_D[2]}" 2>&1) || fail "read near the end: $r"
for im in disk memory; do
	[ "$(stat_of $im demand_fetches)" = 0 ] || fail "$im: demand_fetches $(stat_of $im demand_fetches)"
done
wait_state complete 60 || fail "not complete within 60 s"
cmp_all
ok "ranges off, demand fetch off; the sequential stream completes; images, state, domain.xml = apply"
CASE=8a-woken-by-arrival
ok "a read of disk chunk ${END_D[2]#disk:} (last segment) waited for the stream: $r; no demand fetch"
CASE=5-no-ranges
umount_ov

# --- 6. a corrupted byte in the pack ---------------------------------------------------------------
CASE=6-corrupt
mapfile -t BAD < <(py pick "$META" seg "$BADSEG")
[ "${#BAD[@]}" -gt 10 ] || fail "segment $BADSEG has ${#BAD[@]} chunks"
mount_ov c6 "$U/slow/bad/overlay-meta" no_cache
# read at once: they wait for the segment's demand fetch, fetched twice
r=$(py readchk "$MP" "$T/apply" EIO 0 30 "${BAD[@]}" 2>&1) || fail "reads in segment $BADSEG: $r"
wait_state failed 30 || fail "state not failed"
reason=$(st reason)
grep -q "SHA-256" <<<"$reason" || fail "reason does not mention SHA-256: $reason"
n=$(($(stat_of disk io_errors) + $(stat_of memory io_errors)))
[ "$n" -ge "${#BAD[@]}" ] || fail "io_errors $n after ${#BAD[@]} failed reads"
g=$(py goodrest "$MP" "$T/apply" "$META" "$BADSEG" 2>&1) || fail "reads outside segment $BADSEG: $g"
timeout 5 cat "$MP/domain.xml" | cmp -s - "$T/apply/domain.xml" || fail "domain.xml"
ok "segment $BADSEG: ${#BAD[@]} chunks, $r; io_errors $n; state failed: $reason; everything else: $g"
umount_ov

CASE=6-corrupt-first
MP=$T/mnt/c6b
mkdir -p "$MP"
cl mount "$T/base.disk" "$U/bad0/overlay-meta" "$MP" -o no_cache
rc=$?
[ $rc = 1 ] || fail "cloudlet mount exited $rc"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q "SHA-256" "$T/err" || fail "not one line naming SHA-256"
mounted "$MP" && fail "mounted with a corrupt segment 0"
ok "segment 0 (state, domain XML) corrupt: cloudlet mount exits 1: $(cat "$T/err")"
MP=

# --- 7. an overlay of another base -------------------------------------------------------------------
CASE=7-wrong-base
MP=$T/mnt/c7
mkdir -p "$MP"
cl mount "$T/base.disk" "$U/other/overlay-meta" "$MP" -o no_cache
rc=$?
[ $rc != 0 ] || fail "mounted an overlay of another base"
[ "$(wc -l <"$T/err")" = 1 ] || fail "not one line of error (exit $rc)"
grep -qi "base" "$T/err" || fail "the error does not name the base"
mounted "$MP" && fail "something is mounted at $MP"
ok "exit $rc: $(cat "$T/err")"
MP=

# --- 8. waiting reads woken (b) by demand fetch, (c) by cloudlet umount ------------------------------
CASE=8b-woken-by-demand-fetch
mount_ov c8b "$U/slow2/overlay-meta" no_cache,no_stream
p0=$(st segments)
r=$(py readchk "$MP" "$T/apply" ok 0 10 "${END_D[2]}" "${END_M[2]}" 2>&1) || fail "$r"
for im in disk memory; do
	[ "$(stat_of $im demand_fetches)" -ge 1 ] || fail "$im: demand_fetches $(stat_of $im demand_fetches)"
done
sleep 1
p1=$(st segments)
[ "${p1%/*}" -le $((${p0%/*} + 2)) ] && [ "$(st state)" = streaming ] ||
	fail "segments $p0 -> $p1 without a stream"
ok "no_stream: $r; segments $p0 -> $p1 (only what the reads needed)"
umount_ov

CASE=8c-woken-by-umount
mount_ov c8c "$U/fast/overlay-meta" no_cache,no_stream,timeout=120,memory_timeout=120
cl_nginx_stop
timeout 60 python3 "$T/h.py" blocked "$MP" "${END_D[2]}" "$T/r8c" &
rpid=$!
for i in $(seq 50); do [ "$(st waiting)" -ge 1 ] && break; sleep 0.1; done
[ "$(st waiting)" -ge 1 ] || fail "the read is not waiting"
sleep 0.5
kill -0 "$rpid" 2>/dev/null || fail "the read ended before the umount: $(cat "$T/r8c")"
ms
t0=$REPLY
M=$MP
umount_ov
ms
tu=$((REPLY - t0))
wait "$rpid"
read -r res tend <"$T/r8c" || fail "the reader left no outcome"
[ "$res" = EIO ] || fail "the waiting read got $res, not EIO"
[ $((tend - t0)) -lt 3000 ] || fail "the waiting read ended $((tend - t0)) ms after the umount began"
mounted "$M" && fail "still mounted"
ok "the blocked read got $res $((tend - t0)) ms after cloudlet umount began; umount took $tu ms; mount gone"
cl_nginx_restart || fail "nginx did not start again"

# --- 9. persistent cache: the same overlay again ----------------------------------------------------
CASE=9-cache
before=$(wc -l <"$T/nginx/ranges.log")
mount_ov c9 "$U/slow/overlay-meta" "cache_dir=$T/cache1"
wait_state complete 5 || fail "not complete from the cache"
[ "$(st bytes)" = "0/$PACK" ] || fail "bytes fetched: $(st bytes)"
hits=$(st cache_hits)
cmp_all
# Requests for the pack since this mount: at most probes (HEAD, 1 byte).
tail -n +$((before + 1)) "$T/nginx/ranges.log" | awk '$2 ~ /overlay-blob$/' >"$T/r9"
awk '$NF > 1' "$T/r9" | grep -q . && fail "pack data requested again: $(awk '$NF > 1' "$T/r9" | head -3)"
ok "complete at once, cache_hits $hits, bytes 0/$PACK, no pack data from nginx" \
	"($(wc -l <"$T/r9") probe requests of <= 1 byte); cmp ok"
umount_ov

# --- 3b. no_stream: a demand fetch that failed is fetched again ----------------------------------
CASE=3b-restart-no-stream
# Without the background stream only the demand fetches a segment again
# after a failed fetch: the waiting read must complete once the server is
# back, well before its 15 s bound.
mount_ov c3b "$U/fast/overlay-meta" no_cache,no_stream,retries=1,timeout=15
cl_nginx_stop
py readchk "$MP" "$T/apply" ok 1.5 12 "${END_D[2]}" >"$T/r3b" 2>&1 &
rpid=$!
sleep 2 # the fetch (2 attempts) has failed by now
cl_nginx_restart || fail "nginx did not start again on port $NGINX_PORT"
wait "$rpid" || fail "the waiting read after the restart: $(cat "$T/r3b")"
ok "$(cat "$T/r3b")"
umount_ov

# --- 6c. no_stream: a corrupt segment fails its reads after the second fetch -----------------------
CASE=6c-corrupt-no-stream
# The second fetch happens without the stream too: EIO long before the
# 15 s bound, and the state says failed.
mount_ov c6c "$U/slow/bad/overlay-meta" no_cache,no_stream,timeout=15
r=$(py readchk "$MP" "$T/apply" EIO 0 10 "${BAD[@]:0:4}" 2>&1) || fail "$r"
[ "$(st state)" = failed ] || fail "state $(st state): $(st reason)"
ok "$r; state failed: $(st reason)"
umount_ov

echo "PASS"
