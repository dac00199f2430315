#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# Turns bench/run's raw measurements (one JSON line per run) into bench.json, bench.md and
# PNG charts (charts.py). Kept apart from bench/run so the summary can be regenerated from a
# saved results file.
import argparse
import json
import os
import platform
import statistics
import sys
import time

# name: (description, kind); METRICS[kind]: [(metric label, unit, path into the result, lower
# is better)]
SCENARIOS = {
    "rr_tcp_64": ("round trip 64 B, TCP", "rr"),
    "rr_tcp_4k": ("round trip 4 KiB, TCP", "rr"),
    "rr_tcp_64k": ("round trip 64 KiB, TCP", "rr"),
    "rr_unix_64": ("round trip 64 B, AF_UNIX (reference)", "rr"),
    "rr_unix_4k": ("round trip 4 KiB, AF_UNIX (reference)", "rr"),
    "rr_unix_64k": ("round trip 64 KiB, AF_UNIX (reference)", "rr"),
    "stream_tcp_64": ("stream of 64 B writes, TCP", "stream"),
    "stream_tcp_64k": ("stream of 64 KiB writes read 256 KiB at a time, TCP", "stream"),
    "stream_tcp_64k_r16k": ("stream of 64 KiB writes read 16 KiB at a time, TCP", "stream"),
    "stream_unix_64": ("stream of 64 B writes, AF_UNIX (reference)", "stream"),
    "stream_unix_64k": ("stream of 64 KiB writes, AF_UNIX (reference)", "stream"),
    "iperf3": ("iperf3, loopback", "iperf3"),
    "connrate": ("connect/accept/close, TCP", "connrate"),
    "nginx": ("wrk -> nginx LB -> 2 nginx backends (keepalive)", "requests"),
    "redis_p1": ("redis-benchmark SET+GET, 20 clients -> redis-server", "requests"),
    "redis_p16": ("redis-benchmark SET+GET, 20 clients pipelining 16 -> redis-server", "requests"),
    "pgbench": ("pgbench -S, 4 clients -> PostgreSQL 15 over TCP", "requests"),
    "haproxy": ("wrk -> HAProxy (mode tcp) -> 2 nginx backends", "requests"),
    "proxy_chain": ("wrk -> HAProxy -> HAProxy -> 1 nginx backend", "requests"),
    "outside_rr_tcp_64": ("round trip 64 B, TCP, outside the scope (hook cost)", "rr"),
    "outside_connrate": ("connect/accept/close, TCP, outside the scope (hook cost)", "connrate"),
}
METRICS = {
    "rr": [("p50 latency", "µs", ("latency_us", "p50"), True),
           ("p99 latency", "µs", ("latency_us", "p99"), True),
           ("round trips", "1/s", ("round_trips_per_s",), False)],
    "stream": [("throughput", "GB/s", ("gbytes_per_s",), False)],
    "iperf3": [("throughput", "Gbit/s", ("gbit_per_s",), False),
               ("retransmits", "per run", ("retransmits",), True)],
    "connrate": [("connections", "1/s", ("connections_per_s",), False)],
    # The request workloads (bench/workloads.py gives them all the same fields). CPU per
    # request: the benchmark cgroup's CPU time (client, proxies, servers) over the requests.
    "requests": [("requests", "1/s", ("requests_per_s",), False),
                 ("p50 latency", "µs", ("latency_us", "p50"), True),
                 ("p99 latency", "µs", ("latency_us", "p99"), True),
                 ("CPU per request", "µs", ("cpu_us_per_request",), True)],
}


def dig(d, path):
    """The value at path, or None where a result lacks it (one saved before the metric was)."""
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def fmt(v):
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def control_table(controls):
    """The control-plane section: one table per drain backend, one column per map size,
    values only (there is no 'off')."""
    md = ["## Control plane", ""]
    ran = [c for c in controls if "sizes" in c]
    c0 = ran[0] if ran else None
    if c0:
        sizes0 = c0["sizes"]
        md += ["sockacceld attached to the benchmark cgroup with a map of "
               f"{c0['map_capacity']:,} entries; `sockaccel-bench hold` keeps idle loopback "
               "connections open (2 sockets each). Round trips are medians "
               f"(wire: {sizes0[0]['status_wire_ms']['runs'] if sizes0 else '?'} requests on one "
               "control connection; sockaccelctl: a new process each time). flush-map is the "
               "lossless drain; afterwards every connection carried one byte each way. Once per "
               "drain backend (`drain.backend`), each forced; `map.entries` is counted the same "
               f"way for all (`{c0.get('entry_counter', '?')}`).", ""]
    for c in controls:
        backend = c.get("drain_backend", "?")
        if "refused" in c:
            md += [f"**Backend `{backend}`:** the kernel refuses it; the daemon's start failed "
                   f"with: `{c['refused']}`", ""]
            continue
        sizes = c["sizes"]
        md.append(f"**Backend `{backend}`**")
        md.append("")
        md.append("| | idle | " + " | ".join(f"{s['sockets']:,} sockets" for s in sizes) + " |")
        md.append("| --- | --- |" + " --- |" * len(sizes))
        md.append(f"| `sockaccelctl status` (ms) | {fmt(c['status_cli_ms_idle']['p50'])} | " +
                  " | ".join(fmt(s["status_cli_ms"]["p50"]) for s in sizes) + " |")
        md.append(f"| status on the wire (ms) | {fmt(c['status_wire_ms_idle']['p50'])} | " +
                  " | ".join(fmt(s["status_wire_ms"]["p50"]) for s in sizes) + " |")
        md.append("| `sockaccelctl flush-map` (ms; daemon's elapsed_ms) | – | " +
                  " | ".join(f"{fmt(s['flush_cli_ms'])} ({s['flush']['elapsed_ms']})" for s in sizes) + " |")
        md.append("| sockets flushed / left pending / dropped | – | " +
                  " | ".join(f"{s['flush']['flushed']:,} / {s['flush']['pending']} / "
                             f"{s['flush']['dropped_sockets']}" for s in sizes) + " |")
        md.append("| connections checked after the flush (s) | – | " +
                  " | ".join(f"{s['sockets'] // 2:,} ok ({fmt(s['verify_seconds'])})" for s in sizes) + " |")
        md.append(f"| daemon RSS (MiB): loaded / after flush | {c['rss_kib_idle'] / 1024:.1f} | " +
                  " | ".join(f"{s['rss_kib_loaded'] / 1024:.1f} / {s['rss_kib_after_flush'] / 1024:.1f}"
                             for s in sizes) + " |")
        md.append("")
        if c.get("stop"):
            st = c["stop"]
            md.append(f"Stop (SIGTERM) with {st['sockets']:,} idle sockets in the map: "
                      f"{fmt(st['stop_ms'])} ms until the daemon exited; pin directory "
                      f"{'removed' if st['pin_dir_removed'] else 'LEFT'}; every connection "
                      f"checked afterwards ({fmt(st['verify_seconds'])} s).")
            md.append("")
    if c0:
        md.append(f"Kernel memory charged to the daemon's BPF maps (memlock, capacity "
                  f"{c0['map_capacity']:,}): {c0['bpf_map_memlock_bytes'] / 2**20:.1f} MiB.")
        md.append("")
    return md


def requests_table(scen):
    """The request workloads, one row each: off → on (on/off) of every metric they have."""
    rows = {n: e for n, e in scen.items() if e["kind"] == "requests"}
    if not rows:
        return []
    labels = [m[0] for m in METRICS["requests"]]
    units = {m[0]: m[1] for m in METRICS["requests"]}
    md = ["## Request workloads", "",
          "Clients, proxies and servers all in the benchmark cgroup. CPU per request: the "
          "cgroup's CPU time (`usage_usec` in its `cpu.stat`) across the client's run, over the "
          "requests it completed; it covers the client, the proxies and the servers, not "
          "sockacceld. Medians, off → on (on/off).", "",
          "| workload | " + " | ".join(f"{l} ({units[l]})" for l in labels) + " |",
          "| --- |" + " --- |" * len(labels)]
    for e in rows.values():
        cells = []
        for label in labels:
            m = e["metrics"].get(label)
            if m is None:
                cells.append("–")
                continue
            r = f" (×{m['ratio_on_off']:.2f})" if m["ratio_on_off"] is not None else ""
            cells.append(f"{fmt(m['off']['median'])} → {fmt(m['on']['median'])}{r}")
        md.append(f"| {e['description']} | " + " | ".join(cells) + " |")
    md.append("")
    return md


def write_charts(scen, control, out, meta):
    """PNG charts next to bench.md; returns their file names (none if matplotlib is missing)."""
    try:
        import charts
    except ImportError as e:
        print(f"bench/report.py: no charts ({e}); install python3-matplotlib", file=sys.stderr)
        return []
    return charts.write(scen, control, out, meta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out")
    for opt in ("rounds", "seconds", "iperf-seconds", "cpu", "quick", "load-before",
                "load-after", "elapsed", "revision"):
        ap.add_argument("--" + opt, default="")
    a = ap.parse_args()

    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    # One control-plane result per drain backend tried.
    control = [r["result"] for r in rows if r["scenario"] == "control"] or None
    scen = {}
    for name, (desc, kind) in SCENARIOS.items():
        runs = [r for r in rows if r["scenario"] == name]
        if not runs:
            continue
        entry = {"description": desc, "kind": kind, "metrics": {}}
        for label, unit, path, lower in METRICS[kind]:
            off = [float(v) for r in runs if r["phase"] == "off"
                   if (v := dig(r["result"], path)) is not None]
            on = [float(v) for r in runs if r["phase"] == "on"
                  if (v := dig(r["result"], path)) is not None]
            if not off or not on:
                continue
            m = {"unit": unit, "lower_is_better": lower, "off": summary(off), "on": summary(on)}
            m["ratio_on_off"] = (m["on"]["median"] / m["off"]["median"]
                                 if m["off"]["median"] else None)
            entry["metrics"][label] = m
        # Whether the "on" runs were really accelerated: the daemon's counters per run.
        red, pas, added, holds, demoted, eag = [], [], [], [], [], []
        for r in runs:
            eag.append(r["result"].get("eagain_retries", 0))
            if r["phase"] == "on" and r.get("stats"):
                c = r["stats"]["counters"]
                red.append(c["redirect_msgs"])
                pas.append(c["pass_msgs"])
                added.append(c["sockets_added"])
                holds.append(c["backpressure_holds"])
                # Demoted sockets by reason (counters of ABI 6 and later).
                demoted.append({k: c.get(f"demoted_{k}", 0)
                                for k in ("small_writes", "backpressure", "reader")})
        entry["on_counters"] = {"redirect_msgs": red, "pass_msgs": pas, "sockets_added": added,
                                "backpressure_holds": holds, "demoted": demoted}
        entry["eagain_retries_total"] = sum(eag)
        scen[name] = entry

    meta = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "revision": a.revision,
        "rounds": int(a.rounds or 0),
        "seconds_per_run": float(a.seconds or 0),
        "iperf3_seconds": int(a.iperf_seconds or 0),
        "rr_stream_cpu": a.cpu,
        "quick": a.quick == "1",
        "loadavg_before": a.load_before,
        "loadavg_after": a.load_after,
        "elapsed_s": int(a.elapsed or 0),
        "order": "per scenario, off/on alternating; odd rounds off first, even rounds on first",
    }
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bench.json"), "w") as f:
        json.dump({"meta": meta, "scenarios": scen, "control_plane": control, "raw": rows}, f,
                  indent=2)

    md = []
    md.append("# sockaccel benchmark" + (" (quick smoke run: numbers mean nothing)" if meta["quick"] else ""))
    md.append("")
    pin = "both ends pinned to CPU " + a.cpu if a.cpu != "none" else "no CPU pinning"
    md.append(f"{meta['date_utc']}, kernel {meta['kernel']}, {meta['cpus']} CPUs, revision "
              f"{meta['revision']}. {meta['rounds']} round(s) of alternating off/on runs, "
              f"{a.seconds} s per run (iperf3 {a.iperf_seconds} s); rr/stream: {pin}. "
              f"Load average before/after: {a.load_before} / {a.load_after}.")
    md.append("")
    md.append("Off: sockacceld stopped. On: sockacceld attached to the benchmark's own cgroup. "
              "Median over rounds, min–max in brackets. For latency, CPU time and retransmits, "
              "lower is better (ratio < 1 is a gain); otherwise higher is better. AF_UNIX does "
              "not go through sockaccel: its ratio shows the noise level.")
    md.append("")
    md.extend(requests_table(scen))
    md.append("| scenario | metric | off | on | on/off | on runs: msgs redirected / passed; sockets added (median) |")
    md.append("| --- | --- | --- | --- | --- | --- |")
    for name, e in scen.items():
        red = e["on_counters"]["redirect_msgs"]
        pas = e["on_counters"]["pass_msgs"]
        added = e["on_counters"]["sockets_added"]
        holds = e["on_counters"]["backpressure_holds"]
        cnt = (f"{fmt(statistics.median(red))} / {fmt(statistics.median(pas))}; "
               f"{fmt(statistics.median(added))}" if red else "–")
        if holds and max(holds):
            cnt += f"; back-pressure holds {fmt(statistics.median(holds))}"
        dem = e["on_counters"].get("demoted", [])
        for reason in ("small_writes", "backpressure", "reader"):
            n = [d[reason] for d in dem]
            if n and max(n):
                cnt += f"; demoted ({reason.replace('_', ' ')}) {fmt(statistics.median(n))}"
        first = True
        for label, m in e["metrics"].items():
            off, on = m["off"], m["on"]
            ratio = f"×{m['ratio_on_off']:.2f}" if m["ratio_on_off"] is not None else "–"
            md.append(f"| {e['description'] if first else ''} | {label} ({m['unit']}) | "
                      f"{fmt(off['median'])} ({fmt(off['min'])}–{fmt(off['max'])}) | "
                      f"{fmt(on['median'])} ({fmt(on['min'])}–{fmt(on['max'])}) | {ratio} | "
                      f"{cnt if first else ''} |")
            first = False
    md.append("")

    def ratio(name, label):
        try:
            return scen[name]["metrics"][label]["ratio_on_off"]
        except KeyError:
            return None

    def med(name, label, phase):
        try:
            return scen[name]["metrics"][label][phase]["median"]
        except KeyError:
            return None

    def show(v, unit=""):
        return "not run" if v is None else f"{fmt(v)}{unit}"

    def showr(v):
        return "not run" if v is None else f"×{v:.2f}"

    md.append("## Against the reference prototype (kernel-facts, same machine kind, no safety logic)")
    md.append("")
    md.append("| scenario | prototype off → on | prototype ratio | sockaccel off → on (this run) | sockaccel ratio |")
    md.append("| --- | --- | --- | --- | --- |")
    md.append(f"| iperf3 loopback | 19.8 → 37.3 Gbit/s | ×1.89 | "
              f"{show(med('iperf3', 'throughput', 'off'))} → {show(med('iperf3', 'throughput', 'on'))} Gbit/s | "
              f"{showr(ratio('iperf3', 'throughput'))} |")
    md.append(f"| round trip 64 B, one core (p50) | 13.6 → 9.7 µs (AF_UNIX 8.6) | ×0.71 | "
              f"{show(med('rr_tcp_64', 'p50 latency', 'off'))} → {show(med('rr_tcp_64', 'p50 latency', 'on'))} µs "
              f"(AF_UNIX {show(med('rr_unix_64', 'p50 latency', 'off'))}) | "
              f"{showr(ratio('rr_tcp_64', 'p50 latency'))} |")
    md.append(f"| stream of 64 B writes, one core | 0.031 → 0.020 GB/s | ×0.65 | "
              f"{show(med('stream_tcp_64', 'throughput', 'off'))} → {show(med('stream_tcp_64', 'throughput', 'on'))} GB/s | "
              f"{showr(ratio('stream_tcp_64', 'throughput'))} |")
    md.append(f"| wrk → nginx LB → nginx (req/s) | 48.4k → 72.6k | ×1.50 | "
              f"{show(med('nginx', 'requests', 'off'))} → {show(med('nginx', 'requests', 'on'))} | "
              f"{showr(ratio('nginx', 'requests'))} |")
    md.append(f"| the same, latency p50 / p99 | 631 → 420 µs / 2.77 → 1.62 ms | ×0.67 / ×0.58 | "
              f"{show(med('nginx', 'p50 latency', 'off'))} → {show(med('nginx', 'p50 latency', 'on'))} µs / "
              f"{show(med('nginx', 'p99 latency', 'off'))} → {show(med('nginx', 'p99 latency', 'on'))} µs | "
              f"{showr(ratio('nginx', 'p50 latency'))} / {showr(ratio('nginx', 'p99 latency'))} |")
    md.append("")
    if control:
        md.extend(control_table(control))
    charts = write_charts(scen, control, a.out, meta)
    if charts:
        md.append("Charts: " + ", ".join(f"[{c}]({c})" for c in charts) + ".")
        md.append("")
    eag = {n: e["eagain_retries_total"] for n, e in scen.items() if e["eagain_retries_total"]}
    if eag:
        md.append(f"Blocking reads that returned EAGAIN (kernel-facts fact 3, retried): {eag}.")
        md.append("")
    # The outside_* scenarios measure processes outside the scope: nothing
    # redirected is what they are for.
    unaccel = [n for n, e in scen.items()
               if ("tcp" in n or n in ("iperf3",) or e["kind"] == "requests")
               and not n.startswith("outside_")
               if e["on_counters"]["redirect_msgs"] and min(e["on_counters"]["redirect_msgs"]) == 0
               # A demoted run redirected its first window, then went back to TCP on purpose.
               and not any(sum(d.values()) for d in e["on_counters"].get("demoted", []))]
    if unaccel:
        md.append(f"**Warning:** some 'on' runs redirected nothing: {', '.join(unaccel)}.")
        md.append("")
    text = "\n".join(md)
    with open(os.path.join(a.out, "bench.md"), "w") as f:
        f.write(text)
    print(text)
    if unaccel:
        print(f"bench/run: warning: 'on' runs without redirects: {unaccel}", file=sys.stderr)


if __name__ == "__main__":
    main()
