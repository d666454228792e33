//! The errors of token verification and of loading a key set, each saying what
//! went wrong, not which status to answer with: the gateway makes a rejected
//! token a 401 and the admin listener `UNAUTHENTICATED`, each in its own place.
//!
//! A [`TokenError`] is shown to the caller who sent the token, so every value
//! taken from a token is [`echo`]ed (at most 64 characters, control and
//! invisible characters escaped), and the token itself is never part of one.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use crate::ids::echo;

/// Why a token was not accepted. Every variant is a refusal: there is no
/// error after which a caller may go on as if the token were good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a compact JWS: not three base64url parts, a header that is not a
    /// JSON object, a payload that is not one, a header extension marked
    /// critical. `why` is fixed text, never token content.
    #[error("malformed token: {why}")]
    Malformed { why: &'static str },
    /// Longer than [`super::MAX_TOKEN_BYTES`]: refused before any decoding.
    #[error("token is {len} bytes long; at most {max} are accepted")]
    TooLong { len: usize, max: usize },
    /// `none`, an HMAC algorithm (a public key must never serve as an HMAC
    /// secret), or anything else outside the asymmetric list.
    #[error("algorithm `{alg}` is not accepted; accepted: {}", super::Alg::LIST)]
    AlgorithmNotAllowed { alg: String },
    /// The header names a `kid` the key set does not hold.
    #[error("no key with kid `{kid}`")]
    UnknownKey { kid: String },
    /// The header names no `kid`, and no key in the set fits its algorithm.
    #[error("the token names no kid and no key fits algorithm `{alg}`")]
    NoKeyForAlgorithm { alg: &'static str },
    /// The `kid` exists, but its key is of another type, or the JWK pins
    /// another `alg` (e.g. an `ES256` token naming an RSA key).
    #[error("key `{kid}` is not for algorithm `{alg}`")]
    KeyMismatch { kid: String, alg: &'static str },
    /// No candidate key verifies the signature: forged, tampered with, or
    /// signed by a key that is not (or no longer) in the set.
    #[error("bad signature")]
    BadSignature,
    /// `exp` (plus the leeway) has passed. `at` is the token's `exp`, Unix seconds.
    #[error("token expired at {}", when(*at))]
    Expired { at: i64 },
    /// `nbf` (minus the leeway) is still to come. `from` is the token's `nbf`.
    #[error("token is not valid before {}", when(*from))]
    NotYetValid { from: i64 },
    /// A claim that must be present is absent (`exp` always; `iss` and `aud`
    /// when configured; any the caller asks for with `Claims::require_str`).
    #[error("token has no `{name}` claim")]
    MissingClaim { name: Cow<'static, str> },
    /// A claim has the wrong JSON type (`exp` that is not a number, ...).
    #[error("claim `{name}` is not {want}")]
    InvalidClaim {
        name: Cow<'static, str>,
        want: &'static str,
    },
    /// An object in the payload names a member twice (`supplier`, or `ID`
    /// inside `consumer`, ...): readers disagree on which one counts.
    #[error("claim `{name}` appears more than once")]
    DuplicateClaim { name: Cow<'static, str> },
    #[error("issuer `{got}` is not the expected `{want}`")]
    WrongIssuer { got: String, want: String },
    /// `got` is the token's `aud` as JSON, echoed.
    #[error("audience {got} is not accepted")]
    WrongAudience { got: String },
}

impl TokenError {
    /// A short, stable name for the variant: a metrics label and the `reason`
    /// of a deny body, unlike the message, which may change wording.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "malformed",
            Self::TooLong { .. } => "too_long",
            Self::AlgorithmNotAllowed { .. } => "algorithm_not_allowed",
            Self::UnknownKey { .. } => "unknown_key",
            Self::NoKeyForAlgorithm { .. } => "no_key_for_algorithm",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::MissingClaim { .. } => "missing_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
            Self::DuplicateClaim { .. } => "duplicate_claim",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
        }
    }

    /// A claim name for a message: fixed names stay borrowed, a caller's
    /// (configured) name is echoed like any other value.
    pub(crate) fn claim_name(name: &str) -> Cow<'static, str> {
        match name {
            "exp" => Cow::Borrowed("exp"),
            "nbf" => Cow::Borrowed("nbf"),
            "iss" => Cow::Borrowed("iss"),
            "aud" => Cow::Borrowed("aud"),
            other => Cow::Owned(echo(other)),
        }
    }
}

/// Unix seconds as RFC 3339 UTC, or the number when it is out of range.
fn when(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{t} (Unix time)"))
}

/// Why a JWKS document gives no usable key set. Values from the document are
/// echoed; the key material itself is never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// serde_json's message, with line and column.
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not a JWKS: expected an object with a `keys` array")]
    NotJwks,
    /// One key claims to be a signature key tilgang could use but is broken.
    /// A broken key rejects the whole document rather than being skipped, so
    /// a mistake in a rotation keeps the keys that worked.
    #[error("key {index}{}: {problem}", kid.as_deref().map(|k| format!(" (kid `{k}`)")).unwrap_or_default())]
    Key {
        /// Position in `keys`, from 0.
        index: usize,
        kid: Option<String>,
        problem: String,
    },
    /// Nothing left once keys for other uses were skipped.
    #[error("no key usable for verifying signatures{}", skipped_note(.skipped))]
    NoUsableKeys { skipped: Vec<String> },
}

fn skipped_note(skipped: &[String]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!(" (skipped: {})", skipped.join("; "))
    }
}

/// Why a JWKS file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The cause is the `source`, printed once by whoever prints the chain.
    #[error("cannot read the JWKS file `{}`", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the JWKS file `{}` is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("the JWKS file `{}` is larger than {max} bytes", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    /// Not a `#[source]`: the message already carries it.
    #[error("the JWKS file `{}` is invalid: {problem}", path.display())]
    Invalid { path: PathBuf, problem: KeySetError },
    /// Start-up only: the file changed on every look, so no read of it can be
    /// trusted to be whole.
    #[error("the JWKS file `{}` kept changing for {waited:?}; refusing content that may be half-written", path.display())]
    Unsettled { path: PathBuf, waited: Duration },
    #[error("watching the JWKS file `{}`", path.display())]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// A verifier configuration that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the expected issuer is empty")]
    EmptyIssuer,
    #[error("an accepted audience is empty")]
    EmptyAudience,
    #[error("the leeway {leeway:?} is longer than the most allowed, {max:?}")]
    LeewayTooLong { leeway: Duration, max: Duration },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_short_and_show_times_as_dates() {
        assert_eq!(
            TokenError::Expired { at: 1_700_000_000 }.to_string(),
            "token expired at 2023-11-14T22:13:20Z"
        );
        assert_eq!(
            TokenError::NotYetValid { from: i64::MAX }.to_string(),
            format!("token is not valid before {} (Unix time)", i64::MAX)
        );
        assert_eq!(
            TokenError::AlgorithmNotAllowed { alg: "none".into() }.to_string(),
            "algorithm `none` is not accepted; accepted: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
        );
        let long = "x".repeat(500);
        let named = TokenError::MissingClaim {
            name: TokenError::claim_name(&long),
        };
        assert!(named.to_string().len() < 100, "{named}");
        assert_eq!(
            KeySetError::Key {
                index: 2,
                kid: Some("k".into()),
                problem: "`n` is missing".into()
            }
            .to_string(),
            "key 2 (kid `k`): `n` is missing"
        );
    }
}
