//! `Check` without Envoy's `jwt_authn`: `serve --jwks` verifies the
//! `Authorization: Bearer` token itself. Keys are generated here (ES256 and
//! RS256), written as a real JWKS file, and rotated by editing it.

use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
use serde_json::{Value, json};
use tilgang::auth::VerifierConfig;
use tilgang::sidecar::BearerConfig;

use crate::ext_authz::{INSTANCE, check, client, payload};
use crate::jwt::{b64, es256, now, rs256, write_jwks};
use crate::util::*;

const ISSUER: &str = "https://maskinporten.no/";

/// A Maskinporten-shaped token body: `exp` `lifetime` seconds from now
/// (negative: already expired).
fn claims(supplier: Option<&str>, lifetime: i64) -> Value {
    let mut c = payload(supplier, OWNER, &[READ]);
    c["iss"] = json!(ISSUER);
    c["iat"] = json!(now());
    c["exp"] = json!(now().saturating_add_signed(lifetime));
    c
}

/// A check as Envoy sends it without `jwt_authn`: no metadata, the token in
/// the `authorization` header.
pub fn bearer_check(authorization: Option<String>) -> CheckRequest {
    let mut req = check("GET", INSTANCE, None);
    let http = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    http.headers.remove("authorization");
    if let Some(a) = authorization {
        http.headers.insert("authorization".into(), a);
    }
    req
}

/// gRPC code, HTTP status (0 when allowed) and the denial's reason.
pub async fn ask(s: &TestServer, req: CheckRequest) -> (i32, i32, String) {
    let r = client(s).await.check(req).await.unwrap().into_inner();
    let status = r.status.unwrap();
    match r.http_response {
        Some(HttpResponse::OkResponse(_)) => (status.code, 0, String::new()),
        Some(HttpResponse::DeniedResponse(d)) => {
            let body: Value = serde_json::from_str(&d.body).unwrap();
            (
                status.code,
                d.status.unwrap().code,
                body["reason"].as_str().unwrap_or_default().to_string(),
            )
        }
        other => panic!("no HTTP response: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_verified_when_jwt_authn_passed_nothing() {
    let (es, rs, stranger) = (es256(), rs256(), es256());
    let work = Workdir::new();
    let jwks = work.dir.path().join("jwks.json");
    write_jwks(&jwks, &[es.jwk("es"), rs.jwk("rs")]);
    let path = jwks.clone();
    let s = TestServer::start_in(work, |c| {
        c.bearer = Some(BearerConfig {
            jwks: path,
            verifier: VerifierConfig {
                issuer: Some(ISSUER.into()),
                ..VerifierConfig::default()
            },
        });
    })
    .await;
    let bearer = |t: String| Some(format!("Bearer {t}"));

    // Good tokens, both algorithms: allowed.
    for (key, kid) in [(&es, "es"), (&rs, "rs")] {
        let token = key.sign(kid, &claims(Some(FULL_SUPPLIER), 120));
        assert_eq!(
            ask(&s, bearer_check(bearer(token))).await,
            (0, 0, "".into())
        );
    }
    // A good token still needs the delegation.
    let token = es.sign("es", &claims(Some(NEW_SUPPLIER), 120));
    let (code, http, _) = ask(&s, bearer_check(bearer(token))).await;
    assert_eq!((code, http), (7, 403));

    // Each bad token: 401 with the reason, never an allow.
    let mut wrong_issuer = claims(Some(FULL_SUPPLIER), 120);
    wrong_issuer["iss"] = json!("https://test.maskinporten.no/");
    let mut not_yet = claims(Some(FULL_SUPPLIER), 600);
    not_yet["nbf"] = json!(now() + 300);
    let good = es.sign("es", &claims(Some(FULL_SUPPLIER), 120));
    let (head, rest) = good.split_once('.').unwrap();
    let (body, _) = rest.split_once('.').unwrap();
    let unsigned = format!(
        "{}.{body}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"es"}"#)
    );
    let tampered = {
        let mut c = claims(Some(FULL_SUPPLIER), 120);
        c["consumer"]["ID"] = json!("0192:999999999");
        let sig = good.rsplit_once('.').unwrap().1;
        format!("{head}.{}.{sig}", b64(c.to_string().as_bytes()))
    };
    for (what, authorization, reason) in [
        ("no header", None, "no `Authorization: Bearer` token"),
        ("basic", Some("Basic dXNlcjpwYXNz".into()), "not `Bearer"),
        (
            "expired",
            bearer(es.sign("es", &claims(Some(FULL_SUPPLIER), -120))),
            "expired",
        ),
        (
            "not yet valid",
            bearer(es.sign("es", &not_yet)),
            "not valid before",
        ),
        (
            "wrong issuer",
            bearer(es.sign("es", &wrong_issuer)),
            "issuer",
        ),
        (
            "someone else's key under a known kid",
            bearer(stranger.sign("es", &claims(Some(FULL_SUPPLIER), 120))),
            "signature",
        ),
        (
            "unknown kid",
            bearer(stranger.sign("stranger", &claims(Some(FULL_SUPPLIER), 120))),
            "stranger",
        ),
        ("alg none", bearer(unsigned), "none"),
        ("tampered payload", bearer(tampered), "signature"),
        ("garbage", bearer("abc.def.ghi".into()), "not valid"),
    ] {
        let (code, http, why) = ask(&s, bearer_check(authorization)).await;
        assert_eq!((code, http), (16, 401), "{what}: {why}");
        assert!(why.contains(reason), "{what}: `{why}` lacks `{reason}`");
    }

    // jwt_authn's claims win over a header when both are there.
    let mut both = check(
        "GET",
        INSTANCE,
        Some(payload(Some(FULL_SUPPLIER), OWNER, &[READ])),
    );
    if let Some(h) = both
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        h.headers
            .insert("authorization".into(), "Bearer abc.def.ghi".into());
    }
    assert_eq!(ask(&s, both).await.0, 0);

    // Key rotation through the file: the stranger's key is added, the RS256
    // key removed.
    let token = stranger.sign("next", &claims(Some(FULL_SUPPLIER), 120));
    write_jwks(&jwks, &[es.jwk("es"), stranger.jwk("next")]);
    eventually("the rotated key to verify", || {
        let req = bearer_check(bearer(token.clone()));
        let s = &s;
        async move { ask(s, req).await.0 == 0 }
    })
    .await;
    let old = rs.sign("rs", &claims(Some(FULL_SUPPLIER), 120));
    assert_eq!(ask(&s, bearer_check(bearer(old))).await.1, 401);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_jwks_a_check_without_jwt_authn_claims_is_401() {
    let s = TestServer::start().await;
    let key = es256();
    let token = key.sign("k", &claims(Some(FULL_SUPPLIER), 120));
    let (code, http, why) = ask(&s, bearer_check(Some(format!("Bearer {token}")))).await;
    assert_eq!((code, http), (16, 401));
    assert!(why.contains("no verified token"), "{why}");
    s.stop().await;
}
