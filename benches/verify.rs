//! The cost of verifying one bearer token on the request path, and how much of
//! it is the signature itself.
//!
//! Run with `cargo bench --bench verify`. `verify/RS256` and `verify/ES256` are
//! `Verifier::verify` on a Maskinporten-shaped token (header, key choice by
//! `kid`, signature, claims to a `serde_json::Map`, `exp`/`iss`/`aud` checks)
//! against a key set of three keys; `signature_only/*` is the bare RustCrypto
//! verification of the same signature with a pre-parsed key, the floor any
//! JWT library on these crates can reach. Keys are generated at start, never
//! stored.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use tilgang::auth::{JwksFile, KeySet, Verifier, VerifierConfig};

const ISS: &str = "https://maskinporten.no/";
const AUD: &str = "https://tilgang.example/";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(kid: &str, alg: Algorithm, key: &EncodingKey) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": format!("{alg:?}"), "kid": kid, "typ": "JWT"});
    let claims = json!({
        "iss": ISS,
        "aud": AUD,
        "scope": "altinn:serviceowner/instances.read altinn:serviceowner/instances.write",
        "consumer": {"authority": "iso6523-actorid-upis", "ID": "0192:991825827"},
        "supplier": {"authority": "iso6523-actorid-upis", "ID": "0192:810418672"},
        "client_id": "0b1c6f1e-8a43-4a6b-9b8e-2c0d6a3e7f11",
        "token_type": "Bearer",
        "iat": now,
        "exp": now + 3600,
        "jti": "bE5kq0JvM3l0bWZ2bW9sZ3RqZ2R0c3J0",
    });
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), key, alg).unwrap();
    format!("{signed}.{sig}")
}

fn bench(c: &mut Criterion) {
    use p256::pkcs8::EncodePrivateKey;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;

    let rsa_key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let rsa_pub = rsa_key.to_public_key();
    let ec_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let point = ec_key.verifying_key().to_encoded_point(false);
    let other = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let other_point = other.verifying_key().to_encoded_point(false);
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "r1", "use": "sig", "n": b64(&rsa_pub.n().to_bytes_be()), "e": b64(&rsa_pub.e().to_bytes_be())},
        {"kty": "EC", "crv": "P-256", "kid": "e1", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())},
        {"kty": "EC", "crv": "P-256", "kid": "e0", "x": b64(other_point.x().unwrap()), "y": b64(other_point.y().unwrap())},
    ]});
    let keys = KeySet::from_json(jwks.to_string().as_bytes()).unwrap();
    let verifier = Verifier::new(
        Arc::new(JwksFile::fixed(keys)),
        VerifierConfig {
            issuer: Some(ISS.into()),
            audiences: vec![AUD.into()],
            ..VerifierConfig::default()
        },
    )
    .unwrap();

    let rs256 = sign(
        "r1",
        Algorithm::RS256,
        &EncodingKey::from_rsa_der(rsa_key.to_pkcs1_der().unwrap().as_bytes()),
    );
    let es256 = sign(
        "e1",
        Algorithm::ES256,
        &EncodingKey::from_ec_der(ec_key.to_pkcs8_der().unwrap().as_bytes()),
    );
    verifier.verify(&rs256).unwrap();
    verifier.verify(&es256).unwrap();

    let mut g = c.benchmark_group("verify");
    g.bench_function("RS256", |b| {
        b.iter(|| verifier.verify(black_box(&rs256)).unwrap())
    });
    g.bench_function("ES256", |b| {
        b.iter(|| verifier.verify(black_box(&es256)).unwrap())
    });
    // A refusal costs the same signature check (the claims are never read).
    let mut forged = es256.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    g.bench_function("ES256_bad_signature", |b| {
        b.iter(|| verifier.verify(black_box(&forged)).unwrap_err())
    });
    g.finish();

    let mut g = c.benchmark_group("signature_only");
    {
        use rsa::Pkcs1v15Sign;
        use rsa::sha2::Digest as _;
        let (signed, sig) = rs256.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        g.bench_function("RS256", |b| {
            b.iter(|| {
                let digest = rsa::sha2::Sha256::digest(black_box(signed.as_bytes()));
                rsa_pub
                    .verify(Pkcs1v15Sign::new::<rsa::sha2::Sha256>(), &digest, &sig)
                    .unwrap()
            })
        });
    }
    {
        use p256::ecdsa::signature::Verifier as _;
        let (signed, sig) = es256.rsplit_once('.').unwrap();
        let sig =
            p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
        let key = *ec_key.verifying_key();
        g.bench_function("ES256", |b| {
            b.iter(|| key.verify(black_box(signed.as_bytes()), &sig).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
