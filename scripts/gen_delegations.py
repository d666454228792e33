#!/usr/bin/env python3
"""Generate a tilgang data directory with many delegations, for scale tests.

Usage:
    scripts/gen_delegations.py OUT_DIR [--owners 1000] [--per-owner 100]
        [--pool 10000] [--huge-owner 0] [--huge-layout parts] [--seed 1]
        [--actor 01017012345]

Writes OUT_DIR/delegations/<owner>.json for OWNERS owners, each delegating to
PER_OWNER distinct suppliers drawn at random from a shared pool of POOL
suppliers, and OUT_DIR/roles.json making ACTOR a DAGL of every owner, so admin
writes can be made for any of them. With --huge-owner M, one more owner
delegates to M suppliers (the pool extended to M when it is smaller); with
--huge-layout parts (the default) its delegations are written as tilgang's
admin store leaves an owner past 1,000 suppliers, in parts
OUT_DIR/delegations/<owner>/<prefix>.json of at most 1,000 suppliers each
(src/snapshot/load/owners.rs, `plan`); with --huge-layout file, as one file,
which tilgang splits on the first admin write to that owner.

Each owner file is what tilgang's admin API writes for the same delegations
(serde_json pretty-printed, suppliers sorted, attributes in the order tilgang
renders them), written as text from a template rather than through `json`, so
1,000,000 delegations take seconds, not minutes. Rights alternate at random
between `instances-full` and `instances-read`; both give
`altinn:serviceowner/instances.read`.

Org numbers are 9 digits with a valid mod-11 check digit: owners from
100000000 up, pool suppliers from 500000000 up, and spare suppliers (valid,
delegated by nobody, for visibility tests) from 900000000 up, so the three sets
never meet. The same arguments and --seed give the same files.

On stdout, one `key=value` line each (for `eval` in a shell script):
    owners, per_owner, pool, delegations   what was written
    supplier, owner, scope                 one allowed triple
    owner2                                 another owner with PER_OWNER suppliers
                                           (the same as `owner` when OWNERS is 1)
    actor                                  the DAGL of every owner
    spare1, spare2                         suppliers no owner has delegated to
    huge_owner, huge_suppliers             only with --huge-owner
"""

import argparse
import os
import random
import sys
import time

WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)
SCOPE = "altinn:serviceowner/instances.read"
RIGHTS = ("instances-full", "instances-read")
OWNER_BASE = 10_000_000
SUPPLIER_BASE = 50_000_000
SPARE_BASE = 90_000_000


def org_numbers(prefix, count):
    """`count` valid org numbers from the 8-digit `prefix` upwards (the same rule
    as `OrgNumber::parse` in src/ids.rs: weights 3 2 7 6 5 4 3 2, check digit
    11 - sum % 11, where 11 means 0 and 10 means the prefix has no number)."""
    out = []
    n = prefix
    while len(out) < count:
        s = f"{n:08d}"
        c = 11 - sum(int(d) * w for d, w in zip(s, WEIGHTS)) % 11
        if c == 11:
            out.append(s + "0")
        elif c != 10:
            out.append(s + str(c))
        n += 1
    return out


# One entity as `serde_json::to_vec_pretty` renders `delegation_json(...)`
# (src/snapshot/load.rs) with serde_json's `preserve_order`.
ENTITY = """  {{
    "uid": {{
      "type": "Tilgang::Delegation",
      "id": "{owner}/{supplier}"
    }},
    "attrs": {{
      "owner": {{
        "type": "Tilgang::Organization",
        "id": "{owner}"
      }},
      "supplier": {{
        "type": "Tilgang::Organization",
        "id": "{supplier}"
      }},
      "rights": [
{rights}
      ],
      "delegatedBy": "{actor}",
      "createdAt": "{at}",
      "updatedAt": "{at}"
    }},
    "parents": []
  }}"""

RIGHT = """        {{
          "type": "Tilgang::Right",
          "id": "{right}"
        }}"""

RIGHT_TEXT = {r: RIGHT.format(right=r) for r in RIGHTS}


def owner_file(owner, suppliers, rng, actor):
    """The text of one owner's file; `suppliers` sorted."""
    parts = []
    for supplier in suppliers:
        day = rng.randrange(1, 29)
        parts.append(
            ENTITY.format(
                owner=owner,
                supplier=supplier,
                rights=RIGHT_TEXT[RIGHTS[rng.getrandbits(1)]],
                actor=actor,
                at=f"2026-01-{day:02d}T09:00:00Z",
            )
        )
    return "[\n" + ",\n".join(parts) + "\n]\n" if parts else "[]\n"


PART_MIN_DIGITS = 3
PART_MAX_DIGITS = 8
PART_MAX = 1000


def plan(suppliers, length=PART_MIN_DIGITS):
    """Group sorted `suppliers` into parts named by prefixes of at least
    `length` digits, longer where a group would hold more than PART_MAX: the
    same rule as `plan` in src/snapshot/load/owners.rs."""
    out = {}
    i = 0
    while i < len(suppliers):
        prefix = suppliers[i][:length]
        j = i
        while j < len(suppliers) and suppliers[j].startswith(prefix):
            j += 1
        group = suppliers[i:j]
        if len(group) > PART_MAX and length < PART_MAX_DIGITS:
            out.update(plan(group, length + 1))
        else:
            out[prefix] = group
        i = j
    return out


def write_file(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out_dir")
    p.add_argument("--owners", type=int, default=1000)
    p.add_argument("--per-owner", type=int, default=100)
    p.add_argument("--pool", type=int, default=10000)
    p.add_argument("--huge-layout", choices=("parts", "file"), default="parts")
    p.add_argument("--huge-owner", type=int, default=0, metavar="M",
                   help="add one owner with M suppliers (0: none)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--actor", default="01017012345")
    a = p.parse_args()
    if a.owners < 1 or a.per_owner < 1 or a.pool < 1 or a.huge_owner < 0:
        p.error("--owners, --per-owner and --pool must be at least 1, --huge-owner at least 0")
    if a.per_owner > a.pool:
        p.error(f"--per-owner {a.per_owner} is more than --pool {a.pool}")
    if a.owners + 1 > 30_000_000 or max(a.pool, a.huge_owner) > 30_000_000:
        p.error("at most 30,000,000 owners or suppliers")

    started = time.monotonic()
    rng = random.Random(a.seed)
    owners = org_numbers(OWNER_BASE, a.owners + (1 if a.huge_owner else 0))
    pool = org_numbers(SUPPLIER_BASE, max(a.pool, a.huge_owner))
    shared = pool[: a.pool]
    deleg_dir = os.path.join(a.out_dir, "delegations")
    os.makedirs(deleg_dir, exist_ok=True)

    total = 0
    first = None
    for owner in owners[: a.owners]:
        suppliers = sorted(rng.sample(shared, a.per_owner))
        if first is None:
            first = (suppliers[0], owner)
        write_file(os.path.join(deleg_dir, owner + ".json"),
                   owner_file(owner, suppliers, rng, a.actor))
        total += len(suppliers)
    huge = None
    if a.huge_owner:
        huge = owners[-1]
        suppliers = sorted(rng.sample(pool, a.huge_owner))
        if a.huge_layout == "parts" and len(suppliers) > PART_MAX:
            os.makedirs(os.path.join(deleg_dir, huge), exist_ok=True)
            for prefix, group in plan(suppliers).items():
                write_file(os.path.join(deleg_dir, huge, prefix + ".json"),
                           owner_file(huge, group, rng, a.actor))
        else:
            write_file(os.path.join(deleg_dir, huge + ".json"),
                       owner_file(huge, suppliers, rng, a.actor))
        total += len(suppliers)

    roles = ",\n".join(
        f'  {{ "org": "{o}", "person": "{a.actor}", "role": "DAGL" }}' for o in owners
    )
    write_file(os.path.join(a.out_dir, "roles.json"), "[\n" + roles + "\n]\n")

    spare = org_numbers(SPARE_BASE, 2)
    print(f"owners={len(owners)}")
    print(f"per_owner={a.per_owner}")
    print(f"pool={a.pool}")
    print(f"delegations={total}")
    print(f"supplier={first[0]}")
    print(f"owner={first[1]}")
    print(f"owner2={owners[1] if a.owners > 1 else owners[0]}")
    print(f"scope={SCOPE}")
    print(f"actor={a.actor}")
    print(f"spare1={spare[0]}")
    print(f"spare2={spare[1]}")
    if huge:
        print(f"huge_owner={huge}")
        print(f"huge_suppliers={a.huge_owner}")
    print(f"generated {total} delegations from {len(owners)} owners in {a.out_dir} "
          f"in {time.monotonic() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
