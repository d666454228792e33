//! `tilgang.v1.Delegations`: the admin API, served only on the admin listener.
//! File I/O and fsync run on the blocking pool, never on the async workers.
//! Store errors become statuses in `grpc::status`, not here.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{field, status};
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};
use crate::proto::delegations_server::Delegations;
use crate::proto::{
    DelegateRequest, Delegation, ListDelegationsRequest, ListDelegationsResponse,
    ListRightsRequest, ListRightsResponse, RevokeRequest, RevokeResponse, Right, UndoRevokeRequest,
};
use crate::store::{DelegationStore, DelegationView, StoreError};

pub struct DelegationsService {
    store: Arc<DelegationStore>,
}

impl DelegationsService {
    pub fn new(store: Arc<DelegationStore>) -> Self {
        Self { store }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DelegationStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(status::task_failed)?
            .map_err(status::store_error)
    }
}

fn to_proto(d: DelegationView) -> Delegation {
    Delegation {
        owner: d.owner.to_string(),
        supplier: d.supplier.to_string(),
        rights: d.rights.iter().map(|r| r.to_string()).collect(),
        scopes: d.scopes,
        delegated_by: d.delegated_by,
        updated_at: d.updated_at,
        created_at: d.created_at,
    }
}

fn rights(values: &[String]) -> Result<Vec<RightId>, Status> {
    values
        .iter()
        .enumerate()
        .map(|(i, r)| field(&format!("rights[{i}]"), r, RightId::parse))
        .collect()
}

fn optional_org(name: &str, value: &str) -> Result<Option<OrgNumber>, Status> {
    if value.is_empty() {
        Ok(None)
    } else {
        field(name, value, OrgNumber::parse).map(Some)
    }
}

#[tonic::async_trait]
impl Delegations for DelegationsService {
    async fn list_rights(
        &self,
        _request: Request<ListRightsRequest>,
    ) -> Result<Response<ListRightsResponse>, Status> {
        let rights = self
            .store
            .rights()
            .into_iter()
            .map(|r| Right {
                id: r.id.to_string(),
                name: r.name,
                scopes: r.scopes.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        Ok(Response::new(ListRightsResponse { rights }))
    }

    async fn delegate(
        &self,
        request: Request<DelegateRequest>,
    ) -> Result<Response<Delegation>, Status> {
        let r = request.into_inner();
        let owner = field("owner", &r.owner, OrgNumber::parse)?;
        let supplier = field("supplier", &r.supplier, OrgNumber::parse)?;
        let actor = field("actor", &r.actor, PersonId::parse)?;
        let rights = rights(&r.rights)?;
        let view = self
            .blocking(move |s| s.delegate(owner, supplier, &rights, &actor))
            .await?;
        Ok(Response::new(to_proto(view)))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let r = request.into_inner();
        let owner = field("owner", &r.owner, OrgNumber::parse)?;
        let supplier = field("supplier", &r.supplier, OrgNumber::parse)?;
        let actor = field("actor", &r.actor, PersonId::parse)?;
        let rights = rights(&r.rights)?;
        let revoked = self
            .blocking(move |s| s.revoke(owner, supplier, &rights, &actor))
            .await?;
        Ok(Response::new(RevokeResponse {
            remaining: Some(to_proto(revoked.remaining)),
            undo_token: revoked.undo_token.to_string(),
            undo_expires_at: revoked.undo_expires_at,
        }))
    }

    async fn undo_revoke(
        &self,
        request: Request<UndoRevokeRequest>,
    ) -> Result<Response<Delegation>, Status> {
        let r = request.into_inner();
        let token = field("undo_token", &r.undo_token, UndoToken::parse_exact)?;
        let actor = field("actor", &r.actor, PersonId::parse)?;
        let view = self.blocking(move |s| s.undo(&token, &actor)).await?;
        Ok(Response::new(to_proto(view)))
    }

    async fn list_delegations(
        &self,
        request: Request<ListDelegationsRequest>,
    ) -> Result<Response<ListDelegationsResponse>, Status> {
        let r = request.into_inner();
        let owner = optional_org("owner", &r.owner)?;
        let supplier = optional_org("supplier", &r.supplier)?;
        let delegations = self
            .store
            .list(owner, supplier)
            .into_iter()
            .map(to_proto)
            .collect();
        Ok(Response::new(ListDelegationsResponse { delegations }))
    }
}
