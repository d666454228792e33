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

    /// Swap in a new key set for one made with [`Self::fixed`], whose owner
    /// keeps it current from elsewhere (the OpenID client, from the
    /// provider's `jwks_uri`). Returns false, and changes nothing, for a
    /// watched file: its keys are the file's.
    pub fn replace(&self, keys: KeySet) -> bool {
        if self.shared.path.is_some() {
            return false;
        }
        self.shared.keys.store(Arc::new(keys));
        true
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

mod watch;
use watch::{Msg, WatchHandle, spawn};
#[cfg(test)]
use watch::{Settle, Verdict};

#[cfg(test)]
mod tests;
