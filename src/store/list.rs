//! The read side of the admin API: delegations in (owner, supplier) order,
//! from one snapshot, resuming strictly after a [`Position`]. Paging is a
//! walk of positions, not offsets: the next page starts after the last
//! delegation the previous one returned, so delegations added or removed
//! between pages never make the walk skip or repeat one that exists
//! throughout. This module reads records only through [`DelegationView::of`]
//! and the snapshot's map APIs; how pages are cut and tokens encoded is the
//! API's business (`grpc::page`). No I/O, no proto types.

use std::ops::{Bound, ControlFlow};

use super::DelegationView;
use crate::ids::OrgNumber;
use crate::snapshot::{OwnerDelegations, Snapshot};

/// Which delegations a listing holds: those given by `owner`, received by
/// `supplier`, both, or (with neither) all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ListFilter {
    pub owner: Option<OrgNumber>,
    pub supplier: Option<OrgNumber>,
}

impl ListFilter {
    /// Whether the delegation at `p` is one this filter selects.
    pub fn admits(&self, p: Position) -> bool {
        self.owner.is_none_or(|o| o == p.owner) && self.supplier.is_none_or(|s| s == p.supplier)
    }
}

/// A place in the listing order: the (owner, supplier) of a delegation. A
/// listing resumes strictly after it, whether or not that delegation still
/// exists. Ordered as the listing is: by owner, then supplier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub owner: OrgNumber,
    pub supplier: OrgNumber,
}

impl Position {
    pub fn of(view: &DelegationView) -> Self {
        Self {
            owner: view.owner,
            supplier: view.supplier,
        }
    }
}

/// Visit, in (owner, supplier) order, the delegations of `snap` that `filter`
/// selects and that come after `after`, until `visit` breaks.
///
/// Cost per call, for `n` suppliers of one owner and `m` owners:
/// - with an `owner` (with or without a `supplier`): one owner lookup and a
///   B-tree range from the position, O(log n + visited);
/// - without one: the owners at or after the position are collected and
///   sorted (the owner map is a hash map, with no order to resume from),
///   O(m log m + visited), then each owner's range as above. With a
///   `supplier` only, each of those owners costs one O(log n) lookup,
///   whether or not it delegated to the supplier. That is fine for an admin
///   overview of 10,000 owners (collecting and sorting 10,000 owner keys
///   took 24 ms in an unoptimised test build); an ordered owner index in the
///   snapshot would make it O(log m) if owners grow by orders of magnitude.
pub(super) fn scan(
    snap: &Snapshot,
    filter: ListFilter,
    after: Option<Position>,
    mut visit: impl FnMut(DelegationView) -> ControlFlow<()>,
) {
    // The suppliers of one owner to start from: after the position's
    // supplier when the position is in this owner, all of them when it is
    // before it, none when it is past it.
    let from = |owner: OrgNumber| -> Option<Bound<OrgNumber>> {
        match after {
            None => Some(Bound::Unbounded),
            Some(p) if p.owner < owner => Some(Bound::Unbounded),
            Some(p) if p.owner == owner => Some(Bound::Excluded(p.supplier)),
            Some(_) => None,
        }
    };
    let mut owner_slice = |slice: &OwnerDelegations, from: Bound<OrgNumber>| -> ControlFlow<()> {
        match filter.supplier {
            Some(s) => {
                let after_start = match from {
                    Bound::Excluded(start) => s > start,
                    Bound::Included(start) => s >= start,
                    Bound::Unbounded => true,
                };
                match slice.by_supplier.get(&s) {
                    Some(r) if after_start => visit(DelegationView::of(snap, r)),
                    _ => ControlFlow::Continue(()),
                }
            }
            None => {
                for r in slice
                    .by_supplier
                    .range((from, Bound::Unbounded))
                    .map(|(_, r)| r)
                {
                    visit(DelegationView::of(snap, r))?;
                }
                ControlFlow::Continue(())
            }
        }
    };
    match filter.owner {
        Some(o) => {
            if let (Some(slice), Some(from)) = (snap.owners.get(&o), from(o)) {
                let _ = owner_slice(slice, from);
            }
        }
        None => {
            let mut owners: Vec<OrgNumber> = snap
                .owners
                .keys()
                .filter(|o| after.is_none_or(|p| **o >= p.owner))
                .copied()
                .collect();
            owners.sort_unstable();
            for o in owners {
                let (Some(slice), Some(from)) = (snap.owners.get(&o), from(o)) else {
                    continue;
                };
                if owner_slice(slice, from).is_break() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::snapshot::load::{PolicySource, load_snapshot};

    /// `n` valid org numbers from `start` (8 digits) on: the mod-11 rule is
    /// `OrgNumber::parse`'s, not repeated here.
    fn orgs(start: u32, n: usize) -> Vec<OrgNumber> {
        (start..)
            .flat_map(|p| (0..10).map(move |c| format!("{p:08}{c}")))
            .filter_map(|s| OrgNumber::parse(&s).ok())
            .take(n)
            .collect()
    }

    /// A data directory with `owners`, each delegating `instances-read` to
    /// its suppliers, loaded against the fixture policies.
    fn snapshot(owners: &[(OrgNumber, Vec<OrgNumber>)]) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        let delegations = dir.path().join("delegations");
        std::fs::create_dir_all(&delegations).unwrap();
        for (owner, suppliers) in owners {
            let entities: Vec<serde_json::Value> = suppliers
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "uid": { "type": "Tilgang::Delegation", "id": format!("{owner}/{s}") },
                        "attrs": {
                            "owner": { "type": "Tilgang::Organization", "id": owner.to_string() },
                            "supplier": { "type": "Tilgang::Organization", "id": s.to_string() },
                            "rights": [{ "type": "Tilgang::Right", "id": "instances-read" }],
                            "delegatedBy": "01017012345",
                            "createdAt": "2026-01-05T09:00:00Z",
                            "updatedAt": "2026-01-05T09:00:00Z"
                        },
                        "parents": []
                    })
                })
                .collect();
            let text = serde_json::to_string(&entities).unwrap();
            std::fs::write(delegations.join(format!("{owner}.json")), text).unwrap();
        }
        let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies");
        load_snapshot(&PolicySource::Dir(policies), dir.path()).unwrap()
    }

    fn collect(snap: &Snapshot, filter: ListFilter, after: Option<Position>) -> Vec<Position> {
        let mut out = Vec::new();
        scan(snap, filter, after, |v| {
            out.push(Position::of(&v));
            ControlFlow::Continue(())
        });
        out
    }

    /// Every filter (none, each owner, each supplier, both, and orgs that
    /// hold nothing) from every position (none, each delegation, positions
    /// of no delegation, before and after everything) gives exactly what
    /// sorting and filtering everything gives.
    #[test]
    fn a_scan_is_everything_sorted_filtered_and_after_the_position() {
        let o = orgs(40_000_000, 6);
        let s = orgs(50_000_000, 6);
        // o[3] delegates nothing; o[4] has an empty file; o[5] and s[5] are nowhere.
        let data = vec![
            (o[2], vec![s[0], s[3], s[4]]),
            (o[0], vec![s[1], s[0], s[2]]),
            (o[1], vec![s[4]]),
            (o[4], vec![]),
            // An owner can also be a supplier of another.
            (s[2], vec![o[0], s[4]]),
        ];
        let snap = snapshot(&data);
        let mut all: Vec<Position> = data
            .iter()
            .flat_map(|(owner, sup)| {
                sup.iter().map(|&supplier| Position {
                    owner: *owner,
                    supplier,
                })
            })
            .collect();
        all.sort();
        assert_eq!(collect(&snap, ListFilter::default(), None), all);

        let everyone: Vec<Option<OrgNumber>> = std::iter::once(None)
            .chain(o.iter().chain(&s).copied().map(Some))
            .collect();
        let mut positions: Vec<Option<Position>> = vec![None];
        for &owner in o.iter().chain(&s) {
            for &supplier in o.iter().chain(&s) {
                positions.push(Some(Position { owner, supplier }));
            }
        }
        let mut checked = 0;
        for &owner in &everyone {
            for &supplier in &everyone {
                let filter = ListFilter { owner, supplier };
                for &after in &positions {
                    let want: Vec<Position> = all
                        .iter()
                        .copied()
                        .filter(|p| filter.admits(*p) && after.is_none_or(|a| *p > a))
                        .collect();
                    assert_eq!(
                        collect(&snap, filter, after),
                        want,
                        "{filter:?} after {after:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 13 * 13 * 145);
    }

    #[test]
    fn a_scan_stops_when_the_visitor_breaks() {
        let o = orgs(40_000_000, 2);
        let s = orgs(50_000_000, 5);
        let snap = snapshot(&[(o[0], s[..3].to_vec()), (o[1], s[2..].to_vec())]);
        let mut seen = Vec::new();
        scan(&snap, ListFilter::default(), None, |v| {
            seen.push(Position::of(&v));
            if seen.len() == 4 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(seen.len(), 4);
        assert_eq!(
            seen[3],
            Position {
                owner: o[1],
                supplier: s[2]
            }
        );
    }
}
