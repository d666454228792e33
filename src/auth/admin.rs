//! Who is calling the admin listener: the person an ID-porten bearer token
//! names (`--admin-jwks`), or, without one, nobody verified (development mode,
//! loopback only, where the request's `actor` is taken as written).
//!
//! This module says who the caller is, and whether the `actor` a request names
//! may be acted for; what that person may do for an owner is the admin
//! policy's (Cedar, through `store::authorize`). It maps no error to a status
//! (`grpc::status` does), and never logs or returns a token.

use std::borrow::Cow;
use std::sync::Arc;

use super::error::TokenError;
use super::verify::Verifier;
use crate::ids::{IdError, PersonId};

/// ID-porten's claim for the logged-in person: the national identity number.
pub const DEFAULT_PERSON_CLAIM: &str = "pid";

/// How the admin listener establishes who is calling.
#[derive(Debug, Clone)]
pub enum AdminAuth {
    /// No `--admin-jwks`: the request's `actor` is trusted as written. Only
    /// allowed on a loopback listener; every audit line says the actor is
    /// unverified.
    Development,
    /// A bearer token verified against `--admin-jwks`; the person is its
    /// `person_claim` claim.
    Tokens {
        verifier: Arc<Verifier>,
        person_claim: Arc<str>,
    },
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Development mode: nobody verified; `actor` names the person.
    Unverified,
    /// The person a verified token names.
    Person(PersonId),
}

/// Why a call is not authenticated: the caller is told (`UNAUTHENTICATED`),
/// and the refusal is on record.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no bearer token: this admin listener requires `authorization: Bearer <token>` (an ID-porten token)"
    )]
    NoToken,
    #[error("the `authorization` header is not `Bearer <token>`")]
    NotBearer,
    #[error("bearer token refused: {0}")]
    Token(#[from] TokenError),
    #[error("the token's `{claim}` claim does not name a person: {source}")]
    Person {
        claim: Cow<'static, str>,
        source: PersonError,
    },
}

/// What is wrong with the person claim.
#[derive(Debug, thiserror::Error)]
pub enum PersonError {
    #[error("{0}")]
    Claim(TokenError),
    #[error("{0}")]
    Id(IdError),
}

/// The request's `actor` names someone other than the verified caller.
#[derive(Debug, thiserror::Error)]
#[error("`actor` must be empty or the person the bearer token names")]
pub struct ActorMismatch;

impl AdminAuth {
    pub fn is_development(&self) -> bool {
        matches!(self, Self::Development)
    }

    /// Who the call is from, given its `authorization` header (the raw
    /// value, if any). No I/O: the key set is a lock-free load.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, AuthError> {
        let (verifier, claim) = match self {
            Self::Development => return Ok(Caller::Unverified),
            Self::Tokens {
                verifier,
                person_claim,
            } => (verifier, person_claim),
        };
        let header = authorization.ok_or(AuthError::NoToken)?;
        let header = std::str::from_utf8(header).map_err(|_| AuthError::NotBearer)?;
        let token = super::bearer(header).ok_or(AuthError::NotBearer)?;
        let claims = verifier.verify(token)?;
        let person = |source| AuthError::Person {
            claim: TokenError::claim_name(claim),
            source,
        };
        let value = claims
            .require_str(claim)
            .map_err(|e| person(PersonError::Claim(e)))?;
        let id = PersonId::parse(value).map_err(|e| person(PersonError::Id(e)))?;
        Ok(Caller::Person(id))
    }
}

impl Caller {
    /// The person a request acts for, given its `actor` field: a verified
    /// caller acts for itself (`actor` empty or the same person); an
    /// unverified one for whoever `actor` names (`None`: the caller must
    /// parse `actor`, and say so naming the field).
    pub fn acting_for(&self, actor: &str) -> Result<Option<PersonId>, ActorMismatch> {
        match self {
            Self::Unverified => Ok(None),
            Self::Person(id) if actor.is_empty() || actor == id.as_str() => Ok(Some(id.clone())),
            Self::Person(_) => Err(ActorMismatch),
        }
    }

    /// The verified person, if any.
    pub fn person(&self) -> Option<&PersonId> {
        match self {
            Self::Unverified => None,
            Self::Person(id) => Some(id),
        }
    }
}
