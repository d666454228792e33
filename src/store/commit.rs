//! The commit protocol for one owner's file: read it from disk (so hand edits
//! are kept), and later, under the snapshot writer lock, check that it has not
//! changed since, check what changes against the policies in force, write it
//! durably (or remove it), and publish the owner's new slice. Then the audit
//! line. This module does no policy checks of the actor (see `authorize`), and
//! decides nothing about what a write changes (see `ops`).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::audit::{Actor, AuditRecord, Change};
use super::entries::{self, Entries, Entry};
use super::files::{Place, WriteError};
use super::{FileStore, StoreError};
use crate::ids::{OrgNumber, RightId, UndoToken};
use crate::snapshot::load;
use crate::snapshot::{FileStamp, OwnerDelegations, OwnerFile, Suppliers};

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
    /// The store revision the change was published with.
    revision: u64,
}

impl Committed {
    /// Report a change that is in effect: fine, or what went wrong after it took
    /// effect (not durable, not audited), so the caller is never told that
    /// nothing happened. A revocation's undo token goes with it.
    pub(super) fn finish(
        self,
        audit: std::io::Result<()>,
        token: Option<&UndoToken>,
    ) -> Result<u64, StoreError> {
        let audit = audit.err();
        if self.not_durable.is_none() && audit.is_none() {
            return Ok(self.revision);
        }
        Err(StoreError::InEffect {
            not_durable: self.not_durable,
            audit,
            undo_token: token.cloned(),
        })
    }
}

/// What [`FileStore::read_owner`] read, which [`FileStore::commit`]
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
        supplier: OrgNumber,
        stamp: Option<FileStamp>,
    },
}

impl FileStore {
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
        let snap = self.snapshots.load();
        let known = snap.owners.get(owner).map(Arc::as_ref);
        let data = self.data_dir();
        let entries_of = |records: &Suppliers| {
            records
                .iter()
                .map(|(k, v)| (*k, Entry::from(v.as_ref())))
                .collect::<Entries>()
        };
        if load::is_split(data, owner) {
            let parts = load::list_parts(data, owner).map_err(StoreError::CorruptFile)?;
            let part = load::part_for(&parts, supplier);
            let read = load::read_part(data, owner, &part).map_err(StoreError::CorruptFile)?;
            let entries = match &read {
                None => Entries::new(),
                Some(r) => {
                    let (records, _) =
                        load::parse_part(data, owner, &part, r, &snap.policies, known)
                            .map_err(StoreError::CorruptFile)?;
                    entries_of(&records)
                }
            };
            let stamp = read.map(|r| r.stamp);
            let supplier = *supplier;
            return Ok((
                entries,
                Read::Part {
                    part,
                    supplier,
                    stamp,
                },
            ));
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
        let w = self.snapshots.lock();
        let cur = w.current();
        let known = cur.owners.get(owner).map(Arc::as_ref);
        // A hand edit since `read_owner` would be overwritten: refuse instead.
        let unchanged = match &read {
            Read::Whole(stamp) => {
                !load::is_split(data, owner)
                    && FileStamp::of_path(&load::owner_file(data, owner)) == *stamp
            }
            Read::Part {
                part,
                supplier,
                stamp,
            } => {
                load::is_split(data, owner)
                    && FileStamp::of_path(
                        &load::owner_dir(data, owner).join(load::part_file_name(part)),
                    ) == *stamp
                    // Still the part the supplier is in (none split or added by hand).
                    && load::list_parts(data, owner)
                        .is_ok_and(|parts| load::part_for(&parts, supplier) == *part)
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
        let mut by_supplier = Suppliers::new();
        let mut changed = Vec::new();
        for (supplier, entry) in entries {
            match known.and_then(|k| k.by_supplier.get(supplier)) {
                Some(r) if entry.is(r) => {
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
                let file_name = load::part_file_name(&part);
                let mut written = Vec::new();
                if entries.is_empty() {
                    check(self.files.remove_durable(place, &file_name))?;
                } else if entries.len() > 2 * load::PART_MAX && part.len() < load::PART_MAX_DIGITS {
                    // Grown too big: split again, one digit longer.
                    let under = |stem: &str| stem.len() > part.len() && stem.starts_with(&part);
                    let replaced = (place, file_name);
                    written = self.write_parts(
                        owner,
                        entries,
                        part.len() + 1,
                        replaced,
                        under,
                        &mut check,
                    )?;
                } else {
                    let file = (place, file_name.as_str(), name.clone());
                    written.extend(self.write_file(owner, entries, file, &mut check)?);
                }
                // The other parts as the snapshot holds them: the persistent
                // map with this part's range replaced, O(part · log n).
                let mut all = known.map(|k| k.by_supplier.clone()).unwrap_or_default();
                let old: Vec<OrgNumber> = known
                    .map(|k| {
                        load::in_part(&k.by_supplier, &part)
                            .map(|(s, _)| s)
                            .collect()
                    })
                    .unwrap_or_default();
                for s in old {
                    all.remove(&s);
                }
                all.extend(by_supplier);
                let under = format!("{owner}/{part}");
                let mut files: Vec<OwnerFile> = known
                    .map(|k| {
                        k.files
                            .iter()
                            .filter(|f| !f.name.starts_with(&under) && f.name != single)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                files.extend(written);
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
                // Split into parts. Anything already in the directory is from
                // an interrupted split (never read while the file exists).
                let replaced = (Place::Delegations, single.clone());
                let files = self.write_parts(
                    owner,
                    entries,
                    load::PART_MIN_DIGITS,
                    replaced,
                    |_| true,
                    &mut check,
                )?;
                tracing::info!(
                    %owner,
                    suppliers = entries.len(),
                    parts = files.len(),
                    "split the owner's delegations into parts"
                );
                Some(OwnerDelegations {
                    by_supplier,
                    digest: OwnerDelegations::digest_of_files(&files),
                    files,
                })
            }
            Read::Whole(_) => {
                let file = (Place::Delegations, single.as_str(), single.clone());
                let files: Vec<OwnerFile> = self
                    .write_file(owner, entries, file, &mut check)?
                    .into_iter()
                    .collect();
                Some(OwnerDelegations {
                    by_supplier,
                    digest: OwnerDelegations::digest_of_files(&files),
                    files,
                })
            }
        };
        // Read-your-writes: publish before acknowledging.
        let revision = cur.store_revision() + 1;
        w.publish(
            cur.with_owner(*owner, slice.map(Arc::new))
                .with_write_count(revision),
        );
        Ok(Committed {
            not_durable,
            revision,
        })
    }

    /// Write `entries` as the parts [`load::plan`] groups them into (prefixes
    /// of at least `len` digits), each durably, then remove the file they
    /// replace (`replaced`: the single file, or a part split again). Until
    /// that removal the replaced file is what loads (the shortest name wins,
    /// see `load::owners`), so a crash at any step loses nothing; files in the
    /// owner's directory that `stale` says an interrupted attempt left (so
    /// never read) and that this plan does not rewrite are removed first.
    /// Returns the parts as written.
    fn write_parts(
        &self,
        owner: &OrgNumber,
        entries: &Entries,
        len: usize,
        replaced: (Place, String),
        stale: impl Fn(&str) -> bool,
        check: &mut impl FnMut(Result<(), WriteError>) -> Result<(), StoreError>,
    ) -> Result<Vec<OwnerFile>, StoreError> {
        let suppliers: Vec<OrgNumber> = entries.keys().copied().collect();
        let plan = load::plan(&suppliers, len);
        let place = Place::Owner(*owner);
        for name in self.files.regular_files(place)? {
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if stale(stem) && !plan.contains_key(stem) {
                check(self.files.remove_durable(place, &name))?;
            }
        }
        let mut files = Vec::new();
        for (part, in_part) in &plan {
            let part_entries: Entries = in_part
                .iter()
                .filter_map(|s| entries.get(s).map(|e| (*s, e.clone())))
                .collect();
            let file_name = load::part_file_name(part);
            let file = (place, file_name.as_str(), load::part_name(owner, part));
            files.extend(self.write_file(owner, &part_entries, file, check)?);
        }
        check(self.files.remove_durable(replaced.0, &replaced.1))?;
        Ok(files)
    }

    /// Render `entries` and write them durably as `file`: (the directory, the
    /// file's name in it, its name below `delegations/`). Returns the file as
    /// the snapshot lists it, with the stamp the watcher will see, so its
    /// reload of the file is a no-op; `None` when it is in place but not
    /// durable (`check` kept the error), and then the watcher reads it.
    fn write_file(
        &self,
        owner: &OrgNumber,
        entries: &Entries,
        (place, file_name, name): (Place, &str, String),
        check: &mut impl FnMut(Result<(), WriteError>) -> Result<(), StoreError>,
    ) -> Result<Option<OwnerFile>, StoreError> {
        let bytes = entries::render(owner, entries)?;
        let mut stamp = None;
        check(
            self.files
                .write_atomic(place, file_name, &bytes)
                .map(|meta| stamp = Some(FileStamp::of(&meta))),
        )?;
        Ok(stamp.map(|stamp| OwnerFile {
            digest: load::file_digest(&name, &bytes),
            name,
            stamp,
        }))
    }

    /// Append the audit line for a change that is already in effect.
    #[allow(clippy::too_many_arguments)] // one line of the audit record each
    pub(super) fn audit_change(
        &self,
        time: String,
        actor: Actor<'_>,
        owner: OrgNumber,
        supplier: OrgNumber,
        change: Change,
        before: &BTreeSet<RightId>,
        after: &BTreeSet<RightId>,
        undo_token: Option<&UndoToken>,
    ) -> std::io::Result<()> {
        self.audit.append(&AuditRecord::of_change(
            time, actor, owner, supplier, change, before, after, undo_token,
        ))
    }
}
