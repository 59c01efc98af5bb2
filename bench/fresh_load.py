#!/usr/bin/env python3
"""bench/fresh_load.py: steady load that opens a new connection for every request.

wrk keeps its connections open, so it never sees a connect refused or a reset on a fresh
connection during a switch; this client does. It is independent of Baton's own code.

  fresh_load.py URL STOP_FILE MAX_SECONDS RATE_PER_S

Runs until STOP_FILE exists or MAX_SECONDS pass, then prints one JSON object: sent, ok,
non2xx, errors, failed, and the first 20 failures with their time since the start.
"""

import http.client
import json
import os
import sys
import time
import urllib.parse


def main():
    url, stop_file, max_s, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    u = urllib.parse.urlsplit(url)
    period = 1.0 / rate
    start = time.monotonic()
    stats = {"started_at": time.time(), "sent": 0, "ok": 0, "non2xx": 0, "errors": 0, "first_failures": []}
    next_at = start
    while time.monotonic() - start < max_s and not os.path.exists(stop_file):
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += period
        t = time.monotonic() - start
        stats["sent"] += 1
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=2.0)
        what = None
        try:
            conn.request("GET", u.path or "/")
            resp = conn.getresponse()
            resp.read()
            if 200 <= resp.status < 300:
                stats["ok"] += 1
            else:
                stats["non2xx"] += 1
                what = f"status {resp.status}"
        except Exception as e:  # every failure counts, whatever its kind
            stats["errors"] += 1
            what = f"{type(e).__name__}: {e}"
        finally:
            conn.close()
        if what and len(stats["first_failures"]) < 20:
            stats["first_failures"].append({"t": t, "what": what})
    stats["failed"] = stats["non2xx"] + stats["errors"]
    stats["seconds"] = time.monotonic() - start
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
