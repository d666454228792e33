//! The authenticated admin plane (`--admin-jwks`): every call needs an
//! ID-porten bearer token verified against a JWKS file, acts for the person
//! its `pid` names, and every refusal is counted and on record in the audit
//! log. Without `--admin-jwks`: development mode, loopback only, actors marked
//! unverified. Keys are generated here and rotated by editing the file.

use serde_json::{Value, json};
use tilgang::auth::VerifierConfig;
use tilgang::proto::delegations_client::DelegationsClient;
use tilgang::proto::{
    DelegateRequest, ListDelegationsRequest, ListRightsRequest, RevokeRequest, UndoRevokeRequest,
};
use tilgang::sidecar::{AdminAuthConfig, BearerConfig, Sidecar};
use tilgang::telemetry::metrics::{AdminKind, Refusal};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::jwt::{Key, es256, now, rs256, write_jwks};
use crate::util::*;

mod cli;
mod development;
mod flood;

const ISSUER: &str = "https://idporten.no";
const AUDIENCE: &str = "tilgang-admin";
/// Key roles for the fixture owners (`tests/fixtures/data/roles.json`).
const DAGL: &str = "01017012345";
const LEDE: &str = "04048612345";
/// APIADM for the other owner only.
const STRANGER: &str = "02029054321";

/// An ID-porten-shaped token body for `pid`, valid for `lifetime` seconds.
fn claims(pid: &str, lifetime: i64) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "pid": pid,
        "acr": "idporten-loa-high",
        "iat": now(),
        "exp": now().saturating_add_signed(lifetime),
    })
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn delegate(actor: &str) -> DelegateRequest {
    DelegateRequest {
        owner: OWNER.into(),
        supplier: NEW_SUPPLIER.into(),
        rights: vec!["instances-read".into()],
        actor: actor.into(),
    }
}

fn audit(s: &TestServer) -> Vec<Value> {
    std::fs::read_to_string(s.work.data().join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn refusals(s: &TestServer) -> Vec<Value> {
    audit(s)
        .into_iter()
        .filter(|l| l.get("refused").is_some())
        .collect()
}

/// `--admin-jwks jwks` with the `pid` claim, and the issuer and audience
/// given.
fn tokens(
    jwks: std::path::PathBuf,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> AdminAuthConfig {
    AdminAuthConfig {
        tokens: BearerConfig {
            jwks,
            verifier: VerifierConfig {
                issuer: issuer.map(str::to_string),
                audiences: audience.iter().map(|a| a.to_string()).collect(),
                ..VerifierConfig::default()
            },
        },
        person_claim: "pid".into(),
    }
}

struct Admin {
    server: TestServer,
    client: DelegationsClient<Channel>,
    jwks: std::path::PathBuf,
}

async fn start(keys: &[Value]) -> Admin {
    let work = Workdir::new();
    let jwks = work.dir.path().join("idporten-jwks.json");
    write_jwks(&jwks, keys);
    let path = jwks.clone();
    let server = TestServer::start_in(work, |c| {
        c.admin_auth = Some(tokens(path, Some(ISSUER), Some(AUDIENCE)));
    })
    .await;
    let client = server.admin().await;
    Admin {
        server,
        client,
        jwks,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_call_acts_for_the_person_its_token_names() {
    let (es, rs) = (es256(), rs256());
    let Admin {
        server: s,
        mut client,
        ..
    } = start(&[es.jwk("es"), rs.jwk("rs")]).await;
    let dagl = es.sign("es", &claims(DAGL, 120));

    // `actor` left out: the token's person acts.
    let d = client
        .delegate(with_token(delegate(""), Some(&dagl)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.delegated_by, DAGL);
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    // `actor` the same person, an RS256 token: fine too.
    let rs_dagl = rs.sign("rs", &claims(DAGL, 120));
    let revoked = client
        .revoke(with_token(
            RevokeRequest {
                owner: OWNER.into(),
                supplier: NEW_SUPPLIER.into(),
                rights: vec![],
                actor: DAGL.into(),
            },
            Some(&rs_dagl),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    client
        .undo_revoke(with_token(
            UndoRevokeRequest {
                undo_token: revoked.undo_token,
                actor: String::new(),
            },
            Some(&dagl),
        ))
        .await
        .unwrap();
    assert!(s.decide(NEW_SUPPLIER, OWNER, READ).await.allowed);
    // The overview and the catalogue need a token as well.
    let listed = client
        .list_delegations(with_token(
            ListDelegationsRequest {
                owner: OWNER.into(),
                ..Default::default()
            },
            Some(&dagl),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .delegations
            .iter()
            .any(|d| d.supplier == NEW_SUPPLIER)
    );
    client
        .list_rights(with_token(ListRightsRequest {}, Some(&dagl)))
        .await
        .unwrap();
    for e in [
        client
            .list_rights(with_token(ListRightsRequest {}, None))
            .await
            .unwrap_err(),
        client
            .list_delegations(with_token(ListDelegationsRequest::default(), None))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    }

    // Every change line names the verified person.
    let changes: Vec<Value> = audit(&s)
        .into_iter()
        .filter(|l| l.get("change").is_some())
        .collect();
    assert_eq!(changes.len(), 3, "{changes:?}");
    for l in &changes {
        assert_eq!(
            (l["actor"].as_str(), l["actor_auth"].as_str()),
            (Some(DAGL), Some("token")),
            "{l}"
        );
    }

    // Someone else's name in `actor`: PERMISSION_DENIED, nothing written, on
    // record with both names.
    let lede = es.sign("es", &claims(LEDE, 120));
    let before = std::fs::read_to_string(s.work.owner_file(OWNER)).unwrap();
    let e = client
        .delegate(with_token(delegate(DAGL), Some(&lede)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("`actor`"), "{}", e.message());
    // A person without a key role for the owner: forbidden by the policy.
    let stranger = rs.sign("rs", &claims(STRANGER, 120));
    let e = client
        .delegate(with_token(delegate(""), Some(&stranger)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(
        std::fs::read_to_string(s.work.owner_file(OWNER)).unwrap(),
        before
    );
    let r = refusals(&s);
    let mismatch = r.iter().find(|l| l["reason"] == "actor_mismatch").unwrap();
    assert_eq!(mismatch["refused"], "delegate");
    assert_eq!(mismatch["actor"], LEDE);
    assert_eq!(mismatch["actor_auth"], "token");
    assert_eq!(mismatch["requested_actor"], DAGL);
    assert_eq!(mismatch["owner"], OWNER);
    assert_eq!(mismatch["supplier"], NEW_SUPPLIER);
    assert!(mismatch["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    let forbidden = r.iter().find(|l| l["reason"] == "forbidden").unwrap();
    assert_eq!(forbidden["actor"], STRANGER);
    assert_eq!(forbidden["actor_auth"], "token");

    // The overview shows a person only the owners they administer: naming
    // another is forbidden; without an owner, others are left out.
    let list = |token: String, owner: &str| {
        let mut c = client.clone();
        let req = ListDelegationsRequest {
            owner: owner.into(),
            ..Default::default()
        };
        async move {
            c.list_delegations(with_token(req, Some(&token)))
                .await
                .map(|r| {
                    let mut owners: Vec<String> = r
                        .into_inner()
                        .delegations
                        .into_iter()
                        .map(|d| d.owner)
                        .collect();
                    owners.dedup();
                    owners
                })
        }
    };
    assert_eq!(list(dagl.clone(), "").await.unwrap(), [OWNER]);
    assert_eq!(list(stranger.clone(), "").await.unwrap(), ["983887457"]);
    let e = list(stranger.clone(), OWNER).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let listed_forbidden = refusals(&s)
        .into_iter()
        .find(|l| l["refused"] == "list_delegations" && l["reason"] == "forbidden")
        .unwrap();
    assert_eq!(listed_forbidden["owner"], OWNER);
    assert_eq!(listed_forbidden["actor"], STRANGER);

    let m = s.sidecar.telemetry.metrics();
    assert_eq!(
        m.admin_refusals(AdminKind::ListDelegations, Refusal::Forbidden),
        1
    );
    assert_eq!(
        m.admin_refusals(AdminKind::Delegate, Refusal::ActorMismatch),
        1
    );
    assert_eq!(m.admin_refusals(AdminKind::Delegate, Refusal::Forbidden), 1);
    assert_eq!(
        m.admin_refusals(AdminKind::ListRights, Refusal::Unauthenticated),
        1
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_bad_token_is_unauthenticated_with_its_reason_and_on_record() {
    let (es, rs, stranger) = (es256(), rs256(), es256());
    let Admin {
        server: s,
        mut client,
        jwks,
    } = start(&[es.jwk("es"), rs.jwk("rs")]).await;
    let good = claims(DAGL, 120);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let expired = with(&|c| c["exp"] = json!(now() - 120));
    let not_yet = with(&|c| c["nbf"] = json!(now() + 300));
    let wrong_issuer = with(&|c| c["iss"] = json!("https://test.idporten.no"));
    let wrong_audience = with(&|c| c["aud"] = json!("someone-else"));
    let no_pid = with(&|c| {
        c.as_object_mut().unwrap().remove("pid");
    });
    let bad_pid = with(&|c| c["pid"] = json!("../../etc"));
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "no bearer token"),
        ("expired", Some(es.sign("es", &expired)), "expired"),
        (
            "not yet valid",
            Some(es.sign("es", &not_yet)),
            "not valid before",
        ),
        ("wrong issuer", Some(es.sign("es", &wrong_issuer)), "issuer"),
        (
            "wrong audience",
            Some(rs.sign("rs", &wrong_audience)),
            "audience",
        ),
        (
            "wrong key under a known kid",
            Some(stranger.sign("es", &good)),
            "signature",
        ),
        (
            "unknown kid",
            Some(stranger.sign("stranger", &good)),
            "stranger",
        ),
        ("alg none", Some(Key::unsigned("es", &good)), "none"),
        (
            "HS256 with the public key as secret",
            Some(rs.forge_hs256("rs", &good)),
            "HS256",
        ),
        ("no pid", Some(es.sign("es", &no_pid)), "`pid`"),
        (
            "a pid that is no person id",
            Some(es.sign("es", &bad_pid)),
            "`pid`",
        ),
        (
            "garbage",
            Some("abc.def.ghi".into()),
            "bearer token refused",
        ),
    ];
    let before = std::fs::read_to_string(s.work.owner_file(OWNER)).unwrap();
    for (what, token, reason) in &cases {
        let e: Status = client
            .delegate(with_token(delegate(DAGL), token.as_deref()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
        assert!(
            e.message().contains(reason),
            "{what}: `{}` lacks `{reason}`",
            e.message()
        );
        let challenge = e
            .metadata()
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
        assert_eq!(
            challenge.contains("invalid_token"),
            token.is_some(),
            "{what}: {challenge}"
        );
    }
    // A scheme other than Bearer.
    let mut basic = Request::new(delegate(DAGL));
    basic
        .metadata_mut()
        .insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
    let e = client.delegate(basic).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("not `Bearer"), "{}", e.message());

    // Nothing written; every attempt on record, none with its token.
    assert_eq!(
        std::fs::read_to_string(s.work.owner_file(OWNER)).unwrap(),
        before
    );
    let text = std::fs::read_to_string(s.work.data().join("audit.jsonl")).unwrap();
    for (what, token, _) in &cases {
        if let Some(t) = token {
            assert!(
                !text.contains(t.as_str()),
                "{what}: the token is in the audit log"
            );
        }
    }
    let r = refusals(&s);
    assert_eq!(r.len(), cases.len() + 1, "{r:?}");
    for l in &r {
        assert_eq!(l["reason"], "unauthenticated", "{l}");
        assert_eq!(l["actor_auth"], "none", "{l}");
        assert!(l.get("actor").is_none(), "{l}");
        assert_eq!(l["requested_actor"], DAGL, "{l}");
        assert_eq!(l["rights"], json!(["instances-read"]), "{l}");
    }
    assert_eq!(
        s.sidecar
            .telemetry
            .metrics()
            .admin_refusals(AdminKind::Delegate, Refusal::Unauthenticated),
        cases.len() as u64 + 1
    );

    // Key rotation through the file: the stranger's key comes in as `next`,
    // the RS256 key goes.
    let next = stranger.sign("next", &good);
    write_jwks(&jwks, &[es.jwk("es"), stranger.jwk("next")]);
    eventually("the rotated key to verify", || {
        let mut c = client.clone();
        let req = with_token(ListRightsRequest {}, Some(&next));
        async move { c.list_rights(req).await.is_ok() }
    })
    .await;
    let old = rs.sign("rs", &good);
    let e = client
        .list_rights(with_token(ListRightsRequest {}, Some(&old)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_pages_through_every_owner_they_administer_and_no_other() {
    let es = es256();
    let work = Workdir::new();
    // DAGL of both fixture owners; LEDE of the first only.
    std::fs::write(
        work.data().join("roles.json"),
        json!([
            {"org": "991825827", "person": DAGL, "role": "DAGL"},
            {"org": "983887457", "person": DAGL, "role": "DAGL"},
            {"org": "991825827", "person": LEDE, "role": "LEDE"},
            {"org": "983887457", "person": STRANGER, "role": "REGN"},
        ])
        .to_string(),
    )
    .unwrap();
    let jwks = work.dir.path().join("jwks.json");
    write_jwks(&jwks, &[es.jwk("es")]);
    let s = TestServer::start_in(work, |c| {
        c.admin_auth = Some(tokens(jwks, None, Some(AUDIENCE)));
    })
    .await;
    let client = s.admin().await;
    let walk = |pid: &str| {
        let token = es.sign("es", &claims(pid, 120));
        let mut c = client.clone();
        async move {
            let (mut seen, mut page_token) = (Vec::new(), String::new());
            loop {
                let req = ListDelegationsRequest {
                    page_size: 1,
                    page_token,
                    ..Default::default()
                };
                let r = c
                    .list_delegations(with_token(req, Some(&token)))
                    .await
                    .unwrap()
                    .into_inner();
                seen.extend(r.delegations.into_iter().map(|d| (d.owner, d.supplier)));
                if r.next_page_token.is_empty() {
                    return seen;
                }
                page_token = r.next_page_token;
            }
        }
    };
    let all = walk(DAGL).await;
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "in (owner, supplier) order");
    let owners: std::collections::BTreeSet<&str> = all.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(owners.into_iter().collect::<Vec<_>>(), ["983887457", OWNER]);
    let lede = walk(LEDE).await;
    assert!(
        !lede.is_empty() && lede.iter().all(|(o, _)| o == OWNER),
        "{lede:?}"
    );
    assert_eq!(lede.len(), all.iter().filter(|(o, _)| o == OWNER).count());
    // A role the policy does not accept (REGN) shows nothing.
    assert!(walk(STRANGER).await.is_empty());
    s.stop().await;
}
