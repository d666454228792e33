//! Who is calling the admin listener: the person an ID-porten bearer token
//! names (`--admin-jwks`), or the person or service a client certificate is
//! mapped to (`--admin-client-identities`, see [`super::clients`]); or,
//! without either, nobody verified (development mode, loopback only, where
//! the request's `actor` is taken as written). A bearer token, when sent,
//! decides; a certificate is looked at only without one.
//!
//! This module says who the caller is, and whether the `actor` a request names
//! may be acted for; what that person may do for an owner is the admin
//! policy's (Cedar, through `store::authorize`). It maps no error to a status
//! (`grpc::status` does), and never logs or returns a token.

use std::borrow::Cow;
use std::sync::Arc;

use super::clients::{ClientIdentities, ClientIdentity, UnmappedClient};
use super::error::TokenError;
use super::verify::Verifier;
use crate::ids::{IdError, PersonId};

/// ID-porten's claim for the logged-in person: the national identity number.
pub const DEFAULT_PERSON_CLAIM: &str = "pid";

/// How the admin listener establishes who is calling. Neither tokens nor
/// clients: development mode (`actor` trusted as written; only allowed on a
/// loopback listener, and every audit line says the actor is unverified).
#[derive(Debug, Clone, Default)]
pub struct AdminAuth {
    /// `--admin-jwks`.
    pub tokens: Option<Tokens>,
    /// `--admin-client-identities`.
    pub clients: Option<Arc<ClientIdentities>>,
}

/// Bearer tokens verified against `--admin-jwks`; the person is the
/// `person_claim` claim.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub verifier: Arc<Verifier>,
    pub person_claim: Arc<str>,
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Development mode: nobody verified; `actor` names the person.
    Unverified,
    /// A verified person: named by a bearer token, or a client certificate
    /// mapped to them.
    Person { id: PersonId, by: Proof },
    /// A service, by its client certificate, trusted to name the person it
    /// acts for in `actor`.
    Service(String),
}

/// What verified a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Token,
    ClientCertificate,
}

/// Why a call is not authenticated: the caller is told (`UNAUTHENTICATED`),
/// and the refusal is on record.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no bearer token: this admin listener requires `authorization: Bearer <token>` (an ID-porten token)"
    )]
    NoToken,
    #[error("no client certificate this admin listener knows: {0}")]
    Client(#[from] UnmappedClient),
    #[error(
        "no credentials: this admin listener requires a bearer token (`authorization: Bearer <token>`) or a client certificate listed in its client identities"
    )]
    NoCredentials,
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
#[error(
    "`actor` must be empty or the verified caller (the person the bearer token or client certificate names)"
)]
pub struct ActorMismatch;

impl AdminAuth {
    pub fn is_development(&self) -> bool {
        self.tokens.is_none() && self.clients.is_none()
    }

    /// Who the call is from, given its `authorization` header (the raw
    /// value, if any) and its verified client certificate (DER, if any). No
    /// I/O: the key set is a lock-free load.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        certificate: Option<&[u8]>,
    ) -> Result<Caller, AuthError> {
        if self.is_development() {
            return Ok(Caller::Unverified);
        }
        match (&self.tokens, authorization, &self.clients, certificate) {
            (Some(tokens), Some(header), _, _) => tokens.person(header),
            (_, _, Some(clients), Some(der)) => Ok(match clients.identify(der)? {
                ClientIdentity::Person(id) => Caller::Person {
                    id,
                    by: Proof::ClientCertificate,
                },
                ClientIdentity::Service(name) => Caller::Service(name),
            }),
            (Some(_), None, None, _) => Err(AuthError::NoToken),
            _ => Err(AuthError::NoCredentials),
        }
    }
}

impl Tokens {
    fn person(&self, header: &[u8]) -> Result<Caller, AuthError> {
        let header = std::str::from_utf8(header).map_err(|_| AuthError::NotBearer)?;
        let token = super::bearer(header).ok_or(AuthError::NotBearer)?;
        let claims = self.verifier.verify(token)?;
        let claim = &*self.person_claim;
        let person = |source| AuthError::Person {
            claim: TokenError::claim_name(claim),
            source,
        };
        let value = claims
            .require_str(claim)
            .map_err(|e| person(PersonError::Claim(e)))?;
        let id = PersonId::parse(value).map_err(|e| person(PersonError::Id(e)))?;
        Ok(Caller::Person {
            id,
            by: Proof::Token,
        })
    }
}

impl Caller {
    /// The person a request acts for, given its `actor` field: a verified
    /// person acts for themselves (`actor` empty or the same person); an
    /// unverified caller or a service for whoever `actor` names (`None`: the
    /// caller must parse `actor`, and say so naming the field).
    pub fn acting_for(&self, actor: &str) -> Result<Option<PersonId>, ActorMismatch> {
        match self {
            Self::Unverified | Self::Service(_) => Ok(None),
            Self::Person { id, .. } if actor.is_empty() || actor == id.as_str() => {
                Ok(Some(id.clone()))
            }
            Self::Person { .. } => Err(ActorMismatch),
        }
    }

    /// The verified person, if any.
    pub fn person(&self) -> Option<&PersonId> {
        match self {
            Self::Person { id, .. } => Some(id),
            Self::Unverified | Self::Service(_) => None,
        }
    }

    /// The service, if the caller is one.
    pub fn service(&self) -> Option<&str> {
        match self {
            Self::Service(name) => Some(name),
            Self::Unverified | Self::Person { .. } => None,
        }
    }
}
