//! The one place a store error becomes a `tonic::Status`: which code each
//! [`StoreError`] gets, and which are logged (at `error`: the operator has
//! something to look at). The message is the error's own `Display`. This module
//! decides nothing about the errors themselves.

use tonic::{Code, Status};

use crate::store::StoreError;

/// The status for a store error.
pub fn store_error(e: StoreError) -> Status {
    let code = match &e {
        StoreError::UnknownRight { .. }
        | StoreError::NoRights { .. }
        | StoreError::SameParty { .. } => Code::InvalidArgument,
        StoreError::Forbidden { .. } => Code::PermissionDenied,
        StoreError::NothingDelegated { .. }
        | StoreError::NotDelegated { .. }
        | StoreError::UnknownToken { .. } => Code::NotFound,
        StoreError::TokenUsed { .. }
        | StoreError::TokenExpired { .. }
        | StoreError::NothingToRestore { .. }
        | StoreError::DoesNotFitPolicies(_)
        | StoreError::RolesInvalid(_) => Code::FailedPrecondition,
        StoreError::CorruptFile(_) | StoreError::Symlink(_) => {
            tracing::error!(error = %e, "refused a write");
            Code::FailedPrecondition
        }
        StoreError::ConcurrentEdit { .. } => Code::Aborted,
        StoreError::Storage(_) => {
            tracing::error!(error = %e, "storage error");
            Code::Unavailable
        }
        StoreError::InEffect { .. } => {
            tracing::error!(error = %e, "a change took effect but did not complete");
            Code::Internal
        }
    };
    Status::new(code, e.to_string())
}

/// The status for a write task that did not finish (it panicked or was cancelled).
pub fn task_failed(e: tokio::task::JoinError) -> Status {
    tracing::error!(error = %e, "a write task failed");
    Status::internal(format!("write task failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OrgNumber, PersonId, UndoToken};

    #[test]
    fn unknown_and_forbidden_tokens_look_alike_on_the_wire() {
        let token = UndoToken::parse_exact(&"a".repeat(32)).unwrap();
        let actor = PersonId::parse("01017012345").unwrap();
        let s = store_error(StoreError::UnknownToken { token, actor });
        assert_eq!(s.code(), Code::NotFound);
        assert!(
            s.message().starts_with("no undo token `aaaa"),
            "{}",
            s.message()
        );
        let s = store_error(StoreError::ConcurrentEdit {
            owner: OrgNumber::parse("991825827").unwrap(),
        });
        assert_eq!(s.code(), Code::Aborted);
    }
}
