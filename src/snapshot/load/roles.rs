//! `roles.json`: which roles a person holds for an organisation.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[allow(unused_imports)]
use super::*;
use crate::ids::{OrgNumber, PersonId};
use crate::snapshot::{Digest, Roles};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    org: String,
    person: String,
    role: String,
}

/// Parse `roles.json` (an array of `{"org", "person", "role"}`).
pub fn parse_roles(path: &str, bytes: &[u8]) -> Result<Roles, LoadError> {
    let raw: Vec<RawRole> = serde_json::from_slice(bytes)
        .map_err(|e| LoadError::new(format!("{path}:{}:{}", e.line(), e.column()), e))?;
    let mut by_org_person: HashMap<(OrgNumber, PersonId), BTreeSet<String>> = HashMap::new();
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("{path}: entry #{}", i + 1);
        let org =
            OrgNumber::parse(&r.org).map_err(|e| LoadError::new(&at, format!("`org`: {e}")))?;
        let person = PersonId::parse(&r.person)
            .map_err(|e| LoadError::new(&at, format!("`person`: {e}")))?;
        let ok = !r.role.is_empty()
            && r.role.len() <= 16
            && r.role
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        if !ok {
            return Err(LoadError::new(
                &at,
                format!(
                    "`role`: `{}` is not a role code (1 to 16 of `A-Z0-9`)",
                    r.role
                ),
            ));
        }
        by_org_person
            .entry((org, person))
            .or_default()
            .insert(r.role);
    }
    Ok(Roles {
        by_org_person,
        digest: roles_digest(Some(bytes)),
    })
}

/// Read `roles.json`; a missing file means nobody holds any role.
pub fn load_roles(data_dir: &Path) -> Result<Roles, LoadError> {
    match read_roles(data_dir)? {
        Some(read) => parse_roles(&roles_file(data_dir).display().to_string(), &read.bytes),
        None => Ok(Roles::default()),
    }
}

/// The path of `roles.json`.
pub fn roles_file(data_dir: &Path) -> PathBuf {
    data_dir.join(ROLES_FILE)
}

/// `roles.json` as read; `None` when there is none.
pub fn read_roles(data_dir: &Path) -> Result<Option<FileRead>, LoadError> {
    let path = roles_file(data_dir);
    match read_regular(&path, Links::Follow) {
        Ok(read) => Ok(Some(read)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LoadError::new(path.display(), e)),
    }
}

/// The digest [`Roles`] carries for these bytes of `roles.json`; no file is
/// the digest of `Roles::default()`.
pub fn roles_digest(bytes: Option<&[u8]>) -> Digest {
    bytes.map_or_else(
        || Roles::default().digest,
        |b| digest_of(&[(ROLES_FILE, b)]),
    )
}
