//! Undo records: what a revocation removed, kept as one file per token in
//! `undo/` in the data directory so a token survives a restart. A token works
//! once, until it expires. A record is kept for [`RETENTION`] after it expires,
//! then pruned.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::StoreError;
use super::files::WriteError;
use crate::ids::{OrgNumber, UndoToken};

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

    pub fn pair(&self) -> Result<(OrgNumber, OrgNumber), StoreError> {
        let parse = |s: &str| {
            OrgNumber::parse(s).map_err(|e| {
                StoreError::FailedPrecondition(format!("the undo record is unreadable: {e}"))
            })
        };
        Ok((parse(&self.owner)?, parse(&self.supplier)?))
    }
}

fn path(data_dir: &Path, token: &UndoToken) -> PathBuf {
    // `UndoToken` is 32 lowercase hex digits (see `ids`), safe as a file name.
    data_dir.join(UNDO_DIR).join(format!("{token}.json"))
}

pub fn save(data_dir: &Path, token: &UndoToken, record: &UndoRecord) -> Result<(), WriteError> {
    let bytes = serde_json::to_vec_pretty(record)
        .map_err(|e| WriteError::NotApplied(std::io::Error::other(e)))?;
    super::files::write_atomic(&path(data_dir, token), &bytes).map(drop)
}

pub fn load(data_dir: &Path, token: &UndoToken) -> Result<UndoRecord, StoreError> {
    match std::fs::read(path(data_dir, token)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::FailedPrecondition(format!("the undo record is unreadable: {e}"))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound(format!(
            "unknown undo token: no revocation has it (a token is forgotten {} days after it expires)",
            RETENTION.whole_days()
        ))),
        Err(e) => Err(e.into()),
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

/// Remove the records that expired before `cutoff`. Only files named like a
/// token are looked at; temp files of atomic writes are left to their writer.
pub fn prune(data_dir: &Path, cutoff: OffsetDateTime) -> std::io::Result<Pruned> {
    let dir = data_dir.join(UNDO_DIR);
    let mut pruned = Pruned::default();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let token = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|stem| UndoToken::parse_exact(stem).ok());
        let Some(token) = token else {
            continue;
        };
        match load(data_dir, &token).ok().and_then(|r| r.expiry()) {
            Some(e) if e < cutoff => match std::fs::remove_file(&path) {
                Ok(()) => pruned.removed += 1,
                // Gone already: nothing to prune.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            Some(_) => {}
            None => pruned.unreadable.push(path),
        }
    }
    if pruned.removed > 0 {
        super::files::sync_dir(&dir)?;
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
        std::fs::create_dir(dir.path().join(UNDO_DIR)).unwrap();
        let token = |_| UndoToken::generate().unwrap();
        let (old, recent, fresh) = (token(0), token(1), token(2));
        save(dir.path(), &old, &record("2026-01-01T00:00:00Z")).unwrap();
        save(dir.path(), &recent, &record("2026-03-01T00:00:00Z")).unwrap();
        save(dir.path(), &fresh, &record("2027-01-01T00:00:00Z")).unwrap();
        let undo = dir.path().join(UNDO_DIR);
        // Not records, or unreadable ones: never removed.
        std::fs::write(undo.join(".tmp-123"), "x").unwrap();
        std::fs::write(undo.join("notes.json"), "{}").unwrap();
        let broken = undo.join(format!("{}.json", token(3)));
        std::fs::write(&broken, "{ not json").unwrap();

        let cutoff = OffsetDateTime::parse("2026-02-01T00:00:00Z", &Rfc3339).unwrap();
        let pruned = prune(dir.path(), cutoff).unwrap();
        assert_eq!(pruned.removed, 1);
        assert_eq!(pruned.unreadable, vec![broken.clone()]);
        assert!(matches!(
            load(dir.path(), &old),
            Err(StoreError::NotFound(_))
        ));
        assert!(load(dir.path(), &recent).is_ok());
        assert!(load(dir.path(), &fresh).is_ok());
        for kept in [".tmp-123", "notes.json"] {
            assert!(undo.join(kept).exists());
        }
        assert!(broken.exists());
        assert_eq!(prune(dir.path(), cutoff).unwrap().removed, 0, "idempotent");
    }
}
