//! Undo records: what a revocation removed, kept as one file per token in
//! `undo/` in the data directory so a token survives a restart. A token works
//! once, until it expires. A record is kept for [`RETENTION`] after it expires,
//! then pruned. This module reads, writes and prunes records; whether a caller
//! may use one is the store's to decide.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::files::{DataDir, Place, WriteError};
use crate::ids::{IdError, OrgNumber, UndoToken};

pub const UNDO_DIR: &str = "undo";

/// How long a record outlives its expiry: long enough that a late undo is told
/// "expired at …" or "already used at … by …" rather than "unknown", short
/// enough that `undo/` does not grow with every revocation ever made. The
/// audit log keeps the history.
pub const RETENTION: time::Duration = time::Duration::days(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoRecord {
    pub owner: String,
    pub supplier: String,
    /// The rights the revocation removed; undo gives back exactly these.
    pub rights: Vec<String>,
    /// When the supplier first got rights, restored if the revocation removed all.
    pub created_at: String,
    pub revoked_by: String,
    pub revoked_at: String,
    pub expires_at: String,
    pub used_at: Option<String>,
    pub used_by: Option<String>,
}

impl UndoRecord {
    /// When the token stops working; `None` if `expires_at` does not parse.
    pub fn expiry(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.expires_at, &Rfc3339).ok()
    }

    /// The owner and supplier, re-parsed: a record is a file someone could edit.
    pub fn pair(&self) -> Result<(OrgNumber, OrgNumber), IdError> {
        Ok((
            OrgNumber::parse(&self.owner)?,
            OrgNumber::parse(&self.supplier)?,
        ))
    }
}

/// Why a token's record could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No record: never issued, or pruned.
    #[error("no undo record")]
    Missing,
    /// There is a file, but no usable record in it (not JSON, a symlink, ...).
    #[error("undo record `{}` is unreadable: {reason}", file.display())]
    Unreadable { file: PathBuf, reason: String },
}

fn file_name(token: &UndoToken) -> String {
    // `UndoToken` is 32 lowercase hex digits (see `ids`), safe as a file name.
    format!("{token}.json")
}

pub fn save(data: &DataDir, token: &UndoToken, record: &UndoRecord) -> Result<(), WriteError> {
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| WriteError::NotApplied(std::io::Error::other(e)))?;
    data.write_atomic(Place::Undo, &file_name(token), &bytes)
        .map(drop)
}

pub fn load(data: &DataDir, token: &UndoToken) -> Result<UndoRecord, RecordError> {
    let name = file_name(token);
    let unreadable = |reason: String| RecordError::Unreadable {
        file: data.shown(Place::Undo, &name),
        reason,
    };
    match data.read(Place::Undo, &name) {
        Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string())),
        Ok(None) => Err(RecordError::Missing),
        Err(e) => Err(unreadable(e.to_string())),
    }
}

/// What [`prune`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub removed: usize,
    /// Records kept because they could not be read or have no readable expiry:
    /// nothing is deleted on a guess.
    pub unreadable: Vec<PathBuf>,
}

/// Remove the records that expired before `cutoff`. Only regular files named
/// like a token are looked at. The directory is not fsynced: a prune a crash
/// undoes is simply done again.
pub fn prune(data: &DataDir, cutoff: OffsetDateTime) -> std::io::Result<Pruned> {
    let mut pruned = Pruned::default();
    for name in data.regular_files(Place::Undo)? {
        let token = name
            .strip_suffix(".json")
            .and_then(|stem| UndoToken::parse_exact(stem).ok());
        let Some(token) = token else {
            continue;
        };
        match load(data, &token).map(|r| r.expiry()) {
            Ok(Some(e)) if e < cutoff => {
                if data.unlink(Place::Undo, &name)? {
                    pruned.removed += 1;
                }
            }
            Ok(Some(_)) | Err(RecordError::Missing) => {}
            Ok(None) | Err(RecordError::Unreadable { .. }) => {
                pruned.unreadable.push(data.shown(Place::Undo, &name));
            }
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(expires_at: &str) -> UndoRecord {
        UndoRecord {
            owner: "991825827".into(),
            supplier: "983887457".into(),
            rights: vec!["instances-read".into()],
            created_at: "2026-01-01T00:00:00Z".into(),
            revoked_by: "01017012345".into(),
            revoked_at: "2026-01-01T00:00:00Z".into(),
            expires_at: expires_at.into(),
            used_at: None,
            used_by: None,
        }
    }

    #[test]
    fn prune_removes_only_records_expired_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let token = |_| UndoToken::generate().unwrap();
        let (old, recent, fresh) = (token(0), token(1), token(2));
        save(&data, &old, &record("2026-01-01T00:00:00Z")).unwrap();
        save(&data, &recent, &record("2026-03-01T00:00:00Z")).unwrap();
        save(&data, &fresh, &record("2027-01-01T00:00:00Z")).unwrap();
        let undo = dir.path().join(UNDO_DIR);
        // Not records, or unreadable ones: never removed.
        std::fs::write(undo.join(".tmp-123"), "x").unwrap();
        std::fs::write(undo.join("notes.json"), "{}").unwrap();
        let broken = undo.join(format!("{}.json", token(3)));
        std::fs::write(&broken, "{ not json").unwrap();
        // A symlink named like a record: not followed, not removed.
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("old.json");
        std::fs::copy(undo.join(format!("{old}.json")), &target).unwrap();
        let linked = token(4);
        std::os::unix::fs::symlink(&target, undo.join(format!("{linked}.json"))).unwrap();

        let cutoff = OffsetDateTime::parse("2026-02-01T00:00:00Z", &Rfc3339).unwrap();
        let pruned = prune(&data, cutoff).unwrap();
        assert_eq!(pruned.removed, 1);
        assert_eq!(pruned.unreadable, vec![broken.clone()]);
        assert!(matches!(load(&data, &old), Err(RecordError::Missing)));
        assert!(matches!(
            load(&data, &linked),
            Err(RecordError::Unreadable { .. })
        ));
        assert!(matches!(load(&data, &token(5)), Err(RecordError::Missing)));
        assert!(load(&data, &recent).is_ok());
        assert!(load(&data, &fresh).is_ok());
        for kept in [".tmp-123", "notes.json"] {
            assert!(undo.join(kept).exists());
        }
        assert!(broken.exists());
        assert!(target.exists() && undo.join(format!("{linked}.json")).is_symlink());
        assert_eq!(prune(&data, cutoff).unwrap().removed, 0, "idempotent");
    }
}
