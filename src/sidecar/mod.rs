//! The composition root: [`Config`] (every setting of `serve`, defaults in one
//! place), and [`Sidecar`], which loads and validates everything (and opens the
//! decision log) before it binds a port, then serves the gateway, admin and
//! metrics listeners, watches the files, prunes undo records, and shuts all of
//! it down. `cli::serve` only parses flags into a [`Config`]; tests start a
//! [`Sidecar`] on port 0. No signal handling here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::{JwksError, VerifierConfig};
use crate::grpc::ext_authz::ClaimSource;
use crate::server::limits::{self, ConnectionLimits, Limits, LimitsError};
use crate::server::metrics_listener::{self, MetricsLimits};
use crate::server::{self, Listener, ServerError};
use crate::snapshot::SnapshotStore;
use crate::snapshot::load::{self, LoadErrors, PolicySource};
use crate::snapshot::reload::Reloader;
use crate::snapshot::startup;
use crate::snapshot::watch::{self as watcher, WatchHandle};
use crate::store::pg::{Follower, Freshness, PgStore};
use crate::store::{DelegationStore, FileStore};
use crate::telemetry::Telemetry;
use crate::telemetry::decision_log::{self, Writer};
use crate::telemetry::metrics::{Exposition, Metrics, SnapshotProbe, TlsFacts};
use crate::tls::{self, ServerTls, TlsFiles};
use security::{admin_auth, open_tls, open_verifier};

mod security;
mod store;
mod web;

pub use store::{DEFAULT_MAX_STALENESS, SharedStore};
use store::{lock_data_dir, prune_undo_records, refuse_delegation_files, store_probe};
use web::bind_web;
pub use web::{WebOidc, WebSettings};

/// Everything `serve` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub policies: PolicySource,
    pub data: PathBuf,
    pub listen: String,
    /// `None` (`--admin-listen off`): no admin listener, as on a gateway
    /// replica whose writes would go to the shared store.
    pub admin_listen: Option<String>,
    /// Where `GET /metrics` is served; `None`: not served.
    pub metrics_listen: Option<String>,
    pub metrics_limits: MetricsLimits,
    /// Where every decision is logged as a JSON line; `None`: not logged.
    pub decision_log: Option<decision_log::Target>,
    /// How many lines may wait for the decision-log writer; more are
    /// dropped and counted, so decisions never wait for the log.
    pub decision_log_queue: usize,
    pub debounce: Duration,
    pub rescan: Duration,
    pub undo_window: Duration,
    /// Connections, streams, message sizes, timeouts, shutdown grace.
    pub limits: Limits,
    /// Where Envoy's ext_authz `Check` finds the caller's token claims.
    pub claims: ClaimSource,
    /// Verify `Authorization: Bearer` tokens on `Check` when Envoy's
    /// `jwt_authn` passed no claims (`--jwks`); `None`: such a check is 401.
    /// [`Sidecar::start`] opens the file and sets `claims.verifier`.
    pub bearer: Option<BearerConfig>,
    /// Verified `--jwks` tokens remembered, so a repeated token skips the
    /// signature check (`--jwt-cache`; 0: verify every token in full).
    pub token_cache: usize,
    /// Who may call the admin listener (`--admin-jwks`). With neither this
    /// nor `admin_clients`: development mode, `actor` trusted as written, and
    /// only on a loopback address.
    pub admin_auth: Option<AdminAuthConfig>,
    /// `--admin-client-identities`: client certificates mapped to persons or
    /// services (needs `admin_tls` with a client CA).
    pub admin_clients: Option<PathBuf>,
    /// TLS on the gateway listener; `None`: plaintext.
    pub tls: Option<TlsFiles>,
    /// TLS on the admin listener; `None`: plaintext.
    pub admin_tls: Option<TlsFiles>,
    /// How often the TLS files are looked at ([`tls::RESCAN`]).
    pub tls_rescan: Duration,
    /// The owner's web page; `None`: not served.
    pub web: Option<WebSettings>,
    /// `--store`: delegations in the shared PostgreSQL store instead of
    /// `--data`'s files.
    pub store: Option<SharedStore>,
}

/// `--admin-jwks`: ID-porten tokens on the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAuthConfig {
    pub tokens: BearerConfig,
    /// The claim naming the person ([`crate::auth::DEFAULT_PERSON_CLAIM`]).
    pub person_claim: String,
}

/// `--jwks` and what a token must say besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerConfig {
    pub jwks: PathBuf,
    pub verifier: VerifierConfig,
}

impl Config {
    pub fn new(policies: PolicySource, data: PathBuf) -> Self {
        Self {
            policies,
            data,
            listen: "127.0.0.1:0".into(),
            admin_listen: Some("127.0.0.1:0".into()),
            metrics_listen: Some("127.0.0.1:0".into()),
            metrics_limits: MetricsLimits::DEFAULT,
            decision_log: None,
            decision_log_queue: decision_log::DEFAULT_QUEUE,
            debounce: Duration::from_millis(150),
            rescan: Duration::from_secs(30),
            undo_window: Duration::from_secs(86_400),
            limits: Limits::DEFAULT,
            claims: ClaimSource::default(),
            bearer: None,
            token_cache: crate::auth::verify::DEFAULT_TOKEN_CACHE,
            admin_auth: None,
            admin_clients: None,
            tls: None,
            admin_tls: None,
            tls_rescan: tls::RESCAN,
            web: None,
            store: None,
        }
    }
}

/// The decision log gets at least this long to be written out on shutdown,
/// even when the listeners' drain used up the grace (a `Health/Watch` stream
/// holds it to the end): its queue is written in milliseconds unless the
/// disk or pipe is stuck.
pub const LOG_DRAIN_MIN: Duration = Duration::from_secs(1);

/// The longest undo window `serve` accepts.
pub const MAX_UNDO_WINDOW: Duration = Duration::from_secs(10 * 365 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    /// Not a `#[source]`: the message already lists every error.
    #[error("policies or data are invalid; refusing to start:\n{0}")]
    Load(LoadErrors),
    /// The cause is the `source`, so it is printed once, by whoever prints
    /// the chain (`main` does).
    #[error("{what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("watching files: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    Limits(#[from] LimitsError),
    #[error(transparent)]
    Jwks(#[from] JwksError),
}

impl From<LoadErrors> for StartError {
    fn from(e: LoadErrors) -> Self {
        Self::Load(e)
    }
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// A running sidecar.
pub struct Sidecar {
    pub gateway_addr: SocketAddr,
    /// Where the admin API is served, when it is.
    pub admin_addr: Option<SocketAddr>,
    /// Where `/metrics` is served, when it is.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the owner's web page is served, when it is.
    pub web_addr: Option<SocketAddr>,
    /// What the services report to: the counters and the decision log.
    pub telemetry: Telemetry,
    pub snapshots: Arc<SnapshotStore>,
    pub store: Arc<DelegationStore>,
    /// Keeps the snapshot in step with the files; its `problems()` are the
    /// rejected changes still on disk.
    pub reloader: Arc<Reloader>,
    /// The connection limits in effect, fitted into the open-file limit.
    pub connection_limits: ConnectionLimits,
    /// The listeners' TLS, when configured: its `status()` tells reloads.
    pub gateway_tls: Option<Arc<ServerTls>>,
    pub admin_tls: Option<Arc<ServerTls>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), ServerError>>>,
    /// The decision-log writer, drained on shutdown.
    log_writer: Option<Writer>,
    /// Bounds the shutdown (`Limits::shutdown_grace`).
    grace: Duration,
    _watch: WatchHandle,
    /// How current the shared store's snapshot is; `None`: the file store.
    pub freshness: Option<Arc<Freshness>>,
    /// Released when the sidecar is dropped (or the process dies). `None`
    /// with the shared store: nothing in `--data` is written.
    _lock: Option<std::fs::File>,
}

impl Sidecar {
    /// Load, validate, bind, and start serving.
    pub async fn start(cfg: Config) -> Result<Self, StartError> {
        if cfg.undo_window > MAX_UNDO_WINDOW {
            return Err(StartError::Config(format!(
                "the undo window may be at most {} seconds",
                MAX_UNDO_WINDOW.as_secs()
            )));
        }
        if cfg.decision_log_queue == 0 {
            return Err(StartError::Config(
                "the decision-log queue must hold at least one line".into(),
            ));
        }
        std::fs::create_dir_all(cfg.data.join(load::DELEGATIONS_DIR)).map_err(io(format!(
            "creating data directory `{}`",
            cfg.data.display()
        )))?;
        crate::store::files::sync_dir(&cfg.data)
            .map_err(io(format!("data directory `{}`", cfg.data.display())))?;
        let lock = match &cfg.store {
            None => Some(lock_data_dir(&cfg.data)?),
            Some(shared) => {
                refuse_delegation_files(&cfg.data, shared)?;
                None
            }
        };
        // Absolute paths, so file events (which carry absolute paths) match.
        let data = cfg
            .data
            .canonicalize()
            .map_err(io(format!("data directory `{}`", cfg.data.display())))?;
        let policies = match &cfg.policies {
            PolicySource::Dir(d) => PolicySource::Dir(
                d.canonicalize()
                    .map_err(io(format!("policies directory `{}`", d.display())))?,
            ),
            PolicySource::Embedded => PolicySource::Embedded,
        };
        let connection_limits = fit_connection_limits(&cfg.limits)?;
        let mut claims = cfg.claims.clone();
        if let Some(bearer) = &cfg.bearer {
            claims.verifier = Some(Arc::new(
                open_verifier(bearer, "--jwks")
                    .await?
                    .with_cache(cfg.token_cache),
            ));
            tracing::info!(
                jwks = %bearer.jwks.display(),
                issuer = bearer.verifier.issuer.as_deref().unwrap_or("(any)"),
                audiences = ?bearer.verifier.audiences,
                leeway_s = bearer.verifier.leeway.as_secs(),
                token_cache = cfg.token_cache,
                "Check verifies bearer tokens when jwt_authn passed no claims"
            );
        }
        let admin_auth = admin_auth(&cfg).await?;
        let gateway_tls = open_tls(&cfg.tls, "--tls-cert")?;
        let admin_tls = open_tls(&cfg.admin_tls, "--admin-tls-cert")?;
        // Only content that has settled: a file caught mid-save at start-up is
        // read again once its writer is done (see `snapshot::settle`).
        let snapshot = {
            let (policies, data, quiet) = (policies.clone(), data.clone(), cfg.debounce);
            tokio::task::spawn_blocking(move || startup::load_settled(&policies, &data, quiet))
                .await
                .map_err(|e| StartError::Config(format!("loading failed: {e}")))??
        };
        tracing::info!(
            policies = %policies,
            data = %data.display(),
            revision = snapshot.revision(),
            owners = snapshot.owners.len(),
            "loaded policies and data"
        );
        for w in &snapshot.policies.warnings {
            tracing::warn!(file = %w.location, warning = %w.message, "policies: probably not meant");
        }
        // With the shared store, decisions use no delegations until its
        // follower has loaded them (and health says NOT_SERVING meanwhile).
        let freshness = cfg.store.as_ref().map(|s| Freshness::new(s.max_staleness));
        let snapshot = match &freshness {
            Some(f) => snapshot.with_withheld(f.withhold_reason().map(Arc::from)),
            None => snapshot,
        };
        let snapshots = Arc::new(if freshness.is_some() {
            SnapshotStore::following(snapshot)
        } else {
            SnapshotStore::new(snapshot)
        });
        let metrics = Arc::new(Metrics::new());
        metrics.published(snapshots.load().revision());
        let mut reloader = Reloader::new(snapshots.clone(), policies, data.clone())
            .with_quiet_period(cfg.debounce)
            .with_metrics(metrics.clone());
        if cfg.store.is_some() {
            reloader = reloader.with_delegations_from_store();
        }
        let reloader = Arc::new(reloader);
        let store = Arc::new(match (&cfg.store, &freshness) {
            (Some(shared), Some(freshness)) => DelegationStore::new(
                PgStore::new(
                    shared.config.clone(),
                    snapshots.clone(),
                    freshness.clone(),
                    cfg.undo_window,
                    tokio::runtime::Handle::current(),
                )
                .map_err(|e| StartError::Config(e.to_string()))?,
            ),
            _ => FileStore::open(snapshots.clone(), data.clone(), cfg.undo_window)
                .map(DelegationStore::new)
                .map_err(io("opening the data directory for writing"))?,
        });

        // Opened before any port is bound: a path that cannot be written
        // refuses the start.
        let (log, log_writer) = match &cfg.decision_log {
            Some(target) => {
                let (log, writer) =
                    decision_log::open(target, cfg.decision_log_queue, metrics.clone())
                        .map_err(io(format!("opening `--decision-log {target}`")))?;
                tracing::info!(%target, queue = cfg.decision_log_queue, "logging every decision");
                (Some(log), Some(writer))
            }
            None => (None, None),
        };
        let telemetry = Telemetry::new(metrics.clone(), log);

        let gateway = TcpListener::bind(&cfg.listen)
            .await
            .map_err(io(format!("binding `--listen {}`", cfg.listen)))?;
        let admin = match &cfg.admin_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(io(format!("binding `--admin-listen {addr}`")))?,
            ),
            None => None,
        };
        let gateway_addr = gateway.local_addr().map_err(io("gateway address"))?;
        let admin_addr = admin
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(io("admin address"))?;
        // Bound where the check resolved: a name may resolve anew.
        if let (Some(addr), Some(listen)) = (admin_addr, &cfg.admin_listen)
            && admin_auth.is_development()
            && !addr.ip().is_loopback()
        {
            return Err(StartError::Config(format!(
                "`--admin-listen {listen}` bound {addr}, not a loopback address; refusing \
                 development mode there (see --admin-jwks)"
            )));
        }
        let metrics_tcp = match &cfg.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(io(format!("binding `--metrics-listen {addr}`")))?,
            ),
            None => None,
        };
        let metrics_addr = metrics_tcp
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()
            .map_err(io("metrics address"))?;
        let web = match &cfg.web {
            Some(w) => Some(bind_web(w).await?),
            None => None,
        };
        let web_addr = web.as_ref().map(|(_, addr, _, _)| *addr);
        let admin_shown = admin_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
        let web_tls = web.as_ref().and_then(|(_, _, _, tls)| tls.clone());

        let watch_handle = watcher::spawn(reloader.clone(), cfg.debounce, cfg.rescan)?;

        let (shutdown, rx) = watch::channel(false);
        let signal = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let l = &cfg.limits;
        let listener =
            |tcp, tls: &Option<Arc<ServerTls>>, max_connections, (per_peer, watches)| Listener {
                tcp,
                tls: tls.clone(),
                max_connections,
                max_connections_per_peer: per_peer,
                max_watch_streams: watches,
                limits: l.clone(),
                ready: freshness.as_ref().map(|f| f.subscribe_loaded()),
            };
        let gateway_shares = (l.max_connections_per_peer, l.max_watch_streams);
        let admin_shares = (l.admin_max_connections_per_peer, l.admin_max_watch_streams);
        let mut tasks = vec![tokio::spawn(server::serve_gateway(
            listener(
                gateway,
                &gateway_tls,
                connection_limits.gateway,
                gateway_shares,
            ),
            snapshots.clone(),
            claims,
            telemetry.clone(),
            signal(rx.clone()),
        ))];
        // The shared store is pruned by its admin replicas; a gateway
        // replica (no admin listener) may well hold a read-only role.
        if cfg.store.is_none() || admin.is_some() {
            tasks.push(tokio::spawn(prune_undo_records(
                store.clone(),
                signal(rx.clone()),
            )));
        }
        if let Some(admin) = admin {
            tasks.push(tokio::spawn(server::serve_admin(
                listener(admin, &admin_tls, connection_limits.admin, admin_shares),
                store.clone(),
                admin_auth,
                telemetry.clone(),
                signal(rx.clone()),
            )));
        }
        if let (Some(shared), Some(freshness)) = (&cfg.store, &freshness) {
            tracing::info!(
                store = %shared.config,
                max_staleness_s = shared.max_staleness.map(|d| d.as_secs()),
                "delegations from the shared store"
            );
            let follower = Follower {
                config: shared.config.clone(),
                snapshots: snapshots.clone(),
                freshness: freshness.clone(),
                migrate: shared.migrate,
            };
            let stop = signal(rx.clone());
            tasks.push(tokio::spawn(async move {
                follower.run(stop).await;
                Ok(())
            }));
        }
        for tls in gateway_tls.iter().chain(&admin_tls).chain(&web_tls) {
            let stop = signal(rx.clone());
            let tls = tls.clone();
            let every = cfg.tls_rescan;
            tasks.push(tokio::spawn(async move {
                tls::watch(tls, every, stop).await;
                Ok(())
            }));
        }
        let web_max_connections = cfg.web.as_ref().map_or(512, |w| w.max_connections);
        if let Some((tcp, _, config, tls)) = web {
            let page = crate::web::Web::new(store.clone(), telemetry.clone(), config);
            let limits = crate::web::serve::WebLimits {
                grace: cfg.limits.shutdown_grace,
                handshake_timeout: cfg.limits.handshake_timeout,
                max_connections: web_max_connections,
                ..Default::default()
            };
            let stop = signal(rx.clone());
            tasks.push(tokio::spawn(async move {
                crate::web::serve::serve_web(tcp, tls, page, limits, stop).await;
                Ok(())
            }));
        }
        if let Some(tcp) = metrics_tcp {
            let tls = [
                ("gateway", &gateway_tls),
                ("admin", &admin_tls),
                ("web", &web_tls),
            ]
            .into_iter()
            .filter_map(|(l, t)| t.clone().map(|t| (l, t as Arc<dyn TlsFacts>)))
            .collect();
            let probe = freshness.clone().map(|f| store_probe(f, snapshots.clone()));
            let snapshot: SnapshotProbe = {
                let snapshots = snapshots.clone();
                Arc::new(move || snapshots.load())
            };
            let exposition = Arc::new(Exposition::with_store(metrics, snapshot, tls, probe));
            let (limits, stop) = (cfg.metrics_limits, signal(rx));
            tasks.push(tokio::spawn(async move {
                metrics_listener::serve(tcp, exposition, limits, stop).await;
                Ok(())
            }));
        }
        let shown = metrics_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
        let web_shown = web_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
        tracing::info!(%gateway_addr, admin_addr = %admin_shown, metrics_addr = %shown, web_addr = %web_shown, "serving");
        Ok(Self {
            gateway_addr,
            admin_addr,
            metrics_addr,
            web_addr,
            telemetry,
            snapshots,
            store,
            reloader,
            connection_limits,
            gateway_tls,
            admin_tls,
            shutdown,
            tasks,
            log_writer,
            grace: cfg.limits.shutdown_grace,
            _watch: watch_handle,
            freshness,
            _lock: lock,
        })
    }

    /// Report `NOT_SERVING`, stop accepting, send GOAWAY, let in-flight calls
    /// finish for at most the shutdown grace, close what remains, write out
    /// the decision log (within what is left of the grace, and at least
    /// [`LOG_DRAIN_MIN`]; a writer that writes nothing for a second is left
    /// behind), stop watching. Returns once every listener is
    /// closed.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let started = Instant::now();
        let _ = self.shutdown.send(true);
        let mut result = Ok(());
        for t in self.tasks {
            match t.await {
                Ok(r) => result = result.and(r),
                Err(e) => tracing::error!(error = %e, "server task failed"),
            }
        }
        if let Some(writer) = self.log_writer {
            let left = self
                .grace
                .saturating_sub(started.elapsed())
                .max(LOG_DRAIN_MIN);
            if let Err(decision_log::Unwritten(lines)) = writer.close(left).await {
                tracing::warn!(
                    lines,
                    "the decision log was not written out in time (a stuck disk, or a pipe nobody reads?); its last lines are lost"
                );
            }
        }
        result
    }
}

/// Raise the open-file limit and fit the connection limits into it.
fn fit_connection_limits(cfg: &Limits) -> Result<ConnectionLimits, StartError> {
    let nofile = limits::raise_nofile();
    let fitted = limits::connection_limits(nofile.current(), cfg)?;
    let show = |n: Option<u64>| n.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    tracing::info!(
        before = show(nofile.before),
        after = show(nofile.after),
        gateway_connections = fitted.gateway,
        admin_connections = fitted.admin,
        "open-file limit (soft, raised to the hard limit) and the connection limits fitted into it"
    );
    Ok(fitted)
}
