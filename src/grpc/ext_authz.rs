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
//! (with `failure_mode_allow: false`) also turns into a deny.

use std::sync::Arc;
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, HeaderAppendAction, HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use serde_json::{Map, Value, json};
use tonic::{Request, Response, Status};

use crate::auth::{Verifier, bearer};
use crate::engine;
use crate::gateway::{self, claims::Claims};
use crate::ids::OrgNumber;
use crate::snapshot::SnapshotStore;
use crate::telemetry::metrics::Api;
use crate::telemetry::{Decided, Telemetry};

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
    pub payload_key: String,
    pub verifier: Option<Arc<Verifier>>,
}

impl Default for ClaimSource {
    fn default() -> Self {
        Self {
            payload_key: DEFAULT_PAYLOAD_KEY.to_string(),
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

/// How deep a metadata value may nest; a JWT payload is shallow.
const MAX_DEPTH: usize = 32;

/// A protobuf `Struct` (Envoy's metadata) as JSON.
fn struct_json(s: &Struct, depth: usize) -> Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), value_json(v, depth + 1)))
        .collect()
}

fn value_json(v: &PbValue, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => {
            serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(struct_json(s, depth)),
        Some(Kind::ListValue(l)) => {
            Value::Array(l.values.iter().map(|v| value_json(v, depth + 1)).collect())
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
}

impl ExtAuthzService {
    /// Decide one check over the current snapshot, and report it: a
    /// decision to [`Telemetry::decided`], a check that could not be read
    /// (no claims, no route, a bad org number) as invalid.
    pub fn verdict(&self, req: &CheckRequest) -> Verdict {
        let started = Instant::now();
        let v = self.decide(started, req);
        if !matches!(
            v,
            Verdict::Allow { .. } | Verdict::Deny { decided: true, .. }
        ) {
            self.telemetry.invalid(Api::Check);
        }
        v
    }

    fn decide(&self, started: Instant, req: &CheckRequest) -> Verdict {
        let snap = self.store.load();
        let revision = snap.revision().to_string();
        // `decided`: the engine answered (a decision), rather than the
        // check being unreadable.
        let deny = |reason: String, extra: Value, decided: bool| {
            let mut body = json!({ "allowed": false, "reason": reason, "revision": revision });
            if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
                b.extend(extra);
            }
            Verdict::Deny {
                reason,
                body,
                decided,
            }
        };
        let Some(http) = req
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
        else {
            return deny(
                "the check carries no HTTP request".into(),
                Value::Null,
                false,
            );
        };
        let payload = match self.payload(req, &http.headers) {
            Ok(p) => p,
            Err(reason) => return Verdict::Unauthenticated { reason },
        };
        let claims = match Claims::from_json(&payload) {
            Ok(c) => c,
            Err(e) => {
                return deny(
                    format!("the token's claims cannot be read: {e}"),
                    Value::Null,
                    false,
                );
            }
        };
        let (request, call) = match gateway::prepare(&snap, &http.method, &http.path, claims) {
            Ok(x) => x,
            Err(e) => return deny(e.to_string(), Value::Null, false),
        };
        let d = engine::decide_call(&snap, &request, Some(&call));
        let route = format!("{} {}", call.method, call.route);
        self.telemetry.decided(Decided {
            api: Api::Check,
            started,
            supplier: call.token.supplier.as_ref(),
            owner: &request.owner,
            scope: &request.scope,
            route: Some(&route),
            decision: &d,
            revision: &revision,
        });
        tracing::debug!(
            method = %call.method, path = %call.path, route = %call.route,
            supplier = %request.supplier, owner = %request.owner, scope = %request.scope,
            allowed = d.allowed, reasons = ?d.reasons, errors = ?d.errors,
            revision = %revision, "ext_authz decision"
        );
        if d.allowed {
            return Verdict::Allow {
                supplier: call.token.supplier,
                owner: request.owner,
                revision,
            };
        }
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
        deny(
            reason,
            json!({
                "route": route,
                "scope": request.scope.as_str(),
                "policies": d.reasons,
                "errors": d.errors,
            }),
            true,
        )
    }
}

impl ExtAuthzService {
    /// The token payload: from `jwt_authn`'s metadata, or the bearer token
    /// verified here. Anything else is a reason for a 401.
    fn payload(
        &self,
        req: &CheckRequest,
        headers: &std::collections::HashMap<String, String>,
    ) -> Result<Map<String, Value>, String> {
        let key = &self.claims.payload_key;
        let from_envoy = req
            .attributes
            .as_ref()
            .and_then(|a| a.metadata_context.as_ref())
            .and_then(|m| m.filter_metadata.get(JWT_AUTHN_NAMESPACE))
            .and_then(|s| s.fields.get(key));
        if let Some(payload) = from_envoy {
            return match &payload.kind {
                Some(Kind::StructValue(p)) => Ok(struct_json(p, 0)),
                _ => Err(format!("the token payload `{key}` is not an object")),
            };
        }
        let Some(verifier) = &self.claims.verifier else {
            return Err(format!(
                "no verified token: `{JWT_AUTHN_NAMESPACE}` metadata has no `{key}`"
            ));
        };
        // Envoy passes header names lower-cased.
        let value = headers
            .get("authorization")
            .ok_or_else(|| "no `Authorization: Bearer` token".to_string())?;
        let token = bearer(value)
            .ok_or_else(|| "the `Authorization` header is not `Bearer <token>`".to_string())?;
        verifier
            .verify(token)
            .map(crate::auth::Claims::into_map)
            .map_err(|e| format!("the token is not valid ({}): {e}", e.kind()))
    }
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The verdict as Envoy's `CheckResponse`.
pub fn respond(v: Verdict) -> CheckResponse {
    let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
    let mut response = CheckResponse::new();
    match v {
        Verdict::Allow {
            supplier,
            owner,
            revision,
        } => {
            let mut ok = OkHttpResponseBuilder::new();
            ok.add_header(OWNER_HEADER, owner.as_str(), overwrite, false)
                .add_header(REVISION_HEADER, revision, overwrite, false);
            match supplier {
                Some(s) => {
                    ok.add_header(SUPPLIER_HEADER, s.as_str(), overwrite, false);
                }
                // The owner acts for itself: no supplier, and none a client
                // may have sent.
                None => {
                    ok.remove_header(SUPPLIER_HEADER);
                }
            }
            response.set_status(Status::ok("")).set_http_response(ok);
        }
        Verdict::Deny { reason, body, .. } => {
            let mut denied = DeniedHttpResponseBuilder::new();
            denied
                .set_http_status(HttpStatusCode::Forbidden)
                .add_header("content-type", "application/json", overwrite, false)
                .set_body(body.to_string());
            response
                .set_status(Status::permission_denied(reason))
                .set_http_response(denied);
        }
        Verdict::Unauthenticated { reason } => {
            let body = json!({ "allowed": false, "reason": reason });
            let mut denied = DeniedHttpResponseBuilder::new();
            denied
                .set_http_status(HttpStatusCode::Unauthorized)
                .add_header("content-type", "application/json", overwrite, false)
                .add_header(
                    "www-authenticate",
                    "Bearer realm=\"tilgang\", error=\"invalid_token\"",
                    overwrite,
                    false,
                )
                .set_body(body.to_string());
            response
                .set_status(Status::unauthenticated(reason))
                .set_http_response(denied);
        }
    }
    response
}

#[tonic::async_trait]
impl Authorization for ExtAuthzService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(respond(self.verdict(request.get_ref()))))
    }
}
