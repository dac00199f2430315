#!/usr/bin/env python3
"""The /tmp/tcp_test.py pattern with attribution.

A client sends SIZE bytes, shutdown(SHUT_WR)s and reads the echo back with a
blocking recv(); the server reads to EOF, echoes, closes. For each run the
outcome of the client's first recv() is tallied, and on EAGAIN the client's
TCP state before and after the recv() and the time since shutdown() are
recorded (FIN_WAIT1 -> FIN_WAIT2 means the delayed ACK of our FIN woke us).

usage: halfclose.py [--cgroup DIR] [--runs N] [--size BYTES] [--think-ms MS]
(--cgroup: join DIR first, e.g. the cgroup sockacceld is attached to)
"""
import argparse
import collections
import os
import socket
import threading
import time

STATES = {1: "ESTABLISHED", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
          7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 11: "CLOSING"}


def state(s):
    return STATES.get(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0], "?")


def one(size, think_ms):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    data = os.urandom(size)

    def serve():
        c, _ = srv.accept()
        chunks = []
        while True:
            try:
                d = c.recv(65536)
            except BlockingIOError:
                continue
            if not d:
                break
            chunks.append(d)
        time.sleep(think_ms / 1000.0)
        c.sendall(b"".join(chunks))
        c.close()

    t = threading.Thread(target=serve)
    t.start()
    cl = socket.create_connection(srv.getsockname())
    cl.sendall(data)
    cl.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    before = state(cl)
    result = "ok"
    try:
        first = cl.recv(65536)
    except BlockingIOError:
        result = "EAGAIN %s->%s after %.1f ms" % (before, state(cl), (time.monotonic() - t0) * 1000)
        first = b""
    got = [first]
    while True:
        try:
            d = cl.recv(65536)
        except BlockingIOError:
            continue
        if not d:
            break
        got.append(d)
    t.join()
    cl.close()
    srv.close()
    if b"".join(got) != data:
        result += " DATA-MISMATCH"
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cgroup")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--size", type=int, default=1 << 20)
    ap.add_argument("--think-ms", type=float, default=0,
                    help="server pause between EOF and the echo")
    a = ap.parse_args()
    if a.cgroup:
        with open(os.path.join(a.cgroup, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    tally = collections.Counter()
    for _ in range(a.runs):
        r = one(a.size, a.think_ms)
        key = r.split(" after ")[0] if r.startswith("EAGAIN") else r
        tally[key] += 1
        if r.startswith("EAGAIN"):
            tally["_ms"] = max(tally["_ms"], float(r.split(" after ")[1].split()[0]))
    worst = tally.pop("_ms", None)
    print("runs=%d size=%d think=%gms %s%s" % (a.runs, a.size, a.think_ms, dict(tally),
                                     " (latest EAGAIN %.1f ms after shutdown)" % worst if worst else ""))


if __name__ == "__main__":
    main()
