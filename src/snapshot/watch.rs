//! Turns file events into reload work, and decides when to look: watches the
//! policies and data directories with `notify` (debounced), maps changed paths
//! to [`Work`], and calls the [`Reloader`], which decides what a change means.
//! Besides events it looks on three clocks: a periodic rescan (for file
//! systems that drop events), a settle look shortly after every accepted change
//! (the debouncer can swallow a create+remove it saw in one window), and the
//! second look a change waiting for its content to settle asks for.
//!
//! Directories are watched, never single files, so editors that save by rename,
//! files deleted and recreated, and Kubernetes ConfigMap `..data` symlink swaps are
//! all seen as changes in the directory. This module reads no file itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::load::{self, PolicySource, ROLES_FILE, is_visible, owner_of_path};
use super::reload::{Reloader, Work};

/// Map changed paths to the least work that covers them.
pub fn classify(policies: &PolicySource, data_dir: &Path, paths: &[PathBuf]) -> Work {
    let mut work = Work::default();
    for p in paths {
        if let PolicySource::Dir(dir) = policies
            && p.starts_with(dir)
        {
            work.policies = true;
            continue;
        }
        let Ok(rel) = p.strip_prefix(data_dir) else {
            continue;
        };
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if rel.starts_with(load::DELEGATIONS_DIR) && !is_visible(name) {
            // A temp file of an atomic write (in `delegations/` or a split
            // owner's directory); its rename brings its own event.
        } else if let Some(owner) = owner_of_path(data_dir, p) {
            if !work.owners.contains(&owner) {
                work.owners.push(owner);
            }
        } else if rel == Path::new(ROLES_FILE) {
            work.roles = true;
        } else if rel.starts_with(load::DELEGATIONS_DIR) || rel.as_os_str().is_empty() {
            // The directory itself, or an unexpected name: look at everything.
            work.rescan_data = true;
        }
        // Anything else in the data dir (audit log, undo records) is not policy data.
    }
    work
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

/// What one batch of debounced events says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    /// Paths whose content may have changed, sorted, without duplicates.
    paths: Vec<PathBuf>,
    /// The watcher dropped events or failed: only a rescan can tell.
    rescan: bool,
}

impl Batch {
    fn of(results: Vec<DebounceEventResult>) -> Self {
        let mut batch = Self::default();
        for result in results {
            match result {
                Ok(events) => {
                    for e in events {
                        if e.event.need_rescan() {
                            tracing::warn!("the file watcher dropped events; rescanning");
                            batch.rescan = true;
                        }
                        if changes_content(&e.event.kind) {
                            batch.paths.extend(e.event.paths);
                        }
                    }
                }
                Err(errors) => {
                    for e in errors {
                        tracing::warn!(error = %e, "file watcher error; rescanning");
                    }
                    batch.rescan = true;
                }
            }
        }
        batch.paths.sort();
        batch.paths.dedup();
        batch
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

/// The watched directories. Each is watched on its own, so the audit log and
/// undo records in the data directory's subdirectories make no events; only
/// `delegations/` is watched recursively, for split owners' parts. A
/// directory deleted and recreated is watched again.
struct Roots {
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    /// Each root, and whether its watch is known to be in place.
    roots: Vec<(PathBuf, bool)>,
    /// The one root watched recursively: `delegations/`.
    recursive: PathBuf,
}

impl Roots {
    /// (Re)watch every root. Watching a watched directory is cheap and harmless;
    /// a directory replaced since (ext4 may even reuse its inode number) gets its
    /// watch back. Returns whether every root is watched.
    fn watch_all(&mut self) -> bool {
        let mut all = true;
        for (path, watched) in &mut self.roots {
            let mode = mode_for(path, &self.recursive);
            match self.debouncer.watch(path.as_path(), mode) {
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

fn mode_for(path: &Path, recursive: &Path) -> RecursiveMode {
    if path == recursive {
        RecursiveMode::Recursive
    } else {
        RecursiveMode::NonRecursive
    }
}

/// How soon to retry watching a root that is missing (deleted, being replaced).
const REWATCH: Duration = Duration::from_millis(200);

/// The watching thread's state: what it watches and when it next looks.
struct Watcher {
    reloader: Arc<Reloader>,
    roots: Roots,
    events: Receiver<Option<DebounceEventResult>>,
    stop: Arc<AtomicBool>,
    /// Period of the fallback rescan.
    every: Duration,
    /// How long after an accepted change to look once more.
    settle: Duration,
    next_rescan: Instant,
    settle_at: Option<Instant>,
}

impl Watcher {
    fn run(mut self) {
        // Catch anything that changed between the start-up load and the watch,
        // and look once more when that has settled.
        self.reloader.rescan();
        self.next_rescan = Instant::now() + self.every;
        self.settle_at = Some(Instant::now() + self.settle);
        while !self.stop.load(Ordering::Relaxed) {
            let Some(batch) = self.wait() else { break };
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            self.handle(batch);
        }
        self.roots.debouncer.stop();
    }

    /// The next moment something is due whatever events come: a fixed
    /// deadline, so a stream of events cannot starve the rescan.
    fn deadline(&self) -> Instant {
        [
            Some(self.next_rescan),
            self.settle_at,
            self.reloader.next_retry(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_rescan)
    }

    /// Wait for events or the deadline; `None` when the watcher is gone.
    fn wait(&self) -> Option<Batch> {
        let wait = self.deadline().saturating_duration_since(Instant::now());
        let mut results = match self.events.recv_timeout(wait) {
            Ok(first) => first.into_iter().collect::<Vec<_>>(),
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => return None,
        };
        // Take whatever else is queued, so a burst is handled once and a
        // backlog cannot build up behind slow reloads.
        while let Ok(more) = self.events.try_recv() {
            results.extend(more);
        }
        Some(Batch::of(results))
    }

    fn handle(&mut self, batch: Batch) {
        let now = Instant::now();
        let revision = self.reloader.store.load().revision().to_string();
        // A watched directory itself changed (deleted, replaced): watch it
        // again and look at everything.
        let rescan = batch.rescan
            || now >= self.next_rescan
            || self.settle_at.is_some_and(|s| now >= s)
            || batch.paths.iter().any(|p| self.roots.is_root(p));
        let work = classify(
            &self.reloader.policies,
            &self.reloader.data_dir,
            &batch.paths,
        );
        if rescan {
            let all_watched = self.roots.watch_all();
            self.reloader.rescan();
            // The rescan skips files whose metadata looks unchanged; a file an
            // event named is read whatever its metadata says.
            self.reloader.apply(&work);
            self.settle_at = None;
            if now >= self.next_rescan || !all_watched {
                self.next_rescan = Instant::now() + if all_watched { self.every } else { REWATCH };
            }
        } else if work != Work::default() {
            tracing::debug!(paths = ?batch.paths, "file events");
            self.reloader.apply(&work);
        }
        if self
            .reloader
            .next_retry()
            .is_some_and(|at| at <= Instant::now())
        {
            self.reloader.retry_pending();
        }
        // Every accepted change (re)starts the wait for the debouncer's window
        // to pass; the fixed rescan deadline still bounds it.
        if self.reloader.store.load().revision() != revision {
            self.settle_at = Some(Instant::now() + self.settle);
        }
    }
}

/// Start watching. `debounce` groups bursts of events (an editor's save is several);
/// every `rescan` the files are compared with the snapshot whatever events came.
pub fn spawn(
    reloader: Arc<Reloader>,
    debounce: Duration,
    rescan: Duration,
) -> Result<WatchHandle, notify::Error> {
    // Bounded both ways: zero would spin, a huge value would overflow `Instant`.
    let every = rescan.clamp(Duration::from_millis(100), Duration::from_secs(86_400));
    let (tx, rx) = mpsc::channel::<Option<DebounceEventResult>>();
    let events = tx.clone();
    let debouncer = new_debouncer(debounce, None, move |r: DebounceEventResult| {
        let _ = events.send(Some(r));
    })?;
    let mut roots = Roots {
        debouncer,
        recursive: reloader.data_dir.join(load::DELEGATIONS_DIR),
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
        let mode = mode_for(path, &roots.recursive);
        roots.debouncer.watch(path.as_path(), mode)?;
        *watched = true;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = Watcher {
        reloader,
        roots,
        events: rx,
        stop: stop.clone(),
        every,
        settle: debounce * 3,
        next_rescan: Instant::now() + every,
        settle_at: None,
    };
    let thread = std::thread::Builder::new()
        .name("tilgang-reload".into())
        .spawn(move || watcher.run())
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
    use crate::ids::OrgNumber;

    #[test]
    fn classify_maps_paths_to_the_least_work() {
        let root = Path::new("/srv");
        let policies = PolicySource::Dir(root.join("policies"));
        let data = root.join("data");
        let owner = OrgNumber::parse("991825827").unwrap();
        let work = |paths: &[PathBuf]| classify(&policies, &data, paths);

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
                data.join("delegations/.tilgang-tmp-abc"),
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

    #[test]
    fn reads_and_opens_are_not_changes() {
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Read
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert_eq!(Batch::of(Vec::new()), Batch::default());
    }
}
