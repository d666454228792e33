//! The owner-file codec: between the Cedar entity JSON of `delegations/` files
//! and [`DelegationRecord`]s, used by the loader and by admin writes alike.
//! Where the files are and which exist is [`super::owners`]; writing them
//! is [`super::render`].

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use cedar_policy::Entities;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

#[allow(unused_imports)]
use super::*;
use crate::ids::{OrgNumber, RightId};
use crate::snapshot::{DelegationRecord, OwnerDelegations, PolicyBundle, Suppliers};

/// A string borrowed from the file's bytes, or owned where the JSON has
/// escapes. serde's own `Cow<str>` always allocates (it borrows only under
/// `#[serde(borrow)]` in derived code), which for every key and value of a
/// million delegations was most of the load time.
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// An entity reference as the JSON entity format writes it, with or without
/// the `__entity` escape. Borrowed from the file's bytes where the JSON has no
/// escapes, so the type names of a million delegations cost no allocation.
#[derive(Debug)]
struct RawUid<'a> {
    ty: Cow<'a, str>,
    id: Cow<'a, str>,
}

impl<'de> Deserialize<'de> for RawUid<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawUid<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an entity reference {"type": ..., "id": ...}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut ty, mut id, mut escaped) = (None, None, None);
                while let Some(key) = map.next_key::<Str<'de>>()?.map(|k| k.0) {
                    let slot_taken = match key.as_ref() {
                        "type" => ty.replace(map.next_value::<Str<'de>>()?.0).is_some(),
                        "id" => id.replace(map.next_value::<Str<'de>>()?.0).is_some(),
                        "__entity" => escaped.replace(map.next_value::<RawUid<'de>>()?).is_some(),
                        other => return Err(de::Error::unknown_field(other, &["type", "id"])),
                    };
                    if slot_taken {
                        return Err(de::Error::custom(format!("duplicate field `{key}`")));
                    }
                }
                match (ty, id, escaped) {
                    (Some(ty), Some(id), None) => Ok(RawUid { ty, id }),
                    (None, None, Some(inner)) => Ok(inner),
                    (None, _, None) => Err(de::Error::missing_field("type")),
                    (_, None, None) => Err(de::Error::missing_field("id")),
                    _ => Err(de::Error::custom("`__entity` and `type`/`id` together")),
                }
            }
        }
        d.deserialize_map(V)
    }
}

/// One entity of an owner file, before any check of what it says.
#[derive(Debug)]
struct RawDelegation<'a> {
    uid: RawUid<'a>,
    attrs: RawAttrs<'a>,
    /// Must be empty: a delegation is nobody's child. The records keep no
    /// parents, so a policy reload (which re-checks the records) and an admin
    /// rewrite would otherwise silently drop them.
    parents: usize,
}

impl<'de> Deserialize<'de> for RawDelegation<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawDelegation<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a Cedar entity {"uid": ..., "attrs": ..., "parents": []}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut uid, mut attrs, mut parents) = (None, None, None);
                while let Some(key) = map.next_key::<Str<'de>>()?.map(|k| k.0) {
                    let slot_taken = match key.as_ref() {
                        "uid" => uid.replace(map.next_value::<RawUid<'de>>()?).is_some(),
                        "attrs" => attrs.replace(map.next_value::<RawAttrs<'de>>()?).is_some(),
                        "parents" => parents
                            .replace(map.next_value::<Vec<de::IgnoredAny>>()?.len())
                            .is_some(),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["uid", "attrs", "parents"],
                            ));
                        }
                    };
                    if slot_taken {
                        return Err(de::Error::custom(format!("duplicate field `{key}`")));
                    }
                }
                Ok(RawDelegation {
                    uid: uid.ok_or_else(|| de::Error::missing_field("uid"))?,
                    attrs: attrs.ok_or_else(|| de::Error::missing_field("attrs"))?,
                    parents: parents.unwrap_or(0),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// A delegation's attributes: tilgang's own six typed, any others (a policy
/// author's schema may add them) kept as JSON for Cedar to check.
#[derive(Debug)]
struct RawAttrs<'a> {
    owner: RawUid<'a>,
    supplier: RawUid<'a>,
    rights: Vec<RawUid<'a>>,
    delegated_by: Cow<'a, str>,
    created_at: Cow<'a, str>,
    updated_at: Cow<'a, str>,
    extra: serde_json::Map<String, serde_json::Value>,
}

impl<'de> Deserialize<'de> for RawAttrs<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAttrs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the delegation's attributes")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut owner, mut supplier, mut rights) = (None, None, None);
                let (mut by, mut created, mut updated) = (None, None, None);
                let mut extra = serde_json::Map::new();
                while let Some(key) = map.next_key::<Str<'de>>()?.map(|k| k.0) {
                    let slot_taken = match key.as_ref() {
                        "owner" => owner.replace(map.next_value::<RawUid<'de>>()?).is_some(),
                        "supplier" => supplier.replace(map.next_value::<RawUid<'de>>()?).is_some(),
                        "rights" => rights
                            .replace(map.next_value::<Vec<RawUid<'de>>>()?)
                            .is_some(),
                        "delegatedBy" => by.replace(map.next_value::<Str<'de>>()?.0).is_some(),
                        "createdAt" => created.replace(map.next_value::<Str<'de>>()?.0).is_some(),
                        "updatedAt" => updated.replace(map.next_value::<Str<'de>>()?.0).is_some(),
                        other => extra
                            .insert(other.to_string(), map.next_value::<serde_json::Value>()?)
                            .is_some(),
                    };
                    if slot_taken {
                        return Err(de::Error::custom(format!("duplicate attribute `{key}`")));
                    }
                }
                let missing =
                    |name: &'static str| de::Error::custom(format!("missing attribute `{name}`"));
                Ok(RawAttrs {
                    owner: owner.ok_or_else(|| missing("owner"))?,
                    supplier: supplier.ok_or_else(|| missing("supplier"))?,
                    rights: rights.ok_or_else(|| missing("rights"))?,
                    delegated_by: by.ok_or_else(|| missing("delegatedBy"))?,
                    created_at: created.ok_or_else(|| missing("createdAt"))?,
                    updated_at: updated.ok_or_else(|| missing("updatedAt"))?,
                    extra,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// Parse one owner file (or part). `bytes` is what was read from `path`.
pub fn parse_owner_file(
    path: &str,
    owner: &OrgNumber,
    bytes: &[u8],
    policies: &PolicyBundle,
) -> Result<Suppliers, LoadError> {
    // UTF-8 checked once for the whole file: `from_slice` would check every
    // string on its own, a tenth of the load time for a million delegations.
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col_bytes(bytes, e.valid_up_to());
        LoadError::new(format!("{path}:{line}:{col}"), format!("not UTF-8: {e}"))
    })?;
    let raw: Vec<RawDelegation<'_>> = serde_json::from_str(text).map_err(|e| {
        LoadError::new(
            format!("{path}:{}:{}", e.line(), e.column()),
            format!("expected an array of `{DELEGATION_TYPE}` entities: {e}"),
        )
    })?;
    check_delegations(path, owner, raw, policies)
}

/// Parse and check delegation entities of `owner` (a JSON array as in an owner
/// file), against `policies`. Used by admin writes for just the entities they
/// change.
pub fn parse_delegations(
    path: &str,
    owner: &OrgNumber,
    value: serde_json::Value,
    policies: &PolicyBundle,
) -> Result<Suppliers, LoadError> {
    // Through text: the raw types borrow from it. Admin writes pass a few
    // entities, so this costs nothing that matters.
    let bytes = value.to_string();
    let raw: Vec<RawDelegation<'_>> = serde_json::from_str(&bytes).map_err(|e| {
        LoadError::new(
            path,
            format!("expected an array of `{DELEGATION_TYPE}` entities: {e}"),
        )
    })?;
    check_delegations(path, owner, raw, policies)
}

/// Check what the entities say (tilgang's own attributes, by hand: the shape
/// is fixed and checking it is what makes a million of them load in
/// seconds), then hand whatever a policy author's schema adds to Cedar's own
/// validation, so those attributes are checked exactly as Cedar would.
fn check_delegations(
    path: &str,
    owner: &OrgNumber,
    raw: Vec<RawDelegation<'_>>,
    policies: &PolicyBundle,
) -> Result<Suppliers, LoadError> {
    let mut by_supplier = Suppliers::new();
    let mut for_cedar = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = || format!("{path}: entity #{}", i + 1);
        let bad = |msg: String| LoadError::new(at(), msg);
        if r.uid.ty != DELEGATION_TYPE {
            return Err(bad(format!(
                "only `{DELEGATION_TYPE}` entities belong in a delegation file, found `{}`",
                r.uid.ty
            )));
        }
        if r.parents != 0 {
            return Err(bad(
                "`parents` must be empty: a delegation is not a member of anything".to_string(),
            ));
        }
        let a = r.attrs;
        // Files hold the bare 9 digits: the entity id is what Cedar compares, so
        // `0192:` here would silently never match a request.
        let parse_org = |field: &str, u: &RawUid<'_>| -> Result<OrgNumber, LoadError> {
            if u.ty != ORG_TYPE {
                return Err(bad(format!(
                    "`{field}` must be a `{ORG_TYPE}`, not `{}`",
                    u.ty
                )));
            }
            let org = OrgNumber::parse(&u.id).map_err(|e| bad(format!("`{field}`: {e}")))?;
            if org.as_str() != u.id {
                return Err(bad(format!(
                    "`{field}`: write the bare org number `{org}`, not `{}`",
                    u.id
                )));
            }
            Ok(org)
        };
        let o = parse_org("owner", &a.owner)?;
        let supplier = parse_org("supplier", &a.supplier)?;
        if o != *owner {
            return Err(bad(format!(
                "`owner` is {o}, but this file holds delegations of {owner}"
            )));
        }
        if supplier == *owner {
            return Err(bad("`supplier` equals `owner`".to_string()));
        }
        // `<owner>/<supplier>`, compared in place: a million of these are
        // checked at start-up.
        let id_fits = r.uid.id.split_once('/') == Some((owner.as_str(), supplier.as_str()));
        if !id_fits {
            return Err(bad(format!(
                "entity id is `{}`, expected `{owner}/{supplier}`",
                r.uid.id
            )));
        }
        let rights = known_rights(
            a.rights.iter().map(|ru| {
                (ru.ty == RIGHT_TYPE)
                    .then_some(ru.id.as_ref())
                    .ok_or(&ru.id)
            }),
            policies,
        )
        .map_err(bad)?;
        if by_supplier.contains_key(&supplier) {
            return Err(bad(format!("supplier {supplier} appears twice")));
        }
        let record = Arc::new(DelegationRecord {
            owner: *owner,
            supplier,
            rights: rights.into_iter().collect(),
            delegated_by: a.delegated_by.into_owned(),
            created_at: a.created_at.into_owned(),
            updated_at: a.updated_at.into_owned(),
            extra_attrs: a.extra,
            id: DelegationRecord::next_id(),
        });
        if needs_cedar(&record, policies) {
            for_cedar.push(record.clone());
        }
        by_supplier.insert(supplier, record);
    }
    cedar_check(path, for_cedar.iter().map(Arc::as_ref), policies)?;
    Ok(by_supplier)
}

/// The rights of one delegation, each in the catalogue, at least one.
/// `Err(id)` in `ids` is a reference that is not a right at all.
fn known_rights<'a>(
    ids: impl Iterator<Item = Result<&'a str, &'a Cow<'a, str>>>,
    policies: &PolicyBundle,
) -> Result<Vec<RightId>, String> {
    let mut rights = Vec::new();
    for id in ids {
        let known = id
            .ok()
            .and_then(|id| policies.catalogue.get_str(id))
            .map(|r| r.id.clone());
        let Some(right) = known else {
            let shown = id.unwrap_or_else(|c| c.as_ref());
            return Err(format!(
                "right `{shown}` is not in the catalogue (known: {})",
                policies.catalogue.known_ids()
            ));
        };
        rights.push(right);
    }
    if rights.is_empty() {
        return Err("a delegation with no rights should be removed, not kept empty".to_string());
    }
    Ok(rights)
}

/// One delegation as the shared store holds it (a row: its parts, not its
/// entity JSON), checked as an owner file's entity is: bare org numbers,
/// `supplier` not `owner`, at least one right and each in the catalogue,
/// schema-added attributes (a JSON object) through Cedar's own validation.
/// `at` says where it came from, for the message.
#[allow(clippy::too_many_arguments)]
pub fn record_from_parts(
    at: &str,
    owner: &str,
    supplier: &str,
    rights: &[String],
    delegated_by: String,
    created_at: String,
    updated_at: String,
    extra: Option<&str>,
    policies: &PolicyBundle,
) -> Result<Arc<DelegationRecord>, LoadError> {
    let bad = |msg: String| LoadError::new(at, msg);
    let bare = |field: &str, v: &str| -> Result<OrgNumber, LoadError> {
        let org = OrgNumber::parse(v).map_err(|e| bad(format!("`{field}`: {e}")))?;
        if org.as_str() != v {
            return Err(bad(format!("`{field}`: not a bare org number")));
        }
        Ok(org)
    };
    let (owner, supplier) = (bare("owner", owner)?, bare("supplier", supplier)?);
    if supplier == owner {
        return Err(bad("`supplier` equals `owner`".to_string()));
    }
    let rights = known_rights(rights.iter().map(|r| Ok(r.as_str())), policies).map_err(bad)?;
    let extra_attrs = match extra {
        None => serde_json::Map::new(),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| bad(format!("extra attributes are not a JSON object: {e}")))?,
    };
    let record = Arc::new(DelegationRecord {
        owner,
        supplier,
        rights: rights.into_iter().collect(),
        delegated_by,
        created_at,
        updated_at,
        extra_attrs,
        id: DelegationRecord::next_id(),
    });
    if needs_cedar(&record, policies) {
        cedar_check(at, std::iter::once(record.as_ref()), policies)?;
    }
    Ok(record)
}

/// Whether tilgang's own checks are not the whole story for this record: it
/// has attributes a policy author's schema adds, or the schema wants more
/// than tilgang's six attributes of every delegation.
fn needs_cedar(record: &DelegationRecord, policies: &PolicyBundle) -> bool {
    !record.extra_attrs.is_empty() || policies.delegations_need_cedar
}

/// Validate these records against the schema with Cedar itself, as the
/// entities the file holds.
fn cedar_check<'a>(
    path: &str,
    records: impl Iterator<Item = &'a DelegationRecord>,
    policies: &PolicyBundle,
) -> Result<(), LoadError> {
    let value: Vec<serde_json::Value> = records.map(DelegationRecord::to_json).collect();
    if value.is_empty() {
        return Ok(());
    }
    Entities::from_json_value(value.into(), Some(&policies.schema))
        .map(drop)
        .map_err(|e| LoadError::new(path, with_causes(&e)))
}

impl DelegationRecord {
    /// This record as its owner file holds it.
    pub fn to_json(&self) -> serde_json::Value {
        delegation_json(
            &self.owner,
            &self.supplier,
            &self.rights,
            &self.delegated_by,
            &self.created_at,
            &self.updated_at,
            &self.extra_attrs,
        )
    }
}

/// Check one owner's loaded slice against other policies (a policy reload).
/// The records hold everything an owner file can hold (parents must be
/// empty), so this needs no disk and checks exactly the data the running
/// snapshot decides with, even while the file on disk is mid-edit or broken.
/// The records are kept as they are: decisions memoised with them belong to
/// the old policies, and the new ones start afresh.
pub fn revalidate(
    data_dir: &Path,
    owner: &OrgNumber,
    slice: &OwnerDelegations,
    policies: &PolicyBundle,
) -> Result<OwnerDelegations, LoadError> {
    let split = slice.files.iter().any(|f| f.name.contains('/'));
    let file_of = |supplier: &OrgNumber| {
        if split {
            let part = slice
                .files
                .iter()
                .filter_map(|f| {
                    f.name
                        .strip_prefix(&format!("{owner}/"))?
                        .strip_suffix(".json")
                })
                .find(|p| supplier.as_str().starts_with(p))
                .unwrap_or("");
            owner_dir(data_dir, owner).join(part_file_name(part))
        } else {
            owner_file(data_dir, owner)
        }
    };
    let path = if split {
        owner_dir(data_dir, owner)
    } else {
        owner_file(data_dir, owner)
    }
    .display()
    .to_string();
    for r in slice.by_supplier.values() {
        if let Some(gone) = r
            .rights
            .iter()
            .find(|id| policies.catalogue.get(id).is_none())
        {
            return Err(LoadError::new(
                format!(
                    "{}: the delegation to {}",
                    file_of(&r.supplier).display(),
                    r.supplier
                ),
                format!(
                    "right `{gone}` is not in the catalogue (known: {})",
                    policies.catalogue.known_ids()
                ),
            ));
        }
    }
    cedar_check(
        &path,
        slice
            .by_supplier
            .values()
            .map(Arc::as_ref)
            .filter(|r| needs_cedar(r, policies)),
        policies,
    )?;
    Ok(slice.clone())
}

/// 1-based line and column of a byte offset in bytes that may not be UTF-8.
fn line_col_bytes(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, col)
}
