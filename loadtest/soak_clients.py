#!/usr/bin/env python3
"""Clients for loadtest/soak.sh that wrk cannot be: CONNECT tunnels and hostile clients.

Usage: soak_clients.py PROXY_HOST:PORT ORIGIN_PORT SECONDS
Runs until SECONDS have passed, then prints one JSON line of counts. "bad" counts replies
that are wrong for what was sent (a hostile request answered 2xx, a tunnel that does not
carry the origin's reply) and waits longer than 15 s; "refused" counts connections the
proxy did not take (it may be restarting).
"""
import json
import random
import socket
import sys
import threading
import time

PROXY_HOST, PROXY_PORT = sys.argv[1].rsplit(":", 1)
PROXY = (PROXY_HOST, int(PROXY_PORT))
ORIGIN_PORT = int(sys.argv[2])
DEADLINE = time.monotonic() + float(sys.argv[3])
COUNTS = {}
LOCK = threading.Lock()


def count(kind):
    with LOCK:
        COUNTS[kind] = COUNTS.get(kind, 0) + 1


def read_until(s, done=lambda data: False, limit=4 << 20):
    """Bytes until `done(data)`, `limit` bytes or the close (the proxy may keep it open)."""
    data = b""
    while len(data) < limit and not done(data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def read_status_line(s):
    return read_until(s, lambda data: b"\r\n" in data, 65536)


def status_of(data):
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def connect():
    s = socket.create_connection(PROXY, timeout=15)
    s.settimeout(15)
    return s


def tunnel():
    s = connect()
    try:
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-Liveweb-Mode: forward\r\n\r\n" % (ORIGIN_PORT, ORIGIN_PORT))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        if status_of(head) != 200:
            return "tunnel-bad"
        s.sendall(b"GET /static/1k.bin HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
        reply = head.split(b"\r\n\r\n", 1)[1] + read_until(s)
        parts = reply.split(b"\r\n\r\n", 1)
        ok = status_of(reply) == 200 and len(parts) == 2 and len(parts[1]) == 1024
        return "tunnel-ok" if ok else "tunnel-bad"
    finally:
        s.close()


HOSTILE = {
    # what to send, which statuses are right (None: the proxy may just close)
    "garbage": (lambda: bytes(random.getrandbits(8) for _ in range(300)) + b"\r\n\r\n", {400, None}),
    "huge-head": (lambda: b"GET http://127.0.0.1:%d/static/1k.bin HTTP/1.1\r\nX: " % ORIGIN_PORT + b"a" * 200000 + b"\r\n\r\n", {431, 400, None}),
    "smuggle": (lambda: b"GET http://127.0.0.1:%d/static/1k.bin HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % ORIGIN_PORT, {400}),
    "bad-url": (lambda: b"GET http://[::1/x HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    "bad-version": (lambda: b"GET http://127.0.0.1/ HTTP/9.9\r\n\r\n", {400, 505}),
    "connect-port": (lambda: b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\nX-Liveweb-Mode: forward\r\n\r\n", {403}),
    "private-upstream": (lambda: b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: x\r\n\r\n", {403}),
}


def hostile(kind):
    make, allowed = HOSTILE[kind]
    s = connect()
    try:
        try:
            s.sendall(make())
            if kind == "garbage":
                s.shutdown(socket.SHUT_WR)
            reply = read_status_line(s)
        except ConnectionResetError:
            reply = b""
        st = status_of(reply) if reply else None
        return "hostile-ok" if st in allowed else "hostile-bad:%s:%s" % (kind, st)
    finally:
        s.close()


def slowloris():
    # Half a request head, then silence: the proxy must answer 408 (or close) on its own.
    s = connect()
    try:
        s.sendall(b"GET http://127.0.0.1:%d/static/1k.bin HTTP/1.1\r\nHost: x\r\n" % ORIGIN_PORT)
        reply = read_until(s, limit=1 << 16)
        st = status_of(reply) if reply else None
        return "slowloris-ok" if st in {408, None} else "slowloris-bad:%s" % st
    finally:
        s.close()


def early_close():
    s = connect()
    s.sendall(b"GET http://127.0.0.1:%d/static/1m.bin HTTP/1.1\r\nHost: x\r\n\r\n" % ORIGIN_PORT)
    s.recv(100)
    s.close()
    return "early-close"


def worker(jobs):
    while time.monotonic() < DEADLINE:
        job = random.choice(jobs)
        try:
            count(job())
        except socket.timeout:
            count("bad-timeout:" + job.__name__)
        except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError) as e:
            count("refused:" + type(e).__name__)
        time.sleep(0.01)


def main():
    jobs_a = [tunnel] * 4 + [early_close]
    jobs_b = []
    for k in HOSTILE:
        job = lambda k=k: hostile(k)  # noqa: E731
        job.__name__ = k
        jobs_b.append(job)
    threads = [threading.Thread(target=worker, args=(jobs_a,)) for _ in range(2)]
    threads += [threading.Thread(target=worker, args=(jobs_b,)) for _ in range(2)]
    threads += [threading.Thread(target=worker, args=([slowloris],)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(COUNTS, sort_keys=True))


main()
