#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# cloudletfs on generated images (every recipe, odd sizes), from a local
# overlay, through real FUSE mounts:
#  - `cloudlet mount` returns once the mount serves; both images, the state
#    and the domain XML are byte-identical to `cloudlet apply`'s output;
#  - the tree: sizes, modes, owners, stable inode numbers; stats values;
#    status; stream lines, O_NONBLOCK (EAGAIN), a waiting read woken by an
#    event and one ended by a signal (FUSE interrupt, EINTR);
#  - writes read back, hole punching and zeroing read zeros, the image
#    size is fixed, read-only files stay read-only; base, overlay and cache
#    files are never written;
#  - mmap MAP_PRIVATE of memory/image (page faults through the page cache);
#  - `cloudlet trace` (so far, and following for some seconds);
#  - `cloudlet umount` while a process holds disk/image open, SIGTERM to a
#    foreground daemon, a second mount served from the persistent cache;
#  - options: --help lists every key, bad options and a wrong base fail with
#    one line; allow_other/uid/gid and the mode bits for another user;
#  - installed system-wide (and uninstalled at exit): the mount(8) helper,
#    mount.fuse3, mount(8) and an /etc/fstab line mounted by its mount point.
# Every wait is bounded. Exit 77 only where /dev/fuse is missing or not root.
set -u
# shellcheck source=tests/lib/skip.sh
source "$(dirname "$0")/../lib/skip.sh"

C=${CLOUDLET:?CLOUDLET is not set (run through ctest)}
FS=$(dirname "$C")/cloudletfs
[ -c /dev/fuse ] || cl_skip_test "/dev/fuse is missing"
[ -x "$FS" ] || { echo "FAIL: $FS is not built"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is needed"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/cl-fs-basic.XXXXXX")
T=$(cd "$T" && pwd -P)
export CLOUDLET_HOME=$T/home
unset CLOUDLET_THREADS
MNT=$T/mnt
holder=
fgpid=

mounted() { grep -q " $1 fuse.cloudletfs " /proc/mounts; }
cleanup_hook=:
cleanup() {
	[ -n "$holder" ] && kill "$holder" 2>/dev/null
	[ -n "$fgpid" ] && kill "$fgpid" 2>/dev/null
	for m in "$MNT"; do
		mounted "$m" && { timeout 20 "$C" umount "$m" >/dev/null 2>&1 || umount -l "$m"; }
	done
	$cleanup_hook
	mounted "$MNT" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

CASE=setup
fail() {
	echo "FAIL [$CASE]: $*" >&2
	[ -s "$T/err" ] && sed 's/^/  stderr: /' "$T/err" >&2
	exit 1
}
ok() { echo "ok [$CASE]${1:+ $*}"; }
cl() { timeout 60 "$C" -q "$@" >"$T/out" 2>"$T/err"; }
py() { timeout 60 python3 "$T/h.py" "$@"; }

cat >"$T/h.py" <<'PYEOF'
import ctypes, errno, mmap, os, random, re, signal, sys, threading, time

CS = 4096


def gen(d):
    """Base and customized images using every recipe; odd sizes, the disk
    grows and the memory shrinks against the base."""
    r = random.Random(20240611)
    bd = bytearray(r.randbytes(700 * CS + 1000))
    bd[100 * CS:130 * CS] = bytes(30 * CS)
    bm = bytearray(r.randbytes(512 * CS))
    nd = bytearray(bd) + r.randbytes(60 * CS + 777)
    nm = bytearray(bm[:430 * CS]) + r.randbytes(5 * CS)
    same = r.randbytes(CS)
    for k in range(1, len(nd) // CS, 5):
        kind = k % 6
        c = slice(k * CS, (k + 1) * CS)
        if kind == 0:
            nd[c] = bytes(CS)                                        # zero
        elif kind == 1:
            nd[c] = bm[(k * 3 % 512) * CS:(k * 3 % 512 + 1) * CS]   # base memory
        elif kind == 2:
            j = (k * 7 + 3) % 700
            nd[c] = bd[j * CS:(j + 1) * CS]                          # base disk
        elif kind == 3:
            nd[c] = same                                             # dedup
        elif kind == 4:
            for _ in range(4):
                nd[k * CS + r.randrange(CS)] ^= 0x5A                 # delta
        else:
            nd[c] = r.randbytes(CS)                                  # raw
    for k in range(2, len(nm) // CS, 3):
        kind = k % 4
        c = slice(k * CS, (k + 1) * CS)
        if kind == 0:
            j = k * 11 % 700
            nm[c] = bd[j * CS:(j + 1) * CS]                          # base disk
        elif kind == 1:
            nm[c] = same                                             # dedup
        elif kind == 2:
            for _ in range(3):
                nm[k * CS + r.randrange(CS)] ^= 0xA5                 # delta
        else:
            nm[c] = r.randbytes(CS)                                  # raw
    for name, data in (("base.disk", bd), ("base.mem", bm), ("new.disk", nd),
                       ("new.mem", nm), ("state", r.randbytes(70000))):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    with open(os.path.join(d, "domain.xml"), "w") as f:
        f.write("<domain type='kvm'><name>fs-basic</name></domain>\n")


LINE = re.compile(rb"^[0-9]+\.[0-9]{6}\t[0-9]+$")


def stream_check(path, nmin):
    """All lines well-formed, chunks distinct, times ascending; then EAGAIN."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    data = b""
    while True:
        try:
            b = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not b:
            sys.exit("%s: end of file" % path)
        data += b
    os.close(fd)
    lines = data.split(b"\n")
    if lines[-1] != b"":
        sys.exit("%s: last line unterminated" % path)
    lines = lines[:-1]
    chunks, last = set(), -1.0
    for ln in lines:
        if not LINE.match(ln):
            sys.exit("%s: bad line %r" % (path, ln))
        t, c = ln.split(b"\t")
        if float(t) < last:
            sys.exit("%s: time goes back at %r" % (path, ln))
        last = float(t)
        if c in chunks:
            sys.exit("%s: chunk %s twice" % (path, c))
        chunks.add(c)
    if len(lines) < nmin:
        sys.exit("%s: %d lines, expected at least %d" % (path, len(lines), nmin))
    print(len(lines))


def small_reads(path):
    """The same stream read 7 bytes at a time equals one big read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    big = b""
    while True:
        try:
            b = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        big += b
    os.close(fd)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    small = b""
    while True:
        try:
            b = os.read(fd, 7)
        except BlockingIOError:
            break
        small += b
    os.close(fd)
    if small[:len(big)] != big:
        sys.exit("7-byte reads differ from one read")


def wait_woken(mnt):
    """A blocking read of chunks_modified with nothing new waits; a write
    wakes it with the written chunk."""
    path = mnt + "/disk/streams/chunks_modified"
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)

    def writer():
        time.sleep(0.4)
        # the same byte again: modified, the content stays apply's
        w = os.open(mnt + "/disk/image", os.O_RDWR)
        os.pwrite(w, os.pread(w, 1, 650 * CS + 9), 650 * CS + 9)
        os.close(w)
    th = threading.Thread(target=writer)
    t0 = time.time()
    th.start()
    data = os.read(fd, 65536)
    dt = time.time() - t0
    th.join()
    os.close(fd)
    if not re.match(rb"^[0-9]+\.[0-9]{6}\t650\n$", data):
        sys.exit("woken read gave %r" % data)
    if dt < 0.3:
        sys.exit("read did not wait (%.2f s)" % dt)
    print("%.2f" % dt)


class Alarm(Exception):
    pass


def interrupted(mnt):
    """A waiting stream read ends with EINTR when the reader gets a signal."""
    def on_alarm(sig, frm):
        raise Alarm()
    signal.signal(signal.SIGALRM, on_alarm)
    fd = os.open(mnt + "/memory/streams/chunks_modified", os.O_RDONLY)
    t0 = time.time()
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        data = os.read(fd, 65536)
        sys.exit("read returned %r instead of waiting" % data)
    except Alarm:
        pass
    dt = time.time() - t0
    os.close(fd)
    if dt > 5:
        sys.exit("interrupt took %.2f s" % dt)
    print("%.2f" % dt)


def writes(mnt, ref):
    """Writes read back; punch/zero read zeros; size fixed; refusals."""
    img = mnt + "/disk/image"
    exp = bytearray(open(ref, "rb").read())
    size = len(exp)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    fd = os.open(img, os.O_RDWR)
    r = random.Random(5)
    for off, n in ((0, 10), (CS - 3, 7), (5 * CS, 3 * CS), (123457, 70000), (size - 100, 100)):
        data = r.randbytes(n)
        if os.pwrite(fd, data, off) != n:
            sys.exit("short write at %d" % off)
        exp[off:off + n] = data
    # a write crossing the end is cut there; one past it is refused
    if os.pwrite(fd, b"z" * 50, size - 20) != 20:
        sys.exit("write across the end not cut")
    exp[size - 20:] = b"z" * 20
    try:
        os.pwrite(fd, b"q", size + 5)
        sys.exit("write past the end accepted")
    except OSError as e:
        if e.errno != errno.EFBIG:
            sys.exit("write past the end: %s" % e)
    # hole punching and zeroing are copy-on-write writes of zeros
    FL_KEEP, FL_PUNCH, FL_ZERO = 1, 2, 0x10
    if libc.fallocate(fd, FL_KEEP | FL_PUNCH, 200 * CS + 100, 5 * CS):
        sys.exit("punch hole: %s" % os.strerror(ctypes.get_errno()))
    exp[200 * CS + 100:205 * CS + 100] = bytes(5 * CS)
    if libc.fallocate(fd, FL_ZERO, 300 * CS, 2 * CS + 1):
        sys.exit("zero range: %s" % os.strerror(ctypes.get_errno()))
    exp[300 * CS:302 * CS + 1] = bytes(2 * CS + 1)
    if libc.fallocate(fd, 0, 0, size + CS) == 0:
        sys.exit("fallocate grew the image")
    try:
        os.ftruncate(fd, size - 1)
        sys.exit("ftruncate accepted")
    except OSError:
        pass
    os.fsync(fd)
    os.close(fd)
    # read back through a fresh descriptor, and bypassing the page cache
    got = open(img, "rb").read()
    if got != exp:
        bad = next(i for i in range(size) if got[i] != exp[i])
        sys.exit("read back differs at byte %d" % bad)
    fd = os.open(img, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 3 * CS)
    os.preadv(fd, [buf], 4 * CS)
    if bytes(buf) != bytes(exp[4 * CS:7 * CS]):
        sys.exit("O_DIRECT read differs")
    os.close(fd)
    if os.stat(img).st_size != size:
        sys.exit("size changed")
    for path, flags in ((img, os.O_RDWR | os.O_TRUNC), (mnt + "/status", os.O_WRONLY),
                        (mnt + "/state", os.O_RDWR), (mnt + "/disk/stats/chunks", os.O_WRONLY)):
        try:
            os.close(os.open(path, flags))
            sys.exit("%s opened with flags %#x" % (path, flags))
        except OSError:
            pass
    try:
        os.chmod(img, 0o666)
        sys.exit("chmod accepted")
    except OSError:
        pass


def mmap_private(mnt, ref):
    """MAP_PRIVATE of memory/image: page faults read the synthesized bytes;
    writes to the mapping stay private."""
    exp = open(ref, "rb").read()
    with open(mnt + "/memory/image", "rb") as f:
        m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE,
                      prot=mmap.PROT_READ | mmap.PROT_WRITE)
        # touch pages out of order first, then compare all
        for k in (400, 3, 251, 77):
            if m[k * CS:(k + 1) * CS] != exp[k * CS:(k + 1) * CS]:
                sys.exit("page %d differs" % k)
        if m[:] != exp:
            sys.exit("mapping differs")
        m[0:8] = b"PRIVATE!"
        m.close()
    if open(mnt + "/memory/image", "rb").read(8) != exp[:8]:
        sys.exit("a private mapping's write reached the file")


def direct_read(path, chunk):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, CS)
    os.preadv(fd, [buf], chunk * CS)
    os.close(fd)


def readers(mnt, ref_disk, ref_mem, n):
    """n threads reading random pieces of both images at once."""
    exp = [open(ref_disk, "rb").read(), open(ref_mem, "rb").read()]
    errs = []

    def run(i):
        r = random.Random(i)
        fds = [os.open(mnt + "/disk/image", os.O_RDONLY),
               os.open(mnt + "/memory/image", os.O_RDONLY)]
        for _ in range(20):
            im = r.randrange(2)
            n = r.randrange(1, 300000)
            off = r.randrange(len(exp[im]))
            if os.pread(fds[im], n, off) != exp[im][off:off + n]:
                errs.append((im, off, n))
        for fd in fds:
            os.close(fd)
    th = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    if errs:
        sys.exit("%d reads differ, first %r" % (len(errs), errs[0]))


cmd = sys.argv[1]
args = sys.argv[2:]
if cmd == "gen":
    gen(*args)
elif cmd == "stream":
    stream_check(args[0], int(args[1]))
elif cmd == "small_reads":
    small_reads(args[0])
elif cmd == "woken":
    wait_woken(*args)
elif cmd == "interrupted":
    interrupted(*args)
elif cmd == "writes":
    writes(*args)
elif cmd == "mmap":
    mmap_private(*args)
elif cmd == "direct_read":
    direct_read(args[0], int(args[1]))
elif cmd == "readers":
    readers(args[0], args[1], args[2], int(args[3]))
else:
    sys.exit("unknown command " + cmd)
PYEOF

# Waits (bounded) until MOUNT/status says state: complete.
wait_complete() {
	local i
	for i in $(seq 200); do
		grep -q '^state: complete$' "$1/status" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}
# Checksums of the files cloudletfs must never write (the cache's data files,
# not its bookkeeping).
sums() {
	(cd "$T" && md5sum base.disk base.mem ov/* &&
		find cache -type f \( -name '*.cache' -o -name state -o -name domain.xml \) \
			-exec md5sum {} + | sort)
}
stat_of() { cat "$MNT/$1/stats/$2"; }

# --- setup ---------------------------------------------------------------------
mkdir -p "$T/ov" "$MNT" "$T/cache"
py gen "$T" || fail "image generation"
cl base "$T/base.disk" --memory "$T/base.mem" || fail "cloudlet base"
cl overlay "$T/base.disk" --disk "$T/new.disk" --memory "$T/new.mem" --state "$T/state" \
	--domain "$T/domain.xml" -o "$T/ov" --segment-size 65536 || fail "cloudlet overlay"
nseg=$(grep -o '[0-9]* segments' "$T/out" | head -1)
cl apply "$T/base.disk" "$T/ov" -o "$T/apply" || fail "cloudlet apply"
cmp -s "$T/apply/disk.img" "$T/new.disk" && cmp -s "$T/apply/memory.img" "$T/new.mem" ||
	fail "apply output differs from the images"
ok "images, base, overlay, apply"

# --- options ---------------------------------------------------------------------
CASE=options
"$FS" --help >"$T/help" || fail "cloudletfs --help"
for k in base= cache_dir= cache_limit= no_cache store_dir= keep_store connections= timeout= \
	memory_timeout= fetch_timeout= retries= no_stream allow_other default_permissions uid= gid= \
	' -f ' ' -d, --debug '; do
	grep -q -- "$k" "$T/help" || fail "--help does not mention '$k'"
done
for c in mount umount trace; do
	"$C" "$c" --help >"$T/out" && [ -s "$T/out" ] || fail "cloudlet $c --help"
done
timeout 10 "$FS" "$T/ov" "$MNT" -o base="$T/base.disk",bogus=1 2>"$T/err"
[ $? = 2 ] && grep -q "unknown option 'bogus'" "$T/err" || fail "unknown option not refused"
timeout 10 "$FS" "$T/ov" "$MNT" -o no_cache 2>"$T/err"
[ $? = 2 ] && grep -q "base=IMAGE is required" "$T/err" || fail "missing base= not refused"
timeout 10 "$FS" "$T/ov" "$MNT" -o base="$T/base.disk",timeout=0 2>"$T/err"
[ $? = 2 ] || fail "timeout=0 accepted"
# a wrong base: one line, exit 1, nothing mounted
cl mount "$T/new.disk" "$T/ov" "$MNT"
[ $? = 1 ] || fail "a wrong base did not fail with 1"
[ "$(wc -l <"$T/err")" = 1 ] && grep -q '^cloudletfs: ' "$T/err" || fail "wrong base: not one line"
mounted "$MNT" && fail "mounted with a wrong base"
ok "help lists every option; bad options exit 2; wrong base: $(cat "$T/err")"

# --- mount and content ---------------------------------------------------------------
CASE=mount
cl mount "$T/base.disk" "$T/ov" "$MNT" -o cache_dir="$T/cache" || fail "cloudlet mount"
mounted "$MNT" || fail "not in mountinfo after cloudlet mount returned"
grep -q '^state: ' "$MNT/status" || fail "status not readable right after mount"
wait_complete "$MNT" || fail "not complete after 10 s: $(cat "$MNT/status")"
for f in disk/image:disk.img memory/image:memory.img state:state domain.xml:domain.xml; do
	timeout 60 cmp "$MNT/${f%%:*}" "$T/apply/${f#*:}" >"$T/err" 2>&1 || fail "${f%%:*} differs"
done
sums >"$T/sums.before"
ok "returns ready; disk, memory, state, domain.xml byte-identical to apply ($nseg)"

CASE=tree
dsize=$(stat -c %s "$T/new.disk")
msize=$(stat -c %s "$T/new.mem")
me="$(id -u) $(id -g)"
check_stat() { # path mode size
	local got
	got=$(stat -c '%a %s %u %g' "$MNT/$1")
	[ "$got" = "$2 $3 $me" ] || fail "$1: mode size owner '$got', expected '$2 $3 $me'"
}
check_stat . 555 0
check_stat disk 555 0
check_stat disk/stats 555 0
check_stat disk/image 660 "$dsize"
check_stat memory/image 660 "$msize"
check_stat state 444 70000
check_stat domain.xml 444 "$(stat -c %s "$T/domain.xml")"
check_stat status 444 0
check_stat memory/stats/bytes_read 444 0
check_stat memory/streams/chunks_accessed 444 0
[ "$(ls "$MNT" | tr '\n' ' ')" = "disk domain.xml memory state status " ] || fail "root: $(ls "$MNT")"
[ "$(ls "$MNT/disk/streams" | tr '\n' ' ')" = "chunks_accessed chunks_modified chunks_present " ] ||
	fail "streams: $(ls "$MNT/disk/streams")"
[ "$(ls "$MNT/memory/stats" | wc -l)" = 13 ] || fail "stats: $(ls "$MNT/memory/stats")"
(cd "$MNT" && find . -printf '%i %p\n' | sort -k2) >"$T/inodes1"
[ "$(awk '{print $1}' "$T/inodes1" | sort | uniq -d)" = "" ] || fail "inode numbers repeat"
cmp -s "$T/inodes1" <(cd "$MNT" && find . -printf '%i %p\n' | sort -k2) || fail "inodes changed"
ok "modes, sizes, owner, listing, distinct stable inode numbers"

CASE=stats
for im in disk memory; do
	for f in "$MNT/$im/stats/"*; do
		[ "$(wc -l <"$f")" = 1 ] && grep -Eq '^[0-9]+$' "$f" || fail "$f: '$(cat "$f")'"
	done
done
[ "$(stat_of disk chunk_size)" = 4096 ] || fail "chunk_size $(stat_of disk chunk_size)"
[ "$(stat_of disk chunks)" = $(((dsize + 4095) / 4096)) ] || fail "disk chunks"
[ "$(stat_of memory chunks)" = $(((msize + 4095) / 4096)) ] || fail "memory chunks"
for im in disk memory; do
	[ "$(stat_of $im chunks_present)" = "$(stat_of $im chunks)" ] || fail "$im: not all present"
	[ "$(stat_of $im chunks_overlay)" -gt 50 ] || fail "$im: chunks_overlay $(stat_of $im chunks_overlay)"
	[ "$(stat_of $im chunks_accessed)" = "$(stat_of $im chunks)" ] || fail "$im: cmp read all"
	[ "$(stat_of $im bytes_read)" -ge "$(stat -c %s "$MNT/$im/image")" ] || fail "$im: bytes_read"
	for z in io_errors waiting bytes_written chunks_modified; do
		[ "$(stat_of $im $z)" = 0 ] || fail "$im: $z is $(stat_of $im $z)"
	done
done
ok "one number per file; chunk_size, chunks, present, accessed, bytes_read sane"

CASE=status
st=$(cat "$MNT/status")
grep -Evq '^[a-z_]+: .*$' <<<"$st" && fail "status line not 'key: value': $st"
for re in '^state: complete$' '^reason: ' '^segments: ([0-9]+)/\1$' '^bytes: ([0-9]+)/\1$' \
	'^ranges: on$' '^demand_fetch: on$' '^seconds: [0-9.]+$' "^pid: [0-9]+$" \
	"^mountpoint: $MNT\$" "^overlay: $T/ov\$"; do
	grep -Eq "$re" <<<"$st" || fail "status has no line like '$re': $st"
done
ok "$(grep -E '^(state|segments|bytes):' <<<"$st" | tr '\n' ' ')"

CASE=streams
n=$(py stream "$MNT/disk/streams/chunks_accessed" "$(stat_of disk chunks)") || fail "disk accessed"
py stream "$MNT/memory/streams/chunks_accessed" "$(stat_of memory chunks)" >/dev/null || fail "memory accessed"
py stream "$MNT/disk/streams/chunks_present" 1 >/dev/null || fail "disk present"
py stream "$MNT/disk/streams/chunks_modified" 0 >/dev/null || fail "disk modified"
py small_reads "$MNT/memory/streams/chunks_accessed" || fail "short reads"
# a plain blocking reader gets the past events at once
timeout 10 dd if="$MNT/disk/streams/chunks_accessed" bs=64k count=1 status=none |
	grep -Eq '^[0-9]+\.[0-9]{6}	[0-9]+$' || fail "blocking read of past events"
dt=$(py woken "$MNT") || fail "waiting read"
di=$(py interrupted "$MNT") || fail "interrupted read"
ok "$n lines well-formed, distinct, in time order; EAGAIN; woken after $dt s; EINTR after $di s"

CASE=mmap
py mmap "$MNT" "$T/apply/memory.img" || fail "mmap"
py readers "$MNT" "$T/apply/disk.img" "$T/apply/memory.img" 16 || fail "readers"
ok "MAP_PRIVATE faults read the synthesized memory; 16 concurrent readers"


# --- writes ---------------------------------------------------------------------
CASE=writes
py writes "$MNT" "$T/apply/disk.img" || fail "writes"
[ "$(stat_of disk chunks_modified)" -ge 8 ] || fail "chunks_modified $(stat_of disk chunks_modified)"
[ "$(stat_of disk bytes_written)" -gt 100000 ] || fail "bytes_written $(stat_of disk bytes_written)"
py stream "$MNT/disk/streams/chunks_modified" 8 >/dev/null || fail "modified stream"
sums >"$T/sums.after"
diff "$T/sums.before" "$T/sums.after" >"$T/err" && [ -s "$T/sums.after" ] ||
	fail "base, overlay or cache files changed"
ok "read back (page cache and O_DIRECT), punch/zero range, fixed size, refusals; nothing else written"

CASE=trace
cl trace "$MNT" || fail "cloudlet trace"
grep -Evq '^(disk|memory) [0-9]+$' "$T/out" && fail "bad trace line: $(grep -Ev '^(disk|memory) [0-9]+$' "$T/out" | head -1)"
[ -z "$(sort "$T/out" | uniq -d)" ] || fail "trace repeats a chunk"
[ "$(grep -c '^disk ' "$T/out")" = "$(stat_of disk chunks_accessed)" ] || fail "disk lines"
[ "$(grep -c '^memory ' "$T/out")" = "$(stat_of memory chunks_accessed)" ] || fail "memory lines"
ok "$(wc -l <"$T/out") lines, one per accessed chunk"

# --- unmount while a file is held open ---------------------------------------------
CASE=umount
sleep 1000 <"$MNT/disk/image" &
holder=$!
sleep 0.2
t0=$(date +%s%N)
cl umount "$MNT" || fail "cloudlet umount with disk/image held open"
dt=$((($(date +%s%N) - t0) / 1000000))
mounted "$MNT" && fail "still mounted"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
holder=
cl umount "$MNT"
[ $? = 1 ] && grep -q "not a mount point" "$T/err" || fail "umount of a plain directory"
cl umount /proc
[ $? = 1 ] && grep -q "not a cloudletfs mount" "$T/err" || fail "umount of /proc"
ok "held open: unmounted in $dt ms; plain directory and /proc refused"

# --- again, from the persistent cache; trace of a fresh mount -------------------------
CASE=remount
cl mount "$T/base.disk" "$T/ov" "$MNT" -o cache_dir="$T/cache" || fail "second mount"
grep -q '^bytes: 0/' "$MNT/status" || fail "second mount fetched: $(grep bytes: "$MNT/status")"
cmp -s "$T/inodes1" <(cd "$MNT" && find . -printf '%i %p\n' | sort -k2) || fail "inodes differ"
cmp -s "$MNT/disk/image" "$T/apply/disk.img" || fail "disk from the cache differs (writes were kept?)"
cl trace "$MNT" && [ "$(wc -l <"$T/out")" -gt 0 ] || fail "trace after cmp"
cl umount "$MNT" || fail "umount"
cl mount "$T/base.disk" "$T/ov" "$MNT" -o cache_dir="$T/cache" || fail "third mount"
cl trace "$MNT" && [ ! -s "$T/out" ] || fail "fresh mount has a trace: $(head -3 "$T/out")"
(sleep 0.5 && py direct_read "$MNT/memory/image" 333 && py direct_read "$MNT/disk/image" 12) &
cl trace "$MNT" 2 -o "$T/trace" || fail "trace 2 -o FILE"
wait
[ "$(cat "$T/trace")" = "memory 333
disk 12" ] || fail "followed trace: $(cat "$T/trace")"
cl umount "$MNT" || fail "umount"
ok "served from the cache (nothing fetched), same inodes; trace follows: memory 333, disk 12"

# --- foreground daemon and SIGTERM -------------------------------------------------------
CASE=foreground
"$FS" "$T/ov" "$MNT" -o base="$T/base.disk",no_cache -f 2>"$T/err" &
fgpid=$!
for i in $(seq 100); do mounted "$MNT" && break; sleep 0.05; done
mounted "$MNT" || fail "cloudletfs -f did not mount"
kill -TERM "$fgpid"
timeout 20 tail --pid="$fgpid" -f /dev/null
wait "$fgpid"
rc=$?
fgpid=
[ $rc = 0 ] || fail "cloudletfs -f exited $rc after SIGTERM"
mounted "$MNT" && fail "still mounted after SIGTERM"
ok "SIGTERM: clean exit, unmounted"

# --- started with descriptors 0-2 closed: the private directories stay locked -----------
CASE=closed_fds
mkdir -p "$T/tmpfd"
TMPDIR=$T/tmpfd timeout 60 "$FS" "$T/ov" "$MNT" -o base="$T/base.disk",no_cache <&- >&- 2>&- ||
	fail "cloudletfs with descriptors 0-2 closed"
mounted "$MNT" || fail "not mounted"
for d in "$T"/tmpfd/cloudlet-cache-* "$T"/tmpfd/cloudlet-store-*; do
	[ -f "$d/lock" ] && ! flock -n "$d/lock" true || fail "$d: its lock is not held"
done
[ "$(ls "$T/tmpfd" | wc -l)" = 2 ] || fail "private directories: $(ls "$T/tmpfd")"
# The files it opened before detaching are still its own (not /dev/null).
cmp -s "$MNT/disk/image" "$T/apply/disk.img" && cmp -s "$MNT/memory/image" "$T/apply/memory.img" ||
	fail "images served wrong"
cl umount "$MNT" || fail "umount"
[ -z "$(ls -A "$T/tmpfd")" ] || fail "left after umount: $(ls -A "$T/tmpfd")"
ok "images served right; the private cache and store locked while mounted, removed at umount"

# --- a kept store: fsync makes writes durable, a remount over the store serves them ------
CASE=keep_store
ST=$T/store
cp "$T/apply/disk.img" "$T/exp.disk"
cp "$T/apply/memory.img" "$T/exp.mem"
# A kept store in a temporary directory could never be found again.
cl mount "$T/base.disk" "$T/ov" "$MNT" -o no_cache,keep_store
[ $? = 2 ] && grep -q "keep_store needs store_dir" "$T/err" || fail "keep_store without store_dir"
mounted "$MNT" && fail "mounted with keep_store and no store_dir"
# TMPDIR: the private cache of the daemon killed here stays until the next
# daemon making one there removes it.
mkdir -p "$T/tmpks"
TMPDIR=$T/tmpks cl mount "$T/base.disk" "$T/ov" "$MNT" -o no_cache,store_dir="$ST",keep_store ||
	fail "mount"
pid=$(sed -n 's/^pid: //p' "$MNT/status")
# Two chunks of each image written and fsynced, and the same into the expected files.
python3 - "$MNT" "$T/exp.disk" "$T/exp.mem" <<'PY' || fail "writes with fsync"
import os, sys
for im, exp, off, byte in (("disk", sys.argv[2], 5 * 4096 + 100, 0x11),
                           ("memory", sys.argv[3], 7 * 4096, 0x22)):
    for path in (os.path.join(sys.argv[1], im, "image"), exp):
        fd = os.open(path, os.O_RDWR)
        os.pwrite(fd, bytes([byte]) * 5000, off)
        os.fsync(fd)
        os.close(fd)
PY
kill -KILL "$pid"
timeout 20 tail --pid="$pid" -f /dev/null
timeout 10 fusermount3 -uz "$MNT" || fail "fusermount3 -uz after SIGKILL"
dead=$(echo "$T"/tmpks/cloudlet-cache-*)
[ -d "$dead" ] || fail "no private cache of the killed daemon: $dead"
# This mount fails, but only after making its own private cache.
TMPDIR=$T/tmpks cl mount "$T/base.disk" "$T/ov" "$MNT" -o no_cache,store_dir="$ST"
[ $? = 1 ] && grep -q "holds a kept store" "$T/err" || fail "a kept store mounted without keep_store"
mounted "$MNT" && fail "mounted without keep_store over a kept store"
[ -e "$dead" ] && fail "the killed daemon's private cache is still there after a new mount"
TMPDIR=$T/tmpks cl mount "$T/base.disk" "$T/ov" "$MNT" -o no_cache,store_dir="$ST",keep_store ||
	fail "remount"
cmp -s "$MNT/disk/image" "$T/exp.disk" && cmp -s "$MNT/memory/image" "$T/exp.mem" ||
	fail "the remount over the kept store does not serve the fsynced writes"
[ "$(stat_of disk chunks_modified) $(stat_of memory chunks_modified)" = "2 2" ] ||
	fail "chunks_modified: disk $(stat_of disk chunks_modified), memory $(stat_of memory chunks_modified)"
cl umount "$MNT" || fail "umount"
[ -s "$ST/store.map" ] || fail "no store map kept"
[ -z "$(ls -A "$T/tmpks")" ] || fail "left in TMPDIR after umount: $(ls -A "$T/tmpks")"
ok "fsynced writes served after SIGKILL and a remount over the kept store; refused without keep_store;" "keep_store without store_dir refused;" \
	"the killed daemon's private cache removed by the next mount"

# --- another user ------------------------------------------------------------------
CASE=permissions
if id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
	as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
	chmod 755 "$T"
	cl mount "$T/base.disk" "$T/ov" "$MNT" -o no_cache || fail "mount"
	as_nobody cat "$MNT/status" >/dev/null 2>&1 && fail "another user read a private mount"
	cl umount "$MNT" || fail "umount"
	cl mount "$T/base.disk" "$T/ov" "$MNT" -o no_cache,allow_other,gid=nogroup || fail "mount"
	[ "$(stat -c '%u %G' "$MNT/disk/image")" = "$(id -u) nogroup" ] || fail "gid= not applied"
	as_nobody cat "$MNT/status" >/dev/null || fail "allow_other: status unreadable"
	as_nobody head -c 4096 "$MNT/disk/image" >/dev/null || fail "group member cannot read"
	as_nobody sh -c "echo x >>'$MNT/status'" 2>/dev/null && fail "status writable"
	setpriv --reuid=nobody --regid=54321 --clear-groups head -c 1 "$MNT/disk/image" \
		>/dev/null 2>&1 && fail "a user outside the group read the image"
	cl umount "$MNT" || fail "umount"
	ok "private by default; allow_other + gid=: group reads the image, status read-only"
else
	echo "skip [$CASE]: no nobody user or setpriv"
fi

# --- mount(8), the helper and an fstab line, installed system-wide -----------------------
# Test machines are throwaway: this build is installed under /usr (mount(8) looks for
# mount.fuse.TYPE in /sbin only), used through mount(8) and an /etc/fstab line, and
# uninstalled again (what was there before, and /etc/fstab, restored) at exit.
CASE=mount.fuse
[ "$(id -u)" = 0 ] || cl_skip_test "not root: cannot install system-wide to test mount(8) and fstab"
BUILD=${CL_BUILD_DIR:?CL_BUILD_DIR is not set (run through ctest)}
SRCDIR=${CL_SOURCE_DIR:?CL_SOURCE_DIR is not set (run through ctest)}
INSTALLED=(/usr/bin/cloudlet /usr/bin/cloudletfs /usr/sbin/mount.fuse.cloudletfs)
mkdir -p "$T/saved"
cp -a /etc/fstab "$T/saved/fstab" 2>/dev/null || : >"$T/saved/fstab"
for f in "${INSTALLED[@]}"; do [ ! -e "$f" ] || cp -a "$f" "$T/saved/"; done
uninstall() {
	local f
	for f in "${INSTALLED[@]}"; do
		rm -f "$f"
		[ ! -e "$T/saved/${f##*/}" ] || cp -a "$T/saved/${f##*/}" "$f"
	done
	cp "$T/saved/fstab" /etc/fstab
}
cleanup_hook=uninstall
cmake --install "$BUILD" --prefix /usr >"$T/err" 2>&1 || fail "cmake --install --prefix /usr"
for f in "${INSTALLED[@]}"; do [ -x "$f" ] || fail "$f not installed"; done
cmp -s /usr/sbin/mount.fuse.cloudletfs "$SRCDIR/mount-helpers/mount.fuse.cloudletfs" &&
	cmp -s /usr/bin/cloudletfs "$FS" && cmp -s /usr/bin/cloudlet "$C" ||
	fail "the installed helper or programs are not this build's"
# as mount(8) runs a helper
timeout 30 /usr/sbin/mount.fuse.cloudletfs "$T/ov" "$MNT" -n \
	-o rw,base="$T/base.disk",no_cache,nodev,noauto,_netdev -t fuse.cloudletfs 2>"$T/err" ||
	fail "mount.fuse.cloudletfs"
mounted "$MNT" && cmp -s "$MNT/memory/image" "$T/apply/memory.img" || fail "helper mount"
cl umount "$MNT" || fail "umount"
# mount.fuse3, which mount(8) would fall back to; it adds dev,suid
timeout 30 mount.fuse3 "$T/ov" "$MNT" -t fuse.cloudletfs \
	-o base="$T/base.disk",no_cache,x-systemd.automount,nofail 2>"$T/err" || fail "mount.fuse3"
mounted "$MNT" && cmp -s "$MNT/disk/image" "$T/apply/disk.img" || fail "mount.fuse3 mount"
cl umount "$MNT" || fail "umount"
# mount(8) itself, which runs /sbin/mount.fuse.cloudletfs (it resets PATH)
timeout 30 mount -t fuse.cloudletfs "$T/ov" "$MNT" -o base="$T/base.disk",no_cache 2>"$T/err" ||
	fail "mount -t fuse.cloudletfs"
mounted "$MNT" && cmp -s "$MNT/disk/image" "$T/apply/disk.img" || fail "mount(8): not served"
umount "$MNT" 2>"$T/err" || fail "umount(8)"
mounted "$MNT" && fail "still mounted after umount(8)"
# an fstab line, mounted by its mount point
printf '%s %s fuse.cloudletfs base=%s,no_cache,noauto 0 0\n' "$T/ov" "$MNT" "$T/base.disk" \
	>>/etc/fstab
timeout 30 mount "$MNT" 2>"$T/err" || fail "mount $MNT (by its fstab line)"
mounted "$MNT" && cmp -s "$MNT/memory/image" "$T/apply/memory.img" || fail "fstab mount not served"
grep " $MNT fuse.cloudletfs " /proc/mounts | grep -q "^$T/ov " || fail "the fstab mount's source is not $T/ov"
umount "$MNT" 2>"$T/err" || fail "umount(8) of the fstab mount"
ok "installed under /usr (this build's), helper as mount(8) runs it, mount.fuse3, mount(8), fstab"

echo "PASS"
