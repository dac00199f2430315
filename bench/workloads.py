#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# bench/run's request workloads: turns what a client printed (wrk, redis-benchmark, pgbench)
# into the one JSON line bench/run records, the same fields for every client:
#   requests, requests_per_s, latency_us {p50, p99}, cpu_usec, cpu_us_per_request
# cpu_usec is the benchmark cgroup's usage_usec (cpu.stat) across the client's run, measured by
# bench/run; divided by the requests the client completed, it is the CPU time a request cost
# the client, the proxies and the servers together. Exits non-zero, with the client's output,
# on anything that says the run is broken (errors, nothing completed, output it cannot read):
# bench/run then fails, as it does for a broken run of its own load tool.
import argparse
import csv
import glob
import json
import math
import re
import sys


def fail(what, text=""):
    sys.exit(f"bench/workloads.py: {what}" + (f"\n{text}" if text else ""))


def result(mode, requests, rps, p50, p99, cpu_usec, **extra):
    if requests <= 0:
        fail(f"{mode}: no request completed")
    out = {"mode": mode, "requests": requests, "requests_per_s": rps,
           "latency_us": {"p50": p50, "p99": p99}, "cpu_usec": cpu_usec,
           "cpu_us_per_request": cpu_usec / requests}
    out.update(extra)
    return out


def wrk(a):
    text = open(a.output).read()

    def us(v):  # wrk prints 420.00us, 1.62ms, 2.00s
        m = re.fullmatch(r"([0-9.]+)(us|ms|s)", v)
        return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    done = re.search(r"^\s*([0-9]+) requests in ", text, re.M)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", text, re.M))
    if not rps or not done or "50" not in lat or "99" not in lat:
        fail("wrk: unexpected output", text)
    errors = re.search(r"Non-2xx or 3xx responses.*|Socket errors.*", text)
    if errors:
        fail(f"wrk: {errors.group(0)}", text)
    return result("wrk", int(done.group(1)), float(rps.group(1)), us(lat["50"]), us(lat["99"]),
                  a.cpu_usec)


def redis_tests(path):
    """{test: {rps, p50_us, p99_us}} from redis-benchmark --csv."""
    text = open(path).read()
    tests = {}
    try:
        for row in csv.DictReader(text.splitlines()):
            tests[row["test"]] = {"rps": float(row["rps"]),
                                  "p50_us": float(row["p50_latency_ms"]) * 1e3,
                                  "p99_us": float(row["p99_latency_ms"]) * 1e3}
    except (KeyError, ValueError, TypeError):
        fail("redis-benchmark: unexpected output", text)
    if not tests or any(t["rps"] <= 0 for t in tests.values()):
        fail("redis-benchmark: a test without a rate", text)
    return tests


def redis(a):
    tests = redis_tests(a.output)
    want = set(a.tests.upper().split(","))
    if set(tests) != want:
        fail(f"redis-benchmark: tests {sorted(tests)}, want {sorted(want)}",
             open(a.output).read())
    # The tests run one after the other, a.requests each: the rate over all of them, and the
    # mean of their percentiles (the same number of requests each).
    seconds = sum(a.requests / t["rps"] for t in tests.values())
    n = a.requests * len(tests)
    return result("redis-benchmark", n, n / seconds,
                  sum(t["p50_us"] for t in tests.values()) / len(tests),
                  sum(t["p99_us"] for t in tests.values()) / len(tests),
                  a.cpu_usec, pipeline=a.pipeline, tests=tests)


def redis_calibrate(a):
    """-n per test for a run of about a.seconds: the slowest test's rate of a short run."""
    slowest = min(t["rps"] for t in redis_tests(a.output).values())
    print(max(a.minimum, int(slowest * a.seconds / a.ntests)))
    return None


def percentile(values, p):
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]


def pgbench(a):
    text = open(a.output).read()
    processed = re.search(r"^number of transactions actually processed: ([0-9]+)", text, re.M)
    failed = re.search(r"^number of failed transactions: ([0-9]+)", text, re.M)
    tps = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", text, re.M)
    if not processed or not tps:
        fail("pgbench: unexpected output", text)
    if failed and int(failed.group(1)):
        fail(f"pgbench: {failed.group(1)} failed transactions", text)
    # -l: one line per transaction, "client_id transaction_no time script_no epoch us", the
    # latency (µs) in the third column; one file per thread.
    lat = []
    for f in glob.glob(a.log_glob):
        for line in open(f):
            cols = line.split()
            if len(cols) < 3 or not cols[2].isdigit():
                fail(f"pgbench: a transaction that did not complete in {f}: {line.strip()}")
            lat.append(int(cols[2]))
    n = int(processed.group(1))
    if len(lat) != n:
        fail(f"pgbench: {len(lat)} transactions logged, {n} processed", text)
    lat.sort()
    return result("pgbench", n, float(tps.group(1)), float(percentile(lat, 50)) if lat else 0.0,
                  float(percentile(lat, 99)) if lat else 0.0, a.cpu_usec)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="client", required=True)
    p = sub.add_parser("wrk", help="wrk --latency output")
    p.add_argument("output")
    p.add_argument("--cpu-usec", type=int, required=True)
    p.set_defaults(func=wrk)
    p = sub.add_parser("redis", help="redis-benchmark --csv output")
    p.add_argument("output")
    p.add_argument("--requests", type=int, required=True, help="-n: requests per test")
    p.add_argument("--tests", required=True, help="-t: the tests it ran")
    p.add_argument("--pipeline", type=int, required=True)
    p.add_argument("--cpu-usec", type=int, required=True)
    p.set_defaults(func=redis)
    p = sub.add_parser("redis-calibrate", help="the -n for a run of SECONDS")
    p.add_argument("output")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--ntests", type=int, required=True)
    p.add_argument("--minimum", type=int, default=1000)
    p.set_defaults(func=redis_calibrate)
    p = sub.add_parser("pgbench", help="pgbench's output and its -l logs")
    p.add_argument("output")
    p.add_argument("--log-glob", required=True)
    p.add_argument("--cpu-usec", type=int, required=True)
    p.set_defaults(func=pgbench)
    a = ap.parse_args()
    out = a.func(a)
    if out is not None:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
