//! The immutable policy + data snapshot that every decision reads, and the store that
//! swaps it.
//!
//! A [`Snapshot`] is built once and never mutated; changes build a new one and swap
//! it in with [`WriteGuard::publish`], so a decision sees the old or the new
//! snapshot and never a mix. Delegations are kept per owner ([`OwnerDelegations`]),
//! so a change to one owner's file rebuilds only that owner's slice. Loading from
//! disk lives in [`load`]; [`reload`] decides what a change on disk means (with
//! [`settle`] deciding when its content may be trusted), and [`watch`] only turns
//! file events into calls to it; [`startup`] is the first load. This module does no I/O.

mod clock;
pub mod load;
pub mod reload;
pub mod settle;
pub mod startup;
mod store;
pub mod watch;

pub use store::{Behind, SnapshotStore, WriteGuard};

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use cedar_policy::{Entities, PolicySet, Schema};

use crate::catalogue::Catalogue;
use crate::ids::{OrgNumber, PersonId, RightId};

/// A content digest, used to build the revision and to skip unchanged files.
pub type Digest = [u8; 32];

/// Everything from the policies directory: schema, policies, rights catalogue.
#[derive(Debug)]
pub struct PolicyBundle {
    pub schema: Schema,
    pub policies: PolicySet,
    pub catalogue: Catalogue,
    /// `routes.json`: which scope an HTTP call needs (empty without the file).
    pub routes: crate::gateway::routes::RouteTable,
    /// Right and Scope entities derived from the catalogue, and the schema's action
    /// entities: the part of every request's entity slice that is the same for all,
    /// built (with its transitive closure) once per policy load.
    pub base_entities: Entities,
    /// Policy id → `file:line` where it is defined, for messages and `tilgang validate`.
    pub origins: HashMap<String, String>,
    /// Set when a delegation with only tilgang's six attributes does not fit
    /// the schema (it requires attributes of its own): then every delegation
    /// is validated by Cedar, not only those with attributes of their own.
    pub delegations_need_cedar: bool,
    /// Decisions made with these policies, memoised (see `engine`).
    pub memo: crate::engine::Memo,
    pub digest: Digest,
    /// What is valid but probably not meant (a route's scope no right
    /// gives, ...): reported by `validate`, at start and on reload, never
    /// a reason to refuse the files.
    pub warnings: Vec<crate::snapshot::load::LoadError>,
}

/// One (owner, supplier) delegation, as read from the owner's file: a compact
/// record, not a Cedar entity (a parsed `Entity` costs kilobytes, and a
/// sidecar may hold a million of these). The engine builds the Cedar entity
/// for the one delegation a request needs ([`crate::engine`]).
#[derive(Debug, Clone)]
pub struct DelegationRecord {
    pub owner: OrgNumber,
    pub supplier: OrgNumber,
    pub rights: RightSet,
    pub delegated_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// Attributes in the file that tilgang does not interpret (a policy author's
    /// schema may add optional ones); kept so a rewrite does not drop them, and
    /// given to Cedar as they are.
    pub extra_attrs: serde_json::Map<String, serde_json::Value>,
    /// Tells this record apart from every other one built in this process, so
    /// a memoised decision made with it is never used for another (see
    /// `engine`). Records are immutable: a changed delegation is a new record.
    pub id: u64,
}

impl DelegationRecord {
    /// A process-unique id for a new record.
    pub fn next_id() -> u64 {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether two records say the same (their ids aside).
    pub fn same_content(&self, other: &Self) -> bool {
        self.owner == other.owner
            && self.supplier == other.supplier
            && self.rights == other.rights
            && self.delegated_by == other.delegated_by
            && self.created_at == other.created_at
            && self.updated_at == other.updated_at
            && self.extra_attrs == other.extra_attrs
    }
}

/// The rights one delegation holds: sorted, each once. A boxed slice rather
/// than a `BTreeSet`, whose first node alone costs hundreds of bytes; a
/// delegation holds one or two rights.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RightSet(Box<[RightId]>);

impl RightSet {
    pub fn iter(&self) -> std::slice::Iter<'_, RightId> {
        self.0.iter()
    }

    pub fn contains(&self, right: &RightId) -> bool {
        self.0.binary_search(right).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_set(&self) -> BTreeSet<RightId> {
        self.0.iter().cloned().collect()
    }
}

impl FromIterator<RightId> for RightSet {
    fn from_iter<I: IntoIterator<Item = RightId>>(iter: I) -> Self {
        let mut v: Vec<RightId> = iter.into_iter().collect();
        v.sort();
        v.dedup();
        Self(v.into_boxed_slice())
    }
}

impl<'a> IntoIterator for &'a RightSet {
    type Item = &'a RightId;
    type IntoIter = std::slice::Iter<'a, RightId>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// All delegations one owner has given, from its files: `delegations/<owner>.json`,
/// or for a large owner the parts in `delegations/<owner>/` (see
/// [`load::owners`]).
#[derive(Debug, Clone, Default)]
pub struct OwnerDelegations {
    pub by_supplier: Suppliers,
    /// The XOR of the files' digests; a reload that finds the same bytes does nothing.
    pub digest: Digest,
    /// The files they were read from (empty when not read from disk), sorted
    /// by name, so the periodic rescan can skip unchanged files without
    /// reading them, and a write to one part can reuse the others.
    pub files: Vec<OwnerFile>,
}

/// One owner's delegations by supplier. A persistent B-tree: a write to one
/// supplier of an owner with 100,000 makes a new map sharing all but a path
/// of nodes with the old one (O(log n)), and dropping the old snapshot frees
/// only that path, not 100,000 entries on whichever thread lets go last.
pub type Suppliers = imbl::OrdMap<OrgNumber, Arc<DelegationRecord>>;

/// One file an owner's delegations were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerFile {
    /// The path below `delegations/`: `<owner>.json` or `<owner>/<part>.json`.
    pub name: String,
    /// Digest of the name and bytes ([`load::file_digest`]).
    pub digest: Digest,
    pub stamp: FileStamp,
}

impl OwnerDelegations {
    /// The owner's digest: the XOR of its files' digests.
    pub fn digest_of_files(files: &[OwnerFile]) -> Digest {
        let mut d = [0u8; 32];
        for f in files {
            xor(&mut d, &f.digest);
        }
        d
    }

    /// The names and stamps of the files, as [`load::owner_stamps`] gives them
    /// for the files on disk now.
    pub fn stamps(&self) -> Vec<(String, FileStamp)> {
        self.files
            .iter()
            .map(|f| (f.name.clone(), f.stamp))
            .collect()
    }
}

/// What the periodic rescan compares to decide whether to re-read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub modified: Option<std::time::SystemTime>,
    pub len: u64,
    /// Replacing a file by rename gives it a new inode.
    pub inode: u64,
    /// The inode change time (seconds, nanoseconds): every write and truncate
    /// moves it, and unlike the mtime no tool can set it back.
    pub changed: (i64, i64),
}

impl FileStamp {
    /// The stamp of the file at `path` now; `None` if there is none.
    pub fn of_path(path: &std::path::Path) -> Option<Self> {
        std::fs::metadata(path).ok().map(|m| Self::of(&m))
    }

    pub fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let (inode, changed) = {
            use std::os::unix::fs::MetadataExt;
            (meta.ino(), (meta.ctime(), meta.ctime_nsec()))
        };
        #[cfg(not(unix))]
        let (inode, changed) = (0, (0, 0));
        Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
            changed,
        }
    }
}

/// Role assignments from `roles.json`: which roles a person holds for an org.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    pub by_org_person: HashMap<(OrgNumber, PersonId), BTreeSet<String>>,
    pub digest: Digest,
}

impl Roles {
    pub fn of(&self, org: &OrgNumber, person: &PersonId) -> BTreeSet<String> {
        self.by_org_person
            .get(&(*org, person.clone()))
            .cloned()
            .unwrap_or_default()
    }

    /// The orgs `roles.json` gives `person` any role for, in order. A walk of
    /// every assignment (`roles.json` is small next to the delegations).
    pub fn orgs_of(&self, person: &PersonId) -> Vec<OrgNumber> {
        let mut orgs: Vec<OrgNumber> = self
            .by_org_person
            .keys()
            .filter(|(_, p)| p == person)
            .map(|(o, _)| *o)
            .collect();
        orgs.sort_unstable();
        orgs.dedup();
        orgs
    }
}

/// Every owner's delegations. A persistent map: a snapshot that changes one
/// owner shares the rest of the map with the one before (O(log n) per change,
/// not a copy of every entry).
pub type OwnerMap = imbl::HashMap<OrgNumber, Arc<OwnerDelegations>>;

/// One consistent view of policies and data.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub policies: Arc<PolicyBundle>,
    pub owners: OwnerMap,
    pub roles: Arc<Roles>,
    /// Set while `roles.json` on disk does not load: `roles` is then the last
    /// good assignment, which gateway decisions never use, but admin writes
    /// must not act on roles someone is trying to change, so they are refused
    /// (fail closed) until the file loads again. Not part of the revision.
    pub roles_problem: Option<Arc<load::LoadError>>,
    /// The store revision these delegations are at (PostgreSQL: the last
    /// change applied; files: how many admin writes this process has
    /// published). See [`Self::store_revision`].
    store_revision: u64,
    /// Whether `store_revision` is part of the revision: with the shared
    /// store it names the delegations (they have no file digests), so
    /// replicas at the same store revision with the same policies agree;
    /// with files the files' digests do, and a process-local count must not
    /// make a reload's revision differ from the published one.
    shared_revision: bool,
    /// Set while the delegations may be out of date past `--max-staleness`
    /// (the shared store has been unreachable that long): decisions then use
    /// no delegation at all, and say why ([`Self::withheld`]).
    withheld: Option<Arc<str>>,
    /// XOR of every owner file's digest (keyed by owner), kept incrementally so a
    /// one-owner change does not rehash the rest.
    data_digest: Digest,
    revision: String,
}

fn xor(a: &mut Digest, b: &Digest) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// The XOR of the owners' file digests: order-free, so one owner's change
/// updates it without rehashing the rest.
fn owners_digest<'a>(slices: impl Iterator<Item = &'a Arc<OwnerDelegations>>) -> Digest {
    let mut d = [0u8; 32];
    for o in slices {
        xor(&mut d, &o.digest);
    }
    d
}

/// What a metrics scrape reads of a snapshot.
impl crate::telemetry::metrics::SnapshotFacts for Snapshot {
    fn revision(&self) -> &str {
        &self.revision
    }
    fn owners(&self) -> usize {
        self.owners.len()
    }
    fn delegations(&self) -> usize {
        self.owners.values().map(|o| o.by_supplier.len()).sum()
    }
}

impl Snapshot {
    pub fn new(
        policies: Arc<PolicyBundle>,
        owners: HashMap<OrgNumber, Arc<OwnerDelegations>>,
        roles: Arc<Roles>,
    ) -> Self {
        let data_digest = owners_digest(owners.values());
        Self::assemble(
            policies,
            owners.into_iter().collect(),
            roles,
            None,
            data_digest,
        )
    }

    /// The one place a snapshot is put together, so its revision always
    /// matches its parts.
    fn assemble(
        policies: Arc<PolicyBundle>,
        owners: OwnerMap,
        roles: Arc<Roles>,
        roles_problem: Option<Arc<load::LoadError>>,
        data_digest: Digest,
    ) -> Self {
        let mut s = Self {
            policies,
            owners,
            roles,
            roles_problem,
            store_revision: 0,
            shared_revision: false,
            withheld: None,
            data_digest,
            revision: String::new(),
        };
        s.revision = s.compute_revision();
        s
    }

    /// Identifies this snapshot: the same policy and data files give the same
    /// revision on every replica and across restarts.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    fn compute_revision(&self) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(self.policies.digest);
        h.update(self.data_digest);
        h.update(self.roles.digest);
        if self.shared_revision {
            h.update(self.store_revision.to_be_bytes());
        }
        let out = h.finalize();
        out.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    pub fn delegation(&self, owner: &OrgNumber, supplier: &OrgNumber) -> Option<&DelegationRecord> {
        self.owners
            .get(owner)
            .and_then(|o| o.by_supplier.get(supplier))
            .map(Arc::as_ref)
    }

    /// A copy with one owner's slice replaced (or removed, for `None`).
    pub fn with_owner(&self, owner: OrgNumber, slice: Option<Arc<OwnerDelegations>>) -> Self {
        let mut owners = self.owners.clone();
        let mut data_digest = self.data_digest;
        if let Some(old) = owners.remove(&owner) {
            xor(&mut data_digest, &old.digest);
        }
        if let Some(new) = slice {
            xor(&mut data_digest, &new.digest);
            owners.insert(owner, new);
        }
        self.rebuilt(self.policies.clone(), owners, data_digest)
    }

    /// A copy with other policies or owners: everything else carried over.
    fn rebuilt(&self, policies: Arc<PolicyBundle>, owners: OwnerMap, data_digest: Digest) -> Self {
        let (roles, problem) = (self.roles.clone(), self.roles_problem.clone());
        let mut s = Self::assemble(policies, owners, roles, problem, data_digest);
        s.store_revision = self.store_revision;
        s.shared_revision = self.shared_revision;
        s.withheld = self.withheld.clone();
        s.revision = s.compute_revision();
        s
    }

    /// A copy with every owner's slice replaced (a full load from the
    /// shared store).
    pub fn with_all_owners(&self, owners: OwnerMap) -> Self {
        let data_digest = owners_digest(owners.values());
        self.rebuilt(self.policies.clone(), owners, data_digest)
    }

    /// The shared store's revision these delegations are at.
    pub fn store_revision(&self) -> u64 {
        self.store_revision
    }

    /// A copy at the shared store's revision `revision` (part of the
    /// revision from now on).
    pub fn with_store_revision(&self, revision: u64) -> Self {
        let mut s = self.clone();
        s.store_revision = revision;
        s.shared_revision = true;
        s.revision = s.compute_revision();
        s
    }

    /// A copy counting one more file-store write: the revision stays what
    /// the files give.
    pub fn with_write_count(&self, count: u64) -> Self {
        let mut s = self.clone();
        s.store_revision = count;
        s
    }

    /// Why decisions use no delegation now, if they do not.
    pub fn withheld(&self) -> Option<&str> {
        self.withheld.as_deref()
    }

    /// A copy whose decisions use no delegation (`Some(why)`), or use them
    /// again (`None`). The delegations are kept, so the way back is instant.
    pub fn with_withheld(&self, why: Option<Arc<str>>) -> Self {
        let mut s = self.clone();
        s.withheld = why;
        s
    }

    /// A copy with other policies and every owner's slice rebuilt for them
    /// (the same owners, from the same files); roles stay as they are.
    pub fn with_policies(&self, policies: Arc<PolicyBundle>, owners: OwnerMap) -> Self {
        let data_digest = owners_digest(owners.values());
        self.rebuilt(policies, owners, data_digest)
    }

    pub fn with_roles(&self, roles: Arc<Roles>) -> Self {
        let mut s = self.clone();
        s.roles = roles;
        s.roles_problem = None;
        s.revision = s.compute_revision();
        s
    }

    /// A copy that records `roles.json` as not loading (see `roles_problem`);
    /// the roles and the revision stay the last good ones.
    pub fn with_roles_problem(&self, problem: Arc<load::LoadError>) -> Self {
        let mut s = self.clone();
        s.roles_problem = Some(problem);
        s
    }
}
