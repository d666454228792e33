#!/usr/bin/env python3
"""Admin write load: how many durable Delegate calls per second a running sidecar
acknowledges, with an independent client (Python grpcio, not tilgang's own).

Usage:
    python3 -m venv /tmp/grpcvenv && /tmp/grpcvenv/bin/pip install grpcio grpcio-tools
    target/release/tilgang serve --data /tmp/admin-load-data &   # with roles.json below
    /tmp/grpcvenv/bin/python scripts/admin_load.py [--addr 127.0.0.1:50052]
        [--writes 2000] [--workers 16] [--owners 1]

The data directory needs a roles.json that makes --actor an APIADM of every
owner used; `--prepare DIR` writes one (and nothing else) for the default
owners and actor, then exits. Each write delegates `instances-read` to a new
supplier, so every call changes a file, fsyncs it and appends an audit line.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time

OWNERS = ["991825827", "983887457", "974760673", "810418672"]
ACTOR = "01017012345"


def org_numbers(start):
    """Valid mod-11 org numbers from `start` (8-digit prefix) upwards."""
    weights = [3, 2, 7, 6, 5, 4, 3, 2]
    n = start
    while True:
        s = f"{n:08d}"
        c = 11 - sum(int(d) * w for d, w in zip(s, weights)) % 11
        if c == 11:
            yield s + "0"
        elif c != 10:
            yield s + str(c)
        n += 1


def stubs():
    """Generate the Python stubs for delegations.proto into a temp dir."""
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto")
    out = tempfile.mkdtemp()
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"--python_out={out}",
         f"--grpc_python_out={out}", "tilgang/v1/delegations.proto"],
        check=True,
    )
    sys.path.insert(0, out)
    from tilgang.v1 import delegations_pb2, delegations_pb2_grpc  # noqa: E402
    return delegations_pb2, delegations_pb2_grpc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--addr", default="127.0.0.1:50052")
    p.add_argument("--writes", type=int, default=2000)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--owners", type=int, default=1, choices=range(1, len(OWNERS) + 1))
    p.add_argument("--actor", default=ACTOR)
    p.add_argument("--prepare", metavar="DATA_DIR")
    a = p.parse_args()

    if a.prepare:
        os.makedirs(a.prepare, exist_ok=True)
        roles = [{"org": o, "person": a.actor, "role": "APIADM"} for o in OWNERS]
        with open(os.path.join(a.prepare, "roles.json"), "w") as f:
            json.dump(roles, f, indent=2)
        print(f"wrote {a.prepare}/roles.json")
        return

    import grpc
    pb, pb_grpc = stubs()
    channel = grpc.insecure_channel(a.addr)
    client = pb_grpc.DelegationsStub(channel)
    owners = OWNERS[: a.owners]
    suppliers = org_numbers(30_000_000)
    jobs = [(owners[i % len(owners)], next(suppliers)) for i in range(a.writes)]
    jobs = [(o, s) for o, s in jobs if o != s]

    def write(job):
        owner, supplier = job
        t = time.perf_counter()
        client.Delegate(pb.DelegateRequest(owner=owner, supplier=supplier,
                                           rights=["instances-read"], actor=a.actor))
        return time.perf_counter() - t

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(a.workers) as pool:
        latencies = sorted(pool.map(write, jobs))
    elapsed = time.perf_counter() - start
    listed = client.ListDelegations(pb.ListDelegationsRequest(owner=owners[0]))
    print(f"{len(jobs)} acknowledged writes to {len(owners)} owner(s) with {a.workers} "
          f"workers in {elapsed:.2f} s: {len(jobs) / elapsed:.0f} writes/s")
    print(f"latency p50 {latencies[len(latencies) // 2] * 1e3:.2f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99)] * 1e3:.2f} ms")
    print(f"overview of {owners[0]} lists {len(listed.delegations)} delegations")


if __name__ == "__main__":
    main()
