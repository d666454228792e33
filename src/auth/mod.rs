//! Bearer-token verification, one implementation for every listener: the
//! gateway verifies Maskinporten tokens with it (`--jwks`), the admin
//! listener ID-porten tokens (`--admin-jwks`).
//!
//! - [`keys`]: a JWKS document → the usable public keys ([`KeySet`]); no I/O.
//! - [`jwks`]: the JWKS file, loaded at start-up and hot-reloaded
//!   ([`JwksFile`]); it reads files on its own thread, never on the request path.
//! - [`verify`]: one token against the current keys and the clock
//!   ([`Verifier`] → [`Claims`] or [`TokenError`]); no I/O.
//! - [`bearer`]: the token out of an `Authorization` header value.
//! - [`admin`]: who is calling the admin listener ([`AdminAuth`] →
//!   [`Caller`]), and whether a request's `actor` may be acted for;
//!   [`clients`]: client certificates mapped to persons or services;
//!   [`peer`]: who is at the other end of the connection (the server puts
//!   it on each admin request).
//!
//! This module says whether a token is genuine and current, and hands over
//! its claims. It decides nothing about who may call what (that is Cedar's,
//! through the engine), maps no error to a status (the gRPC and gateway
//! adapters do), and never logs or returns a token.

pub mod admin;
pub mod clients;
pub mod error;
pub mod jwks;
pub mod keys;
pub mod peer;
pub mod verify;

#[cfg(test)]
pub(crate) mod testkit;

pub use admin::{AdminAuth, AuthError, Caller, DEFAULT_PERSON_CLAIM, Proof, Tokens};
pub use clients::{ClientIdentities, ClientIdentity};
pub use error::{ConfigError, JwksError, KeySetError, TokenError};
pub use jwks::{JwksFile, JwksOptions, JwksStatus};
pub use keys::{Alg, Key, KeySet, KeyType};
pub use peer::Peer;
pub use verify::{Claims, DEFAULT_LEEWAY, MAX_LEEWAY, MAX_TOKEN_BYTES, Verifier, VerifierConfig};

/// The token of an `Authorization: Bearer <token>` header value: the scheme
/// in any case (RFC 9110 §11.1), spaces around trimmed. `None` for another
/// scheme, no token, or a token with characters RFC 6750's `b64token` does
/// not allow (so `Bearer a b` and `Bearer a,b` are not tokens).
pub fn bearer(header_value: &str) -> Option<&str> {
    let value = header_value.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches([' ', '\t']);
    let body = token.trim_end_matches('=');
    let b64token = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    b64token.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_takes_the_token_in_any_case_of_the_scheme() {
        for (value, want) in [
            ("Bearer abc.def.ghi", Some("abc.def.ghi")),
            ("bearer abc", Some("abc")),
            ("BEARER abc", Some("abc")),
            ("  Bearer   abc  ", Some("abc")),
            ("Bearer\tabc", Some("abc")),
            ("Bearer a-b_c~d+e/f==", Some("a-b_c~d+e/f==")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearer    ", None),
            ("Bearer ==", None),
            ("Bearer a b", None),
            ("Bearer a,b", None),
            ("Bearer a=b", None),
            ("Bearer \"abc\"", None),
            ("Bearer abc\n", None),
            ("Bearer ab\u{e9}", None),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearerabc", None),
            ("DPoP abc", None),
            ("abc", None),
            ("", None),
        ] {
            assert_eq!(bearer(value), want, "{value:?}");
        }
    }
}
