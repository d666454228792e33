//! `Check`'s gRPC framing, which tilgang reads and writes itself rather than
//! through tonic's server (`grpc::ext_authz::server`), against a raw `h2`
//! client: a body in any number of pieces, every malformed body answered
//! with a status rather than a hang or a panic, and an answer shaped as
//! every gRPC client expects (no `content-length`, `grpc-status` in the
//! trailers).

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use prost::Message;

use crate::ext_authz::{INSTANCE, check, payload};
use crate::util::*;
use crate::wire::*;

const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

/// A delegated read, framed as one gRPC message.
fn delegated_read() -> Vec<u8> {
    let p = payload(Some(FULL_SUPPLIER), OWNER, &[READ]);
    grpc_message(&check("GET", INSTANCE, Some(p)))
}

/// Send `pieces` as the request body of one `Check` and read the answer.
async fn send(server: &TestServer, pieces: Vec<Vec<u8>>) -> Answer {
    let mut client = h2_connect(server.sidecar.gateway_addr).await;
    let (response, mut body) = start_call(&mut client, CHECK).await;
    let last = pieces.len().saturating_sub(1);
    if pieces.is_empty() {
        body.send_data(Bytes::new(), true).unwrap();
    }
    for (i, piece) in pieces.into_iter().enumerate() {
        body.send_data(Bytes::from(piece), i == last).unwrap();
    }
    within("a Check answer", answer(response)).await
}

fn allowed(a: &Answer) -> bool {
    assert_eq!(a.status, 0, "{}", a.message);
    assert_eq!(a.messages.len(), 1);
    let r = CheckResponse::decode(a.messages[0].clone()).unwrap();
    matches!(r.http_response, Some(HttpResponse::OkResponse(_))) && r.status.unwrap().code == 0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_in_any_number_of_pieces_is_answered_the_same() {
    let server = TestServer::start().await;
    let whole = delegated_read();
    assert!(allowed(&send(&server, vec![whole.clone()]).await));
    // The prefix split, then a byte at a time, then in uneven pieces.
    let split = vec![whole[..3].to_vec(), whole[3..].to_vec()];
    assert!(allowed(&send(&server, split).await));
    let bytes = whole.iter().map(|b| vec![*b]).collect();
    assert!(allowed(&send(&server, bytes).await));
    let uneven = whole.chunks(97).map(<[u8]>::to_vec).collect();
    assert!(allowed(&send(&server, uneven).await));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_answer_is_shaped_as_grpc_clients_expect() {
    let server = TestServer::start().await;
    let mut client = h2_connect(server.sidecar.gateway_addr).await;
    let (response, mut body) = start_call(&mut client, CHECK).await;
    body.send_data(Bytes::from(delegated_read()), true).unwrap();
    let response = within("a Check answer", response).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    // A length would let a client stop reading before the trailers.
    assert!(response.headers().get("content-length").is_none());
    assert!(response.headers().get("grpc-status").is_none());
    let mut body = response.into_body();
    let message = Messages::default().next(&mut body).await.unwrap();
    CheckResponse::decode(message).unwrap();
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_get_a_status_naming_what_is_wrong() {
    let server = TestServer::start().await;
    let whole = delegated_read();
    let declared = format!("{} bytes declared", whole.len() - 5);
    let cases: Vec<(&str, Vec<Vec<u8>>, i32, &str)> = vec![
        (
            "an empty body",
            vec![],
            INVALID_ARGUMENT,
            "no `CheckRequest` message",
        ),
        (
            "half a prefix",
            vec![vec![0, 0]],
            INVALID_ARGUMENT,
            "no `CheckRequest` message",
        ),
        (
            "a message cut short",
            vec![whole[..whole.len() - 10].to_vec()],
            INVALID_ARGUMENT,
            &declared,
        ),
        (
            "two messages",
            vec![whole.clone(), whole.clone()],
            INVALID_ARGUMENT,
            "more than one",
        ),
        (
            "a compressed message",
            vec![[&[1u8][..], &whole[1..]].concat()],
            UNIMPLEMENTED,
            "compressed",
        ),
        (
            "a compression flag that is not one",
            vec![[&[7u8][..], &whole[1..]].concat()],
            INVALID_ARGUMENT,
            "compression flag is 7",
        ),
        (
            "bytes that are not a CheckRequest",
            vec![[grpc_prefix(3), vec![0xff, 0xff, 0xff]].concat()],
            INVALID_ARGUMENT,
            "not a valid `CheckRequest`",
        ),
    ];
    for (what, pieces, code, says) in cases {
        let a = send(&server, pieces).await;
        let message = unescape(&a.message);
        assert_eq!(a.status, code, "{what}: {message}");
        assert!(message.contains(says), "{what}: {message}");
    }
    // Still answering.
    assert!(allowed(&send(&server, vec![whole]).await));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_declared_too_large_is_refused_from_its_prefix() {
    let server = TestServer::start().await;
    // Only the prefix is sent, declaring 64 MiB, and the body left open: the
    // refusal must not wait for (or hold) the message.
    let mut client = h2_connect(server.sidecar.gateway_addr).await;
    let (response, mut body) = start_call(&mut client, CHECK).await;
    body.send_data(Bytes::from(grpc_prefix(64 << 20)), false)
        .unwrap();
    let a = within("a refusal", answer(response)).await;
    let message = unescape(&a.message);
    assert_eq!(a.status, RESOURCE_EXHAUSTED, "{message}");
    assert!(message.contains("67108864 bytes"), "{message}");
}

/// `grpc-message` as written: percent-encoded.
fn unescape(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], message.get(i + 1..i + 3)) {
            (b'%', Some(hex)) if u8::from_str_radix(hex, 16).is_ok() => {
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

const INVALID_ARGUMENT: i32 = 3;
const RESOURCE_EXHAUSTED: i32 = 8;
const UNIMPLEMENTED: i32 = 12;
