#!/usr/bin/env python3
"""cgroup v2 freeze/thaw (docker pause/unpause, systemctl freeze) of a process
blocked in recv() on an accelerated socket.

A child process blocks in recv(); it is moved to a child cgroup FREEZE_DIR,
frozen and thawed (cgroup.freeze 1 -> 0); then the peer sends one byte.
Prints the child's recv() outcome per run.

usage: freeze.py --cgroup DIR [--runs N]
(the sockets are created in DIR: a cgroup sockacceld is attached to, or a
plain cgroup as the control)
"""
import argparse
import collections
import os
import socket
import time


def sleeping(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "S"


def wait_file(path, want, timeout=2.0):
    end = time.time() + timeout
    while time.time() < end:
        with open(path) as f:
            if want in f.read():
                return True
        time.sleep(0.001)
    return False


def one(frz):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            res = "ok" if c.recv(1) == b"x" else "short"
        except BlockingIOError:
            res = "EAGAIN"
        except OSError as e:
            res = "err%d" % e.errno
        os.write(w, res.encode())
        os._exit(0)
    os.close(w)
    while not sleeping(pid):
        time.sleep(0.001)
    time.sleep(0.005)
    with open(os.path.join(frz, "cgroup.procs"), "w") as f:
        f.write(str(pid))
    with open(os.path.join(frz, "cgroup.freeze"), "w") as f:
        f.write("1")
    wait_file(os.path.join(frz, "cgroup.events"), "frozen 1")
    with open(os.path.join(frz, "cgroup.freeze"), "w") as f:
        f.write("0")
    wait_file(os.path.join(frz, "cgroup.events"), "frozen 0")
    time.sleep(0.005)
    s.send(b"x")
    res = os.read(r, 64).decode()
    os.waitpid(pid, 0)
    os.close(r)
    for x in (c, s, srv):
        x.close()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cgroup", required=True)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    base = a.cgroup
    with open(os.path.join(base, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
    frz = os.path.join(base, "freeze_%d" % os.getpid())
    os.mkdir(frz)
    try:
        tally = collections.Counter(one(frz) for _ in range(a.runs))
    finally:
        os.rmdir(frz)
    print("freeze/thaw runs=%d cgroup=%s %s" % (a.runs, base, dict(tally)))


if __name__ == "__main__":
    main()
