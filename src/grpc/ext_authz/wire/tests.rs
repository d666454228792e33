//! The lean reading against the generated message: for random requests, and
//! for two encoded one after the other (which protobuf reads as one request
//! merged, so maps keep the last entry of a key), [`CheckCall::decode`] must
//! find exactly what the full decode holds.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::CheckRequest as FullCheckRequest;
use envoy_types::pb::envoy::config::core::v3::Metadata as PbMetadata;
use envoy_types::pb::envoy::service::auth::v3::AttributeContext as PbAttributes;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest as PbHttp, Request as PbRequest,
};
use envoy_types::pb::google::protobuf::{
    ListValue, Struct as PbStruct, Value as PbValue, value::Kind,
};
use prost::Message;
use serde_json::Value;

use super::claim::MAX_DEPTH;
use super::*;
use crate::gateway::claims::ClaimValue;

const KEY: &str = "jwt_payload";

/// A protobuf `Value` as JSON, as `Check` converted it before.
fn reference_json(v: &PbValue) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), reference_json(v)))
                .collect(),
        ),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(reference_json).collect()),
    }
}

/// What a check read: the HTTP request, and the claims (or why not).
type Seen = (Option<HttpCall>, Option<Payload>);

fn seen(call: CheckCall) -> Seen {
    (call.http, call.payload)
}

/// What the generated message holds, read as `Check` read it before: into
/// JSON, then [`Claims::from_json`].
fn reference(bytes: &[u8]) -> Seen {
    let req = FullCheckRequest::decode(bytes).expect("the full message decodes");
    let Some(a) = req.attributes else {
        return (None, None);
    };
    let http = a.request.and_then(|r| r.http).map(|h| {
        let header = |n: &str| h.headers.get(n).cloned();
        HttpCall {
            request_id: header("x-request-id"),
            traceparent: header("traceparent"),
            authorization: header("authorization").map(Bytes::from),
            min_revision: header(MIN_REVISION_HEADER),
            method: h.method,
            path: h.path,
        }
    });
    let payload = a
        .metadata_context
        .and_then(|m| m.filter_metadata.get(JWT_AUTHN_NAMESPACE).cloned())
        .and_then(|s| s.fields.get(KEY).cloned())
        .map(|v| match v.kind {
            Some(Kind::StructValue(p)) => Payload::Claims(Claims::from_json(
                &p.fields
                    .iter()
                    .map(|(k, v)| (k.clone(), reference_json(v)))
                    .collect(),
            )),
            _ => Payload::NotObject,
        });
    (http, payload)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

fn string(s: &str) -> PbValue {
    PbValue {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn object(fields: HashMap<String, PbValue>) -> PbValue {
    PbValue {
        kind: Some(Kind::StructValue(PbStruct { fields })),
    }
}

fn random_value(rng: &mut Rng, depth: usize) -> PbValue {
    let kind = match rng.below(if depth > 3 { 4 } else { 7 }) {
        0 => Kind::NullValue(0),
        1 => Kind::NumberValue(rng.next() as f64 / 7.0),
        2 => Kind::StringValue(rng.pick(&["0192:991825827", "a b", "", "æøå"]).into()),
        3 => Kind::BoolValue(rng.chance(50)),
        4 | 5 => {
            let mut fields = HashMap::new();
            for _ in 0..rng.below(4) {
                let k = rng.pick(&["authority", "ID", "x", "consumer"]);
                fields.insert(k.to_string(), random_value(rng, depth + 1));
            }
            Kind::StructValue(PbStruct { fields })
        }
        _ => Kind::ListValue(ListValue {
            values: (0..rng.below(3))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        }),
    };
    PbValue { kind: Some(kind) }
}

fn org(id: &str) -> PbValue {
    object(HashMap::from([
        ("authority".to_string(), string("iso6523-actorid-upis")),
        ("ID".to_string(), string(id)),
    ]))
}

fn random_payload(rng: &mut Rng) -> PbValue {
    if rng.chance(10) {
        return random_value(rng, 0);
    }
    let mut fields = HashMap::new();
    let claims = [
        "consumer",
        "supplier",
        "scope",
        "delegation_source",
        "client_id",
        "iss",
        "exp",
        "jti",
    ];
    for claim in claims {
        if rng.chance(if claim == "consumer" { 95 } else { 60 }) {
            let v = match (claim, rng.below(8)) {
                ("consumer" | "supplier", 0..=6) => {
                    org(rng.pick(&["0192:991825827", "0192:314330897"]))
                }
                (_, 0..=4) => string(rng.pick(&["altinn:serviceowner/instances.read", "x"])),
                _ => random_value(rng, 0),
            };
            fields.insert(claim.to_string(), v);
        }
    }
    object(fields)
}

fn random_request(rng: &mut Rng) -> FullCheckRequest {
    let mut headers = HashMap::new();
    let names = [
        "x-request-id",
        "traceparent",
        "authorization",
        MIN_REVISION_HEADER,
        "accept",
        "user-agent",
        "Authorization",
    ];
    for name in names {
        if rng.chance(50) {
            let v = rng.pick(&["Bearer eyJ.a.b", "42", "", "00-abc-def-01", "ø"]);
            headers.insert(name.to_string(), v.to_string());
        }
    }
    let http = rng.chance(90).then(|| PbHttp {
        id: "1".into(),
        method: rng.pick(&["GET", "POST", "", "DELETE"]).into(),
        path: rng
            .pick(&["/storage/api/v1/instances/1/2", "/x?y=1", ""])
            .into(),
        host: "api.example".into(),
        headers,
        ..PbHttp::default()
    });
    let mut namespace = HashMap::new();
    if rng.chance(85) {
        namespace.insert(KEY.to_string(), random_payload(rng));
    }
    if rng.chance(30) {
        namespace.insert("other".to_string(), random_value(rng, 0));
    }
    let mut filter_metadata = HashMap::new();
    if rng.chance(85) {
        filter_metadata.insert(
            JWT_AUTHN_NAMESPACE.to_string(),
            PbStruct { fields: namespace },
        );
    }
    if rng.chance(30) {
        filter_metadata.insert("envoy.lb".to_string(), PbStruct::default());
    }
    let attributes = rng.chance(95).then(|| PbAttributes {
        request: rng.chance(95).then_some(PbRequest { time: None, http }),
        metadata_context: rng.chance(90).then(|| PbMetadata {
            filter_metadata,
            ..PbMetadata::default()
        }),
        ..PbAttributes::default()
    });
    FullCheckRequest { attributes }
}

#[test]
fn reads_what_the_full_message_holds() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut compared, mut allowed) = (0, 0);
    for round in 0..20_000 {
        let mut bytes = random_request(&mut rng).encode_to_vec();
        // Half the time a second request after the first: one merged message.
        if round % 2 == 1 {
            bytes.extend(random_request(&mut rng).encode_to_vec());
        }
        let expected = reference(&bytes);
        let got = seen(CheckCall::decode(Bytes::from(bytes), KEY).expect("decodes"));
        assert_eq!(got, expected, "round {round}");
        compared += 1;
        allowed += usize::from(matches!(got.1, Some(Payload::Claims(Ok(_)))));
    }
    assert_eq!(compared, 20_000);
    // Enough of them hold whole claims for the comparison to mean something.
    assert!(allowed > 2_000, "{allowed}");
}

/// Hand-encoded protobuf: field `tag` as a length-delimited value.
fn field(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(tag << 3) | 2];
    prost::encoding::encode_varint(value.len() as u64, &mut out);
    out.extend_from_slice(value);
    out
}

/// A request whose `attributes.request.http` is `http` (encoded).
fn with_http(http: &[u8]) -> Bytes {
    Bytes::from(field(1, &field(4, &field(2, http))))
}

#[test]
fn a_header_read_must_be_utf8_and_others_are_not_read() {
    let header = |k: &[u8], v: &[u8]| field(3, &[field(1, k), field(2, v)].concat());
    let bad = with_http(&header(b"x-request-id", b"\xff"));
    assert_eq!(
        CheckCall::decode(bad, KEY).unwrap_err().to_string(),
        "`attributes.request.http.headers[x-request-id]` is not valid UTF-8"
    );
    // The bearer token is read only when verified, and checked then.
    let later = with_http(&header(b"authorization", b"Bearer \xff"));
    let http = CheckCall::decode(later, KEY).unwrap().http.unwrap();
    assert_eq!(http.authorization.as_deref(), Some(&b"Bearer \xff"[..]));
    let ignored = with_http(&[header(b"accept", b"\xff"), field(2, b"GET")].concat());
    let call = CheckCall::decode(ignored, KEY).unwrap();
    assert_eq!(call.http.unwrap().method, "GET");
    let method = with_http(&field(2, b"G\xffT"));
    assert_eq!(
        CheckCall::decode(method, KEY).unwrap_err().to_string(),
        "`attributes.request.http.method` is not valid UTF-8"
    );
}

#[test]
fn bytes_that_are_not_protobuf_name_the_message() {
    for bytes in [
        vec![(1 << 3) | 2, 50, 1],
        vec![1 << 3, 7],
        field(1, &[0xff, 0xff]),
    ] {
        let e = CheckCall::decode(Bytes::from(bytes), KEY).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("request is not a valid `CheckRequest` message"),
            "{e}"
        );
    }
}

fn nested(depth: usize) -> PbValue {
    let mut v = string("bottom");
    for _ in 0..depth {
        v = object(HashMap::from([("n".to_string(), v)]));
    }
    v
}

fn with_payload(payload: PbValue) -> Bytes {
    let namespace = PbStruct {
        fields: HashMap::from([(KEY.to_string(), payload)]),
    };
    let req = FullCheckRequest {
        attributes: Some(PbAttributes {
            metadata_context: Some(PbMetadata {
                filter_metadata: HashMap::from([(JWT_AUTHN_NAMESPACE.to_string(), namespace)]),
                ..PbMetadata::default()
            }),
            ..PbAttributes::default()
        }),
    };
    Bytes::from(req.encode_to_vec())
}

#[test]
fn a_claim_nested_past_the_limit_is_refused_where_it_is() {
    for depth in [MAX_DEPTH, 200] {
        let payload = object(HashMap::from([("supplier".to_string(), nested(depth))]));
        let e = CheckCall::decode(with_payload(payload), KEY)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "request is not a valid `CheckRequest` message: \
             `attributes.metadata_context.filter_metadata[envoy.filters.http.jwt_authn]\
             .jwt_payload.supplier`: nested deeper than 32 levels"
        );
    }
}

#[test]
fn a_claim_not_read_is_not_decoded() {
    let payload = object(HashMap::from([
        ("deep".to_string(), nested(200)),
        ("consumer".to_string(), org("0192:991825827")),
    ]));
    let call = CheckCall::decode(with_payload(payload), KEY).unwrap();
    let Some(Payload::Claims(Ok(claims))) = call.payload else {
        panic!("{:?}", call.payload);
    };
    assert_eq!(claims.consumer.as_str(), "991825827");
    // Below the limit, a deep claim decodes whole, and is not an organisation.
    let payload = object(HashMap::from([
        ("supplier".to_string(), nested(31)),
        ("consumer".to_string(), org("0192:991825827")),
    ]));
    let call = CheckCall::decode(with_payload(payload), KEY).unwrap();
    assert_eq!(
        call.payload,
        Some(Payload::Claims(Err(ClaimsError::Shape {
            claim: "supplier"
        })))
    );
    let bytes = nested(31).encode_to_vec();
    let mut v = claim(&bytes, 1).unwrap();
    let mut depth = 0;
    while let Some(inner) = v.member("n") {
        v = inner;
        depth += 1;
    }
    assert_eq!((depth, v.as_text()), (31, Some("bottom")));
}

#[test]
fn a_payload_that_is_not_an_object_is_said() {
    let call = CheckCall::decode(with_payload(string("eyJ")), KEY).unwrap();
    assert_eq!(call.payload, Some(Payload::NotObject));
    let call = CheckCall::decode(with_payload(string("eyJ")), "other").unwrap();
    assert_eq!(call.payload, None);
}

#[test]
fn an_entry_reads_the_same_however_it_is_encoded() {
    let (k, v) = (field(1, b"x-request-id"), field(2, b"abc"));
    for bytes in [
        [k.clone(), v.clone()].concat(),
        [v.clone(), k.clone()].concat(),
        [field(1, b"other"), v.clone(), k.clone()].concat(),
        [k.clone(), field(2, b"old"), v.clone()].concat(),
    ] {
        assert_eq!(
            wire_entry(&bytes).unwrap(),
            (&b"x-request-id"[..], &b"abc"[..])
        );
    }
    assert_eq!(wire_entry(&field(2, b"v")).unwrap(), (&b""[..], &b"v"[..]));
    // Cut short inside the value: an error, not a shorter value.
    let cut = [k, field(2, b"abc")[..3].to_vec()].concat();
    assert!(wire_entry(&cut).is_err());
}
