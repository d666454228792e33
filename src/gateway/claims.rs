//! The Maskinporten claims tilgang decides on, read from a token's JSON
//! payload (as Envoy's `jwt_authn` passes it, or as tilgang's own verifier
//! returns it): `consumer` is the service owner, `supplier` the organisation
//! acting for it (absent when the owner calls for itself), `scope` the
//! space-separated scopes granted.
//!
//! An organisation claim is `{"authority":"iso6523-actorid-upis","ID":"0192:<orgnr>"}`;
//! anything else in its place is an error, never a guess. This module checks
//! shapes only: it does not verify signatures or expiry (the verifier or
//! Envoy did) and decides nothing.

use serde_json::{Map, Value};

use crate::ids::{IdError, OrgNumber, Scope, echo};

/// The authority Maskinporten writes for ISO 6523 organisation identifiers.
pub const ISO6523_AUTHORITY: &str = "iso6523-actorid-upis";

/// What a token says, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub consumer: OrgNumber,
    pub supplier: Option<OrgNumber>,
    /// The scopes granted; strings that are not well-formed scopes are left
    /// out (they cannot match a route's scope anyway).
    pub scopes: Vec<Scope>,
    /// Set when Maskinporten issued the token on a delegation (from Altinn).
    pub delegation_source: Option<String>,
    pub client_id: Option<String>,
}

/// Why claims could not be read. Each is a deny ("a request tilgang cannot
/// read"), answered 403 with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("the token has no `{0}` claim")]
    Missing(&'static str),
    #[error(
        "`{claim}` is not an organisation claim `{{\"authority\":\"{ISO6523_AUTHORITY}\",\"ID\":\"0192:<orgnr>\"}}`"
    )]
    Shape { claim: &'static str },
    #[error("`{claim}` has authority `{authority}`, not `{ISO6523_AUTHORITY}`")]
    Authority {
        claim: &'static str,
        authority: String,
    },
    #[error("`{claim}.ID` {error}")]
    Org { claim: &'static str, error: IdError },
    #[error("`{claim}` is not a string")]
    NotText { claim: &'static str },
}

/// A claim's value as [`Claims`] reads it. A verified token's JSON payload
/// is one form; Envoy's metadata, read straight from protobuf
/// (`grpc::ext_authz::wire`), is another, so a check need not build JSON
/// first. Only what the shapes below ask is asked.
pub trait ClaimValue: Sized {
    fn is_null(&self) -> bool;
    /// The text of a string value; `None` for any other kind.
    fn as_text(&self) -> Option<&str>;
    fn is_object(&self) -> bool;
    /// A member of an object value; `None` when there is no such member
    /// or this is not an object.
    fn member(&self, name: &str) -> Option<Self>;
}

impl ClaimValue for &Value {
    fn is_null(&self) -> bool {
        Value::is_null(self)
    }
    fn as_text(&self) -> Option<&str> {
        self.as_str()
    }
    fn is_object(&self) -> bool {
        Value::is_object(self)
    }
    fn member(&self, name: &str) -> Option<Self> {
        self.as_object()?.get(name)
    }
}

fn org<V: ClaimValue>(v: Option<V>, claim: &'static str) -> Result<Option<OrgNumber>, ClaimsError> {
    let Some(v) = v else {
        return Ok(None);
    };
    if !v.is_object() {
        return Err(ClaimsError::Shape { claim });
    }
    let shape = ClaimsError::Shape { claim };
    let authority = v.member("authority").ok_or(shape.clone())?;
    let authority = authority.as_text().ok_or(shape.clone())?;
    if authority != ISO6523_AUTHORITY {
        return Err(ClaimsError::Authority {
            claim,
            authority: echo(authority),
        });
    }
    let id = v.member("ID").ok_or(shape.clone())?;
    let id = id.as_text().ok_or(shape)?;
    OrgNumber::parse(id)
        .map(Some)
        .map_err(|error| ClaimsError::Org { claim, error })
}

fn text<V: ClaimValue>(v: Option<V>, claim: &'static str) -> Result<Option<String>, ClaimsError> {
    match v {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => v
            .as_text()
            .map(|s| Some(s.to_string()))
            .ok_or(ClaimsError::NotText { claim }),
    }
}

impl Claims {
    /// The claims [`Self::from_json`] reads: a caller holding the payload in
    /// another form converts only these.
    pub const READ: [&'static str; 5] = [
        "consumer",
        "supplier",
        "scope",
        "delegation_source",
        "client_id",
    ];

    pub fn from_json(claims: &Map<String, Value>) -> Result<Self, ClaimsError> {
        Self::read(|name| claims.get(name))
    }

    /// The claims from whatever form holds them: `claim` gives the value of
    /// one of [`Self::READ`], if the payload has it.
    pub fn read<V: ClaimValue>(claim: impl Fn(&str) -> Option<V>) -> Result<Self, ClaimsError> {
        let consumer =
            org(claim("consumer"), "consumer")?.ok_or(ClaimsError::Missing("consumer"))?;
        let supplier = org(claim("supplier"), "supplier")?;
        let scopes = match claim("scope") {
            None => Vec::new(),
            Some(v) if v.is_null() => Vec::new(),
            Some(v) => v
                .as_text()
                .ok_or(ClaimsError::NotText { claim: "scope" })?
                .split_ascii_whitespace()
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
        };
        Ok(Self {
            consumer,
            supplier,
            scopes,
            delegation_source: text(claim("delegation_source"), "delegation_source")?,
            client_id: text(claim("client_id"), "client_id")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> Result<Claims, ClaimsError> {
        Claims::from_json(v.as_object().unwrap())
    }

    fn org_claim(id: &str) -> Value {
        json!({"authority": ISO6523_AUTHORITY, "ID": id})
    }

    #[test]
    fn a_supplier_token() {
        let c = read(json!({
            "consumer": org_claim("0192:991825827"),
            "supplier": org_claim("0192:810418672"),
            "scope": "altinn:serviceowner/instances.read  altinn:serviceowner/instances.write",
            "delegation_source": "https://platform.altinn.no/",
            "client_id": "abc",
            "iss": "https://maskinporten.no/",
        }))
        .unwrap();
        assert_eq!(c.consumer.as_str(), "991825827");
        assert_eq!(c.supplier.unwrap().as_str(), "810418672");
        assert_eq!(c.scopes.len(), 2);
        assert_eq!(
            c.delegation_source.as_deref(),
            Some("https://platform.altinn.no/")
        );
    }

    #[test]
    fn an_owner_token_and_odd_scopes() {
        let c = read(json!({
            "consumer": org_claim("991825827"),
            "scope": "a:b \u{7f}bad ok:scope",
        }))
        .unwrap();
        assert!(c.supplier.is_none());
        assert_eq!(c.scopes.len(), 2, "the malformed one is left out");
        let c = read(json!({"consumer": org_claim("991825827")})).unwrap();
        assert!(c.scopes.is_empty());
    }

    #[test]
    fn what_cannot_be_read_is_said() {
        use ClaimsError::*;
        assert_eq!(read(json!({})), Err(Missing("consumer")));
        assert_eq!(
            read(json!({"consumer": "0192:991825827"})),
            Err(Shape { claim: "consumer" })
        );
        assert!(matches!(
            read(json!({"consumer": {"authority": "x", "ID": "0192:991825827"}})),
            Err(Authority { .. })
        ));
        assert!(matches!(
            read(json!({"consumer": org_claim("0192:991825828")})),
            Err(Org {
                claim: "consumer",
                ..
            })
        ));
        assert!(matches!(
            read(json!({"consumer": org_claim("991825827"), "supplier": org_claim("12")})),
            Err(Org {
                claim: "supplier",
                ..
            })
        ));
        assert_eq!(
            read(json!({"consumer": org_claim("991825827"), "scope": ["a:b"]})),
            Err(NotText { claim: "scope" })
        );
    }
}
