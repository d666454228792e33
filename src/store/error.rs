//! What can go wrong with an admin write, said in the store's own terms: each
//! variant names what happened and carries the data, and its `Display` is the
//! message a caller sees (lowercase, user input in backticks). Which gRPC code
//! each one becomes is decided in `grpc::status`, not here.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::files::SymlinkRefused;
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};
use crate::snapshot::load::{LoadError, ROLES_FILE};
use crate::telemetry::metrics::{AdminResult, Refusal};
use crate::telemetry::{AdminFailure, StoreFailure};

/// Why a write was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A right id that is not in the catalogue.
    #[error("`rights`: unknown right `{right}`; known rights: {known}")]
    UnknownRight { right: RightId, known: String },
    /// `Delegate` named no right.
    #[error("`rights` is empty: name at least one of {known}")]
    NoRights { known: String },
    /// `supplier` is `owner`.
    #[error("`supplier` must differ from `owner` (both are {org})")]
    SameParty { org: OrgNumber },
    /// The admin policy refuses `actor` for `owner`. `required` is the
    /// policies' `@requires` text, `held` the roles the actor has for `owner`.
    #[error(
        "actor `{actor}` may not administer delegations for {owner}: missing role: {required} \
         for {owner} (roles held for {owner}: {}){}",
        list_or_none(held),
        policy_errors_suffix(policy_errors)
    )]
    Forbidden {
        actor: PersonId,
        owner: OrgNumber,
        required: String,
        held: BTreeSet<String>,
        policy_errors: Vec<String>,
    },
    /// `roles.json` on disk does not load: who may administer what is unknown
    /// while someone is changing it, so no admin write runs (fail closed).
    #[error("admin writes are refused until `{}` loads again: {}", ROLES_FILE, .0)]
    RolesInvalid(Arc<LoadError>),
    /// A revocation of a pair with no delegation.
    #[error("{owner} has delegated nothing to {supplier}")]
    NothingDelegated {
        owner: OrgNumber,
        supplier: OrgNumber,
    },
    /// A revocation of rights the supplier does not hold.
    #[error(
        "{} not delegated by {owner} to {supplier} (held: {})",
        backticked(missing),
        joined(held)
    )]
    NotDelegated {
        owner: OrgNumber,
        supplier: OrgNumber,
        missing: BTreeSet<RightId>,
        held: BTreeSet<RightId>,
    },
    /// An undo token `actor` may not use. Unknown, pruned, unreadable and
    /// another owner's tokens all get this one answer, so whether a token
    /// exists cannot be probed.
    #[error(
        "no undo token `{token}` that actor `{actor}` may use: unknown, pruned {} days after \
         expiry, or for an owner `{actor}` does not administer",
        super::undo::RETENTION.whole_days()
    )]
    UnknownToken { token: UndoToken, actor: PersonId },
    /// The token was used already (told only to someone who may administer its owner).
    #[error("undo token was already used at {at} by {by}")]
    TokenUsed { at: String, by: String },
    /// The token's window has passed (told only to someone who may administer its owner).
    #[error("undo token expired at {at}")]
    TokenExpired { at: String },
    /// Every right the revocation removed has since left the catalogue; the
    /// token stays unused.
    #[error(
        "nothing to restore: the revoked rights ({}) are no longer in the catalogue",
        rights.join(", ")
    )]
    NothingToRestore { rights: Vec<String> },
    /// The owner's file on disk does not load; it is left untouched.
    #[error("the delegation file on disk is invalid and was left untouched: {0}")]
    CorruptFile(LoadError),
    /// The changed entities do not fit the policies in force (they changed
    /// during the write); nothing was written.
    #[error("the change does not fit the current policies; nothing was written: {0}")]
    DoesNotFitPolicies(LoadError),
    /// A symlink where tilgang would write; nothing was written.
    #[error("{0}; nothing was written")]
    Symlink(SymlinkRefused),
    /// The owner's file changed on disk between reading it and writing it (a
    /// hand edit); nothing was written, so the edit is kept.
    #[error(
        "the delegations file of {owner} changed on disk during this write; nothing was \
         written; try again"
    )]
    ConcurrentEdit { owner: OrgNumber },
    /// Reading or writing failed before the change took effect.
    #[error("storage error; nothing was acknowledged: {0}")]
    Storage(std::io::Error),
    /// The shared store (PostgreSQL) could not be reached or did not answer;
    /// nothing was written (a transaction that did not commit leaves nothing).
    #[error("the delegation store is unavailable; nothing was written: {reason}")]
    Unavailable { reason: String },
    /// The shared store did not confirm the commit (the connection broke
    /// during it): the change may or may not be in effect. Look before
    /// trying again.
    #[error(
        "the delegation store did not confirm the commit ({reason}); the change may or may not be in effect"
    )]
    CommitUnknown { reason: String },
    /// The caller asked for a store revision this replica has not reached
    /// within the wait (read-your-writes); answering from an older snapshot
    /// could undo what the caller just did.
    #[error(
        "this replica is at store revision {have}, behind the requested minimum {wanted}, \
         after waiting {waited_ms} ms{}",
        reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
    )]
    Behind {
        wanted: u64,
        have: u64,
        waited_ms: u64,
        reason: Option<String>,
    },
    /// The change took effect, but something after it failed: it may not be
    /// durable, or its audit line is missing. Carries a revocation's undo token.
    #[error(
        "the change is in effect, but {}{}",
        in_effect_problems(not_durable.as_ref(), audit.as_ref()),
        undo_token.as_ref().map(|t| format!("; its undo token is {t}")).unwrap_or_default()
    )]
    InEffect {
        not_durable: Option<std::io::Error>,
        audit: Option<std::io::Error>,
        undo_token: Option<UndoToken>,
    },
}

/// What kind of failure a [`StoreError`] is: the one classification the gRPC
/// status (`grpc::status`), the metrics' `result` label (`telemetry`) and
/// the web page's answer use. Every variant is placed in [`StoreError::class`],
/// so a new one must be classified there, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request itself is wrong (unknown right, no rights, owner = supplier).
    Invalid,
    /// The caller may not do this; see [`Refused`] for why.
    Refused(Refused),
    /// Nothing delegated to revoke, or rights not held.
    NotFound,
    /// The state does not allow it: an undo token used or expired, nothing
    /// left to restore, the policies changed during the write.
    Conflict,
    /// Someone else changed the same data during the write; trying again works.
    Retry,
    /// Data on disk the operator must fix (an owner file that does not load,
    /// a symlink where tilgang writes).
    DataError,
    /// Local storage failed before the change took effect.
    Storage,
    /// The shared store is away, or this replica is behind what was asked.
    Unavailable,
    /// The change took effect but something after it failed.
    Incomplete,
}

/// Why a caller was refused, of the refusals the store decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The admin policy refuses the actor for the owner.
    Forbidden,
    /// An undo token the actor may not use.
    UnknownToken,
    /// `roles.json` does not load, so every admin write is refused.
    RolesInvalid,
}

impl StoreError {
    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::UnknownRight { .. } | Self::NoRights { .. } | Self::SameParty { .. } => {
                ErrorClass::Invalid
            }
            Self::Forbidden { .. } => ErrorClass::Refused(Refused::Forbidden),
            Self::UnknownToken { .. } => ErrorClass::Refused(Refused::UnknownToken),
            Self::RolesInvalid(_) => ErrorClass::Refused(Refused::RolesInvalid),
            Self::NothingDelegated { .. } | Self::NotDelegated { .. } => ErrorClass::NotFound,
            Self::TokenUsed { .. }
            | Self::TokenExpired { .. }
            | Self::NothingToRestore { .. }
            | Self::DoesNotFitPolicies(_) => ErrorClass::Conflict,
            Self::ConcurrentEdit { .. } => ErrorClass::Retry,
            Self::CorruptFile(_) | Self::Symlink(_) => ErrorClass::DataError,
            Self::Storage(_) => ErrorClass::Storage,
            Self::Unavailable { .. } | Self::Behind { .. } => ErrorClass::Unavailable,
            Self::InEffect { .. } | Self::CommitUnknown { .. } => ErrorClass::Incomplete,
        }
    }
}

impl From<std::io::Error> for StoreError {
    /// A symlink in the way is its own error (the operator's to fix); anything
    /// else is storage.
    fn from(e: std::io::Error) -> Self {
        let Some(refused) = SymlinkRefused::find(&e) else {
            return StoreError::Storage(e);
        };
        StoreError::Symlink(refused.clone())
    }
}

fn list_or_none(held: &BTreeSet<String>) -> String {
    if held.is_empty() {
        "none".to_string()
    } else {
        held.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn policy_errors_suffix(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!("; policy errors: {}", errors.join("; "))
    }
}

fn backticked(rights: &BTreeSet<RightId>) -> String {
    rights
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn joined(rights: &BTreeSet<RightId>) -> String {
    rights
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn in_effect_problems(
    not_durable: Option<&std::io::Error>,
    audit: Option<&std::io::Error>,
) -> String {
    let mut problems = Vec::new();
    if let Some(e) = not_durable {
        problems.push(format!(
            "it could not be made durable and may not survive a crash ({e})"
        ));
    }
    if let Some(e) = audit {
        problems.push(format!("its audit line could not be written ({e})"));
    }
    problems.join(", and ")
}

/// What the admin log says for an unknown undo token: the token is the
/// caller's own, so the log does not repeat it.
const UNKNOWN_TOKEN: &str = "no undo token this actor may use (unknown, pruned, or for an owner the actor does not administer)";

impl StoreError {
    /// This error in the metrics' and the admin log's words:
    /// [`Self::class`] as their labels.
    pub fn admin_failure(&self) -> AdminFailure<'_> {
        let (result, refusal) = match self.class() {
            ErrorClass::Invalid => (AdminResult::Invalid, None),
            ErrorClass::Refused(why) => (
                AdminResult::Refused,
                Some(match why {
                    Refused::Forbidden => Refusal::Forbidden,
                    Refused::UnknownToken => Refusal::UnknownToken,
                    Refused::RolesInvalid => Refusal::RolesInvalid,
                }),
            ),
            ErrorClass::NotFound => (AdminResult::NotFound, None),
            ErrorClass::Conflict | ErrorClass::Retry => (AdminResult::Conflict, None),
            ErrorClass::DataError => (AdminResult::DataError, None),
            ErrorClass::Storage => (AdminResult::Storage, None),
            ErrorClass::Unavailable => (AdminResult::Unavailable, None),
            ErrorClass::Incomplete => (AdminResult::Incomplete, None),
        };
        let why: &(dyn std::fmt::Display + Sync) = match self {
            Self::UnknownToken { .. } => &UNKNOWN_TOKEN,
            e => e,
        };
        AdminFailure::Store(StoreFailure {
            result,
            refusal,
            why,
        })
    }
}
