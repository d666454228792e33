#!/usr/bin/env bash
# Envoy's `Check` against `IsAuthorized` on one tilgang, in one run: h2load
# drives the gateway listener with a realistic `CheckRequest` (examples/
# check_request.rs: a Storage instance path, six headers with a ~700-byte
# bearer token, jwt_authn's payload in the metadata; and the ten headers a
# browser sends) and with `IsAuthorized` for the same delegated pair, in
# alternating rounds. Then both again at half of IsAuthorized's throughput
# (h2load --rps) for latency percentiles from h2load's per-request log.
# Prints req/s per round, the median of each, the Check/IsAuthorized ratios
# (of the medians, and within each round)
# and p50/p99 at half load. A fourth kind of check carries no jwt_authn
# metadata but a real RS256 token (`tilgang dev-token`), which tilgang
# verifies itself (`serve --jwks`): once with the verified-token cache
# (`--jwt-cache`, the default) and once, on a second server at PORT+1,
# without it (`--jwt-cache 0`). The same IsAuthorized and 6-header Check go
# to benches/noop_server.rs (plain tonic, decides nothing, at PORT+2) in the
# same rounds: what the transport alone costs for each call. Every round
# also reports the server's CPU time per request (utime+stime from /proc).
#
# Usage: scripts/check_load.sh
# Tunables (environment): N=100000 (requests per round) ROUNDS=3 C=8 M=16
#   T=1 PORT=50061 HALF_SECONDS=10
#   TILGANG_ARGS="--jwks …"  extra `serve` flags
#
# Needs h2load (Debian: nghttp2-client), curl with HTTP/2 and python3.
set -euo pipefail

N=${N:-100000}
ROUNDS=${ROUNDS:-3}
C=${C:-8}
M=${M:-16}
T=${T:-1}
PORT=${PORT:-50061}
HALF_SECONDS=${HALF_SECONDS:-10}
ADDR="127.0.0.1:${PORT}"

cd "$(dirname "$0")/.."
for tool in h2load curl python3; do
    command -v "$tool" >/dev/null || { echo "error: \`$tool\` is not installed (h2load: apt-get install nghttp2-client)" >&2; exit 1; }
done
if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
    echo "error: something already listens on ${ADDR}; set PORT=..." >&2
    exit 1
fi

echo "== building (cargo build --release, example check_request, bench noop_server)"
cargo build --release --quiet
cargo build --release --quiet --example check_request
target_dir=${CARGO_TARGET_DIR:-target}
NOOP=$(cargo bench --quiet --no-run --bench noop_server --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "noop_server" and m.get("executable"):
        print(m["executable"])
')
[ -x "$NOOP" ] || { echo "error: no noop_server executable from cargo bench --no-run" >&2; exit 1; }
CLK_TCK=$(getconf CLK_TCK)
make_body="$target_dir/release/examples/check_request"

work=$(mktemp -d)
server_pid=""
cleanup() {
    for pid in $server_pid; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
cp -r tests/fixtures/data "$work/data"

"$make_body" is-authorized >"$work/is.bin"
"$make_body" check >"$work/check6.bin"
"$make_body" check --headers 10 >"$work/check10.bin"
"$target_dir/release/tilgang" dev-token --dir "$work/dev" --owner 991825827 --supplier 810418672 \
    --scope altinn:serviceowner/instances.read --ttl 86400 >"$work/token"
"$make_body" check --bearer "$(cat "$work/token")" >"$work/bearer.bin"
echo "== bodies: IsAuthorized $(stat -c %s "$work/is.bin") B, Check $(stat -c %s "$work/check6.bin") B (6 headers), $(stat -c %s "$work/check10.bin") B (10 headers)"

cp -r "$work/data" "$work/data2"
start() { # port data log [flags...]
    local port=$1 data=$2 log=$3
    shift 3
    # shellcheck disable=SC2086
    TILGANG_WEB_LISTEN=off RUST_LOG=${RUST_LOG:-warn} "$target_dir/release/tilgang" serve \
        --policies tests/fixtures/policies --data "$data" --listen "127.0.0.1:$port" \
        --admin-listen off --metrics-listen off --jwks "$work/dev/jwks.json" \
        --jwt-issuer https://maskinporten.no/ "$@" ${TILGANG_ARGS:-} >"$log" 2>&1 &
    pids="${pids:-} $!"
    for _ in $(seq 1 300); do
        kill -0 "$!" 2>/dev/null || { cat "$log" >&2; exit 1; }
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
        sleep 0.1
    done
    echo "error: 127.0.0.1:$port did not open" >&2
    exit 1
}
start "$PORT" "$work/data" "$work/server.log"
main_pid=$!
server_pid=$pids
start "$((PORT + 1))" "$work/data2" "$work/server2.log" --jwt-cache 0
nocache_pid=$!
server_pid=$pids
NOCACHE_URL="http://127.0.0.1:$((PORT + 1))/envoy.service.auth.v3.Authorization/Check"
"$NOOP" --listen "127.0.0.1:$((PORT + 2))" >"$work/noop.log" 2>&1 &
noop_pid=$!
server_pid="$server_pid $noop_pid"
for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$((PORT + 2))") 2>/dev/null && break
    sleep 0.1
done
NOOP_BASE="http://127.0.0.1:$((PORT + 2))"

IS_URL="http://${ADDR}/tilgang.v1.Authorizer/IsAuthorized"
CHECK_URL="http://${ADDR}/envoy.service.auth.v3.Authorization/Check"

# One call each through curl: a gRPC OK, and for Check an OK CheckResponse
# (status code 0 in field 1), so the load runs on allows.
verify() { # url body
    curl -sS --http2-prior-knowledge -X POST -H 'content-type: application/grpc' -H 'te: trailers' \
        --data-binary @"$2" -D "$work/h" -o "$work/r" "$1"
    tr -d '\r' <"$work/h" | grep -qi '^grpc-status: 0' || { echo "error: $1 did not answer grpc-status 0" >&2; cat "$work/h" >&2; exit 1; }
}
verify "$IS_URL" "$work/is.bin"
python3 - "$work/r" <<'PY'
import sys; sys.path.insert(0, "scripts")
from grpc_wire import decode, unframe
d = decode(unframe(open(sys.argv[1], "rb").read()))
assert d.get(1, [0])[0] == 1, f"IsAuthorized is not an allow: {d}"
PY
for b in check6 check10 bearer nocache; do
    url=$CHECK_URL; body=$work/$b.bin
    [ "$b" = nocache ] && url=$NOCACHE_URL && body=$work/bearer.bin
    verify "$url" "$body"
    python3 - "$work/r" <<'PY'
import sys; sys.path.insert(0, "scripts")
from grpc_wire import decode, unframe
d = decode(unframe(open(sys.argv[1], "rb").read()))
status = decode(d[1][0].encode()) if 1 in d else {}
assert status.get(1, [0])[0] == 0, f"Check is not OK: {d}"
PY
done
echo "== one call each answered: IsAuthorized allowed, Check OK (6 and 10 headers, and a bearer token with and without the cache)"

rate() { # url body [extra h2load args...] -> req/s
    local url=$1 body=$2
    shift 2
    h2load -n "$N" -c "$C" -m "$M" -t "$T" -d "$body" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$@" "$url" >"$work/out" 2>&1
    grep -q " 0 failed, 0 errored, 0 timeout" "$work/out" || { echo "error: h2load saw failures:" >&2; cat "$work/out" >&2; exit 1; }
    grep -E '^finished in' "$work/out" | sed -E 's/.* ([0-9.]+) req\/s.*/\1/'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A runs cpu
echo "== ${ROUNDS} alternating rounds of ${N} requests, h2load -c${C} -m${M} -t${T}"
for r in $(seq 1 "$ROUNDS"); do
    for kind in is check6 check10 bearer nocache noop_is noop_check6; do
        url=$CHECK_URL; body=$work/$kind.bin; pid=$main_pid
        case $kind in
            is) url=$IS_URL ;;
            nocache) url=$NOCACHE_URL; body=$work/bearer.bin; pid=$nocache_pid ;;
            noop_is) url=$NOOP_BASE/tilgang.v1.Authorizer/IsAuthorized; body=$work/is.bin; pid=$noop_pid ;;
            noop_check6) url=$NOOP_BASE/envoy.service.auth.v3.Authorization/Check; body=$work/check6.bin; pid=$noop_pid ;;
        esac
        t0=$(cpu_ticks "$pid")
        v=$(rate "$url" "$body")
        t1=$(cpu_ticks "$pid")
        us=$(python3 -c "print(round(($t1 - $t0) * 1e6 / $CLK_TCK / $N, 1))")
        runs[$kind]="${runs[$kind]:-} $v"
        cpu[$kind]="${cpu[$kind]:-} $us"
        echo "round $r  $kind  $v req/s  ${us} µs CPU/request"
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
is=$(echo "${runs[is]}" | median)
c6=$(echo "${runs[check6]}" | median)
c10=$(echo "${runs[check10]}" | median)
cb=$(echo "${runs[bearer]}" | median)
cn=$(echo "${runs[nocache]}" | median)
echo "== medians: IsAuthorized ${is} req/s; Check ${c6} req/s (6 headers), ${c10} req/s (10 headers); --jwks ${cb} req/s with the token cache, ${cn} req/s without"
python3 -c "print(f'== Check/IsAuthorized: {${c6}/${is}:.2f} (6 headers), {${c10}/${is}:.2f} (10 headers); --jwks {${cb}/${is}:.2f} cached, {${cn}/${is}:.2f} uncached')"
# Each round's Check against the IsAuthorized run just before it: on a
# shared machine whose speed drifts over minutes, the pair within a round is
# the fairer comparison, and the median of those is the figure to quote.
python3 - "${runs[is]}" "${runs[check6]}" "${runs[check10]}" <<'PY'
import statistics, sys
i, c6, c10 = ([float(x) for x in a.split()] for a in sys.argv[1:])
for name, c in (("6 headers", c6), ("10 headers", c10)):
    r = [b / a for a, b in zip(i, c)]
    print(f"== Check/IsAuthorized within each round ({name}): "
          + " ".join(f"{x:.2f}" for x in r) + f"; median {statistics.median(r):.2f}")
PY
nis=$(echo "${runs[noop_is]}" | median)
nc6=$(echo "${runs[noop_check6]}" | median)
python3 -c "print(f'== no-op tonic server: IsAuthorized ${nis} req/s, Check ${nc6} req/s (6 headers): Check/IsAuthorized {${nc6}/${nis}:.2f}; tilgang/no-op: IsAuthorized {${is}/${nis}:.2f}, Check {${c6}/${nc6}:.2f}')"
line="== median server CPU per request (µs):"
for kind in is check6 check10 bearer nocache noop_is noop_check6; do
    line="$line $kind $(echo "${cpu[$kind]}" | median)"
done
echo "$line"

# Half load: every client sends at a fixed rate, half of IsAuthorized's
# median throughput in all; h2load logs each request's latency (µs).
per_client=$(python3 -c "print(max(1, int(${is} / 2 / ${C})))")
half_n=$(python3 -c "print(int(${per_client} * ${C} * ${HALF_SECONDS}))")
echo "== half load: ${per_client} req/s per client × ${C} clients, ${half_n} requests each"
for kind in is check6 check10; do
    url=$IS_URL; [ "$kind" = is ] || url=$CHECK_URL
    h2load -n "$half_n" -c "$C" -m 1 -t "$T" --rps "$per_client" -d "$work/$kind.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' --log-file "$work/$kind.log" "$url" >"$work/out" 2>&1
    python3 - "$kind" "$work/$kind.log" <<'PY'
import sys
lat = sorted(int(l.split("\t")[2]) for l in open(sys.argv[2]) if l.strip())
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000
print(f"{sys.argv[1]:8s} half load: {len(lat)} requests, p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms, max {lat[-1] / 1000:.3f} ms")
PY
done
