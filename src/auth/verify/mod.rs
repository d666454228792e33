//! Verifying one bearer token (a compact JWS) against a [`JwksFile`]'s keys:
//! the header, the choice of key, the signature, then `exp`, `nbf`, `iss` and
//! `aud`. What the claims *mean* (who the supplier is, which person is
//! logged in) is the caller's business: this module decides nothing about
//! who may call what, and does no I/O (the key set is a lock-free load).
//!
//! The order matters: nothing about the claims is reported before the
//! signature has been verified, so an unsigned token learns only that it is
//! malformed or badly signed.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{ConfigError, TokenError};
use super::jwks::JwksFile;
use super::keys::{Alg, Key, KeySet};
use crate::ids::echo;

/// Tokens longer than this are refused before any decoding. Maskinporten
/// and ID-porten tokens are 1 to 2 KiB; Envoy's default header limit is 60 KiB.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The default clock leeway on `exp` and `nbf`. Maskinporten tokens live
/// 120 s by default, so a minute (Envoy's `clock_skew_seconds`) would stretch
/// them by half; 30 s covers the skew of NTP-synchronised hosts with room.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// More than this is no longer clock skew but a longer token lifetime.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Verified tokens remembered by default ([`Verifier::with_cache`]): a
/// gateway's callers are a few hundred clients each reusing its token for
/// its lifetime; an entry is about a kilobyte.
pub const DEFAULT_TOKEN_CACHE: usize = 4096;

/// What a token must say besides carrying a good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// The exact `iss` required (no normalisation: Maskinporten's is
    /// `https://maskinporten.no/`, trailing slash included). `None` checks
    /// nothing; set it in production, the key set alone may serve several
    /// issuers.
    pub issuer: Option<String>,
    /// When non-empty, the token's `aud` (a string or an array of strings)
    /// must contain one of these. Empty checks nothing, and a token's `aud`
    /// is then ignored.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, in whole seconds (a fraction
    /// is dropped); at most [`MAX_LEEWAY`]. Default [`DEFAULT_LEEWAY`].
    pub leeway: Duration,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
        }
    }
}

/// Verifies tokens against the current keys of a [`JwksFile`]. Cheap to
/// share (`Arc`); `verify` takes `&self` and never blocks.
#[derive(Debug)]
pub struct Verifier {
    jwks: Arc<JwksFile>,
    issuer: Option<Box<str>>,
    audiences: Box<[Box<str>]>,
    leeway: i64,
    /// Tokens verified lately, by the BLAKE3 digest of the whole token, so
    /// a repeated token skips the signature check (RS256 costs 0.2–0.3 ms).
    /// `None`: every token is verified in full.
    verified: Option<quick_cache::sync::Cache<[u8; 32], Arc<Verified>>>,
}

/// A token that passed every check: its claims, the key set it was checked
/// against and the Unix seconds it is valid in (`nbf`..`exp`, leeway
/// included). It stands only while that key set is the current one (a key
/// removed, or any other change to the set, means verifying again) and only
/// inside that window.
#[derive(Debug)]
struct Verified {
    claims: Claims,
    keys: Arc<KeySet>,
    from: i64,
    until: i64,
}

/// The payload of a verified token. `Debug` shows claim names only: claims
/// such as ID-porten's `pid` (a national identity number) must not reach a
/// log by accident.
#[derive(Clone, PartialEq)]
pub struct Claims {
    map: Map<String, Value>,
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.map.keys()).finish()
    }
}

impl Claims {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// The claim if it is a string.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(Value::as_str)
    }

    /// The claim as a string, or the error to refuse the token with: for a
    /// claim the caller cannot do without (the admin listener's `pid`).
    pub fn require_str(&self, name: &str) -> Result<&str, TokenError> {
        match self.map.get(name) {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => Err(TokenError::MissingClaim {
                name: TokenError::claim_name(name),
            }),
            Some(_) => Err(TokenError::InvalidClaim {
                name: TokenError::claim_name(name),
                want: "a string",
            }),
        }
    }

    pub fn issuer(&self) -> Option<&str> {
        self.str("iss")
    }

    pub fn subject(&self) -> Option<&str> {
        self.str("sub")
    }

    /// `exp` in Unix seconds (rounded down); every verified token has one.
    pub fn expires_at(&self) -> Option<i64> {
        self.map.get("exp").and_then(numeric_date).map(f64_floor)
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.map
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.map
    }
}

/// The header members tilgang reads. `jku`, `x5u`, `jwk` and `x5c` are
/// ignored on purpose: a token never chooses the keys it is checked with.
/// Borrowed where the JSON has no escapes; a duplicated member is an error
/// (serde refuses it), so `alg` cannot say two things.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// Any extension marked critical is one tilgang does not understand
    /// (RFC 7515 §4.1.11 then requires a refusal), `b64: false` included.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

impl Verifier {
    pub fn new(jwks: Arc<JwksFile>, config: VerifierConfig) -> Result<Self, ConfigError> {
        if config.issuer.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::EmptyIssuer);
        }
        if config.audiences.iter().any(String::is_empty) {
            return Err(ConfigError::EmptyAudience);
        }
        if config.leeway > MAX_LEEWAY {
            return Err(ConfigError::LeewayTooLong {
                leeway: config.leeway,
                max: MAX_LEEWAY,
            });
        }
        Ok(Self {
            jwks,
            issuer: config.issuer.map(Into::into),
            audiences: config.audiences.into_iter().map(Into::into).collect(),
            leeway: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
            verified: Some(quick_cache::sync::Cache::new(DEFAULT_TOKEN_CACHE)),
        })
    }

    /// Remember up to `tokens` verified tokens (0: none, verify every token
    /// in full).
    pub fn with_cache(mut self, tokens: usize) -> Self {
        self.verified = (tokens > 0).then(|| quick_cache::sync::Cache::new(tokens));
        self
    }

    /// The verified token `digest` names, if it still stands at `now`.
    fn remembered(&self, digest: &[u8; 32], now: i64) -> Option<Claims> {
        let v = self.verified.as_ref()?.get(digest)?;
        let current = self.jwks.keys();
        (Arc::ptr_eq(&v.keys, &current) && v.from <= now && now < v.until).then(|| v.claims.clone())
    }

    /// The key file this verifier reads.
    pub fn jwks(&self) -> &Arc<JwksFile> {
        &self.jwks
    }

    /// Verify `token` (without the `Bearer ` prefix; see [`super::bearer`])
    /// against the current keys and clock.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.verify_at(token, now)
    }

    /// [`Self::verify`] at `now`, Unix seconds: for tests and replays.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong {
                len: token.len(),
                max: MAX_TOKEN_BYTES,
            });
        }
        let digest = self
            .verified
            .as_ref()
            .map(|_| *blake3::hash(token.as_bytes()).as_bytes());
        if let Some(claims) = digest.as_ref().and_then(|d| self.remembered(d, now)) {
            return Ok(claims);
        }
        let (signed, signature) = split(token)?;
        let (header_b64, payload_b64) = signed
            .split_once('.')
            .ok_or(malformed("not three dot-separated parts"))?;
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| malformed("the header is not unpadded base64url"))?;
        // serde reads a struct from a JSON array too; a header is an object.
        let object = header_json.trim_ascii_start().first() == Some(&b'{');
        let header: Header<'_> = serde_json::from_slice(&header_json)
            .ok()
            .filter(|_| object)
            .ok_or(malformed(
                "the header is not a JSON object with string `alg` and `kid`",
            ))?;
        let alg_name = header.alg.ok_or(malformed("the header has no `alg`"))?;
        let alg = Alg::parse(&alg_name).ok_or_else(|| TokenError::AlgorithmNotAllowed {
            alg: echo(&alg_name),
        })?;
        if header.crit.is_some() {
            return Err(malformed("the header marks extensions critical (`crit`)"));
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| malformed("the payload is not unpadded base64url"))?;
        // Checked here, without allocating, so a bad encoding is "malformed"
        // rather than a bad signature; the provider decodes it again. The
        // largest accepted signature is 512 bytes (RSA-4096).
        let mut sig_buf = [0u8; 512];
        if signature.is_empty()
            || URL_SAFE_NO_PAD
                .decode_slice(signature, &mut sig_buf)
                .is_err()
        {
            return Err(malformed("the signature is not unpadded base64url"));
        }

        let keys = self.jwks.keys();
        let verified = |key: &Key| {
            // `Err` only for a key the provider cannot use, which loading
            // has ruled out; either way it is no verification.
            jsonwebtoken::crypto::verify(signature, signed.as_bytes(), key.decoding(), alg.jwt())
                .unwrap_or(false)
        };
        match header.kid.as_deref() {
            Some(kid) => {
                let mut named = keys
                    .keys()
                    .iter()
                    .filter(|k| k.kid() == Some(kid))
                    .peekable();
                if named.peek().is_none() {
                    // Perhaps the file rotated and its event was lost.
                    self.jwks.nudge();
                    return Err(TokenError::UnknownKey { kid: echo(kid) });
                }
                let mut fitting = named.filter(|k| k.accepts(alg)).peekable();
                if fitting.peek().is_none() {
                    return Err(TokenError::KeyMismatch {
                        kid: echo(kid),
                        alg: alg.as_str(),
                    });
                }
                if !fitting.any(verified) {
                    return Err(TokenError::BadSignature);
                }
            }
            // No kid: every key that fits the algorithm is a candidate, as
            // with a single-key issuer. Costs one verification per candidate
            // for a bad token, bounded by the size of the key set.
            None => {
                let mut fitting = keys.keys().iter().filter(|k| k.accepts(alg)).peekable();
                if fitting.peek().is_none() {
                    return Err(TokenError::NoKeyForAlgorithm { alg: alg.as_str() });
                }
                if !fitting.any(verified) {
                    return Err(TokenError::BadSignature);
                }
            }
        }
        let keys = arc_swap::Guard::into_inner(keys);

        let map = payload::parse(&payload).map_err(|e| match e {
            payload::PayloadError::NotAnObject => malformed("the payload is not a JSON object"),
            payload::PayloadError::Duplicate(name) => TokenError::DuplicateClaim {
                name: TokenError::claim_name(&name),
            },
        })?;
        let claims = Claims { map };
        let (from, until) = self.check_claims(&claims, now)?;
        if let (Some(cache), Some(digest)) = (&self.verified, digest) {
            let claims = claims.clone();
            let v = Verified {
                claims,
                keys,
                from,
                until,
            };
            cache.insert(digest, Arc::new(v));
        }
        Ok(claims)
    }

    /// Check the claims at `now`; the Unix seconds the token is valid in
    /// (`from` inclusive, `until` exclusive), leeway included.
    fn check_claims(&self, claims: &Claims, now: i64) -> Result<(i64, i64), TokenError> {
        let exp = claims.get("exp").ok_or(TokenError::MissingClaim {
            name: Cow::Borrowed("exp"),
        })?;
        let exp = numeric_date(exp).ok_or(invalid("exp", "a number"))?;
        // Valid while now < exp (RFC 7519 §4.1.4); a fractional exp counts
        // from the second before, a fractional nbf from the second after.
        let exp = f64_floor(exp);
        if now >= exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired { at: exp });
        }
        let mut from = i64::MIN;
        if let Some(nbf) = claims.get("nbf") {
            let nbf = f64_ceil(numeric_date(nbf).ok_or(invalid("nbf", "a number"))?);
            if now < nbf.saturating_sub(self.leeway) {
                return Err(TokenError::NotYetValid { from: nbf });
            }
            from = nbf.saturating_sub(self.leeway);
        }
        let until = exp.saturating_add(self.leeway);
        if let Some(want) = &self.issuer {
            match claims.get("iss") {
                None => {
                    return Err(TokenError::MissingClaim {
                        name: Cow::Borrowed("iss"),
                    });
                }
                Some(Value::String(got)) if got.as_str() == &**want => {}
                Some(Value::String(got)) => {
                    return Err(TokenError::WrongIssuer {
                        got: echo(got),
                        want: want.to_string(),
                    });
                }
                Some(_) => return Err(invalid("iss", "a string")),
            }
        }
        if !self.audiences.is_empty() {
            let accepted = |a: &str| self.audiences.iter().any(|w| &**w == a);
            let ok = match claims.get("aud") {
                None => {
                    return Err(TokenError::MissingClaim {
                        name: Cow::Borrowed("aud"),
                    });
                }
                Some(Value::String(a)) => accepted(a),
                Some(Value::Array(list)) => {
                    if !list.iter().all(Value::is_string) {
                        return Err(invalid("aud", "a string or an array of strings"));
                    }
                    list.iter().filter_map(Value::as_str).any(accepted)
                }
                Some(_) => return Err(invalid("aud", "a string or an array of strings")),
            };
            if !ok {
                let got = claims.get("aud").map(Value::to_string).unwrap_or_default();
                return Err(TokenError::WrongAudience { got: echo(&got) });
            }
        }
        Ok((from, until))
    }
}

/// Split off the signature: exactly three parts, so a JWE (five) or a
/// token with a stray dot is refused before anything is decoded.
fn split(token: &str) -> Result<(&str, &str), TokenError> {
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or(malformed("not three dot-separated parts"))?;
    if signed.bytes().filter(|b| *b == b'.').count() != 1 {
        return Err(malformed("not three dot-separated parts"));
    }
    Ok((signed, signature))
}

fn malformed(why: &'static str) -> TokenError {
    TokenError::Malformed { why }
}

fn invalid(name: &'static str, want: &'static str) -> TokenError {
    TokenError::InvalidClaim {
        name: Cow::Borrowed(name),
        want,
    }
}

/// A NumericDate: any JSON number (RFC 7519 allows fractions).
fn numeric_date(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

/// Saturating at the ends of `i64` (`as` saturates for floats).
fn f64_floor(f: f64) -> i64 {
    f.floor() as i64
}

fn f64_ceil(f: f64) -> i64 {
    f.ceil() as i64
}

#[cfg(test)]
mod tests;

mod payload;
