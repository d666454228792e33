//! The admin store: delegate, revoke, undo, and the paged overview, over one
//! of two backends behind [`Backend`]: the data directory's files
//! ([`file::FileStore`], the default) or a shared PostgreSQL database
//! ([`pg::PgStore`], for a fleet). What does not depend on where delegations
//! live is here, once: the request checks every write makes before it reaches
//! a backend, the refusal accounting, and the overview (read from the
//! in-memory snapshot either way).
//!
//! Each write is authorized by the Cedar admin policy, made durable, audited,
//! and reflected in this replica's snapshot before it is acknowledged; it
//! returns the store revision it made ([`Written`]).
//!
//! Layout:
//! - [`file`]: the file backend; `ops` (what each write changes, in what
//!   order), `commit` (read, check, write durably, publish one owner's file),
//!   [`files`] (every file operation, no-follow), [`oplog`] (the optional
//!   record of those, for protocol tests);
//! - [`pg`]: the PostgreSQL backend, its follower and its schema;
//! - `authorize`: who may write (admin policy; none while `roles.json` is broken);
//! - `entries`: an owner's entries and their rendering as Cedar entity JSON;
//! - `list`: the read side, delegations in order from a position (paging);
//! - [`audit`], [`undo`]: the audit log and the undo records;
//! - `error`: [`StoreError`] and its one classification, [`ErrorClass`].

pub mod audit;
mod authorize;
mod commit;
mod entries;
mod error;
pub mod file;
pub mod files;
mod list;
pub mod oplog;
mod ops;
pub mod pg;
pub mod undo;

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::catalogue::Right;
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};
use crate::snapshot::{DelegationRecord, Snapshot};
use audit::{Actor, RefusalGate, RefusalRecord};
use authorize::{authorize, roles_usable};
pub use error::{ErrorClass, Refused, StoreError};
pub use file::FileStore;
pub use list::{ListFilter, Position};

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

/// A write that took effect: what it returns, and the store revision it
/// made. A decision request that names this revision as its minimum
/// (`min_revision`) is answered from a snapshot that includes the write, on
/// any replica following the same store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written<T> {
    pub value: T,
    pub revision: u64,
}

/// Where delegations live. Implementations get requests [`DelegationStore`]
/// has already checked (owner ≠ supplier, rights in the catalogue, at least
/// one for a delegation) and do the rest: authorize the actor against the
/// state they hold, change it atomically, audit, and publish to the
/// snapshot. Blocking: call them off the async workers (`spawn_blocking`).
pub trait Backend: std::fmt::Debug + Send + Sync {
    /// The snapshot decisions and the overview read.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// Add `rights` to what `supplier` holds from `owner`.
    fn delegate(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: BTreeSet<RightId>,
        by: Actor<'_>,
    ) -> Result<Written<DelegationView>, StoreError>;
    /// Take `rights` (all, when empty) from `supplier`; returns an undo token.
    fn revoke(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: BTreeSet<RightId>,
        by: Actor<'_>,
    ) -> Result<Written<Revoked>, StoreError>;
    /// Restore exactly what the revocation behind `token` removed, once.
    fn undo(&self, token: &UndoToken, by: Actor<'_>)
    -> Result<Written<DelegationView>, StoreError>;
    /// Put a refused call on record in the audit log, durably.
    fn record_refusal(&self, record: &RefusalRecord) -> Result<(), StoreError>;
    /// Remove what has outlived its retention (expired undo records, old
    /// change-feed entries), logging what was removed.
    fn prune(&self) -> Result<(), StoreError>;
    /// The file backend, for tests that look at its files.
    fn as_files(&self) -> Option<&FileStore> {
        None
    }
}

/// The admin store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct DelegationStore {
    backend: Box<dyn Backend>,
    /// How many refused calls are written to the audit log: of callers
    /// verified (or in development mode), and of callers nobody verified.
    refusals: RefusalGate,
    anonymous_refusals: RefusalGate,
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
    /// The store over `backend`.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Self {
            backend: Box::new(backend),
            refusals: RefusalGate::new(RefusalGate::BURST, RefusalGate::PER_SECOND),
            anonymous_refusals: RefusalGate::new(
                RefusalGate::ANONYMOUS_BURST,
                RefusalGate::ANONYMOUS_PER_SECOND,
            ),
        }
    }

    /// The file backend, when that is the one in use.
    pub fn files(&self) -> Option<&FileStore> {
        self.backend.as_files()
    }

    /// Give `supplier` the `rights` (added to what it holds).
    pub fn delegate<'a>(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: &[RightId],
        by: impl Into<Actor<'a>>,
    ) -> Result<Written<DelegationView>, StoreError> {
        let rights = self.checked(&owner, &supplier, rights, true)?;
        self.backend.delegate(owner, supplier, rights, by.into())
    }

    /// Take `rights` (all, when empty) from `supplier`. Returns an undo token.
    pub fn revoke<'a>(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: &[RightId],
        by: impl Into<Actor<'a>>,
    ) -> Result<Written<Revoked>, StoreError> {
        let rights = self.checked(&owner, &supplier, rights, false)?;
        self.backend.revoke(owner, supplier, rights, by.into())
    }

    /// Restore exactly what the revocation behind `token` removed, once.
    pub fn undo<'a>(
        &self,
        token: &UndoToken,
        by: impl Into<Actor<'a>>,
    ) -> Result<Written<DelegationView>, StoreError> {
        self.backend.undo(token, by.into())
    }

    /// The checks every write makes before a backend sees it: two different
    /// parties, rights from the catalogue, at least one when `at_least_one`.
    fn checked(
        &self,
        owner: &OrgNumber,
        supplier: &OrgNumber,
        rights: &[RightId],
        at_least_one: bool,
    ) -> Result<BTreeSet<RightId>, StoreError> {
        if owner == supplier {
            return Err(StoreError::SameParty { org: *owner });
        }
        let snap = self.snapshot();
        let catalogue = &snap.policies.catalogue;
        if at_least_one && rights.is_empty() {
            return Err(StoreError::NoRights {
                known: catalogue.known_ids(),
            });
        }
        if let Some(r) = rights.iter().find(|r| catalogue.get(r).is_none()) {
            return Err(StoreError::UnknownRight {
                right: r.clone(),
                known: catalogue.known_ids(),
            });
        }
        Ok(rights.iter().cloned().collect())
    }

    /// Whether a refused call may be written to the audit log now
    /// (`Some(n)`: yes, after `n` that were not), or comes faster than
    /// [`RefusalGate`] lets through (`None`). Cheap, so a flood of refused
    /// calls is turned away before any storage work.
    pub fn admit_refusal(&self, anonymous: bool) -> Option<u64> {
        if anonymous {
            self.anonymous_refusals.admit()
        } else {
            self.refusals.admit()
        }
    }

    /// Write a refused call to the audit log, durably. Blocking.
    pub fn record_refusal(&self, record: &RefusalRecord) -> Result<(), StoreError> {
        self.backend.record_refusal(record)
    }

    /// Remove what has outlived its retention. Blocking.
    pub fn prune(&self) -> Result<(), StoreError> {
        self.backend.prune()
    }

    /// The current time as the audit log writes it.
    pub fn now_rfc3339() -> String {
        rfc3339(now())
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.backend.snapshot()
    }

    /// The rights catalogue.
    pub fn rights(&self) -> Vec<Right> {
        self.snapshot().policies.catalogue.rights().to_vec()
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
