//! The verifier's tests: time, issuer, audience, claims, configuration,
//! malformed input (`signatures`: algorithms, keys and signatures).

mod signatures;

use super::*;
use crate::auth::keys::KeySet;
use crate::auth::testkit::{self, TestKey, now};
use serde_json::json;

const ISS: &str = "https://maskinporten.no/";
const AUD: &str = "https://tilgang.example/";

/// A verifier over a fixed key set: the RSA key as `r1`, the P-256 key
/// as `e1`, an Ed25519 key as `o1`, with issuer and audience checked.
fn verifier() -> Verifier {
    verifier_with(
        json!([
            testkit::rsa().jwk("r1"),
            testkit::p256().jwk("e1"),
            testkit::ed25519().jwk("o1"),
        ]),
        VerifierConfig {
            issuer: Some(ISS.into()),
            audiences: vec![AUD.into(), "other".into()],
            ..VerifierConfig::default()
        },
    )
}

fn verifier_with(keys: Value, config: VerifierConfig) -> Verifier {
    let set = KeySet::from_json(json!({ "keys": keys }).to_string().as_bytes()).unwrap();
    Verifier::new(Arc::new(JwksFile::fixed(set)), config).unwrap()
}

/// Maskinporten-shaped claims valid for the next two minutes.
fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "scope": "altinn:serviceowner/instances.read",
        "consumer": {"authority": "iso6523-actorid-upis", "ID": "0192:991825827"},
        "iat": now(),
        "exp": now() + 120,
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

fn signed(key: &TestKey, alg: &str, kid: Option<&str>, claims: &Value) -> String {
    let header = match kid {
        Some(kid) => json!({"alg": alg, "typ": "JWT", "kid": kid}),
        None => json!({"alg": alg, "typ": "JWT"}),
    };
    testkit::token(key, &header, claims)
}

fn rs256(claims: &Value) -> String {
    signed(testkit::rsa(), "RS256", Some("r1"), claims)
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused_outside_the_leeway() {
    let v = verifier();
    // Well outside the leeway, so a tick of the real clock cannot matter;
    // the boundaries are tested at fixed instants below.
    let t = now();
    let exp = t - 60;
    assert_eq!(
        v.verify(&rs256(&with(claims(), "exp", json!(exp)))),
        Err(TokenError::Expired { at: exp })
    );
    let nbf = t + 60;
    assert_eq!(
        v.verify(&rs256(&with(claims(), "nbf", json!(nbf)))),
        Err(TokenError::NotYetValid { from: nbf })
    );
}

#[test]
fn the_leeway_holds_on_both_sides_to_the_second() {
    let v = verifier();
    let t = 1_800_000_000;
    let at = |c: &Value, now| v.verify_at(&rs256(c), now);
    let base = with(claims(), "exp", json!(t));
    // exp: valid while now < exp + 30.
    assert!(at(&base, t + 29).is_ok());
    assert_eq!(at(&base, t + 30), Err(TokenError::Expired { at: t }));
    // nbf: valid from nbf - 30.
    let early = with(with(claims(), "exp", json!(t + 600)), "nbf", json!(t + 100));
    assert!(at(&early, t + 70).is_ok());
    assert_eq!(
        at(&early, t + 69),
        Err(TokenError::NotYetValid { from: t + 100 })
    );
    // Fractions count against the token; absurd values saturate.
    let fraction = with(claims(), "exp", json!(t as f64 + 0.9));
    assert_eq!(at(&fraction, t + 30), Err(TokenError::Expired { at: t }));
    let far = with(claims(), "exp", json!(1e300));
    assert!(at(&far, t).is_ok());
    let past = with(claims(), "exp", json!(-1e300));
    assert_eq!(at(&past, t), Err(TokenError::Expired { at: i64::MIN }));

    let strict = verifier_with(
        json!([testkit::rsa().jwk("r1")]),
        VerifierConfig {
            leeway: Duration::ZERO,
            ..VerifierConfig::default()
        },
    );
    assert!(strict.verify_at(&rs256(&base), t - 1).is_ok());
    assert_eq!(
        strict.verify_at(&rs256(&base), t),
        Err(TokenError::Expired { at: t })
    );
}

#[test]
fn exp_is_required_and_time_claims_must_be_numbers() {
    let v = verifier();
    assert_eq!(
        v.verify(&rs256(&without(claims(), "exp"))),
        Err(TokenError::MissingClaim { name: "exp".into() })
    );
    assert_eq!(
        v.verify(&rs256(&with(claims(), "exp", json!(null)))),
        Err(TokenError::InvalidClaim {
            name: "exp".into(),
            want: "a number"
        })
    );
    let far = (now() + 100).to_string();
    assert_eq!(
        v.verify(&rs256(&with(claims(), "exp", json!(far)))),
        Err(TokenError::InvalidClaim {
            name: "exp".into(),
            want: "a number"
        })
    );
    assert_eq!(
        v.verify(&rs256(&with(claims(), "nbf", json!("0")))),
        Err(TokenError::InvalidClaim {
            name: "nbf".into(),
            want: "a number"
        })
    );
}

#[test]
fn issuer_is_checked_exactly_when_configured() {
    let v = verifier();
    assert_eq!(
        v.verify(&rs256(&with(
            claims(),
            "iss",
            json!("https://maskinporten.no")
        ))),
        Err(TokenError::WrongIssuer {
            got: "https://maskinporten.no".into(),
            want: ISS.into()
        })
    );
    assert_eq!(
        v.verify(&rs256(&without(claims(), "iss"))),
        Err(TokenError::MissingClaim { name: "iss".into() })
    );
    assert_eq!(
        v.verify(&rs256(&with(claims(), "iss", json!([ISS])))),
        Err(TokenError::InvalidClaim {
            name: "iss".into(),
            want: "a string"
        })
    );
    // A long issuer is cut in the message.
    let long = "i".repeat(1000);
    let err = v
        .verify(&rs256(&with(claims(), "iss", json!(long))))
        .unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
    // Not configured: any issuer.
    let open = verifier_with(json!([testkit::rsa().jwk("r1")]), VerifierConfig::default());
    assert!(open.verify(&rs256(&without(claims(), "iss"))).is_ok());
}

#[test]
fn audience_string_or_array_must_hold_an_accepted_one() {
    let v = verifier();
    assert!(
        v.verify(&rs256(&with(claims(), "aud", json!(["x", "other"]))))
            .is_ok()
    );
    assert_eq!(
        v.verify(&rs256(&with(
            claims(),
            "aud",
            json!("https://evil.example/")
        ))),
        Err(TokenError::WrongAudience {
            got: "\"https://evil.example/\"".into()
        })
    );
    assert_eq!(
        v.verify(&rs256(&with(claims(), "aud", json!(["a", "b"])))),
        Err(TokenError::WrongAudience {
            got: "[\"a\",\"b\"]".into()
        })
    );
    assert_eq!(
        v.verify(&rs256(&with(claims(), "aud", json!([])))),
        Err(TokenError::WrongAudience { got: "[]".into() })
    );
    assert_eq!(
        v.verify(&rs256(&without(claims(), "aud"))),
        Err(TokenError::MissingClaim { name: "aud".into() })
    );
    for bad in [json!([AUD, 1]), json!(1), json!({"aud": AUD})] {
        assert_eq!(
            v.verify(&rs256(&with(claims(), "aud", bad))),
            Err(TokenError::InvalidClaim {
                name: "aud".into(),
                want: "a string or an array of strings"
            })
        );
    }
    // A prefix or different case is not the audience.
    for near in ["https://tilgang.example", "HTTPS://TILGANG.EXAMPLE/"] {
        assert!(matches!(
            v.verify(&rs256(&with(claims(), "aud", json!(near)))),
            Err(TokenError::WrongAudience { .. })
        ));
    }
}

#[test]
fn garbage_is_malformed_and_never_panics() {
    let v = verifier();
    let good = rs256(&claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "not three dot-separated parts"),
        ("abc".into(), "not three dot-separated parts"),
        ("a.b".into(), "not three dot-separated parts"),
        (format!("{h}.{p}"), "not three dot-separated parts"),
        (format!("{h}.{p}.{s}.x.y"), "not three dot-separated parts"),
        (format!("{h}.{p}.{s}."), "not three dot-separated parts"),
        (
            "..".into(),
            "the header is not a JSON object with string `alg` and `kid`",
        ),
        (
            format!("{h}.{p}."),
            "the signature is not unpadded base64url",
        ),
        (
            format!("{h}.{p}.{s}="),
            "the signature is not unpadded base64url",
        ),
        (
            format!("{h}.{p}.a+b/"),
            "the signature is not unpadded base64url",
        ),
        (
            format!("{h}.{p}!.{s}"),
            "the payload is not unpadded base64url",
        ),
        (
            format!("{h}=.{p}.{s}"),
            "the header is not unpadded base64url",
        ),
        (format!("é.{p}.{s}"), "the header is not unpadded base64url"),
        (
            format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode("not json")),
            "the header is not a JSON object with string `alg` and `kid`",
        ),
        (
            format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode("[\"RS256\"]")),
            "the header is not a JSON object with string `alg` and `kid`",
        ),
        (
            format!(
                "{}.{p}.{s}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":1}"#)
            ),
            "the header is not a JSON object with string `alg` and `kid`",
        ),
        (
            format!(
                "{}.{p}.{s}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"none","alg":"RS256","kid":"r1"}"#)
            ),
            "the header is not a JSON object with string `alg` and `kid`",
        ),
        (
            format!(
                "{}.{p}.{s}",
                URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"r1","crit":["b64"],"b64":false}"#)
            ),
            "the header marks extensions critical (`crit`)",
        ),
    ];
    for (token, why) in cases {
        assert_eq!(v.verify(&token), Err(malformed(why)), "{token:?}");
    }
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(
        v.verify(&huge),
        Err(TokenError::TooLong {
            len: MAX_TOKEN_BYTES + 1,
            max: MAX_TOKEN_BYTES
        })
    );
    // Signed, but the payload is not a JSON object.
    for payload in ["not json", "[1,2]", "\"exp\"", ""] {
        let t = testkit::token_raw(
            testkit::rsa(),
            &json!({"alg": "RS256", "kid": "r1"}),
            payload.as_bytes(),
        );
        assert_eq!(
            v.verify(&t),
            Err(malformed("the payload is not a JSON object")),
            "{payload:?}"
        );
    }
    // Deep nesting stops at serde_json's recursion limit, not the stack.
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(1000), "]".repeat(1000));
    let t = testkit::token_raw(
        testkit::rsa(),
        &json!({"alg": "RS256", "kid": "r1"}),
        deep.as_bytes(),
    );
    assert_eq!(
        v.verify(&t),
        Err(malformed("the payload is not a JSON object"))
    );
}

#[test]
fn require_str_names_what_is_missing() {
    let v = verifier();
    let c = v
        .verify(&rs256(&with(claims(), "pid", json!("01017012345"))))
        .unwrap();
    assert_eq!(c.require_str("pid"), Ok("01017012345"));
    assert_eq!(
        c.require_str("acr"),
        Err(TokenError::MissingClaim { name: "acr".into() })
    );
    assert_eq!(
        c.require_str("consumer"),
        Err(TokenError::InvalidClaim {
            name: "consumer".into(),
            want: "a string"
        })
    );
    // Debug names claims but never shows their values.
    let shown = format!("{c:?}");
    assert!(
        shown.contains("\"pid\"") && !shown.contains("01017012345"),
        "{shown}"
    );
}

#[test]
fn config_is_checked() {
    let jwks = || {
        Arc::new(JwksFile::fixed(
            KeySet::from_json(
                json!({"keys": [testkit::p256().jwk("e")]})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap(),
        ))
    };
    let new = |c| Verifier::new(jwks(), c).map(drop);
    assert_eq!(
        new(VerifierConfig {
            issuer: Some(String::new()),
            ..VerifierConfig::default()
        }),
        Err(ConfigError::EmptyIssuer)
    );
    assert_eq!(
        new(VerifierConfig {
            audiences: vec!["a".into(), String::new()],
            ..VerifierConfig::default()
        }),
        Err(ConfigError::EmptyAudience)
    );
    assert!(matches!(
        new(VerifierConfig {
            leeway: Duration::from_secs(301),
            ..VerifierConfig::default()
        }),
        Err(ConfigError::LeewayTooLong { .. })
    ));
    assert_eq!(VerifierConfig::default().leeway, Duration::from_secs(30));
}

#[test]
fn error_messages_never_carry_the_token() {
    let v = verifier();
    let token = rs256(&with(claims(), "exp", json!(now() - 3600)));
    let (_, rest) = token.split_once('.').unwrap();
    let sig = rest.split_once('.').unwrap().1;
    let err = v.verify(&token).unwrap_err();
    let msg = err.to_string();
    assert!(!msg.contains(sig) && !msg.contains(&token[..20]), "{msg}");
    assert_eq!(err.kind(), "expired");
}

/// A claim named twice is refused, as Envoy's `jwt_authn` refuses it, at the
/// top level and inside `consumer`/`supplier`: serde_json would keep the
/// last, another reader the first.
#[test]
fn a_duplicated_claim_is_refused() {
    let v = verifier();
    let exp = now() + 120;
    let consumer = r#"{"authority":"iso6523-actorid-upis","ID":"0192:991825827"}"#;
    let base = format!(r#""iss":"{ISS}","aud":"{AUD}","exp":{exp},"consumer":{consumer}"#);
    let sign = |payload: String| {
        testkit::token_raw(
            testkit::rsa(),
            &json!({"alg": "RS256", "kid": "r1"}),
            payload.as_bytes(),
        )
    };
    // The same payload without a repeat is accepted: only the repeat refuses.
    assert!(v.verify(&sign(format!("{{{base}}}"))).is_ok());
    let supplier = r#"{"authority":"iso6523-actorid-upis","ID":"0192:810418672"}"#;
    for (extra, name) in [
        (
            format!(r#","supplier":{supplier},"supplier":{supplier}"#),
            "supplier",
        ),
        (format!(r#","consumer":{consumer}"#), "consumer"),
        (r#","scope":"a","scope":"b""#.to_string(), "scope"),
        (format!(r#","iss":"{ISS}""#), "iss"),
        (format!(r#","aud":"{AUD}""#), "aud"),
        (format!(r#","exp":{exp}"#), "exp"),
        (
            r#","supplier":{"ID":"0192:810418672","ID":"0192:974760673"}"#.to_string(),
            "ID",
        ),
    ] {
        let e = v.verify(&sign(format!("{{{base}{extra}}}"))).unwrap_err();
        assert_eq!(
            e,
            TokenError::DuplicateClaim {
                name: TokenError::claim_name(name)
            },
            "{extra}"
        );
        assert_eq!(e.kind(), "duplicate_claim");
    }
}

/// A remembered token is remembered only while it would verify: inside its
/// `nbf`..`exp` window (leeway included) and while the key set it was
/// verified against is the current one.
#[test]
fn a_remembered_token_stands_only_while_it_would_verify() {
    let keys = || {
        KeySet::from_json(
            json!({ "keys": [testkit::rsa().jwk("r1")] })
                .to_string()
                .as_bytes(),
        )
        .unwrap()
    };
    let jwks = Arc::new(JwksFile::fixed(keys()));
    let v = Verifier::new(jwks.clone(), VerifierConfig::default()).unwrap();
    let exp = now() + 120;
    let token = rs256(&with(claims(), "exp", json!(exp)));
    assert!(v.verify_at(&token, now()).is_ok());
    assert!(v.verify_at(&token, now()).is_ok(), "remembered");
    // Past `exp` and the leeway: refused, remembered or not.
    let late = exp + DEFAULT_LEEWAY.as_secs() as i64;
    assert!(matches!(
        v.verify_at(&token, late),
        Err(TokenError::Expired { .. })
    ));
    assert!(v.verify_at(&token, late - 1).is_ok());
    // The key removed: refused at once.
    jwks.replace(
        KeySet::from_json(
            json!({ "keys": [testkit::p256().jwk("e1")] })
                .to_string()
                .as_bytes(),
        )
        .unwrap(),
    );
    assert!(matches!(
        v.verify_at(&token, now()),
        Err(TokenError::UnknownKey { .. })
    ));
    // The same key back (a new set): verified again, and good.
    jwks.replace(keys());
    assert!(v.verify_at(&token, now()).is_ok());
    // `nbf` in the future: not remembered into validity before it.
    let nbf = now() + 60;
    let early = rs256(&with(claims(), "nbf", json!(nbf)));
    let from = nbf - DEFAULT_LEEWAY.as_secs() as i64;
    assert!(v.verify_at(&early, from).is_ok());
    assert!(matches!(
        v.verify_at(&early, from - 1),
        Err(TokenError::NotYetValid { .. })
    ));
    // A verifier without the cache verifies the same.
    let plain = Verifier::new(jwks, VerifierConfig::default())
        .unwrap()
        .with_cache(0);
    assert!(plain.verify_at(&token, now()).is_ok());
    assert!(matches!(
        plain.verify_at(&token, late),
        Err(TokenError::Expired { .. })
    ));
}
