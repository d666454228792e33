//! The write side: delegate, revoke, undo. Each change is authorized by the Cedar
//! admin policy, written to the owner's delegation file atomically and durably,
//! audited, and reflected in the snapshot before it is acknowledged.
//!
//! The files stay the source of truth: every write reads the owner's file from
//! disk first (so hand edits are kept), and a file that does not parse is never
//! overwritten. Writes to one owner are serialized by a per-owner lock (reading,
//! authorizing, building the change); the final check, file write and publish
//! of every write run under the snapshot writer lock, one at a time, so a policy
//! reload can never make a file being written invalid.

pub mod audit;
pub mod files;
pub mod undo;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::catalogue::Right;
use crate::engine;
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};
use crate::snapshot::load::{self, DELEGATION_TYPE, LoadError, ORG_TYPE, RIGHT_TYPE, owner_file};
use crate::snapshot::watch::Reloader;
use crate::snapshot::{DelegationRecord, FileStamp, OwnerDelegations, Snapshot};
use audit::{AuditLog, AuditRecord, Change};
use files::WriteError;
use undo::UndoRecord;

/// Why a write was refused or failed. Mapped to gRPC codes in `grpc::delegations`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The owner's file on disk does not load; it is left untouched.
    #[error("the delegation file on disk is invalid and was left untouched: {0}")]
    Corrupt(LoadError),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    /// The owner's file changed on disk between reading it and writing it (a
    /// hand edit); nothing was written, so the edit is kept.
    #[error("{0}")]
    Aborted(String),
    /// The change took effect, but something after it failed (durability,
    /// audit); the message says what, and carries the undo token if any.
    #[error("{0}")]
    InEffect(String),
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

/// A change that is in effect. `not_durable` is set when it could not be made
/// durable: it must still be audited, and the caller told.
#[must_use]
struct Committed {
    not_durable: Option<std::io::Error>,
}

impl Committed {
    /// Report a change that is in effect: fine, or what went wrong after it took
    /// effect (not durable, not audited), so the caller is never told that
    /// nothing happened. A revocation's undo token is in the message.
    fn finish(
        self,
        audit: std::io::Result<()>,
        token: Option<&UndoToken>,
    ) -> Result<(), StoreError> {
        let mut problems = Vec::new();
        if let Some(e) = self.not_durable {
            problems.push(format!(
                "it could not be made durable and may not survive a crash ({e})"
            ));
        }
        if let Err(e) = audit {
            problems.push(format!("its audit line could not be written ({e})"));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let mut msg = format!("the change is in effect, but {}", problems.join(", and "));
        if let Some(t) = token {
            msg.push_str(&format!("; its undo token is {t}"));
        }
        Err(StoreError::InEffect(msg))
    }
}

/// One owner's entries, by supplier.
type Entries = std::collections::BTreeMap<OrgNumber, Entry>;

/// The admin store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct DelegationStore {
    reloader: Arc<Reloader>,
    audit: AuditLog,
    undo_window: Duration,
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

fn ids(rights: &BTreeSet<RightId>) -> Vec<String> {
    rights.iter().map(|r| r.to_string()).collect()
}

/// One supplier's entry as it will be written.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    rights: BTreeSet<RightId>,
    delegated_by: String,
    created_at: String,
    updated_at: String,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl From<&DelegationRecord> for Entry {
    fn from(r: &DelegationRecord) -> Self {
        Self {
            rights: r.rights.clone(),
            delegated_by: r.delegated_by.clone(),
            created_at: r.created_at.clone(),
            updated_at: r.updated_at.clone(),
            extra: r.extra_attrs.clone(),
        }
    }
}

/// Add `rights` to `supplier`'s entry (created with `created_at` if new), as
/// granted by `actor` at `time`. Returns the rights held before and after.
fn grant(
    entries: &mut Entries,
    supplier: OrgNumber,
    rights: BTreeSet<RightId>,
    actor: &PersonId,
    time: &str,
    created_at: &str,
) -> (BTreeSet<RightId>, BTreeSet<RightId>) {
    let entry = entries.entry(supplier).or_insert_with(|| Entry {
        rights: BTreeSet::new(),
        delegated_by: String::new(),
        created_at: created_at.to_string(),
        updated_at: String::new(),
        extra: serde_json::Map::new(),
    });
    let before = entry.rights.clone();
    entry.rights.extend(rights);
    entry.delegated_by = actor.to_string();
    entry.updated_at = time.to_string();
    (before, entry.rights.clone())
}

/// One supplier's Cedar JSON entity, as the owner's file holds it.
fn entity_json(owner: &OrgNumber, supplier: &OrgNumber, e: &Entry) -> serde_json::Value {
    let org = |o: &OrgNumber| json!({ "type": ORG_TYPE, "id": o.as_str() });
    let mut attrs = e.extra.clone();
    attrs.insert("owner".into(), org(owner));
    attrs.insert("supplier".into(), org(supplier));
    attrs.insert(
        "rights".into(),
        e.rights
            .iter()
            .map(|r| json!({ "type": RIGHT_TYPE, "id": r.as_str() }))
            .collect(),
    );
    attrs.insert("delegatedBy".into(), e.delegated_by.clone().into());
    attrs.insert("createdAt".into(), e.created_at.clone().into());
    attrs.insert("updatedAt".into(), e.updated_at.clone().into());
    json!({
        "uid": { "type": DELEGATION_TYPE, "id": format!("{owner}/{supplier}") },
        "attrs": attrs,
        "parents": [],
    })
}

/// Render an owner's file: Cedar JSON entities, one per supplier, sorted.
fn render(owner: &OrgNumber, entries: &Entries) -> std::io::Result<Vec<u8>> {
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|(supplier, e)| entity_json(owner, supplier, e))
        .collect();
    // Never a fallback rendering here: writing anything but the entries would
    // lose delegations.
    let mut bytes = serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

impl DelegationStore {
    pub fn open(reloader: Arc<Reloader>, undo_window: Duration) -> std::io::Result<Self> {
        let audit = AuditLog::open(&reloader.data_dir)?;
        std::fs::create_dir_all(reloader.data_dir.join(undo::UNDO_DIR))?;
        files::sync_dir(&reloader.data_dir)?;
        Ok(Self {
            reloader,
            audit,
            undo_window,
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.reloader.data_dir
    }

    /// Remove undo records that expired more than [`undo::RETENTION`] ago.
    pub fn prune_undo_records(&self) -> std::io::Result<undo::Pruned> {
        undo::prune(self.data_dir(), now() - undo::RETENTION)
    }

    pub fn audit_path(&self) -> PathBuf {
        self.audit.path().to_path_buf()
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

    /// Refuse unless the admin policy lets `actor` act for `owner`.
    fn authorize(&self, actor: &PersonId, owner: &OrgNumber) -> Result<(), StoreError> {
        let snap = self.snapshot();
        let verdict = engine::may_administer(&snap, actor, owner);
        if verdict.decision.allowed {
            return Ok(());
        }
        let held = if verdict.roles.is_empty() {
            "none".to_string()
        } else {
            verdict.roles.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        let required: Vec<&str> = snap
            .policies
            .policies
            .policies()
            .filter_map(|p| p.annotation("requires"))
            .collect();
        let required = if required.is_empty() {
            "a role the admin policy accepts".to_string()
        } else {
            required.join(" or ")
        };
        let mut msg = format!(
            "actor `{actor}` may not administer delegations for {owner}: missing role: {required} \
             for {owner} (roles held for {owner}: {held})"
        );
        if !verdict.decision.errors.is_empty() {
            msg.push_str(&format!(
                "; policy errors: {}",
                verdict.decision.errors.join("; ")
            ));
        }
        Err(StoreError::PermissionDenied(msg))
    }

    /// Check right ids against the catalogue.
    fn known_rights(&self, rights: &[RightId]) -> Result<BTreeSet<RightId>, StoreError> {
        let snap = self.snapshot();
        let catalogue = &snap.policies.catalogue;
        for r in rights {
            if catalogue.get(r).is_none() {
                return Err(StoreError::InvalidArgument(format!(
                    "`rights`: unknown right `{r}`; known rights: {}",
                    catalogue.known_ids()
                )));
            }
        }
        Ok(rights.iter().cloned().collect())
    }

    /// The owner's current entries, read from disk, with the stamp of the file
    /// read (`None`: no file), which `commit` checks to keep concurrent hand edits.
    fn read_owner(&self, owner: &OrgNumber) -> Result<(Entries, Option<FileStamp>), StoreError> {
        let snap = self.snapshot();
        let known = snap.owners.get(owner).map(Arc::as_ref);
        let slice = load::load_owner_file(self.data_dir(), owner, &snap.policies, known)
            .map_err(StoreError::Corrupt)?;
        let stamp = slice.as_ref().and_then(|s| s.stamp);
        let entries = slice
            .map(|s| {
                s.by_supplier
                    .iter()
                    .map(|(k, v)| (*k, Entry::from(v.as_ref())))
                    .collect()
            })
            .unwrap_or_default();
        Ok((entries, stamp))
    }

    /// Write the owner's entries durably and publish them to the snapshot.
    fn commit(
        &self,
        owner: &OrgNumber,
        entries: &Entries,
        read: Option<FileStamp>,
    ) -> Result<Committed, StoreError> {
        let path = owner_file(self.data_dir(), owner);
        // Under the snapshot writer lock from check to publish: a policy reload
        // cannot slip in between and make what we write invalid.
        let w = self.reloader.store.lock();
        let cur = w.current();
        // A hand edit since `read_owner` would be overwritten: refuse instead.
        let on_disk = FileStamp::of_path(&path);
        if on_disk != read {
            return Err(StoreError::Aborted(format!(
                "the delegations file of {owner} changed on disk during this write; \
                 nothing was written; try again"
            )));
        }
        let mut not_durable = None;
        let mut check = |r: Result<(), WriteError>| match r {
            Ok(()) => Ok(()),
            Err(WriteError::NotApplied(e)) => Err(StoreError::Io(e)),
            // In place but perhaps not durable: publish what readers of the file
            // already see, and let the caller say so.
            Err(WriteError::NotDurable(e)) => {
                not_durable = Some(e);
                Ok(())
            }
        };
        let slice = if entries.is_empty() {
            check(files::remove_durable(&path))?;
            None
        } else {
            // What is written must load, so a write never leaves a file that the
            // next start-up refuses. Entries equal to a record already in the
            // snapshot (parsed against these policies) are reused; only the changed
            // ones are checked, so a write does not re-parse the whole file.
            let known = cur.owners.get(owner);
            let mut by_supplier = std::collections::BTreeMap::new();
            let mut changed = Vec::new();
            for (supplier, entry) in entries {
                match known.and_then(|k| k.by_supplier.get(supplier)) {
                    Some(r) if Entry::from(r.as_ref()) == *entry => {
                        by_supplier.insert(*supplier, r.clone());
                    }
                    _ => changed.push(entity_json(owner, supplier, entry)),
                }
            }
            let shown = path.display().to_string();
            let fresh = load::parse_delegations(&shown, owner, changed.into(), &cur.policies)
                .map_err(|e| {
                    StoreError::FailedPrecondition(format!(
                        "the change does not fit the current policies; nothing was written: {e}"
                    ))
                })?;
            by_supplier.extend(fresh);
            let bytes = render(owner, entries)?;
            let mut stamp = None;
            check(files::write_atomic(&path, &bytes).map(|meta| {
                // The stamp the watcher will see, so its reload of this file is a no-op.
                stamp = Some(FileStamp::of(&meta));
            }))?;
            Some(Arc::new(OwnerDelegations {
                by_supplier,
                digest: load::owner_digest(owner, &bytes),
                stamp,
            }))
        };
        // Read-your-writes: publish before acknowledging.
        w.publish(cur.with_owner(*owner, slice));
        Ok(Committed { not_durable })
    }

    /// Append the audit line for a change that is already durable.
    #[allow(clippy::too_many_arguments)] // one line of the audit record each
    fn audit_change(
        &self,
        time: String,
        actor: &PersonId,
        owner: OrgNumber,
        supplier: OrgNumber,
        change: Change,
        before: &BTreeSet<RightId>,
        after: &BTreeSet<RightId>,
        undo_token: Option<&UndoToken>,
    ) -> std::io::Result<()> {
        self.audit.append(&AuditRecord {
            time,
            actor: actor.to_string(),
            owner: owner.to_string(),
            supplier: supplier.to_string(),
            change,
            rights_before: ids(before),
            rights_after: ids(after),
            undo_token: undo_token.map(UndoToken::to_string),
        })
    }

    fn view(&self, owner: &OrgNumber, supplier: &OrgNumber) -> DelegationView {
        let snap = self.snapshot();
        snap.delegation(owner, supplier)
            .map(|r| DelegationView::of(&snap, r))
            .unwrap_or_else(|| DelegationView::empty(*owner, *supplier))
    }

    fn check_pair(owner: &OrgNumber, supplier: &OrgNumber) -> Result<(), StoreError> {
        if owner == supplier {
            return Err(StoreError::InvalidArgument(format!(
                "`supplier` must differ from `owner` (both are {owner})"
            )));
        }
        Ok(())
    }

    /// Give `supplier` the `rights` (added to what it holds).
    pub fn delegate(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: &[RightId],
        actor: &PersonId,
    ) -> Result<DelegationView, StoreError> {
        Self::check_pair(&owner, &supplier)?;
        if rights.is_empty() {
            return Err(StoreError::InvalidArgument(format!(
                "`rights` is empty: name at least one of {}",
                self.snapshot().policies.catalogue.known_ids()
            )));
        }
        let rights = self.known_rights(rights)?;
        let lock = self.owner_lock(&owner);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.authorize(actor, &owner)?;

        let (mut entries, read) = self.read_owner(&owner)?;
        let t = rfc3339(now());
        let (before, after) = grant(&mut entries, supplier, rights, actor, &t, &t);
        let committed = self.commit(&owner, &entries, read)?;
        let change = Change::Grant;
        let audit = self.audit_change(t, actor, owner, supplier, change, &before, &after, None);
        committed.finish(audit, None)?;
        Ok(self.view(&owner, &supplier))
    }

    /// Take `rights` (all, when empty) from `supplier`. Returns an undo token.
    pub fn revoke(
        &self,
        owner: OrgNumber,
        supplier: OrgNumber,
        rights: &[RightId],
        actor: &PersonId,
    ) -> Result<Revoked, StoreError> {
        Self::check_pair(&owner, &supplier)?;
        let requested = self.known_rights(rights)?;
        let lock = self.owner_lock(&owner);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.authorize(actor, &owner)?;

        let (mut entries, read) = self.read_owner(&owner)?;
        let Some(entry) = entries.get_mut(&supplier) else {
            return Err(StoreError::NotFound(format!(
                "{owner} has delegated nothing to {supplier}"
            )));
        };
        let before = entry.rights.clone();
        let removed: BTreeSet<RightId> = if requested.is_empty() {
            before.clone()
        } else {
            let missing: Vec<String> = requested
                .difference(&before)
                .map(|r| format!("`{r}`"))
                .collect();
            if !missing.is_empty() {
                return Err(StoreError::NotFound(format!(
                    "{} not delegated by {owner} to {supplier} (held: {})",
                    missing.join(", "),
                    ids(&before).join(", ")
                )));
            }
            requested
        };
        let created_at = entry.created_at.clone();
        entry.rights.retain(|r| !removed.contains(r));
        let t = now();
        let after = entry.rights.clone();
        if after.is_empty() {
            entries.remove(&supplier);
        } else {
            entry.updated_at = rfc3339(t);
        }
        let token = UndoToken::generate()?;
        let expires = time::Duration::try_from(self.undo_window)
            .ok()
            .and_then(|w| t.checked_add(w))
            .ok_or_else(|| std::io::Error::other("the undo window is out of range"))?;
        // The undo record is durable before the revocation, so an acknowledged
        // revocation always has a working token.
        undo::save(
            self.data_dir(),
            &token,
            &UndoRecord {
                owner: owner.to_string(),
                supplier: supplier.to_string(),
                rights: ids(&removed),
                created_at,
                revoked_by: actor.to_string(),
                revoked_at: rfc3339(t),
                expires_at: rfc3339(expires),
                used_at: None,
                used_by: None,
            },
        )
        .map_err(|e| StoreError::Io(e.into()))?;
        let committed = self.commit(&owner, &entries, read)?;
        let change = if after.is_empty() {
            Change::RevokeLast
        } else {
            Change::Revoke
        };
        let (time, tok) = (rfc3339(t), Some(&token));
        let audit = self.audit_change(time, actor, owner, supplier, change, &before, &after, tok);
        committed.finish(audit, Some(&token))?;
        Ok(Revoked {
            remaining: self.view(&owner, &supplier),
            undo_token: token,
            undo_expires_at: rfc3339(expires),
        })
    }

    /// Restore exactly what the revocation behind `token` removed, once.
    pub fn undo(&self, token: &UndoToken, actor: &PersonId) -> Result<DelegationView, StoreError> {
        let peek = undo::load(self.data_dir(), token)?;
        let (owner, supplier) = peek.pair()?;
        let lock = self.owner_lock(&owner);
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.authorize(actor, &owner)?;
        // Re-read under the lock: a concurrent undo of the same token may have won.
        let mut record = undo::load(self.data_dir(), token)?;
        if let Some(used) = &record.used_at {
            return Err(StoreError::FailedPrecondition(format!(
                "undo token was already used at {used} by {}",
                record.used_by.as_deref().unwrap_or("?")
            )));
        }
        let t = now();
        let expired = record.expiry().is_none_or(|e| e <= t);
        if expired {
            return Err(StoreError::FailedPrecondition(format!(
                "undo token expired at {}",
                record.expires_at
            )));
        }
        let restored: BTreeSet<RightId> = record
            .rights
            .iter()
            .filter_map(|r| RightId::parse(r).ok())
            .collect();
        // Rights since removed from the catalogue cannot come back.
        let snap = self.snapshot();
        let restored: BTreeSet<RightId> = restored
            .into_iter()
            .filter(|r| snap.policies.catalogue.get(r).is_some())
            .collect();
        if restored.is_empty() {
            return Err(StoreError::FailedPrecondition(format!(
                "nothing to restore: the revoked rights ({}) are no longer in the catalogue",
                record.rights.join(", ")
            )));
        }
        let (mut entries, read) = self.read_owner(&owner)?;
        let stamp = rfc3339(t);
        let created_at = record.created_at.clone();
        let (before, after) = grant(&mut entries, supplier, restored, actor, &stamp, &created_at);
        // Mark the token used before restoring: a crash in between loses the undo
        // (the owner can delegate again) rather than allowing it twice.
        record.used_at = Some(stamp.clone());
        record.used_by = Some(actor.to_string());
        // Gives the token back when nothing was restored, so the undo can be retried.
        let release = |mut record: UndoRecord| {
            record.used_at = None;
            record.used_by = None;
            if let Err(e) = undo::save(self.data_dir(), token, &record) {
                tracing::error!(error = %e, "could not release an undo token after a failed undo");
            }
        };
        match undo::save(self.data_dir(), token, &record) {
            Ok(()) => {}
            Err(WriteError::NotApplied(e)) => return Err(StoreError::Io(e)),
            // The mark is visible but may not survive a crash: restoring now
            // could let the token work twice after one. Nothing restored yet.
            Err(e @ WriteError::NotDurable(_)) => {
                release(record);
                return Err(StoreError::Io(e.into()));
            }
        }
        // Only a commit that changed nothing on disk gives the token back.
        let committed = match self.commit(&owner, &entries, read) {
            Ok(c) => c,
            Err(e) => {
                release(record);
                return Err(e);
            }
        };
        let change = Change::Undo;
        let tok = Some(token);
        let audit = self.audit_change(stamp, actor, owner, supplier, change, &before, &after, tok);
        committed.finish(audit, None)?;
        Ok(self.view(&owner, &supplier))
    }

    /// The overview: delegations given by `owner`, received by `supplier`, or both.
    pub fn list(
        &self,
        owner: Option<OrgNumber>,
        supplier: Option<OrgNumber>,
    ) -> Vec<DelegationView> {
        let snap = self.snapshot();
        let mut out: Vec<DelegationView> = match owner {
            Some(o) => snap
                .owners
                .get(&o)
                .map(|s| {
                    s.by_supplier
                        .values()
                        .map(|r| DelegationView::of(&snap, r))
                        .collect()
                })
                .unwrap_or_default(),
            None => snap
                .owners
                .values()
                .flat_map(|s| s.by_supplier.values())
                .map(|r| DelegationView::of(&snap, r))
                .collect(),
        };
        if let Some(s) = supplier {
            out.retain(|d| d.supplier == s);
        }
        out.sort_by_key(|d| (d.owner, d.supplier));
        out
    }
}
