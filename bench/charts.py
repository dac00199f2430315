# SPDX-License-Identifier: Apache-2.0
#
# PNG charts for bench/report.py (matplotlib, Debian's python3-matplotlib). Each chart shows
# what the table shows, no more: medians, min–max whiskers and on/off factors.
import os

import matplotlib

matplotlib.use("Agg")  # files only; no display on a server
import matplotlib.pyplot as plt  # noqa: E402

# Reference prototype (kernel-facts, same machine kind, no safety logic), as a "gain" factor.
PROTOTYPE_GAIN = {"nginx requests": 1.50, "iperf3 throughput": 1.89,
                  "rr_tcp_64 p50 latency": 13.6 / 9.7, "stream_tcp_64 throughput": 0.020 / 0.031}

# (scenario, metric, label) in display order, top to bottom.
GAIN_ROWS = [
    ("nginx", "requests", "nginx LB → 2 backends: req/s"),
    ("nginx", "p50 latency", "nginx LB → 2 backends: p50 latency"),
    ("nginx", "p99 latency", "nginx LB → 2 backends: p99 latency"),
    ("iperf3", "throughput", "iperf3 loopback: throughput"),
    ("rr_tcp_64", "p50 latency", "round trip 64 B: p50"),
    ("rr_tcp_4k", "p50 latency", "round trip 4 KiB: p50"),
    ("rr_tcp_64k", "p50 latency", "round trip 64 KiB: p50"),
    ("stream_tcp_64", "throughput", "stream of 64 B writes"),
    ("stream_tcp_64k", "throughput", "stream of 64 KiB writes, 256 KiB reads"),
    ("stream_tcp_64k_r16k", "throughput", "stream of 64 KiB writes, 16 KiB reads"),
    ("connrate", "connections", "connect/accept/close rate"),
    ("rr_unix_64", "p50 latency", "AF_UNIX round trip 64 B (noise)"),
    ("stream_unix_64k", "throughput", "AF_UNIX stream 64 KiB (noise)"),
]


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def gain(m):
    """How many times better 'on' is than 'off' (> 1: sockaccel helps)."""
    off, on = m["off"]["median"], m["on"]["median"]
    if not off or not on:
        return None
    return off / on if m["lower_is_better"] else on / off


def speedup_chart(scen, path, meta):
    rows = [(label, gain(scen[s]["metrics"][m]), f"{s} {m}", s)
            for s, m, label in GAIN_ROWS if s in scen and m in scen[s]["metrics"]]
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1.6))
    ys = list(range(len(rows)))[::-1]
    colors = ["0.65" if "unix" in s else ("tab:green" if g >= 1 else "tab:red")
              for _, g, _, s in rows]
    ax.barh(ys, [g - 1 for _, g, _, _ in rows], left=1, color=colors, height=0.6)
    for y, (_, g, key, _) in zip(ys, rows):
        ref = PROTOTYPE_GAIN.get(key)
        # The label goes right of the bar and of the prototype's mark.
        ax.text(max(g, 1, (ref or 0) + 0.03) + 0.02, y, f"×{g:.2f}", va="center", fontsize=8)
        if ref:
            ax.plot([ref], [y], marker="|", color="black", markersize=14, mew=2)
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=8)
    ax.set_xlabel("gain with sockaccel (off/on for latency, on/off otherwise; > 1 is better)")
    ax.set_title(f"sockaccel on vs off, medians of {meta['rounds']} alternating rounds\n"
                 f"kernel {meta['kernel']}, {meta['cpus']} CPUs; | = naive prototype",
                 fontsize=9)
    hi = max(max(g for _, g, _, _ in rows), max(PROTOTYPE_GAIN.values())) + 0.35
    ax.set_xlim(min(0.4, min(g for _, g, _, _ in rows) - 0.1), hi)
    return save(fig, path)


def requests_chart(scen, path, meta):
    """Every request workload (kind "requests"), one group of bars each: the gain in req/s,
    p50, p99 and CPU per request."""
    names = [n for n, e in scen.items() if e.get("kind") == "requests"]
    if not names:
        return False
    metrics = [("requests", "req/s", "tab:blue"), ("p50 latency", "p50", "tab:cyan"),
               ("p99 latency", "p99", "tab:purple"), ("CPU per request", "CPU/request", "tab:orange")]
    fig, ax = plt.subplots(figsize=(8, 0.9 * len(names) + 1.8))
    height = 0.8 / len(metrics)
    top = len(names) - 1
    hi = 1.0
    for j, (label, short, color) in enumerate(metrics):
        ys, gains = [], []
        for i, n in enumerate(names):
            m = scen[n]["metrics"].get(label)
            g = gain(m) if m else None
            if g is None:
                continue
            ys.append(top - i + 0.4 - (j + 0.5) * height)
            gains.append(g)
        ax.barh(ys, [g - 1 for g in gains], left=1, height=height * 0.9, color=color, label=short)
        for y, g in zip(ys, gains):
            ax.text(max(g, 1) + 0.02, y, f"×{g:.2f}", va="center", fontsize=6)
        hi = max([hi] + gains)
    ax.axvline(1, color="black", linewidth=0.8)
    ax.set_yticks([top - i for i in range(len(names))], names, fontsize=8)
    ax.set_xlabel("gain with sockaccel (off/on for latency and CPU, on/off for req/s; > 1 is better)")
    ax.set_title(f"Request workloads, medians of {meta['rounds']} alternating rounds\n"
                 "CPU per request: the benchmark cgroup's CPU time (clients, proxies, servers)",
                 fontsize=9)
    ax.set_xlim(left=min(0.4, ax.get_xlim()[0]), right=hi + 0.35)
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, path)


def latency_chart(scen, path, meta):
    sizes = [("64", "64 B"), ("4k", "4 KiB"), ("64k", "64 KiB")]
    series = [("TCP", "rr_tcp_", "off", "tab:blue"), ("TCP + sockaccel", "rr_tcp_", "on", "tab:green"),
              ("AF_UNIX (lower bound)", "rr_unix_", "off", "0.6")]
    if not any(f"rr_tcp_{s}" in scen for s, _ in sizes):
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.26
    for i, (label, prefix, phase, color) in enumerate(series):
        xs, med, lo, hi = [], [], [], []
        for j, (s, _) in enumerate(sizes):
            e = scen.get(prefix + s)
            if not e:
                continue
            v = e["metrics"]["p50 latency"][phase]
            xs.append(j + (i - 1) * width)
            med.append(v["median"])
            lo.append(v["median"] - v["min"])
            hi.append(v["max"] - v["median"])
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=label, color=color)
    ax.set_xticks(range(len(sizes)), [f"{t} messages" for _, t in sizes])
    ax.set_ylabel("round trip p50 (µs), min–max whiskers")
    pin = meta.get("rr_stream_cpu")
    ax.set_title("Round-trip latency" + (f", both ends on CPU {pin}" if pin not in ("", "none") else ""),
                 fontsize=9)
    ax.legend(fontsize=8)
    return save(fig, path)


def control_chart(controls, path):
    ran = [c for c in controls if c.get("sizes")]
    if not ran:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for c in ran:
        xs = [s["sockets"] for s in c["sizes"]]
        b = c.get("drain_backend", "?")
        ax.plot(xs, [s["flush"]["elapsed_ms"] for s in c["sizes"]], "o-",
                label=f"flush-map, {b} backend (daemon elapsed)")
    c0 = ran[0]
    xs = [s["sockets"] for s in c0["sizes"]]
    ax.plot(xs, [s["status_cli_ms"]["p50"] for s in c0["sizes"]], "s--", label="sockaccelctl status")
    ax.plot(xs, [s["status_wire_ms"]["p50"] for s in c0["sizes"]], "^--", label="status on the wire")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sockets in the map")
    ax.set_ylabel("ms")
    ax.set_title("Control plane against a full map (lossless flush, idle connections)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def write(scen, control, out, meta):
    written = []
    if speedup_chart(scen, os.path.join(out, "speedup.png"), meta):
        written.append("speedup.png")
    if requests_chart(scen, os.path.join(out, "requests.png"), meta):
        written.append("requests.png")
    if latency_chart(scen, os.path.join(out, "latency.png"), meta):
        written.append("latency.png")
    if control and control_chart(control, os.path.join(out, "control-plane.png")):
        written.append("control-plane.png")
    return written
