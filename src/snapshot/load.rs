//! Reads policies and data from disk into snapshot parts, validating everything
//! against the Cedar schema. Errors carry the file (and line, where Cedar or JSON
//! gives one) so a policy author can find them.
//!
//! Layout read here:
//! - policies dir: `*.cedarschema`, `*.cedar` (every policy needs `@id("...")`),
//!   `rights.json`. Top level only; names starting with `.` are skipped, which
//!   also skips Kubernetes ConfigMap internals (`..data`, `..2024_...`).
//! - data dir: `delegations/<owner>.json` (Cedar entity JSON), `roles.json`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet,
    RestrictedExpression, Schema, SchemaFragment, ValidationMode, Validator,
};
use serde::Deserialize;
use sha2::Digest as _;

use super::{DelegationRecord, Digest, FileStamp, OwnerDelegations, PolicyBundle, Roles, Snapshot};
use crate::catalogue::Catalogue;
use crate::gateway::routes::RouteTable;
use crate::ids::{OrgNumber, PersonId, RightId};

/// Cedar type names tilgang's code relies on. The schema must declare them.
pub const ORG_TYPE: &str = "Tilgang::Organization";
pub const PERSON_TYPE: &str = "Tilgang::Person";
pub const RIGHT_TYPE: &str = "Tilgang::Right";
pub const SCOPE_TYPE: &str = "Tilgang::Scope";
pub const DELEGATION_TYPE: &str = "Tilgang::Delegation";
pub const ACTION_TYPE: &str = "Tilgang::Action";
pub const CATALOGUE_FILE: &str = "rights.json";
/// The route table (optional): HTTP method + path template → scope.
pub const ROUTES_FILE: &str = "routes.json";
pub const ROLES_FILE: &str = "roles.json";
pub const DELEGATIONS_DIR: &str = "delegations";

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// `path`, or `path:line:column` when the error has a position.
    pub location: String,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in one load. Loading does not stop at the first file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl LoadError {
    pub fn new(location: impl fmt::Display, message: impl fmt::Display) -> Self {
        Self {
            location: location.to_string(),
            message: message.to_string(),
        }
    }

    /// From a Cedar diagnostic whose labels point into `text`.
    fn from_diagnostic(file: &str, text: &str, diag: &dyn miette::Diagnostic) -> Self {
        let offset = diag.labels().and_then(|mut l| l.next()).map(|l| l.offset());
        let location = match offset {
            Some(off) => {
                let (line, col) = line_col(text, off);
                format!("{file}:{line}:{col}")
            }
            None => file.to_string(),
        };
        let mut message = diag.to_string();
        if let Some(help) = diag.help() {
            message.push_str(&format!(" (help: {help})"));
        }
        Self { location, message }
    }
}

/// The line of a policy's `@id("...")` annotation. Cedar's public API does not
/// expose a policy's position, so look for the annotation in the source.
fn policy_line(text: &str, id: &str) -> Option<usize> {
    let literal = format!("\"{}\"", id.escape_default());
    let mut from = 0;
    while let Some(found) = text[from..].find(&literal) {
        let at = from + found;
        let before = text[..at].trim_end();
        if let Some(b) = before.strip_suffix('(')
            && b.trim_end().ends_with("@id")
        {
            return Some(line_col(text, at).0);
        }
        from = at + literal.len();
    }
    None
}

/// An error and its causes, `: `-joined. Cedar's entity errors say only
/// "error during entity deserialization" at the top; what is wrong, and where,
/// is in the causes.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, col)
}

fn digest_of(parts: &[(&str, &[u8])]) -> Digest {
    let mut h = sha2::Sha256::new();
    for (name, bytes) in parts {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().into()
}

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

/// Whether a directory entry is one tilgang reads (not hidden, not a temp file).
pub fn is_visible(name: &str) -> bool {
    !name.starts_with('.') && !name.ends_with('~')
}

/// The policy files as read, before any parsing: (display path, file name,
/// contents), sorted by name, and their digest.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    files: Vec<(String, String, String)>,
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
const EMPTY_FILE: &str =
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
    let empty: Vec<LoadError> = read
        .empty_files()
        .into_iter()
        .map(|path| LoadError::new(path, EMPTY_FILE))
        .collect();
    if !empty.is_empty() {
        return Err(LoadErrors(empty));
    }
    let PolicyFiles { files, digest, .. } = read;
    let mut errors = Vec::new();

    // Schema: every `*.cedarschema` file is a fragment of one schema.
    let mut fragments = Vec::new();
    for (path, name, text) in &files {
        if name.ends_with(".cedarschema") {
            match SchemaFragment::from_cedarschema_str(text) {
                Ok((frag, _warnings)) => fragments.push(frag),
                Err(e) => errors.push(LoadError::from_diagnostic(path, text, &e)),
            }
        }
    }
    if fragments.is_empty() && errors.is_empty() {
        errors.push(LoadError::new(src, "no `*.cedarschema` file"));
    }
    let schema = match Schema::from_schema_fragments(fragments) {
        Ok(s) if errors.is_empty() => Some(s),
        Ok(_) => None,
        Err(e) => {
            errors.push(LoadError::new(src, format!("schema: {e}")));
            None
        }
    };

    // Catalogue.
    let catalogue = match files.iter().find(|f| f.1 == CATALOGUE_FILE) {
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
    for ty in [
        ORG_TYPE,
        PERSON_TYPE,
        RIGHT_TYPE,
        SCOPE_TYPE,
        DELEGATION_TYPE,
    ] {
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
    Ok(PolicyBundle {
        schema,
        policies,
        catalogue,
        routes,
        base_entities,
        origins,
        digest,
    })
}

/// The uid of a Cedar entity of one of tilgang's types (the `*_TYPE` constants).
#[allow(clippy::expect_used)] // only called with the constants above, checked by tests
pub fn uid(ty: &'static str, id: &str) -> EntityUid {
    let ty = EntityTypeName::from_str(ty).expect("tilgang's Cedar type names parse");
    EntityUid::from_type_name_and_id(ty, EntityId::new(id))
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

/// Whether [`read_regular`] reads through a symlink at the path itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Links {
    /// `roles.json`, which tilgang only reads (a mounted secret may be a link).
    Follow,
    /// Owner files, which tilgang also writes and never writes through a link.
    Refuse,
}

/// What one read of a file found.
#[derive(Debug, Clone)]
pub struct FileRead {
    /// The file's metadata before the read, from the open file: a write after
    /// it makes the next rescan read the file again.
    pub stamp: FileStamp,
    pub bytes: Vec<u8>,
    /// Whether the metadata was the same after the read: nothing wrote to the
    /// file while it was read.
    pub steady: bool,
}

impl FileRead {
    /// What identifies this version of the file, beyond its bytes (see
    /// [`version_of`]).
    pub fn version(&self) -> Digest {
        version_of([(self.stamp, self.steady)])
    }
}

/// A digest of files' metadata as read, for [`super::settle`]: two reads
/// whose bytes *and* versions match saw the file with no write in between.
/// Bytes alone cannot tell: an in-place save writes the same prefix every
/// time, so two reads far apart can both find it with other content between
/// them. A read during which the file changed matches nothing.
pub fn version_of(reads: impl IntoIterator<Item = (FileStamp, bool)>) -> Digest {
    static UNSTEADY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut text = String::new();
    for (stamp, steady) in reads {
        text.push_str(&format!("{stamp:?};"));
        if !steady {
            let n = UNSTEADY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            text.push_str(&format!("changed while read #{n};"));
        }
    }
    digest_of(&[("version", text.as_bytes())])
}

/// Read an open file with its metadata before and after.
fn read_open(f: &mut std::fs::File) -> std::io::Result<FileRead> {
    let stamp = FileStamp::of(&f.metadata()?);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(f, &mut bytes)?;
    let steady = FileStamp::of(&f.metadata()?) == stamp;
    Ok(FileRead {
        stamp,
        bytes,
        steady,
    })
}

/// Read a regular file with the stamp of what was read. Anything else (a FIFO
/// would block the reader, and with it every writer) is refused before it is
/// opened.
fn read_regular(path: &Path, links: Links) -> std::io::Result<FileRead> {
    let not_regular = || std::io::Error::other("not a regular file");
    let meta = match links {
        Links::Follow => std::fs::metadata(path)?,
        Links::Refuse => std::fs::symlink_metadata(path)?,
    };
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::other(
            "is a symbolic link; tilgang writes this file and does not follow links here",
        ));
    }
    if !meta.is_file() {
        return Err(not_regular());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    if links == Links::Refuse {
        use std::os::unix::fs::OpenOptionsExt;
        // Replaced by a link since the check above: fail rather than follow.
        options.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let mut f = options.open(path)?;
    if !f.metadata()?.is_file() {
        return Err(not_regular());
    }
    read_open(&mut f)
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

/// A cheap fingerprint of the data files (names and metadata, no contents): it
/// changes when any of them may have. Used to retry a rejected policy change
/// once the data it was rejected with may differ.
pub fn data_fingerprint(data_dir: &Path) -> Digest {
    let mut parts: Vec<(String, Option<FileStamp>)> = vec![(
        ROLES_FILE.to_string(),
        FileStamp::of_path(&data_dir.join(ROLES_FILE)),
    )];
    if let Ok(entries) = std::fs::read_dir(data_dir.join(DELEGATIONS_DIR)) {
        for e in entries.flatten() {
            parts.push((
                e.file_name().to_string_lossy().into_owned(),
                FileStamp::of_path(&e.path()),
            ));
        }
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let text = format!("{parts:?}");
    digest_of(&[("data", text.as_bytes())])
}

/// Load all data against `policies`. Returns what loaded and every error.
pub fn load_data(
    data_dir: &Path,
    policies: &PolicyBundle,
) -> (
    HashMap<OrgNumber, Arc<OwnerDelegations>>,
    Roles,
    Vec<LoadError>,
) {
    let mut errors = Vec::new();
    let mut owners = HashMap::new();
    match list_owner_files(data_dir) {
        Ok((list, errs)) => {
            errors.extend(errs);
            for owner in list {
                match load_owner_file(data_dir, &owner, policies, None) {
                    Ok(Some(slice)) => {
                        owners.insert(owner, Arc::new(slice));
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(e),
    }
    let roles = load_roles(data_dir).unwrap_or_else(|e| {
        errors.push(e);
        Roles::default()
    });
    (owners, roles, errors)
}

/// Load everything; any error anywhere fails the whole load. Used at start-up and
/// by `tilgang validate`, `check` and `test`.
pub fn load_snapshot(src: &PolicySource, data_dir: &Path) -> Result<Snapshot, LoadErrors> {
    let policies = load_policies(src)?;
    let (owners, roles, errors) = load_data(data_dir, &policies);
    if !errors.is_empty() {
        return Err(LoadErrors(errors));
    }
    Ok(Snapshot::new(Arc::new(policies), owners, Arc::new(roles)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policies the unit tests assume: a frozen copy of the shipped ones, so
    /// a policy author may change `policies/` without breaking these tests.
    pub(super) fn fixture_policies() -> PolicySource {
        PolicySource::Dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies"))
    }

    #[test]
    fn fixture_policies_load() {
        let b = load_policies(&fixture_policies()).unwrap();
        assert!(b.origins.contains_key("delegated-scope"));
        assert!(b.origins.contains_key("admin-key-role"));
        assert_eq!(b.catalogue.rights().len(), 2);
    }

    /// The shipped files: whatever they say, the built-in copy is all of them.
    #[test]
    fn embedded_matches_the_policies_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let on_disk = read_policies(&PolicySource::Dir(dir)).unwrap();
        let embedded = read_policies(&PolicySource::Embedded).unwrap();
        let names = |f: &PolicyFiles| {
            f.files
                .iter()
                .map(|(_, n, _)| n.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&embedded),
            names(&on_disk),
            "build.rs lists every file"
        );
        assert_eq!(on_disk.digest, embedded.digest, "with the same contents");
    }

    /// The owner-file codec: what `delegation_json` renders, `parse_delegations`
    /// reads back to the same records (and to the same Cedar entities), and a
    /// slice revalidated under the same policies is unchanged.
    #[test]
    fn owner_file_codec_round_trips() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let policies = load_policies(&fixture_policies()).unwrap();
        let owner = OrgNumber::parse("991825827").unwrap();
        let path = root.join("tests/fixtures/data/delegations/991825827.json");
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        // An attribute a schema could add is kept too (here in a schema that has it).
        value[0]["attrs"]["note"] = "kept".into();
        let schema =
            std::fs::read_to_string(root.join("tests/fixtures/policies/tilgang.cedarschema"))
                .unwrap()
                .replace(
                    "updatedAt: String,",
                    "updatedAt: String,\n    note?: String,",
                );
        let dir = tempfile::tempdir().unwrap();
        crate::snapshot::load::tests::copy_policies(dir.path(), &schema);
        let policies_with_note = load_policies(&PolicySource::Dir(dir.path().into())).unwrap();

        let first = parse_delegations("f", &owner, value, &policies_with_note).unwrap();
        let rendered: serde_json::Value = first
            .values()
            .map(|r| r.to_json())
            .collect::<Vec<_>>()
            .into();
        let second = parse_delegations("f", &owner, rendered, &policies_with_note).unwrap();
        assert_eq!(first.len(), 2);
        for (a, b) in first.values().zip(second.values()) {
            assert_eq!(a.to_json(), b.to_json());
            assert_eq!(a.entity, b.entity);
            assert_eq!(a.extra_attrs.get("note"), b.extra_attrs.get("note"));
        }
        assert_eq!(first.values().next().unwrap().extra_attrs["note"], "kept");

        let slice = OwnerDelegations {
            by_supplier: first,
            digest: [7; 32],
            stamp: None,
        };
        let again = revalidate(dir.path(), &owner, &slice, &policies_with_note).unwrap();
        assert_eq!(again.digest, slice.digest);
        assert_eq!(again.by_supplier.len(), slice.by_supplier.len());
        // Policies without the attribute no longer fit: named, not dropped.
        let e = revalidate(dir.path(), &owner, &slice, &policies).unwrap_err();
        assert!(e.to_string().contains("note"), "{e}");
    }

    /// The fixture policies in `dir`, with `schema` as the schema file.
    pub(super) fn copy_policies(dir: &Path, schema: &str) {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies");
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        std::fs::write(dir.join("tilgang.cedarschema"), schema).unwrap();
    }

    #[test]
    fn type_names_parse() {
        for ty in [
            ORG_TYPE,
            PERSON_TYPE,
            RIGHT_TYPE,
            SCOPE_TYPE,
            DELEGATION_TYPE,
            ACTION_TYPE,
        ] {
            assert_eq!(uid(ty, "x").type_name().to_string(), ty);
        }
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn owner_paths() {
        let d = Path::new("/d");
        let o = OrgNumber::parse("991825827").unwrap();
        assert_eq!(owner_of_path(d, &owner_file(d, &o)), Some(o));
        assert_eq!(
            owner_of_path(d, Path::new("/d/delegations/0192:991825827.json")),
            None
        );
        assert_eq!(owner_of_path(d, Path::new("/d/roles.json")), None);
    }
}

/// Mutated inputs: loading must report errors, never panic.
#[cfg(test)]
mod robustness {
    use super::*;

    /// A small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(out.len().max(1));
            match rng.below(4) {
                0 if !out.is_empty() => {
                    out.remove(at.min(out.len() - 1));
                }
                1 => out.insert(at.min(out.len()), b"{}[]\":,0192\\\xff"[rng.below(13)]),
                2 if !out.is_empty() => {
                    let at = at.min(out.len() - 1);
                    out[at] = rng.next() as u8;
                }
                _ => out.truncate(at),
            }
        }
        out
    }

    #[test]
    fn mutated_files_are_errors_not_panics() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let policies = load_policies(&tests::fixture_policies()).unwrap();
        let rights = std::fs::read(root.join("tests/fixtures/policies/rights.json")).unwrap();
        let owner_bytes =
            std::fs::read(root.join("tests/fixtures/data/delegations/991825827.json")).unwrap();
        let roles_bytes = std::fs::read(root.join("tests/fixtures/data/roles.json")).unwrap();
        let owner = OrgNumber::parse("991825827").unwrap();
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let (mut ok, mut err) = (0, 0);
        for _ in 0..3000 {
            let bytes = mutate(&mut rng, &owner_bytes);
            match parse_owner_file("f.json", &owner, &bytes, &policies) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
            let _ = parse_roles("roles.json", &mutate(&mut rng, &roles_bytes));
            let text = String::from_utf8_lossy(&mutate(&mut rng, &rights)).into_owned();
            let _ = Catalogue::from_json(&text);
            let csv = String::from_utf8_lossy(&mutate(
                &mut rng,
                b"supplier,owner,scope,expect\n# c\n0192:810418672,991825827,a:b,allow\n",
            ))
            .into_owned();
            let _ = crate::table::parse("t.csv", &csv);
        }
        // Both outcomes occur, so the mutations are neither all fatal nor all no-ops.
        assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
    }

    #[test]
    fn mutated_policies_are_errors_not_panics() {
        let PolicySource::Dir(fixtures) = tests::fixture_policies() else {
            unreachable!("a directory")
        };
        let mut files: Vec<(std::ffi::OsString, Vec<u8>)> = std::fs::read_dir(fixtures)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        let mut rng = Rng(0xfeed_beef_0000_0001);
        for _ in 0..300 {
            let dir = tempfile::tempdir().unwrap();
            for (name, text) in &files {
                let bytes = if rng.below(2) == 0 {
                    mutate(&mut rng, text)
                } else {
                    text.clone()
                };
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
            let _ = load_policies(&PolicySource::Dir(dir.path().to_path_buf()));
        }
    }
}
