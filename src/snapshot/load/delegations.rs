//! Owner files, `delegations/<owner>.json`: where they are, which exist, and
//! the codec between their Cedar entity JSON and [`DelegationRecord`]s, used
//! by the loader and by admin writes alike.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cedar_policy::{Entities, Entity};
use serde::Deserialize;

#[allow(unused_imports)]
use super::*;
use crate::ids::{OrgNumber, RightId};
use crate::snapshot::{DelegationRecord, Digest, OwnerDelegations, PolicyBundle};

/// An entity reference as the JSON entity format writes it: with or without the
/// `__entity` escape.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawUid {
    Escaped { __entity: PlainUid },
    Plain(PlainUid),
}

#[derive(Debug, Deserialize)]
struct PlainUid {
    #[serde(rename = "type")]
    ty: String,
    id: String,
}

impl RawUid {
    fn plain(&self) -> &PlainUid {
        match self {
            Self::Escaped { __entity } => __entity,
            Self::Plain(p) => p,
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawDelegation {
    uid: RawUid,
    attrs: RawAttrs,
    /// Must be empty: a delegation is nobody's child. The records keep no
    /// parents, so a policy reload (which re-checks the records) and an admin
    /// rewrite would otherwise silently drop them.
    #[serde(default)]
    parents: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAttrs {
    owner: RawUid,
    supplier: RawUid,
    rights: Vec<RawUid>,
    delegated_by: String,
    created_at: String,
    updated_at: String,
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// The path of one owner's delegation file.
pub fn owner_file(data_dir: &Path, owner: &OrgNumber) -> PathBuf {
    data_dir.join(DELEGATIONS_DIR).join(format!("{owner}.json"))
}

/// If `path` is an owner file (`delegations/<orgnr>.json`), the owner.
pub fn owner_of_path(data_dir: &Path, path: &Path) -> Option<OrgNumber> {
    let rel = path.strip_prefix(data_dir).ok()?;
    let mut parts = rel.components();
    if parts.next()?.as_os_str() != DELEGATIONS_DIR {
        return None;
    }
    let name = parts.next()?.as_os_str().to_str()?;
    if parts.next().is_some() {
        return None;
    }
    let stem = name.strip_suffix(".json")?;
    if stem.len() != 9 {
        return None;
    }
    OrgNumber::parse(stem).ok()
}
/// The digest of an owner file's bytes, as kept in [`OwnerDelegations::digest`].
pub fn owner_digest(owner: &OrgNumber, bytes: &[u8]) -> Digest {
    digest_of(&[(owner.as_str(), bytes)])
}

/// Parse one owner's file. `bytes` is what was read from `path`.
pub fn parse_owner_file(
    path: &str,
    owner: &OrgNumber,
    bytes: &[u8],
    policies: &PolicyBundle,
) -> Result<OwnerDelegations, LoadError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| LoadError::new(format!("{path}:{}:{}", e.line(), e.column()), e))?;
    Ok(OwnerDelegations {
        by_supplier: parse_delegations(path, owner, value, policies)?,
        digest: owner_digest(owner, bytes),
        stamp: None,
    })
}

/// Parse and check delegation entities of `owner` (a JSON array as in an owner
/// file), against `policies`. Used for whole files, and by admin writes for just
/// the entities they change.
pub fn parse_delegations(
    path: &str,
    owner: &OrgNumber,
    value: serde_json::Value,
    policies: &PolicyBundle,
) -> Result<BTreeMap<OrgNumber, Arc<DelegationRecord>>, LoadError> {
    let raw: Vec<RawDelegation> = serde_json::from_value(value.clone()).map_err(|e| {
        LoadError::new(
            path,
            format!("expected an array of `{DELEGATION_TYPE}` entities: {e}"),
        )
    })?;
    // Cedar parses the file itself, so what the engine sees is checked against the
    // schema exactly as a policy author would expect.
    let entities = Entities::from_json_value(value, Some(&policies.schema))
        .map_err(|e| LoadError::new(path, with_causes(&e)))?;
    let by_uid: HashMap<String, &Entity> =
        entities.iter().map(|e| (e.uid().to_string(), e)).collect();

    let mut by_supplier = BTreeMap::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("{path}: entity #{}", i + 1);
        let bad = |msg: String| LoadError::new(&at, msg);
        let uid_plain = r.uid.plain();
        if uid_plain.ty != DELEGATION_TYPE {
            return Err(bad(format!(
                "only `{DELEGATION_TYPE}` entities belong in a delegation file, found `{}`",
                uid_plain.ty
            )));
        }
        if !r.parents.is_empty() {
            return Err(bad(
                "`parents` must be empty: a delegation is not a member of anything".to_string(),
            ));
        }
        let a = &r.attrs;
        // Files hold the bare 9 digits: the entity id is what Cedar compares, so
        // `0192:` here would silently never match a request.
        let parse_org = |field: &str, u: &RawUid| -> Result<OrgNumber, LoadError> {
            let raw = &u.plain().id;
            let org = OrgNumber::parse(raw).map_err(|e| bad(format!("`{field}`: {e}")))?;
            if org.as_str() != raw {
                return Err(bad(format!(
                    "`{field}`: write the bare org number `{org}`, not `{raw}`"
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
        let expected_id = format!("{owner}/{supplier}");
        if uid_plain.id != expected_id {
            return Err(bad(format!(
                "entity id is `{}`, expected `{expected_id}`",
                uid_plain.id
            )));
        }
        let mut rights = BTreeSet::new();
        for ru in &a.rights {
            let id = RightId::parse(&ru.plain().id)
                .ok()
                .filter(|id| policies.catalogue.get(id).is_some())
                .ok_or_else(|| {
                    bad(format!(
                        "right `{}` is not in the catalogue (known: {})",
                        ru.plain().id,
                        policies.catalogue.known_ids()
                    ))
                })?;
            rights.insert(id);
        }
        if rights.is_empty() {
            return Err(bad(
                "a delegation with no rights should be removed, not kept empty".to_string(),
            ));
        }
        let Some(entity) = by_uid.get(&uid(DELEGATION_TYPE, &expected_id).to_string()) else {
            return Err(bad("entity missing after Cedar parsed the file".to_string()));
        };
        if by_supplier.contains_key(&supplier) {
            return Err(bad(format!("supplier {supplier} appears twice")));
        }
        by_supplier.insert(
            supplier,
            Arc::new(DelegationRecord {
                owner: *owner,
                supplier,
                rights,
                delegated_by: a.delegated_by.clone(),
                created_at: a.created_at.clone(),
                updated_at: a.updated_at.clone(),
                extra_attrs: a.extra.clone(),
                entity: (*entity).clone(),
            }),
        );
    }
    Ok(by_supplier)
}

/// Read one owner's file. `Ok(None)` when it does not exist.
///
/// `known` is the owner's slice already parsed against the same `policies`: when
/// the file's bytes are the ones it was parsed from, it is reused rather than
/// parsed again (a large owner file costs milliseconds to parse, and every admin
/// write and file event would otherwise pay that more than once).
pub fn load_owner_file(
    data_dir: &Path,
    owner: &OrgNumber,
    policies: &PolicyBundle,
    known: Option<&OwnerDelegations>,
) -> Result<Option<OwnerDelegations>, LoadError> {
    let Some(FileRead { stamp, bytes, .. }) = read_owner_file(data_dir, owner)? else {
        return Ok(None);
    };
    let mut slice = match known {
        Some(k) if k.digest == owner_digest(owner, &bytes) => k.clone(),
        _ => {
            let path = owner_file(data_dir, owner);
            parse_owner_file(&path.display().to_string(), owner, &bytes, policies)?
        }
    };
    slice.stamp = Some(stamp);
    Ok(Some(slice))
}

/// One delegation as the Cedar JSON entity an owner file holds: the one
/// rendering of the format, used by admin writes and by [`revalidate`], and
/// read back by [`parse_delegations`]. `extra` (attributes a policy author's
/// schema adds) is kept; tilgang's own attributes overwrite same-named ones.
pub fn delegation_json<'a>(
    owner: &OrgNumber,
    supplier: &OrgNumber,
    rights: impl IntoIterator<Item = &'a RightId>,
    delegated_by: &str,
    created_at: &str,
    updated_at: &str,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Value {
    use serde_json::json;
    let org = |o: &OrgNumber| json!({ "type": ORG_TYPE, "id": o.as_str() });
    let mut attrs = extra.clone();
    attrs.insert("owner".into(), org(owner));
    attrs.insert("supplier".into(), org(supplier));
    attrs.insert(
        "rights".into(),
        rights
            .into_iter()
            .map(|r| json!({ "type": RIGHT_TYPE, "id": r.as_str() }))
            .collect(),
    );
    attrs.insert("delegatedBy".into(), delegated_by.into());
    attrs.insert("createdAt".into(), created_at.into());
    attrs.insert("updatedAt".into(), updated_at.into());
    json!({
        "uid": { "type": DELEGATION_TYPE, "id": format!("{owner}/{supplier}") },
        "attrs": attrs,
        "parents": [],
    })
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

/// Check one owner's loaded slice against other policies (a policy reload),
/// and rebuild its Cedar entities for them. The records hold everything an
/// owner file can hold (parents must be empty), so this needs no disk and
/// checks exactly the data the running snapshot decides with, even while the
/// file on disk is mid-edit or broken. The digest and stamp stay those of the
/// file the slice came from.
pub fn revalidate(
    data_dir: &Path,
    owner: &OrgNumber,
    slice: &OwnerDelegations,
    policies: &PolicyBundle,
) -> Result<OwnerDelegations, LoadError> {
    let value: serde_json::Value = slice
        .by_supplier
        .values()
        .map(|r| r.to_json())
        .collect::<Vec<_>>()
        .into();
    let path = owner_file(data_dir, owner).display().to_string();
    Ok(OwnerDelegations {
        by_supplier: parse_delegations(&path, owner, value, policies)?,
        digest: slice.digest,
        stamp: slice.stamp,
    })
}
/// One owner's file as on disk: its stamp and bytes, or `None` when there is
/// none. A symlink is refused (tilgang writes these files).
pub fn read_owner_file(data_dir: &Path, owner: &OrgNumber) -> Result<Option<FileRead>, LoadError> {
    let path = owner_file(data_dir, owner);
    match read_regular(&path, Links::Refuse) {
        Ok(read) => Ok(Some(read)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LoadError::new(path.display(), e)),
    }
}

/// The owners that have a file in `delegations/`. A `*.json` file whose name is
/// not an org number is reported as an error, not ignored, so a typo is noticed.
pub fn list_owner_files(data_dir: &Path) -> Result<(Vec<OrgNumber>, Vec<LoadError>), LoadError> {
    let dir = data_dir.join(DELEGATIONS_DIR);
    let mut owners = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((owners, errors)),
        Err(e) => return Err(LoadError::new(dir.display(), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| LoadError::new(dir.display(), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only `*.json` is ours; other files (an editor's `.bak`, a README) are
        // left alone, but a `.json` with a bad name is an error, not ignored.
        if !is_visible(&name) || !name.ends_with(".json") || !entry.path().is_file() {
            continue;
        }
        match owner_of_path(data_dir, &entry.path()) {
            Some(o) => owners.push(o),
            None => errors.push(LoadError::new(
                entry.path().display(),
                "not a delegation file: expected `<orgnr>.json` with a valid 9-digit org number",
            )),
        }
    }
    owners.sort();
    Ok((owners, errors))
}
