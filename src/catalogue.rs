//! The rights catalogue: which rights exist, their display names, and the scopes each
//! gives. Policy authors own it as data (`policies/rights.json`), so a new right or
//! scope needs no rebuild. This module parses and checks it; it does no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::ids::{IdError, RightId, Scope};

/// One right a service owner can delegate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Right {
    pub id: RightId,
    pub name: String,
    pub scopes: BTreeSet<Scope>,
}

/// All rights, in the order the catalogue file lists them (the order the admin
/// API shows them in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    rights: Vec<Right>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("right #{index}: id {source}")]
    RightId { index: usize, source: IdError },
    #[error("right `{right}`: scope {source}")]
    Scope { right: String, source: IdError },
    #[error("right `{0}` is listed twice")]
    Duplicate(String),
    #[error("right `{0}` has no scopes")]
    NoScopes(String),
    #[error("right `{0}` has an empty name")]
    NoName(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    rights: Vec<RawRight>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRight {
    id: String,
    name: String,
    scopes: Vec<String>,
}

impl Catalogue {
    /// Parse `rights.json`.
    pub fn from_json(text: &str) -> Result<Self, CatalogueError> {
        let raw: RawCatalogue = serde_json::from_str(text)?;
        let mut seen = BTreeSet::new();
        let mut rights = Vec::with_capacity(raw.rights.len());
        for (index, r) in raw.rights.into_iter().enumerate() {
            let id = RightId::parse(&r.id).map_err(|source| CatalogueError::RightId {
                index: index + 1,
                source,
            })?;
            if !seen.insert(id.clone()) {
                return Err(CatalogueError::Duplicate(r.id));
            }
            if r.name.trim().is_empty() {
                return Err(CatalogueError::NoName(r.id));
            }
            if r.scopes.is_empty() {
                return Err(CatalogueError::NoScopes(r.id));
            }
            let scopes = r
                .scopes
                .iter()
                .map(|s| {
                    Scope::parse(s).map_err(|source| CatalogueError::Scope {
                        right: r.id.clone(),
                        source,
                    })
                })
                .collect::<Result<_, _>>()?;
            rights.push(Right {
                id,
                name: r.name,
                scopes,
            });
        }
        Ok(Self { rights })
    }

    pub fn rights(&self) -> &[Right] {
        &self.rights
    }

    /// The right with this id, by its text (no `RightId` to build first).
    pub fn get_str(&self, id: &str) -> Option<&Right> {
        self.rights.iter().find(|r| r.id.as_str() == id)
    }

    pub fn get(&self, id: &RightId) -> Option<&Right> {
        self.rights.iter().find(|r| &r.id == id)
    }

    /// Every scope, with the rights that give it.
    pub fn scopes(&self) -> BTreeMap<&Scope, Vec<&RightId>> {
        let mut map: BTreeMap<&Scope, Vec<&RightId>> = BTreeMap::new();
        for r in &self.rights {
            for s in &r.scopes {
                map.entry(s).or_default().push(&r.id);
            }
        }
        map
    }

    /// The scopes a set of rights gives, sorted and without repeats.
    pub fn scopes_of<'a>(&self, rights: impl IntoIterator<Item = &'a RightId>) -> Vec<String> {
        let set: BTreeSet<&str> = rights
            .into_iter()
            .filter_map(|id| self.get(id))
            .flat_map(|r| r.scopes.iter().map(Scope::as_str))
            .collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// The known right ids, comma-separated, for error messages.
    pub fn known_ids(&self) -> String {
        self.rights
            .iter()
            .map(|r| format!("`{}`", r.id))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture copy, not the shipped file, which policy authors may change.
    const FIXTURE: &str = include_str!("../tests/fixtures/policies/rights.json");

    #[test]
    fn fixture_catalogue_has_the_two_rights() {
        let c = Catalogue::from_json(FIXTURE).unwrap();
        let full = c.get(&RightId::parse("instances-full").unwrap()).unwrap();
        assert_eq!(full.scopes.len(), 2);
        let read = c.get(&RightId::parse("instances-read").unwrap()).unwrap();
        assert_eq!(
            read.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
            ["altinn:serviceowner/instances.read"]
        );
        assert_eq!(c.scopes().len(), 2);
    }

    #[test]
    fn rejects_duplicates_and_bad_ids() {
        let dup = r#"{"rights":[{"id":"a","name":"A","scopes":["s"]},{"id":"a","name":"B","scopes":["t"]}]}"#;
        assert!(matches!(
            Catalogue::from_json(dup),
            Err(CatalogueError::Duplicate(_))
        ));
        let bad = r#"{"rights":[{"id":"A B","name":"A","scopes":["s"]}]}"#;
        assert!(matches!(
            Catalogue::from_json(bad),
            Err(CatalogueError::RightId { .. })
        ));
        let none = r#"{"rights":[{"id":"a","name":"A","scopes":[]}]}"#;
        assert!(matches!(
            Catalogue::from_json(none),
            Err(CatalogueError::NoScopes(_))
        ));
    }
}
