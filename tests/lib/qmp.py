# SPDX-License-Identifier: GPL-2.0-only
"""A QMP client for shell tests that run QEMU without libvirt
(tests/shell/postcopy_qemu.sh). Every wait is bounded.

    qmp.py SOCK run JSON...              runs each command, prints each return as JSON
    qmp.py SOCK wait-status STATUS SECS  until query-status says STATUS
    qmp.py SOCK wait-migration SECS      until query-migrate ends; prints the status,
                                         exit 0 only for "completed"
"""
import json
import socket
import sys
import time


def die(msg, code=1):
    sys.stderr.write("qmp.py: %s\n" % msg)
    sys.exit(code)


class QMP:
    def __init__(self, path, deadline):
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError as e:
                self.s.close()
                if time.monotonic() > deadline:
                    die("cannot connect to %s: %s" % (path, e))
                time.sleep(0.05)
        self.s.settimeout(max(1.0, deadline - time.monotonic()))
        self.f = self.s.makefile("rwb", buffering=0)
        if "QMP" not in self.read():
            die("no QMP greeting on %s" % path)
        self.cmd({"execute": "qmp_capabilities"})

    def read(self):
        line = self.f.readline()
        if not line:
            die("QMP connection closed")
        return json.loads(line)

    def cmd(self, msg):
        self.f.write(json.dumps(msg).encode() + b"\n")
        while True:
            r = self.read()
            if "error" in r:
                die("%s: %s" % (msg.get("execute"), r["error"].get("desc")))
            if "return" in r:
                return r["return"]


def main():
    if len(sys.argv) < 3:
        die(__doc__, 2)
    path, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    secs = float(args[-1]) if mode.startswith("wait") else 30.0
    deadline = time.monotonic() + secs
    q = QMP(path, deadline)
    if mode == "run":
        for a in args:
            print(json.dumps(q.cmd(json.loads(a))))
    elif mode == "wait-status":
        while q.cmd({"execute": "query-status"}).get("status") != args[0]:
            if time.monotonic() > deadline:
                die("status not %s within %ss" % (args[0], secs))
            time.sleep(0.01)
    elif mode == "wait-migration":
        while True:
            st = q.cmd({"execute": "query-migrate"}).get("status", "none")
            if st in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        print(st)
        sys.exit(0 if st == "completed" else 1)
    else:
        die("unknown mode " + mode, 2)


if __name__ == "__main__":
    main()
