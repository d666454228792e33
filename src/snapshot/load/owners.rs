//! Where an owner's delegations live, and reading them as a whole.
//!
//! An owner's delegations are in one file, `delegations/<owner>.json`, or, for
//! a large owner, split into parts `delegations/<owner>/<prefix>.json`: each
//! part holds exactly the suppliers whose org number starts with its name (3
//! to 8 digits). Every file is the same Cedar entity JSON (an array of
//! `Tilgang::Delegation`), so a person can read and edit any of them, and
//! `tilgang validate` checks them all.
//!
//! Parts exist so that a write touches one small file: an owner with 100,000
//! suppliers is a hundred or more parts of at most [`PART_MAX`] entries, and
//! a write rewrites and fsyncs one of them, not 50 MB. The admin store splits
//! an owner's file once it holds more than [`SPLIT_AT`] suppliers, choosing
//! prefixes as long as needed to keep parts small ([`plan`]), and splits a
//! part again (one digit longer) once it grows past twice that.
//!
//! The shortest name wins: while `<owner>.json` exists it *is* the owner's
//! delegations and the directory `<owner>/` beside it is not read; while
//! `974.json` exists, `9741.json` is not read. That is a split in progress
//! (the store writes the new files, then removes the one they replace), or
//! one a crash interrupted, which the owner's next admin write there does
//! again. So there is no moment, crash or not, when a supplier's delegation
//! is in two files that count, or in none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[allow(unused_imports)]
use super::*;
use crate::ids::OrgNumber;
use crate::snapshot::{
    DelegationRecord, Digest, FileStamp, OwnerDelegations, OwnerFile, PolicyBundle, Suppliers,
};

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
fn part_of_name(name: &str) -> Option<&str> {
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

/// The digest of one owner file's bytes, under its name below `delegations/`
/// (an owner's digest is the XOR of its files').
pub fn file_digest(name: &str, bytes: &[u8]) -> Digest {
    digest_of(&[(name, bytes)])
}

/// One owner's files as on disk now: the single file, or the parts.
#[derive(Debug)]
pub enum OwnerRead {
    /// `delegations/<owner>.json`.
    Single(FileRead),
    /// The parts in `delegations/<owner>/`, by part.
    Parts(BTreeMap<String, PartRead>),
}

/// One part as [`read_owner`] found it.
#[derive(Debug)]
pub enum PartRead {
    /// Read now.
    Read(FileRead),
    /// Not read: its stamp is the one the known slice holds, and old enough
    /// to trust (see [`trusted`]).
    Known(OwnerFile),
}

impl PartRead {
    fn digest(&self, name: &str) -> Digest {
        match self {
            PartRead::Read(r) => file_digest(name, &r.bytes),
            PartRead::Known(f) => f.digest,
        }
    }

    fn stamp(&self) -> (FileStamp, bool) {
        match self {
            PartRead::Read(r) => (r.stamp, r.steady),
            PartRead::Known(f) => (f.stamp, true),
        }
    }
}

/// Whether a part whose stamp now equals the one it was read with can be
/// taken as unchanged without reading it. Only when its last change is more
/// than a second old: file times come from a coarse clock, so two writes
/// within one tick can leave the same stamp, and a part written just now is
/// read again (a write to a large owner re-reads the one part it changed).
fn trusted(stamp: &FileStamp) -> bool {
    let changed = std::time::UNIX_EPOCH
        + std::time::Duration::new(stamp.changed.0.max(0) as u64, stamp.changed.1.max(0) as u32);
    changed
        .elapsed()
        .is_ok_and(|age| age > std::time::Duration::from_secs(1))
}

impl OwnerRead {
    /// Each file as the snapshot lists it (name below `delegations/`, digest,
    /// stamp), and whether nothing wrote to it while it was read. Computed
    /// once per look: the digests hash every byte read.
    pub fn listed(&self, owner: &OrgNumber) -> Vec<(OwnerFile, bool)> {
        match self {
            OwnerRead::Single(r) => {
                let name = format!("{owner}.json");
                let digest = file_digest(&name, &r.bytes);
                let stamp = r.stamp;
                vec![(
                    OwnerFile {
                        name,
                        digest,
                        stamp,
                    },
                    r.steady,
                )]
            }
            OwnerRead::Parts(parts) => parts
                .iter()
                .map(|(part, r)| {
                    let name = part_name(owner, part);
                    let digest = r.digest(&name);
                    let (stamp, steady) = r.stamp();
                    (
                        OwnerFile {
                            name,
                            digest,
                            stamp,
                        },
                        steady,
                    )
                })
                .collect(),
        }
    }
}

/// Whether the owner's delegations are in parts now: its directory exists and
/// its single file does not (see the module docs).
pub fn is_split(data_dir: &Path, owner: &OrgNumber) -> bool {
    std::fs::symlink_metadata(owner_file(data_dir, owner)).is_err()
        && std::fs::symlink_metadata(owner_dir(data_dir, owner)).is_ok_and(|m| m.is_dir())
}

/// One part file as on disk; `None` when there is none.
pub fn read_part(
    data_dir: &Path,
    owner: &OrgNumber,
    part: &str,
) -> Result<Option<FileRead>, LoadError> {
    let path = owner_dir(data_dir, owner).join(part_file_name(part));
    match read_regular(&path, Links::Refuse) {
        Ok(read) => Ok(Some(read)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LoadError::new(path.display(), e)),
    }
}

/// One owner's files as on disk: `None` when it has none. A symlink is
/// refused (tilgang writes these files), and so is a `*.json` file in a split
/// owner's directory that is not named as a part. Parts `known` holds with the same, [`trusted`] stamp are
/// not read again.
pub fn read_owner(
    data_dir: &Path,
    owner: &OrgNumber,
    known: Option<&OwnerDelegations>,
) -> Result<Option<OwnerRead>, LoadError> {
    let file = owner_file(data_dir, owner);
    match read_regular(&file, Links::Refuse) {
        Ok(read) => return Ok(Some(OwnerRead::Single(read))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(LoadError::new(file.display(), e)),
    }
    let dir = owner_dir(data_dir, owner);
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LoadError::new(dir.display(), e)),
        Ok(m) if !m.is_dir() => {
            return Err(LoadError::new(
                dir.display(),
                "expected the directory of this owner's parts (`<prefix>.json` files), found \
                 something else (symbolic links are not followed here)",
            ));
        }
        Ok(_) => {}
    }
    let mut parts = BTreeMap::new();
    for part in list_parts(data_dir, owner)? {
        let part = part.as_str();
        let name = part_name(owner, part);
        let same = known.and_then(|k| k.files.iter().find(|f| f.name == name));
        if let Some(f) = same
            && trusted(&f.stamp)
            && std::fs::symlink_metadata(dir.join(part_file_name(part)))
                .is_ok_and(|m| m.is_file() && FileStamp::of(&m) == f.stamp)
        {
            parts.insert(part.to_string(), PartRead::Known(f.clone()));
            continue;
        }
        // Removed since the listing: not part of the owner now.
        if let Some(read) = read_part(data_dir, owner, part)? {
            parts.insert(part.to_string(), PartRead::Read(read));
        }
    }
    Ok(Some(OwnerRead::Parts(parts)))
}

/// The parts of a split owner that count (see the module docs), sorted. A
/// `*.json` name that is not a part name is an error, not ignored.
pub fn list_parts(data_dir: &Path, owner: &OrgNumber) -> Result<Vec<String>, LoadError> {
    let dir = owner_dir(data_dir, owner);
    let mut parts = Vec::new();
    for name in part_names(&dir)? {
        let Some(part) = part_of_name(&name) else {
            return Err(LoadError::new(
                dir.join(&name).display(),
                format!(
                    "not a part file: the parts of a split owner are named by a prefix of \
                     {PART_MIN_DIGITS} to {PART_MAX_DIGITS} digits of their suppliers' org \
                     numbers (`974.json`)"
                ),
            ));
        };
        parts.push(part.to_string());
    }
    parts.sort();
    Ok(counting(&parts))
}

/// The `*.json` names in an owner's directory that tilgang reads (hidden and
/// temp files skipped).
fn part_names(dir: &Path) -> Result<Vec<String>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|e| LoadError::new(dir.display(), e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LoadError::new(dir.display(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_visible(&name) && name.ends_with(".json") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Parse what [`read_owner`] found. `known` is the owner's slice already
/// parsed against the same `policies`: a file whose bytes are the ones it was
/// parsed from is reused rather than parsed again (a write to one part of a
/// large owner must not re-parse the other parts).
pub fn parse_owner(
    data_dir: &Path,
    owner: &OrgNumber,
    read: &OwnerRead,
    policies: &PolicyBundle,
    known: Option<&OwnerDelegations>,
) -> Result<OwnerDelegations, LoadError> {
    let mut files = Vec::new();
    let by_supplier = match read {
        OwnerRead::Single(r) => {
            let name = format!("{owner}.json");
            let digest = file_digest(&name, &r.bytes);
            let records = match known.filter(|k| k.digest == digest) {
                Some(k) => k.by_supplier.clone(),
                None => {
                    let path = owner_file(data_dir, owner).display().to_string();
                    parse_owner_file(&path, owner, &r.bytes, policies)?
                }
            };
            files.push(OwnerFile {
                name,
                digest,
                stamp: r.stamp,
            });
            records
        }
        OwnerRead::Parts(parts) => {
            let mut by_supplier = Suppliers::new();
            for (part, r) in parts {
                match r {
                    PartRead::Read(r) => {
                        let (records, file) =
                            parse_part(data_dir, owner, part, r, policies, known)?;
                        by_supplier.extend(records);
                        files.push(file);
                    }
                    PartRead::Known(f) => {
                        if let Some(k) = known {
                            by_supplier.extend(in_part(&k.by_supplier, part));
                        }
                        files.push(f.clone());
                    }
                }
            }
            by_supplier
        }
    };
    Ok(OwnerDelegations {
        by_supplier,
        digest: OwnerDelegations::digest_of_files(&files),
        files,
    })
}

/// Parse one part of a split owner (reusing `known`'s records when the bytes
/// are the ones they were parsed from), and check that every supplier in it
/// belongs there.
pub fn parse_part(
    data_dir: &Path,
    owner: &OrgNumber,
    part: &str,
    read: &FileRead,
    policies: &PolicyBundle,
    known: Option<&OwnerDelegations>,
) -> Result<(Suppliers, OwnerFile), LoadError> {
    let name = part_name(owner, part);
    let digest = file_digest(&name, &read.bytes);
    let file = OwnerFile {
        name,
        digest,
        stamp: read.stamp,
    };
    if let Some(k) = known.filter(|k| {
        k.files
            .iter()
            .any(|f| f.name == file.name && f.digest == digest)
    }) {
        return Ok((in_part(&k.by_supplier, part).collect(), file));
    }
    let shown = owner_dir(data_dir, owner)
        .join(part_file_name(part))
        .display()
        .to_string();
    let records = parse_owner_file(&shown, owner, &read.bytes, policies)?;
    if let Some(stray) = records.keys().find(|s| !s.as_str().starts_with(part)) {
        return Err(LoadError::new(
            shown,
            format!(
                "the delegation to {stray} does not belong in `{}`: a part holds only the \
                 suppliers whose org number starts with its name",
                part_file_name(part)
            ),
        ));
    }
    Ok((records, file))
}

/// The records of `by_supplier` in `part`: a contiguous range, since a part is
/// a prefix of the fixed-width org numbers.
pub fn in_part<'a>(
    by_supplier: &'a Suppliers,
    part: &'a str,
) -> impl Iterator<Item = (OrgNumber, Arc<DelegationRecord>)> + 'a {
    let mut from = [b'0'; 9];
    from[..part.len().min(9)].copy_from_slice(&part.as_bytes()[..part.len().min(9)]);
    by_supplier
        .range::<_, [u8; 9]>(from..)
        .take_while(move |(s, _)| s.as_str().starts_with(part))
        .map(|(s, r)| (*s, r.clone()))
}

/// Read and parse one owner's delegations; `Ok(None)` when it has no files.
pub fn load_owner(
    data_dir: &Path,
    owner: &OrgNumber,
    policies: &PolicyBundle,
    known: Option<&OwnerDelegations>,
) -> Result<Option<OwnerDelegations>, LoadError> {
    match read_owner(data_dir, owner, known)? {
        None => Ok(None),
        Some(read) => parse_owner(data_dir, owner, &read, policies, known).map(Some),
    }
}

/// The names (below `delegations/`) and stamps of an owner's files now,
/// without reading them, in the form of [`OwnerDelegations::stamps`]; empty
/// when it has none.
pub fn owner_stamps(data_dir: &Path, owner: &OrgNumber) -> Vec<(String, FileStamp)> {
    if let Ok(m) = std::fs::symlink_metadata(owner_file(data_dir, owner)) {
        return vec![(format!("{owner}.json"), FileStamp::of(&m))];
    }
    let mut out = Vec::new();
    let dir = owner_dir(data_dir, owner);
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
        for part in list_parts(data_dir, owner).unwrap_or_default() {
            if let Ok(m) = std::fs::symlink_metadata(dir.join(part_file_name(&part))) {
                out.push((part_name(owner, &part), FileStamp::of(&m)));
            }
        }
    }
    out
}

/// The owners that have a file or a directory in `delegations/`. A `*.json`
/// file whose name is not an org number is reported as an error, not ignored,
/// so a typo is noticed.
pub fn list_owner_files(data_dir: &Path) -> Result<(Vec<OrgNumber>, Vec<LoadError>), LoadError> {
    let dir = data_dir.join(DELEGATIONS_DIR);
    let mut owners = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((owners, errors)),
        Err(e) => return Err(LoadError::new(dir.display(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| LoadError::new(dir.display(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_visible(&name) {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            // A split owner's parts; other directories are not ours.
            if let Some(o) = owner_of_path(data_dir, &entry.path()) {
                owners.push(o);
            }
            continue;
        }
        // Only `*.json` is ours; other files (an editor's `.bak`, a README) are
        // left alone, but a `.json` with a bad name is an error, not ignored.
        // A symlink is listed, so that reading it reports the refusal.
        if !name.ends_with(".json") || !(kind.is_file() || kind.is_symlink()) {
            continue;
        }
        match owner_of_path(data_dir, &entry.path()) {
            Some(o) => owners.push(o),
            None => errors.push(LoadError::new(
                entry.path().display(),
                "not a delegation file: expected `<orgnr>.json` with a valid 9-digit org number",
            )),
        }
    }
    owners.sort();
    owners.dedup();
    Ok((owners, errors))
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
