#!/usr/bin/env python3
"""bench/restart_stats.py: the restart gap, from bench/restart_load.py's samples.

  restart_stats.py LOAD_JSON WINDOWS_JSONL

WINDOWS_JSONL has one {"kind": "baseline"|"restart", "start", "end"} per line (epoch s): for a
restart, from just before `baton restart` until the old process has exited (its requests
finished). Requests are grouped by the window their start falls in; the table compares the
latency of requests during restarts with the baseline's, by connection kind, and prints the
restart gap: how much longer the slowest request waited than the slowest of the baseline.
"""

import json
import sys


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    i = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[i]


def main():
    load = json.load(open(sys.argv[1]))
    windows = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
    groups = {}
    for start, latency, keepalive, error in load["samples"]:
        for w in windows:
            if w["start"] <= start < w["end"]:
                key = (w["kind"], "keep-alive" if keepalive else "new conn")
                groups.setdefault(key, []).append((latency, error))
                break
    print("| requests | kind | count | failed | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for kind in ("baseline", "restart"):
        for conn in ("keep-alive", "new conn"):
            rows = groups.get((kind, conn), [])
            lat = [l for l, e in rows if e is None]
            failed = sum(1 for _, e in rows if e is not None)
            summary[(kind, conn)] = (pct(lat, 0.99), max(lat) if lat else float("nan"))
            print(f"| {'during restarts' if kind == 'restart' else 'without restarts'} | {conn} | "
                  f"{len(rows)} | {failed} | {pct(lat, 0.5):.2f} | {pct(lat, 0.99):.2f} | "
                  f"{(max(lat) if lat else float('nan')):.2f} |")
    print()
    for conn in ("keep-alive", "new conn"):
        b99, bmax = summary[("baseline", conn)]
        r99, rmax = summary[("restart", conn)]
        print(f"restart gap ({conn}): max {rmax - bmax:+.2f} ms, p99 {r99 - b99:+.2f} ms "
              f"(during restarts minus without)")
    failures = [e for s in load["samples"] for e in [s[3]] if e is not None]
    print(f"failed requests in the whole run: {len(failures)}"
          + (f" (first: {failures[0]})" if failures else ""))


if __name__ == "__main__":
    main()
