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
///
/// Rotation by rename (logrotate without `copytruncate`) is supported: before
/// each append the path is checked, and a log moved away is replaced by a new
/// one, so no line goes to the rotated file after the move. (`copytruncate`
/// would lose the lines written between its copy and its truncate.)
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// The open log and its inode.
    file: Mutex<(File, u64)>,
}

impl AuditLog {
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(AUDIT_FILE);
        let file = Self::open_file(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// Open (creating if need be) for appending, durably linked in its directory.
    fn open_file(path: &Path) -> std::io::Result<(File, u64)> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        if let Some(dir) = path.parent() {
            super::files::sync_dir(dir)?;
        }
        let inode = inode(&file.metadata()?);
        Ok((file, inode))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record and fsync it.
    pub fn append(&self, record: &AuditRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut guard = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let moved = match std::fs::metadata(&self.path) {
            Ok(m) => inode(&m) != guard.1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
        };
        if moved {
            *guard = Self::open_file(&self.path)?;
            tracing::info!(file = %self.path.display(), "audit log was moved away; started a new one");
        }
        let file = &mut guard.0;
        file.write_all(&line)?;
        file.sync_data()
    }
}

fn inode(meta: &std::fs::Metadata) -> u64 {
    crate::snapshot::FileStamp::of(meta).inode
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(actor: &str) -> AuditRecord {
        AuditRecord {
            time: "2026-11-25T00:00:00Z".into(),
            actor: actor.into(),
            owner: "991825827".into(),
            supplier: "983887457".into(),
            change: Change::Grant,
            rights_before: vec![],
            rights_after: vec!["instances-read".into()],
            undo_token: None,
        }
    }

    fn lines(path: &Path) -> Vec<AuditRecord> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_log_rotated_by_rename_is_started_anew() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        log.append(&record("a")).unwrap();
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(log.path(), &rotated).unwrap();
        log.append(&record("b")).unwrap();
        log.append(&record("c")).unwrap();
        assert_eq!(lines(&rotated), [record("a")]);
        assert_eq!(lines(log.path()), [record("b"), record("c")]);
        // Deleted outright: also started anew.
        std::fs::remove_file(log.path()).unwrap();
        log.append(&record("d")).unwrap();
        assert_eq!(lines(log.path()), [record("d")]);
    }
}
