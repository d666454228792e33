//! The decision log: one JSON line per decision, written by a thread of its
//! own so that a slow disk or a blocked pipe never holds a decision up.
//!
//! A decision hands its [`Entry`] to a bounded queue with `try_send`; when the
//! queue is full the line is dropped and counted
//! (`tilgang_decision_log_dropped_total{reason="queue_full"}`), never waited
//! for. The writer thread takes what is queued in batches, formats the lines,
//! and writes each batch with one `write`, so lines reach the file within a
//! few milliseconds (and always within a second). A failed write loses that
//! batch's lines, is counted and logged at most every 10 s, and never stops
//! the writer or the sidecar. On shutdown the writer drains the queue, writes
//! it out and stops ([`Writer::close`], bounded by the caller); a writer stuck
//! in a write (a pipe nobody reads) is left behind, and what it had not
//! written is counted and reported. Standard output is written through a
//! descriptor of its own, never `std::io::stdout()`: a writer stuck holding
//! that lock would stop the rest of the process from printing, or exiting.
//!
//! This module decides nothing and knows no gRPC; what a line holds is
//! [`Entry`], filled in by `telemetry::Telemetry::decided`.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvError, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::metrics::{Api, Dropped, Metrics, Outcome};
use crate::ids::OrgNumber;

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `-`: standard output (the sidecar's own logs go to stderr).
    Stdout,
    /// Appended to; created if missing. Rotate it with `copytruncate`: the
    /// file stays open, and `O_APPEND` makes the writes land at the new end.
    File(PathBuf),
}

impl Target {
    /// `-` is stdout; anything else a file path.
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            Self::Stdout
        } else {
            Self::File(PathBuf::from(s))
        }
    }

    fn open(&self) -> io::Result<Box<dyn Write + Send>> {
        Ok(match self {
            Self::Stdout => stdout()?,
            Self::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)?,
            ),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stdout => f.write_str("-"),
            Self::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Standard output as a file of its own (a duplicate of descriptor 1), so
/// that a write blocked on a full pipe holds no lock of `std::io::stdout()`.
#[cfg(unix)]
fn stdout() -> io::Result<Box<dyn Write + Send>> {
    use std::os::fd::AsFd;
    let fd = io::stdout().as_fd().try_clone_to_owned()?;
    Ok(Box::new(std::fs::File::from(fd)))
}

#[cfg(not(unix))]
fn stdout() -> io::Result<Box<dyn Write + Send>> {
    Ok(Box::new(io::stdout()))
}

/// The queue's length when `--decision-log-queue` is not given: about a tenth
/// of a second of the most decisions two cores make, and a few MiB.
pub const DEFAULT_QUEUE: usize = 16_384;

/// One decision, as it is queued. Owned, so the decision's borrows end at once;
/// formatted only on the writer thread.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub api: Api,
    /// `None` when the owner acts for itself, or when a check was answered
    /// before its claims could be read.
    pub supplier: Option<OrgNumber>,
    /// `None` only for a check answered before its claims could be read.
    pub owner: Option<OrgNumber>,
    /// `None` only for a check answered before a route gave it a scope.
    pub scope: Option<String>,
    /// The route the scope came from, when the API has one (`Check`).
    pub route: Option<String>,
    /// For `Check`: the HTTP request as the gateway saw it and what it was
    /// answered.
    pub http: Option<Box<HttpSeen>>,
    pub outcome: Outcome,
    pub reasons: Vec<String>,
    pub errors: Vec<String>,
    pub revision: String,
    pub latency: Duration,
}

/// How long a logged request path may be, in characters, before it is cut.
pub const PATH_CHARS: usize = 256;

/// What a gateway's HTTP request looked like, for `Check` lines. Every value
/// that came from outside is escaped and cut when this is built
/// ([`HttpSeen::new`]), so no raw request byte reaches a log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpSeen {
    pub method: String,
    /// At most [`PATH_CHARS`] characters, then `…`.
    pub path: String,
    /// The HTTP status the gateway is told to answer: 200, 401 or 403.
    pub status: u16,
    /// Why a request was not allowed, as the response body says it.
    pub reason: Option<String>,
    /// Envoy's `x-request-id`, which its access log can show too.
    pub request_id: Option<String>,
    /// A W3C `traceparent`, when the request carried one.
    pub traceparent: Option<String>,
}

impl HttpSeen {
    /// From raw request values; escapes and cuts each one.
    pub fn new(
        method: &str,
        path: &str,
        request_id: Option<&str>,
        traceparent: Option<&str>,
    ) -> Self {
        Self {
            method: crate::ids::echo(method),
            path: crate::ids::echo_within(path, PATH_CHARS),
            status: 0,
            reason: None,
            request_id: request_id.map(crate::ids::echo),
            traceparent: traceparent.map(crate::ids::echo),
        }
    }
}

/// The JSON line: the field names and their order are the log's format.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    api: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    traceparent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supplier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    reasons: &'a [String],
    errors: &'a [String],
    revision: &'a str,
    latency_us: u64,
}

/// RFC 3339 in UTC with milliseconds, always three digits
/// (`2026-01-05T09:00:00.120Z`), so lines sort and compare as text.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

impl Entry {
    fn write_line(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let http = self.http.as_ref();
        let line = Line {
            time: rfc3339_millis(self.time),
            api: self.api.as_str(),
            request_id: http.and_then(|h| h.request_id.as_deref()),
            traceparent: http.and_then(|h| h.traceparent.as_deref()),
            supplier: self.supplier.as_ref().map(OrgNumber::as_str),
            owner: self.owner.as_ref().map(OrgNumber::as_str),
            scope: self.scope.as_deref(),
            method: http.map(|h| h.method.as_str()),
            path: http.map(|h| h.path.as_str()),
            route: self.route.as_deref(),
            status: http.map(|h| h.status),
            result: self.outcome.as_str(),
            reason: http.and_then(|h| h.reason.as_deref()),
            reasons: &self.reasons,
            errors: &self.errors,
            revision: &self.revision,
            latency_us: u64::try_from(self.latency.as_micros()).unwrap_or(u64::MAX),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.push(b'\n');
        Ok(())
    }
}

enum Msg {
    Entry(Entry),
    /// Wakes a writer waiting for entries, so it sees the stop flag at once.
    Stop,
}

/// The sending side, cloned into every service that decides. Never blocks.
#[derive(Clone)]
pub struct DecisionLog {
    tx: SyncSender<Msg>,
    metrics: Arc<Metrics>,
    /// Lines queued and not yet written (or counted as failed).
    pending: Arc<AtomicU64>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionLog").finish_non_exhaustive()
    }
}

impl DecisionLog {
    /// Queue `entry`, or count it as dropped if the queue is full.
    pub fn record(&self, entry: Entry) {
        // Counted before it is sent, so the writer never takes away more
        // than was added.
        self.pending.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Msg::Entry(entry)) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => self.metrics.log_dropped(Dropped::QueueFull, 1),
            Err(TrySendError::Disconnected(_)) => self.metrics.log_dropped(Dropped::Closed, 1),
        }
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The writer thread, for shutdown.
pub struct Writer {
    stop: Arc<AtomicBool>,
    tx: SyncSender<Msg>,
    done: tokio::sync::oneshot::Receiver<()>,
    pending: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

/// On shutdown, a writer that writes nothing for this long is given up on.
pub const STALL: Duration = Duration::from_secs(1);

/// Lines the writer had not written when [`Writer::close`] gave up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwritten(pub u64);

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Ask the writer to write out what is queued and stop; wait at most
    /// `within`, and no more than [`STALL`] while it writes nothing. A writer
    /// stuck in a write (on a pipe nobody reads, say) is left behind, as the
    /// process is ending anyway: the lines it had not written are counted
    /// (`reason="shutdown"`) and returned.
    pub async fn close(self, within: Duration) -> Result<(), Unwritten> {
        let Self {
            stop,
            tx,
            mut done,
            pending,
            metrics,
        } = self;
        stop.store(true, Ordering::SeqCst);
        // When the queue is full the writer is busy and sees the flag after
        // its current batch; otherwise this wakes it.
        let _ = tx.try_send(Msg::Stop);
        drop(tx);
        let deadline = tokio::time::Instant::now() + within;
        let mut before = pending.load(Ordering::Relaxed);
        loop {
            let wait = STALL.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            if tokio::time::timeout(wait, &mut done).await.is_ok() {
                return Ok(());
            }
            let now = pending.load(Ordering::Relaxed);
            if now >= before || tokio::time::Instant::now() >= deadline {
                break;
            }
            before = now;
        }
        let unwritten = pending.load(Ordering::Relaxed);
        metrics.log_dropped(Dropped::Shutdown, unwritten);
        Err(Unwritten(unwritten))
    }
}

/// Open `target` and start its writer with a queue of `capacity` lines.
pub fn open(
    target: &Target,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> io::Result<(DecisionLog, Writer)> {
    start(target.open()?, capacity, metrics)
}

/// Start a writer thread writing to `out`.
pub fn start(
    out: Box<dyn Write + Send>,
    capacity: usize,
    metrics: Arc<Metrics>,
) -> io::Result<(DecisionLog, Writer)> {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let pending = Arc::new(AtomicU64::new(0));
    let lines = Lines::new(out, metrics.clone(), pending.clone());
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("decision-log".into())
        .spawn(move || {
            run(rx, lines, &flag);
            let _ = done_tx.send(());
        })?;
    Ok((
        DecisionLog {
            tx: tx.clone(),
            metrics: metrics.clone(),
            pending: pending.clone(),
        },
        Writer {
            stop,
            tx,
            done,
            pending,
            metrics,
        },
    ))
}

/// A batch is written once it reaches this size, even if more is queued.
const BATCH_BYTES: usize = 64 * 1024;
/// After writing a batch the writer pauses this long, so the next batch
/// gathers and decisions do not each wake it: under load it writes at most
/// about a hundred times a second; alone, a line is written at once.
const BATCH_PAUSE: Duration = Duration::from_millis(10);
/// Write errors are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

fn run(rx: Receiver<Msg>, mut lines: Lines, stop: &AtomicBool) {
    loop {
        // Wait for the first line of a batch (the only blocking wait).
        match rx.recv() {
            Ok(Msg::Entry(e)) => lines.push(&e),
            Ok(Msg::Stop) => {}
            Err(RecvError) => break,
        }
        let stopping = stop.load(Ordering::SeqCst);
        // Take the rest of the batch; when stopping, everything queued.
        loop {
            if lines.buf.len() >= BATCH_BYTES {
                lines.write();
            }
            match rx.try_recv() {
                Ok(Msg::Entry(e)) => lines.push(&e),
                Ok(Msg::Stop) => {}
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        lines.write();
        if stopping || stop.load(Ordering::SeqCst) {
            // Anything queued between the drain and the flag.
            while let Ok(m) = rx.try_recv() {
                if let Msg::Entry(e) = m {
                    lines.push(&e);
                }
            }
            break;
        }
        std::thread::sleep(BATCH_PAUSE);
    }
    lines.write();
}

/// Formatted lines waiting to be written, and what became of earlier writes.
struct Lines {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    count: u64,
    metrics: Arc<Metrics>,
    /// Shared with [`DecisionLog`]: lines leave it once written or lost.
    pending: Arc<AtomicU64>,
    /// A write failed, so the file may end in part of a line: the next write
    /// starts with a newline, so every later line parses on its own.
    torn: bool,
    last_warning: Option<Instant>,
    failures_since_warning: u64,
}

impl Lines {
    fn new(out: Box<dyn Write + Send>, metrics: Arc<Metrics>, pending: Arc<AtomicU64>) -> Self {
        Self {
            out,
            buf: Vec::with_capacity(BATCH_BYTES + 4096),
            count: 0,
            metrics,
            pending,
            torn: false,
            last_warning: None,
            failures_since_warning: 0,
        }
    }

    fn push(&mut self, e: &Entry) {
        let len = self.buf.len();
        match e.write_line(&mut self.buf) {
            Ok(()) => self.count += 1,
            Err(_) => {
                self.buf.truncate(len);
                self.metrics.log_dropped(Dropped::WriteError, 1);
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Write the batch out with one `write` where possible.
    fn write(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let result = (|| {
            if self.torn {
                self.out.write_all(b"\n")?;
            }
            self.out.write_all(&self.buf)?;
            self.out.flush()
        })();
        match result {
            Ok(()) => {
                self.torn = false;
                self.metrics.log_written(self.count);
            }
            Err(e) => {
                self.torn = true;
                self.metrics.log_write_failed();
                self.metrics.log_dropped(Dropped::WriteError, self.count);
                self.warn(&e);
            }
        }
        self.pending.fetch_sub(self.count, Ordering::Relaxed);
        self.buf.clear();
        self.count = 0;
    }

    fn warn(&mut self, e: &io::Error) {
        self.failures_since_warning += 1;
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < WARN_EVERY)
        {
            return;
        }
        tracing::warn!(
            error = %e,
            failed_writes = self.failures_since_warning,
            "cannot write the decision log; the lines of failed writes are lost and counted in tilgang_decision_log_dropped_total"
        );
        self.last_warning = Some(now);
        self.failures_since_warning = 0;
    }
}

#[cfg(test)]
mod tests;
