//! The owner-file format written: [`DelegationOut`], the one rendering of a
//! delegation as the Cedar JSON entity a `delegations/` file holds, used by
//! admin writes ([`render_owner_file`]) and as a JSON value
//! ([`delegation_json`]). Reading it back is [`super::delegations`].

#[allow(unused_imports)]
use super::*;
use crate::ids::{OrgNumber, RightId};

/// One delegation as the Cedar JSON entity an owner file holds, borrowed from
/// what it is made of: the one rendering of the format. Admin writes serialize
/// it straight into the file ([`render_owner_file`]); [`delegation_json`] is
/// the same as a JSON value; [`parse_delegations`] reads either back.
/// `extra` (attributes a policy author's schema adds) comes first, in its
/// order; a same-named one of tilgang's six is left out, tilgang's own wins.
pub struct DelegationOut<'a> {
    pub owner: &'a OrgNumber,
    pub supplier: &'a OrgNumber,
    pub rights: Vec<&'a RightId>,
    pub delegated_by: &'a str,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    pub extra: &'a serde_json::Map<String, serde_json::Value>,
}

/// tilgang's own attributes, in the order files have them.
const OWN_ATTRS: [&str; 6] = [
    "owner",
    "supplier",
    "rights",
    "delegatedBy",
    "createdAt",
    "updatedAt",
];

impl serde::Serialize for DelegationOut<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct Uid<'a>(&'static str, &'a str);
        impl serde::Serialize for Uid<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_struct("Uid", 2)?;
                m.serialize_field("type", self.0)?;
                m.serialize_field("id", self.1)?;
                m.end()
            }
        }
        struct Attrs<'a, 'b>(&'b DelegationOut<'a>);
        impl serde::Serialize for Attrs<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let d = self.0;
                let mut m = ser.serialize_map(None)?;
                for (k, v) in d.extra {
                    if !OWN_ATTRS.contains(&k.as_str()) {
                        m.serialize_entry(k, v)?;
                    }
                }
                m.serialize_entry("owner", &Uid(ORG_TYPE, d.owner.as_str()))?;
                m.serialize_entry("supplier", &Uid(ORG_TYPE, d.supplier.as_str()))?;
                let rights: Vec<Uid<'_>> = d
                    .rights
                    .iter()
                    .map(|r| Uid(RIGHT_TYPE, r.as_str()))
                    .collect();
                m.serialize_entry("rights", &rights)?;
                m.serialize_entry("delegatedBy", d.delegated_by)?;
                m.serialize_entry("createdAt", d.created_at)?;
                m.serialize_entry("updatedAt", d.updated_at)?;
                m.end()
            }
        }
        let id = format!("{}/{}", self.owner, self.supplier);
        let mut e = ser.serialize_struct("Delegation", 3)?;
        e.serialize_field("uid", &Uid(DELEGATION_TYPE, &id))?;
        e.serialize_field("attrs", &Attrs(self))?;
        e.serialize_field("parents", &[(); 0])?;
        e.end()
    }
}

/// An owner file (or part): the delegations as a pretty-printed JSON array,
/// in the order given (sorted by supplier), and a final newline.
pub fn render_owner_file<'a>(
    delegations: impl IntoIterator<Item = DelegationOut<'a>>,
) -> std::io::Result<Vec<u8>> {
    let list: Vec<DelegationOut<'a>> = delegations.into_iter().collect();
    // About 400 bytes an entity: one allocation for most files.
    let mut bytes = Vec::with_capacity(64 + 420 * list.len());
    serde_json::to_writer_pretty(&mut bytes, &list).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// One delegation as the Cedar JSON entity an owner file holds, as a JSON
/// value ([`DelegationOut`] is the rendering). Used for the entities a write
/// changes and by [`revalidate`], and read back by [`parse_delegations`].
pub fn delegation_json<'a>(
    owner: &OrgNumber,
    supplier: &OrgNumber,
    rights: impl IntoIterator<Item = &'a RightId>,
    delegated_by: &str,
    created_at: &str,
    updated_at: &str,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    let out = DelegationOut {
        owner,
        supplier,
        rights: rights.into_iter().collect(),
        delegated_by,
        created_at,
        updated_at,
        extra,
    };
    // Only a map with non-string keys fails to convert, and this has none; a
    // `null` would be refused by the parser, never taken for a delegation.
    serde_json::to_value(&out).unwrap_or_default()
}
