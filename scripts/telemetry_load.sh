#!/usr/bin/env bash
# What metrics and the decision log cost `IsAuthorized` throughput: h2load
# against the release binary in several configurations, in one run, rounds
# interleaved so drift on a shared machine hits every configuration alike.
#
# Usage: scripts/telemetry_load.sh
# Tunables (environment): N=100000 C=16 M=32 T=2 ROUNDS=3 PORT=50061
#   BASE=/path/to/an/older/tilgang  adds that binary as configuration `base`
#   (e.g. one built before metrics existed), run with the same flags it knows.
#
# Configurations:
#   nolog     metrics served (they cannot be turned off: atomics), no decision log
#   file      --decision-log to a file in a temp directory
#   devnull   --decision-log /dev/null (formatting and queueing, no disk)
#
# Needs h2load (Debian: `apt-get install -y nghttp2-client`) and python3. Only
# 127.0.0.1; every run is bounded by N.
set -euo pipefail

N=${N:-100000}
C=${C:-16}
M=${M:-32}
T=${T:-2}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-50061}
ADDR="127.0.0.1:${PORT}"
URL="http://${ADDR}/tilgang.v1.Authorizer/IsAuthorized"

cd "$(dirname "$0")/.."
command -v h2load >/dev/null || { echo "error: install h2load (apt-get install -y nghttp2-client)" >&2; exit 1; }

echo "== building (cargo build --release)"
cargo build --release --quiet
BIN=target/release/tilgang

work=$(mktemp -d)
server_pid=""
stop() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}
trap 'stop; rm -rf "$work"' EXIT

# One allowed IsAuthorized request (810418672 -> 991825827, instances.read).
python3 - "$work/req.bin" <<'PY'
import sys
sys.path.insert(0, "scripts")
from grpc_wire import field, frame
msg = field(1, "810418672") + field(2, "991825827") + field(3, "altinn:serviceowner/instances.read")
open(sys.argv[1], "wb").write(frame(msg))
PY

start() { # name binary args...
    local name=$1 bin=$2
    shift 2
    rm -rf "$work/data" && cp -r tests/fixtures/data "$work/data"
    RUST_LOG=warn "$bin" serve --policies tests/fixtures/policies --data "$work/data" \
        --listen "$ADDR" --admin-listen 127.0.0.1:0 "$@" >"$work/$name.server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null && return 0
        kill -0 "$server_pid" 2>/dev/null || { cat "$work/$name.server.log" >&2; exit 1; }
        sleep 0.1
    done
    echo "error: ${ADDR} did not open" >&2
    exit 1
}

load() { # name -> prints req/s
    h2load -n "$N" -c "$C" -m "$M" -t "$T" -d "$work/req.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$URL" >"$work/h2load.out"
    local ok
    ok=$(sed -nE 's/^requests: .* ([0-9]+) succeeded.*/\1/p' "$work/h2load.out")
    [ "$ok" = "$N" ] || { echo "error: only $ok of $N succeeded" >&2; cat "$work/h2load.out" >&2; exit 1; }
    sed -nE 's/^finished in .*, ([0-9.]+) req\/s.*/\1/p' "$work/h2load.out"
}

configs="nolog file devnull"
[ -n "${BASE:-}" ] && configs="base $configs"
declare -A results
for round in $(seq 1 "$ROUNDS"); do
    for cfg in $configs; do
        case $cfg in
            base) start base "$BASE" ;;
            nolog) start nolog "$BIN" --metrics-listen 127.0.0.1:0 ;;
            file) start file "$BIN" --metrics-listen 127.0.0.1:0 --decision-log "$work/decisions.jsonl" ;;
            devnull) start devnull "$BIN" --metrics-listen 127.0.0.1:0 --decision-log /dev/null ;;
        esac
        rps=$(load)
        if [ "$cfg" = file ]; then
            stop
            lines=$(wc -l <"$work/decisions.jsonl")
            echo "   round $round $cfg: $rps req/s (decision log: $lines lines for $N decisions)"
            rm -f "$work/decisions.jsonl"
        else
            stop
            echo "   round $round $cfg: $rps req/s"
        fi
        results[$cfg]="${results[$cfg]:-} $rps"
    done
done

echo "== median req/s over $ROUNDS rounds (h2load -n $N -c $C -m $M -t $T)"
for cfg in $configs; do
    echo "$cfg ${results[$cfg]}"
done | python3 -c '
import statistics, sys
med = {}
for line in sys.stdin:
    name, *vals = line.split()
    med[name] = statistics.median(float(v) for v in vals)
base = med["nolog"]
for name, m in med.items():
    print("   %-8s %10.0f req/s   ratio to nolog %.3f" % (name, m, m / base))
'
