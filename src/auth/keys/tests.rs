use super::*;
use crate::auth::testkit;
use serde_json::json;

fn set(keys: Value) -> Result<KeySet, KeySetError> {
    KeySet::from_json(json!({ "keys": keys }).to_string().as_bytes())
}

fn key_problem(keys: Value) -> String {
    match set(keys) {
        Err(KeySetError::Key { problem, .. }) => problem,
        other => panic!("expected a key problem, got {other:?}"),
    }
}

#[test]
fn every_supported_key_type_loads() {
    let ks = set(json!([
        testkit::rsa().jwk("r"),
        testkit::p256().jwk("e"),
        testkit::p384().jwk("e3"),
        testkit::ed25519().jwk("o"),
    ]))
    .unwrap();
    let types: Vec<_> = ks.keys().iter().map(Key::key_type).collect();
    assert_eq!(
        types,
        [KeyType::Rsa, KeyType::P256, KeyType::P384, KeyType::Ed25519]
    );
    assert_eq!(ks.kids(), ["r", "e", "e3", "o"]);
    assert!(ks.skipped().is_empty());
}

#[test]
fn keys_for_other_uses_are_skipped_and_named() {
    let mut enc = testkit::rsa().jwk("enc");
    enc["use"] = json!("enc");
    let mut wrap = testkit::rsa().jwk("wrap");
    wrap["key_ops"] = json!(["wrapKey"]);
    let mut oaep = testkit::rsa().jwk("oaep");
    oaep["alg"] = json!("RSA-OAEP");
    let mut hs = testkit::rsa().jwk("hs");
    hs["alg"] = json!("HS256");
    let ks = set(json!([
        enc,
        wrap,
        oaep,
        hs,
        {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"},
        {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "x": "AA"},
        {"kty": "XYZ"},
        testkit::p256().jwk("good"),
    ]))
    .unwrap();
    assert_eq!(ks.kids(), ["good"]);
    assert_eq!(ks.skipped().len(), 8, "{:?}", ks.skipped());
    assert!(ks.skipped()[4].contains("`oct`"), "{:?}", ks.skipped());
}

#[test]
fn a_set_without_a_usable_key_is_rejected() {
    assert_eq!(
        set(json!([])).unwrap_err(),
        KeySetError::NoUsableKeys { skipped: vec![] }
    );
    let err = set(json!([{"kty": "oct", "k": "c2VjcmV0"}])).unwrap_err();
    assert!(matches!(&err, KeySetError::NoUsableKeys { skipped } if skipped.len() == 1));
    assert!(err.to_string().contains("skipped: key 0"), "{err}");
    assert!(matches!(
        KeySet::from_json(b"{\"keys\": 1}"),
        Err(KeySetError::NotJwks)
    ));
    assert!(matches!(
        KeySet::from_json(b"[]"),
        Err(KeySetError::NotJwks)
    ));
    assert!(matches!(
        KeySet::from_json(b"{\"keys\": ["),
        Err(KeySetError::Json(_))
    ));
    assert!(matches!(KeySet::from_json(b""), Err(KeySetError::Json(_))));
}

#[test]
fn broken_keys_reject_the_document() {
    let rsa = testkit::rsa().jwk("r");
    let mut no_n = rsa.clone();
    no_n.as_object_mut().unwrap().remove("n");
    assert_eq!(key_problem(json!([no_n])), "`n` is missing");
    let mut bad_n = rsa.clone();
    bad_n["n"] = json!("not base64!");
    assert_eq!(key_problem(json!([bad_n])), "`n` is not unpadded base64url");
    let mut padded = rsa.clone();
    padded["e"] = json!("AQAB==");
    assert_eq!(
        key_problem(json!([padded])),
        "`e` is not unpadded base64url"
    );
    let mut small = rsa.clone();
    small["n"] = json!(URL_SAFE_NO_PAD.encode([0xffu8; 128]));
    assert!(key_problem(json!([small])).contains("1024 bits"));
    let mut huge = rsa.clone();
    huge["n"] = json!(URL_SAFE_NO_PAD.encode([0xffu8; 1024]));
    assert!(key_problem(json!([huge])).contains("8192 bits"));
    for e in ["AQ", "Ag", "AQAA", "AgAAAAAB"] {
        let mut bad_e = rsa.clone();
        bad_e["e"] = json!(e);
        assert!(key_problem(json!([bad_e])).contains("exponent"), "{e}");
    }
    let mut mismatch = rsa.clone();
    mismatch["alg"] = json!("ES256");
    assert_eq!(
        key_problem(json!([mismatch])),
        "`alg` `ES256` does not fit the key's type"
    );
    let mut private = rsa.clone();
    private["d"] = json!("AQAB");
    assert!(key_problem(json!([private])).contains("private key material"));
    let mut kid = rsa;
    kid["kid"] = json!(7);
    assert_eq!(key_problem(json!([kid])), "`kid` is not a string");

    let ec = testkit::p256().jwk("e");
    let mut off_curve = ec.clone();
    off_curve["y"] = off_curve["x"].clone();
    assert!(key_problem(json!([off_curve])).contains("not a valid ES256"));
    let mut short = ec.clone();
    short["x"] = json!("AAAA");
    assert!(key_problem(json!([short])).contains("32 bytes"));
    let mut p384_len = ec;
    p384_len["crv"] = json!("P-384");
    assert!(key_problem(json!([p384_len])).contains("48 bytes"));
    let mut ed = testkit::ed25519().jwk("o");
    ed["x"] = json!("AAAA");
    assert!(key_problem(json!([ed])).contains("32"));
    assert_eq!(key_problem(json!(["x"])), "not a JSON object");
    assert_eq!(key_problem(json!([{"n": "AQAB"}])), "no `kty`");
}

#[test]
fn a_key_accepts_only_algorithms_of_its_type_and_its_pinned_alg() {
    let mut pinned = testkit::rsa().jwk("p");
    pinned["alg"] = json!("PS256");
    let ks = set(json!([
        testkit::rsa().jwk("r"),
        pinned,
        testkit::p256().jwk("e")
    ]))
    .unwrap();
    let [r, p, e] = ks.keys() else { panic!() };
    for alg in Alg::ALL {
        assert_eq!(r.accepts(alg), alg.key_type() == KeyType::Rsa, "{alg}");
        assert_eq!(p.accepts(alg), alg == Alg::PS256, "{alg}");
        assert_eq!(e.accepts(alg), alg == Alg::ES256, "{alg}");
    }
    assert_eq!(p.alg(), Some(Alg::PS256));
}

#[test]
fn alg_names_are_exact() {
    for alg in Alg::ALL {
        assert_eq!(Alg::parse(alg.as_str()), Some(alg));
    }
    for name in ["none", "None", "HS256", "rs256", "RS256 ", "ES512", ""] {
        assert_eq!(Alg::parse(name), None, "{name}");
    }
    assert_eq!(Alg::LIST, Alg::ALL.map(Alg::as_str).join(", "));
}
