#!/usr/bin/env python3
"""Timing probes for scripts/scale.sh, with an independent gRPC client
(Python grpcio; messages hand-encoded, so no generated stubs are needed).

Setup (scale.sh does this itself, into target/scale-venv):
    python3 -m venv target/scale-venv && target/scale-venv/bin/pip install grpcio

Subcommands (each prints `key=value` lines for `eval`, exits non-zero on
failure, and gives up after --timeout seconds):

  wait-serving --addr A --start-file F [--ready-file R]
      Poll grpc.health.v1.Health/Check ("" service) every 5 ms until it
      answers SERVING; `serving_s` is the time from the start to that answer.
      Started before the server, so its own start-up is not measured: it
      creates R once it is ready to poll, then waits for F, which the caller
      writes as "EPOCH PID" (epoch seconds taken just before the server was
      started, and its pid, checked while waiting).
  check --addr A --supplier S --owner O --scope SC
      One IsAuthorized; prints the answer; exits 0 only for an allow.
  delegate --addr A --admin ADMIN --owner O --actor P --spare-offset K --repeat R
      R times, for a supplier nobody has delegated to (spare org numbers, see
      gen_delegations.py): check it is denied, send Delegate(instances-read),
      then call IsAuthorized in a loop until it is allowed. `ack_ms` is
      send -> Delegate answered, `visible_ms` send -> first allowed answer,
      `next_allowed` how many of the R first IsAuthorized after the ack were
      already allowed.
  rename --addr A --data DIR --owner O --actor P --spare-offset K --repeat R
      R times: add a spare supplier to the owner's file by writing a temp file
      beside it and renaming it over the file, then call IsAuthorized until it
      is allowed. `visible_ms` is rename -> first allowed answer.
"""

import argparse
import json
import os
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_delegations import SCOPE, SPARE_BASE, org_numbers  # noqa: E402
from grpc_wire import decode, field  # noqa: E402

try:
    import grpc
except ImportError:
    sys.exit("error: python grpcio is missing; "
             "python3 -m venv target/scale-venv && target/scale-venv/bin/pip install grpcio")

IS_AUTHORIZED = "/tilgang.v1.Authorizer/IsAuthorized"
DELEGATE = "/tilgang.v1.Delegations/Delegate"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
RIGHT = "instances-read"
# Reconnect at once: grpcio's default backoff (1 s, growing) would be measured
# as start-up time.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 5),
    ("grpc.min_reconnect_backoff_ms", 5),
    ("grpc.max_reconnect_backoff_ms", 50),
]


class Client:
    def __init__(self, addr):
        self.channel = grpc.insecure_channel(addr, options=CHANNEL_OPTIONS)
        # No serializers: grpcio sends and returns the raw message bytes.
        self.is_authorized_rpc = self.channel.unary_unary(IS_AUTHORIZED)
        self.delegate_rpc = self.channel.unary_unary(DELEGATE)
        self.health_rpc = self.channel.unary_unary(HEALTH_CHECK)

    def is_authorized(self, supplier, owner, scope=SCOPE):
        msg = field(1, supplier) + field(2, owner) + field(3, scope)
        d = decode(self.is_authorized_rpc(msg, timeout=5))
        return {
            "allowed": bool(d.get(1, [0])[0]),
            "reasons": d.get(2, []),
            "errors": d.get(3, []),
            "revision": d.get(4, [""])[0],
        }

    def delegate(self, owner, supplier, actor):
        msg = field(1, owner) + field(2, supplier) + field(3, RIGHT) + field(4, actor)
        return decode(self.delegate_rpc(msg, timeout=30))

    def serving(self):
        # HealthCheckResponse.status: 1 = SERVING.
        return decode(self.health_rpc(b"", timeout=1)).get(1, [0])[0] == 1


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def alive(pid):
    """Whether `pid` runs (a zombie, exited but not yet waited for, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_serving(a):
    host, port = a.addr.rsplit(":", 1)
    deadline = time.monotonic() + a.timeout
    if a.ready_file:
        open(a.ready_file, "w").close()
    while not os.path.exists(a.start_file):
        if time.monotonic() > deadline:
            fail(f"{a.start_file} did not appear within {a.timeout} s")
        time.sleep(0.001)
    with open(a.start_file) as f:
        since, pid = f.read().split()
    since, pid = float(since), int(pid)
    client = None
    while time.monotonic() < deadline:
        if not alive(pid):
            fail(f"the server (pid {pid}) exited before it was serving")
        if client is None:
            # Cheaper than a gRPC call while nothing listens yet.
            try:
                socket.create_connection((host, int(port)), timeout=0.5).close()
                client = Client(a.addr)
            except OSError:
                time.sleep(0.005)
                continue
        try:
            if client.serving():
                print(f"serving_s={time.time() - since:.3f}")
                return
        except grpc.RpcError:
            pass
        time.sleep(0.005)
    fail(f"{a.addr} did not answer SERVING within {a.timeout} s")


def check(a):
    try:
        r = Client(a.addr).is_authorized(a.supplier, a.owner, a.scope)
    except grpc.RpcError as e:
        fail(f"IsAuthorized on {a.addr}: {e.code()}: {e.details()}")
    print(f"allowed={str(r['allowed']).lower()} reasons={','.join(r['reasons'])} "
          f"errors={len(r['errors'])} revision={r['revision']}")
    sys.exit(0 if r["allowed"] else 2)


def until_allowed(client, supplier, owner, deadline):
    """Call IsAuthorized until it allows; (time.monotonic() of the answer, calls)."""
    calls = 0
    while time.monotonic() < deadline:
        calls += 1
        if client.is_authorized(supplier, owner)["allowed"]:
            return time.monotonic(), calls
    fail(f"{supplier} -> {owner} was still denied after the timeout")


def spares(a):
    return org_numbers(SPARE_BASE, a.spare_offset + a.repeat)[a.spare_offset:]


def summary(prefix, values):
    return (f"{prefix}_median={statistics.median(values):.1f} "
            f"{prefix}_max={max(values):.1f} {prefix}_all={'/'.join(f'{v:.1f}' for v in values)}")


def delegate(a):
    gateway, admin = Client(a.addr), Client(a.admin)
    acks, visible, next_allowed = [], [], 0
    for supplier in spares(a):
        if gateway.is_authorized(supplier, a.owner)["allowed"]:
            fail(f"{supplier} -> {a.owner} is allowed before the Delegate; pick another --spare-offset")
        sent = time.monotonic()
        try:
            admin.delegate(a.owner, supplier, a.actor)
        except grpc.RpcError as e:
            fail(f"Delegate {supplier} -> {a.owner}: {e.code()}: {e.details()}")
        acked = time.monotonic()
        seen, calls = until_allowed(gateway, supplier, a.owner, acked + a.timeout)
        next_allowed += calls == 1
        acks.append((acked - sent) * 1000)
        visible.append((seen - sent) * 1000)
    print(summary("ack_ms", acks))
    print(summary("visible_ms", visible))
    print(f"next_allowed={next_allowed}/{a.repeat}")


def part_path(data, owner, supplier):
    """The file `supplier`'s delegation by `owner` goes in: the owner's file,
    or for a split owner the part whose name is a prefix of the supplier, else
    a new part named by the shortest prefix (3 digits or more) no part starts
    with (`part_for` in src/snapshot/load/owners.rs)."""
    deleg = os.path.join(data, "delegations")
    single = os.path.join(deleg, f"{owner}.json")
    split = os.path.join(deleg, owner)
    if os.path.exists(single) or not os.path.isdir(split):
        return single
    parts = sorted(n[:-5] for n in os.listdir(split) if n.endswith(".json") and not n.startswith("."))
    for p in parts:
        if supplier.startswith(p):
            return os.path.join(split, p + ".json")
    for n in range(3, 9):
        prefix = supplier[:n]
        if not any(p.startswith(prefix) for p in parts):
            return os.path.join(split, prefix + ".json")
    return os.path.join(split, supplier[:8] + ".json")


def rename(a):
    gateway = Client(a.addr)
    visible = []
    for supplier in spares(a):
        if gateway.is_authorized(supplier, a.owner)["allowed"]:
            fail(f"{supplier} -> {a.owner} is allowed before the rename; pick another --spare-offset")
        path = part_path(a.data, a.owner, supplier)
        # Hidden, so tilgang ignores it while it exists.
        tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".scale-tmp")
        entities = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                entities = json.load(f)
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        org = "Tilgang::Organization"
        entities.append({
            "uid": {"type": "Tilgang::Delegation", "id": f"{a.owner}/{supplier}"},
            "attrs": {
                "owner": {"type": org, "id": a.owner},
                "supplier": {"type": org, "id": supplier},
                "rights": [{"type": "Tilgang::Right", "id": RIGHT}],
                "delegatedBy": a.actor,
                "createdAt": at,
                "updatedAt": at,
            },
            "parents": [],
        })
        entities.sort(key=lambda e: e["attrs"]["supplier"]["id"])
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(entities, indent=2) + "\n")
        renamed = time.monotonic()
        os.replace(tmp, path)
        seen, _ = until_allowed(gateway, supplier, a.owner, renamed + a.timeout)
        visible.append((seen - renamed) * 1000)
    print(summary("visible_ms", visible))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--addr", required=True, help="gateway listener host:port")
    common.add_argument("--timeout", type=float, default=30)

    s = sub.add_parser("wait-serving", parents=[common])
    s.add_argument("--start-file", required=True, help='where the caller writes "EPOCH PID"')
    s.add_argument("--ready-file", help="created once this probe is ready")
    s.set_defaults(run=wait_serving)

    s = sub.add_parser("check", parents=[common])
    s.add_argument("--supplier", required=True)
    s.add_argument("--owner", required=True)
    s.add_argument("--scope", default=SCOPE)
    s.set_defaults(run=check)

    for name, run in (("delegate", delegate), ("rename", rename)):
        s = sub.add_parser(name, parents=[common])
        s.add_argument("--owner", required=True)
        s.add_argument("--actor", required=True)
        s.add_argument("--spare-offset", type=int, default=0)
        s.add_argument("--repeat", type=int, default=5)
        if name == "delegate":
            s.add_argument("--admin", required=True, help="admin listener host:port")
        else:
            s.add_argument("--data", required=True, help="the served data directory")
        s.set_defaults(run=run)

    a = p.parse_args()
    try:
        a.run(a)
    except grpc.RpcError as e:
        fail(f"{e.code()}: {e.details()}")


if __name__ == "__main__":
    main()
