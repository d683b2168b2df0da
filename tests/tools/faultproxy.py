#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""faultproxy: an HTTP proxy in front of a real origin (nginx) that injects
the faults the origin cannot produce, for the fault matrix tests.

    faultproxy.py ORIGIN_PORT PORT_FILE LOG_FILE

Listens on 127.0.0.1 (a free port, written to PORT_FILE once it listens).
A request for /FAULT/COUNT/MINOFF/PATH is forwarded as /PATH to the origin;
the first COUNT data requests of that prefix (GET of a file named
overlay-blob with a Range starting at MINOFF or later: not the probe, nor
the fetch of the first segments, which a mount needs) get the fault, the
rest (and every HEAD, probe and meta request) pass unchanged.
COUNT "all" means every one. FAULT is:
  pass    nothing
  s5xx    answer 500, then 503, alternately, instead of forwarding
  trunc   the origin's status and headers (Content-Length as is), half the
          body, then the connection is closed
  stall   the origin's status and headers and 1/8 of the body, then nothing
          more while the socket stays open (until the client gives up, or
          120 s)
Each request is logged to LOG_FILE as "FAULT COUNT METHOD RANGE ACTION".
"""
import http.client
import http.server
import os
import sys
import threading
import time

ORIGIN = int(sys.argv[1])
PORT_FILE, LOG_FILE = sys.argv[2], sys.argv[3]
PASS_HEADERS = ("content-type", "content-length", "content-range", "accept-ranges", "etag",
                "last-modified", "location")
lock = threading.Lock()
counts = {}
log = open(LOG_FILE, "a", buffering=1)


def take(prefix, count):
    """True if this data request of prefix gets the fault."""
    with lock:
        n = counts.get(prefix, 0)
        counts[prefix] = n + 1
    return count == "all" or n < int(count)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_one(self, body):
        parts = self.path.split("/", 4)
        if len(parts) < 5 or parts[1] not in ("pass", "s5xx", "trunc", "stall"):
            self.send_error(404)
            return
        fault, count, path = parts[1], parts[2], "/" + parts[4]
        rng = self.headers.get("Range")
        data = (body and path.endswith("/overlay-blob") and rng is not None
                and rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit()
                and int(rng[6:].split("-")[0]) >= int(parts[3]))
        action = fault if data and fault != "pass" and take(fault + "/" + count, count) else "pass"
        log.write("%s %s %s %s %s\n" % (fault, count, self.command, rng or "-", action))
        if action == "s5xx":
            with lock:
                n = counts[fault + "/" + count]
            msg = b"injected failure\n"
            self.send_response(500 if n % 2 else 503)
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        conn = http.client.HTTPConnection("127.0.0.1", ORIGIN, timeout=60)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() in ("range", "if-range")}
        conn.request(self.command, path, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read() if body else b""
        conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in PASS_HEADERS:
                self.send_header(k, v)
        self.end_headers()
        if action == "trunc":
            self.wfile.write(payload[:len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif action == "stall":
            self.wfile.write(payload[:len(payload) // 8])
            self.wfile.flush()
            self.close_connection = True
            # Hold the socket open without sending until the peer closes.
            self.connection.settimeout(0.2)
            end = time.monotonic() + 120
            while time.monotonic() < end:
                try:
                    if self.connection.recv(4096) == b"":
                        break
                except OSError as e:
                    if not isinstance(e, TimeoutError) and "timed out" not in str(e):
                        break
        else:
            self.wfile.write(payload)

    def do_GET(self):
        self.handle_one(True)

    def do_HEAD(self):
        self.handle_one(False)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


srv = Server(("127.0.0.1", 0), Handler)
tmp = PORT_FILE + ".tmp"
with open(tmp, "w") as f:
    f.write("%d\n" % srv.server_address[1])
os.rename(tmp, PORT_FILE)
srv.serve_forever()
