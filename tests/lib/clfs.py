# SPDX-License-Identifier: GPL-2.0-only
"""Helpers of the cloudletfs shell tests (tests/shell/fs_http.sh,
fault_matrix.sh): generated images, a reader of overlay-meta, timed reads of
a mount checked against `cloudlet apply`'s output.

    python3 clfs.py COMMAND ARGS...   (see the table at the end)
"""
import errno, lzma, mmap, os, random, struct, sys, threading, time

CS = 4096
IMAGES = ("disk", "memory")


def gen(d, mib_disk="64", mib_mem="32"):
    """Base (64 MiB disk, 32 MiB memory by default) and customized images
    with every recipe and about half of the chunks changed; the disk grows
    by an odd tail. Also a small other base and a customized disk of it."""
    r = random.Random(20240917)
    nbd, nbm = int(mib_disk) * 256, int(mib_mem) * 256
    bd = bytearray(r.randbytes(nbd * CS))
    z, n = nbd * 3000 // 16384, nbd * 1000 // 16384      # runs of zeros
    bd[z * CS:(z + n) * CS] = bytes(n * CS)
    bm = bytearray(r.randbytes(nbm * CS))
    z, n = nbm * 6000 // 8192, nbm * 500 // 8192
    bm[z * CS:(z + n) * CS] = bytes(n * CS)
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
    elif what == "segof":        # the segment holding chunk IMAGE:N
        out = [str(pl[spec(a[0])])]
    elif what == "offof":        # the pack offset of the segment holding IMAGE:N
        out = [str(body["segments"][pl[spec(a[0])]][0])]
    elif what == "shared":       # a disk and a memory payload chunk of one segment, its offset
        segs = {}
        for (i, k), g in sorted(pl.items()):
            segs.setdefault(g, [None, None])
            if segs[g][i] is None:
                segs[g][i] = k
        g = max(g for g, (d, m) in segs.items() if d is not None and m is not None)
        out = ["disk:%d" % segs[g][0], "memory:%d" % segs[g][1], str(body["segments"][g][0])]
    elif what == "nseg":
        out = [str(len(body["segments"]))]
    else:
        sys.exit("pick: " + what)
    print("\n".join(out))


def corrupt(src, dst, which="middle"):
    """Copies the overlay to dst with one byte flipped in the middle of a
    segment: the one holding the disk chunk nearest the middle of the disk
    (delta or raw, not a dedup of an earlier chunk), segment 0 ("first"),
    or the segment numbered which."""
    body = meta(os.path.join(src, "overlay-meta"))
    if which == "first":
        s = 0
    elif which.isdigit():
        s = int(which)
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
    """All reads must end with `want` (ok, an errno name, or several
    separated by |) within [tmin, tmax] s."""
    tmin, tmax = float(tmin), float(tmax)
    r = timed_reads(mnt, ref, specs)
    bad = [x for x in r if x[2] not in want.split("|") or not tmin <= x[1] <= tmax]
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


def _reads_except(mnt, ref, body, bad):
    """Every chunk not in bad ((image, index) pairs) reads as in ref
    (O_DIRECT, runs of up to 1 MiB that skip the bad chunks)."""
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


def goodrest(mnt, ref, metapath, s):
    """Every chunk not in segment s reads correctly."""
    body = meta(metapath)
    s = int(s)
    _reads_except(mnt, ref, body, {key for key, g in payload(body).items() if g == s})


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


def watch(mnt, out, secs):
    """Polls the status file every 50 ms for secs seconds (or until it
    cannot be read) and writes each distinct "state | reason" seen to out:
    causes of faults that the daemon recovers from show only meanwhile."""
    seen = []
    end = time.monotonic() + float(secs)
    while time.monotonic() < end:
        try:
            st = status(mnt)
        except OSError:
            break
        line = "%s | %s" % (st.get("state"), st.get("reason"))
        if line not in seen:
            seen.append(line)
            with open(out, "a") as f:
                f.write(line + "\n")
        time.sleep(0.05)


def basepick(metapath, basedisk):
    """Two disk chunks the overlay leaves unchanged, that hold non-zero
    bytes in the base and that no base-copy record copies: printed as
    "U H" (base_verify.sh changes U in place and punches a hole at H)."""
    body = meta(metapath)
    have = {c[1] for c in body["chunks"] if c[0] == 0}
    copied = {c[3] for c in body["chunks"] if c[2] == 1}
    out = []
    with open(basedisk, "rb") as f:
        n = (os.fstat(f.fileno()).st_size + CS - 1) // CS
        for k in range(7, n - 1):
            if k in have or k in copied:
                continue
            f.seek(k * CS)
            if any(f.read(CS)):
                out.append(k)
                if len(out) == 2:
                    break
    print("%d %d" % tuple(out))


def deltapick(metapath, basedisk):
    """A disk chunk that is the source of a delta and holds non-zero bytes
    in the base (base_verify.sh damages it before making an overlay)."""
    body = meta(metapath)
    with open(basedisk, "rb") as f:
        n = (os.fstat(f.fileno()).st_size + CS - 1) // CS
        for c in body["chunks"]:
            if c[0] == 0 and c[2] == 4 and c[1] < n:
                f.seek(c[1] * CS)
                if any(f.read(CS)):
                    print(c[1])
                    return
    sys.exit("no delta against a base chunk with data")


def goodexcept(mnt, ref, metapath, *specs):
    """Every chunk but the given IMAGE:N ones reads as `cloudlet apply`
    wrote it."""
    _reads_except(mnt, ref, meta(metapath), {spec(x) for x in specs})


cmd, args = sys.argv[1], sys.argv[2:]
{"gen": gen, "pick": pick, "corrupt": corrupt, "readchk": readchk, "endreads": endreads,
 "goodrest": goodrest, "blocked": blocked, "watch": watch, "basepick": basepick,
 "goodexcept": goodexcept, "deltapick": deltapick}[cmd](*args)
