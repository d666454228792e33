#!/usr/bin/env python3
"""The owner's page under load: overview render time for an owner with
100,000 suppliers (the first page, a later page, and a number search), and
page sizes, against the release binary.

Usage:
    scripts/web_bench.py [--tilgang target/release/tilgang] [--suppliers 100000] [--rounds 400]

Generates a data directory (scripts/gen_delegations.py: one owner with
--suppliers suppliers, in parts, and roles.json making 01017012345 its DAGL)
in a temp directory, starts `tilgang serve` on loopback ports the kernel picks
with the web page in development mode, logs in over HTTP, then asks each page
--rounds times, one request at a time on a kept-alive connection, and prints
p50/p99/max latency (client-side, whole response) and the body size. Bounded:
rounds x 3 requests to 127.0.0.1, then the server is stopped. stdlib only.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tilgang", default=str(REPO / "target/release/tilgang"))
    ap.add_argument("--suppliers", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=400)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tilgang-web-bench-"))
    data = tmp / "data"
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts/gen_delegations.py"), str(data), "--owners", "1",
         "--per-owner", "1", "--huge-owner", str(args.suppliers)],
        check=True, capture_output=True, text=True).stdout
    facts = dict(line.split("=", 1) for line in out.split())
    owner, actor = facts["huge_owner"], facts["actor"]
    log = open(tmp / "serve.log", "w+")
    proc = subprocess.Popen(
        [args.tilgang, "serve", "--policies", str(REPO / "policies"), "--data", str(data),
         "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--metrics-listen", "off",
         "--web-listen", "127.0.0.1:0"],
        stderr=log, env={**os.environ, "RUST_LOG": "info"})
    try:
        web = None
        for _ in range(600):
            log.seek(0)
            m = re.search(r"web_addr=(127\.0\.0\.1:\d+)", log.read())
            if m:
                web = m.group(1)
                break
            time.sleep(0.1)
        if not web:
            print("error: no web_addr in the log", file=sys.stderr)
            return 1
        host, port = web.split(":")
        conn = http.client.HTTPConnection(host, int(port))
        cookies: dict[str, str] = {}

        def req(method: str, path: str, body: str | None = None) -> tuple[int, bytes, float]:
            headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
                headers["Origin"] = f"http://{web}"
            t0 = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            b = r.read()
            took = time.perf_counter() - t0
            for v in r.headers.get_all("Set-Cookie") or []:
                k, _, rest = v.partition("=")
                cookies[k] = rest.split(";")[0]
            return r.status, b, took

        _, body, _ = req("GET", "/login")
        csrf = re.search(rb'name="csrf" value="([0-9a-f]+)"', body).group(1).decode()
        status, _, _ = req("POST", "/login", f"csrf={csrf}&person={actor}")
        assert status == 303, status
        # The actor is DAGL of every generated owner: act for the big one.
        _, page, _ = req("GET", "/org")
        csrf = re.search(rb'name="csrf" value="([0-9a-f]+)"', page).group(1).decode()
        status, _, _ = req("POST", "/org", f"csrf={csrf}&org={owner}")
        assert status == 303, status
        _, first, _ = req("GET", "/overview")
        nxt = re.search(rb'after=(\d{9})', first)
        later = f"/overview?q=&after={nxt.group(1).decode()}" if nxt else "/overview"
        suppliers = re.findall(rb'/edit/(\d{9})"', first)
        prefix = suppliers[len(suppliers) // 2][:6].decode() if suppliers else "5000"
        pages = {"overview, page 1": "/overview", "overview, a later page": later,
                 f"search `{prefix}`": f"/overview?q={prefix}"}
        print(f"owner {owner} with {args.suppliers} suppliers; {args.rounds} rounds each, sequential, keep-alive")
        for name, path in pages.items():
            times, size = [], 0
            for _ in range(args.rounds):
                status, b, took = req("GET", path)
                assert status == 200, (path, status)
                times.append(took * 1000)
                size = len(b)
            print(f"{name:32} p50 {percentile(times, 50):6.2f} ms  p99 {percentile(times, 99):6.2f} ms  "
                  f"max {max(times):6.2f} ms  body {size / 1024:6.1f} KiB")
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
