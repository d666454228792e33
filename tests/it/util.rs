//! Shared helpers: a server over a private copy of the fixture policies and
//! data, clients, and a bounded `eventually` for background effects.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tilgang::proto::authorizer_client::AuthorizerClient;
use tilgang::proto::delegations_client::DelegationsClient;
use tilgang::proto::{IsAuthorizedRequest, IsAuthorizedResponse};
use tilgang::sidecar::{Config, Sidecar};
use tilgang::snapshot::load::PolicySource;
use tonic::transport::Channel;

pub const READ: &str = "altinn:serviceowner/instances.read";
pub const WRITE: &str = "altinn:serviceowner/instances.write";
/// Owners and suppliers in `tests/fixtures/data`.
pub const OWNER: &str = "991825827";
pub const OTHER_OWNER: &str = "983887457";
pub const FULL_SUPPLIER: &str = "810418672";
pub const READ_SUPPLIER: &str = "974760673";
pub const NEW_SUPPLIER: &str = "889640782";
/// Holds DAGL for `OWNER` in the fixture `roles.json`.
pub const DAGL: &str = "01017012345";
/// Holds APIADM for `OTHER_OWNER`, nothing for `OWNER`.
pub const OTHER_ADMIN: &str = "02029054321";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Valid org numbers, for many distinct suppliers.
pub fn org_numbers(start: u32, n: usize) -> Vec<String> {
    (start..)
        .filter_map(|n| {
            let s = format!("{n:08}");
            let w = [3, 2, 7, 6, 5, 4, 3, 2];
            let sum: u32 = s.bytes().zip(w).map(|(d, w)| u32::from(d - b'0') * w).sum();
            match 11 - sum % 11 {
                10 => None,
                11 => Some(format!("{s}0")),
                c => Some(format!("{s}{c}")),
            }
        })
        .take(n)
        .collect()
}

/// A private working directory with `policies/` and `data/` copied in from
/// `tests/fixtures/`. The fixture policies, not the shipped `policies/`, so policy
/// authors can change theirs without breaking tests that assume these.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &repo().join("tests/fixtures/policies"),
            &dir.path().join("policies"),
        );
        copy_dir(
            &repo().join("tests/fixtures/data"),
            &dir.path().join("data"),
        );
        Self { dir }
    }

    pub fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// An owner's delegation file, spelled out here rather than taken from the
    /// crate, so the tests pin the on-disk layout.
    pub fn owner_file(&self, owner: &str) -> PathBuf {
        self.data()
            .join("delegations")
            .join(format!("{owner}.json"))
    }

    pub fn config(&self) -> Config {
        Config::new(PolicySource::Dir(self.policies()), self.data())
    }
}

/// A running sidecar on ephemeral ports, with its files.
pub struct TestServer {
    pub work: Workdir,
    pub sidecar: Sidecar,
}

impl TestServer {
    pub async fn start() -> Self {
        let work = Workdir::new();
        Self::start_in(work, |_| {}).await
    }

    pub async fn start_in(work: Workdir, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = work.config();
        tweak(&mut cfg);
        let sidecar = Sidecar::start(cfg).await.unwrap();
        Self { work, sidecar }
    }

    /// Stop, and hand back the files for a restart.
    pub async fn stop(self) -> Workdir {
        self.sidecar.shutdown().await.unwrap();
        self.work
    }

    pub async fn gateway(&self) -> AuthorizerClient<Channel> {
        AuthorizerClient::connect(format!("http://{}", self.sidecar.gateway_addr))
            .await
            .unwrap()
    }

    pub async fn admin(&self) -> DelegationsClient<Channel> {
        DelegationsClient::connect(format!("http://{}", self.sidecar.admin_addr.unwrap()))
            .await
            .unwrap()
    }

    pub async fn decide(&self, supplier: &str, owner: &str, scope: &str) -> IsAuthorizedResponse {
        self.gateway()
            .await
            .is_authorized(req(supplier, owner, scope))
            .await
            .unwrap()
            .into_inner()
    }

    pub fn revision(&self) -> String {
        self.sidecar.snapshots.load().revision().to_string()
    }
}

pub fn req(supplier: &str, owner: &str, scope: &str) -> IsAuthorizedRequest {
    IsAuthorizedRequest {
        supplier: supplier.into(),
        owner: owner.into(),
        scope: scope.into(),
        min_revision: 0,
    }
}

/// One sample of the metrics at `addr` (`series` as exposed, e.g.
/// `tilgang_decisions_total{api="check",result="allow"}`); `None` if absent.
pub async fn metric(addr: &str, series: &str) -> Option<f64> {
    let (status, _, body) = http_get(addr, "GET", "/metrics", &[]).await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

/// Retry `check` until it returns true, for at most 10 s. Never a bare sleep.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Replace a file the way editors that save by rename do: write a temp file
/// beside it, then rename it over the original.
/// A policy that forbids every write: a visible change for reload tests.
pub const FORBID_WRITE: &str = r#"
@id("freeze-writes")
forbid (principal, action == Tilgang::Action::"callApi", resource == Tilgang::Scope::"altinn:serviceowner/instances.write");
"#;

pub fn save_by_rename(path: &Path, contents: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.swp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The real `tilgang serve` binary on ephemeral ports, killed when dropped so no
/// server outlives a failed test.
pub struct ServerProcess {
    pub child: Option<std::process::Child>,
    pub gateway: String,
    pub admin: String,
    /// `off` when not served.
    pub metrics: String,
    /// The stderr lines read up to the `serving` line.
    pub startup_log: Vec<String>,
    /// The stderr lines after it, as they come (see [`Self::rest_of_log`]).
    pub log: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
}

impl ServerProcess {
    pub fn spawn(work: &Workdir) -> Self {
        Self::spawn_with(work, &[], &[])
    }

    /// `wrapper` runs the binary (e.g. `prlimit --nofile=256:256 --`); `args`
    /// go after `serve`'s own.
    pub fn spawn_with(work: &Workdir, wrapper: &[&str], args: &[&str]) -> Self {
        Self::start(Self::command(work, wrapper, args))
    }

    /// The command [`Self::spawn_with`] runs, for a caller to adjust (stdout,
    /// environment) before [`Self::start`].
    pub fn command(work: &Workdir, wrapper: &[&str], args: &[&str]) -> std::process::Command {
        let bin = env!("CARGO_BIN_EXE_tilgang");
        let mut command = match wrapper {
            [] => std::process::Command::new(bin),
            [program, rest @ ..] => {
                let mut c = std::process::Command::new(program);
                c.args(rest).arg(bin);
                c
            }
        };
        command
            .arg("serve")
            .arg("--policies")
            .arg(work.policies())
            .arg("--data")
            .arg(work.data())
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(["--web-listen", "127.0.0.1:0"])
            .args(args);
        command
    }

    /// Start `command` (a `tilgang serve`, set up by the caller) and wait for
    /// its `serving` line. `RUST_LOG` is removed so the line is logged, and
    /// `TILGANG_LOG_FORMAT` unless the command sets it.
    pub fn start(mut command: std::process::Command) -> Self {
        use std::io::{BufRead, BufReader};
        let format_set = command
            .get_envs()
            .any(|(k, v)| k == "TILGANG_LOG_FORMAT" && v.is_some());
        command.env_remove("RUST_LOG");
        if !format_set {
            command.env_remove("TILGANG_LOG_FORMAT");
        }
        let mut child = command
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut server = Self {
            child: Some(child),
            gateway: String::new(),
            admin: String::new(),
            metrics: String::new(),
            startup_log: Vec::new(),
            log: std::sync::Mutex::new(std::sync::mpsc::channel().1),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        // `name=value` (text) or `"name":"value"` (JSON).
        let field = |line: &str, name: &str| {
            let text = line
                .split(&format!("{name}="))
                .nth(1)
                .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
            text.or_else(|| {
                line.split(&format!("\"{name}\":\""))
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .map(str::to_string)
            })
        };
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "a `serving` log line; got:\n{}",
                        server.startup_log.join("\n")
                    )
                });
            server.startup_log.push(line.clone());
            if let (Some(g), Some(a)) = (field(&line, "gateway_addr"), field(&line, "admin_addr")) {
                server.gateway = g;
                server.admin = a;
                server.metrics = field(&line, "metrics_addr").unwrap_or_default();
                server.log = std::sync::Mutex::new(rx);
                return server;
            }
        }
    }

    /// The stderr lines from the `serving` line on until the process
    /// closes stderr (it exited); panics after `within`.
    pub fn rest_of_log(&self, within: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + within;
        let rx = self.log.lock().unwrap();
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return lines,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("stderr still open after {within:?}")
                }
            }
        }
    }

    /// Wait (off the async workers) for the process to exit, at most
    /// `within`; `None` if it did not (it is then killed).
    pub async fn exit_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take().unwrap();
        tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + within;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    return Some(status);
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A request over HTTP/1.1 on a fresh connection (`Connection: close`), with
/// extra header lines; the status code, the headers (lowercased names) and the
/// body.
pub async fn http_get(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
) -> (u16, Vec<(String, String)>, String) {
    tokio::time::timeout(
        Duration::from_secs(10),
        try_http_get(addr, method, path, headers),
    )
    .await
    .expect("the response within 10 s")
    .unwrap()
}

/// [`http_get`], with a connection that fails or closes early as an error.
pub async fn try_http_get(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
) -> std::io::Result<(u16, Vec<(String, String)>, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    c.read_to_end(&mut raw).await?;
    let bad =
        |what: &str| std::io::Error::other(format!("{what}: {}", String::from_utf8_lossy(&raw)));
    let text = String::from_utf8(raw.clone()).map_err(|_| bad("not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, body.to_string()))
}

/// Write `owner`'s delegation file in the fixture format: `right` to each
/// supplier.
pub fn write_owner(work: &Workdir, owner: &str, suppliers: &[String], right: &str) {
    let entities: Vec<serde_json::Value> = suppliers
        .iter()
        .map(|s| {
            serde_json::json!({
                "uid": { "type": "Tilgang::Delegation", "id": format!("{owner}/{s}") },
                "attrs": {
                    "owner": { "type": "Tilgang::Organization", "id": owner },
                    "supplier": { "type": "Tilgang::Organization", "id": s },
                    "rights": [{ "type": "Tilgang::Right", "id": right }],
                    "delegatedBy": DAGL,
                    "createdAt": "2026-01-05T09:00:00Z",
                    "updatedAt": "2026-01-05T09:00:00Z"
                },
                "parents": []
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&entities).unwrap();
    std::fs::write(work.owner_file(owner), text).unwrap();
}

/// A revocation of everything `owner` has delegated to `supplier`, by `DAGL`.
pub fn revoke_all(owner: &str, supplier: &str) -> tilgang::proto::RevokeRequest {
    tilgang::proto::RevokeRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        rights: vec![],
        actor: DAGL.into(),
    }
}
