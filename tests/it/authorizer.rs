//! The gateway API over a real connection: decisions, batches, bad input,
//! health and reflection; and malformed input on both listeners (every field of
//! both services, undecodable bytes, huge values), which all share one rule:
//! `INVALID_ARGUMENT`, the field named, the value echoed short.

use tilgang::proto::BatchIsAuthorizedRequest;
use tonic::Code;

use crate::util::*;

#[tokio::test(flavor = "multi_thread")]
async fn decisions_carry_reasons_and_revision() {
    let s = TestServer::start().await;
    let full = s.decide(FULL_SUPPLIER, OWNER, WRITE).await;
    assert!(full.allowed);
    assert_eq!(full.reasons, ["delegated-scope"]);
    assert!(full.errors.is_empty());
    assert_eq!(full.revision, s.revision());
    assert_eq!(full.revision.len(), 16);

    let read_only = s.decide(READ_SUPPLIER, OWNER, WRITE).await;
    assert!(!read_only.allowed);
    assert!(read_only.reasons.is_empty());
    assert!(s.decide(READ_SUPPLIER, OWNER, READ).await.allowed);

    // ISO 6523 form equals the bare number.
    assert!(
        s.decide("0192:810418672", "0192:991825827", WRITE)
            .await
            .allowed
    );
    // Unknown scope: plain deny, no error.
    let unknown = s
        .decide(FULL_SUPPLIER, OWNER, "altinn:serviceowner/other")
        .await;
    assert!(!unknown.allowed && unknown.errors.is_empty());
    // No leak across owners.
    assert!(!s.decide(FULL_SUPPLIER, OTHER_OWNER, READ).await.allowed);
    // Self-delegation is forbidden by policy, and the forbid is the reason.
    let own = s.decide(OWNER, OWNER, READ).await;
    assert!(!own.allowed);
    assert_eq!(own.reasons, ["no-self-delegation"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_is_invalid_argument_naming_the_field() {
    let s = TestServer::start().await;
    let mut c = s.gateway().await;
    let cases = [
        (req("81041867", OWNER, READ), "`supplier`"),
        (req("810418673", OWNER, READ), "`supplier`"),
        (req(FULL_SUPPLIER, "", READ), "`owner`"),
        (req(FULL_SUPPLIER, "0193:991825827", READ), "`owner`"),
        (req(FULL_SUPPLIER, OWNER, ""), "`scope`"),
        (req(FULL_SUPPLIER, OWNER, "has space"), "`scope`"),
    ];
    for (r, field) in cases {
        let e = c.is_authorized(r.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{r:?}");
        assert!(e.message().starts_with(field), "{r:?}: {}", e.message());
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_keeps_order_and_limits_size() {
    let s = TestServer::start().await;
    let mut c = s.gateway().await;
    let requests = vec![
        req(FULL_SUPPLIER, OWNER, WRITE),
        req(READ_SUPPLIER, OWNER, WRITE),
        req(READ_SUPPLIER, OWNER, READ),
        req(NEW_SUPPLIER, OWNER, READ),
        req(FULL_SUPPLIER, OWNER, READ),
    ];
    let r = c
        .batch_is_authorized(BatchIsAuthorizedRequest { requests })
        .await
        .unwrap()
        .into_inner();
    let allowed: Vec<bool> = r.responses.iter().map(|r| r.allowed).collect();
    assert_eq!(allowed, [true, false, true, false, true]);
    let revision = &r.responses[0].revision;
    assert!(r.responses.iter().all(|x| &x.revision == revision));

    let bad = vec![
        req(FULL_SUPPLIER, OWNER, READ),
        req(FULL_SUPPLIER, "x", READ),
    ];
    let e = c
        .batch_is_authorized(BatchIsAuthorizedRequest { requests: bad })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("`requests[1].owner`"),
        "{}",
        e.message()
    );

    let too_many = vec![req(FULL_SUPPLIER, OWNER, READ); 1001];
    let e = c
        .batch_is_authorized(BatchIsAuthorizedRequest { requests: too_many })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("`requests`") && e.message().contains("1000"));

    let max = vec![req(FULL_SUPPLIER, OWNER, READ); 1000];
    let r = c
        .batch_is_authorized(BatchIsAuthorizedRequest { requests: max })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.responses.len(), 1000);
    assert!(r.responses.iter().all(|x| x.allowed));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let s = TestServer::start().await;
    for (addr, service) in [
        (s.sidecar.gateway_addr, "tilgang.v1.Authorizer"),
        (s.sidecar.admin_addr.unwrap(), "tilgang.v1.Delegations"),
    ] {
        let url = format!("http://{addr}");
        let channel = tonic::transport::Channel::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel.clone());
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32);

        let mut refl = ServerReflectionClient::new(channel);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = refl
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
            panic!("unexpected reflection response");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&service.to_string()), "{names:?}");
        assert!(
            names.contains(&"grpc.health.v1.Health".to_string()),
            "{names:?}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_is_not_on_the_gateway_listener() {
    let s = TestServer::start().await;
    let mut wrong = tilgang::proto::delegations_client::DelegationsClient::connect(format!(
        "http://{}",
        s.sidecar.gateway_addr
    ))
    .await
    .unwrap();
    let e = wrong
        .list_rights(tilgang::proto::ListRightsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evaluation_error_is_a_deny_even_when_a_permit_matches() {
    let s = TestServer::start().await;
    // Valid against the schema, but overflows at evaluation time.
    std::fs::write(
        s.work.policies().join("overflow.cedar"),
        "@id(\"overflows\")\nforbid (principal, action, resource)\nwhen { 9223372036854775807 + 1 < 0 };\n",
    )
    .unwrap();
    eventually("the erroring policy to load", || async {
        !s.decide(FULL_SUPPLIER, OWNER, WRITE)
            .await
            .errors
            .is_empty()
    })
    .await;
    let r = s.decide(FULL_SUPPLIER, OWNER, WRITE).await;
    assert!(!r.allowed, "fail closed: {r:?}");
    assert!(r.errors.iter().any(|e| e.contains("overflows")), "{r:?}");
    assert!(
        r.reasons.is_empty(),
        "no permit is reported as the reason for a deny: {r:?}"
    );
    s.stop().await;
}

/// Raw protobuf bytes in and out, so a test can send what no generated client
/// would: invalid UTF-8 in a string field, wrong wire types.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, n).to_vec()))
    }
}

/// One unary call with hand-encoded bytes, e.g. `/tilgang.v1.Authorizer/IsAuthorized`.
async fn raw_call(
    addr: std::net::SocketAddr,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Protobuf field `tag` as a length-delimited value (a string or a message).
fn field_bytes(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(tag << 3) | 2];
    prost::encoding::encode_varint(value.len() as u64, &mut out);
    out.extend_from_slice(value);
    out
}

fn message(fields: &[(u8, &[u8])]) -> Vec<u8> {
    fields
        .iter()
        .flat_map(|(t, v)| field_bytes(*t, v))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn undecodable_requests_are_invalid_argument_on_both_listeners() {
    use prost::Message as _;
    let s = TestServer::start().await;
    let gateway = s.sidecar.gateway_addr;
    let admin = s.sidecar.admin_addr.unwrap();
    let is_authorized = "/tilgang.v1.Authorizer/IsAuthorized";

    // The raw path works: hand-encoded valid bytes get an answer.
    let ok = message(&[
        (1, FULL_SUPPLIER.as_bytes()),
        (2, OWNER.as_bytes()),
        (3, WRITE.as_bytes()),
    ]);
    let reply = raw_call(gateway, is_authorized, ok).await.unwrap();
    assert!(
        tilgang::proto::IsAuthorizedResponse::decode(&reply[..])
            .unwrap()
            .allowed
    );

    let bad_utf8: [&[u8]; 5] = [
        b"81041867\x80",            // a lone continuation byte
        b"\xc3",                    // a two-byte character cut short
        &"0192:😀".as_bytes()[..7], // a four-byte character cut after two
        b"\xed\xa0\x80",            // an encoded surrogate
        b"\xc0\xaf",                // an overlong `/`
    ];
    let cases: Vec<(std::net::SocketAddr, &'static str, Vec<u8>, &str)> = bad_utf8
        .iter()
        .flat_map(|bad| {
            [
                (
                    gateway,
                    is_authorized,
                    message(&[(1, bad), (2, OWNER.as_bytes()), (3, READ.as_bytes())]),
                    "`supplier` is not valid UTF-8",
                ),
                (
                    gateway,
                    is_authorized,
                    message(&[
                        (1, FULL_SUPPLIER.as_bytes()),
                        (2, OWNER.as_bytes()),
                        (3, bad),
                    ]),
                    "`scope` is not valid UTF-8",
                ),
                (
                    gateway,
                    "/tilgang.v1.Authorizer/BatchIsAuthorized",
                    message(&[
                        (
                            1,
                            &message(&[(1, FULL_SUPPLIER.as_bytes()), (2, OWNER.as_bytes())]),
                        ),
                        (1, &message(&[(1, FULL_SUPPLIER.as_bytes()), (2, bad)])),
                    ]),
                    "`requests[].owner` is not valid UTF-8",
                ),
                (
                    admin,
                    "/tilgang.v1.Delegations/Delegate",
                    message(&[
                        (1, OWNER.as_bytes()),
                        (2, NEW_SUPPLIER.as_bytes()),
                        (3, b"instances-read"),
                        (4, bad),
                    ]),
                    "`actor` is not valid UTF-8",
                ),
                (
                    admin,
                    "/tilgang.v1.Delegations/Revoke",
                    message(&[
                        (1, OWNER.as_bytes()),
                        (2, FULL_SUPPLIER.as_bytes()),
                        (3, b"instances-read"),
                        (3, bad),
                        (4, DAGL.as_bytes()),
                    ]),
                    "`rights[]` is not valid UTF-8",
                ),
                (
                    admin,
                    "/tilgang.v1.Delegations/UndoRevoke",
                    message(&[(1, bad), (2, DAGL.as_bytes())]),
                    "`undo_token` is not valid UTF-8",
                ),
                (
                    admin,
                    "/tilgang.v1.Delegations/ListDelegations",
                    message(&[(2, bad)]),
                    "`supplier` is not valid UTF-8",
                ),
            ]
        })
        .collect();
    for (addr, path, body, want) in cases {
        let e = raw_call(addr, path, body).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{path}: {e:?}");
        assert_eq!(e.message(), want, "{path}");
    }

    // Bytes that are not the message at all: named by the message type.
    let not_a_message = [
        (
            gateway,
            is_authorized,
            vec![1 << 3, 7],
            "IsAuthorizedRequest",
        ), // `supplier` as a varint
        (
            gateway,
            is_authorized,
            vec![(1 << 3) | 2, 50, b'8'],
            "IsAuthorizedRequest",
        ), // length past the end
        (
            admin,
            "/tilgang.v1.Delegations/ListRights",
            vec![2, 0],
            "ListRightsRequest",
        ), // field 0
        (
            admin,
            "/tilgang.v1.Delegations/Delegate",
            vec![0xff; 11],
            "DelegateRequest",
        ), // a bad varint
    ];
    for (addr, path, body, name) in not_a_message {
        let e = raw_call(addr, path, body).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{path}: {e:?}");
        assert!(
            e.message()
                .starts_with(&format!("request is not a valid `{name}` message: ")),
            "{path}: {}",
            e.message()
        );
    }

    // Nothing was written, and both listeners still answer.
    assert!(s.decide(FULL_SUPPLIER, OWNER, WRITE).await.allowed);
    let listed = s
        .admin()
        .await
        .list_delegations(tilgang::proto::ListDelegationsRequest {
            owner: OWNER.into(),
            supplier: NEW_SUPPLIER.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.delegations.is_empty());
    s.stop().await;
}

/// Malformed values for each kind of field: empty, wrong form, too long, signs,
/// spaces, control characters, non-ASCII look-alikes.
fn bad_values(kind: &str) -> Vec<String> {
    let common = ["", " ", "\0", "a\nb", "\u{202e}x"];
    let specific: Vec<String> = match kind {
        "org" => [
            "81041867",
            "8104186720",
            "810418673",
            "-81041867",
            "+810418672",
            " 810418672",
            "810418672 ",
            "８１０４１８６７２",
            "0192:",
            "0192:0192:810418672",
            "0193:810418672",
            "810418672\0",
            "../../etc",
        ]
        .map(String::from)
        .to_vec(),
        "person" => vec!["a b".into(), "x".repeat(65), "../x".into(), "ø".into()],
        "scope" => vec![
            "has space".into(),
            "x".repeat(257),
            "tab\there".into(),
            "æøå".into(),
            "\u{7f}".into(),
        ],
        "right" => vec![
            "Instances".into(),
            "x".repeat(65),
            "a/b".into(),
            " instances-read".into(),
        ],
        "token" => vec![
            "abc".into(),
            "A".repeat(32),
            "0".repeat(31),
            "0".repeat(33),
            "g".repeat(32),
            format!(" {}", "0".repeat(31)),
            "-1".into(),
        ],
        // Anything but a `next_page_token` of the same listing.
        "page_token" => vec![
            "x".into(),
            "AQ".into(),
            "A".repeat(36),
            "_".repeat(36),
            "A".repeat(37),
            "0192:810418672".into(),
            "810418672".into(),
            "-1".into(),
        ],
        _ => unreachable!("{kind}"),
    };
    common
        .map(String::from)
        .into_iter()
        .chain(specific)
        .collect()
}

fn delegate_req(
    owner: &str,
    supplier: &str,
    rights: &[&str],
    actor: &str,
) -> tilgang::proto::DelegateRequest {
    tilgang::proto::DelegateRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        rights: rights.iter().map(|r| r.to_string()).collect(),
        actor: actor.into(),
    }
}

fn revoke_req(
    owner: &str,
    supplier: &str,
    rights: &[&str],
    actor: &str,
) -> tilgang::proto::RevokeRequest {
    tilgang::proto::RevokeRequest {
        owner: owner.into(),
        supplier: supplier.into(),
        rights: rights.iter().map(|r| r.to_string()).collect(),
        actor: actor.into(),
    }
}

/// A client for each listener, kept for many calls.
struct Clients {
    g: tilgang::proto::authorizer_client::AuthorizerClient<tonic::transport::Channel>,
    a: tilgang::proto::delegations_client::DelegationsClient<tonic::transport::Channel>,
}

impl Clients {
    async fn of(s: &TestServer) -> Self {
        Self {
            g: s.gateway().await,
            a: s.admin().await,
        }
    }
}

/// Every RPC of both services, with `v` in one field and valid values in the
/// others; returns the status and the name the message must start with.
async fn call_with_bad_field(
    c: &mut Clients,
    rpc_field: &str,
    v: &str,
) -> (tonic::Status, &'static str) {
    use tilgang::proto::{ListDelegationsRequest, UndoRevokeRequest};
    let Clients { g, a } = c;
    let token = "0".repeat(32);
    let r = match rpc_field {
        "IsAuthorized.supplier" => g.is_authorized(req(v, OWNER, READ)).await.map(drop),
        "IsAuthorized.owner" => g.is_authorized(req(FULL_SUPPLIER, v, READ)).await.map(drop),
        "IsAuthorized.scope" => g
            .is_authorized(req(FULL_SUPPLIER, OWNER, v))
            .await
            .map(drop),
        "Batch.supplier" | "Batch.owner" | "Batch.scope" => {
            let bad = match rpc_field {
                "Batch.supplier" => req(v, OWNER, READ),
                "Batch.owner" => req(FULL_SUPPLIER, v, READ),
                _ => req(FULL_SUPPLIER, OWNER, v),
            };
            let requests = vec![
                req(FULL_SUPPLIER, OWNER, READ),
                req(FULL_SUPPLIER, OWNER, READ),
                bad,
            ];
            g.batch_is_authorized(BatchIsAuthorizedRequest { requests })
                .await
                .map(drop)
        }
        "Delegate.owner" => a
            .delegate(delegate_req(v, NEW_SUPPLIER, &["instances-read"], DAGL))
            .await
            .map(drop),
        "Delegate.supplier" => a
            .delegate(delegate_req(OWNER, v, &["instances-read"], DAGL))
            .await
            .map(drop),
        "Delegate.actor" => a
            .delegate(delegate_req(OWNER, NEW_SUPPLIER, &["instances-read"], v))
            .await
            .map(drop),
        "Delegate.rights" => a
            .delegate(delegate_req(OWNER, NEW_SUPPLIER, &[v], DAGL))
            .await
            .map(drop),
        "Revoke.owner" => a
            .revoke(revoke_req(v, FULL_SUPPLIER, &[], DAGL))
            .await
            .map(drop),
        "Revoke.supplier" => a.revoke(revoke_req(OWNER, v, &[], DAGL)).await.map(drop),
        "Revoke.actor" => a
            .revoke(revoke_req(OWNER, FULL_SUPPLIER, &[], v))
            .await
            .map(drop),
        "Revoke.rights" => a
            .revoke(revoke_req(
                OWNER,
                FULL_SUPPLIER,
                &["instances-read", v],
                DAGL,
            ))
            .await
            .map(drop),
        "UndoRevoke.undo_token" => a
            .undo_revoke(UndoRevokeRequest {
                undo_token: v.into(),
                actor: DAGL.into(),
            })
            .await
            .map(drop),
        "UndoRevoke.actor" => a
            .undo_revoke(UndoRevokeRequest {
                undo_token: token,
                actor: v.into(),
            })
            .await
            .map(drop),
        "ListDelegations.owner" => a
            .list_delegations(ListDelegationsRequest {
                owner: v.into(),
                supplier: String::new(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListDelegations.supplier" => a
            .list_delegations(ListDelegationsRequest {
                owner: OWNER.into(),
                supplier: v.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListDelegations.page_token" => a
            .list_delegations(ListDelegationsRequest {
                owner: OWNER.into(),
                page_token: v.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        other => unreachable!("{other}"),
    };
    let name = match rpc_field {
        "Batch.supplier" => "`requests[2].supplier` ",
        "Batch.owner" => "`requests[2].owner` ",
        "Batch.scope" => "`requests[2].scope` ",
        "Delegate.rights" => "`rights[0]` ",
        "Revoke.rights" => "`rights[1]` ",
        f if f.ends_with(".supplier") => "`supplier` ",
        f if f.ends_with(".owner") => "`owner` ",
        f if f.ends_with(".scope") => "`scope` ",
        f if f.ends_with(".actor") => "`actor` ",
        f if f.ends_with(".undo_token") => "`undo_token` ",
        f if f.ends_with(".page_token") => "`page_token` ",
        other => unreachable!("{other}"),
    };
    (
        r.expect_err(&format!("{rpc_field} = {v:?} is refused")),
        name,
    )
}

/// Each field of each RPC on both listeners, and the kind of value it holds.
const FIELDS: [(&str, &str); 18] = [
    ("IsAuthorized.supplier", "org"),
    ("IsAuthorized.owner", "org"),
    ("IsAuthorized.scope", "scope"),
    ("Batch.supplier", "org"),
    ("Batch.owner", "org"),
    ("Batch.scope", "scope"),
    ("Delegate.owner", "org"),
    ("Delegate.supplier", "org"),
    ("Delegate.actor", "person"),
    ("Delegate.rights", "right"),
    ("Revoke.owner", "org"),
    ("Revoke.supplier", "org"),
    ("Revoke.actor", "person"),
    ("Revoke.rights", "right"),
    ("UndoRevoke.undo_token", "token"),
    ("UndoRevoke.actor", "person"),
    ("ListDelegations.owner", "org"),
    ("ListDelegations.page_token", "page_token"),
];

#[tokio::test(flavor = "multi_thread")]
async fn every_malformed_field_is_invalid_argument_naming_it() {
    let s = TestServer::start().await;
    let mut c = Clients::of(&s).await;
    let before = std::fs::read(s.work.owner_file(OWNER)).unwrap();
    let fields = FIELDS
        .iter()
        .copied()
        .chain([("ListDelegations.supplier", "org")]);
    let mut calls = 0;
    for (rpc_field, kind) in fields {
        for v in bad_values(kind) {
            // An empty filter is "any" in ListDelegations, not an error.
            if v.is_empty() && rpc_field.starts_with("ListDelegations") {
                continue;
            }
            let (e, name) = call_with_bad_field(&mut c, rpc_field, &v).await;
            assert_eq!(
                e.code(),
                Code::InvalidArgument,
                "{rpc_field} = {v:?}: {e:?}"
            );
            assert!(
                e.message().starts_with(name),
                "{rpc_field} = {v:?}: {}",
                e.message()
            );
            calls += 1;
        }
    }
    assert!(calls > 150, "{calls}");
    assert_eq!(std::fs::read(s.work.owner_file(OWNER)).unwrap(), before);
    let audit = std::fs::read_to_string(s.work.data().join("audit.jsonl")).unwrap_or_default();
    assert_eq!(audit, "", "nothing audited");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_values_are_cut_in_the_status() {
    let s = TestServer::start().await;
    let mut c = Clients::of(&s).await;
    // Up to the message limits (512 KiB gateway, 256 KiB admin) a bad value
    // is a bad field; past them, see below.
    for size in [100 << 10, 250 << 10] {
        // ASCII digits, and a two-byte character whose 64th copy ends at byte 128.
        for unit in ["9", "ø"] {
            let v = unit.repeat(size / unit.len());
            for (rpc_field, _) in FIELDS {
                let (e, name) = call_with_bad_field(&mut c, rpc_field, &v).await;
                assert_eq!(
                    e.code(),
                    Code::InvalidArgument,
                    "{rpc_field}: {size} bytes of {unit}"
                );
                let m = e.message();
                assert!(m.starts_with(name), "{rpc_field}: {m}");
                assert!(m.len() < 300, "{rpc_field}: {} bytes", m.len());
                assert!(
                    m.contains(&format!("`{}…`", unit.repeat(64))),
                    "{rpc_field}: {m}"
                );
            }
        }
    }
    // A 3 MB value makes the message too large to read at all: refused before
    // decoding, with tonic's OUT_OF_RANGE and a short message, echoing nothing.
    let v = "9".repeat(3 << 20);
    for (rpc_field, _) in FIELDS {
        let (e, _) = call_with_bad_field(&mut c, rpc_field, &v).await;
        assert_eq!(e.code(), Code::OutOfRange, "{rpc_field}");
        assert!(e.message().len() < 300, "{rpc_field}: {}", e.message());
        assert!(
            !e.message().contains("9999"),
            "{rpc_field}: {}",
            e.message()
        );
    }
    s.stop().await;
}

/// The file store: a write's `store_revision` counts this process's writes,
/// from 0 at each start, and every write is in the files a restart loads.
/// So a minimum revision from before a restart is met at once (never an
/// `UNAVAILABLE` for a revision the files already hold).
#[tokio::test(flavor = "multi_thread")]
async fn with_the_file_store_a_minimum_revision_from_before_a_restart_is_met() {
    let s = TestServer::start().await;
    let mut admin = s.admin().await;
    let d = admin
        .delegate(tilgang::proto::DelegateRequest {
            owner: OWNER.into(),
            supplier: NEW_SUPPLIER.into(),
            rights: vec!["instances-read".into()],
            actor: DAGL.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.store_revision, 1);
    let work = s.stop().await;
    let s = TestServer::start_in(work, |_| {}).await;
    let mut q = req(NEW_SUPPLIER, OWNER, READ);
    q.min_revision = d.store_revision;
    let r = s
        .gateway()
        .await
        .is_authorized(q)
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.store_revision, 0, "a new process counts from 0");
    s.stop().await;
}
