//! The one place a store error becomes a `tonic::Status`: which code each
//! [`StoreError`] gets, and which are logged (at `error`: the operator has
//! something to look at). The message is the error's own `Display`. This module
//! decides nothing about the errors themselves.

use tonic::{Code, Status};

use crate::auth::admin::{ActorMismatch, AuthError};
use crate::store::{ErrorClass, Refused, StoreError};

/// The status for a store error, by its [`ErrorClass`].
pub fn store_error(e: StoreError) -> Status {
    let code = match e.class() {
        ErrorClass::Invalid => Code::InvalidArgument,
        ErrorClass::Refused(Refused::Forbidden) => Code::PermissionDenied,
        ErrorClass::Refused(Refused::UnknownToken) | ErrorClass::NotFound => Code::NotFound,
        ErrorClass::Refused(Refused::RolesInvalid) | ErrorClass::Conflict => {
            Code::FailedPrecondition
        }
        ErrorClass::DataError => {
            tracing::error!(error = %e, "refused a write");
            Code::FailedPrecondition
        }
        ErrorClass::Retry => Code::Aborted,
        ErrorClass::Storage | ErrorClass::Unavailable => {
            tracing::error!(error = %e, "storage error");
            Code::Unavailable
        }
        ErrorClass::Incomplete => {
            tracing::error!(error = %e, "a change took effect but did not complete");
            Code::Internal
        }
    };
    Status::new(code, e.to_string())
}

/// The status for an admin call that is not authenticated:
/// `UNAUTHENTICATED` with the reason, and `www-authenticate` as RFC 6750
/// says (`error="invalid_token"` when a token was sent but refused), so a
/// client can tell that a token is wanted.
pub fn unauthenticated(e: &AuthError) -> Status {
    let challenge = match e {
        AuthError::NoToken
        | AuthError::NotBearer
        | AuthError::NoCredentials
        | AuthError::Client(_) => r#"Bearer realm="tilgang-admin""#,
        AuthError::Token(_) | AuthError::Person { .. } => {
            r#"Bearer realm="tilgang-admin", error="invalid_token""#
        }
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        "www-authenticate",
        tonic::metadata::MetadataValue::from_static(challenge),
    );
    Status::with_metadata(Code::Unauthenticated, e.to_string(), metadata)
}

/// The status for a request whose `actor` is not the verified caller.
pub fn actor_mismatch(e: &ActorMismatch) -> Status {
    Status::permission_denied(e.to_string())
}

/// The status for a write task that did not finish (it panicked or was cancelled).
pub fn task_failed(e: tokio::task::JoinError) -> Status {
    tracing::error!(error = %e, "a write task failed");
    Status::internal(format!("write task failed: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};
    use crate::snapshot::load::LoadError;
    use crate::store::files::SymlinkRefused;

    /// Every variant, with the code README's status table gives it.
    #[test]
    fn each_store_error_gets_its_documented_code() {
        let org = OrgNumber::parse("991825827").unwrap();
        let other = OrgNumber::parse("983887457").unwrap();
        let actor = PersonId::parse("01017012345").unwrap();
        let right = RightId::parse("instances-read").unwrap();
        let token = UndoToken::parse_exact(&"a".repeat(32)).unwrap();
        let load = LoadError {
            location: "data/x.json".into(),
            message: "bad".into(),
        };
        let io = || std::io::Error::other("disk on fire");
        let cases = [
            (
                StoreError::UnknownRight {
                    right: right.clone(),
                    known: String::new(),
                },
                Code::InvalidArgument,
            ),
            (
                StoreError::NoRights {
                    known: String::new(),
                },
                Code::InvalidArgument,
            ),
            (StoreError::SameParty { org }, Code::InvalidArgument),
            (
                StoreError::Forbidden {
                    actor: actor.clone(),
                    owner: org,
                    required: String::new(),
                    held: Default::default(),
                    policy_errors: vec![],
                },
                Code::PermissionDenied,
            ),
            (
                StoreError::NothingDelegated {
                    owner: org,
                    supplier: other,
                },
                Code::NotFound,
            ),
            (
                StoreError::NotDelegated {
                    owner: org,
                    supplier: other,
                    missing: [right.clone()].into(),
                    held: Default::default(),
                },
                Code::NotFound,
            ),
            (
                StoreError::UnknownToken {
                    token: token.clone(),
                    actor,
                },
                Code::NotFound,
            ),
            (
                StoreError::TokenUsed {
                    at: String::new(),
                    by: String::new(),
                },
                Code::FailedPrecondition,
            ),
            (
                StoreError::TokenExpired { at: String::new() },
                Code::FailedPrecondition,
            ),
            (
                StoreError::NothingToRestore { rights: vec![] },
                Code::FailedPrecondition,
            ),
            (
                StoreError::CorruptFile(load.clone()),
                Code::FailedPrecondition,
            ),
            (
                StoreError::DoesNotFitPolicies(load.clone()),
                Code::FailedPrecondition,
            ),
            (
                StoreError::RolesInvalid(Arc::new(load)),
                Code::FailedPrecondition,
            ),
            (
                StoreError::Symlink(SymlinkRefused {
                    path: "data/undo".into(),
                    wanted: "directory",
                }),
                Code::FailedPrecondition,
            ),
            (StoreError::ConcurrentEdit { owner: org }, Code::Aborted),
            (StoreError::Storage(io()), Code::Unavailable),
            (
                StoreError::InEffect {
                    not_durable: None,
                    audit: Some(io()),
                    undo_token: Some(token),
                },
                Code::Internal,
            ),
        ];
        for (e, code) in cases {
            let message = e.to_string();
            let status = store_error(e);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }
}
