//! A token's payload as JSON, refusing a name that appears twice in one
//! object, at any depth. serde_json keeps the last of duplicated names, and
//! another reader may keep the first: a token with two `supplier` claims
//! would then name one supplier to tilgang and another to the upstream. Envoy's
//! `jwt_authn` refuses such a token; so does tilgang. No I/O.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a payload was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// Not a JSON object (or not JSON).
    NotAnObject,
    /// An object names this member twice (the name as written, unescaped).
    Duplicate(String),
}

/// The payload's claims, if it is a JSON object without duplicated names.
pub fn parse(payload: &[u8]) -> Result<Map<String, Value>, PayloadError> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = match de
        .deserialize_any(Strict)
        .and_then(|v| de.end().map(|()| v))
    {
        Ok(v) => v,
        Err(e) => {
            let text = e.to_string();
            return Err(match text.strip_prefix(DUPLICATE) {
                Some(rest) => PayloadError::Duplicate(
                    rest.split(" at line ").next().unwrap_or(rest).to_string(),
                ),
                None => PayloadError::NotAnObject,
            });
        }
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(PayloadError::NotAnObject),
    }
}

/// How the visitor's custom error starts; [`parse`] reads the name back.
const DUPLICATE: &str = "duplicate member ";

/// Builds a `Value` like serde_json's own, but fails on a repeated name.
struct Strict;

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("{DUPLICATE}{key}")));
            }
            let value = map.next_value_seed(StrictSeed)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

struct StrictSeed;

impl<'de> de::DeserializeSeed<'de> for StrictSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(Strict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_without_repeats_parse_as_serde_json_would() {
        let text = br#"{"a":1,"b":[1,2.5,{"c":null}],"d":{"e":true,"f":"x"},"g":-3}"#;
        let want: Map<String, Value> = serde_json::from_slice(text).unwrap();
        assert_eq!(parse(text), Ok(want));
    }

    #[test]
    fn a_repeated_name_at_any_depth_is_refused() {
        for (text, name) in [
            (r#"{"supplier":"a","supplier":"b"}"#, "supplier"),
            (r#"{"consumer":{"ID":"0192:1","ID":"0192:2"}}"#, "ID"),
            (r#"{"a":[{"x":1,"x":1}]}"#, "x"),
            // The same name written with an escape is the same name.
            (r#"{"exp":1,"\u0065xp":2}"#, "exp"),
        ] {
            assert_eq!(
                parse(text.as_bytes()),
                Err(PayloadError::Duplicate(name.into())),
                "{text}"
            );
        }
    }

    #[test]
    fn what_is_not_an_object_is_refused() {
        for text in ["[]", "1", "\"x\"", "{", "{} {}", ""] {
            assert_eq!(
                parse(text.as_bytes()),
                Err(PayloadError::NotAnObject),
                "{text}"
            );
        }
    }
}
