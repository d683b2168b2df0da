#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Helpers for the real-guest tests (stdlib only; used by lib.sh).

  guestctl.py xml --name N --type qemu|kvm --kernel K --initrd I --disk D --mem M
                  [--mem-mib 256] [--share on|off] [--incoming] [--console SOCK] [--log FILE]
                  [--machine pc] [--cmdline ...]
      print a domain XML (file-backed RAM through <qemu:commandline>).
  guestctl.py xml-edit IN [--name N] [--disk D] [--mem M] [--share on|off]
                  [--incoming | --no-incoming] [--console SOCK] [--log FILE] [--machine M]
                  [--type T] [--kernel K] [--initrd I]
      print IN with those parts replaced.
  guestctl.py xml-get IN|- FIELD   FIELD: name type machine disk mem share console log kernel initrd
  guestctl.py console-cmd SOCK TIMEOUT CMD
      run CMD in the guest shell on the serial console socket; print its output; exit with its
      status; 124 on timeout (then ^C is sent to get the shell back), 125 if the shell died.
  guestctl.py console-type SOCK TIMEOUT LINE
      type LINE and, right behind it, an echo of a marker, as `cloudlet overlay
      --console-script` does (synth/vm/cl_console.c); wait for the marker; print what the
      console showed (exit 124 on timeout, 125 if the console closed first)
  guestctl.py console-wait SOCK TIMEOUT
      probe until the guest shell answers.
  guestctl.py mig-recv SOCK OUTFILE TIMEOUT
      listen on SOCK (mode 0777), accept one connection, write the stream to OUTFILE until EOF.
  guestctl.py mig-send SOCK INFILE TIMEOUT
      connect to SOCK (waiting for it to appear), send INFILE, close.
  guestctl.py qmp-status JSON        print return.status of a query-migrate answer (or "error")
  guestctl.py page-diff A B          count 4 KiB pages that differ / are non-zero
"""
import os
import re
import socket
import sys
import time
import uuid
import xml.etree.ElementTree as ET

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NS)
Q = "{%s}" % QEMU_NS
DEFAULT_CMDLINE = "console=ttyS0 panic=-1 loglevel=4"


def die(msg, code=1):
    sys.stderr.write("guestctl: %s\n" % msg)
    sys.exit(code)


def parse_opts(argv, flags=()):
    opts, pos, i = {}, [], 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            k = a[2:]
            if k in flags:
                opts[k] = True
            else:
                if i + 1 >= len(argv):
                    die("missing value for " + a)
                opts[k] = argv[i + 1]
                i += 1
        else:
            pos.append(a)
        i += 1
    return opts, pos


def qemu_opt_escape(v):
    return v.replace(",", ",,")


def build_xml(o):
    mib = int(o.get("mem-mib", "256"))
    share = o.get("share", "on")
    dom = ET.Element("domain", {"type": o.get("type", "qemu")})
    ET.SubElement(dom, "name").text = o["name"]
    ET.SubElement(dom, "memory", {"unit": "MiB"}).text = str(mib)
    ET.SubElement(dom, "vcpu").text = "1"
    os_ = ET.SubElement(dom, "os")
    ET.SubElement(os_, "type", {"arch": "x86_64", "machine": o.get("machine", "pc")}).text = "hvm"
    ET.SubElement(os_, "kernel").text = o["kernel"]
    ET.SubElement(os_, "initrd").text = o["initrd"]
    ET.SubElement(os_, "cmdline").text = o.get("cmdline", DEFAULT_CMDLINE)
    feat = ET.SubElement(dom, "features")
    ET.SubElement(feat, "acpi")
    ET.SubElement(dom, "clock", {"offset": "utc"})
    for ev in ("on_poweroff", "on_reboot", "on_crash"):
        ET.SubElement(dom, ev).text = "destroy"
    dev = ET.SubElement(dom, "devices")
    ET.SubElement(dev, "emulator").text = o.get("emulator", "/usr/bin/qemu-system-x86_64")
    disk = ET.SubElement(dev, "disk", {"type": "file", "device": "disk"})
    ET.SubElement(disk, "driver", {"name": "qemu", "type": "raw", "discard": "unmap"})
    ET.SubElement(disk, "source", {"file": o["disk"]})
    ET.SubElement(disk, "target", {"dev": "vda", "bus": "virtio"})
    ET.SubElement(dev, "controller", {"type": "usb", "model": "none"})
    ser = ET.SubElement(dev, "serial", {"type": "unix"})
    ET.SubElement(ser, "source", {"mode": "bind", "path": o["console"]})
    ET.SubElement(ser, "target", {"port": "0"})
    if o.get("log"):
        ET.SubElement(ser, "log", {"file": o["log"], "append": "off"})
    con = ET.SubElement(dev, "console", {"type": "unix"})
    ET.SubElement(con, "source", {"mode": "bind", "path": o["console"]})
    ET.SubElement(con, "target", {"type": "serial", "port": "0"})
    ET.SubElement(dev, "memballoon", {"model": "virtio", "freePageReporting": "on"})
    cl = ET.SubElement(dom, Q + "commandline")
    args = ["-object",
            "memory-backend-file,id=cl-ram,size=%dM,mem-path=%s,share=%s"
            % (mib, qemu_opt_escape(o["mem"]), share),
            "-machine", "memory-backend=cl-ram"]
    if o.get("incoming"):
        args += ["-incoming", "defer"]
    for a in args:
        ET.SubElement(cl, Q + "arg", {"value": a})
    return dom


def memobj_get(dom):
    cl = dom.find(Q + "commandline")
    if cl is None:
        return None, None
    for a in cl.findall(Q + "arg"):
        v = a.get("value", "")
        if v.startswith("memory-backend-file,"):
            return a, v
    return None, None


def split_qemu_opts(v):
    # split on single commas (",," is an escaped comma)
    parts, cur, i = [], "", 0
    while i < len(v):
        if v[i] == ",":
            if i + 1 < len(v) and v[i + 1] == ",":
                cur += ","
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += v[i]
        i += 1
    parts.append(cur)
    return parts


def join_qemu_opts(parts):
    return ",".join(qemu_opt_escape(p) for p in parts)


def mem_opts(dom):
    _, v = memobj_get(dom)
    if v is None:
        return {}
    d = {}
    for p in split_qemu_opts(v)[1:]:
        if "=" in p:
            k, val = p.split("=", 1)
            d[k] = val
    return d


def set_mem_opt(dom, key, val):
    a, v = memobj_get(dom)
    if a is None:
        die("no memory-backend-file in the XML")
    parts = split_qemu_opts(v)
    out, done = [parts[0]], False
    for p in parts[1:]:
        if p.startswith(key + "="):
            out.append(key + "=" + val)
            done = True
        else:
            out.append(p)
    if not done:
        out.append(key + "=" + val)
    a.set("value", join_qemu_opts(out))


def set_incoming(dom, on):
    cl = dom.find(Q + "commandline")
    args = cl.findall(Q + "arg")
    for i, a in enumerate(args):
        if a.get("value") == "-incoming":
            cl.remove(a)
            if i + 1 < len(args):
                cl.remove(args[i + 1])
            break
    if on:
        ET.SubElement(cl, Q + "arg", {"value": "-incoming"})
        ET.SubElement(cl, Q + "arg", {"value": "defer"})


def edit_xml(dom, o):
    if "name" in o:
        dom.find("name").text = o["name"]
        # a stored XML may carry the uuid of the domain it came from
        u = dom.find("uuid")
        if u is not None:
            dom.remove(u)
    if "type" in o:
        dom.set("type", o["type"])
    if "machine" in o:
        dom.find("os/type").set("machine", o["machine"])
    if "kernel" in o:
        dom.find("os/kernel").text = o["kernel"]
    if "initrd" in o:
        dom.find("os/initrd").text = o["initrd"]
    if "disk" in o:
        dom.find("devices/disk/source").set("file", o["disk"])
    if "console" in o:
        for tag in ("serial", "console"):
            for e in dom.findall("devices/" + tag):
                e.find("source").set("path", o["console"])
    if "log" in o:
        ser = dom.find("devices/serial")
        lg = ser.find("log")
        if lg is None:
            lg = ET.SubElement(ser, "log", {"append": "off"})
        lg.set("file", o["log"])
    if "mem" in o:
        set_mem_opt(dom, "mem-path", o["mem"])
    if "share" in o:
        set_mem_opt(dom, "share", o["share"])
    if o.get("incoming"):
        set_incoming(dom, True)
    if o.get("no-incoming"):
        set_incoming(dom, False)


def xml_get(dom, field):
    if field == "name":
        return dom.findtext("name")
    if field == "type":
        return dom.get("type")
    if field == "machine":
        return dom.find("os/type").get("machine")
    if field == "kernel":
        return dom.findtext("os/kernel")
    if field == "initrd":
        return dom.findtext("os/initrd")
    if field == "disk":
        return dom.find("devices/disk/source").get("file")
    if field == "console":
        return dom.find("devices/serial/source").get("path")
    if field == "log":
        lg = dom.find("devices/serial/log")
        return lg.get("file") if lg is not None else ""
    if field == "mem":
        return mem_opts(dom).get("mem-path", "")
    if field == "share":
        return mem_opts(dom).get("share", "")
    die("unknown field " + field)


def dump(dom):
    ET.indent(dom)
    sys.stdout.write(ET.tostring(dom, encoding="unicode") + "\n")


def load(path):
    data = sys.stdin.read() if path == "-" else open(path).read()
    return ET.fromstring(data)


# ---------------------------------------------------------------- console
def connect(path, deadline):
    last = None
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError as e:
            last = e
            s.close()
            time.sleep(0.2)
    die("cannot connect to %s: %s" % (path, last), 124)


def recv_until(s, buf, pattern, deadline):
    """Read into buf (bytearray) until regex pattern matches; return match or None."""
    while True:
        m = pattern.search(buf)
        if m:
            return m
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(min(left, 1.0))
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        if not d:
            return pattern.search(buf)
        buf += d


def console_cmd(sock, timeout, cmd):
    if "\n" in cmd:
        die("console-cmd: the command must be one line")
    if len(cmd) > 3800:
        die("console-cmd: command too long for the tty line buffer (%d bytes)" % len(cmd))
    deadline = time.monotonic() + timeout
    tag = uuid.uuid4().hex[:12]
    s = connect(sock, deadline)
    # The tty echoes our input; the quotes keep the echoed line from matching the markers.
    # The leading newline is a sacrifice: right after a resume the guest's UART
    # can drop the first byte it receives.
    line = '\necho CL""-B-%s; { %s ; }; echo CL""-E-%s-$?\n' % (tag, cmd, tag)
    s.sendall(line.encode())
    buf = bytearray()
    # A respawn notice counts only after the tty echoed our line (an older one may be pending).
    pat = re.compile(rb"CL-E-%s-(\d+)|CL\"\"-E-%s-\$\?\r?\n(?:.|\n)*?(CLOUDLET-SHELL-RESPAWN)"
                     % (tag.encode(), tag.encode()))
    m = recv_until(s, buf, pat, deadline)
    if m is None:
        try:
            s.sendall(b"\x03\n")
        except OSError:
            pass
        s.close()
        tail = bytes(buf[-2000:]).decode("latin-1")
        die("timeout after %ss waiting for the guest to run: %s\n--- console tail ---\n%s"
            % (timeout, cmd[:300], tail), 124)
    s.close()
    if m.group(1) is None:  # the shell died (respawn notice after our line)
        die("the guest shell died running: %s (syntax error?)\n%s"
            % (cmd[:300], bytes(buf[-2000:]).decode("latin-1")), 125)
    text = bytes(buf).decode("latin-1")
    # A kernel message may land on the marker's line: the output starts after that line.
    b = re.search(r"CL-B-%s[^\n]*\n" % tag, text)
    if b is None:
        die("console-cmd: no start marker in the guest's output:\n%s" % text[-2000:])
    out = text[b.end():m.start()]
    sys.stdout.write(out.replace("\r\n", "\n").replace("\r", ""))
    sys.stdout.flush()
    sys.exit(int(m.group(1)))


def console_type(sock, timeout, line):
    deadline = time.monotonic() + timeout
    n = int(time.time() * 1000)
    tag = "CL-DONE-type-%d" % n
    s = connect(sock, deadline)
    # The quotes keep the tty's echo of the line from matching the marker.
    s.sendall(('%s\necho CL""-DONE-type-%d\n' % (line, n)).encode())
    buf = bytearray()
    m = recv_until(s, buf, re.compile(re.escape(tag.encode())), deadline)
    s.close()
    if m is None:
        code = 124 if time.monotonic() >= deadline else 125
        sys.stderr.write("%s typing: %s\n%s\n" % ("timeout" if code == 124 else "console closed",
                                                  line, bytes(buf[-2000:]).decode("latin-1")))
        sys.exit(code)
    sys.stdout.write(bytes(buf).decode("latin-1").replace("\r", ""))


def console_wait(sock, timeout):
    deadline = time.monotonic() + timeout
    tag = uuid.uuid4().hex[:12]
    pat = re.compile(rb"CL-R-%s" % tag.encode())
    buf = bytearray()
    s = None
    while time.monotonic() < deadline:
        if s is None:
            s = connect(sock, deadline)
        try:
            s.sendall(b'\necho CL""-R-%s\n' % tag.encode())
        except OSError:
            s.close()
            s = None
            continue
        if recv_until(s, buf, pat, min(deadline, time.monotonic() + 3)):
            s.close()
            return 0
    tail = bytes(buf[-2000:]).decode("latin-1")
    die("guest shell did not answer within %ss\n--- console tail ---\n%s" % (timeout, tail), 124)


# ---------------------------------------------------------------- migration streams
def mig_recv(path, out, timeout):
    deadline = time.monotonic() + timeout
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    os.chmod(path, 0o777)
    ls.listen(1)
    ls.settimeout(max(1, deadline - time.monotonic()))
    try:
        c, _ = ls.accept()
    except socket.timeout:
        die("mig-recv: nobody connected to %s within %ss" % (path, timeout), 124)
    n = 0
    with open(out + ".part", "wb") as f:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                die("mig-recv: stream not finished within %ss (%d bytes)" % (timeout, n), 124)
            c.settimeout(min(left, 5))
            try:
                d = c.recv(1 << 20)
            except socket.timeout:
                continue
            if not d:
                break
            f.write(d)
            n += len(d)
        f.flush()
        os.fsync(f.fileno())
    c.close()
    ls.close()
    os.unlink(path)
    if n == 0:
        die("mig-recv: empty stream")
    os.rename(out + ".part", out)
    return 0


def mig_send(path, inp, timeout):
    deadline = time.monotonic() + timeout
    s = connect(path, deadline)
    s.settimeout(max(1, deadline - time.monotonic()))
    with open(inp, "rb") as f:
        while True:
            d = f.read(1 << 20)
            if not d:
                break
            s.sendall(d)
    s.shutdown(socket.SHUT_WR)
    # QEMU closes when it has read the whole stream
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
    return 0


def page_diff(a, b):
    ps = 4096
    diff = nz_a = nz_b = total = 0
    zero = bytes(ps)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(ps * 256)
            y = fb.read(ps * 256)
            if not x and not y:
                break
            n = max(len(x), len(y))
            x = x.ljust(n, b"\0")
            y = y.ljust(n, b"\0")
            for off in range(0, n, ps):
                px, py = x[off:off + ps], y[off:off + ps]
                total += 1
                if px != py:
                    diff += 1
                if px != zero[:len(px)]:
                    nz_a += 1
                if py != zero[:len(py)]:
                    nz_b += 1
    print("pages=%d differ=%d nonzero_a=%d nonzero_b=%d" % (total, diff, nz_a, nz_b))
    return 0


def main():
    if len(sys.argv) < 2:
        die(__doc__)
    cmd, argv = sys.argv[1], sys.argv[2:]
    if cmd == "xml":
        o, _ = parse_opts(argv, flags=("incoming",))
        for k in ("name", "kernel", "initrd", "disk", "mem", "console"):
            if k not in o:
                die("xml: --%s is required" % k)
        dump(build_xml(o))
    elif cmd == "xml-edit":
        o, pos = parse_opts(argv, flags=("incoming", "no-incoming"))
        if len(pos) != 1:
            die("xml-edit IN [options]")
        dom = load(pos[0])
        edit_xml(dom, o)
        dump(dom)
    elif cmd == "xml-get":
        if len(argv) != 2:
            die("xml-get IN FIELD")
        print(xml_get(load(argv[0]), argv[1]) or "")
    elif cmd == "console-cmd":
        if len(argv) != 3:
            die("console-cmd SOCK TIMEOUT CMD")
        console_cmd(argv[0], float(argv[1]), argv[2])
    elif cmd == "console-type":
        if len(argv) != 3:
            die("console-type SOCK TIMEOUT LINE")
        console_type(argv[0], float(argv[1]), argv[2])
    elif cmd == "console-wait":
        sys.exit(console_wait(argv[0], float(argv[1])))
    elif cmd == "mig-recv":
        sys.exit(mig_recv(argv[0], argv[1], float(argv[2])))
    elif cmd == "mig-send":
        sys.exit(mig_send(argv[0], argv[1], float(argv[2])))
    elif cmd == "qmp-status":
        import json
        try:
            r = json.loads(argv[0])
            print(r.get("return", {}).get("status", "none"))
        except Exception:
            print("error")
    elif cmd == "page-diff":
        sys.exit(page_diff(argv[0], argv[1]))
    else:
        die("unknown command " + cmd)


if __name__ == "__main__":
    main()
