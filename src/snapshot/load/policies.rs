//! The policies directory, read plain, as a Kubernetes ConfigMap, or from the
//! copy built into the binary; then the schema, policies, rights catalogue and
//! route table parsed and validated into one [`PolicyBundle`].

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Entities, Entity, EntityUid, Policy, PolicyId, PolicySet, RestrictedExpression, Schema,
    SchemaFragment, ValidationMode, Validator,
};

#[allow(unused_imports)]
use super::*;
use crate::catalogue::Catalogue;
use crate::gateway::routes::RouteTable;
use crate::ids::{OrgNumber, Scope};
use crate::snapshot::{DelegationRecord, Digest, FileStamp, PolicyBundle};

/// Where policies come from: a directory (hot-reloaded) or the copy built into the
/// binary, used when the default `policies/` directory does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    Dir(PathBuf),
    Embedded,
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::Embedded => f.write_str("<embedded policies>"),
        }
    }
}

/// The bundled `policies/` directory, compiled in: (file name, contents) for
/// each file [`read_policy_dir`] would read there, listed by `build.rs`.
const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/embedded_policies.rs"));

/// The policy files as read, before any parsing: (display path, file name,
/// contents), sorted by name, and their digest.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    pub(super) files: Vec<(String, String, String)>,
    pub digest: Digest,
    /// The files' metadata as read ([`version_of`]).
    pub version: Digest,
}

impl PolicyFiles {
    /// The files that hold nothing but whitespace, by display path. No author
    /// writes one: it is an in-place save caught between its truncate and its
    /// write. It must never be loaded, because an empty `.cedar` file is a
    /// valid policy set that forbids nothing; deleting a file is how its
    /// policies are removed.
    pub fn empty_files(&self) -> Vec<&str> {
        self.files
            .iter()
            .filter(|(_, _, text)| text.trim().is_empty())
            .map(|(path, _, _)| path.as_str())
            .collect()
    }
}

/// What an empty policy-directory file is told, at start-up and by `validate`.
pub const EMPTY_FILE: &str =
    "the file is empty: a save in progress? (to remove a file's policies, delete the file)";

/// Kubernetes mounts a ConfigMap as a `..data` symlink to a timestamped directory
/// and swaps the symlink on update.
const CONFIGMAP_DATA: &str = "..data";

/// Read the policy files without parsing them. Reading is cheap, so callers
/// compare the digest with the running snapshot before paying for a parse.
pub fn read_policies(src: &PolicySource) -> Result<PolicyFiles, LoadErrors> {
    let (files, stamps): (Vec<_>, Vec<_>) = match src {
        PolicySource::Embedded => EMBEDDED
            .iter()
            .map(|(n, t)| {
                (
                    (format!("<embedded>/{n}"), n.to_string(), t.to_string()),
                    None,
                )
            })
            .unzip(),
        PolicySource::Dir(dir) => read_policy_dir(dir)?
            .into_iter()
            .map(|(path, name, text, stamp)| ((path, name, text), Some(stamp)))
            .unzip(),
    };
    let digest = digest_of(
        &files
            .iter()
            .map(|(_, n, t)| (n.as_str(), t.as_bytes()))
            .collect::<Vec<_>>(),
    );
    let version = version_of(stamps.into_iter().flatten());
    Ok(PolicyFiles {
        files,
        digest,
        version,
    })
}

/// Policy files as (display path, file name, contents, (stamp, steady)).
type ReadFiles = Vec<(String, String, String, (FileStamp, bool))>;

fn read_policy_dir(dir: &Path) -> Result<ReadFiles, LoadErrors> {
    let one = |p: &Path, e: std::io::Error| LoadErrors(vec![LoadError::new(p.display(), e)]);
    let configmap = dir.join(CONFIGMAP_DATA);
    if !configmap.exists() {
        return read_flat_dir(dir, dir);
    }
    // A ConfigMap: read every file from the one directory `..data` points to, and
    // start again if it was swapped meanwhile, so old and new files never mix.
    for _ in 0..5 {
        let target = configmap.canonicalize().map_err(|e| one(&configmap, e))?;
        let files = read_flat_dir(&target, dir)?;
        if configmap.canonicalize().map_err(|e| one(&configmap, e))? == target {
            return Ok(files);
        }
    }
    Err(one(
        &configmap,
        std::io::Error::other("kept changing while being read"),
    ))
}

/// Read the relevant files of `from`, naming them as if in `shown`.
fn read_flat_dir(from: &Path, shown: &Path) -> Result<ReadFiles, LoadErrors> {
    let one = |e: std::io::Error| LoadErrors(vec![LoadError::new(from.display(), e)]);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(from).map_err(one)? {
        let entry = entry.map_err(one)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let relevant = name.ends_with(".cedar")
            || name.ends_with(".cedarschema")
            || name == CATALOGUE_FILE
            || name == ROUTES_FILE;
        if !relevant || !is_visible(&name) {
            continue;
        }
        let path = entry.path();
        // Follows symlinks.
        if !path.is_file() {
            continue;
        }
        let shown = shown.join(&name);
        let fail = |e: std::io::Error| LoadErrors(vec![LoadError::new(shown.display(), e)]);
        let read = std::fs::File::open(&path)
            .and_then(|mut f| read_open(&mut f))
            .map_err(fail)?;
        let text = String::from_utf8(read.bytes)
            .map_err(|e| fail(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        files.push((
            shown.display().to_string(),
            name,
            text,
            (read.stamp, read.steady),
        ));
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(files)
}

/// Load and validate the policies directory.
pub fn load_policies(src: &PolicySource) -> Result<PolicyBundle, LoadErrors> {
    build_policies(src, read_policies(src)?)
}

/// Parse and validate policy files read by [`read_policies`].
pub fn build_policies(src: &PolicySource, read: PolicyFiles) -> Result<PolicyBundle, LoadErrors> {
    // An empty file is an error, but not the only one reported: the author
    // fixing it should not then meet the next problem, and the next.
    let mut errors: Vec<LoadError> = read
        .empty_files()
        .into_iter()
        .map(|path| LoadError::new(path, EMPTY_FILE))
        .collect();
    let PolicyFiles {
        mut files, digest, ..
    } = read;
    // Its name still counts (`rights.json` is there, if empty); its content
    // is not parsed again to say the same thing twice.
    let names: Vec<String> = files.iter().map(|f| f.1.clone()).collect();
    files.retain(|(_, _, text)| !text.trim().is_empty());

    // Schema: every `*.cedarschema` file is a fragment of one schema. A
    // fragment that did not parse, or is empty, leaves no schema to validate
    // against (errors against part of one would mislead).
    let before_schema = errors.len();
    let empty_schema = errors.iter().any(|e| e.location.ends_with(".cedarschema"));
    let mut fragments = Vec::new();
    for (path, name, text) in &files {
        if name.ends_with(".cedarschema") {
            match SchemaFragment::from_cedarschema_str(text) {
                Ok((frag, _warnings)) => fragments.push(frag),
                Err(e) => errors.push(LoadError::from_diagnostic(path, text, &e)),
            }
        }
    }
    if !names.iter().any(|n| n.ends_with(".cedarschema")) {
        errors.push(LoadError::new(src, "no `*.cedarschema` file"));
    }
    let schema = match Schema::from_schema_fragments(fragments) {
        Ok(s) if errors.len() == before_schema && !empty_schema => Some(s),
        Ok(_) => None,
        Err(e) => {
            errors.push(LoadError::new(src, format!("schema: {e}")));
            None
        }
    };

    // Catalogue.
    let catalogue = match files.iter().find(|f| f.1 == CATALOGUE_FILE) {
        None if names.iter().any(|n| n == CATALOGUE_FILE) => None,
        None => {
            errors.push(LoadError::new(src, format!("no `{CATALOGUE_FILE}`")));
            None
        }
        Some((path, _, text)) => match Catalogue::from_json(text) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(LoadError::new(path, e));
                None
            }
        },
    };

    // Routes: optional; without them every ext_authz check is an unmapped route.
    let routes = match files.iter().find(|f| f.1 == ROUTES_FILE) {
        None => RouteTable::default(),
        Some((path, _, text)) => RouteTable::from_json(text).unwrap_or_else(|errs| {
            errors.extend(errs.into_iter().map(|e| LoadError::new(path, e)));
            RouteTable::default()
        }),
    };

    // Policies: each file parsed on its own so positions are relative to it; each
    // policy renamed to its `@id`, which is what responses report as reasons.
    let mut policies = PolicySet::new();
    let mut origins: HashMap<String, String> = HashMap::new();
    let mut texts: HashMap<String, (String, String)> = HashMap::new();
    for (path, name, text) in &files {
        if !name.ends_with(".cedar") {
            continue;
        }
        let set = match PolicySet::from_str(text) {
            Ok(s) => s,
            Err(e) => {
                errors.push(LoadError::from_diagnostic(path, text, &e));
                continue;
            }
        };
        if set.templates().next().is_some() {
            errors.push(LoadError::new(
                path,
                "templates (`?principal`, `?resource`) are not supported; write plain policies",
            ));
        }
        for (index, p) in set.policies().enumerate() {
            let Some(id) = p.annotation("id").map(str::to_string) else {
                errors.push(LoadError::new(
                    path,
                    format!(
                        "policy #{} has no `@id(\"...\")` annotation; every policy needs one",
                        index + 1
                    ),
                ));
                continue;
            };
            let at = match policy_line(text, &id) {
                Some(line) => format!("{path}:{line}"),
                None => path.clone(),
            };
            if id.trim().is_empty() {
                errors.push(LoadError::new(at, "policy has an empty `@id`"));
                continue;
            }
            if let Some(first) = origins.get(&id) {
                errors.push(LoadError::new(
                    at,
                    format!("policy id `{id}` is already used at {first}"),
                ));
                continue;
            }
            if let Some(named) = delegation_literal(p) {
                errors.push(LoadError::new(
                    at,
                    format!(
                        "policy `{id}` names the delegation `{named}` literally; tilgang gives \
                         Cedar only the delegation of the pair being decided, so the policy \
                         could not see that one. Write the condition on `context.delegation` \
                         (its `owner`, `supplier` and `rights`) instead"
                    ),
                ));
                continue;
            }
            if let Err(e) = policies.add(p.new_id(PolicyId::new(&id))) {
                errors.push(LoadError::new(at, e));
                continue;
            }
            origins.insert(id.clone(), at);
            texts.insert(id, (path.clone(), text.clone()));
        }
    }

    let (Some(schema), Some(catalogue)) = (schema, catalogue) else {
        return Err(LoadErrors(errors));
    };

    let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    for e in result.validation_errors() {
        let id = e.policy_id().to_string();
        match texts.get(&id) {
            Some((path, text)) => errors.push(LoadError::from_diagnostic(path, text, e)),
            None => errors.push(LoadError::new(src, e)),
        }
    }

    let base_entities = match base_entities(&schema, &catalogue) {
        Ok(b) => b,
        Err(e) => {
            errors.push(LoadError::new(
                src,
                format!("the rights catalogue does not fit the schema: {e}"),
            ));
            Entities::empty()
        }
    };
    for ty in ENTITY_TYPES {
        if !schema.entity_types().any(|t| t.to_string() == ty) {
            errors.push(LoadError::new(
                src,
                format!("the schema must declare entity type `{ty}`"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    let delegations_need_cedar = !plain_delegation_fits(&schema, &catalogue);
    let memo = crate::engine::Memo::new(&catalogue, &policies);
    let warnings = match (
        files.iter().find(|f| f.1 == CATALOGUE_FILE),
        files.iter().find(|f| f.1 == ROUTES_FILE),
    ) {
        (Some(rights), Some(routes_file)) => {
            scope_warnings(&catalogue, &routes, &rights.0, &routes_file.0)
        }
        _ => Vec::new(),
    };
    Ok(PolicyBundle {
        warnings,
        schema,
        policies,
        catalogue,
        routes,
        base_entities,
        origins,
        digest,
        delegations_need_cedar,
        memo,
    })
}

/// What is valid but probably not meant, between the rights catalogue and
/// the route table: a route whose scope no right gives (a typo such as
/// `events.subscribe`; only an owner acting for itself could pass it, every
/// supplier is denied), and a right's scope that no route needs (a right no
/// `Check` can use; `IsAuthorized` callers name scopes themselves). Warnings,
/// not errors: both can be meant, and refusing them would hold back every
/// other change to the files.
pub fn scope_warnings(
    catalogue: &Catalogue,
    routes: &RouteTable,
    rights_path: &str,
    routes_path: &str,
) -> Vec<LoadError> {
    let given = catalogue.scopes();
    let mut warnings = Vec::new();
    let mut reported = std::collections::BTreeSet::new();
    for route in routes.routes() {
        if !given.contains_key(&route.scope) && reported.insert(route.scope.as_str()) {
            let users: Vec<String> = routes
                .routes()
                .iter()
                .filter(|r| r.scope == route.scope)
                .map(|r| format!("`{r}`"))
                .collect();
            warnings.push(LoadError::new(
                routes_path,
                format!(
                    "scope `{}` (needed by {}) is given by no right in `{CATALOGUE_FILE}`: \
                     every supplier is denied there; only an owner acting for itself passes",
                    route.scope,
                    users.join(", ")
                ),
            ));
        }
    }
    let needed: std::collections::BTreeSet<&Scope> =
        routes.routes().iter().map(|r| &r.scope).collect();
    for (scope, rights) in &given {
        if !needed.contains(scope) {
            let rights: Vec<String> = rights.iter().map(|r| format!("`{r}`")).collect();
            warnings.push(LoadError::new(
                rights_path,
                format!(
                    "scope `{scope}` (given by {}) is needed by no route in `{ROUTES_FILE}`: \
                     Check never asks for it (IsAuthorized callers still can)",
                    rights.join(", ")
                ),
            ));
        }
    }
    warnings
}

/// Whether a delegation with tilgang's six attributes and nothing else fits
/// the schema. Then any such delegation does (the attributes' types are fixed
/// and tilgang checks their values), and Cedar need only see the delegations
/// that carry attributes of their own.
fn plain_delegation_fits(schema: &Schema, catalogue: &Catalogue) -> bool {
    let org = OrgNumber::parse("991825827");
    let Ok(org) = org else { return false };
    let probe = DelegationRecord {
        owner: org,
        supplier: org,
        rights: catalogue
            .rights()
            .iter()
            .take(1)
            .map(|r| r.id.clone())
            .collect(),
        delegated_by: "probe".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
        extra_attrs: serde_json::Map::new(),
        id: 0,
    };
    Entities::from_json_value(vec![probe.to_json()].into(), Some(schema)).is_ok()
}

/// Right and Scope entities from the catalogue, plus the schema's actions.
fn base_entities(schema: &Schema, catalogue: &Catalogue) -> Result<Entities, String> {
    let mut out = Vec::new();
    for r in catalogue.rights() {
        let attrs = HashMap::from([(
            "name".to_string(),
            RestrictedExpression::new_string(r.name.clone()),
        )]);
        out.push(
            Entity::new(uid(RIGHT_TYPE, r.id.as_str()), attrs, HashSet::new())
                .map_err(|e| e.to_string())?,
        );
    }
    for (scope, rights) in catalogue.scopes() {
        let parents = rights.iter().map(|r| uid(RIGHT_TYPE, r.as_str())).collect();
        out.push(Entity::new_no_attrs(
            uid(SCOPE_TYPE, scope.as_str()),
            parents,
        ));
    }
    // Validate against the schema, and let it add the action entities.
    Entities::from_entities(out, Some(schema)).map_err(|e| e.to_string())
}

/// The first `Tilgang::Delegation` entity literal in `policy`, if any.
///
/// A decision sees one delegation entity, the pair's own (built per request;
/// see `engine`). A policy that names another delegation literally would, in
/// plain Cedar over all entities, read that delegation's attributes; here it
/// would find nothing there, and a forbid meant to fire would stay silent.
/// Refusing such policies at load keeps every decision exactly Cedar's.
fn delegation_literal(policy: &Policy) -> Option<EntityUid> {
    policy
        .entity_literals()
        .into_iter()
        .find(|uid| uid.type_name().to_string() == crate::model::DELEGATION_TYPE)
}
