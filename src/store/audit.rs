//! The append-only audit log (`audit.jsonl` in the data directory): one JSON line
//! per change, written and fsynced before the change is acknowledged, and one
//! per refused admin call (who tried what, and why it was refused). Each line
//! says how its actor was established ([`ActorAuth`]): a change line has
//! `change`, a refusal line `refused`. This module decides what a line holds,
//! how many refusals are written (a flood of refused calls must not become a
//! flood of fsyncs: [`RefusalGate`]) and when the log was rotated; the file
//! work itself is `files`'.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::files::{DataDir, FileId, Place};
use std::collections::BTreeSet;

use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};

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

/// How the actor of a line was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActorAuth {
    /// A person verified by a bearer token (`--admin-jwks`).
    Token,
    /// A person by their client certificate (`--admin-client-identities`).
    ClientCertificate,
    /// The person a service (by its client certificate) said it acts for;
    /// the line's `service` names it.
    Service,
    /// Development mode (no `--admin-jwks`): `actor` as the request wrote it.
    Unverified,
    /// Nobody: the call was refused before anyone was verified.
    None,
    /// A person verified by an OpenID Connect login (ID-porten) on the web
    /// page.
    Login,
}

/// Where a write or refusal came from, when not the gRPC admin API (whose
/// lines have no `channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// The owner's web page.
    Web,
}

/// The person a write acts for, and how that was established. A plain
/// `&PersonId` converts to an unverified actor (the store's own callers and
/// tests verify nobody).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    pub person: &'a PersonId,
    pub auth: ActorAuth,
    /// The service that said it acts for `person` ([`ActorAuth::Service`]).
    pub service: Option<&'a str>,
    /// `None`: the gRPC admin API.
    pub channel: Option<Channel>,
}

impl<'a> From<&'a PersonId> for Actor<'a> {
    fn from(person: &'a PersonId) -> Self {
        Self {
            person,
            auth: ActorAuth::Unverified,
            service: None,
            channel: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time: String,
    pub actor: String,
    /// Lines written before this field existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_auth: Option<ActorAuth>,
    /// The service that acted for `actor`, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `web` for the owner's page; absent for the gRPC admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    pub owner: String,
    pub supplier: String,
    pub change: Change,
    pub rights_before: Vec<String>,
    pub rights_after: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_token: Option<String>,
}

impl AuditRecord {
    /// The line of one acknowledged change, by `actor`.
    #[allow(clippy::too_many_arguments)]
    pub fn of_change(
        time: String,
        actor: Actor<'_>,
        owner: OrgNumber,
        supplier: OrgNumber,
        change: Change,
        before: &BTreeSet<RightId>,
        after: &BTreeSet<RightId>,
        undo_token: Option<&UndoToken>,
    ) -> Self {
        let ids = |rights: &BTreeSet<RightId>| rights.iter().map(|r| r.to_string()).collect();
        Self {
            time,
            actor: actor.person.to_string(),
            actor_auth: Some(actor.auth),
            service: actor.service.map(str::to_string),
            channel: actor.channel,
            owner: owner.to_string(),
            supplier: supplier.to_string(),
            change,
            rights_before: ids(before),
            rights_after: ids(after),
            undo_token: undo_token.map(UndoToken::to_string),
        }
    }
}

/// A refused admin call: who tried what, and why it was refused. Values the
/// caller wrote that did not parse are shown cut short and escaped
/// (`ids::echo`); a token is never written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRecord {
    pub time: String,
    /// The call: `delegate`, `revoke`, `undo`, `list_delegations`, `list_rights`.
    pub refused: String,
    /// `unauthenticated`, `actor_mismatch`, `forbidden`, `unknown_token`,
    /// `roles_invalid`.
    pub reason: String,
    /// The verified person, or (unverified) the actor the request named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub actor_auth: ActorAuth,
    /// The service calling, when a client certificate named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `web` for the owner's page; absent for the gRPC admin API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// The `actor` the request named, when it is not `actor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rights: Vec<String>,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// Why, as the caller was told.
    pub detail: String,
    /// Refusals not written since the line before this one, because they
    /// came faster than [`RefusalGate`] lets through (all are counted in
    /// `tilgang_admin_refusals_total`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_recorded_before: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How many refusal lines may be written: a token bucket of `burst` lines
/// refilled at `per_second`. Beyond it, refusals are counted and the next
/// line written says how many were not.
#[derive(Debug)]
pub struct RefusalGate {
    state: Mutex<Gate>,
    burst: f64,
    per_second: f64,
}

#[derive(Debug)]
struct Gate {
    tokens: f64,
    at: Instant,
    skipped: u64,
}

impl RefusalGate {
    /// For callers who are someone: verified, or development mode.
    pub const BURST: f64 = 200.0;
    pub const PER_SECOND: f64 = 50.0;
    /// For callers nobody verified: anyone who reaches the port. At most
    /// about 5 lines (a few KB) a second of a sustained flood.
    pub const ANONYMOUS_BURST: f64 = 100.0;
    pub const ANONYMOUS_PER_SECOND: f64 = 5.0;

    pub fn new(burst: f64, per_second: f64) -> Self {
        Self {
            state: Mutex::new(Gate {
                tokens: burst,
                at: Instant::now(),
                skipped: 0,
            }),
            burst,
            per_second,
        }
    }

    /// `Some(n)`: write this refusal, and say `n` were not written before it.
    /// `None`: over the rate; it is counted for the next line.
    pub fn admit(&self) -> Option<u64> {
        let mut g = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(g.at).as_secs_f64() * self.per_second;
        g.tokens = (g.tokens + refill).min(self.burst);
        g.at = now;
        if g.tokens >= 1.0 {
            g.tokens -= 1.0;
            Some(std::mem::take(&mut g.skipped))
        } else {
            g.skipped += 1;
            None
        }
    }
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

    /// Append one change record and fsync it.
    pub fn append(&self, record: &AuditRecord) -> std::io::Result<()> {
        self.append_line(record)
    }

    /// Append one refusal record and fsync it.
    pub fn append_refusal(&self, record: &RefusalRecord) -> std::io::Result<()> {
        self.append_line(record)
    }

    fn append_line(&self, record: &impl Serialize) -> std::io::Result<()> {
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
            actor_auth: Some(ActorAuth::Token),
            service: None,
            channel: None,
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
