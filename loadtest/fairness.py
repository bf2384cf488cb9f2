#!/usr/bin/env python3
"""Fairness of the fetch queue, measured: client A (127.0.0.2) floods N unique URLs at a slow
origin (DELAY each) while client B (127.0.0.3) asks for M URLs once A's backlog is queued;
prints B's waits (median, max) against the fetch time and A's total. Everything on loopback,
bounded (a deadline on every socket); liveweb and the origin are stopped at the end.

    loadtest/fairness.py [N=2000] [M=20] [DELAY=0.2]

Uses the release build (cargo build --release) with default flags, except the per-client
connection and queue caps raised so all of A's N fetches wait in the queue, and
--max-fetches-per-host 8 (a polite cap, so A's backlog is long).
"""
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
M = int(sys.argv[2]) if len(sys.argv) > 2 else 20
DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0.2


class Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(DELAY)
        body = b"x" * 512
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.request_queue_size = 4096
origin = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
origin.daemon_threads = True
threading.Thread(target=origin.serve_forever, daemon=True).start()
oport = origin.server_address[1]

data = tempfile.mkdtemp()
proxy = subprocess.Popen(
    ["target/release/liveweb", "--listen", "127.0.0.1:0", "--data-dir", data,
     "--allow-upstream", "127.0.0.0/8", "--max-connections-per-client", str(N + 100),
     "--max-queue-per-client", str(N + 100), "--max-fetches-per-host", "8",
     "--read-timeout", "60s", "--queue-timeout", "600s"],
    stderr=subprocess.PIPE, text=True)
try:
    line = ""
    while "listening on" not in line:
        line = proxy.stderr.readline()
        if not line:
            sys.exit("liveweb did not start")
    addr = next(w for w in line.split() if w.startswith("127.0.0.1:")).rstrip(",")
    host, port = addr.split(":")
    port = int(port)

    def get(source, path, waits):
        s = socket.socket()
        s.settimeout(600)
        s.bind((source, 0))
        s.connect((host, port))
        start = time.monotonic()
        s.sendall(f"GET http://127.0.0.1:{oport}{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        s.close()
        ok = reply.startswith(b"HTTP/1.1 200")
        waits.append((time.monotonic() - start, ok))

    a_waits, b_waits = [], []
    t0 = time.monotonic()
    a = [threading.Thread(target=get, args=("127.0.0.2", f"/a/{i}", a_waits)) for i in range(N)]
    for t in a:
        t.start()
    time.sleep(2)  # A's requests are all sent and queued behind the slots
    b = [threading.Thread(target=get, args=("127.0.0.3", f"/b/{i}", b_waits)) for i in range(M)]
    for t in b:
        t.start()
    for t in b:
        t.join()
    b_done = time.monotonic() - t0
    for t in a:
        t.join()
    a_done = time.monotonic() - t0
    bw = [w for w, _ in b_waits]
    print(f"A: {N} URLs, {sum(ok for _, ok in a_waits)} answered 200, all done after {a_done:.1f} s")
    print(f"B: {M} URLs, {sum(ok for _, ok in b_waits)} answered 200, all done {b_done:.1f} s after A started")
    print(f"B's wait: median {statistics.median(bw):.2f} s, max {max(bw):.2f} s "
          f"(one fetch takes {DELAY:.2f} s; A's backlog alone would take {N * DELAY / 8:.0f} s at 8 per origin)")
finally:
    proxy.terminate()
    proxy.wait(timeout=60)
    origin.shutdown()
