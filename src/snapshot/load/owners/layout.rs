//! Where an owner's delegations are, by name: the single file, the parts
//! directory, a part's file name, the owner a path belongs to; and which
//! parts count, which part a supplier goes in, and how a split groups
//! suppliers. No I/O (see the parent module for the rules).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ids::OrgNumber;
use crate::snapshot::load::DELEGATIONS_DIR;

/// The shortest part name: a first split groups suppliers by their first
/// three digits, and longer prefixes are used where a group is too big.
pub const PART_MIN_DIGITS: usize = 3;
/// The longest part name (a part of 8 digits holds at most 10 suppliers).
pub const PART_MAX_DIGITS: usize = 8;

/// More suppliers than this in one owner file, and the admin store splits it
/// into parts on its next write.
pub const SPLIT_AT: usize = 1000;

/// The most suppliers a split puts in one part; a part that grows past twice
/// this is split again. A part of this many entries is written and fsynced
/// in a few milliseconds.
pub const PART_MAX: usize = 1000;

/// The path of one owner's single delegation file.
pub fn owner_file(data_dir: &Path, owner: &OrgNumber) -> PathBuf {
    data_dir.join(DELEGATIONS_DIR).join(format!("{owner}.json"))
}

/// The directory of a split owner's parts.
pub fn owner_dir(data_dir: &Path, owner: &OrgNumber) -> PathBuf {
    data_dir.join(DELEGATIONS_DIR).join(owner.as_str())
}

/// The file name of a part (`974.json`).
pub fn part_file_name(part: &str) -> String {
    format!("{part}.json")
}

/// The part a file name in an owner's directory names, if it is one.
pub(super) fn part_of_name(name: &str) -> Option<&str> {
    let part = name.strip_suffix(".json")?;
    ((PART_MIN_DIGITS..=PART_MAX_DIGITS).contains(&part.len())
        && part.bytes().all(|b| b.is_ascii_digit()))
    .then_some(part)
}

/// The parts that count among `parts` (sorted): those no shorter one among
/// them is a prefix of (see the module docs). In sorted order a prefix comes
/// right before the names it is a prefix of, so one pass finds them.
pub fn counting(parts: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        if out.last().is_some_and(|kept| p.starts_with(kept.as_str())) {
            continue;
        }
        out.push(p.clone());
    }
    out
}

/// The part `supplier`'s delegation is in or goes in, among the counting
/// `parts`: the one that is a prefix of it, or else the shortest prefix of it
/// (of at least [`PART_MIN_DIGITS`]) that no part starts with.
pub fn part_for(parts: &[String], supplier: &OrgNumber) -> String {
    let s = supplier.as_str();
    if let Some(p) = parts.iter().find(|p| s.starts_with(p.as_str())) {
        return p.clone();
    }
    (PART_MIN_DIGITS..=PART_MAX_DIGITS)
        .map(|len| &s[..len])
        .find(|prefix| !parts.iter().any(|p| p.starts_with(prefix)))
        .unwrap_or(&s[..PART_MAX_DIGITS])
        .to_string()
}

/// Group suppliers into parts named by prefixes of at least `len` digits,
/// longer where a group would hold more than [`PART_MAX`]. `suppliers` sorted.
pub fn plan(suppliers: &[OrgNumber], len: usize) -> BTreeMap<String, Vec<OrgNumber>> {
    let mut out = BTreeMap::new();
    let mut rest = suppliers;
    while let Some(first) = rest.first() {
        let prefix = &first.as_str()[..len];
        let n = rest
            .iter()
            .take_while(|s| s.as_str().starts_with(prefix))
            .count();
        let (group, after) = rest.split_at(n);
        if n > PART_MAX && len < PART_MAX_DIGITS {
            out.extend(plan(group, len + 1));
        } else {
            out.insert(prefix.to_string(), group.to_vec());
        }
        rest = after;
    }
    out
}

/// The name below `delegations/` of a split owner's part.
pub fn part_name(owner: &OrgNumber, part: &str) -> String {
    format!("{owner}/{}", part_file_name(part))
}

/// If `path` is, or is inside, an owner's file or directory
/// (`delegations/<orgnr>.json`, `delegations/<orgnr>/...`), the owner.
pub fn owner_of_path(data_dir: &Path, path: &Path) -> Option<OrgNumber> {
    let rel = path.strip_prefix(data_dir).ok()?;
    let mut parts = rel.components();
    if parts.next()?.as_os_str() != DELEGATIONS_DIR {
        return None;
    }
    let name = parts.next()?.as_os_str().to_str()?;
    let stem = match parts.next() {
        // Inside a directory: a part, or a temp file of a write to one.
        Some(_) => name,
        None => name.strip_suffix(".json").unwrap_or(name),
    };
    if stem.len() != 9 {
        return None;
    }
    OrgNumber::parse(stem).ok().filter(|o| o.as_str() == stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(n: u32) -> OrgNumber {
        (n..)
            .find_map(|n| {
                OrgNumber::parse(&format!("{n:08}0"))
                    .ok()
                    .or_else(|| (1..10).find_map(|c| OrgNumber::parse(&format!("{n:08}{c}")).ok()))
            })
            .unwrap()
    }

    fn names(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_shortest_part_counts() {
        let parts = names(&["100", "200", "2001", "20012", "2002", "300"]);
        assert_eq!(counting(&parts), names(&["100", "200", "300"]));
        let parts = names(&["2001", "20012", "2002"]);
        assert_eq!(counting(&parts), names(&["2001", "2002"]));
    }

    #[test]
    fn a_supplier_goes_in_the_part_that_is_its_prefix_or_a_new_one_that_overlaps_none() {
        let s = OrgNumber::parse("974760673").unwrap();
        assert_eq!(part_for(&names(&["974", "975"]), &s), "974");
        assert_eq!(part_for(&names(&["9747", "975"]), &s), "9747");
        assert_eq!(part_for(&names(&["975"]), &s), "974");
        // `974` would overlap `9741`: one digit more.
        assert_eq!(part_for(&names(&["9741"]), &s), "9747");
        assert_eq!(part_for(&[], &s), "974");
    }

    #[test]
    fn a_plan_keeps_parts_small_with_longer_prefixes_where_needed() {
        // 2,500 consecutive org numbers share `500`; spread ones do not.
        let mut suppliers: Vec<OrgNumber> = (0..2500).map(|i| org(50_000_000 + i * 4)).collect();
        suppliers.extend((0..50).map(|i| org(60_000_000 + i * 100_000)));
        suppliers.sort();
        suppliers.dedup();
        let plan = plan(&suppliers, PART_MIN_DIGITS);
        assert!(
            plan.values().all(|p| !p.is_empty() && p.len() <= PART_MAX),
            "{:?}",
            plan.keys()
        );
        assert!(plan.keys().any(|p| p.len() > PART_MIN_DIGITS));
        let keys: Vec<String> = plan.keys().cloned().collect();
        assert_eq!(counting(&keys), keys, "no part is a prefix of another");
        for (part, in_part) in &plan {
            assert!(
                in_part
                    .iter()
                    .all(|s| s.as_str().starts_with(part.as_str()))
            );
        }
        assert_eq!(plan.values().map(Vec::len).sum::<usize>(), suppliers.len());
    }
}
