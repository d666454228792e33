//! The key set: a JWKS document (RFC 7517, `{"keys":[...]}`) turned into the
//! public keys signatures are verified with, and the algorithms each may serve.
//!
//! Only asymmetric signature keys are kept: RSA (2048 to 4096 bits), EC P-256
//! and P-384, and Ed25519. Keys for another use (`use: enc`, `key_ops`
//! without `verify`), of another type (`oct` secrets above all, whose bytes
//! must never become an HMAC key) or curve, or pinned to an algorithm tilgang
//! does not accept, are skipped, as RFC 7517 §5 asks, and named in
//! [`KeySet::skipped`]. A key that claims to be usable but is broken (missing
//! or bad members, a point not on its curve, an RSA modulus out of range,
//! private key material) rejects the whole document: a mistake in a rotation
//! then keeps the keys that worked instead of silently losing one.
//!
//! This module does no I/O and keeps no clock; it knows nothing of claims.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde_json::{Map, Value};
use sha2::Digest as _;

use super::error::KeySetError;
use crate::ids::echo;

/// The signature algorithms tilgang accepts: asymmetric only. `none` and the
/// HMAC family are absent by construction, so no header can select them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// For messages.
    pub const LIST: &'static str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

    /// The JWA name, compared exactly (`rs256` and `None` are not names).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    /// The type of key this algorithm verifies with.
    pub fn key_type(self) -> KeyType {
        match self {
            Self::RS256 | Self::RS384 | Self::RS512 | Self::PS256 | Self::PS384 | Self::PS512 => {
                KeyType::Rsa
            }
            Self::ES256 => KeyType::P256,
            Self::ES384 => KeyType::P384,
            Self::EdDSA => KeyType::Ed25519,
        }
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Self::RS256 => A::RS256,
            Self::RS384 => A::RS384,
            Self::RS512 => A::RS512,
            Self::PS256 => A::PS256,
            Self::PS384 => A::PS384,
            Self::PS512 => A::PS512,
            Self::ES256 => A::ES256,
            Self::ES384 => A::ES384,
            Self::EdDSA => A::EdDSA,
        }
    }
}

impl std::fmt::Display for Alg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key's type and, for EC and OKP keys, its curve: what decides which
/// algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `kty: RSA`: RS256/384/512 and PS256/384/512.
    Rsa,
    /// `kty: EC, crv: P-256`: ES256 only.
    P256,
    /// `kty: EC, crv: P-384`: ES384 only.
    P384,
    /// `kty: OKP, crv: Ed25519`: EdDSA only.
    Ed25519,
}

/// One usable public key.
#[derive(Clone)]
pub struct Key {
    kid: Option<Box<str>>,
    key_type: KeyType,
    /// The JWK's `alg`, when it pins one: then the only algorithm it verifies.
    alg: Option<Alg>,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The algorithm the JWK pins, if any.
    pub fn alg(&self) -> Option<Alg> {
        self.alg
    }

    /// Whether a token signed with `alg` may be verified with this key: the
    /// key's type must fit, and a pinned `alg` must be that one.
    pub fn accepts(&self, alg: Alg) -> bool {
        alg.key_type() == self.key_type && self.alg.is_none_or(|a| a == alg)
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// An immutable set of usable keys, parsed from one JWKS document.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    skipped: Vec<String>,
    digest: [u8; 32],
}

impl KeySet {
    /// Parse a JWKS document. At least one usable key is required: a set
    /// that could verify nothing is a mistake, not a way to deny everything.
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeySetError> {
        install_crypto_provider();
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| KeySetError::Json(e.to_string()))?;
        let Some(list) = doc.get("keys").and_then(Value::as_array) else {
            return Err(KeySetError::NotJwks);
        };
        let mut keys = Vec::with_capacity(list.len());
        let mut skipped = Vec::new();
        for (index, jwk) in list.iter().enumerate() {
            let Some(obj) = jwk.as_object() else {
                return Err(KeySetError::Key {
                    index,
                    kid: None,
                    problem: "not a JSON object".into(),
                });
            };
            let kid = match obj.get("kid") {
                None => None,
                Some(Value::String(k)) => Some(k.as_str()),
                Some(_) => {
                    return Err(KeySetError::Key {
                        index,
                        kid: None,
                        problem: "`kid` is not a string".into(),
                    });
                }
            };
            match parse_key(obj, kid) {
                Ok(Parsed::Use(key)) => keys.push(key),
                Ok(Parsed::Skip(why)) => skipped.push(format!(
                    "key {index}{}: {why}",
                    kid.map(|k| format!(" (kid `{}`)", echo(k)))
                        .unwrap_or_default()
                )),
                Err(problem) => {
                    return Err(KeySetError::Key {
                        index,
                        kid: kid.map(echo),
                        problem,
                    });
                }
            }
        }
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKeys { skipped });
        }
        Ok(Self {
            keys,
            skipped,
            digest: sha2::Sha256::digest(bytes).into(),
        })
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The keys that were passed over, each with why.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// SHA-256 of the document the set was parsed from: the same bytes give
    /// the same set, so a reload of unchanged content is no change.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The key ids, for logs (`-` for a key without one).
    pub fn kids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.kid().map_or_else(|| "-".to_owned(), echo))
            .collect()
    }
}

enum Parsed {
    Use(Key),
    Skip(String),
}

/// `Err` is what is wrong with a key that would otherwise be used.
fn parse_key(obj: &Map<String, Value>, kid: Option<&str>) -> Result<Parsed, String> {
    let kty = str_member(obj, "kty")?.ok_or("no `kty`")?;
    if let Some(u) = str_member(obj, "use")?
        && u != "sig"
    {
        return Ok(Parsed::Skip(format!("`use` is `{}`, not `sig`", echo(u))));
    }
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops
            .as_array()
            .filter(|a| a.iter().all(Value::is_string))
            .ok_or("`key_ops` is not an array of strings")?;
        if !ops.iter().any(|o| o == "verify") {
            return Ok(Parsed::Skip("`key_ops` does not include `verify`".into()));
        }
    }
    let key_type = match kty {
        "RSA" => KeyType::Rsa,
        "EC" => match str_member(obj, "crv")?.ok_or("an EC key has no `crv`")? {
            "P-256" => KeyType::P256,
            "P-384" => KeyType::P384,
            other => {
                return Ok(Parsed::Skip(format!(
                    "curve `{}` is not supported (P-256 and P-384 are)",
                    echo(other)
                )));
            }
        },
        "OKP" => match str_member(obj, "crv")?.ok_or("an OKP key has no `crv`")? {
            "Ed25519" => KeyType::Ed25519,
            other => {
                return Ok(Parsed::Skip(format!(
                    "curve `{}` is not supported (Ed25519 is)",
                    echo(other)
                )));
            }
        },
        "oct" => {
            return Ok(Parsed::Skip(
                "symmetric (`oct`) keys are never used: only asymmetric algorithms are accepted"
                    .into(),
            ));
        }
        other => {
            return Ok(Parsed::Skip(format!(
                "key type `{}` is not supported",
                echo(other)
            )));
        }
    };
    let alg = match str_member(obj, "alg")? {
        None => None,
        Some(name) => match Alg::parse(name) {
            Some(alg) if alg.key_type() == key_type => Some(alg),
            Some(alg) => return Err(format!("`alg` `{alg}` does not fit the key's type")),
            None => {
                return Ok(Parsed::Skip(format!(
                    "`alg` `{}` is not an accepted signature algorithm",
                    echo(name)
                )));
            }
        },
    };
    // A verifier never needs the private half; finding it means the wrong
    // file was published, and the key it belongs to is compromised.
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        if obj.contains_key(private) {
            return Err(format!(
                "holds private key material (`{private}`); publish public keys only"
            ));
        }
    }
    let decoding = match key_type {
        KeyType::Rsa => rsa_key(obj)?,
        KeyType::P256 => ec_key(obj, 32, Alg::ES256)?,
        KeyType::P384 => ec_key(obj, 48, Alg::ES384)?,
        KeyType::Ed25519 => {
            let x = b64_member(obj, "x")?;
            if x.len() != 32 {
                return Err(format!("`x` is {} bytes; Ed25519 needs 32", x.len()));
            }
            let key = DecodingKey::from_ed_der(&x);
            check_usable(&key, Alg::EdDSA)?;
            key
        }
    };
    Ok(Parsed::Use(Key {
        kid: kid.map(Into::into),
        key_type,
        alg,
        decoding,
    }))
}

/// The RSA sizes accepted: under 2048 bits is too weak to trust; over 4096
/// the `rsa` crate refuses to verify, so such a key could never work.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=4096;

fn rsa_key(obj: &Map<String, Value>) -> Result<DecodingKey, String> {
    let n = b64_member(obj, "n")?;
    let e = b64_member(obj, "e")?;
    let n = strip_zeros(&n);
    let bits = n
        .first()
        .map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize);
    if !RSA_BITS.contains(&bits) {
        return Err(format!(
            "the RSA modulus has {bits} bits; {} to {} are accepted",
            RSA_BITS.start(),
            RSA_BITS.end()
        ));
    }
    // The `rsa` crate's bounds: odd, at least 3, below 2^33.
    let e = strip_zeros(&e);
    let exponent = if e.len() <= 8 {
        e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    } else {
        u64::MAX
    };
    if exponent < 3 || exponent % 2 == 0 || exponent >= 1 << 33 {
        return Err("the RSA exponent `e` is out of range (odd, 3 to 2^33)".into());
    }
    Ok(DecodingKey::from_rsa_raw_components(n, e))
}

fn ec_key(obj: &Map<String, Value>, len: usize, alg: Alg) -> Result<DecodingKey, String> {
    let x = b64_member(obj, "x")?;
    let y = b64_member(obj, "y")?;
    if x.len() != len || y.len() != len {
        return Err(format!(
            "`x` and `y` must be {len} bytes each; they are {} and {}",
            x.len(),
            y.len()
        ));
    }
    // The uncompressed SEC1 point, as `DecodingKey::from_ec_components` builds it.
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let key = DecodingKey::from_ec_der(&point);
    check_usable(&key, alg)?;
    Ok(key)
}

/// Build the verifier once, as every verification will: for EC and Ed25519
/// this decodes the point, so a point not on the curve is found at load time
/// rather than as a bad signature on every token.
fn check_usable(key: &DecodingKey, alg: Alg) -> Result<(), String> {
    (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory)(&alg.jwt(), key)
        .map(drop)
        .map_err(|_| format!("not a valid {alg} public key (the point is not on the curve)"))
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn str_member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

fn b64_member(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = str_member(obj, name)?.ok_or_else(|| format!("`{name}` is missing"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("`{name}` is not unpadded base64url"))
}

/// `jsonwebtoken` picks its crypto backend from crate features, and would
/// panic on first use if a dependency enabled a second one. Installing the
/// pure-Rust provider explicitly removes that path; if another was installed
/// first, that one is used.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
            &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER,
        );
    });
}

#[cfg(test)]
mod tests;
