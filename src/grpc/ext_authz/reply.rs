//! What `Check` answers, on the wire: a [`Verdict`] as Envoy's
//! `CheckResponse`. An allow, the answer to nearly every check, is encoded
//! straight into the response buffer ([`encode_reply`]); everything else
//! is built as the generated message ([`respond`]) and encoded by prost.
//! The unit tests hold the two to the same bytes.

use bytes::BufMut;
use envoy_types::ext_authz::v3::pb::{CheckResponse, HeaderAppendAction, HttpStatusCode};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};
use serde_json::json;
use tonic::Status;

use super::{OWNER_HEADER, REVISION_HEADER, SUPPLIER_HEADER, Verdict};

/// The verdict as Envoy's `CheckResponse`.
pub fn respond(v: Verdict) -> CheckResponse {
    let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
    let mut response = CheckResponse::new();
    match v {
        Verdict::Allow {
            supplier,
            owner,
            revision,
        } => {
            let mut ok = OkHttpResponseBuilder::new();
            ok.add_header(OWNER_HEADER, owner.as_str(), overwrite, false)
                .add_header(REVISION_HEADER, revision, overwrite, false);
            match supplier {
                Some(s) => {
                    ok.add_header(SUPPLIER_HEADER, s.as_str(), overwrite, false);
                }
                // The owner acts for itself: no supplier, and none a client
                // may have sent.
                None => {
                    ok.remove_header(SUPPLIER_HEADER);
                }
            }
            response.set_status(Status::ok("")).set_http_response(ok);
        }
        Verdict::Deny { reason, body, .. } => {
            let denied = denied(HttpStatusCode::Forbidden, &body, &[]);
            response
                .set_status(Status::permission_denied(reason))
                .set_http_response(denied);
        }
        Verdict::Unavailable { reason } => {
            let body = json!({ "allowed": false, "reason": reason });
            let denied = denied(
                HttpStatusCode::ServiceUnavailable,
                &body,
                &[("retry-after", "1")],
            );
            response
                .set_status(Status::unavailable(reason))
                .set_http_response(denied);
        }
        Verdict::Unauthenticated { reason } => {
            let body = json!({ "allowed": false, "reason": reason });
            let denied = denied(
                HttpStatusCode::Unauthorized,
                &body,
                &[(
                    "www-authenticate",
                    "Bearer realm=\"tilgang\", error=\"invalid_token\"",
                )],
            );
            response
                .set_status(Status::unauthenticated(reason))
                .set_http_response(denied);
        }
    }
    response
}

/// The HTTP answer Envoy gives instead of forwarding: `status`, a JSON
/// `body`, and `headers` after its `content-type`.
fn denied(
    status: HttpStatusCode,
    body: &serde_json::Value,
    headers: &[(&str, &str)],
) -> DeniedHttpResponseBuilder {
    let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
    let mut denied = DeniedHttpResponseBuilder::new();
    denied
        .set_http_status(status)
        .add_header("content-type", "application/json", overwrite, false);
    for (name, value) in headers {
        denied.add_header(*name, *value, overwrite, false);
    }
    denied.set_body(body.to_string());
    denied
}

/// Write `v` as an encoded `CheckResponse`. Why by hand for an allow: the
/// generated message costs six `String`s, a `Vec` and a sizing pass for a
/// response that is always the same shape (docs/performance.md).
pub fn encode_reply(v: Verdict, buf: &mut impl BufMut) -> Result<(), prost::EncodeError> {
    match v {
        Verdict::Allow {
            supplier,
            owner,
            revision,
        } => {
            encode_allow(
                owner.as_str(),
                supplier.as_ref().map(|s| s.as_str()),
                &revision,
                buf,
            );
            Ok(())
        }
        other => respond(other).encode(buf),
    }
}

/// The fields of the messages an allow is made of (all below 16, so each
/// key is one byte).
const STATUS: u8 = 1;
const OK_RESPONSE: u8 = 3;
const OK_HEADERS: u8 = 2;
const OK_HEADERS_TO_REMOVE: u8 = 5;
const OPTION_HEADER: u8 = 1;
const OPTION_APPEND_ACTION: u8 = 3;
const HEADER_KEY: u8 = 1;
const HEADER_VALUE: u8 = 2;

/// `CheckResponse { status: OK, ok_response: { headers, headers_to_remove } }`
/// as [`respond`] builds it, in prost's field order.
fn encode_allow(owner: &str, supplier: Option<&str>, revision: &str, buf: &mut impl BufMut) {
    let headers = [
        Some((OWNER_HEADER, owner)),
        Some((REVISION_HEADER, revision)),
        supplier.map(|s| (SUPPLIER_HEADER, s)),
    ];
    let headers = headers.iter().flatten();
    let removed = match supplier {
        Some(_) => 0,
        None => delimited(SUPPLIER_HEADER.len()),
    };
    let ok = headers
        .clone()
        .map(|(k, v)| delimited(option_len(k, v)))
        .sum::<usize>()
        + removed;
    // An OK `google.rpc.Status` is an empty message.
    put_delimited(buf, STATUS, 0);
    put_delimited(buf, OK_RESPONSE, ok);
    for (k, v) in headers {
        put_delimited(buf, OK_HEADERS, option_len(k, v));
        put_delimited(buf, OPTION_HEADER, header_len(k, v));
        put_string(buf, HEADER_KEY, k);
        put_string(buf, HEADER_VALUE, v);
        buf.put_u8(key(OPTION_APPEND_ACTION, 0));
        buf.put_u8(HeaderAppendAction::OverwriteIfExistsOrAdd as u8);
    }
    if supplier.is_none() {
        // The owner acts for itself: no supplier, and none a client may
        // have sent.
        put_text(buf, OK_HEADERS_TO_REMOVE, SUPPLIER_HEADER);
    }
}

/// A field's key: its number and wire type (2: length-delimited, 0: varint).
const fn key(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

/// The encoded size of a length-delimited field (one-byte key) of `len` bytes.
fn delimited(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// The encoded size of a singular string field: none when empty, as
/// proto3 leaves a default value out.
fn string_len(s: &str) -> usize {
    if s.is_empty() { 0 } else { delimited(s.len()) }
}

/// The size of `HeaderValue { key, value }`.
fn header_len(k: &str, v: &str) -> usize {
    string_len(k) + string_len(v)
}

/// The size of `HeaderValueOption { header, append_action }`.
fn option_len(k: &str, v: &str) -> usize {
    delimited(header_len(k, v)) + 2
}

fn put_delimited(buf: &mut impl BufMut, field: u8, len: usize) {
    buf.put_u8(key(field, 2));
    encode_varint(len as u64, buf);
}

/// One string of a repeated field: written even when empty.
fn put_text(buf: &mut impl BufMut, field: u8, text: &str) {
    put_delimited(buf, field, text.len());
    buf.put_slice(text.as_bytes());
}

/// A singular string field: left out when empty.
fn put_string(buf: &mut impl BufMut, field: u8, text: &str) {
    if !text.is_empty() {
        put_text(buf, field, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::OrgNumber;

    fn by_hand(v: Verdict) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_reply(v, &mut buf).unwrap();
        buf
    }

    /// An allow encoded by hand is byte for byte what prost makes of the
    /// generated message, with and without a supplier, and with values
    /// whose lengths take one and two varint bytes.
    #[test]
    fn an_allow_by_hand_is_prosts_allow() {
        let org = |o: &str| OrgNumber::parse(o).unwrap();
        for revision in ["", "3f0e565556a811f0", &"r".repeat(127), &"r".repeat(300)] {
            for supplier in [None, Some(org("810418672"))] {
                let v = Verdict::Allow {
                    supplier,
                    owner: org("991825827"),
                    revision: revision.to_string(),
                };
                assert_eq!(by_hand(v.clone()), respond(v).encode_to_vec(), "{revision}");
            }
        }
    }

    /// Every other answer is the generated message's.
    #[test]
    fn other_answers_are_the_generated_message() {
        let v = Verdict::Unauthenticated {
            reason: "no token".into(),
        };
        let full = respond(v.clone());
        assert_eq!(by_hand(v), full.encode_to_vec());
        assert_eq!(
            full.status.unwrap().code,
            tonic::Code::Unauthenticated as i32
        );
    }
}
