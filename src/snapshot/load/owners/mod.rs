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
//! `layout`: the names (of files, parts and owners in paths) and the
//! arithmetic of parts (`counting`, `part_for`, `plan`), no I/O. This module:
//! reading, parsing and listing the files.
//!
//! The shortest name wins: while `<owner>.json` exists it *is* the owner's
//! delegations and the directory `<owner>/` beside it is not read; while
//! `974.json` exists, `9741.json` is not read. That is a split in progress
//! (the store writes the new files, then removes the one they replace), or
//! one a crash interrupted, which the owner's next admin write there does
//! again. So there is no moment, crash or not, when a supplier's delegation
//! is in two files that count, or in none.

mod layout;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[allow(unused_imports)]
use super::*;
use crate::ids::OrgNumber;
use crate::snapshot::{
    DelegationRecord, Digest, FileStamp, OwnerDelegations, OwnerFile, PolicyBundle, Suppliers,
};
use layout::part_of_name;
pub use layout::{
    PART_MAX, PART_MAX_DIGITS, PART_MIN_DIGITS, SPLIT_AT, counting, owner_dir, owner_file,
    owner_of_path, part_file_name, part_for, part_name, plan,
};

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
