//! One owner's delegations as a write changes them ([`Entry`] per supplier),
//! and how they are rendered into the owner's file: Cedar entity JSON, one
//! `Tilgang::Delegation` per supplier, sorted. Pure: no I/O, no checks (the
//! commit protocol checks what it writes against the policies).

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{OrgNumber, PersonId, RightId};
use crate::snapshot::DelegationRecord;
use crate::snapshot::load;

/// One owner's entries, by supplier.
pub(super) type Entries = BTreeMap<OrgNumber, Entry>;

/// One supplier's entry as it will be written.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub rights: BTreeSet<RightId>,
    pub delegated_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// Attributes a policy author's schema adds; kept as they are.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl From<&DelegationRecord> for Entry {
    fn from(r: &DelegationRecord) -> Self {
        Self {
            rights: r.rights.to_set(),
            delegated_by: r.delegated_by.clone(),
            created_at: r.created_at.clone(),
            updated_at: r.updated_at.clone(),
            extra: r.extra_attrs.clone(),
        }
    }
}

/// Right ids as the audit log and undo records spell them.
pub(super) fn ids(rights: &BTreeSet<RightId>) -> Vec<String> {
    rights.iter().map(|r| r.to_string()).collect()
}

/// Add `rights` to `supplier`'s entry (created with `created_at` if new), as
/// granted by `actor` at `time`. Returns the rights held before and after.
pub(super) fn grant(
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

/// One supplier's Cedar JSON entity, as the owner's file holds it (the one
/// rendering, shared with the loader: [`load::delegation_json`]).
pub(super) fn entity_json(owner: &OrgNumber, supplier: &OrgNumber, e: &Entry) -> serde_json::Value {
    load::delegation_json(
        owner,
        supplier,
        &e.rights,
        &e.delegated_by,
        &e.created_at,
        &e.updated_at,
        &e.extra,
    )
}

/// Render an owner's file (or part): Cedar JSON entities, one per supplier,
/// sorted, written straight from the entries (the one rendering,
/// [`load::DelegationOut`]).
pub(super) fn render(owner: &OrgNumber, entries: &Entries) -> std::io::Result<Vec<u8>> {
    // Never a fallback rendering here: writing anything but the entries would
    // lose delegations.
    load::render_owner_file(entries.iter().map(|(supplier, e)| load::DelegationOut {
        owner,
        supplier,
        rights: e.rights.iter().collect(),
        delegated_by: &e.delegated_by,
        created_at: &e.created_at,
        updated_at: &e.updated_at,
        extra: &e.extra,
    }))
}

impl Entry {
    /// Whether `record` says what this entry says (without building an
    /// entry from it: a write compares every entry of the file or part).
    pub(super) fn is(&self, record: &DelegationRecord) -> bool {
        record.rights.iter().eq(self.rights.iter())
            && record.delegated_by == self.delegated_by
            && record.created_at == self.created_at
            && record.updated_at == self.updated_at
            && record.extra_attrs == self.extra
    }
}
