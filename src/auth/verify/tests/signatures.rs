//! Which tokens carry a good signature: every accepted algorithm, the choice
//! of key by `kid` and by algorithm, and the forgeries (`none`, HMAC, a
//! public key as a secret, a header that names its own key, tampering).

use super::*;

#[test]
fn rs256_es256_and_eddsa_tokens_verify() {
    let v = verifier();
    let c = v.verify(&rs256(&claims())).unwrap();
    assert_eq!(c.issuer(), Some(ISS));
    assert_eq!(c.str("scope"), Some("altinn:serviceowner/instances.read"));
    assert_eq!(c.get("consumer").unwrap()["ID"], "0192:991825827");
    let sent = claims();
    let c = v
        .verify(&signed(testkit::p256(), "ES256", Some("e1"), &sent))
        .unwrap();
    assert_eq!(c.expires_at(), sent["exp"].as_i64());
    v.verify(&signed(testkit::ed25519(), "EdDSA", Some("o1"), &claims()))
        .unwrap();
    for alg in ["RS384", "RS512", "PS256", "PS384", "PS512"] {
        v.verify(&signed(testkit::rsa(), alg, Some("r1"), &claims()))
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
    }
}

#[test]
fn es384_verifies_with_a_p384_key() {
    let v = verifier_with(
        json!([testkit::p384().jwk("e3")]),
        VerifierConfig::default(),
    );
    v.verify(&signed(testkit::p384(), "ES384", Some("e3"), &claims()))
        .unwrap();
    assert_eq!(
        v.verify(&signed(testkit::p256(), "ES256", Some("e3"), &claims())),
        Err(TokenError::KeyMismatch {
            kid: "e3".into(),
            alg: "ES256"
        })
    );
}

#[test]
fn a_key_with_the_same_kid_but_other_material_is_a_bad_signature() {
    let v = verifier();
    assert_eq!(
        v.verify(&signed(testkit::rsa2(), "RS256", Some("r1"), &claims())),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        v.verify(&signed(testkit::p256_2(), "ES256", Some("e1"), &claims())),
        Err(TokenError::BadSignature)
    );
    // Without a kid every fitting key is tried; none is the signer's.
    assert_eq!(
        v.verify(&signed(testkit::rsa2(), "RS256", None, &claims())),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn without_a_kid_the_keys_that_fit_the_algorithm_are_tried() {
    let v = verifier_with(
        json!([
            testkit::rsa2().jwk("a"),
            testkit::rsa().jwk("b"),
            testkit::p256().jwk("c")
        ]),
        VerifierConfig::default(),
    );
    assert!(
        v.verify(&signed(testkit::rsa(), "RS256", None, &claims()))
            .is_ok()
    );
    assert!(
        v.verify(&signed(testkit::p256(), "ES256", None, &claims()))
            .is_ok()
    );
    assert_eq!(
        v.verify(&signed(testkit::ed25519(), "EdDSA", None, &claims())),
        Err(TokenError::NoKeyForAlgorithm { alg: "EdDSA" })
    );
    // A key without a kid serves only tokens without one.
    let anonymous = verifier_with(
        json!([testkit::rsa().public.clone()]),
        VerifierConfig::default(),
    );
    assert!(
        anonymous
            .verify(&signed(testkit::rsa(), "RS256", None, &claims()))
            .is_ok()
    );
    assert_eq!(
        anonymous.verify(&rs256(&claims())),
        Err(TokenError::UnknownKey { kid: "r1".into() })
    );
}

#[test]
fn unknown_kid_is_refused_and_echoed_short() {
    let v = verifier();
    assert_eq!(
        v.verify(&signed(testkit::rsa(), "RS256", Some("r2"), &claims())),
        Err(TokenError::UnknownKey { kid: "r2".into() })
    );
    let long = format!("{}\u{202e}", "k".repeat(100));
    let Err(TokenError::UnknownKey { kid }) =
        v.verify(&signed(testkit::rsa(), "RS256", Some(&long), &claims()))
    else {
        panic!()
    };
    assert_eq!(kid, format!("{}…", "k".repeat(64)));
}

#[test]
fn alg_none_and_every_hmac_are_refused() {
    let v = verifier();
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "r1"}).to_string());
        for sig in ["", "AAAA"] {
            assert_eq!(
                v.verify(&format!("{header}.{payload}.{sig}")),
                Err(TokenError::AlgorithmNotAllowed { alg: alg.into() }),
                "{alg} {sig:?}"
            );
        }
    }
    for alg in ["HS256", "HS384", "HS512", "ES512", "RS1", ""] {
        let t = testkit::hmac_token(b"secret", &json!({"alg": alg, "kid": "r1"}), &claims());
        assert_eq!(
            v.verify(&t),
            Err(TokenError::AlgorithmNotAllowed { alg: alg.into() })
        );
    }
    let no_alg = testkit::hmac_token(b"secret", &json!({"kid": "r1"}), &claims());
    assert_eq!(v.verify(&no_alg), Err(malformed("the header has no `alg`")));
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    // The classic key-confusion attack: a verifier that lets the header
    // choose HMAC would check this MAC with the RSA public key's bytes.
    let v = verifier();
    let rsa = testkit::rsa();
    let n = URL_SAFE_NO_PAD
        .decode(rsa.public["n"].as_str().unwrap())
        .unwrap();
    let jwk_text = rsa.jwk("r1").to_string();
    let secrets: [&[u8]; 5] = [
        rsa.public_pem.as_bytes(),
        &rsa.public_der,
        &n,
        rsa.public["n"].as_str().unwrap().as_bytes(),
        jwk_text.as_bytes(),
    ];
    for secret in secrets {
        for header in [
            json!({"alg": "HS256", "kid": "r1"}),
            json!({"alg": "HS256"}),
            json!({"alg": "HS512", "kid": "r1", "typ": "JWT"}),
        ] {
            let alg = header["alg"].as_str().unwrap().to_owned();
            assert_eq!(
                v.verify(&testkit::hmac_token(secret, &header, &claims())),
                Err(TokenError::AlgorithmNotAllowed { alg })
            );
        }
    }
}

#[test]
fn a_header_alg_that_does_not_fit_the_key_is_refused() {
    let v = verifier();
    // An ES256 signature presented for the RSA key, and the reverse.
    assert_eq!(
        v.verify(&signed(testkit::p256(), "ES256", Some("r1"), &claims())),
        Err(TokenError::KeyMismatch {
            kid: "r1".into(),
            alg: "ES256"
        })
    );
    assert_eq!(
        v.verify(&signed(testkit::rsa(), "RS256", Some("e1"), &claims())),
        Err(TokenError::KeyMismatch {
            kid: "e1".into(),
            alg: "RS256"
        })
    );
    // A key pinned to PS256 refuses RS256 by the same key.
    let mut pinned = testkit::rsa().jwk("p");
    pinned["alg"] = json!("PS256");
    let v = verifier_with(json!([pinned]), VerifierConfig::default());
    assert!(
        v.verify(&signed(testkit::rsa(), "PS256", Some("p"), &claims()))
            .is_ok()
    );
    assert_eq!(
        v.verify(&signed(testkit::rsa(), "RS256", Some("p"), &claims())),
        Err(TokenError::KeyMismatch {
            kid: "p".into(),
            alg: "RS256"
        })
    );
}

#[test]
fn tampering_with_any_part_breaks_the_signature() {
    let v = verifier();
    for token in [
        rs256(&claims()),
        signed(testkit::p256(), "ES256", Some("e1"), &claims()),
    ] {
        let parts: Vec<&str> = token.split('.').collect();
        // A payload granting more, under the original header and signature.
        let more = URL_SAFE_NO_PAD.encode(
            with(
                claims(),
                "scope",
                json!("altinn:serviceowner/instances.write"),
            )
            .to_string(),
        );
        assert_eq!(
            v.verify(&format!("{}.{more}.{}", parts[0], parts[2])),
            Err(TokenError::BadSignature)
        );
        // The same header with another kid or typ.
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let retyped = URL_SAFE_NO_PAD.encode(with(header, "typ", json!("at+jwt")).to_string());
        assert_eq!(
            v.verify(&format!("{retyped}.{}.{}", parts[1], parts[2])),
            Err(TokenError::BadSignature)
        );
        // One flipped bit in the signature, and a signature cut short.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[10] ^= 1;
        let flipped = URL_SAFE_NO_PAD.encode(&sig);
        assert_eq!(
            v.verify(&format!("{}.{}.{flipped}", parts[0], parts[1])),
            Err(TokenError::BadSignature)
        );
        let short = URL_SAFE_NO_PAD.encode(&sig[..sig.len() - 1]);
        assert_eq!(
            v.verify(&format!("{}.{}.{short}", parts[0], parts[1])),
            Err(TokenError::BadSignature)
        );
    }
    // ECDSA "psychic signature" (r = s = 0, CVE-2022-21449).
    let token = signed(testkit::p256(), "ES256", Some("e1"), &claims());
    let (signed_part, _) = token.rsplit_once('.').unwrap();
    let zeros = URL_SAFE_NO_PAD.encode([0u8; 64]);
    assert_eq!(
        v.verify(&format!("{signed_part}.{zeros}")),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn header_members_that_name_keys_are_ignored() {
    // A token that brings its own key (jwk, jku, x5u) is still checked
    // against the file's keys only.
    let v = verifier();
    let attacker = testkit::rsa2();
    let header = json!({
        "alg": "RS256",
        "kid": "r1",
        "jwk": attacker.jwk("r1"),
        "jku": "https://evil.example/jwks",
        "x5u": "https://evil.example/cert",
    });
    assert_eq!(
        v.verify(&testkit::token(attacker, &header, &claims())),
        Err(TokenError::BadSignature)
    );
    let header = json!({"alg": "RS256", "jwk": attacker.jwk("x")});
    assert_eq!(
        v.verify(&testkit::token(attacker, &header, &claims())),
        Err(TokenError::BadSignature)
    );
}
