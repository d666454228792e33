//! Tokens for the tests: keys generated here (ES256 and RS256, never
//! committed), their public JWKs, signed tokens, and the JWKS file written by
//! rename as a deployment would rotate it.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::util::save_by_rename;

pub struct Key {
    alg: Algorithm,
    encoding: EncodingKey,
    public: Value,
    /// The public key as PEM: what an attacker has, and would use as an
    /// HMAC secret (`alg` confusion).
    public_pem: String,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn es256() -> Key {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let point = key.verifying_key().to_encoded_point(false);
    Key {
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
        public: json!({"kty": "EC", "crv": "P-256",
            "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}),
        public_pem,
    }
}

pub fn rs256() -> Key {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let public = key.to_public_key();
    let public_pem = public.to_public_key_pem(LineEnding::LF).unwrap();
    Key {
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
        public: json!({"kty": "RSA", "n": b64(&public.n().to_bytes_be()),
            "e": b64(&public.e().to_bytes_be())}),
        public_pem,
    }
}

impl Key {
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.public.clone();
        jwk["kid"] = json!(kid);
        jwk
    }

    pub fn sign(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// An HS256 token whose HMAC secret is this key's public PEM: valid to a
    /// verifier that lets the token choose a symmetric algorithm.
    pub fn forge_hs256(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        let secret = EncodingKey::from_secret(self.public_pem.as_bytes());
        jsonwebtoken::encode(&header, claims, &secret).unwrap()
    }

    /// A token with `alg: none` and no signature, carrying `claims`.
    pub fn unsigned(kid: &str, claims: &Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
        format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn write_jwks(path: &std::path::Path, keys: &[Value]) {
    save_by_rename(path, &json!({ "keys": keys }).to_string());
}
