#!/usr/bin/env python3
"""bench/lb_load.py: steady load at a fixed rate, on keep-alive and on new connections.

Used by bench/external_lb.sh in front of a load balancer. It is independent of Baton's own
code (the standard library only), so it counts what a user of the load balancer would see.

  lb_load.py URL STOP_FILE MAX_SECONDS KEEPALIVE_WORKERS FRESH_WORKERS RATE_PER_WORKER

Each keep-alive worker sends its requests over one connection (opened again after an error
or a `Connection: close`); each fresh worker opens a new connection for every request. Every
worker sends at RATE_PER_WORKER requests/s, on a fixed schedule: one that falls behind (a
slow answer) does not burst to catch up. A request fails on a connection error, a timeout
(5 s) or a status outside 2xx.

Runs until STOP_FILE exists or MAX_SECONDS pass, then prints one JSON object: sent, ok,
non2xx, errors, failed, by_version (from the demo service's JSON body), and failures: the
wall-clock time (epoch seconds) and kind of every failure, at most 100,000.
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

TIMEOUT_S = 5.0
MAX_FAILURES_KEPT = 100_000


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.ok = 0
        self.non2xx = 0
        self.errors = 0
        self.by_version = {}
        self.failures = []

    def record(self, when, status, body, error):
        with self.lock:
            self.sent += 1
            what = None
            if error is not None:
                self.errors += 1
                what = error
            elif 200 <= status < 300:
                self.ok += 1
                try:
                    version = json.loads(body).get("version", "?")
                except ValueError:
                    version = "?"
                self.by_version[version] = self.by_version.get(version, 0) + 1
            else:
                self.non2xx += 1
                what = f"status {status}"
            if what is not None and len(self.failures) < MAX_FAILURES_KEPT:
                self.failures.append([round(when, 3), what])


def worker(u, keepalive, period, stop, deadline, stats):
    path = u.path or "/"
    conn = None
    next_at = time.monotonic()
    while not stop.is_set() and time.monotonic() < deadline:
        now = time.monotonic()
        if now < next_at:
            if stop.wait(next_at - now):
                break
        # Behind schedule (a slow answer): start again from now rather than burst.
        next_at = max(next_at + period, time.monotonic())
        when = time.time()
        if conn is None:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT_S)
        status, body, error = 0, b"", None
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
            if not keepalive or resp.will_close:
                conn.close()
                conn = None
        except Exception as e:  # every failure counts, whatever its kind
            error = f"{type(e).__name__}: {e}"
            conn.close()
            conn = None
        stats.record(when, status, body, error)
    if conn is not None:
        conn.close()


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    url, stop_file = sys.argv[1], sys.argv[2]
    max_s = float(sys.argv[3])
    keepalive, fresh = int(sys.argv[4]), int(sys.argv[5])
    rate = float(sys.argv[6])
    u = urllib.parse.urlsplit(url)
    stats = Stats()
    stop = threading.Event()
    started = time.time()
    deadline = time.monotonic() + max_s
    threads = [
        threading.Thread(target=worker, args=(u, ka, 1.0 / rate, stop, deadline, stats), daemon=True)
        for ka in [True] * keepalive + [False] * fresh
    ]
    for t in threads:
        t.start()
    while time.monotonic() < deadline and not os.path.exists(stop_file):
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(TIMEOUT_S + 1)
    with stats.lock:
        out = {
            "started_at": started,
            "seconds": time.time() - started,
            "keepalive_workers": keepalive,
            "fresh_workers": fresh,
            "rate_per_worker": rate,
            "sent": stats.sent,
            "ok": stats.ok,
            "non2xx": stats.non2xx,
            "errors": stats.errors,
            "failed": stats.non2xx + stats.errors,
            "by_version": stats.by_version,
            "failures": stats.failures,
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
