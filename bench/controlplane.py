#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# The control-plane scenario of bench/run: what operating sockacceld costs, against a map
# holding N sockets. bench/run starts the daemon (attached to its private cgroup, with a map
# large enough) and calls this once; it prints one JSON line.
#
# For each size it has `sockaccel-bench hold` open N/2 idle loopback connections in the cgroup
# (N sockets in the sockhash), then measures
#   - the `status` round trip: as an operator sees it (running `sockaccelctl status`, process
#     start included) and on the wire (one request/response on an open control connection);
#   - `sockaccelctl flush-map`: wall time and the daemon's own elapsed_ms. Every socket must
#     leave the map and nothing may stay pending: the connections are idle, so the lossless
#     drain has nothing to wait for;
#   - the daemon's resident memory (VmRSS) and the kernel memory its BPF maps are charged
#     (memlock in /proc/PID/fdinfo).
# then lets the hold tool check that every connection still carries a byte each way.
# With --stop-sockets N it ends with the stop itself: N sockets idle in the map, SIGTERM, the
# time until the daemon has exited, whether its pin directory is gone (everything drained and
# unpinned), and again every connection checked. bench/run reaps the daemon afterwards.
# bench/run runs it once per drain backend the kernel loads (status.drain.backend says which).
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def bpf_map_memlock_bytes(pid):
    """Sum of memlock over the daemon's BPF map descriptors (each map counted once)."""
    seen, total = set(), 0
    fd_dir = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fd_dir):
        try:
            info = dict(line.split(":", 1) for line in open(f"{fd_dir}/{fd}") if ":" in line)
        except OSError:
            continue  # closed meanwhile
        if "map_type" in info and "map_id" in info and "memlock" in info:
            map_id = info["map_id"].strip()
            if map_id not in seen:
                seen.add(map_id)
                total += int(info["memlock"])
    return total


class Control:
    """One open connection to the daemon's control socket (JSON lines, protocol v1)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")
        self.next_id = 1

    def call(self, cmd):
        self.sock.sendall(json.dumps({"v": 1, "id": self.next_id, "cmd": cmd}).encode() + b"\n")
        self.next_id += 1
        resp = json.loads(self.file.readline())
        if not resp.get("ok"):
            raise RuntimeError(f"{cmd}: {resp}")
        return resp["result"]

    def close(self):
        self.file.close()
        self.sock.close()


def ms_median(fn, runs):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"p50": statistics.median(times), "min": min(times), "max": max(times), "runs": runs}


class Hold:
    """`sockaccel-bench hold`: `sockets` sockets (idle loopback connections) in the cgroup,
    until verify() has every connection carry a byte each way."""

    def __init__(self, a, sockets):
        self.proc = subprocess.Popen([a.tool, "hold", "--connections", str(sockets // 2),
                                      "--cgroup", a.cgroup],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ready = json.loads(self.proc.stdout.readline() or "{}")
        if self.ready.get("state") != "ready":
            self.close()
            raise RuntimeError(f"hold tool did not get ready (exit {self.proc.returncode})")

    def verify(self, after):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        done = json.loads(self.proc.stdout.readline() or "{}")
        if self.proc.wait() != 0 or done.get("state") != "done":
            raise RuntimeError(f"hold tool failed after the {after} (exit {self.proc.returncode})")
        return done["verify_seconds"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def measure_size(a, sockets):
    hold = Hold(a, sockets)
    try:
        ready = hold.ready
        ctl = Control(a.socket)
        entries = ctl.call("status")["map"]["entries"]
        if entries < sockets:
            raise RuntimeError(f"only {entries} of {sockets} sockets are in the map")
        out = {"sockets": sockets, "map_entries": entries, "open_seconds": ready["open_seconds"],
               "rss_kib_loaded": vm_rss_kib(a.daemon_pid)}
        out["status_wire_ms"] = ms_median(lambda: ctl.call("status"), a.status_runs * 4)
        ctl.close()
        out["status_cli_ms"] = ms_median(
            lambda: subprocess.run([a.ctl, "--socket", a.socket, "status"], check=True,
                                   stdout=subprocess.DEVNULL), a.status_runs)
        t0 = time.perf_counter()
        flush = json.loads(subprocess.run([a.ctl, "--socket", a.socket, "--json", "flush-map"],
                                          check=True, capture_output=True, text=True).stdout)
        out["flush_cli_ms"] = (time.perf_counter() - t0) * 1e3
        out["flush"] = flush
        if flush["flushed"] < entries or flush["pending"] or flush["dropped_sockets"]:
            raise RuntimeError(f"flush-map of {entries} sockets left some behind or dropped some: {flush}")
        out["rss_kib_after_flush"] = vm_rss_kib(a.daemon_pid)
        out["verify_seconds"] = hold.verify("flush")
        return out
    finally:
        hold.close()


def measure_stop(a, sockets):
    """SIGTERM with `sockets` idle sockets in the map: the stop drains them all."""
    hold = Hold(a, sockets)
    try:
        ctl = Control(a.socket)
        entries = ctl.call("status")["map"]["entries"]
        ctl.close()
        t0 = time.perf_counter()
        os.kill(a.daemon_pid, signal.SIGTERM)
        # Not our child (bench/run started it), so no wait(): watch /proc. A benchmark may poll.
        while os.path.exists(f"/proc/{a.daemon_pid}") and \
                open(f"/proc/{a.daemon_pid}/stat").read().split()[2] != "Z":
            time.sleep(0.002)
        out = {"sockets": sockets, "map_entries": entries,
               "stop_ms": (time.perf_counter() - t0) * 1e3,
               "pin_dir_removed": not os.path.exists(a.pin_dir)}
        out["verify_seconds"] = hold.verify("stop")
        if not out["pin_dir_removed"]:
            raise RuntimeError(f"the stop left state pinned in {a.pin_dir} with idle sockets only")
        return out
    finally:
        hold.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--ctl", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--daemon-pid", required=True, type=int)
    ap.add_argument("--cgroup", required=True)
    ap.add_argument("--sizes", default="10000,100000", help="sockets in the map, comma-separated")
    ap.add_argument("--status-runs", type=int, default=25)
    ap.add_argument("--stop-sockets", type=int, default=0,
                    help="end by stopping the daemon with this many idle sockets in the map")
    ap.add_argument("--pin-dir", default="", help="the daemon's pin directory (with --stop-sockets)")
    a = ap.parse_args()

    result = {"mode": "control", "rss_kib_idle": vm_rss_kib(a.daemon_pid),
              "bpf_map_memlock_bytes": bpf_map_memlock_bytes(a.daemon_pid)}
    ctl = Control(a.socket)
    status = ctl.call("status")
    result["map_capacity"] = status["map"]["capacity"]
    result["drain_backend"] = status["drain"]["backend"]
    result["entry_counter"] = status["features"]["entry_counter"]
    result["status_wire_ms_idle"] = ms_median(lambda: ctl.call("status"), a.status_runs * 4)
    ctl.close()
    result["status_cli_ms_idle"] = ms_median(
        lambda: subprocess.run([a.ctl, "--socket", a.socket, "status"], check=True,
                               stdout=subprocess.DEVNULL), a.status_runs)
    result["sizes"] = [measure_size(a, int(n)) for n in a.sizes.split(",")]
    result["rss_kib_end"] = vm_rss_kib(a.daemon_pid)
    if a.stop_sockets:
        result["stop"] = measure_stop(a, a.stop_sockets)
    print(json.dumps(result))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line, like the load tool's errors
        sys.exit(f"controlplane: {e}")
