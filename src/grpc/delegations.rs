//! `tilgang.v1.Delegations`: the admin API, served only on the admin listener.
//! Every call is authenticated first ([`AdminAuth`]: a verified bearer token,
//! or development mode), before any field is parsed; a write then acts for the
//! verified person (`actor` empty or the same), or, in development mode, for
//! whoever `actor` names. Every refused call (not authenticated, `actor` not
//! the caller, or refused by the store: forbidden, unknown undo token,
//! `roles.json` invalid) is counted, logged and written to the audit log with
//! who tried what ([`Attempt`]).
//! File I/O and fsync run on the blocking pool, never on the async workers.
//! Store errors become statuses in `grpc::status`, not here. Every write
//! (delegate, revoke, undo) is reported to [`Telemetry`] with how it ended,
//! including a request that does not parse. `ListDelegations` pages as
//! [`page`] says, from the store's ordered walk.

use std::ops::ControlFlow;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{field, page, status};
use crate::auth::Peer;
use crate::auth::{AdminAuth, Caller, Proof};
use crate::ids::{OrgNumber, PersonId, RightId, UndoToken, echo};
use crate::proto::delegations_server::Delegations;
use crate::proto::{
    DelegateRequest, Delegation, ListDelegationsRequest, ListDelegationsResponse,
    ListRightsRequest, ListRightsResponse, RevokeRequest, RevokeResponse, Right, UndoRevokeRequest,
};
use crate::store::audit::{Actor, ActorAuth, RefusalRecord};
use crate::store::{
    DelegationStore, DelegationView, ListFilter, Position, Reader, StoreError, Written,
};
use crate::telemetry::metrics::{AdminKind, Refusal};
use crate::telemetry::{AdminFailure, Telemetry, Who};

pub struct DelegationsService {
    store: Arc<DelegationStore>,
    telemetry: Telemetry,
    auth: AdminAuth,
}

/// At most this many requested rights are named in a refusal line.
const RECORDED_RIGHTS: usize = 16;

/// What a call tried, as the request wrote it, and the credentials it came
/// with. Its values are what a refusal's record shows, through [`echo`] (cut
/// short, escaped): they may not have parsed.
struct Attempt<'a> {
    kind: AdminKind,
    peer: Option<std::net::SocketAddr>,
    /// The `authorization` header, raw.
    authorization: Option<&'a [u8]>,
    /// The verified client certificate, DER.
    certificate: Option<&'a [u8]>,
    actor: &'a str,
    owner: &'a str,
    supplier: &'a str,
    rights: &'a [String],
}

impl<'a> Attempt<'a> {
    fn new<T>(kind: AdminKind, request: &'a Request<T>) -> Self {
        let peer = request.extensions().get::<Peer>();
        Self {
            kind,
            peer: peer.map(|p| p.addr),
            authorization: request
                .metadata()
                .get("authorization")
                .map(|v| v.as_bytes()),
            certificate: peer
                .and_then(|p| p.certificate.as_deref())
                .map(|c| c.as_ref()),
            actor: "",
            owner: "",
            supplier: "",
            rights: &[],
        }
    }

    fn change(
        mut self,
        actor: &'a str,
        owner: &'a str,
        supplier: &'a str,
        rights: &'a [String],
    ) -> Self {
        self.actor = actor;
        self.owner = owner;
        self.supplier = supplier;
        self.rights = rights;
        self
    }
}

/// The person a write acts for, and how that was established.
struct Acting {
    person: PersonId,
    auth: ActorAuth,
    service: Option<String>,
}

impl Acting {
    fn actor(&self) -> Actor<'_> {
        Actor {
            person: &self.person,
            auth: self.auth,
            service: self.service.as_deref(),
            channel: None,
        }
    }
}

/// The caller, for a log line: the verified person, if any.
fn who(caller: &Caller) -> Who<'_> {
    Who {
        actor: caller.person(),
        owner: None,
    }
}

/// How a caller's actor is established, for the record.
fn actor_auth(caller: &Caller) -> ActorAuth {
    match caller {
        Caller::Unverified => ActorAuth::Unverified,
        Caller::Person {
            by: Proof::Token, ..
        } => ActorAuth::Token,
        Caller::Person {
            by: Proof::ClientCertificate,
            ..
        } => ActorAuth::ClientCertificate,
        Caller::Service(_) => ActorAuth::Service,
    }
}

fn some(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| echo(value))
}

impl DelegationsService {
    pub fn new(store: Arc<DelegationStore>, telemetry: Telemetry, auth: AdminAuth) -> Self {
        Self {
            store,
            telemetry,
            auth,
        }
    }

    /// Who is calling: authenticated from the `authorization` header, or the
    /// call is refused (`UNAUTHENTICATED`, on record).
    async fn caller(&self, attempt: &Attempt<'_>) -> Result<Caller, Status> {
        match self
            .auth
            .authenticate(attempt.authorization, attempt.certificate)
        {
            Ok(caller) => Ok(caller),
            Err(e) => {
                let logged = self
                    .record(attempt, Refusal::Unauthenticated, None, e.to_string())
                    .await;
                self.telemetry.admin_refused(
                    attempt.kind,
                    Refusal::Unauthenticated,
                    Who::default(),
                    &e,
                    logged,
                );
                Err(status::unauthenticated(&e))
            }
        }
    }

    /// The person a write acts for: the verified caller (`actor` empty or the
    /// same person; otherwise `PERMISSION_DENIED`, on record), or in
    /// development mode whoever `actor` names (`INVALID_ARGUMENT` when it
    /// does not parse).
    async fn acting(&self, caller: &Caller, attempt: &Attempt<'_>) -> Result<Acting, Status> {
        let (auth, service) = (actor_auth(caller), caller.service().map(str::to_string));
        match caller.acting_for(attempt.actor) {
            Ok(Some(person)) => Ok(Acting {
                person,
                auth,
                service,
            }),
            Ok(None) => {
                let person = field("actor", attempt.actor, PersonId::parse)
                    .map_err(|s| self.invalid(attempt.kind, s))?;
                Ok(Acting {
                    person,
                    auth,
                    service,
                })
            }
            Err(e) => {
                let detail = e.to_string();
                let logged = self
                    .record(attempt, Refusal::ActorMismatch, Some(caller), detail)
                    .await;
                self.telemetry.admin_refused(
                    attempt.kind,
                    Refusal::ActorMismatch,
                    who(caller),
                    &e,
                    logged,
                );
                Err(status::actor_mismatch(&e))
            }
        }
    }

    /// The first steps of a delegate or revoke: who is calling, the fields,
    /// and the person it acts for.
    async fn change(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<(Caller, (OrgNumber, OrgNumber, Vec<RightId>), Acting), Status> {
        let caller = self.caller(attempt).await?;
        // The actor first: a mismatch is on record whatever else is wrong.
        let acting = self.acting(&caller, attempt).await?;
        let fields = change_fields(attempt).map_err(|s| self.invalid(attempt.kind, s))?;
        Ok((caller, fields, acting))
    }

    /// Write a refused call to the audit log, unless refusals come faster
    /// than the store's gate lets through (then it is only counted); whether
    /// it was written. Callers nobody verified have a gate of their own, much
    /// narrower: anyone who reaches the port is one. A failure to write is
    /// logged; the caller is refused either way.
    async fn record(
        &self,
        attempt: &Attempt<'_>,
        reason: Refusal,
        caller: Option<&Caller>,
        detail: String,
    ) -> bool {
        let Some(not_recorded_before) = self.store.admit_refusal(caller.is_none()) else {
            return false;
        };
        let requested = some(attempt.actor);
        let actor = match caller {
            Some(Caller::Person { id, .. }) => Some(id.to_string()),
            // Unverified, or a service: the actor is who the request named.
            Some(Caller::Unverified | Caller::Service(_)) => requested.clone(),
            None => None,
        };
        let mut rights: Vec<String> = attempt
            .rights
            .iter()
            .take(RECORDED_RIGHTS)
            .map(|r| echo(r))
            .collect();
        if attempt.rights.len() > RECORDED_RIGHTS {
            rights.push(format!("… {} more", attempt.rights.len() - RECORDED_RIGHTS));
        }
        let record = RefusalRecord {
            time: DelegationStore::now_rfc3339(),
            refused: attempt.kind.as_str().to_string(),
            reason: reason.as_str().to_string(),
            requested_actor: requested.filter(|r| actor.as_ref() != Some(r)),
            actor,
            actor_auth: caller.map_or(ActorAuth::None, actor_auth),
            service: caller.and_then(Caller::service).map(str::to_string),
            channel: None,
            owner: some(attempt.owner),
            supplier: some(attempt.supplier),
            rights,
            peer: attempt.peer.map(|p| p.to_string()),
            detail,
            not_recorded_before,
        };
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.record_refusal(&record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not write a refused admin call to the audit log");
            }
            Err(e) => {
                tracing::error!(error = %e, "writing a refused admin call to the audit log failed");
            }
        }
        true
    }

    /// Report a request of `kind` whose fields did not parse.
    fn invalid(&self, kind: AdminKind, status: Status) -> Status {
        let failure = AdminFailure::Invalid(status.message());
        self.telemetry.admin_failed(kind, Who::default(), failure);
        status
    }

    /// Run a write on the blocking pool and report how it ended; a refusal
    /// by the store is put on record.
    async fn write<T: Send + 'static>(
        &self,
        attempt: &Attempt<'_>,
        caller: &Caller,
        acting: Acting,
        owner: Option<OrgNumber>,
        f: impl FnOnce(&DelegationStore, Actor<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let kind = attempt.kind;
        let store = self.store.clone();
        let person = acting.person.clone();
        let done = tokio::task::spawn_blocking(move || f(&store, acting.actor())).await;
        let who = Who {
            actor: Some(&person),
            owner: owner.as_ref(),
        };
        match done {
            Ok(Ok(v)) => {
                let revision = self.store.snapshot().revision().to_string();
                self.telemetry.admin_ok(kind, &revision);
                Ok(v)
            }
            Ok(Err(e)) => {
                let failure = e.admin_failure();
                self.telemetry.admin_failed(kind, who, failure);
                if let Some(reason) = failure.refusal() {
                    let detail = failure.to_string();
                    self.record(attempt, reason, Some(caller), detail).await;
                }
                Err(status::store_error(e))
            }
            Err(e) => {
                self.telemetry.admin_failed(kind, who, AdminFailure::Task);
                Err(status::task_failed(e))
            }
        }
    }
}

fn to_proto(d: DelegationView, store_revision: u64) -> Delegation {
    Delegation {
        owner: d.owner.to_string(),
        supplier: d.supplier.to_string(),
        rights: d.rights.iter().map(|r| r.to_string()).collect(),
        scopes: d.scopes,
        delegated_by: d.delegated_by,
        updated_at: d.updated_at,
        created_at: d.created_at,
        store_revision,
    }
}

fn rights(values: &[String]) -> Result<Vec<RightId>, Status> {
    values
        .iter()
        .enumerate()
        .map(|(i, r)| field(&format!("rights[{i}]"), r, RightId::parse))
        .collect()
}

/// The fields of a delegate or revoke request, parsed (`actor` is the
/// caller's business: [`DelegationsService::acting`]).
fn change_fields(a: &Attempt<'_>) -> Result<(OrgNumber, OrgNumber, Vec<RightId>), Status> {
    Ok((
        field("owner", a.owner, OrgNumber::parse)?,
        field("supplier", a.supplier, OrgNumber::parse)?,
        rights(a.rights)?,
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
        request: Request<ListRightsRequest>,
    ) -> Result<Response<ListRightsResponse>, Status> {
        self.caller(&Attempt::new(AdminKind::ListRights, &request))
            .await?;
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
        let r = request.get_ref();
        let attempt = Attempt::new(AdminKind::Delegate, &request).change(
            &r.actor,
            &r.owner,
            &r.supplier,
            &r.rights,
        );
        let (caller, (owner, supplier, rights), acting) = self.change(&attempt).await?;
        let written = self
            .write(&attempt, &caller, acting, Some(owner), move |s, actor| {
                s.delegate(owner, supplier, &rights, actor)
            })
            .await?;
        Ok(Response::new(to_proto(written.value, written.revision)))
    }

    async fn revoke(
        &self,
        request: Request<RevokeRequest>,
    ) -> Result<Response<RevokeResponse>, Status> {
        let r = request.get_ref();
        let attempt = Attempt::new(AdminKind::Revoke, &request).change(
            &r.actor,
            &r.owner,
            &r.supplier,
            &r.rights,
        );
        let (caller, (owner, supplier, rights), acting) = self.change(&attempt).await?;
        let Written { value, revision } = self
            .write(&attempt, &caller, acting, Some(owner), move |s, actor| {
                s.revoke(owner, supplier, &rights, actor)
            })
            .await?;
        Ok(Response::new(RevokeResponse {
            remaining: Some(to_proto(value.remaining, revision)),
            undo_token: value.undo_token.to_string(),
            undo_expires_at: value.undo_expires_at,
            store_revision: revision,
        }))
    }

    async fn undo_revoke(
        &self,
        request: Request<UndoRevokeRequest>,
    ) -> Result<Response<Delegation>, Status> {
        let r = request.get_ref();
        // The token is the caller's own: never on record.
        let mut attempt = Attempt::new(AdminKind::Undo, &request);
        attempt.actor = &r.actor;
        let caller = self.caller(&attempt).await?;
        let acting = self.acting(&caller, &attempt).await?;
        let token = field("undo_token", &r.undo_token, UndoToken::parse_exact)
            .map_err(|s| self.invalid(attempt.kind, s))?;
        // The owner is the record's: not known here, and not told.
        let written = self
            .write(&attempt, &caller, acting, None, move |s, actor| {
                s.undo(&token, actor)
            })
            .await?;
        Ok(Response::new(to_proto(written.value, written.revision)))
    }

    async fn list_delegations(
        &self,
        request: Request<ListDelegationsRequest>,
    ) -> Result<Response<ListDelegationsResponse>, Status> {
        let r = request.get_ref();
        let attempt = Attempt::new(AdminKind::ListDelegations, &request).change(
            "",
            &r.owner,
            &r.supplier,
            &[],
        );
        let caller = self.caller(&attempt).await?;
        let filter = ListFilter {
            owner: optional_org("owner", &r.owner)?,
            supplier: optional_org("supplier", &r.supplier)?,
        };
        let size = page::page_size(r.page_size)?;
        let after = page::decode(&r.page_token, &filter).map_err(page::TokenError::status)?;
        // On the blocking pool: a page walks up to a page of delegations and,
        // for a person, makes a policy decision per owner they hold a role
        // for; none of it may hold up the async workers (and so the gateway).
        let (store, person) = (self.store.clone(), caller.person().cloned());
        let paged = tokio::task::spawn_blocking(move || {
            let reader = person.as_ref().map_or(Reader::All, Reader::Person);
            page_of(&store, reader, filter, after, size)
        })
        .await
        .map_err(status::task_failed)?;
        let (delegations, last, more) = match paged {
            Ok(page) => page,
            Err(e) => return Err(self.list_refused(&attempt, &caller, e).await),
        };
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

/// One page: at most `size` delegations and `MAX_PAGE_BYTES` (at least one),
/// the last one's position, and whether more follow. Stopping at a delegation
/// that does not fit is what says more follow, so the last page has no token.
/// In memory only: no I/O.
fn page_of(
    store: &DelegationStore,
    reader: Reader<'_>,
    filter: ListFilter,
    after: Option<Position>,
    size: usize,
) -> Result<(Vec<Delegation>, Option<Position>, bool), StoreError> {
    let mut delegations = Vec::new();
    let (mut bytes, mut last, mut more) = (0, None, false);
    store.scan(reader, filter, after, |view| {
        if delegations.len() == size {
            more = true;
            return ControlFlow::Break(());
        }
        let position = Position::of(&view);
        let d = to_proto(view, 0);
        let len = prost::encoding::message::encoded_len(1, &d);
        if !delegations.is_empty() && bytes + len > page::MAX_PAGE_BYTES {
            more = true;
            return ControlFlow::Break(());
        }
        bytes += len;
        last = Some(position);
        delegations.push(d);
        ControlFlow::Continue(())
    })?;
    Ok((delegations, last, more))
}

impl DelegationsService {
    /// A listing the store refused: counted, on record when a refusal, and
    /// the status.
    async fn list_refused(&self, attempt: &Attempt<'_>, caller: &Caller, e: StoreError) -> Status {
        let failure = e.admin_failure();
        if let Some(reason) = failure.refusal() {
            let detail = failure.to_string();
            let logged = self.record(attempt, reason, Some(caller), detail).await;
            self.telemetry
                .admin_refused(attempt.kind, reason, who(caller), &failure, logged);
        }
        status::store_error(e)
    }
}
