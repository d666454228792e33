//! [`Registry`]: the register file, loaded once its content has settled and
//! kept current by a thread of its own, read lock-free ([`ArcSwap`]).
//!
//! What it promises, as the JWKS file does:
//! - **Start-up fails** on a file that is missing, unreadable or not a
//!   register download ([`Registry::open`] returns the error).
//! - **A bad change never replaces a good register.** A new file that does
//!   not load, cannot be read or disappears leaves the last good register in
//!   place; the problem is logged once and shown in [`Registry::status`].
//! - **Nothing half-written is loaded.** A download written in place passes
//!   through prefixes (a gzip prefix fails anyway, but only after seconds of
//!   parsing). Content is acted on once two reads more than the quiet period
//!   apart saw the same bytes and file version: the rule and the code of
//!   [`crate::snapshot::settle`]. The read that parses hashes what it reads,
//!   and a register is published only if that hash is the settled one.
//! - **Changes are seen** through `notify` on the file's directory (renames
//!   and Kubernetes `..data` swaps too) and a periodic look. A look first
//!   compares the file's stamp (inode, size, mtime, ctime; every write moves
//!   ctime) with the loaded file's, so a look at an unchanged file reads
//!   nothing, and only a changed one is hashed (hundreds of MB).
//!
//! Loading runs on the calling thread at start-up ([`Registry::open`] blocks
//! for the load: call it before the runtime or in `spawn_blocking`) and on the
//! watcher thread after; never on the async workers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::read::{Seen, hash_file, load_settled, parse_file};
use super::{Register, RegisterError};
use crate::snapshot::settle::{Settler, Verdict};
use crate::snapshot::{Digest, FileStamp};

/// The default quiet period (as for the other watched files): a change is
/// loaded once two reads more than this (plus `settle::SLACK`) apart agree.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(150);

/// How often the file's stamp is looked at whatever events say.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(10);

/// How long start-up waits for a file that keeps changing. Generous: one
/// read of the real download takes seconds.
pub(super) const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// How soon to try watching the directory again after losing it.
const REWATCH: Duration = Duration::from_millis(500);

/// The [`Settler`] judges units by key; this one judges one file.
pub(super) const KEY: () = ();

/// How the file is watched. The defaults suit production; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryOptions {
    /// The quiet period ([`DEFAULT_QUIET`]). Zero loads on the first read.
    pub quiet: Duration,
    /// The periodic look ([`DEFAULT_RESCAN`]), clamped to 100 ms..1 day.
    pub rescan: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            quiet: DEFAULT_QUIET,
            rescan: DEFAULT_RESCAN,
        }
    }
}

/// What the reloading has done, for metrics, logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryStatus {
    /// Registers loaded: 1 after start-up, one more for every accepted change.
    pub generation: u64,
    /// Changes refused: each distinct settled content or read failure once.
    pub rejected: u64,
    /// What is wrong with the file on disk now, while the last good register
    /// serves on; `None` when the file holds the loaded register.
    pub problem: Option<String>,
}

/// The register file, kept current. Dropping the last handle stops the
/// watcher (after the load in progress, if any, gives up).
pub struct Registry {
    shared: Arc<Shared>,
    _watch: WatchHandle,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.shared.path)
            .field("organizations", &self.shared.current.load().len())
            .field("status", &*self.shared.status())
            .finish()
    }
}

struct Shared {
    /// Absolute, so a change of working directory cannot move it.
    path: PathBuf,
    current: ArcSwap<Register>,
    status: Mutex<RegistryStatus>,
}

impl Shared {
    fn status(&self) -> MutexGuard<'_, RegistryStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registry {
    /// Load `path` once its content has settled, and watch it, with the
    /// default options. Blocks for the load.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Registry>, RegisterError> {
        Self::open_with(path, RegistryOptions::default())
    }

    pub fn open_with(
        path: impl AsRef<Path>,
        options: RegistryOptions,
    ) -> Result<Arc<Registry>, RegisterError> {
        let path = std::path::absolute(path.as_ref()).map_err(|source| RegisterError::Read {
            path: path.as_ref().to_path_buf(),
            source,
        })?;
        let settle = Settler::new(options.quiet);
        let started = Instant::now();
        let (register, seen) = load_settled(&path, &settle)?;
        log_loaded(&path, &register, started, "organization register loaded");
        let shared = Arc::new(Shared {
            path: path.clone(),
            current: ArcSwap::from_pointee(register),
            status: Mutex::new(RegistryStatus {
                generation: 1,
                ..RegistryStatus::default()
            }),
        });
        let watch = spawn(shared.clone(), settle, seen, options)?;
        Ok(Arc::new(Registry {
            shared,
            _watch: watch,
        }))
    }

    /// The register loaded last: held for as long as the caller keeps it,
    /// whatever reloads meanwhile.
    pub fn current(&self) -> Arc<Register> {
        self.shared.current.load_full()
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    pub fn status(&self) -> RegistryStatus {
        self.shared.status().clone()
    }
}

fn log_loaded(path: &Path, register: &Register, started: Instant, what: &str) {
    tracing::info!(
        path = %path.display(),
        organizations = register.len(),
        skipped = register.skipped(),
        memory_bytes = register.memory_bytes(),
        millis = started.elapsed().as_millis() as u64,
        "{what}"
    );
}

enum Msg {
    Events(DebounceEventResult),
    /// Stop (sent by the handle's drop).
    Stop,
}

/// Open a regular file for reading (a FIFO would block the watcher, so
/// anything else is refused before it is opened), following symlinks
/// (Kubernetes mounts).
pub(super) fn open_regular(path: &Path) -> Result<File, RegisterError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| RegisterError::Read {
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = || RegisterError::NotAFile {
        path: path.to_path_buf(),
    };
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(not_a_file());
    }
    // Non-blocking, should a FIFO replace the file between the check and the open.
    let nonblock = i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nonblock)
        .open(path)
        .map_err(io)?;
    if !f.metadata().map_err(io)?.is_file() {
        return Err(not_a_file());
    }
    Ok(f)
}

/// Stops the watching thread when dropped.
struct WatchHandle {
    stop: Arc<AtomicBool>,
    wake: Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wake.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the loaded register was read from.
#[derive(Debug, Clone, Copy)]
struct Loaded {
    stamp: FileStamp,
    content: Digest,
}

struct Watcher {
    shared: Arc<Shared>,
    dir: PathBuf,
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    watched: bool,
    events: Receiver<Msg>,
    stop: Arc<AtomicBool>,
    settle: Settler<()>,
    loaded: Loaded,
    /// The settled observation judged last and refused: not judged again
    /// while the file stays so.
    refused: Option<Digest>,
    /// The stamp of the refused file: while the file keeps it, a look reads
    /// nothing (a bad download is not hashed again every rescan).
    refused_stamp: Option<FileStamp>,
    rescan: Duration,
    next_rescan: Instant,
}

fn spawn(
    shared: Arc<Shared>,
    settle: Settler<()>,
    seen: Seen,
    options: RegistryOptions,
) -> Result<WatchHandle, RegisterError> {
    let path = shared.path.clone();
    let watch_err = |source| RegisterError::Watch {
        path: path.clone(),
        source,
    };
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let (tx, rx) = mpsc::channel();
    let events = tx.clone();
    let debounce = if options.quiet.is_zero() {
        DEFAULT_QUIET
    } else {
        options.quiet
    };
    let mut debouncer = new_debouncer(debounce, None, move |r: DebounceEventResult| {
        let _ = events.send(Msg::Events(r));
    })
    .map_err(watch_err)?;
    debouncer
        .watch(dir.as_path(), RecursiveMode::NonRecursive)
        .map_err(watch_err)?;
    let rescan = options
        .rescan
        .clamp(Duration::from_millis(100), Duration::from_secs(86_400));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = Watcher {
        shared,
        dir,
        debouncer,
        watched: true,
        events: rx,
        stop: stop.clone(),
        settle,
        loaded: Loaded {
            stamp: seen.stamp,
            content: seen.content,
        },
        refused: None,
        refused_stamp: None,
        rescan,
        next_rescan: Instant::now() + rescan,
    };
    let thread = std::thread::Builder::new()
        .name("tilgang-register".into())
        .spawn(move || watcher.run())
        .map_err(|e| watch_err(notify::Error::io(e)))?;
    Ok(WatchHandle {
        stop,
        wake: tx,
        thread: Some(thread),
    })
}

/// Whether an event can mean changed content. Opening and reading the file
/// (which looking does) must not cause another look.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

impl Watcher {
    fn run(mut self) {
        // Catch a change between the start-up load and the watch.
        self.look();
        while !self.stopped() {
            let wait = self.deadline().saturating_duration_since(Instant::now());
            let mut look = match self.events.recv_timeout(wait) {
                Ok(msg) => self.wants_look(msg),
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Take whatever else is queued, so a burst is one look.
            while let Ok(msg) = self.events.try_recv() {
                look |= self.wants_look(msg);
            }
            if self.stopped() {
                break;
            }
            if Instant::now() >= self.next_rescan {
                if !self.watched {
                    self.rewatch();
                }
                let every = if self.watched { self.rescan } else { REWATCH };
                self.next_rescan = Instant::now() + every;
                look = true;
            }
            if look {
                self.look();
            }
        }
        self.debouncer.stop();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The periodic look, or the second look a waiting change asks for.
    fn deadline(&self) -> Instant {
        self.settle
            .pending()
            .1
            .map_or(self.next_rescan, |due| due.min(self.next_rescan))
    }

    fn wants_look(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Stop => false,
            Msg::Events(Ok(events)) => {
                let mut look = false;
                for e in events {
                    if e.event.paths.iter().any(|p| p == &self.dir) {
                        // The directory itself went (deleted, replaced).
                        self.watched = false;
                        self.next_rescan = Instant::now() + REWATCH;
                    }
                    look |= e.event.need_rescan() || changes_content(&e.event.kind);
                }
                look
            }
            Msg::Events(Err(errors)) => {
                for e in errors {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "organization register watcher error; looking again");
                }
                true
            }
        }
    }

    fn rewatch(&mut self) {
        match self
            .debouncer
            .watch(self.dir.as_path(), RecursiveMode::NonRecursive)
        {
            Ok(()) => {
                tracing::info!(dir = %self.dir.display(), "watching the organization register's directory again");
                self.watched = true;
            }
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot watch the organization register's directory yet");
            }
        }
    }

    /// Look at the file and decide what it means: nothing (the loaded
    /// content), wait (a change not yet settled), or judge it (load it, or
    /// refuse it and keep the loaded register).
    fn look(&mut self) {
        let path = self.shared.path.clone();
        let stamp = FileStamp::of_path(&path);
        if stamp == Some(self.loaded.stamp) {
            self.back_to_loaded();
            return;
        }
        if stamp.is_some() && stamp == self.refused_stamp {
            return;
        }
        let t0 = Instant::now();
        let seen = hash_file(&path, Some(&self.stop));
        let t1 = Instant::now();
        if self.stopped() {
            return;
        }
        let digest = match &seen {
            Ok(s) if s.content == self.loaded.content => {
                // Touched, or copied over with the same bytes.
                if s.steady {
                    self.loaded.stamp = s.stamp;
                }
                self.back_to_loaded();
                return;
            }
            Ok(s) => s.digest(),
            Err(e) => {
                let mut h = blake3::Hasher::new();
                h.update(format!("unreadable: {e:?}").as_bytes());
                h.finalize().into()
            }
        };
        if self.settle.check(KEY, digest, t0, t1) != Verdict::Settled
            || self.refused == Some(digest)
        {
            return;
        }
        // Settled, so read steady: this stamp is this content's.
        let refused_at = seen.as_ref().ok().map(|s| s.stamp);
        let problem = match seen {
            Err(e) => e,
            Ok(_) => {
                let started = Instant::now();
                match parse_file(&path, Some(&self.stop)) {
                    _ if self.stopped() => return,
                    Ok((_, again)) if again.digest() != digest => {
                        // Changed since it settled: the change's own events
                        // (or the next periodic look) start the wait again.
                        self.settle.forget(&KEY);
                        return;
                    }
                    Ok((Ok(register), again)) => {
                        self.publish(register, again, started);
                        return;
                    }
                    Ok((Err(problem), _)) => RegisterError::Invalid {
                        path: path.clone(),
                        problem,
                    },
                    Err(e) => {
                        // A read failed half-way: not a verdict on the
                        // content, so look again from the start.
                        self.settle.forget(&KEY);
                        tracing::warn!(error = %crate::telemetry::logs::error_chain(&e), "organization register not reloaded");
                        return;
                    }
                }
            }
        };
        self.refused = Some(digest);
        self.refused_stamp = refused_at;
        self.refuse(&problem);
    }

    fn publish(&mut self, register: Register, seen: Seen, started: Instant) {
        log_loaded(
            &self.shared.path,
            &register,
            started,
            "organization register reloaded",
        );
        self.shared.current.store(Arc::new(register));
        self.loaded = Loaded {
            stamp: seen.stamp,
            content: seen.content,
        };
        self.settle.forget(&KEY);
        self.refused = None;
        self.refused_stamp = None;
        let mut status = self.shared.status();
        status.generation += 1;
        status.problem = None;
    }

    /// Keep the loaded register and report `problem`, once while it lasts.
    fn refuse(&self, problem: &RegisterError) {
        let message = crate::telemetry::logs::error_chain(problem);
        let mut status = self.shared.status();
        status.rejected += 1;
        if status.problem.as_deref() != Some(message.as_str()) {
            tracing::error!(
                organizations = self.shared.current.load().len(),
                "{message}; keeping the organization register loaded before"
            );
            status.problem = Some(message);
        }
    }

    /// The file holds the loaded content (again): nothing is waiting.
    fn back_to_loaded(&mut self) {
        self.settle.forget(&KEY);
        self.refused = None;
        self.refused_stamp = None;
        let mut status = self.shared.status();
        if status.problem.take().is_some() {
            tracing::info!(path = %self.shared.path.display(), "the organization register file holds the loaded register again");
        }
    }
}
