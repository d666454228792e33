//! The admin store: delegate, revoke, undo, and the paged overview. Each change
//! is authorized by the Cedar admin policy, written to the owner's delegation
//! file atomically and durably, audited, and reflected in the snapshot before
//! it is acknowledged.
//!
//! The files stay the source of truth: every write reads the owner's file from
//! disk first (so hand edits are kept), and a file that does not parse is never
//! overwritten. Writes to one owner are serialized by a per-owner lock (reading,
//! authorizing, building the change); the final check, file write and publish
//! of every write run under the snapshot writer lock, one at a time, so a policy
//! reload can never make a file being written invalid.
//!
//! Layout:
//! - `ops`: what delegate, revoke and undo change, in what order;
//! - `authorize`: who may write (admin policy; none while `roles.json` is broken);
//! - `commit`: read an owner's file, then check, write durably and publish it;
//! - `entries`: an owner's entries and their rendering as Cedar entity JSON;
//! - `list`: the read side, delegations in order from a position (paging);
//! - [`audit`], [`undo`]: the audit log and the undo records;
//! - [`files`]: every file operation, relative to no-follow directory handles;
//! - [`oplog`]: the optional record of those operations, for protocol tests;
//! - `error`: [`StoreError`], what went wrong in the store's own terms.

pub mod audit;
mod authorize;
mod commit;
mod entries;
mod error;
pub mod files;
mod list;
pub mod oplog;
mod ops;
pub mod pg;
pub mod undo;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::catalogue::Right;
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};
use crate::snapshot::reload::Reloader;
use crate::snapshot::{DelegationRecord, Snapshot};
use audit::{AuditLog, RefusalGate, RefusalRecord};
use authorize::{authorize, roles_usable};
pub use error::StoreError;
use files::{DataDir, Place};
pub use list::{ListFilter, Position};
use oplog::OpLog;

/// Who a listing is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader<'a> {
    /// Everything: development mode, where nobody is verified.
    All,
    /// A verified person: only the owners they may administer.
    Person(&'a PersonId),
}

/// A delegation as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationView {
    pub owner: OrgNumber,
    pub supplier: OrgNumber,
    pub rights: Vec<RightId>,
    pub scopes: Vec<String>,
    pub delegated_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl DelegationView {
    fn of(snap: &Snapshot, r: &DelegationRecord) -> Self {
        Self {
            owner: r.owner,
            supplier: r.supplier,
            rights: r.rights.iter().cloned().collect(),
            scopes: snap.policies.catalogue.scopes_of(&r.rights),
            delegated_by: r.delegated_by.clone(),
            created_at: r.created_at.clone(),
            updated_at: r.updated_at.clone(),
        }
    }

    /// What remains after the last right is gone: the pair, with nothing held.
    fn empty(owner: OrgNumber, supplier: OrgNumber) -> Self {
        Self {
            owner,
            supplier,
            rights: Vec::new(),
            scopes: Vec::new(),
            delegated_by: String::new(),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }
}

/// The result of a revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub remaining: DelegationView,
    pub undo_token: UndoToken,
    pub undo_expires_at: String,
}

/// The admin store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct DelegationStore {
    /// The snapshot store to publish to, and where the data directory is.
    reloader: Arc<Reloader>,
    /// Every file operation goes through it (no-follow, recorded when asked).
    files: Arc<DataDir>,
    audit: AuditLog,
    /// How many refused calls are written to the audit log: of callers
    /// verified (or in development mode), and of callers nobody verified.
    refusals: RefusalGate,
    anonymous_refusals: RefusalGate,
    undo_window: Duration,
    /// One lock per owner ever written: serializes read-modify-write per owner.
    locks: Mutex<HashMap<OrgNumber, Arc<Mutex<()>>>>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl DelegationStore {
    /// Open the data directory for writing. Call it only while no other writer
    /// can run (`serve` holds the data directory lock): it removes the temp
    /// files that writes interrupted by a crash left behind.
    pub fn open(reloader: Arc<Reloader>, undo_window: Duration) -> std::io::Result<Self> {
        let files = Arc::new(DataDir::open(&reloader.data_dir)?);
        // Also creates `delegations/` and `undo/` (durably) when missing.
        // Split owners' directories hold parts written the same way.
        let owners = crate::snapshot::load::list_owner_files(&reloader.data_dir)
            .map(|(owners, _)| owners)
            .unwrap_or_default()
            .into_iter()
            .filter(|o| crate::snapshot::load::owner_dir(&reloader.data_dir, o).is_dir())
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
            reloader,
            files,
            audit,
            refusals: RefusalGate::new(RefusalGate::BURST, RefusalGate::PER_SECOND),
            anonymous_refusals: RefusalGate::new(
                RefusalGate::ANONYMOUS_BURST,
                RefusalGate::ANONYMOUS_PER_SECOND,
            ),
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
        &self.reloader.data_dir
    }

    /// Remove undo records that expired more than [`undo::RETENTION`] ago.
    pub fn prune_undo_records(&self) -> std::io::Result<undo::Pruned> {
        undo::prune(&self.files, now() - undo::RETENTION)
    }

    /// Whether a refused call may be written to the audit log now
    /// (`Some(n)`: yes, after `n` that were not), or comes faster than
    /// [`RefusalGate`] lets through (`None`). Cheap, so a flood of refused
    /// calls is turned away before any file work.
    pub fn admit_refusal(&self, anonymous: bool) -> Option<u64> {
        if anonymous {
            self.anonymous_refusals.admit()
        } else {
            self.refusals.admit()
        }
    }

    /// Write a refused call to the audit log, durably. Blocking.
    pub fn record_refusal(&self, record: &RefusalRecord) -> std::io::Result<()> {
        self.audit.append_refusal(record)
    }

    /// The current time as the audit log writes it.
    pub fn now_rfc3339() -> String {
        rfc3339(now())
    }

    pub fn audit_path(&self) -> PathBuf {
        self.audit.path()
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.reloader.store.load()
    }

    /// The rights catalogue.
    pub fn rights(&self) -> Vec<Right> {
        self.snapshot().policies.catalogue.rights().to_vec()
    }

    fn owner_lock(&self, owner: &OrgNumber) -> Arc<Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(*owner).or_default().clone()
    }

    fn view(&self, owner: &OrgNumber, supplier: &OrgNumber) -> DelegationView {
        let snap = self.snapshot();
        snap.delegation(owner, supplier)
            .map(|r| DelegationView::of(&snap, r))
            .unwrap_or_else(|| DelegationView::empty(*owner, *supplier))
    }

    /// The overview, a page at a time: visit the delegations `filter`
    /// selects, in (owner, supplier) order, strictly after `after`, until
    /// `visit` breaks. One snapshot per call; the cost is in `list::scan`.
    ///
    /// A verified person ([`Reader::Person`]) sees only what the owners they
    /// may administer (the admin policy, as for a write) have delegated:
    /// naming another owner is [`StoreError::Forbidden`]. Without an owner,
    /// the walk covers the owners `roles.json` gives the person a role for
    /// and the policy lets them administer, one policy decision each, so its
    /// cost follows the person's roles, not the number of owners (a policy
    /// that lets someone without a role administer an owner is honoured
    /// when that owner is named).
    pub fn scan(
        &self,
        reader: Reader<'_>,
        filter: ListFilter,
        after: Option<Position>,
        mut visit: impl FnMut(DelegationView) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let snap = self.snapshot();
        let Reader::Person(person) = reader else {
            list::scan(&snap, filter, after, visit);
            return Ok(());
        };
        if let Some(owner) = &filter.owner {
            authorize(&snap, person, owner)?;
            list::scan(&snap, filter, after, visit);
            return Ok(());
        }
        roles_usable(&snap)?;
        let owners = snap.roles.orgs_of(person);
        let mut stopped = false;
        for owner in owners
            .into_iter()
            .filter(|o| after.is_none_or(|p| *o >= p.owner))
        {
            if !crate::engine::may_administer(&snap, person, &owner)
                .decision
                .allowed
            {
                continue;
            }
            let one = ListFilter {
                owner: Some(owner),
                ..filter
            };
            list::scan(&snap, one, after, |view| {
                let next = visit(view);
                stopped = next.is_break();
                next
            });
            if stopped {
                break;
            }
        }
        Ok(())
    }
}
