//! The composition root: [`Config`] (every setting of `serve`, defaults in one
//! place), and [`Sidecar`], which loads and validates everything before it binds
//! a port, then serves the gateway and admin listeners, watches the files, prunes
//! undo records, and shuts all of it down. `cli::serve` only parses flags into a
//! [`Config`]; tests start a [`Sidecar`] on port 0. No signal handling here.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::grpc::ext_authz::ClaimSource;
use crate::server::limits::{self, ConnectionLimits, Limits, LimitsError};
use crate::server::{self, Listener, ServerError};
use crate::snapshot::SnapshotStore;
use crate::snapshot::load::{self, LoadErrors, PolicySource};
use crate::snapshot::reload::{self, Reloader};
use crate::snapshot::watch::{self as watcher, WatchHandle};
use crate::store::DelegationStore;

/// Everything `serve` needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub policies: PolicySource,
    pub data: PathBuf,
    pub listen: String,
    pub admin_listen: String,
    pub debounce: Duration,
    pub rescan: Duration,
    pub undo_window: Duration,
    /// Connections, streams, message sizes, timeouts, shutdown grace.
    pub limits: Limits,
    /// Where Envoy's ext_authz `Check` finds the caller's token claims.
    pub claims: ClaimSource,
}

impl Config {
    pub fn new(policies: PolicySource, data: PathBuf) -> Self {
        Self {
            policies,
            data,
            listen: "127.0.0.1:0".into(),
            admin_listen: "127.0.0.1:0".into(),
            debounce: Duration::from_millis(150),
            rescan: Duration::from_secs(30),
            undo_window: Duration::from_secs(86_400),
            limits: Limits::DEFAULT,
            claims: ClaimSource::default(),
        }
    }
}

/// The longest undo window `serve` accepts.
pub const MAX_UNDO_WINDOW: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Held while serving, so two sidecars never write one data directory: the
/// per-owner write locks only work within one process.
const LOCK_FILE: &str = ".lock";

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
}

impl From<LoadErrors> for StartError {
    fn from(e: LoadErrors) -> Self {
        Self::Load(e)
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// A running sidecar.
pub struct Sidecar {
    pub gateway_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub snapshots: Arc<SnapshotStore>,
    pub store: Arc<DelegationStore>,
    /// Keeps the snapshot in step with the files; its `problems()` are the
    /// rejected changes still on disk.
    pub reloader: Arc<Reloader>,
    /// The connection limits in effect, fitted into the open-file limit.
    pub connection_limits: ConnectionLimits,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), ServerError>>>,
    _watch: WatchHandle,
    /// Released when the sidecar is dropped (or the process dies).
    _lock: std::fs::File,
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
        std::fs::create_dir_all(cfg.data.join(load::DELEGATIONS_DIR)).map_err(io(format!(
            "creating data directory `{}`",
            cfg.data.display()
        )))?;
        crate::store::files::sync_dir(&cfg.data)
            .map_err(io(format!("data directory `{}`", cfg.data.display())))?;
        let mut lock = std::fs::OpenOptions::new();
        lock.create(true).truncate(false).write(true);
        // Like every file tilgang writes in the data directory: never through a
        // symlink (a dangling one would create its target).
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut lock,
            rustix::fs::OFlags::NOFOLLOW.bits() as i32,
        );
        let lock = lock
            .open(cfg.data.join(LOCK_FILE))
            .map_err(io("opening the data directory lock"))?;
        lock.try_lock().map_err(|e| {
            StartError::Config(format!(
                "data directory `{}` is in use by another tilgang serve ({e}); \
                 one writer per data directory",
                cfg.data.display()
            ))
        })?;
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
        // Only content that has settled: a file caught mid-save at start-up is
        // read again once its writer is done (see `snapshot::settle`).
        let snapshot = {
            let (policies, data, quiet) = (policies.clone(), data.clone(), cfg.debounce);
            tokio::task::spawn_blocking(move || reload::load_settled(&policies, &data, quiet))
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
        let snapshots = Arc::new(SnapshotStore::new(snapshot));
        let reloader = Arc::new(
            Reloader::new(snapshots.clone(), policies, data).with_quiet_period(cfg.debounce),
        );
        let store = Arc::new(
            DelegationStore::open(reloader.clone(), cfg.undo_window)
                .map_err(io("opening the data directory for writing"))?,
        );

        let gateway = TcpListener::bind(&cfg.listen)
            .await
            .map_err(io(format!("binding `--listen {}`", cfg.listen)))?;
        let admin = TcpListener::bind(&cfg.admin_listen)
            .await
            .map_err(io(format!("binding `--admin-listen {}`", cfg.admin_listen)))?;
        let gateway_addr = gateway.local_addr().map_err(io("gateway address"))?;
        let admin_addr = admin.local_addr().map_err(io("admin address"))?;

        let watch_handle = watcher::spawn(reloader.clone(), cfg.debounce, cfg.rescan)?;

        let (shutdown, rx) = watch::channel(false);
        let signal = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let listener = |tcp, max_connections| Listener {
            tcp,
            max_connections,
            limits: cfg.limits.clone(),
        };
        let tasks = vec![
            tokio::spawn(server::serve_gateway(
                listener(gateway, connection_limits.gateway),
                snapshots.clone(),
                cfg.claims.clone(),
                signal(rx.clone()),
            )),
            tokio::spawn(server::serve_admin(
                listener(admin, connection_limits.admin),
                store.clone(),
                signal(rx.clone()),
            )),
            tokio::spawn(prune_undo_records(store.clone(), signal(rx))),
        ];
        tracing::info!(%gateway_addr, %admin_addr, "serving");
        Ok(Self {
            gateway_addr,
            admin_addr,
            snapshots,
            store,
            reloader,
            connection_limits,
            shutdown,
            tasks,
            _watch: watch_handle,
            _lock: lock,
        })
    }

    /// Report `NOT_SERVING`, stop accepting, send GOAWAY, let in-flight calls
    /// finish for at most the shutdown grace, close what remains, stop
    /// watching. Returns once both listeners are closed.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            match t.await {
                Ok(r) => r?,
                Err(e) => tracing::error!(error = %e, "server task failed"),
            }
        }
        Ok(())
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

/// How often expired undo records are pruned (also once at start-up).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Prune expired undo records now and every [`PRUNE_EVERY`] until `stop`. A
/// failure is logged and tried again next time: it never stops the sidecar.
async fn prune_undo_records(
    store: Arc<DelegationStore>,
    stop: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let mut stop = std::pin::pin!(stop);
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.prune_undo_records()).await {
            Ok(Ok(p)) => {
                if p.removed > 0 {
                    tracing::info!(removed = p.removed, "pruned expired undo records");
                }
                for path in p.unreadable {
                    tracing::warn!(file = %path.display(), "undo record unreadable; kept");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not prune undo records"),
            Err(e) => tracing::error!(error = %e, "pruning undo records failed"),
        }
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}
