//! What tilgang tells its operators: Prometheus metrics ([`metrics`], served by
//! [`http`]), the decision log ([`decision_log`]), the admin write and refusal
//! log lines, and how the process's own logs are set up ([`logs`]) and kept
//! from flooding ([`log_gate`]).
//!
//! The services report through one handle, [`Telemetry`]: a decision with
//! [`Telemetry::decided`] (or [`Telemetry::invalid`] for a request that did
//! not parse), an admin write with [`Telemetry::admin_ok`] or
//! [`Telemetry::admin_failed`]. What that costs
//! a decision is a few atomic adds and, with a decision log, one allocation
//! of the entry and a non-blocking `try_send`. This module decides nothing and
//! never fails a call: telemetry that cannot keep up is dropped and counted.

pub mod decision_log;
pub mod log_escape;
pub mod log_gate;
pub mod logs;
pub mod metrics;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::engine::Decision;
use crate::ids::{OrgNumber, PersonId, Scope};
use decision_log::{DecisionLog, Entry, HttpSeen};
use metrics::{AdminKind, AdminResult, Api, Metrics, Outcome, Refusal};

/// The handle every service holds. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Telemetry {
    metrics: Arc<Metrics>,
    /// `None` unless `--decision-log` is given.
    log: Option<DecisionLog>,
}

/// One decision as a service made it. Every field is what the engine was
/// asked and answered, already parsed: no raw request value reaches the log.
#[derive(Debug, Clone, Copy)]
pub struct Decided<'a> {
    pub api: Api,
    /// When the service started on this request (for a batch item: on this
    /// item), taken with `Instant::now()`.
    pub started: Instant,
    /// `None` when the owner acts for itself (no `supplier` claim).
    pub supplier: Option<&'a OrgNumber>,
    pub owner: &'a OrgNumber,
    /// The scope asked for (for `Check`: the route's required scope).
    pub scope: &'a Scope,
    /// The matched route, e.g. `GET /storage/api/v1/instances/{owner}/{id}`:
    /// the route table's template, never the raw path.
    pub route: Option<&'a str>,
    pub decision: &'a Decision,
    /// The revision of the snapshot that decided.
    pub revision: &'a str,
    /// For `Check`: the HTTP request and its answer, escaped.
    pub http: Option<&'a HttpSeen>,
}

/// A `Check` that was answered without a decision.
#[derive(Debug)]
pub struct Unanswered<'a> {
    pub started: Instant,
    pub supplier: Option<OrgNumber>,
    pub owner: Option<OrgNumber>,
    pub scope: Option<&'a str>,
    pub revision: &'a str,
    /// The request and its answer (status, reason), escaped; made only
    /// when decisions are logged ([`Telemetry::logs_decisions`]).
    pub http: Option<HttpSeen>,
}

impl Telemetry {
    pub fn new(metrics: Arc<Metrics>, log: Option<DecisionLog>) -> Self {
        Self { metrics, log }
    }

    /// Counters only, no decision log: for tests and tools.
    pub fn disabled() -> Self {
        Self::new(Arc::new(Metrics::new()), None)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether decisions are logged: what only the log needs (the request
    /// escaped for it) is made only then.
    pub fn logs_decisions(&self) -> bool {
        self.log.is_some()
    }

    /// Count a decision, observe its latency, and queue its log line.
    pub fn decided(&self, d: Decided<'_>) {
        let took = d.started.elapsed();
        let outcome = outcome_of(d.decision);
        self.metrics.decision(d.api, outcome, took);
        if let Some(log) = &self.log {
            log.record(Entry {
                time: SystemTime::now(),
                api: d.api,
                supplier: d.supplier.copied(),
                owner: Some(*d.owner),
                scope: Some(d.scope.to_string()),
                route: d.route.map(str::to_string),
                http: d.http.map(|h| Box::new(h.clone())),
                outcome,
                reasons: d.decision.reasons.clone(),
                errors: d.decision.errors.clone(),
                revision: d.revision.to_string(),
                latency: took,
            });
        }
    }

    /// A request to `api` that did not parse: answered `INVALID_ARGUMENT`,
    /// nothing decided, nothing logged.
    pub fn invalid(&self, api: Api) {
        self.metrics
            .decision(api, Outcome::Invalid, std::time::Duration::ZERO);
    }

    /// A `Check` answered without a decision (no usable token, unreadable
    /// claims, no route): counted as invalid like [`Self::invalid`], and,
    /// unlike a gRPC call that did not parse, logged: the gateway turns it
    /// into a 401 or 403 that someone will want to find. `owner`, `supplier`
    /// and `scope` are whatever was read before the check stopped.
    pub fn check_unanswered(&self, u: Unanswered<'_>) {
        let took = u.started.elapsed();
        self.metrics.decision(Api::Check, Outcome::Invalid, took);
        if let Some(log) = &self.log {
            log.record(Entry {
                time: SystemTime::now(),
                api: Api::Check,
                supplier: u.supplier,
                owner: u.owner,
                scope: u.scope.map(str::to_string),
                route: None,
                http: u.http.map(Box::new),
                outcome: Outcome::Invalid,
                reasons: Vec::new(),
                errors: Vec::new(),
                revision: u.revision.to_string(),
                latency: took,
            });
        }
    }

    /// An admin write took effect; `revision` is the snapshot's after it
    /// (the snapshot age starts when it changed).
    pub fn admin_ok(&self, kind: AdminKind, revision: &str) {
        self.metrics.admin_write(kind, AdminResult::Ok);
        self.metrics.published(revision);
    }

    /// An admin write was not done (or, [`AdminResult::Incomplete`], took
    /// effect but did not complete). Refusals are logged at `warn`; what the
    /// caller must fix at `info`; failures of storage or data are logged at
    /// `error` where they become a status (`grpc::status`).
    pub fn admin_failed(&self, kind: AdminKind, who: Who<'_>, failure: AdminFailure<'_>) {
        let (group, refusal) = match failure {
            AdminFailure::Invalid(_) => (AdminResult::Invalid, None),
            AdminFailure::Store(s) => (s.result, s.refusal),
            AdminFailure::Task => (AdminResult::Failed, None),
        };
        if let Some(reason) = refusal {
            return self.admin_refused(kind, reason, who, &failure, true);
        }
        self.metrics.admin_write(kind, group);
        let actor = who.actor.map_or("-", PersonId::as_str);
        let owner = who.owner.map_or("-", OrgNumber::as_str);
        if matches!(
            group,
            AdminResult::Invalid | AdminResult::NotFound | AdminResult::Conflict
        ) {
            tracing::info!(
                kind = kind.as_str(),
                %actor,
                %owner,
                result = group.as_str(),
                why = %failure,
                "admin write not done"
            );
        }
    }

    /// An admin call refused: not authenticated, `actor` not the caller, or
    /// by the store (forbidden, unknown undo token, `roles.json` invalid).
    /// Counted (a write kind also as a refused write) and, when `logged`,
    /// logged at `warn`: the caller says when, so a flood of refusals is
    /// counted whole but logged no more than it is recorded.
    pub fn admin_refused(
        &self,
        kind: AdminKind,
        reason: Refusal,
        who: Who<'_>,
        why: &dyn std::fmt::Display,
        logged: bool,
    ) {
        if kind.is_write() {
            self.metrics.admin_write(kind, AdminResult::Refused);
        }
        self.metrics.admin_refused(kind, reason);
        if !logged {
            return;
        }
        let actor = who.actor.map_or("-", PersonId::as_str);
        let owner = who.owner.map_or("-", OrgNumber::as_str);
        tracing::warn!(
            kind = kind.as_str(),
            %actor,
            %owner,
            reason = reason.as_str(),
            why = %why,
            "admin call refused"
        );
    }
}

/// Who made an admin call, as far as it parsed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Who<'a> {
    pub actor: Option<&'a PersonId>,
    /// Unknown for an undo until its record is read (and never told).
    pub owner: Option<&'a OrgNumber>,
}

/// Why an admin write was not done.
#[derive(Debug, Clone, Copy)]
pub enum AdminFailure<'a> {
    /// A field did not parse; the message names it, its value cut short
    /// with [`crate::ids::echo`].
    Invalid(&'a str),
    /// The store did not do it (`StoreError::admin_failure`).
    Store(StoreFailure<'a>),
    /// The write task panicked or was cancelled.
    Task,
}

/// A store error in the metrics' words: the `result` label, the `reason`
/// label when it is a refusal, and what to log.
#[derive(Clone, Copy)]
pub struct StoreFailure<'a> {
    pub result: AdminResult,
    pub refusal: Option<Refusal>,
    pub why: &'a (dyn std::fmt::Display + Sync),
}

impl std::fmt::Debug for StoreFailure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreFailure")
            .field("result", &self.result)
            .field("refusal", &self.refusal)
            .field("why", &self.why.to_string())
            .finish()
    }
}

impl AdminFailure<'_> {
    /// The `reason` label, when the failure is a refusal.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Self::Store(s) => s.refusal,
            _ => None,
        }
    }
}

impl std::fmt::Display for AdminFailure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(m) => f.write_str(m),
            Self::Store(s) => write!(f, "{}", s.why),
            Self::Task => f.write_str("the write task failed"),
        }
    }
}

/// The metrics' `result` label of a decision that was made.
pub fn outcome_of(d: &Decision) -> Outcome {
    if d.allowed {
        Outcome::Allow
    } else if d.errors.is_empty() {
        Outcome::Deny
    } else {
        Outcome::Error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_decision() {
        let mut d = Decision::default();
        assert_eq!(outcome_of(&d), Outcome::Deny);
        d.errors.push("overflow".into());
        assert_eq!(outcome_of(&d), Outcome::Error);
        d = Decision {
            allowed: true,
            ..Decision::default()
        };
        assert_eq!(outcome_of(&d), Outcome::Allow);
    }
}
