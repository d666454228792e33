//! What the PostgreSQL tests share: whether to run at all (the environment
//! contract below), a fresh database per test on the shared server, private
//! clusters for tests that stop PostgreSQL, sidecars following a store, and
//! the store's contents read back in SQL to compare replicas against.
//!
//! The environment (CI sets both; `.ci/run`):
//! - `TILGANG_TEST_POSTGRES`: a server URL (`postgres://USER[:PW]@HOST:PORT/DB`)
//!   where tests may `CREATE DATABASE`. Every test makes its own database
//!   (a random name, dropped at the end), so tests run in parallel.
//! - `TILGANG_TEST_POSTGRES_REQUIRED=1`: a missing or unreachable server, or
//!   missing PostgreSQL binaries for the private clusters, fail the test.
//!   Without it and without the URL, each test says `skipped: <test>: …` on
//!   stderr (written past the test harness's capture, so plain `cargo test`
//!   shows it) and passes.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tilgang::proto::authorizer_client::AuthorizerClient;
use tilgang::proto::delegations_client::DelegationsClient;
use tilgang::proto::{
    DelegateRequest, IsAuthorizedResponse, ListDelegationsRequest, RevokeRequest, UndoRevokeRequest,
};
use tilgang::sidecar::{Config, DEFAULT_MAX_STALENESS, SharedStore, Sidecar};
use tilgang::snapshot::Snapshot;
use tilgang::snapshot::load::{PolicySource, load_policies};
use tilgang::store::pg::{StoreConfig, schema, transfer};
use tokio_postgres::Client;
use tonic::transport::Channel;

use crate::util::*;

pub const URL_VAR: &str = "TILGANG_TEST_POSTGRES";
pub const REQUIRED_VAR: &str = "TILGANG_TEST_POSTGRES_REQUIRED";

/// Whether a missing server or missing binaries fail rather than skip.
pub fn required() -> bool {
    std::env::var(REQUIRED_VAR).is_ok_and(|v| !v.trim().is_empty() && v.trim() != "0")
}

/// Say on the process's stderr (not the harness's captured one) that
/// `test` did not run, and why.
pub fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

/// The shared server's URL, or `None` after saying the test is skipped.
/// Panics when the tests are required.
pub fn server(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().to_string()),
        _ => {
            assert!(
                !required(),
                "{test}: {REQUIRED_VAR}=1 but {URL_VAR} is not set: the PostgreSQL tests must run"
            );
            skip(test, &format!("{URL_VAR} not set"));
            None
        }
    }
}

/// `url` with its database replaced by `db` (URL form only).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{db}{query}", &base[..path])
}

/// `url` with `key=value` added to its query.
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

/// `url` logging in as `user` with `password` instead.
pub fn with_user(url: &str, user: &str, password: &str) -> String {
    let authority = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority..];
    let host = rest.split_once('@').map_or(rest, |(_, h)| h);
    format!("{}{user}:{password}@{host}", &url[..authority])
}

/// The store configuration for `url`, read the way `serve` reads `--store`.
pub fn store_config(url: &str) -> StoreConfig {
    StoreConfig::new(
        url,
        None,
        std::env::var("TILGANG_STORE_PASSWORD").ok(),
        None,
    )
    .unwrap()
}

/// A connection for the test's own SQL, driven on the current runtime.
pub async fn connect(url: &str) -> Client {
    let config = store_config(url);
    config
        .connect_spawned()
        .await
        .unwrap_or_else(|e| panic!("the test cannot reach PostgreSQL at {config}: {e}"))
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, with the schema migrated; dropped
/// (with every session still in it, and the roles made for it) on drop.
pub struct TestDb {
    server: String,
    pub name: String,
    pub url: String,
    roles: Mutex<Vec<String>>,
}

impl TestDb {
    pub async fn create(server: &str, test: &str) -> Self {
        Self::create_named(server, &Self::fresh_name(test)).await
    }

    /// A database name no other test uses, tagged with `test`.
    pub fn fresh_name(test: &str) -> String {
        let tag: String = test
            .rsplit("::")
            .next()
            .unwrap_or(test)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(24)
            .collect::<String>()
            .to_ascii_lowercase();
        format!(
            "tilgang_t_{tag}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub async fn create_named(server: &str, name: &str) -> Self {
        let admin = connect(server).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let db = Self {
            server: server.to_string(),
            url: with_database(server, name),
            name: name.to_string(),
            roles: Mutex::new(Vec::new()),
        };
        let mut c = db.client().await;
        schema::migrate(&mut c).await.unwrap();
        db
    }

    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// How a sidecar reaches this database, showing as `app` in
    /// `pg_stat_activity` (so a test can find its connections).
    pub fn store(&self, app: &str) -> StoreConfig {
        store_config(&with_param(&self.url, "application_name", app))
    }

    /// The URL a `tilgang` process is given, as `app`.
    pub fn url_as(&self, app: &str) -> String {
        with_param(&self.url, "application_name", app)
    }

    /// A login role that may only read (what a follower needs), dropped
    /// with the database; its URL.
    pub async fn reader_role(&self) -> (String, String) {
        let role = format!("{}_reader", self.name);
        let password = "reader-pw";
        let c = self.client().await;
        c.batch_execute(&format!(
            "CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'; GRANT pg_read_all_data TO \"{role}\""
        ))
        .await
        .unwrap();
        self.roles.lock().unwrap().push(role.clone());
        (role.clone(), with_user(&self.url, &role, password))
    }

    /// Import `dir`'s delegations (checked against `policies`) as `tilgang
    /// import` does; the revision it made.
    pub async fn import(&self, dir: &Path, policies: &Path) -> u64 {
        let bundle = load_policies(&PolicySource::Dir(policies.to_path_buf())).unwrap();
        let owners = transfer::read_dir(dir, &bundle).unwrap();
        let mut c = self.client().await;
        transfer::import(&mut c, &owners)
            .await
            .unwrap()
            .revision
            .unwrap_or(0)
    }

    /// Import the fixture delegations (`tests/fixtures/data`).
    pub async fn import_fixtures(&self) -> u64 {
        self.import(
            &repo().join("tests/fixtures/data"),
            &repo().join("tests/fixtures/policies"),
        )
        .await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let roles = std::mem::take(&mut *self.roles.lock().unwrap_or_else(|e| e.into_inner()));
        // Its own thread and runtime: a drop cannot await, and may run on
        // a runtime's worker.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let c = store_config(&server).connect_spawned().await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let r = tokio::time::timeout(Duration::from_secs(20), c.batch_execute(&sql)).await;
                for role in roles {
                    let _ = c
                        .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
                        .await;
                }
                r.ok()?.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) && !std::thread::panicking() {
            eprintln!("note: test database {} was not dropped", self.name);
        }
    }
}

/// A work directory for a sidecar on the shared store: the fixture
/// policies and `roles.json`, and no delegation files (`serve` refuses
/// those with `--store`).
pub fn pg_workdir() -> Workdir {
    let work = Workdir::new();
    std::fs::remove_dir_all(work.data().join("delegations")).unwrap();
    work
}

/// A sidecar configuration over `work` following `store`.
pub fn pg_config(work: &Workdir, store: StoreConfig, max_staleness: Option<Duration>) -> Config {
    let mut cfg = work.config();
    cfg.store = Some(SharedStore {
        config: store,
        migrate: false,
        max_staleness,
    });
    cfg
}

/// A follower only: no admin listener, as on a gateway replica.
pub fn follower_config(work: &Workdir, store: StoreConfig) -> Config {
    let mut cfg = pg_config(work, store, Some(DEFAULT_MAX_STALENESS));
    cfg.admin_listen = None;
    cfg
}

/// A running in-process sidecar and its clients.
pub struct Replica {
    pub sidecar: Sidecar,
}

impl Replica {
    pub async fn start(cfg: Config) -> Self {
        Self {
            sidecar: Sidecar::start(cfg).await.unwrap(),
        }
    }

    /// Start, and wait for the first snapshot from the store.
    pub async fn start_loaded(cfg: Config) -> Self {
        let r = Self::start(cfg).await;
        r.wait_loaded().await;
        r
    }

    pub async fn stop(self) {
        self.sidecar.shutdown().await.unwrap();
    }

    pub async fn wait_loaded(&self) {
        if let Some(f) = &self.sidecar.freshness {
            // Loaded, and published: `loaded()` turns true just before the
            // snapshot is swapped in.
            within("the first snapshot from the store", LONG, || async {
                f.loaded() && self.snapshot().withheld().is_none()
            })
            .await;
        }
    }

    pub fn snapshot(&self) -> std::sync::Arc<Snapshot> {
        self.sidecar.snapshots.load()
    }

    pub fn store_revision(&self) -> u64 {
        self.snapshot().store_revision()
    }

    pub fn connected(&self) -> bool {
        self.sidecar.freshness.as_ref().unwrap().connected()
    }

    /// Wait until this replica decides at `revision` or later.
    pub async fn reach(&self, revision: u64) {
        within(&format!("store revision {revision}"), LONG, || async {
            self.store_revision() >= revision
        })
        .await;
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

    pub fn metrics(&self) -> String {
        self.sidecar.metrics_addr.unwrap().to_string()
    }

    pub async fn decide(&self, supplier: &str, owner: &str, scope: &str) -> IsAuthorizedResponse {
        self.decide_at(supplier, owner, scope, 0).await.unwrap()
    }

    /// A decision at store revision `min` or later.
    pub async fn decide_at(
        &self,
        supplier: &str,
        owner: &str,
        scope: &str,
        min: u64,
    ) -> Result<IsAuthorizedResponse, tonic::Status> {
        let mut r = req(supplier, owner, scope);
        r.min_revision = min;
        self.gateway()
            .await
            .is_authorized(r)
            .await
            .map(|r| r.into_inner())
    }
}

/// The longest a test waits for a store-side effect (a reconnect backs
/// off to 5 s, plus jitter).
pub const LONG: Duration = Duration::from_secs(20);

/// Retry `check` until it returns true, for at most `limit`.
pub async fn within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn delegate(owner: &str, supplier: &str, rights: &[&str], actor: &str) -> DelegateRequest {
    DelegateRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        rights: rights.iter().map(|r| r.to_string()).collect(),
        actor: actor.into(),
    }
}

pub fn revoke(owner: &str, supplier: &str, rights: &[&str], actor: &str) -> RevokeRequest {
    RevokeRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        rights: rights.iter().map(|r| r.to_string()).collect(),
        actor: actor.into(),
    }
}

pub fn undo(token: &str, actor: &str) -> UndoRevokeRequest {
    UndoRevokeRequest {
        undo_token: token.into(),
        actor: actor.into(),
    }
}

/// One delegation as both sides can show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub rights: Vec<String>,
    pub delegated_by: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Delegations by (owner, supplier).
pub type Rows = BTreeMap<(String, String), Row>;

/// Every delegation in a snapshot.
pub fn snapshot_rows(s: &Snapshot) -> Rows {
    let mut rows = Rows::new();
    for (owner, slice) in s.owners.iter() {
        for (supplier, r) in slice.by_supplier.iter() {
            let mut rights: Vec<String> = r.rights.iter().map(|x| x.to_string()).collect();
            rights.sort();
            rows.insert(
                (owner.to_string(), supplier.to_string()),
                Row {
                    rights,
                    delegated_by: r.delegated_by.clone(),
                    created_at: r.created_at.clone(),
                    updated_at: r.updated_at.clone(),
                },
            );
        }
    }
    rows
}

/// Every delegation in the store, by `SELECT`.
pub async fn store_rows(c: &Client) -> Rows {
    let mut rows = Rows::new();
    for r in c
        .query(
            "SELECT owner, supplier, rights, delegated_by, created_at, updated_at FROM tilgang_delegations",
            &[],
        )
        .await
        .unwrap()
    {
        let mut rights: Vec<String> = r.get(2);
        rights.sort();
        rows.insert(
            (r.get(0), r.get(1)),
            Row {
                rights,
                delegated_by: r.get(3),
                created_at: r.get(4),
                updated_at: r.get(5),
            },
        );
    }
    rows
}

/// Every delegation a replica's admin API lists, page by page.
pub async fn listed_rows(a: &mut DelegationsClient<Channel>) -> Rows {
    let mut rows = Rows::new();
    let mut token = String::new();
    loop {
        let page = a
            .list_delegations(ListDelegationsRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for d in page.delegations {
            let mut rights = d.rights;
            rights.sort();
            rows.insert(
                (d.owner, d.supplier),
                Row {
                    rights,
                    delegated_by: d.delegated_by,
                    created_at: d.created_at,
                    updated_at: d.updated_at,
                },
            );
        }
        if page.next_page_token.is_empty() {
            return rows;
        }
        token = page.next_page_token;
    }
}

/// The store revision and how far the feed may be pruned.
pub async fn store_state(c: &Client) -> (u64, u64) {
    let r = c
        .query_one("SELECT revision, pruned_through FROM tilgang_state", &[])
        .await
        .unwrap();
    (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)
}

/// Check that the change feed holds every revision after `pruned_through`
/// up to the store revision, each once, none missing; returns the store
/// revision.
pub async fn assert_feed_consecutive(c: &Client) -> u64 {
    let (head, pruned) = store_state(c).await;
    let revisions: Vec<u64> = c
        .query(
            "SELECT revision FROM tilgang_changes ORDER BY revision",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, i64>(0) as u64)
        .collect();
    let want: Vec<u64> = (pruned + 1..=head).collect();
    assert_eq!(
        revisions,
        want,
        "the change feed must hold revisions {}..={head}, each once",
        pruned + 1
    );
    head
}

/// Audit lines (changes and refusals) in the order written, with their
/// revision; the import's own lines left out.
pub async fn store_audit(c: &Client) -> Vec<(Option<u64>, serde_json::Value)> {
    c.query("SELECT revision, line FROM tilgang_audit ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let rev: Option<i64> = r.get(0);
            let line: String = r.get(1);
            (
                rev.map(|v| v as u64),
                serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            )
        })
        .filter(|(_, l)| l.get("import").is_none())
        .collect()
}

/// The gRPC health status of `service` on `addr`.
pub async fn grpc_health(addr: SocketAddr, service: &str) -> i32 {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut h = HealthClient::new(channel);
    h.check(HealthCheckRequest {
        service: service.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .status
}

/// `GET /health` on a metrics listener: the status code and the JSON.
pub async fn health(metrics: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = http_get(metrics, "GET", "/health", &[]).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// Wait for a line of `process`'s log containing `needle`; returns it.
pub fn wait_log(process: &ServerProcess, needle: &str, limit: Duration) -> String {
    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + limit;
        let rx = process.log.lock().unwrap();
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!(
                    "no log line with `{needle}` ({e}); the log since:\n{}",
                    seen.join("\n")
                ),
            }
        }
    })
}

/// A private PostgreSQL cluster (`scripts/pg-cluster`) on a port of its
/// own, for tests that stop, kill or delay PostgreSQL; killed on drop.
/// Created stopped: [`Cluster::start`] runs `initdb` the first time.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
    /// The `postgres` database on it.
    pub url: String,
}

impl Cluster {
    /// A cluster directory and a free port, or `None` after saying why the
    /// test is skipped. Private clusters need the PostgreSQL binaries
    /// (`PG_BIN`, else `/usr/lib/postgresql/15/bin`); like every
    /// PostgreSQL test, they run only when asked to (the URL or required).
    pub fn new(test: &str) -> Option<Self> {
        if std::env::var(URL_VAR).is_err() && !required() {
            skip(test, &format!("{URL_VAR} not set"));
            return None;
        }
        let bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
        if !Path::new(&bin).join("pg_ctl").exists() {
            assert!(
                !required(),
                "{test}: {REQUIRED_VAR}=1 but there is no PostgreSQL in {bin} (set PG_BIN)"
            );
            skip(test, &format!("no PostgreSQL binaries in {bin} (PG_BIN)"));
            return None;
        }
        // Under /tmp and open to others: as root, pg-cluster hands it to the
        // `postgres` user, which must reach it.
        let dir = tempfile::Builder::new()
            .prefix("tilgang-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port();
        Some(Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
            dir,
            port,
        })
    }

    fn run(&self, args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new(repo().join("scripts/pg-cluster"))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            Err(format!(
                "pg-cluster {args:?}: {}\n{}\nserver log:\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn dir(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    /// Start (`initdb` first, the first time); returns once it accepts
    /// connections.
    pub fn start(&self) {
        let port = self.port.to_string();
        tokio::task::block_in_place(|| self.run(&["start", &self.dir(), &port])).unwrap();
    }

    /// A fast shutdown: sessions are ended, open transactions rolled back.
    pub fn stop(&self) {
        tokio::task::block_in_place(|| self.run(&["stop", &self.dir()])).unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.dir.path().join("data/postmaster.pid").exists() {
            let _ = self.run(&["kill", &self.dir()]);
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary's arguments for following `url` (and nothing else).
pub fn store_args(url: &str) -> Vec<String> {
    vec!["--store".into(), url.into()]
}

/// A path as an argument.
pub fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
