//! What a change on disk means for the running snapshot: re-read what changed,
//! wait until its content has settled ([`super::settle`]), validate it, and
//! publish it, or keep the last good snapshot and report why. The watcher
//! ([`super::watch`]) only decides *when* to call in here.
//!
//! Each unit is judged on its own, so bad data never holds back a good change
//! elsewhere:
//! - **Policies** (the policies directory as a whole). A new policy set is
//!   checked against every owner's *loaded* delegations, not against the files,
//!   so a broken owner file cannot block a policy change (such as a new
//!   `forbid`). If the new policies do not fit loaded data, the change is
//!   rejected as a whole and the owners named.
//! - **One owner file.** A file that does not load keeps that owner's last good
//!   delegations and is reported; it is tried again when it or the policies
//!   change.
//! - **`roles.json`.** One that does not load keeps the last good roles for
//!   nothing: the snapshot records the problem and admin writes are refused
//!   until it loads. Gateway decisions do not use roles.
//!
//! Every problem is logged when it appears and when it goes, not on every look.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::load::{self, LoadError, LoadErrors, PolicySource, ROLES_FILE};
use super::settle::{Settler, Unit, Verdict, observed};
use super::{Digest, OwnerDelegations, OwnerFile, OwnerMap, Snapshot, SnapshotStore};
use crate::ids::OrgNumber;
use crate::telemetry::metrics::{Metrics, ReloadUnit};

pub use super::clock::{Clock, ManualClock, RealClock};

/// What looking at one unit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The content is what the snapshot already holds.
    Unchanged,
    /// New content was published.
    Published,
    /// The content changed but has not settled (or is an empty policy file,
    /// i.e. a save in progress); it is looked at again later.
    Waiting,
}

/// What a batch of file events asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Work {
    pub policies: bool,
    /// The delegations directory itself changed, or a name in it that is not
    /// an owner file: compare every data file with the snapshot.
    pub rescan_data: bool,
    pub roles: bool,
    pub owners: Vec<OrgNumber>,
}

/// What is wrong on disk, per source of problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Unit(Unit),
    /// `*.json` names in `delegations/` that are not owner files.
    Listing,
}

/// A policy change that was rejected, and what it was tried against: the same
/// files against the same snapshot fail the same way.
#[derive(Debug)]
struct Rejected {
    files: Digest,
    revision: String,
    errors: LoadErrors,
}

/// An owner file whose settled content does not load, kept so the same bytes
/// are not parsed again against the same policies.
#[derive(Debug)]
struct Broken {
    digest: Digest,
    policies: Digest,
    error: LoadError,
}

/// The digest that stands for "no file": owner and policy digests are BLAKE3
/// of content, never all zero.
const ABSENT: Digest = [0; 32];

/// Re-reads files into the store. Shared by the watcher thread, the admin store
/// (for its data directory and snapshot) and tests.
#[derive(Debug)]
pub struct Reloader {
    pub store: Arc<SnapshotStore>,
    pub policies: PolicySource,
    pub data_dir: PathBuf,
    settle: Settler,
    broken: Mutex<HashMap<OrgNumber, Broken>>,
    rejected: Mutex<Option<Rejected>>,
    /// The problems last logged, so each is logged once.
    problems: Mutex<HashMap<Key, Vec<LoadError>>>,
    /// Counts accepted and rejected reloads, when `serve` exports them.
    metrics: Option<Arc<Metrics>>,
    /// Whether delegations come from the data directory's files. With the
    /// shared store they come from its follower, and files in
    /// `delegations/` are none of the reloader's business.
    owner_files: bool,
    clock: Arc<dyn Clock>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Reloader {
    /// A reloader that acts on what it reads at once; `serve` adds a quiet
    /// period with [`Reloader::with_quiet_period`].
    pub fn new(store: Arc<SnapshotStore>, policies: PolicySource, data_dir: PathBuf) -> Self {
        Self {
            store,
            policies,
            data_dir,
            settle: Settler::new(Duration::ZERO),
            broken: Mutex::new(HashMap::new()),
            rejected: Mutex::new(None),
            problems: Mutex::new(HashMap::new()),
            metrics: None,
            owner_files: true,
            clock: Arc::new(RealClock),
        }
    }

    /// Read the time from `clock` (tests: a [`ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Leave delegations alone: the shared store's follower keeps them.
    /// Policies (checked against the delegations in memory) and `roles.json`
    /// are still reloaded from their files.
    pub fn with_delegations_from_store(mut self) -> Self {
        self.owner_files = false;
        self
    }

    /// Count every accepted and rejected reload in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Act on changed content only once two reads more than `quiet` apart
    /// found it the same (see [`super::settle`]).
    pub fn with_quiet_period(mut self, quiet: Duration) -> Self {
        self.settle = Settler::new(quiet);
        self
    }

    /// The problems on disk right now (each rejected change still in place),
    /// as logged. Empty when every file is what the snapshot holds or is
    /// waiting to settle.
    pub fn problems(&self) -> Vec<LoadError> {
        let problems = locked(&self.problems);
        let mut out: Vec<LoadError> = problems.values().flatten().cloned().collect();
        out.sort_by(|a, b| a.location.cmp(&b.location));
        out
    }

    /// When a change left waiting is due for another look.
    pub fn next_retry(&self) -> Option<Instant> {
        self.settle.pending().1
    }

    /// Reload the policies, checked against every owner's loaded delegations.
    /// On error the current snapshot stays.
    pub fn reload_policies(&self) -> Result<Reloaded, LoadErrors> {
        // Reading is cheap; parse and validate only when the bytes changed and
        // settled, and without holding the writer lock.
        let started = self.clock.now();
        let files = load::read_policies(&self.policies).inspect_err(|_| {
            // Nothing to settle: the error is reported, and the next event or
            // rescan reads again (a waiting entry would have the watcher spin).
            self.settle.forget(&Unit::Policies);
        })?;
        let finished = self.clock.now();
        let cur = self.store.load();
        if files.digest == cur.policies.digest {
            self.settle.forget(&Unit::Policies);
            return Ok(Reloaded::Unchanged);
        }
        let seen = observed(&files.digest, &files.version);
        if !files.empty_files().is_empty() {
            // A save caught between its truncate and its write. Never loaded;
            // if it stays empty the author meant something else: say so once,
            // with every other problem the files have.
            if let Verdict::Settled = self.settle.check(Unit::Policies, seen, started, finished) {
                let errors = match load::build_policies(&self.policies, files) {
                    Err(LoadErrors(errors)) => errors,
                    Ok(_) => Vec::new(),
                };
                let errors = errors
                    .into_iter()
                    .map(|e| {
                        if e.message == load::EMPTY_FILE {
                            LoadError::new(
                                e.location,
                                "the file is empty; treated as a save in progress, so the \
                                 last good policies stay (to remove a file's policies, \
                                 delete the file)",
                            )
                        } else {
                            e
                        }
                    })
                    .collect();
                return Err(LoadErrors(errors));
            }
            return Ok(Reloaded::Waiting);
        }
        if let Verdict::Unsettled { .. } =
            self.settle.check(Unit::Policies, seen, started, finished)
        {
            return Ok(Reloaded::Waiting);
        }
        if let Some(r) = locked(&self.rejected).as_ref()
            && r.files == files.digest
            && r.revision == cur.revision()
        {
            return Err(r.errors.clone());
        }
        let digest = files.digest;
        let result = self.try_policies(files);
        *locked(&self.rejected) = result.as_ref().err().map(|errors| Rejected {
            files: digest,
            revision: cur.revision().to_string(),
            errors: errors.clone(),
        });
        if result.is_ok() {
            self.settle.forget(&Unit::Policies);
            // Owner files rejected under the old policies may load now (say, a
            // right added to the catalogue together with its first delegation).
            self.retry_broken();
        }
        result
    }

    fn try_policies(&self, files: load::PolicyFiles) -> Result<Reloaded, LoadErrors> {
        let policies = Arc::new(load::build_policies(&self.policies, files)?);
        let w = self.store.lock();
        let cur = w.current();
        if policies.digest == cur.policies.digest {
            return Ok(Reloaded::Unchanged);
        }
        // Under the writer lock, so an admin write can neither be lost nor be
        // checked against the old policies only.
        let mut owners = OwnerMap::new();
        let mut errors = Vec::new();
        for (owner, slice) in &cur.owners {
            match load::revalidate(&self.data_dir, owner, slice, &policies) {
                Ok(s) => {
                    owners.insert(*owner, Arc::new(s));
                }
                Err(e) => errors.push(LoadError::new(
                    e.location,
                    format!(
                        "{} (the new policies do not fit the loaded delegations of {owner}, \
                         so the policy change is rejected)",
                        e.message
                    ),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        w.publish(cur.with_policies(policies, owners));
        Ok(Reloaded::Published)
    }

    /// Re-read one owner's file (no file: the owner's delegations are gone).
    /// A file that does not load keeps the owner's last good delegations.
    pub fn reload_owner(&self, owner: &OrgNumber) -> Result<Reloaded, LoadError> {
        let unit = Unit::Owner(*owner);
        // Read under the writer lock: an admin write renames its file in place
        // and publishes it under the same lock, so a reload never sees the new
        // file with the old snapshot.
        let w = self.store.lock();
        let cur = w.current();
        let old = cur.owners.get(owner);
        let started = self.clock.now();
        let read = load::read_owner(&self.data_dir, owner, old.map(Arc::as_ref))
            .inspect_err(|_| self.settle.forget(&unit))?;
        let finished = self.clock.now();
        let listed = read.as_ref().map(|r| r.listed(owner));
        let files: Option<Vec<OwnerFile>> = listed
            .as_ref()
            .map(|l| l.iter().map(|(f, _)| f.clone()).collect());
        let digest = files
            .as_deref()
            .map_or(ABSENT, OwnerDelegations::digest_of_files);
        if digest == old.map_or(ABSENT, |o| o.digest) {
            self.settle.forget(&unit);
            locked(&self.broken).remove(owner);
            // Same bytes, new metadata (a save of the same content): keep the
            // stamps current so the periodic rescan can skip the files again.
            // The records stay as they are: nothing is parsed again.
            if let (Some(old), Some(files)) = (old, files)
                && files != old.files
            {
                let slice = OwnerDelegations {
                    files,
                    ..old.as_ref().clone()
                };
                w.publish(cur.with_owner(*owner, Some(Arc::new(slice))));
            }
            return Ok(Reloaded::Unchanged);
        }
        let version = listed.as_ref().map_or(ABSENT, |l| {
            load::version_of(l.iter().map(|(f, steady)| (f.stamp, *steady)))
        });
        let seen = observed(&digest, &version);
        if let Verdict::Unsettled { .. } = self.settle.check(unit, seen, started, finished) {
            return Ok(Reloaded::Waiting);
        }
        if let Some(b) = locked(&self.broken).get(owner)
            && b.digest == digest
            && b.policies == cur.policies.digest
        {
            return Err(b.error.clone());
        }
        let slice = match read {
            None => None,
            // Parts whose bytes the snapshot already holds are reused: a hand
            // edit of one part of a large owner re-parses only that part.
            Some(r) => match load::parse_owner(
                &self.data_dir,
                owner,
                &r,
                &cur.policies,
                old.map(Arc::as_ref),
            ) {
                Ok(slice) => Some(Arc::new(slice)),
                Err(e) => {
                    let error = LoadError::new(
                        e.location,
                        format!(
                            "{}; the last good delegations of {owner} stay in effect",
                            e.message
                        ),
                    );
                    locked(&self.broken).insert(
                        *owner,
                        Broken {
                            digest,
                            policies: cur.policies.digest,
                            error: error.clone(),
                        },
                    );
                    return Err(error);
                }
            },
        };
        locked(&self.broken).remove(owner);
        self.settle.forget(&unit);
        w.publish(cur.with_owner(*owner, slice));
        Ok(Reloaded::Published)
    }

    /// Re-read `roles.json` (no file: nobody holds any role). One that does not
    /// load is recorded in the snapshot, which makes admin writes fail closed.
    pub fn reload_roles(&self) -> Result<Reloaded, LoadError> {
        let w = self.store.lock();
        let cur = w.current();
        let started = self.clock.now();
        let read = load::read_roles(&self.data_dir);
        let finished = self.clock.now();
        let read = match read {
            Ok(r) => r,
            Err(e) => {
                self.settle.forget(&Unit::Roles);
                self.record_roles_problem(&w, &cur, &e);
                return Err(e);
            }
        };
        let digest = load::roles_digest(read.as_ref().map(|r| r.bytes.as_slice()));
        if digest == cur.roles.digest {
            self.settle.forget(&Unit::Roles);
            if cur.roles_problem.is_some() {
                w.publish(cur.with_roles(cur.roles.clone()));
            }
            return Ok(Reloaded::Unchanged);
        }
        let version = read.as_ref().map_or(ABSENT, load::FileRead::version);
        let seen = observed(&digest, &version);
        if let Verdict::Unsettled { .. } = self.settle.check(Unit::Roles, seen, started, finished) {
            return Ok(Reloaded::Waiting);
        }
        let parsed = match &read {
            None => Ok(super::Roles::default()),
            Some(r) => load::parse_roles(
                &load::roles_file(&self.data_dir).display().to_string(),
                &r.bytes,
            ),
        };
        match parsed {
            Ok(roles) => {
                self.settle.forget(&Unit::Roles);
                w.publish(cur.with_roles(Arc::new(roles)));
                Ok(Reloaded::Published)
            }
            Err(e) => {
                self.record_roles_problem(&w, &cur, &e);
                Err(e)
            }
        }
    }

    fn record_roles_problem(&self, w: &super::WriteGuard<'_>, cur: &Snapshot, e: &LoadError) {
        if cur.roles_problem.as_deref() != Some(e) {
            w.publish(cur.with_roles_problem(Arc::new(e.clone())));
        }
    }

    /// Try again the owner files that did not load (after a policy change).
    fn retry_broken(&self) {
        let owners: Vec<OrgNumber> = locked(&self.broken).keys().copied().collect();
        for owner in owners {
            let r = self.reload_owner(&owner).map_err(|e| vec![e]);
            self.report(
                Key::Unit(Unit::Owner(owner)),
                &format!("delegations of {owner}"),
                r,
            );
        }
    }

    /// Compare every data file with the snapshot and reload the ones that
    /// changed (and drop owners whose file is gone). Files whose metadata
    /// matches what was loaded are not read, unless they are broken or waiting.
    fn rescan_data(&self) {
        if !self.owner_files {
            self.apply_roles();
            return;
        }
        let (on_disk, listing) = match load::list_owner_files(&self.data_dir) {
            Ok(found) => found,
            Err(e) => (Vec::new(), vec![e]),
        };
        let listed = if listing.is_empty() {
            Ok(Reloaded::Unchanged)
        } else {
            Err(listing)
        };
        self.report(Key::Listing, "delegations directory", listed);
        let snap = self.store.load();
        let (pending, _) = self.settle.pending();
        let broken: Vec<OrgNumber> = locked(&self.broken).keys().copied().collect();
        let unchanged = |owner: &OrgNumber| {
            if pending.contains(&Unit::Owner(*owner)) || broken.contains(owner) {
                return false;
            }
            snap.owners.get(owner).is_some_and(|o| {
                !o.files.is_empty() && o.stamps() == load::owner_stamps(&self.data_dir, owner)
            })
        };
        let gone = snap
            .owners
            .keys()
            .filter(|o| on_disk.binary_search(o).is_err())
            .copied();
        let changed: Vec<OrgNumber> = on_disk
            .iter()
            .filter(|o| !unchanged(o))
            .copied()
            .chain(gone)
            .collect();
        drop(snap);
        for owner in changed {
            self.apply_owner(&owner);
        }
        self.apply_roles();
    }

    fn apply_owner(&self, owner: &OrgNumber) {
        let r = self.reload_owner(owner).map_err(|e| vec![e]);
        self.report(
            Key::Unit(Unit::Owner(*owner)),
            &format!("delegations of {owner}"),
            r,
        );
    }

    fn apply_roles(&self) {
        let r = self.reload_roles().map_err(|e| vec![e]);
        self.report(Key::Unit(Unit::Roles), ROLES_FILE, r);
    }

    fn apply_policies(&self) {
        let r = self.reload_policies().map_err(|e| e.0);
        self.report(Key::Unit(Unit::Policies), "policies", r);
    }

    /// Do what a batch of file events asks for, logging what happened.
    pub fn apply(&self, work: &Work) {
        if work.policies {
            self.apply_policies();
        }
        if work.rescan_data {
            self.rescan_data();
            return;
        }
        if self.owner_files {
            for owner in &work.owners {
                self.apply_owner(owner);
            }
        }
        if work.roles {
            self.apply_roles();
        }
    }

    /// Look again at every change left waiting for its content to settle.
    pub fn retry_pending(&self) {
        let (units, _) = self.settle.pending();
        for unit in units {
            match unit {
                Unit::Policies => self.apply_policies(),
                Unit::Owner(o) => self.apply_owner(&o),
                Unit::Roles => self.apply_roles(),
            }
        }
    }

    /// Reload everything that differs from the snapshot: the fallback for
    /// dropped events.
    pub fn rescan(&self) {
        self.apply_policies();
        self.rescan_data();
    }

    /// Log what a look at `key` found: an accepted change, a problem that is
    /// new or changed, or a problem that went away.
    fn report(&self, key: Key, what: &str, result: Result<Reloaded, Vec<LoadError>>) {
        let revision = self.store.load().revision().to_string();
        let unit = match key {
            Key::Unit(Unit::Policies) => ReloadUnit::Policies,
            Key::Unit(Unit::Owner(_)) | Key::Listing => ReloadUnit::Owner,
            Key::Unit(Unit::Roles) => ReloadUnit::Roles,
        };
        let mut problems = locked(&self.problems);
        match result {
            Ok(Reloaded::Published) => {
                problems.remove(&key);
                if let Some(m) = &self.metrics {
                    m.reload_accepted(unit, &revision);
                }
                tracing::info!(%revision, "reloaded {what}");
                if key == Key::Unit(Unit::Policies) {
                    for w in &self.store.load().policies.warnings {
                        tracing::warn!(
                            file = %w.location, warning = %w.message,
                            "policies: probably not meant"
                        );
                    }
                }
            }
            Ok(Reloaded::Unchanged) => {
                if problems.remove(&key).is_some() {
                    tracing::info!(%revision, "{what}: valid again (as in the running snapshot)");
                }
            }
            Ok(Reloaded::Waiting) => {
                tracing::debug!("{what}: changed just now, maybe mid-save; looking again shortly");
            }
            Err(errors) => {
                if problems.get(&key) == Some(&errors) {
                    return;
                }
                if let Some(m) = &self.metrics {
                    m.reload_rejected(unit);
                }
                for e in &errors {
                    tracing::error!(
                        file = %e.location,
                        error = %e.message,
                        %revision,
                        "rejected change; still deciding with the last good snapshot"
                    );
                }
                problems.insert(key, errors);
            }
        }
    }
}
