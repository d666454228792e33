//! What tilgang reads of Envoy's `CheckRequest`, decoded straight from the
//! request's bytes: the method, the path, four headers and the claims of the
//! token payload that [`Claims`] reads.
//!
//! Why not the generated message: decoding all of it put every header (the
//! 700-byte `authorization` too) into an owned `String` in a SipHash map and
//! every metadata `Struct` into maps of its own, for a handful of values. That
//! was most of `Check`'s cost (docs/performance.md), and even prost-derived
//! messages of just those fields spent a fifth of it growing `Vec`s of map
//! entries and building claims as `HashMap`s first. Here the message is
//! walked field by field with prost's wire primitives, along the paths that
//! lead to those values only; whatever else Envoy sends is skipped as
//! protobuf wire data, checked to be well-formed but never interpreted. The
//! walk borrows the request's buffer: the claims are read into [`Claims`]
//! from it, the method, path and three short headers are copied out, and
//! the bearer token stays a slice of it.
//!
//! The reading keeps protobuf's meaning, which the unit tests check against
//! the generated message: a message field given twice is read twice into
//! the same place (merged), a later scalar replaces an earlier one, and
//! where the full message has a map (headers, `filter_metadata`, a
//! `Struct`'s fields) the last entry of a key wins. One simplification: a
//! map entry's value, or a `Value`'s kind, given twice within one entry is
//! read as the last one (prost would merge the two); nothing encodes so.
//! Bytes that do not decode are [`UnreadableCheck`], which the server
//! answers `INVALID_ARGUMENT` naming the field, as for any other request
//! of ours ([`crate::grpc::codec`]).

use super::JWT_AUTHN_NAMESPACE;
use crate::gateway::claims::{Claims, ClaimsError};
use crate::grpc::codec::decode_cause;
use crate::grpc::freshness::MIN_REVISION_HEADER;
use crate::ids::echo;
use bytes::{Buf, Bytes};
use prost::DecodeError;
use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};

/// A `CheckRequest` as tilgang reads it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CheckCall {
    /// `attributes.request.http`; `None` when the check carries none.
    pub http: Option<HttpCall>,
    /// The token payload `jwt_authn` put in the metadata: `None` when
    /// there is none under the payload key.
    pub payload: Option<Payload>,
}

/// The token payload in `jwt_authn`'s metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Its claims, read as [`Claims`] reads them (straight from the
    /// request's bytes, without building JSON), or why they do not have
    /// Maskinporten's shape.
    Claims(Result<Claims, ClaimsError>),
    /// It is not an object.
    NotObject,
}

/// The checked HTTP request: what the route, the decision log and the
/// minimum revision read. Header names are as Envoy passes them, lower case.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HttpCall {
    pub method: String,
    pub path: String,
    pub request_id: Option<String>,
    pub traceparent: Option<String>,
    /// Read only to verify a bearer token (`serve --jwks`), so left as the
    /// request's bytes (700 of them, typically) until then.
    pub authorization: Option<Bytes>,
    pub min_revision: Option<String>,
}

/// Why a `CheckRequest`'s bytes could not be read; `field` is a path such
/// as `attributes.request.http.method` (empty: the message itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnreadableCheck {
    /// Not protobuf, a field of the wrong wire type, or a claim nested too deep.
    #[error("request is not a valid `CheckRequest` message{}: {cause}", at(.field))]
    Malformed { field: String, cause: String },
    /// A string tilgang reads holds bytes that are not UTF-8.
    #[error("`{0}` is not valid UTF-8")]
    NotUtf8(String),
}

fn at(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!(": `{field}`")
    }
}

impl CheckCall {
    /// Read a `CheckRequest` whose token payload is under `payload_key` in
    /// `jwt_authn`'s metadata. `bytes` is the whole message in one buffer
    /// (as `Check`'s framing hands it over): the bearer token is kept as a
    /// slice of it.
    pub fn decode(bytes: Bytes, payload_key: &str) -> Result<Self, UnreadableCheck> {
        let mut read = Read::default();
        each_field(&bytes, Path::Top, |tag, field| match tag {
            1 => read.attributes(field.message(Path::Attributes)?),
            _ => Ok(()),
        })?;
        let payload = match read.namespace {
            Some(namespace) => payload(namespace, payload_key)?,
            None => None,
        };
        let mut http = read.http.map(|h| h.owned());
        if let (Some(http), Some(token)) = (&mut http, read.authorization) {
            http.authorization = Some(bytes.slice_ref(token));
        }
        Ok(Self { http, payload })
    }
}

/// What a walk over the message has found so far. A message field that
/// comes twice is read twice into the same place, which is protobuf's
/// merge: a later value replaces an earlier one, a map gains entries.
#[derive(Default)]
struct Read<'a> {
    http: Option<HttpSeen<'a>>,
    authorization: Option<&'a [u8]>,
    /// The last `filter_metadata` entry named [`JWT_AUTHN_NAMESPACE`]: a `Struct`.
    namespace: Option<&'a [u8]>,
}

/// [`HttpCall`] as read, borrowing the request's bytes.
#[derive(Default)]
struct HttpSeen<'a> {
    method: &'a str,
    path: &'a str,
    request_id: Option<&'a str>,
    traceparent: Option<&'a str>,
    min_revision: Option<&'a str>,
}

impl HttpSeen<'_> {
    fn owned(self) -> HttpCall {
        HttpCall {
            method: self.method.to_string(),
            path: self.path.to_string(),
            request_id: self.request_id.map(str::to_string),
            traceparent: self.traceparent.map(str::to_string),
            authorization: None,
            min_revision: self.min_revision.map(str::to_string),
        }
    }
}

impl<'a> Read<'a> {
    /// `AttributeContext`: `request` (4) and `metadata_context` (11).
    fn attributes(&mut self, bytes: &'a [u8]) -> Result<(), UnreadableCheck> {
        each_field(bytes, Path::Attributes, |tag, field| match tag {
            4 => each_field(
                field.message(Path::Request)?,
                Path::Request,
                |tag, field| match tag {
                    2 => self.http(field.message(Path::Http)?),
                    _ => Ok(()),
                },
            ),
            11 => each_field(
                field.message(Path::Metadata)?,
                Path::Metadata,
                |tag, field| {
                    // `filter_metadata`: map<string, Struct>.
                    if tag != 1 {
                        return Ok(());
                    }
                    let (key, value) =
                        entry(field.message(Path::FilterMetadata)?, Path::FilterMetadata)?;
                    if key == JWT_AUTHN_NAMESPACE.as_bytes() {
                        self.namespace = Some(value);
                    }
                    Ok(())
                },
            ),
            _ => Ok(()),
        })
    }

    /// `HttpRequest`: `method` (2), `headers` (3, a map) and `path` (4).
    fn http(&mut self, bytes: &'a [u8]) -> Result<(), UnreadableCheck> {
        let http = self.http.get_or_insert_with(HttpSeen::default);
        let authorization = &mut self.authorization;
        each_field(bytes, Path::Http, |tag, field| {
            match tag {
                2 => http.method = text(field.message(Path::Method)?, Path::Method)?,
                4 => http.path = text(field.message(Path::Target)?, Path::Target)?,
                3 => {
                    let (key, value) = entry(field.message(Path::Headers)?, Path::Headers)?;
                    let (header, slot) = match key {
                        b"x-request-id" => (Path::Header("x-request-id"), &mut http.request_id),
                        b"traceparent" => (Path::Header("traceparent"), &mut http.traceparent),
                        b"authorization" => {
                            *authorization = Some(value);
                            return Ok(());
                        }
                        k if k == MIN_REVISION_HEADER.as_bytes() => {
                            (Path::Header(MIN_REVISION_HEADER), &mut http.min_revision)
                        }
                        _ => return Ok(()),
                    };
                    *slot = Some(text(value, header)?);
                }
                _ => {}
            }
            Ok(())
        })
    }
}

/// The claims of the `jwt_authn` metadata's `payload_key`, from its
/// `Struct` (`namespace`).
fn payload(namespace: &[u8], payload_key: &str) -> Result<Option<Payload>, UnreadableCheck> {
    let value = struct_field(namespace, payload_key.as_bytes()).map_err(|cause| {
        UnreadableCheck::Malformed {
            field: Path::Namespace.to_string(),
            cause,
        }
    })?;
    let Some(value) = value else {
        return Ok(None);
    };
    // A `Value`: the payload is its `struct_value` (5); any other kind (the
    // last one given wins, as in a oneof) is not an object.
    let path = Path::Payload(payload_key);
    let mut object = None;
    each_field(value, path, |tag, field| {
        match tag {
            5 => object = Some(field.message(path)?),
            1..=6 => object = None,
            _ => {}
        }
        Ok(())
    })?;
    let Some(object) = object else {
        return Ok(Some(Payload::NotObject));
    };
    let mut claims: [Option<Claim>; Claims::READ.len()] = Default::default();
    let mut found: [Option<&[u8]>; Claims::READ.len()] = Default::default();
    each_field(object, path, |tag, field| {
        if tag == 1 {
            let (key, value) = entry(field.message(path)?, path)?;
            if let Some(i) = Claims::READ.iter().position(|c| c.as_bytes() == key) {
                found[i] = Some(value);
            }
        }
        Ok(())
    })?;
    for ((name, value), slot) in Claims::READ.iter().zip(found).zip(&mut claims) {
        if let Some(value) = value {
            *slot = Some(claim(value, 1).map_err(|cause| UnreadableCheck::Malformed {
                field: Path::Claim(payload_key, name).to_string(),
                cause,
            })?);
        }
    }
    let read = Claims::read(|name| {
        let i = Claims::READ.iter().position(|c| *c == name)?;
        claims[i]
    });
    Ok(Some(Payload::Claims(read)))
}

/// The value of the last entry named `key` in a `Struct`'s `fields` (1);
/// the error is the cause only (the caller knows where the `Struct` is).
fn struct_field<'a>(s: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, String> {
    let mut found = None;
    each_wire_field(s, |tag, field| {
        match (tag, field) {
            (1, Wire::Len(e)) => {
                let (k, v) = wire_entry(e)?;
                if k == key {
                    found = Some(v);
                }
            }
            (1, other) => return Err(other.unexpected()),
            _ => {}
        }
        Ok(())
    })?;
    Ok(found)
}

/// Where in a `CheckRequest` a value is, for the error that names it.
#[derive(Debug, Clone, Copy)]
enum Path<'a> {
    Top,
    Attributes,
    Request,
    Http,
    Method,
    Target,
    Headers,
    Header(&'static str),
    Metadata,
    FilterMetadata,
    Namespace,
    Payload(&'a str),
    Claim(&'a str, &'static str),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const HTTP: &str = "attributes.request.http";
        const METADATA: &str = "attributes.metadata_context";
        match self {
            Self::Top => Ok(()),
            Self::Attributes => f.write_str("attributes"),
            Self::Request => f.write_str("attributes.request"),
            Self::Http => f.write_str(HTTP),
            Self::Method => write!(f, "{HTTP}.method"),
            Self::Target => write!(f, "{HTTP}.path"),
            Self::Headers => write!(f, "{HTTP}.headers"),
            Self::Header(name) => write!(f, "{HTTP}.headers[{name}]"),
            Self::Metadata => f.write_str(METADATA),
            Self::FilterMetadata => write!(f, "{METADATA}.filter_metadata"),
            Self::Namespace => write!(f, "{METADATA}.filter_metadata[{JWT_AUTHN_NAMESPACE}]"),
            Self::Payload(key) => write!(
                f,
                "{METADATA}.filter_metadata[{JWT_AUTHN_NAMESPACE}].{}",
                echo(key)
            ),
            Self::Claim(key, claim) => write!(
                f,
                "{METADATA}.filter_metadata[{JWT_AUTHN_NAMESPACE}].{}.{claim}",
                echo(key)
            ),
        }
    }
}

/// One field of a message as it is on the wire.
enum Wire<'a> {
    /// A varint (read, not kept: nothing read is a number).
    Varint,
    Fixed64(u64),
    Len(&'a [u8]),
    /// A 32-bit value or a group, skipped.
    Other(WireType),
}

impl<'a> Wire<'a> {
    /// The bytes of a length-delimited field (a message, a string).
    fn message(self, path: Path<'_>) -> Result<&'a [u8], UnreadableCheck> {
        match self {
            Self::Len(b) => Ok(b),
            other => Err(UnreadableCheck::Malformed {
                field: path.to_string(),
                cause: other.unexpected(),
            }),
        }
    }

    fn unexpected(&self) -> String {
        let actual = match self {
            Self::Varint => WireType::Varint,
            Self::Fixed64(_) => WireType::SixtyFourBit,
            Self::Len(_) => WireType::LengthDelimited,
            Self::Other(t) => *t,
        };
        format!("invalid wire type: {actual:?}")
    }
}

/// Call `f` with each field of the message in `bytes`, in order; a field
/// whose bytes are cut short or are not protobuf is an error at `path`.
fn each_field<'a>(
    bytes: &'a [u8],
    path: Path<'_>,
    f: impl FnMut(u32, Wire<'a>) -> Result<(), UnreadableCheck>,
) -> Result<(), UnreadableCheck> {
    walk(bytes, f, |cause| UnreadableCheck::Malformed {
        field: path.to_string(),
        cause,
    })
}

/// [`each_field`] where the error is only the cause (inside a claim).
fn each_wire_field<'a>(
    bytes: &'a [u8],
    f: impl FnMut(u32, Wire<'a>) -> Result<(), String>,
) -> Result<(), String> {
    walk(bytes, f, |cause| cause)
}

fn walk<'a, E>(
    mut buf: &'a [u8],
    mut f: impl FnMut(u32, Wire<'a>) -> Result<(), E>,
    error: impl Fn(String) -> E,
) -> Result<(), E> {
    let cause = |e: DecodeError| error(decode_cause(&e));
    while buf.has_remaining() {
        let (tag, wire_type) = key(&mut buf).map_err(cause)?;
        let field = match wire_type {
            WireType::Varint => {
                varint(&mut buf).map_err(cause)?;
                Wire::Varint
            }
            WireType::SixtyFourBit if buf.remaining() >= 8 => Wire::Fixed64(buf.get_u64_le()),
            WireType::LengthDelimited => {
                let len = varint(&mut buf).map_err(cause)?;
                if len > buf.remaining() as u64 {
                    return Err(error("buffer underflow".into()));
                }
                let (value, rest) = buf.split_at(len as usize);
                buf = rest;
                Wire::Len(value)
            }
            other => {
                skip_field(other, tag, &mut buf, DecodeContext::default()).map_err(cause)?;
                Wire::Other(other)
            }
        };
        f(tag, field)?;
    }
    Ok(())
}

/// A field's key: one byte inline (field numbers 1 to 15, which is every
/// field read here), else prost's reading, errors and all.
#[inline(always)]
fn key(buf: &mut &[u8]) -> Result<(u32, WireType), DecodeError> {
    if let Some((&b, rest)) = buf.split_first()
        && b < 0x80
        && b >> 3 != 0
        && let Ok(wire_type) = WireType::try_from(u64::from(b & 7))
    {
        *buf = rest;
        return Ok((u32::from(b >> 3), wire_type));
    }
    decode_key(buf)
}

/// A varint: one byte inline (a length under 128: most of them), else
/// prost's reading. prost's own is not inlined into the walk, and was a
/// fifth of the decoding time.
#[inline(always)]
fn varint(buf: &mut &[u8]) -> Result<u64, DecodeError> {
    if let Some((&b, rest)) = buf.split_first()
        && b < 0x80
    {
        *buf = rest;
        return Ok(u64::from(b));
    }
    decode_varint(buf)
}

/// A map entry: its key (1) and value (2) as bytes; the last of each wins.
fn entry<'a>(bytes: &'a [u8], path: Path<'_>) -> Result<(&'a [u8], &'a [u8]), UnreadableCheck> {
    wire_entry(bytes).map_err(|cause| UnreadableCheck::Malformed {
        field: path.to_string(),
        cause,
    })
}

fn wire_entry(bytes: &[u8]) -> Result<(&[u8], &[u8]), String> {
    // As every encoder writes an entry: the key (1), then the value (2),
    // each once. Anything else takes the general walk below.
    if let Some(kv) = canonical_entry(bytes) {
        return Ok(kv);
    }
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    each_wire_field(bytes, |tag, field| {
        match (tag, field) {
            (1, Wire::Len(k)) => key = k,
            (2, Wire::Len(v)) => value = v,
            (1 | 2, other) => return Err(other.unexpected()),
            _ => {}
        }
        Ok(())
    })?;
    Ok((key, value))
}

/// An entry that is exactly `key` (field 1) then `value` (field 2), both
/// length-delimited, with nothing after: the key and the value.
fn canonical_entry(mut bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut field = |tag: u8| {
        let (&first, rest) = bytes.split_first()?;
        if first != (tag << 3) | 2 {
            return None;
        }
        bytes = rest;
        let len = usize::try_from(varint(&mut bytes).ok()?).ok()?;
        if len > bytes.len() {
            return None;
        }
        let (value, rest) = bytes.split_at(len);
        bytes = rest;
        Some(value)
    };
    let key = field(1)?;
    let value = field(2)?;
    bytes.is_empty().then_some((key, value))
}

/// A string field's bytes as text; not UTF-8 is an error naming `path`.
fn text<'a>(bytes: &'a [u8], path: Path<'_>) -> Result<&'a str, UnreadableCheck> {
    std::str::from_utf8(bytes).map_err(|_| UnreadableCheck::NotUtf8(path.to_string()))
}

mod claim;
use claim::{Claim, claim};

#[cfg(test)]
mod tests;
