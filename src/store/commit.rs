//! The commit protocol for one owner's file: read it from disk (so hand edits
//! are kept), and later, under the snapshot writer lock, check that it has not
//! changed since, check what changes against the policies in force, write it
//! durably (or remove it), and publish the owner's new slice. Then the audit
//! line. This module does no policy checks of the actor (see `authorize`), and
//! decides nothing about what a write changes (see `ops`).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::audit::{AuditRecord, Change};
use super::entries::{self, Entries, Entry, ids};
use super::files::{Place, WriteError};
use super::{DelegationStore, StoreError};
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};
use crate::snapshot::load::{self, owner_file};
use crate::snapshot::{FileStamp, OwnerDelegations};

/// A change that is in effect. `not_durable` is set when it could not be made
/// durable: it must still be audited, and the caller told.
#[must_use]
pub(super) struct Committed {
    not_durable: Option<std::io::Error>,
}

impl Committed {
    /// Report a change that is in effect: fine, or what went wrong after it took
    /// effect (not durable, not audited), so the caller is never told that
    /// nothing happened. A revocation's undo token goes with it.
    pub(super) fn finish(
        self,
        audit: std::io::Result<()>,
        token: Option<&UndoToken>,
    ) -> Result<(), StoreError> {
        let audit = audit.err();
        if self.not_durable.is_none() && audit.is_none() {
            return Ok(());
        }
        Err(StoreError::InEffect {
            not_durable: self.not_durable,
            audit,
            undo_token: token.cloned(),
        })
    }
}

/// The owner file's name in `delegations/`. Takes an `OrgNumber`, so only a
/// parsed org number reaches the file system.
fn file_name(owner: &OrgNumber) -> String {
    format!("{owner}.json")
}

impl DelegationStore {
    /// The owner's current entries, read from disk, with the stamp of the file
    /// read (`None`: no file), which `commit` checks to keep concurrent hand edits.
    pub(super) fn read_owner(
        &self,
        owner: &OrgNumber,
    ) -> Result<(Entries, Option<FileStamp>), StoreError> {
        let snap = self.snapshot();
        let known = snap.owners.get(owner).map(Arc::as_ref);
        let slice = load::load_owner_file(self.data_dir(), owner, &snap.policies, known)
            .map_err(StoreError::CorruptFile)?;
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
    pub(super) fn commit(
        &self,
        owner: &OrgNumber,
        entries: &Entries,
        read: Option<FileStamp>,
    ) -> Result<Committed, StoreError> {
        let path = owner_file(self.data_dir(), owner);
        let name = file_name(owner);
        // Under the snapshot writer lock from check to publish: a policy reload
        // cannot slip in between and make what we write invalid.
        let w = self.reloader.store.lock();
        let cur = w.current();
        // A hand edit since `read_owner` would be overwritten: refuse instead.
        if FileStamp::of_path(&path) != read {
            return Err(StoreError::ConcurrentEdit { owner: *owner });
        }
        let mut not_durable = None;
        let mut check = |r: Result<(), WriteError>| match r {
            Ok(()) => Ok(()),
            Err(WriteError::NotApplied(e)) => Err(StoreError::from(e)),
            // In place but perhaps not durable: publish what readers of the file
            // already see, and let the caller say so.
            Err(WriteError::NotDurable(e)) => {
                not_durable = Some(e);
                Ok(())
            }
        };
        let slice = if entries.is_empty() {
            check(self.files.remove_durable(Place::Delegations, &name))?;
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
                    _ => changed.push(entries::entity_json(owner, supplier, entry)),
                }
            }
            let shown = path.display().to_string();
            let fresh = load::parse_delegations(&shown, owner, changed.into(), &cur.policies)
                .map_err(StoreError::DoesNotFitPolicies)?;
            by_supplier.extend(fresh);
            let bytes = entries::render(owner, entries)?;
            let mut stamp = None;
            check(
                self.files
                    .write_atomic(Place::Delegations, &name, &bytes)
                    .map(|meta| {
                        // The stamp the watcher will see, so its reload of this file is a no-op.
                        stamp = Some(FileStamp::of(&meta));
                    }),
            )?;
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

    /// Append the audit line for a change that is already in effect.
    #[allow(clippy::too_many_arguments)] // one line of the audit record each
    pub(super) fn audit_change(
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
}
