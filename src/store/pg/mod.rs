//! The shared store: PostgreSQL as the system of record for a fleet of
//! sidecars (`--store postgres://…`). Every replica follows it into an
//! in-memory snapshot ([`follow`]); admin replicas also write to it
//! ([`write`]), one transaction per write. The file store stays the default
//! and the format people read: [`transfer`] moves data between the two.
//!
//! Layout:
//! - `connect`: `--store`, its password and TLS;
//! - [`schema`]: the tables, as versioned migrations (`tilgang migrate`);
//! - [`follow`]: the change feed into the snapshot, freshness and staleness;
//! - `records`: the store's rows as snapshot records (full load, feed batches);
//! - `write`: delegate, revoke, undo as transactions;
//! - [`transfer`]: `tilgang export` and `tilgang import`.

mod connect;
pub mod follow;
mod records;
pub mod schema;
pub mod transfer;
mod write;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use connect::StoreConfig;
pub use follow::{Follower, Freshness};
use std::collections::BTreeSet;

use super::audit::{Actor, RefusalRecord};
use super::{Backend, DelegationView, Revoked, StoreError, Written};
use crate::ids::{OrgNumber, RightId, UndoToken};
use crate::snapshot::{Snapshot, SnapshotStore};

/// What went wrong with the shared store, in its own terms.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{reason}")]
    Config { reason: String },
    #[error("cannot read the store password file `{}`: {reason}", path.display())]
    PasswordFile { path: PathBuf, reason: String },
    #[error("cannot use `--store-ca` `{}`: {reason}", path.display())]
    Ca { path: PathBuf, reason: String },
    #[error("cannot connect to the store {store}: {reason}")]
    Connect { store: String, reason: String },
    /// The connection broke or the server refused a statement.
    #[error("the store failed while {what}: {reason}")]
    Query {
        what: &'static str,
        reason: String,
        /// The connection is gone (or never answered): nothing was done.
        unreachable: bool,
    },
    /// The commit did not answer: the write may or may not have happened.
    #[error(
        "the store did not confirm the commit ({reason}); the change may or may not be in effect"
    )]
    Commit { reason: String },
    #[error("the connection to the store was lost: {reason}")]
    Lost { reason: String },
    #[error(
        "the store's schema is at version {found}, this tilgang needs {want}: run `tilgang migrate --store …` (or `serve --migrate`)"
    )]
    SchemaTooOld { found: i32, want: i32 },
    #[error(
        "the store's schema is at version {found}, newer than this tilgang knows ({known}): a later tilgang migrated it"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error("{0}")]
    Import(String),
}

impl PgError {
    /// A mapper for a failed statement: what was being done, and why.
    pub fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> Self {
        move |e| Self::Query {
            what,
            unreachable: e.is_closed() || e.code().is_none_or(gone),
            reason: crate::telemetry::logs::error_chain(&e),
        }
    }

    /// Whether the store could not be reached (rather than refused).
    pub fn unreachable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Lost { .. } | Self::Commit { .. } => true,
            Self::Query { unreachable, .. } => *unreachable,
            _ => false,
        }
    }
}

/// Codes that mean the server went away rather than refused: a connection
/// exception (class 08), or the server shutting down, crashed or not yet
/// accepting connections (`pg_terminate_backend`, a restart, a failover).
fn gone(code: &tokio_postgres::error::SqlState) -> bool {
    use tokio_postgres::error::SqlState;
    code.code().starts_with("08")
        || [
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code)
}

impl From<PgError> for StoreError {
    /// The store away is [`StoreError::Unavailable`] (nothing was written:
    /// an uncommitted transaction leaves nothing); a commit nobody confirmed
    /// is [`StoreError::CommitUnknown`]; a statement the server refused is a
    /// storage error.
    fn from(e: PgError) -> Self {
        match e {
            PgError::Commit { reason } => StoreError::CommitUnknown { reason },
            e if e.unreachable() => StoreError::Unavailable {
                reason: e.to_string(),
            },
            e => StoreError::Storage(std::io::Error::other(e.to_string())),
        }
    }
}

/// The admin side of the shared store: writes, refusal lines, pruning.
/// Blocking methods, like the file store's: call them off the async
/// workers (`spawn_blocking`).
pub struct PgStore {
    config: StoreConfig,
    pool: deadpool_postgres::Pool,
    snapshots: Arc<SnapshotStore>,
    freshness: Arc<Freshness>,
    undo_window: Duration,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("store", &self.config.to_string())
            .finish_non_exhaustive()
    }
}

/// Connections one admin replica keeps to the store for writes. Writes
/// commit one at a time anyway (the revision row); more serve waiting
/// callers' reads.
const POOL_SIZE: usize = 4;

impl PgStore {
    /// The write side over `config`, publishing through `snapshots` (which
    /// the follower behind `freshness` keeps current). Connects lazily.
    pub fn new(
        config: StoreConfig,
        snapshots: Arc<SnapshotStore>,
        freshness: Arc<Freshness>,
        undo_window: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, PgError> {
        let manager = deadpool_postgres::Manager::from_config(
            config.pg().clone(),
            config.connector(),
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .build()
            .map_err(|e| PgError::Config {
                reason: format!("connection pool: {e}"),
            })?;
        Ok(Self {
            config,
            pool,
            snapshots,
            freshness,
            undo_window,
            runtime,
        })
    }

    pub fn freshness(&self) -> &Arc<Freshness> {
        &self.freshness
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            StoreError::from(PgError::Connect {
                store: self.config.to_string(),
                reason: crate::telemetry::logs::error_chain(&e),
            })
        })
    }

    /// Put a refused call on record, in the store's audit log. Blocking.
    fn put_refusal(&self, record: &RefusalRecord) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            let client = self.client().await?;
            let json = serde_json::to_string(record).map_err(std::io::Error::other)?;
            client
                .execute("INSERT INTO tilgang_audit (line) VALUES ($1)", &[&json])
                .await
                .map_err(write::failed("writing a refusal line"))?;
            Ok(())
        })
    }

    /// Remove undo records that expired more than the retention ago, and
    /// change-feed entries older than [`FEED_RETENTION`] (a follower
    /// further behind reloads everything). Blocking.
    fn prune_now(&self) -> Result<(u64, u64), StoreError> {
        self.runtime.block_on(async {
            let mut client = self.client().await?;
            let retention =
                Duration::from_secs(super::undo::RETENTION.whole_seconds().max(0) as u64);
            let cutoff = std::time::SystemTime::now() - retention;
            let undo = client
                .execute("DELETE FROM tilgang_undo WHERE expires_at < $1", &[&cutoff])
                .await
                .map_err(write::failed("pruning undo records"))?;
            let tx = client
                .transaction()
                .await
                .map_err(write::failed("starting to prune the change feed"))?;
            let feed_cutoff = std::time::SystemTime::now() - FEED_RETENTION;
            let last: Option<i64> = tx
                .query_one(
                    "SELECT max(revision) FROM tilgang_changes WHERE at < $1",
                    &[&feed_cutoff],
                )
                .await
                .map_err(write::failed("pruning the change feed"))?
                .get(0);
            let mut changes = 0;
            if let Some(last) = last {
                // Recorded first: a follower that reads the feed after this
                // commits knows what is gone.
                tx.execute(
                    "UPDATE tilgang_state SET pruned_through = greatest(pruned_through, $1)",
                    &[&last],
                )
                .await
                .map_err(write::failed("pruning the change feed"))?;
                changes = tx
                    .execute("DELETE FROM tilgang_changes WHERE revision <= $1", &[&last])
                    .await
                    .map_err(write::failed("pruning the change feed"))?;
            }
            tx.commit()
                .await
                .map_err(write::failed("pruning the change feed"))?;
            Ok((undo, changes))
        })
    }
}

/// How long the change feed keeps a change: a follower disconnected longer
/// than this reloads everything when it comes back.
pub const FEED_RETENTION: Duration = Duration::from_secs(24 * 3600);

impl Backend for PgStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.load()
    }

    fn delegate(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: BTreeSet<RightId>,
        by: Actor<'_>,
    ) -> Result<Written<DelegationView>, StoreError> {
        PgStore::delegate(self, owner, supplier, rights, by)
    }

    fn revoke(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: BTreeSet<RightId>,
        by: Actor<'_>,
    ) -> Result<Written<Revoked>, StoreError> {
        PgStore::revoke(self, owner, supplier, rights, by)
    }

    fn undo(
        &self,
        token: &UndoToken,
        by: Actor<'_>,
    ) -> Result<Written<DelegationView>, StoreError> {
        PgStore::undo(self, token, by)
    }

    fn record_refusal(&self, record: &RefusalRecord) -> Result<(), StoreError> {
        self.put_refusal(record)
    }

    fn prune(&self) -> Result<(), StoreError> {
        let (undo, changes) = self.prune_now()?;
        if undo + changes > 0 {
            tracing::info!(
                undo_records = undo,
                feed_entries = changes,
                "pruned the store"
            );
        }
        Ok(())
    }
}
