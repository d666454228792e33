//! The codec our servers decode requests with: prost's, except that a request
//! whose bytes do not decode is `INVALID_ARGUMENT` naming the field.
//!
//! tonic-prost answers a `prost::DecodeError` with `INTERNAL`, so a string field
//! holding invalid UTF-8 (which prost refuses) looked like a server fault rather
//! than a bad field like any other (see [`super::field`]). `build.rs` generates
//! both services (`Authorizer`, `Delegations`) with [`RequestCodec`]; the
//! generated clients keep tonic's codec, since a reply a client cannot decode is
//! not its caller's fault. Encoding is prost's, unchanged. This module does no I/O.

use std::marker::PhantomData;

use prost::{DecodeError, Message, Name};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// `(message, field)` for every repeated field of the contract (from `build.rs`).
const REPEATED_FIELDS: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/repeated_fields.rs"));

/// Encodes replies `T` with prost, decodes requests `U` with [`RequestDecoder`].
#[derive(Debug, Clone, Copy)]
pub struct RequestCodec<T, U>(PhantomData<fn(T) -> U>);

/// Not derived: a derive would require `T: Default` and `U: Default`.
impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder(PhantomData)
    }
}

/// Decodes one request message; a decode error is the caller's.
#[derive(Debug, Clone, Copy)]
pub struct RequestDecoder<U>(PhantomData<fn() -> U>);

impl<U: Message + Name + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| Status::invalid_argument(describe(U::NAME, &e)))
    }
}

/// What prost's `Display` puts first, before the field stack.
const PREFIX: &str = "failed to decode Protobuf message: ";
/// How many fields of a failing field's path a message names.
const MAX_SHOWN_FIELDS: usize = 8;
/// prost's cause for a string field that is not UTF-8.
const NOT_UTF8: &str = "invalid string value: data is not UTF-8 encoded";

/// The message for a request of type `message` that did not decode, e.g.
/// "`requests[].owner` is not valid UTF-8", or "request is not a valid
/// `IsAuthorizedRequest` message: `scope`: invalid wire type: ...".
///
/// prost keeps the failing field as a stack of `Message.field` pairs, innermost
/// first, that it shows only through `Display`; the unit tests below pin the
/// parse against prost's real errors, so a change of format fails them.
pub fn describe(message: &str, e: &DecodeError) -> String {
    let text = e.to_string();
    let mut rest = text.strip_prefix(PREFIX).unwrap_or(&text);
    let mut stack = Vec::new();
    while let Some((frame, after)) = rest.split_once(": ") {
        let Some((msg, field)) = frame.split_once('.') else {
            break;
        };
        if !is_ident(msg) || !is_ident(field) {
            break;
        }
        stack.push((msg, field));
        rest = after;
    }
    // A message nested past prost's recursion limit has a stack of a hundred
    // frames; the outer ones say where it was.
    let deep = stack.len() > MAX_SHOWN_FIELDS;
    let path = stack
        .iter()
        .rev()
        .take(MAX_SHOWN_FIELDS)
        .map(|&(msg, field)| {
            if REPEATED_FIELDS.contains(&(msg, field)) {
                format!("{field}[]")
            } else {
                field.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(".");
    let path = if deep { format!("{path}.…") } else { path };
    match (path.is_empty(), rest) {
        (false, NOT_UTF8) => format!("`{path}` is not valid UTF-8"),
        (false, cause) => format!("request is not a valid `{message}` message: `{path}`: {cause}"),
        (true, cause) => format!("request is not a valid `{message}` message: {cause}"),
    }
}

/// What went wrong in a decode error, without prost's prefix or field stack
/// (for errors raised by prost's wire primitives, which have none).
pub fn decode_cause(e: &DecodeError) -> String {
    let text = e.to_string();
    text.strip_prefix(PREFIX).unwrap_or(&text).to_string()
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{BatchIsAuthorizedRequest, DelegateRequest, IsAuthorizedRequest};

    /// Hand-encoded protobuf: field `tag` as a length-delimited value.
    fn bytes_field(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2];
        prost::encoding::encode_varint(value.len() as u64, &mut out);
        out.extend_from_slice(value);
        out
    }

    fn decode_error<M: Message + Name + Default + std::fmt::Debug>(bytes: &[u8]) -> String {
        describe(M::NAME, &M::decode(bytes).unwrap_err())
    }

    #[test]
    fn invalid_utf8_names_the_field() {
        // `supplier` (1) holds a lone continuation byte.
        let bytes = bytes_field(1, b"81041867\x80");
        assert_eq!(
            decode_error::<IsAuthorizedRequest>(&bytes),
            "`supplier` is not valid UTF-8"
        );
        // A 4-byte character cut after its third byte, in `scope` (3).
        let bytes = bytes_field(3, &"a😀".as_bytes()[..4]);
        assert_eq!(
            decode_error::<IsAuthorizedRequest>(&bytes),
            "`scope` is not valid UTF-8"
        );
        // Nested: `requests` (1) holding a request whose `owner` (2) is bad.
        let inner = bytes_field(2, b"\xff\xfe");
        let bytes = bytes_field(1, &inner);
        assert_eq!(
            decode_error::<BatchIsAuthorizedRequest>(&bytes),
            "`requests[].owner` is not valid UTF-8"
        );
        // A repeated string: `rights` (3) of `DelegateRequest`.
        let mut bytes = bytes_field(3, b"instances-read");
        bytes.extend(bytes_field(3, b"\xc3"));
        assert_eq!(
            decode_error::<DelegateRequest>(&bytes),
            "`rights[]` is not valid UTF-8"
        );
    }

    #[test]
    fn other_malformed_bytes_name_the_message() {
        // `supplier` sent as a varint.
        let e = decode_error::<IsAuthorizedRequest>(&[1 << 3, 7]);
        assert!(
            e.starts_with("request is not a valid `IsAuthorizedRequest` message: `supplier`: "),
            "{e}"
        );
        assert!(e.contains("wire type"), "{e}");
        // A length that runs past the end.
        let e = decode_error::<IsAuthorizedRequest>(&[(1 << 3) | 2, 50, b'8']);
        assert!(
            e.starts_with("request is not a valid `IsAuthorizedRequest` message: "),
            "{e}"
        );
        // Field number 0.
        let e = decode_error::<IsAuthorizedRequest>(&[2, 0]);
        assert!(
            e.starts_with("request is not a valid `IsAuthorizedRequest` message: "),
            "{e}"
        );
        // Every message is short, whatever the input.
        let huge = bytes_field(1, &vec![0xff; 1 << 20]);
        assert!(decode_error::<IsAuthorizedRequest>(&huge).len() < 100);
    }

    #[test]
    fn repeated_fields_come_from_the_contract() {
        assert!(REPEATED_FIELDS.contains(&("BatchIsAuthorizedRequest", "requests")));
        assert!(REPEATED_FIELDS.contains(&("RevokeRequest", "rights")));
        assert!(!REPEATED_FIELDS.contains(&("IsAuthorizedRequest", "supplier")));
    }
}
