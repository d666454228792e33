//! Writes one gRPC-framed request body to stdout, for load tests with
//! `h2load -d FILE` (scripts/check_load.sh):
//!
//! - `check [--headers 6|10]`: an Envoy `CheckRequest` as Envoy 1.40 sends it
//!   behind `jwt_authn` (method, a Storage instance path, the request's
//!   headers including a ~700-byte bearer token, source and destination
//!   addresses, and the token's payload under
//!   `filter_metadata["envoy.filters.http.jwt_authn"]["jwt_payload"]`): about
//!   1.3 KB with the six headers of an API client, more with the ten a
//!   browser sends;
//! - `is-authorized`: `tilgang.v1.Authorizer/IsAuthorized` for the same pair
//!   and scope.
//!
//! `--bearer TOKEN` puts a real token in `authorization` and leaves
//! `jwt_authn`'s metadata out, as Envoy sends a check without `jwt_authn`
//! (tilgang then verifies the token itself, `serve --jwks`).
//!
//! `--supplier`, `--owner` (org numbers), `--scope`, `--method`, `--path`
//! change the defaults (a delegated read in tests/fixtures/data).

use envoy_types::pb::envoy::config::core::v3::{
    Address, Metadata, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::Message;
use std::io::Write;

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn object(fields: &[(&str, Value)]) -> Value {
    Value {
        kind: Some(Kind::StructValue(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        })),
    }
}

fn org(id: &str) -> Value {
    object(&[
        ("authority", text("iso6523-actorid-upis")),
        ("ID", text(&format!("0192:{id}"))),
    ])
}

fn peer(ip: &str, port: u32) -> Peer {
    Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

struct Args {
    kind: String,
    headers: usize,
    supplier: String,
    owner: String,
    scope: String,
    method: String,
    path: String,
    bearer: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        kind: String::new(),
        headers: 6,
        supplier: "810418672".into(),
        owner: "991825827".into(),
        scope: "altinn:serviceowner/instances.read".into(),
        method: "GET".into(),
        path: "/storage/api/v1/instances/50001337/4f1c2f1a-6b9e-4a3c-9d2e-7b5a1c3e9f01".into(),
        bearer: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "check" | "is-authorized" => a.kind = arg.clone(),
            "--headers" => a.headers = value().parse().unwrap_or_else(|_| usage("--headers N")),
            "--supplier" => a.supplier = value(),
            "--owner" => a.owner = value(),
            "--scope" => a.scope = value(),
            "--method" => a.method = value(),
            "--path" => a.path = value(),
            "--bearer" => a.bearer = Some(value()),
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    if a.kind.is_empty() {
        usage("say `check` or `is-authorized`");
    }
    a
}

fn usage(why: &str) -> ! {
    eprintln!(
        "{why}\nusage: check_request check|is-authorized [--headers 6|10] [--supplier ORG] \
         [--owner ORG] [--scope SCOPE] [--method M] [--path P] [--bearer TOKEN] > body.bin"
    );
    std::process::exit(2)
}

/// A bearer token's length and shape (header.payload.signature, RS256),
/// about 700 bytes like Maskinporten's; nobody verifies it here.
fn bearer() -> String {
    let part = |n: usize, c: char| std::iter::repeat_n(c, n).collect::<String>();
    format!(
        "Bearer eyJ{}.eyJ{}.{}",
        part(90, 'h'),
        part(250, 'p'),
        part(342, 's')
    )
}

fn check(a: &Args) -> CheckRequest {
    let mut headers: Vec<(&str, String)> = vec![
        (":authority", "api.example.no".into()),
        (":method", a.method.clone()),
        (":path", a.path.clone()),
        (":scheme", "https".into()),
        (
            "authorization",
            a.bearer
                .as_ref()
                .map_or_else(bearer, |t| format!("Bearer {t}")),
        ),
        (
            "x-request-id",
            "6f1d2c3b-4a5e-4f60-8b7a-9c0d1e2f3a4b".into(),
        ),
    ];
    if a.headers >= 10 {
        headers.extend([
            (
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36".into(),
            ),
            ("accept", "application/json, text/plain, */*".into()),
            ("accept-language", "nb-NO,nb;q=0.9,no;q=0.8,en;q=0.7".into()),
            ("accept-encoding", "gzip, deflate, br".into()),
        ]);
    }
    let payload = object(&[
        ("iss", text("https://maskinporten.no/")),
        ("consumer", org(&a.owner)),
        ("supplier", org(&a.supplier)),
        ("scope", text(&a.scope)),
        ("client_id", text("2f0e8c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b")),
        (
            "exp",
            Value {
                kind: Some(Kind::NumberValue(4_102_444_800.0)),
            },
        ),
    ]);
    let mut metadata = Metadata::default();
    if a.bearer.is_none() {
        metadata.filter_metadata.insert(
            "envoy.filters.http.jwt_authn".into(),
            Struct {
                fields: [("jwt_payload".to_string(), payload)].into(),
            },
        );
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer("10.0.3.17", 51234)),
            destination: Some(peer("10.0.1.5", 8443)),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "13968485521478562374".into(),
                    method: a.method.clone(),
                    headers: headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    path: a.path.clone(),
                    host: "api.example.no".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/2".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            metadata_context: Some(metadata),
            ..Default::default()
        }),
    }
}

/// `IsAuthorizedRequest { supplier = 1, owner = 2, scope = 3 }`, by hand:
/// three strings, so the example needs nothing of the crate.
fn is_authorized(a: &Args) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, s) in [(1u8, &a.supplier), (2, &a.owner), (3, &a.scope)] {
        out.push(tag << 3 | 2);
        prost::encoding::encode_varint(s.len() as u64, &mut out);
        out.extend_from_slice(s.as_bytes());
    }
    out
}

fn main() -> std::process::ExitCode {
    let a = args();
    let message = match a.kind.as_str() {
        "check" => check(&a).encode_to_vec(),
        _ => is_authorized(&a),
    };
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    match std::io::stdout().write_all(&framed) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing stdout: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
