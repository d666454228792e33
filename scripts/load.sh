#!/usr/bin/env bash
# Load test of the gateway API: drives `tilgang.v1.Authorizer/IsAuthorized` on a
# locally started sidecar with h2load, and reports throughput, latency and the
# server's memory (VmRSS) before and after.
#
# Usage: scripts/load.sh            (from anywhere; works in the repository root)
# Tunables (environment): N=200000 C=16 M=32 T=2 PORT=50051
#   SUPPLIER=810418672 OWNER=991825827 SCOPE=altinn:serviceowner/instances.read
#   (the default triple is delegated in tests/fixtures/data, so it is an allow)
#   TLS=1: serve the gateway listener over TLS (a self-signed P-256 certificate
#   made with openssl for the run) and drive it over https with ALPN h2; run once
#   with and once without to see what TLS costs.
#
# Needs h2load (Debian: `apt-get install -y nghttp2-client`), curl with HTTP/2, and
# python3. The server only listens on 127.0.0.1 and the run is bounded by N.
#
# The server serves a *copy* of tests/fixtures/data: `tilgang serve` creates its
# audit log and undo directory in the data directory, and the fixtures must stay
# untouched.
set -euo pipefail

N=${N:-200000}
C=${C:-16}
M=${M:-32}
T=${T:-2}
PORT=${PORT:-50051}
SUPPLIER=${SUPPLIER:-810418672}
OWNER=${OWNER:-991825827}
SCOPE=${SCOPE:-altinn:serviceowner/instances.read}
ADDR="127.0.0.1:${PORT}"
TLS=${TLS:-0}
if [ "$TLS" = 1 ]; then
    URL="https://${ADDR}/tilgang.v1.Authorizer/IsAuthorized"
else
    URL="http://${ADDR}/tilgang.v1.Authorizer/IsAuthorized"
fi

cd "$(dirname "$0")/.."

tools="h2load curl python3"
[ "$TLS" = 1 ] && tools="$tools openssl"
for tool in $tools; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: \`$tool\` is not installed." >&2
        if [ "$tool" = h2load ]; then
            echo "install it with: apt-get install -y nghttp2-client" >&2
        fi
        exit 1
    fi
done

if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
    echo "error: something already listens on ${ADDR}; stop it or set PORT=..." >&2
    exit 1
fi

echo "== building (cargo build --release)"
cargo build --release --quiet

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cp -r tests/fixtures/data "$work/data"

# gRPC messages: 1 byte compressed flag (0), 4-byte big-endian length, protobuf.
# grpc_msg.py encode SUPPLIER OWNER SCOPE > file   |   grpc_msg.py decode < file
cat >"$work/grpc_msg.py" <<'PY'
import sys

sys.path.insert(0, "scripts")
from grpc_wire import decode, field, frame, unframe  # noqa: E402

if sys.argv[1] == "encode":
    supplier, owner, scope = sys.argv[2:5]
    sys.stdout.buffer.write(frame(field(1, supplier) + field(2, owner) + field(3, scope)))
else:
    msg = unframe(sys.stdin.buffer.read())
    if msg is None:
        print("no message (trailers-only response)")
        sys.exit(1)
    d = decode(msg)
    allowed = bool(d.get(1, [0])[0])
    reasons, errors, revision = d.get(2, []), d.get(3, []), d.get(4, [""])[0]
    print(f"allowed={str(allowed).lower()} reasons={reasons} errors={errors} revision={revision}")
    sys.exit(0 if allowed else 2)
PY

python3 "$work/grpc_msg.py" encode "$SUPPLIER" "$OWNER" "$SCOPE" >"$work/req.bin"

tls_args=()
curl_tls=(--http2-prior-knowledge)
if [ "$TLS" = 1 ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
    tls_args=(--tls-cert "$work/tls.crt" --tls-key "$work/tls.key")
    curl_tls=(--http2 --cacert "$work/tls.crt")
fi

echo "== starting target/release/tilgang serve on ${ADDR}$([ "$TLS" = 1 ] && echo ' (TLS)')"
TILGANG_WEB_LISTEN=off RUST_LOG=${RUST_LOG:-warn} target/release/tilgang serve \
    --data "$work/data" --listen "$ADDR" --admin-listen 127.0.0.1:0 \
    --metrics-listen off "${tls_args[@]}" \
    >"$work/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 300); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "error: the server exited; its log:" >&2
        cat "$work/server.log" >&2
        exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
        break
    fi
    sleep 0.1
done
if ! (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; then
    echo "error: ${ADDR} did not open within 30 s" >&2
    exit 1
fi

mem() {
    grep -E '^(VmRSS|VmHWM):' "/proc/${server_pid}/status" | tr -s ' \t' ' ' | paste -sd ',' -
}

# One call through curl, decoded, to check the answer really is an allow (h2load
# only sees HTTP 200, which gRPC also sends with an error status in the trailers).
call() {
    curl -sS "${curl_tls[@]}" -X POST \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        --data-binary @"$1" -D "$work/resp.headers" -o "$work/resp.bin" "$URL"
}
echo "== checking one response with curl"
call "$work/req.bin"
grpc_status=$(tr -d '\r' <"$work/resp.headers" | awk -F': ' 'tolower($1)=="grpc-status"{print $2}' | tail -1)
echo "grpc-status: ${grpc_status:-<none>}"
if ! python3 "$work/grpc_msg.py" decode <"$work/resp.bin"; then
    echo "error: the request (${SUPPLIER} -> ${OWNER}, ${SCOPE}) is not allowed; not load testing a deny" >&2
    tr -d '\r' <"$work/resp.headers" >&2
    exit 1
fi
[ "${grpc_status}" = 0 ] || { echo "error: grpc-status is not 0" >&2; exit 1; }
resp_size=$(stat -c %s "$work/resp.bin")

echo "== server memory before: $(mem)"
echo "== h2load -n $N -c $C -m $M -t $T (POST ${URL}, $(stat -c %s "$work/req.bin")-byte body)"
h2load -n "$N" -c "$C" -m "$M" -t "$T" \
    -d "$work/req.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "$URL" | tee "$work/h2load.out"
echo "== server memory after:  $(mem)"

# Every response should be the same message as the checked one: compare the data
# bytes h2load received with N times its size.
data_bytes=$(grep -E '^traffic:' "$work/h2load.out" | sed -E 's/.*\(([0-9]+)\) data.*/\1/')
done_ok=$(grep -E '^requests:' "$work/h2load.out" | sed -E 's/.* ([0-9]+) succeeded.*/\1/')
expected=$((done_ok * resp_size))
if [ "$data_bytes" = "$expected" ]; then
    echo "== response data: ${data_bytes} bytes = ${done_ok} x ${resp_size} (each the checked allow message)"
else
    echo "warning: response data ${data_bytes} bytes != ${done_ok} x ${resp_size}; some answers differ from the checked allow" >&2
fi

# A second check after the load, so a server that degraded under load is noticed.
call "$work/req.bin"
echo "== after the run: $(python3 "$work/grpc_msg.py" decode <"$work/resp.bin" || true)"

echo "== stopping the server (SIGTERM)"
kill -TERM "$server_pid"
wait "$server_pid" || echo "warning: the server exited with status $?" >&2
server_pid=""
