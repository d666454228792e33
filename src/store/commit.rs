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
use crate::snapshot::load;
use crate::snapshot::{DelegationRecord, FileStamp, OwnerDelegations, OwnerFile};

/// The owner's single file's name in `delegations/`. Takes an `OrgNumber`, so
/// only a parsed org number reaches the file system.
fn file_name(owner: &OrgNumber) -> String {
    format!("{owner}.json")
}

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

/// What [`DelegationStore::read_owner`] read, which [`DelegationStore::commit`]
/// writes back if nothing changed it meanwhile.
#[derive(Debug)]
pub(super) enum Read {
    /// The single file `delegations/<owner>.json` (`None`: there was none);
    /// the entries are all the owner's.
    Whole(Option<FileStamp>),
    /// One part of a split owner (`None`: there was none); the entries are
    /// that part's only.
    Part {
        part: String,
        stamp: Option<FileStamp>,
    },
}

impl DelegationStore {
    /// The entries a write to `owner`'s delegation to `supplier` changes, read
    /// from disk (so hand edits are kept): all the owner's, or for a split
    /// owner those of the supplier's part, so a write to an owner with 100,000
    /// suppliers reads one small file. With the stamp of what was read, which
    /// `commit` checks to keep concurrent hand edits.
    pub(super) fn read_owner(
        &self,
        owner: &OrgNumber,
        supplier: &OrgNumber,
    ) -> Result<(Entries, Read), StoreError> {
        let snap = self.snapshot();
        let known = snap.owners.get(owner).map(Arc::as_ref);
        let data = self.data_dir();
        let entries_of =
            |records: &std::collections::BTreeMap<OrgNumber, Arc<DelegationRecord>>| {
                records
                    .iter()
                    .map(|(k, v)| (*k, Entry::from(v.as_ref())))
                    .collect::<Entries>()
            };
        if load::is_split(data, owner) {
            let part = load::part_of(supplier).to_string();
            let Some(read) =
                load::read_part(data, owner, &part).map_err(StoreError::CorruptFile)?
            else {
                return Ok((Entries::new(), Read::Part { part, stamp: None }));
            };
            let (records, _) = load::parse_part(data, owner, &part, &read, &snap.policies, known)
                .map_err(StoreError::CorruptFile)?;
            let stamp = Some(read.stamp);
            return Ok((entries_of(&records), Read::Part { part, stamp }));
        }
        let Some(read) = load::read_owner(data, owner, known).map_err(StoreError::CorruptFile)?
        else {
            return Ok((Entries::new(), Read::Whole(None)));
        };
        let load::OwnerRead::Single(file) = &read else {
            // Split between `is_split` and the read: a concurrent change.
            return Err(StoreError::ConcurrentEdit { owner: *owner });
        };
        let stamp = Some(file.stamp);
        let slice = load::parse_owner(data, owner, &read, &snap.policies, known)
            .map_err(StoreError::CorruptFile)?;
        Ok((entries_of(&slice.by_supplier), Read::Whole(stamp)))
    }

    /// Write the entries durably (the owner's file, the part they are, or the
    /// parts a file grown past [`load::SPLIT_AT`] is split into) and publish
    /// them to the snapshot.
    pub(super) fn commit(
        &self,
        owner: &OrgNumber,
        entries: &Entries,
        read: Read,
    ) -> Result<Committed, StoreError> {
        let data = self.data_dir();
        // Under the snapshot writer lock from check to publish: a policy reload
        // cannot slip in between and make what we write invalid.
        let w = self.reloader.store.lock();
        let cur = w.current();
        let known = cur.owners.get(owner).map(Arc::as_ref);
        // A hand edit since `read_owner` would be overwritten: refuse instead.
        let unchanged = match &read {
            Read::Whole(stamp) => {
                !load::is_split(data, owner)
                    && FileStamp::of_path(&load::owner_file(data, owner)) == *stamp
            }
            Read::Part { part, stamp } => {
                load::is_split(data, owner)
                    && FileStamp::of_path(
                        &load::owner_dir(data, owner).join(load::part_file_name(part)),
                    ) == *stamp
            }
        };
        if !unchanged {
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
        // What is written must load, so a write never leaves a file that the
        // next start-up refuses. Entries equal to a record already in the
        // snapshot (parsed against these policies) are reused; only the changed
        // ones are checked, so a write does not re-parse the whole file.
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
        let shown = match &read {
            Read::Part { part, .. } => {
                load::owner_dir(data, owner).join(load::part_file_name(part))
            }
            Read::Whole(_) => load::owner_file(data, owner),
        };
        let fresh = load::parse_delegations(
            &shown.display().to_string(),
            owner,
            changed.into(),
            &cur.policies,
        )
        .map_err(StoreError::DoesNotFitPolicies)?;
        by_supplier.extend(fresh);

        let single = file_name(owner);
        let slice = match read {
            Read::Part { part, .. } => {
                let name = load::part_name(owner, &part);
                let place = Place::Owner(*owner);
                let file = if entries.is_empty() {
                    check(
                        self.files
                            .remove_durable(place, &load::part_file_name(&part)),
                    )?;
                    None
                } else {
                    let bytes = entries::render(owner, entries)?;
                    let mut stamp = None;
                    check(
                        self.files
                            .write_atomic(place, &load::part_file_name(&part), &bytes)
                            .map(|meta| stamp = Some(FileStamp::of(&meta))),
                    )?;
                    stamp.map(|stamp| OwnerFile {
                        digest: load::file_digest(&name, &bytes),
                        name: name.clone(),
                        stamp,
                    })
                };
                // The other parts as the snapshot holds them.
                let mut all: std::collections::BTreeMap<_, _> = known
                    .map(|k| {
                        k.by_supplier
                            .iter()
                            .filter(|(s, _)| load::part_of(s) != part)
                            .map(|(s, r)| (*s, r.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                all.extend(by_supplier);
                let mut files: Vec<OwnerFile> = known
                    .map(|k| {
                        k.files
                            .iter()
                            .filter(|f| f.name != name && f.name != single)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                files.extend(file);
                files.sort_by(|a, b| a.name.cmp(&b.name));
                if all.is_empty() {
                    check(self.files.remove_owner_dir_if_empty(*owner))?;
                    None
                } else {
                    Some(OwnerDelegations {
                        by_supplier: all,
                        digest: OwnerDelegations::digest_of_files(&files),
                        files,
                    })
                }
            }
            Read::Whole(_) if entries.is_empty() => {
                check(self.files.remove_durable(Place::Delegations, &single))?;
                None
            }
            Read::Whole(_) if entries.len() > load::SPLIT_AT => {
                let files = self.split(owner, entries, &mut check)?;
                Some(OwnerDelegations {
                    by_supplier,
                    digest: OwnerDelegations::digest_of_files(&files),
                    files,
                })
            }
            Read::Whole(_) => {
                let bytes = entries::render(owner, entries)?;
                let mut files = Vec::new();
                check(
                    self.files
                        .write_atomic(Place::Delegations, &single, &bytes)
                        .map(|meta| {
                            // The stamp the watcher will see, so its reload of this file is a no-op.
                            files.push(OwnerFile {
                                digest: load::file_digest(&single, &bytes),
                                name: single.clone(),
                                stamp: FileStamp::of(&meta),
                            });
                        }),
                )?;
                Some(OwnerDelegations {
                    by_supplier,
                    digest: OwnerDelegations::digest_of_files(&files),
                    files,
                })
            }
        };
        // Read-your-writes: publish before acknowledging.
        w.publish(cur.with_owner(*owner, slice.map(Arc::new)));
        Ok(Committed { not_durable })
    }

    /// Split an owner's file into parts: every part written durably into
    /// `delegations/<owner>/` (parts left there by an earlier, interrupted
    /// split are replaced or removed), then the single file removed. Until that
    /// removal the file is what loads (see `load::owners`), so a crash at any
    /// step loses nothing. Returns the parts as written.
    fn split(
        &self,
        owner: &OrgNumber,
        entries: &Entries,
        check: &mut impl FnMut(Result<(), WriteError>) -> Result<(), StoreError>,
    ) -> Result<Vec<OwnerFile>, StoreError> {
        let mut parts: std::collections::BTreeMap<&str, Entries> =
            std::collections::BTreeMap::new();
        for (supplier, entry) in entries {
            parts
                .entry(load::part_of(supplier))
                .or_default()
                .insert(*supplier, entry.clone());
        }
        let place = Place::Owner(*owner);
        // Parts of an interrupted split that now have no suppliers.
        let stale: Vec<String> = self
            .files
            .regular_files(place)?
            .into_iter()
            .filter(|n| {
                n.ends_with(".json") && !parts.keys().any(|p| load::part_file_name(p) == *n)
            })
            .collect();
        for name in stale {
            check(self.files.remove_durable(place, &name))?;
        }
        let mut files = Vec::new();
        for (part, entries) in &parts {
            let bytes = entries::render(owner, entries)?;
            let name = load::part_name(owner, part);
            let mut written = None;
            check(
                self.files
                    .write_atomic(place, &load::part_file_name(part), &bytes)
                    .map(|meta| written = Some(FileStamp::of(&meta))),
            )?;
            if let Some(stamp) = written {
                files.push(OwnerFile {
                    digest: load::file_digest(&name, &bytes),
                    name,
                    stamp,
                });
            }
        }
        check(
            self.files
                .remove_durable(Place::Delegations, &file_name(owner)),
        )?;
        tracing::info!(
            %owner,
            suppliers = entries.len(),
            parts = files.len(),
            "split the owner's delegations into parts"
        );
        Ok(files)
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
