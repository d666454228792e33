//! The JWKS file: the key set read from disk at start-up and swapped for a
//! new one when the file changes (keys rotate), so verification always sees
//! one whole, lock-free [`KeySet`] ([`ArcSwap`]).
//!
//! What it promises:
//! - **Start-up fails** on a file that is missing, unreadable or invalid: the
//!   caller turns that into a start-up error before any port is bound.
//! - **A bad change never replaces good keys.** A file that does not parse,
//!   or cannot be read, or disappears, leaves the last good set in place and
//!   is reported: an `error` log once per distinct problem, and
//!   [`JwksFile::status`].
//! - **Nothing half-written is acted on.** A save in place (truncate, then
//!   write) passes through an empty file and prefixes. Content is acted on
//!   only when two reads more than the quiet period plus [`SLACK`] apart saw
//!   the same bytes *and* the same file version (inode, size, mtime, ctime),
//!   the rule `snapshot::settle` explains. A half-written JWKS never parses,
//!   so what this saves is false alarms and their logs; a rename (editors,
//!   `mv`, Kubernetes Secret `..data` swaps) is atomic anyway.
//! - **Changes are seen** through `notify` on the file's *directory* (not
//!   recursive), so renames over the file and `..data` swaps make events; a
//!   periodic re-read (every [`DEFAULT_RESCAN`]) covers file systems without
//!   events and a symlinked file whose target lives elsewhere; and a token
//!   with an unknown `kid` asks for a look (at most once a second), in case
//!   an event was lost during a rotation.
//!
//! This module knows nothing of tokens or claims; it reads one file on its
//! own thread and never on the request path.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use sha2::Digest as _;

use super::error::JwksError;
use super::keys::KeySet;

/// The default quiet period: a change is acted on once two reads more than
/// this plus [`SLACK`] apart agree. Also the debounce window for events.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(150);

/// Added to the quiet period between the two reads: a writer's 150 ms pause
/// on a busy machine may take 240 (as in `snapshot::settle`).
pub const SLACK: Duration = Duration::from_millis(100);

/// How often the file is re-read whatever events say.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(10);

/// A JWKS is a few KiB; a bigger file is a mistake, not a key set.
pub const MAX_JWKS_BYTES: u64 = 1024 * 1024;

/// The second look is scheduled this much after the quiet period, so it is
/// sure to begin after it has passed.
const MARGIN: Duration = Duration::from_millis(10);

/// An unknown `kid` asks for a look at most this often.
const NUDGE_EVERY: Duration = Duration::from_secs(1);

/// How soon to try watching the directory again after losing it.
const REWATCH: Duration = Duration::from_millis(500);

/// How long start-up waits for a file that keeps changing.
const STARTUP_PATIENCE: Duration = Duration::from_secs(5);

/// How the file is watched. The defaults suit production; tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksOptions {
    /// The quiet period ([`DEFAULT_QUIET`]). Zero acts on the first read
    /// (for tools that read once).
    pub quiet: Duration,
    /// The periodic re-read ([`DEFAULT_RESCAN`]), clamped to 100 ms..1 day.
    pub rescan: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            quiet: DEFAULT_QUIET,
            rescan: DEFAULT_RESCAN,
        }
    }
}

/// What the reloading has done, for metrics, logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwksStatus {
    /// Changes accepted since start-up (the start-up load is not counted).
    pub reloads: u64,
    /// Changes refused: each distinct settled content or read failure once.
    pub rejected: u64,
    /// What is wrong with the file on disk now, while the last good keys
    /// keep serving; `None` when the file holds the loaded keys.
    pub problem: Option<String>,
}

/// A key set from a file, kept current. Dropping it stops the watcher.
pub struct JwksFile {
    shared: Arc<Shared>,
    /// Wakes the watcher; `None` for a fixed key set.
    wake: Option<Sender<Msg>>,
    watch: Option<WatchHandle>,
    /// For the nudge rate limit: milliseconds since `epoch` of the last one.
    epoch: Instant,
    last_nudge: AtomicU64,
}

impl std::fmt::Debug for JwksFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksFile")
            .field("path", &self.shared.path)
            .field("kids", &self.shared.keys.load().kids())
            .field("watching", &self.watch.is_some())
            .finish()
    }
}

struct Shared {
    /// Absolute, so a change of working directory cannot move it. `None`
    /// for a fixed key set.
    path: Option<PathBuf>,
    keys: ArcSwap<KeySet>,
    status: Mutex<JwksStatus>,
}

impl Shared {
    fn status(&self) -> MutexGuard<'_, JwksStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl JwksFile {
    /// Load `path` (waiting for its content to settle) and watch it with the
    /// default options. Blocks for about the quiet period plus [`SLACK`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, JwksError> {
        Self::open_with(path, JwksOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: JwksOptions) -> Result<Self, JwksError> {
        let path = std::path::absolute(path.as_ref()).map_err(|source| JwksError::Read {
            path: path.as_ref().to_path_buf(),
            source,
        })?;
        let quiet = settle_gap(options.quiet);
        let keys = load_settled(&path, quiet)?;
        log_loaded(&path, &keys, "JWKS loaded");
        let shared = Arc::new(Shared {
            path: Some(path.clone()),
            keys: ArcSwap::from_pointee(keys),
            status: Mutex::new(JwksStatus::default()),
        });
        let (tx, rx) = mpsc::channel();
        let watch = spawn(shared.clone(), &path, quiet, options, tx.clone(), rx)?;
        Ok(Self {
            shared,
            wake: Some(tx),
            watch: Some(watch),
            epoch: Instant::now(),
            last_nudge: AtomicU64::new(0),
        })
    }

    /// A key set that never changes: no file, no thread. For tests, and for
    /// embedding tilgang with keys from elsewhere.
    pub fn fixed(keys: KeySet) -> Self {
        Self {
            shared: Arc::new(Shared {
                path: None,
                keys: ArcSwap::from_pointee(keys),
                status: Mutex::new(JwksStatus::default()),
            }),
            wake: None,
            watch: None,
            epoch: Instant::now(),
            last_nudge: AtomicU64::new(0),
        }
    }

    /// The current keys: a lock-free load, held for one verification.
    pub fn keys(&self) -> Guard<Arc<KeySet>> {
        self.shared.keys.load()
    }

    /// The file, `None` for a fixed set.
    pub fn path(&self) -> Option<&Path> {
        self.shared.path.as_deref()
    }

    pub fn status(&self) -> JwksStatus {
        self.shared.status().clone()
    }

    /// Ask the watcher to read the file soon (rate-limited, never blocks):
    /// a token named a `kid` the set lacks, perhaps because an event was
    /// lost during a rotation.
    pub fn nudge(&self) {
        let Some(wake) = &self.wake else { return };
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_nudge.load(Ordering::Relaxed);
        let every = u64::try_from(NUDGE_EVERY.as_millis()).unwrap_or(u64::MAX);
        if (last != 0 && now.saturating_sub(last) < every)
            || self
                .last_nudge
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let _ = wake.send(Msg::Look);
    }
}

/// The gap two agreeing reads must exceed; zero means act on one read.
fn settle_gap(quiet: Duration) -> Duration {
    if quiet.is_zero() {
        quiet
    } else {
        quiet + SLACK
    }
}

fn log_loaded(path: &Path, keys: &KeySet, what: &str) {
    tracing::info!(path = %path.display(), kids = ?keys.kids(), "{what}");
    for skipped in keys.skipped() {
        tracing::warn!(path = %path.display(), "JWKS {skipped}; skipped");
    }
}

/// One read of the file, with the file's metadata before and after.
struct FileRead {
    bytes: Vec<u8>,
    before: Stamp,
    /// The metadata after the read equals `before`: no write landed during it.
    steady: bool,
}

/// What every write moves: the inode (rename), size, mtime and ctime (which
/// no tool can set back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            modified: (meta.mtime(), meta.mtime_nsec()),
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

type Digest = [u8; 32];

impl FileRead {
    /// The bytes together with the version they were read at. A read during
    /// which the file changed matches nothing, not even itself read again.
    fn version(&self) -> Digest {
        static UNSTEADY: AtomicU64 = AtomicU64::new(0);
        let mut h = sha2::Sha256::new();
        h.update(&self.bytes);
        h.update(format!("{:?}", self.before).as_bytes());
        if !self.steady {
            h.update(UNSTEADY.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        }
        h.finalize().into()
    }
}

/// Read a regular file (a FIFO would block the watcher, so anything else
/// is refused before it is opened), following symlinks (Kubernetes mounts).
fn read_file(path: &Path) -> Result<FileRead, JwksError> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| JwksError::Read {
        path: path.to_path_buf(),
        source,
    };
    let not_a_file = || JwksError::NotAFile {
        path: path.to_path_buf(),
    };
    let too_large = || JwksError::TooLarge {
        path: path.to_path_buf(),
        max: MAX_JWKS_BYTES,
    };
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(not_a_file());
    }
    // Non-blocking, should a FIFO replace the file between the check and the open.
    let nonblock = i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nonblock)
        .open(path)
        .map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(not_a_file());
    }
    if meta.len() > MAX_JWKS_BYTES {
        return Err(too_large());
    }
    let before = Stamp::of(&meta);
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&mut f)
        .take(MAX_JWKS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_JWKS_BYTES {
        return Err(too_large());
    }
    let steady = Stamp::of(&f.metadata().map_err(io)?) == before;
    Ok(FileRead {
        bytes,
        before,
        steady,
    })
}

/// The start-up load: read until two reads more than `gap` apart agree, then
/// parse. A read error fails at once: at start-up there is no last good set.
fn load_settled(path: &Path, gap: Duration) -> Result<KeySet, JwksError> {
    let invalid = |problem| JwksError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let started = Instant::now();
    let mut seen = read_file(path)?;
    loop {
        if gap.is_zero() {
            return KeySet::from_json(&seen.bytes).map_err(invalid);
        }
        std::thread::sleep(gap + MARGIN);
        let next = read_file(path)?;
        if next.version() == seen.version() {
            return KeySet::from_json(&next.bytes).map_err(invalid);
        }
        if started.elapsed() > STARTUP_PATIENCE.max(gap * 20) {
            return Err(JwksError::Unsettled {
                path: path.to_path_buf(),
                waited: started.elapsed(),
            });
        }
        seen = next;
    }
}

enum Msg {
    Events(DebounceEventResult),
    /// Read the file now (a nudge).
    Look,
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
        let _ = self.wake.send(Msg::Look);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a change may be acted on: the same observation (bytes and
/// version, or the same read error) in a read that began more than `gap`
/// after the read that first saw it ended. Reads nothing and keeps no
/// clock: the caller passes the instants.
#[derive(Debug)]
struct Settle {
    gap: Duration,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    version: Digest,
    /// When the read that first saw it ended.
    at: Instant,
    /// Judged already (loaded or refused): not judged again while it stays.
    judged: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Settled and not yet judged: load it, or refuse it.
    Judge,
    /// Maybe mid-save: look again at [`Settle::due`].
    Wait,
    /// Judged before and unchanged since.
    Judged,
}

impl Settle {
    fn new(gap: Duration) -> Self {
        Self { gap, pending: None }
    }

    fn observe(&mut self, version: Digest, started: Instant, finished: Instant) -> Verdict {
        match &mut self.pending {
            Some(p) if p.version == version => {
                if p.judged {
                    Verdict::Judged
                } else if started.saturating_duration_since(p.at) > self.gap {
                    p.judged = true;
                    Verdict::Judge
                } else {
                    Verdict::Wait
                }
            }
            _ => {
                let judged = self.gap.is_zero();
                self.pending = Some(Pending {
                    version,
                    at: finished,
                    judged,
                });
                if judged {
                    Verdict::Judge
                } else {
                    Verdict::Wait
                }
            }
        }
    }

    /// The file holds the loaded content (again): nothing is waiting.
    fn clear(&mut self) {
        self.pending = None;
    }

    /// When the second look at a waiting change is due.
    fn due(&self) -> Option<Instant> {
        self.pending
            .as_ref()
            .filter(|p| !p.judged)
            .map(|p| p.at + self.gap + MARGIN)
    }
}

struct Watcher {
    shared: Arc<Shared>,
    path: PathBuf,
    dir: PathBuf,
    debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
    watched: bool,
    events: Receiver<Msg>,
    stop: Arc<AtomicBool>,
    settle: Settle,
    rescan: Duration,
    next_rescan: Instant,
}

fn spawn(
    shared: Arc<Shared>,
    path: &Path,
    gap: Duration,
    options: JwksOptions,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
) -> Result<WatchHandle, JwksError> {
    let watch_err = |source| JwksError::Watch {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
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
    // Fail start-up if the directory cannot be watched at all.
    debouncer
        .watch(dir.as_path(), RecursiveMode::NonRecursive)
        .map_err(watch_err)?;
    let rescan = options
        .rescan
        .clamp(Duration::from_millis(100), Duration::from_secs(86_400));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = Watcher {
        shared,
        path: path.to_path_buf(),
        dir,
        debouncer,
        watched: true,
        events: rx,
        stop: stop.clone(),
        settle: Settle::new(gap),
        rescan,
        next_rescan: Instant::now() + rescan,
    };
    let thread = std::thread::Builder::new()
        .name("tilgang-jwks".into())
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
        while !self.stop.load(Ordering::Relaxed) {
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
            if self.stop.load(Ordering::Relaxed) {
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

    /// The next moment a look is due whatever events come: the rescan, or
    /// the second look of a change waiting to settle.
    fn deadline(&self) -> Instant {
        self.settle
            .due()
            .map_or(self.next_rescan, |due| due.min(self.next_rescan))
    }

    fn wants_look(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Look => true,
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
                    tracing::warn!(dir = %self.dir.display(), error = %e, "JWKS file watcher error; re-reading");
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
                tracing::info!(dir = %self.dir.display(), "watching the JWKS directory again");
                self.watched = true;
            }
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "cannot watch the JWKS directory yet");
            }
        }
    }

    /// Read the file and decide what it means: nothing (the loaded content),
    /// wait (a change not yet settled), or judge it (load or refuse).
    fn look(&mut self) {
        let started = Instant::now();
        let read = read_file(&self.path);
        let finished = Instant::now();
        let version = match &read {
            Ok(r) => {
                if sha2::Sha256::digest(&r.bytes)[..] == self.shared.keys.load().digest()[..] {
                    self.settle.clear();
                    self.back_to_loaded();
                    return;
                }
                r.version()
            }
            Err(e) => sha2::Sha256::digest(format!("unreadable: {e:?}").as_bytes()).into(),
        };
        if self.settle.observe(version, started, finished) != Verdict::Judge {
            return;
        }
        let problem = match read {
            Ok(r) => match KeySet::from_json(&r.bytes) {
                Ok(keys) => {
                    log_loaded(&self.path, &keys, "JWKS reloaded");
                    self.shared.keys.store(Arc::new(keys));
                    self.settle.clear();
                    let mut status = self.shared.status();
                    status.reloads += 1;
                    status.problem = None;
                    return;
                }
                Err(problem) => JwksError::Invalid {
                    path: self.path.clone(),
                    problem,
                },
            },
            Err(e) => e,
        };
        self.refuse(&problem);
    }

    /// Keep the loaded keys and report `problem`, once while it lasts.
    fn refuse(&self, problem: &JwksError) {
        let message = full_message(problem);
        let mut status = self.shared.status();
        status.rejected += 1;
        if status.problem.as_deref() != Some(message.as_str()) {
            tracing::error!(
                kids = ?self.shared.keys.load().kids(),
                "{message}; keeping the keys loaded before"
            );
            status.problem = Some(message);
        }
    }

    fn back_to_loaded(&self) {
        let mut status = self.shared.status();
        if status.problem.take().is_some() {
            tracing::info!(path = %self.path.display(), "the JWKS file holds the loaded keys again");
        }
    }
}

/// The message with its causes, as one line.
fn full_message(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenError;
    use crate::auth::testkit::{self, jwks, now};
    use crate::auth::verify::{Verifier, VerifierConfig};
    use serde_json::json;
    use std::io::Write as _;

    /// Short periods so the tests run quickly; the rule is the same.
    const FAST: JwksOptions = JwksOptions {
        quiet: Duration::from_millis(100),
        rescan: Duration::from_secs(60),
    };

    /// Wait (bounded) until `cond` holds.
    fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn token(kid: &str, key: &testkit::TestKey) -> String {
        testkit::token(
            key,
            &json!({"alg": "ES256", "kid": kid}),
            &json!({"exp": now() + 600}),
        )
    }

    fn write_by_rename(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn write_in_place(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
        verifier: Verifier,
    }

    fn fixture(keys: &[serde_json::Value], options: JwksOptions) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks(keys)).unwrap();
        let file = JwksFile::open_with(&path, options).unwrap();
        let verifier = Verifier::new(Arc::new(file), VerifierConfig::default()).unwrap();
        Fixture {
            _dir: dir,
            path,
            verifier,
        }
    }

    fn rotation(write: fn(&Path, &str)) {
        let f = fixture(&[testkit::p256().jwk("old")], FAST);
        let old = token("old", testkit::p256());
        let new = token("new", testkit::p256_2());
        assert!(f.verifier.verify(&old).is_ok());
        assert_eq!(
            f.verifier.verify(&new),
            Err(TokenError::UnknownKey { kid: "new".into() })
        );
        // Overlap: both keys published.
        write(
            &f.path,
            &jwks(&[testkit::p256().jwk("old"), testkit::p256_2().jwk("new")]),
        );
        eventually("the new key", || f.verifier.verify(&new).is_ok());
        assert!(f.verifier.verify(&old).is_ok());
        // The old key retired.
        write(&f.path, &jwks(&[testkit::p256_2().jwk("new")]));
        eventually("the old key to go", || {
            f.verifier.verify(&old) == Err(TokenError::UnknownKey { kid: "old".into() })
        });
        assert!(f.verifier.verify(&new).is_ok());
        let status = f.verifier.jwks().status();
        assert_eq!(
            (status.reloads, status.rejected, status.problem),
            (2, 0, None)
        );
    }

    #[test]
    fn keys_rotate_through_a_file_replaced_by_rename() {
        rotation(write_by_rename);
    }

    #[test]
    fn keys_rotate_through_a_file_saved_in_place() {
        rotation(write_in_place);
    }

    #[test]
    fn a_kubernetes_style_symlink_swap_is_seen() {
        // `jwks.json -> ..data/jwks.json`, `..data -> ..v1`, swapped by
        // renaming a new `..data` link over the old one.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..v1")).unwrap();
        std::fs::write(
            d.join("..v1/jwks.json"),
            jwks(&[testkit::p256().jwk("old")]),
        )
        .unwrap();
        std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/jwks.json", d.join("jwks.json")).unwrap();
        let file = Arc::new(JwksFile::open_with(d.join("jwks.json"), FAST).unwrap());
        let v = Verifier::new(file, VerifierConfig::default()).unwrap();
        let new = token("new", testkit::p256_2());
        std::fs::create_dir(d.join("..v2")).unwrap();
        std::fs::write(
            d.join("..v2/jwks.json"),
            jwks(&[testkit::p256_2().jwk("new")]),
        )
        .unwrap();
        std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        eventually("the swapped key", || v.verify(&new).is_ok());
    }

    #[test]
    fn a_broken_file_keeps_the_last_good_keys_and_is_reported_once() {
        let f = fixture(&[testkit::p256().jwk("k")], FAST);
        let good = token("k", testkit::p256());
        for (n, broken) in ["{\"keys\": [", "{\"keys\": []}", "not json"]
            .iter()
            .enumerate()
        {
            write_by_rename(&f.path, broken);
            eventually("the refusal", || {
                f.verifier.jwks().status().rejected == n as u64 + 1
            });
            let problem = f.verifier.jwks().status().problem.unwrap();
            assert!(problem.contains("is invalid"), "{problem}");
            assert!(f.verifier.verify(&good).is_ok(), "{broken}");
        }
        let status = f.verifier.jwks().status();
        assert_eq!((status.reloads, status.rejected), (0, 3));
        // Gone: still the old keys, reported.
        std::fs::remove_file(&f.path).unwrap();
        eventually("the missing file reported", || {
            f.verifier
                .jwks()
                .status()
                .problem
                .is_some_and(|p| p.contains("cannot read"))
        });
        assert!(f.verifier.verify(&good).is_ok());
        // Back to the loaded content: the problem clears, nothing reloads.
        std::fs::write(&f.path, jwks(&[testkit::p256().jwk("k")])).unwrap();
        eventually("the problem to clear", || {
            f.verifier.jwks().status().problem.is_none()
        });
        assert_eq!(f.verifier.jwks().status().reloads, 0);
    }

    #[test]
    fn a_save_in_place_that_pauses_mid_write_is_never_judged_half_written() {
        // Truncate, pause for less than the quiet period, write: the empty
        // file in between must be neither loaded nor reported. The pauses
        // are 100 ms against a 400 ms quiet period, so a loaded machine
        // stretching the writer's sleeps does not fail the test.
        let options = JwksOptions {
            quiet: Duration::from_millis(400),
            rescan: Duration::from_secs(60),
        };
        let f = fixture(&[testkit::p256().jwk("old")], options);
        let new = token("new", testkit::p256_2());
        let text = jwks(&[testkit::p256_2().jwk("new")]);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&f.path)
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let (first, rest) = text.split_at(text.len() / 2);
        file.write_all(first.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        file.write_all(rest.as_bytes()).unwrap();
        drop(file);
        eventually("the new key", || f.verifier.verify(&new).is_ok());
        assert_eq!(f.verifier.jwks().status().rejected, 0);
    }

    #[test]
    fn an_unknown_kid_asks_the_watcher_for_a_look_at_most_once_a_second() {
        // The watcher's end of the channel, held by the test: a lost event
        // is then simulated exactly.
        let set = KeySet::from_json(jwks(&[testkit::p256().jwk("k")]).as_bytes()).unwrap();
        let (tx, rx) = mpsc::channel();
        let file = JwksFile {
            wake: Some(tx),
            ..JwksFile::fixed(set)
        };
        let v = Verifier::new(Arc::new(file), VerifierConfig::default()).unwrap();
        let stranger = token("other", testkit::p256());
        for _ in 0..100 {
            assert_eq!(
                v.verify(&stranger),
                Err(TokenError::UnknownKey {
                    kid: "other".into()
                })
            );
        }
        assert!(matches!(rx.try_recv(), Ok(Msg::Look)));
        assert!(
            rx.try_recv().is_err(),
            "one look for a burst of unknown kids"
        );
        // A known kid asks for nothing.
        assert!(v.verify(&token("k", testkit::p256())).is_ok());
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn start_up_refuses_a_missing_invalid_or_odd_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        assert!(matches!(
            JwksFile::open_with(&path, FAST),
            Err(JwksError::Read { .. })
        ));
        std::fs::write(&path, "{\"keys\": []}").unwrap();
        let err = JwksFile::open_with(&path, FAST).unwrap_err();
        assert!(matches!(err, JwksError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("no key usable"), "{err}");
        assert!(matches!(
            JwksFile::open_with(dir.path(), FAST),
            Err(JwksError::NotAFile { .. })
        ));
        std::fs::write(&path, vec![b' '; MAX_JWKS_BYTES as usize + 1]).unwrap();
        assert!(matches!(
            JwksFile::open_with(&path, FAST),
            Err(JwksError::TooLarge { .. })
        ));
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.path().join("fifo"),
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        assert!(matches!(
            JwksFile::open_with(dir.path().join("fifo"), FAST),
            Err(JwksError::NotAFile { .. })
        ));
    }

    fn digest(n: u8) -> Digest {
        [n; 32]
    }

    #[test]
    fn a_change_is_judged_once_after_two_agreeing_reads_a_gap_apart() {
        let gap = Duration::from_millis(250);
        let mut s = Settle::new(gap);
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(s.observe(digest(1), t0, ms(1)), Verdict::Wait);
        assert_eq!(s.due(), Some(ms(1) + gap + MARGIN));
        // Not more than the gap after the first read ended.
        assert_eq!(s.observe(digest(1), ms(200), ms(201)), Verdict::Wait);
        assert_eq!(s.observe(digest(1), ms(251), ms(252)), Verdict::Wait);
        assert_eq!(s.observe(digest(1), ms(252), ms(253)), Verdict::Judge);
        assert_eq!(s.due(), None);
        // Judged once: later looks at the same observation do nothing.
        for n in [300, 5_000, 60_000] {
            assert_eq!(s.observe(digest(1), ms(n), ms(n + 1)), Verdict::Judged);
        }
        // Something else restarts the wait from its own read.
        assert_eq!(s.observe(digest(2), ms(70_000), ms(70_001)), Verdict::Wait);
        assert_eq!(s.observe(digest(1), ms(70_300), ms(70_301)), Verdict::Wait);
        assert_eq!(s.observe(digest(1), ms(70_552), ms(70_553)), Verdict::Judge);
        s.clear();
        assert_eq!(s.due(), None);
        assert_eq!(s.observe(digest(1), ms(80_000), ms(80_001)), Verdict::Wait);
    }

    #[test]
    fn a_read_during_a_write_never_agrees_with_another() {
        let read = |steady| FileRead {
            bytes: b"{}".to_vec(),
            before: Stamp {
                dev: 1,
                ino: 2,
                len: 2,
                modified: (3, 4),
                changed: (5, 6),
            },
            steady,
        };
        assert_eq!(read(true).version(), read(true).version());
        assert_ne!(read(false).version(), read(false).version());
        let mut moved = read(true);
        moved.before.changed = (5, 7);
        assert_ne!(moved.version(), read(true).version());
    }

    #[test]
    fn zero_quiet_judges_the_first_read() {
        let mut s = Settle::new(settle_gap(Duration::ZERO));
        let t = Instant::now();
        assert_eq!(s.observe(digest(1), t, t), Verdict::Judge);
        assert_eq!(s.observe(digest(1), t, t), Verdict::Judged);
        assert_eq!(settle_gap(DEFAULT_QUIET), Duration::from_millis(250));
    }

    #[test]
    fn a_fixed_set_has_no_file_and_ignores_nudges() {
        let set = KeySet::from_json(jwks(&[testkit::p256().jwk("k")]).as_bytes()).unwrap();
        let f = JwksFile::fixed(set);
        assert_eq!(f.path(), None);
        f.nudge();
        assert_eq!(f.status(), JwksStatus::default());
        assert_eq!(f.keys().kids(), ["k"]);
    }
}
