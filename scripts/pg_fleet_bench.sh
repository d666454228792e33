#!/usr/bin/env bash
# The shared PostgreSQL store at scale: 1,000,000 generated delegations
# imported into a throw-away PostgreSQL cluster, then
#   1. cold start of a follower (`serve --store`) to SERVING, against the file
#      store's `serve --data` on the same delegations, alternated;
#   2. the memory (VmRSS) of each, once the load has settled;
#   3. IsAuthorized throughput of the follower, the file-store sidecar and the
#      no-op tonic server (benches/noop_server.rs), alternated in one run;
#   4. with FOLLOWERS followers and ADMINS admin replicas, writes at RATE per
#      second (Delegate, then Revoke LAG s later on the other replica) and how
#      long each revocation takes to be denied at every follower
#      (scripts/pg_fleet_bench.py, an independent Python grpcio client).
#
# Targets: follower start < 5 s per million delegations; follower RSS at most
# 1.10 x the file store's; revocation denied at every follower p99 < 1 s;
# follower throughput at least 0.90 x the file store's (unchanged, to within
# the round-to-round noise of a shared 2-core machine); no stale answer.
#
# Usage: scripts/pg_fleet_bench.sh                     (1,000,000 delegations; about 3 minutes
#                                                       once built and generated)
#        OWNERS=1000 DURATION=20 scripts/pg_fleet_bench.sh   (quick: 100,000)
#
# Tunables (environment):
#   OWNERS=10000 PER_OWNER=100 POOL=10000 SEED=1   the generated data, kept for later runs
#                       in $CACHE/data-<OWNERS>x<PER_OWNER>-pool<POOL>-seed<SEED> (CACHE=target/pg-fleet-bench)
#   COLD_RUNS=3 SETTLE=3   cold starts of each store; seconds after SERVING before VmRSS is read
#   N=100000 C=8 M=16 T=1 ROUNDS=5 WARMUP=N/5   h2load throughput runs (each round: all three)
#   NOOP_KEEPALIVE=30   the no-op server's HTTP/2 keep-alive interval (as tilgang's)
#   FOLLOWERS=5 ADMINS=2 RATE=50 DURATION=60 LAG=1 TICK_MS=5   the fleet and its writes
#   BASE_PORT=50170     tilgang and no-op ports from here up to BASE_PORT+40, all on 127.0.0.1
#   PG_PORT=55611       the throw-away cluster's port (scripts/pg-cluster, in the work directory)
#   PG_BIN=/usr/lib/postgresql/15/bin
#   START_TIMEOUT=300 STEP_TIMEOUT=600   seconds; nothing waits longer
#   KEEP=1   keep the work directory (logs; the cluster is stopped either way)
#   STRICT=1 exit 3 when a figure misses its target
#
# Needs h2load (`apt-get install -y nghttp2-client`), python3, curl, cargo and
# PostgreSQL 15 (`apt-get install -y postgresql-15`; as root the cluster runs
# as the `postgres` user). The Python clients use grpcio, installed on first
# use into target/scale-venv (set PYTHON to a python that has grpcio to skip
# that). Builds with `cargo build --release` into CARGO_TARGET_DIR (default
# target).
#
# Every process and the cluster it starts are stopped on exit (also on
# Ctrl-C or a failed step).
#
# Exit status: 0 measured (targets are reported, not enforced, unless STRICT=1),
# 1 a step failed (the message says which), 3 STRICT=1 and a target was missed.
set -euo pipefail

OWNERS=${OWNERS:-10000}
PER_OWNER=${PER_OWNER:-100}
POOL=${POOL:-10000}
SEED=${SEED:-1}
COLD_RUNS=${COLD_RUNS:-3}
SETTLE=${SETTLE:-3}
N=${N:-100000}
C=${C:-8}
M=${M:-16}
T=${T:-1}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-$((N / 5))}
NOOP_KEEPALIVE=${NOOP_KEEPALIVE:-30}
FOLLOWERS=${FOLLOWERS:-5}
ADMINS=${ADMINS:-2}
RATE=${RATE:-50}
DURATION=${DURATION:-60}
LAG=${LAG:-1}
TICK_MS=${TICK_MS:-5}
BASE_PORT=${BASE_PORT:-50170}
PG_PORT=${PG_PORT:-55611}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
START_TIMEOUT=${START_TIMEOUT:-300}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
KEEP=${KEEP:-0}
STRICT=${STRICT:-0}
export PG_BIN

# Ports: the file-store sidecar, followers 1.., admin replicas 1.., no-op.
FILE_PORT=$BASE_PORT                 # metrics +20
follower_port() { echo $((BASE_PORT + $1)); }            # 1..FOLLOWERS (at most 9)
admin_gw_port() { echo $((BASE_PORT + 10 + $1)); }       # 1..ADMINS (at most 4)
admin_port() { echo $((BASE_PORT + 15 + $1)); }
metrics_port() { echo $((BASE_PORT + 20 + $1)); }        # 0 file store, 1.. followers, 10+j admins
NOOP_PORT=$((BASE_PORT + 40))
METHOD=/tilgang.v1.Authorizer/IsAuthorized

cd "$(dirname "$0")/.."

die() {
    echo "error: $*" >&2
    exit 1
}
step() { echo "== $*" >&2; }

for tool in h2load python3 cargo curl timeout; do
    command -v "$tool" >/dev/null 2>&1 || {
        [ "$tool" = h2load ] && echo "install it with: apt-get install -y nghttp2-client" >&2
        die "\`$tool\` is not installed"
    }
done
[ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/psql" ] ||
    die "no PostgreSQL in $PG_BIN (Debian: apt-get install -y postgresql-15; or set PG_BIN)"
for v in OWNERS PER_OWNER POOL SEED COLD_RUNS SETTLE N C M T ROUNDS WARMUP NOOP_KEEPALIVE FOLLOWERS \
    ADMINS RATE DURATION TICK_MS BASE_PORT PG_PORT START_TIMEOUT STEP_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v} is not a whole number"
done
[[ $LAG =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "LAG=$LAG is not a number of seconds"
[ "$FOLLOWERS" -ge 1 ] && [ "$FOLLOWERS" -le 9 ] || die "FOLLOWERS must be 1 to 9"
[ "$ADMINS" -ge 1 ] && [ "$ADMINS" -le 4 ] || die "ADMINS must be 1 to 4"
[ "$COLD_RUNS" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$C" -ge 1 ] && [ "$N" -ge "$C" ] &&
    [ "$RATE" -ge 1 ] && [ "$DURATION" -ge 1 ] || die "COLD_RUNS, ROUNDS, C, RATE and DURATION must be at least 1, N at least C"
ports=("$PG_PORT" "$NOOP_PORT" "$FILE_PORT" "$(metrics_port 0)")
for i in $(seq 1 "$FOLLOWERS"); do ports+=("$(follower_port "$i")" "$(metrics_port "$i")"); done
for j in $(seq 1 "$ADMINS"); do
    ports+=("$(admin_gw_port "$j")" "$(admin_port "$j")" "$(metrics_port $((10 + j)))")
done
for p in "${ports[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then
        die "something already listens on 127.0.0.1:${p}; stop it or set BASE_PORT/PG_PORT"
    fi
done
# The server reads TILGANG_* variables as flags; measure it as configured here.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^TILGANG_' || true)
build_started=$EPOCHREALTIME

# ---------------------------------------------------------------- build
step "building (cargo build --release; cargo bench --no-run --bench noop_server)"
timeout "$STEP_TIMEOUT" cargo build --release --quiet || die "cargo build --release failed"
BIN=${CARGO_TARGET_DIR:-target}/release/tilgang
[ -x "$BIN" ] || die "no $BIN after cargo build --release"
NOOP=$(timeout "$STEP_TIMEOUT" cargo bench --quiet --no-run --bench noop_server \
    --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "noop_server" and m.get("executable"):
        print(m["executable"])
') || die "building benches/noop_server.rs failed"
[ -x "$NOOP" ] || die "no noop_server executable from cargo bench --no-run"

PY=${PYTHON:-target/scale-venv/bin/python}
if ! "$PY" -c 'import grpc' 2>/dev/null; then
    [ -z "${PYTHON:-}" ] || die "PYTHON=$PYTHON has no grpcio module"
    step "installing grpcio into target/scale-venv (once)"
    timeout "$STEP_TIMEOUT" python3 -m venv target/scale-venv || die "python3 -m venv failed"
    timeout "$STEP_TIMEOUT" target/scale-venv/bin/pip install --quiet grpcio ||
        die "pip install grpcio failed"
fi
build_s=$(python3 -c "print(f'{$EPOCHREALTIME - $build_started:.0f}')")
# What was built (others may commit while this runs).
built="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock build.rs proto policies 2>/dev/null || echo ' (uncommitted changes)')"
run_started=$EPOCHREALTIME

# ---------------------------------------------------------------- processes
work=$(mktemp -d "${TMPDIR:-/tmp}/tilgang-pgfleet.XXXXXX")
# The cluster runs as `postgres` when we are root: it must reach its directory.
chmod 755 "$work"
pids=()
pg_dir=""
forget() { # pid: no longer ours to stop
    local keep=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    pids=("${keep[@]}")
}
stop() { # pid: SIGTERM, then SIGKILL after 15 s
    local pid=$1
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}
cleanup() {
    local pid
    for pid in "${pids[@]}"; do stop "$pid"; done
    if [ -n "$pg_dir" ]; then
        timeout 60 scripts/pg-cluster stop "$pg_dir" 2>/dev/null ||
            timeout 60 scripts/pg-cluster kill "$pg_dir" 2>/dev/null ||
            echo "warning: could not stop the PostgreSQL cluster in $pg_dir" >&2
    fi
    if [ "$KEEP" = 1 ]; then
        echo "kept the work directory: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss() { awk '/^VmRSS:/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM:/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
cpu_s() { # pid -> user+system CPU seconds so far
    awk -v tck="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / tck }' "/proc/$1/stat"
}
secs_since() { python3 -c "print(f'{$EPOCHREALTIME - $1:.${2:-2}f}')"; }
median() { python3 -c 'import statistics, sys; print(f"{statistics.median(float(x) for x in sys.argv[1:]):g}")' "$@"; }

# ---------------------------------------------------------------- data
cache=${CACHE:-target/pg-fleet-bench}/data-${OWNERS}x${PER_OWNER}-pool${POOL}-seed${SEED}
if [ -s "$cache.out" ] && [ -f "$cache/roles.json" ]; then
    step "reusing the generated data in $cache"
else
    step "generating ${OWNERS} owners x ${PER_OWNER} suppliers from a pool of ${POOL} (SEED=${SEED}) into $cache"
    rm -rf "$cache.tmp" "$cache" "$cache.out"
    mkdir -p "$(dirname "$cache")"
    t=$EPOCHREALTIME
    timeout "$STEP_TIMEOUT" python3 scripts/gen_delegations.py "$cache.tmp" --owners "$OWNERS" \
        --per-owner "$PER_OWNER" --pool "$POOL" --seed "$SEED" >"$cache.tmp.out" ||
        die "scripts/gen_delegations.py failed"
    echo "generated in $(secs_since "$t" 1) s" >&2
    mv "$cache.tmp" "$cache"
    mv "$cache.tmp.out" "$cache.out"
fi
# owners, delegations, supplier, owner, scope, actor, ...
eval "$(cat "$cache.out")"
data_mb=$(du -sm "$cache" | cut -f1)

# ---------------------------------------------------------------- store
step "starting a throw-away PostgreSQL cluster on 127.0.0.1:${PG_PORT}"
pg_dir="$work/pg"
URL=$(timeout 120 scripts/pg-cluster start "$pg_dir" "$PG_PORT")?sslmode=disable ||
    die "scripts/pg-cluster start failed (see $pg_dir/log)"
psql() { timeout "$STEP_TIMEOUT" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"; }
pg_version=$(psql -At -c 'SHOW server_version')
timeout "$STEP_TIMEOUT" "$BIN" migrate --store "$URL" >&2 || die "tilgang migrate failed"

step "tilgang import (${delegations} delegations, one transaction)"
t=$EPOCHREALTIME
timeout "$STEP_TIMEOUT" "$BIN" import "$cache" --store "$URL" --policies policies >"$work/import.out" 2>&1 ||
    { cat "$work/import.out" >&2; die "tilgang import failed"; }
import_s=$(secs_since "$t" 1)
cat "$work/import.out" >&2
# As autovacuum would, soon after: the first reader otherwise sets every
# row's hint bits (writes) during the first cold start only.
t=$EPOCHREALTIME
psql -c 'VACUUM (ANALYZE) tilgang_delegations' || die "VACUUM failed"
vacuum_s=$(secs_since "$t" 1)
table_mb=$(psql -At -c "SELECT pg_total_relation_size('tilgang_delegations') / 1048576")
# The follower's COPY alone, into psql and /dev/null: PostgreSQL's side of a cold start.
copy_sql="(SELECT owner, supplier, rights, delegated_by, created_at, updated_at, extra FROM tilgang_delegations ORDER BY owner, supplier) TO '/dev/null' WITH (FORMAT binary)"
copies=()
for _ in 1 2; do
    t=$EPOCHREALTIME
    psql -c "\\copy $copy_sql" || die "the COPY through psql failed"
    copies+=("$(secs_since "$t")")
done
copy_s=$(median "${copies[@]}")
echo "import ${import_s} s, VACUUM ${vacuum_s} s, table ${table_mb} MB; COPY of every row into psql: ${copies[*]} s" >&2

# ---------------------------------------------------------------- cold starts
# One replica's data directory: roles.json only for a follower; for the file
# store a copy of the generated data (delegations/ hard-linked: tilgang
# replaces an owner file by renaming, never in place, and nothing writes here).
prepare_dir() { # kind dir
    mkdir -p "$2"
    cp "$cache/roles.json" "$2/roles.json"
    [ "$1" = file ] && cp -al "$cache/delegations" "$2/delegations"
    return 0
}
# serve KIND NAME GATEWAY_PORT METRICS_PORT ADMIN(off|port): starts tilgang in
# the background; sets srv_pid.
serve() {
    local kind=$1 name=$2 gw=$3 metrics=$4 admin=$5 dir="$work/$2"
    [ -d "$dir" ] || prepare_dir "$kind" "$dir"
    local store=()
    [ "$kind" = pg ] && store=(--store "$URL")
    [ "$admin" = off ] || admin=127.0.0.1:$admin
    RUST_LOG=${SERVER_LOG:-info} "$BIN" serve --policies policies --data "$dir" "${store[@]}" \
        --listen "127.0.0.1:$gw" --admin-listen "$admin" --metrics-listen "127.0.0.1:$metrics" \
        --web-listen off >>"$work/$name.log" 2>&1 &
    srv_pid=$!
    pids+=("$srv_pid")
}
# timed_start KIND NAME GATEWAY_PORT METRICS_PORT: exec -> the first
# grpc.health.v1.Health/Check SERVING (scripts/scale_probe.py, polled every
# 5 ms, started first so its own start-up is not timed); sets srv_pid,
# serving_s, cpu_at_serving.
timed_start() {
    rm -f "$work/start" "$work/probe.ready"
    timeout "$((START_TIMEOUT + 60))" "$PY" scripts/scale_probe.py wait-serving \
        --addr "127.0.0.1:$3" --start-file "$work/start" --ready-file "$work/probe.ready" \
        --timeout "$START_TIMEOUT" >"$work/serving.out" &
    local probe_pid=$!
    pids+=("$probe_pid")
    for _ in $(seq 1 600); do
        [ -e "$work/probe.ready" ] && break
        kill -0 "$probe_pid" 2>/dev/null || die "the start-up probe exited"
        sleep 0.1
    done
    [ -e "$work/probe.ready" ] || die "the start-up probe was not ready within 60 s"
    local t0=$EPOCHREALTIME
    serve "$1" "$2" "$3" "$4" off
    echo "$t0 $srv_pid" >"$work/start.tmp" && mv "$work/start.tmp" "$work/start"
    wait "$probe_pid" || { tail -n 20 "$work/$2.log" >&2; die "$2 did not start serving"; }
    forget "$probe_pid"
    cpu_at_serving=$(cpu_s "$srv_pid")
    eval "$(cat "$work/serving.out")" # serving_s
}

file_starts=() pg_starts=() file_rss=() pg_rss=() file_hwm=() pg_hwm=() file_cpu=() pg_cpu=() pg_loads=()
for r in $(seq 1 "$COLD_RUNS"); do
    for kind in file pg; do
        if [ "$kind" = file ]; then name=file gw=$FILE_PORT mp=$(metrics_port 0); else
            name=follower1 gw=$(follower_port 1) mp=$(metrics_port 1); fi
        step "cold start ${r}/${COLD_RUNS}: ${name} ($([ "$kind" = pg ] && echo "serve --store" || echo "serve --data")), exec -> SERVING, then VmRSS after ${SETTLE} s"
        timed_start "$kind" "$name" "$gw" "$mp"
        sleep "$SETTLE"
        kill -0 "$srv_pid" 2>/dev/null || die "$name exited after it started serving"
        eval "${kind}_starts+=($serving_s) ${kind}_rss+=($(rss "$srv_pid")) ${kind}_hwm+=($(hwm "$srv_pid")) ${kind}_cpu+=($cpu_at_serving)"
        line="${name}: SERVING after ${serving_s} s (CPU ${cpu_at_serving} s), VmRSS $(rss "$srv_pid") MB, VmHWM $(hwm "$srv_pid") MB"
        if [ "$kind" = pg ]; then
            load_ms=$(sed -nE 's/.*loaded every delegation from the store.* elapsed_ms=([0-9]+).*/\1/p' "$work/$name.log" | tail -n 1)
            pg_loads+=("${load_ms:-?}")
            metric=$(curl -s --max-time 5 "http://127.0.0.1:$mp/metrics" | awk '/^process_resident_memory_bytes / {printf "%d", $2 / 1048576}')
            line="$line (process_resident_memory_bytes ${metric:-?} MB); full load ${load_ms:-?} ms"
        fi
        echo "$line" >&2
        # Keep the last of each running for the throughput rounds.
        [ "$r" = "$COLD_RUNS" ] || stop "$srv_pid"
        eval "${kind}_pid=$srv_pid"
    done
done
file_start=$(median "${file_starts[@]}")
pg_start=$(median "${pg_starts[@]}")
file_rss_mb=$(median "${file_rss[@]}")
pg_rss_mb=$(median "${pg_rss[@]}")
pg_load_ms=$(median "${pg_loads[@]}")
rss_ratio=$(python3 -c "print(f'{$pg_rss_mb / $file_rss_mb:.3f}')")

# ---------------------------------------------------------------- throughput
step "starting the no-op tonic server on 127.0.0.1:${NOOP_PORT}"
"$NOOP" --listen "127.0.0.1:$NOOP_PORT" --keepalive "$NOOP_KEEPALIVE" >"$work/noop.log" 2>&1 &
noop_pid=$!
pids+=("$noop_pid")
for _ in $(seq 1 300); do
    grep -qs '^listening on' "$work/noop.log" && break
    kill -0 "$noop_pid" 2>/dev/null || { cat "$work/noop.log" >&2; die "the no-op server exited"; }
    sleep 0.1
done
grep -q '^listening on' "$work/noop.log" || die "the no-op server did not listen within 30 s"

declare -A ADDR=([noop]="127.0.0.1:$NOOP_PORT" [file]="127.0.0.1:$FILE_PORT" [pg]="127.0.0.1:$(follower_port 1)")
for s in noop file pg; do
    answer=$(timeout 60 "$PY" scripts/scale_probe.py check --addr "${ADDR[$s]}" --supplier "$supplier" \
        --owner "$owner" --scope "$scope") ||
        die "$s: ${supplier} -> ${owner} (${scope}) is not allowed: ${answer:-no answer}; not load testing a deny"
    echo "$s: ${supplier} -> ${owner}: ${answer}" >&2
done
"$PY" - "$work/req.bin" "$supplier" "$owner" "$scope" <<'PY'
import sys
sys.path.insert(0, "scripts")
from grpc_wire import field, frame
msg = field(1, sys.argv[2]) + field(2, sys.argv[3]) + field(3, sys.argv[4])
open(sys.argv[1], "wb").write(frame(msg))
PY

# h2 NAME ADDR OUT [h2load options...]: one bounded run (as scripts/scale.sh);
# checks that every request succeeded; sets h2_rps and h2_bytes_per_req.
h2() {
    local name=$1 addr=$2 out=$3
    shift 3
    timeout "$STEP_TIMEOUT" h2load -c "$C" -m "$M" -t "$T" -d "$work/req.bin" \
        -H 'content-type: application/grpc' -H 'te: trailers' "$@" \
        "http://${addr}${METHOD}" >"$out" 2>&1 ||
        { cat "$out" >&2; die "h2load against ${name} failed or took over ${STEP_TIMEOUT} s"; }
    local total ok data
    total=$(sed -nE 's/^requests: ([0-9]+) total.*/\1/p' "$out")
    ok=$(sed -nE 's/^requests: .* ([0-9]+) succeeded.*/\1/p' "$out")
    data=$(sed -nE 's/^traffic: .*\(([0-9]+)\) data.*/\1/p' "$out")
    h2_rps=$(sed -nE 's/^finished in .*, ([0-9.]+) req\/s.*/\1/p' "$out")
    [ -n "$total" ] && [ "$total" = "$ok" ] && [ -n "$h2_rps" ] ||
        { cat "$out" >&2; die "h2load against ${name}: ${ok:-?} of ${total:-?} requests succeeded"; }
    h2_bytes_per_req=$((data / ok))
}

if [ "$WARMUP" -ge "$C" ]; then
    step "warm-up: ${WARMUP} requests to each server"
    for s in noop file pg; do h2 "$s" "${ADDR[$s]}" "$work/warm.$s" -n "$WARMUP"; done
fi
declare -A RUNS=([noop]="" [file]="" [pg]="")
order=(noop file pg)
for r in $(seq 1 "$ROUNDS"); do
    # Each round starts one server later, so none is always first after a pause.
    this=("${order[@]:$(((r - 1) % 3))}" "${order[@]:0:$(((r - 1) % 3))}")
    step "round ${r}/${ROUNDS}: h2load -n ${N} -c ${C} -m ${M} -t ${T}: ${this[*]}"
    declare -A BYTES=()
    for s in "${this[@]}"; do
        h2 "$s" "${ADDR[$s]}" "$work/h2.$s.$r" -n "$N"
        RUNS[$s]+="$h2_rps "
        BYTES[$s]=$h2_bytes_per_req
        echo "$s ${h2_rps} req/s" >&2
    done
    # The same answer from each: the file store's is the no-op's byte for
    # byte; the follower's adds its store revision (field 5, 2 to 11 bytes).
    [ "${BYTES[file]}" = "${BYTES[noop]}" ] ||
        die "the file store answered ${BYTES[file]} data bytes per request, the no-op server ${BYTES[noop]}: not the same answer"
    extra=$((BYTES[pg] - BYTES[file]))
    [ "$extra" -ge 2 ] && [ "$extra" -le 11 ] ||
        die "the follower answered ${BYTES[pg]} data bytes per request, the file store ${BYTES[file]}: not the same answer plus a store revision"
done
eval "$(python3 - "${RUNS[noop]}" "${RUNS[file]}" "${RUNS[pg]}" <<'PY'
import statistics, sys
noop, file, pg = ([float(x) for x in a.split()] for a in sys.argv[1:4])
mn, mf, mp = statistics.mean(noop), statistics.mean(file), statistics.mean(pg)
print(f"noop_mean={mn:.0f} file_mean={mf:.0f} pg_mean={mp:.0f}")
print(f"file_ratio={mf / mn:.3f} pg_ratio={mp / mn:.3f} pg_vs_file={mp / mf:.3f}")
print("file_rounds=" + "/".join(f"{f / n:.3f}" for n, f in zip(noop, file)))
print("pg_rounds=" + "/".join(f"{p / n:.3f}" for n, p in zip(noop, pg)))
print("pg_file_rounds=" + "/".join(f"{p / f:.3f}" for f, p in zip(file, pg)))
print("noop_all=" + "/".join(f"{x:.0f}" for x in noop))
print("file_all=" + "/".join(f"{x:.0f}" for x in file))
print("pg_all=" + "/".join(f"{x:.0f}" for x in pg))
PY
)"
echo "ratio to no-op: file store ${file_ratio} (${file_rounds}), follower ${pg_ratio} (${pg_rounds})" >&2
stop "$noop_pid"
stop "$file_pid" # its memory and CPU are not part of the fleet

# ---------------------------------------------------------------- the fleet
fleet=()
step "starting followers 2..${FOLLOWERS} and ${ADMINS} admin replica(s) together, each loading every delegation"
t=$EPOCHREALTIME
health=()
for i in $(seq 2 "$FOLLOWERS"); do
    serve pg "follower$i" "$(follower_port "$i")" "$(metrics_port "$i")" off
    fleet+=("$srv_pid")
    health+=("$(metrics_port "$i")")
done
for j in $(seq 1 "$ADMINS"); do
    serve pg "admin$j" "$(admin_gw_port "$j")" "$(metrics_port $((10 + j)))" "$(admin_port "$j")"
    fleet+=("$srv_pid")
    health+=("$(metrics_port $((10 + j)))")
done
deadline=$((SECONDS + START_TIMEOUT))
for mp in "${health[@]}"; do
    until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$mp/health" || true)" = 200 ]; do
        [ "$SECONDS" -lt "$deadline" ] || die "a replica (metrics 127.0.0.1:$mp) did not report /health 200 within ${START_TIMEOUT} s"
        for p in "${fleet[@]}"; do kill -0 "$p" 2>/dev/null || die "a fleet replica (pid $p) exited; see $work/*.log"; done
        sleep 0.05
    done
done
fleet_start_s=$(secs_since "$t")
fleet_rss=()
for p in "${fleet[@]}"; do fleet_rss+=("$(rss "$p")"); done
echo "$((FOLLOWERS - 1 + ADMINS)) replicas started together: all /health 200 after ${fleet_start_s} s; VmRSS ${fleet_rss[*]} MB" >&2

followers="" metrics="" admins=""
for i in $(seq 1 "$FOLLOWERS"); do
    followers+="${followers:+,}127.0.0.1:$(follower_port "$i")"
    metrics+="${metrics:+,}127.0.0.1:$(metrics_port "$i")"
done
for j in $(seq 1 "$ADMINS"); do admins+="${admins:+,}127.0.0.1:$(admin_port "$j")"; done
step "writes at ${RATE}/s for ${DURATION} s over ${ADMINS} admin replica(s) (Delegate, Revoke ${LAG} s later on the other); revoke -> denied at all ${FOLLOWERS} followers"
out=$(timeout "$((DURATION + STEP_TIMEOUT))" "$PY" scripts/pg_fleet_bench.py revocations \
    --followers "$followers" --admins "$admins" --metrics "$metrics" --owners "$OWNERS" \
    --actor "$actor" --rate "$RATE" --duration "$DURATION" --lag "$LAG" --tick-ms "$TICK_MS") ||
    die "the revocation run failed"
echo "$out" >&2
eval "$out"
for p in "$pg_pid" "${fleet[@]}"; do kill -0 "$p" 2>/dev/null || die "a replica (pid $p) exited during the run"; done
end_rss=()
for p in "$pg_pid" "${fleet[@]}"; do end_rss+=("$(rss "$p")"); done
# Anything the replicas logged above INFO, but the admin listener's
# development-mode warning (expected here: loopback, no --admin-jwks).
grep -hE ' (WARN|ERROR) ' "$work"/follower*.log "$work"/admin*.log |
    grep -v 'admin listener in development mode' >"$work/warnings" || true
warnings=$(wc -l <"$work/warnings")
[ "$warnings" = 0 ] || { echo "replica warnings and errors (first 10):" >&2; head -n 10 "$work/warnings" >&2; }
run_s=$(secs_since "$run_started" 0)

# ---------------------------------------------------------------- report
missed=0
verdict() { # VAR CONDITION (a Python expression): VAR=met or MISSED
    if python3 -c "import sys; sys.exit(0 if ($2) else 1)"; then
        printf -v "$1" met
    else
        printf -v "$1" MISSED
        missed=$((missed + 1))
    fi
}
millions="max(1, $delegations / 1e6)"
verdict v_start "$pg_start < 5 * $millions"
verdict v_rss "$pg_rss_mb <= 1.10 * $file_rss_mb"
verdict v_revoke "$revoke_all_p99 < 1000"
# "Unchanged", to what this machine can tell: its rounds vary by about 10%.
verdict v_tput "$pg_vs_file >= 0.90"
verdict v_stale "$stale_answers == 0 and '$converged' == 'true'"

sep() { printf '%s\n' "----------------------------------------------------------------------------------------------"; }
echo
echo "tilgang on the shared PostgreSQL store: ${delegations} delegations (${OWNERS} owners x ${PER_OWNER} from a pool of ${POOL}; ${data_mb} MB of owner files, ${table_mb} MB in PostgreSQL ${pg_version})"
echo "$(nproc) cores; built from ${built}; $(date -u +%Y-%m-%dT%H:%M:%SZ); run ${run_s} s after ${build_s} s of building"
sep
printf '%-34s %-16s %-10s %-7s %s\n' figure value target result "how measured"
sep
printf '%-34s %-16s %-10s %-7s %s\n' "follower exec -> SERVING" "${pg_start} s" "< 5 s/1M" "$v_start" \
    "median of ${COLD_RUNS} (${pg_starts[*]}); exec to the first Health/Check SERVING, polled every 5 ms"
printf '%-34s %-16s %-10s %-7s %s\n' "  full load from the store" "${pg_load_ms} ms" "" "" \
    "median of the follower's 'loaded every delegation' elapsed_ms (${pg_loads[*]}); CPU at SERVING ${pg_cpu[*]} s"
printf '%-34s %-16s %-10s %-7s %s\n' "  COPY alone, into psql" "${copy_s} s" "" "" \
    "the follower's binary COPY (ORDER BY owner, supplier) to /dev/null through psql, median of 2 (${copies[*]})"
printf '%-34s %-16s %-10s %-7s %s\n' "file store exec -> SERVING" "${file_start} s" "" "" \
    "median of ${COLD_RUNS} (${file_starts[*]}), alternated with the follower's; CPU at SERVING ${file_cpu[*]} s"
printf '%-34s %-16s %-10s %-7s %s\n' "RSS follower / file store" "${rss_ratio}" "<= 1.10" "$v_rss" \
    "median VmRSS ${SETTLE} s after SERVING: follower ${pg_rss_mb} MB (${pg_rss[*]}), file store ${file_rss_mb} MB (${file_rss[*]})"
printf '%-34s %-16s %-10s %-7s %s\n' "  VmHWM follower / file store" "${pg_hwm[-1]} / ${file_hwm[-1]} MB" "" "" \
    "peak resident memory of the last cold start of each"
printf '%-34s %-16s %-10s %-7s %s\n' "revoke -> denied at all followers" "${revoke_all_p99} ms p99" "< 1000 ms" "$v_revoke" \
    "p50 ${revoke_all_p50}, max ${revoke_all_max} ms over ${revoke_all_n} revocations; from sending Revoke to the last of ${FOLLOWERS} followers' deny"
printf '%-34s %-16s %-10s %-7s %s\n' "  from the Revoke's answer" "${revoke_ack_p99} ms p99" "" "" \
    "p50 ${revoke_ack_p50}, max ${revoke_ack_max} ms; Revoke answered: p50 ${revoke_ackd_p50}, p99 ${revoke_ackd_p99}, max ${revoke_ackd_max} ms"
printf '%-34s %-16s %-10s %-7s %s\n' "  each follower on its own" "${revoke_each_p99} ms p99" "" "" \
    "p50 ${revoke_each_p50}, max ${revoke_each_max} ms over ${revoke_each_n}; last to deny, by follower: ${last_seen_by}"
printf '%-34s %-16s %-10s %-7s %s\n' "  Delegate -> allowed at all" "${deleg_all_p99} ms p99" "" "" \
    "p50 ${deleg_all_p50}, max ${deleg_all_max} ms; Delegate answered: p50 ${deleg_ackd_p50}, p99 ${deleg_ackd_p99} ms"
printf '%-34s %-16s %-10s %-7s %s\n' "  writes" "${write_rate}/s" "${RATE}/s" "" \
    "${writes} writes (${pairs} Delegate + Revoke pairs) over ${ADMINS} admin replicas in ${span_s} s; Python client CPU ${client_cpu_s} s, ${polls} batch polls"
printf '%-34s %-16s %-10s %-7s %s\n' "  stale answers, convergence" "${stale_answers}, ${converged}" "0, true" "$v_stale" \
    "answers at/past a write's revision not showing it; every follower's tilgang_store_revision = ${head} (${follower_revisions})"
printf '%-34s %-16s %-10s %-7s %s\n' "throughput follower / file store" "${pg_vs_file}" ">= 0.90" "$v_tput" \
    "mean req/s of ${ROUNDS} h2load rounds each (-n ${N} -c ${C} -m ${M} -t ${T}), noop, file, follower alternated; per round ${pg_file_rounds}"
printf '%-34s %-16s %-10s %-7s %s\n' "  follower / no-op" "${pg_ratio}" "" "" "rounds ${pg_rounds}; ${pg_all} req/s"
printf '%-34s %-16s %-10s %-7s %s\n' "  file store / no-op" "${file_ratio}" "" "" "rounds ${file_rounds}; ${file_all} req/s"
printf '%-34s %-16s %-10s %-7s %s\n' "  no-op req/s" "${noop_mean}" "" "" "rounds ${noop_all}; benches/noop_server.rs, keep-alive ${NOOP_KEEPALIVE} s"
printf '%-34s %-16s %-10s %-7s %s\n' "fleet start ($((FOLLOWERS - 1 + ADMINS)) at once)" "${fleet_start_s} s" "" "" \
    "followers 2..${FOLLOWERS} and ${ADMINS} admin replicas started together to all /health 200; VmRSS ${fleet_rss[*]} MB"
printf '%-34s %-16s %-10s %-7s %s\n' "  VmRSS after the writes" "${end_rss[*]} MB" "" "" "follower 1, followers 2.., admin replicas"
printf '%-34s %-16s %-10s %-7s %s\n' "tilgang import" "${import_s} s" "" "" \
    "one transaction (COPY into a temporary table, then INSERT); VACUUM (ANALYZE) after it ${vacuum_s} s"
printf '%-34s %-16s %-10s %-7s %s\n' "replica warnings/errors logged" "${warnings}" "" "" "WARN and ERROR lines in the fleet's logs (not the admin listener's development-mode warning)"
sep

if [ "$STRICT" = 1 ] && [ "$missed" -gt 0 ]; then
    echo "${missed} target(s) missed" >&2
    exit 3
fi
