//! What `serve` keeps beside the store: the shared store's settings and
//! what `/metrics` and `/health` read of it, the data directory's lock (the
//! file store: one writer per directory), the refusal of delegation files
//! the shared store would ignore, and the hourly pruning.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{StartError, io};
use crate::server::ServerError;
use crate::snapshot::SnapshotStore;
use crate::snapshot::load;
use crate::store::DelegationStore;
use crate::store::pg::{Freshness, StoreConfig};
use crate::telemetry::metrics::{StoreProbe, StoreStatus};

/// `--store` and what goes with it.
#[derive(Debug, Clone)]
pub struct SharedStore {
    pub config: StoreConfig,
    /// `--migrate`: apply pending schema migrations when connecting.
    pub migrate: bool,
    /// `--max-staleness`: past this long without a sync, decisions use no
    /// delegations (`None`: never).
    pub max_staleness: Option<Duration>,
}

/// `--max-staleness`'s default: five minutes.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(300);

/// Held while serving, so two sidecars never write one data directory: the
/// per-owner write locks only work within one process.
const LOCK_FILE: &str = ".lock";

/// What `/metrics` and `/health` read of the shared store.
pub(super) fn store_probe(freshness: Arc<Freshness>, snapshots: Arc<SnapshotStore>) -> StoreProbe {
    Arc::new(move || {
        let snap = snapshots.load();
        StoreStatus {
            revision: snap.store_revision(),
            connected: freshness.connected(),
            loaded: freshness.loaded(),
            staleness_seconds: freshness.staleness().map(|d| d.as_secs_f64()),
            max_staleness_seconds: freshness.max_staleness().map(|d| d.as_secs()),
            withheld: snap.withheld().map(str::to_string),
        }
    })
}

/// Hold the data directory's lock, so two sidecars never write one data
/// directory: the per-owner write locks only work within one process.
pub(super) fn lock_data_dir(data: &Path) -> Result<std::fs::File, StartError> {
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
        .open(data.join(LOCK_FILE))
        .map_err(io("opening the data directory lock"))?;
    lock.try_lock().map_err(|e| {
        StartError::Config(format!(
            "data directory `{}` is in use by another tilgang serve ({e}); \
             one writer per data directory",
            data.display()
        ))
    })?;
    Ok(lock)
}

/// With the shared store, delegation files in `--data` would be silently
/// ignored: refuse, and say how to move them.
pub(super) fn refuse_delegation_files(data: &Path, shared: &SharedStore) -> Result<(), StartError> {
    let (owners, _) = load::list_owner_files(data).unwrap_or_default();
    if owners.is_empty() {
        return Ok(());
    }
    Err(StartError::Config(format!(
        "`--store` is set, but `{}` holds delegation files of {} owner(s), which would be ignored: \
         move them into the store with `tilgang import {} --store {}`, then remove them",
        data.join(load::DELEGATIONS_DIR).display(),
        owners.len(),
        data.display(),
        shared.config
    )))
}

/// How often expired undo records are pruned (also once at start-up).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Prune expired undo records now and every [`PRUNE_EVERY`] until `stop`. A
/// failure is logged and tried again next time: it never stops the sidecar.
pub(super) async fn prune_undo_records(
    store: Arc<DelegationStore>,
    stop: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let mut stop = std::pin::pin!(stop);
    loop {
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.prune()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not prune undo records"),
            Err(e) => tracing::error!(error = %e, "pruning undo records failed"),
        }
        tokio::select! {
            () = &mut stop => return Ok(()),
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}
