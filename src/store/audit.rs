//! The append-only audit log (`audit.jsonl` in the data directory): one JSON line
//! per change, written and fsynced before the change is acknowledged.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

pub const AUDIT_FILE: &str = "audit.jsonl";

/// What kind of change a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    Grant,
    Revoke,
    /// A revocation that removed the supplier's last right.
    RevokeLast,
    Undo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: String,
    pub actor: String,
    pub owner: String,
    pub supplier: String,
    pub change: Change,
    pub rights_before: Vec<String>,
    pub rights_after: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_token: Option<String>,
}

/// Appends records; one writer at a time so lines never interleave.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(AUDIT_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        super::files::sync_dir(data_dir)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record and fsync it.
    pub fn append(&self, record: &AuditRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&line)?;
        file.sync_data()
    }
}
