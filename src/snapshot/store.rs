//! The snapshot deciding now, swapped whole: readers load it lock-free,
//! writers (reloads, admin writes, the store's follower) publish under one
//! lock, and callers that name a store revision wait for it.

use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::Snapshot;

/// Holds the current snapshot. Readers never block; writers (reloads and admin
/// writes) are serialized by [`SnapshotStore::lock`] so read-modify-swap sequences
/// never lose each other's changes.
#[derive(Debug)]
pub struct SnapshotStore {
    current: ArcSwap<Snapshot>,
    writer: Mutex<()>,
    /// The store revision of the current snapshot, for callers that wait
    /// for one ([`SnapshotStore::at_least`]).
    store_revision: tokio::sync::watch::Sender<u64>,
    /// Rung when a caller waits for a newer store revision: the follower
    /// catches up at once rather than at its next poll.
    wanted: tokio::sync::Notify,
    /// Whether a follower of the shared store keeps it current
    /// ([`Self::following`]); else the file store, whose every revision is in
    /// effect.
    follows: bool,
}

/// A wait for a store revision that ran out: the replica is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behind {
    pub wanted: u64,
    pub have: u64,
    pub waited: std::time::Duration,
}

/// Proof that the caller holds the writer lock; needed to swap.
pub struct WriteGuard<'a> {
    store: &'a SnapshotStore,
    _guard: MutexGuard<'a, ()>,
}

impl WriteGuard<'_> {
    pub fn current(&self) -> Arc<Snapshot> {
        self.store.current.load_full()
    }

    /// Publish `next` if it differs from the current revision. Returns whether it did.
    pub fn publish(&self, next: Snapshot) -> bool {
        let changed = next.revision() != self.store.current.load().revision();
        let store_revision = next.store_revision;
        // Swap even when the revision is equal: the content is the same, but the
        // slices may now share structure with what the caller read.
        self.store.current.store(Arc::new(next));
        self.store.store_revision.send_if_modified(|r| {
            let moved = *r != store_revision;
            *r = store_revision;
            moved
        });
        changed
    }
}

impl SnapshotStore {
    pub fn new(initial: Snapshot) -> Self {
        Self {
            store_revision: tokio::sync::watch::Sender::new(initial.store_revision),
            current: ArcSwap::from_pointee(initial),
            writer: Mutex::new(()),
            wanted: tokio::sync::Notify::new(),
            follows: false,
        }
    }

    /// A snapshot store a follower of the shared store keeps current: a
    /// minimum revision is waited for ([`Self::at_least`]).
    pub fn following(initial: Snapshot) -> Self {
        Self {
            follows: true,
            ..Self::new(initial)
        }
    }

    /// The snapshot to decide with. Cheap; never blocks.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// A snapshot at store revision `min` or later, waiting up to `within`
    /// for this replica to catch up (asking its follower to, at once); or
    /// [`Behind`]. Never an older snapshot: a caller that names the revision
    /// of its own write must not be answered from before it.
    pub async fn at_least(
        &self,
        min: u64,
        within: std::time::Duration,
    ) -> Result<Arc<Snapshot>, Behind> {
        let snap = self.load();
        // The file store: one process per data directory publishes every
        // write before acknowledging it, and a restarted one loads them all
        // from the files, so whatever revision a caller names is in effect
        // (its count restarts at 0 with the process).
        if !self.follows || snap.store_revision >= min {
            return Ok(snap);
        }
        let started = std::time::Instant::now();
        self.wanted.notify_one();
        let mut rx = self.store_revision.subscribe();
        let reached = tokio::time::timeout(within, rx.wait_for(|r| *r >= min)).await;
        let snap = self.load();
        match reached {
            Ok(Ok(_)) if snap.store_revision >= min => Ok(snap),
            _ => Err(Behind {
                wanted: min,
                have: snap.store_revision,
                waited: started.elapsed(),
            }),
        }
    }

    /// Resolves when a caller waits for a store revision this replica does
    /// not have yet ([`SnapshotStore::at_least`]).
    pub async fn catch_up_wanted(&self) {
        self.wanted.notified().await;
    }

    /// Take the writer lock. A poisoned lock is recovered: the data it guards is
    /// the `ArcSwap`, which is always a whole snapshot.
    pub fn lock(&self) -> WriteGuard<'_> {
        let guard = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        WriteGuard {
            store: self,
            _guard: guard,
        }
    }
}
