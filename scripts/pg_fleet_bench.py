#!/usr/bin/env python3
"""Revocation visibility across a fleet on the shared PostgreSQL store, with
an independent client (Python grpcio, asyncio; messages hand-encoded with
scripts/grpc_wire.py, so no generated stubs are needed). Used by
scripts/pg_fleet_bench.sh, which starts the store, the followers and the
admin replicas.

Setup (pg_fleet_bench.sh does this itself, into target/scale-venv):
    python3 -m venv target/scale-venv && target/scale-venv/bin/pip install grpcio

Usage:
    pg_fleet_bench.py revocations --followers H:P,H:P,... --admins H:P,H:P
        --metrics H:P,H:P,... [--owners 10000] [--actor 01017012345]
        [--rate 50] [--duration 60] [--lag 1.0] [--tick-ms 5] [--timeout 30]

Writes at --rate writes per second in total, open loop (sent on schedule,
whether or not earlier ones are answered), alternating between the admin
replicas: every 2/rate seconds a new pair (one of the first --owners
generated owners, a spare supplier nobody has delegated to, see
gen_delegations.py) gets `Delegate(instances-read)` on one admin replica,
and --lag seconds later `Revoke` (all rights) on the other. A revocation
waits until its delegation is allowed at every follower, so each follower's
deny is a change it saw, not a pair it never had.

Visibility: one poller per follower calls `BatchIsAuthorized` every
--tick-ms with every pair still waiting there (a delegated pair until it is
allowed, a revoked one until it is denied), and takes the time of the first
answer that shows the change. Timestamps are time.monotonic() on this one
machine. `revoke_all_*` is from sending the Revoke to the last follower's
deny (the whole fleet), `revoke_ack_*` from its answer, `revoke_each_*`
pools every follower's time separately. Each answer carries the store
revision it was decided at: an allow at or past the revoke's revision (or a
deny at or past the delegation's) is counted as `stale_answers`, which must
be 0.

At the end, waits until every follower's `tilgang_store_revision` (GET
/metrics) is the highest revision any write returned: `converged`.

`write_rate` counts the writes sent between --lag after the first and the
last Delegate, when both kinds run (before that only Delegates, after it
only Revokes).

Prints `key=value` lines (for `eval` in a shell script); exits 1 when a
write fails or a change is not visible within --timeout seconds.
"""

import argparse
import asyncio
import math
import os
import resource
import statistics
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_delegations import OWNER_BASE, SCOPE, SPARE_BASE, org_numbers  # noqa: E402
from grpc_wire import field, read_varint, varint  # noqa: E402

try:
    import grpc
    from grpc import aio
except ImportError:
    sys.exit("error: python grpcio is missing; "
             "python3 -m venv target/scale-venv && target/scale-venv/bin/pip install grpcio")

BATCH = "/tilgang.v1.Authorizer/BatchIsAuthorized"
DELEGATE = "/tilgang.v1.Delegations/Delegate"
REVOKE = "/tilgang.v1.Delegations/Revoke"
RIGHT = "instances-read"
MAX_BATCH = 1000  # src/grpc/authorizer.rs


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def fields(buf):
    """Field number -> list of raw values (int for varints, bytes otherwise)."""
    out, i = {}, 0
    while i < len(buf):
        tag, i = read_varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = read_varint(buf, i)
        elif wire == 2:
            size, i = read_varint(buf, i)
            value, i = buf[i:i + size], i + size
        else:
            raise SystemExit(f"error: unexpected protobuf wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def message(number, body):
    """An embedded message field."""
    return varint(number << 3 | 2) + varint(len(body)) + body


def is_authorized_request(owner, supplier):
    return field(1, supplier) + field(2, owner) + field(3, SCOPE)


def answers(resp):
    """BatchIsAuthorizedResponse -> [(allowed, store_revision)]."""
    out = []
    for item in fields(resp).get(1, []):
        f = fields(item)
        out.append((bool(f.get(1, [0])[0]), f.get(5, [0])[0]))
    return out


def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def summary(prefix, values_s):
    """p50/p99/max in milliseconds of values given in seconds."""
    ms = [v * 1000 for v in values_s]
    if not ms:
        return f"{prefix}_n=0 {prefix}_p50=? {prefix}_p99=? {prefix}_max=?"
    return (f"{prefix}_n={len(ms)} {prefix}_p50={pct(ms, 50):.1f} {prefix}_p99={pct(ms, 99):.1f} "
            f"{prefix}_max={max(ms):.1f} {prefix}_mean={statistics.mean(ms):.1f}")


class Pair:
    def __init__(self, owner, supplier, followers):
        self.owner, self.supplier = owner, supplier
        self.request = message(1, is_authorized_request(owner, supplier))
        self.d_send = self.d_ack = self.r_send = self.r_ack = None
        self.d_rev = self.r_rev = None
        self.d_seen = [None] * followers
        self.r_seen = [None] * followers
        self.allowed_everywhere = asyncio.Event()
        self.denied_everywhere = asyncio.Event()


class Fleet:
    def __init__(self, a):
        self.a = a
        self.followers = [aio.insecure_channel(x) for x in a.followers]
        self.batch = [ch.unary_unary(BATCH) for ch in self.followers]
        self.admins = [aio.insecure_channel(x) for x in a.admins]
        self.delegate_rpc = [ch.unary_unary(DELEGATE) for ch in self.admins]
        self.revoke_rpc = [ch.unary_unary(REVOKE) for ch in self.admins]
        # Per follower: pair -> the answer waited for (True: allowed).
        self.pending = [dict() for _ in self.followers]
        self.stale = 0
        self.polls = 0
        self.errors = []
        self.done = False

    def watch(self, pair, allowed):
        for p in self.pending:
            p[pair] = allowed

    async def poller(self, f):
        pending = self.pending[f]
        tick = self.a.tick_ms / 1000
        while not self.done:
            items = list(pending.items())[:MAX_BATCH]
            if items:
                body = b"".join(pair.request for pair, _ in items)
                try:
                    resp = await self.batch[f](body, timeout=5)
                except grpc.RpcError as e:
                    self.errors.append(f"BatchIsAuthorized on {self.a.followers[f]}: {e.code()}: {e.details()}")
                    await asyncio.sleep(0.1)
                    continue
                now = time.monotonic()
                self.polls += 1
                for (pair, want), (allowed, rev) in zip(items, answers(resp)):
                    if want:
                        if not allowed and pair.d_rev is not None and rev >= pair.d_rev:
                            self.stale += 1
                        if allowed and pair.d_seen[f] is None:
                            pair.d_seen[f] = now
                            if pending.get(pair) is True:
                                del pending[pair]
                            if all(pair.d_seen):
                                pair.allowed_everywhere.set()
                    else:
                        if allowed and pair.r_rev is not None and rev >= pair.r_rev:
                            self.stale += 1
                        if not allowed and pair.r_seen[f] is None:
                            pair.r_seen[f] = now
                            del pending[pair]
                            if all(pair.r_seen):
                                pair.denied_everywhere.set()
            await asyncio.sleep(tick)

    async def life(self, k, pair, at):
        """Delegate the pair at `at` on one admin replica, revoke it --lag later
        on the other, and wait until the revocation is seen everywhere."""
        a = self.a
        d_admin, r_admin = k % len(self.admins), (k + 1) % len(self.admins)
        pair.d_send = time.monotonic()
        self.watch(pair, True)
        try:
            resp = await self.delegate_rpc[d_admin](
                field(1, pair.owner) + field(2, pair.supplier) + field(3, RIGHT) + field(4, a.actor),
                timeout=a.timeout)
        except grpc.RpcError as e:
            self.errors.append(f"Delegate {pair.supplier} -> {pair.owner} on {a.admins[d_admin]}: "
                               f"{e.code()}: {e.details()}")
            return
        pair.d_ack = time.monotonic()
        pair.d_rev = fields(resp).get(8, [0])[0]
        await asyncio.sleep(max(0, at + a.lag - time.monotonic()))
        try:
            await asyncio.wait_for(pair.allowed_everywhere.wait(), a.timeout)
        except asyncio.TimeoutError:
            self.errors.append(f"{pair.supplier} -> {pair.owner} was not allowed at every follower "
                               f"{a.timeout} s after its Delegate")
            return
        pair.r_send = time.monotonic()
        self.watch(pair, False)
        try:
            resp = await self.revoke_rpc[r_admin](
                field(1, pair.owner) + field(2, pair.supplier) + field(4, a.actor), timeout=a.timeout)
        except grpc.RpcError as e:
            self.errors.append(f"Revoke {pair.supplier} -> {pair.owner} on {a.admins[r_admin]}: "
                               f"{e.code()}: {e.details()}")
            return
        pair.r_ack = time.monotonic()
        pair.r_rev = fields(resp).get(4, [0])[0]
        try:
            await asyncio.wait_for(pair.denied_everywhere.wait(), a.timeout)
        except asyncio.TimeoutError:
            self.errors.append(f"{pair.supplier} -> {pair.owner} was still allowed somewhere "
                               f"{a.timeout} s after its Revoke")


def metrics_revision(addr):
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("tilgang_store_revision "):
                return int(float(line.split()[1]))
    return None


async def revocations(a):
    owners = org_numbers(OWNER_BASE, a.owners)
    interval = 2 / a.rate
    count = max(1, int(a.duration / interval))
    spares = org_numbers(SPARE_BASE, count)
    fleet = Fleet(a)
    pairs = [Pair(owners[k % len(owners)], spares[k], len(a.followers)) for k in range(count)]
    pollers = [asyncio.create_task(fleet.poller(f)) for f in range(len(a.followers))]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic() + 0.2
    lives = []
    for k, pair in enumerate(pairs):
        at = start + k * interval
        await asyncio.sleep(max(0, at - time.monotonic()))
        lives.append(asyncio.create_task(fleet.life(k, pair, at)))
        if fleet.errors:
            break
    await asyncio.gather(*lives)
    fleet.done = True
    await asyncio.gather(*pollers)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    if fleet.errors:
        for e in fleet.errors[:10]:
            print(f"error: {e}", file=sys.stderr)
        fail(f"{len(fleet.errors)} error(s) during the write load")

    # The rate once revocations have started, up to the last new pair.
    first, last_new = pairs[0].d_send, pairs[-1].d_send
    sends = [t for p in pairs for t in (p.d_send, p.r_send) if first + a.lag <= t <= last_new]
    span = last_new - first - a.lag
    rate = len(sends) / span if span > 0 else float("nan")
    head = max(p.r_rev for p in pairs)
    # Every follower at the last revision any write produced.
    deadline = time.monotonic() + a.timeout
    revs = []
    while time.monotonic() < deadline:
        revs = [metrics_revision(m) for m in a.metrics]
        if all(r is not None and r >= head for r in revs):
            break
        await asyncio.sleep(0.05)
    converged = all(r == head for r in revs)

    revoke_all = [max(p.r_seen) - p.r_send for p in pairs]
    revoke_ack = [max(p.r_seen) - p.r_ack for p in pairs]
    revoke_each = [s - p.r_send for p in pairs for s in p.r_seen]
    deleg_all = [max(p.d_seen) - p.d_send for p in pairs]
    d_acks = [p.d_ack - p.d_send for p in pairs]
    r_acks = [p.r_ack - p.r_send for p in pairs]
    # Which follower saw a revocation last, how often (a slow one shows here).
    last = [0] * len(a.followers)
    for p in pairs:
        last[p.r_seen.index(max(p.r_seen))] += 1
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print(f"writes={2 * len(pairs)} pairs={len(pairs)} write_rate={rate:.1f} "
          f"span_s={pairs[-1].r_send - first:.1f}")
    print(summary("revoke_all", revoke_all))
    print(summary("revoke_ack", revoke_ack))
    print(summary("revoke_each", revoke_each))
    print(summary("deleg_all", deleg_all))
    print(summary("deleg_ackd", d_acks))
    print(summary("revoke_ackd", r_acks))
    print(f"stale_answers={fleet.stale} polls={fleet.polls} client_cpu_s={cpu:.1f}")
    print(f"last_seen_by={'/'.join(map(str, last))}")
    print(f"head={head} follower_revisions={'/'.join(str(r) for r in revs)} "
          f"converged={str(converged).lower()}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("revocations")
    s.add_argument("--followers", required=True, help="gateway listeners host:port,...")
    s.add_argument("--admins", required=True, help="admin listeners host:port,...")
    s.add_argument("--metrics", required=True, help="the followers' metrics listeners host:port,...")
    s.add_argument("--owners", type=int, default=10000, help="owners generated (gen_delegations.py)")
    s.add_argument("--actor", default="01017012345")
    s.add_argument("--rate", type=float, default=50, help="writes per second, all admin replicas together")
    s.add_argument("--duration", type=float, default=60, help="seconds of new pairs")
    s.add_argument("--lag", type=float, default=1.0, help="seconds from a Delegate to its Revoke")
    s.add_argument("--tick-ms", type=float, default=5, help="each follower's poll interval")
    s.add_argument("--timeout", type=float, default=30)
    a = p.parse_args()
    a.followers = a.followers.split(",")
    a.admins = a.admins.split(",")
    a.metrics = a.metrics.split(",")
    if a.rate <= 0 or a.duration <= 0 or a.owners < 1:
        p.error("--rate, --duration and --owners must be positive")
    asyncio.run(revocations(a))


if __name__ == "__main__":
    main()
