//! A claim of the token payload, read from its protobuf `Value` without
//! building anything: checked whole once ([`claim`]), then read where
//! [`Claims`](crate::gateway::claims::Claims) asks.

use super::{Wire, each_wire_field, struct_field, wire_entry};
use crate::gateway::claims::ClaimValue;

/// A claim decoded from a protobuf `Value`, borrowing the request's bytes.
/// [`claim`] checks all of it (its depth, that its strings are UTF-8) but
/// keeps only its kind: an object stays its `Struct`'s bytes, and a member
/// is read from them when [`Claims`] asks for it, so reading claims
/// allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Claim<'a> {
    /// `null`, and a number JSON cannot hold (NaN, infinite), as JSON has it.
    Null,
    Text(&'a str),
    /// A `Struct`: its members, in order; the last of a name wins.
    Object(&'a [u8]),
    /// A number, a boolean or a list: never what a claim tilgang reads holds.
    Other,
}

impl ClaimValue for Claim<'_> {
    fn is_null(&self) -> bool {
        matches!(self, Claim::Null)
    }
    fn as_text(&self) -> Option<&str> {
        match self {
            Claim::Text(t) => Some(t),
            _ => None,
        }
    }
    fn is_object(&self) -> bool {
        matches!(self, Claim::Object(_))
    }
    fn member(&self, name: &str) -> Option<Self> {
        let Claim::Object(members) = *self else {
            return None;
        };
        // Checked whole by `claim` already: neither read can fail here,
        // and if one did, the member would be missing (a deny).
        let found = struct_field(members, name.as_bytes()).ok()??;
        kind(found).ok()
    }
}

/// How deep a claim may nest: a JWT claim is shallow.
pub(super) const MAX_DEPTH: usize = 32;

/// A `google.protobuf.Value` as a [`Claim`], all of it checked, or why it
/// cannot be read.
pub(super) fn claim(bytes: &[u8], depth: usize) -> Result<Claim<'_>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    each_wire_field(bytes, |tag, field| match (tag, field) {
        (5, Wire::Len(s)) => each_wire_field(s, |tag, field| match (tag, field) {
            (1, Wire::Len(e)) => {
                let (k, v) = wire_entry(e)?;
                utf8(k)?;
                claim(v, depth + 1).map(drop)
            }
            (1, other) => Err(other.unexpected()),
            _ => Ok(()),
        }),
        (6, Wire::Len(l)) => each_wire_field(l, |tag, field| match (tag, field) {
            (1, Wire::Len(v)) => claim(v, depth + 1).map(drop),
            (1, other) => Err(other.unexpected()),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })?;
    kind(bytes)
}

/// What kind of `Value` `bytes` is (the last kind given wins, as in a
/// oneof), without looking inside an object or a list.
fn kind(bytes: &[u8]) -> Result<Claim<'_>, String> {
    let mut value = Claim::Null;
    each_wire_field(bytes, |tag, field| {
        value = match (tag, field) {
            (1, Wire::Varint) => Claim::Null,
            (2, Wire::Fixed64(bits)) if f64::from_bits(bits).is_finite() => Claim::Other,
            (2, Wire::Fixed64(_)) => Claim::Null,
            (3, Wire::Len(s)) => Claim::Text(utf8(s)?),
            (4, Wire::Varint) => Claim::Other,
            (5, Wire::Len(s)) => Claim::Object(s),
            (6, Wire::Len(_)) => Claim::Other,
            (1..=6, other) => return Err(other.unexpected()),
            _ => return Ok(()),
        };
        Ok(())
    })?;
    Ok(value)
}

/// `bytes` as text, if UTF-8.
fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "a string is not valid UTF-8".to_string())
}
