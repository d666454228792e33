//! `tilgang serve`: load and validate everything before binding a port, then serve
//! the gateway and admin listeners, watch the files, and shut down cleanly on
//! SIGINT/SIGTERM. [`Sidecar`] is the same thing as a library, for tests.

use super::Outcome;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::{self, ServerError};
use crate::snapshot::SnapshotStore;
use crate::snapshot::load::{self, LoadErrors, PolicySource};
use crate::snapshot::watch::{self as watcher, Reloader, WatchHandle};
use crate::store::DelegationStore;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: super::SourceArgs,
    /// Gateway listener (`Authorizer`, health, reflection). Port 0 picks a free port
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    pub listen: String,
    /// Admin listener (`Delegations`, health, reflection). Keep it off the gateway network
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50052")]
    pub admin_listen: String,
    /// How long a revocation can be undone, in seconds (at most ten years)
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(0..=MAX_UNDO_WINDOW.as_secs()))]
    pub undo_window: u64,
    /// Period of the fallback rescan for file systems that drop events, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub rescan: u64,
}

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
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("watching files: {0}")]
    Watch(#[from] notify::Error),
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
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
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
        let snapshot = load::load_snapshot(&policies, &data)?;
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
                .map_err(io("opening the audit log"))?,
        );

        let gateway = TcpListener::bind(&cfg.listen)
            .await
            .map_err(io(format!("binding `--listen {}`", cfg.listen)))?;
        let admin = TcpListener::bind(&cfg.admin_listen)
            .await
            .map_err(io(format!("binding `--admin-listen {}`", cfg.admin_listen)))?;
        let gateway_addr = gateway.local_addr().map_err(io("gateway address"))?;
        let admin_addr = admin.local_addr().map_err(io("admin address"))?;

        let watch_handle = watcher::spawn(reloader, cfg.debounce, cfg.rescan)?;

        let (shutdown, rx) = watch::channel(false);
        let signal = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let tasks = vec![
            tokio::spawn(server::serve_gateway(
                gateway,
                snapshots.clone(),
                signal(rx.clone()),
            )),
            tokio::spawn(server::serve_admin(
                admin,
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
            shutdown,
            tasks,
            _watch: watch_handle,
            _lock: lock,
        })
    }

    /// Stop accepting, drain in-flight calls, stop watching.
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

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(args: &Args) -> anyhow::Result<Outcome> {
    let mut cfg = Config::new(args.source.policy_source()?, args.source.data.clone());
    if cfg.policies == PolicySource::Embedded {
        tracing::warn!(
            "no `policies` directory here; using the policies built into the binary (not hot-reloaded)"
        );
    }
    cfg.listen = args.listen.clone();
    cfg.admin_listen = args.admin_listen.clone();
    cfg.undo_window = Duration::from_secs(args.undo_window);
    cfg.rescan = Duration::from_secs(args.rescan.max(1));
    let sidecar = Sidecar::start(cfg).await?;
    terminated().await;
    tracing::info!("shutting down");
    sidecar.shutdown().await?;
    tracing::info!("stopped");
    Ok(Outcome::Success)
}
