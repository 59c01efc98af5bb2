#!/usr/bin/env python3
"""bench/restart_load.py: steady paced load that records every request's start and latency.

Used by bench/restart.sh to compare the latency of requests made while Baton restarts with
those made while it does not, in the same run. Standard library only: it measures what a
client sees.

  restart_load.py URL STOP_FILE MAX_SECONDS KEEPALIVE_WORKERS FRESH_WORKERS RATE_PER_WORKER

Keep-alive workers send over one connection (opened again after an error or a
`Connection: close`); fresh workers open a new connection per request. Each worker sends at
RATE_PER_WORKER requests/s on a fixed schedule (no bursts to catch up). A request fails on a
connection error, a timeout (5 s) or a status outside 2xx.

Runs until STOP_FILE exists or MAX_SECONDS pass, then prints one JSON object whose `samples`
are [start (epoch s), latency (ms), keepalive (0/1), error or null], one per request.
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

TIMEOUT_S = 5.0


def worker(u, keepalive, period, stop, deadline, samples, lock):
    path = u.path or "/"
    conn = None
    next_at = time.monotonic()
    mine = []
    while not stop.is_set() and time.monotonic() < deadline:
        now = time.monotonic()
        if now < next_at:
            if stop.wait(next_at - now):
                break
        next_at = max(next_at + period, time.monotonic())
        when = time.time()
        t0 = time.perf_counter()
        error = None
        try:
            if conn is None:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT_S)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if not 200 <= resp.status < 300:
                error = f"status {resp.status}"
            if not keepalive or resp.will_close:
                conn.close()
                conn = None
        except Exception as e:  # every failure counts, whatever its kind
            error = f"{type(e).__name__}: {e}"
            if conn is not None:
                conn.close()
            conn = None
        latency_ms = (time.perf_counter() - t0) * 1000.0
        mine.append([round(when, 4), round(latency_ms, 3), 1 if keepalive else 0, error])
    if conn is not None:
        conn.close()
    with lock:
        samples.extend(mine)


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    url, stop_file = sys.argv[1], sys.argv[2]
    max_s = float(sys.argv[3])
    keepalive, fresh = int(sys.argv[4]), int(sys.argv[5])
    rate = float(sys.argv[6])
    u = urllib.parse.urlsplit(url)
    samples, lock = [], threading.Lock()
    stop = threading.Event()
    deadline = time.monotonic() + max_s
    threads = [
        threading.Thread(
            target=worker, args=(u, ka, 1.0 / rate, stop, deadline, samples, lock), daemon=True
        )
        for ka in [True] * keepalive + [False] * fresh
    ]
    for t in threads:
        t.start()
    while time.monotonic() < deadline and not os.path.exists(stop_file):
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(TIMEOUT_S + 1)
    with lock:
        samples.sort()
        print(json.dumps({"keepalive_workers": keepalive, "fresh_workers": fresh,
                          "rate_per_worker": rate, "samples": samples}))


if __name__ == "__main__":
    main()
