//! `tilgang.v1.Delegations`: the admin API, served only on the admin listener.
//! File I/O and fsync run on the blocking pool, never on the async workers.
//! Store errors become statuses in `grpc::status`, not here. Every write
//! (delegate, revoke, undo) is reported to [`Telemetry`] with how it ended,
//! including a request that does not parse. `ListDelegations` pages as
//! [`page`] says, from the store's ordered walk.

use std::ops::ControlFlow;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{field, page, status};
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken};
use crate::proto::delegations_server::Delegations;
use crate::proto::{
    DelegateRequest, Delegation, ListDelegationsRequest, ListDelegationsResponse,
    ListRightsRequest, ListRightsResponse, RevokeRequest, RevokeResponse, Right, UndoRevokeRequest,
};
use crate::store::{DelegationStore, DelegationView, ListFilter, Position, StoreError};
use crate::telemetry::metrics::AdminKind;
use crate::telemetry::{AdminFailure, Telemetry, Who};

pub struct DelegationsService {
    store: Arc<DelegationStore>,
    telemetry: Telemetry,
}

impl DelegationsService {
    pub fn new(store: Arc<DelegationStore>, telemetry: Telemetry) -> Self {
        Self { store, telemetry }
    }

    /// Report a request of `kind` whose fields did not parse.
    fn invalid(&self, kind: AdminKind, status: Status) -> Status {
        let failure = AdminFailure::Invalid(status.message());
        self.telemetry.admin_failed(kind, Who::default(), failure);
        status
    }

    /// Run a write on the blocking pool and report how it ended.
    async fn write<T: Send + 'static>(
        &self,
        kind: AdminKind,
        who: Who<'_>,
        f: impl FnOnce(&DelegationStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(Ok(v)) => {
                let revision = self.store.snapshot().revision().to_string();
                self.telemetry.admin_ok(kind, &revision);
                Ok(v)
            }
            Ok(Err(e)) => {
                self.telemetry
                    .admin_failed(kind, who, AdminFailure::Store(&e));
                Err(status::store_error(e))
            }
            Err(e) => {
                self.telemetry.admin_failed(kind, who, AdminFailure::Task);
                Err(status::task_failed(e))
            }
        }
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

/// The fields of a delegate or revoke request, parsed.
fn change_fields(
    owner: &str,
    supplier: &str,
    actor: &str,
    rights_: &[String],
) -> Result<(OrgNumber, OrgNumber, PersonId, Vec<RightId>), Status> {
    Ok((
        field("owner", owner, OrgNumber::parse)?,
        field("supplier", supplier, OrgNumber::parse)?,
        field("actor", actor, PersonId::parse)?,
        rights(rights_)?,
    ))
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
        let kind = AdminKind::Delegate;
        let (owner, supplier, actor, rights) =
            change_fields(&r.owner, &r.supplier, &r.actor, &r.rights)
                .map_err(|s| self.invalid(kind, s))?;
        let by = actor.clone();
        let who = Who {
            actor: Some(&by),
            owner: Some(&owner),
        };
        let view = self
            .write(kind, who, move |s| {
                s.delegate(owner, supplier, &rights, &actor)
            })
            .await?;
        Ok(Response::new(to_proto(view)))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let r = request.into_inner();
        let kind = AdminKind::Revoke;
        let (owner, supplier, actor, rights) =
            change_fields(&r.owner, &r.supplier, &r.actor, &r.rights)
                .map_err(|s| self.invalid(kind, s))?;
        let by = actor.clone();
        let who = Who {
            actor: Some(&by),
            owner: Some(&owner),
        };
        let revoked = self
            .write(kind, who, move |s| {
                s.revoke(owner, supplier, &rights, &actor)
            })
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
        let kind = AdminKind::Undo;
        let (token, actor) = (|| {
            Ok::<_, Status>((
                field("undo_token", &r.undo_token, UndoToken::parse_exact)?,
                field("actor", &r.actor, PersonId::parse)?,
            ))
        })()
        .map_err(|s| self.invalid(kind, s))?;
        let by = actor.clone();
        // The owner is the record's: not known here, and not told.
        let who = Who {
            actor: Some(&by),
            owner: None,
        };
        let view = self
            .write(kind, who, move |s| s.undo(&token, &actor))
            .await?;
        Ok(Response::new(to_proto(view)))
    }

    async fn list_delegations(
        &self,
        request: Request<ListDelegationsRequest>,
    ) -> Result<Response<ListDelegationsResponse>, Status> {
        let r = request.into_inner();
        let filter = ListFilter {
            owner: optional_org("owner", &r.owner)?,
            supplier: optional_org("supplier", &r.supplier)?,
        };
        let size = page::page_size(r.page_size)?;
        let after = page::decode(&r.page_token, &filter).map_err(page::TokenError::status)?;
        // A page of at most `size` delegations and `MAX_PAGE_BYTES` (at least
        // one). Stopping at a delegation that does not fit is what says more
        // follow, so the last page has no token. In memory only: no I/O.
        let mut delegations = Vec::new();
        let (mut bytes, mut last, mut more) = (0, None, false);
        self.store.scan(filter, after, |view| {
            if delegations.len() == size {
                more = true;
                return ControlFlow::Break(());
            }
            let position = Position::of(&view);
            let d = to_proto(view);
            let len = prost::encoding::message::encoded_len(1, &d);
            if !delegations.is_empty() && bytes + len > page::MAX_PAGE_BYTES {
                more = true;
                return ControlFlow::Break(());
            }
            bytes += len;
            last = Some(position);
            delegations.push(d);
            ControlFlow::Continue(())
        });
        let next_page_token = match last {
            Some(last) if more => page::encode(&filter, last),
            _ => String::new(),
        };
        Ok(Response::new(ListDelegationsResponse {
            delegations,
            next_page_token,
        }))
    }
}
