#!/usr/bin/env python3
"""bench/wrkstats.py: reads wrk's text output and prints the benchmark tables.

  wrkstats.py parse TARGET ROUND FILE [CPU_S]
                                            one JSON line: target, round, rps, p50_ms, p99_ms,
                                            errors, and the CPU the target used (CPU_S seconds)
  wrkstats.py proxy-table RESULTS.jsonl     the proxy comparison table and the Baton ratios
  wrkstats.py cycles-table CYCLES.jsonl HISTORY.json WRK.txt [FRESH.json]
                                            failed requests and switch times per strategy
"""

import json
import re
import statistics
import sys

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def duration_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(text):
    """The figures of one wrk run; raises ValueError if wrk printed no summary."""
    out = {"non2xx": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if not m:
        raise ValueError("no 'Requests/sec' line in the wrk output")
    out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[key] = duration_ms(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([0-9.]+\w+)", text)
    out["requests"] = int(m.group(1)) if m else None
    out["duration_ms"] = duration_ms(m.group(2)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out.update(connect=int(m.group(1)), read=int(m.group(2)), write=int(m.group(3)), timeout=int(m.group(4)))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    out["errors"] = out["non2xx"] + out["connect"] + out["read"] + out["write"] + out["timeout"]
    return out


def cmd_parse(target, rnd, path, cpu_s=None):
    with open(path) as f:
        r = parse_wrk(f.read())
    r.update(target=target, round=int(rnd))
    if cpu_s is not None:
        r["cpu_s"] = float(cpu_s)
        r["cpu_us_per_req"] = r["cpu_s"] * 1e6 / r["requests"] if r["requests"] else None
        r["cpu_pct"] = r["cpu_s"] * 1e5 / r["duration_ms"] if r["duration_ms"] else None
    print(json.dumps(r))


def fmt_ms(v):
    return "-" if v is None else f"{v:.2f} ms"


def fmt_cpu(r):
    if r.get("cpu_us_per_req") is None:
        return f"{'-':>6} {'-':>9}"
    return f"{r['cpu_pct']:>5.0f}% {r['cpu_us_per_req']:>6.1f} us"


def cmd_proxy_table(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    order = []
    for r in rows:
        if r["target"] not in order:
            order.append(r["target"])
    rounds = sorted({r["round"] for r in rows})
    if len(rounds) > 1:
        print("per round:")
        print(f"  {'round':<6} {'target':<10} {'req/s':>10} {'p50':>10} {'p99':>10} {'errors':>7} {'cpu':>6} {'cpu/req':>9}")
        for r in rows:
            print(f"  {r['round']:<6} {r['target']:<10} {r['rps']:>10.0f} {fmt_ms(r['p50_ms']):>10} {fmt_ms(r['p99_ms']):>10} {r['errors']:>7} {fmt_cpu(r)}")
        print()
    agg = {}
    for t in order:
        rs = [r for r in rows if r["target"] == t]
        agg[t] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs),
            "errors": sum(r["errors"] for r in rs),
        }
        if all(r.get("cpu_us_per_req") is not None for r in rs):
            agg[t]["cpu_pct"] = statistics.median(r["cpu_pct"] for r in rs)
            agg[t]["cpu_us_per_req"] = statistics.median(r["cpu_us_per_req"] for r in rs)
    label = "median of %d rounds" % len(rounds) if len(rounds) > 1 else "1 round"
    print(f"results ({label}):")
    print(f"  {'target':<10} {'req/s':>10} {'p50':>10} {'p99':>10} {'errors':>7} {'cpu':>6} {'cpu/req':>9}")
    for t in order:
        a = agg[t]
        print(f"  {t:<10} {a['rps']:>10.0f} {fmt_ms(a['p50_ms']):>10} {fmt_ms(a['p99_ms']):>10} {a['errors']:>7} {fmt_cpu(a)}")
    print()
    if "baton" in agg:
        b = agg["baton"]
        print("ratios (throughput: higher is better for Baton; p99: lower is better for Baton):")
        for ref in ("nginx", "haproxy"):
            if ref in agg:
                r = agg[ref]
                print(f"  baton/{ref:<8} req/s {b['rps'] / r['rps']:.2f}x   p99 {b['p99_ms'] / r['p99_ms']:.2f}x")
        if "nginx" in agg:
            n = agg["nginx"]
            ok = b["rps"] >= n["rps"] and b["p99_ms"] <= n["p99_ms"]
            print(f"  target (req/s >= nginx and p99 <= nginx): {'met' if ok else 'NOT met'}")


def cmd_cycles_table(cycles_path, history_path, wrk_path, fresh_path=None):
    cycles = [json.loads(line) for line in open(cycles_path) if line.strip()]
    history = {d["id"]: d for d in json.load(open(history_path))}
    with open(wrk_path) as f:
        wrk_text = f.read()
    try:
        w = parse_wrk(wrk_text)
    except ValueError as e:
        w = None
        print(f"wrk printed no summary ({e}); see {wrk_path}")
    print(f"  {'#':>3} {'action':<9} {'strategy':<11} {'deployment':>10} {'outcome':<10} {'wall':>8} {'duration_ms':>11}  reason")
    for c in cycles:
        h = history.get(c.get("deployment"))
        c["duration_ms"] = h["duration_ms"] if h else None
        c["phase"] = h["phase"] if h else ("?" if c["exit"] == 0 else "failed?")
        c["reason"] = h["reason"] if h else ""
        dm = "-" if c["duration_ms"] is None else str(c["duration_ms"])
        print(f"  {c['cycle']:>3} {c['action']:<9} {c['strategy']:<11} {('#' + str(c['deployment'])) if c.get('deployment') else '?':>10} {c['phase']:<10} {c['wall_s']:>7.2f}s {dm:>11}  {c['reason']}")
    print()
    print("switch time per strategy (all: deploy and rollback together):")
    print(f"  {'strategy':<11} {'action':<9} {'n':>3} {'failed':>6} {'wall min':>9} {'median':>8} {'max':>8}   {'duration_ms min':>15} {'median':>7} {'max':>7}")
    groups = []
    for s in sorted({c["strategy"] for c in cycles}):
        groups += [(s, a) for a in ("all", "deploy", "rollback")]
    for s, a in groups:
        cs = [c for c in cycles if c["strategy"] == s and a in ("all", c["action"])]
        if not cs:
            continue
        wall = [c["wall_s"] for c in cs]
        dms = [c["duration_ms"] for c in cs if c["duration_ms"] is not None]
        failed = sum(1 for c in cs if c["exit"] != 0 or c["phase"] != "succeeded")
        dm = (f"{min(dms):>15} {statistics.median(dms):>7.0f} {max(dms):>7}") if dms else f"{'-':>15} {'-':>7} {'-':>7}"
        print(f"  {s:<11} {a:<9} {len(cs):>3} {failed:>6} {min(wall):>8.2f}s {statistics.median(wall):>7.2f}s {max(wall):>7.2f}s   {dm}")
    print()
    if w:
        print("load during the cycles (wrk, keep-alive connections):")
        print(f"  requests {w['requests']}  in {w['duration_ms'] / 1000:.1f}s  ({w['rps']:.0f} req/s, p50 {fmt_ms(w['p50_ms'])}, p99 {fmt_ms(w['p99_ms'])})")
        print(f"  failed   {w['errors']}  = non-2xx {w['non2xx']} + socket errors (connect {w['connect']}, read {w['read']}, write {w['write']}, timeout {w['timeout']})")
    if fresh_path:
        fr = json.load(open(fresh_path))
        print("load during the cycles (python client, a new connection per request):")
        print(f"  requests {fr['sent']}  failed {fr['failed']}  (non-2xx {fr['non2xx']}, errors {fr['errors']})")
        for f in fr["first_failures"]:
            at = fr["started_at"] + f["t"]
            during = next((f"during cycle {c['cycle']} {c['action']} ({c['strategy']})" for c in cycles if c["start"] <= at <= c["end"]), "between switches")
            print(f"    at +{f['t']:.3f}s, {during}: {f['what']}")


def main(argv):
    if len(argv) in (5, 6) and argv[1] == "parse":
        cmd_parse(*argv[2:])
    elif len(argv) == 3 and argv[1] == "proxy-table":
        cmd_proxy_table(argv[2])
    elif len(argv) in (5, 6) and argv[1] == "cycles-table":
        cmd_cycles_table(*argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
