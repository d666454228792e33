//! `envoy.service.auth.v3.Authorization/Check`: Envoy's external authorization,
//! on the gateway listener beside `tilgang.v1.Authorizer`, so any gateway or
//! mesh that speaks ext_authz can put tilgang in front of an API unchanged.
//!
//! The adapter reads what Envoy sends (the HTTP request, and the token's
//! claims from `jwt_authn`'s metadata, or, without `jwt_authn`, the bearer
//! token, which it verifies itself with [`crate::auth::Verifier`]), asks [`gateway::prepare`] for the
//! engine's request and Cedar for the decision, and answers in Envoy's terms:
//! OK with `x-tilgang-*` headers for the upstream, 403 with a small JSON body
//! naming the reason, 401 when there are no usable claims. Every failure is a
//! deny; the RPC itself only fails when its bytes do not decode, which Envoy
//! (with `failure_mode_allow: false`) also turns into a deny. [`server`] is
//! the service on the wire.

mod reply;
mod server;
mod wire;
pub use reply::{encode_reply, respond};
pub use server::CheckServer;
pub use wire::{CheckCall, HttpCall, Payload, UnreadableCheck};

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::auth::{Verifier, bearer};
use crate::engine;
use crate::gateway::{
    self,
    claims::{Claims, ClaimsError},
};
use crate::grpc::freshness;
use crate::ids::OrgNumber;
use crate::snapshot::Snapshot;
use crate::snapshot::SnapshotStore;
use crate::telemetry::decision_log::HttpSeen;
use crate::telemetry::metrics::Api;
use crate::telemetry::{Decided, Telemetry, Unanswered};

/// The metadata namespace Envoy's `jwt_authn` filter writes.
pub const JWT_AUTHN_NAMESPACE: &str = "envoy.filters.http.jwt_authn";
/// The default `payload_in_metadata` key.
pub const DEFAULT_PAYLOAD_KEY: &str = "jwt_payload";

/// Headers tilgang sets on an allowed request for the upstream. A client's
/// own headers of these names are overwritten or removed, never passed on.
pub const SUPPLIER_HEADER: &str = "x-tilgang-supplier";
pub const OWNER_HEADER: &str = "x-tilgang-owner";
pub const REVISION_HEADER: &str = "x-tilgang-revision";

/// Where the caller's claims come from: `jwt_authn`'s metadata when Envoy
/// verified the token, else the `Authorization: Bearer` token verified here
/// (when `serve` has `--jwks`).
#[derive(Debug, Clone)]
pub struct ClaimSource {
    /// The key under [`JWT_AUTHN_NAMESPACE`] that holds the verified payload.
    pub payload_key: Arc<str>,
    pub verifier: Option<Arc<Verifier>>,
}

impl Default for ClaimSource {
    fn default() -> Self {
        Self {
            payload_key: DEFAULT_PAYLOAD_KEY.into(),
            verifier: None,
        }
    }
}

pub struct ExtAuthzService {
    store: Arc<SnapshotStore>,
    claims: ClaimSource,
    telemetry: Telemetry,
}

impl ExtAuthzService {
    pub fn new(store: Arc<SnapshotStore>, claims: ClaimSource, telemetry: Telemetry) -> Self {
        Self {
            store,
            claims,
            telemetry,
        }
    }
}

/// What `Check` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow {
        supplier: Option<OrgNumber>,
        owner: OrgNumber,
        revision: String,
    },
    /// 403: the request was read and is not allowed (`decided`), or it could
    /// not be read.
    Deny {
        reason: String,
        body: Value,
        decided: bool,
    },
    /// 401: no usable credentials.
    Unauthenticated { reason: String },
    /// 503: the check named a store revision (`x-tilgang-min-revision`)
    /// this replica did not reach in time; nothing was decided.
    Unavailable { reason: String },
}

/// A check the engine decided: its verdict and what the log needs.
struct Judged<'a> {
    verdict: Verdict,
    request: engine::AccessRequest,
    supplier: Option<OrgNumber>,
    /// The route template matched (shown as `METHOD template`, formatted
    /// only for a log line or a deny's body).
    template: &'a str,
    decision: engine::Decision,
}

/// A check answered before a decision: its verdict (401, or a 403 that
/// decided nothing) and whatever was read before it stopped.
struct Undecided {
    verdict: Box<Verdict>,
    claims: Option<(OrgNumber, Option<OrgNumber>)>,
}

impl From<Verdict> for Undecided {
    fn from(verdict: Verdict) -> Self {
        Self {
            verdict: Box::new(verdict),
            claims: None,
        }
    }
}

impl Verdict {
    /// The HTTP status Envoy answers with, and the reason it shows.
    fn status(&self) -> (u16, Option<&str>) {
        match self {
            Self::Allow { .. } => (200, None),
            Self::Deny { reason, .. } => (403, Some(reason)),
            Self::Unauthenticated { reason } => (401, Some(reason)),
            Self::Unavailable { reason } => (503, Some(reason)),
        }
    }
}

impl ExtAuthzService {
    /// Decide one check over `snap`, and report it: every answer is counted
    /// and, with a decision log, logged with the request it answered
    /// (escaped) and Envoy's `x-request-id`, so that a 401 or 403 in the
    /// gateway's access log can be found here too.
    pub fn verdict_at(&self, snap: &Snapshot, req: CheckCall) -> Verdict {
        let started = Instant::now();
        let revision = snap.revision();
        let CheckCall { http, payload } = req;
        let http = http.as_ref();
        // Escaped for the decision log only when there is one.
        let mut seen = self.telemetry.logs_decisions().then(|| {
            http.map_or_else(HttpSeen::default, |h| {
                HttpSeen::new(
                    &h.method,
                    &h.path,
                    h.request_id.as_deref(),
                    h.traceparent.as_deref(),
                )
            })
        });
        let (method, path) = http.map_or(("", ""), |h| (h.method.as_str(), h.path.as_str()));
        let answered = match http {
            Some(http) => self.decide(snap, payload, http),
            None => Err(self
                .deny(
                    revision,
                    "the check carries no HTTP request".into(),
                    Value::Null,
                    false,
                )
                .into()),
        };
        match answered {
            Ok(j) => {
                if let Some(seen) = &mut seen {
                    let (status, reason) = j.verdict.status();
                    seen.status = status;
                    seen.reason = reason.map(str::to_string);
                }
                self.telemetry.decided(Decided {
                    api: Api::Check,
                    started,
                    supplier: j.supplier.as_ref(),
                    owner: &j.request.owner,
                    scope: &j.request.scope,
                    route: seen.is_some().then(|| route(method, j.template)).as_deref(),
                    decision: &j.decision,
                    revision,
                    http: seen.as_ref(),
                });
                tracing::debug!(
                    method = %crate::ids::echo(method), path = %crate::ids::echo(path), route = %route(method, j.template),
                    supplier = %j.request.supplier, owner = %j.request.owner,
                    scope = %j.request.scope, allowed = j.decision.allowed,
                    reasons = ?j.decision.reasons, errors = ?j.decision.errors,
                    revision = %revision, "ext_authz decision"
                );
                j.verdict
            }
            Err(u) => {
                let (status, reason) = u.verdict.status();
                if let Some(seen) = &mut seen {
                    seen.status = status;
                    seen.reason = reason.map(str::to_string);
                }
                tracing::debug!(
                    method = %crate::ids::echo(method), path = %crate::ids::echo(path), status,
                    reason = %reason.map(crate::ids::echo).unwrap_or_default(),
                    revision = %revision, "ext_authz answered without a decision"
                );
                let (owner, supplier) = u.claims.unzip();
                self.telemetry.check_unanswered(Unanswered {
                    started,
                    supplier: supplier.flatten(),
                    owner,
                    scope: None,
                    revision,
                    http: seen,
                });
                *u.verdict
            }
        }
    }

    /// The store revision a check must be answered at or after (0: any): the
    /// larger of the checked request's `x-tilgang-min-revision` header and
    /// the same gRPC metadata on the `Check` call; or why it cannot be read.
    pub fn min_revision(
        req: &CheckCall,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<u64, String> {
        let header = req.http.as_ref().and_then(|h| h.min_revision.as_ref());
        let from_http = match header {
            Some(v) => freshness::parse(freshness::MIN_REVISION_HEADER, v)?,
            None => 0,
        };
        let from_grpc = freshness::from_metadata(metadata).map_err(|s| s.message().to_string())?;
        Ok(from_http.max(from_grpc))
    }

    /// The current snapshot: a check decides over the one it read its
    /// store revision from.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.store.load()
    }

    /// The answer to a check whose minimum revision cannot be read: 403, and why.
    pub fn unreadable(&self, reason: String) -> Verdict {
        self.deny(self.store.load().revision(), reason, Value::Null, false)
    }

    /// Wait for this replica to reach `min`, then decide; still behind after
    /// [`freshness::MIN_REVISION_WAIT`], answer 503 with the reason.
    pub async fn verdict_at_least(&self, min: u64, req: CheckCall) -> Verdict {
        match self.store.at_least(min, freshness::MIN_REVISION_WAIT).await {
            Ok(snap) => self.verdict_at(&snap, req),
            Err(b) => Verdict::Unavailable {
                reason: freshness::behind_reason(&b, &self.store.load()),
            },
        }
    }

    /// A 403: `decided` when the engine answered, rather than the check
    /// being unreadable.
    fn deny(&self, revision: &str, reason: String, extra: Value, decided: bool) -> Verdict {
        let mut body = json!({ "allowed": false, "reason": reason, "revision": revision });
        if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
            b.extend(extra);
        }
        Verdict::Deny {
            reason,
            body,
            decided,
        }
    }

    fn decide<'a>(
        &self,
        snap: &'a Snapshot,
        payload: Option<Payload>,
        http: &'a HttpCall,
    ) -> Result<Judged<'a>, Undecided> {
        let revision = snap.revision();
        let claims = self
            .claims(payload, http)
            .map_err(|reason| Verdict::Unauthenticated { reason })?;
        let claims = claims.map_err(|e| {
            self.deny(
                revision,
                format!("the token's claims cannot be read: {e}"),
                Value::Null,
                false,
            )
        })?;
        let read = (claims.consumer, claims.supplier);
        let (request, call) =
            gateway::prepare(&snap.policies.routes, &http.method, &http.path, claims).map_err(
                |e| Undecided {
                    verdict: Box::new(self.deny(revision, e.to_string(), Value::Null, false)),
                    claims: Some(read),
                },
            )?;
        let d = engine::decide_call(snap, &request, Some(&call));

        let verdict = if d.allowed {
            Verdict::Allow {
                supplier: call.token.supplier,
                owner: request.owner,
                revision: revision.to_string(),
            }
        } else {
            let reason = if !d.errors.is_empty() {
                "the policies could not be evaluated; denied".to_string()
            } else if !d.reasons.is_empty() {
                format!("forbidden by policy {}", quoted(&d.reasons))
            } else if call.token.supplier.is_some() {
                format!(
                    "{} has not delegated a right giving `{}` to {}",
                    request.owner, request.scope, request.supplier
                )
            } else {
                format!(
                    "no policy permits `{}` for {}",
                    request.scope, request.owner
                )
            };
            self.deny(
                revision,
                reason,
                json!({
                    "route": route(call.method, call.route),
                    "scope": request.scope.as_str(),
                    "policies": d.reasons,
                    "errors": d.errors,
                }),
                true,
            )
        };
        Ok(Judged {
            verdict,
            supplier: call.token.supplier,
            request,
            template: call.route,
            decision: d,
        })
    }
}

impl ExtAuthzService {
    /// The token's claims: from `jwt_authn`'s metadata, or the bearer token
    /// verified here. The outer error is a reason for a 401 (no usable
    /// token); the inner one, claims that do not have Maskinporten's shape.
    fn claims(
        &self,
        payload: Option<Payload>,
        http: &HttpCall,
    ) -> Result<Result<Claims, ClaimsError>, String> {
        let key = &self.claims.payload_key;
        match payload {
            // Only the claims `Claims` reads: the payload's other claims
            // (`iss`, `exp`, `jti`, ...) are Envoy's business, not decoded.
            Some(Payload::Claims(claims)) => return Ok(claims),
            Some(Payload::NotObject) => {
                return Err(format!("the token payload `{key}` is not an object"));
            }
            None => {}
        }
        let Some(verifier) = &self.claims.verifier else {
            return Err(format!(
                "no verified token: `{JWT_AUTHN_NAMESPACE}` metadata has no `{key}`"
            ));
        };
        // Envoy passes header names lower-cased.
        let value = http
            .authorization
            .as_deref()
            .ok_or_else(|| "no `Authorization: Bearer` token".to_string())?;
        let value = std::str::from_utf8(value)
            .map_err(|_| "the `Authorization` header is not valid UTF-8".to_string())?;
        let token = bearer(value)
            .ok_or_else(|| "the `Authorization` header is not `Bearer <token>`".to_string())?;
        verifier
            .verify(token)
            .map(|c| Claims::from_json(&c.into_map()))
            .map_err(|e| format!("the token is not valid ({}): {e}", e.kind()))
    }
}

/// A route as the log and a deny's body show it: `GET /storage/…/{id}`.
fn route(method: &str, template: &str) -> String {
    format!("{method} {template}")
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
