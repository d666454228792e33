//! The file backend: delegations in the data directory's files, the
//! source of truth (hand edits are kept; a file that does not parse is never
//! overwritten). `ops` says what each write changes, `commit` how a file is
//! written and published, `undo` and `audit` keep their own files.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::audit::{Actor, AuditLog, RefusalRecord};
use super::files::{DataDir, Place};
use super::oplog::OpLog;
use super::{Backend, DelegationView, Revoked, StoreError, Written, now, undo};
use crate::ids::{OrgNumber, RightId, UndoToken};
use crate::snapshot::{Snapshot, SnapshotStore};

/// The file backend. Each write publishes the owner's new slice with the
/// next store revision (counted from 0 at start: the files have none).
#[derive(Debug)]
pub struct FileStore {
    /// The snapshot store to publish to.
    pub(super) snapshots: Arc<SnapshotStore>,
    data_dir: PathBuf,
    /// Every file operation goes through it (no-follow, recorded when asked).
    pub(super) files: Arc<DataDir>,
    pub(super) audit: AuditLog,
    pub(super) undo_window: Duration,
    /// One lock per owner ever written: serializes read-modify-write per owner.
    locks: Mutex<HashMap<OrgNumber, Arc<Mutex<()>>>>,
}

impl FileStore {
    /// Open the data directory for writing. Call it only while no other writer
    /// can run (`serve` holds the data directory lock): it removes the temp
    /// files that writes interrupted by a crash left behind.
    pub fn open(
        snapshots: Arc<SnapshotStore>,
        data_dir: PathBuf,
        undo_window: Duration,
    ) -> std::io::Result<Self> {
        let files = Arc::new(DataDir::open(&data_dir)?);
        // Also creates `delegations/` and `undo/` (durably) when missing.
        // Split owners' directories hold parts written the same way.
        let owners = crate::snapshot::load::list_owner_files(&data_dir)
            .map(|(owners, _)| owners)
            .unwrap_or_default()
            .into_iter()
            .filter(|o| crate::snapshot::load::owner_dir(&data_dir, o).is_dir())
            .map(Place::Owner);
        for place in [Place::Delegations, Place::Undo].into_iter().chain(owners) {
            let removed = files.sweep_temp_files(place)?;
            let dir = files.dir_shown(place);
            if removed > 0 {
                tracing::info!(removed, dir = %dir.display(), "removed temp files of interrupted writes");
            } else {
                tracing::debug!(dir = %dir.display(), "no temp files of interrupted writes");
            }
        }
        let audit = AuditLog::open(files.clone())?;
        Ok(Self {
            snapshots,
            data_dir,
            files,
            audit,
            undo_window,
            locks: Mutex::new(HashMap::new()),
        })
    }

    /// Record every file operation from now on into `log`, with an
    /// [`oplog::Op::Ack`] each time a write returns `Ok`: for tests that hold
    /// the writes against the commit protocol. Only the first log attached is used.
    pub fn record_ops(&self, log: Arc<OpLog>) {
        self.files.record_into(log);
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the audit log is.
    pub fn audit_path(&self) -> PathBuf {
        self.audit.path()
    }

    pub(super) fn owner_lock(&self, owner: &OrgNumber) -> Arc<Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(*owner).or_default().clone()
    }

    pub(super) fn view(&self, owner: &OrgNumber, supplier: &OrgNumber) -> DelegationView {
        let snap = self.snapshots.load();
        snap.delegation(owner, supplier)
            .map(|r| DelegationView::of(&snap, r))
            .unwrap_or_else(|| DelegationView::empty(*owner, *supplier))
    }
}

impl Backend for FileStore {
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
        FileStore::delegate(self, owner, supplier, rights, by)
    }

    fn revoke(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: BTreeSet<RightId>,
        by: Actor<'_>,
    ) -> Result<Written<Revoked>, StoreError> {
        FileStore::revoke(self, owner, supplier, rights, by)
    }

    fn undo(
        &self,
        token: &UndoToken,
        by: Actor<'_>,
    ) -> Result<Written<DelegationView>, StoreError> {
        FileStore::undo(self, token, by)
    }

    fn record_refusal(&self, record: &RefusalRecord) -> Result<(), StoreError> {
        Ok(self.audit.append_refusal(record)?)
    }

    fn prune(&self) -> Result<(), StoreError> {
        let pruned = undo::prune(&self.files, now() - undo::RETENTION)?;
        if pruned.removed > 0 {
            tracing::info!(removed = pruned.removed, "pruned expired undo records");
        }
        for path in pruned.unreadable {
            tracing::warn!(file = %path.display(), "undo record unreadable; kept");
        }
        Ok(())
    }

    fn as_files(&self) -> Option<&FileStore> {
        Some(self)
    }
}
