//! Who may write. Every admin write passes here before it reads or writes
//! anything for its owner: no write runs while `roles.json` does not load
//! (fail closed), and otherwise the admin policy decides (`engine::may_administer`).
//! Pure: decides from a snapshot, does no I/O.

use super::StoreError;
use crate::engine;
use crate::ids::{OrgNumber, PersonId};
use crate::snapshot::Snapshot;

/// Refuse while `roles.json` on disk does not load: the roles in the snapshot
/// are then the last good ones, and someone is changing them.
pub(super) fn roles_usable(snap: &Snapshot) -> Result<(), StoreError> {
    match &snap.roles_problem {
        Some(problem) => Err(StoreError::RolesInvalid(problem.clone())),
        None => Ok(()),
    }
}

/// Refuse unless the admin policy lets `actor` act for `owner`.
pub(super) fn authorize(
    snap: &Snapshot,
    actor: &PersonId,
    owner: &OrgNumber,
) -> Result<(), StoreError> {
    roles_usable(snap)?;
    let verdict = engine::may_administer(snap, actor, owner);
    if verdict.decision.allowed {
        return Ok(());
    }
    let required: Vec<&str> = snap
        .policies
        .policies
        .policies()
        .filter_map(|p| p.annotation("requires"))
        .collect();
    let required = if required.is_empty() {
        "a role the admin policy accepts".to_string()
    } else {
        required.join(" or ")
    };
    Err(StoreError::Forbidden {
        actor: actor.clone(),
        owner: *owner,
        required,
        held: verdict.roles,
        policy_errors: verdict.decision.errors,
    })
}
