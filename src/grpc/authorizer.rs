//! `tilgang.v1.Authorizer`: the data plane gateways call on every request.
//! Every call is reported to [`Telemetry`]: each decision (a batch item is
//! one), or once for a request that does not parse.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::freshness;
use crate::engine::{self, AccessRequest};
use crate::ids::IdError;
use crate::ids::{OrgNumber, Scope};
use crate::proto::authorizer_server::Authorizer;
use crate::proto::{
    BatchIsAuthorizedRequest, BatchIsAuthorizedResponse, IsAuthorizedRequest, IsAuthorizedResponse,
};
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::telemetry::metrics::Api;
use crate::telemetry::{Decided, Telemetry};

/// The most requests one `BatchIsAuthorized` call may carry.
pub const MAX_BATCH: usize = 1000;

pub struct AuthorizerService {
    store: Arc<SnapshotStore>,
    telemetry: Telemetry,
}

impl AuthorizerService {
    pub fn new(store: Arc<SnapshotStore>, telemetry: Telemetry) -> Self {
        Self { store, telemetry }
    }

    /// Decide `req` with `snap` and report it.
    fn decide(
        &self,
        api: Api,
        started: Instant,
        snap: &Snapshot,
        req: &AccessRequest,
    ) -> IsAuthorizedResponse {
        let d = engine::decide(snap, req);
        self.telemetry.decided(Decided {
            api,
            started,
            supplier: Some(&req.supplier),
            owner: &req.owner,
            scope: &req.scope,
            route: None,
            decision: &d,
            revision: snap.revision(),
            http: None,
        });
        respond(d, snap)
    }

    /// The snapshot for a request naming `min` (0: the current one).
    async fn snapshot(&self, min: u64) -> Result<Arc<Snapshot>, Status> {
        if min == 0 {
            return Ok(self.store.load());
        }
        freshness::snapshot_at(&self.store, min).await
    }
}

fn parse(req: &IsAuthorizedRequest, prefix: &str) -> Result<AccessRequest, Status> {
    // As `super::field` words it, with the name spelled out only for an
    // error: this runs for every call.
    let at = |name: &'static str| {
        move |e: IdError| Status::invalid_argument(format!("`{prefix}{name}` {e}"))
    };
    Ok(AccessRequest {
        supplier: OrgNumber::parse(&req.supplier).map_err(at("supplier"))?,
        owner: OrgNumber::parse(&req.owner).map_err(at("owner"))?,
        scope: Scope::parse(&req.scope).map_err(at("scope"))?,
    })
}

fn respond(d: engine::Decision, snap: &Snapshot) -> IsAuthorizedResponse {
    IsAuthorizedResponse {
        allowed: d.allowed,
        reasons: d.reasons,
        errors: d.errors,
        revision: snap.revision().to_string(),
        store_revision: snap.store_revision(),
    }
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn is_authorized(
        &self,
        request: Request<IsAuthorizedRequest>,
    ) -> Result<Response<IsAuthorizedResponse>, Status> {
        let started = Instant::now();
        let req = parse(request.get_ref(), "")
            .inspect_err(|_| self.telemetry.invalid(Api::IsAuthorized))?;
        let min = freshness::from_metadata(request.metadata())
            .inspect_err(|_| self.telemetry.invalid(Api::IsAuthorized))?
            .max(request.get_ref().min_revision);
        let snap = self.snapshot(min).await?;
        let response = self.decide(Api::IsAuthorized, started, &snap, &req);
        tracing::debug!(
            supplier = %req.supplier, owner = %req.owner, scope = %req.scope,
            allowed = response.allowed, reasons = ?response.reasons, errors = ?response.errors,
            revision = snap.revision(), "decision"
        );
        Ok(Response::new(response))
    }

    async fn batch_is_authorized(
        &self,
        request: Request<BatchIsAuthorizedRequest>,
    ) -> Result<Response<BatchIsAuthorizedResponse>, Status> {
        let items = &request.get_ref().requests;
        if items.len() > MAX_BATCH {
            self.telemetry.invalid(Api::Batch);
            return Err(Status::invalid_argument(format!(
                "`requests` holds {} items; at most {MAX_BATCH} are allowed per batch",
                items.len()
            )));
        }
        let parsed = items
            .iter()
            .enumerate()
            .map(|(i, r)| parse(r, &format!("requests[{i}].")))
            .collect::<Result<Vec<_>, _>>()
            .inspect_err(|_| self.telemetry.invalid(Api::Batch))?;
        // One snapshot for the whole batch, so its answers are consistent.
        let min = freshness::from_metadata(request.metadata())
            .inspect_err(|_| self.telemetry.invalid(Api::Batch))?
            .max(items.iter().map(|r| r.min_revision).max().unwrap_or(0));
        let snap = self.snapshot(min).await?;
        let responses = parsed
            .iter()
            .map(|r| self.decide(Api::Batch, Instant::now(), &snap, r))
            .collect();
        Ok(Response::new(BatchIsAuthorizedResponse { responses }))
    }
}
