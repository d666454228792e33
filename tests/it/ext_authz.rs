//! Envoy's `ext_authz` `Check` on the gateway listener, called with a tonic
//! client built from the same protos Envoy uses (`envoy-types`), with the
//! claims where Envoy's `jwt_authn` puts them. The real-Envoy run is
//! `tests/e2e` (`.ci/run`); this needs no Envoy.

use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::util::*;

pub const INSTANCE: &str =
    "/storage/api/v1/instances/50001337/3f7b9c3e-5b7e-4b63-9d5a-0c8f5c0a1b2c";

/// JSON as the protobuf `Struct` values Envoy sends.
fn pb(v: &Value) -> PbValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(envoy_types::pb::google::protobuf::ListValue {
            values: a.iter().map(pb).collect(),
        }),
        Value::Object(o) => Kind::StructValue(pb_struct(o)),
    };
    PbValue { kind: Some(kind) }
}

fn pb_struct(o: &serde_json::Map<String, Value>) -> Struct {
    Struct {
        fields: o.iter().map(|(k, v)| (k.clone(), pb(v))).collect(),
    }
}

fn org(id: &str) -> Value {
    json!({"authority": "iso6523-actorid-upis", "ID": format!("0192:{id}")})
}

/// A Maskinporten-shaped payload: `supplier` acting for `owner` (or the owner
/// itself when `supplier` is `None`) with `scopes`.
pub fn payload(supplier: Option<&str>, owner: &str, scopes: &[&str]) -> Value {
    let mut p = json!({
        "iss": "https://maskinporten.no/",
        "consumer": org(owner),
        "scope": scopes.join(" "),
        "client_id": "test-client",
        "exp": 4_102_444_800u64,
    });
    if let Some(s) = supplier {
        p["supplier"] = org(s);
        p["delegation_source"] = json!("https://platform.altinn.no/");
    }
    p
}

/// A check as Envoy sends it, with `payload` in `jwt_authn`'s metadata.
pub fn check(method: &str, path: &str, payload: Option<Value>) -> CheckRequest {
    let mut metadata = Metadata::default();
    if let Some(p) = payload {
        let mut ns = serde_json::Map::new();
        ns.insert("jwt_payload".into(), p);
        metadata
            .filter_metadata
            .insert("envoy.filters.http.jwt_authn".into(), pb_struct(&ns));
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers: [
                        ("x-tilgang-supplier".to_string(), "999999999".to_string()),
                        ("authorization".to_string(), "Bearer x".to_string()),
                    ]
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            metadata_context: Some(metadata),
            ..Default::default()
        }),
    }
}

pub async fn client(s: &TestServer) -> AuthorizationClient<Channel> {
    AuthorizationClient::connect(format!("http://{}", s.sidecar.gateway_addr))
        .await
        .unwrap()
}

/// The gRPC code, the HTTP status (0 for OK), the headers set on an allowed
/// request, and the body of a denial.
struct Answer {
    code: i32,
    http: i32,
    headers: Vec<(String, String)>,
    removed: Vec<String>,
    body: Value,
}

fn answer(r: CheckResponse) -> Answer {
    let code = r.status.unwrap().code;
    match r.http_response {
        Some(HttpResponse::OkResponse(ok)) => Answer {
            code,
            http: 0,
            headers: ok
                .headers
                .iter()
                .map(|h| {
                    let h = h.header.as_ref().unwrap();
                    (h.key.clone(), h.value.clone())
                })
                .collect(),
            removed: ok.headers_to_remove,
            body: Value::Null,
        },
        Some(HttpResponse::DeniedResponse(d)) => Answer {
            code,
            http: d.status.unwrap().code,
            headers: Vec::new(),
            removed: Vec::new(),
            body: serde_json::from_str(&d.body).unwrap(),
        },
        other => panic!("no HTTP response: {other:?}"),
    }
}

async fn ask(c: &mut AuthorizationClient<Channel>, req: CheckRequest) -> Answer {
    answer(c.check(req).await.unwrap().into_inner())
}

const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

#[tokio::test(flavor = "multi_thread")]
async fn a_delegated_supplier_is_allowed_with_headers_for_the_upstream() {
    let s = TestServer::start().await;
    let mut c = client(&s).await;
    let p = payload(Some(FULL_SUPPLIER), OWNER, &[READ, WRITE]);
    let a = ask(
        &mut c,
        check("GET", &format!("{INSTANCE}?x=1"), Some(p.clone())),
    )
    .await;
    assert_eq!((a.code, a.http), (OK, 0), "{:?}", a.body);
    assert!(
        a.headers
            .contains(&("x-tilgang-supplier".into(), FULL_SUPPLIER.into()))
    );
    assert!(
        a.headers
            .contains(&("x-tilgang-owner".into(), OWNER.into()))
    );
    assert!(
        a.headers
            .contains(&("x-tilgang-revision".into(), s.revision()))
    );
    // Writes too: instances-full.
    let a = ask(&mut c, check("DELETE", INSTANCE, Some(p))).await;
    assert_eq!(a.code, OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn denials_say_why() {
    let s = TestServer::start().await;
    let mut c = client(&s).await;
    let write = format!("{INSTANCE}/data/0c8f5c0a-1b2c-4b63-9d5a-3f7b9c3e5b7e");

    // A read-only supplier writing.
    let a = ask(
        &mut c,
        check(
            "PUT",
            &write,
            Some(payload(Some(READ_SUPPLIER), OWNER, &[READ, WRITE])),
        ),
    )
    .await;
    assert_eq!((a.code, a.http), (PERMISSION_DENIED, 403));
    let reason = a.body["reason"].as_str().unwrap();
    assert!(reason.contains("has not delegated"), "{reason}");
    assert_eq!(a.body["scope"], WRITE);
    assert_eq!(a.body["revision"], s.revision().as_str());

    // No delegation at all.
    let a = ask(
        &mut c,
        check(
            "GET",
            INSTANCE,
            Some(payload(Some(NEW_SUPPLIER), OWNER, &[READ])),
        ),
    )
    .await;
    assert_eq!((a.code, a.http), (PERMISSION_DENIED, 403));

    // Delegated, but the token lacks the route's scope.
    let a = ask(
        &mut c,
        check(
            "PUT",
            &write,
            Some(payload(Some(FULL_SUPPLIER), OWNER, &[READ])),
        ),
    )
    .await;
    assert_eq!((a.code, a.http), (PERMISSION_DENIED, 403));
    assert_eq!(a.body["policies"], json!(["token-carries-scope"]));

    // No route: an unmapped path, and a mapped path with another method.
    for (m, p) in [("GET", "/storage/api/v1/applications"), ("PATCH", INSTANCE)] {
        let a = ask(
            &mut c,
            check(
                m,
                p,
                Some(payload(Some(FULL_SUPPLIER), OWNER, &[READ, WRITE])),
            ),
        )
        .await;
        assert_eq!((a.code, a.http), (PERMISSION_DENIED, 403), "{m} {p}");
        assert!(
            a.body["reason"].as_str().unwrap().starts_with("no route"),
            "{:?}",
            a.body
        );
    }
    // A path that could mean something else upstream.
    let a = ask(
        &mut c,
        check(
            "GET",
            "/storage/api/v1/instances/1/..%2F2",
            Some(payload(Some(FULL_SUPPLIER), OWNER, &[READ])),
        ),
    )
    .await;
    assert_eq!(a.http, 403);

    // Claims that cannot be read: 403; no claims at all: 401.
    let mut bad = payload(Some(FULL_SUPPLIER), OWNER, &[READ]);
    bad["supplier"]["ID"] = json!("0192:810418673");
    let a = ask(&mut c, check("GET", INSTANCE, Some(bad))).await;
    assert_eq!((a.code, a.http), (PERMISSION_DENIED, 403));
    assert!(
        a.body["reason"].as_str().unwrap().contains("`supplier.ID`"),
        "{:?}",
        a.body
    );
    let a = ask(&mut c, check("GET", INSTANCE, None)).await;
    assert_eq!((a.code, a.http), (UNAUTHENTICATED, 401));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_acts_for_itself_with_its_scope() {
    let s = TestServer::start().await;
    let mut c = client(&s).await;
    let a = ask(
        &mut c,
        check("GET", INSTANCE, Some(payload(None, OWNER, &[READ]))),
    )
    .await;
    assert_eq!(a.code, OK, "{:?}", a.body);
    assert!(
        a.headers
            .contains(&("x-tilgang-owner".into(), OWNER.into()))
    );
    assert!(!a.headers.iter().any(|(k, _)| k == "x-tilgang-supplier"));
    assert_eq!(
        a.removed,
        ["x-tilgang-supplier"],
        "a client's own header is dropped"
    );
    let a = ask(
        &mut c,
        check(
            "POST",
            "/storage/api/v1/instances",
            Some(payload(None, OWNER, &[READ])),
        ),
    )
    .await;
    assert_eq!((a.code, a.http), (PERMISSION_DENIED, 403));
    // A supplier claim naming the owner itself is still no self-delegation.
    let a = ask(
        &mut c,
        check("GET", INSTANCE, Some(payload(Some(OWNER), OWNER, &[READ]))),
    )
    .await;
    assert_eq!(a.http, 403);
    assert_eq!(a.body["policies"], json!(["no-self-delegation"]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_takes_effect_on_the_next_check_with_the_same_token() {
    let s = TestServer::start().await;
    let mut c = client(&s).await;
    let mut admin = s.admin().await;
    let token = payload(Some(READ_SUPPLIER), OWNER, &[READ]);
    let req = || check("GET", INSTANCE, Some(token.clone()));
    assert_eq!(ask(&mut c, req()).await.code, OK);
    let revoked = admin
        .revoke(tilgang::proto::RevokeRequest {
            owner: OWNER.into(),
            supplier: READ_SUPPLIER.into(),
            rights: vec![],
            actor: DAGL.into(),
        })
        .await
        .unwrap()
        .into_inner();
    // The very next check: no waiting, no reload.
    assert_eq!(ask(&mut c, req()).await.http, 403);
    admin
        .undo_revoke(tilgang::proto::UndoRevokeRequest {
            undo_token: revoked.undo_token,
            actor: DAGL.into(),
        })
        .await
        .unwrap();
    assert_eq!(ask(&mut c, req()).await.code, OK);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_authors_can_write_rules_over_the_route_and_the_token() {
    let s = TestServer::start().await;
    let mut c = client(&s).await;
    let full = payload(Some(FULL_SUPPLIER), OWNER, &[READ, WRITE]);
    assert_eq!(
        ask(&mut c, check("DELETE", INSTANCE, Some(full.clone())))
            .await
            .code,
        OK
    );
    std::fs::write(
        s.work.policies().join("no-deletes-by-suppliers.cedar"),
        r#"@id("no-deletes-by-suppliers")
forbid (principal, action == Tilgang::Action::"callApi", resource)
when { context has http && context.http.method == "DELETE" &&
       context has token && context.token has supplier };
"#,
    )
    .unwrap();
    eventually("the new policy to apply", || {
        let mut c = c.clone();
        let full = full.clone();
        async move {
            ask(&mut c, check("DELETE", INSTANCE, Some(full)))
                .await
                .http
                == 403
        }
    })
    .await;
    let a = ask(&mut c, check("DELETE", INSTANCE, Some(full.clone()))).await;
    assert_eq!(a.body["policies"], json!(["no-deletes-by-suppliers"]));
    // Reads go on; the owner itself may still delete.
    assert_eq!(
        ask(&mut c, check("GET", INSTANCE, Some(full))).await.code,
        OK
    );
    let own = payload(None, OWNER, &[WRITE]);
    assert_eq!(
        ask(&mut c, check("DELETE", INSTANCE, Some(own))).await.code,
        OK
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_route_table_is_hot_reloaded() {
    let s = TestServer::start().await;
    let mut c = client(&s).await;
    let p = payload(Some(FULL_SUPPLIER), OWNER, &[READ]);
    let events = format!("{INSTANCE}/events");
    assert_eq!(
        ask(&mut c, check("GET", &events, Some(p.clone())))
            .await
            .http,
        403
    );
    let path = s.work.policies().join("routes.json");
    let mut table: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    table["routes"].as_array_mut().unwrap().push(json!({
        "method": "GET",
        "path": "/storage/api/v1/instances/{instanceOwnerPartyId}/{instanceGuid}/events",
        "scope": READ,
        "source": "test"
    }));
    save_by_rename(&path, &table.to_string());
    eventually("the new route to apply", || {
        let mut c = c.clone();
        let p = p.clone();
        let events = events.clone();
        async move { ask(&mut c, check("GET", &events, Some(p))).await.code == OK }
    })
    .await;
    // A broken table is rejected; the last good one stays.
    std::fs::write(
        &path,
        r#"{"routes":[{"method":"GET","path":"no-slash","scope":"a:b","source":"x"}]}"#,
    )
    .unwrap();
    eventually("the broken table to be rejected", || async {
        s.sidecar.reloader.problems().iter().any(|p| {
            p.location.ends_with("routes.json") && p.message.contains("must start with `/`")
        })
    })
    .await;
    assert_eq!(ask(&mut c, check("GET", &events, Some(p))).await.code, OK);
    s.stop().await;
}

/// Metadata nested past what protobuf decoding allows is the caller's error,
/// `INVALID_ARGUMENT` naming where, never `INTERNAL`; a shallower request
/// with the same claims is still decided.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_nested_too_deep_is_invalid_argument() {
    let s = TestServer::start().await;
    let mut c = client(&s).await;
    let nested = |claim: &str, depth: usize| {
        let mut p = payload(Some(FULL_SUPPLIER), OWNER, &[READ]);
        let mut deep = json!("bottom");
        for _ in 0..depth {
            deep = json!({ "n": deep });
        }
        p[claim] = deep;
        check("GET", INSTANCE, Some(p))
    };
    // A claim tilgang reads, nested past prost's recursion limit: the bytes
    // are refused, naming where.
    for depth in [40, 200] {
        let e = c.check(nested("supplier", depth)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{depth}: {e:?}");
        assert!(
            e.message().contains("CheckRequest")
                && e.message().contains("attributes.metadata_context")
                && e.message().contains("supplier"),
            "{}",
            e.message()
        );
        assert!(e.message().len() < 600, "{}", e.message());
    }
    // Within the limit it decodes, and is not an organisation: a deny.
    let a = ask(&mut c, nested("supplier", 31)).await;
    assert_eq!(a.code, PERMISSION_DENIED, "{:?}", a.body);
    // A claim tilgang does not read is not decoded, however deep.
    for depth in [5, 200] {
        let a = ask(&mut c, nested("deep", depth)).await;
        assert_eq!(a.code, OK, "{depth}: {:?}", a.body);
    }
    s.stop().await;
}
