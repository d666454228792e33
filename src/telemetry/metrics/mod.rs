//! The metrics: counters and the decision-latency histogram as plain atomics
//! that the services bump, and their exposition in the Prometheus text format
//! (or OpenMetrics, when the scraper asks for it) with `prometheus-client`.
//!
//! What a decision touches is a few relaxed atomic adds, nothing more: no
//! lock, no map lookup, no allocation. A scrape only reads those atomics, so
//! it can never hold a decision up. What is read at scrape time (the
//! snapshot's revision, age and size through [`SnapshotFacts`]; the process's
//! descriptors and memory) comes from the lock-free snapshot load and `/proc`; the one mutex
//! here (when a revision was first seen) is shared by scrapes, reloads and
//! admin writes, never by decisions. This module serves nothing (see
//! `server::metrics_listener`) and decides nothing.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// What a scrape reads of the snapshot deciding now (the snapshot module
/// implements it: this module knows labels, not domain types).
pub trait SnapshotFacts: Send + Sync {
    fn revision(&self) -> &str;
    fn owners(&self) -> usize;
    /// Walks every owner: read once per revision.
    fn delegations(&self) -> usize;
}

/// The snapshot deciding now, read at scrape time.
pub type SnapshotProbe = Arc<dyn Fn() -> Arc<dyn SnapshotFacts> + Send + Sync>;

/// What a scrape reads of a listener's TLS (the `tls` module implements it).
pub trait TlsFacts: Send + Sync {
    /// Certificate changes put in force since start-up.
    fn reloads(&self) -> u64;
    /// Whether the files on disk are refused (the last good ones serve on).
    fn files_refused(&self) -> bool;
    /// When the served certificate expires, in Unix seconds.
    fn expires(&self) -> i64;
}

/// How current the shared store's snapshot is, as a scrape or `/health`
/// reads it (the sidecar builds it from the store's follower).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoreStatus {
    /// The store revision decisions are made at.
    pub revision: u64,
    /// Whether the follower holds a live connection to the store.
    pub connected: bool,
    /// Whether the first snapshot has been loaded.
    pub loaded: bool,
    /// Seconds since the last successful sync (`None`: none yet).
    pub staleness_seconds: Option<f64>,
    /// `--max-staleness` (`None`: never).
    pub max_staleness_seconds: Option<u64>,
    /// Why decisions use no delegations now, if they do not.
    pub withheld: Option<String>,
}

/// Reads the store's status at scrape time.
pub type StoreProbe = Arc<dyn Fn() -> StoreStatus + Send + Sync>;

/// Declares a label enum: its variants, their label values, and `ALL` in
/// index order, so arrays of counters can be indexed by it.
macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];
            const COUNT: usize = Self::ALL.len();

            /// The label value in metrics and in the decision log.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $label),+ }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_enum! {
    /// Which API asked for a decision.
    Api {
        /// `tilgang.v1.Authorizer/IsAuthorized`.
        IsAuthorized => "is_authorized",
        /// `tilgang.v1.Authorizer/BatchIsAuthorized`, counted per item.
        Batch => "batch",
        /// `envoy.service.auth.v3.Authorization/Check`.
        Check => "check",
    }
}

label_enum! {
    /// How a call that asked for a decision ended.
    Outcome {
        Allow => "allow",
        /// A deny that no evaluation error forced.
        Deny => "deny",
        /// A deny forced by evaluation errors (`errors` is not empty).
        Error => "error",
        /// The request was malformed and nothing was decided (a whole batch
        /// counts once).
        Invalid => "invalid",
    }
}

label_enum! {
    /// What a reload looked at: the `unit` label.
    ReloadUnit {
        /// The policies directory as a whole (schema, `*.cedar`, `rights.json`).
        Policies => "policies",
        /// One owner's delegation file (or the listing of `delegations/`).
        Owner => "owner",
        /// `roles.json`.
        Roles => "roles",
    }
}

label_enum! {
    /// Which admin call: the `kind` label. The writes come first
    /// ([`AdminKind::WRITES`]); the reads are counted only when refused.
    AdminKind {
        Delegate => "delegate",
        Revoke => "revoke",
        Undo => "undo",
        ListDelegations => "list_delegations",
        ListRights => "list_rights",
    }
}

label_enum! {
    /// How an admin write ended: the `result` label. Groups the store's
    /// errors by what an operator does about them (`telemetry` maps them).
    AdminResult {
        Ok => "ok",
        /// A malformed field, an unknown right, no rights, owner = supplier:
        /// the caller's to fix.
        Invalid => "invalid",
        /// Refused: see `tilgang_admin_refusals_total` for why.
        Refused => "refused",
        /// Nothing delegated to revoke, or rights not held.
        NotFound => "not_found",
        /// The state does not allow it: an undo token used or expired,
        /// nothing left to restore, policies changed during the write, a hand
        /// edit during the write (retry).
        Conflict => "conflict",
        /// A file on disk the operator must fix: an owner file that does not
        /// load, a symlink where tilgang writes.
        DataError => "data_error",
        /// Reading or writing failed; nothing took effect.
        Storage => "storage",
        /// The shared store (PostgreSQL) was away, or this replica was behind;
        /// nothing took effect.
        Unavailable => "unavailable",
        /// The change took effect but its audit line or durability failed.
        Incomplete => "incomplete",
        /// The write task panicked or was cancelled.
        Failed => "failed",
    }
}

label_enum! {
    /// Why an admin call was refused: the `reason` label.
    Refusal {
        /// No bearer token, or one that does not verify (`--admin-jwks`).
        Unauthenticated => "unauthenticated",
        /// `actor` names someone other than the verified caller.
        ActorMismatch => "actor_mismatch",
        /// The admin policy refuses the actor for the owner.
        Forbidden => "forbidden",
        /// An undo token the actor may not use (unknown, pruned, or another
        /// owner's: one answer for all).
        UnknownToken => "unknown_token",
        /// `roles.json` does not load, so every admin write is refused.
        RolesInvalid => "roles_invalid",
    }
}

impl AdminKind {
    /// The kinds that change delegations (`tilgang_admin_writes_total`).
    pub const WRITES: &'static [Self] = &[Self::Delegate, Self::Revoke, Self::Undo];

    pub fn is_write(self) -> bool {
        Self::WRITES.contains(&self)
    }
}

label_enum! {
    /// Why a decision-log line was not written: the `reason` label.
    Dropped {
        /// The queue to the writer was full (the writer cannot keep up).
        QueueFull => "queue_full",
        /// Writing failed (a full disk, a closed stdout); the lines of that
        /// write are lost.
        WriteError => "write_error",
        /// The writer had stopped (after shutdown).
        Closed => "closed",
        /// Shutdown's bound passed before the writer wrote them (a stuck
        /// disk, or a pipe nobody reads).
        Shutdown => "shutdown",
    }
}

/// Upper bounds of the decision-latency buckets, in nanoseconds: 5 µs to
/// 100 ms. A decision takes microseconds; the upper buckets catch a machine
/// that stalls.
const LATENCY_BOUNDS_NS: [u64; 14] = [
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];

/// A fixed-bucket histogram of atomics: an observation is two relaxed adds
/// (its bucket and the sum). `prometheus-client`'s own histogram takes a lock
/// per observation, which scrapes would share with decisions.
#[derive(Debug, Default)]
struct LatencyHistogram {
    /// Per bucket (not cumulative); the last is everything above the largest
    /// bound. The count is their sum, so `_count` always equals the `+Inf`
    /// bucket even while observations race a scrape.
    buckets: [AtomicU64; LATENCY_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(LATENCY_BOUNDS_NS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// (sum in seconds, count, per-bucket counts with their bounds in seconds).
    fn read(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Relaxed);
            count += n;
            let bound = LATENCY_BOUNDS_NS
                .get(i)
                .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
            buckets.push((bound, n));
        }
        (self.sum_ns.load(Relaxed) as f64 / 1e9, count, buckets)
    }
}

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// Every counter tilgang keeps. Shared behind an `Arc`; every method takes
/// `&self` and is safe to call from any thread.
#[derive(Debug)]
pub struct Metrics {
    /// `[api][outcome]`.
    decisions: [[AtomicU64; Outcome::COUNT]; Api::COUNT],
    latency: [LatencyHistogram; Api::COUNT],
    /// `[unit][0 accepted, 1 rejected]`.
    reloads: [[AtomicU64; 2]; ReloadUnit::COUNT],
    /// `[kind][result]`.
    admin_writes: [[AtomicU64; AdminResult::COUNT]; AdminKind::COUNT],
    /// `[kind][reason]`.
    admin_refusals: [[AtomicU64; Refusal::COUNT]; AdminKind::COUNT],
    log_lines: AtomicU64,
    log_dropped: [AtomicU64; Dropped::COUNT],
    log_write_errors: AtomicU64,
    /// The revision last seen and when it was first seen, for the snapshot
    /// age. Reloads and admin writes report their publishes as they happen;
    /// a scrape that finds a revision nobody reported starts its age then.
    published: Mutex<Published>,
    /// For `process_start_time_seconds`.
    started: SystemTime,
}

#[derive(Debug, Default)]
struct Published {
    revision: String,
    at: Option<SystemTime>,
    /// Delegations in `revision`, counted once per revision (it walks every
    /// owner).
    delegations: Option<usize>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            decisions: std::array::from_fn(|_| counters()),
            latency: Default::default(),
            reloads: std::array::from_fn(|_| counters()),
            admin_writes: std::array::from_fn(|_| counters()),
            admin_refusals: std::array::from_fn(|_| counters()),
            log_lines: AtomicU64::new(0),
            log_dropped: counters(),
            log_write_errors: AtomicU64::new(0),
            published: Mutex::new(Published::default()),
            started: SystemTime::now(),
        }
    }

    /// A decision was made (or, with [`Outcome::Invalid`], refused as
    /// malformed; `took` is then not observed).
    pub fn decision(&self, api: Api, outcome: Outcome, took: Duration) {
        self.decisions[api.index()][outcome.index()].fetch_add(1, Relaxed);
        if outcome != Outcome::Invalid {
            self.latency[api.index()].observe(took);
        }
    }

    /// How many decisions of `api` ended with `outcome` so far.
    pub fn decisions(&self, api: Api, outcome: Outcome) -> u64 {
        self.decisions[api.index()][outcome.index()].load(Relaxed)
    }

    /// A reload of `unit` published new content, now deciding as `revision`.
    /// Call it once per accepted change, after the publish.
    pub fn reload_accepted(&self, unit: ReloadUnit, revision: &str) {
        self.reloads[unit.index()][0].fetch_add(1, Relaxed);
        self.published(revision);
    }

    /// A change to `unit` was rejected; the last good snapshot keeps
    /// deciding. Call it once per rejected change (when it is logged), not on
    /// every look at the same broken content.
    pub fn reload_rejected(&self, unit: ReloadUnit) {
        self.reloads[unit.index()][1].fetch_add(1, Relaxed);
    }

    /// `(accepted, rejected)` reloads of `unit` so far.
    pub fn reloads(&self, unit: ReloadUnit) -> (u64, u64) {
        let r = &self.reloads[unit.index()];
        (r[0].load(Relaxed), r[1].load(Relaxed))
    }

    /// `revision` is now deciding. Starts the snapshot age when it differs
    /// from the revision seen before.
    pub fn published(&self, revision: &str) {
        self.published_at(revision, SystemTime::now());
    }

    fn published_at(&self, revision: &str, now: SystemTime) {
        let mut p = self
            .published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.revision != revision || p.at.is_none() {
            *p = Published {
                revision: revision.to_string(),
                at: Some(now),
                delegations: None,
            };
        }
    }

    pub fn admin_write(&self, kind: AdminKind, result: AdminResult) {
        self.admin_writes[kind.index()][result.index()].fetch_add(1, Relaxed);
    }

    pub fn admin_writes(&self, kind: AdminKind, result: AdminResult) -> u64 {
        self.admin_writes[kind.index()][result.index()].load(Relaxed)
    }

    pub fn admin_refused(&self, kind: AdminKind, reason: Refusal) {
        self.admin_refusals[kind.index()][reason.index()].fetch_add(1, Relaxed);
    }

    pub fn admin_refusals(&self, kind: AdminKind, reason: Refusal) -> u64 {
        self.admin_refusals[kind.index()][reason.index()].load(Relaxed)
    }

    pub(super) fn log_written(&self, lines: u64) {
        self.log_lines.fetch_add(lines, Relaxed);
    }

    pub(super) fn log_dropped(&self, reason: Dropped, lines: u64) {
        self.log_dropped[reason.index()].fetch_add(lines, Relaxed);
    }

    pub(super) fn log_write_failed(&self) {
        self.log_write_errors.fetch_add(1, Relaxed);
    }

    /// Decision-log lines dropped for `reason` so far.
    pub fn log_drops(&self, reason: Dropped) -> u64 {
        self.log_dropped[reason.index()].load(Relaxed)
    }

    /// Decision-log lines written so far.
    pub fn log_lines(&self) -> u64 {
        self.log_lines.load(Relaxed)
    }
}

/// Lines of the process's own log dropped by `telemetry::log_gate`: one
/// count for the process, as its log subscriber is one per process (unlike
/// [`Metrics`], of which tests start many).
static LOG_LINES_SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// A line of the process's own log was dropped by the log gate.
pub fn log_line_suppressed() {
    LOG_LINES_SUPPRESSED.fetch_add(1, Relaxed);
}

/// Lines of the process's own log the log gate dropped since start-up.
pub fn log_lines_suppressed() -> u64 {
    LOG_LINES_SUPPRESSED.load(Relaxed)
}

mod exposition;
pub use exposition::{Exposition, OPENMETRICS, PROMETHEUS_TEXT};

#[cfg(test)]
mod tests;
