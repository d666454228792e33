//! Reads policies and data from disk into snapshot parts, validating everything
//! against the Cedar schema. Errors carry the file (and line, where Cedar or JSON
//! gives one) so a policy author can find them.
//!
//! Layout read here, one submodule per kind of file:
//! - [`policies`]: the policies dir: `*.cedarschema`, `*.cedar` (every policy
//!   needs `@id("...")`), `rights.json`, `routes.json`. Top level only; names
//!   starting with `.` are skipped, which also skips Kubernetes ConfigMap
//!   internals (`..data`, `..2024_...`).
//! - [`owners`]: where an owner's delegations are (`delegations/<owner>.json`,
//!   or the parts of a large owner in `delegations/<owner>/`), read as a whole;
//! - [`delegations`]: the one codec for those files (Cedar entity JSON).
//! - [`roles`]: the data dir's `roles.json`.
//! - [`files`]: reading one file with its version.

mod delegations;
mod files;
pub mod owners;
mod policies;
mod render;
mod roles;

use crate::model::*;
pub use delegations::*;
pub use files::*;
pub use owners::*;
pub use policies::*;
pub use render::*;
pub use roles::*;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::ids::OrgNumber;
use crate::snapshot::{Digest, OwnerDelegations, PolicyBundle, Roles, Snapshot};

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

/// A content digest of named parts. BLAKE3: a million delegations are
/// hundreds of megabytes, and SHA-256 alone took a third of the start-up.
fn digest_of(parts: &[(&str, &[u8])]) -> Digest {
    let mut h = blake3::Hasher::new();
    for (name, bytes) in parts {
        h.update(&(name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    h.finalize().into()
}

/// Load all data against `policies`. Returns what loaded and every error.
/// Owner files are read and parsed on every core: a million delegations are
/// hundreds of megabytes of JSON.
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
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let next = std::sync::atomic::AtomicUsize::new(0);
            type Loaded = Vec<(OrgNumber, Result<Option<OwnerDelegations>, LoadError>)>;
            let loaded: Vec<std::thread::Result<Loaded>> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads.min(list.len()).max(1))
                    .map(|_| {
                        scope.spawn(|| {
                            let mut out = Vec::new();
                            loop {
                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(owner) = list.get(i) else { break out };
                                out.push((*owner, load_owner(data_dir, owner, policies, None)));
                            }
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join()).collect()
            });
            let mut results = Vec::new();
            for worker in loaded {
                match worker {
                    Ok(r) => results.extend(r),
                    // Never a snapshot short of some owners: the load fails.
                    Err(_) => errors.push(LoadError::new(
                        data_dir.display(),
                        "reading the owner files failed: a loader thread panicked",
                    )),
                }
            }
            for (owner, result) in results {
                match result {
                    Ok(Some(slice)) => {
                        owners.insert(owner, Arc::new(slice));
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
            // Reported in file order, as a sequential load would.
            errors.sort_by(|a, b| a.location.cmp(&b.location));
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
            assert!(a.same_content(b));
            assert_eq!(a.extra_attrs.get("note"), b.extra_attrs.get("note"));
        }
        assert_eq!(first.values().next().unwrap().extra_attrs["note"], "kept");

        let slice = OwnerDelegations {
            by_supplier: first,
            digest: [7; 32],
            files: Vec::new(),
        };
        let again = revalidate(dir.path(), &owner, &slice, &policies_with_note).unwrap();
        assert_eq!(again.digest, slice.digest);
        assert_eq!(again.by_supplier.len(), slice.by_supplier.len());
        // Policies without the attribute no longer fit: named, not dropped.
        let e = revalidate(dir.path(), &owner, &slice, &policies).unwrap_err();
        assert!(e.to_string().contains("note"), "{e}");
    }

    /// tilgang checks its own six attributes by hand and gives Cedar only what
    /// a schema adds; a schema that *requires* more of every delegation makes
    /// Cedar check every delegation, so none without it loads.
    #[test]
    fn a_required_schema_attribute_is_checked_on_every_delegation() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(
            !load_policies(&fixture_policies())
                .unwrap()
                .delegations_need_cedar
        );
        let schema =
            std::fs::read_to_string(root.join("tests/fixtures/policies/tilgang.cedarschema"))
                .unwrap()
                .replace("updatedAt: String,", "updatedAt: String,\n    tier: Long,");
        let dir = tempfile::tempdir().unwrap();
        copy_policies(dir.path(), &schema);
        let strict = load_policies(&PolicySource::Dir(dir.path().into())).unwrap();
        assert!(strict.delegations_need_cedar);
        let owner = OrgNumber::parse("991825827").unwrap();
        let bytes =
            std::fs::read(root.join("tests/fixtures/data/delegations/991825827.json")).unwrap();
        let e = parse_owner_file("f", &owner, &bytes, &strict).unwrap_err();
        assert!(e.to_string().contains("tier"), "{e}");
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        for d in value.as_array_mut().unwrap() {
            d["attrs"]["tier"] = 2.into();
        }
        assert_eq!(
            parse_delegations("f", &owner, value.clone(), &strict)
                .unwrap()
                .len(),
            2
        );
        // A wrong type in an added attribute is Cedar's error, named.
        value[1]["attrs"]["tier"] = "high".into();
        let e = parse_delegations("f", &owner, value, &strict).unwrap_err();
        assert!(e.to_string().contains("tier"), "{e}");
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
    use crate::catalogue::Catalogue;

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
