//! The JWKS file's watching thread: turns file events, nudges and a periodic
//! re-read into reads of the file, acts on content only once it has settled
//! (see the parent module), and swaps in a new key set or reports why not.

#[allow(unused_imports)]
use super::*;

pub(super) enum Msg {
    Events(DebounceEventResult),
    /// Read the file now (a nudge).
    Look,
}

/// Stops the watching thread when dropped.
pub(super) struct WatchHandle {
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
pub(super) struct Settle {
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
pub(super) enum Verdict {
    /// Settled and not yet judged: load it, or refuse it.
    Judge,
    /// Maybe mid-save: look again at [`Settle::due`].
    Wait,
    /// Judged before and unchanged since.
    Judged,
}

impl Settle {
    pub(super) fn new(gap: Duration) -> Self {
        Self { gap, pending: None }
    }

    pub(super) fn observe(
        &mut self,
        version: Digest,
        started: Instant,
        finished: Instant,
    ) -> Verdict {
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
    pub(super) fn clear(&mut self) {
        self.pending = None;
    }

    /// When the second look at a waiting change is due.
    pub(super) fn due(&self) -> Option<Instant> {
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

pub(super) fn spawn(
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
