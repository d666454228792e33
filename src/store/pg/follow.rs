//! A follower: the whole delegation set in memory, kept current from the
//! shared store's change feed, so a decision never touches the network.
//!
//! `LISTEN tilgang_changes` is only a wake-up (a notification sent while we
//! were disconnected is lost), so the follower catches up from its cursor on
//! every notification, on every [`POLL`], and when a caller waits for a
//! revision it does not have (`SnapshotStore::at_least`).
//! A catch-up reads the store revision `r` first, then the changes in
//! `(cursor, r]`: writes commit one at a time in revision order
//! (`schema`), so all of those are committed and visible, and there must be
//! exactly `r - cursor` of them. Fewer (pruned meanwhile), a cursor older than
//! what the feed keeps, or a store behind the cursor (restored from a backup)
//! means a full reload, never a silent gap.
//!
//! Each applied batch is published under the snapshot writer lock (built
//! from the current snapshot, so a policy reload in between is kept).
//! Connection loss is retried with back-off; the last snapshot keeps serving,
//! and once it is older than `--max-staleness` its delegations are withheld
//! from decisions ([`Snapshot::with_withheld`]) until a sync succeeds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::{AsyncMessage, Client};

use super::connect::StoreConfig;
use super::records::{Change, apply, load_all, recheck};
use super::{PgError, schema};
use crate::snapshot::SnapshotStore;

/// How often the follower catches up when no notification comes.
pub const POLL: Duration = Duration::from_millis(500);

/// The notification channel writers notify on commit.
pub const CHANNEL: &str = "tilgang_changes";

/// Past this many changes behind, a full reload is cheaper than the feed.
const FEED_LIMIT: i64 = 100_000;

/// The first and the longest wait between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How current a follower's snapshot is, shared with the services that
/// decide (minimum revisions), health and metrics.
#[derive(Debug)]
pub struct Freshness {
    /// The store revision the published snapshot is at.
    applied: watch::Sender<u64>,
    connected: AtomicBool,
    /// When a catch-up last succeeded (`None`: never).
    synced: Mutex<Option<Instant>>,
    /// Becomes `true` with the first snapshot loaded (health waits for it).
    loaded: watch::Sender<bool>,
    max_staleness: Option<Duration>,
}

impl Freshness {
    pub fn new(max_staleness: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            applied: watch::Sender::new(0),
            connected: AtomicBool::new(false),
            synced: Mutex::new(None),
            loaded: watch::Sender::new(false),
            max_staleness,
        })
    }

    /// The store revision decisions are made at.
    pub fn revision(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Whether the follower holds a live connection to the store.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether the first snapshot has been loaded.
    pub fn loaded(&self) -> bool {
        self.synced_at().is_some()
    }

    fn synced_at(&self) -> Option<Instant> {
        *self.synced.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Time since the last successful sync with the store (`None`: none yet).
    pub fn staleness(&self) -> Option<Duration> {
        self.synced_at().map(|t| t.elapsed())
    }

    /// Why delegations must not be used now, if they must not: nothing loaded
    /// yet, or no sync for longer than `--max-staleness`.
    pub fn withhold_reason(&self) -> Option<String> {
        match (self.staleness(), self.max_staleness) {
            (None, _) => Some("no delegations loaded from the store yet".to_string()),
            (Some(age), Some(max)) if age > max => Some(format!(
                "delegations withheld: no sync with the store for {}s (--max-staleness {}s)",
                age.as_secs(),
                max.as_secs()
            )),
            _ => None,
        }
    }

    /// `true` once the first snapshot is loaded, and ever after (a stale
    /// replica still serves: `--max-staleness` withholds its delegations).
    pub fn subscribe_loaded(&self) -> watch::Receiver<bool> {
        self.loaded.subscribe()
    }

    /// The longest a snapshot may go without a sync (`None`: forever).
    pub fn max_staleness(&self) -> Option<Duration> {
        self.max_staleness
    }

    fn mark_synced(&self) {
        *self.synced.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// After the first full load has been published.
    fn mark_loaded(&self) {
        self.loaded
            .send_if_modified(|l| !std::mem::replace(l, true));
    }
}

/// What the follower task needs.
pub struct Follower {
    pub config: StoreConfig,
    pub snapshots: Arc<SnapshotStore>,
    pub freshness: Arc<Freshness>,
    /// Apply pending schema migrations on each connect (`serve --migrate`)
    /// instead of refusing an old schema.
    pub migrate: bool,
}

/// What a session ended with.
enum Wake {
    Notified,
    Lost(String),
}

impl Follower {
    /// Follow the store until `shutdown` resolves: connect (with back-off),
    /// load, catch up on every wake-up. Also withholds delegations once the
    /// snapshot is older than `--max-staleness`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let this = Arc::new(self);
        let watchdog = tokio::spawn(Arc::clone(&this).watchdog());
        tokio::pin!(shutdown);
        let mut backoff = BACKOFF_MIN;
        loop {
            let started = Instant::now();
            let ended = tokio::select! {
                () = &mut shutdown => break,
                ended = this.session() => ended,
            };
            this.freshness.connected.store(false, Ordering::Relaxed);
            let e = match ended {
                Ok(never) => match never {},
                Err(e) => e,
            };
            if started.elapsed() > BACKOFF_MAX * 2 {
                backoff = BACKOFF_MIN;
            }
            tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "store follower disconnected; deciding from the last snapshot");
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(jittered(backoff)) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        watchdog.abort();
    }

    /// Every second: withhold delegations from decisions once no sync has
    /// succeeded for `--max-staleness`.
    async fn watchdog(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            // Judged under the writer lock: a sync that lands meanwhile
            // (it publishes under the same lock) is not undone.
            let w = self.snapshots.lock();
            let why = self.freshness.withhold_reason();
            let cur = w.current();
            if why.is_some() && cur.withheld().is_none() {
                if let Some(why) = &why {
                    tracing::error!(reason = %why, "store unreachable too long: decisions use no delegations until it is back");
                }
                w.publish(cur.with_withheld(why.map(Arc::from)));
            }
        }
    }

    /// One connection's life: listen, load or catch up, then catch up on
    /// every wake-up until the connection is lost.
    async fn session(&self) -> Result<std::convert::Infallible, PgError> {
        let (mut client, mut messages) = self.config.connect().await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                match messages.next().await {
                    Some(Ok(AsyncMessage::Notification(_))) => {
                        let _ = tx.send(Wake::Notified);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        let _ = tx.send(Wake::Lost(crate::telemetry::logs::error_chain(&e)));
                        return;
                    }
                    None => {
                        let _ = tx.send(Wake::Lost("the server closed the connection".into()));
                        return;
                    }
                }
            }
        });
        let _driver = AbortOnDrop(driver);
        if self.migrate {
            let m = schema::migrate(&mut client).await?;
            for a in &m.applied {
                tracing::info!(migration = %a, "applied a schema migration (--migrate)");
            }
        } else {
            schema::check(&client).await?;
        }
        // Before the first read: a change committed after it wakes us.
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(PgError::query("listening for changes"))?;
        self.freshness.connected.store(true, Ordering::Relaxed);
        if self.freshness.loaded() {
            self.catch_up(&mut client).await?;
        } else {
            self.full_load(&mut client).await?;
        }
        tracing::info!(store = %self.config, revision = self.freshness.revision(), "following the store");
        loop {
            tokio::select! {
                wake = rx.recv() => match wake {
                    Some(Wake::Notified) => {
                        while let Ok(Wake::Notified) = rx.try_recv() {}
                    }
                    Some(Wake::Lost(reason)) => return Err(PgError::Lost { reason }),
                    None => return Err(PgError::Lost { reason: "connection driver ended".into() }),
                },
                () = self.snapshots.catch_up_wanted() => {}
                () = tokio::time::sleep(POLL) => {}
            }
            self.catch_up(&mut client).await?;
        }
    }

    /// Apply the changes since the cursor, or reload when they cannot be had.
    async fn catch_up(&self, client: &mut Client) -> Result<(), PgError> {
        let cursor = self.freshness.revision();
        let state = client
            .query_one("SELECT revision, pruned_through FROM tilgang_state", &[])
            .await
            .map_err(PgError::query("reading the store revision"))?;
        let (head, pruned): (i64, i64) = (state.get(0), state.get(1));
        let (head, pruned) = (head.max(0) as u64, pruned.max(0) as u64);
        if head == cursor {
            self.synced(None);
            return Ok(());
        }
        if head < cursor {
            tracing::warn!(
                cursor,
                head,
                "the store is behind this replica (restored from a backup?): reloading everything"
            );
            return self.full_load(client).await;
        }
        if cursor < pruned || head - cursor > FEED_LIMIT as u64 {
            tracing::info!(
                cursor,
                head,
                pruned,
                "the change feed cannot serve this cursor: reloading everything"
            );
            return self.full_load(client).await;
        }
        let rows = client
            .query(
                "SELECT revision, owner, supplier, rights, delegated_by, created_at, updated_at, extra
                 FROM tilgang_changes WHERE revision > $1 AND revision <= $2 ORDER BY revision",
                &[&(cursor as i64), &(head as i64)],
            )
            .await
            .map_err(PgError::query("reading the change feed"))?;
        let consecutive = rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.get::<_, i64>(0) as u64 == cursor + 1 + i as u64);
        if rows.len() as u64 != head - cursor || !consecutive {
            tracing::info!(
                cursor,
                head,
                got = rows.len(),
                "changes missing from the feed (pruned meanwhile): reloading everything"
            );
            return self.full_load(client).await;
        }
        let changes: Vec<Change> = rows
            .iter()
            .map(|r| Change {
                owner: r.get(1),
                supplier: r.get(2),
                rights: r.get(3),
                delegated_by: r.get(4),
                created_at: r.get(5),
                updated_at: r.get(6),
                extra: r.get(7),
            })
            .collect();
        self.synced(Some((head, changes)));
        Ok(())
    }

    /// Publish what a catch-up found (`None`: nothing new) and record the
    /// sync; lifts a withholding.
    fn synced(&self, changes: Option<(u64, Vec<Change>)>) {
        self.freshness.mark_synced();
        let w = self.snapshots.lock();
        let cur = w.current();
        let mut next = match &changes {
            Some((head, changes)) => apply(&cur, changes).with_store_revision(*head),
            None if cur.withheld().is_some() => (*cur).clone(),
            None => return,
        };
        if next.withheld().is_some() {
            tracing::info!("store reachable again: decisions use delegations again");
            next = next.with_withheld(None);
        }
        let revision = next.store_revision();
        w.publish(next);
        drop(w);
        self.freshness.applied.send_replace(revision);
    }

    /// Read every delegation at one store revision, in one transaction, and
    /// publish them all.
    async fn full_load(&self, client: &mut Client) -> Result<(), PgError> {
        let started = Instant::now();
        let policies = self.snapshots.load().policies.clone();
        let (revision, owners, problems) = load_all(client, &policies).await?;
        let count: usize = owners.values().map(|o| o.by_supplier.len()).sum();
        let w = self.snapshots.lock();
        let cur = w.current();
        // Policies changed while loading: the records were checked against
        // the old ones, so check again (cheap next to the load).
        let owners = if Arc::ptr_eq(&cur.policies, &policies) {
            owners
        } else {
            recheck(owners, &cur.policies)
        };
        let next = cur
            .with_all_owners(owners)
            .with_store_revision(revision)
            .with_withheld(None);
        w.publish(next);
        // Synced once published: `/health` says loaded only when decisions
        // use what was loaded.
        self.freshness.mark_synced();
        drop(w);
        self.freshness.applied.send_replace(revision);
        self.freshness.mark_loaded();
        tracing::info!(
            revision,
            delegations = count,
            refused = problems,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded every delegation from the store"
        );
        Ok(())
    }
}

/// `d` give or take a quarter, so replicas that lost the store together do
/// not all come back in the same instant.
fn jittered(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    let quarter = d / 4;
    d - quarter + quarter * 2 * u32::from(b[0]) / 255
}

/// Ends the connection driver with the session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
