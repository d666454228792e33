//! The append-only audit log (`audit.jsonl` in the data directory): one JSON line
//! per change, written and fsynced before the change is acknowledged. This
//! module decides what a line holds and when the log was rotated; the file
//! work itself is `files`'.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::files::{DataDir, FileId, Place};

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
/// would lose the lines written between its copy and its truncate.) The log is
/// opened with `O_NOFOLLOW`: a symlink at `audit.jsonl` is refused, and no line
/// is written through it.
#[derive(Debug)]
pub struct AuditLog {
    data: Arc<DataDir>,
    /// The open log and its identity, to notice a rotation.
    file: Mutex<(File, FileId)>,
}

impl AuditLog {
    pub fn open(data: Arc<DataDir>) -> std::io::Result<Self> {
        let file = data.open_append(Place::Data, AUDIT_FILE)?;
        Ok(Self {
            data,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.data.shown(Place::Data, AUDIT_FILE)
    }

    /// Append one record and fsync it.
    pub fn append(&self, record: &AuditRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut guard = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.data.file_id(Place::Data, AUDIT_FILE)? != Some(guard.1) {
            *guard = self.data.open_append(Place::Data, AUDIT_FILE)?;
            tracing::info!(file = %self.path().display(), "audit log was moved away; started a new one");
        }
        self.data
            .append_durable(&mut guard.0, Place::Data, AUDIT_FILE, &line)
    }
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

    fn lines(path: &std::path::Path) -> Vec<AuditRecord> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_log_rotated_by_rename_is_started_anew() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(Arc::new(DataDir::open(dir.path()).unwrap())).unwrap();
        log.append(&record("a")).unwrap();
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(log.path(), &rotated).unwrap();
        log.append(&record("b")).unwrap();
        log.append(&record("c")).unwrap();
        assert_eq!(lines(&rotated), [record("a")]);
        assert_eq!(lines(&log.path()), [record("b"), record("c")]);
        // Deleted outright: also started anew.
        std::fs::remove_file(log.path()).unwrap();
        log.append(&record("d")).unwrap();
        assert_eq!(lines(&log.path()), [record("d")]);
    }
}
