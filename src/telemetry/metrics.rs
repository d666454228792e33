//! The metrics: counters and the decision-latency histogram as plain atomics
//! that the services bump, and their exposition in the Prometheus text format
//! (or OpenMetrics, when the scraper asks for it) with `prometheus-client`.
//!
//! What a decision touches is a few relaxed atomic adds, nothing more: no
//! lock, no map lookup, no allocation. A scrape only reads those atomics, so
//! it can never hold a decision up. What is read at scrape time (the
//! snapshot's revision, age and size; the process's descriptors and memory)
//! comes from the lock-free `SnapshotStore::load` and `/proc`; the one mutex
//! here (when a revision was first seen) is shared by scrapes, reloads and
//! admin writes, never by decisions. This module serves nothing (see
//! `telemetry::http`) and decides nothing.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::engine::Decision;
use crate::snapshot::SnapshotStore;
use crate::store::StoreError;

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

impl Outcome {
    /// The outcome of a decision that was made.
    pub fn of(d: &Decision) -> Self {
        if d.allowed {
            Self::Allow
        } else if d.errors.is_empty() {
            Self::Deny
        } else {
            Self::Error
        }
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
    /// Which admin write: the `kind` label.
    AdminKind {
        Delegate => "delegate",
        Revoke => "revoke",
        Undo => "undo",
    }
}

label_enum! {
    /// How an admin write ended: the `result` label. Groups the
    /// [`StoreError`] variants by what an operator does about them.
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
        /// The change took effect but its audit line or durability failed.
        Incomplete => "incomplete",
        /// The write task panicked or was cancelled.
        Failed => "failed",
    }
}

label_enum! {
    /// Why an admin call was refused: the `reason` label.
    Refusal {
        /// The admin policy refuses the actor for the owner.
        Forbidden => "forbidden",
        /// An undo token the actor may not use (unknown, pruned, or another
        /// owner's: one answer for all).
        UnknownToken => "unknown_token",
        /// `roles.json` does not load, so every admin write is refused.
        RolesInvalid => "roles_invalid",
    }
}

impl AdminResult {
    /// The group a store error falls in, and the refusal reason when it is a
    /// refusal. Every variant is named, so a new one must be placed here.
    pub fn of(e: &StoreError) -> (Self, Option<Refusal>) {
        match e {
            StoreError::UnknownRight { .. }
            | StoreError::NoRights { .. }
            | StoreError::SameParty { .. } => (Self::Invalid, None),
            StoreError::Forbidden { .. } => (Self::Refused, Some(Refusal::Forbidden)),
            StoreError::UnknownToken { .. } => (Self::Refused, Some(Refusal::UnknownToken)),
            StoreError::RolesInvalid(_) => (Self::Refused, Some(Refusal::RolesInvalid)),
            StoreError::NothingDelegated { .. } | StoreError::NotDelegated { .. } => {
                (Self::NotFound, None)
            }
            StoreError::TokenUsed { .. }
            | StoreError::TokenExpired { .. }
            | StoreError::NothingToRestore { .. }
            | StoreError::DoesNotFitPolicies(_)
            | StoreError::ConcurrentEdit { .. } => (Self::Conflict, None),
            StoreError::CorruptFile(_) | StoreError::Symlink(_) => (Self::DataError, None),
            StoreError::Storage(_) => (Self::Storage, None),
            StoreError::InEffect { .. } => (Self::Incomplete, None),
        }
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

/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What a scrape sees: the counters and the current snapshot.
#[derive(Debug)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(metrics: Arc<Metrics>, snapshots: Arc<SnapshotStore>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape { metrics, snapshots }));
        Self { registry }
    }

    /// The exposition and its content type: OpenMetrics when the scraper's
    /// `Accept` header asks for it (Prometheus does), the Prometheus text
    /// format otherwise.
    pub fn render(&self, accept: Option<&str>) -> Result<(&'static str, String), std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
            Ok((OPENMETRICS, out))
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
            Ok((PROMETHEUS_TEXT, out))
        }
    }
}

/// Encodes everything on each scrape.
#[derive(Debug)]
struct Scrape {
    metrics: Arc<Metrics>,
    snapshots: Arc<SnapshotStore>,
}

type Fmt = Result<(), std::fmt::Error>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'static str, &'static str)>, u64)>,
) -> Fmt {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: V,
) -> Fmt {
    ConstGauge::new(v).encode(enc.encode_descriptor(name, help, unit, MetricType::Gauge)?)
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Fmt {
        let m = &*self.metrics;
        counter(
            &mut enc,
            "tilgang_decisions",
            "Calls that asked for a decision, by API and result (allow; deny; error: a deny forced by evaluation errors; invalid: a malformed request, nothing decided). Batch items count one each; a rejected batch counts once.",
            Api::ALL.iter().flat_map(|&api| {
                Outcome::ALL.iter().map(move |&o| {
                    (
                        vec![("api", api.as_str()), ("result", o.as_str())],
                        m.decisions(api, o),
                    )
                })
            }),
        )?;
        {
            let unit = Unit::Seconds;
            let mut h = enc.encode_descriptor(
                "tilgang_decision_duration",
                "Time to decide one request, from the decoded request to the decision (a batch item: its own decision).",
                Some(&unit),
                MetricType::Histogram,
            )?;
            for &api in Api::ALL {
                let (sum, count, buckets) = m.latency[api.index()].read();
                h.encode_family(&[("api", api.as_str())])?
                    .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
            }
        }
        counter(
            &mut enc,
            "tilgang_reloads",
            "Changes on disk looked at by the reloader, by unit and result (accepted: published; rejected: the last good snapshot keeps deciding).",
            ReloadUnit::ALL.iter().flat_map(|&u| {
                let (accepted, rejected) = m.reloads(u);
                [
                    (vec![("unit", u.as_str()), ("result", "accepted")], accepted),
                    (vec![("unit", u.as_str()), ("result", "rejected")], rejected),
                ]
            }),
        )?;
        counter(
            &mut enc,
            "tilgang_admin_writes",
            "Admin writes (delegate, revoke, undo) by kind and result.",
            AdminKind::ALL.iter().flat_map(|&k| {
                AdminResult::ALL.iter().map(move |&r| {
                    (
                        vec![("kind", k.as_str()), ("result", r.as_str())],
                        m.admin_writes(k, r),
                    )
                })
            }),
        )?;
        counter(
            &mut enc,
            "tilgang_admin_refusals",
            "Admin writes refused, by kind and reason (forbidden by the admin policy, unknown undo token, roles.json invalid).",
            AdminKind::ALL.iter().flat_map(|&k| {
                Refusal::ALL.iter().map(move |&r| {
                    (
                        vec![("kind", k.as_str()), ("reason", r.as_str())],
                        m.admin_refusals(k, r),
                    )
                })
            }),
        )?;
        counter(
            &mut enc,
            "tilgang_decision_log_lines",
            "Decision-log lines written.",
            [(vec![], m.log_lines())],
        )?;
        counter(
            &mut enc,
            "tilgang_decision_log_dropped",
            "Decision-log lines not written, by reason (queue_full: the writer could not keep up; write_error: the write failed; closed: after shutdown).",
            Dropped::ALL
                .iter()
                .map(|&d| (vec![("reason", d.as_str())], m.log_drops(d))),
        )?;
        counter(
            &mut enc,
            "tilgang_decision_log_write_errors",
            "Failed writes to the decision log.",
            [(vec![], m.log_write_errors.load(Relaxed))],
        )?;

        let snap = self.snapshots.load();
        let now = SystemTime::now();
        m.published_at(snap.revision(), now);
        let (since, delegations) = {
            let mut p = m
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let delegations = *p
                .delegations
                .get_or_insert_with(|| snap.owners.values().map(|o| o.by_supplier.len()).sum());
            (p.at, delegations)
        };
        enc.encode_descriptor(
            "tilgang_snapshot",
            "The snapshot deciding now; its revision is a label.",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("revision", snap.revision())])?;
        let age = since
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        gauge(
            &mut enc,
            "tilgang_snapshot_age",
            "Seconds since the snapshot deciding now was published.",
            Some(&Unit::Seconds),
            age.as_secs_f64(),
        )?;
        gauge(
            &mut enc,
            "tilgang_snapshot_owners",
            "Owners with a delegation file loaded.",
            None,
            snap.owners.len() as i64,
        )?;
        gauge(
            &mut enc,
            "tilgang_snapshot_delegations",
            "Delegations (owner, supplier pairs) loaded.",
            None,
            delegations as i64,
        )?;
        process(&mut enc, m.started)
    }
}

/// The standard process metrics (the names every Prometheus client library
/// uses, so existing dashboards work), read from `/proc` at scrape time.
/// What cannot be read is left out.
fn process(enc: &mut DescriptorEncoder, started: SystemTime) -> Fmt {
    gauge(
        enc,
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds.",
        None,
        unix_seconds(started).floor(),
    )?;
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // Includes the descriptor of the listing itself.
        let open = dir.count().saturating_sub(1);
        gauge(
            enc,
            "process_open_fds",
            "Number of open file descriptors.",
            None,
            open as i64,
        )?;
    }
    gauge(
        enc,
        "process_max_fds",
        "Maximum number of open file descriptors (the soft limit).",
        None,
        max_fds(),
    )?;
    if let Some(rss) = resident_bytes() {
        gauge(
            enc,
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            None,
            rss,
        )?;
    }
    Ok(())
}

/// The soft `RLIMIT_NOFILE` (`i64::MAX` when unlimited).
fn max_fds() -> i64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

/// `VmRSS` from `/proc/self/status`, in bytes.
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket_and_count_is_the_bucket_total() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(3)); // <= 5 µs
        h.observe(Duration::from_micros(5)); // <= 5 µs (bounds are inclusive)
        h.observe(Duration::from_micros(40)); // <= 50 µs
        h.observe(Duration::from_secs(1)); // over every bound
        let (sum, count, buckets) = h.read();
        assert_eq!(count, 4);
        assert_eq!(buckets[0], (5e-6, 2));
        assert_eq!(buckets[3], (5e-5, 1));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((sum - 1.000048).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn outcomes_follow_the_decision() {
        let mut d = Decision::default();
        assert_eq!(Outcome::of(&d), Outcome::Deny);
        d.errors.push("overflow".into());
        assert_eq!(Outcome::of(&d), Outcome::Error);
        d = Decision {
            allowed: true,
            ..Decision::default()
        };
        assert_eq!(Outcome::of(&d), Outcome::Allow);
    }

    #[test]
    fn a_revision_ages_from_when_it_was_first_reported() {
        let m = Metrics::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1000);
        m.published_at("a", t0);
        m.published_at("a", t0 + Duration::from_secs(5));
        assert_eq!(m.published.lock().unwrap().at, Some(t0));
        m.published_at("b", t0 + Duration::from_secs(7));
        let p = m.published.lock().unwrap();
        assert_eq!(
            (p.revision.as_str(), p.at),
            ("b", Some(t0 + Duration::from_secs(7)))
        );
    }

    #[test]
    fn label_enums_index_their_arrays_in_order() {
        for (i, a) in Api::ALL.iter().enumerate() {
            assert_eq!(a.index(), i);
        }
        for (i, r) in AdminResult::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(Refusal::COUNT, 3);
    }
}
