#!/usr/bin/env python3
"""bench/canary_load.py: the paced load of bench/canary.sh and the report of its figures.

  canary_load.py load URL OUT STOP_FILE MAX_SECONDS RATE [CONNECTIONS]
      GET URL at RATE requests/s in total over CONNECTIONS keep-alive connections (8), until
      STOP_FILE exists or MAX_SECONDS pass. Writes one line per request to OUT:
      start end status version error (wall-clock seconds; status 0 when no response came;
      version "-" when the body named none; error "-" or the exception's class name).
  canary_load.py report REQUESTS RUNS.jsonl HISTORY.json [ANALYSIS_DIR]
      Reads the requests and the runs (one JSON object per deploy: kind, version, stable,
      deployment, exit, start, end) and prints the per-run table, the summary and the
      verdict against the goals; the last line is machine-readable: "goals: met" or
      "goals: NOT met". ANALYSIS_DIR holds `baton analysis web --json` of every run that
      did not succeed, as analysis-VERSION.json: the failing verdict's figures are printed
      for every false rollback, and the window of the deciding verdict for the bad runs.

The client is independent of Baton: it tells releases apart by the "version" field that the
demo puts in every answer, 500s included. Requests are paced on a shared schedule (request i
is due at start + i / RATE); a connection that falls behind sends at once to catch up, so
the rate holds as long as fewer than CONNECTIONS requests are in flight.
"""

import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

# A request that took longer than this counts as failed (status 0, error "timeout").
TIMEOUT_S = 2.0


# === load ===


def load(url, out_path, stop_file, max_s, rate, connections=8):
    u = urllib.parse.urlsplit(url)
    path = u.path or "/"
    period = 1.0 / rate
    lock = threading.Lock()
    state = {"next": 0}
    start = time.monotonic()
    wall0 = time.time() - start  # wall clock = wall0 + monotonic
    out = open(out_path, "w", buffering=1 << 16)

    def due():
        with lock:
            i = state["next"]
            state["next"] += 1
        return start + i * period

    def stopped():
        return time.monotonic() - start >= max_s or os.path.exists(stop_file)

    def worker():
        conn = None
        lines = []
        last_flush = time.monotonic()
        while not stopped():
            at = due()
            now = time.monotonic()
            if at > now:
                time.sleep(at - now)
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT_S)
            t0 = time.monotonic()
            status, version, error = 0, "-", "-"
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                try:
                    version = str(json.loads(body).get("version", "-"))
                except ValueError:
                    pass
                if resp.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # every failure counts, whatever its kind
                error = "timeout" if isinstance(e, TimeoutError) else type(e).__name__
                conn.close()
                conn = None
            t1 = time.monotonic()
            lines.append(f"{wall0 + t0:.6f} {wall0 + t1:.6f} {status} {version or '-'} {error}\n")
            if t1 - last_flush > 0.5:
                with lock:
                    out.writelines(lines)
                    out.flush()
                lines.clear()
                last_flush = t1
        with lock:
            out.writelines(lines)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()


# === report ===


def read_requests(path):
    reqs = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 5:
                reqs.append((float(p[0]), float(p[1]), int(p[2]), p[3], p[4]))
    reqs.sort()
    return reqs


def failed(r):
    return not (200 <= r[2] < 300)


def spread(values, fmt):
    """min / median / p90 / max of values, formatted."""
    if not values:
        return "-"
    v = sorted(values)
    p90 = v[min(len(v) - 1, int(0.9 * len(v) + 0.5) - 1)] if len(v) > 1 else v[0]
    return " / ".join(fmt(x) for x in (v[0], statistics.median(v), p90, v[-1]))


def run_figures(run, reqs, history):
    """The figures of one deploy from the requests sent while it ran (and 1 s after)."""
    lo, hi = run["start"], run["end"] + 1.0
    inside = [r for r in reqs if lo <= r[0] <= hi]
    canary = [r for r in inside if r[3] == run["version"]]
    fails = [r for r in inside if failed(r)]
    h = history.get(run.get("deployment")) or {}
    f = {
        "requests": len(inside),
        "canary_requests": len(canary),
        "failed": len(fails),
        "failed_canary": sum(1 for r in fails if r[3] == run["version"]),
        "failed_other": sum(1 for r in fails if r[3] != run["version"]),
        "rate": len(inside) / max(hi - lo, 1e-9),
        "phase": h.get("phase", "?"),
        "reason": h.get("reason") or "",
        "duration_ms": h.get("duration_ms"),
        "wall_s": run["end"] - run["start"],
        "exit": run["exit"],
    }
    if canary:
        f["canary_first"] = canary[0][0]
        f["canary_last"] = canary[-1][0]
    canary_fails = [r for r in fails if r[3] == run["version"]]
    if canary_fails:
        first_bad = min(r[1] for r in canary_fails)  # the first failed response a user got
        f["detection_s"] = max(0.0, f["canary_last"] - first_bad)
        # From the first request the canary served to the last: the exposure as a whole.
        f["exposure_s"] = f["canary_last"] - f["canary_first"]
    # After the deploy: did anything still reach the canary (it should not, when rolled back)?
    f["canary_after_end"] = sum(1 for r in reqs if r[0] > run["end"] + 0.5 and r[3] == run["version"])
    return f


def failing_verdict(analysis_dir, version):
    """The first `fail` verdict stored for the run of `version`, or None."""
    if not analysis_dir:
        return None
    try:
        with open(os.path.join(analysis_dir, f"analysis-{version}.json")) as f:
            verdicts = json.load(f).get("verdicts", [])
    except (OSError, ValueError):
        return None
    return next((v for v in sorted(verdicts, key=lambda v: v["at"]) if v["outcome"] == "fail"), None)


def print_verdict(v, indent="    "):
    fig = v.get("figures", {})
    print(f"{indent}verdict #{v['id']} at step {v['step']}, window {fig.get('window_ms', '?')} ms: {v['outcome']}")
    for c in fig.get("checks", []):
        print(f"{indent}  {c['name']:<16} {c['outcome']:<12} observed {c.get('observed')} threshold {c.get('threshold')} "
              f"p {c.get('p_value')} samples {c.get('samples')}: {c.get('detail')}")


def report(requests_path, runs_path, history_path, analysis_dir=None):
    reqs = read_requests(requests_path)
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    history = {d["id"]: d for d in json.load(open(history_path))}
    for r in runs:
        r["f"] = run_figures(r, reqs, history)
    bad = [r for r in runs if r["kind"] == "bad"]
    healthy = [r for r in runs if r["kind"] == "healthy"]
    s = lambda x: f"{x:.2f}s"
    n = lambda x: f"{x:g}"

    print("per run (requests sent from the deploy command's start to 1 s after its end):")
    print(f"  {'kind':<8} {'version':<9} {'deploy':>6} {'phase':<12} {'wall':>7} {'req/s':>6} {'new-ver req':>11} "
          f"{'failed':>6} {'detection':>9}  reason")
    for r in runs:
        f = r["f"]
        det = f"{f['detection_s']:.2f}s" if "detection_s" in f else "-"
        dep = f"#{r['deployment']}" if r.get("deployment") else "?"
        print(f"  {r['kind']:<8} {r['version']:<9} {dep:>6} {f['phase']:<12} {f['wall_s']:>6.2f}s {f['rate']:>6.0f} "
              f"{f['canary_requests']:>11} {f['failed']:>6} {det:>9}  {f['reason'][:110]}")
    print()

    ok = True
    if bad:
        caught = [r for r in bad if r["f"]["phase"] in ("rolled_back", "failed", "aborted") or r["exit"] != 0]
        det = [r["f"]["detection_s"] for r in bad if "detection_s" in r["f"]]
        blast = [r["f"]["failed"] for r in bad]
        exposure = [r["f"]["exposure_s"] for r in bad if "exposure_s" in r["f"]]
        creq = [r["f"]["canary_requests"] for r in bad]
        other = sum(r["f"]["failed_other"] for r in bad)
        late = sum(r["f"]["canary_after_end"] for r in bad)
        print(f"bad canaries (30 % errors): {len(bad)} runs, {len(caught)} rolled back, {len(bad) - len(caught)} not")
        print(f"                                        min / median / p90 / max")
        print(f"  detection (first 5xx -> 100 % stable)  {spread(det, s)}")
        print(f"  exposure (canary's first -> last req)  {spread(exposure, s)}")
        print(f"  requests that reached the canary       {spread(creq, n)}")
        print(f"  blast radius (failed requests per run) {spread(blast, n)}")
        windows = []
        for r in bad:
            v = failing_verdict(analysis_dir, r["version"])
            if v is not None:
                windows.append(v["figures"].get("window_ms", 0) / 1000)
                r["samples"] = next((c["samples"] for c in v["figures"].get("checks", []) if c["name"] == "error_rate"), None)
        if windows:
            print(f"  deciding verdict's window (step start) {spread(windows, s)}")
            print(f"  canary requests in that window         {spread([r['samples'] for r in bad if r.get('samples') is not None], n)}")
        print(f"  failed requests not from the canary:   {other} in all; canary requests after a rollback ended: {late}")
        met = len(caught) == len(bad) and len(det) == len(bad) and statistics.median(det) <= 2.0
        ok &= met
        print(f"  goal (every bad canary caught, median detection <= 2 s): {'met' if met else 'NOT met'}"
              + (f" (median {statistics.median(det):.2f}s, max {max(det):.2f}s)" if det else ""))
        print()
    if healthy:
        false = [r for r in healthy if r["exit"] != 0 or r["f"]["phase"] != "succeeded"]
        wall = [r["f"]["wall_s"] for r in healthy]
        dur = [r["f"]["duration_ms"] / 1000 for r in healthy if r["f"]["duration_ms"] is not None]
        fails = sum(r["f"]["failed"] for r in healthy)
        print(f"healthy canaries: {len(healthy)} runs, {len(false)} false rollback(s), {fails} failed request(s) in all")
        print(f"                                        min / median / p90 / max")
        print(f"  deploy wall time                       {spread(wall, s)}")
        print(f"  duration_ms (history)                  {spread(dur, s)}")
        for r in false:
            f = r["f"]
            print(f"  FALSE ROLLBACK {r['version']} (deployment #{r.get('deployment')}): exit {r['exit']}, "
                  f"phase {f['phase']}: {f['reason']}")
            v = failing_verdict(analysis_dir, r["version"])
            if v is not None:
                print_verdict(v)
        met = not false and len(healthy) >= 200
        ok &= met
        cond = "" if len(healthy) >= 200 else f" (only {len(healthy)} runs; the goal asks for 200)"
        print(f"  goal (zero false rollbacks in 200 healthy runs): {'met' if met else 'NOT met'}{cond}")
        print()
    print(f"goals: {'met' if ok else 'NOT met'}")


def main(argv):
    if len(argv) in (7, 8) and argv[1] == "load":
        load(argv[2], argv[3], argv[4], float(argv[5]), float(argv[6]), int(argv[7]) if len(argv) == 8 else 8)
    elif len(argv) in (5, 6) and argv[1] == "report":
        report(*argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
