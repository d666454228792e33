//! Test keys and tokens for the auth tests: keys are generated once per test
//! binary (RSA generation is the slow part), never read from or written to
//! the repository. Tokens are assembled by hand so a test can put anything in
//! the header.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// A private key to sign with and its public half as a JWK.
pub struct TestKey {
    pub encoding: EncodingKey,
    /// The public JWK without `kid`.
    pub public: Value,
    /// RSA only: the public key as SPKI PEM and PKCS#1 DER, for the
    /// key-confusion tests.
    pub public_pem: String,
    pub public_der: Vec<u8>,
}

impl TestKey {
    /// The public JWK with `kid`.
    pub fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.public.clone();
        jwk["kid"] = json!(kid);
        jwk
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn gen_rsa() -> TestKey {
    use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let public = key.to_public_key();
    TestKey {
        encoding: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
        public: json!({
            "kty": "RSA",
            "use": "sig",
            "n": b64(&public.n().to_bytes_be()),
            "e": b64(&public.e().to_bytes_be()),
        }),
        public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
        public_der: public.to_pkcs1_der().unwrap().as_bytes().to_vec(),
    }
}

fn gen_p256() -> TestKey {
    use p256::pkcs8::EncodePrivateKey;
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let point = key.verifying_key().to_encoded_point(false);
    TestKey {
        encoding: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
        public: json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(point.x().unwrap()),
            "y": b64(point.y().unwrap()),
        }),
        public_pem: String::new(),
        public_der: Vec::new(),
    }
}

fn gen_p384() -> TestKey {
    use p384::pkcs8::EncodePrivateKey;
    let key = p384::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let point = key.verifying_key().to_encoded_point(false);
    TestKey {
        encoding: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
        public: json!({
            "kty": "EC",
            "crv": "P-384",
            "x": b64(point.x().unwrap()),
            "y": b64(point.y().unwrap()),
        }),
        public_pem: String::new(),
        public_der: Vec::new(),
    }
}

fn gen_ed25519() -> TestKey {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    TestKey {
        encoding: EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes()),
        public: json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64(key.verifying_key().as_bytes()),
        }),
        public_pem: String::new(),
        public_der: Vec::new(),
    }
}

macro_rules! once {
    ($name:ident, $gen:expr) => {
        pub fn $name() -> &'static TestKey {
            static KEY: OnceLock<TestKey> = OnceLock::new();
            KEY.get_or_init($gen)
        }
    };
}

once!(rsa, gen_rsa);
once!(rsa2, gen_rsa);
once!(p256, gen_p256);
once!(p256_2, gen_p256);
once!(p384, gen_p384);
once!(ed25519, gen_ed25519);

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token with this header and these claims, signed by `key` with the
/// header's `alg` (which must be one `key` can sign with).
pub fn token(key: &TestKey, header: &Value, claims: &Value) -> String {
    token_raw(key, header, claims.to_string().as_bytes())
}

/// Like [`token`], with any payload bytes.
pub fn token_raw(key: &TestKey, header: &Value, payload: &[u8]) -> String {
    let alg: Algorithm = header["alg"].as_str().unwrap().parse().unwrap();
    let signed = format!("{}.{}", b64(header.to_string().as_bytes()), b64(payload));
    let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), &key.encoding, alg).unwrap();
    format!("{signed}.{sig}")
}

/// A token MACed with HMAC-SHA256 under `secret`, whatever the header says.
pub fn hmac_token(secret: &[u8], header: &Value, claims: &Value) -> String {
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        signed.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{signed}.{sig}")
}

/// A JWKS document of these JWKs.
pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}
