//! `tilgang.v1.Authorizer`: the data plane gateways call on every request.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::field;
use crate::engine::{self, AccessRequest};
use crate::ids::{OrgNumber, Scope};
use crate::proto::authorizer_server::Authorizer;
use crate::proto::{
    BatchIsAuthorizedRequest, BatchIsAuthorizedResponse, IsAuthorizedRequest, IsAuthorizedResponse,
};
use crate::snapshot::SnapshotStore;

/// The most requests one `BatchIsAuthorized` call may carry.
pub const MAX_BATCH: usize = 1000;

pub struct AuthorizerService {
    store: Arc<SnapshotStore>,
}

impl AuthorizerService {
    pub fn new(store: Arc<SnapshotStore>) -> Self {
        Self { store }
    }
}

fn parse(req: &IsAuthorizedRequest, prefix: &str) -> Result<AccessRequest, Status> {
    Ok(AccessRequest {
        supplier: field(
            &format!("{prefix}supplier"),
            &req.supplier,
            OrgNumber::parse,
        )?,
        owner: field(&format!("{prefix}owner"), &req.owner, OrgNumber::parse)?,
        scope: field(&format!("{prefix}scope"), &req.scope, Scope::parse)?,
    })
}

fn respond(d: engine::Decision, revision: &str) -> IsAuthorizedResponse {
    IsAuthorizedResponse {
        allowed: d.allowed,
        reasons: d.reasons,
        errors: d.errors,
        revision: revision.to_string(),
    }
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn is_authorized(
        &self,
        request: Request<IsAuthorizedRequest>,
    ) -> Result<Response<IsAuthorizedResponse>, Status> {
        let req = parse(request.get_ref(), "")?;
        let snap = self.store.load();
        let d = engine::decide(&snap, &req);
        tracing::debug!(
            supplier = %req.supplier, owner = %req.owner, scope = %req.scope,
            allowed = d.allowed, reasons = ?d.reasons, errors = ?d.errors,
            revision = snap.revision(), "decision"
        );
        Ok(Response::new(respond(d, snap.revision())))
    }

    async fn batch_is_authorized(
        &self,
        request: Request<BatchIsAuthorizedRequest>,
    ) -> Result<Response<BatchIsAuthorizedResponse>, Status> {
        let items = &request.get_ref().requests;
        if items.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "`requests` holds {} items; at most {MAX_BATCH} are allowed per batch",
                items.len()
            )));
        }
        let parsed = items
            .iter()
            .enumerate()
            .map(|(i, r)| parse(r, &format!("requests[{i}].")))
            .collect::<Result<Vec<_>, _>>()?;
        // One snapshot for the whole batch, so its answers are consistent.
        let snap = self.store.load();
        let responses = parsed
            .iter()
            .map(|r| respond(engine::decide(&snap, r), snap.revision()))
            .collect();
        Ok(Response::new(BatchIsAuthorizedResponse { responses }))
    }
}
