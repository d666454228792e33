//! Undo records: what a revocation removed, kept as one file per token in
//! `undo/` in the data directory so a token survives a restart. A token works
//! once, until it expires.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::files::WriteError;
use crate::ids::{OrgNumber, UndoToken};

pub const UNDO_DIR: &str = "undo";

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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound(
            "unknown undo token: no revocation has it".to_string(),
        )),
        Err(e) => Err(e.into()),
    }
}
