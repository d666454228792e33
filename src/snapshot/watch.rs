//! Keeps the snapshot in step with the files: watches the policies and data
//! directories with `notify` (debounced), re-reads what changed, validates it, and
//! swaps the snapshot. A change that fails validation is logged with its file and
//! error and the last good snapshot stays; the revision changes only when a new
//! snapshot is accepted. A slow periodic rescan catches events a file system drops.
//!
//! Directories are watched, never single files, so editors that save by rename,
//! files deleted and recreated, and Kubernetes ConfigMap `..data` symlink swaps are
//! all seen as changes in the directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::load::{
    self, LoadError, LoadErrors, PolicySource, ROLES_FILE, is_visible, owner_of_path,
};
use super::{FileStamp, Snapshot, SnapshotStore};
use crate::ids::OrgNumber;

/// Re-reads files into the store. Shared by the watcher thread, the admin store
/// (which writes then reloads the owner it wrote) and tests.
#[derive(Debug)]
pub struct Reloader {
    pub store: Arc<SnapshotStore>,
    pub policies: PolicySource,
    pub data_dir: PathBuf,
    /// What the last periodic rescan rejected, so it is not logged every period.
    last_rescan_errors: Mutex<Vec<LoadError>>,
    /// The last rejected policy files (digest) and the revision they were tried
    /// against, with the errors.
    rejected_policies: Mutex<Option<RejectedPolicies>>,
    /// A change to a file modified more recently than this is left for later:
    /// the file may be in the middle of an in-place save. Zero loads at once.
    quiet: Duration,
    /// Set when a change was left for later, so the watcher looks again.
    unsettled: AtomicBool,
}

type RejectedPolicies = ((super::Digest, String, super::Digest), LoadErrors);

/// What a batch of file events asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Work {
    policies: bool,
    rescan_data: bool,
    roles: bool,
    owners: Vec<OrgNumber>,
}

impl Reloader {
    pub fn new(store: Arc<SnapshotStore>, policies: PolicySource, data_dir: PathBuf) -> Self {
        Self {
            store,
            policies,
            data_dir,
            last_rescan_errors: Mutex::new(Vec::new()),
            rejected_policies: Mutex::new(None),
            quiet: Duration::ZERO,
            unsettled: AtomicBool::new(false),
        }
    }

    /// Leave changes to files modified within `quiet` for a later look (the
    /// watcher passes its debounce window). Without it, a rescan that reads a
    /// policy file between an editor's truncate and write publishes an empty
    /// policy set, which then stands as the "last good" one if the finished
    /// save turns out to be broken.
    pub fn with_quiet_period(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// Whether a reload since the last call left a change for later.
    pub fn take_unsettled(&self) -> bool {
        self.unsettled.swap(false, Ordering::Relaxed)
    }

    /// `settled`, remembering to look again if it is not.
    fn settled(&self, settled: bool, what: &dyn std::fmt::Display) -> bool {
        if !settled {
            tracing::debug!(%what, "modified just now, maybe mid-save; looking again shortly");
            self.unsettled.store(true, Ordering::Relaxed);
        }
        settled
    }

    /// Whether the file at `path` was left alone for the quiet period. Asked
    /// after reading it, so a write during the read shows.
    fn file_settled(&self, path: &Path) -> bool {
        let settled =
            self.quiet.is_zero() || FileStamp::of_path(path).is_none_or(|s| s.settled(self.quiet));
        self.settled(settled, &path.display())
    }

    /// Reload the policies and revalidate all data against them. On error the
    /// current snapshot stays.
    pub fn reload_policies(&self) -> Result<bool, LoadErrors> {
        // Reading is cheap; parse and validate only when the bytes changed, and
        // without holding the writer lock.
        let files = load::read_policies(&self.policies)?;
        let cur = self.store.load();
        if files.digest == cur.policies.digest {
            // Put back to what is running after a rejected change: say so, or the
            // author never learns the fix was accepted (the revision is the same).
            if self.rejected_policies().take().is_some() {
                tracing::info!(
                    revision = cur.revision(),
                    "policies are valid again (same as the running snapshot)"
                );
            }
            return Ok(false);
        }
        if !self.settled(files.settled(self.quiet), &self.policies) {
            return Ok(false);
        }
        // The same rejected files against the same snapshot and the same data
        // files fail the same way: do not re-parse them and revalidate all data
        // on every event and rescan. (The data files can change without the
        // revision changing, e.g. when they are invalid under the running
        // policies, so their fingerprint is part of the key.)
        let key = (
            files.digest,
            cur.revision().to_string(),
            load::data_fingerprint(&self.data_dir),
        );
        if let Some((k, errors)) = self.rejected_policies().as_ref()
            && *k == key
        {
            return Err(errors.clone());
        }
        let result = self.try_policies(files);
        *self.rejected_policies() = result.as_ref().err().map(|e| (key, e.clone()));
        result
    }

    fn rejected_policies(&self) -> std::sync::MutexGuard<'_, Option<RejectedPolicies>> {
        self.rejected_policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn try_policies(&self, files: load::PolicyFiles) -> Result<bool, LoadErrors> {
        let policies = load::build_policies(&self.policies, files)?;
        let w = self.store.lock();
        if policies.digest == w.current().policies.digest {
            return Ok(false);
        }
        // Data is read under the lock, so admin writes are neither lost nor mixed.
        let (owners, roles, errors) = load::load_data(&self.data_dir, &policies);
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        let changed = w.publish(Snapshot::new(Arc::new(policies), owners, Arc::new(roles)));
        Ok(changed)
    }

    /// Re-read one owner's file (absent file: the owner's delegations are gone).
    pub fn reload_owner(&self, owner: &OrgNumber) -> Result<bool, LoadError> {
        let w = self.store.lock();
        let cur = w.current();
        let old = cur.owners.get(owner);
        let loaded =
            load::load_owner_file(&self.data_dir, owner, &cur.policies, old.map(Arc::as_ref));
        let same = match (&loaded, old) {
            (Ok(Some(new)), Some(old)) => new.digest == old.digest && new.stamp == old.stamp,
            (Ok(None), None) => true,
            _ => false,
        };
        if same || !self.file_settled(&load::owner_file(&self.data_dir, owner)) {
            return Ok(false);
        }
        let slice = loaded?;
        Ok(w.publish(cur.with_owner(*owner, slice.map(Arc::new))))
    }

    pub fn reload_roles(&self) -> Result<bool, LoadError> {
        let w = self.store.lock();
        let cur = w.current();
        let loaded = load::load_roles(&self.data_dir);
        if loaded.as_ref().is_ok_and(|r| r.digest == cur.roles.digest)
            || !self.file_settled(&self.data_dir.join(ROLES_FILE))
        {
            return Ok(false);
        }
        Ok(w.publish(cur.with_roles(Arc::new(loaded?))))
    }

    /// Compare every data file with the snapshot and reload the ones that changed
    /// (and drop owners whose file is gone). Files whose metadata is unchanged are
    /// not read. Errors are per file: the others load.
    pub fn rescan_data(&self) -> Vec<LoadError> {
        let mut errors = Vec::new();
        let on_disk = match load::list_owner_files(&self.data_dir) {
            Ok((owners, errs)) => {
                errors.extend(errs);
                owners
            }
            Err(e) => return vec![e],
        };
        let snap = self.store.load();
        let unchanged = |owner: &OrgNumber| {
            let stamp = snap.owners.get(owner).and_then(|o| o.stamp);
            let now = FileStamp::of_path(&load::owner_file(&self.data_dir, owner));
            stamp.is_some() && stamp == now
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
            if let Err(e) = self.reload_owner(&owner) {
                errors.push(e);
            }
        }
        if let Err(e) = self.reload_roles() {
            errors.push(e);
        }
        errors
    }

    /// Classify changed paths into the work they need.
    fn classify(&self, paths: &[PathBuf]) -> Work {
        let mut work = Work::default();
        for p in paths {
            if let PolicySource::Dir(dir) = &self.policies
                && p.starts_with(dir)
            {
                work.policies = true;
                continue;
            }
            let Ok(rel) = p.strip_prefix(&self.data_dir) else {
                continue;
            };
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(owner) = owner_of_path(&self.data_dir, p) {
                if !work.owners.contains(&owner) {
                    work.owners.push(owner);
                }
            } else if rel == Path::new(ROLES_FILE) {
                work.roles = true;
            } else if rel.starts_with(load::DELEGATIONS_DIR) && !is_visible(name) {
                // A temp file of an atomic write; its rename brings its own event.
            } else if rel.starts_with(load::DELEGATIONS_DIR) || rel.as_os_str().is_empty() {
                // The directory itself, or an unexpected name: look at everything.
                work.rescan_data = true;
            }
            // Anything else in the data dir (audit log, undo records) is not policy data.
        }
        work
    }

    /// Apply a batch of changed paths, logging what happened.
    pub fn apply_paths(&self, paths: &[PathBuf]) {
        let work = self.classify(paths);
        if work.policies {
            self.log_policies(self.reload_policies());
        }
        if work.rescan_data {
            self.log_errors(self.rescan_data());
        } else {
            for owner in &work.owners {
                match self.reload_owner(owner) {
                    Ok(true) => self.log_accepted(&format!("delegations of {owner}")),
                    Ok(false) => {}
                    Err(e) => self.log_errors(vec![e]),
                }
            }
            if work.roles {
                match self.reload_roles() {
                    Ok(true) => self.log_accepted(ROLES_FILE),
                    Ok(false) => {}
                    Err(e) => self.log_errors(vec![e]),
                }
            }
        }
    }

    /// Reload everything that differs from the snapshot; the fallback for dropped
    /// events. A problem that persists is logged once, not on every rescan.
    pub fn rescan(&self) {
        let mut errors = match self.reload_policies() {
            Ok(true) => {
                self.log_accepted("policies");
                Vec::new()
            }
            Ok(false) => Vec::new(),
            Err(e) => e.0,
        };
        errors.extend(self.rescan_data());
        let mut last = self
            .last_rescan_errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *last != errors {
            *last = errors.clone();
            self.log_errors(errors);
        }
    }

    fn log_policies(&self, r: Result<bool, LoadErrors>) {
        match r {
            Ok(true) => self.log_accepted("policies"),
            Ok(false) => {}
            Err(errors) => self.log_errors(errors.0),
        }
    }

    fn log_accepted(&self, what: &str) {
        tracing::info!(revision = self.store.load().revision(), "reloaded {what}");
    }

    fn log_errors(&self, errors: Vec<LoadError>) {
        let revision = self.store.load().revision().to_string();
        for e in errors {
            tracing::error!(
                file = %e.location,
                error = %e.message,
                %revision,
                "rejected change; still deciding with the last good snapshot"
            );
        }
    }
}

/// Stops the watcher when dropped.
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
    /// Wakes the thread; `None` carries no events.
    wake: mpsc::Sender<Option<DebounceEventResult>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        // A flag, not a queued message, so stopping never waits behind events.
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.send(None);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether an event can mean changed content. Opening and reading a file or
/// directory (which reloading itself does) must not trigger another reload.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The watched directories. Each is watched on its own (not recursively), so the
/// audit log and undo records in the data directory's subdirectories make no
/// events. A directory deleted and recreated is watched again.
struct Roots {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    /// Each root, and whether its watch is known to be in place.
    roots: Vec<(PathBuf, bool)>,
}

impl Roots {
    /// (Re)watch every root. Watching a watched directory is cheap and harmless;
    /// a directory replaced since (ext4 may even reuse its inode number) gets its
    /// watch back. Returns whether every root is watched.
    fn watch_all(&mut self) -> bool {
        let mut all = true;
        for (path, watched) in &mut self.roots {
            match self
                .debouncer
                .watch(path.as_path(), RecursiveMode::NonRecursive)
            {
                Ok(()) if !*watched => {
                    tracing::info!(dir = %path.display(), "watching");
                    *watched = true;
                }
                Ok(()) => {}
                Err(e) => {
                    if *watched {
                        tracing::warn!(dir = %path.display(), error = %e, "cannot watch; retrying");
                    }
                    *watched = false;
                    all = false;
                }
            }
        }
        all
    }

    fn is_root(&self, path: &Path) -> bool {
        self.roots.iter().any(|(p, _)| p == path)
    }
}

/// How soon to retry watching a root that is missing (deleted, being replaced).
const REWATCH: Duration = Duration::from_millis(200);

/// Start watching. `debounce` groups bursts of events (an editor's save is several);
/// every `rescan` the files are compared with the snapshot whatever events came.
pub fn spawn(
    reloader: Arc<Reloader>,
    debounce: Duration,
    rescan: Duration,
) -> Result<WatchHandle, notify::Error> {
    // Bounded both ways: zero would spin, a huge value would overflow `Instant`.
    let rescan = rescan.clamp(Duration::from_millis(100), Duration::from_secs(86_400));
    let (tx, rx) = mpsc::channel::<Option<DebounceEventResult>>();
    let events = tx.clone();
    let debouncer = new_debouncer(debounce, None, move |r: DebounceEventResult| {
        let _ = events.send(Some(r));
    })?;
    let mut roots = Roots {
        debouncer,
        roots: Vec::new(),
    };
    if let PolicySource::Dir(dir) = &reloader.policies {
        roots.roots.push((dir.clone(), false));
    }
    roots.roots.push((reloader.data_dir.clone(), false));
    roots
        .roots
        .push((reloader.data_dir.join(load::DELEGATIONS_DIR), false));
    // Fail start-up if the directories cannot be watched at all.
    for (path, watched) in &mut roots.roots {
        roots
            .debouncer
            .watch(path.as_path(), RecursiveMode::NonRecursive)?;
        *watched = true;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let thread = std::thread::Builder::new()
        .name("tilgang-reload".into())
        .spawn(move || {
            // Catch anything that changed between the start-up load and the watch.
            reloader.rescan();
            let mut next_rescan = Instant::now() + rescan;
            // After a change is published, look once more when the debouncer's
            // window has passed: it drops a create+remove (or a burst of writes)
            // it saw within one window as if nothing happened, but a reload in
            // between may already have published the intermediate state.
            let settle = debounce * 3;
            // The start-up load and the rescan above may have raced file writes too.
            let mut settle_at = Some(Instant::now() + settle);
            while !stopping.load(Ordering::Relaxed) {
                // A fixed deadline: a stream of events must not starve the rescan.
                let deadline = settle_at.map_or(next_rescan, |s| s.min(next_rescan));
                let wait = deadline.saturating_duration_since(Instant::now());
                let mut batch = match rx.recv_timeout(wait) {
                    Ok(first) => first.into_iter().collect::<Vec<_>>(),
                    Err(RecvTimeoutError::Timeout) => Vec::new(),
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                // Take whatever else is queued, so a burst is handled once and a
                // backlog cannot build up behind slow reloads.
                while let Ok(more) = rx.try_recv() {
                    batch.extend(more);
                }
                let now = Instant::now();
                let mut rescan_now = now >= next_rescan || settle_at.is_some_and(|s| now >= s);
                let revision = reloader.store.load().revision().to_string();
                let mut paths = Vec::new();
                for result in batch {
                    match result {
                        Ok(events) => {
                            for e in events {
                                if e.event.need_rescan() {
                                    tracing::warn!("the file watcher dropped events; rescanning");
                                    rescan_now = true;
                                }
                                if changes_content(&e.event.kind) {
                                    paths.extend(e.event.paths);
                                }
                            }
                        }
                        Err(errors) => {
                            for e in errors {
                                tracing::warn!(error = %e, "file watcher error; rescanning");
                            }
                            rescan_now = true;
                        }
                    }
                }
                // A watched directory itself changed (deleted, replaced): watch
                // it again and look at everything.
                if paths.iter().any(|p| roots.is_root(p)) {
                    rescan_now = true;
                }
                paths.sort();
                paths.dedup();
                if rescan_now {
                    let all_watched = roots.watch_all();
                    reloader.rescan();
                    // The rescan skips files whose metadata looks unchanged; a
                    // file an event named is read whatever its metadata says.
                    if !paths.is_empty() {
                        reloader.apply_paths(&paths);
                    }
                    settle_at = None;
                    if now >= next_rescan || !all_watched {
                        next_rescan = Instant::now() + if all_watched { rescan } else { REWATCH };
                    }
                } else if !paths.is_empty() {
                    tracing::debug!(?paths, "file events");
                    reloader.apply_paths(&paths);
                }
                // Every accepted change (re)starts the wait for the debouncer's
                // window to pass; the fixed rescan deadline still bounds it.
                if reloader.store.load().revision() != revision {
                    settle_at = Some(Instant::now() + settle);
                }
                // A change left for later (a file modified just now) is looked
                // at again once the quiet period has passed.
                if reloader.take_unsettled() {
                    let again = Instant::now() + debounce;
                    settle_at = Some(settle_at.map_or(again, |s| s.min(again)));
                }
            }
            roots.debouncer.stop();
        })
        .map_err(notify::Error::io)?;
    Ok(WatchHandle {
        stop,
        wake: tx,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::load::load_snapshot;

    #[test]
    fn classify_maps_paths_to_the_least_work() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let policies = PolicySource::Dir(root.join("policies"));
        let data = root.join("tests/fixtures/data");
        let snap = load_snapshot(&policies, &data).unwrap();
        let r = Reloader::new(Arc::new(SnapshotStore::new(snap)), policies, data.clone());
        let owner = OrgNumber::parse("991825827").unwrap();
        let work = |paths: &[PathBuf]| r.classify(paths);

        assert_eq!(
            work(&[data.join("delegations/991825827.json")]),
            Work {
                owners: vec![owner],
                ..Work::default()
            }
        );
        assert_eq!(
            work(&[data.join("roles.json")]),
            Work {
                roles: true,
                ..Work::default()
            }
        );
        assert_eq!(
            work(&[root.join("policies/..data")]),
            Work {
                policies: true,
                ..Work::default()
            }
        );
        // Temp files of atomic writes, the audit log and undo records: nothing.
        assert_eq!(
            work(&[
                data.join("delegations/.tmp-abc"),
                data.join("audit.jsonl"),
                data.join("undo/0123.json"),
                data.join(".lock"),
            ]),
            Work::default()
        );
        // The directory itself, or a name that is not an owner: look at everything.
        for p in [data.join("delegations"), data.join("delegations/12.json")] {
            assert!(work(&[p]).rescan_data);
        }
    }
}
